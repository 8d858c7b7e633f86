//! Cross-document checks: unique names, references that resolve, permission-model fields,
//! and template parameters, all reported at the line that needs fixing.
//!
//! This module gathers the names every check looks up and runs the checks of each kind, which
//! live in a file per kind; references are checked across all kinds in `references`.

mod environment;
mod estate;
mod limits;
mod lookup;
mod organization;
mod outputs;
mod pipeline;
mod portfolio;
mod references;
mod stack_set;

use super::doc::{Doc, Parsed};
use super::model::*;
use crate::diag::{Code, Diagnostics};
use crate::template::Template;
use crate::yaml::{Node, Value};
use lookup::Names;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

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

    limits::check_limits(p, diags);

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
    outputs::check_outputs(p, templates, &names, diags);
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
