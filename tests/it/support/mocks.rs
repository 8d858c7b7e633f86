//! Shared set-up for SDK-level tests (aws-smithy-mocks): a configuration whose HTTP client
//! never reaches the network, so only mock rules answer; the edge built on it, the rules and
//! errors several tests need, and the edge's call counts.

use aws_config::SdkConfig;
use aws_smithy_mocks::{MockResponseInterceptor, Rule, RuleMode, create_mock_http_client};
use aws_smithy_types::error::ErrorMetadata;
use estate::apply::Polling;
use estate::aws::Aws;
use std::time::Duration;

/// us-east-1, test credentials, and the mock HTTP client.
pub fn config() -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(
                aws_credential_types::Credentials::for_tests(),
            ),
        )
        .http_client(create_mock_http_client())
        .build()
}

/// STS GetCallerIdentity answering as `account`, in the China partition (so a test sees the
/// partition is read, not assumed).
pub fn caller_identity(account: &str) -> Rule {
    let account = account.to_string();
    aws_smithy_mocks::mock!(aws_sdk_sts::Client::get_caller_identity).then_output(move || {
        aws_sdk_sts::operation::get_caller_identity::GetCallerIdentityOutput::builder()
            .account(&account)
            .arn(format!(
                "arn:aws-cn:sts::{account}:assumed-role/admin/estate"
            ))
            .build()
    })
}

/// The AWS edge with these rules standing in for AWS; a call no rule matches gets an error.
pub fn edge(rules: &[&Rule]) -> Aws {
    let mut interceptor = MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny);
    for r in rules {
        interceptor = interceptor.with_rule(r);
    }
    Aws::from_config(config(), "OrganizationAccountAccessRole").with_interceptor(interceptor)
}

/// Polling for mocks, which answer at once: milliseconds, bounded at 5 s.
pub fn fast() -> Polling {
    Polling {
        initial: Duration::from_millis(1),
        max: Duration::from_millis(5),
        timeout: Duration::from_secs(5),
    }
}

/// An error as the SDK deserializes it from AWS: the code lives in the error metadata.
pub fn meta(code: &str, message: &str) -> ErrorMetadata {
    ErrorMetadata::builder().code(code).message(message).build()
}

/// How many `operation` calls (e.g. `STS.AssumeRole`) the edge made.
pub fn calls(aws: &Aws, operation: &str) -> u64 {
    aws.stats()
        .snapshot()
        .get(operation)
        .copied()
        .unwrap_or_default()
}

/// Member credentials as STS AssumeRole grants them, expiring at `expires_at` (Unix seconds).
pub fn member_credentials(expires_at: i64) -> aws_sdk_sts::types::Credentials {
    aws_sdk_sts::types::Credentials::builder()
        .access_key_id("AKIAMEMBER")
        .secret_access_key("secret")
        .session_token("token")
        .expiration(aws_smithy_types::DateTime::from_secs(expires_at))
        .build()
        .unwrap()
}

/// The edge with these rules standing in for AWS and member accounts reached through a mocked
/// AssumeRole (credentials valid for decades); a call no rule matches gets an error.
pub fn edge_with_members(rules: &[&Rule]) -> Aws {
    let assume = aws_smithy_mocks::mock!(aws_sdk_sts::Client::assume_role).then_output(|| {
        aws_sdk_sts::operation::assume_role::AssumeRoleOutput::builder()
            .credentials(member_credentials(4_000_000_000))
            .build()
    });
    let all: Vec<&Rule> = rules.iter().copied().chain([&assume]).collect();
    edge(&all)
}
