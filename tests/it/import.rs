//! Bringing an existing organization under estate, on the strict emulator: `estate import`
//! of an organization made by hand, a stack set adopted by the manifest, and the Estate's
//! scope keeping someone else's accounts out of the plan.

use crate::support::builders::edit_all;
use crate::support::catalog::{catalog_tags, portfolio_by_hand};
use crate::support::emulator::{
    TestAccount, management_account, ok, operation_succeeds, stack_by_hand,
};
use crate::support::run::{apply_all, plan_json, run};
use aws_sdk_cloudformation::types::{
    AutoDeployment, Capability, DeploymentTargets, Parameter, PermissionModels, Tag,
};
use std::collections::BTreeMap;
use std::path::Path;

/// Units made with the SDK, by path (the root as `/`).
async fn make_units(account: &TestAccount, paths: &[&str]) -> BTreeMap<String, String> {
    let org = aws_sdk_organizations::Client::new(&account.config);
    let mut units = BTreeMap::new();
    units.insert("/".to_string(), account.root_id.clone());
    for path in paths {
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
    units
}

/// An account made with the SDK and moved into `unit`; its id.
async fn make_account(
    account: &TestAccount,
    units: &BTreeMap<String, String>,
    name: &str,
    unit: &str,
) -> String {
    let org = aws_sdk_organizations::Client::new(&account.config);
    let id = account
        .create_account(name, &format!("{name}+{}@example.com", account.id))
        .await;
    org.move_account()
        .account_id(&id)
        .source_parent_id(&account.root_id)
        .destination_parent_id(&units[unit])
        .send()
        .await
        .unwrap();
    id
}

/// The roles self-managed stack sets need, made by hand: the administration role here, the
/// execution role in each of `targets`.
async fn roles_by_hand(account: &TestAccount, targets: &[&String]) {
    stack_by_hand(
        &account.config,
        "stackset-administration",
        &estate::bootstrap::administration_template(false),
    )
    .await;
    for id in targets {
        stack_by_hand(
            &account.member(id).await,
            "stackset-execution",
            &estate::bootstrap::execution_template(&account.id),
        )
        .await;
    }
}

/// A self-managed stack set made by hand, with instances in `accounts`, waited for.
async fn self_managed_by_hand(
    account: &TestAccount,
    name: &str,
    template: &str,
    parameters: &[(&str, &str)],
    accounts: &[&String],
) {
    let cfn = aws_sdk_cloudformation::Client::new(&account.config);
    let mut create = cfn
        .create_stack_set()
        .stack_set_name(name)
        .description(format!("{name}, made by hand"))
        .template_body(template)
        .set_capabilities(
            template
                .contains("AWS::IAM::Role")
                .then(|| vec![Capability::CapabilityNamedIam]),
        )
        .tags(Tag::builder().key("team").value("platform").build());
    for (k, v) in parameters {
        create = create.parameters(
            Parameter::builder()
                .parameter_key(*k)
                .parameter_value(*v)
                .build(),
        );
    }
    create.send().await.unwrap();
    let op = cfn
        .create_stack_instances()
        .stack_set_name(name)
        .set_accounts(Some(accounts.iter().map(|a| a.to_string()).collect()))
        .regions("us-east-1")
        .send()
        .await
        .unwrap()
        .operation_id
        .unwrap();
    operation_succeeds(account, name, &op).await;
}

const ROLE_TEMPLATE: &str = "AWSTemplateFormatVersion: \"2010-09-09\"\nDescription: an audit role\nParameters:\n  Trusted:\n    Type: String\n  Tier:\n    Type: String\n    Default: basic\nResources:\n  Audit:\n    Type: AWS::IAM::Role\n    Properties:\n      RoleName: !Sub audit-${Tier}\n      AssumeRolePolicyDocument:\n        Version: \"2012-10-17\"\n        Statement:\n          - Effect: Allow\n            Principal: {AWS: !Sub \"arn:aws:iam::${Trusted}:root\"}\n            Action: sts:AssumeRole\n";

const MARKER_JSON: &str = "{\"Resources\": {\"Marker\": {\"Type\": \"AWS::SSM::Parameter\", \"Properties\": {\"Name\": {\"Fn::Sub\": \"/baseline/${AWS::StackName}\"}, \"Type\": \"String\", \"Value\": \"v1\"}}}}";

const GUARDRAIL: &str = "Resources:\n  Marker:\n    Type: AWS::SSM::Parameter\n    Properties:\n      Name: !Sub /guardrail/${AWS::StackName}\n      Type: String\n      Value: here\n";

/// Done when of issue 14: an organization of 12 accounts in nested units, 3 stack sets and a
/// portfolio in the tools account (a product with a version, a tag option, a launch role, a
/// share accepted by an account) made with the AWS API is imported; the manifest validates
/// and plans no change and no finding; one template edited plans exactly one stack-set
/// update, and the portfolio's description edited plans its adoption.
#[tokio::test]
async fn an_organization_made_by_hand_is_imported_and_plans_no_change() {
    let account = management_account().await;
    account
        .configure_emulator(serde_json::json!({"CreateSeconds": 0.2, "UnreachableSeconds": 0.2}));
    let units = make_units(
        &account,
        &[
            "/platform",
            "/platform/security",
            "/workloads",
            "/workloads/prod",
            "/workloads/prod/eu",
            "/workloads/dev",
        ],
    )
    .await;
    let mut ids = BTreeMap::new();
    for (name, unit) in [
        ("log-archive", "/platform/security"),
        ("audit", "/platform/security"),
        ("network", "/platform"),
        ("shared-tools", "/platform"),
        ("prod-a", "/workloads/prod"),
        ("prod-b", "/workloads/prod"),
        ("prod-eu-a", "/workloads/prod/eu"),
        ("prod-eu-b", "/workloads/prod/eu"),
        ("dev-a", "/workloads/dev"),
        ("dev-b", "/workloads/dev"),
        ("dev-c", "/workloads/dev"),
        ("sandbox", "/workloads"),
    ] {
        ids.insert(name, make_account(&account, &units, name, unit).await);
    }
    assert_eq!(ids.len(), 12);

    // Three stack sets made with the API: two self-managed (YAML and JSON templates), one
    // service-managed over a unit.
    let security: Vec<&String> = ["log-archive", "audit"].iter().map(|n| &ids[n]).collect();
    let prod: Vec<&String> = ["prod-a", "prod-b", "prod-eu-a", "prod-eu-b"]
        .iter()
        .map(|n| &ids[n])
        .collect();
    let targets: Vec<&String> = security.iter().chain(&prod).copied().collect();
    roles_by_hand(&account, &targets).await;
    self_managed_by_hand(
        &account,
        "audit-role",
        ROLE_TEMPLATE,
        &[("Trusted", &ids["audit"]), ("Tier", "strict")],
        &security,
    )
    .await;
    self_managed_by_hand(&account, "workload-baseline", MARKER_JSON, &[], &prod).await;
    let cfn = aws_sdk_cloudformation::Client::new(&account.config);
    cfn.activate_organizations_access().send().await.unwrap();
    cfn.create_stack_set()
        .stack_set_name("dev-guardrails")
        .template_body(GUARDRAIL)
        .permission_model(PermissionModels::ServiceManaged)
        .auto_deployment(
            AutoDeployment::builder()
                .enabled(true)
                .retain_stacks_on_account_removal(false)
                .build(),
        )
        .capabilities(Capability::CapabilityIam)
        .send()
        .await
        .unwrap();
    let op = cfn
        .create_stack_instances()
        .stack_set_name("dev-guardrails")
        .deployment_targets(
            DeploymentTargets::builder()
                .organizational_unit_ids(&units["/workloads/dev"])
                .build(),
        )
        .regions("us-east-1")
        .send()
        .await
        .unwrap()
        .operation_id
        .unwrap();
    operation_succeeds(&account, "dev-guardrails", &op).await;

    // A portfolio in the tools account, shared with dev-a, which accepted it.
    let tools = account.member(&ids["shared-tools"]).await;
    let (portfolio, _) =
        portfolio_by_hand(&tools, &ids["shared-tools"], "ML Products", GUARDRAIL).await;
    let sc = aws_sdk_servicecatalog::Client::new(&tools);
    ok(sc
        .create_portfolio_share()
        .portfolio_id(&portfolio)
        .account_id(&ids["dev-a"])
        .send()
        .await);
    let dev_a = aws_sdk_servicecatalog::Client::new(&account.member(&ids["dev-a"]).await);
    ok(dev_a
        .accept_portfolio_share()
        .portfolio_id(&portfolio)
        .send()
        .await);

    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("legacy");
    let (code, out, err) = run(
        &account,
        parent.path(),
        &[
            "import",
            "legacy",
            "--region",
            "us-east-1",
            "--portfolio",
            "ML *",
            "--portfolio-account",
            "shared-tools",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("13 accounts") && out.contains("1 portfolios"),
        "the 12 and the management account: {out}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("templates/portfolios/ML-Products/Notebook/v1.yaml"))
            .unwrap(),
        GUARDRAIL
    );
    let imported = std::fs::read_to_string(dir.join("portfolios/ML-Products.yaml")).unwrap();
    for part in [
        "account: shared-tools",
        "launchRoleName: notebook-launch",
        "- dev-a",
        "adopt: true",
    ] {
        assert!(imported.contains(part), "{part}: {imported}");
    }
    // Templates are written as AWS returns them.
    assert_eq!(
        std::fs::read_to_string(dir.join("templates/workload-baseline.json")).unwrap(),
        MARKER_JSON
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("templates/audit-role.yaml")).unwrap(),
        ROLE_TEMPLATE
    );

    let (code, out, err) = run(&account, &dir, &["validate", "."]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.is_empty(), "no warning either: {err}");
    let (code, plan) = plan_json(&account, &dir, &[]);
    assert_eq!(code, 0, "{plan}");
    assert_eq!(plan["changes"], serde_json::json!([]), "{plan}");
    assert_eq!(plan["findings"], serde_json::json!([]), "{plan}");
    let (code, out, err) = run(&account, &dir, &["plan", "."]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.trim_end()
            .ends_with("No changes. Live state matches the manifest."),
        "{out}"
    );

    // One imported template changed: exactly one stack-set update, which adopts it.
    edit_all(&dir, "templates/workload-baseline.json", "\"v1\"", "\"v2\"");
    let (code, plan) = plan_json(&account, &dir, &[]);
    assert_eq!(code, 2, "{plan}");
    let changes = plan["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{plan}");
    assert_eq!(changes[0]["address"], "stackSet:workload-baseline");
    assert_eq!(changes[0]["action"], "update");
    assert_eq!(changes[0]["hint"], "adopt");
    assert_eq!(plan["findings"], serde_json::json!([]), "{plan}");
    edit_all(&dir, "templates/workload-baseline.json", "\"v2\"", "\"v1\"");

    // The imported portfolio's description edited: its adoption, which also tags the product
    // adopted with it; nothing else.
    edit_all(
        &dir,
        "portfolios/ML-Products.yaml",
        "made by hand",
        "notebooks for everyone",
    );
    let (code, plan) = plan_json(&account, &dir, &[]);
    assert_eq!(code, 2, "{plan}");
    assert_eq!(plan["findings"], serde_json::json!([]), "{plan}");
    let changes: Vec<(&str, &str, &str)> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["address"].as_str().unwrap(),
                c["action"].as_str().unwrap(),
                c["hint"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            ("portfolio:ML-Products", "update", "adopt"),
            ("product:ML-Products/Notebook", "update", "adopt"),
        ],
        "{plan}"
    );
    assert!(
        plan["changes"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("description"),
        "{plan}"
    );

    // Limited to one unit and one family of stack sets: the rest of the organization is out
    // of the Estate's scope, so no finding either.
    let (code, _, err) = run(
        &account,
        parent.path(),
        &[
            "import",
            "prod",
            "--region",
            "us-east-1",
            "--unit",
            "/workloads/prd",
        ],
    );
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("did you mean `/workloads/prod`?"), "{err}");
    let (code, _, err) = run(
        &account,
        parent.path(),
        &[
            "import",
            "tools",
            "--region",
            "us-east-1",
            "--portfolio",
            "*",
            "--portfolio-account",
            "shared-tool",
        ],
    );
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("did you mean `shared-tools`?"), "{err}");
    let (code, out, err) = run(
        &account,
        parent.path(),
        &[
            "import",
            "prod",
            "--region",
            "us-east-1",
            "--unit",
            "/workloads/prod",
            "--stack-set",
            "workload-*",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let prod = parent.path().join("prod");
    let estate = std::fs::read_to_string(prod.join("estate.yaml")).unwrap();
    assert!(
        estate.contains("/workloads/prod") && estate.contains("workload-*"),
        "{estate}"
    );
    assert!(!prod.join("stacksets/audit-role.yaml").exists());
    let (code, out, err) = run(&account, &prod, &["validate", "."]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, plan) = plan_json(&account, &prod, &[]);
    assert_eq!(code, 0, "{plan}");
    assert_eq!(plan["findings"], serde_json::json!([]), "{plan}");
}

/// The Estate `team` of the adoption tests: one environment `prod`, its documents in docs.yaml.
fn team_estate(dir: &Path) {
    std::fs::write(
        dir.join("estate.yaml"),
        "apiVersion: estate/v1\nkind: Estate\nmetadata: {name: team}\nspec:\n  homeRegion: us-east-1\n  regions: [us-east-1]\n  promotion: [prod]\n  stackSetRoles: existing\n  include: [docs.yaml]\n",
    )
    .unwrap();
}

/// A manifest of one unit, one account and the stack set `roles` in `prod`, which may adopt.
fn adopting_manifest(dir: &Path, email: &str, adopt: bool) {
    team_estate(dir);
    std::fs::write(dir.join("role.yaml"), ROLE_TEMPLATE).unwrap();
    std::fs::write(
        dir.join("docs.yaml"),
        format!(
            "apiVersion: estate/v1\nkind: Organization\nmetadata: {{name: org}}\nspec:\n  units:\n    - path: /ml\n  accounts:\n    - {{name: prod, email: {email}, unit: /ml}}\n---\napiVersion: estate/v1\nkind: Environment\nmetadata: {{name: prod}}\nspec:\n  targets: {{accounts: [prod]}}\n---\napiVersion: estate/v1\nkind: StackSet\nmetadata: {{name: roles}}\nspec:\n  template: role.yaml\n  description: roles-prod, made by hand\n  environments: [prod]\n  capabilities: [CAPABILITY_NAMED_IAM]\n  parameters: {{Trusted: \"${{account:prod}}\", Tier: strict}}\n  tags: {{team: platform}}\n{}",
            if adopt { "  adopt: true\n" } else { "" }
        ),
    )
    .unwrap();
}

async fn stack_set_tags(account: &TestAccount, name: &str) -> BTreeMap<String, String> {
    aws_sdk_cloudformation::Client::new(&account.config)
        .describe_stack_set()
        .stack_set_name(name)
        .send()
        .await
        .unwrap()
        .stack_set
        .unwrap()
        .tags
        .unwrap_or_default()
        .into_iter()
        .map(|t| (t.key.unwrap(), t.value.unwrap()))
        .collect()
}

/// An untagged stack set is a conflict until the manifest adopts it; then plan shows the
/// adoption, apply writes estate's tags, and the next plan is clean, `adopt` or not.
#[tokio::test]
async fn an_untagged_stack_set_is_adopted_only_when_the_manifest_says_so() {
    let account = management_account().await;
    account
        .configure_emulator(serde_json::json!({"CreateSeconds": 0.2, "UnreachableSeconds": 0.2}));
    let units = make_units(&account, &["/ml"]).await;
    let prod = make_account(&account, &units, "prod", "/ml").await;
    roles_by_hand(&account, &[&prod]).await;
    // Made by hand with a tier the manifest changes.
    self_managed_by_hand(
        &account,
        "roles-prod",
        ROLE_TEMPLATE,
        &[("Trusted", &prod), ("Tier", "basic")],
        &[&prod],
    )
    .await;
    let email = format!("prod+{}@example.com", account.id);
    let dir = tempfile::tempdir().unwrap();

    // Not adopted: a conflict, never taken over.
    adopting_manifest(dir.path(), &email, false);
    let (code, plan) = plan_json(&account, dir.path(), &[]);
    assert_eq!(code, 2, "{plan}");
    assert_eq!(plan["changes"], serde_json::json!([]), "{plan}");
    assert_eq!(plan["findings"][0]["kind"], "conflict", "{plan}");
    let (code, out) = apply_all(&account, dir.path(), &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        !stack_set_tags(&account, "roles-prod")
            .await
            .contains_key("estate:managed-by")
    );

    // Adopted: one update that says so, and no conflict.
    adopting_manifest(dir.path(), &email, true);
    let (code, plan) = plan_json(&account, dir.path(), &[]);
    assert_eq!(code, 2, "{plan}");
    assert_eq!(plan["findings"], serde_json::json!([]), "{plan}");
    let changes = plan["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{plan}");
    assert_eq!(changes[0]["address"], "stackSet:roles-prod");
    assert_eq!(changes[0]["hint"], "adopt");
    assert_eq!(changes[0]["before"]["parameters"]["Tier"], "basic");
    assert_eq!(changes[0]["after"]["tags"]["estate:managed-by"], "team");
    let (_, text, _) = run(&account, dir.path(), &["plan", "."]);
    assert!(text.contains("~ stackSet roles-prod (adopt)"), "{text}");

    let (code, out) = apply_all(&account, dir.path(), &[]);
    assert_eq!(code, 0, "{out}");
    let tags = stack_set_tags(&account, "roles-prod").await;
    assert_eq!(
        tags.get("estate:managed-by").map(String::as_str),
        Some("team")
    );
    assert_eq!(
        tags.get("estate:environment").map(String::as_str),
        Some("prod")
    );
    assert_eq!(tags.get("team").map(String::as_str), Some("platform"));
    let (code, plan) = plan_json(&account, dir.path(), &[]);
    assert_eq!(code, 0, "{plan}");
    // Estate's own now: `adopt` may go.
    adopting_manifest(dir.path(), &email, false);
    let (code, plan) = plan_json(&account, dir.path(), &[]);
    assert_eq!(code, 0, "{plan}");
}

/// A manifest of the tools account and its portfolio `Data Science`, which may adopt.
fn portfolio_manifest(dir: &Path, email: &str, adopt: bool) {
    team_estate(dir);
    std::fs::write(dir.join("notebook.yaml"), GUARDRAIL).unwrap();
    std::fs::write(
        dir.join("docs.yaml"),
        format!(
            "apiVersion: estate/v1\nkind: Organization\nmetadata: {{name: org}}\nspec:\n  units:\n    - path: /ml\n  accounts:\n    - {{name: tools, email: {email}, unit: /ml}}\n---\napiVersion: estate/v1\nkind: Environment\nmetadata: {{name: prod}}\nspec:\n  targets: {{accounts: [tools]}}\n---\napiVersion: estate/v1\nkind: Portfolio\nmetadata: {{name: data-science}}\nspec:\n  account: tools\n  displayName: Data Science\n  providerName: Central IT\n  description: notebooks for data scientists\n  tagOptions: {{team: [ml]}}\n  products:\n    - name: notebook\n      displayName: Notebook\n      owner: Central IT\n      launchRoleName: notebook-launch\n      versions:\n        - {{name: v1, template: notebook.yaml}}\n{}",
            if adopt { "  adopt: true\n" } else { "" }
        ),
    )
    .unwrap();
}

/// An untagged portfolio is a conflict until the manifest adopts it; then plan shows the
/// adoption (the portfolio, and the product adopted with it), apply writes estate's tags,
/// and the next plan is clean, `adopt` or not.
#[tokio::test]
async fn an_untagged_portfolio_is_adopted_only_when_the_manifest_says_so() {
    let account = management_account().await;
    account
        .configure_emulator(serde_json::json!({"CreateSeconds": 0.2, "UnreachableSeconds": 0.2}));
    let units = make_units(&account, &["/ml"]).await;
    let tools = make_account(&account, &units, "tools", "/ml").await;
    let config = account.member(&tools).await;
    let (portfolio, product) = portfolio_by_hand(&config, &tools, "Data Science", GUARDRAIL).await;
    let sc = aws_sdk_servicecatalog::Client::new(&config);
    let email = format!("tools+{}@example.com", account.id);
    let dir = tempfile::tempdir().unwrap();

    // Not adopted: a conflict (plan and drift count it), never taken over.
    portfolio_manifest(dir.path(), &email, false);
    let (code, plan) = plan_json(&account, dir.path(), &[]);
    assert_eq!(code, 2, "{plan}");
    assert_eq!(plan["changes"], serde_json::json!([]), "{plan}");
    assert_eq!(plan["findings"][0]["kind"], "conflict", "{plan}");
    assert_eq!(plan["findings"][0]["address"], "portfolio:data-science");
    let (code, out, _) = run(&account, dir.path(), &["drift", "."]);
    assert_eq!(code, 2, "{out}");

    // Adopted: the portfolio's update says so, and tags the product adopted with it.
    portfolio_manifest(dir.path(), &email, true);
    let (code, plan) = plan_json(&account, dir.path(), &[]);
    assert_eq!(code, 2, "{plan}");
    assert_eq!(plan["findings"], serde_json::json!([]), "{plan}");
    let changes = plan["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 2, "{plan}");
    assert_eq!(changes[0]["address"], "portfolio:data-science");
    assert_eq!(changes[0]["hint"], "adopt");
    assert_eq!(changes[0]["before"]["description"], "made by hand");
    assert_eq!(changes[0]["after"]["tags"]["estate:managed-by"], "team");
    assert_eq!(changes[1]["address"], "product:data-science/notebook");
    assert_eq!(changes[1]["hint"], "adopt");
    let (_, text, _) = run(&account, dir.path(), &["plan", "."]);
    assert!(text.contains("~ portfolio data-science (adopt)"), "{text}");

    let (code, out) = apply_all(&account, dir.path(), &[]);
    assert_eq!(code, 0, "{out}");
    let (portfolio_tags, product_tags) = catalog_tags(&sc, &portfolio, &product).await;
    assert_eq!(
        portfolio_tags.get("estate:managed-by").map(String::as_str),
        Some("team")
    );
    assert_eq!(
        portfolio_tags.get("estate:portfolio").map(String::as_str),
        Some("data-science")
    );
    assert_eq!(
        product_tags.get("estate:product").map(String::as_str),
        Some("notebook")
    );
    let (code, plan) = plan_json(&account, dir.path(), &[]);
    assert_eq!(code, 0, "{plan}");
    // Estate's own now: `adopt` may go.
    portfolio_manifest(dir.path(), &email, false);
    let (code, plan) = plan_json(&account, dir.path(), &[]);
    assert_eq!(code, 0, "{plan}");
}

/// An account outside the Estate's scope is no finding, and keeps its stack instance; without
/// the scope it is reported, and the plan's closing line counts it.
#[tokio::test]
async fn an_account_outside_the_scope_is_no_finding() {
    let account = management_account().await;
    account
        .configure_emulator(serde_json::json!({"CreateSeconds": 0.2, "UnreachableSeconds": 0.2}));
    let units = make_units(&account, &["/ml", "/finance"]).await;
    let prod = make_account(&account, &units, "prod", "/ml").await;
    let ledger = make_account(&account, &units, "ledger", "/finance").await;
    roles_by_hand(&account, &[&prod, &ledger]).await;
    // The stack set reaches the other team's account too.
    self_managed_by_hand(
        &account,
        "roles-prod",
        ROLE_TEMPLATE,
        &[("Trusted", &prod), ("Tier", "strict")],
        &[&prod, &ledger],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    adopting_manifest(
        dir.path(),
        &format!("prod+{}@example.com", account.id),
        true,
    );

    let (code, plan) = plan_json(&account, dir.path(), &[]);
    assert_eq!(code, 2, "{plan}");
    let findings = plan["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{plan}");
    assert_eq!(findings[0]["kind"], "unmanaged");
    assert_eq!(findings[0]["address"], format!("account:{ledger}"));
    assert!(
        plan["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["action"] == "delete"
                && c["address"] == format!("stackInstance:roles-prod/{ledger}/us-east-1")),
        "without a scope, the manifest's targets are all there is: {plan}"
    );

    edit_all(
        dir.path(),
        "estate.yaml",
        "  stackSetRoles: existing\n",
        "  stackSetRoles: existing\n  scope: {units: [/ml]}\n",
    );
    let (code, out, err) = run(&account, dir.path(), &["validate", "."]);
    assert_eq!(code, 0, "{out}{err}");
    let (_, plan) = plan_json(&account, dir.path(), &[]);
    assert_eq!(plan["findings"], serde_json::json!([]), "{plan}");
    assert!(
        plan["changes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["address"].as_str().is_none_or(|a| !a.contains(&ledger))),
        "the other team's instance is left alone: {plan}"
    );
}

/// An account found by its email that estate did not create is not moved (a conflict) until
/// the manifest adopts it; then apply moves it and tags it as estate's, and the next plan is
/// clean without `adopt`.
#[tokio::test]
async fn an_account_estate_did_not_create_is_moved_only_when_adopted() {
    let account = management_account().await;
    account
        .configure_emulator(serde_json::json!({"CreateSeconds": 0.2, "UnreachableSeconds": 0.2}));
    let units = make_units(&account, &["/ml", "/ml/prod"]).await;
    let id = make_account(&account, &units, "prod", "/ml").await;
    let email = format!("prod+{}@example.com", account.id);
    let dir = tempfile::tempdir().unwrap();
    let write = |adopt: bool| {
        std::fs::write(
            dir.path().join("estate.yaml"),
            "apiVersion: estate/v1\nkind: Estate\nmetadata: {name: team}\nspec:\n  homeRegion: us-east-1\n  regions: [us-east-1]\n  include: [org.yaml]\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("org.yaml"),
            format!(
                "apiVersion: estate/v1\nkind: Organization\nmetadata: {{name: org}}\nspec:\n  units:\n    - path: /ml\n    - path: /ml/prod\n  accounts:\n    - {{name: prod, email: {email}, unit: /ml/prod{}}}\n",
                if adopt { ", adopt: true" } else { "" }
            ),
        )
        .unwrap();
    };
    let parent_of = || async {
        aws_sdk_organizations::Client::new(&account.config)
            .list_parents()
            .child_id(&id)
            .send()
            .await
            .unwrap()
            .parents
            .unwrap()[0]
            .id
            .clone()
            .unwrap()
    };

    write(false);
    let (code, plan) = plan_json(&account, dir.path(), &[]);
    assert_eq!(code, 2, "{plan}");
    assert_eq!(plan["changes"], serde_json::json!([]), "{plan}");
    assert_eq!(plan["findings"][0]["kind"], "conflict", "{plan}");
    assert_eq!(plan["findings"][0]["address"], "account:prod", "{plan}");
    let (code, out) = apply_all(&account, dir.path(), &[]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(parent_of().await, units["/ml"], "not moved");

    write(true);
    let (code, plan) = plan_json(&account, dir.path(), &[]);
    assert_eq!(code, 2, "{plan}");
    assert_eq!(plan["findings"], serde_json::json!([]), "{plan}");
    assert_eq!(plan["changes"][0]["address"], "account:prod", "{plan}");
    assert_eq!(plan["changes"][0]["hint"], "adopt", "{plan}");
    let (code, out) = apply_all(&account, dir.path(), &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(parent_of().await, units["/ml/prod"]);
    let tags = aws_sdk_organizations::Client::new(&account.config)
        .list_tags_for_resource()
        .resource_id(&id)
        .send()
        .await
        .unwrap()
        .tags
        .unwrap_or_default();
    assert!(
        tags.iter()
            .any(|t| t.key() == "estate:managed-by" && t.value() == "team"),
        "{tags:?}"
    );
    write(false);
    let (code, plan) = plan_json(&account, dir.path(), &[]);
    assert_eq!(code, 0, "{plan}");
}
