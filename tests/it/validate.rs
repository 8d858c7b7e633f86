//! `estate validate` over fixture folders: every invalid manifest reports exactly the expected
//! diagnostics at the expected file:line, rendered diagnostics are snapshot-tested.

use estate::manifest::{self, schema};
use estate::source::ManifestSource;
use std::path::{Path, PathBuf};

/// Fixture folders under tests/fixtures/<group>, sorted.
fn cases(group: &str) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(Path::new("tests/fixtures").join(group))
        .expect("fixture group exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("estate.yaml").exists())
        .collect();
    dirs.sort();
    dirs
}

/// `severity code file:line` of every diagnostic, files relative to the fixture folder.
fn located(dir: &Path) -> (Vec<String>, String) {
    let loaded = manifest::load(&ManifestSource::work_tree(dir).unwrap());
    let d = &loaded.diagnostics;
    let mut lines: Vec<String> = d
        .items
        .iter()
        .map(|x| {
            let file = relative(Path::new(&x.file), dir);
            format!("{} {} {}:{}", x.severity, x.code, file, x.line)
        })
        .collect();
    lines.sort();
    (lines, d.render(false))
}

fn relative(file: &Path, dir: &Path) -> String {
    let mut up = PathBuf::new();
    let mut base = dir.to_path_buf();
    loop {
        if let Ok(rest) = file.strip_prefix(&base) {
            return up.join(rest).to_string_lossy().into_owned();
        }
        up.push("..");
        if !base.pop() {
            return file.to_string_lossy().into_owned();
        }
    }
}

fn expected(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("expected.txt")).expect("expected.txt");
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

#[test]
fn invalid_manifests_report_every_mistake_at_its_line() {
    let cases = cases("invalid");
    assert!(cases.len() >= 15, "the corpus has {} cases", cases.len());
    let mut failures = Vec::new();
    for dir in &cases {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let (got, rendered) = located(dir);
        let want = expected(dir);
        assert!(
            want.iter().any(|l| l.starts_with("error ")),
            "{name}: an invalid case must expect an error"
        );
        // The no-echo-value case writes a secret; no rendering may show it.
        assert!(!rendered.contains("hunter2"), "{name} leaks a NoEcho value");
        if got != want {
            failures.push(format!("{name}:\n  got:  {got:?}\n  want: {want:?}"));
        }
        insta::assert_snapshot!(format!("invalid-{name}"), rendered);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn valid_manifests_have_no_errors() {
    for dir in cases("valid") {
        let (got, _) = located(&dir);
        assert_eq!(got, expected(&dir), "{}", dir.display());
    }
}

#[test]
fn the_reference_example_is_valid_and_complete() {
    let loaded = manifest::load(
        &ManifestSource::work_tree(Path::new("examples/environments/ml-platform")).unwrap(),
    );
    assert!(
        loaded.diagnostics.items.is_empty(),
        "{}",
        loaded.diagnostics.render(false)
    );
    let m = loaded.manifest.unwrap();
    assert_eq!(m.name(), "ml-platform");
    assert_eq!(m.units().len(), 4);
    assert_eq!(m.accounts().len(), 4);
    assert_eq!(m.environments.len(), 3);
    assert_eq!(m.stack_sets.len(), 1);
    assert_eq!(m.portfolios.len(), 1);
    assert_eq!(m.templates.len(), 2);
}

/// Every YAML document of the example, as JSON, validates against the published schema as an
/// editor would apply it (the root schema with its per-kind branches).
#[test]
fn the_reference_example_validates_against_the_published_schema() {
    let schema: serde_json::Value = serde_json::from_str(schema::PUBLISHED).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let mut count = 0;
    for entry in std::fs::read_dir("examples/environments/ml-platform").unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let (docs, _) = estate::yaml::parse_documents(&text).unwrap();
            for doc in docs {
                let json = doc.to_json();
                let errors: Vec<String> = validator
                    .iter_errors(&json)
                    .map(|e| e.to_string())
                    .collect();
                assert!(errors.is_empty(), "{}: {errors:?}", path.display());
                count += 1;
            }
        }
    }
    assert_eq!(count, 7);
    // The schema is not vacuous: a typo'd field fails it.
    let bad = serde_json::json!({"apiVersion": "estate/v1", "kind": "Environment",
        "metadata": {"name": "x"}, "spec": {"targets": {}, "protectd": true}});
    assert!(!validator.is_valid(&bad));
}

/// The loader drops nothing: every field written in the kitchen-sink fixture (which uses every
/// field the model has) comes back when the typed documents are serialized again.
#[test]
fn every_field_the_loader_accepts_is_in_the_schema_and_kept() {
    let dir = Path::new("tests/fixtures/valid/kitchen-sink");
    let loaded = manifest::load(&ManifestSource::work_tree(dir).unwrap());
    assert!(
        !loaded.diagnostics.has_errors(),
        "{}",
        loaded.diagnostics.render(false)
    );
    let m = loaded.manifest.unwrap();
    let typed: Vec<(serde_json::Value, &estate::yaml::Node)> = std::iter::once((
        serde_json::to_value(&m.estate.spec).unwrap(),
        &m.estate.node,
    ))
    .chain(
        m.organization
            .iter()
            .map(|d| (serde_json::to_value(&d.spec).unwrap(), &d.node)),
    )
    .chain(
        m.environments
            .iter()
            .map(|d| (serde_json::to_value(&d.spec).unwrap(), &d.node)),
    )
    .chain(
        m.stack_sets
            .iter()
            .map(|d| (serde_json::to_value(&d.spec).unwrap(), &d.node)),
    )
    .chain(
        m.portfolios
            .iter()
            .map(|d| (serde_json::to_value(&d.spec).unwrap(), &d.node)),
    )
    .chain(
        m.pipelines
            .iter()
            .map(|d| (serde_json::to_value(&d.spec).unwrap(), &d.node)),
    )
    .collect();
    assert_eq!(
        typed.len(),
        9,
        "every kind; two environments, two stack sets, two pipelines"
    );
    // The published schema itself, as an editor applies it, accepts every document written,
    // and refuses any field it does not define.
    let published: serde_json::Value = serde_json::from_str(schema::PUBLISHED).unwrap();
    let editor = jsonschema::validator_for(&published).unwrap();
    let mut written = std::collections::BTreeSet::new();
    for (value, node) in typed {
        let mut document = node.to_json();
        assert!(editor.is_valid(&document), "{document}");
        document["spec"]["notAField"] = serde_json::json!(true);
        assert!(!editor.is_valid(&document), "unknown fields are refused");
        let spec = node.get("spec").unwrap().to_json();
        let mut paths = Vec::new();
        leaf_paths(&spec, String::new(), &mut paths);
        for path in paths {
            assert!(
                value.pointer(&path).is_some(),
                "field {path} was written but not kept by the loader"
            );
            written.insert(strip_indices(&path));
        }
    }
    // And the fixture really exercises every property the schema defines.
    let schema: serde_json::Value = serde_json::from_str(schema::PUBLISHED).unwrap();
    let mut defined = std::collections::BTreeSet::new();
    for (name, def) in schema["$defs"].as_object().unwrap() {
        if let Some(props) = def.get("properties").and_then(|p| p.as_object()) {
            for key in props.keys() {
                defined.insert(format!("{name}.{key}"));
            }
        }
    }
    let used: std::collections::BTreeSet<&str> = written
        .iter()
        .filter_map(|p| p.rsplit('/').next())
        .collect();
    let unused: Vec<&String> = defined
        .iter()
        .filter(|d| {
            let field = d.rsplit('.').next().unwrap();
            !used.contains(field)
                && !["apiVersion", "kind", "metadata", "spec", "name"].contains(&field)
        })
        .collect();
    assert!(unused.is_empty(), "kitchen-sink does not use: {unused:?}");
}

fn leaf_paths(v: &serde_json::Value, at: String, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                let p = format!("{at}/{k}");
                out.push(p.clone());
                leaf_paths(v, p, out);
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                leaf_paths(v, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

fn strip_indices(path: &str) -> String {
    path.split('/')
        .filter(|t| t.parse::<usize>().is_err())
        .collect::<Vec<_>>()
        .join("/")
}

/// CloudFormation takes at most 460,800 bytes of template from S3: a larger one is an error
/// at validate time, not a failed apply.
#[test]
fn a_template_over_the_s3_limit_is_refused_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Path::new("tests/fixtures/invalid/operation-both");
    for f in ["estate.yaml", "envs.yaml", "org.yaml"] {
        std::fs::copy(fixture.join(f), dir.path().join(f)).unwrap();
    }
    let role = std::fs::read_to_string("tests/fixtures/templates/role.yaml").unwrap();
    // Comments count against the limit as AWS counts bytes.
    let padding = "# padding padding padding padding padding padding padding padding\n";
    let big = format!("{role}{}", padding.repeat(460_800 / padding.len() + 1));
    std::fs::write(dir.path().join("role.yaml"), &big).unwrap();
    std::fs::write(
        dir.path().join("stacksets.yaml"),
        "apiVersion: estate/v1\nkind: StackSet\nmetadata: {name: model-role}\nspec:\n  template: role.yaml\n  environments: [staging, production]\n  capabilities: [CAPABILITY_NAMED_IAM]\n  parameters:\n    PipelineAccountId: ${account:tools}\n",
    )
    .unwrap();
    let (lines, text) = located(dir.path());
    assert_eq!(
        lines,
        ["error estate::template-size stacksets.yaml:5"],
        "{text}"
    );
    assert!(text.contains(&format!("is {} bytes", big.len())), "{text}");
}

/// Every example document names the schema for editors, by a path that exists from it.
#[test]
fn example_documents_name_the_schema_for_editors() {
    let mut files = Vec::new();
    let mut dirs = vec![PathBuf::from("examples/environments")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                files.push(path);
            }
        }
    }
    let documents: Vec<&PathBuf> = files
        .iter()
        .filter(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .contains("apiVersion: estate/v1")
        })
        .collect();
    assert!(documents.len() >= 10, "{documents:?}");
    for file in documents {
        let text = std::fs::read_to_string(file).unwrap();
        let first = text.lines().next().unwrap_or_default();
        let schema = first
            .strip_prefix("# yaml-language-server: $schema=")
            .unwrap_or_else(|| panic!("{}: first line is {first:?}", file.display()));
        let target = file.parent().unwrap().join(schema);
        assert!(target.is_file(), "{}: {}", file.display(), target.display());
    }
}

/// A manifest in a Git repository naming templates and a buildspec outside it, by `..`, by an
/// absolute path and through a symbolic link: each is a located error, for the working tree
/// and for a commit alike, and no byte of the outside file reaches any output.
#[test]
fn paths_outside_the_repository_are_refused_unread() {
    let base = tempfile::tempdir().unwrap();
    let outside = base.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    // Not a valid template: were it read, its syntax error would show this line.
    let secret = outside.join("secret.yaml");
    std::fs::write(&secret, "LEAKED_CANARY: [unterminated\n").unwrap();
    let repo_dir = base.path().join("repo");
    let dir = repo_dir.join("manifest");
    std::fs::create_dir_all(&dir).unwrap();
    let fixture = Path::new("tests/fixtures/invalid/operation-both");
    for f in ["envs.yaml", "org.yaml"] {
        std::fs::copy(fixture.join(f), dir.join(f)).unwrap();
    }
    std::fs::write(
        dir.join("estate.yaml"),
        "apiVersion: estate/v1\nkind: Estate\nmetadata: {name: fixture}\nspec:\n  homeRegion: us-east-1\n  regions: [us-east-1]\n  promotion: [staging, production]\n  include: [org.yaml, envs.yaml, stacksets.yaml, pipeline.yaml]\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(&secret, dir.join("link.yaml")).unwrap();
    let stack_set = |name: &str, template: &str| {
        format!(
            "apiVersion: estate/v1\nkind: StackSet\nmetadata: {{name: {name}}}\nspec:\n  template: {template}\n  environments: [staging]\n---\n"
        )
    };
    std::fs::write(
        dir.join("stacksets.yaml"),
        stack_set("climbs", "../../../../../../../../outside/secret.yaml")
            + &stack_set("absolute", &secret.display().to_string())
            + &stack_set("linked", "link.yaml"),
    )
    .unwrap();
    std::fs::copy(
        "examples/environments/sagemaker-pipelines-multi-account/templates/model-endpoint.yaml",
        dir.join("endpoint.yaml"),
    )
    .unwrap();
    std::fs::write(
        dir.join("pipeline.yaml"),
        "apiVersion: estate/v1\nkind: Pipeline\nmetadata: {name: abalone}\nspec:\n  account: tools\n  source: {modelPackageGroup: abalone, account: tools}\n  template: endpoint.yaml\n  stages:\n    - {environment: staging, test: {buildspec: ../../outside/secret.yaml}}\n",
    )
    .unwrap();
    let repo = git2::Repository::init(&repo_dir).unwrap();
    let mut index = repo.index().unwrap();
    index
        .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
        .unwrap();
    index.write().unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let who = git2::Signature::now("t", "t@example.com").unwrap();
    repo.commit(Some("HEAD"), &who, &who, "m", &tree, &[])
        .unwrap();

    for source in [
        ManifestSource::work_tree(&dir).unwrap(),
        ManifestSource::git_ref(&dir, "HEAD").unwrap(),
    ] {
        let loaded = manifest::load(&source);
        let d = &loaded.diagnostics;
        let outside: Vec<String> = d
            .items
            .iter()
            .filter(|x| x.code == "estate::outside-path")
            .map(|x| format!("{}:{}", relative(Path::new(&x.file), &dir), x.line))
            .collect();
        assert_eq!(
            outside,
            [
                "pipeline.yaml:9",
                "stacksets.yaml:5",
                "stacksets.yaml:12",
                "stacksets.yaml:19"
            ],
            "{}",
            d.render(false)
        );
        let rendered = d.render(false);
        let json = serde_json::to_string(&d.items).unwrap();
        for out in [&rendered, &json] {
            assert!(!out.contains("LEAKED_CANARY"), "{out}");
        }
        assert!(loaded.manifest.is_none());
    }
}

/// A NoEcho parameter's value, whatever its shape (list, mapping, text that breaks the YAML),
/// appears in no output of validate: neither text nor JSON.
#[test]
fn no_echo_values_of_every_shape_are_never_printed() {
    let fixture = Path::new("tests/fixtures/invalid/no-echo-value");
    let stack_set = |params: &str| {
        format!(
            "apiVersion: estate/v1\nkind: StackSet\nmetadata: {{name: model-role}}\nspec:\n  template: secret.yaml\n  environments: [staging, production]\n  parameters:\n{params}"
        )
    };
    let shapes = [
        "    ApiToken: [hunter2, hunter2-again]\n".to_string(),
        "    ApiToken: {hunter2: hunter2}\n".to_string(),
        "    ApiToken:\n      - hunter2\n      - nested: hunter2\n".to_string(),
        // Text that breaks the YAML: the syntax error must not show the line.
        "    ApiToken: \"hunter2\n".to_string(),
        "    ApiToken: hunter2: x\n".to_string(),
        "    ApiToken: [hunter2\n".to_string(),
    ];
    for params in shapes {
        let dir = tempfile::tempdir().unwrap();
        for f in ["estate.yaml", "envs.yaml", "org.yaml"] {
            std::fs::copy(fixture.join(f), dir.path().join(f)).unwrap();
        }
        std::fs::copy(
            "tests/fixtures/templates/secret.yaml",
            dir.path().join("secret.yaml"),
        )
        .unwrap();
        std::fs::write(dir.path().join("stacksets.yaml"), stack_set(&params)).unwrap();
        let loaded = manifest::load(&ManifestSource::work_tree(dir.path()).unwrap());
        let d = &loaded.diagnostics;
        assert!(d.has_errors(), "{params}");
        let rendered = d.render(false);
        let json = serde_json::to_string(&d.items).unwrap();
        for out in [&rendered, &json] {
            assert!(!out.contains("hunter2"), "{params}\n{out}");
        }
    }
}
