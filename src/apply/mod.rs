//! Apply: carries out a Plan's changes through the AWS edge, in dependency order, batched
//! (one stack-set operation per action and parameter-override group), waiting on each
//! operation and reporting every failed instance. Values the Plan masks (NoEcho parameters,
//! whole templates) come from the desired state the Plan was computed from.

pub mod catalog;
pub mod lock;
pub mod prerequisites;
pub mod templates;

use crate::aws::{Aws, AwsError};
use crate::live::LiveState;
use crate::live::read::TAG_OVERRIDES;
use crate::plan::desired::{Desired, DesiredInstance, DesiredStackSet};
use crate::plan::{
    AccountSide, Action, Address, Change, Hint, InstanceSide, Plan, ResourceType, ShapeError,
    StackSetSide, UnitSide,
};
use futures::stream::{self, StreamExt};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ApplyError {
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error("account {name}: creation failed: {reason}")]
    AccountFailed { name: String, reason: String },
    /// Several independent steps failed (accounts created at once): each one's error.
    #[error("{}", .0.join("; "))]
    Several(Vec<String>),
    #[error("{0}")]
    Inconsistent(String),
    #[error(transparent)]
    Shape(#[from] ShapeError),
    #[error("{what} failed: {reason}")]
    ShareFailed { what: String, reason: String },
    #[error("{what} failed: {reason} ({hint})")]
    Prerequisite {
        what: String,
        reason: String,
        hint: String,
    },
    #[error("timed out after {seconds}s waiting for {what}")]
    Timeout { what: String, seconds: u64 },
}

/// How often and how long to wait on AWS's asynchronous operations.
#[derive(Debug, Clone, Copy)]
pub struct Polling {
    pub initial: Duration,
    pub max: Duration,
    pub timeout: Duration,
}

impl Default for Polling {
    fn default() -> Self {
        Polling {
            initial: Duration::from_secs(2),
            max: Duration::from_secs(20),
            timeout: Duration::from_secs(3 * 3600),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Independent stack sets worked on at once.
    pub parallelism: usize,
    pub polling: Polling,
    /// The Estate's `templateBucket`, if set.
    pub template_bucket: Option<String>,
    pub home_region: String,
}

/// What apply reports as it goes (a progress bar on a terminal, log lines otherwise).
pub trait Progress: Send + Sync {
    fn event(&self, event: Event);
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A step begins: `what` says which AWS action, on how many instances.
    Started {
        address: String,
        what: String,
    },
    /// An asynchronous operation changed state.
    Operation {
        stack_set: String,
        operation_id: String,
        status: String,
    },
    Done {
        address: String,
    },
    Failed {
        address: String,
        message: String,
    },
}

/// Progress that discards events (library callers that do not care).
pub struct Silent;
impl Progress for Silent {
    fn event(&self, _: Event) {}
}

/// The changes carried out, in order. Each is reported as `Event::Done` the moment it is
/// recorded, so progress, and a stop or failure part-way, know how much live has moved.
pub(crate) struct Done<'a> {
    addresses: Vec<Address>,
    progress: &'a dyn Progress,
}

impl<'a> Done<'a> {
    pub(crate) fn new(progress: &'a dyn Progress) -> Self {
        Done {
            addresses: Vec::new(),
            progress,
        }
    }

    pub(crate) fn push(&mut self, address: &Address) {
        self.progress.event(Event::Done {
            address: address.to_string(),
        });
        self.addresses.push(address.clone());
    }

    /// Adds changes another `Done` already reported.
    pub(crate) fn append(&mut self, reported: Vec<Address>) {
        self.addresses.extend(reported);
    }

    pub(crate) fn into_vec(self) -> Vec<Address> {
        self.addresses
    }
}

/// One instance AWS could not converge, with its reason.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct InstanceFailure {
    pub account: String,
    pub region: String,
    pub status: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StepFailure {
    pub stack_set: String,
    pub step: String,
    pub message: String,
    pub instances: Vec<InstanceFailure>,
}

/// What apply did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Report {
    /// Addresses of changes carried out.
    pub done: Vec<Address>,
    pub failures: Vec<StepFailure>,
    /// AWS stack-set operations started, by stack set.
    pub operations: BTreeMap<String, Vec<String>>,
}

/// A deterministic operation id: the same plan and step always give the same id, so a re-run
/// of an interrupted apply finds the operation it already started instead of starting another.
pub fn operation_id(fingerprint: &str, step: &str) -> String {
    let digest = Sha256::digest(format!("{fingerprint}\n{step}").as_bytes());
    format!("estate-{}", hex::encode(&digest[..16]))
}

// ------------------------------------------------------------------ organization

/// Units, new accounts (created, then moved into their unit) and account moves: the changes
/// that belong to no environment, always applied first. Returns the addresses done.
pub async fn organization(
    aws: &Aws,
    plan: &Plan,
    live: &LiveState,
    estate: &str,
    polling: Polling,
    progress: &dyn Progress,
) -> Result<Vec<Address>, ApplyError> {
    let org = aws.organizations();
    let mut done = Done::new(progress);
    let mut unit_ids: BTreeMap<String, String> = live
        .units
        .iter()
        .map(|u| (u.path.clone(), u.id.clone()))
        .collect();
    unit_ids.insert("/".into(), live.root_id.clone());
    let tag = |k: &str, v: &str| {
        aws_sdk_organizations::types::Tag::builder()
            .key(k)
            .value(v)
            .build()
            .expect("key and value are set")
    };

    // Units in plan order: the manifest lists parents before children.
    for c in plan
        .changes
        .iter()
        .filter(|c| c.resource_type == ResourceType::Unit)
    {
        let UnitSide { path, parent } = c.after_as()?;
        let parent_id = unit_ids.get(parent).cloned().ok_or_else(|| {
            ApplyError::Inconsistent(format!("parent unit {parent} of {path} does not exist"))
        })?;
        let name = path.rsplit('/').next().unwrap_or_default();
        progress.event(Event::Started {
            address: c.address.to_string(),
            what: format!("CreateOrganizationalUnit {name} under {parent}"),
        });
        let out = org
            .create_organizational_unit()
            .parent_id(&parent_id)
            .name(name)
            .tags(tag(crate::live::TAG_MANAGED_BY, estate))
            .send()
            .await
            .map_err(|e| AwsError::call("Organizations.CreateOrganizationalUnit", e))?;
        let id = out
            .organizational_unit
            .and_then(|u| u.id)
            .unwrap_or_default();
        unit_ids.insert(path.clone(), id);
        done.push(&c.address);
    }

    // New accounts, several at once: each is created (or found, if an earlier run's request
    // is still in progress or has succeeded), then moved into its unit.
    let mut creates = Vec::new();
    for c in plan
        .changes
        .iter()
        .filter(|c| c.resource_type == ResourceType::Account && c.action == Action::Create)
    {
        let after: &AccountSide = c.after_as()?;
        let given = |v: &Option<String>, what: &str| {
            v.clone().ok_or_else(|| {
                ApplyError::Inconsistent(format!("{}: the plan gives no {what}", c.address))
            })
        };
        creates.push(NewAccount {
            address: c.address.clone(),
            name: given(&after.name, "name")?,
            email: given(&after.email, "email")?,
            unit: after.unit.clone().filter(|u| u != "/"),
        });
    }
    if !creates.is_empty() {
        let earlier = creation_requests(aws).await?;
        let mut results = stream::iter(creates.iter().map(|a| {
            let unit_ids = &unit_ids;
            let earlier = &earlier;
            async move {
                progress.event(Event::Started {
                    address: a.address.to_string(),
                    what: format!("CreateAccount {} <{}>", a.name, a.email),
                });
                let id = find_or_create_account(aws, a, earlier, estate, polling).await?;
                aws.mark_new_account(&id);
                if let Some(unit) = &a.unit {
                    let dest = unit_ids.get(unit).cloned().ok_or_else(|| {
                        ApplyError::Inconsistent(format!("unit {unit} does not exist"))
                    })?;
                    move_account(aws, &id, &live.root_id, &dest, polling).await?;
                }
                Ok::<_, ApplyError>(a.address.clone())
            }
        }))
        .buffer_unordered(ACCOUNT_CREATIONS_AT_ONCE);
        let mut failures = Vec::new();
        while let Some(result) = results.next().await {
            match result {
                Ok(address) => done.push(&address),
                Err(e) => failures.push(e),
            }
        }
        // Every account's failure is reported, not only the first.
        match failures.len() {
            0 => {}
            1 => return Err(failures.remove(0)),
            _ => {
                return Err(ApplyError::Several(
                    failures.iter().map(ToString::to_string).collect(),
                ));
            }
        }
    }

    for c in plan
        .changes
        .iter()
        .filter(|c| c.resource_type == ResourceType::Account && c.action == Action::Update)
    {
        let before: &AccountSide = c.before_as()?;
        let (Some(id), Some(from)) = (&before.id, &before.unit) else {
            return Err(ApplyError::Inconsistent(format!(
                "{}: the plan gives no account id or unit to move from",
                c.address
            )));
        };
        let to = c
            .after_as::<AccountSide>()?
            .unit
            .clone()
            .ok_or_else(|| ApplyError::Inconsistent("move without unit".into()))?;
        progress.event(Event::Started {
            address: c.address.to_string(),
            what: format!("MoveAccount {id} {from} → {to}"),
        });
        let (Some(src), Some(dest)) = (unit_ids.get(from), unit_ids.get(&to)) else {
            return Err(ApplyError::Inconsistent(format!(
                "cannot move {id}: unit {from} or {to} is unknown"
            )));
        };
        move_account(aws, id, src, dest, polling).await?;
        done.push(&c.address);
    }
    // Accounts are never closed or removed by the reconciler.
    Ok(done.into_vec())
}

/// Creation requests in flight at once: below AWS's quota of 5 in progress per organization.
pub const ACCOUNT_CREATIONS_AT_ONCE: usize = 4;

/// An account the plan creates.
struct NewAccount {
    address: Address,
    name: String,
    email: String,
    unit: Option<String>,
}

/// Whether an Organizations error is AWS asking to come back later: another request is
/// changing the same thing, the creation quota is in use, or the call was throttled.
fn try_again_later(e: &AwsError) -> bool {
    match e {
        AwsError::Call { code, message, .. } => {
            matches!(
                code.as_deref(),
                Some("ConcurrentModificationException" | "TooManyRequestsException")
            ) || (code.as_deref() == Some("ConstraintViolationException")
                && message.contains("ACCOUNT_CREATION_RATE_LIMIT_EXCEEDED"))
        }
        _ => false,
    }
}

async fn move_account(
    aws: &Aws,
    id: &str,
    from: &str,
    to: &str,
    polling: Polling,
) -> Result<(), ApplyError> {
    let mut wait = Backoff::new(polling);
    loop {
        let result = aws
            .organizations()
            .move_account()
            .account_id(id)
            .source_parent_id(from)
            .destination_parent_id(to)
            .send()
            .await
            .map_err(|e| AwsError::call("Organizations.MoveAccount", e));
        match result {
            Ok(_) => return Ok(()),
            Err(e) if try_again_later(&e) => wait.sleep(&format!("moving account {id}")).await?,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Creation requests AWS still has in progress or has completed (ListCreateAccountStatus,
/// every page): a re-run after a cut-off apply finds its own request instead of creating the
/// account twice.
async fn creation_requests(
    aws: &Aws,
) -> Result<Vec<aws_sdk_organizations::types::CreateAccountStatus>, AwsError> {
    use aws_sdk_organizations::types::CreateAccountState;
    let mut out = Vec::new();
    let mut pages = aws
        .organizations()
        .list_create_account_status()
        .states(CreateAccountState::InProgress)
        .states(CreateAccountState::Succeeded)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AwsError::call("Organizations.ListCreateAccountStatus", e))?;
        out.extend(page.create_account_statuses.unwrap_or_default());
    }
    Ok(out)
}

/// The email of an account (DescribeAccount); `None` for one no longer in the organization.
async fn email_of(aws: &Aws, id: &str) -> Result<Option<String>, AwsError> {
    let out = aws
        .organizations()
        .describe_account()
        .account_id(id)
        .send()
        .await;
    match out {
        Ok(out) => Ok(out.account.and_then(|a| a.email)),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_account_not_found_exception()) =>
        {
            Ok(None)
        }
        Err(e) => Err(AwsError::call("Organizations.DescribeAccount", e)),
    }
}

/// Creates one account (no earlier request considered) and waits until it SUCCEEDED.
pub async fn create_account(
    aws: &Aws,
    name: &str,
    email: &str,
    estate: &str,
    polling: Polling,
) -> Result<String, ApplyError> {
    let a = NewAccount {
        address: Address::Account {
            key: name.to_string(),
        },
        name: name.to_string(),
        email: email.to_string(),
        unit: None,
    };
    find_or_create_account(aws, &a, &[], estate, polling).await
}

/// Creates one account, or finds the one an earlier run asked for, and waits until AWS says
/// it SUCCEEDED; returns its id. A request of the same name still in progress is waited for
/// and taken when its account has this email; so is a succeeded one (ListCreateAccountStatus
/// carries no email: DescribeAccount tells). The account's role is `memberRole`.
async fn find_or_create_account(
    aws: &Aws,
    a: &NewAccount,
    earlier: &[aws_sdk_organizations::types::CreateAccountStatus],
    estate: &str,
    polling: Polling,
) -> Result<String, ApplyError> {
    use aws_sdk_organizations::types::CreateAccountState;
    let same_name: Vec<_> = earlier
        .iter()
        .filter(|s| s.account_name.as_deref() == Some(a.name.as_str()))
        .collect();
    for s in same_name {
        let id = match (&s.state, &s.id) {
            (Some(CreateAccountState::Succeeded), _) => s.account_id.clone(),
            (Some(CreateAccountState::InProgress), Some(request)) => {
                tracing::info!(
                    "account {}: an earlier request ({request}) is in progress; waiting for it",
                    a.name
                );
                match wait_for_creation(aws, &a.name, request, polling).await {
                    Ok(id) => Some(id),
                    // Failed: it is not an account; ours is created below.
                    Err(ApplyError::AccountFailed { .. }) => None,
                    Err(e) => return Err(e),
                }
            }
            _ => None,
        };
        if let Some(id) = id {
            if email_of(aws, &id)
                .await?
                .is_some_and(|e| e.eq_ignore_ascii_case(&a.email))
            {
                tracing::info!("account {}: found {id}, created by an earlier run", a.name);
                return Ok(id);
            }
        }
    }

    let org = aws.organizations();
    let mut wait = Backoff::new(polling);
    let out = loop {
        let result = org
            .create_account()
            .account_name(&a.name)
            .email(&a.email)
            .role_name(aws.member_role())
            .tags(
                aws_sdk_organizations::types::Tag::builder()
                    .key(crate::live::TAG_MANAGED_BY)
                    .value(estate)
                    .build()
                    .expect("key and value are set"),
            )
            .send()
            .await;
        // AWS says "too many in progress" in the exception's Reason, not its message.
        let rate_limited = result.as_ref().err().and_then(|e| e.as_service_error()).is_some_and(|e| {
            matches!(
                e,
                aws_sdk_organizations::operation::create_account::CreateAccountError::ConstraintViolationException(c)
                    if c.reason == Some(aws_sdk_organizations::types::ConstraintViolationExceptionReason::AccountCreationRateLimitExceeded)
            )
        });
        let result = result.map_err(|e| AwsError::call("Organizations.CreateAccount", e));
        match result {
            Ok(out) => break out,
            Err(_) if rate_limited => wait.sleep(&format!("creating account {}", a.name)).await?,
            Err(e) if try_again_later(&e) => {
                wait.sleep(&format!("creating account {}", a.name)).await?
            }
            Err(e) => return Err(e.into()),
        }
    };
    let request = out
        .create_account_status
        .and_then(|s| s.id)
        .ok_or_else(|| {
            ApplyError::Inconsistent(format!("CreateAccount {}: no request id returned", a.name))
        })?;
    wait_for_creation(aws, &a.name, &request, polling).await
}

/// DescribeCreateAccountStatus, with backoff, until the request SUCCEEDED (its account id) or
/// FAILED (AWS's reason).
async fn wait_for_creation(
    aws: &Aws,
    name: &str,
    request: &str,
    polling: Polling,
) -> Result<String, ApplyError> {
    use aws_sdk_organizations::types::CreateAccountState;
    let org = aws.organizations();
    let mut wait = Backoff::new(polling);
    loop {
        let status = match org
            .describe_create_account_status()
            .create_account_request_id(request)
            .send()
            .await
            .map_err(|e| AwsError::call("Organizations.DescribeCreateAccountStatus", e))
        {
            Ok(out) => out.create_account_status,
            Err(e) if try_again_later(&e) => None,
            Err(e) => return Err(e.into()),
        };
        if let Some(status) = status {
            match status.state {
                Some(CreateAccountState::Succeeded) => {
                    return status.account_id.ok_or_else(|| {
                        ApplyError::Inconsistent(format!("account {name} succeeded without an id"))
                    });
                }
                Some(CreateAccountState::Failed) => {
                    return Err(ApplyError::AccountFailed {
                        name: name.to_string(),
                        reason: status
                            .failure_reason
                            .map_or("no reason given".into(), |r| r.as_str().to_string()),
                    });
                }
                _ => {}
            }
        }
        wait.sleep(&format!("account {name}")).await?;
    }
}

// ------------------------------------------------------------------ stack sets

/// Applies the stack-set changes of `plan`, one environment after another in the plan's
/// order; within an environment independent stack sets run concurrently (bounded), and the
/// steps of one stack set run one after another.
pub async fn stack_sets(
    aws: &Aws,
    plan: &Plan,
    desired: &Desired,
    opts: &Options,
    progress: &dyn Progress,
) -> Report {
    let mut report = Report::default();
    for env in &plan.environments {
        // Waves: a stack set whose policies name roles other sets create waits for them.
        let mut waves: BTreeMap<u8, Vec<&str>> = BTreeMap::new();
        for c in plan.changes.iter().filter(|c| {
            c.environment.as_deref() == Some(env)
                && matches!(
                    c.resource_type,
                    ResourceType::StackSet | ResourceType::StackInstance
                )
        }) {
            let Some(name) = c.address.stack_set() else {
                continue;
            };
            let wave = desired
                .stack_sets
                .iter()
                .find(|d| d.name == name)
                .map_or(0, |d| d.wave);
            let names = waves.entry(wave).or_default();
            if !names.contains(&name) {
                names.push(name);
            }
        }
        let mut failed = false;
        // Stack sets whose changes did not all apply (failed, or in a wave never started).
        let mut not_done: BTreeSet<String> = BTreeSet::new();
        for names in waves.into_values() {
            if failed {
                not_done.extend(names.iter().map(|n| n.to_string()));
                continue;
            }
            let before = report.failures.len();
            failed = run_wave(aws, plan, desired, opts, progress, env, names, &mut report).await;
            not_done.extend(
                report.failures[before..]
                    .iter()
                    .map(|f| f.stack_set.clone()),
            );
        }
        // A source bundle goes up once its own pipeline's tools part applied.
        for c in plan.changes.iter().filter(|c| {
            c.environment.as_deref() == Some(env) && c.resource_type == ResourceType::Pipeline
        }) {
            let Address::Pipeline { name: pipeline } = &c.address else {
                continue;
            };
            if not_done.contains(&crate::pipeline::tools_stack_set(pipeline)) {
                progress.event(Event::Failed {
                    address: c.address.to_string(),
                    message: "skipped: the pipeline's tools part did not apply".into(),
                });
                continue;
            }
            progress.event(Event::Started {
                address: c.address.to_string(),
                what: "PutObject source bundle".into(),
            });
            match upload_source(aws, pipeline, desired, opts).await {
                Ok(()) => {
                    progress.event(Event::Done {
                        address: c.address.to_string(),
                    });
                    report.done.push(c.address.clone());
                }
                Err(message) => {
                    progress.event(Event::Failed {
                        address: c.address.to_string(),
                        message: message.clone(),
                    });
                    report.failures.push(StepFailure {
                        stack_set: c.address.to_string(),
                        step: "UploadSourceBundle".into(),
                        message,
                        instances: Vec::new(),
                    });
                    failed = true;
                }
            }
        }
        // A later stage never runs on top of a failed earlier one.
        if failed {
            break;
        }
    }
    report
        .failures
        .sort_by(|a, b| a.stack_set.cmp(&b.stack_set));
    report
}

/// Uploads a pipeline's source bundle to its artifact bucket, encrypted with its key (the
/// bucket policy refuses anything else), as the bucket's owner expects.
async fn upload_source(
    aws: &Aws,
    pipeline: &str,
    desired: &Desired,
    opts: &Options,
) -> Result<(), String> {
    let src = desired
        .sources
        .iter()
        .find(|s| s.pipeline == pipeline)
        .ok_or_else(|| format!("pipeline {pipeline} has no source bundle in the manifest"))?;
    let account = src
        .account
        .id
        .clone()
        .ok_or_else(|| format!("the tools account of pipeline {pipeline} does not exist"))?;
    let edge = aws
        .acting_in(&account, &src.management_account)
        .await
        .map_err(|e| e.to_string())?;
    let region = &opts.home_region;
    edge.s3(region)
        .put_object()
        .bucket(&src.bucket)
        .key(src.bundle.key())
        .expected_bucket_owner(&account)
        .body(src.bundle.zip().into())
        .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
        .ssekms_key_id(format!(
            "arn:{}:kms:{region}:{account}:{}",
            aws.partition(),
            src.key_alias
        ))
        .send()
        .await
        .map_err(|e| AwsError::call("S3.PutObject", e).to_string())?;
    Ok(())
}

/// Works on the stack sets of one wave of an environment, at most `parallelism` at once;
/// true when one failed.
#[allow(clippy::too_many_arguments)]
async fn run_wave(
    aws: &Aws,
    plan: &Plan,
    desired: &Desired,
    opts: &Options,
    progress: &dyn Progress,
    env: &str,
    names: Vec<&str>,
    report: &mut Report,
) -> bool {
    let results: Vec<(String, Result<StackSetOutcome, StepFailure>)> = stream::iter(names)
        .map(|name| async move {
            let changes: Vec<&Change> = plan
                .changes
                .iter()
                .filter(|c| {
                    c.environment.as_deref() == Some(env) && c.address.stack_set() == Some(name)
                })
                .collect();
            let d = desired.stack_sets.iter().find(|d| d.name == name);
            let r =
                apply_stack_set(aws, &plan.fingerprint, name, d, &changes, opts, progress).await;
            if let Err(f) = &r {
                progress.event(Event::Failed {
                    address: format!("stackSet:{name}"),
                    message: format!("{}: {}", f.step, f.message),
                });
            }
            (name.to_string(), r)
        })
        .buffer_unordered(opts.parallelism.max(1))
        .collect()
        .await;
    let mut failed = false;
    for (name, r) in results {
        match r {
            Ok(outcome) => {
                report.done.extend(outcome.done.into_vec());
                report.operations.insert(name, outcome.operations);
            }
            Err(f) => {
                failed = true;
                report.failures.push(f);
            }
        }
    }
    failed
}

struct StackSetOutcome<'a> {
    done: Done<'a>,
    operations: Vec<String>,
}

/// One batched instance operation: these accounts × these regions, with these overrides.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub accounts: Vec<String>,
    pub regions: Vec<String>,
    pub overrides: BTreeMap<String, String>,
    /// Deletes only: keep the stacks (accounts AWS can no longer reach).
    pub retain: bool,
    /// Service-managed stack sets: the units AWS is given, narrowed to `accounts`.
    pub units: Vec<String>,
    /// Retries: the operations they follow, so each attempt has an operation id of its own.
    pub since: Vec<String>,
    pub addresses: Vec<Address>,
}

/// Key of an instance group: its parameter overrides, whether stacks are retained, its units,
/// account.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Overrides(BTreeMap<String, String>, bool, Vec<String>, String);

/// Groups instance changes into as few calls as AWS allows: a call covers accounts × regions
/// with one set of overrides, so instances are grouped by overrides, then by region set.
pub fn batches(instances: &[(Address, &DesiredInstanceView)]) -> Vec<Batch> {
    // (overrides, account) → (its regions, the plan addresses they cover)
    let mut by_account: BTreeMap<Overrides, (BTreeSet<String>, Vec<Address>)> = BTreeMap::new();
    for (address, i) in instances {
        let entry = by_account
            .entry(Overrides(
                i.overrides.clone(),
                i.retain,
                i.units.clone(),
                i.account.clone(),
            ))
            .or_default();
        entry.0.insert(i.region.clone());
        entry.1.push(address.clone());
    }
    type Key = (BTreeMap<String, String>, bool, Vec<String>, Vec<String>);
    let mut groups: BTreeMap<Key, Batch> = BTreeMap::new();
    let since: BTreeMap<&str, &str> = instances
        .iter()
        .filter_map(|(_, i)| Some((i.account.as_str(), i.since.as_deref()?)))
        .collect();
    for (Overrides(overrides, retain, units, account), (regions, addresses)) in by_account {
        let regions: Vec<String> = regions.into_iter().collect();
        let batch = groups
            .entry((overrides.clone(), retain, units.clone(), regions.clone()))
            .or_insert_with(|| Batch {
                accounts: Vec::new(),
                regions,
                overrides,
                retain,
                units,
                since: Vec::new(),
                addresses: Vec::new(),
            });
        if let Some(op) = since.get(account.as_str()) {
            batch.since.push(op.to_string());
        }
        batch.accounts.push(account);
        batch.addresses.extend(addresses);
    }
    for b in groups.values_mut() {
        b.since.sort();
        b.since.dedup();
    }
    groups.into_values().collect()
}

/// An instance as apply sees it: a known account id, a region, overrides with real values.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredInstanceView {
    pub account: String,
    pub region: String,
    pub overrides: BTreeMap<String, String>,
    /// Removed with its stack kept (the plan's `RetainStacks` hint).
    pub retain: bool,
    /// Service-managed stack sets: the units to name (AWS takes no account alone).
    pub units: Vec<String>,
    /// A retry: the operation it follows (part of its operation id).
    pub since: Option<String>,
}

fn instance_view(
    d: Option<&DesiredStackSet>,
    c: &Change,
) -> Result<DesiredInstanceView, ApplyError> {
    let side: &InstanceSide = c.side_as()?;
    let account = side.account.clone().ok_or_else(|| {
        ApplyError::Inconsistent(format!(
            "{}: the account is not known yet; run apply again once it exists",
            c.address
        ))
    })?;
    let region = side.region.clone();
    let before = c.before_as::<InstanceSide>().ok();
    // Real override values (the Plan masks NoEcho ones) come from the desired state.
    let overrides = d
        .and_then(|d| {
            d.instances.iter().find(|i: &&DesiredInstance| {
                i.account.id.as_deref() == Some(&account) && i.region == region
            })
        })
        .map(|i| i.overrides.clone())
        .unwrap_or_default();
    // Service-managed: created and updated through the environment's units, removed through
    // the unit AWS deployed the instance through.
    let deployed_through = before
        .and_then(|b| b.organizational_unit_id.clone())
        .map(|u| vec![u]);
    let units = match (d, c.action) {
        (_, Action::Delete) if deployed_through.is_some() => deployed_through.unwrap_or_default(),
        (Some(d), _) if d.permission_model == "SERVICE_MANAGED" => d.unit_ids.clone(),
        _ => Vec::new(),
    };
    if d.is_some_and(|d| d.permission_model == "SERVICE_MANAGED") && units.is_empty() {
        return Err(ApplyError::Inconsistent(format!(
            "{}: the units of a service-managed stack set are not known yet; run apply again once they exist",
            c.address
        )));
    }
    Ok(DesiredInstanceView {
        account,
        region,
        overrides,
        retain: c.hint == Some(Hint::RetainStacks),
        units,
        since: before.and_then(|b| b.last_operation.clone()),
    })
}

#[allow(clippy::too_many_arguments)]
async fn apply_stack_set<'p>(
    aws: &Aws,
    fingerprint: &str,
    name: &str,
    d: Option<&DesiredStackSet>,
    changes: &[&Change],
    opts: &Options,
    progress: &'p dyn Progress,
) -> Result<StackSetOutcome<'p>, StepFailure> {
    let fail = |step: &str, message: String, instances: Vec<InstanceFailure>| StepFailure {
        stack_set: name.to_string(),
        step: step.to_string(),
        message,
        instances,
    };
    let cfn = aws.cloudformation(&opts.home_region);
    let ops = Ops {
        cfn: &cfn,
        name,
        fingerprint,
        polling: opts.polling,
        progress,
        preferences: d.map(|d| preferences(&d.operation)),
    };
    let mut outcome = StackSetOutcome {
        done: Done::new(progress),
        operations: Vec::new(),
    };
    let set_change = changes
        .iter()
        .find(|c| c.resource_type == ResourceType::StackSet);
    let instance_changes =
        |action: Action| -> Result<Vec<(Address, DesiredInstanceView)>, StepFailure> {
            changes
                .iter()
                .filter(|c| c.resource_type == ResourceType::StackInstance && c.action == action)
                .map(|c| {
                    instance_view(d, c)
                        .map(|v| (c.address.clone(), v))
                        .map_err(|e| fail("resolve", e.to_string(), Vec::new()))
                })
                .collect()
        };

    let set_action = set_change.map(|c| c.action);
    // Replace: AWS cannot change the permission model in place; delete everything, recreate.
    if set_action == Some(Action::Replace) || set_action == Some(Action::Delete) {
        let live_instances: Vec<(Address, DesiredInstanceView)> = instance_changes(Action::Delete)?;
        run_batches(
            &ops,
            "DeleteStackInstances",
            &live_instances,
            &mut outcome,
            true,
        )
        .await?;
        ops.delete_stack_set()
            .await
            .map_err(|e| fail("DeleteStackSet", e.to_string(), Vec::new()))?;
        if set_action == Some(Action::Delete) {
            outcome.done.push(&Address::StackSet {
                name: name.to_string(),
            });
            return Ok(outcome);
        }
    }
    if matches!(set_action, Some(Action::Create | Action::Replace)) {
        let d = d.ok_or_else(|| fail("CreateStackSet", "no desired state".into(), Vec::new()))?;
        let template = templates::location(aws, d, opts)
            .await
            .map_err(|e| fail("UploadTemplate", e.to_string(), Vec::new()))?;
        progress.event(Event::Started {
            address: format!("stackSet:{name}"),
            what: "CreateStackSet".into(),
        });
        ops.create_stack_set(d, &template)
            .await
            .map_err(|e| fail("CreateStackSet", e.to_string(), Vec::new()))?;
        outcome.done.push(&Address::StackSet {
            name: name.to_string(),
        });
    }
    let updates = instance_changes(Action::Update)?;
    // The overrides digest tag tells the next plan whether instances' overrides must be read.
    // Written before the instances carry the new overrides, an apply cut off in between would
    // leave a tag claiming overrides no instance has, and the next plan would not look: so the
    // first UpdateStackSet keeps the live tag, and the new one is written after the instances.
    let live_digest = set_change
        .and_then(|c| c.before_as::<StackSetSide>().ok())
        .and_then(|b| b.tags.get(TAG_OVERRIDES).cloned());
    let digest_moves = set_action == Some(Action::Update)
        && !updates.is_empty()
        && d.and_then(|d| d.tags.get(TAG_OVERRIDES)) != live_digest.as_ref();
    let tag_only =
        digest_moves && set_change.is_some_and(|c| c.hint == Some(Hint::OverridesTagOnly));
    let mut template = None;
    if set_action == Some(Action::Update) {
        let d = d.ok_or_else(|| fail("UpdateStackSet", "no desired state".into(), Vec::new()))?;
        let location = templates::location(aws, d, opts)
            .await
            .map_err(|e| fail("UploadTemplate", e.to_string(), Vec::new()))?;
        if !tag_only {
            let mut first = d.clone();
            if digest_moves {
                match &live_digest {
                    Some(v) => first.tags.insert(TAG_OVERRIDES.into(), v.clone()),
                    None => first.tags.remove(TAG_OVERRIDES),
                };
            }
            progress.event(Event::Started {
                address: format!("stackSet:{name}"),
                what: "UpdateStackSet".into(),
            });
            let op = ops
                .update_stack_set(&first, &location, None, "update")
                .await
                .map_err(|e| fail("UpdateStackSet", e.to_string(), Vec::new()))?;
            outcome.operations.push(op.clone());
            ops.wait(&op, "UpdateStackSet").await?;
        }
        if !digest_moves {
            outcome.done.push(&Address::StackSet {
                name: name.to_string(),
            });
        }
        template = Some(location);
    }
    if set_action != Some(Action::Replace) && set_action != Some(Action::Delete) {
        let deletes = instance_changes(Action::Delete)?;
        run_batches(&ops, "DeleteStackInstances", &deletes, &mut outcome, true).await?;
    }
    // Instances whose stack is gone: removed (nothing to delete, RetainStacks), created again.
    let replaced = instance_changes(Action::Replace)?;
    run_batches(&ops, "DeleteStackInstances", &replaced, &mut outcome, false).await?;
    run_batches(&ops, "CreateStackInstances", &replaced, &mut outcome, true).await?;
    let creates = instance_changes(Action::Create)?;
    run_batches(&ops, "CreateStackInstances", &creates, &mut outcome, true).await?;
    run_batches(&ops, "UpdateStackInstances", &updates, &mut outcome, true).await?;
    if let (true, Some(d), Some(location), Some((_, first))) =
        (digest_moves, d, &template, updates.first())
    {
        // One instance is named so the operation stays small: nothing else changes.
        progress.event(Event::Started {
            address: format!("stackSet:{name}"),
            what: "UpdateStackSet: the overrides tag, now the instances carry them".into(),
        });
        let op = ops
            .update_stack_set(
                d,
                location,
                Some((&first.account, &first.region)),
                "update-overrides-tag",
            )
            .await
            .map_err(|e| fail("UpdateStackSet", e.to_string(), Vec::new()))?;
        outcome.operations.push(op.clone());
        ops.wait(&op, "UpdateStackSet").await?;
        outcome.done.push(&Address::StackSet {
            name: name.to_string(),
        });
    }
    Ok(outcome)
}

/// One operation per batch, each waited for; `finishes`: the batch completes its changes
/// (not so the first half of a replacement).
async fn run_batches(
    ops: &Ops<'_>,
    action: &str,
    instances: &[(Address, DesiredInstanceView)],
    outcome: &mut StackSetOutcome<'_>,
    finishes: bool,
) -> Result<(), StepFailure> {
    let refs: Vec<(Address, &DesiredInstanceView)> =
        instances.iter().map(|(a, v)| (a.clone(), v)).collect();
    for batch in batches(&refs) {
        ops.progress.event(Event::Started {
            address: format!("stackSet:{}", ops.name),
            what: format!(
                "{action}: {} account{} × {} region{}",
                batch.accounts.len(),
                if batch.accounts.len() == 1 { "" } else { "s" },
                batch.regions.len(),
                if batch.regions.len() == 1 { "" } else { "s" }
            ),
        });
        let op = ops
            .instances(action, &batch)
            .await
            .map_err(|e| StepFailure {
                stack_set: ops.name.to_string(),
                step: action.to_string(),
                message: e.to_string(),
                instances: Vec::new(),
            })?;
        outcome.operations.push(op.clone());
        ops.wait(&op, action).await?;
        if finishes {
            for address in &batch.addresses {
                outcome.done.push(address);
            }
        }
    }
    Ok(())
}

/// The calls for one stack set.
struct Ops<'a> {
    cfn: &'a aws_sdk_cloudformation::Client,
    name: &'a str,
    fingerprint: &'a str,
    polling: Polling,
    progress: &'a dyn Progress,
    /// The manifest's operation preferences, for instance operations too (AWS's default is
    /// one account at a time, stopping at the first failure).
    preferences: Option<aws_sdk_cloudformation::types::StackSetOperationPreferences>,
}

fn parameters(values: &BTreeMap<String, String>) -> Vec<aws_sdk_cloudformation::types::Parameter> {
    values
        .iter()
        .map(|(k, v)| {
            aws_sdk_cloudformation::types::Parameter::builder()
                .parameter_key(k)
                .parameter_value(v)
                .build()
        })
        .collect()
}

fn preferences(
    op: &crate::manifest::model::OperationPreferences,
) -> aws_sdk_cloudformation::types::StackSetOperationPreferences {
    use aws_sdk_cloudformation::types::{RegionConcurrencyType, StackSetOperationPreferences};
    let to_i32 = |v: Option<u32>| v.map(|n| n as i32);
    StackSetOperationPreferences::builder()
        .set_max_concurrent_percentage(to_i32(op.max_concurrent_percentage))
        .set_max_concurrent_count(to_i32(op.max_concurrent_count))
        .set_failure_tolerance_percentage(to_i32(op.failure_tolerance_percentage))
        .set_failure_tolerance_count(to_i32(op.failure_tolerance_count))
        .set_region_concurrency_type(op.region_concurrency.map(|r| match r {
            crate::manifest::model::RegionConcurrency::Sequential => {
                RegionConcurrencyType::Sequential
            }
            crate::manifest::model::RegionConcurrency::Parallel => RegionConcurrencyType::Parallel,
        }))
        .set_region_order(op.region_order.clone())
        .set_concurrency_mode(
            op.concurrency_mode
                .map(|m| aws_sdk_cloudformation::types::ConcurrencyMode::from(m.as_str())),
        )
        .build()
}

fn capabilities(d: &DesiredStackSet) -> Vec<aws_sdk_cloudformation::types::Capability> {
    d.capabilities
        .iter()
        .map(|c| aws_sdk_cloudformation::types::Capability::from(c.as_str()))
        .collect()
}

fn stack_set_tags(d: &DesiredStackSet) -> Vec<aws_sdk_cloudformation::types::Tag> {
    d.tags
        .iter()
        .map(|(k, v)| {
            aws_sdk_cloudformation::types::Tag::builder()
                .key(k)
                .value(v)
                .build()
        })
        .collect()
}

fn auto_deployment(d: &DesiredStackSet) -> Option<aws_sdk_cloudformation::types::AutoDeployment> {
    d.auto_deployment.map(|a| {
        aws_sdk_cloudformation::types::AutoDeployment::builder()
            .enabled(a.enabled)
            .retain_stacks_on_account_removal(a.retain_stacks_on_account_removal)
            .build()
    })
}

impl Ops<'_> {
    fn op_id(&self, step: &str) -> String {
        operation_id(self.fingerprint, &format!("{}/{step}", self.name))
    }

    async fn create_stack_set(
        &self,
        d: &DesiredStackSet,
        template: &templates::Location,
    ) -> Result<(), AwsError> {
        use aws_sdk_cloudformation::types::PermissionModels;
        let mut req = self
            .cfn
            .create_stack_set()
            .stack_set_name(&d.name)
            .set_description(d.description.clone())
            .set_parameters(Some(parameters(&d.parameters)))
            .set_capabilities(Some(capabilities(d)))
            .set_tags(Some(stack_set_tags(d)))
            .permission_model(PermissionModels::from(d.permission_model.as_str()))
            .set_administration_role_arn(d.administration_role_arn.clone())
            .set_execution_role_name(d.execution_role_name.clone())
            .client_request_token(self.op_id("create"));
        req = match template {
            templates::Location::Body(b) => req.template_body(b),
            templates::Location::Url(u) => req.template_url(u),
        };
        req = req.set_auto_deployment(auto_deployment(d));
        match req.send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = AwsError::call("CloudFormation.CreateStackSet", e);
                if e.code() != Some("NameAlreadyExistsException") {
                    return Err(e);
                }
                // Ours, from an earlier run cut off after creating it; or someone else's,
                // made since the plan: then a conflict, never taken over.
                let existing = self
                    .cfn
                    .describe_stack_set()
                    .stack_set_name(&d.name)
                    .send()
                    .await
                    .map_err(|e| AwsError::call("CloudFormation.DescribeStackSet", e))?;
                let owner = existing
                    .stack_set
                    .and_then(|s| s.tags)
                    .unwrap_or_default()
                    .into_iter()
                    .find(|t| t.key.as_deref() == Some(crate::live::TAG_MANAGED_BY))
                    .and_then(|t| t.value);
                if owner.as_ref() == d.tags.get(crate::live::TAG_MANAGED_BY) {
                    Ok(())
                } else {
                    Err(AwsError::Call {
                        operation: "CloudFormation.CreateStackSet".into(),
                        code: Some("NameAlreadyExistsException".into()),
                        message: format!(
                            "conflict: stack set {} was created outside this estate since the plan ({}); estate will not take it over",
                            d.name,
                            owner.map_or("no estate tag".to_string(), |o| format!(
                                "managed by `{o}`"
                            ))
                        ),
                    })
                }
            }
        }
    }

    /// UpdateStackSet to `d`; with `only`, just that instance is updated, with the previous
    /// template and parameters so AWS leaves the others as they are, for a change no stack
    /// needs (the overrides tag).
    async fn update_stack_set(
        &self,
        d: &DesiredStackSet,
        template: &templates::Location,
        only: Option<(&str, &str)>,
        step: &str,
    ) -> Result<String, AwsError> {
        let op_id = self.op_id(step);
        let send = || {
            let mut req = self
                .cfn
                .update_stack_set()
                .stack_set_name(&d.name)
                .set_description(d.description.clone())
                .set_capabilities(Some(capabilities(d)))
                .set_tags(Some(stack_set_tags(d)))
                .set_administration_role_arn(d.administration_role_arn.clone())
                .set_execution_role_name(d.execution_role_name.clone())
                .operation_preferences(preferences(&d.operation))
                .operation_id(&op_id);
            req = match (only, template) {
                // Naming one instance: AWS marks every other instance OUTDATED when the
                // template or the parameters are given (UpdateStackSet, Accounts), so neither
                // is: the previous template, and parameters left as they are. Service-managed
                // stack sets take no account alone: their units, narrowed to it.
                (Some((account, region)), _) if d.permission_model == "SERVICE_MANAGED" => req
                    .use_previous_template(true)
                    .deployment_targets(
                        aws_sdk_cloudformation::types::DeploymentTargets::builder()
                            .set_organizational_unit_ids(Some(d.unit_ids.clone()))
                            .accounts(account)
                            .account_filter_type(
                                aws_sdk_cloudformation::types::AccountFilterType::Intersection,
                            )
                            .build(),
                    )
                    .regions(region),
                (Some((account, region)), _) => req
                    .use_previous_template(true)
                    .accounts(account)
                    .regions(region),
                (None, templates::Location::Body(b)) => req
                    .template_body(b)
                    .set_parameters(Some(parameters(&d.parameters))),
                (None, templates::Location::Url(u)) => req
                    .template_url(u)
                    .set_parameters(Some(parameters(&d.parameters))),
            };
            req = req.set_auto_deployment(auto_deployment(d));
            req.send()
        };
        let mut retry = Backoff::new(self.polling);
        loop {
            match send().await {
                Ok(out) => return Ok(out.operation_id.unwrap_or(op_id)),
                Err(e) => {
                    let e = AwsError::call("CloudFormation.UpdateStackSet", e);
                    match e.code() {
                        Some("OperationIdAlreadyExistsException") => return Ok(op_id),
                        Some("OperationInProgressException") => {
                            self.wait_for_running(&mut retry).await?
                        }
                        _ => return Err(e),
                    }
                }
            }
        }
    }

    async fn delete_stack_set(&self) -> Result<(), AwsError> {
        let mut retry = Backoff::new(self.polling);
        loop {
            match self
                .cfn
                .delete_stack_set()
                .stack_set_name(self.name)
                .send()
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) => {
                    let e = AwsError::call("CloudFormation.DeleteStackSet", e);
                    match e.code() {
                        Some("StackSetNotFoundException") => return Ok(()),
                        Some("OperationInProgressException") => {
                            self.wait_for_running(&mut retry).await?
                        }
                        _ => return Err(e),
                    }
                }
            }
        }
    }

    /// Create, update or delete instances in one call; retries behind a running operation.
    async fn instances(&self, action: &str, b: &Batch) -> Result<String, AwsError> {
        let step = format!(
            "{action}{}/{}{}/{}/{}",
            if b.retain { "-retain" } else { "" },
            if b.units.is_empty() {
                String::new()
            } else {
                format!("{}:", b.units.join(","))
            },
            if b.since.is_empty() {
                b.accounts.join(",")
            } else {
                format!("{}@{}", b.accounts.join(","), b.since.join(","))
            },
            b.regions.join(","),
            b.overrides
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        let op_id = self.op_id(&step);
        let mut retry = Backoff::new(self.polling);
        loop {
            // Service-managed: the units, narrowed to exactly these accounts.
            let (accounts, targets) = if b.units.is_empty() {
                (Some(b.accounts.clone()), None)
            } else {
                (
                    None,
                    Some(
                        aws_sdk_cloudformation::types::DeploymentTargets::builder()
                            .set_organizational_unit_ids(Some(b.units.clone()))
                            .set_accounts(Some(b.accounts.clone()))
                            .account_filter_type(
                                aws_sdk_cloudformation::types::AccountFilterType::Intersection,
                            )
                            .build(),
                    ),
                )
            };
            let result = match action {
                "CreateStackInstances" => self
                    .cfn
                    .create_stack_instances()
                    .stack_set_name(self.name)
                    .set_accounts(accounts.clone())
                    .set_deployment_targets(targets.clone())
                    .set_regions(Some(b.regions.clone()))
                    .set_parameter_overrides(
                        (!b.overrides.is_empty()).then(|| parameters(&b.overrides)),
                    )
                    .set_operation_preferences(self.preferences.clone())
                    .operation_id(&op_id)
                    .send()
                    .await
                    .map(|o| o.operation_id)
                    .map_err(|e| AwsError::call("CloudFormation.CreateStackInstances", e)),
                "UpdateStackInstances" => self
                    .cfn
                    .update_stack_instances()
                    .stack_set_name(self.name)
                    .set_accounts(accounts.clone())
                    .set_deployment_targets(targets.clone())
                    .set_regions(Some(b.regions.clone()))
                    .set_parameter_overrides(Some(parameters(&b.overrides)))
                    .set_operation_preferences(self.preferences.clone())
                    .operation_id(&op_id)
                    .send()
                    .await
                    .map(|o| o.operation_id)
                    .map_err(|e| AwsError::call("CloudFormation.UpdateStackInstances", e)),
                _ => self
                    .cfn
                    .delete_stack_instances()
                    .stack_set_name(self.name)
                    .set_accounts(accounts.clone())
                    .set_deployment_targets(targets.clone())
                    .set_regions(Some(b.regions.clone()))
                    .retain_stacks(b.retain)
                    .set_operation_preferences(self.preferences.clone())
                    .operation_id(&op_id)
                    .send()
                    .await
                    .map(|o| o.operation_id)
                    .map_err(|e| AwsError::call("CloudFormation.DeleteStackInstances", e)),
            };
            match result {
                Ok(id) => return Ok(id.unwrap_or(op_id)),
                Err(e) => match e.code() {
                    // This very step was started by an earlier, interrupted apply.
                    Some("OperationIdAlreadyExistsException") => return Ok(op_id),
                    Some("OperationInProgressException") => {
                        self.wait_for_running(&mut retry).await?
                    }
                    _ => return Err(e),
                },
            }
        }
    }

    /// Waits for whatever operation is running on the stack set (another apply, the console).
    /// `retry` spans all attempts of one call: when AWS refuses with OperationInProgress but
    /// lists nothing running (the list is eventually consistent and paged), it backs off
    /// before the next attempt and gives up at the timeout, instead of spinning.
    async fn wait_for_running(&self, retry: &mut Backoff) -> Result<(), AwsError> {
        use aws_sdk_cloudformation::types::StackSetOperationStatus as S;
        let timed_out = |e: ApplyError| AwsError::Call {
            operation: "CloudFormation.ListStackSetOperations".into(),
            code: None,
            message: e.to_string(),
        };
        let mut wait = Backoff::new(self.polling);
        let mut waited = false;
        loop {
            let out = self
                .cfn
                .list_stack_set_operations()
                .stack_set_name(self.name)
                .send()
                .await
                .map_err(|e| AwsError::call("CloudFormation.ListStackSetOperations", e))?;
            let running = out
                .summaries
                .unwrap_or_default()
                .into_iter()
                .any(|s| matches!(s.status, Some(S::Running | S::Queued | S::Stopping)));
            if !running {
                if !waited {
                    retry
                        .sleep(&format!("the operation in progress on {}", self.name))
                        .await
                        .map_err(timed_out)?;
                }
                return Ok(());
            }
            // One progress line for the wait, not one per poll.
            if !waited {
                self.progress.event(Event::Operation {
                    stack_set: self.name.to_string(),
                    operation_id: "(another operation)".into(),
                    status: "RUNNING".into(),
                });
                waited = true;
            }
            wait.sleep(&format!("the running operation on {}", self.name))
                .await
                .map_err(timed_out)?;
        }
    }

    /// Polls the operation until it ends; a FAILED or STOPPED one is reported with every
    /// failed account and region and its StatusReason.
    async fn wait(&self, op_id: &str, step: &str) -> Result<(), StepFailure> {
        use aws_sdk_cloudformation::types::StackSetOperationStatus as S;
        let fail = |message: String, instances| StepFailure {
            stack_set: self.name.to_string(),
            step: step.to_string(),
            message,
            instances,
        };
        let mut wait = Backoff::new(self.polling);
        let mut last = None;
        loop {
            let out = self
                .cfn
                .describe_stack_set_operation()
                .stack_set_name(self.name)
                .operation_id(op_id)
                .send()
                .await
                .map_err(|e| {
                    fail(
                        AwsError::call("CloudFormation.DescribeStackSetOperation", e).to_string(),
                        Vec::new(),
                    )
                })?;
            let Some(op) = out.stack_set_operation else {
                return Err(fail(format!("operation {op_id}: not found"), Vec::new()));
            };
            let status = op.status.clone();
            if status != last {
                self.progress.event(Event::Operation {
                    stack_set: self.name.to_string(),
                    operation_id: op_id.to_string(),
                    status: status
                        .as_ref()
                        .map_or("UNKNOWN", |s| s.as_str())
                        .to_string(),
                });
                last = status.clone();
            }
            match status {
                // Within a failure tolerance AWS reports success with instances failed: they
                // are failures of this apply all the same (and OUTDATED for the next plan).
                Some(S::Succeeded) if self.tolerates_failures() => {
                    // Unread results are not "no failures": the apply cannot vouch for them.
                    let instances = self
                        .failed_instances(op_id)
                        .await
                        .map_err(|e| fail(e.to_string(), Vec::new()))?;
                    if instances.is_empty() {
                        return Ok(());
                    }
                    return Err(fail(
                        format!(
                            "operation {op_id} SUCCEEDED within its failure tolerance, but {} instance{} failed",
                            instances.len(),
                            if instances.len() == 1 { "" } else { "s" }
                        ),
                        instances,
                    ));
                }
                Some(S::Succeeded) => return Ok(()),
                Some(S::Failed | S::Stopped) => {
                    let instances = self.failed_instances(op_id).await.unwrap_or_default();
                    return Err(fail(
                        format!(
                            "operation {op_id} {}{}",
                            status.as_ref().map_or("FAILED", |s| s.as_str()),
                            op.status_reason
                                .map(|r| format!(": {r}"))
                                .unwrap_or_default()
                        ),
                        instances,
                    ));
                }
                _ => wait
                    .sleep(&format!("operation {op_id} on {}", self.name))
                    .await
                    .map_err(|e| fail(e.to_string(), Vec::new()))?,
            }
        }
    }

    /// Whether the operation preferences let an operation succeed with failed instances.
    fn tolerates_failures(&self) -> bool {
        self.preferences.as_ref().is_some_and(|p| {
            p.failure_tolerance_count.is_some_and(|n| n > 0)
                || p.failure_tolerance_percentage.is_some_and(|n| n > 0)
        })
    }

    async fn failed_instances(&self, op_id: &str) -> Result<Vec<InstanceFailure>, AwsError> {
        use aws_sdk_cloudformation::types::StackSetOperationResultStatus as R;
        let mut out = Vec::new();
        let mut pages = self
            .cfn
            .list_stack_set_operation_results()
            .stack_set_name(self.name)
            .operation_id(op_id)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|e| AwsError::call("CloudFormation.ListStackSetOperationResults", e))?;
            for r in page.summaries.unwrap_or_default() {
                // Instances AWS cancelled after a failure are not failures themselves.
                if !matches!(r.status, Some(R::Failed)) {
                    continue;
                }
                out.push(InstanceFailure {
                    account: r.account.unwrap_or_default(),
                    region: r.region.unwrap_or_default(),
                    status: r
                        .status
                        .map_or("UNKNOWN".into(), |s| s.as_str().to_string()),
                    reason: r.status_reason.unwrap_or_else(|| "no reason given".into()),
                });
            }
        }
        Ok(out)
    }
}

/// Exponential backoff between polls, bounded by a total timeout.
pub(crate) struct Backoff {
    next: Duration,
    polling: Polling,
    started: std::time::Instant,
}

impl Backoff {
    pub(crate) fn new(polling: Polling) -> Self {
        Backoff {
            next: polling.initial,
            polling,
            started: std::time::Instant::now(),
        }
    }
    pub(crate) async fn sleep(&mut self, what: &str) -> Result<(), ApplyError> {
        if self.started.elapsed() > self.polling.timeout {
            return Err(ApplyError::Timeout {
                what: what.to_string(),
                seconds: self.polling.timeout.as_secs(),
            });
        }
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(self.polling.max);
        Ok(())
    }
}

/// Shared so progress reporters can be passed across tasks.
pub type SharedProgress = Arc<dyn Progress>;
