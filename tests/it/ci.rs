//! The CI examples (examples/ci): the GitHub workflows pass actionlint, the GitLab pipeline is
//! well formed, and examples/ci/estate-ci, which both run, does what they rely on against the
//! emulator: the plan comment is created once and then updated in place (found by its marker),
//! and drift's exit codes open, update and close one issue. `gh` and `glab` are fakes on PATH
//! that record what they were asked and answer from files.

use crate::support::builders::example;
use crate::support::emulator::{TestAccount, management_account};
use crate::support::run::{apply, estate_env};
use std::path::{Path, PathBuf};
use std::process::Command;

const SCRIPT: &str = "examples/ci/estate-ci";

/// actionlint: in the test venv (scripts/setup installs it), or on PATH. In CI it must be
/// there; elsewhere its absence skips the lint with one line on stderr.
fn actionlint() -> Option<PathBuf> {
    let venv = std::env::var_os("ESTATE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv"));
    let path = std::env::var_os("PATH").unwrap_or_default();
    let candidates = std::iter::once(venv.join("bin/actionlint"))
        .chain(std::env::split_paths(&path).map(|p| p.join("actionlint")));
    for c in candidates {
        if c.is_file() {
            return Some(c);
        }
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "actionlint is missing: scripts/setup installs it in the venv"
    );
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "skipping the workflow lint: no actionlint in {} or on PATH (outside CI)",
        venv.display()
    );
    None
}

fn workflows() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir("examples/ci/github")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    files.sort();
    files
}

#[test]
fn the_github_workflows_pass_actionlint() {
    let Some(lint) = actionlint() else { return };
    let files = workflows();
    assert_eq!(files.len(), 3, "plan, apply, drift: {files:?}");
    let out = Command::new(&lint)
        .arg("-no-color")
        .args(&files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The lint does read them: a workflow with a mistake in it fails.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yml");
    let text = std::fs::read_to_string(&files[0]).unwrap();
    std::fs::write(&broken, text.replace("runs-on:", "runs_on:")).unwrap();
    let out = Command::new(&lint).arg(&broken).output().unwrap();
    assert!(!out.status.success(), "actionlint passed a broken workflow");
}

/// What the workflows and the pipeline run: the script, with the arguments the test gives it.
#[test]
fn the_workflows_and_the_pipeline_run_the_tested_script() {
    let read = |p: &str| std::fs::read_to_string(p).unwrap();
    assert!(read("examples/ci/github/plan.yml").contains("ci/estate-ci plan-comment"));
    assert!(read("examples/ci/github/drift.yml").contains("ci/estate-ci drift-issue"));
    let apply = read("examples/ci/github/apply.yml");
    // Promotion order: each environment needs the one before it.
    let dev = apply.find("\n  dev:").unwrap();
    let staging = apply.find("\n  staging:\n    needs: dev").unwrap();
    let production = apply.find("\n  production:\n    needs: staging").unwrap();
    assert!(dev < staging && staging < production);
    assert!(apply.contains("id-token: write"), "OIDC");

    let gitlab: serde_yaml::Value =
        serde_yaml::from_str(&read("examples/ci/gitlab/.gitlab-ci.yml")).unwrap();
    let stages: Vec<&str> = gitlab["stages"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(stages, ["plan", "apply", "drift"]);
    let script = |job: &str| {
        gitlab[job]["script"][0]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert!(script("plan").starts_with("ci/estate-ci plan-comment"));
    assert!(script("drift").starts_with("ci/estate-ci drift-issue"));
    assert_eq!(gitlab["apply-staging"]["needs"][0], "apply-dev");
    assert_eq!(gitlab["apply-production"]["needs"][0], "apply-staging");
    assert_eq!(gitlab["apply-production"]["rules"][0]["when"], "manual");
}

/// A fake `gh` and `glab`: each call's arguments go to `log`; list calls print
/// `comments.json` or `issues.json`; a posted body is kept as `body.md`.
struct Forge {
    dir: tempfile::TempDir,
}

impl Forge {
    fn new() -> Forge {
        let dir = tempfile::tempdir().unwrap();
        let fake = r#"#!/usr/bin/env bash
state="$(dirname "$0")"
printf '%s\n' "$(basename "$0") $*" >>"$state/log"
case "$*" in
  "api --paginate "*) cat "$state/comments.json" ;;
  "issue list "*) cat "$state/issues.json" ;;
esac
prev=""
for a in "$@"; do
  case "$a" in body=@*|description=@*) cp "${a#*=@}" "$state/body.md" ;; esac
  if [ "$prev" = "--body-file" ]; then cp "$a" "$state/body.md"; fi
  prev="$a"
done
"#;
        for name in ["gh", "glab"] {
            let path = dir.path().join(name);
            std::fs::write(&path, fake).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let forge = Forge { dir };
        forge.answer("comments.json", "[]");
        forge.answer("issues.json", "[]");
        forge
    }

    fn answer(&self, file: &str, json: &str) {
        std::fs::write(self.dir.path().join(file), json).unwrap();
    }

    /// The calls since the last look, and forgets them.
    fn calls(&self) -> Vec<String> {
        let path = self.dir.path().join("log");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let _ = std::fs::remove_file(&path);
        text.lines().map(str::to_string).collect()
    }

    fn body(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("body.md")).unwrap_or_default()
    }

    /// `estate-ci ARGS` as a GitHub job runs it, acting as `account`: exit code and stderr.
    fn run(&self, account: &TestAccount, args: &[&str]) -> (i32, String) {
        let path = format!(
            "{}:{}",
            self.dir.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join(SCRIPT))
            .args(args)
            .envs(estate_env())
            .envs(account.env())
            .env("PATH", path)
            .env("ESTATE", assert_cmd::cargo::cargo_bin("estate"))
            .env("GITHUB_REPOSITORY", "acme/platform")
            .env_remove("GITLAB_CI")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

#[tokio::test]
async fn the_plan_comment_is_posted_once_then_updated_in_place() {
    let account = management_account().await;
    let dir = example("ml-platform");
    let forge = Forge::new();
    let manifest = dir.path().to_str().unwrap();

    let (code, err) = forge.run(&account, &["plan-comment", manifest, "7"]);
    assert_eq!(code, 0, "a plan with changes is not a failure: {err}");
    let calls = forge.calls();
    assert_eq!(
        calls[0], "gh api --paginate repos/acme/platform/issues/7/comments",
        "{calls:?}"
    );
    assert!(
        calls[1].starts_with("gh pr comment 7 --body-file "),
        "{calls:?}"
    );
    let body = forge.body();
    assert!(
        body.starts_with("<!-- estate-plan: ml-platform -->\n"),
        "{body}"
    );
    assert!(body.contains("**Plan: "), "{body}");

    // The next push: the comment carrying the marker is edited, another one left alone.
    forge.answer(
        "comments.json",
        r#"[{"id": 11, "body": "LGTM"}, {"id": 42, "body": "<!-- estate-plan: ml-platform -->\nold"}]"#,
    );
    let (code, err) = forge.run(&account, &["plan-comment", manifest, "7"]);
    assert_eq!(code, 0, "{err}");
    let calls = forge.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(
        calls[1]
            .starts_with("gh api --method PATCH repos/acme/platform/issues/comments/42 -F body=@"),
        "{calls:?}"
    );
    assert!(
        forge
            .body()
            .starts_with("<!-- estate-plan: ml-platform -->")
    );

    // A plan that fails posts nothing and fails the job.
    std::fs::write(dir.path().join("estate.yaml"), "kind: nonsense\n").unwrap();
    let (code, _) = forge.run(&account, &["plan-comment", manifest, "7"]);
    assert_eq!(code, 1);
    assert!(forge.calls().is_empty(), "nothing was posted");
}

#[tokio::test]
async fn drift_opens_updates_and_closes_one_issue() {
    let account = management_account().await;
    let dir = example("ml-platform");
    let manifest = dir.path().to_str().unwrap();
    for extra in [&[][..], &["--env", "production"][..]] {
        let (code, out, err) = apply(&account, dir.path(), extra);
        assert_eq!(code, 0, "{out}{err}");
    }
    let forge = Forge::new();
    let drift = ["drift-issue", manifest, "--no-detect"];

    // Clean, no issue open: nothing to do but look.
    let (code, err) = forge.run(&account, &drift);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        forge.calls(),
        ["gh issue list --state open --label estate-drift --json number,body"]
    );

    // An account moved out of its unit by hand: drift (exit 2) opens the issue.
    let org = aws_sdk_organizations::Client::new(&account.config);
    let tools = account.ids().await["tools"].clone();
    let ml = account.unit_id("/ml").await;
    let mv = |from: String, to: String| {
        let org = org.clone();
        let tools = tools.clone();
        async move {
            org.move_account()
                .account_id(tools)
                .source_parent_id(from)
                .destination_parent_id(to)
                .send()
                .await
                .unwrap();
        }
    };
    mv(ml.clone(), account.root_id.clone()).await;
    let (code, err) = forge.run(&account, &drift);
    assert_eq!(code, 0, "drift found is not a failed job: {err}");
    let calls = forge.calls();
    assert_eq!(
        calls[1..],
        [
            "gh label create estate-drift --force --description live AWS differs from the manifest"
                .to_string(),
            format!(
                "gh issue create --title estate drift: ml-platform --label estate-drift --body-file {}",
                calls[2].rsplit(' ').next().unwrap()
            )
        ],
        "{calls:?}"
    );
    assert!(
        forge
            .body()
            .starts_with("<!-- estate-drift: ml-platform -->")
    );

    // Still drifted, the issue open: it is updated, not duplicated.
    forge.answer(
        "issues.json",
        r#"[{"number": 5, "body": "<!-- estate-drift: ml-platform -->\n## estate drift"}]"#,
    );
    let (code, err) = forge.run(&account, &drift);
    assert_eq!(code, 0, "{err}");
    let calls = forge.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(
        calls[1].starts_with("gh issue edit 5 --body-file "),
        "{calls:?}"
    );

    // Healed: the issue is closed.
    mv(account.root_id.clone(), ml).await;
    let (code, err) = forge.run(&account, &drift);
    assert_eq!(code, 0, "{err}");
    let calls = forge.calls();
    assert_eq!(
        calls[1], "gh issue close 5 --comment No drift any more: live AWS matches the manifest.",
        "{calls:?}"
    );

    // A drift run that fails touches no issue and fails the job.
    let (code, _) = forge.run(&account, &["drift-issue", "/nonexistent"]);
    assert_eq!(code, 1);
    assert!(forge.calls().is_empty());
}
