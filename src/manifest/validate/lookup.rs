//! The names every check looks up, and the two lookups they share: an unknown name reported
//! with the closest valid one, and targets that must name known units and accounts.

use crate::diag::{Code, Diagnostics, closest};
use crate::manifest::doc::Doc;
use crate::manifest::model::Targets;
use std::collections::HashMap;

/// What the other checks look names up in.
pub(super) struct Names<'a> {
    pub(super) estate: Option<&'a str>,
    pub(super) accounts: Vec<&'a str>,
    pub(super) pinned: HashMap<&'a str, &'a str>,
    pub(super) units: Vec<&'a str>,
    pub(super) environments: Vec<&'a str>,
    /// Account names by unit path, for resolving targets statically.
    pub(super) account_units: HashMap<&'a str, &'a str>,
    /// Some file did not parse, so a name missing here may well be defined there.
    pub(super) incomplete: bool,
}

pub(super) fn unknown(
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

pub(super) fn check_targets<S>(
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
