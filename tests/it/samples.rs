//! Real CloudFormation templates from public AWS samples (../shared/fixtures/aws-samples), read
//! in place: they parse, and their parameters are checked like any template's.

use estate::manifest;
use estate::source::ManifestSource;
use estate::template::Template;
use std::io::Write;
use std::path::{Path, PathBuf};

fn samples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/aws-samples")
}

/// Whether the samples are here. In CI (a `CI` variable) they must be; elsewhere (a fresh
/// clone without ../shared) their tests are skipped, said once on stderr.
fn present() -> bool {
    static SAID: std::sync::Once = std::sync::Once::new();
    let dir = samples_dir();
    if dir.is_dir() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{} is missing: CI puts ../shared beside the repository",
        dir.display()
    );
    // Written to the process's stderr itself: the test harness captures eprintln!.
    SAID.call_once(|| {
        let _ = writeln!(
            std::io::stderr(),
            "skipping the AWS sample tests: {} is missing (outside CI)",
            dir.display()
        );
    });
    false
}

fn samples() -> PathBuf {
    samples_dir().canonicalize().unwrap()
}

fn templates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for group in std::fs::read_dir(samples()).unwrap() {
        let group = group.unwrap().path();
        if !group.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&group).unwrap() {
            let f = f.unwrap().path();
            if matches!(f.extension().and_then(|e| e.to_str()), Some("yml" | "yaml")) {
                out.push(f);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_sample_template_parses_with_its_parameters() {
    if !present() {
        return;
    }
    let all = templates();
    assert!(all.len() >= 8, "found {} sample templates", all.len());
    for path in all {
        let bytes = std::fs::read(&path).unwrap();
        let t = Template::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // The declared parameters are exactly the template's Parameters section.
        let text = String::from_utf8_lossy(&bytes);
        let raw: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        let declared = raw
            .get("Parameters")
            .and_then(|p| p.as_mapping())
            .map_or(0, |m| m.len());
        assert_eq!(t.parameters.len(), declared, "{}", path.display());
        assert!(t.body["Resources"].is_object());
    }
}

#[test]
fn crlf_and_short_form_tags_become_canonical_intrinsics() {
    if !present() {
        return;
    }
    let path = samples().join("cross-account-ml-codepipeline/b-cfn-blog.yml");
    let bytes = std::fs::read(&path).unwrap();
    assert!(
        bytes.windows(2).any(|w| w == b"\r\n"),
        "the fixture is CRLF"
    );
    let t = Template::parse(&bytes).unwrap();
    let body = serde_json::to_string(&t.body).unwrap();
    assert!(body.contains("\"Ref\":"));
    assert!(body.contains("\"Fn::Sub\":"));
    assert!(!body.contains("!Ref"));
    assert!(!body.contains('\r'));
}

#[test]
fn a_codepipeline_definition_is_not_a_template() {
    if !present() {
        return;
    }
    let bytes =
        std::fs::read(samples().join("cross-account-ml-codepipeline/codepipeline_definition.json"))
            .unwrap();
    assert!(Template::parse(&bytes).is_err());
}

/// Writes a manifest with one stack set per sample template, each copied beside it: templates
/// must be inside the manifest's repository.
fn manifest_over_samples(dir: &Path, parameters: &str) {
    let mut stacksets = String::new();
    for (i, t) in templates().iter().enumerate() {
        std::fs::copy(t, dir.join(format!("sample-{i}.yaml"))).unwrap();
        stacksets.push_str(&format!(
            "---\napiVersion: estate/v1\nkind: StackSet\nmetadata: {{name: sample-{i}}}\nspec:\n  template: sample-{i}.yaml\n  environments: [dev]\n  capabilities: [CAPABILITY_NAMED_IAM, CAPABILITY_AUTO_EXPAND]\n{parameters}"
        ));
    }
    std::fs::write(dir.join("stacksets.yaml"), stacksets).unwrap();
    std::fs::write(
        dir.join("estate.yaml"),
        "apiVersion: estate/v1\nkind: Estate\nmetadata: {name: samples}\nspec:\n  homeRegion: us-east-1\n  regions: [us-east-1]\n  promotion: [dev]\n  include: [org.yaml, stacksets.yaml]\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("org.yaml"),
        "apiVersion: estate/v1\nkind: Organization\nmetadata: {name: org}\nspec:\n  accounts: [{name: dev, email: dev@example.com}]\n---\napiVersion: estate/v1\nkind: Environment\nmetadata: {name: dev}\nspec:\n  targets: {accounts: [dev]}\n",
    )
    .unwrap();
}

#[test]
fn parameters_without_default_are_required_for_real_templates() {
    if !present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    manifest_over_samples(dir.path(), "");
    let loaded = manifest::load(&ManifestSource::work_tree(dir.path()).unwrap());
    let diags = &loaded.diagnostics;
    // Each template with parameters lacking a Default reports exactly one error naming them.
    for (i, t) in templates().iter().enumerate() {
        let parsed = Template::parse(&std::fs::read(t).unwrap()).unwrap();
        let required: Vec<&String> = parsed
            .parameters
            .iter()
            .filter(|(_, d)| d.default.is_none())
            .map(|(n, _)| n)
            .collect();
        let errors: Vec<&estate::diag::Diagnostic> = diags
            .items
            .iter()
            .filter(|d| d.code == "estate::parameter" && d.line == 7 + 8 * i)
            .collect();
        if required.is_empty() {
            assert!(errors.is_empty(), "{}: {errors:?}", t.display());
        } else {
            assert_eq!(errors.len(), 1, "{}", t.display());
            for name in required {
                assert!(
                    errors[0].message.contains(&format!("`{name}`")),
                    "{name} in {}",
                    errors[0].message
                );
            }
        }
    }
}

#[test]
fn allowed_pattern_of_a_real_template_is_enforced() {
    if !present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let template = samples().join("amazon-sagemaker-secure-mlops/env-sc-portfolio.yaml");
    let parsed = Template::parse(&std::fs::read(&template).unwrap()).unwrap();
    // Copied beside the manifest: templates must be inside its repository.
    std::fs::copy(&template, dir.path().join("portfolio.yaml")).unwrap();
    let (name, decl) = parsed
        .parameters
        .iter()
        .find(|(_, d)| d.allowed_pattern.is_some())
        .expect("the sample declares an AllowedPattern");
    assert!(decl.check("UPPER_case").is_some());
    let mut params = format!("  parameters:\n    {name}: UPPER_case\n");
    for (other, d) in &parsed.parameters {
        if other != name && d.default.is_none() {
            params.push_str(&format!("    {other}: x\n"));
        }
    }
    std::fs::write(
        dir.path().join("estate.yaml"),
        "apiVersion: estate/v1\nkind: Estate\nmetadata: {name: s}\nspec:\n  homeRegion: us-east-1\n  regions: [us-east-1]\n  promotion: [dev]\n  include: [x.yaml]\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("x.yaml"),
        format!(
            "apiVersion: estate/v1\nkind: Organization\nmetadata: {{name: o}}\nspec:\n  accounts: [{{name: dev, email: d@example.com}}]\n---\napiVersion: estate/v1\nkind: Environment\nmetadata: {{name: dev}}\nspec:\n  targets: {{accounts: [dev]}}\n---\napiVersion: estate/v1\nkind: StackSet\nmetadata: {{name: s}}\nspec:\n  template: portfolio.yaml\n  environments: [dev]\n  capabilities: [CAPABILITY_NAMED_IAM]\n{params}",
        ),
    )
    .unwrap();
    let loaded = manifest::load(&ManifestSource::work_tree(dir.path()).unwrap());
    let errors: Vec<_> = loaded
        .diagnostics
        .items
        .iter()
        .filter(|d| d.code == "estate::parameter-value")
        .collect();
    assert_eq!(errors.len(), 1, "{}", loaded.diagnostics.render(false));
    assert!(errors[0].message.contains(&format!("`{name}`")));
    assert!(errors[0].message.contains("must match the pattern"));
}
