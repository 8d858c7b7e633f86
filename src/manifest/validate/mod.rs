//! Cross-document checks: unique names, references that resolve, permission-model fields,
//! and template parameters, all reported at the line that needs fixing.
//!
//! This module gathers the names every check looks up and runs the checks of each kind, which
//! live in a file per kind; references are checked across all kinds in `references`.

mod environment;
mod estate;
mod organization;
mod pipeline;
mod portfolio;
mod references;
mod stack_set;

use super::model::*;
use super::{Doc, Parsed};
use crate::diag::{Code, Diagnostics, closest};
use crate::template::Template;
use crate::yaml::{Node, Value};
use std::collections::{BTreeMap, HashMap};
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
            Code::Duplicate,
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
        organization::check_organization(org, &mut names, diags);
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
        estate::check_estate(estate, &names, &p.environments, diags);
    }
    for env in &p.environments {
        environment::check_environment(env, &names, diags);
    }
    for s in &p.stack_sets {
        stack_set::check_stack_set(s, p, templates, &names, diags);
    }
    for portfolio in &p.portfolios {
        portfolio::check_portfolio(portfolio, &names, diags);
    }
    for pipeline in &p.pipelines {
        pipeline::check_pipeline(pipeline, p, templates, &names, diags);
    }
    pipeline::check_generated_names(p, diags);
    references::check_all(p, &names, diags);
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
                    Code::Duplicate,
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
            Code::UnknownName,
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
