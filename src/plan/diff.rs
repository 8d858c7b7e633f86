//! The diff: desired against live, into changes with a reason each, and findings for what
//! the reconciler will not touch. Pure: same inputs, same plan.

use super::address::Address;
use super::desired::{Desired, DesiredInstance, DesiredStackSet};
use super::model::*;
use super::side::*;
use crate::live::read::EMPTY_OVERRIDES;
use crate::live::{AccountState, LiveInstance, LiveStackSet, LiveState};
use crate::tags::{TAG_ENVIRONMENT, TAG_MANAGED_BY, TAG_OVERRIDES, TAG_SECRETS};
use crate::template::parse_body;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// What the diff needs beyond desired and live.
pub struct DiffOptions<'a> {
    pub estate: &'a str,
    /// Environments in scope (orphans are looked for only there).
    pub environments: &'a [String],
    pub prune: bool,
    /// Accounts outside the Estate's scope (`spec.scope.units`) the manifest does not name:
    /// neither reported nor touched.
    pub out_of_scope: &'a BTreeSet<String>,
    /// The Estate's scope, when it declares one: its stack sets outside it are not orphans.
    pub scope: Option<&'a crate::manifest::model::Scope>,
}

/// Changes and findings, in plan order: units, accounts, then per environment its stack sets
/// each followed by its instances.
pub fn diff(
    desired: &Desired,
    live: &LiveState,
    opts: &DiffOptions,
) -> (Vec<Change>, Vec<Finding>) {
    let mut run = Diffing {
        desired,
        live,
        opts,
        changes: Vec::new(),
        findings: Vec::new(),
    };
    run.units();
    run.accounts();
    let inactive = run.inactive_accounts();
    for env in opts.environments {
        run.stack_sets(env, &inactive);
        run.left_the_manifest(env, &inactive);
    }
    run.orphaned_environments();
    run.sources();
    (run.changes, run.findings)
}

/// One diff's inputs and what it has found so far, in plan order.
struct Diffing<'a> {
    desired: &'a Desired,
    live: &'a LiveState,
    opts: &'a DiffOptions<'a>,
    changes: Vec<Change>,
    findings: Vec<Finding>,
}

impl Diffing<'_> {
    /// Whether a live stack set's name is within the Estate's scope.
    fn in_scope(&self, name: &str) -> bool {
        self.opts.scope.is_none_or(|s| s.has_stack_set(name))
    }

    /// The manifest's units that do not exist yet.
    fn units(&mut self) {
        for path in &self.desired.units {
            if self.live.unit_by_path(path).is_none() {
                let parent = match path.rfind('/') {
                    Some(0) | None => "/".to_string(),
                    Some(i) => path[..i].to_string(),
                };
                self.changes.push(Change {
                    hint: None,
                    reach: None,
                    address: Address::Unit { path: path.clone() },
                    resource_type: ResourceType::Unit,
                    action: Action::Create,
                    environment: None,
                    reason: format!("unit {path} does not exist"),
                    before: None,
                    after: Some(
                        UnitSide {
                            path: path.clone(),
                            parent,
                        }
                        .into(),
                    ),
                });
            }
        }
    }

    /// Accounts to create or move, then the organization's accounts the manifest does not name.
    fn accounts(&mut self) {
        let live = self.live;
        for a in &self.desired.accounts {
            let live_account = live.account_by_email(&a.email);
            match live_account {
                None => self.changes.push(Change {
                    hint: None,
                    reach: None,
                    address: Address::Account {
                        key: a.name.clone(),
                    },
                    resource_type: ResourceType::Account,
                    action: Action::Create,
                    environment: None,
                    reason: format!("no account in the organization has email {}", a.email),
                    before: None,
                    after: Some(
                        AccountSide {
                            id: None,
                            name: Some(a.name.clone()),
                            email: Some(a.email.clone()),
                            unit: a.unit.clone(),
                        }
                        .into(),
                    ),
                }),
                Some(l) => {
                    let current = live.path_of(&l.parent_id).unwrap_or("?");
                    if let Some(unit) = &a.unit {
                        let tagged = l
                            .tags
                            .as_ref()
                            .and_then(|t| t.get(TAG_MANAGED_BY))
                            .map(String::as_str);
                        if unit != current && tagged != Some(self.opts.estate) && !a.adopt {
                            // Not created by this estate, and not adopted: not estate's to move.
                            self.findings.push(Finding {
                                kind: FindingKind::Conflict,
                                address: Address::Account {
                                    key: a.name.clone(),
                                },
                                environment: None,
                                message: format!(
                                    "account {} ({}, {}) is in {current} and the manifest puts it in {unit}, but {}; it is not moved unless its entry says `adopt: true`",
                                    a.name,
                                    l.id,
                                    l.email,
                                    match tagged {
                                        Some(other) => format!("it is estate `{other}`'s"),
                                        None => format!(
                                            "estate did not create it (no tag {TAG_MANAGED_BY}={})",
                                            self.opts.estate
                                        ),
                                    }
                                ),
                            });
                        } else if unit != current {
                            self.changes.push(Change {
                                // An adopted account is tagged as it is moved.
                                hint: (a.adopt && tagged != Some(self.opts.estate))
                                    .then_some(Hint::Adopt),
                                reach: None,
                                address: Address::Account {
                                    key: a.name.clone(),
                                },
                                resource_type: ResourceType::Account,
                                action: Action::Update,
                                environment: None,
                                reason: format!(
                                    "account {} ({}) is in {current}; the manifest puts it in {unit}",
                                    a.name, l.id
                                ),
                                before: Some(placement(&l.id, current)),
                                after: Some(placement(&l.id, unit)),
                            });
                        }
                    }
                }
            }
        }
        for l in &live.accounts {
            let known = self
                .desired
                .accounts
                .iter()
                .any(|a| a.email.eq_ignore_ascii_case(&l.email));
            if !known && l.id != live.management_account && !self.opts.out_of_scope.contains(&l.id)
            {
                self.findings.push(Finding {
                    kind: FindingKind::Unmanaged,
                    address: Address::Account { key: l.id.clone() },
                    environment: None,
                    message: format!(
                        "account {} ({}, {}) in {} is not in the manifest; it is left alone",
                        l.name,
                        l.id,
                        l.email,
                        live.path_of(&l.parent_id).unwrap_or("?")
                    ),
                });
            }
        }
    }

    /// The accounts AWS reports other than ACTIVE, by id, with a finding for each the manifest names.
    fn inactive_accounts(&mut self) -> BTreeMap<String, AccountState> {
        // Accounts AWS reports other than ACTIVE, by id: their instances are not deleted as
        // targets that went away, but removed (closing) or left alone (pending activation).
        let inactive: BTreeMap<String, AccountState> = self
            .live
            .accounts
            .iter()
            .filter(|a| a.state != AccountState::Active)
            .map(|a| (a.id.clone(), a.state))
            .collect();
        for a in &self.desired.accounts {
            if let Some(l) = self
                .live
                .account_by_email(&a.email)
                .filter(|l| l.state != AccountState::Active)
            {
                self.findings.push(Finding {
                    kind: FindingKind::Inactive,
                    address: Address::Account {
                        key: a.name.clone(),
                    },
                    environment: None,
                    message: if l.state.is_closing() {
                        format!(
                            "account {} ({}) is {}: AWS can no longer deploy to it; its stack instances are removed, their stacks left in the account",
                            a.name, l.id, l.state
                        )
                    } else {
                        format!(
                            "account {} ({}) is {}: it takes no new stack instances, and keeps those it has, until AWS says it is ACTIVE or closed",
                            a.name, l.id, l.state
                        )
                    },
                });
            }
        }
        inactive
    }

    /// The environment's stack sets: created, updated, or left alone as another's.
    fn stack_sets(&mut self, env: &str, inactive: &BTreeMap<String, AccountState>) {
        let estate = self.opts.estate;
        for d in self
            .desired
            .stack_sets
            .iter()
            .filter(|s| s.environment == env)
        {
            match self.live.stack_sets.get(&d.name) {
                None => create_stack_set(d, &mut self.changes),
                // Explicitly adopted, and no estate's: planned as this estate's.
                Some(l) if d.adopt && !l.tags.contains_key(TAG_MANAGED_BY) => update_stack_set(
                    d,
                    l,
                    inactive,
                    self.opts.out_of_scope,
                    &mut self.changes,
                    &mut self.findings,
                ),
                Some(l) if l.tags.get(TAG_MANAGED_BY).map(String::as_str) != Some(estate) => {
                    self.findings.push(Finding {
                        kind: FindingKind::Conflict,
                        address: Address::StackSet {
                            name: d.name.clone(),
                        },
                        environment: Some(env.to_string()),
                        message: match l.tags.get(TAG_MANAGED_BY) {
                            Some(other) => format!(
                                "stack set {} exists and is managed by estate `{other}`; it is not touched",
                                d.name
                            ),
                            None => format!(
                                "stack set {} exists without the tag {TAG_MANAGED_BY}={}; estate will not take it over unless the manifest adopts it (`adopt: true`)",
                                d.name, estate
                            ),
                        },
                    });
                }
                Some(l) => update_stack_set(
                    d,
                    l,
                    inactive,
                    self.opts.out_of_scope,
                    &mut self.changes,
                    &mut self.findings,
                ),
            }
        }
    }

    /// Managed stack sets of the environment that left the manifest: deleted under `prune`,
    /// reported otherwise.
    fn left_the_manifest(&mut self, env: &str, inactive: &BTreeMap<String, AccountState>) {
        // Managed stack sets of this environment that left the manifest.
        for l in self.live.stack_sets.values() {
            let ours = l.tags.get(TAG_MANAGED_BY).map(String::as_str) == Some(self.opts.estate)
                && l.tags.get(TAG_ENVIRONMENT).map(String::as_str) == Some(env);
            // A pipeline's tools part moves with its last stage: a plan of the environment
            // it left must not take it for an orphan.
            if !ours
                || self.desired.stack_sets.iter().any(|d| d.name == l.name)
                || self.desired.compiled.contains(&l.name)
                || !self.in_scope(&l.name)
            {
                continue;
            }
            if self.opts.prune {
                prune_stack_set(l, env, inactive, &mut self.changes);
            } else {
                self.findings.push(Finding {
                    kind: FindingKind::Orphan,
                    address: Address::StackSet {
                        name: l.name.clone(),
                    },
                    environment: Some(env.to_string()),
                    message: format!(
                        "stack set {} is managed by this estate but no longer in the manifest; set `prune: true` to delete it",
                        l.name
                    ),
                });
            }
        }
    }

    /// Managed stack sets of environments the manifest no longer has, when every one is planned.
    fn orphaned_environments(&mut self) {
        // Managed stack sets of an environment the manifest no longer has: no environment in the
        // plan owns them, so apply would never reach a delete; they are reported whatever `prune`
        // says. Only when every environment is planned: `--env` limits orphans to its scope.
        if !self
            .desired
            .environments
            .iter()
            .all(|e| self.opts.environments.contains(e))
        {
            return;
        }
        for l in self.live.stack_sets.values() {
            let ours = l.tags.get(TAG_MANAGED_BY).map(String::as_str) == Some(self.opts.estate);
            let Some(env) = l.tags.get(TAG_ENVIRONMENT) else {
                continue;
            };
            if ours && !self.desired.environments.contains(env) && self.in_scope(&l.name) {
                self.findings.push(Finding {
                    kind: FindingKind::Orphan,
                    address: Address::StackSet {
                        name: l.name.clone(),
                    },
                    environment: Some(env.clone()),
                    message: format!(
                        "stack set {} is managed by this estate, but its environment {env} is no longer in the manifest, so no plan deletes it; delete it by hand, or add the environment back with `prune: true`",
                        l.name
                    ),
                });
            }
        }
    }

    /// Pipelines' source bundles to upload, and artifact buckets in the way of a tools part.
    fn sources(&mut self) {
        // A pipeline's source bundle, once its content-addressed object is missing.
        for src in &self.desired.sources {
            let tools_set = crate::pipeline::tools_stack_set(&src.pipeline);
            if !self.live.stack_sets.contains_key(&tools_set)
                && self.live.pipeline_buckets.contains(&src.bucket)
            {
                self.findings.push(Finding {
                    kind: FindingKind::Conflict,
                    address: Address::Pipeline {
                        name: src.pipeline.clone(),
                    },
                    environment: Some(src.environment.clone()),
                    message: format!(
                        "the artifact bucket {} already exists (kept from a deleted pipeline of this name, or another account's): creating the pipeline's tools part will fail until it is emptied and deleted, or the pipeline renamed",
                        src.bucket
                    ),
                });
            }
            let key = src.bundle.key();
            if self
                .live
                .pipeline_sources
                .contains(&format!("{}/{key}", src.bucket))
            {
                continue;
            }
            self.changes.push(Change {
                hint: None,
                reach: None,
                address: Address::Pipeline {
                    name: src.pipeline.clone(),
                },
                resource_type: ResourceType::Pipeline,
                action: Action::Create,
                environment: Some(src.environment.clone()),
                reason: format!(
                    "source bundle {key} is not in the artifact bucket {}",
                    src.bucket
                ),
                before: None,
                after: Some(
                    BundleSide {
                        account: src.account.key(),
                        bucket: src.bucket.clone(),
                        key,
                        files: src.bundle.files.keys().cloned().collect(),
                    }
                    .into(),
                ),
            });
        }
    }
}

/// A managed stack set that left the manifest under `prune`: its instances, then itself, deleted.
fn prune_stack_set(
    l: &LiveStackSet,
    env: &str,
    inactive: &BTreeMap<String, AccountState>,
    changes: &mut Vec<Change>,
) {
    // No manifest template says which values are secret: the live one does.
    let sensitive = no_echo(&parse_body(&l.template_body).unwrap_or(Value::Null));
    for i in l.instances.iter().flatten() {
        changes.push(instance_delete(
            &l.name,
            env,
            i,
            format!("stack set {} left the manifest (prune is on)", l.name),
            &sensitive,
            inactive,
        ));
    }
    changes.push(Change {
        hint: None,
        reach: None,
        address: Address::StackSet {
            name: l.name.clone(),
        },
        resource_type: ResourceType::StackSet,
        action: Action::Delete,
        environment: Some(env.to_string()),
        reason: format!("stack set {} left the manifest (prune is on)", l.name),
        before: Some(live_json(l, &BTreeSet::new(), None).into()),
        after: None,
    });
}

/// An account in a unit: a move's before and after.
fn placement(id: &str, unit: &str) -> Side {
    AccountSide {
        id: Some(id.to_string()),
        name: None,
        email: None,
        unit: Some(unit.to_string()),
    }
    .into()
}

fn create_stack_set(d: &DesiredStackSet, changes: &mut Vec<Change>) {
    changes.push(Change {
        hint: None,
        reach: None,
        address: Address::StackSet {
            name: d.name.clone(),
        },
        resource_type: ResourceType::StackSet,
        action: Action::Create,
        environment: Some(d.environment.clone()),
        reason: format!("stack set {} does not exist", d.name),
        before: None,
        after: Some(desired_json(d)),
    });
    for i in &d.instances {
        changes.push(instance_change(
            &d.name,
            &d.environment,
            Action::Create,
            &i.account.key(),
            &i.region,
            format!("{} is {}", account_phrase(&i.account), role_of(d)),
            None,
            Some(instance_json(d, i)),
        ));
    }
}

/// A retry names the operation it follows (the instance's last), so its own operation id
/// differs from any earlier attempt's: AWS would otherwise answer the new attempt with the
/// old, failed operation.
fn since(li: &LiveInstance, before: &mut InstanceSide, after: &mut InstanceSide) {
    before.last_operation.clone_from(&li.last_operation);
    after.last_operation.clone_from(&li.last_operation);
}

/// An instance delete in an account AWS says is closing keeps its stack: AWS cannot reach
/// the account to delete it, and would fail the operation trying.
fn retained(mut c: Change, inactive: &BTreeMap<String, AccountState>, account: &str) -> Change {
    if inactive.get(account).is_some_and(|s| s.is_closing()) {
        c.hint = Some(Hint::RetainStacks);
    }
    c
}

/// The delete of a live instance, its stack retained where its account is closing.
fn instance_delete(
    stack_set: &str,
    env: &str,
    li: &LiveInstance,
    reason: String,
    sensitive: &BTreeSet<String>,
    inactive: &BTreeMap<String, AccountState>,
) -> Change {
    retained(
        instance_change(
            stack_set,
            env,
            Action::Delete,
            &li.account,
            &li.region,
            reason,
            Some(live_instance_json(stack_set, li, sensitive)),
            None,
        ),
        inactive,
        &li.account,
    )
}

/// Why a stack set's accounts are its targets, for reasons.
fn role_of(d: &DesiredStackSet) -> String {
    use crate::pipeline::{source_stack_set, tools_stack_set};
    use crate::tags::TAG_PIPELINE;
    match d.tags.get(TAG_PIPELINE) {
        Some(p) if d.name == tools_stack_set(p) => format!("the tools account of pipeline {p}"),
        Some(p) if d.name == source_stack_set(p) => format!("the source account of pipeline {p}"),
        _ => format!("a target of {}", d.environment),
    }
}

fn account_phrase(a: &super::desired::AccountRef) -> String {
    match (&a.id, &a.name) {
        (Some(id), Some(name)) => format!("account {name} ({id})"),
        (Some(id), None) => format!("account {id}"),
        (None, Some(name)) => format!("account {name} (created by this plan)"),
        (None, None) => "an account".into(),
    }
}

#[allow(clippy::too_many_arguments)] // one call site per action; a struct would only rename them
fn instance_change(
    stack_set: &str,
    env: &str,
    action: Action,
    account_key: &str,
    region: &str,
    reason: String,
    before: Option<InstanceSide>,
    after: Option<InstanceSide>,
) -> Change {
    Change {
        hint: None,
        reach: None,
        address: instance_address(stack_set, account_key, region),
        resource_type: ResourceType::StackInstance,
        action,
        environment: Some(env.to_string()),
        reason,
        before: before.map(Side::from),
        after: after.map(Side::from),
    }
}

fn instance_address(stack_set: &str, account: &str, region: &str) -> Address {
    Address::StackInstance {
        stack_set: stack_set.to_string(),
        account: account.to_string(),
        region: region.to_string(),
    }
}

fn instance_json(d: &DesiredStackSet, i: &super::desired::DesiredInstance) -> InstanceSide {
    InstanceSide {
        stack_set: d.name.clone(),
        account: i.account.id.clone(),
        account_name: i.account.name.clone(),
        region: i.region.clone(),
        parameter_overrides: mask(&i.overrides, &d.sensitive),
        status: None,
        organizational_unit_id: None,
        last_operation: None,
    }
}

fn live_instance_json(
    stack_set: &str,
    i: &LiveInstance,
    sensitive: &BTreeSet<String>,
) -> InstanceSide {
    InstanceSide {
        stack_set: stack_set.to_string(),
        account: Some(i.account.clone()),
        account_name: None,
        region: i.region.clone(),
        parameter_overrides: mask(&i.overrides.clone().unwrap_or_default(), sensitive),
        status: Some(i.status.clone()),
        // A service-managed instance is removed through the unit AWS deployed it through.
        organizational_unit_id: i.unit.clone(),
        last_operation: None,
    }
}

fn mask(
    values: &BTreeMap<String, String>,
    sensitive: &BTreeSet<String>,
) -> BTreeMap<String, String> {
    values
        .iter()
        .map(|(k, v)| {
            let shown = if sensitive.contains(k) {
                SENSITIVE.to_string()
            } else {
                v.clone()
            };
            (k.clone(), shown)
        })
        .collect()
}

/// The template as reviewers should read it: canonical YAML, NoEcho defaults masked.
pub fn template_text(body: &Value, sensitive: &BTreeSet<String>) -> String {
    let mut body = body.clone();
    if let Some(Value::Object(params)) = body.get_mut("Parameters") {
        for (name, decl) in params.iter_mut() {
            if sensitive.contains(name) {
                if let Some(d) = decl.get_mut("Default") {
                    *d = Value::String(SENSITIVE.into());
                }
            }
        }
    }
    serde_yaml::to_string(&body).unwrap_or_default()
}

fn desired_json(d: &DesiredStackSet) -> Side {
    StackSetSide {
        name: d.name.clone(),
        description: d.description.clone(),
        parameters: mask(&d.parameters, &d.sensitive),
        capabilities: d.capabilities.clone(),
        tags: d.tags.clone(),
        permission_model: d.permission_model.clone(),
        administration_role_arn: d.administration_role_arn.clone(),
        execution_role_name: d.execution_role_name.clone(),
        auto_deployment: d.auto_deployment,
        // As the tag keeps it, so live and desired compare like for like.
        operation: super::desired::operation_tag(&d.operation),
        template: template_text(&d.template.body, &d.sensitive),
        known_after_apply: d.unknown.clone(),
    }
    .into()
}

/// Parameters a template declares `NoEcho`.
fn no_echo(body: &Value) -> BTreeSet<String> {
    body.get("Parameters")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(_, decl)| {
            decl.get("NoEcho")
                .is_some_and(|v| v == &Value::Bool(true) || v.as_str() == Some("true"))
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// The `Default` a template declares for a parameter, as the text CloudFormation would use.
fn default_of(body: &Value, name: &str) -> Option<String> {
    match body.get("Parameters")?.get(name)?.get("Default")? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// `value` with its object keys in the order `like` has them (keys only `value` has last), so a
/// template diff shows what changed, not how differently the live text happened to be ordered.
fn align(value: &Value, like: &Value) -> Value {
    match (value, like) {
        (Value::Object(v), Value::Object(l)) => {
            let mut out = serde_json::Map::new();
            for (k, lv) in l {
                if let Some(vv) = v.get(k) {
                    out.insert(k.clone(), align(vv, lv));
                }
            }
            for (k, vv) in v {
                if !l.contains_key(k) {
                    out.insert(k.clone(), vv.clone());
                }
            }
            Value::Object(out)
        }
        (Value::Array(v), Value::Array(l)) => v
            .iter()
            .enumerate()
            .map(|(i, vv)| l.get(i).map_or_else(|| vv.clone(), |lv| align(vv, lv)))
            .collect(),
        _ => value.clone(),
    }
}

/// The live stack set as the plan shows it. Values are masked where either the manifest's or
/// the live template declares them NoEcho (a Default in the live template included); `like`
/// is the manifest's template, whose key order the live one is shown in.
fn live_json(l: &LiveStackSet, sensitive: &BTreeSet<String>, like: Option<&Value>) -> StackSetSide {
    let body = parse_body(&l.template_body).unwrap_or(Value::Null);
    let sensitive: BTreeSet<String> = sensitive.union(&no_echo(&body)).cloned().collect();
    let shown = like.map_or_else(|| body.clone(), |like| align(&body, like));
    StackSetSide {
        name: l.name.clone(),
        description: l.description.clone(),
        parameters: mask(&l.parameters, &sensitive),
        capabilities: l.capabilities.clone(),
        tags: l.tags.clone(),
        permission_model: l.permission_model.clone(),
        administration_role_arn: l.administration_role_arn.clone(),
        execution_role_name: l.execution_role_name.clone(),
        auto_deployment: l.auto_deployment,
        operation: l.tags.get(crate::tags::TAG_OPERATION).cloned(),
        template: template_text(&shown, &sensitive),
        known_after_apply: BTreeSet::new(),
    }
}

/// Resources of an instance's stack changed outside CloudFormation: what on-call must look at.
fn drift_finding(
    d: &DesiredStackSet,
    account: &str,
    region: &str,
    drift: &crate::live::InstanceDrift,
) -> Finding {
    let checked = drift
        .last_checked
        .as_deref()
        .map(|t| format!(" (checked {t})"))
        .unwrap_or_default();
    let mut message = format!("resources changed outside CloudFormation{checked}");
    match &drift.resources {
        Some(resources) => {
            for r in resources {
                message.push_str(&format!(
                    "\n{} {} {}",
                    r.logical_id, r.resource_type, r.status
                ));
                for difference in &r.differences {
                    message.push_str(&format!("\n  {difference}"));
                }
            }
        }
        None => message.push_str("; run `estate drift` to list the resources"),
    }
    Finding {
        kind: FindingKind::Drifted,
        address: instance_address(&d.name, account, region),
        environment: Some(d.environment.clone()),
        message,
    }
}

/// The reason a stack set is updated only to move its overrides digest tag; apply then needs
/// no UpdateStackSet before the instances, only the tag after them.
pub const OVERRIDES_REASON: &str = "instance overrides (tag estate:overrides-sha256)";

fn update_stack_set(
    d: &DesiredStackSet,
    l: &LiveStackSet,
    inactive: &BTreeMap<String, AccountState>,
    out_of_scope: &BTreeSet<String>,
    changes: &mut Vec<Change>,
    findings: &mut Vec<Finding>,
) {
    // Adopted and not yet tagged: estate's own tags are absent by nature, not a difference;
    // the first change written carries them.
    let adopting = d.adopt && !l.tags.contains_key(TAG_MANAGED_BY);
    let live_body = parse_body(&l.template_body).ok();
    let live_instances: &[LiveInstance] = l.instances.as_deref().unwrap_or(&[]);
    let sensitive: BTreeSet<String> = live_body
        .as_ref()
        .map(no_echo)
        .unwrap_or_default()
        .union(&d.sensitive)
        .cloned()
        .collect();
    if l.permission_model != d.permission_model {
        replace_stack_set(d, l, live_instances, &sensitive, inactive, changes);
        return;
    }
    // Instances first: whether they change decides whether the overrides tag must.
    let (instance_changes, retries) = instance_changes(
        d,
        live_instances,
        &sensitive,
        inactive,
        out_of_scope,
        findings,
    );
    let instances_written = instance_changes
        .iter()
        .any(|c| matches!(c.action, Action::Create | Action::Update));
    let reasons = set_reasons(
        d,
        l,
        live_body.as_ref(),
        &sensitive,
        instances_written,
        adopting,
    );
    // An UpdateStackSet of anything but the overrides tag deploys to every instance,
    // OUTDATED ones included: a retry of its own would be a second operation for nothing.
    // An adoption writes every tag of estate's, so it is always a whole update.
    let redeploys_all = adopting || reasons.iter().any(|r| r != OVERRIDES_REASON);
    if !reasons.is_empty() {
        let mut reason = format!("changed: {}", reasons.join("; "));
        if adopting {
            reason = format!(
                "adopted (`adopt: true`): stack set {} carries no estate's tags; this update writes them; {reason}",
                d.name
            );
        }
        if redeploys_all && !retries.is_empty() {
            reason.push_str(&format!(
                " (also deploys again {} OUTDATED instance{})",
                retries.len(),
                if retries.len() == 1 { "" } else { "s" }
            ));
        }
        changes.push(Change {
            // Only the digest moves: apply writes the tag once the instances carry them.
            hint: if adopting {
                Some(Hint::Adopt)
            } else {
                (!redeploys_all).then_some(Hint::OverridesTagOnly)
            },
            // UpdateStackSet names no instance: AWS deploys it to every one the set has.
            reach: redeploys_all.then(|| reach(live_instances)),
            address: Address::StackSet {
                name: d.name.clone(),
            },
            resource_type: ResourceType::StackSet,
            action: Action::Update,
            environment: Some(d.environment.clone()),
            reason,
            before: Some(live_json(l, &d.sensitive, Some(&d.template.body)).into()),
            after: Some(desired_json(d)),
        });
    }
    changes.extend(instance_changes);
    if !redeploys_all {
        changes.extend(retries);
    }
}

/// The instances, accounts and regions an update of a stack set with these instances reaches.
fn reach(instances: &[LiveInstance]) -> Reach {
    let accounts: BTreeSet<&str> = instances.iter().map(|i| i.account.as_str()).collect();
    let regions: BTreeSet<&str> = instances.iter().map(|i| i.region.as_str()).collect();
    Reach {
        instances: instances.len(),
        accounts: accounts.len(),
        regions: regions.len(),
    }
}

/// AWS cannot change a stack set's permission model in place, and deletes only an empty stack
/// set: every live instance goes first, every desired one is created after.
fn replace_stack_set(
    d: &DesiredStackSet,
    l: &LiveStackSet,
    live_instances: &[LiveInstance],
    sensitive: &BTreeSet<String>,
    inactive: &BTreeMap<String, AccountState>,
    changes: &mut Vec<Change>,
) {
    let mut before = live_json(l, &d.sensitive, Some(&d.template.body));
    before.operation = None;
    changes.push(Change {
        hint: None,
        reach: None,
        address: Address::StackSet {
            name: d.name.clone(),
        },
        resource_type: ResourceType::StackSet,
        action: Action::Replace,
        environment: Some(d.environment.clone()),
        reason: format!(
            "permission model changes from {} to {}, which AWS cannot do in place",
            l.permission_model, d.permission_model
        ),
        before: Some(before.into()),
        after: Some(desired_json(d)),
    });
    for li in live_instances {
        changes.push(instance_delete(
            &d.name,
            &d.environment,
            li,
            format!("stack set {} is replaced", d.name),
            sensitive,
            inactive,
        ));
    }
    for i in &d.instances {
        changes.push(instance_change(
            &d.name,
            &d.environment,
            Action::Create,
            &i.account.key(),
            &i.region,
            format!(
                "stack set {} is replaced; {} is a target of {}",
                d.name,
                account_phrase(&i.account),
                d.environment
            ),
            None,
            Some(instance_json(d, i)),
        ));
    }
}

/// The instances' changes (create, update, replace, delete) and, apart, the OUTDATED ones to
/// deploy again unless the stack set's own update redeploys every instance.
fn instance_changes(
    d: &DesiredStackSet,
    live_instances: &[LiveInstance],
    sensitive: &BTreeSet<String>,
    inactive: &BTreeMap<String, AccountState>,
    out_of_scope: &BTreeSet<String>,
    findings: &mut Vec<Finding>,
) -> (Vec<Change>, Vec<Change>) {
    let mut run = InstanceDiffing {
        d,
        sensitive,
        instance_changes: Vec::new(),
        retries: Vec::new(),
        findings,
    };
    // Keys borrowed, hashed: this runs once per instance, 100,000 times in a large estate.
    let by_key: std::collections::HashMap<(&str, &str), &LiveInstance> = live_instances
        .iter()
        .map(|i| ((i.account.as_str(), i.region.as_str()), i))
        .collect();
    let mut wanted = std::collections::HashSet::with_capacity(d.instances.len());
    let keys: Vec<String> = d.instances.iter().map(|i| i.account.key()).collect();
    for (i, account) in d.instances.iter().zip(&keys) {
        let key = (account.as_str(), i.region.as_str());
        wanted.insert(key);
        match by_key.get(&key) {
            None => run.missing(i, account),
            Some(li) => run.live(i, li, account),
        }
    }
    for li in live_instances {
        // An account outside the Estate's scope is someone else's: its instances are theirs.
        if !wanted.contains(&(li.account.as_str(), li.region.as_str()))
            && !out_of_scope.contains(&li.account)
        {
            run.no_longer_wanted(li, inactive);
        }
    }

    (run.instance_changes, run.retries)
}

/// One stack set's instances being compared, and what `instance_changes` has found so far.
struct InstanceDiffing<'a> {
    d: &'a DesiredStackSet,
    sensitive: &'a BTreeSet<String>,
    instance_changes: Vec<Change>,
    // OUTDATED instances to deploy again, unless the stack set's own update redeploys all.
    retries: Vec<Change>,
    findings: &'a mut Vec<Finding>,
}

impl InstanceDiffing<'_> {
    /// A desired instance with none live: created.
    fn missing(&mut self, i: &DesiredInstance, account: &str) {
        let d = self.d;
        self.instance_changes.push(instance_change(
            &d.name,
            &d.environment,
            Action::Create,
            account,
            &i.region,
            format!(
                "{} is {} but has no instance in {}",
                account_phrase(&i.account),
                role_of(d),
                i.region
            ),
            None,
            Some(instance_json(d, i)),
        ));
    }

    /// A desired instance that is live: replaced, updated, deployed again or reported, by its state.
    fn live(&mut self, i: &DesiredInstance, li: &LiveInstance, account: &str) {
        let d = self.d;
        let sensitive = self.sensitive;
        let reason = li
            .overrides
            .as_ref()
            .and_then(|o| overrides_differ(o, &i.overrides, sensitive));
        let stack_deleted = li.drift.as_ref().is_some_and(|d| d.stack_deleted());
        if stack_deleted {
            let c = self.stack_deleted(i, li, account);
            self.instance_changes.push(c);
        } else if let Some(reason) = reason {
            // Shown against the manifest's instance: the same account (live does not
            // know its manifest name) and no status, which the manifest has no say in.
            let mut before = live_instance_json(&d.name, li, sensitive);
            before.account_name.clone_from(&i.account.name);
            before.status = None;
            self.instance_changes.push(instance_change(
                &d.name,
                &d.environment,
                Action::Update,
                account,
                &i.region,
                reason,
                Some(before),
                Some(instance_json(d, i)),
            ));
        } else if li.status == "OUTDATED" {
            let c = self.outdated(i, li, account);
            self.retries.push(c);
        } else if li.status != "CURRENT" {
            // INOPERABLE (a failed delete): AWS excludes it from updates; the remedy
            // (remove it with RetainStacks, delete the stack by hand) is the operator's.
            self.findings.push(Finding {
                kind: FindingKind::Unhealthy,
                address: instance_address(&d.name, account, &i.region),
                environment: Some(d.environment.clone()),
                message: format!(
                    "instance is {}{}",
                    li.status,
                    li.status_reason
                        .as_ref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                ),
            });
        }
        if let Some(drift) = &li.drift {
            self.findings
                .push(drift_finding(d, account, &i.region, drift));
        }
    }

    /// The replace of an instance whose stack was deleted inside its account.
    fn stack_deleted(&self, i: &DesiredInstance, li: &LiveInstance, account: &str) -> Change {
        let d = self.d;
        // Deleted inside the account: the instance is removed (there is no stack
        // to delete, so none is) and created again, whatever an update would do
        // with a stack that is gone.
        let mut before = live_instance_json(&d.name, li, self.sensitive);
        before.account_name.clone_from(&i.account.name);
        before.status = None;
        let mut after = instance_json(d, i);
        since(li, &mut before, &mut after);
        let mut c = instance_change(
            &d.name,
            &d.environment,
            Action::Replace,
            account,
            &i.region,
            format!(
                "its stack was deleted outside CloudFormation (drift detection{}): the instance is created again",
                li.drift
                    .as_ref()
                    .and_then(|d| d.last_checked.as_deref())
                    .map(|t| format!(" at {t}"))
                    .unwrap_or_default()
            ),
            Some(before),
            Some(after),
        );
        c.hint = Some(Hint::RetainStacks);
        c
    }

    /// The retry of an OUTDATED instance.
    fn outdated(&self, i: &DesiredInstance, li: &LiveInstance, account: &str) -> Change {
        let d = self.d;
        // A failed or stopped operation left it behind: fixing the cause and
        // applying again must converge it, so it is planned again.
        let mut before = live_instance_json(&d.name, li, self.sensitive);
        before.account_name.clone_from(&i.account.name);
        let mut after = instance_json(d, i);
        after.status = Some("CURRENT".into());
        since(li, &mut before, &mut after);
        instance_change(
            &d.name,
            &d.environment,
            Action::Update,
            account,
            &i.region,
            format!(
                "instance is OUTDATED ({}); apply deploys it again",
                li.status_reason.as_deref().unwrap_or("AWS gave no reason")
            ),
            Some(before),
            Some(after),
        )
    }

    /// A live instance the manifest no longer wants: deleted, unless its account is pending.
    fn no_longer_wanted(&mut self, li: &LiveInstance, inactive: &BTreeMap<String, AccountState>) {
        let d = self.d;
        let reason = match inactive.get(&li.account) {
            // Not reachable yet, or not gone yet: nothing says the instance should go.
            Some(AccountState::PendingActivation | AccountState::PendingClosure) => return,
            Some(state) => format!(
                "account {} is {state}: AWS can no longer reach it; the instance in {} is removed, its stack retained",
                li.account, li.region
            ),
            None => format!(
                "account {} in {} is no longer a target of {}",
                li.account, li.region, d.environment
            ),
        };
        self.instance_changes.push(instance_delete(
            &d.name,
            &d.environment,
            li,
            reason,
            self.sensitive,
            inactive,
        ));
    }
}

/// What differs on the stack set itself, for its update's reason; empty: no update.
fn set_reasons(
    d: &DesiredStackSet,
    l: &LiveStackSet,
    live_body: Option<&Value>,
    sensitive: &BTreeSet<String>,
    instances_written: bool,
    adopting: bool,
) -> Vec<String> {
    let mut reasons = Vec::new();
    if live_body != Some(&d.template.body) {
        reasons.push("template".to_string());
    }
    // AWS may leave out an empty description or return it empty: the same thing.
    if l.description.as_deref().unwrap_or("") != d.description.as_deref().unwrap_or("") {
        reasons.push("description".into());
    }
    // A parameter one side leaves out takes its template's Default: AWS may report defaulted
    // values the manifest never gave, which is no difference.
    let effective = |given: Option<&String>, body: Option<&Value>, k: &str| {
        given
            .cloned()
            .or_else(|| body.and_then(|b| default_of(b, k)))
    };
    let changed_params: Vec<&String> = d
        .parameters
        .keys()
        .chain(l.parameters.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|k| {
            !sensitive.contains(*k)
                && effective(d.parameters.get(*k), Some(&d.template.body), k)
                    != effective(l.parameters.get(*k), live_body, k)
        })
        .collect();
    if !changed_params.is_empty() {
        let names: Vec<&str> = changed_params.iter().map(|s| s.as_str()).collect();
        reasons.push(format!("parameters {}", names.join(", ")));
        if changed_params.iter().any(|k| d.unknown.contains(*k)) {
            let producers: Vec<&str> = d.producers.iter().map(String::as_str).collect();
            reasons.push(format!(
                "outputs of {} known after apply",
                producers.join(", ")
            ));
        }
    }
    // An adopted stack set has no digest of its secrets: they cannot be compared until
    // estate has written them once.
    if !adopting && d.tags.get(TAG_SECRETS) != l.tags.get(TAG_SECRETS) {
        reasons.push("a sensitive parameter".into());
    }
    let mut live_caps = l.capabilities.clone();
    live_caps.sort();
    if live_caps != d.capabilities {
        reasons.push("capabilities".into());
    }
    let tag_diff: Vec<&String> = d
        .tags
        .keys()
        .chain(l.tags.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|k| d.tags.get(*k) != l.tags.get(*k) && *k != TAG_SECRETS && *k != TAG_OVERRIDES)
        .filter(|k| !(adopting && k.starts_with(crate::tags::TAG_PREFIX)))
        .collect();
    if !tag_diff.is_empty() {
        let names: Vec<&str> = tag_diff.iter().map(|s| s.as_str()).collect();
        reasons.push(format!("tags {}", names.join(", ")));
    }
    // The overrides tag tells the next plan whether instances must be described. Applying new
    // overrides to instances under the old tag would leave live overrides the tag does not
    // describe, and a later return to the old overrides would go unseen; so the tag moves
    // with them. Without instance changes, live already matches and the tag may stay.
    let live_digest = l
        .tags
        .get(TAG_OVERRIDES)
        .map_or(EMPTY_OVERRIDES, String::as_str);
    if d.tags.get(TAG_OVERRIDES).map(String::as_str) != Some(live_digest) && instances_written {
        reasons.push(OVERRIDES_REASON.to_string());
    }
    if d.administration_role_arn.is_some() && l.administration_role_arn != d.administration_role_arn
    {
        reasons.push("administration role".into());
    }
    if d.execution_role_name.is_some() && l.execution_role_name != d.execution_role_name {
        reasons.push("execution role".into());
    }
    if d.auto_deployment.is_some() && l.auto_deployment != d.auto_deployment {
        reasons.push("auto-deployment".into());
    }
    reasons
}

/// Why an instance's live overrides (read because the manifest's overrides changed) need an
/// update, if they do. AWS returns NoEcho values masked: for those only presence compares, and
/// a sensitive override the manifest gives is written again, since a change to it is otherwise
/// invisible.
fn overrides_differ(
    live: &BTreeMap<String, String>,
    desired: &BTreeMap<String, String>,
    sensitive: &BTreeSet<String>,
) -> Option<String> {
    let same_keys = live.keys().eq(desired.keys());
    let same_values = desired
        .iter()
        .filter(|(k, _)| !sensitive.contains(*k))
        .all(|(k, v)| live.get(k) == Some(v));
    if !same_keys || !same_values {
        return Some("parameter overrides differ from live".into());
    }
    let secret: Vec<&str> = desired
        .keys()
        .filter(|k| sensitive.contains(*k))
        .map(String::as_str)
        .collect();
    (!secret.is_empty()).then(|| {
        format!(
            "the manifest's overrides changed; sensitive override {} cannot be compared with live, so it is written again",
            secret.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn live_keys_follow_the_manifest_order_and_extra_keys_come_last() {
        let live = serde_json::json!({"b": 1, "extra": 0, "a": {"y": 1, "x": 2}, "list": [{"q": 1, "p": 2}]});
        let like = serde_json::json!({"a": {"x": 0, "y": 0}, "list": [{"p": 0, "q": 0}], "b": 0});
        let aligned = align(&live, &like);
        assert_eq!(aligned, live, "alignment only reorders");
        assert_eq!(
            aligned.to_string(),
            r#"{"a":{"x":2,"y":1},"list":[{"p":2,"q":1}],"b":1,"extra":0}"#
        );
    }

    #[test]
    fn masked_overrides_compare_by_presence_and_are_written_again() {
        let secret: BTreeSet<String> = ["Token".to_string()].into();
        let live = map(&[("Token", "****"), ("Tier", "large")]);
        assert_eq!(
            overrides_differ(&live, &map(&[("Tier", "large")]), &secret).as_deref(),
            Some("parameter overrides differ from live")
        );
        assert_eq!(
            overrides_differ(&live, &map(&[("Token", "x"), ("Tier", "small")]), &secret).as_deref(),
            Some("parameter overrides differ from live")
        );
        let again = overrides_differ(&live, &map(&[("Token", "x"), ("Tier", "large")]), &secret);
        assert!(again.unwrap().contains("sensitive override Token"));
        let plain = map(&[("Tier", "large")]);
        assert_eq!(overrides_differ(&plain, &plain, &secret), None);
    }
}
