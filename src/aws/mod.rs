//! The AWS edge: every call to AWS goes through here. Credentials come from the standard
//! chain (honouring `AWS_ENDPOINT_URL`), retries are standard with short backoffs, reads are
//! bounded, member accounts are reached through STS AssumeRole, and every attempt is counted
//! by operation.

mod error;
pub mod wait;

pub use error::AwsError;

use aws_config::SdkConfig;
use aws_config::retry::RetryConfig;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, BeforeTransmitInterceptorContextMut,
    BeforeTransmitInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::{Intercept, SharedInterceptor};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};
use tokio::sync::Semaphore;

/// Reads in flight at once, per process: enough to hide latency, few enough not to be throttled.
pub const DEFAULT_READ_CONCURRENCY: usize = 8;

/// How long AssumeRole into an account this run created is retried: AWS documents that a new
/// account's role can take minutes to become assumable.
pub const DEFAULT_REACH_BUDGET: Duration = Duration::from_secs(10 * 60);

/// Member credentials are renewed this long before they expire (an apply can outlast the
/// one hour AssumeRole grants).
const RENEW_BEFORE: Duration = Duration::from_secs(5 * 60);

/// The partition of a region, for when no ARN has told it yet (`cn-…` is `aws-cn`, …).
pub fn partition_of_region(region: &str) -> String {
    let p = if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else if region.starts_with("us-isob-") {
        "aws-iso-b"
    } else if region.starts_with("us-iso-") {
        "aws-iso"
    } else {
        "aws"
    };
    p.to_string()
}

/// The partition an ARN names (`arn:PARTITION:service:…`).
pub fn partition_of_arn(arn: &str) -> Option<String> {
    let mut parts = arn.split(':');
    (parts.next() == Some("arn"))
        .then(|| parts.next())
        .flatten()
        .filter(|p| !p.is_empty())
        .map(str::to_string)
}

/// Who the credentials act as: an account, in a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub account: String,
    pub partition: String,
}

/// Retry of AssumeRole into accounts this run created, until they are reachable.
#[derive(Debug, Clone, Copy)]
pub struct ReachRetry {
    pub initial: Duration,
    pub max: Duration,
    pub budget: Duration,
}

impl Default for ReachRetry {
    fn default() -> Self {
        ReachRetry {
            initial: Duration::from_secs(2),
            max: Duration::from_secs(20),
            budget: DEFAULT_REACH_BUDGET,
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

/// Sends a request to a presigned URL instead: the URL carries its own signature, so the
/// SDK's (the Authorization header and the `x-amz-` headers it signed) is taken off.
#[derive(Debug)]
struct Presigned(String);

impl Intercept for Presigned {
    fn name(&self) -> &'static str {
        "estate::Presigned"
    }
    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request_mut();
        request.set_uri(self.0.as_str())?;
        let signed: Vec<String> = request
            .headers()
            .iter()
            .map(|(k, _)| k.to_ascii_lowercase())
            .filter(|k| k == "authorization" || k.starts_with("x-amz-"))
            .collect();
        for k in signed {
            request.headers_mut().remove(k);
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
    /// Who the base credentials act as, once asked (GetCallerIdentity).
    identity: Arc<OnceLock<Identity>>,
    /// Accounts created by this run: AssumeRole into them is retried while AWS readies them.
    new_accounts: Arc<Mutex<HashSet<String>>>,
    reach: ReachRetry,
    /// Names this run's role sessions, so CloudTrail can tell runs apart.
    run_id: Arc<str>,
}

/// Attempts of one call (the first and its retries) unless `AWS_MAX_ATTEMPTS` or the profile
/// says otherwise: at 30% of calls throttled or failed, five attempts leave one call in 400
/// failing, and the waits tolerate those (`wait::Backoff::poll`).
pub const MAX_ATTEMPTS: u32 = 5;
/// The first retry waits up to this long (exponential, jittered, up to [`MAX_BACKOFF`]): one
/// throttle costs a fraction of a second, not the seconds of the SDK's default 1 s base.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The retry configuration of every client: standard mode (not adaptive: adaptive's client
/// rate limiter, once throttled, spaces every later call of the process, and one throttle
/// made a plan take 6–20 s instead of 2 s), [`MAX_ATTEMPTS`], short backoffs. A mode or
/// attempts the user set (`AWS_RETRY_MODE`, `AWS_MAX_ATTEMPTS`, the profile) win.
pub fn retry_config(loaded: Option<&RetryConfig>) -> RetryConfig {
    const SDK_DEFAULT_ATTEMPTS: u32 = 3;
    let chosen_attempts = loaded
        .map(RetryConfig::max_attempts)
        .filter(|&n| n != SDK_DEFAULT_ATTEMPTS || std::env::var_os("AWS_MAX_ATTEMPTS").is_some());
    let base = match loaded {
        Some(c) if std::env::var_os("AWS_RETRY_MODE").is_some() => c.clone(),
        _ => RetryConfig::standard(),
    };
    base.with_max_attempts(chosen_attempts.unwrap_or(MAX_ATTEMPTS))
        .with_initial_backoff(INITIAL_BACKOFF)
        .with_max_backoff(MAX_BACKOFF)
}

/// Timeouts of every AWS call: connecting, each attempt, and the whole call with its retries.
/// AWS answers in well under a second; these only bound calls that will never be answered.
pub fn timeouts() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .read_timeout(std::time::Duration::from_secs(60))
        .operation_attempt_timeout(std::time::Duration::from_secs(60))
        .operation_timeout(std::time::Duration::from_secs(300))
        .build()
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
            // A profile asked for wins over keys in the environment (the default chain reads
            // those first): a missing profile is an error, never silently someone else.
            let provider = aws_config::profile::ProfileFileCredentialsProvider::builder()
                .profile_name(p)
                .build();
            // Asked once here, so a missing or broken profile is said by its name.
            use aws_credential_types::provider::ProvideCredentials;
            if let Err(e) = provider.provide_credentials().await {
                return Err(AwsError::Profile {
                    profile: p.to_string(),
                    message: e.to_string(),
                });
            }
            loader = loader.profile_name(p).credentials_provider(provider);
        }
        if let Some(r) = region {
            loader = loader.region(aws_config::Region::new(r.to_string()));
        }
        let config = loader.load().await;
        if config.region().is_none() {
            return Err(AwsError::NoRegion);
        }
        let config = config
            .to_builder()
            .retry_config(retry_config(config.retry_config()))
            .build();
        // Nothing may hang: a call that gets no answer fails (and is retried), so an apply
        // waiting on it stops instead of holding its lock forever.
        let config = config.to_builder().timeout_config(timeouts()).build();
        Ok(Aws::from_config(config, member_role))
    }

    /// Wraps an existing configuration (tests use this with mocked clients).
    pub fn from_config(config: SdkConfig, member_role: &str) -> Aws {
        let started = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        Aws {
            config,
            stats: Arc::new(CallStats::default()),
            reads: Arc::new(Semaphore::new(DEFAULT_READ_CONCURRENCY)),
            member_role: member_role.to_string(),
            members: Arc::default(),
            extra: Vec::new(),
            identity: Arc::default(),
            new_accounts: Arc::default(),
            reach: ReachRetry::default(),
            run_id: format!("{started}-{}", std::process::id()).into(),
        }
    }

    /// How AssumeRole into accounts this run created is retried.
    pub fn with_reach_retry(mut self, reach: ReachRetry) -> Aws {
        self.reach = reach;
        self
    }

    /// The role session name of this run: `estate-<start time>-<pid>`.
    pub fn session_name(&self) -> String {
        format!("estate-{}", self.run_id)
    }

    /// Records that this run created `account`: it may refuse AssumeRole for a while.
    pub fn mark_new_account(&self, account: &str) {
        self.new_accounts
            .lock()
            .expect("new accounts lock")
            .insert(account.to_string());
    }

    /// The partition: from the caller's identity once known, else from the region.
    pub fn partition(&self) -> String {
        match self.identity.get() {
            Some(i) => i.partition.clone(),
            None => partition_of_region(&self.region().unwrap_or_default()),
        }
    }

    /// Who the credentials act as (one GetCallerIdentity per run).
    pub async fn identity(&self) -> Result<Identity, AwsError> {
        if let Some(i) = self.identity.get() {
            return Ok(i.clone());
        }
        let out = self
            .sts()
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| AwsError::call("STS.GetCallerIdentity", e))?;
        let identity = Identity {
            account: out.account.unwrap_or_default(),
            partition: out
                .arn
                .as_deref()
                .and_then(partition_of_arn)
                .unwrap_or_else(|| partition_of_region(&self.region().unwrap_or_default())),
        };
        Ok(self.identity.get_or_init(|| identity).clone())
    }

    /// Adds an interceptor to every client this edge builds (tests use mock responders).
    pub fn with_interceptor(mut self, interceptor: impl Intercept + 'static) -> Aws {
        self.extra.push(SharedInterceptor::new(interceptor));
        self
    }

    pub fn stats(&self) -> &Arc<CallStats> {
        &self.stats
    }

    /// The role estate acts through in member accounts (and names in CreateAccount).
    pub fn member_role(&self) -> &str {
        &self.member_role
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

    /// The object at a presigned S3 URL (one AWS hands out, such as a Service Catalog
    /// version's template): an S3 GetObject whose request is sent to the URL as it is.
    pub async fn get_presigned(&self, url: &str, region: &str) -> Result<Vec<u8>, AwsError> {
        let out = self
            .s3(region)
            .get_object()
            // Placeholders: the interceptor sends the request to `url`.
            .bucket("presigned")
            .key("object")
            .customize()
            .config_override(
                aws_sdk_s3::config::Config::builder().interceptor(Presigned(url.to_string())),
            )
            .send()
            .await
            .map_err(|e| AwsError::call("S3.GetObject", e))?;
        let body = out.body.collect().await.map_err(|e| AwsError::Call {
            operation: "S3.GetObject".into(),
            code: None,
            message: format!("reading the object: {e}"),
            transient: true,
        })?;
        Ok(body.into_bytes().to_vec())
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
        Ok(self.identity().await?.account)
    }

    /// The edge acting in `account`: itself when that is the account it runs as (`caller`),
    /// otherwise through `memberRole`.
    pub async fn acting_in(&self, account: &str, caller: &str) -> Result<Aws, AwsError> {
        if account == caller {
            Ok(self.clone())
        } else {
            self.member(account).await
        }
    }

    /// The same edge acting in a member account, through `memberRole` (cached per account).
    /// Credentials are renewed before they expire. An account this run created may refuse
    /// AssumeRole for a while: that is retried with backoff, within [`ReachRetry::budget`].
    pub async fn member(&self, account: &str) -> Result<Aws, AwsError> {
        if let Some(config) = self.members.lock().expect("members lock").get(account) {
            return Ok(self.with_config(config.clone()));
        }
        let role_arn = format!(
            "arn:{}:iam::{account}:role/{}",
            self.partition(),
            self.member_role
        );
        tracing::info!("assuming {role_arn}");
        let provider = MemberCredentials {
            sts: self.sts(),
            role_arn: role_arn.clone(),
            session: self.session_name(),
            account: account.to_string(),
            cached: Mutex::new(None),
        };
        let new = self
            .new_accounts
            .lock()
            .expect("new accounts lock")
            .contains(account);
        let started = std::time::Instant::now();
        let mut wait = self.reach.initial;
        loop {
            match provider.assume().await {
                Ok(_) => break,
                Err(AwsError::AssumeRole { message, .. })
                    if new
                        && message.contains("AccessDenied")
                        && started.elapsed() + wait < self.reach.budget =>
                {
                    tracing::info!(
                        "account {account} is not reachable yet ({message}); retrying in {wait:?}"
                    );
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(self.reach.max);
                }
                Err(e) => return Err(e),
            }
        }
        let config = self
            .config
            .to_builder()
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(provider),
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
            identity: self.identity.clone(),
            new_accounts: self.new_accounts.clone(),
            reach: self.reach,
            run_id: self.run_id.clone(),
        }
    }
}

/// Credentials of `memberRole` in one account: assumed on demand and kept until shortly
/// before they expire, then assumed again (the SDK asks whenever it signs a request).
#[derive(Debug)]
struct MemberCredentials {
    sts: aws_sdk_sts::Client,
    role_arn: String,
    session: String,
    account: String,
    cached: Mutex<Option<aws_credential_types::Credentials>>,
}

impl MemberCredentials {
    async fn assume(&self) -> Result<aws_credential_types::Credentials, AwsError> {
        if let Some(c) = self.cached.lock().expect("credentials lock").as_ref() {
            let fresh = c
                .expiry()
                .is_none_or(|e| e > SystemTime::now() + RENEW_BEFORE);
            if fresh {
                return Ok(c.clone());
            }
        }
        let failed = |message: String| AwsError::AssumeRole {
            role: self.role_arn.clone(),
            account: self.account.clone(),
            message,
        };
        let out = self
            .sts
            .assume_role()
            .role_arn(&self.role_arn)
            .role_session_name(&self.session)
            .send()
            .await
            .map_err(|e| failed(AwsError::call("STS.AssumeRole", e).to_string()))?;
        let creds = out
            .credentials
            .ok_or_else(|| failed("no credentials returned".into()))?;
        let credentials = aws_credential_types::Credentials::new(
            creds.access_key_id,
            creds.secret_access_key,
            Some(creds.session_token),
            SystemTime::try_from(creds.expiration).ok(),
            "estate-assume-role",
        );
        *self.cached.lock().expect("credentials lock") = Some(credentials.clone());
        Ok(credentials)
    }
}

impl aws_credential_types::provider::ProvideCredentials for MemberCredentials {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        aws_credential_types::provider::future::ProvideCredentials::new(async move {
            self.assume()
                .await
                .map_err(aws_credential_types::provider::error::CredentialsError::provider_error)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_from_arns_and_regions() {
        assert_eq!(
            partition_of_arn("arn:aws-cn:sts::123456789012:assumed-role/x/y").as_deref(),
            Some("aws-cn")
        );
        assert_eq!(partition_of_arn("not-an-arn"), None);
        assert_eq!(partition_of_region("us-gov-west-1"), "aws-us-gov");
        assert_eq!(partition_of_region("cn-north-1"), "aws-cn");
        assert_eq!(partition_of_region("eu-west-1"), "aws");
    }
}
