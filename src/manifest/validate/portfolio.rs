//! Checks of `kind: Portfolio`: its owner account exists, it is shared with units and
//! accounts it can be shared with, its principals are ARNs or name patterns AWS accepts, and
//! its products, versions, tag options and product tags are unique and allowed.

use super::lookup::{Names, check_targets, unknown};
use crate::diag::{Code, Diagnostics};
use crate::manifest::doc::Doc;
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
    check_principals(p, diags);
    // AWS's SharePrincipals is for organization-node shares only (CreatePortfolioShare).
    if spec.share_principals == Some(true) && spec.share_with.units.is_empty() {
        diags
            .error(
                Code::Share,
                &p.file,
                p.span("/spec/sharePrincipals"),
                "principals are shared only with units (AWS's principal name sharing); this portfolio is shared with no unit",
            )
            .help("list units in `shareWith.units`, or remove `sharePrincipals`");
    }
    let mut products = BTreeSet::new();
    for (i, product) in spec.products.iter().enumerate() {
        check_product_tags(p, i, product, diags);
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

/// AssociatePrincipalWithPortfolio: "You can associate a maximum of 10 Principals with a
/// portfolio using PrincipalType as IAM_PATTERN".
pub const MAX_NAME_PATTERNS: usize = 10;

/// Keys estate sets on every product itself (`estate:…`) or AWS reserves (`aws:…`).
const RESERVED_TAG_PREFIXES: [&str; 2] = ["estate:", "aws:"];

/// CreateProduct and UpdateProduct take at most 20 tags; estate adds two of its own.
pub const MAX_PRODUCT_TAGS: usize = 20 - 2;

/// What a principal ARN is: `Ok(true)` for a name pattern (no account: AWS's IAM_PATTERN),
/// `Ok(false)` for an IAM ARN, else why AWS would refuse it. The account may be a `${…}`
/// reference, resolved at plan time.
fn principal_kind(arn: &str) -> Result<bool, String> {
    const FORMS: &str = "an IAM ARN `arn:aws:iam::<account>:role/Name` or a name pattern without account `arn:aws:iam:::role/ml-*`";
    // A `${…}` reference (it has a colon of its own) stands for an account id here.
    let mut shape = String::new();
    let mut rest = arn;
    while let Some((before, after)) = rest.split_once("${") {
        shape.push_str(before);
        let Some((_, tail)) = after.split_once('}') else {
            shape.push_str("${");
            rest = after;
            break;
        };
        shape.push_str("000000000000");
        rest = tail;
    }
    shape.push_str(rest);
    let parts: Vec<&str> = shape.splitn(6, ':').collect();
    let [arn_, partition, service, region, account, resource] = parts.as_slice() else {
        return Err(format!("principal `{arn}` is not {FORMS}"));
    };
    let typed = ["role/", "user/", "group/"].iter().any(|t| {
        resource
            .strip_prefix(t)
            .is_some_and(|name| !name.is_empty())
    });
    if *arn_ != "arn"
        || !partition.starts_with("aws")
        || *service != "iam"
        || !region.is_empty()
        || !typed
    {
        return Err(format!("principal `{arn}` is not {FORMS}"));
    }
    if account.is_empty() {
        return Ok(true);
    }
    if !(account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())) {
        return Err(format!(
            "principal `{arn}` names account `{account}`, which is not a 12-digit id or an `${{account:…}}` reference"
        ));
    }
    if resource.contains(['*', '?']) {
        return Err(format!(
            "principal `{arn}` has a wildcard but an account: `*` and `?` are for name patterns, which have none (`arn:aws:iam:::{resource}`)"
        ));
    }
    Ok(false)
}

fn check_principals(p: &Doc<PortfolioSpec>, diags: &mut Diagnostics) {
    let mut patterns = 0;
    for (i, arn) in p.spec.principals.iter().enumerate() {
        let span = p.span(&format!("/spec/principals/{i}"));
        match principal_kind(arn) {
            Ok(true) => {
                patterns += 1;
                if patterns == MAX_NAME_PATTERNS + 1 {
                    diags.error(
                        Code::Principal,
                        &p.file,
                        span,
                        format!(
                            "more than {MAX_NAME_PATTERNS} name-pattern principals; AWS associates at most {MAX_NAME_PATTERNS} with a portfolio"
                        ),
                    );
                }
            }
            Ok(false) => {}
            Err(message) => {
                diags.error(Code::Principal, &p.file, span, message);
            }
        }
    }
}

fn check_product_tags(
    p: &Doc<PortfolioSpec>,
    i: usize,
    product: &Product,
    diags: &mut Diagnostics,
) {
    let base = format!("/spec/products/{i}/tags");
    for key in product.tags.keys() {
        if let Some(prefix) = RESERVED_TAG_PREFIXES.iter().find(|x| key.starts_with(*x)) {
            diags
                .error(
                    Code::Tag,
                    &p.file,
                    p.node.key_span(&base, key).unwrap_or_else(|| p.span(&base)),
                    format!("tag key `{key}` starts with `{prefix}`, which is reserved"),
                )
                .label("reserved");
        }
    }
    if product.tags.len() > MAX_PRODUCT_TAGS {
        diags.error(
            Code::Tag,
            &p.file,
            p.span(&base),
            format!(
                "product `{}` has {} tags; AWS takes 20 per product, and estate sets 2 of them, so at most {MAX_PRODUCT_TAGS}",
                product.name,
                product.tags.len()
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::principal_kind;

    #[test]
    fn principals_are_iam_arns_or_name_patterns() {
        assert_eq!(principal_kind("arn:aws:iam:::role/ml-*"), Ok(true));
        assert_eq!(
            principal_kind("arn:aws:iam:::role/team/Data?Scientist"),
            Ok(true)
        );
        assert_eq!(
            principal_kind("arn:aws:iam::111122223333:role/Admin"),
            Ok(false)
        );
        assert_eq!(
            principal_kind("arn:aws:iam::${account:tools}:user/me"),
            Ok(false)
        );
        for bad in [
            "arn:aws:iam::111122223333:role/ml-*",
            "arn:aws:iam::1234:role/Admin",
            "arn:aws:s3:::bucket",
            "arn:aws:iam:::policy/p",
            "arn:aws:iam:::role/",
            "arn:aws:iam",
        ] {
            assert!(principal_kind(bad).is_err(), "{bad}");
        }
    }
}
