//! Shared set-up for SDK-level tests: a configuration whose HTTP client never reaches the
//! network, so only aws-smithy-mocks rules answer.

use aws_config::SdkConfig;
use aws_smithy_mocks::create_mock_http_client;

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
