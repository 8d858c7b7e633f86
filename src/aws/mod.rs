//! The AWS edge: every call to AWS goes through here. Credentials come from the standard
//! chain (honouring `AWS_ENDPOINT_URL`), retries are adaptive, reads are bounded, member
//! accounts are reached through STS AssumeRole, and every attempt is counted by operation.

use aws_config::SdkConfig;
use aws_config::retry::RetryConfig;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::{Intercept, SharedInterceptor};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use thiserror::Error;
use tokio::sync::Semaphore;

/// Reads in flight at once, per process: enough to hide latency, few enough not to be throttled.
pub const DEFAULT_READ_CONCURRENCY: usize = 8;

#[derive(Debug, Error)]
pub enum AwsError {
    #[error("{operation}: {message}")]
    Call {
        operation: String,
        /// AWS's error code (`OperationInProgressException`, ...), when it gave one.
        code: Option<String>,
        message: String,
    },
    #[error(
        "template bucket {bucket} is not account {account}'s (S3 refused access): \
         name a bucket this account owns with spec.templateBucket"
    )]
    BucketNotOwned { bucket: String, account: String },
    #[error("no AWS region: pass --region or set AWS_REGION")]
    NoRegion,
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
        AwsError::Call {
            operation: operation.to_string(),
            code,
            message,
        }
    }

    /// The AWS error code, if this is an error AWS answered with.
    pub fn code(&self) -> Option<&str> {
        match self {
            AwsError::Call { code, .. } => code.as_deref(),
            _ => None,
        }
    }
}

/// AWS API calls made, by `Service.Operation`, counted per attempt (retries cost too).
#[derive(Debug, Default)]
pub struct CallStats {
    calls: Mutex<BTreeMap<String, u64>>,
}

impl CallStats {
    pub fn record(&self, key: String) {
        *self
            .calls
            .lock()
            .expect("stats lock")
            .entry(key)
            .or_default() += 1;
    }
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.calls.lock().expect("stats lock").clone()
    }
    pub fn total(&self) -> u64 {
        self.snapshot().values().sum()
    }
}

#[derive(Debug)]
struct CountCalls(Arc<CallStats>);

impl Intercept for CountCalls {
    fn name(&self) -> &'static str {
        "estate::CountCalls"
    }
    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // `-vv`: every AWS call as it starts, so a slow or failing plan shows where it is.
        if let Some(meta) = cfg.load::<Metadata>() {
            tracing::debug!("AWS call {}.{}", meta.service(), meta.name());
        }
        Ok(())
    }
    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(meta) = cfg.load::<Metadata>() {
            // "Service Catalog" → "ServiceCatalog", as in error messages.
            let service: String = meta.service().split_whitespace().collect();
            self.0.record(format!("{service}.{}", meta.name()));
        }
        Ok(())
    }
}

/// Clients for one account (the management account, or a member reached by AssumeRole).
#[derive(Clone)]
pub struct Aws {
    config: SdkConfig,
    stats: Arc<CallStats>,
    reads: Arc<Semaphore>,
    member_role: String,
    members: Arc<Mutex<HashMap<String, SdkConfig>>>,
    /// Added to every client: how SDK-level tests (aws-smithy-mocks) stand in for AWS.
    extra: Vec<SharedInterceptor>,
}

impl Aws {
    /// The standard credential chain (environment, profiles, SSO, instance roles).
    pub async fn from_env(
        profile: Option<&str>,
        region: Option<&str>,
        member_role: &str,
    ) -> Result<Aws, AwsError> {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(p) = profile {
            loader = loader.profile_name(p);
        }
        if let Some(r) = region {
            loader = loader.region(aws_config::Region::new(r.to_string()));
        }
        let config = loader.load().await;
        if config.region().is_none() {
            return Err(AwsError::NoRegion);
        }
        // Adaptive retries back off on throttling across all clients, unless the user chose a mode.
        let config = if std::env::var_os("AWS_RETRY_MODE").is_none() {
            let attempts = config.retry_config().map_or(3, RetryConfig::max_attempts);
            config
                .to_builder()
                .retry_config(RetryConfig::adaptive().with_max_attempts(attempts))
                .build()
        } else {
            config
        };
        Ok(Aws::from_config(config, member_role))
    }

    /// Wraps an existing configuration (tests use this with mocked clients).
    pub fn from_config(config: SdkConfig, member_role: &str) -> Aws {
        Aws {
            config,
            stats: Arc::new(CallStats::default()),
            reads: Arc::new(Semaphore::new(DEFAULT_READ_CONCURRENCY)),
            member_role: member_role.to_string(),
            members: Arc::default(),
            extra: Vec::new(),
        }
    }

    /// Adds an interceptor to every client this edge builds (tests use mock responders).
    pub fn with_interceptor(mut self, interceptor: impl Intercept + 'static) -> Aws {
        self.extra.push(SharedInterceptor::new(interceptor));
        self
    }

    pub fn stats(&self) -> &Arc<CallStats> {
        &self.stats
    }

    pub fn region(&self) -> Option<String> {
        self.config.region().map(|r| r.to_string())
    }

    /// A permit for one read: holds the number of reads in flight to the bound.
    pub async fn read_permit(&self) -> tokio::sync::SemaphorePermit<'_> {
        self.reads.acquire().await.expect("semaphore never closed")
    }

    pub fn organizations(&self) -> aws_sdk_organizations::Client {
        // Organizations is a global service whose endpoint lives in us-east-1.
        let mut conf = aws_sdk_organizations::config::Builder::from(&self.config)
            .interceptor(CountCalls(self.stats.clone()));
        for i in &self.extra {
            conf.push_interceptor(i.clone());
        }
        let conf = conf.build();
        aws_sdk_organizations::Client::from_conf(conf)
    }

    pub fn cloudformation(&self, region: &str) -> aws_sdk_cloudformation::Client {
        let mut conf = aws_sdk_cloudformation::config::Builder::from(&self.config)
            .region(aws_config::Region::new(region.to_string()))
            .interceptor(CountCalls(self.stats.clone()));
        for i in &self.extra {
            conf.push_interceptor(i.clone());
        }
        let conf = conf.build();
        aws_sdk_cloudformation::Client::from_conf(conf)
    }

    pub fn servicecatalog(&self, region: &str) -> aws_sdk_servicecatalog::Client {
        let mut conf = aws_sdk_servicecatalog::config::Builder::from(&self.config)
            .region(aws_config::Region::new(region.to_string()))
            .interceptor(CountCalls(self.stats.clone()));
        for i in &self.extra {
            conf.push_interceptor(i.clone());
        }
        aws_sdk_servicecatalog::Client::from_conf(conf.build())
    }

    pub fn s3(&self, region: &str) -> aws_sdk_s3::Client {
        let mut conf = aws_sdk_s3::config::Builder::from(&self.config)
            .region(aws_config::Region::new(region.to_string()))
            // Emulators and some endpoints serve buckets by path, not by DNS name.
            .force_path_style(std::env::var_os("AWS_ENDPOINT_URL").is_some())
            .interceptor(CountCalls(self.stats.clone()));
        for i in &self.extra {
            conf.push_interceptor(i.clone());
        }
        aws_sdk_s3::Client::from_conf(conf.build())
    }

    pub fn sts(&self) -> aws_sdk_sts::Client {
        let mut conf = aws_sdk_sts::config::Builder::from(&self.config)
            .interceptor(CountCalls(self.stats.clone()));
        for i in &self.extra {
            conf.push_interceptor(i.clone());
        }
        let conf = conf.build();
        aws_sdk_sts::Client::from_conf(conf)
    }

    /// The account the credentials act as.
    pub async fn caller_account(&self) -> Result<String, AwsError> {
        let out = self
            .sts()
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| AwsError::call("STS.GetCallerIdentity", e))?;
        Ok(out.account.unwrap_or_default())
    }

    /// The edge acting in `account`: itself when that is the management account it runs as,
    /// otherwise through `memberRole`.
    pub async fn acting_in(&self, account: &str, management: &str) -> Result<Aws, AwsError> {
        if account == management {
            Ok(self.clone())
        } else {
            self.member(account).await
        }
    }

    /// The same edge acting in a member account, through `memberRole` (cached per account).
    pub async fn member(&self, account: &str) -> Result<Aws, AwsError> {
        if let Some(config) = self.members.lock().expect("members lock").get(account) {
            return Ok(self.with_config(config.clone()));
        }
        let role_arn = format!("arn:aws:iam::{account}:role/{}", self.member_role);
        tracing::info!("assuming {role_arn}");
        let out = self
            .sts()
            .assume_role()
            .role_arn(&role_arn)
            .role_session_name("estate")
            .send()
            .await
            .map_err(|e| AwsError::AssumeRole {
                role: role_arn.clone(),
                account: account.to_string(),
                message: AwsError::call("STS.AssumeRole", e).to_string(),
            })?;
        let creds = out.credentials.ok_or_else(|| AwsError::AssumeRole {
            role: role_arn.clone(),
            account: account.to_string(),
            message: "no credentials returned".into(),
        })?;
        let credentials = aws_credential_types::Credentials::new(
            creds.access_key_id,
            creds.secret_access_key,
            Some(creds.session_token),
            std::time::SystemTime::try_from(creds.expiration).ok(),
            "estate-assume-role",
        );
        let config = self
            .config
            .to_builder()
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(credentials),
            )
            .build();
        self.members
            .lock()
            .expect("members lock")
            .insert(account.to_string(), config.clone());
        Ok(self.with_config(config))
    }

    fn with_config(&self, config: SdkConfig) -> Aws {
        Aws {
            config,
            stats: self.stats.clone(),
            reads: self.reads.clone(),
            member_role: self.member_role.clone(),
            members: self.members.clone(),
            extra: self.extra.clone(),
        }
    }
}
