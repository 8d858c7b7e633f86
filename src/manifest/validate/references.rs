//! Checks of every `${…}` reference in string values, in every kind of document (those that
//! failed the schema too): it names something defined, and the document may use it.

use super::lookup::Names;
use crate::diag::{Code, Diagnostics, closest};
use crate::manifest::doc::Parsed;
use crate::manifest::model::*;
use crate::manifest::refs::{self, Ref};
use crate::yaml::{Node, Value, pointer_escape};

/// References anywhere in string values, in invalid documents too.
pub(super) fn check_all(p: &Parsed, names: &Names, diags: &mut Diagnostics) {
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
        check_references(file, node, kind, names, diags);
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
                Ok(Ref::Output(_)) if !takes_outputs(kind, &ptr) => Some((
                    "a stack set's output can only be a stack-set parameter (in `parameters`, `overrides` or an environment's `parameters`)".into(),
                    None,
                )),
                Ok(Ref::Account(_) | Ref::Unit(_)) if kind == Kind::Organization => Some((
                    "the Organization cannot refer to accounts or units it defines".into(),
                    None,
                )),
                Ok(_) => None,
            };
            if let Some((message, help)) = problem {
                let b = diags
                    .error(Code::UnknownReference, file, span, message)
                    .label("cannot be resolved");
                if let Some(help) = help {
                    b.help(help);
                }
            }
        }
    }
}

/// Where a stack set's output may be used: stack sets' parameters and overrides, and
/// environments' parameters (passed to stack sets).
fn takes_outputs(kind: Kind, ptr: &str) -> bool {
    match kind {
        Kind::StackSet => ptr.starts_with("/spec/parameters/") || is_override_parameter(ptr),
        Kind::Environment => ptr.starts_with("/spec/parameters/"),
        _ => false,
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
