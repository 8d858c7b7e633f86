//! `estate import`'s writer: a manifest folder from a live organization (units, accounts,
//! stack sets with their templates as AWS returns them, environments inferred from the
//! instances' accounts and regions, portfolios of a hub with their versions' templates) that
//! plans no change against it. Pure: the command reads live state and writes the files.

use crate::live::{AccountState, LivePortfolio, LiveProduct, LiveStackSet, LiveState};
use crate::manifest::model::*;
use crate::tags::{TAG_MANAGED_BY, TAG_PORTFOLIO, TAG_PREFIX, TAG_PRODUCT};
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
    /// Import the portfolios of the hub whose display names match these patterns (`*`);
    /// empty: none.
    pub portfolios: Vec<String>,
    /// The hub account (id) whose portfolios are imported; `None`: the management account.
    pub portfolio_hub: Option<String>,
    /// The role import entered member accounts through, when not AWS's default
    /// (`OrganizationAccountAccessRole`): written as the Estate's `memberRole`.
    pub member_role: Option<String>,
    /// The templates of the imported portfolios' versions as AWS returns them, by
    /// provisioning artifact id (the command reads them; see [`portfolios_to_import`]). A
    /// portfolio with a version missing here is left out.
    pub version_templates: BTreeMap<String, String>,
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
    pub portfolios: usize,
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

    let portfolio_docs = portfolios(
        live,
        opts,
        &mut Org {
            units: &mut units,
            accounts: &mut accounts,
            names: &mut names,
            taken: &mut taken,
        },
        &mut out,
    );

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
    if !portfolio_docs.is_empty() {
        include.push("portfolios/*.yaml".into());
    }
    let mut estate = json!({
        "homeRegion": opts.home_region,
        "regions": [opts.home_region],
        "promotion": promotion,
        // The organization's stack sets already run with roles of its own.
        "stackSetRoles": "existing",
        "include": include,
    });
    if let Some(role) = &opts.member_role {
        estate["memberRole"] = json!(role);
    }
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
    for (name, spec) in &portfolio_docs {
        out.files.insert(
            PathBuf::from(format!("portfolios/{name}.yaml")),
            yaml(&[document("Portfolio", name, spec.clone())]),
        );
    }
    out.portfolios = portfolio_docs.len();
    out.units = units.len();
    out.accounts = accounts.len();
    out.stack_sets = stack_set_docs.len();
    out.environments = env_docs.len();
    out
}

/// The organization document's parts a portfolio may add to: units its shares name, and
/// accounts (its hub, its recipients) outside the imported ones.
struct Org<'a> {
    units: &'a mut Vec<String>,
    accounts: &'a mut Vec<Value>,
    names: &'a mut BTreeMap<String, String>,
    taken: &'a mut BTreeSet<String>,
}

impl Org<'_> {
    /// The manifest name of account `id`, which is added (without a unit: its placement is
    /// not managed) when the import left it out; `None` when it is not ACTIVE.
    fn account(&mut self, live: &LiveState, id: &str) -> Option<String> {
        if let Some(name) = self.names.get(id) {
            return Some(name.clone());
        }
        let a = live
            .accounts
            .iter()
            .find(|a| a.id == id && a.state == AccountState::Active)?;
        let name = unique(account_name(&a.name, &a.id), self.taken);
        self.names.insert(a.id.clone(), name.clone());
        self.accounts
            .push(json!({"name": name, "email": a.email, "adopt": true}));
        Some(name)
    }

    /// The path of unit `id`, listed (with its ancestors) when the import left it out.
    fn unit(&mut self, live: &LiveState, id: &str) -> Option<String> {
        let path = live.units.iter().find(|u| u.id == id)?.path.clone();
        let mut at = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            at = format!("{at}/{part}");
            if !self.units.contains(&at) {
                self.units.push(at.clone());
            }
        }
        Some(path)
    }
}

/// The live portfolios `opts` imports: in the hub, of a matching display name, this estate's
/// or no estate's (another estate's are not read in full).
pub fn portfolios_to_import<'a>(
    live: &'a LiveState,
    opts: &ImportOptions,
) -> Vec<&'a LivePortfolio> {
    let hub = opts
        .portfolio_hub
        .as_deref()
        .unwrap_or(&live.management_account);
    live.portfolios
        .iter()
        .filter(|l| l.account == hub)
        .filter(|l| {
            opts.portfolios
                .iter()
                .any(|p| glob_match(p, &l.display_name))
        })
        .filter(|l| {
            l.tags
                .get(TAG_MANAGED_BY)
                .is_none_or(|owner| *owner == opts.estate)
        })
        .collect()
}

/// The Portfolio documents (name, spec) of the imported portfolios, their templates in
/// `out.files`.
fn portfolios(
    live: &LiveState,
    opts: &ImportOptions,
    org: &mut Org,
    out: &mut Imported,
) -> Vec<(String, Value)> {
    if opts.portfolios.is_empty() {
        return Vec::new();
    }
    let hub = opts
        .portfolio_hub
        .clone()
        .unwrap_or_else(|| live.management_account.clone());
    // Another estate's of a matching name were read by name only.
    for u in live.unmanaged_portfolios.iter().filter(|u| {
        u.account == hub
            && opts
                .portfolios
                .iter()
                .any(|p| glob_match(p, &u.display_name))
    }) {
        out.notes.push(format!(
            "portfolio {} ({}) carries another estate's tag: left out",
            u.display_name, u.id
        ));
    }
    let Some(hub_name) = org.account(live, &hub) else {
        out.notes.push(format!(
            "account {hub}, the portfolios' hub, is not an ACTIVE account of the organization: no portfolio imported"
        ));
        return Vec::new();
    };
    let mut taken = BTreeSet::new();
    let mut docs = Vec::new();
    for l in portfolios_to_import(live, opts) {
        let mine = l.tags.contains_key(TAG_MANAGED_BY);
        let name = match l.tags.get(TAG_PORTFOLIO).filter(|_| mine) {
            Some(name) => unique(name.clone(), &mut taken),
            None => unique(metadata_name(&l.display_name), &mut taken),
        };
        let mut files = BTreeMap::new();
        let mut notes = Vec::new();
        let Some(spec) =
            portfolio_spec(live, l, &name, &hub_name, org, &mut files, &mut notes, opts)
        else {
            out.notes.extend(notes);
            continue;
        };
        out.notes.extend(notes);
        out.files.extend(files);
        docs.push((name, spec));
    }
    docs
}

/// One portfolio's spec; `None` (with a note) when a version's template is missing.
#[allow(clippy::too_many_arguments)] // one call site; the arguments are the import's context
fn portfolio_spec(
    live: &LiveState,
    l: &LivePortfolio,
    name: &str,
    hub_name: &str,
    org: &mut Org,
    files: &mut BTreeMap<PathBuf, String>,
    notes: &mut Vec<String>,
    opts: &ImportOptions,
) -> Option<Value> {
    let what = format!("portfolio {} ({})", l.display_name, l.id);
    let mut spec = Map::new();
    spec.insert("account".into(), json!(hub_name));
    spec.insert("displayName".into(), json!(l.display_name));
    spec.insert("providerName".into(), json!(l.provider_name));
    if let Some(d) = &l.description {
        spec.insert("description".into(), json!(d));
    }
    let mut products = Vec::new();
    let mut product_names = BTreeSet::new();
    for lp in &l.products {
        match lp.tags.get(TAG_MANAGED_BY) {
            Some(owner) if *owner != opts.estate => {
                notes.push(format!(
                    "{what}: product {} ({}) carries estate `{owner}`'s tag: left out",
                    lp.name, lp.id
                ));
                continue;
            }
            _ => {}
        }
        let product_name = match lp
            .tags
            .get(TAG_PRODUCT)
            .filter(|_| lp.tags.contains_key(TAG_MANAGED_BY))
        {
            Some(n) => unique(n.clone(), &mut product_names),
            None => unique(metadata_name(&lp.name), &mut product_names),
        };
        let product = product_spec(l, lp, name, &product_name, &what, files, notes, opts)?;
        if let Some(product) = product {
            products.push(product);
        }
    }
    if !products.is_empty() {
        spec.insert("products".into(), json!(products));
    }
    let mut tag_options: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for t in &l.tag_options {
        tag_options.entry(&t.key).or_default().push(&t.value);
    }
    if !tag_options.is_empty() {
        spec.insert("tagOptions".into(), json!(tag_options));
    }
    if !l.principals.is_empty() {
        let escaped: Vec<String> = l.principals.iter().map(|p| escape(p)).collect();
        spec.insert("principals".into(), json!(escaped));
    }
    let mut share_with = Map::new();
    let mut accounts = Vec::new();
    for id in &l.shared_accounts {
        match org.account(live, id) {
            Some(n) => accounts.push(n),
            None => notes.push(format!(
                "{what}: shared with account {id}, which is no ACTIVE account of the organization: the share is left out (the plan removes it)"
            )),
        }
    }
    let mut units = Vec::new();
    for id in &l.shared_units {
        match org.unit(live, id) {
            Some(path) => units.push(path),
            None => notes.push(format!(
                "{what}: shared with {id}, which is no unit of the organization: the share is left out (the plan removes it)"
            )),
        }
    }
    if !accounts.is_empty() {
        share_with.insert("accounts".into(), json!(accounts));
    }
    if !units.is_empty() {
        share_with.insert("units".into(), json!(units));
    }
    if !share_with.is_empty() {
        spec.insert("shareWith".into(), Value::Object(share_with));
    }
    // What the shares give besides the portfolio (the defaults: what it has).
    share_flag(
        &mut spec,
        "shareTagOptions",
        l.share_flags.values().map(|f| f.tag_options).collect(),
        !l.tag_options.is_empty(),
        notes,
        &format!("{what}: some shares give the tag options and some do not"),
    );
    share_flag(
        &mut spec,
        "sharePrincipals",
        l.shared_units
            .iter()
            .filter_map(|u| l.share_flags.get(u))
            .map(|f| f.principals)
            .collect(),
        !l.principals.is_empty(),
        notes,
        &format!("{what}: some unit shares give the principal names and some do not"),
    );
    // One list for every recipient: the principals associated in each, as `role/Name`.
    let per_recipient: Vec<BTreeSet<&str>> = l
        .shared_accounts
        .iter()
        .map(|id| {
            l.recipients
                .get(id)
                .map(|r| {
                    r.principals
                        .iter()
                        .filter_map(|arn| arn.splitn(6, ':').nth(5))
                        .collect()
                })
                .unwrap_or_default()
        })
        .collect();
    let every: BTreeSet<&str> = per_recipient.iter().flatten().copied().collect();
    if per_recipient.iter().any(|r| *r != every) {
        notes.push(format!(
            "{what}: its recipient accounts have different principals associated; the manifest lists all of them for every recipient (the plan associates the missing ones)"
        ));
    }
    if !every.is_empty() {
        spec.insert("recipientPrincipals".into(), json!(every));
    }
    let tags = own_tags(&l.tags);
    if !tags.is_empty() {
        spec.insert("tags".into(), Value::Object(tags));
    }
    // Untagged: the portfolio, or a product in it (adopted with it).
    if !l.tags.contains_key(TAG_MANAGED_BY)
        || l.products
            .iter()
            .any(|p| !p.tags.contains_key(TAG_MANAGED_BY))
    {
        spec.insert("adopt".into(), json!(true));
    }
    Some(Value::Object(spec))
}

/// A share flag, written where the shares set it otherwise than the default; `differ` noted
/// when they do not agree (the manifest then says every share does).
fn share_flag(
    spec: &mut Map<String, Value>,
    field: &str,
    set: BTreeSet<bool>,
    default: bool,
    notes: &mut Vec<String>,
    differ: &str,
) {
    let Some(&shared) = set.iter().next_back() else {
        return;
    };
    if set.len() > 1 {
        notes.push(format!(
            "{differ}; the manifest says every one does (the plan changes the others)"
        ));
    }
    if shared != default {
        spec.insert(field.into(), json!(shared));
    }
}

/// One product's entry: `Some(None)` when it is left out (with a note), `None` when a
/// version's template is missing (the whole portfolio is left out).
#[allow(clippy::too_many_arguments)] // one call site; the arguments are the import's context
fn product_spec(
    l: &LivePortfolio,
    lp: &LiveProduct,
    portfolio: &str,
    name: &str,
    what: &str,
    files: &mut BTreeMap<PathBuf, String>,
    notes: &mut Vec<String>,
    opts: &ImportOptions,
) -> Option<Option<Value>> {
    let mut versions = Vec::new();
    let mut file_names = BTreeSet::new();
    for v in &lp.versions {
        if !v.active {
            // In the manifest, a deprecated version would be made active again.
            notes.push(format!(
                "{what}: version {} of product {} is deprecated (Active: false): left out",
                v.name, lp.name
            ));
            continue;
        }
        let Some(text) = opts.version_templates.get(&v.id) else {
            notes.push(format!(
                "{what}: the template of version {} of product {} could not be read: the portfolio is left out",
                v.name, lp.name
            ));
            return None;
        };
        let ext = if text.trim_start().starts_with('{') {
            "json"
        } else {
            "yaml"
        };
        let file = unique(file_name(&v.name), &mut file_names);
        let path = format!("templates/portfolios/{portfolio}/{name}/{file}.{ext}");
        files.insert(PathBuf::from(&path), text.clone());
        let mut version = json!({"name": v.name, "template": format!("../{path}")});
        if let Some(d) = &v.description {
            version["description"] = json!(d);
        }
        versions.push(version);
    }
    if versions.is_empty() {
        notes.push(format!(
            "{what}: product {} ({}) has no active version: left out",
            lp.name, lp.id
        ));
        return Some(None);
    }
    let mut product = json!({
        "name": name,
        "displayName": lp.name,
        "owner": lp.owner,
        "versions": versions,
    });
    for (key, value) in [
        ("description", &lp.description),
        ("distributor", &lp.distributor),
        ("supportEmail", &lp.support_email),
    ] {
        if let Some(v) = value {
            product[key] = json!(v);
        }
    }
    for c in l.constraints.iter().filter(|c| c.product_id == lp.id) {
        let role = serde_json::from_str::<Value>(&c.parameters)
            .ok()
            .and_then(|p| p.get("LocalRoleName")?.as_str().map(str::to_string));
        match (c.kind.as_str(), role) {
            ("LAUNCH", Some(role)) => product["launchRoleName"] = json!(role),
            ("LAUNCH", None) => notes.push(format!(
                "{what}: the launch constraint of product {} names no LocalRoleName (the manifest gives a launch role by name only): the plan replaces it",
                lp.name
            )),
            (kind, _) => notes.push(format!(
                "{what}: product {} has a {kind} constraint, which the manifest does not express: left as it is",
                lp.name
            )),
        }
    }
    let tags = own_tags(&lp.tags);
    if tags.keys().any(|k| k.starts_with("aws:")) {
        notes.push(format!(
            "{what}: product {} has `aws:` tags, which a manifest may not give: the plan shows them as a difference",
            lp.name
        ));
    }
    let tags: Map<String, Value> = tags
        .into_iter()
        .filter(|(k, _)| !k.starts_with("aws:"))
        .collect();
    if !tags.is_empty() {
        product["tags"] = Value::Object(tags);
    }
    Some(Some(product))
}

/// The tags a resource has besides estate's own: those a manifest gives.
fn own_tags(tags: &BTreeMap<String, String>) -> Map<String, Value> {
    tags.iter()
        .filter(|(k, _)| !k.starts_with(TAG_PREFIX))
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect()
}

/// `name` with every character but ASCII letters, digits and those of `also` made `-`.
fn kept(name: &str, also: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || also.contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// A file name from a version name: letters, digits, `-`, `_` and `.` kept.
fn file_name(name: &str) -> String {
    let kept = kept(name, "-_.").trim_start_matches('.').to_string();
    if kept.is_empty() {
        "version".into()
    } else {
        kept
    }
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
    let tags = own_tags(&s.tags);
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
    let kept = kept(aws, "-_. ");
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
    let kept = kept(aws, "");
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
    fn a_member_role_other_than_the_default_becomes_the_estates() {
        let estate = |member_role: Option<&str>| {
            let out = import(
                &live(),
                &ImportOptions {
                    estate: "e".into(),
                    home_region: "us-east-1".into(),
                    member_role: member_role.map(str::to_string),
                    ..Default::default()
                },
            );
            out.files[&PathBuf::from("estate.yaml")].clone()
        };
        assert!(estate(Some("PlatformAdmin")).contains("memberRole: PlatformAdmin"));
        assert!(!estate(None).contains("memberRole"));
    }

    #[test]
    fn a_scoped_import_keeps_to_its_units_and_says_what_it_left_out() {
        let out = import(
            &live(),
            &ImportOptions {
                estate: "e".into(),
                home_region: "us-east-1".into(),
                units: vec!["/a/b".into()],
                ..Default::default()
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
    fn portfolios_keep_what_the_manifest_can_say_and_note_the_rest() {
        use crate::live::{LiveConstraint, LiveShareFlags, LiveTagOption, LiveVersion};
        let version = |id: &str, name: &str, active: bool| LiveVersion {
            id: id.into(),
            name: name.into(),
            description: None,
            active,
        };
        let product = |name: &str, versions: Vec<LiveVersion>| LiveProduct {
            id: format!("prod-{name}"),
            name: name.into(),
            owner: "IT".into(),
            versions,
            ..Default::default()
        };
        let mut state = live();
        state.portfolios = vec![
            LivePortfolio {
                id: "port-a".into(),
                account: "222222222222".into(),
                display_name: "ML Tools".into(),
                provider_name: "IT".into(),
                products: vec![product(
                    "Notebook",
                    vec![version("pa-0", "v0", false), version("pa-1", "v1.0", true)],
                )],
                constraints: vec![LiveConstraint {
                    id: "cons-1".into(),
                    product_id: "prod-Notebook".into(),
                    kind: "LAUNCH".into(),
                    parameters: r#"{"LocalRoleName":"launch"}"#.into(),
                }],
                tag_options: vec![LiveTagOption {
                    id: "tag-1".into(),
                    key: "team".into(),
                    value: "ml".into(),
                }],
                shared_units: vec!["ou-c".into()],
                // The unit share gives no tag options although there are some.
                share_flags: [("ou-c".to_string(), LiveShareFlags::default())].into(),
                ..Default::default()
            },
            LivePortfolio {
                id: "port-b".into(),
                account: "222222222222".into(),
                display_name: "ML Unread".into(),
                products: vec![product("Broken", vec![version("pa-2", "v1", true)])],
                ..Default::default()
            },
        ];
        let out = import(
            &state,
            &ImportOptions {
                estate: "e".into(),
                home_region: "us-east-1".into(),
                units: vec!["/a/b".into()],
                portfolios: vec!["ML *".into()],
                portfolio_hub: Some("222222222222".into()),
                version_templates: [("pa-1".to_string(), "Resources: {}".to_string())].into(),
                ..Default::default()
            },
        );
        assert_eq!(out.portfolios, 1);
        let doc = &out.files[&PathBuf::from("portfolios/ML-Tools.yaml")];
        for part in [
            "account: one\n",
            "name: v1.0\n",
            "template: ../templates/portfolios/ML-Tools/Notebook/v1.0.yaml\n",
            "launchRoleName: launch\n",
            "- /c\n",
            "shareTagOptions: false\n",
            "adopt: true\n",
        ] {
            assert!(doc.contains(part), "{part}: {doc}");
        }
        assert!(
            !doc.contains("v0"),
            "a deprecated version is left out: {doc}"
        );
        assert_eq!(
            out.files[&PathBuf::from("templates/portfolios/ML-Tools/Notebook/v1.0.yaml")],
            "Resources: {}"
        );
        // The unit shared with is listed, though outside the imported ones.
        let org = &out.files[&PathBuf::from("organization.yaml")];
        assert!(org.contains("- path: /c\n"), "{org}");
        assert!(
            !out.files
                .contains_key(&PathBuf::from("portfolios/ML-Unread.yaml"))
        );
        let notes = out.notes.join("\n");
        assert!(
            notes.contains("version v0 of product Notebook is deprecated"),
            "{notes}"
        );
        assert!(
            notes.contains("the template of version v1 of product Broken could not be read"),
            "{notes}"
        );
    }

    #[test]
    fn references_are_escaped() {
        assert_eq!(escape("arn:${x}"), "arn:$${x}");
    }
}
