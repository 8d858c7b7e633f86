//! Length limits AWS puts on descriptions and tags, checked offline so a manifest AWS would
//! refuse fails `validate` rather than an apply half-way through.
//!
//! Stack set names (`[a-zA-Z][-a-zA-Z0-9]*`, at most 128 characters) are checked where they
//! are built, in `stack_set`: the metadata-name pattern and `<name>-<environment>` length.

use crate::diag::{Code, Diagnostics};
use crate::manifest::doc::{Doc, Parsed};
use crate::yaml::pointer_escape;
use std::collections::BTreeMap;

/// CloudFormation API Reference, CreateStackSet, `Description`: at most 1,024 characters.
pub const STACK_SET_DESCRIPTION_MAX: usize = 1024;
/// Service Catalog API Reference, CreatePortfolio, `Description`: "Maximum length of 2000".
pub const PORTFOLIO_DESCRIPTION_MAX: usize = 2000;
/// Service Catalog API Reference, CreateProduct, `Description`: "Maximum length of 8191".
pub const PRODUCT_DESCRIPTION_MAX: usize = 8191;
/// CloudFormation API Reference, `Tag` (and Service Catalog's `Tag` alike): key 1 to 128
/// characters, value at most 256.
pub const TAG_KEY_MAX: usize = 128;
pub const TAG_VALUE_MAX: usize = 256;

pub(super) fn check_limits(p: &Parsed, diags: &mut Diagnostics) {
    for s in &p.stack_sets {
        description(
            s,
            "/spec/description",
            s.spec.description.as_deref(),
            STACK_SET_DESCRIPTION_MAX,
            "stack set",
            diags,
        );
        tags(s, "/spec/tags", &s.spec.tags, diags);
    }
    for f in &p.portfolios {
        description(
            f,
            "/spec/description",
            f.spec.description.as_deref(),
            PORTFOLIO_DESCRIPTION_MAX,
            "portfolio",
            diags,
        );
        for (i, product) in f.spec.products.iter().enumerate() {
            description(
                f,
                &format!("/spec/products/{i}/description"),
                product.description.as_deref(),
                PRODUCT_DESCRIPTION_MAX,
                "product",
                diags,
            );
            let text: BTreeMap<String, String> = product
                .tags
                .iter()
                .map(|(k, v)| (k.clone(), v.0.clone()))
                .collect();
            tags(f, &format!("/spec/products/{i}/tags"), &text, diags);
        }
        tags(f, "/spec/tags", &f.spec.tags, diags);
    }
}

fn description<S>(
    doc: &Doc<S>,
    pointer: &str,
    text: Option<&str>,
    max: usize,
    what: &str,
    diags: &mut Diagnostics,
) {
    let Some(text) = text else { return };
    // AWS counts characters, not bytes.
    let len = text.chars().count();
    if len > max {
        diags
            .error(
                Code::DescriptionLength,
                &doc.file,
                doc.span(pointer),
                format!("{what} description is {len} characters; AWS takes at most {max}"),
            )
            .label("too long");
    }
}

fn tags<S>(doc: &Doc<S>, base: &str, tags: &BTreeMap<String, String>, diags: &mut Diagnostics) {
    for (key, value) in tags {
        let key_len = key.chars().count();
        if key_len == 0 || key_len > TAG_KEY_MAX {
            diags
                .error(
                    Code::Tag,
                    &doc.file,
                    doc.node
                        .key_span(base, key)
                        .unwrap_or_else(|| doc.span(base)),
                    format!("tag key is {key_len} characters; AWS takes 1 to {TAG_KEY_MAX}"),
                )
                .label("tag key");
        }
        let value_len = value.chars().count();
        if value_len > TAG_VALUE_MAX {
            diags
                .error(
                    Code::Tag,
                    &doc.file,
                    doc.span(&format!("{base}/{}", pointer_escape(key))),
                    format!(
                        "value of tag `{}` is {value_len} characters; AWS takes at most {TAG_VALUE_MAX}",
                        short(key)
                    ),
                )
                .label("tag value");
        }
    }
}

/// A tag key as short as a message needs it.
fn short(key: &str) -> String {
    let mut out: String = key.chars().take(40).collect();
    if key.chars().count() > 40 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::diag::Diagnostics;
    use crate::manifest::load;
    use crate::source::ManifestSource;

    /// Writes a one-stack-set manifest (and one portfolio) into a temporary folder.
    fn run(stack_set_extra: &str, portfolio_extra: &str, product_extra: &str) -> Diagnostics {
        let dir = tempfile::tempdir().unwrap();
        let fixture = std::path::Path::new("tests/fixtures/invalid/operation-both");
        for f in ["envs.yaml", "org.yaml"] {
            std::fs::copy(fixture.join(f), dir.path().join(f)).unwrap();
        }
        std::fs::copy(
            "tests/fixtures/templates/bucket.yaml",
            dir.path().join("t.yaml"),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("estate.yaml"),
            "apiVersion: estate/v1\nkind: Estate\nmetadata: {name: fixture}\nspec:\n  homeRegion: us-east-1\n  regions: [us-east-1]\n  promotion: [staging, production]\n  include: [org.yaml, envs.yaml, docs.yaml]\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("docs.yaml"),
            format!(
                "apiVersion: estate/v1\nkind: StackSet\nmetadata: {{name: s}}\nspec:\n  template: t.yaml\n  environments: [staging]\n{stack_set_extra}---\napiVersion: estate/v1\nkind: Portfolio\nmetadata: {{name: p}}\nspec:\n  account: tools\n  displayName: P\n  providerName: me\n{portfolio_extra}  products:\n    - name: prod\n      displayName: Prod\n      owner: me\n{product_extra}      versions: [{{name: v1, template: t.yaml}}]\n"
            ),
        )
        .unwrap();
        load(&ManifestSource::work_tree(dir.path()).unwrap()).diagnostics
    }

    fn limit_lines(d: &Diagnostics) -> Vec<String> {
        d.items
            .iter()
            .filter(|x| x.code == "estate::description-length" || x.code == "estate::tag")
            .map(|x| format!("{} {}", x.code, x.line))
            .collect()
    }

    #[test]
    fn descriptions_and_tags_at_the_limit_pass_and_over_it_fail_at_their_line() {
        let at = run(
            &format!(
                "  description: {}\n  tags: {{{}: {}}}\n",
                "d".repeat(1024),
                "k".repeat(128),
                "v".repeat(256)
            ),
            &format!("  description: {}\n", "d".repeat(2000)),
            &format!("      description: {}\n", "d".repeat(8191)),
        );
        assert!(limit_lines(&at).is_empty(), "{}", at.render(false));
        let over = run(
            &format!(
                "  description: {}\n  tags:\n    {}: x\n    ok: {}\n",
                "é".repeat(1025),
                "k".repeat(129),
                "v".repeat(257)
            ),
            &format!("  description: {}\n", "d".repeat(2001)),
            &format!("      description: {}\n", "d".repeat(8192)),
        );
        assert_eq!(
            limit_lines(&over),
            [
                "estate::description-length 7",
                "estate::tag 9",
                "estate::tag 10",
                "estate::description-length 19",
                "estate::description-length 24",
            ],
            "{}",
            over.render(false)
        );
    }

    /// Product tags: 18 of the manifest's (AWS's 20, less estate's 2) pass, 19 fail at the
    /// product's `tags`, a key over 128 characters at its key; 10 name-pattern principals
    /// pass, the 11th fails at its line.
    #[test]
    fn product_tags_and_name_patterns_at_the_limit_pass_and_over_it_fail() {
        let tags = |n: usize| {
            let pairs: Vec<String> = (0..n).map(|i| format!("t{i}: v")).collect();
            format!("      tags: {{{}}}\n", pairs.join(", "))
        };
        let patterns = |n: usize| {
            let arns: Vec<String> = (0..n)
                .map(|i| format!("\"arn:aws:iam:::role/team-{i}-*\""))
                .collect();
            format!("  principals: [{}]\n", arns.join(", "))
        };
        let codes = |d: &Diagnostics| -> Vec<String> {
            d.items
                .iter()
                .filter(|x| x.code == "estate::tag" || x.code == "estate::principal")
                .map(|x| format!("{} {}", x.code, x.line))
                .collect()
        };
        let at = run("", &patterns(10), &tags(18));
        assert!(codes(&at).is_empty(), "{}", at.render(false));
        let over = run("", &patterns(11), &tags(19));
        assert_eq!(
            codes(&over),
            ["estate::principal 15", "estate::tag 20"],
            "{}",
            over.render(false)
        );
        let long = run("", "", &format!("      tags: {{{}: v}}\n", "k".repeat(129)));
        assert_eq!(codes(&long), ["estate::tag 19"], "{}", long.render(false));
    }
}
