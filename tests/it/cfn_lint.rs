//! The project's own CloudFormation templates (examples, fixtures) pass cfn-lint, installed
//! with the emulator by scripts/setup.

use crate::support::builders::{live_with_ids, manifest};
use std::path::{Path, PathBuf};

fn cfn_lint() -> PathBuf {
    let venv = std::env::var_os("ESTATE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv"));
    let bin = venv.join("bin/cfn-lint");
    assert!(
        bin.exists(),
        "{} is missing: run scripts/setup",
        bin.display()
    );
    bin
}

/// cfn-lint finds nothing in `templates`.
fn assert_lint_clean(templates: &[PathBuf]) {
    let out = std::process::Command::new(cfn_lint())
        .args(templates)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cfn-lint: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn example_templates_pass_cfn_lint() {
    let mut templates = Vec::new();
    for example in std::fs::read_dir("examples/environments").unwrap() {
        let dir = example.unwrap().path().join("templates");
        if let Ok(entries) = std::fs::read_dir(&dir) {
            templates.extend(entries.map(|e| e.unwrap().path()));
        }
    }
    templates.sort();
    assert!(templates.len() >= 4, "{templates:?}");
    assert_lint_clean(&templates);
}

#[test]
fn cfn_lint_does_fail_a_broken_template() {
    // The check above can fail: a template referring to an undeclared parameter does.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "Resources:\n  T:\n    Type: AWS::SNS::Topic\n    Properties:\n      TopicName: !Ref Missing\n",
    )
    .unwrap();
    let status = std::process::Command::new(cfn_lint())
        .arg(&path)
        .status()
        .unwrap();
    assert!(!status.success());
}

/// Every manifest with pipelines: the examples (S4's registry source in the pipeline's own
/// account; S1's upload bucket named with an account id, and a stage in the tools account),
/// and the fixture using every pipeline field (an upload source, test rights, approval
/// emails, a stage template with every resource type the deploy role has rights for).
const PIPELINE_MANIFESTS: [&str; 3] = [
    "examples/environments/sagemaker-pipelines-multi-account",
    "examples/environments/cross-account-mlops-lab",
    "tests/fixtures/valid/kitchen-sink",
];

/// The templates the pipelines of `dir` compile to, with the accounts' ids known.
fn pipeline_templates(dir: &str) -> Vec<(String, String)> {
    use estate::plan;
    let m = manifest(Path::new(dir));
    let live = live_with_ids(&m);
    let desired = plan::desired::resolve(&m, &live, &[]).unwrap();
    desired
        .stack_sets
        .iter()
        .filter(|d| d.name.starts_with("pipeline-"))
        .map(|d| (d.name.clone(), d.template.text.clone()))
        .collect()
}

/// The CloudFormation a pipeline compiles to passes cfn-lint, as AWS would take it: with the
/// accounts' ids known.
#[test]
fn generated_pipeline_templates_pass_cfn_lint() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (i, manifest) in PIPELINE_MANIFESTS.into_iter().enumerate() {
        let templates = pipeline_templates(manifest);
        if manifest.starts_with("examples") {
            assert_eq!(templates.len(), 4, "two stages, the source, the tools part");
        }
        for (name, text) in templates {
            assert!(!text.contains("known after apply"), "{name}");
            // Manifest references (the lab's upload bucket has one) are resolved.
            assert!(!text.contains("${account:"), "{name}");
            let path = dir.path().join(format!("{i}-{name}.json"));
            std::fs::write(&path, &text).unwrap();
            files.push(path);
        }
    }
    assert_eq!(
        files.len(),
        16,
        "the examples' pipelines, the fixture's two"
    );
    assert_lint_clean(&files);
}

/// Least privilege, over every template a pipeline of the examples and fixtures compiles to:
/// no `"Action": "*"`, no `<service>:*` on `*`, no `iam:PassRole` on `*`.
#[test]
fn no_generated_pipeline_template_grants_everything_a_whole_service_or_any_role() {
    let mut checked = 0;
    for manifest in PIPELINE_MANIFESTS {
        for (name, text) in pipeline_templates(manifest) {
            let body: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(
                estate::pipeline::broad_grants(&body),
                Vec::<String>::new(),
                "{manifest}: {name}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 16);
}

/// The script the pipeline's Resolve build runs is Python that compiles (a syntax error would
/// only show when the first model is approved).
#[test]
fn the_resolve_build_script_is_valid_python() {
    use estate::pipeline::{Names, Source, Stage, Tools, tools_template};
    let sources = [
        Source::Registry { group: "g" },
        Source::Upload {
            bucket: "b",
            key: "k/model.tar.gz",
        },
    ];
    for (source, takes_model) in sources.into_iter().flat_map(|s| [(s, true), (s, false)]) {
        let n = Names::new("p");
        let stages = [Stage {
            environment: "staging".into(),
            accounts: vec!["333333333333".into()],
            test: false,
            manual_approval: false,
        }];
        let t = tools_template(&Tools {
            names: &n,
            tools: "111111111111",
            source_account: "222222222222",
            source,
            region: "us-east-1",
            stages: &stages,
            capabilities: &[],
            takes_model,
            source_key: "k",
            approval_emails: &[],
        });
        let spec = t["Resources"]["ResolveProject"]["Properties"]["Source"]["BuildSpec"]
            .as_str()
            .unwrap();
        let spec: serde_json::Value = serde_yaml::from_str(spec).unwrap();
        let command = spec["phases"]["build"]["commands"][0].as_str().unwrap();
        let script: Vec<&str> = command
            .lines()
            .skip_while(|l| !l.starts_with("python3 - <<'EOF'"))
            .skip(1)
            .take_while(|l| *l != "EOF")
            .collect();
        assert!(script.len() > 5, "{command}");
        assert_eq!(
            script
                .iter()
                .any(|l| l.contains(&format!("config['Parameters']['{}']", source.parameter()))),
            takes_model
        );
        let python = cfn_lint().with_file_name("python3");
        let mut child = std::process::Command::new(python)
            .args(["-c", "import ast, sys; ast.parse(sys.stdin.read())"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.join("\n").as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}\n{}",
            script.join("\n"),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The stack-set roles estate bootstraps (administration stack with and without the
/// execution role, the execution role for members) pass cfn-lint.
#[test]
fn bootstrap_templates_pass_cfn_lint() {
    let dir = tempfile::tempdir().unwrap();
    let templates = [
        (
            "administration.json",
            estate::bootstrap::administration_template(false),
        ),
        (
            "administration-with-execution.json",
            estate::bootstrap::administration_template(true),
        ),
        (
            "execution.json",
            estate::bootstrap::execution_template("111111111111"),
        ),
    ];
    let mut paths = Vec::new();
    for (name, body) in templates {
        let path = dir.path().join(name);
        std::fs::write(&path, serde_json::to_string_pretty(&body).unwrap()).unwrap();
        paths.push(path);
    }
    assert_lint_clean(&paths);
}
