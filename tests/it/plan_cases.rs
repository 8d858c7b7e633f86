//! The pure planning core over fixture folders: each case under tests/fixtures/plan-cases holds
//! a manifest, the live state it is planned against (`live.json`, a serialized `LiveState`),
//! optionally the `--env` filter (`envs.txt`) and strings no rendering may contain
//! (`secrets.txt`), and `expected.txt`: the sorted lines `action resourceType address` and
//! `finding kind address`, or one line `error <message>` when planning must fail. The text,
//! markdown and JSON renderings of every plan are snapshot-tested.

use estate::live::LiveState;
use estate::manifest::{self, Manifest};
use estate::plan::{self, Plan};
use estate::render::{self, TextOptions};
use estate::source::ManifestSource;
use std::path::{Path, PathBuf};

const CASES: &str = "tests/fixtures/plan-cases";

/// Case folders, sorted; relative to the crate root so plans carry a stable source path.
fn cases() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(CASES)
        .expect("plan cases exist")
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("manifest/estate.yaml").exists())
        .collect();
    dirs.sort();
    dirs
}

fn manifest(dir: &Path) -> Manifest {
    let source = ManifestSource::work_tree(&dir.join("manifest")).unwrap();
    let loaded = manifest::load(&source);
    loaded.manifest.unwrap_or_else(|| {
        panic!(
            "{}: the manifest must be valid\n{}",
            dir.display(),
            loaded.diagnostics.render(false)
        )
    })
}

fn live(dir: &Path) -> LiveState {
    let path = dir.join("live.json");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Non-empty lines of an optional file.
fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|t| {
            t.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// A serde enum as the word the JSON plan uses (`create`, `stackSet`, `orphan`).
fn word<T: serde::Serialize>(v: T) -> String {
    serde_json::to_value(v)
        .unwrap()
        .as_str()
        .unwrap()
        .to_string()
}

fn outline(plan: &Plan) -> Vec<String> {
    let mut lines: Vec<String> = plan
        .changes
        .iter()
        .map(|c| format!("{} {} {}", word(c.action), word(c.resource_type), c.address))
        .chain(
            plan.findings
                .iter()
                .map(|f| format!("finding {} {}", word(f.kind), f.address)),
        )
        .collect();
    lines.sort();
    lines
}

#[test]
fn plan_cases_plan_exactly_the_expected_changes() {
    let cases = cases();
    assert!(cases.len() >= 13, "only {} plan cases", cases.len());
    let mut failures = Vec::new();
    // Snapshots are compared after the expected lines, whose mismatch says more.
    let mut rendered = Vec::new();
    for dir in &cases {
        let case = dir.file_name().unwrap().to_string_lossy().into_owned();
        let m = manifest(dir);
        let live = live(dir);
        let envs = lines_of(&dir.join("envs.txt"));
        let mut want = lines_of(&dir.join("expected.txt"));
        want.sort();

        let mut plan = match plan::make(&m, &live, &envs) {
            Ok(plan) => plan,
            Err(e) => {
                let got = vec![format!("error {e}")];
                if got != want {
                    failures.push(format!("{case}:\n  got:  {got:?}\n  want: {want:?}"));
                }
                continue;
            }
        };
        // The fixtures live in this repository: the commit would change with every commit,
        // and the fingerprint with every field LiveState gains.
        plan.source.commit = None;
        plan.source.dirty = false;
        plan.fingerprint = "sha256:(fingerprint of live.json)".into();

        let got = outline(&plan);
        if got != want {
            let show = |lines: &[String]| match lines {
                [] => "(nothing)".to_string(),
                _ => lines.join("\n    "),
            };
            failures.push(format!(
                "{case}:\n  got:\n    {}\n  want:\n    {}",
                show(&got),
                show(&want)
            ));
        }

        let text = render::text(
            &plan,
            &TextOptions {
                color: false,
                ..TextOptions::default()
            },
        );
        let markdown = render::markdown(&plan);
        let json = render::json(&plan);
        for secret in lines_of(&dir.join("secrets.txt")) {
            for (format, out) in [("text", &text), ("markdown", &markdown), ("json", &json)] {
                if out.contains(&secret) {
                    failures.push(format!("{case}: the {format} rendering shows {secret:?}"));
                }
            }
        }
        rendered.push((case, text, markdown, json));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    for (case, text, markdown, json) in rendered {
        insta::assert_snapshot!(format!("{case}-text"), text);
        insta::assert_snapshot!(format!("{case}-markdown"), markdown);
        insta::assert_snapshot!(format!("{case}-json"), json);
    }
}
