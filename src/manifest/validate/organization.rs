//! Checks of `kind: Organization`: units listed parents first, accounts with unique names,
//! emails and ids, in units that exist. Records the names the other checks look up.

use super::Names;
use crate::diag::{Code, Diagnostics};
use crate::manifest::Doc;
use crate::manifest::model::*;
use std::collections::{BTreeSet, HashMap};

pub(super) fn check_organization<'a>(
    org: &'a Doc<OrganizationSpec>,
    names: &mut Names<'a>,
    diags: &mut Diagnostics,
) {
    let all_paths: BTreeSet<&str> = org.spec.units.iter().map(|u| u.path.as_str()).collect();
    for (i, unit) in org.spec.units.iter().enumerate() {
        let ptr = format!("/spec/units/{i}/path");
        if names.units.contains(&unit.path.as_str()) {
            diags.error(
                Code::Duplicate,
                &org.file,
                org.span(&ptr),
                format!("unit `{}` is listed twice", unit.path),
            );
            continue;
        }
        let parent = parent_path(&unit.path);
        if !names.units.contains(&parent) {
            let b = diags.error(
                Code::UnitParent,
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
                Code::Duplicate,
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
                    Code::Duplicate,
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
                        Code::Duplicate,
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
                        Code::UnknownUnit,
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
