//! Shared set-up for SDK-level tests: a configuration whose HTTP client never reaches the
//! network, so only aws-smithy-mocks rules answer.

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
