//! The diff: desired against live, into changes with a reason each, and findings for what
//! the reconciler will not touch. Pure: same inputs, same plan.

use super::desired::{Desired, DesiredStackSet};
use super::model::*;
use crate::live::{
    LiveInstance, LiveStackSet, LiveState, TAG_ENVIRONMENT, TAG_MANAGED_BY, TAG_SECRETS,
};
use crate::template::parse_body;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// What the diff needs beyond desired and live.
pub struct DiffOptions<'a> {
    pub estate: &'a str,
    /// Environments in scope (orphans are looked for only there).
    pub environments: &'a [String],
    pub prune: bool,
}

/// Changes and findings, in plan order: units, accounts, then per environment its stack sets
/// each followed by its instances.
pub fn diff(
    desired: &Desired,
    live: &LiveState,
    opts: &DiffOptions,
) -> (Vec<Change>, Vec<Finding>) {
    let mut changes = Vec::new();
    let mut findings = Vec::new();

    for path in &desired.units {
        if live.unit_by_path(path).is_none() {
            let parent = match path.rfind('/') {
                Some(0) | None => "/".to_string(),
                Some(i) => path[..i].to_string(),
            };
            changes.push(Change {
                address: format!("unit:{path}"),
                resource_type: ResourceType::Unit,
                action: Action::Create,
                environment: None,
                reason: format!("unit {path} does not exist"),
                before: None,
                after: Some(json!({"path": path, "parent": parent})),
            });
        }
    }

    for a in &desired.accounts {
        let live_account = live.account_by_email(&a.email);
        match live_account {
            None => changes.push(Change {
                address: format!("account:{}", a.name),
                resource_type: ResourceType::Account,
                action: Action::Create,
                environment: None,
                reason: format!("no account in the organization has email {}", a.email),
                before: None,
                after: Some(json!({"name": a.name, "email": a.email, "unit": a.unit})),
            }),
            Some(l) => {
                let current = live.path_of(&l.parent_id).unwrap_or("?");
                if let Some(unit) = &a.unit {
                    if unit != current {
                        changes.push(Change {
                            address: format!("account:{}", a.name),
                            resource_type: ResourceType::Account,
                            action: Action::Update,
                            environment: None,
                            reason: format!(
                                "account {} ({}) is in {current}; the manifest puts it in {unit}",
                                a.name, l.id
                            ),
                            before: Some(json!({"id": l.id, "unit": current})),
                            after: Some(json!({"id": l.id, "unit": unit})),
                        });
                    }
                }
            }
        }
    }
    for l in &live.accounts {
        let known = desired
            .accounts
            .iter()
            .any(|a| a.email.eq_ignore_ascii_case(&l.email));
        if !known && l.id != live.management_account {
            findings.push(Finding {
                kind: FindingKind::Unmanaged,
                address: format!("account:{}", l.id),
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

    for env in opts.environments {
        for d in desired.stack_sets.iter().filter(|s| &s.environment == env) {
            match live.stack_sets.get(&d.name) {
                None => create_stack_set(d, &mut changes),
                Some(l) if l.tags.get(TAG_MANAGED_BY).map(String::as_str) != Some(opts.estate) => {
                    findings.push(Finding {
                        kind: FindingKind::Conflict,
                        address: format!("stackSet:{}", d.name),
                        environment: Some(env.clone()),
                        message: match l.tags.get(TAG_MANAGED_BY) {
                            Some(other) => format!(
                                "stack set {} exists and is managed by estate `{other}`; it is not touched",
                                d.name
                            ),
                            None => format!(
                                "stack set {} exists without the tag {TAG_MANAGED_BY}={}; estate will not take it over",
                                d.name, opts.estate
                            ),
                        },
                    });
                }
                Some(l) => update_stack_set(d, l, &mut changes, &mut findings),
            }
        }
        // Managed stack sets of this environment that left the manifest.
        for l in live.stack_sets.values() {
            let ours = l.tags.get(TAG_MANAGED_BY).map(String::as_str) == Some(opts.estate)
                && l.tags.get(TAG_ENVIRONMENT) == Some(env);
            if !ours || desired.stack_sets.iter().any(|d| d.name == l.name) {
                continue;
            }
            if opts.prune {
                for i in l.instances.iter().flatten() {
                    changes.push(instance_change(
                        &l.name,
                        env,
                        Action::Delete,
                        &i.account,
                        &i.region,
                        format!("stack set {} left the manifest (prune is on)", l.name),
                        Some(live_instance_json(&l.name, i)),
                        None,
                    ));
                }
                changes.push(Change {
                    address: format!("stackSet:{}", l.name),
                    resource_type: ResourceType::StackSet,
                    action: Action::Delete,
                    environment: Some(env.clone()),
                    reason: format!("stack set {} left the manifest (prune is on)", l.name),
                    before: Some(live_json(l, &BTreeSet::new())),
                    after: None,
                });
            } else {
                findings.push(Finding {
                    kind: FindingKind::Orphan,
                    address: format!("stackSet:{}", l.name),
                    environment: Some(env.clone()),
                    message: format!(
                        "stack set {} is managed by this estate but no longer in the manifest; set `prune: true` to delete it",
                        l.name
                    ),
                });
            }
        }
    }
    (changes, findings)
}

fn create_stack_set(d: &DesiredStackSet, changes: &mut Vec<Change>) {
    changes.push(Change {
        address: format!("stackSet:{}", d.name),
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
            format!(
                "{} is a target of {}",
                account_phrase(&i.account),
                d.environment
            ),
            None,
            Some(instance_json(d, i)),
        ));
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
    before: Option<Value>,
    after: Option<Value>,
) -> Change {
    Change {
        address: format!("stackInstance:{stack_set}/{account_key}/{region}"),
        resource_type: ResourceType::StackInstance,
        action,
        environment: Some(env.to_string()),
        reason,
        before,
        after,
    }
}

fn instance_json(d: &DesiredStackSet, i: &super::desired::DesiredInstance) -> Value {
    json!({
        "stackSet": d.name,
        "account": i.account.id,
        "accountName": i.account.name,
        "region": i.region,
        "parameterOverrides": mask(&i.overrides, &d.sensitive),
    })
}

fn live_instance_json(stack_set: &str, i: &LiveInstance) -> Value {
    json!({
        "stackSet": stack_set,
        "account": i.account,
        "accountName": null,
        "region": i.region,
        "parameterOverrides": i.overrides.clone().unwrap_or_default(),
        "status": i.status,
    })
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

fn desired_json(d: &DesiredStackSet) -> Value {
    json!({
        "name": d.name,
        "description": d.description,
        "parameters": mask(&d.parameters, &d.sensitive),
        "capabilities": d.capabilities,
        "tags": d.tags,
        "permissionModel": d.permission_model,
        "administrationRoleArn": d.administration_role_arn,
        "executionRoleName": d.execution_role_name,
        "autoDeployment": d.auto_deployment,
        // As the tag keeps it, so live and desired compare like for like.
        "operation": super::desired::operation_tag(&d.operation),
        "template": template_text(&d.template.body, &d.sensitive),
    })
}

fn live_json(l: &LiveStackSet, sensitive: &BTreeSet<String>) -> Value {
    let body = parse_body(&l.template_body).unwrap_or(Value::Null);
    json!({
        "name": l.name,
        "description": l.description,
        "parameters": mask(&l.parameters, sensitive),
        "capabilities": l.capabilities,
        "tags": l.tags,
        "permissionModel": l.permission_model,
        "administrationRoleArn": l.administration_role_arn,
        "executionRoleName": l.execution_role_name,
        "autoDeployment": l.auto_deployment,
        "operation": d_operation_from_tags(l),
        "template": template_text(&body, sensitive),
    })
}

/// Operation preferences are only known through their tag; shown as that text.
fn d_operation_from_tags(l: &LiveStackSet) -> Value {
    l.tags
        .get(crate::live::TAG_OPERATION)
        .map_or(Value::Null, |t| Value::String(t.clone()))
}

fn update_stack_set(
    d: &DesiredStackSet,
    l: &LiveStackSet,
    changes: &mut Vec<Change>,
    findings: &mut Vec<Finding>,
) {
    let mut reasons = Vec::new();
    if l.permission_model != d.permission_model {
        // AWS cannot change a stack set's permission model in place.
        let mut before = live_json(l, &d.sensitive);
        before["operation"] = Value::Null;
        changes.push(Change {
            address: format!("stackSet:{}", d.name),
            resource_type: ResourceType::StackSet,
            action: Action::Replace,
            environment: Some(d.environment.clone()),
            reason: format!(
                "permission model changes from {} to {}, which AWS cannot do in place",
                l.permission_model, d.permission_model
            ),
            before: Some(before),
            after: Some(desired_json(d)),
        });
        return;
    }
    let live_body = parse_body(&l.template_body).ok();
    if live_body.as_ref() != Some(&d.template.body) {
        reasons.push("template".to_string());
    }
    if l.description != d.description {
        reasons.push("description".into());
    }
    let changed_params: Vec<&String> = d
        .parameters
        .keys()
        .chain(l.parameters.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|k| !d.sensitive.contains(*k) && d.parameters.get(*k) != l.parameters.get(*k))
        .collect();
    if !changed_params.is_empty() {
        let names: Vec<&str> = changed_params.iter().map(|s| s.as_str()).collect();
        reasons.push(format!("parameters {}", names.join(", ")));
    }
    if d.tags.get(TAG_SECRETS) != l.tags.get(TAG_SECRETS) {
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
        .filter(|k| {
            d.tags.get(*k) != l.tags.get(*k)
                && *k != TAG_SECRETS
                && *k != crate::live::read::TAG_OVERRIDES
        })
        .collect();
    if !tag_diff.is_empty() {
        let names: Vec<&str> = tag_diff.iter().map(|s| s.as_str()).collect();
        reasons.push(format!("tags {}", names.join(", ")));
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
    if !reasons.is_empty() {
        changes.push(Change {
            address: format!("stackSet:{}", d.name),
            resource_type: ResourceType::StackSet,
            action: Action::Update,
            environment: Some(d.environment.clone()),
            reason: format!("changed: {}", reasons.join("; ")),
            before: Some(live_json(l, &d.sensitive)),
            after: Some(desired_json(d)),
        });
    }

    // Instances.
    let live_instances: &[LiveInstance] = l.instances.as_deref().unwrap_or(&[]);
    let by_key: BTreeMap<(String, String), &LiveInstance> = live_instances
        .iter()
        .map(|i| ((i.account.clone(), i.region.clone()), i))
        .collect();
    let mut wanted = BTreeSet::new();
    for i in &d.instances {
        let key = (i.account.key(), i.region.clone());
        wanted.insert(key.clone());
        match by_key.get(&key) {
            None => changes.push(instance_change(
                &d.name,
                &d.environment,
                Action::Create,
                &key.0,
                &i.region,
                format!(
                    "{} is a target of {} but has no instance in {}",
                    account_phrase(&i.account),
                    d.environment,
                    i.region
                ),
                None,
                Some(instance_json(d, i)),
            )),
            Some(li) => {
                let overrides_differ = li.overrides.as_ref().is_some_and(|o| o != &i.overrides);
                if overrides_differ {
                    changes.push(instance_change(
                        &d.name,
                        &d.environment,
                        Action::Update,
                        &key.0,
                        &i.region,
                        "parameter overrides differ from live".into(),
                        Some(live_instance_json(&d.name, li)),
                        Some(instance_json(d, i)),
                    ));
                } else if li.status != "CURRENT" {
                    findings.push(Finding {
                        kind: FindingKind::Unhealthy,
                        address: format!("stackInstance:{}/{}/{}", d.name, key.0, i.region),
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
            }
        }
    }
    for li in live_instances {
        if !wanted.contains(&(li.account.clone(), li.region.clone())) {
            changes.push(instance_change(
                &d.name,
                &d.environment,
                Action::Delete,
                &li.account,
                &li.region,
                format!(
                    "account {} in {} is no longer a target of {}",
                    li.account, li.region, d.environment
                ),
                Some(live_instance_json(&d.name, li)),
                None,
            ));
        }
    }
}
