//! Apply through AWS's bad days, on the emulator's fault injector (tests/emulator/faults.py):
//! at 30% of requests throttled, failed (503), reset or served with the answer lost, apply
//! converges within two runs and makes nothing twice; and the lock a killed apply leaves
//! behind is taken over once it is [`STALE_AFTER`] old, not before (its heartbeat aged in the
//! test, not slept).

use crate::support::builders::{edit, edit_all, example};
use crate::support::emulator::{TestAccount, management_account};
use crate::support::run::{plan_json, process};
use estate::apply::lock::STALE_AFTER;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;

/// The reference example without its portfolios: units, four accounts (created, then moved
/// into their units), the stack-set roles, a stack set in two environments. Production is
/// applied too (`--env production` after staging), so every stack set is made.
fn organization_and_stack_sets() -> tempfile::TempDir {
    let dir = example("ml-platform");
    edit_all(dir.path(), "estate.yaml", ", portfolios.yaml", "");
    edit(
        dir.path(),
        "environments.yaml",
        "  approval: manual\n  protected: true\n",
        "",
    );
    dir
}

/// The emulator's slow parts made quick for this organization: creations, new accounts'
/// reachability, stack-set operations.
fn quick(account: &TestAccount) {
    account.configure_emulator(json!({
        "CreateSeconds": 0.05, "CreatePolls": 1, "UnreachableSeconds": 0.1,
        "OperationPolls": 1, "OperationSeconds": 0.05,
    }));
}

/// Faults for this organization: `rate` of requests, split between the four kinds.
fn faults(account: &TestAccount, seed: u64, rate: f64) {
    account.emulator_call(
        "EstateEmulator.Faults",
        json!({
            "Seed": seed,
            "Throttle": rate * 0.35,
            "ServerError": rate * 0.25,
            "Reset": rate * 0.2,
            "LostResponse": rate * 0.2,
        }),
    );
}

fn faults_off(account: &TestAccount) {
    account.emulator_call("EstateEmulator.Faults", json!({}));
}

/// What the injector did for this organization: requests seen, faults by kind.
pub fn fault_stats(account: &TestAccount) -> Value {
    serde_json::from_str(&account.emulator_answer("EstateEmulator.FaultStats", json!({}))).unwrap()
}

/// `estate apply . --auto-approve` with estate's own retry settings (the tests' environment
/// sets AWS_MAX_ATTEMPTS=1 for speed elsewhere): exit code, stdout and stderr together.
fn apply_with_retries(account: &TestAccount, dir: &Path) -> (i32, String) {
    let out = process(account, dir)
        .env_remove("AWS_MAX_ATTEMPTS")
        .args(["apply", ".", "--auto-approve"])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Every name of `names` that occurs more than once.
fn twice(names: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for n in names {
        *seen.entry(n).or_default() += 1;
    }
    seen.into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(k, _)| k)
        .collect()
}

/// Accounts, units, stack sets and stack instances that exist more than once.
async fn duplicates(account: &TestAccount) -> Vec<String> {
    let org = aws_sdk_organizations::Client::new(&account.config);
    let accounts = org.list_accounts().send().await.unwrap();
    let mut found: Vec<String> = twice(
        accounts
            .accounts()
            .iter()
            .map(|a| a.email().unwrap_or_default().to_lowercase()),
    )
    .into_iter()
    .map(|e| format!("account {e}"))
    .collect();
    found.extend(
        twice(
            accounts
                .accounts()
                .iter()
                .map(|a| a.name().unwrap_or_default().to_string()),
        )
        .into_iter()
        .map(|n| format!("account named {n}")),
    );
    let mut parents = vec![account.root_id.clone()];
    while let Some(parent) = parents.pop() {
        let units = account.units(&parent).await;
        found.extend(
            twice(units.iter().map(|(n, _)| n.clone()))
                .into_iter()
                .map(|n| format!("unit {n} under {parent}")),
        );
        parents.extend(units.into_iter().map(|(_, id)| id));
    }
    let cfn = aws_sdk_cloudformation::Client::new(&account.config);
    let sets = cfn.list_stack_sets().send().await.unwrap();
    let names: Vec<String> = sets
        .summaries()
        .iter()
        .map(|s| s.stack_set_name().unwrap_or_default().to_string())
        .collect();
    found.extend(
        twice(names.clone())
            .into_iter()
            .map(|n| format!("stack set {n}")),
    );
    for name in names {
        let instances = cfn
            .list_stack_instances()
            .stack_set_name(&name)
            .send()
            .await
            .unwrap();
        found.extend(
            twice(instances.summaries().iter().map(|i| {
                format!(
                    "{}/{}",
                    i.account().unwrap_or_default(),
                    i.region().unwrap_or_default()
                )
            }))
            .into_iter()
            .map(|i| format!("instance {name}/{i}")),
        );
    }
    found
}

/// At 30% faults (seeded), apply converges within two runs: the last exits 0, a fault-free
/// plan then has no changes, and nothing exists twice.
async fn converges_through_faults(seed: u64) {
    let account = management_account().await;
    quick(&account);
    let dir = organization_and_stack_sets();
    faults(&account, seed, 0.3);
    let mut runs = Vec::new();
    for _ in 0..2 {
        let (code, out) = apply_with_retries(&account, dir.path());
        runs.push((code, out));
        if code == 0 {
            break;
        }
    }
    let stats = fault_stats(&account);
    faults_off(&account);
    eprintln!(
        "seed {seed}: {} run(s), exits {:?}, faults {stats}",
        runs.len(),
        runs.iter().map(|(c, _)| c).collect::<Vec<_>>()
    );
    let (code, out) = runs.last().unwrap();
    assert_eq!(*code, 0, "seed {seed}: {stats}\n{runs:#?}");
    assert!(
        stats["Requests"].as_u64().unwrap() > 100
            && ["Throttle", "ServerError", "Reset", "LostResponse"]
                .iter()
                .all(|k| stats[k].as_u64().unwrap() > 0),
        "seed {seed}: the faults were injected: {stats}"
    );
    let (code, plan) = plan_json(&account, dir.path(), &[]);
    assert_eq!(code, 0, "seed {seed}: converged: {plan}\n{out}");
    assert_eq!(
        duplicates(&account).await,
        Vec::<String>::new(),
        "seed {seed}"
    );
}

#[tokio::test]
async fn apply_converges_through_30_percent_faults_seed_1() {
    converges_through_faults(1).await;
}

#[tokio::test]
async fn apply_converges_through_30_percent_faults_seed_2() {
    converges_through_faults(2).await;
}

#[tokio::test]
async fn apply_converges_through_30_percent_faults_seed_3() {
    converges_through_faults(3).await;
}

/// Each lock's heartbeat set `seconds` in the past, as if its holder had died then.
async fn age_locks(
    account: &TestAccount,
    locks: &[aws_sdk_organizations::types::Tag],
    seconds: u64,
) {
    let org = aws_sdk_organizations::Client::new(&account.config);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for lock in locks {
        let parts: Vec<&str> = lock.value.splitn(3, ' ').collect();
        org.tag_resource()
            .resource_id(&account.root_id)
            .tags(
                aws_sdk_organizations::types::Tag::builder()
                    .key(&lock.key)
                    .value(format!("{} {} {}", parts[0], now - seconds, parts[2]))
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
    }
}

/// The lock a killed apply leaves is respected while fresh, and taken over once its heartbeat
/// is [`STALE_AFTER`] old: the heartbeat is aged here, as time passing would.
#[tokio::test]
async fn a_killed_applys_lock_expires_after_its_documented_time() {
    use std::io::{BufRead, BufReader};
    let account = management_account().await;
    quick(&account);
    let dir = organization_and_stack_sets();
    let mut child = process(&account, dir.path())
        .args(["apply", ".", "--auto-approve"])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed once it has started changing things (it holds the organization's lock).
    let mut seen = Vec::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        seen.push(line.clone());
        if line.starts_with("unit:") {
            child.kill().unwrap();
            break;
        }
    }
    child.wait().unwrap();
    let org = aws_sdk_organizations::Client::new(&account.config);
    let locks: Vec<_> = org
        .list_tags_for_resource()
        .resource_id(&account.root_id)
        .send()
        .await
        .unwrap()
        .tags
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t.key.starts_with("estate-lock:"))
        .collect();
    assert!(
        !locks.is_empty(),
        "the killed apply left its lock: {seen:?}"
    );
    // A little younger than the expiry: still held.
    age_locks(&account, &locks, STALE_AFTER.as_secs() - 10).await;
    let (code, out) = apply_with_retries(&account, dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("holds the lock"), "{out}");
    // Past it: taken over, and the apply converges.
    age_locks(&account, &locks, STALE_AFTER.as_secs() + 10).await;
    let (code, out) = apply_with_retries(&account, dir.path());
    assert_eq!(code, 0, "{out}");
    assert_eq!(duplicates(&account).await, Vec::<String>::new());
}

/// The first answer of each create apply makes is lost (the request served, the connection
/// then reset): apply finds what those requests made, by token, tag, name or email, and
/// converges in that one run with nothing twice. Before, a unit or a move whose answer was
/// lost failed the run (the repeat refused: the name is taken, the account already moved).
#[tokio::test]
async fn lost_answers_of_creates_are_found_again_in_the_same_run() {
    let account = management_account().await;
    quick(&account);
    let dir = organization_and_stack_sets();
    let lost = [
        "CreateOrganizationalUnit",
        "CreateAccount",
        "MoveAccount",
        "CreateStack",
        "CreateStackSet",
        "CreateStackInstances",
    ];
    account.emulator_call("EstateEmulator.Faults", json!({ "LoseFirst": lost }));
    let (code, out) = apply_with_retries(&account, dir.path());
    let stats = fault_stats(&account);
    faults_off(&account);
    assert_eq!(code, 0, "{stats}\n{out}");
    assert_eq!(stats["LostResponse"], json!(lost.len()), "{stats}");
    let (code, plan) = plan_json(&account, dir.path(), &[]);
    assert_eq!(code, 0, "converged: {plan}\n{out}");
    assert_eq!(duplicates(&account).await, Vec::<String>::new());
}
