//! What can go wrong at the AWS edge, and how transient it is (retried, waited on, or said).

use thiserror::Error;

#[derive(Debug, Error)]
pub enum AwsError {
    #[error(
        "AWS profile `{profile}` gives no credentials ({message}); check ~/.aws/config, or run `aws sso login --profile {profile}` for SSO"
    )]
    Profile { profile: String, message: String },
    #[error("{operation}: {message}")]
    Call {
        operation: String,
        /// AWS's error code (`OperationInProgressException`, ...), when it gave one.
        code: Option<String>,
        message: String,
        /// Throttled, a 5xx, a timeout or a connection lost: the call may be tried again, and
        /// what it did (if it reached AWS) is unknown.
        transient: bool,
    },
    #[error(
        "template bucket {bucket} is not account {account}'s (S3 refused access): \
         name a bucket this account owns with spec.templateBucket"
    )]
    BucketNotOwned { bucket: String, account: String },
    #[error(
        "template bucket {bucket} is in {found}, not {region}: CloudFormation reads templates \
         only from a bucket in the home region; name one there with spec.templateBucket"
    )]
    BucketRegion {
        bucket: String,
        found: String,
        region: String,
    },
    #[error("no AWS region: pass --region or set AWS_REGION")]
    NoRegion,
    #[error(
        "this account is not in an AWS organization: run estate with the credentials of the \
         organization's management account, or create the organization first \
         (`aws organizations create-organization --feature-set ALL`)"
    )]
    NoOrganization,
    #[error(
        "account {caller} is not the organization's management account ({management}) and may \
         not list the organization ({message}): run estate with the management account's \
         credentials (delegated administrators are not supported yet)"
    )]
    NotManagement {
        caller: String,
        management: String,
        message: String,
    },
    #[error("the template of provisioning artifact {artifact}: {message}")]
    ArtifactTemplate { artifact: String, message: String },
    #[error("cannot assume {role} in account {account}: {message}")]
    AssumeRole {
        role: String,
        account: String,
        message: String,
    },
}

/// An error that never reached AWS, as one line: its causes in order, without the SDK's debug
/// dump; missing credentials, the usual first-run mistake, say how to provide them.
fn transport_message(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut credentials = false;
    let mut next = Some(err);
    while let Some(e) = next {
        credentials |= e
            .downcast_ref::<aws_credential_types::provider::error::CredentialsError>()
            .is_some();
        let text = e.to_string();
        // Some errors repeat their cause in their own text.
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    let message = parts.join(": ");
    if credentials {
        format!(
            "no usable AWS credentials ({message}); set AWS_PROFILE or pass --profile \
             (after `aws sso login` for SSO), or export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    } else {
        message
    }
}

impl AwsError {
    /// Wraps an SDK error with the operation it came from, keeping AWS's own message.
    pub fn call<E>(
        operation: &str,
        err: aws_smithy_runtime_api::client::result::SdkError<
            E,
            aws_smithy_runtime_api::http::Response,
        >,
    ) -> Self
    where
        E: std::error::Error + aws_smithy_types::error::metadata::ProvideErrorMetadata + 'static,
    {
        let message = match err.as_service_error() {
            Some(service) => match (service.code(), service.message()) {
                (Some(code), Some(msg)) => format!("{code}: {msg}"),
                (Some(code), None) => code.to_string(),
                _ => service.to_string(),
            },
            None => transport_message(&err),
        };
        let code = err
            .as_service_error()
            .and_then(|s| s.code())
            .map(str::to_string);
        use aws_smithy_runtime_api::client::result::SdkError;
        let transient = match &err {
            SdkError::TimeoutError(_)
            | SdkError::DispatchFailure(_)
            | SdkError::ResponseError(_) => true,
            SdkError::ServiceError(s) => {
                s.raw().status().is_server_error()
                    || code
                        .as_deref()
                        .is_some_and(|c| TRANSIENT_CODES.contains(&c))
            }
            _ => false,
        };
        AwsError::Call {
            operation: operation.to_string(),
            code,
            message,
            transient,
        }
    }

    /// Whether the call may succeed if tried again (throttled, a 5xx, no answer): its outcome
    /// is unknown, never a failure of what it asked for.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            AwsError::Call {
                transient: true,
                ..
            }
        )
    }

    /// The AWS error code, if this is an error AWS answered with.
    pub fn code(&self) -> Option<&str> {
        match self {
            AwsError::Call { code, .. } => code.as_deref(),
            _ => None,
        }
    }
}

/// Error codes AWS answers when it is busy (throttling) or failed itself, as the SDKs' retry
/// classifiers list them: the request was not refused for what it asked.
const TRANSIENT_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
    "ServiceUnavailableException",
];
