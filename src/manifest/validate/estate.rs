//! Checks of `kind: Estate`: its promotion names each defined environment once, and its
//! regions are unique.

use super::{Names, unknown};
use crate::diag::{Code, Diagnostics};
use crate::manifest::Doc;
use crate::manifest::model::*;
use std::collections::BTreeSet;

pub(super) fn check_estate(
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
                Code::Duplicate,
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
                    Code::Promotion,
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
                Code::Duplicate,
                &estate.file,
                estate.span(&format!("/spec/regions/{i}")),
                format!("region `{r}` is listed twice"),
            );
        }
    }
}
