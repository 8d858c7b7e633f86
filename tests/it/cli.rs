//! The `estate` binary's contract: exit codes, output streams, `schema`, `--git-ref`.

use crate::support::builders::{copy_dir, copy_of, edit_all};
use crate::support::run::{estate, estate_env, git, pty_command};
use predicates::prelude::*;
use std::path::Path;

const EXAMPLE: &str = "examples/environments/ml-platform";

#[test]
fn validate_the_example_offline_exits_0() {
    estate()
        .args(["validate", EXAMPLE])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("is valid"))
        .stderr(predicate::str::is_empty());
}

#[test]
fn validate_an_invalid_manifest_exits_1_with_located_diagnostics() {
    estate()
        .args(["validate", "tests/fixtures/invalid/several-mistakes"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "[tests/fixtures/invalid/several-mistakes/stacksets.yaml:9:24]",
        ))
        .stderr(predicate::str::contains("did you mean `tools`?"))
        .stderr(predicate::str::contains("5 errors, 1 warning"));
}

#[test]
fn validate_json_lists_diagnostics_with_positions() {
    let out = estate()
        .args([
            "validate",
            "--format",
            "json",
            "tests/fixtures/invalid/unknown-field",
        ])
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["valid"], false);
    let d = &v["diagnostics"][0];
    assert_eq!(d["code"], "estate::unknown-field");
    assert_eq!(d["line"], 6);
    assert_eq!(d["column"], 3);
    assert_eq!(d["help"], "did you mean `promotion`?");
}

#[test]
fn usage_errors_exit_64() {
    estate()
        .args(["validate", "--frobnicate"])
        .assert()
        .code(64);
    estate().arg("no-such-command").assert().code(64);
    estate()
        .args(["--format", "yaml", "validate"])
        .assert()
        .code(64);
    estate().arg("--help").assert().code(0);
}

/// An `--env` the manifest lacks is a usage error, with the closest name, before any AWS call
/// (no credentials are set here).
#[test]
fn an_unknown_environment_is_a_usage_error_with_the_closest_name() {
    for command in ["plan", "drift", "apply"] {
        estate()
            .args([command, EXAMPLE, "--env", "prod"])
            .assert()
            .code(64)
            .stderr(predicate::str::contains(
                "unknown environment `prod`; did you mean `production`?",
            ));
    }
    estate()
        .args(["plan", EXAMPLE, "--env", "qa"])
        .assert()
        .code(64)
        .stderr(predicate::str::contains(
            "the manifest has dev, staging, production",
        ));
}

/// A reader that stops reading ends estate quietly, as it ends grep or cat: no "Broken
/// pipe" error on stderr.
#[cfg(unix)]
#[test]
fn a_closed_pipe_ends_estate_quietly() {
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::os::unix::process::ExitStatusExt;
    // A pipe whose reader is gone before estate starts: its first write meets a closed pipe,
    // whatever the timing.
    let mut fds = [0; 2];
    // SAFETY: `pipe` fills two new descriptors; the read end is closed, the write end owned.
    let writer = unsafe {
        assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
        libc::close(fds[0]);
        OwnedFd::from_raw_fd(fds[1])
    };
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("estate"))
        .envs(estate_env())
        .arg("schema")
        .stdout(std::process::Stdio::from(writer))
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert_eq!(out.status.signal(), Some(13), "{:?}", out.status);
}

#[test]
fn a_missing_folder_is_an_error_not_a_crash() {
    estate()
        .args(["validate", "no/such/dir"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no/such/dir is not a directory"));
}

#[test]
fn without_credentials_plan_says_how_to_provide_them() {
    let out = estate()
        .args(["plan", EXAMPLE])
        .assert()
        .code(1)
        .get_output()
        .clone();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("no usable AWS credentials"), "{err}");
    assert!(err.contains("--profile"), "{err}");
    // Each provider tried is listed (the SDK's own words), never its debug dump.
    assert!(err.contains("Environment:"), "{err}");
    assert!(!err.contains("DispatchFailure("), "{err}");
}

/// `--profile` wins over keys in the environment: a profile that does not exist is an error
/// naming it, not a silent use of the keys.
#[test]
fn a_profile_asked_for_wins_over_keys_in_the_environment() {
    let config = tempfile::NamedTempFile::new().unwrap();
    let out = estate()
        .env("AWS_ACCESS_KEY_ID", "AKIAENVIRONMENTKEY00")
        .env("AWS_SECRET_ACCESS_KEY", "secret-from-the-environment")
        .env("AWS_CONFIG_FILE", config.path())
        .env("AWS_SHARED_CREDENTIALS_FILE", config.path())
        .args(["plan", EXAMPLE, "--profile", "nosuch"])
        .assert()
        .code(1)
        .get_output()
        .clone();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("nosuch"), "{err}");
    assert!(!err.contains("secret-from-the-environment"), "{err}");
}

#[test]
fn schema_prints_the_published_schema() {
    let published = std::fs::read_to_string("schema/estate.schema.json").unwrap();
    estate()
        .arg("schema")
        .assert()
        .code(0)
        .stdout(predicate::eq(published));
}

#[test]
fn no_color_by_default_when_not_a_terminal() {
    let out = estate()
        .env_remove("NO_COLOR")
        .args(["validate", "tests/fixtures/invalid/unknown-kind"])
        .assert()
        .code(1)
        .get_output()
        .stderr
        .clone();
    assert!(!String::from_utf8(out).unwrap().contains('\u{1b}'));
}

/// `--git-ref` reads the committed manifest from the object database, not the working tree,
/// and leaves the working tree untouched.
#[test]
fn git_ref_reads_the_commit_not_the_working_tree() {
    let repo = tempfile::tempdir().unwrap();
    let manifest = repo.path().join("platform");
    copy_dir(Path::new(EXAMPLE), &manifest);
    git(repo.path(), &["init", "-q", "-b", "main"]);
    git(repo.path(), &["add", "."]);
    git(repo.path(), &["commit", "-q", "-m", "good"]);
    // Break the working tree, and remove a file the commit has.
    let stacksets = manifest.join("stacksets.yaml");
    let broken = std::fs::read_to_string(&stacksets)
        .unwrap()
        .replace("${account:tools}", "${account:tool}");
    std::fs::write(&stacksets, &broken).unwrap();
    std::fs::remove_file(manifest.join("templates/secure-notebook.yaml")).unwrap();

    estate().arg("validate").arg(&manifest).assert().code(1);
    estate()
        .args(["validate", "--git-ref", "HEAD"])
        .arg(&manifest)
        .assert()
        .code(0);
    // The working tree is as we left it.
    assert_eq!(std::fs::read_to_string(&stacksets).unwrap(), broken);
    assert!(!manifest.join("templates/secure-notebook.yaml").exists());

    // Commit the break; the previous commit still validates by ref.
    git(repo.path(), &["commit", "-q", "-am", "bad"]);
    estate()
        .args(["validate", "--git-ref", "HEAD"])
        .arg(&manifest)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("unknown account `tool`"));
    let out = estate()
        .args(["validate", "--format", "json", "--git-ref", "HEAD~1"])
        .arg(&manifest)
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["commit"].as_str().unwrap().len(), 40);

    estate()
        .args(["validate", "--git-ref", "no-such-branch"])
        .arg(&manifest)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "cannot resolve git ref `no-such-branch`",
        ));
}

#[test]
fn quiet_prints_only_errors_and_verbose_conflicts_with_it() {
    // Valid: nothing at all on either stream.
    estate()
        .args(["-q", "validate", EXAMPLE])
        .assert()
        .code(0)
        .stdout("")
        .stderr("");
    // Invalid: the errors still show.
    let dir = copy_of(EXAMPLE);
    edit_all(
        dir.path(),
        "stacksets.yaml",
        "${account:tools}",
        "${account:tool}",
    );
    estate()
        .args(["-q", "validate"])
        .arg(dir.path())
        .assert()
        .code(1)
        .stdout("")
        .stderr(predicate::str::contains("unknown account `tool`"));
    estate()
        .args(["-v", "-q", "validate", EXAMPLE])
        .assert()
        .code(64)
        .stderr(predicate::str::contains("cannot be used with"));
}

#[test]
fn verbose_logs_what_estate_does_on_stderr() {
    // With no AWS to reach, -vv shows the steps taken before the failure; stdout stays clean.
    let out = estate()
        .args(["-vv", "plan", EXAMPLE])
        .assert()
        .code(1)
        .get_output()
        .clone();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(out.stdout.is_empty());
    assert!(err.contains("DEBUG") || err.contains("INFO"), "{err}");
    let quiet = estate()
        .args(["plan", EXAMPLE])
        .assert()
        .code(1)
        .get_output()
        .clone();
    let quiet = String::from_utf8(quiet.stderr).unwrap();
    assert!(
        !quiet.contains("DEBUG") && !quiet.contains("INFO"),
        "{quiet}"
    );
}

/// Runs `estate ARGS` on a pseudo-terminal (util-linux `script`), as a person at a terminal
/// would; returns everything it printed.
fn on_a_terminal(args: &str, no_color: Option<&str>) -> String {
    let mut cmd = pty_command(args);
    cmd.env_remove("NO_COLOR")
        .envs(estate_env().into_iter().filter(|(k, _)| *k != "NO_COLOR"));
    if let Some(v) = no_color {
        cmd.env("NO_COLOR", v);
    }
    let out = cmd
        .output()
        .expect("util-linux `script` runs the binary on a pseudo-terminal");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn colour_only_on_a_terminal_and_never_with_no_color() {
    let broken = "tests/fixtures/invalid/account-id-not-12-digits";
    let tty = on_a_terminal(&format!("validate {broken}"), None);
    assert!(tty.contains("\x1b[31m"), "a terminal gets colour: {tty:?}");
    assert!(tty.contains("is not valid"), "{tty}");
    let plain = on_a_terminal(&format!("validate {broken}"), Some("1"));
    assert!(plain.contains("is not valid"), "{plain}");
    assert!(
        !plain.contains("\x1b["),
        "NO_COLOR on a terminal: {plain:?}"
    );
    // An empty NO_COLOR does not count (no-color.org).
    let empty = on_a_terminal(&format!("validate {broken}"), Some(""));
    assert!(empty.contains("\x1b[31m"), "{empty:?}");
}

/// Shell completions name every subcommand and their flags; an unknown shell is a usage error.
#[test]
fn completions_cover_every_subcommand() {
    for (shell, mark) in [
        ("bash", "complete -F _estate"),
        ("zsh", "#compdef estate"),
        ("fish", "complete -c estate"),
    ] {
        let out = estate().args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains(mark), "{shell}: {text}");
        for word in [
            "validate",
            "plan",
            "apply",
            "drift",
            "reconcile",
            "allow-delete",
        ] {
            assert!(text.contains(word), "{shell} completes {word}");
        }
    }
    estate().args(["completions", "tcsh"]).assert().code(64);
}

/// The man page is roff with a section per subcommand and the exit codes of the contract.
#[test]
fn the_man_page_documents_every_subcommand_and_the_exit_codes() {
    let out = estate().arg("man").output().unwrap();
    assert!(out.status.success());
    let roff = String::from_utf8(out.stdout).unwrap();
    assert!(roff.contains(".TH estate 1"), "{roff}");
    for sub in [
        "VALIDATE",
        "PLAN",
        "APPLY",
        "DRIFT",
        "RECONCILE",
        "UNLOCK",
        "SCHEMA",
    ] {
        assert!(roff.contains(&format!(".SH \"ESTATE {sub}\"")), "{sub}");
    }
    assert!(roff.contains(".SH \"EXIT STATUS\""));
    assert!(roff.contains("64 usage error"));
    // `man` reads it: formatted, it holds no roff errors (groff prints them on stderr).
    if Path::new("/usr/bin/groff").exists() {
        let dir = tempfile::tempdir().unwrap();
        let page = dir.path().join("estate.1");
        std::fs::write(&page, &roff).unwrap();
        let out = std::process::Command::new("groff")
            .args(["-man", "-Tutf8", "-ww"])
            .arg(&page)
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    }
}

/// A checkout owned by another user (the container's case: the host's files, uid 10001
/// reading them) is refused with how to trust it, and read once git's `safe.directory` names
/// it, as the image does for /work. Simulated by running estate as another uid, so only as
/// root; otherwise skipped with a line on stderr.
#[test]
fn a_checkout_owned_by_another_user_is_read_only_once_trusted() {
    use std::os::unix::process::CommandExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "skipping the repository ownership test: it runs estate as another uid, which needs root"
        );
        return;
    }
    let repo = copy_of("examples/environments/ml-platform");
    git(repo.path(), &["init", "-q", "-b", "main"]);
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", "platform"]);
    let home = tempfile::tempdir().unwrap();
    for dir in [repo.path(), home.path()] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let validate = |home: &Path| {
        let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("estate"))
            .args(["validate", ".", "--git-ref", "HEAD"])
            .current_dir(repo.path())
            .envs(estate_env())
            .env("HOME", home)
            .env_remove("XDG_CONFIG_HOME")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .uid(10001)
            .gid(10001)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = validate(home.path());
    assert_eq!(code, 1, "{err}");
    let root = std::fs::canonicalize(repo.path()).unwrap();
    assert!(
        err.contains("owned by another user")
            && err.contains(&format!(
                "git config --global --add safe.directory {}",
                root.display()
            )),
        "{err}"
    );
    let gitconfig = home.path().join(".gitconfig");
    std::fs::write(
        &gitconfig,
        format!("[safe]\n\tdirectory = {}\n", root.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&gitconfig, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, err) = validate(home.path());
    assert_eq!(code, 0, "trusted through safe.directory: {err}");
}

/// A flag given to a command that does nothing with it is a usage error, said, not ignored.
#[test]
fn flags_are_refused_where_they_do_nothing() {
    for (args, flag) in [
        (&["schema", "--git-ref", "HEAD"][..], "--git-ref"),
        (&["reconcile", ".", "--git-ref", "HEAD"][..], "--git-ref"),
        (&["watch", ".", "--stats"][..], "--stats"),
        (&["unlock", ".", "--format", "json"][..], "--format"),
        (&["--format", "json", "completions", "bash"][..], "--format"),
    ] {
        estate()
            .args(args)
            .assert()
            .code(64)
            .stderr(predicate::str::contains(format!("{flag} does nothing for")));
    }
    // Where they act, they are taken.
    estate().args(["schema", "--plan"]).assert().success();
    estate()
        .args([
            "validate",
            "examples/environments/ml-platform",
            "--format",
            "json",
        ])
        .assert()
        .success();
}
