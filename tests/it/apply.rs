//! `estate apply` against the emulator: examples converge and re-plan empty; the refusals a
//! careful operator expects; an apply killed mid-way converges on the next run.

use crate::support::builders::{edit_all, example, prune, self_service_lab};
use crate::support::emulator::{TestAccount, management_account, s3, stack_instances};
use crate::support::mocks::fast;
use crate::support::run::{
    apply, change_fields, json_changes, process, pty_process, run, stats_of, texts,
};
use std::path::Path;

/// `estate apply . --auto-approve` running in the background, its log lines on a pipe.
fn spawn_apply(account: &TestAccount, dir: &Path) -> std::process::Child {
    process(account, dir)
        .args(["apply", ".", "--auto-approve"])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn the_reference_example_applies_stage_by_stage_and_replans_empty() {
    let account = management_account().await;
    let dir = example("ml-platform");
    // Without --env, apply stops before production (approval: manual).
    let (code, out, err) = apply(&account, dir.path(), &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("stopping before `production`"), "{err}");
    assert!(err.contains("pending approval"), "{err}");
    // Again, with only the gated environment left: not "No changes", but what waits there.
    let (code, out, err) = apply(&account, dir.path(), &["--format", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    let held: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(held["formatVersion"], 1, "{out}");
    assert_eq!(held["outcome"], "pending-approval", "{out}");
    assert_eq!(
        held["pending"],
        serde_json::json!([{"environment": "production", "changes": 2}]),
        "{out}"
    );
    assert_eq!(held["done"], serde_json::json!([]), "{out}");
    let (code, out, err) = apply(&account, dir.path(), &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains("No changes"), "{out}");
    assert!(
        out.contains("Nothing to apply before `production`; 2 changes pending approval."),
        "{out}"
    );
    let plan = json_changes(&account, dir.path(), "plan", &[]);
    let left: Vec<&str> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["environment"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(
        left,
        ["-", "production", "production"],
        "only production is left: its account's execution role, its stack set and instance"
    );

    // `--format json`: what was done, for machines.
    let (code, out, err) = apply(
        &account,
        dir.path(),
        &["--env", "production", "--format", "json"],
    );
    assert_eq!(code, 0, "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["formatVersion"], 1, "{out}");
    assert_eq!(report["outcome"], "applied", "{out}");
    assert_eq!(
        report["done"],
        serde_json::json!([
            // Production's account gets the execution role first.
            format!(
                "prerequisite:execution-role/{}",
                account.ids().await["production"]
            ),
            "stackSet:model-execution-role-production",
            format!(
                "stackInstance:model-execution-role-production/{}/us-east-1",
                account.ids().await["production"]
            )
        ]),
        "{out}"
    );
    assert_eq!(report["failures"], serde_json::json!([]));
    assert_eq!(
        report["operations"]["model-execution-role-production"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "one operation for the instance: {out}"
    );
    let (code, out, err) = run(&account, dir.path(), &["plan", "."]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.trim_end()
            .ends_with("No changes. Live state matches the manifest.")
    );
    let (code, out, _) = run(&account, dir.path(), &["drift", "."]);
    assert_eq!(code, 0, "{out}");
    // A second apply has nothing to do.
    let (code, out, _) = apply(&account, dir.path(), &["--env", "production"]);
    assert_eq!(code, 0);
    assert!(out.contains("No changes"), "{out}");
}

#[tokio::test]
async fn nested_units_two_regions_and_overrides_converge() {
    let account = management_account().await;
    let dir = example("multi-region");
    let (code, out, err) = apply(&account, dir.path(), &[]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = run(&account, dir.path(), &["plan", "."]);
    assert_eq!(code, 0, "{out}{err}");

    let cfn = aws_sdk_cloudformation::Client::new(&account.config);
    let instances = stack_instances(&account, "observability-production").await;
    // Two production accounts (one in a nested unit) × two regions.
    assert_eq!(instances.len(), 4);
    assert_eq!(
        stack_instances(&account, "observability-staging")
            .await
            .len(),
        1,
        "staging is limited to us-east-1"
    );

    // The EU account's eu-west-1 instance carries its overrides, ${region} resolved.
    let org = aws_sdk_organizations::Client::new(&account.config);
    let accounts = org.list_accounts().send().await.unwrap().accounts.unwrap();
    let eu = accounts
        .iter()
        .find(|a| a.email.as_deref() == Some("dp-ml-prod-eu@example.com"))
        .unwrap();
    let described = cfn
        .describe_stack_instance()
        .stack_set_name("observability-production")
        .stack_instance_account(eu.id.as_deref().unwrap())
        .stack_instance_region("eu-west-1")
        .send()
        .await
        .unwrap();
    let overrides: std::collections::BTreeMap<String, String> = described
        .stack_instance
        .unwrap()
        .parameter_overrides
        .unwrap()
        .into_iter()
        .map(|p| (p.parameter_key.unwrap(), p.parameter_value.unwrap()))
        .collect();
    assert_eq!(overrides["RetentionDays"], "365");
    assert_eq!(overrides["DataResidency"], "eu-west-1");
}

/// `estate plan . --out FILE EXTRA`, which must exit 2 (a plan with changes, saved).
fn save_plan(account: &TestAccount, dir: &Path, file: &str, extra: &[&str]) {
    let mut args = vec!["plan", ".", "--out", file];
    args.extend_from_slice(extra);
    let (code, out, err) = run(account, dir, &args);
    assert_eq!(code, 2, "{out}{err}");
}

#[tokio::test]
async fn a_stale_saved_plan_is_refused() {
    let account = management_account().await;
    let dir = example("ml-platform");
    save_plan(&account, dir.path(), "plan.json", &[]);
    // Someone creates a unit by hand after the plan was made.
    let org = aws_sdk_organizations::Client::new(&account.config);
    org.create_organizational_unit()
        .parent_id(&account.root_id)
        .name("sandbox")
        .send()
        .await
        .unwrap();
    let (code, _, err) = apply(&account, dir.path(), &["--plan", "plan.json"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("stale plan: live state changed since it was made; run estate plan again"),
        "{err}"
    );

    // A fresh saved plan applies exactly.
    save_plan(
        &account,
        dir.path(),
        "plan.json",
        &["--env", "dev", "--env", "staging"],
    );
    let (code, out, err) = apply(&account, dir.path(), &["--plan", "plan.json"]);
    assert_eq!(code, 0, "{out}{err}");
}

#[tokio::test]
async fn a_delete_in_a_protected_environment_needs_allow_delete() {
    let account = management_account().await;
    let dir = example("ml-platform");
    assert_eq!(apply(&account, dir.path(), &[]).0, 0);
    assert_eq!(apply(&account, dir.path(), &["--env", "production"]).0, 0);
    // The stack set leaves production, with pruning on.
    edit_all(
        dir.path(),
        "stacksets.yaml",
        "[staging, production]",
        "[staging]",
    );
    prune(dir.path());

    let (code, _, err) = apply(&account, dir.path(), &["--env", "production"]);
    assert_eq!(code, 1);
    assert!(err.contains("protected environment"), "{err}");
    assert!(err.contains("--allow-delete"), "{err}");
    let cfn = aws_sdk_cloudformation::Client::new(&account.config);
    assert!(
        cfn.describe_stack_set()
            .stack_set_name("model-execution-role-production")
            .send()
            .await
            .is_ok()
    );

    let (code, out, err) = apply(
        &account,
        dir.path(),
        &["--env", "production", "--allow-delete"],
    );
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = run(&account, dir.path(), &["plan", "."]);
    assert_eq!(code, 0, "{out}");
}

#[tokio::test]
async fn skipping_a_promotion_stage_is_refused() {
    let account = management_account().await;
    let dir = example("ml-platform");
    let (code, _, err) = apply(&account, dir.path(), &["--env", "production"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("environment `staging` comes earlier in promotion"),
        "{err}"
    );
    // A plan saved for production alone skips staging just the same.
    save_plan(
        &account,
        dir.path(),
        "production.json",
        &["--env", "production"],
    );
    let (code, _, err) = apply(&account, dir.path(), &["--plan", "production.json"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("environment `staging` comes earlier in promotion"),
        "{err}"
    );
    let (code, out, err) = apply(
        &account,
        dir.path(),
        &["--env", "production", "--skip-promotion-check"],
    );
    assert_eq!(code, 0, "{out}{err}");
}

/// Sets the lock tag of `scope` as another apply would, its heartbeat `age` seconds ago.
async fn lock_held(account: &TestAccount, scope: &str, age: u64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    aws_sdk_organizations::Client::new(&account.config)
        .tag_resource()
        .resource_id(&account.root_id)
        .tags(
            aws_sdk_organizations::types::Tag::builder()
                .key(format!("estate-lock:ml-platform:{scope}"))
                .value(format!("othertoken {} alice@ci-runner pid 42", now - age))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

/// Lock tags left on the root.
async fn locks_left(account: &TestAccount) -> Vec<String> {
    aws_sdk_organizations::Client::new(&account.config)
        .list_tags_for_resource()
        .resource_id(&account.root_id)
        .send()
        .await
        .unwrap()
        .tags
        .unwrap_or_default()
        .into_iter()
        .map(|t| t.key)
        .filter(|k| k.starts_with("estate-lock:"))
        .collect()
}

#[tokio::test]
async fn unlock_removes_a_stale_lock_and_a_live_one_only_with_force() {
    let account = management_account().await;
    let dir = example("ml-platform");
    // A heartbeat older than the expiry (two minutes): stale, removed without --force.
    lock_held(&account, "staging", 150).await;
    lock_held(&account, "organization", 5).await;
    let (code, out, err) = run(&account, dir.path(), &["unlock", "."]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("removed the lock staging"), "{out}");
    assert!(
        err.contains("alice@ci-runner pid 42")
            && err.contains("estate unlock --scope organization --force"),
        "{err}"
    );
    assert_eq!(
        locks_left(&account).await,
        ["estate-lock:ml-platform:organization"]
    );
    // The refusal of apply says how to remove it.
    let (code, _, err) = apply(&account, dir.path(), &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("estate unlock --scope organization --force"),
        "{err}"
    );
    let (code, out, err) = run(
        &account,
        dir.path(),
        &["unlock", ".", "--scope", "organization", "--force"],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(locks_left(&account).await.is_empty());
    let (code, out, _) = run(&account, dir.path(), &["unlock", "."]);
    assert_eq!(code, 0);
    assert!(
        out.contains("No apply lock of ml-platform is held."),
        "{out}"
    );
}

#[tokio::test]
async fn a_concurrent_apply_is_refused_and_told_who_holds_the_lock() {
    let account = management_account().await;
    let dir = example("ml-platform");
    // Another apply holds the organization lock, refreshed just now.
    lock_held(&account, "organization", 0).await;
    let (code, _, err) = apply(&account, dir.path(), &[]);
    assert_eq!(code, 1);
    assert!(err.contains("alice@ci-runner pid 42"), "{err}");
    // Nothing was changed.
    let (code, json, _) = run(&account, dir.path(), &["plan", ".", "--format", "json"]);
    assert_eq!(code, 2);
    assert!(json.contains("\"unit:/ml\""));

    // A stale lock (its holder died an hour ago) is taken over.
    lock_held(&account, "organization", 3600).await;
    let (code, out, err) = apply(&account, dir.path(), &[]);
    assert_eq!(code, 0, "{out}{err}");
    // And released on exit.
    assert!(locks_left(&account).await.is_empty());
}

#[tokio::test]
async fn without_a_terminal_apply_needs_auto_approve() {
    let account = management_account().await;
    let dir = example("ml-platform");
    let (code, _, err) = run(&account, dir.path(), &["apply", "."]);
    assert_eq!(code, 1);
    assert!(err.contains("--auto-approve"), "{err}");
}

/// Kills apply (the process, SIGKILL) once it has created an account and others are in
/// progress, then applies again: everything converges and nothing exists twice.
#[tokio::test]
async fn an_apply_killed_mid_way_converges_on_the_next_run() {
    use std::io::{BufRead, BufReader};
    let account = management_account().await;
    let dir = example("ml-platform");
    let mut child = spawn_apply(&account, dir.path());
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push(line.clone());
        // Accounts are created several at once: the first one done leaves others in
        // progress at AWS, which the rerun must find rather than create again.
        if line.starts_with("account:") && line.ends_with(": done") {
            child.kill().unwrap();
            break;
        }
    }
    child.wait().unwrap();
    assert!(
        seen.iter()
            .any(|l| l.starts_with("account:") && l.ends_with(": done")),
        "{seen:?}"
    );

    // The lock of the killed apply stays behind; the rerun is refused until it is stale.
    // Make it stale as if 20 minutes had passed.
    let org = aws_sdk_organizations::Client::new(&account.config);
    let tags = org
        .list_tags_for_resource()
        .resource_id(&account.root_id)
        .send()
        .await
        .unwrap()
        .tags
        .unwrap_or_default();
    let locks: Vec<_> = tags
        .iter()
        .filter(|t| t.key.starts_with("estate-lock:"))
        .collect();
    assert!(!locks.is_empty(), "the killed apply's locks stay behind");
    let (code, _, err) = apply(&account, dir.path(), &[]);
    assert_eq!(code, 1, "a fresh lock of a dead apply is still respected");
    assert!(err.contains("holds the lock"), "{err}");
    for lock in locks {
        let parts: Vec<&str> = lock.value.splitn(3, ' ').collect();
        let old = parts[1].parse::<u64>().unwrap() - 1200;
        org.tag_resource()
            .resource_id(&account.root_id)
            .tags(
                aws_sdk_organizations::types::Tag::builder()
                    .key(&lock.key)
                    .value(format!("{} {old} {}", parts[0], parts[2]))
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
    }

    let (code, out, err) = apply(&account, dir.path(), &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        !err.contains("account:tools: CreateAccount"),
        "tools was created once: {err}"
    );
    let (code, out, err) = apply(&account, dir.path(), &["--env", "production"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = run(&account, dir.path(), &["plan", "."]);
    assert_eq!(code, 0, "{out}");

    // Nothing exists twice.
    let accounts = org.list_accounts().send().await.unwrap().accounts.unwrap();
    for email in [
        "ml-tools@example.com",
        "ml-data-science@example.com",
        "ml-staging@example.com",
        "ml-production@example.com",
    ] {
        assert_eq!(
            accounts
                .iter()
                .filter(|a| a.email.as_deref() == Some(email))
                .count(),
            1,
            "{email}"
        );
    }
    let units = account.units(&account.root_id).await;
    assert_eq!(units.len(), 1, "one /ml");
}

/// Pads the example's role template with comments past the inline limit (its data is
/// unchanged); the new text.
fn pad_role_template(dir: &Path) -> String {
    let path = dir.join("templates/model-execution-role.yaml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    while text.len() <= 52_000 {
        text.push_str("# padding: this template is long, as real ones with inline code are\n");
    }
    std::fs::write(&path, &text).unwrap();
    text
}

/// The default template bucket has its public access blocked (all four settings) and default
/// encryption.
async fn assert_protected(s3: &aws_sdk_s3::Client, bucket: &str) {
    let enc = s3
        .get_bucket_encryption()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    assert!(format!("{enc:?}").contains("Aes256"), "{enc:?}");
    let block = s3
        .get_public_access_block()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    let conf = block.public_access_block_configuration.unwrap();
    assert_eq!(conf.block_public_acls, Some(true));
    assert_eq!(conf.ignore_public_acls, Some(true));
    assert_eq!(conf.block_public_policy, Some(true));
    assert_eq!(conf.restrict_public_buckets, Some(true));
}

/// A run cut off after creating the template bucket left it unprotected: the next apply that
/// uses it blocks public access and sets encryption.
#[tokio::test]
async fn an_unprotected_template_bucket_of_estate_is_protected_on_its_next_use() {
    let account = management_account().await;
    let dir = example("ml-platform");
    pad_role_template(dir.path());
    let s3 = s3(&account.config);
    let bucket = format!("estate-templates-{}-us-east-1", account.id);
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let (code, out, err) = apply(&account, dir.path(), &["--env", "staging", "--env", "dev"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_protected(&s3, &bucket).await;
}

#[tokio::test]
async fn a_template_over_51200_bytes_goes_through_an_encrypted_private_bucket() {
    let account = management_account().await;
    let dir = example("ml-platform");
    let text = pad_role_template(dir.path());
    let (code, out, err) = apply(&account, dir.path(), &["--env", "staging", "--env", "dev"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = run(&account, dir.path(), &["plan", ".", "--env", "staging"]);
    assert_eq!(code, 0, "{out}");

    let s3 = s3(&account.config);
    let bucket = format!("estate-templates-{}-us-east-1", account.id);
    let objects = s3.list_objects_v2().bucket(&bucket).send().await.unwrap();
    let keys: Vec<String> = objects
        .contents
        .unwrap_or_default()
        .into_iter()
        .filter_map(|o| o.key)
        .collect();
    use sha2::Digest;
    let digest = hex::encode(sha2::Sha256::digest(text.as_bytes()));
    assert_eq!(
        keys,
        [format!("templates/{digest}.template")],
        "content-addressed"
    );
    assert_protected(&s3, &bucket).await;
}

/// A portfolio that leaves the manifest is an orphan; with `prune: true` it is deleted, after
/// everything attached to it (shares, principals, tag options, constraints, products).
#[tokio::test]
async fn a_portfolio_that_left_the_manifest_is_an_orphan_or_pruned() {
    let account = management_account().await;
    let dir = self_service_lab();
    let (code, out, err) = apply(&account, dir.path(), &[]);
    assert_eq!(code, 0, "{out}{err}");
    edit_all(dir.path(), "estate.yaml", ", portfolio.yaml", "");

    let drift = json_changes(&account, dir.path(), "drift", &[]);
    assert_eq!(drift["findings"][0]["kind"], "orphan", "{drift}");
    assert_eq!(drift["findings"][0]["address"], "portfolio:data-scientists");

    prune(dir.path());
    let plan = json_changes(&account, dir.path(), "plan", &[]);
    let changes: Vec<(&str, &str)> = change_fields(&plan, "action", "address");
    assert_eq!(changes, [("delete", "portfolio:data-scientists")]);
    let (code, out, err) = apply(&account, dir.path(), &[]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = run(&account, dir.path(), &["plan", "."]);
    assert_eq!(code, 0, "{out}");
}

/// A version that left the manifest is deprecated; with `prune: true` it is deleted.
#[tokio::test]
async fn a_removed_version_is_deleted_only_when_pruning() {
    let account = management_account().await;
    let dir = self_service_lab();
    assert_eq!(apply(&account, dir.path(), &[]).0, 0);
    // v1 replaced by v2 in the manifest, pruning on.
    edit_all(
        dir.path(),
        "portfolio.yaml",
        "        - {name: v1, template: templates/secure-sagemaker.yaml, description: First release}",
        "        - {name: v2, template: templates/secure-sagemaker.yaml, description: Second release}",
    );
    prune(dir.path());
    let plan = json_changes(&account, dir.path(), "plan", &[]);
    let changes: Vec<(&str, &str)> = change_fields(&plan, "action", "address");
    assert_eq!(
        changes,
        [
            (
                "create",
                "productVersion:data-scientists/secure-sagemaker/v2"
            ),
            (
                "delete",
                "productVersion:data-scientists/secure-sagemaker/v1"
            ),
        ]
    );
    let (code, out, err) = apply(&account, dir.path(), &[]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = run(&account, dir.path(), &["plan", "."]);
    assert_eq!(code, 0, "{out}");
}

/// `estate ARGS` on a pseudo-terminal (util-linux `script`) in `dir`, acting as `account`,
/// with `input` typed at it: its exit code and everything it showed.
fn at_a_terminal(account: &TestAccount, dir: &Path, args: &str, input: &str) -> (i32, String) {
    use std::io::Write;
    let mut child = pty_process(account, dir, args)
        .env_remove("NO_COLOR")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("util-linux `script` runs the binary on a pseudo-terminal");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn at_a_terminal_apply_shows_the_plan_asks_and_draws_progress() {
    let account = management_account().await;
    let dir = example("ml-platform");
    // Anything but `yes` changes nothing.
    let (code, shown) = at_a_terminal(&account, dir.path(), "apply .", "y\n");
    assert_eq!(code, 1, "{shown}");
    assert!(
        shown.contains("Apply these changes? Only `yes` is accepted"),
        "{shown}"
    );
    assert!(
        shown.contains("unit /ml"),
        "the plan is shown first: {shown}"
    );
    assert!(
        shown.contains("not confirmed; nothing was changed"),
        "{shown}"
    );
    let (code, _, _) = run(&account, dir.path(), &["plan", ".", "--env", "dev"]);
    assert_eq!(code, 2, "still everything to do");

    let (code, shown) = at_a_terminal(&account, dir.path(), "apply .", "yes\n");
    assert_eq!(code, 0, "{shown}");
    // Progress is drawn (spinners, cursor control), not logged line by line.
    assert!(shown.contains("\x1b["), "{shown:?}");
    assert!(shown.contains("Apply complete"), "{shown}");
    assert!(
        !shown.contains("account:tools: done"),
        "log lines are for non-terminals: {shown}"
    );
}

#[tokio::test]
async fn ctrl_c_at_the_prompt_stops_at_once_and_changes_nothing() {
    use std::io::{Read, Write};
    let account = management_account().await;
    let dir = example("ml-platform");
    let mut child = pty_process(&account, dir.path(), "apply .")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("util-linux `script` runs the binary on a pseudo-terminal");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut shown = String::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !shown.contains("Only `yes` is accepted") {
        assert!(std::time::Instant::now() < deadline, "no prompt: {shown}");
        if let Ok(chunk) = rx.recv_timeout(std::time::Duration::from_millis(100)) {
            shown.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    // Ctrl-C typed at the terminal: the line discipline sends SIGINT.
    stdin.write_all(b"\x03").unwrap();
    stdin.flush().unwrap();
    let status = child.wait().unwrap();
    while let Ok(chunk) = rx.recv_timeout(std::time::Duration::from_millis(500)) {
        shown.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert_eq!(status.code(), Some(1), "{shown}");
    assert!(
        shown.contains("interrupted before anything was changed"),
        "{shown}"
    );
    let (code, _, _) = run(&account, dir.path(), &["plan", ".", "--env", "dev"]);
    assert_eq!(code, 2, "nothing was applied");
}

/// SIGTERM mid-way (a CI job cancelled, a pod stopped): apply stops cleanly, says how much it
/// had done, and releases its locks, so the next apply needs no wait for a stale lock.
#[tokio::test]
async fn sigterm_mid_way_stops_cleanly_says_what_was_done_and_releases_the_locks() {
    use std::io::{BufRead, BufReader};
    let account = management_account().await;
    let dir = example("ml-platform");
    let mut child = spawn_apply(&account, dir.path());
    let stderr = child.stderr.take().unwrap();
    let mut seen = Vec::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        if line == "account:tools: done" {
            let status = std::process::Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .unwrap();
            assert!(status.success());
        }
        seen.push(line);
    }
    let status = child.wait().unwrap();
    let seen = seen.join("\n");
    assert_eq!(status.code(), Some(1), "{seen}");
    assert!(
        seen.contains("interrupted; AWS operations already started continue"),
        "{seen}"
    );
    // The count is of the changes reported done, every kind included.
    let done = seen.lines().filter(|l| l.ends_with(": done")).count();
    assert!(done >= 1, "{seen}");
    let said = format!(
        "{done} change{} applied before this",
        if done == 1 { "" } else { "s" }
    );
    assert!(seen.contains(&said), "{said}: {seen}");

    let org = aws_sdk_organizations::Client::new(&account.config);
    let tags = org
        .list_tags_for_resource()
        .resource_id(&account.root_id)
        .send()
        .await
        .unwrap();
    assert!(
        tags.tags()
            .iter()
            .all(|t| !t.key().starts_with("estate-lock:")),
        "locks released"
    );
    // And the next apply converges at once.
    let (code, out, err) = apply(&account, dir.path(), &[]);
    assert_eq!(code, 0, "{out}{err}");
}

/// Stack sets in one environment that are live at once, from progress events: a set is busy
/// from its first event to its last.
#[derive(Default)]
struct Overlap(std::sync::Mutex<Vec<String>>);

impl estate::apply::Progress for Overlap {
    fn event(&self, e: estate::apply::Event) {
        use estate::apply::Event;
        let address = match e {
            Event::Started { address, .. }
            | Event::Done { address }
            | Event::Failed { address, .. } => address,
            Event::Operation { stack_set, .. } => format!("stackSet:{stack_set}"),
        };
        let set = address
            .trim_start_matches("stackSet:")
            .trim_start_matches("stackInstance:")
            .split('/')
            .next()
            .unwrap()
            .to_string();
        self.0.lock().unwrap().push(set);
    }
}

impl Overlap {
    fn max(&self) -> usize {
        let events = self.0.lock().unwrap();
        let last = |s: &String| events.iter().rposition(|e| e == s).unwrap();
        let mut busy = std::collections::BTreeSet::new();
        let mut most = 0;
        for (i, set) in events.iter().enumerate() {
            busy.insert(set.clone());
            most = most.max(busy.len());
            if last(set) == i {
                busy.remove(set);
            }
        }
        most
    }
}

/// `--parallelism N`: at most N independent stack sets are worked on at once, and N are when
/// there is work for them.
#[tokio::test]
async fn independent_stack_sets_run_at_most_parallelism_at_once() {
    use estate::{apply, manifest, plan, source::ManifestSource};
    for parallelism in [1, 3] {
        let account = management_account().await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("estate.yaml"),
            "apiVersion: estate/v1\nkind: Estate\nmetadata: {name: wide}\nspec:\n  homeRegion: us-east-1\n  regions: [us-east-1]\n  promotion: [dev]\n  include: [more.yaml]\n",
        )
        .unwrap();
        let mut docs = "apiVersion: estate/v1\nkind: Environment\nmetadata: {name: dev}\nspec:\n  targets: {accounts: [tools]}\n---\napiVersion: estate/v1\nkind: Organization\nmetadata: {name: org}\nspec:\n  accounts:\n    - {name: tools, email: tools@example.com}\n".to_string();
        for i in 0..6 {
            docs.push_str(&format!(
                "---\napiVersion: estate/v1\nkind: StackSet\nmetadata: {{name: set-{i}}}\nspec:\n  template: marker.yaml\n  environments: [dev]\n"
            ));
        }
        std::fs::write(dir.path().join("more.yaml"), docs).unwrap();
        std::fs::write(
            dir.path().join("marker.yaml"),
            "AWSTemplateFormatVersion: \"2010-09-09\"\nResources:\n  Marker:\n    Type: AWS::SSM::Parameter\n    Properties:\n      Name: !Sub /wide/${AWS::StackName}\n      Type: String\n      Value: here\n",
        )
        .unwrap();
        let loaded = manifest::load(&ManifestSource::work_tree(dir.path()).unwrap());
        let m = loaded
            .manifest
            .unwrap_or_else(|| panic!("{}", loaded.diagnostics.render(false)));
        let aws =
            estate::aws::Aws::from_config(account.config.clone(), "OrganizationAccountAccessRole");
        // The account first, so every set has an instance to create after the set itself.
        let live = estate::live::read::read(&aws, &plan::read_options(&m))
            .await
            .unwrap();
        let p = plan::make(&m, &live, &[]).unwrap();
        let done = apply::organization(
            &aws,
            &p,
            &live,
            m.name(),
            apply::AtOnce::default(),
            fast(),
            &apply::Silent,
        )
        .await
        .unwrap();
        assert_eq!(texts(&done), ["account:tools"]);
        let live = estate::live::read::read(&aws, &plan::read_options(&m))
            .await
            .unwrap();
        let p = plan::make(&m, &live, &[]).unwrap();
        // What self-managed stack sets need in a fresh organization, first.
        apply::prerequisites::prerequisites(
            &aws,
            &p,
            &live,
            m.name(),
            "us-east-1",
            fast(),
            &apply::Silent,
        )
        .await
        .unwrap();
        let desired = plan::desired::resolve(&m, &live, &p.environments).unwrap();
        let opts = apply::Options {
            parallelism,
            polling: fast(),
            template_bucket: None,
            home_region: "us-east-1".into(),
        };
        let progress = Overlap::default();
        let report = apply::stack_sets(&aws, &p, &desired, &opts, &progress).await;
        assert!(report.failures.is_empty(), "{:#?}", report.failures);
        assert_eq!(
            report.done.len(),
            12,
            "6 sets, 6 instances: {:?}",
            report.done
        );
        assert_eq!(progress.max(), parallelism, "--parallelism {parallelism}");
    }
}

/// A stack set of a manifest name that is not estate's (no tag): plan exits 2 and says so
/// first, drift exits 2, and apply stops before the environment that holds it (exit 1),
/// never adding instances to it.
#[tokio::test]
async fn a_conflict_fails_loudly_and_stops_apply_at_its_environment() {
    let account = management_account().await;
    let dir = example("ml-platform");
    let cfn = aws_sdk_cloudformation::Client::new(&account.config);
    cfn.create_stack_set()
        .stack_set_name("model-execution-role-staging")
        .template_body(
            "AWSTemplateFormatVersion: \"2010-09-09\"\nResources:\n  Nothing:\n    Type: AWS::CloudFormation::WaitConditionHandle\n",
        )
        .send()
        .await
        .unwrap();

    let (code, out, _) = run(&account, dir.path(), &["plan", "."]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.starts_with("conflict: stackSet:model-execution-role-staging:"),
        "the conflict comes first: {out}"
    );
    let (code, json, _) = run(&account, dir.path(), &["plan", ".", "--format", "json"]);
    assert_eq!(code, 2);
    assert!(
        json.trim_start().starts_with("{\n  \"conflicts\": ["),
        "{json}"
    );

    let (code, out, err) = apply(&account, dir.path(), &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("refused: environment `staging` holds a conflict"),
        "{err}"
    );
    // The organization and dev were applied; the foreign set got nothing.
    assert_eq!(
        account.ids().await["production"].len(),
        12,
        "accounts were created"
    );
    assert!(
        stack_instances(&account, "model-execution-role-staging")
            .await
            .is_empty()
    );
    let (code, out, _) = run(&account, dir.path(), &["drift", "."]);
    assert_eq!(code, 2, "{out}");
}

/// The cost of a small change: one full read of live (the check after the locks is the
/// generation tag, not a second read) and one UpdateStackSet.
#[tokio::test]
async fn an_apply_that_changes_one_template_reads_live_once_and_updates_once() {
    let account = management_account().await;
    let dir = example("ml-platform");
    let (code, out) = crate::support::run::apply_all(&account, dir.path(), &["--env", "staging"]);
    assert_eq!(code, 0, "{out}");
    edit_all(
        dir.path(),
        "templates/model-execution-role.yaml",
        "Role the model pipeline",
        "The role the model pipeline",
    );
    let (code, out, err) = apply(&account, dir.path(), &["--env", "staging", "--stats"]);
    assert_eq!(code, 0, "{out}{err}");
    let stats = stats_of(&err);
    for (op, n) in [
        // A full read starts with these, once each.
        ("Organizations.DescribeOrganization", 1),
        ("Organizations.ListRoots", 1),
        ("CloudFormation.ListStackSets", 1),
        ("CloudFormation.UpdateStackSet", 1),
    ] {
        assert_eq!(stats.get(op), Some(&n), "{op}: {stats:#?}");
    }
}

/// An apply that ran between this one's read and its locks moved the generation: this one is
/// refused before changing anything; without it, the same apply goes ahead.
#[tokio::test]
async fn an_apply_refuses_when_another_ran_since_its_read() {
    use estate::apply::run::{Outcome, Request, run as apply_run};
    let account = management_account().await;
    let dir = example("ml-platform");
    let m = crate::support::builders::manifest(dir.path());
    let aws =
        estate::aws::Aws::from_config(account.config.clone(), "OrganizationAccountAccessRole");
    let request = Request {
        saved: None,
        environments: vec!["staging".into()],
        allow_delete: false,
        skip_promotion_check: true,
        parallelism: 2,
        accounts_at_once: 4,
        polling: fast(),
        holder: "test".into(),
    };
    let (_keep, stop) = tokio::sync::watch::channel(false);
    let org = aws_sdk_organizations::Client::new(&account.config);
    // While this apply waits for its confirmation, another one starts (its first write).
    let other_apply = async |_: &estate::plan::Plan| {
        org.tag_resource()
            .resource_id(&account.root_id)
            .tags(
                aws_sdk_organizations::types::Tag::builder()
                    .key("estate-generation:ml-platform")
                    .value("another-apply")
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        Ok(())
    };
    let outcome = apply_run(
        &aws,
        &m,
        &request,
        other_apply,
        &estate::apply::Silent,
        stop.clone(),
    )
    .await
    .unwrap();
    let Outcome::Refused(why) = outcome else {
        panic!("not refused: {outcome:?}");
    };
    assert!(why.contains("another apply ran"), "{why}");
    assert_eq!(
        account.ids().await.len(),
        1,
        "nothing created but the management account"
    );

    let outcome = apply_run(
        &aws,
        &m,
        &request,
        async |_: &estate::plan::Plan| Ok(()),
        &estate::apply::Silent,
        stop,
    )
    .await
    .unwrap();
    assert!(matches!(outcome, Outcome::Applied { .. }), "{outcome:?}");
}
