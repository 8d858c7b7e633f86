//! Stack-set changes per environment in promotion order: waves of independent stack sets at
//! once, each stack set's steps in order, then the environment's pipeline source bundles.

use super::batching::{DesiredInstanceView, batches};
use super::error::ApplyError;
use super::ops::Ops;
use super::ops::preferences;
use super::options::Options;
use super::progress::{Done, Event, Progress};
use super::report::{InstanceFailure, Report, StepFailure};
use super::templates;
use crate::aws::{Aws, AwsError};
use crate::live::LiveState;
use crate::manifest::Manifest;
use crate::plan::desired::{Desired, DesiredInstance, DesiredStackSet};
use crate::plan::{Action, Address, Change, Hint, InstanceSide, Plan, ResourceType, StackSetSide};
use crate::tags::TAG_OVERRIDES;
use futures::stream::{self, StreamExt};
use std::collections::{BTreeMap, BTreeSet};

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
    stack_sets_with(aws, plan, desired, None, opts, progress).await
}

/// What a consumer's outputs are resolved again from, once its producers applied: the
/// manifest and the live state the plan was made from.
#[derive(Clone, Copy)]
pub struct Sources<'a> {
    pub manifest: &'a Manifest,
    pub live: &'a LiveState,
}

/// As [`stack_sets`]; with `sources`, a wave whose stack sets use other stack sets' outputs
/// first reads those outputs (their producers applied in an earlier wave or environment) and
/// resolves the desired state again, so consumers get the values just made.
pub async fn stack_sets_with(
    aws: &Aws,
    plan: &Plan,
    desired: &Desired,
    sources: Option<Sources<'_>>,
    opts: &Options,
    progress: &dyn Progress,
) -> Report {
    let mut report = Report::default();
    // Stack sets this apply changes whose outputs have not been read since they applied: not
    // known yet. A wave's producers leave it when their outputs are read, just before it.
    let mut pending: BTreeSet<String> = plan
        .changes
        .iter()
        .filter(|c| c.environment.is_some())
        .filter_map(|c| c.address.stack_set().map(str::to_string))
        .collect();
    // The desired state once outputs applied just now are read (the first one: as planned).
    let mut refreshed: Option<Desired> = None;
    // The live state with the outputs read since the plan (the first time: as planned).
    let mut read_live: Option<LiveState> = None;
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
            let now = refreshed.as_ref().unwrap_or(desired);
            let producers: BTreeSet<String> = names
                .iter()
                .filter_map(|n| now.stack_sets.iter().find(|d| d.name == *n))
                .flat_map(|d| d.producers.iter().cloned())
                .collect();
            if failed {
                // A consumer of a producer that did not apply is reported, never attempted.
                for name in &names {
                    let uses = now
                        .stack_sets
                        .iter()
                        .find(|d| d.name == *name)
                        .is_some_and(|d| !d.producers.is_empty());
                    if uses {
                        not_attempted(name, PRODUCER_FAILED, progress, &mut report);
                    }
                }
                not_done.extend(names.iter().map(|n| n.to_string()));
                continue;
            }
            if let (false, Some(src)) = (producers.is_empty(), sources) {
                // The producers of this wave's consumers are applied: read their outputs.
                let still: BTreeSet<String> = pending.difference(&producers).cloned().collect();
                let read = read_live.get_or_insert_with(|| src.live.clone());
                match refresh_outputs(aws, src, read, plan, &producers, &still, opts).await {
                    Ok(d) => {
                        refreshed = Some(d);
                        pending = still;
                    }
                    Err(message) => {
                        for name in &names {
                            not_attempted(name, &message, progress, &mut report);
                        }
                        not_done.extend(names.iter().map(|n| n.to_string()));
                        failed = true;
                        continue;
                    }
                }
            }
            let now = refreshed.as_ref().unwrap_or(desired);
            // An output still unknown is never deployed: its producer is not applied.
            let (names, unknown): (Vec<&str>, Vec<&str>) = names.into_iter().partition(|n| {
                now.stack_sets
                    .iter()
                    .find(|d| d.name == *n)
                    .is_none_or(|d| d.unknown.is_empty())
            });
            for name in &unknown {
                let d = now.stack_sets.iter().find(|d| d.name == *name);
                let params: Vec<&str> = d
                    .map(|d| d.unknown.iter().map(String::as_str).collect())
                    .unwrap_or_default();
                let message = format!(
                    "{} hold outputs of {} not known yet (apply their environment first)",
                    params.join(", "),
                    d.map(|d| d.producers.iter().cloned().collect::<Vec<_>>().join(", "))
                        .unwrap_or_default()
                );
                not_attempted(name, &message, progress, &mut report);
                not_done.insert(name.to_string());
                failed = true;
            }
            let before = report.failures.len();
            failed |= run_wave(
                aws,
                plan,
                now,
                opts,
                progress,
                env,
                names.clone(),
                &mut report,
            )
            .await;
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
        // A later stage never runs on top of a failed earlier one; its stack sets that use
        // outputs are reported not attempted (their producer may be what failed).
        if failed {
            let now = refreshed.as_ref().unwrap_or(desired);
            let later = plan
                .environments
                .iter()
                .skip_while(|e| *e != env)
                .skip(1)
                .collect::<Vec<_>>();
            let consumers: BTreeSet<&str> = plan
                .changes
                .iter()
                .filter(|c| c.environment.as_ref().is_some_and(|e| later.contains(&e)))
                .filter_map(|c| c.address.stack_set())
                .filter(|n| {
                    now.stack_sets
                        .iter()
                        .any(|d| d.name == *n && !d.producers.is_empty())
                })
                .collect();
            for name in consumers {
                not_attempted(name, PRODUCER_FAILED, progress, &mut report);
            }
            break;
        }
    }
    report
        .failures
        .sort_by(|a, b| a.stack_set.cmp(&b.stack_set));
    report
}

const PRODUCER_FAILED: &str = "a stack set whose outputs it uses did not apply";

/// A stack set not attempted because of the outputs it uses (`why`): reported as it happens
/// and in the report, as a failed `ReadOutputs` step.
fn not_attempted(name: &str, why: &str, progress: &dyn Progress, report: &mut Report) {
    let message = format!("not attempted: {why}");
    progress.event(Event::Failed {
        address: format!("stackSet:{name}"),
        message: format!("ReadOutputs: {message}"),
    });
    report.failures.push(StepFailure {
        stack_set: name.to_string(),
        step: "ReadOutputs".into(),
        message,
        instances: Vec::new(),
    });
}

/// The desired state with the outputs of `producers` (applied just now) read again into
/// `live` (which keeps those read before earlier waves): their instances listed (new ones
/// have new stacks), then each instance's stack described. Stack sets still `pending` stay
/// "(known after apply)"; any other output must be read.
async fn refresh_outputs(
    aws: &Aws,
    src: Sources<'_>,
    live: &mut LiveState,
    plan: &Plan,
    producers: &BTreeSet<String>,
    pending: &BTreeSet<String>,
    opts: &Options,
) -> Result<Desired, String> {
    let cfn = aws.cloudformation(&opts.home_region);
    let mut wanted = Vec::new();
    for p in producers {
        let summaries = crate::live::read::list_instances(aws, &cfn, p)
            .await
            .map_err(|e| e.to_string())?;
        for i in summaries {
            if let (Some(account), Some(region), Some(id)) = (i.account, i.region, i.stack_id) {
                wanted.push((p.clone(), account, region, id));
            }
        }
    }
    live.stack_outputs
        .retain(|k, _| !producers.iter().any(|p| k.starts_with(&format!("{p}/"))));
    let caller = live.caller().to_string();
    for (key, outputs) in crate::live::read::instance_outputs(aws, &caller, wanted)
        .await
        .map_err(|e| e.to_string())?
    {
        if let Some(o) = outputs {
            live.stack_outputs.insert(key, o);
        }
    }
    crate::plan::desired::resolve_with(src.manifest, live, &plan.environments, Some(pending))
        .map_err(|e| e.to_string())
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
    let cfn = aws.cloudformation(&opts.home_region);
    let set = OneStackSet {
        aws,
        opts,
        name,
        d,
        changes,
        ops: Ops {
            cfn: &cfn,
            name,
            fingerprint,
            polling: opts.polling,
            progress,
            preferences: d.map(|d| preferences(&d.operation)),
        },
    };
    let mut outcome = StackSetOutcome {
        done: Done::new(progress),
        operations: Vec::new(),
    };
    let set_change = changes
        .iter()
        .find(|c| c.resource_type == ResourceType::StackSet);

    let set_action = set_change.map(|c| c.action);
    // Replace: AWS cannot change the permission model in place; delete everything, recreate.
    if set_action == Some(Action::Replace) || set_action == Some(Action::Delete) {
        set.delete(&mut outcome).await?;
        if set_action == Some(Action::Delete) {
            outcome.done.push(&set.address());
            return Ok(outcome);
        }
    }
    if matches!(set_action, Some(Action::Create | Action::Replace)) {
        set.create(&mut outcome).await?;
    }
    let updates = set.instance_changes(Action::Update)?;
    let tag = OverridesTag::of(set_change, d, &updates);
    let mut template = None;
    if set_action == Some(Action::Update) {
        template = Some(set.update(&tag, &mut outcome).await?);
    }
    set.instance_batches(set_action, &updates, &mut outcome)
        .await?;
    if let (true, Some(d), Some(location), Some((_, first))) =
        (tag.moves, d, &template, updates.first())
    {
        set.overrides_tag(d, location, first, &mut outcome).await?;
    }
    Ok(outcome)
}

/// One stack set being applied: what its steps call AWS with.
struct OneStackSet<'a> {
    aws: &'a Aws,
    opts: &'a Options,
    name: &'a str,
    d: Option<&'a DesiredStackSet>,
    changes: &'a [&'a Change],
    ops: Ops<'a>,
}

/// Whether and how the overrides digest tag moves in this apply.
struct OverridesTag {
    /// The tag as live has it.
    live_digest: Option<String>,
    /// The instances' overrides change, and the tag with them.
    moves: bool,
    /// The stack set's update is only the tag: no UpdateStackSet before the instances.
    tag_only: bool,
}

impl OverridesTag {
    /// How the overrides tag moves, from the stack set's change and its instances' updates.
    fn of(
        set_change: Option<&&Change>,
        d: Option<&DesiredStackSet>,
        updates: &[(Address, DesiredInstanceView)],
    ) -> Self {
        let set_action = set_change.map(|c| c.action);
        // The overrides digest tag tells the next plan whether instances' overrides must be read.
        // Written before the instances carry the new overrides, an apply cut off in between would
        // leave a tag claiming overrides no instance has, and the next plan would not look: so the
        // first UpdateStackSet keeps the live tag, and the new one is written after the instances.
        let live_digest = set_change
            .and_then(|c| c.before_as::<StackSetSide>().ok())
            .and_then(|b| b.tags.get(TAG_OVERRIDES).cloned());
        let moves = set_action == Some(Action::Update)
            && !updates.is_empty()
            && d.and_then(|d| d.tags.get(TAG_OVERRIDES)) != live_digest.as_ref();
        let tag_only = moves && set_change.is_some_and(|c| c.hint == Some(Hint::OverridesTagOnly));
        OverridesTag {
            live_digest,
            moves,
            tag_only,
        }
    }
}

impl OneStackSet<'_> {
    /// A failed step of this stack set.
    fn fail(&self, step: &str, message: String, instances: Vec<InstanceFailure>) -> StepFailure {
        StepFailure {
            stack_set: self.name.to_string(),
            step: step.to_string(),
            message,
            instances,
        }
    }

    /// The stack set's own address.
    fn address(&self) -> Address {
        Address::StackSet {
            name: self.name.to_string(),
        }
    }

    /// The instance changes of one action, as batching sees them.
    fn instance_changes(
        &self,
        action: Action,
    ) -> Result<Vec<(Address, DesiredInstanceView)>, StepFailure> {
        self.changes
            .iter()
            .filter(|c| c.resource_type == ResourceType::StackInstance && c.action == action)
            .map(|c| {
                instance_view(self.d, c)
                    .map(|v| (c.address.clone(), v))
                    .map_err(|e| self.fail("resolve", e.to_string(), Vec::new()))
            })
            .collect()
    }

    /// The first half of a replace, or a delete: every live instance, then the stack set.
    async fn delete(&self, outcome: &mut StackSetOutcome<'_>) -> Result<(), StepFailure> {
        let live_instances: Vec<(Address, DesiredInstanceView)> =
            self.instance_changes(Action::Delete)?;
        run_batches(
            &self.ops,
            "DeleteStackInstances",
            &live_instances,
            outcome,
            true,
        )
        .await?;
        self.ops
            .delete_stack_set()
            .await
            .map_err(|e| self.fail("DeleteStackSet", e.to_string(), Vec::new()))?;
        Ok(())
    }

    /// CreateStackSet, its template uploaded first where it is too large to pass inline.
    async fn create(&self, outcome: &mut StackSetOutcome<'_>) -> Result<(), StepFailure> {
        let d = self
            .d
            .ok_or_else(|| self.fail("CreateStackSet", "no desired state".into(), Vec::new()))?;
        let template = templates::location(self.aws, d, self.opts)
            .await
            .map_err(|e| self.fail("UploadTemplate", e.to_string(), Vec::new()))?;
        self.ops.progress.event(Event::Started {
            address: format!("stackSet:{}", self.name),
            what: "CreateStackSet".into(),
        });
        self.ops
            .create_stack_set(d, &template)
            .await
            .map_err(|e| self.fail("CreateStackSet", e.to_string(), Vec::new()))?;
        outcome.done.push(&self.address());
        Ok(())
    }

    /// UpdateStackSet, keeping the live overrides tag while it moves (see `OverridesTag`), or
    /// none when only the tag changes; the template's location, for the tag's own update.
    async fn update(
        &self,
        tag: &OverridesTag,
        outcome: &mut StackSetOutcome<'_>,
    ) -> Result<templates::Location, StepFailure> {
        let d = self
            .d
            .ok_or_else(|| self.fail("UpdateStackSet", "no desired state".into(), Vec::new()))?;
        let location = templates::location(self.aws, d, self.opts)
            .await
            .map_err(|e| self.fail("UploadTemplate", e.to_string(), Vec::new()))?;
        if !tag.tag_only {
            let mut first = d.clone();
            if tag.moves {
                match &tag.live_digest {
                    Some(v) => first.tags.insert(TAG_OVERRIDES.into(), v.clone()),
                    None => first.tags.remove(TAG_OVERRIDES),
                };
            }
            self.ops.progress.event(Event::Started {
                address: format!("stackSet:{}", self.name),
                what: "UpdateStackSet".into(),
            });
            let op = self
                .ops
                .update_stack_set(&first, &location, None, "update")
                .await
                .map_err(|e| self.fail("UpdateStackSet", e.to_string(), Vec::new()))?;
            outcome.operations.push(op.clone());
            self.ops.wait(&op, "UpdateStackSet").await?;
        }
        if !tag.moves {
            outcome.done.push(&self.address());
        }
        Ok(location)
    }

    /// The instance operations in order: deletes (unless the stack set's own delete did them),
    /// replacements, creates, then `updates`.
    async fn instance_batches(
        &self,
        set_action: Option<Action>,
        updates: &[(Address, DesiredInstanceView)],
        outcome: &mut StackSetOutcome<'_>,
    ) -> Result<(), StepFailure> {
        let ops = &self.ops;
        if set_action != Some(Action::Replace) && set_action != Some(Action::Delete) {
            let deletes = self.instance_changes(Action::Delete)?;
            run_batches(ops, "DeleteStackInstances", &deletes, outcome, true).await?;
        }
        // Instances whose stack is gone: removed (nothing to delete, RetainStacks), created again.
        let replaced = self.instance_changes(Action::Replace)?;
        run_batches(ops, "DeleteStackInstances", &replaced, outcome, false).await?;
        run_batches(ops, "CreateStackInstances", &replaced, outcome, true).await?;
        let creates = self.instance_changes(Action::Create)?;
        run_batches(ops, "CreateStackInstances", &creates, outcome, true).await?;
        run_batches(ops, "UpdateStackInstances", updates, outcome, true).await?;
        Ok(())
    }

    /// The overrides tag's own UpdateStackSet, once the instances carry the new overrides.
    async fn overrides_tag(
        &self,
        d: &DesiredStackSet,
        location: &templates::Location,
        first: &DesiredInstanceView,
        outcome: &mut StackSetOutcome<'_>,
    ) -> Result<(), StepFailure> {
        // One instance is named so the operation stays small: nothing else changes.
        self.ops.progress.event(Event::Started {
            address: format!("stackSet:{}", self.name),
            what: "UpdateStackSet: the overrides tag, now the instances carry them".into(),
        });
        let op = self
            .ops
            .update_stack_set(
                d,
                location,
                Some((&first.account, &first.region)),
                "update-overrides-tag",
            )
            .await
            .map_err(|e| self.fail("UpdateStackSet", e.to_string(), Vec::new()))?;
        outcome.operations.push(op.clone());
        self.ops.wait(&op, "UpdateStackSet").await?;
        outcome.done.push(&self.address());
        Ok(())
    }
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
