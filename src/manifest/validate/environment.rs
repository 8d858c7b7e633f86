//! Checks of `kind: Environment`: its targets exist and are not empty.

use super::{Names, check_targets};
use crate::diag::{Code, Diagnostics};
use crate::manifest::Doc;
use crate::manifest::model::*;
use std::collections::BTreeSet;

pub(super) fn check_environment(
    env: &Doc<EnvironmentSpec>,
    names: &Names,
    diags: &mut Diagnostics,
) {
    check_targets(env, "/spec/targets", &env.spec.targets, names, diags);
    if env.spec.targets.units.is_empty() && env.spec.targets.accounts.is_empty() {
        diags
            .error(
                Code::Environment,
                &env.file,
                env.span("/spec/targets"),
                format!("environment `{}` targets no unit and no account", env.name),
            )
            .help("list `units` and/or `accounts` under `targets`");
    }
}

/// Accounts (by name) an environment reaches, as far as the manifest alone tells.
pub(super) fn static_targets<'a>(
    env: &'a Doc<EnvironmentSpec>,
    names: &Names<'a>,
) -> BTreeSet<&'a str> {
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
