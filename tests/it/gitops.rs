//! The GitOps loop against the emulator: `reconcile` follows a branch of a remote and converges
//! to each new commit (never touching the working tree, refusing an invalid head), runs until
//! SIGTERM; `watch` re-plans when a file changes.

use crate::support::emulator::{TestAccount, management_account, s3};
use crate::support::run::{estate, git, process, run};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const ESTATE: &str = "apiVersion: estate/v1
kind: Estate
metadata: {name: gitops}
spec:
  homeRegion: us-east-1
  regions: [us-east-1]
  promotion: [dev]
  include: [organization.yaml, environments.yaml]
";

const ENVIRONMENTS: &str = "apiVersion: estate/v1
kind: Environment
metadata: {name: dev}
spec:
  targets: {units: [/ml/dev]}
";

fn organization(units: &[&str]) -> String {
    let mut text =
        "apiVersion: estate/v1\nkind: Organization\nmetadata: {name: org}\nspec:\n  units:\n"
            .to_string();
    for u in units {
        text.push_str(&format!("    - path: {u}\n"));
    }
    text.push_str("  accounts: []\n");
    text
}

fn write_manifest(dir: &Path, units: &[&str]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("estate.yaml"), ESTATE).unwrap();
    std::fs::write(dir.join("environments.yaml"), ENVIRONMENTS).unwrap();
    std::fs::write(dir.join("organization.yaml"), organization(units)).unwrap();
}

/// A remote (`origin.git`), an author's clone (`author`) and the clone reconcile follows
/// (`deploy`), holding the manifest under `platform/`.
struct Repos {
    root: tempfile::TempDir,
}

impl Repos {
    fn new(units: &[&str]) -> Repos {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        git(r, &["init", "-q", "--bare", "-b", "main", "origin.git"]);
        git(r, &["clone", "-q", "origin.git", "author"]);
        write_manifest(&r.join("author/platform"), units);
        let r = r.to_path_buf();
        let repos = Repos { root };
        repos.push("first");
        git(&r, &["clone", "-q", "origin.git", "deploy"]);
        repos
    }

    fn author(&self) -> std::path::PathBuf {
        self.root.path().join("author")
    }

    fn deploy(&self) -> std::path::PathBuf {
        self.root.path().join("deploy/platform")
    }

    fn push(&self, message: &str) -> String {
        let a = self.author();
        git(&a, &["add", "-A"]);
        git(&a, &["commit", "-q", "-m", message]);
        git(&a, &["push", "-q", "origin", "HEAD:main"]);
        self.head()
    }

    /// The commit the author last pushed.
    fn head(&self) -> String {
        let out = Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(self.author())
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }
}

/// `reconcile . --remote origin --branch BRANCH EXTRA` in the deploy clone.
fn reconcile(
    account: &TestAccount,
    repos: &Repos,
    branch: &str,
    extra: &[&str],
) -> (i32, String, String) {
    let mut args = vec!["reconcile", ".", "--remote", "origin", "--branch", branch];
    args.extend_from_slice(extra);
    run(account, &repos.deploy(), &args)
}

/// `reconcile --once --format json` in the deploy clone: its exit code and cycle record.
fn once(account: &TestAccount, repos: &Repos) -> (i32, serde_json::Value, String) {
    let (code, out, err) = reconcile(account, repos, "main", &["--once", "--format", "json"]);
    let cycle = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("one JSON line ({e}): {out}{err}"));
    (code, cycle, err)
}

async fn unit_names(account: &TestAccount, parent: &str) -> Vec<String> {
    let units = account.units(parent).await;
    units.into_iter().map(|(name, _)| name).collect()
}

#[tokio::test]
async fn reconcile_follows_the_remote_branch_commit_by_commit() {
    let account = management_account().await;
    let repos = Repos::new(&["/ml", "/ml/dev"]);
    let first = repos.head();

    let (code, cycle, err) = once(&account, &repos);
    assert_eq!(code, 0, "{cycle}{err}");
    assert_eq!(cycle["outcome"], "applied", "{cycle}");
    assert_eq!(cycle["commit"], first.as_str());
    assert_eq!(cycle["branch"], "origin/main");
    assert_eq!(cycle["applied"], 2);
    assert_eq!(unit_names(&account, &account.root_id).await, ["ml"]);

    // Nothing new: in sync.
    let (code, cycle, _) = once(&account, &repos);
    assert_eq!((code, cycle["outcome"].as_str()), (0, Some("in-sync")));

    // A new commit on the remote: fetched and applied; the deploy clone's files untouched.
    write_manifest(
        &repos.author().join("platform"),
        &["/ml", "/ml/dev", "/ml/extra"],
    );
    let second = repos.push("extra unit");
    let (code, cycle, err) = once(&account, &repos);
    assert_eq!(code, 0, "{cycle}{err}");
    assert_eq!(cycle["outcome"], "applied");
    assert_eq!(cycle["commit"], second.as_str());
    let ml = account.units(&account.root_id).await[0].1.clone();
    assert_eq!(unit_names(&account, &ml).await, ["dev", "extra"]);
    let deployed = std::fs::read_to_string(repos.deploy().join("organization.yaml")).unwrap();
    assert!(
        !deployed.contains("/ml/extra"),
        "the working tree is never touched"
    );

    // An invalid head is refused with its diagnostics; nothing is applied.
    write_manifest(&repos.author().join("platform"), &["/ml", "/ml/dev"]);
    std::fs::write(
        repos.author().join("platform/environments.yaml"),
        ENVIRONMENTS.replace("/ml/dev", "/ml/dve"),
    )
    .unwrap();
    let third = repos.push("typo");
    let (code, cycle, err) = once(&account, &repos);
    assert_eq!(code, 1);
    assert_eq!(cycle["outcome"], "invalid");
    assert_eq!(cycle["commit"], third.as_str());
    assert!(err.contains("environments.yaml:5:"), "{err}");
    assert!(err.contains("/ml/dev"), "did you mean: {err}");
    assert_eq!(
        unit_names(&account, &ml).await,
        ["dev", "extra"],
        "the unit the invalid commit drops is still there"
    );

    // The remote goes away: the tick converges to the last fetched commit and says why.
    std::fs::rename(
        repos.root.path().join("origin.git"),
        repos.root.path().join("moved.git"),
    )
    .unwrap();
    let (code, cycle, err) = once(&account, &repos);
    assert_eq!(cycle["commit"], third.as_str(), "{cycle}{err}");
    assert!(
        cycle["fetchError"]
            .as_str()
            .is_some_and(|e| e.contains("git fetch origin main")),
        "{cycle}"
    );
    assert_eq!(code, 1, "the last fetched commit is still the invalid one");
}

#[tokio::test]
async fn a_branch_that_does_not_exist_stops_the_loop_at_once() {
    let account = management_account().await;
    let repos = Repos::new(&["/ml", "/ml/dev"]);
    let (code, out, err) = reconcile(&account, &repos, "mian", &["--interval", "1s"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("reconcile origin/mian -: error"), "{out}");
}

/// The child's stdout lines, as they come.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_for(lines: &mpsc::Receiver<String>, seen: &mut Vec<String>, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(200)) {
            let found = line.contains(what);
            seen.push(line);
            if found {
                return;
            }
        }
    }
    panic!("no line with {what:?} within 90s: {seen:#?}");
}

fn spawn(account: &TestAccount, dir: &Path, args: &[&str]) -> Child {
    process(account, dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// SIGTERM, as a service manager stops it: the loop ends cleanly with exit 0.
fn terminate(mut child: Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert_eq!(status.code(), Some(0), "a clean stop");
            return;
        }
        assert!(Instant::now() < deadline, "still running 30s after SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test]
async fn the_reconcile_loop_applies_what_lands_on_the_branch_until_sigterm() {
    let account = management_account().await;
    let repos = Repos::new(&["/ml", "/ml/dev"]);
    let mut child = spawn(
        &account,
        &repos.deploy(),
        &[
            "reconcile",
            ".",
            "--remote",
            "origin",
            "--interval",
            "1s",
            "--format",
            "json",
        ],
    );
    let lines = lines_of(&mut child);
    let mut seen = Vec::new();
    wait_for(&lines, &mut seen, "\"outcome\":\"applied\"");
    wait_for(&lines, &mut seen, "\"outcome\":\"in-sync\"");

    write_manifest(
        &repos.author().join("platform"),
        &["/ml", "/ml/dev", "/ml/landed"],
    );
    let commit = repos.push("landed");
    wait_for(&lines, &mut seen, &commit);
    assert!(
        seen.last().unwrap().contains("\"outcome\":\"applied\""),
        "{seen:#?}"
    );
    terminate(child);
    // Every line was one cycle record.
    for line in &seen {
        let cycle: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(cycle["outcome"].is_string(), "{line}");
    }
}

#[tokio::test]
async fn watch_replans_when_a_file_changes() {
    let account = management_account().await;
    let dir = tempfile::tempdir().unwrap();
    write_manifest(dir.path(), &["/ml", "/ml/dev"]);
    let mut child = spawn(&account, dir.path(), &["watch", ".", "--debounce", "100ms"]);
    let lines = lines_of(&mut child);
    let mut seen = Vec::new();
    wait_for(&lines, &mut seen, "Plan: 2 to create");

    write_manifest(dir.path(), &["/ml", "/ml/dev", "/ml/watched"]);
    wait_for(&lines, &mut seen, "unit /ml/watched");
    wait_for(&lines, &mut seen, "Plan: 3 to create");
    terminate(child);
}

#[test]
fn reconcile_outside_a_repository_or_without_the_remote_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    write_manifest(dir.path(), &["/ml"]);
    estate()
        .current_dir(dir.path())
        .args(["reconcile", ".", "--once"])
        .assert()
        .code(1)
        .stderr(predicates::str::contains("inside a Git repository"));
    git(dir.path(), &["init", "-q", "-b", "main"]);
    estate()
        .current_dir(dir.path())
        .args(["reconcile", ".", "--once", "--remote", "upstream"])
        .assert()
        .code(1)
        .stderr(predicates::str::contains("no remote `upstream`"));
    estate()
        .current_dir(dir.path())
        .args(["reconcile", ".", "--interval", "soon"])
        .assert()
        .code(64);
}

/// A tick whose apply fails part-way says how much it had applied: here the units are
/// created, then the stack set cannot be, because its template bucket's name is taken by
/// another account.
#[tokio::test]
async fn a_tick_that_fails_part_way_reports_what_it_had_applied() {
    let account = management_account().await;
    let other = management_account().await;
    let taken = format!("estate-taken-{}", other.id);
    let s3 = s3(&other.config);
    s3.create_bucket().bucket(&taken).send().await.unwrap();

    let repos = Repos::new(&["/ml", "/ml/dev"]);
    let platform = repos.author().join("platform");
    std::fs::write(
        platform.join("estate.yaml"),
        ESTATE.replace(
            "include: [organization.yaml, environments.yaml]",
            &format!(
                "templateBucket: {taken}\n  include: [organization.yaml, environments.yaml, stacksets.yaml]"
            ),
        ),
    )
    .unwrap();
    std::fs::write(
        platform.join("stacksets.yaml"),
        "apiVersion: estate/v1\nkind: StackSet\nmetadata: {name: big}\nspec:\n  template: big.yaml\n  environments: [dev]\n",
    )
    .unwrap();
    // Past the inline limit, so it must go through the bucket.
    let mut big = "AWSTemplateFormatVersion: \"2010-09-09\"\nResources:\n  Topic:\n    Type: AWS::SNS::Topic\n".to_string();
    while big.len() <= 52_000 {
        big.push_str("# padding: this template is long, as real ones with inline code are\n");
    }
    std::fs::write(platform.join("big.yaml"), big).unwrap();
    let commit = repos.push("a big template");

    let (code, cycle, err) = once(&account, &repos);
    assert_eq!(code, 1, "{cycle}{err}");
    assert_eq!(cycle["outcome"], "failed", "{cycle}");
    assert_eq!(cycle["commit"], commit.as_str());
    assert_eq!(
        cycle["applied"], 3,
        "both units and the stack sets' administration role were created: {cycle}"
    );
    assert!(
        cycle["message"]
            .as_str()
            .is_some_and(|m| m.contains(&taken)),
        "the message names the bucket: {cycle}"
    );
    assert_eq!(unit_names(&account, &account.root_id).await, ["ml"]);
}

/// A stack set of a manifest name that is not estate's: the tick stops at its environment and
/// says `conflict` (exit 1 with --once), never `in-sync`.
#[tokio::test]
async fn a_tick_that_meets_a_conflict_reports_conflict() {
    let account = management_account().await;
    let repos = Repos::new(&["/ml", "/ml/dev"]);
    let platform = repos.author().join("platform");
    std::fs::write(
        platform.join("estate.yaml"),
        ESTATE.replace(
            "include: [organization.yaml, environments.yaml]",
            "include: [organization.yaml, environments.yaml, stacksets.yaml]",
        ),
    )
    .unwrap();
    std::fs::write(
        platform.join("stacksets.yaml"),
        "apiVersion: estate/v1\nkind: StackSet\nmetadata: {name: guard}\nspec:\n  template: guard.yaml\n  environments: [dev]\n",
    )
    .unwrap();
    let template = "AWSTemplateFormatVersion: \"2010-09-09\"\nResources:\n  Nothing:\n    Type: AWS::CloudFormation::WaitConditionHandle\n";
    std::fs::write(platform.join("guard.yaml"), template).unwrap();
    repos.push("a guard stack set");
    // Someone made a stack set of that name by hand.
    aws_sdk_cloudformation::Client::new(&account.config)
        .create_stack_set()
        .stack_set_name("guard-dev")
        .template_body(template)
        .send()
        .await
        .unwrap();

    let (code, cycle, err) = once(&account, &repos);
    assert_eq!(code, 1, "{cycle}{err}");
    assert_eq!(cycle["outcome"], "conflict", "{cycle}");
    assert!(
        cycle["message"]
            .as_str()
            .is_some_and(|m| m.contains("stackSet:guard-dev")),
        "{cycle}"
    );
}

/// A tick that converges everything before an `approval: manual` environment, which still has
/// changes, says `pending-approval` (exit 2 with --once), never `in-sync`; the JSON names what
/// waits where.
#[tokio::test]
async fn a_tick_that_stops_at_a_manual_gate_with_changes_left_reports_pending_approval() {
    let account = management_account().await;
    let dir = crate::support::builders::example("ml-platform");
    git(dir.path(), &["init", "-q", "-b", "main"]);
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-q", "-m", "platform"]);
    let args = [
        "reconcile",
        ".",
        "--branch",
        "main",
        "--once",
        "--format",
        "json",
    ];
    for tick in [
        "first: applies up to the gate",
        "second: nothing before the gate",
    ] {
        let (code, out, err) = run(&account, dir.path(), &args);
        let cycle: serde_json::Value = serde_json::from_str(out.trim())
            .unwrap_or_else(|e| panic!("{tick}: one JSON line ({e}): {out}{err}"));
        assert_eq!(code, 2, "{tick}: {cycle}{err}");
        assert_eq!(cycle["formatVersion"], 1, "{tick}: {cycle}");
        assert_eq!(cycle["outcome"], "pending-approval", "{tick}: {cycle}");
        assert_eq!(
            cycle["pending"],
            serde_json::json!([{"environment": "production", "changes": 2}]),
            "{tick}: {cycle}"
        );
    }
}
