//! Organizations as AWS answers it, on the strict emulator: accounts with `State` and no
//! `Status`, asynchronous creation, new accounts unreachable for a while, closed accounts.

use crate::support::builders::{edit_all, example};
use crate::support::emulator::{TestAccount, management_account, stack_instances};
use crate::support::run::{apply_all as apply, plan_json, run};
use aws_sdk_organizations::types::CreateAccountState;
use serde_json::Value;

fn deletes(plan: &Value) -> Vec<String> {
    plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["action"] == "delete")
        .map(|c| c["address"].as_str().unwrap().to_string())
        .collect()
}

async fn instance_accounts(account: &TestAccount, set: &str) -> Vec<String> {
    stack_instances(account, set)
        .await
        .into_iter()
        .map(|(a, _)| a)
        .collect()
}

/// The defect AWS's retirement of `Account.Status` would have caused: a brand-new organization
/// applied with zero instances, and an applied one planned to delete them all.
#[tokio::test]
async fn a_new_organization_without_status_gets_every_instance_and_no_plan_deletes() {
    let account = management_account().await;
    let dir = example("ml-platform");

    let (code, plan) = plan_json(&account, dir.path(), &[]);
    assert_eq!(code, 2);
    assert_eq!(deletes(&plan), Vec::<String>::new());
    let (code, out) = apply(&account, dir.path(), &[]);
    assert_eq!(code, 0, "{out}");
    let (_, plan) = plan_json(&account, dir.path(), &[]);
    assert_eq!(deletes(&plan), Vec::<String>::new());
    let (code, out) = apply(&account, dir.path(), &["--env", "production"]);
    assert_eq!(code, 0, "{out}");

    let ids = account.ids().await;
    assert_eq!(
        instance_accounts(&account, "model-execution-role-staging").await,
        [ids["staging"].clone()]
    );
    assert_eq!(
        instance_accounts(&account, "model-execution-role-production").await,
        [ids["production"].clone()]
    );
    let (code, plan) = plan_json(&account, dir.path(), &[]);
    assert_eq!(code, 0, "{plan}");
    assert_eq!(deletes(&plan), Vec::<String>::new());
}

/// An apply cut off while AWS was still creating an account: the re-run finds that request
/// (ListCreateAccountStatus) and waits for it; the account is never created twice. A request
/// someone else made for a manifest's account is a conflict until the manifest adopts it.
#[tokio::test]
async fn a_creation_an_earlier_run_started_is_taken_over_not_repeated() {
    let account = management_account().await;
    // Slow enough that the re-run's plan cannot see the account yet.
    account.configure_emulator(serde_json::json!({"CreateSeconds": 4.0}));
    let org = aws_sdk_organizations::Client::new(&account.config);
    // The earlier run's request carried estate's tag, as every CreateAccount of estate does.
    org.create_account()
        .account_name("tools")
        .email("ml-tools@example.com")
        .role_name("OrganizationAccountAccessRole")
        .tags(
            aws_sdk_organizations::types::Tag::builder()
                .key("estate:managed-by")
                .value("ml-platform")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    // Someone else's request for another of the manifest's accounts is not taken over.
    org.create_account()
        .account_name("data-science")
        .email("ml-data-science@example.com")
        .role_name("OrganizationAccountAccessRole")
        .send()
        .await
        .unwrap();
    let dir = example("ml-platform");

    let (code, out) = apply(&account, dir.path(), &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("conflict: account data-science <ml-data-science@example.com>")
            && out.contains("adopt: true"),
        "{out}"
    );
    // The account exists now: the manifest takes it over by saying so.
    edit_all(
        dir.path(),
        "organization.yaml",
        "email: ml-data-science@example.com,",
        "email: ml-data-science@example.com, adopt: true,",
    );
    let (code, out) = apply(&account, dir.path(), &[]);
    assert_eq!(code, 0, "{out}");

    let requests = org
        .list_create_account_status()
        .send()
        .await
        .unwrap()
        .create_account_statuses
        .unwrap_or_default();
    let tools: Vec<_> = requests
        .iter()
        .filter(|r| r.account_name() == Some("tools"))
        .collect();
    assert_eq!(tools.len(), 1, "{requests:?}");
    assert_eq!(tools[0].state(), Some(&CreateAccountState::Succeeded));
    let listed = org.list_accounts().send().await.unwrap();
    let with_email = listed
        .accounts()
        .iter()
        .filter(|a| a.email() == Some("ml-tools@example.com"))
        .count();
    assert_eq!(with_email, 1);
    let (code, plan) = plan_json(&account, dir.path(), &["--env", "dev", "--env", "staging"]);
    assert_eq!(code, 0, "{plan}");
}

/// Twenty accounts are created several at a time (bounded below AWS's five in progress),
/// not one after another: their creation requests overlap in time.
#[tokio::test]
async fn twenty_accounts_are_created_concurrently() {
    let account = management_account().await;
    account.configure_emulator(serde_json::json!({"CreateSeconds": 0.5}));
    let dir = tempfile::tempdir().unwrap();
    let accounts: String = (0..20)
        .map(|i| format!("    - {{name: a{i:02}, email: a{i:02}@example.com, unit: /fleet}}\n"))
        .collect();
    std::fs::write(
        dir.path().join("estate.yaml"),
        "apiVersion: estate/v1\nkind: Estate\nmetadata: {name: fleet}\nspec:\n  homeRegion: us-east-1\n  regions: [us-east-1]\n  promotion: [dev]\n  include: [organization.yaml, environments.yaml]\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("environments.yaml"),
        "apiVersion: estate/v1\nkind: Environment\nmetadata: {name: dev}\nspec:\n  targets: {units: [/fleet]}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("organization.yaml"),
        format!(
            "apiVersion: estate/v1\nkind: Organization\nmetadata: {{name: fleet}}\nspec:\n  units:\n    - path: /fleet\n  accounts:\n{accounts}"
        ),
    )
    .unwrap();
    let (code, out, err) = run(&account, dir.path(), &["validate", "."]);
    assert_eq!(code, 0, "{out}{err}");

    let (code, out) = apply(&account, dir.path(), &[]);
    assert_eq!(code, 0, "{out}");

    let org = aws_sdk_organizations::Client::new(&account.config);
    let mut requests = Vec::new();
    let mut pages = org.list_create_account_status().into_paginator().send();
    while let Some(page) = pages.next().await {
        requests.extend(page.unwrap().create_account_statuses.unwrap_or_default());
    }
    assert_eq!(requests.len(), 20);
    assert!(
        requests
            .iter()
            .all(|r| r.state() == Some(&CreateAccountState::Succeeded))
    );
    // Most requests in progress at one moment: > 1 means concurrent, ≤ 5 is AWS's quota.
    let spans: Vec<(f64, f64)> = requests
        .iter()
        .map(|r| {
            (
                r.requested_timestamp().unwrap().as_secs_f64(),
                r.completed_timestamp().unwrap().as_secs_f64(),
            )
        })
        .collect();
    let most = spans
        .iter()
        .map(|(start, _)| {
            spans
                .iter()
                .filter(|(s, e)| s <= start && start < e)
                .count()
        })
        .max()
        .unwrap();
    assert!((2..=5).contains(&most), "at most {most} at once");
    let in_unit = account.ids().await.len();
    assert_eq!(in_unit, 21, "20 accounts and the management account");
}

/// A just-created account refuses AssumeRole for a while (as AWS may, for minutes): estate
/// retries it with backoff and reaches the account (the example's portfolio hub).
#[tokio::test]
async fn a_just_created_account_is_reached_after_retries() {
    let account = management_account().await;
    account.configure_emulator(serde_json::json!({"UnreachableSeconds": 2.0}));
    let dir = example("ml-platform");

    let (code, out) = apply(&account, dir.path(), &["--stats"]);
    assert_eq!(code, 0, "{out}");
    let assumes = crate::support::run::stats_of(&out)
        .get("STS.AssumeRole")
        .copied()
        .unwrap_or_default();
    // tools (the hub) and data-science (the recipient), at least one refusal each.
    assert!(assumes > 2, "{assumes} AssumeRole calls:\n{out}");
    let (code, out, err) = run(
        &account,
        dir.path(),
        &["plan", ".", "--env", "dev", "--env", "staging"],
    );
    assert_eq!(code, 0, "{out}{err}");
}

/// A closed (suspended) account: its instances are removed with their stacks retained (AWS
/// cannot reach it), that removal neither needs --allow-delete nor holds back production.
#[tokio::test]
async fn a_suspended_accounts_instances_are_removed_and_the_next_stage_applies() {
    let account = management_account().await;
    let dir = example("ml-platform");
    let (code, out) = apply(&account, dir.path(), &[]);
    assert_eq!(code, 0, "{out}");
    let ids = account.ids().await;
    let staging = ids["staging"].clone();
    assert_eq!(
        instance_accounts(&account, "model-execution-role-staging").await,
        std::slice::from_ref(&staging)
    );

    let org = aws_sdk_organizations::Client::new(&account.config);
    org.close_account()
        .account_id(&staging)
        .send()
        .await
        .unwrap();
    // PENDING_CLOSURE at first (closing already), then SUSPENDED; plan once it has settled.
    loop {
        let state = org
            .describe_account()
            .account_id(&staging)
            .send()
            .await
            .unwrap()
            .account
            .and_then(|a| a.state);
        if state == Some(aws_sdk_organizations::types::AccountState::Suspended) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    let (code, plan) = plan_json(&account, dir.path(), &[]);
    assert_eq!(code, 2);
    let address = format!("stackInstance:model-execution-role-staging/{staging}/us-east-1");
    let change = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == address.as_str())
        .unwrap_or_else(|| panic!("{plan}"));
    assert_eq!(change["action"], "delete");
    assert_eq!(change["hint"], "retainStacks");
    assert!(
        change["reason"].as_str().unwrap().contains("SUSPENDED"),
        "{change}"
    );
    assert!(
        plan["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["kind"] == "inactive" && f["address"] == "account:staging"),
        "{plan}"
    );

    // Production (later, protected) applies although staging's removal is pending.
    let (code, out) = apply(&account, dir.path(), &["--env", "production"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        instance_accounts(&account, "model-execution-role-production").await,
        [ids["production"].clone()]
    );
    let (code, out) = apply(&account, dir.path(), &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        instance_accounts(&account, "model-execution-role-staging").await,
        Vec::<String>::new()
    );
    let (code, plan) = plan_json(&account, dir.path(), &[]);
    assert_eq!(code, 0, "{plan}");
}
