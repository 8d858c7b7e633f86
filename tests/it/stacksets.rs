//! StackSets as AWS runs them, on the strict emulator: the roles self-managed stack sets need
//! bootstrapped in a fresh organization, service-managed stack sets deployed by unit, a failed
//! instance retried once its cause is fixed.

use crate::support::builders::{edit_all, example};
use crate::support::emulator::{TestAccount, management_account, stack_by_hand, stack_instances};
use crate::support::run::{apply_all as apply, json_changes, run};
use serde_json::Value;
use std::path::Path;

fn plan_json(account: &TestAccount, dir: &Path) -> (i32, Value) {
    crate::support::run::plan_json(account, dir, &[])
}

/// (action, address) of every change.
fn changes(plan: &Value) -> Vec<(String, String)> {
    plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["action"].as_str().unwrap().to_string(),
                c["address"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// A brand-new organization with nothing prepared: estate plans the stack-set roles, creates
/// them before the first stack set that needs them, and the example converges.
#[tokio::test]
async fn a_fresh_organization_gets_the_roles_self_managed_stack_sets_need() {
    let account = management_account().await;
    let dir = example("ml-platform");
    let (code, plan) = plan_json(&account, dir.path());
    assert_eq!(code, 2);
    let prerequisites: Vec<(String, String)> = changes(&plan)
        .into_iter()
        .filter(|(_, a)| a.starts_with("prerequisite:"))
        .collect();
    assert_eq!(
        prerequisites,
        [
            ("create", "prerequisite:organizations-access"),
            ("create", "prerequisite:administration-role"),
            ("create", "prerequisite:execution-role"),
            (
                "create",
                "prerequisite:execution-role/production (known after apply)"
            ),
            (
                "create",
                "prerequisite:execution-role/staging (known after apply)"
            ),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );

    let (code, out) = apply(&account, dir.path(), &[]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = apply(&account, dir.path(), &["--env", "production"]);
    assert_eq!(code, 0, "{out}");
    let (code, plan) = plan_json(&account, dir.path());
    assert_eq!(code, 0, "{plan}");

    // The roles are where AWS needs them: the administration stack where estate runs, the
    // execution role in exactly the target accounts (the strict emulator fails an instance
    // whose account lacks it, so CURRENT instances prove it).
    let cfn = aws_sdk_cloudformation::Client::new(&account.config);
    let stack = cfn
        .describe_stacks()
        .stack_name("estate-ml-platform-stackset-administration")
        .send()
        .await
        .unwrap();
    assert_eq!(
        stack.stacks()[0].stack_status().map(|s| s.as_str()),
        Some("CREATE_COMPLETE")
    );
    let ids = account.ids().await;
    let mut targets = vec![
        (ids["production"].clone(), "CURRENT".to_string()),
        (ids["staging"].clone(), "CURRENT".to_string()),
    ];
    targets.sort();
    assert_eq!(
        stack_instances(&account, "estate-ml-platform-stackset-execution").await,
        targets
    );
    for set in [
        "model-execution-role-staging",
        "model-execution-role-production",
    ] {
        let all = stack_instances(&account, set).await;
        assert!(all.iter().all(|(_, s)| s == "CURRENT"), "{set}: {all:?}");
    }
}

/// A manifest with a service-managed stack set over nested units, and optionally a
/// self-managed one over every account with its failure tolerance at 100%.
fn units_manifest(dir: &Path, existing_roles: bool) {
    std::fs::write(
        dir.join("estate.yaml"),
        format!(
            "apiVersion: estate/v1\nkind: Estate\nmetadata: {{name: units}}\nspec:\n  homeRegion: us-east-1\n  regions: [us-east-1]\n  promotion: [staging]\n{}  include: [docs.yaml]\n",
            if existing_roles {
                "  stackSetRoles: existing\n"
            } else {
                ""
            }
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("marker.yaml"),
        "AWSTemplateFormatVersion: \"2010-09-09\"\nResources:\n  Marker:\n    Type: AWS::SSM::Parameter\n    Properties:\n      Name: !Sub /units/${AWS::StackName}\n      Type: String\n      Value: here\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("docs.yaml"),
        "apiVersion: estate/v1\nkind: Organization\nmetadata: {name: org}\nspec:\n  units:\n    - path: /ml\n    - path: /ml/staging\n    - path: /ml/staging/eu\n  accounts:\n    - {name: tools, email: tools@example.com, unit: /ml}\n    - {name: stage, email: stage@example.com, unit: /ml/staging}\n    - {name: stage-eu, email: stage-eu@example.com, unit: /ml/staging/eu}\n---\napiVersion: estate/v1\nkind: Environment\nmetadata: {name: staging}\nspec:\n  targets: {units: [/ml/staging]}\n---\napiVersion: estate/v1\nkind: StackSet\nmetadata: {name: guardrail}\nspec:\n  template: marker.yaml\n  environments: [staging]\n  permissionModel: service-managed\n  autoDeployment: {enabled: true, retainStacksOnAccountRemoval: false}\n",
    )
    .unwrap();
}

/// Service-managed stack sets deploy to units (AWS takes no account alone): estate plans the
/// accounts AWS will reach, nested units included and the management account never, asks for
/// trusted access first, and names the units, narrowed to exactly those accounts.
#[tokio::test]
async fn a_service_managed_stack_set_deploys_through_nested_units() {
    let account = management_account().await;
    let dir = tempfile::tempdir().unwrap();
    units_manifest(dir.path(), false);
    let (code, out, err) = run(&account, dir.path(), &["validate", "."]);
    assert_eq!(code, 0, "{out}{err}");

    let (code, out) = apply(&account, dir.path(), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ActivateOrganizationsAccess"), "{out}");
    let ids = account.ids().await;
    let mut reached = vec![
        (ids["stage"].clone(), "CURRENT".to_string()),
        (ids["stage-eu"].clone(), "CURRENT".to_string()),
    ];
    reached.sort();
    assert_eq!(
        stack_instances(&account, "guardrail-staging").await,
        reached
    );
    let (code, plan) = plan_json(&account, dir.path());
    assert_eq!(code, 0, "{plan}");
}

/// An operation fails in one account (its execution role is missing); once the cause is fixed
/// the next plan retries exactly that OUTDATED instance, and apply converges.
#[tokio::test]
async fn a_failed_instance_is_retried_once_its_cause_is_fixed() {
    let account = management_account().await;
    let dir = tempfile::tempdir().unwrap();
    units_manifest(dir.path(), true);
    std::fs::write(
        dir.path().join("roles.yaml"),
        "apiVersion: estate/v1\nkind: StackSet\nmetadata: {name: baseline}\nspec:\n  template: marker.yaml\n  environments: [staging]\n  operation: {maxConcurrentPercentage: 100, failureTolerancePercentage: 100}\n",
    )
    .unwrap();
    edit_all(
        dir.path(),
        "estate.yaml",
        "[docs.yaml]",
        "[docs.yaml, roles.yaml]",
    );
    // The organization: its accounts, with the roles made by hand in all but one.
    let (code, out) = apply(&account, dir.path(), &["--env", "staging"]);
    assert_ne!(code, 0, "no administration role yet: {out}");
    let ids = account.ids().await;
    stack_by_hand(
        &account.config,
        "stackset-roles-by-hand",
        &estate::bootstrap::administration_template(false),
    )
    .await;
    stack_by_hand(
        &account.member(&ids["stage"]).await,
        "stackset-roles-by-hand",
        &estate::bootstrap::execution_template(&account.id),
    )
    .await;

    let (code, out) = apply(&account, dir.path(), &[]);
    assert_eq!(code, 1, "an instance failed: {out}");
    assert!(
        out.contains("should have 'AWSCloudFormationStackSetExecutionRole' role"),
        "AWS's reason is shown: {out}"
    );
    let eu = ids["stage-eu"].clone();
    let live = stack_instances(&account, "baseline-staging").await;
    assert!(
        live.contains(&(eu.clone(), "OUTDATED".to_string())),
        "{live:?}"
    );

    // Applied again before the cause is fixed, the retry fails the same way; live looks the
    // same as before it, yet the next attempt must be an operation of its own, not the
    // failed one found again by its id.
    let (code, out) = apply(&account, dir.path(), &[]);
    assert_eq!(code, 1, "the retry failed too: {out}");

    // The cause fixed, the plan retries exactly the OUTDATED instance.
    stack_by_hand(
        &account.member(&eu).await,
        "stackset-roles-by-hand",
        &estate::bootstrap::execution_template(&account.id),
    )
    .await;
    let (code, plan) = plan_json(&account, dir.path());
    assert_eq!(code, 2);
    assert_eq!(
        changes(&plan),
        [(
            "update".to_string(),
            format!("stackInstance:baseline-staging/{eu}/us-east-1")
        )]
    );
    let (code, out) = apply(&account, dir.path(), &[]);
    assert_eq!(code, 0, "{out}");
    let (code, plan) = plan_json(&account, dir.path());
    assert_eq!(code, 0, "{plan}");
}

/// A stack deleted by hand inside a member account: drift detection finds its instance
/// DRIFTED, every resource DELETED, and `drift` reports it (exit 2); the next plan, from that
/// latest detection, creates the instance again, apply restores it, and all is clean after.
#[tokio::test]
async fn a_stack_deleted_in_a_member_account_is_drift_and_apply_restores_it() {
    let account = management_account().await;
    let dir = example("ml-platform");
    let (code, out) = apply(&account, dir.path(), &[]);
    assert_eq!(code, 0, "{out}");
    let (code, out, err) = run(&account, dir.path(), &["drift", "."]);
    assert_eq!(code, 0, "{out}{err}");

    let staging = account.ids().await["staging"].clone();
    account.emulator_call(
        "EstateEmulator.DeleteStackInMember",
        serde_json::json!({
            "StackSetName": "model-execution-role-staging",
            "Account": staging,
            "Region": "us-east-1",
        }),
    );
    let drift = json_changes(&account, dir.path(), "drift", &[]);
    let finding = drift["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "drifted")
        .unwrap_or_else(|| panic!("{drift}"));
    assert_eq!(
        finding["address"],
        format!("stackInstance:model-execution-role-staging/{staging}/us-east-1")
    );
    assert!(
        finding["message"].as_str().unwrap().contains("DELETED"),
        "{finding}"
    );

    let address = format!("stackInstance:model-execution-role-staging/{staging}/us-east-1");
    let (code, plan) = plan_json(&account, dir.path());
    assert_eq!(code, 2);
    let restore = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == address.as_str())
        .unwrap_or_else(|| panic!("{plan}"));
    assert_eq!(restore["action"], "replace");
    assert_eq!(restore["hint"], "retainStacks");
    assert!(
        restore["reason"]
            .as_str()
            .unwrap()
            .contains("deleted outside CloudFormation"),
        "{restore}"
    );
    let (code, out) = apply(&account, dir.path(), &[]);
    assert_eq!(code, 0, "{out}");
    // Production (approval: manual) was never applied here: dev and staging are clean.
    let (code, out, err) = run(
        &account,
        dir.path(),
        &["plan", ".", "--env", "dev", "--env", "staging"],
    );
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = run(&account, dir.path(), &["drift", "."]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        stack_instances(&account, "model-execution-role-staging").await,
        [(staging, "CURRENT".to_string())]
    );
}

/// An account that already has the execution role (made by hand) but no instance of this
/// estate yet: bootstrapping it there fails (the role exists), which is reported, and the rest
/// goes on; the stack set deploys there with the role that exists, and the next plan, seeing
/// it work, bootstraps nothing more.
#[tokio::test]
async fn an_execution_role_made_by_hand_is_reported_not_fatal() {
    let account = management_account().await;
    let dir = tempfile::tempdir().unwrap();
    units_manifest(dir.path(), false);
    // First only the organization (no stack set yet).
    let docs = dir.path().join("docs.yaml");
    let full = std::fs::read_to_string(&docs).unwrap();
    let organization_only = full.split("\n---\n").next().unwrap().to_string();
    std::fs::write(
        &docs,
        format!(
            "{organization_only}\n---\napiVersion: estate/v1\nkind: Environment\nmetadata: {{name: staging}}\nspec:\n  targets: {{units: [/ml/staging]}}\n"
        ),
    )
    .unwrap();
    let (code, out) = apply(&account, dir.path(), &[]);
    assert_eq!(code, 0, "{out}");
    let ids = account.ids().await;
    stack_by_hand(
        &account.member(&ids["stage"]).await,
        "stackset-roles-by-hand",
        &estate::bootstrap::execution_template(&account.id),
    )
    .await;
    std::fs::write(
        &docs,
        format!(
            "{organization_only}\n---\napiVersion: estate/v1\nkind: Environment\nmetadata: {{name: staging}}\nspec:\n  targets: {{units: [/ml/staging]}}\n---\napiVersion: estate/v1\nkind: StackSet\nmetadata: {{name: baseline}}\nspec:\n  template: marker.yaml\n  environments: [staging]\n"
        ),
    )
    .unwrap();

    let (code, out) = apply(&account, dir.path(), &[]);
    assert_eq!(code, 1, "the bootstrap failure is reported: {out}");
    assert!(out.contains("stackSetRoles: existing"), "{out}");
    let mut both = vec![
        (ids["stage"].clone(), "CURRENT".to_string()),
        (ids["stage-eu"].clone(), "CURRENT".to_string()),
    ];
    both.sort();
    assert_eq!(stack_instances(&account, "baseline-staging").await, both);
    let (code, plan) = plan_json(&account, dir.path());
    assert_eq!(code, 0, "{plan}");
}
