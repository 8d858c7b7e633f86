//! Cross-document checks: unique names, references that resolve, permission-model fields,
//! and template parameters, all reported at the line that needs fixing.

use super::model::*;
use super::names as aws;
use super::refs::{self, Ref};
use super::{Doc, Parsed};
use crate::diag::{Diagnostics, closest};
use crate::template::Template;
use crate::yaml::{Node, Value, pointer_escape};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

/// What the other checks look names up in.
struct Names<'a> {
    estate: Option<&'a str>,
    accounts: Vec<&'a str>,
    pinned: HashMap<&'a str, &'a str>,
    units: Vec<&'a str>,
    environments: Vec<&'a str>,
    /// Account names by unit path, for resolving targets statically.
    account_units: HashMap<&'a str, &'a str>,
    /// Some file did not parse, so a name missing here may well be defined there.
    incomplete: bool,
}

pub(super) fn check(p: &Parsed, templates: &BTreeMap<PathBuf, Template>, diags: &mut Diagnostics) {
    unique_names(&p.estate, "Estate", diags);
    unique_names(&p.organization, "Organization", diags);
    unique_names(&p.environments, "Environment", diags);
    unique_names(&p.stack_sets, "StackSet", diags);
    unique_names(&p.portfolios, "Portfolio", diags);
    unique_names(&p.pipelines, "Pipeline", diags);
    for extra in p.organization.iter().skip(1) {
        diags.error(
            "estate::duplicate",
            &extra.file,
            extra.span("/kind"),
            "a manifest holds at most one Organization",
        );
    }

    let org = p.organization.first();
    let mut names = Names {
        estate: p.estate.first().map(|e| e.name.as_str()),
        accounts: Vec::new(),
        pinned: HashMap::new(),
        units: vec!["/"],
        environments: p.environments.iter().map(|e| e.name.as_str()).collect(),
        account_units: HashMap::new(),
        incomplete: p.incomplete,
    };
    if let Some(org) = org {
        check_organization(org, &mut names, diags);
    }
    // Names from documents that failed the schema still count as defined.
    for (kind, _, node) in &p.invalid {
        match kind {
            Kind::Environment => names.environments.extend(raw_name(node)),
            Kind::Organization => {
                names
                    .accounts
                    .extend(raw_list(node, "/spec/accounts", "name"));
                names.units.extend(raw_list(node, "/spec/units", "path"));
            }
            _ => {}
        }
    }
    if let Some(estate) = p.estate.first() {
        check_estate(estate, &names, &p.environments, diags);
    }
    for env in &p.environments {
        check_targets(env, "/spec/targets", &env.spec.targets, &names, diags);
        if env.spec.targets.units.is_empty() && env.spec.targets.accounts.is_empty() {
            diags
                .error(
                    "estate::environment",
                    &env.file,
                    env.span("/spec/targets"),
                    format!("environment `{}` targets no unit and no account", env.name),
                )
                .help("list `units` and/or `accounts` under `targets`");
        }
    }
    for s in &p.stack_sets {
        check_stack_set(s, p, templates, &names, diags);
    }
    for portfolio in &p.portfolios {
        check_portfolio(portfolio, &names, diags);
    }
    for pipeline in &p.pipelines {
        check_pipeline(pipeline, p, templates, &names, diags);
    }
    check_generated_names(p, diags);

    // References anywhere in string values, in invalid documents too.
    let docs = p
        .estate
        .iter()
        .map(|d| (Kind::Estate, d.file.as_str(), &d.node))
        .chain(
            p.organization
                .iter()
                .map(|d| (Kind::Organization, d.file.as_str(), &d.node)),
        )
        .chain(
            p.environments
                .iter()
                .map(|d| (Kind::Environment, d.file.as_str(), &d.node)),
        )
        .chain(
            p.stack_sets
                .iter()
                .map(|d| (Kind::StackSet, d.file.as_str(), &d.node)),
        )
        .chain(
            p.portfolios
                .iter()
                .map(|d| (Kind::Portfolio, d.file.as_str(), &d.node)),
        )
        .chain(
            p.pipelines
                .iter()
                .map(|d| (Kind::Pipeline, d.file.as_str(), &d.node)),
        )
        .chain(p.invalid.iter().map(|(k, f, n)| (*k, f.as_str(), n)));
    for (kind, file, node) in docs {
        check_references(file, node, kind, &names, diags);
    }
}

fn raw_name(node: &Node) -> Option<&str> {
    node.pointer("/metadata/name")?.as_str()
}

/// `field` of every item of the list at `pointer`, read from raw YAML.
fn raw_list<'n>(node: &'n Node, pointer: &str, field: &str) -> Vec<&'n str> {
    match node.pointer(pointer).map(|n| &n.value) {
        Some(Value::Seq(items)) => items
            .iter()
            .filter_map(|i| i.get(field)?.as_str())
            .collect(),
        _ => Vec::new(),
    }
}

fn unique_names<S>(docs: &[Doc<S>], kind: &str, diags: &mut Diagnostics) {
    let mut first: HashMap<&str, &Doc<S>> = HashMap::new();
    for d in docs {
        if let Some(prev) = first.get(d.name.as_str()) {
            let (line, _) = crate::diag::line_col(
                diags.sources.get(&prev.file).map_or("", |s| s),
                prev.span("/metadata/name").start,
            );
            diags
                .error(
                    "estate::duplicate",
                    &d.file,
                    d.span("/metadata/name"),
                    format!("duplicate {kind} name `{}`", d.name),
                )
                .label("already used")
                .help(format!("first defined at {}:{line}", prev.file));
        } else {
            first.insert(&d.name, d);
        }
    }
}

fn check_organization<'a>(
    org: &'a Doc<OrganizationSpec>,
    names: &mut Names<'a>,
    diags: &mut Diagnostics,
) {
    let all_paths: BTreeSet<&str> = org.spec.units.iter().map(|u| u.path.as_str()).collect();
    for (i, unit) in org.spec.units.iter().enumerate() {
        let ptr = format!("/spec/units/{i}/path");
        if names.units.contains(&unit.path.as_str()) {
            diags.error(
                "estate::duplicate",
                &org.file,
                org.span(&ptr),
                format!("unit `{}` is listed twice", unit.path),
            );
            continue;
        }
        let parent = parent_path(&unit.path);
        if !names.units.contains(&parent) {
            let b = diags.error(
                "estate::unit-parent",
                &org.file,
                org.span(&ptr),
                format!(
                    "parent unit `{parent}` of `{}` is not listed before it",
                    unit.path
                ),
            );
            if all_paths.contains(parent) {
                b.help(format!("move `{parent}` above `{}`", unit.path));
            } else {
                b.help(format!("add `- path: {parent}` before `{}`", unit.path));
            }
        }
        names.units.push(&unit.path);
    }
    let mut emails: HashMap<String, usize> = HashMap::new();
    let mut ids: HashMap<&str, usize> = HashMap::new();
    for (i, account) in org.spec.accounts.iter().enumerate() {
        let base = format!("/spec/accounts/{i}");
        if names.accounts.contains(&account.name.as_str()) {
            diags.error(
                "estate::duplicate",
                &org.file,
                org.span(&format!("{base}/name")),
                format!("account name `{}` is used twice", account.name),
            );
        } else {
            names.accounts.push(&account.name);
        }
        if let Some(j) = emails.insert(account.email.to_lowercase(), i) {
            diags
                .error(
                    "estate::duplicate",
                    &org.file,
                    org.span(&format!("{base}/email")),
                    format!("email `{}` is used by two accounts", account.email),
                )
                .help(format!(
                    "account `{}` has it too; an email identifies one AWS account",
                    org.spec.accounts[j].name
                ));
        }
        if let Some(id) = &account.id {
            if let Some(j) = ids.insert(id, i) {
                diags
                    .error(
                        "estate::duplicate",
                        &org.file,
                        org.span(&format!("{base}/id")),
                        format!("account id {id} is pinned twice"),
                    )
                    .help(format!(
                        "account `{}` pins it too",
                        org.spec.accounts[j].name
                    ));
            }
            names.pinned.insert(&account.name, id);
        }
        if let Some(unit) = &account.unit {
            if !all_paths.contains(unit.as_str()) && unit != "/" {
                diags
                    .error(
                        "estate::unknown-unit",
                        &org.file,
                        org.span(&format!("{base}/unit")),
                        format!("unit `{unit}` is not in spec.units"),
                    )
                    .label("unknown unit")
                    .suggest(unit, all_paths.iter().copied());
            }
            names.account_units.insert(&account.name, unit);
        }
    }
}

fn parent_path(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

fn check_estate(
    estate: &Doc<EstateSpec>,
    names: &Names,
    environments: &[Doc<EnvironmentSpec>],
    diags: &mut Diagnostics,
) {
    let mut seen = BTreeSet::new();
    for (i, env) in estate.spec.promotion.iter().enumerate() {
        let span = estate.span(&format!("/spec/promotion/{i}"));
        if !seen.insert(env) {
            diags.error(
                "estate::duplicate",
                &estate.file,
                span,
                format!("environment `{env}` appears twice in promotion"),
            );
        } else if !names.environments.contains(&env.as_str()) {
            unknown(
                names,
                diags,
                &estate.file,
                span,
                "environment",
                env,
                &names.environments,
            );
        }
    }
    for env in environments {
        if !estate.spec.promotion.contains(&env.name) {
            diags
                .warning(
                    "estate::promotion",
                    &env.file,
                    env.span("/metadata/name"),
                    format!(
                        "environment `{}` is not in the Estate's promotion",
                        env.name
                    ),
                )
                .help(
                    "apply runs it after the promotion stages; add it to `promotion` to order it",
                );
        }
    }
    let mut regions = BTreeSet::new();
    for (i, r) in estate.spec.regions.iter().enumerate() {
        if !regions.insert(r) {
            diags.error(
                "estate::duplicate",
                &estate.file,
                estate.span(&format!("/spec/regions/{i}")),
                format!("region `{r}` is listed twice"),
            );
        }
    }
}

fn unknown(
    names: &Names,
    diags: &mut Diagnostics,
    file: &str,
    span: std::ops::Range<usize>,
    what: &str,
    name: &str,
    candidates: &[&str],
) {
    if names.incomplete {
        return;
    }
    let b = diags
        .error(
            "estate::unknown-name",
            file,
            span,
            format!("unknown {what} `{name}`"),
        )
        .label(format!("no such {what}"));
    match closest(name, candidates.iter().copied()) {
        Some(best) => b.help(format!("did you mean `{best}`?")),
        None if candidates.is_empty() => b.help(format!("no {what} is defined")),
        None => b.help(format!("known: {}", candidates.join(", "))),
    };
}

fn check_targets<S>(
    doc: &Doc<S>,
    ptr: &str,
    targets: &Targets,
    names: &Names,
    diags: &mut Diagnostics,
) {
    for (i, unit) in targets.units.iter().enumerate() {
        if !names.units.contains(&unit.as_str()) {
            let span = doc.span(&format!("{ptr}/units/{i}"));
            unknown(names, diags, &doc.file, span, "unit", unit, &names.units);
        }
    }
    for (i, account) in targets.accounts.iter().enumerate() {
        if !names.accounts.contains(&account.as_str()) {
            let span = doc.span(&format!("{ptr}/accounts/{i}"));
            unknown(
                names,
                diags,
                &doc.file,
                span,
                "account",
                account,
                &names.accounts,
            );
        }
    }
}

/// Accounts (by name) an environment reaches, as far as the manifest alone tells.
fn static_targets<'a>(env: &'a Doc<EnvironmentSpec>, names: &Names<'a>) -> BTreeSet<&'a str> {
    let mut out: BTreeSet<&str> = env
        .spec
        .targets
        .accounts
        .iter()
        .map(String::as_str)
        .collect();
    for unit in &env.spec.targets.units {
        for (account, at) in &names.account_units {
            let inside = unit == "/" || *at == unit || at.starts_with(&format!("{unit}/"));
            if inside {
                out.insert(account);
            }
        }
    }
    out
}

fn check_stack_set(
    s: &Doc<StackSetSpec>,
    p: &Parsed,
    templates: &BTreeMap<PathBuf, Template>,
    names: &Names,
    diags: &mut Diagnostics,
) {
    let spec = &s.spec;
    let mut envs = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, env) in spec.environments.iter().enumerate() {
        let span = s.span(&format!("/spec/environments/{i}"));
        if !seen.insert(env) {
            diags.error(
                "estate::duplicate",
                &s.file,
                span,
                format!("environment `{env}` is listed twice"),
            );
            continue;
        }
        match p.environments.iter().find(|e| &e.name == env) {
            Some(e) => envs.push((i, e)),
            // Defined but invalid: already reported where it is defined.
            None if names.environments.contains(&env.as_str()) => {}
            None => unknown(
                names,
                diags,
                &s.file,
                span,
                "environment",
                env,
                &names.environments,
            ),
        }
        let aws_name = format!("{}-{env}", s.name);
        if aws_name.len() > 128 {
            diags.error(
                "estate::name",
                &s.file,
                s.span(&format!("/spec/environments/{i}")),
                format!("stack set name `{aws_name}` is over 128 characters"),
            );
        }
    }

    // Fields that only one permission model accepts.
    let self_managed = spec.permission_model == PermissionModel::SelfManaged;
    let misplaced: &[(&str, bool)] = &[
        (
            "administrationRoleArn",
            spec.administration_role_arn.is_some() && !self_managed,
        ),
        (
            "executionRoleName",
            spec.execution_role_name.is_some() && !self_managed,
        ),
        (
            "autoDeployment",
            spec.auto_deployment.is_some() && self_managed,
        ),
    ];
    for (field, bad) in misplaced {
        if *bad {
            let (need, have) = if self_managed {
                ("service-managed", "self-managed")
            } else {
                ("self-managed", "service-managed")
            };
            diags
                .error(
                    "estate::permission-model",
                    &s.file,
                    s.node
                        .key_span("/spec", field)
                        .unwrap_or_else(|| s.span("/spec")),
                    format!("`{field}` applies only to {need} stack sets; this one is {have}"),
                )
                .help(format!("remove `{field}` or set `permissionModel: {need}`"));
        }
    }
    if !self_managed {
        for (i, env) in &envs {
            if !env.spec.targets.accounts.is_empty() {
                diags
                    .error(
                        "estate::permission-model",
                        &s.file,
                        s.span(&format!("/spec/environments/{i}")),
                        format!(
                            "service-managed stack sets deploy to units, but environment `{}` targets accounts",
                            env.name
                        ),
                    )
                    .help("target units in that environment, or use `permissionModel: self-managed`");
            }
        }
    }

    // Overrides name real accounts that the stack set reaches.
    let reached: BTreeSet<&str> = envs
        .iter()
        .flat_map(|(_, e)| static_targets(e, names))
        .collect();
    for (i, o) in spec.overrides.iter().enumerate() {
        for (j, account) in o.accounts.iter().enumerate() {
            let span = s.span(&format!("/spec/overrides/{i}/accounts/{j}"));
            if !names.accounts.contains(&account.as_str()) {
                unknown(
                    names,
                    diags,
                    &s.file,
                    span,
                    "account",
                    account,
                    &names.accounts,
                );
            } else if !reached.contains(account.as_str()) {
                diags.warning(
                    "estate::override",
                    &s.file,
                    span,
                    format!("account `{account}` is not a target of any environment of this stack set; the override has no effect"),
                );
            }
        }
    }

    let Some(template) = templates.get(&s.resolve_path(&spec.template)) else {
        return;
    };
    if template.text.len() > crate::template::URL_TEMPLATE_LIMIT {
        diags
            .error(
                "estate::template-size",
                &s.file,
                s.span("/spec/template"),
                format!(
                    "template `{}` is {} bytes; CloudFormation takes at most {} from S3",
                    spec.template,
                    template.text.len(),
                    crate::template::URL_TEMPLATE_LIMIT
                ),
            )
            .help("split it into nested stacks, or shorten it (comments and whitespace count)");
    }
    let declared: Vec<&str> = template.parameters.keys().map(String::as_str).collect();

    // Capabilities CloudFormation will demand.
    let given: BTreeSet<&str> = spec.capabilities.iter().map(|c| c.as_str()).collect();
    for needed in template.required_capabilities() {
        let satisfied = given.contains(needed)
            || (needed == "CAPABILITY_IAM" && given.contains("CAPABILITY_NAMED_IAM"));
        if !satisfied {
            diags
                .error(
                    "estate::capabilities",
                    &s.file,
                    s.node
                        .key_span("/spec", "capabilities")
                        .unwrap_or_else(|| s.span("/spec/template")),
                    format!("the template needs {needed}, which `capabilities` does not grant"),
                )
                .help(format!("add {needed} to spec.capabilities"));
        }
    }

    // Every parameter given is declared.
    let check_declared = |ptr: String, params: &Parameters, diags: &mut Diagnostics| {
        for name in params.keys() {
            if !template.parameters.contains_key(name) {
                let span = s.node.key_span(&ptr, name).unwrap_or_else(|| s.span(&ptr));
                let b = diags
                    .error(
                        "estate::parameter",
                        &s.file,
                        span,
                        format!(
                            "parameter `{name}` is not declared by the template {}",
                            spec.template
                        ),
                    )
                    .label("undeclared");
                match closest(name, declared.iter().copied()) {
                    Some(best) => b.help(format!("did you mean `{best}`?")),
                    None if declared.is_empty() => b.help("the template declares no parameters"),
                    None => b.help(format!("declared: {}", declared.join(", "))),
                };
            }
        }
    };
    check_declared("/spec/parameters".into(), &spec.parameters, diags);
    for (i, o) in spec.overrides.iter().enumerate() {
        check_declared(
            format!("/spec/overrides/{i}/parameters"),
            &o.parameters,
            diags,
        );
    }

    // Every parameter without a Default has a value in every environment.
    for (i, env) in &envs {
        let missing: Vec<&str> = template
            .parameters
            .iter()
            .filter(|(name, d)| {
                d.default.is_none()
                    && !spec.parameters.contains_key(*name)
                    && !env.spec.parameters.contains_key(*name)
            })
            .map(|(n, _)| n.as_str())
            .collect();
        if !missing.is_empty() {
            let list = missing
                .iter()
                .map(|m| format!("`{m}`"))
                .collect::<Vec<_>>()
                .join(", ");
            diags
                .error(
                    "estate::parameter",
                    &s.file,
                    s.span(&format!("/spec/environments/{i}")),
                    format!(
                        "template parameter{} {list} without Default get{} no value in environment `{}`",
                        if missing.len() == 1 { "" } else { "s" },
                        if missing.len() == 1 { "s" } else { "" },
                        env.name
                    ),
                )
                .help("set it in spec.parameters, or in that environment's parameters");
        }
    }

    // Literal values hold against the declaration.
    let env_names: Vec<&str> = if envs.is_empty() {
        vec![]
    } else {
        envs.iter().map(|(_, e)| e.name.as_str()).collect()
    };
    let mut warned: BTreeSet<(String, String, String)> = BTreeSet::new();
    let mut check_values = |doc_file: &str,
                            node: &Node,
                            ptr: String,
                            params: &Parameters,
                            envs: &[&str],
                            who: &str,
                            diags: &mut Diagnostics| {
        for (name, value) in params {
            let Some(decl) = template.parameters.get(name) else {
                continue;
            };
            let key = (doc_file.to_string(), ptr.clone(), name.clone());
            if decl.no_echo && !value.0.contains("{{resolve:") && warned.insert(key) {
                diags
                    .warning(
                        "estate::secret-in-manifest",
                        doc_file,
                        node.key_span(&ptr, name).unwrap_or_else(|| node.span_for(&ptr)),
                        format!("parameter `{name}` is NoEcho but its value is written in the manifest"),
                    )
                    .help("anyone who can read the repository can read it: use a dynamic reference such as {{resolve:secretsmanager:NAME}}")
                    .sensitive();
            }
            for env in envs
                .iter()
                .copied()
                .map(Some)
                .chain(envs.is_empty().then_some(None))
            {
                let Some(literal) = literal_value(&value.0, env, names) else {
                    continue;
                };
                if let Some(problem) = decl.check(&literal) {
                    let shown = if decl.no_echo {
                        "(sensitive)".to_string()
                    } else {
                        format!("`{literal}`")
                    };
                    let b = diags
                        .error(
                            "estate::parameter-value",
                            doc_file,
                            node.span_for(&format!("{ptr}/{}", pointer_escape(name))),
                            format!("{who}parameter `{name}` = {shown} {problem}"),
                        )
                        .label("rejected by the template");
                    if decl.no_echo {
                        b.sensitive();
                    }
                    break;
                }
            }
        }
    };
    check_values(
        &s.file,
        &s.node,
        "/spec/parameters".into(),
        &spec.parameters,
        &env_names,
        "",
        diags,
    );
    for (i, o) in spec.overrides.iter().enumerate() {
        check_values(
            &s.file,
            &s.node,
            format!("/spec/overrides/{i}/parameters"),
            &o.parameters,
            &env_names,
            "",
            diags,
        );
    }
    for (_, env) in &envs {
        let who = format!("for stack set `{}`, ", s.name);
        check_values(
            &env.file,
            &env.node,
            "/spec/parameters".into(),
            &env.spec.parameters,
            &[env.name.as_str()],
            &who,
            diags,
        );
    }
}

/// The value as CloudFormation would receive it, when the manifest alone determines it.
fn literal_value(value: &str, env: Option<&str>, names: &Names) -> Option<String> {
    if value.contains("{{resolve:") {
        return None;
    }
    refs::substitute(value, |r| match r {
        Ref::Environment => env.map(str::to_string),
        Ref::Estate => names.estate.map(str::to_string),
        Ref::Account(a) => names.pinned.get(a.as_str()).map(|s| s.to_string()),
        Ref::Unit(_) | Ref::Region => None,
    })
    .ok()
}

fn check_portfolio(p: &Doc<PortfolioSpec>, names: &Names, diags: &mut Diagnostics) {
    let spec = &p.spec;
    if !names.accounts.contains(&spec.account.as_str()) {
        unknown(
            names,
            diags,
            &p.file,
            p.span("/spec/account"),
            "account",
            &spec.account,
            &names.accounts,
        );
    }
    check_targets(p, "/spec/shareWith", &spec.share_with, names, diags);
    for (i, u) in spec.share_with.units.iter().enumerate() {
        // AWS shares with the whole organization as its own node type (ORGANIZATION, by
        // organization id), which estate does not manage.
        if u == "/" {
            diags.error(
                "estate::share",
                &p.file,
                p.span(&format!("/spec/shareWith/units/{i}")),
                "sharing with the organization root `/` is not supported; list the units to share with",
            );
        }
    }
    for (i, a) in spec.share_with.accounts.iter().enumerate() {
        if a == &spec.account {
            diags.error(
                "estate::share",
                &p.file,
                p.span(&format!("/spec/shareWith/accounts/{i}")),
                format!("portfolio is owned by `{a}`; it cannot be shared with its own account"),
            );
        }
    }
    let mut products = BTreeSet::new();
    for (i, product) in spec.products.iter().enumerate() {
        if !products.insert(&product.name) {
            diags.error(
                "estate::duplicate",
                &p.file,
                p.span(&format!("/spec/products/{i}/name")),
                format!("product `{}` is listed twice", product.name),
            );
        }
        let mut versions = BTreeSet::new();
        for (j, v) in product.versions.iter().enumerate() {
            if !versions.insert(&v.name) {
                diags.error(
                    "estate::duplicate",
                    &p.file,
                    p.span(&format!("/spec/products/{i}/versions/{j}/name")),
                    format!(
                        "version `{}` of product `{}` is listed twice",
                        v.name, product.name
                    ),
                );
            }
        }
    }
    for (key, values) in &spec.tag_options {
        let mut seen = BTreeSet::new();
        for (j, v) in values.iter().enumerate() {
            if !seen.insert(v) {
                diags.error(
                    "estate::duplicate",
                    &p.file,
                    p.span(&format!("/spec/tagOptions/{}/{j}", pointer_escape(key))),
                    format!("tag option value `{v}` is listed twice under `{key}`"),
                );
            }
        }
    }
}

/// Stack sets a pipeline compiles to must not take the name of another stack set.
fn check_generated_names(p: &Parsed, diags: &mut Diagnostics) {
    let mut taken: BTreeMap<String, String> = BTreeMap::new();
    for s in &p.stack_sets {
        for env in &s.spec.environments {
            taken.insert(
                format!("{}-{env}", s.name),
                format!("stack set `{}`", s.name),
            );
        }
    }
    // AWS names of different pipelines, compared as AWS does (IAM and S3 ignore case).
    let mut aws_names: BTreeMap<(&str, String), String> = BTreeMap::new();
    for pipe in &p.pipelines {
        let n = aws::Names::new(&pipe.name);
        // Role and bucket names (the prefix) ignore case; stack and project names do not.
        let mut mine = vec![("resource prefix", n.pipeline.to_lowercase())];
        for stage in &pipe.spec.stages {
            mine.push(("stack", n.stage_stack(&stage.environment)));
            mine.push(("CodeBuild project", n.test_project(&stage.environment)));
        }
        let mut clash = None;
        for (kind, name) in mine {
            if let Some(other) = aws_names.insert((kind, name.clone()), pipe.name.clone()) {
                if other != pipe.name && clash.is_none() {
                    clash = Some((other, kind, name));
                }
            }
        }
        if let Some((other, kind, name)) = clash {
            diags.error(
                "estate::duplicate",
                &pipe.file,
                pipe.span("/metadata/name"),
                format!(
                    "pipelines `{other}` and `{}` would both use the {kind} name `{name}` in AWS",
                    pipe.name
                ),
            );
        }
    }
    for pipe in &p.pipelines {
        let stages: Vec<String> = pipe
            .spec
            .stages
            .iter()
            .map(|s| s.environment.clone())
            .collect();
        for name in aws::stack_set_names(&pipe.name, &stages) {
            if let Some(owner) = taken.insert(name.clone(), format!("pipeline `{}`", pipe.name)) {
                diags.error(
                    "estate::duplicate",
                    &pipe.file,
                    pipe.span("/metadata/name"),
                    format!(
                        "pipeline `{}` compiles to the stack set `{name}`, which {owner} already uses",
                        pipe.name
                    ),
                );
            }
        }
    }
}

fn check_pipeline(
    pipe: &Doc<PipelineSpec>,
    p: &Parsed,
    templates: &BTreeMap<PathBuf, Template>,
    names: &Names,
    diags: &mut Diagnostics,
) {
    let spec = &pipe.spec;
    if pipe.name.len() > aws::MAX_NAME {
        diags.error(
            "estate::pipeline",
            &pipe.file,
            pipe.span("/metadata/name"),
            format!(
                "pipeline name `{}` is longer than {} characters: its artifact bucket's name must fit in S3's 63",
                pipe.name,
                aws::MAX_NAME
            ),
        );
    }
    // Every parameter the stage template requires comes from each stage's environment, but
    // the approved model package's ARN, which the pipeline finds itself.
    if let Some(t) = templates.get(&pipe.resolve_path(&spec.template)) {
        for stage in &spec.stages {
            let Some(env) = p.environments.iter().find(|e| e.name == stage.environment) else {
                continue;
            };
            for (param, decl) in &t.parameters {
                if decl.default.is_none()
                    && param != aws::MODEL_PACKAGE_PARAMETER
                    && !env.spec.parameters.contains_key(param)
                {
                    diags.error(
                        "estate::missing-parameter",
                        &pipe.file,
                        pipe.span("/spec/template"),
                        format!(
                            "parameter `{param}` of the stage template has no default and environment `{}` does not give it",
                            env.name
                        ),
                    );
                }
            }
        }
    }
    for (ptr, account) in [
        ("/spec/account", &spec.account),
        ("/spec/source/account", &spec.source.account),
    ] {
        if !names.accounts.contains(&account.as_str()) {
            unknown(
                names,
                diags,
                &pipe.file,
                pipe.span(ptr),
                "account",
                account,
                &names.accounts,
            );
        }
    }
    let promotion: Vec<&str> = p
        .estate
        .first()
        .map(|e| e.spec.promotion.iter().map(String::as_str).collect())
        .unwrap_or_default();
    let mut last_index = None;
    let mut seen = BTreeSet::new();
    for (i, stage) in spec.stages.iter().enumerate() {
        let span = pipe.span(&format!("/spec/stages/{i}/environment"));
        if !seen.insert(&stage.environment) {
            diags.error(
                "estate::duplicate",
                &pipe.file,
                span,
                format!("environment `{}` is a stage twice", stage.environment),
            );
            continue;
        }
        if !names.environments.contains(&stage.environment.as_str()) {
            unknown(
                names,
                diags,
                &pipe.file,
                span,
                "environment",
                &stage.environment,
                &names.environments,
            );
            continue;
        }
        // The pipeline's tools part is applied with its last stage, after every other
        // stage's roles (which its policies name): stages must follow the promotion.
        match promotion.iter().position(|e| *e == stage.environment) {
            Some(pos) => {
                if last_index.is_some_and(|l| pos < l) {
                    diags.error(
                        "estate::promotion",
                        &pipe.file,
                        span,
                        format!(
                            "stage `{}` comes before an earlier stage in the Estate's promotion: list stages in promotion order",
                            stage.environment
                        ),
                    );
                }
                last_index = Some(pos);
            }
            None => {
                diags.error(
                    "estate::promotion",
                    &pipe.file,
                    span,
                    format!(
                        "stage `{}` is not in the Estate's promotion: a pipeline's stages must be",
                        stage.environment
                    ),
                );
            }
        }
    }
}

/// Checks every `${…}` in the document's string values.
fn check_references(file: &str, doc: &Node, kind: Kind, names: &Names, diags: &mut Diagnostics) {
    let Some(text) = diags.sources.get(file).cloned() else {
        return;
    };
    let mut strings = Vec::new();
    collect_strings(doc, String::new(), &mut strings);
    for (ptr, node) in strings {
        let Some(s) = node.as_str() else { continue };
        for occ in refs::scan(s) {
            // Underline the reference itself when it appears verbatim in the source.
            let raw = &s[occ.range.clone()];
            let span = text
                .get(node.span.clone())
                .and_then(|src| src.find(raw))
                .map(|at| node.span.start + at..node.span.start + at + raw.len())
                .unwrap_or_else(|| node.span.clone());
            let problem: Option<(String, Option<String>)> = match &occ.reference {
                Err(msg) => {
                    let kind_written = raw
                        .trim_start_matches("${")
                        .trim_end_matches('}')
                        .split(':')
                        .next()
                        .unwrap_or("");
                    let help =
                        closest(kind_written, refs::KINDS).map(|k| format!("did you mean `{k}`?"));
                    Some((msg.clone(), help))
                }
                Ok(Ref::Account(name))
                    if !names.incomplete && !names.accounts.contains(&name.as_str()) =>
                {
                    Some((
                        format!("unknown account `{name}` in `{raw}`"),
                        closest(name, names.accounts.iter().copied())
                            .map(|b| format!("did you mean `{b}`?")),
                    ))
                }
                Ok(Ref::Unit(path))
                    if !names.incomplete && !names.units.contains(&path.as_str()) =>
                {
                    Some((
                        format!("unknown unit `{path}` in `{raw}`"),
                        closest(path, names.units.iter().copied())
                            .map(|b| format!("did you mean `{b}`?")),
                    ))
                }
                Ok(Ref::Region) if !(kind == Kind::StackSet && is_override_parameter(&ptr)) => {
                    Some((
                        "`${region}` is only available in stack-set overrides".into(),
                        None,
                    ))
                }
                Ok(Ref::Environment)
                    if !matches!(kind, Kind::Environment | Kind::StackSet | Kind::Pipeline) =>
                {
                    Some((
                        format!(
                            "`${{environment}}` has no meaning in a {} document",
                            kind.as_str()
                        ),
                        None,
                    ))
                }
                Ok(Ref::Account(_) | Ref::Unit(_)) if kind == Kind::Organization => Some((
                    "the Organization cannot refer to accounts or units it defines".into(),
                    None,
                )),
                Ok(_) => None,
            };
            if let Some((message, help)) = problem {
                let b = diags
                    .error("estate::unknown-reference", file, span, message)
                    .label("cannot be resolved");
                if let Some(help) = help {
                    b.help(help);
                }
            }
        }
    }
}

fn is_override_parameter(ptr: &str) -> bool {
    let parts: Vec<&str> = ptr.split('/').collect();
    matches!(
        parts.as_slice(),
        ["", "spec", "overrides", _, "parameters", ..]
    )
}

fn collect_strings<'n>(node: &'n Node, ptr: String, out: &mut Vec<(String, &'n Node)>) {
    match &node.value {
        Value::String(_) => out.push((ptr, node)),
        Value::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                collect_strings(item, format!("{ptr}/{i}"), out);
            }
        }
        Value::Map(entries) => {
            for (k, v) in entries {
                collect_strings(v, format!("{ptr}/{}", pointer_escape(&k.as_key())), out);
            }
        }
        _ => {}
    }
}
