//! Running the `estate` binary in tests: the environment it gets (no host AWS set-up, or a test
//! account's), assert_cmd and spawned processes, and reading the JSON plans it prints.

use crate::support::emulator::TestAccount;
use assert_cmd::Command;
use estate::plan::{Action, Change};
use serde_json::Value;
use std::path::Path;

/// The binary with no AWS configuration at all, and an endpoint that refuses connections:
/// anything that tried to reach AWS would fail.
pub fn estate() -> Command {
    let mut cmd = Command::cargo_bin("estate").unwrap();
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(estate_env());
    cmd
}

/// Environment for the binary in tests: no AWS configuration, and an endpoint that refuses
/// connections unless a test account's environment replaces it. Polls are quick: the
/// emulator finishes operations at once.
pub fn estate_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
        ("AWS_CONFIG_FILE", "/nonexistent"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("NO_COLOR", "1"),
        ("ESTATE_POLL_MS", "20"),
    ]
}

/// `estate ARGS` in `dir` acting as `account`: exit code, stdout, stderr.
pub fn run(account: &TestAccount, dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = estate()
        .envs(account.env())
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// `estate apply . --auto-approve EXTRA` in `dir`: exit code, stdout, stderr.
pub fn apply(account: &TestAccount, dir: &Path, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["apply", ".", "--auto-approve"];
    args.extend_from_slice(extra);
    run(account, dir, &args)
}

/// `estate apply . --auto-approve EXTRA` in `dir`: exit code, and stdout and stderr together.
pub fn apply_all(account: &TestAccount, dir: &Path, extra: &[&str]) -> (i32, String) {
    let (code, out, err) = apply(account, dir, extra);
    (code, format!("{out}{err}"))
}

/// `estate COMMAND . --format json EXTRA` in `dir`, which must exit 0 or 2: exit code and JSON.
pub fn json_of(account: &TestAccount, dir: &Path, command: &str, extra: &[&str]) -> (i32, Value) {
    let mut args = vec![command, ".", "--format", "json"];
    args.extend_from_slice(extra);
    let (code, out, err) = run(account, dir, &args);
    assert!(
        code == 0 || code == 2,
        "{command} exited {code}: {out}{err}"
    );
    (code, serde_json::from_str(&out).unwrap())
}

/// `estate COMMAND . --format json EXTRA` in `dir`, which must exit 2 (there are changes):
/// its JSON.
pub fn json_changes(account: &TestAccount, dir: &Path, command: &str, extra: &[&str]) -> Value {
    let (code, json) = json_of(account, dir, command, extra);
    assert_eq!(code, 2, "{command} {extra:?}: {json}");
    json
}

/// `estate plan . --format json EXTRA` in `dir`: exit code and the JSON plan.
pub fn plan_json(account: &TestAccount, dir: &Path, extra: &[&str]) -> (i32, Value) {
    json_of(account, dir, "plan", extra)
}

/// The binary, not yet started, in `dir` acting as `account` (for a test that watches it run).
pub fn process(account: &TestAccount, dir: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("estate"));
    cmd.envs(estate_env()).envs(account.env()).current_dir(dir);
    cmd
}

/// `estate ARGS` to be run on a pseudo-terminal by util-linux `script`. `script` hands the
/// line to `$SHELL -c`; the shell is pinned and `exec`s estate, so estate is the terminal's
/// foreground process and a Ctrl-C reaches it alone (a shell waiting for it would die of
/// SIGINT first, as dash does when CI leaves `SHELL` unset).
pub fn pty_command(args: &str) -> std::process::Command {
    let bin = assert_cmd::cargo::cargo_bin("estate");
    let mut cmd = std::process::Command::new("script");
    cmd.args([
        "-qec",
        &format!("exec '{}' {args}", bin.display()),
        "/dev/null",
    ])
    .env("SHELL", "/bin/sh");
    cmd
}

/// `estate ARGS` on a pseudo-terminal (see [`pty_command`]), not yet started, in `dir`
/// acting as `account`.
pub fn pty_process(account: &TestAccount, dir: &Path, args: &str) -> std::process::Command {
    let mut cmd = pty_command(args);
    cmd.envs(estate_env()).envs(account.env()).current_dir(dir);
    cmd
}

/// `git ARGS` in `dir` (a fixed author), which must succeed.
pub fn git(dir: &Path, args: &[&str]) {
    let status = std::process::Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?}");
}

/// `(first, second)` of every change of a JSON plan, e.g. `("address", "action")`.
pub fn change_fields<'a>(plan: &'a Value, first: &str, second: &str) -> Vec<(&'a str, &'a str)> {
    plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c[first].as_str().unwrap(), c[second].as_str().unwrap()))
        .collect()
}

/// Each item as text (addresses as the plan writes them, for instance).
pub fn texts<T: ToString>(items: &[T]) -> Vec<String> {
    items.iter().map(ToString::to_string).collect()
}

/// The address of every change, in order: the one place tests read `Change::address`.
pub fn addresses(changes: &[Change]) -> Vec<String> {
    changes.iter().map(|c| c.address.to_string()).collect()
}

/// (address, action) of every change, in order.
pub fn address_actions(changes: &[Change]) -> Vec<(String, Action)> {
    addresses(changes)
        .into_iter()
        .zip(changes.iter().map(|c| c.action))
        .collect()
}

/// The calls `--stats` printed on stderr (`  Service.Operation  calls  floor`), by operation.
pub fn stats_of(err: &str) -> std::collections::BTreeMap<String, u64> {
    err.lines()
        .skip_while(|l| !l.starts_with("AWS API calls"))
        .skip(1)
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            Some((words.next()?.to_string(), words.next()?.parse().ok()?))
        })
        .collect()
}
