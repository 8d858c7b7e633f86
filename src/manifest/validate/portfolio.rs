//! Checks of `kind: Portfolio`: its owner account exists, it is shared with units and
//! accounts it can be shared with, and its products, versions and tag options are unique.

use super::{Names, check_targets, unknown};
use crate::diag::{Code, Diagnostics};
use crate::manifest::Doc;
use crate::manifest::model::*;
use crate::yaml::pointer_escape;
use std::collections::BTreeSet;

pub(super) fn check_portfolio(p: &Doc<PortfolioSpec>, names: &Names, diags: &mut Diagnostics) {
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
                Code::Share,
                &p.file,
                p.span(&format!("/spec/shareWith/units/{i}")),
                "sharing with the organization root `/` is not supported; list the units to share with",
            );
        }
    }
    for (i, a) in spec.share_with.accounts.iter().enumerate() {
        if a == &spec.account {
            diags.error(
                Code::Share,
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
                Code::Duplicate,
                &p.file,
                p.span(&format!("/spec/products/{i}/name")),
                format!("product `{}` is listed twice", product.name),
            );
        }
        let mut versions = BTreeSet::new();
        for (j, v) in product.versions.iter().enumerate() {
            if !versions.insert(&v.name) {
                diags.error(
                    Code::Duplicate,
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
                    Code::Duplicate,
                    &p.file,
                    p.span(&format!("/spec/tagOptions/{}/{j}", pointer_escape(key))),
                    format!("tag option value `{v}` is listed twice under `{key}`"),
                );
            }
        }
    }
}
