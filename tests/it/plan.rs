//! `estate plan` and `estate drift` against the emulator: a fresh organization plans exactly
//! the reference example; out-of-band changes made with the SDK show as drift.

use crate::support::builders::{copy_dir, copy_of, edit_all, example};
use crate::support::emulator::{
    TestAccount, management_account, operation_ends, operation_succeeds, stack_by_hand,
};
use crate::support::run::{git, json_changes, run};
use std::path::Path;

/// The example without its portfolio, for tests that build live state by hand with the SDK
/// (the stack-set roles too: the organization provides them, `stackSetRoles: existing`).
fn example_without_portfolio() -> tempfile::TempDir {
    let dir = example("ml-platform");
    edit_all(dir.path(), "estate.yaml", ", portfolios.yaml", "");
    edit_all(
        dir.path(),
        "estate.yaml",
        "  memberRole: OrganizationAccountAccessRole\n",
        "  memberRole: OrganizationAccountAccessRole\n  stackSetRoles: existing\n",
    );
    dir
}

/// Ids that differ per test run, replaced for snapshots.
fn stable(text: &str, account: &TestAccount) -> String {
    let re = regex::Regex::new(r"sha256:[0-9a-f]{64}").unwrap();
    re.replace_all(
        &text.replace(&account.id, "<management>"),
        "sha256:<fingerprint>",
    )
    .into_owned()
}

#[tokio::test]
async fn a_fresh_organization_plans_the_reference_example() {
    let account = management_account().await;
    let dir = example("ml-platform");
    let (code, json, stderr) = run(
        &account,
        dir.path(),
        &["plan", ".", "--format", "json", "--stats"],
    );
    assert_eq!(code, 2, "{stderr}");
    let plan: serde_json::Value = serde_json::from_str(&json).unwrap();
    let addresses: Vec<&str> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["address"].as_str().unwrap())
        .collect();
    assert_eq!(
        addresses,
        [
            "unit:/ml",
            "unit:/ml/data-science",
            "unit:/ml/staging",
            "unit:/ml/production",
            "account:tools",
            "account:data-science",
            "account:staging",
            "account:production",
            // What the self-managed stack sets need in a fresh organization.
            "prerequisite:organizations-access",
            "prerequisite:administration-role",
            "prerequisite:execution-role",
            "prerequisite:execution-role/production (known after apply)",
            "prerequisite:execution-role/staging (known after apply)",
            // The contract's portfolio: 1 portfolio, 1 product with 1 version, 1 tag option
            // key with 2 values, 1 share and its recipient principal.
            "portfolio:data-scientists",
            "product:data-scientists/secure-notebook",
            "productVersion:data-scientists/secure-notebook/v1",
            "tagOption:data-scientists/cost-center=6534",
            "tagOption:data-scientists/cost-center=8457",
            "share:data-scientists/account/data-science",
            "principal:data-scientists@data-science/role/DataScientist",
            "stackSet:model-execution-role-staging",
            "stackInstance:model-execution-role-staging/staging (known after apply)/us-east-1",
            "stackSet:model-execution-role-production",
            "stackInstance:model-execution-role-production/production (known after apply)/us-east-1",
        ]
    );
    assert!(
        plan["changes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["action"] == "create")
    );
    assert_eq!(plan["summary"]["create"], 24);
    assert_eq!(plan["formatVersion"], 1);
    assert_eq!(
        plan["environments"],
        serde_json::json!(["dev", "staging", "production"])
    );
    // --stats: calls by operation, in JSON and on stderr.
    assert!(plan["stats"]["Organizations.ListRoots"].as_u64().unwrap() >= 1);
    assert!(stderr.contains("CloudFormation.ListStackSets"), "{stderr}");
    insta::assert_snapshot!("plan-reference-json", stable(&json, &account));

    let (code, text, _) = run(&account, dir.path(), &["plan", "."]);
    assert_eq!(code, 2);
    assert!(
        text.trim_end()
            .ends_with("Plan: 24 to create, 0 to update, 0 to delete.")
    );
    insta::assert_snapshot!("plan-reference-text", stable(&text, &account));

    let (code, md, _) = run(&account, dir.path(), &["plan", ".", "--format", "markdown"]);
    assert_eq!(code, 2);
    assert!(md.starts_with("<!-- estate-plan: ml-platform -->"));
    insta::assert_snapshot!("plan-reference-markdown", stable(&md, &account));

    // --out writes the same JSON plan as --format json.
    let (code, _, _) = run(&account, dir.path(), &["plan", ".", "--out", "plan.json"]);
    assert_eq!(code, 2);
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("plan.json")).unwrap())
            .unwrap();
    assert_eq!(saved["changes"], plan["changes"]);
    assert_eq!(saved["fingerprint"], plan["fingerprint"]);
}

#[tokio::test]
async fn env_limits_stack_sets_but_keeps_organization_changes() {
    let account = management_account().await;
    let dir = example("ml-platform");
    let plan = json_changes(&account, dir.path(), "plan", &["--env", "staging"]);
    assert_eq!(plan["environments"], serde_json::json!(["staging"]));
    let changes = plan["changes"].as_array().unwrap();
    assert_eq!(
        changes
            .iter()
            .filter(|c| c["environment"].is_null())
            .count(),
        19,
        "8 organization, 4 prerequisite (trusted access, the administration role, the execution-role stack set and its instance in staging) and 7 portfolio changes"
    );
    assert!(
        changes
            .iter()
            .all(|c| c["environment"].is_null() || c["environment"] == "staging")
    );

    // A mistyped environment is a usage error, with the name meant.
    let (code, _, stderr) = run(&account, dir.path(), &["plan", ".", "--env", "stagin"]);
    assert_eq!(code, 64);
    assert!(
        stderr.contains("unknown environment `stagin`; did you mean `staging`?"),
        "{stderr}"
    );
}

/// Builds the example's organization with the SDK, as an apply would (its accounts tagged).
async fn build_organization(account: &TestAccount) -> std::collections::BTreeMap<String, String> {
    let org = aws_sdk_organizations::Client::new(&account.config);
    let mut units = std::collections::BTreeMap::new();
    units.insert("/".to_string(), account.root_id.clone());
    for path in ["/ml", "/ml/data-science", "/ml/staging", "/ml/production"] {
        let (parent, name) = path.rsplit_once('/').unwrap();
        let parent = if parent.is_empty() { "/" } else { parent };
        let ou = org
            .create_organizational_unit()
            .parent_id(&units[parent])
            .name(name)
            .send()
            .await
            .unwrap();
        units.insert(
            path.to_string(),
            ou.organizational_unit.unwrap().id.unwrap(),
        );
    }
    let mut ids = std::collections::BTreeMap::new();
    for (name, unit) in [
        ("tools", "/ml"),
        ("data-science", "/ml/data-science"),
        ("staging", "/ml/staging"),
        ("production", "/ml/production"),
    ] {
        let id = account
            .create_account(name, &format!("ml-{name}@example.com"))
            .await;
        // Tagged as estate's CreateAccount does: these are the estate's own accounts.
        org.tag_resource()
            .resource_id(&id)
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
        org.move_account()
            .account_id(&id)
            .source_parent_id(&account.root_id)
            .destination_parent_id(&units[unit])
            .send()
            .await
            .unwrap();
        ids.insert(name.to_string(), id);
    }
    // The roles self-managed stack sets need, made by hand as an organization would.
    stack_by_hand(
        &account.config,
        "stackset-administration",
        &estate::bootstrap::administration_template(false),
    )
    .await;
    for id in ids.values() {
        stack_by_hand(
            &account.member(id).await,
            "stackset-execution",
            &estate::bootstrap::execution_template(&account.id),
        )
        .await;
    }
    ids.extend(units.into_iter().map(|(k, v)| (format!("unit:{k}"), v)));
    ids
}

#[tokio::test]
async fn an_account_moved_out_of_band_shows_as_drift() {
    let account = management_account().await;
    let dir = example_without_portfolio();
    let ids = build_organization(&account).await;

    // The organization matches: only stack sets are pending, which is not drift.
    let plan = json_changes(&account, dir.path(), "plan", &[]);
    assert!(
        plan["changes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["resourceType"] == "stackSet" || c["resourceType"] == "stackInstance")
    );
    let (code, text, stderr) = run(&account, dir.path(), &["drift", "."]);
    assert_eq!(code, 0, "{text}{stderr}");

    // On-call moves the staging account to the root by hand.
    let org = aws_sdk_organizations::Client::new(&account.config);
    org.move_account()
        .account_id(&ids["staging"])
        .source_parent_id(&ids["unit:/ml/staging"])
        .destination_parent_id(&account.root_id)
        .send()
        .await
        .unwrap();
    let drift = json_changes(&account, dir.path(), "drift", &[]);
    let changes = drift["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{drift}");
    assert_eq!(changes[0]["address"], "account:staging");
    assert_eq!(changes[0]["action"], "update");
    assert_eq!(changes[0]["before"]["unit"], "/");
    assert_eq!(changes[0]["after"]["unit"], "/ml/staging");
}

#[tokio::test]
async fn an_unmanaged_stack_set_with_the_same_name_is_a_conflict() {
    let account = management_account().await;
    let dir = example("ml-platform");
    let cfn = aws_sdk_cloudformation::Client::new(&account.config);
    cfn.create_stack_set()
        .stack_set_name("model-execution-role-staging")
        .template_body("Resources:\n  T:\n    Type: AWS::SNS::Topic\n")
        .send()
        .await
        .unwrap();
    let plan = json_changes(&account, dir.path(), "plan", &[]);
    let findings = plan["findings"].as_array().unwrap();
    assert!(
        findings
            .iter()
            .any(|f| f["kind"] == "conflict"
                && f["address"] == "stackSet:model-execution-role-staging"),
        "{plan}"
    );
    // It is not planned for creation or update: estate never touches it.
    assert!(
        !plan["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["address"] == "stackSet:model-execution-role-staging")
    );
    let (code, _, _) = run(&account, dir.path(), &["drift", "."]);
    assert_eq!(code, 2, "a conflict is drift");
}

/// Creates a stack set and its instances with the SDK exactly as the plan describes them.
async fn create_as_planned(
    account: &TestAccount,
    change: &serde_json::Value,
    instances: &[&serde_json::Value],
    template: &str,
) {
    use aws_sdk_cloudformation::types::{Capability, Parameter, Tag};
    let cfn = aws_sdk_cloudformation::Client::new(&account.config);
    let after = &change["after"];
    let name = after["name"].as_str().unwrap();
    let mut req = cfn
        .create_stack_set()
        .stack_set_name(name)
        .template_body(template)
        .administration_role_arn(after["administrationRoleArn"].as_str().unwrap())
        .execution_role_name(after["executionRoleName"].as_str().unwrap());
    for (k, v) in after["parameters"].as_object().unwrap() {
        req = req.parameters(
            Parameter::builder()
                .parameter_key(k)
                .parameter_value(v.as_str().unwrap())
                .build(),
        );
    }
    for c in after["capabilities"].as_array().unwrap() {
        req = req.capabilities(Capability::from(c.as_str().unwrap()));
    }
    for (k, v) in after["tags"].as_object().unwrap() {
        req = req.tags(Tag::builder().key(k).value(v.as_str().unwrap()).build());
    }
    req.send().await.unwrap();
    let accounts: Vec<String> = instances
        .iter()
        .map(|i| i["after"]["account"].as_str().unwrap().to_string())
        .collect();
    let operation = cfn
        .create_stack_instances()
        .stack_set_name(name)
        .set_accounts(Some(accounts))
        .regions("us-east-1")
        .send()
        .await
        .unwrap()
        .operation_id
        .unwrap();
    operation_succeeds(account, name, &operation).await;
}

#[tokio::test]
async fn a_stack_set_parameter_changed_out_of_band_shows_as_drift() {
    let account = management_account().await;
    let dir = example_without_portfolio();
    build_organization(&account).await;
    let (_, json, _) = run(&account, dir.path(), &["plan", ".", "--format", "json"]);
    let plan: serde_json::Value = serde_json::from_str(&json).unwrap();
    let changes = plan["changes"].as_array().unwrap();
    let template =
        std::fs::read_to_string(dir.path().join("templates/model-execution-role.yaml")).unwrap();
    for set in changes.iter().filter(|c| c["resourceType"] == "stackSet") {
        let name = set["after"]["name"].as_str().unwrap();
        let instances: Vec<&serde_json::Value> = changes
            .iter()
            .filter(|c| c["resourceType"] == "stackInstance" && c["after"]["stackSet"] == name)
            .collect();
        create_as_planned(&account, set, &instances, &template).await;
    }

    // Live now matches the manifest: no changes, no drift.
    let (code, text, stderr) = run(&account, dir.path(), &["plan", "."]);
    assert_eq!(code, 0, "{text}{stderr}");
    assert!(
        text.trim_end()
            .ends_with("No changes. Live state matches the manifest."),
        "{text}"
    );
    // Drift first runs resource drift detection on each managed stack set in scope (one
    // operation each); --no-detect skips it.
    let (code, text, stats) = run(&account, dir.path(), &["drift", ".", "--stats"]);
    assert_eq!(code, 0, "{text}");
    let detections = |stats: &str| {
        crate::support::run::stats_of(stats)
            .get("CloudFormation.DetectStackSetDrift")
            .copied()
            .unwrap_or(0)
    };
    assert_eq!(detections(&stats), 2, "{stats}");
    let (code, text, stats) = run(
        &account,
        dir.path(),
        &["drift", ".", "--env", "staging", "--stats"],
    );
    assert_eq!(code, 0, "{text}");
    assert_eq!(detections(&stats), 1, "{stats}");
    let (code, text, stats) = run(
        &account,
        dir.path(),
        &["drift", ".", "--no-detect", "--stats"],
    );
    assert_eq!(code, 0, "{text}");
    assert_eq!(detections(&stats), 0, "{stats}");

    // Someone changes a parameter in the console.
    let cfn = aws_sdk_cloudformation::Client::new(&account.config);
    let live = cfn
        .describe_stack_set()
        .stack_set_name("model-execution-role-staging")
        .send()
        .await
        .unwrap();
    let params: Vec<aws_sdk_cloudformation::types::Parameter> = live
        .stack_set
        .unwrap()
        .parameters
        .unwrap()
        .into_iter()
        .map(|p| {
            if p.parameter_key.as_deref() == Some("EnvType") {
                aws_sdk_cloudformation::types::Parameter::builder()
                    .parameter_key("EnvType")
                    .parameter_value("dev")
                    .build()
            } else {
                aws_sdk_cloudformation::types::Parameter::builder()
                    .parameter_key(p.parameter_key.unwrap())
                    .use_previous_value(true)
                    .build()
            }
        })
        .collect();
    let operation = cfn
        .update_stack_set()
        .stack_set_name("model-execution-role-staging")
        .use_previous_template(true)
        .set_parameters(Some(params))
        .capabilities(aws_sdk_cloudformation::types::Capability::CapabilityNamedIam)
        .send()
        .await
        .unwrap()
        .operation_id
        .unwrap();
    // The console's update takes time on AWS too: drift is looked at once it is done. (It
    // fails in the account on the emulator, whose IAM cannot rename a role in place: the
    // instance is then OUTDATED as well, which the reason says.)
    operation_ends(&account, "model-execution-role-staging", &operation).await;
    let drift = json_changes(&account, dir.path(), "drift", &[]);
    let changes = drift["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{drift}");
    assert_eq!(
        changes[0]["address"],
        "stackSet:model-execution-role-staging"
    );
    assert!(
        changes[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("changed: parameters EnvType"),
        "{json}"
    );
    assert_eq!(changes[0]["before"]["parameters"]["EnvType"], "dev");
    assert_eq!(changes[0]["after"]["parameters"]["EnvType"], "staging");
    let (_, text, _) = run(&account, dir.path(), &["drift", "."]);
    assert!(text.contains("EnvType"), "{text}");
}

/// Every NoEcho value of the no-echo case: none may appear in anything estate prints or writes.
fn secrets() -> Vec<String> {
    std::fs::read_to_string("tests/fixtures/plan-cases/no-echo/secrets.txt")
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn no_echo_values_never_appear_in_any_output_of_plan_apply_or_drift() {
    let account = management_account().await;
    let dir = copy_of("tests/fixtures/plan-cases/no-echo/manifest");
    let mut seen = String::new();
    let mut step = |args: &[&str], codes: &[i32]| {
        let (code, out, err) = run(&account, dir.path(), args);
        assert!(codes.contains(&code), "{args:?} exit {code}: {out}{err}");
        seen.push_str(&format!("\n$ {args:?}\n"));
        seen.push_str(&out);
        seen.push_str(&err);
    };
    step(&["plan", ".", "--out", "plan.json"], &[2]);
    step(&["plan", ".", "--format", "markdown"], &[2]);
    step(&["plan", ".", "--format", "json", "--stats"], &[2]);
    step(&["-vv", "apply", ".", "--auto-approve"], &[0]);
    step(
        &["apply", ".", "--env", "production", "--auto-approve"],
        &[0],
    );
    step(&["plan", "."], &[0]);
    step(&["drift", ".", "--format", "json"], &[0]);
    // A changed secret is planned and applied through its digest, never its value.
    let path = dir.path().join("stacksets.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("literal-staging-secret-1", "template-default-secret-3"),
    )
    .unwrap();
    step(&["plan", "."], &[2]);
    step(&["plan", ".", "--format", "markdown"], &[2]);
    step(
        &["-vv", "apply", ".", "--format", "json", "--auto-approve"],
        &[0],
    );
    step(
        &["apply", ".", "--env", "production", "--auto-approve"],
        &[0],
    );
    step(&["drift", "."], &[0]);
    seen.push_str(&std::fs::read_to_string(dir.path().join("plan.json")).unwrap());

    assert!(seen.contains("(sensitive)"), "{seen}");
    for secret in secrets() {
        assert!(!seen.contains(&secret), "{secret} leaked:\n{seen}");
    }
}

#[tokio::test]
async fn plan_from_a_git_ref_names_its_commit_and_ignores_the_working_tree() {
    let account = management_account().await;
    let repo = tempfile::tempdir().unwrap();
    let manifest = repo.path().join("platform");
    copy_dir(Path::new("examples/environments/ml-platform"), &manifest);
    git(repo.path(), &["init", "-q", "-b", "main"]);
    git(repo.path(), &["add", "."]);
    git(repo.path(), &["commit", "-q", "-m", "platform"]);
    let head = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(repo.path())
        .output()
        .unwrap();
    let head = String::from_utf8(head.stdout).unwrap().trim().to_string();
    // An uncommitted unit: in the working tree only.
    edit_all(
        &manifest,
        "organization.yaml",
        "    - path: /ml\n",
        "    - path: /ml\n    - path: /uncommitted\n",
    );

    let plan_json = |extra: &[&str]| json_changes(&account, &manifest, "plan", extra);
    let units = |plan: &serde_json::Value| -> Vec<String> {
        plan["changes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["resourceType"] == "unit")
            .map(|c| c["address"].as_str().unwrap().to_string())
            .collect()
    };
    let envs = ["--env", "staging", "--env", "production"];
    let committed = plan_json(&[&["--git-ref", "HEAD"][..], &envs[..]].concat());
    assert_eq!(committed["source"]["commit"], head.as_str());
    assert_eq!(committed["source"]["dirty"], false);
    assert_eq!(
        committed["environments"],
        serde_json::json!(["staging", "production"])
    );
    assert!(!units(&committed).contains(&"unit:/uncommitted".to_string()));

    let working = plan_json(&envs);
    assert_eq!(working["source"]["commit"], head.as_str());
    assert_eq!(working["source"]["dirty"], true);
    assert!(units(&working).contains(&"unit:/uncommitted".to_string()));
    // The text header says which commit, and that the tree differs from it.
    let (_, text, _) = run(&account, &manifest, &["plan", "."]);
    assert!(
        text.contains(&format!("at {} (uncommitted changes)", &head[..7])),
        "{text}"
    );
}
