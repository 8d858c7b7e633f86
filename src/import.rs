//! `estate import`'s writer: a manifest folder from a live organization (units, accounts,
//! stack sets with their templates as AWS returns them, environments inferred from the
//! instances' accounts and regions) that plans no change against it. Pure: the command reads
//! live state and writes the files.

use crate::live::{AccountState, LiveStackSet, LiveState};
use crate::manifest::model::*;
use crate::tags::{TAG_MANAGED_BY, TAG_PREFIX};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// What to import.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The Estate's `metadata.name`.
    pub estate: String,
    pub home_region: String,
    /// Limit to these units (recursively); they become the Estate's scope. Empty: all.
    pub units: Vec<String>,
    /// Limit to stack sets whose names match these patterns (`*`); they become the Estate's
    /// scope. Empty: all.
    pub stack_sets: Vec<String>,
}

/// The manifest folder's files (paths relative to it) and what the reader must know.
#[derive(Debug, Clone, Default)]
pub struct Imported {
    pub files: BTreeMap<PathBuf, String>,
    /// Things imported only in part, or left out, with why.
    pub notes: Vec<String>,
    pub units: usize,
    pub accounts: usize,
    pub stack_sets: usize,
    pub environments: usize,
}

/// Where a stack set's instances are: an environment's targets and regions.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Placement {
    units: Vec<String>,
    accounts: Vec<String>,
    regions: Vec<String>,
}

/// The manifest of `live` as `opts` limits it.
pub fn import(live: &LiveState, opts: &ImportOptions) -> Imported {
    let mut out = Imported::default();
    let scope = Scope {
        units: opts.units.clone(),
        stack_sets: opts.stack_sets.clone(),
    };
    let in_scope = |parent: &str| live.path_of(parent).is_some_and(|p| scope.has_unit(p));

    // Units in scope and their ancestors (a unit is listed after its parent).
    let mut units: Vec<String> = Vec::new();
    for u in &live.units {
        if scope.has_unit(&u.path) || scope.units.iter().any(|s| is_below(s, &u.path)) {
            units.push(u.path.clone());
        }
    }

    // Accounts in scope, by a manifest name made from the AWS one (unique, as the schema wants).
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let mut taken = BTreeSet::new();
    let mut accounts = Vec::new();
    let mut listed: Vec<_> = live.accounts.iter().collect();
    listed.sort_by_key(|a| (live.path_of(&a.parent_id), a.name.as_str(), a.id.as_str()));
    for a in listed {
        if !in_scope(&a.parent_id) {
            continue;
        }
        if a.state != AccountState::Active {
            out.notes.push(format!(
                "account {} ({}) is {}: left out",
                a.name, a.id, a.state
            ));
            continue;
        }
        let name = unique(account_name(&a.name, &a.id), &mut taken);
        names.insert(a.id.clone(), name.clone());
        // Import says so: the account is this estate's to move (estate did not create it).
        let mut account = json!({"name": name, "email": a.email, "adopt": true});
        // The management account stays where it is (the root): its placement is not managed.
        if a.id != live.management_account {
            account["unit"] = json!(live.path_of(&a.parent_id));
        }
        accounts.push(account);
    }

    let mut environments: BTreeMap<Placement, String> = BTreeMap::new();
    let mut env_names = BTreeSet::new();
    let mut set_names = BTreeSet::new();
    let mut stack_set_docs = Vec::new();
    for s in live.stack_sets.values() {
        if !scope.has_stack_set(&s.name) {
            continue;
        }
        match s.tags.get(TAG_MANAGED_BY) {
            Some(owner) if owner != &opts.estate => {
                out.notes.push(format!(
                    "stack set {} is estate `{owner}`'s: left out",
                    s.name
                ));
                continue;
            }
            _ => {}
        }
        let Some(placement) = placement(live, s, &names, &mut out.notes) else {
            continue;
        };
        let env = match environments.get(&placement) {
            Some(env) => env.clone(),
            None => {
                let env = unique(env_name(&placement, &names, live), &mut env_names);
                environments.insert(placement, env.clone());
                env
            }
        };
        let name = unique(metadata_name(&s.name), &mut set_names);
        let ext = if s.template_body.trim_start().starts_with('{') {
            "json"
        } else {
            "yaml"
        };
        let template = format!("templates/{}.{ext}", s.name);
        out.files
            .insert(PathBuf::from(&template), s.template_body.clone());
        let spec = stack_set_spec(live, s, &name, &env, &template, opts, &mut out.notes);
        stack_set_docs.push((name, spec));
    }

    let mut promotion = Vec::new();
    let mut env_docs = Vec::new();
    for (placement, name) in &environments {
        promotion.push(name.clone());
        let mut targets = Map::new();
        if !placement.units.is_empty() {
            targets.insert("units".into(), json!(placement.units));
        }
        if !placement.accounts.is_empty() {
            let mut named: Vec<&String> = placement.accounts.iter().map(|id| &names[id]).collect();
            named.sort();
            targets.insert("accounts".into(), json!(named));
        }
        let mut spec = json!({"targets": targets});
        if placement.regions != [opts.home_region.clone()] {
            spec["regions"] = json!(placement.regions);
        }
        env_docs.push(document("Environment", name, spec));
    }

    let mut include = vec!["organization.yaml".to_string()];
    if !env_docs.is_empty() {
        include.push("environments.yaml".into());
    }
    if !stack_set_docs.is_empty() {
        include.push("stacksets/*.yaml".into());
    }
    let mut estate = json!({
        "homeRegion": opts.home_region,
        "regions": [opts.home_region],
        "promotion": promotion,
        // The organization's stack sets already run with roles of its own.
        "stackSetRoles": "existing",
        "include": include,
    });
    if scope != Scope::default() {
        estate["scope"] = serde_json::to_value(&scope).expect("a scope serializes");
    }
    out.files.insert(
        "estate.yaml".into(),
        yaml(&[document("Estate", &opts.estate, estate)]),
    );
    let mut org = json!({"units": units.iter().map(|p| json!({"path": p})).collect::<Vec<_>>()});
    org["accounts"] = json!(accounts);
    out.files.insert(
        "organization.yaml".into(),
        yaml(&[document("Organization", &opts.estate, org)]),
    );
    if !env_docs.is_empty() {
        out.files
            .insert("environments.yaml".into(), yaml(&env_docs));
    }
    for (name, spec) in &stack_set_docs {
        out.files.insert(
            PathBuf::from(format!("stacksets/{name}.yaml")),
            yaml(&[document("StackSet", name, spec.clone())]),
        );
    }
    out.units = units.len();
    out.accounts = accounts.len();
    out.stack_sets = stack_set_docs.len();
    out.environments = env_docs.len();
    out
}

/// Whether `path` is an ancestor of `unit` (a unit the manifest must list before it).
fn is_below(unit: &str, path: &str) -> bool {
    unit.strip_prefix(path).is_some_and(|r| r.starts_with('/'))
}

/// The accounts (or, for a service-managed stack set, the units) and regions of a stack set's
/// instances in scope; `None`, with a note, when no environment can say them exactly.
fn placement(
    live: &LiveState,
    s: &LiveStackSet,
    names: &BTreeMap<String, String>,
    notes: &mut Vec<String>,
) -> Option<Placement> {
    let instances: Vec<_> = s
        .instances
        .iter()
        .flatten()
        .filter(|i| names.contains_key(&i.account))
        .collect();
    if instances.is_empty() {
        notes.push(format!(
            "stack set {} has no instance in an imported account: left out (no environment would target it)",
            s.name
        ));
        return None;
    }
    let accounts: BTreeSet<&String> = instances.iter().map(|i| &i.account).collect();
    let regions: BTreeSet<&String> = instances.iter().map(|i| &i.region).collect();
    if instances.len() != accounts.len() * regions.len() {
        notes.push(format!(
            "stack set {} is not in every region in each of its accounts: an environment deploys to all of them, so the plan creates the missing instances",
            s.name
        ));
    }
    let service_managed = s.permission_model == "SERVICE_MANAGED";
    let units: BTreeSet<String> = if service_managed {
        instances
            .iter()
            .filter_map(|i| i.unit.as_deref())
            .filter_map(|u| live.path_of(u))
            .map(str::to_string)
            .collect()
    } else {
        BTreeSet::new()
    };
    if service_managed && units.is_empty() {
        notes.push(format!(
            "stack set {} is service-managed but AWS names no unit of its instances: left out",
            s.name
        ));
        return None;
    }
    Some(Placement {
        units: units.into_iter().collect(),
        accounts: if service_managed {
            Vec::new()
        } else {
            accounts.into_iter().cloned().collect()
        },
        regions: regions.into_iter().cloned().collect(),
    })
}

fn stack_set_spec(
    live: &LiveState,
    s: &LiveStackSet,
    name: &str,
    env: &str,
    template: &str,
    opts: &ImportOptions,
    notes: &mut Vec<String>,
) -> Value {
    let mut spec = Map::new();
    spec.insert("template".into(), json!(format!("../{template}")));
    if let Some(d) = s.description.as_deref().filter(|d| !d.is_empty()) {
        spec.insert("description".into(), json!(escape(d)));
    }
    spec.insert("environments".into(), json!([env]));
    let service_managed = s.permission_model == "SERVICE_MANAGED";
    spec.insert(
        "permissionModel".into(),
        json!(if service_managed {
            "service-managed"
        } else {
            "self-managed"
        }),
    );
    if !service_managed {
        let default_admin = format!(
            "arn:{}:iam::{}:role/AWSCloudFormationStackSetAdministrationRole",
            live.partition,
            live.caller()
        );
        if let Some(arn) = s
            .administration_role_arn
            .as_ref()
            .filter(|a| **a != default_admin)
        {
            spec.insert("administrationRoleArn".into(), json!(escape(arn)));
        }
        if let Some(role) = s
            .execution_role_name
            .as_ref()
            .filter(|r| r.as_str() != "AWSCloudFormationStackSetExecutionRole")
        {
            spec.insert("executionRoleName".into(), json!(role));
        }
    } else if let Some(a) = s.auto_deployment {
        spec.insert(
            "autoDeployment".into(),
            json!({"enabled": a.enabled, "retainStacksOnAccountRemoval": a.retain_stacks_on_account_removal}),
        );
    }
    if !s.capabilities.is_empty() {
        spec.insert("capabilities".into(), json!(s.capabilities));
    }
    let mut parameters = Map::new();
    for (k, v) in &s.parameters {
        // AWS returns NoEcho values masked: the manifest must say where the value comes from.
        if v == "****" {
            notes.push(format!(
                "stack set {}: parameter {k} is NoEcho (AWS returns it masked): give it in the manifest, as a dynamic reference",
                s.name
            ));
            continue;
        }
        parameters.insert(k.clone(), json!(escape(v)));
    }
    if !parameters.is_empty() {
        spec.insert("parameters".into(), Value::Object(parameters));
    }
    let tags: Map<String, Value> = s
        .tags
        .iter()
        .filter(|(k, _)| !k.starts_with(TAG_PREFIX))
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    if !tags.is_empty() {
        spec.insert("tags".into(), Value::Object(tags));
    }
    // Estate's own already: nothing to adopt.
    if s.tags.get(TAG_MANAGED_BY) != Some(&opts.estate) {
        spec.insert("adopt".into(), json!(true));
    }
    if format!("{name}-{env}") != s.name {
        spec.insert("stackSetNames".into(), json!({env: s.name}));
    }
    Value::Object(spec)
}

/// A manifest value that must mean the text itself: `${` would be read as a reference.
fn escape(v: &str) -> String {
    v.replace("${", "$${")
}

fn document(kind: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name}, "spec": spec})
}

fn yaml(docs: &[Value]) -> String {
    let mut out = String::from("# Written by `estate import` from the live organization.\n");
    for (i, d) in docs.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&serde_yaml::to_string(d).expect("a document serializes"));
    }
    out
}

/// `name`, or `name-2`, `name-3`… when taken.
fn unique(name: String, taken: &mut BTreeSet<String>) -> String {
    let mut candidate = name.clone();
    let mut n = 2;
    while !taken.insert(candidate.clone()) {
        candidate = format!("{name}-{n}");
        n += 1;
    }
    candidate
}

/// A manifest account name (`^[a-zA-Z0-9][-a-zA-Z0-9 _.]{0,49}$`) from the AWS one.
fn account_name(aws: &str, id: &str) -> String {
    let kept: String = aws
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_. ".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = kept.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
    let short: String = trimmed.chars().take(44).collect();
    let short = short.trim_end().to_string();
    if short.is_empty() {
        format!("account-{id}")
    } else {
        short
    }
}

/// A `metadata.name` (`^[a-zA-Z][-a-zA-Z0-9]{0,63}$`) from an AWS name or path.
fn metadata_name(aws: &str) -> String {
    let kept: String = aws
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let trimmed = kept.trim_start_matches(|c: char| !c.is_ascii_alphabetic());
    let short: String = trimmed.chars().take(58).collect();
    let short = short.trim_end_matches('-').to_string();
    if short.is_empty() {
        "imported".to_string()
    } else {
        short
    }
}

/// An environment's name from what it targets: its one unit, its one account, or the unit
/// that holds all its accounts.
fn env_name(p: &Placement, names: &BTreeMap<String, String>, live: &LiveState) -> String {
    let common = || {
        let paths: Vec<&str> = p
            .accounts
            .iter()
            .filter_map(|id| live.accounts.iter().find(|a| &a.id == id))
            .filter_map(|a| live.path_of(&a.parent_id))
            .collect();
        let first = paths.first()?.split('/').filter(|s| !s.is_empty());
        let mut shared: Vec<&str> = first.collect();
        for path in &paths[1..] {
            let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
            let n = shared
                .iter()
                .zip(&parts)
                .take_while(|(a, b)| a == b)
                .count();
            shared.truncate(n);
        }
        (!shared.is_empty()).then(|| shared.join("-"))
    };
    match (p.units.as_slice(), p.accounts.as_slice()) {
        ([unit], []) => metadata_name(unit.trim_start_matches('/')),
        ([], [account]) => metadata_name(&names[account]),
        _ => common().map_or_else(|| "targets".to_string(), |c| metadata_name(&c)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_the_schema() {
        assert_eq!(account_name("Prod (EU) #1", "1"), "Prod -EU- -1");
        assert_eq!(account_name("--", "123"), "account-123");
        assert_eq!(metadata_name("/ml/prod"), "ml-prod");
        assert_eq!(metadata_name("1-baseline"), "baseline");
        let mut taken = BTreeSet::new();
        assert_eq!(unique("a".into(), &mut taken), "a");
        assert_eq!(unique("a".into(), &mut taken), "a-2");
    }

    fn live() -> LiveState {
        use crate::live::{LiveAccount, LiveInstance, LiveUnit};
        let account = |id: &str, name: &str, parent: &str| LiveAccount {
            id: id.into(),
            name: name.into(),
            email: format!("{name}@example.com"),
            state: AccountState::Active,
            parent_id: parent.into(),
            tags: None,
        };
        let instance = |account: &str, region: &str| LiveInstance {
            account: account.into(),
            region: region.into(),
            status: "CURRENT".into(),
            status_reason: None,
            unit: None,
            overrides: None,
            drift: None,
            last_operation: None,
            stack_id: None,
        };
        let set = |name: &str, tags: &[(&str, &str)], instances: Vec<LiveInstance>| LiveStackSet {
            name: name.into(),
            description: None,
            template_body: "Resources: {}".into(),
            parameters: [
                ("Token".to_string(), "****".to_string()),
                ("Url".to_string(), "${x}".to_string()),
            ]
            .into(),
            capabilities: vec![],
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            permission_model: "SELF_MANAGED".into(),
            administration_role_arn: None,
            execution_role_name: None,
            auto_deployment: None,
            instances: Some(instances),
        };
        LiveState {
            management_account: "111111111111".into(),
            partition: "aws".into(),
            root_id: "r-1".into(),
            units: vec![
                LiveUnit {
                    id: "ou-a".into(),
                    path: "/a".into(),
                    parent_id: "r-1".into(),
                },
                LiveUnit {
                    id: "ou-b".into(),
                    path: "/a/b".into(),
                    parent_id: "ou-a".into(),
                },
                LiveUnit {
                    id: "ou-c".into(),
                    path: "/c".into(),
                    parent_id: "r-1".into(),
                },
            ],
            accounts: vec![
                account("111111111111", "management", "r-1"),
                account("222222222222", "one", "ou-b"),
                account("333333333333", "two", "ou-b"),
                account("444444444444", "three", "ou-c"),
            ],
            stack_sets: [
                set(
                    "mine",
                    &[],
                    vec![
                        instance("222222222222", "us-east-1"),
                        instance("333333333333", "us-east-1"),
                        instance("444444444444", "us-east-1"),
                    ],
                ),
                set(
                    "gaps",
                    &[],
                    vec![
                        instance("222222222222", "us-east-1"),
                        instance("333333333333", "eu-west-1"),
                    ],
                ),
                set(
                    "theirs",
                    &[(TAG_MANAGED_BY, "other")],
                    vec![instance("222222222222", "us-east-1")],
                ),
            ]
            .into_iter()
            .map(|s| (s.name.clone(), s))
            .collect(),
            ..LiveState::default()
        }
    }

    #[test]
    fn a_scoped_import_keeps_to_its_units_and_says_what_it_left_out() {
        let out = import(
            &live(),
            &ImportOptions {
                estate: "e".into(),
                home_region: "us-east-1".into(),
                units: vec!["/a/b".into()],
                stack_sets: vec![],
            },
        );
        let org = &out.files[&PathBuf::from("organization.yaml")];
        // The scope's unit and its parent; its accounts only, adopted.
        assert!(
            org.contains("- path: /a\n") && org.contains("- path: /a/b\n"),
            "{org}"
        );
        assert!(
            !org.contains("/c") && !org.contains("three") && !org.contains("management"),
            "{org}"
        );
        assert!(org.contains("adopt: true"), "{org}");
        let estate = &out.files[&PathBuf::from("estate.yaml")];
        assert!(
            estate.contains("scope:") && estate.contains("- /a/b"),
            "{estate}"
        );
        // The instance in the out-of-scope account does not shape the environment.
        let envs = &out.files[&PathBuf::from("environments.yaml")];
        assert!(envs.contains("name: a-b\n"), "{envs}");
        let mine = &out.files[&PathBuf::from("stacksets/mine.yaml")];
        assert!(
            mine.contains("Url: $${x}"),
            "a reference-looking value is escaped: {mine}"
        );
        assert!(
            !mine.contains("Token"),
            "a masked NoEcho value is not written: {mine}"
        );
        assert!(
            !out.files
                .contains_key(&PathBuf::from("stacksets/theirs.yaml"))
        );
        let notes = out.notes.join("\n");
        assert!(notes.contains("parameter Token is NoEcho"), "{notes}");
        assert!(
            notes.contains("stack set gaps is not in every region"),
            "{notes}"
        );
        assert!(
            notes.contains("stack set theirs is estate `other`'s"),
            "{notes}"
        );
    }

    #[test]
    fn references_are_escaped() {
        assert_eq!(escape("arn:${x}"), "arn:$${x}");
    }
}
