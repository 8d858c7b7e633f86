//! Service Catalog portfolios end to end against the emulator: the examples plan, apply and
//! re-plan empty; manifest edits plan exactly their change and converge; out-of-band changes
//! show as drift and are healed by apply.

use crate::emulator::{TestAccount, management_account};
use crate::plan::{copy_dir, run};
use aws_sdk_servicecatalog::Client;
use aws_sdk_servicecatalog::types::PrincipalType;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;

const LAB: &str = "examples/environments/self-service-lab";
const DISPLAY_NAME: &str = "Data Scientists - Sample Portfolio";

fn example(path: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(Path::new(path), dir.path());
    dir
}

fn apply(account: &TestAccount, dir: &Path, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["apply", ".", "--auto-approve"];
    args.extend_from_slice(extra);
    run(account, dir, &args)
}

/// `estate <command> . --format json`, with its exit code.
fn json_of(account: &TestAccount, dir: &Path, command: &str) -> (i32, Value) {
    let (code, out, err) = run(account, dir, &[command, ".", "--format", "json"]);
    assert!(code == 0 || code == 2, "exit {code}: {out}{err}");
    (code, serde_json::from_str(&out).unwrap())
}

fn assert_converged(account: &TestAccount, dir: &Path) {
    let (code, out, err) = run(account, dir, &["plan", "."]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.trim_end()
            .ends_with("No changes. Live state matches the manifest."),
        "{out}"
    );
    let (code, out, err) = run(account, dir, &["drift", "."]);
    assert_eq!(code, 0, "{out}{err}");
}

/// Applies the lab and checks it converged.
fn apply_lab(account: &TestAccount, dir: &Path) {
    let (code, out, err) = apply(account, dir, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert_converged(account, dir);
}

fn edit(dir: &Path, file: &str, from: &str, to: &str) {
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{file} has no `{from}`");
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

/// Acting in a member account, as estate does.
async fn member(account: &TestAccount, id: &str) -> Client {
    Client::new(&account.member(id).await)
}

/// The id of the lab's portfolio in the tools account.
async fn portfolio_id(tools: &Client) -> String {
    let listed = tools.list_portfolios().send().await.unwrap();
    let found: Vec<&str> = listed
        .portfolio_details()
        .iter()
        .filter(|p| p.display_name() == Some(DISPLAY_NAME))
        .filter_map(|p| p.id())
        .collect();
    let [id] = found.as_slice() else {
        panic!("one portfolio named {DISPLAY_NAME:?}, found {found:?}");
    };
    id.to_string()
}

/// (address, action, before, after) of every change: what a reviewer reads.
fn changes(plan: &Value) -> Vec<(String, String, Value, Value)> {
    plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["address"].as_str().unwrap().to_string(),
                c["action"].as_str().unwrap().to_string(),
                c["before"].clone(),
                c["after"].clone(),
            )
        })
        .collect()
}

/// Ids that differ per run replaced by placeholders: account ids by `<name>`, Service
/// Catalog ids by their kind.
fn stable(text: &str, ids: &BTreeMap<String, String>) -> String {
    // Catalog ids first: an account id could otherwise be found inside a UUID.
    let re = regex::Regex::new(
        r"\b(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|(pa|tag|cons|port|prod)-[a-z0-9]{13})\b",
    )
    .unwrap();
    let mut text = re
        .replace_all(text, |c: &regex::Captures| match c.get(1) {
            Some(kind) => format!("<{}-id>", kind.as_str()),
            None => "<id>".to_string(),
        })
        .into_owned();
    for (name, id) in ids {
        text = text.replace(id.as_str(), &format!("<{name}>"));
    }
    text
}

#[tokio::test]
async fn the_ml_platform_example_applies_with_its_portfolio_and_replans_empty() {
    let account = management_account().await;
    let dir = example("examples/environments/ml-platform");
    let (code, out, err) = run(&account, dir.path(), &["plan", "."]);
    assert_eq!(code, 2, "{out}{err}");
    let (code, out, err) = apply(&account, dir.path(), &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("portfolio:data-scientists: CreatePortfolio"),
        "{err}"
    );
    let (code, out, err) = apply(&account, dir.path(), &["--env", "production"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_converged(&account, dir.path());

    let ids = account.ids().await;
    let tools = member(&account, &ids["tools"]).await;
    let portfolio = portfolio_id(&tools).await;
    let data_science = member(&account, &ids["data-science"]).await;
    let accepted = data_science
        .list_accepted_portfolio_shares()
        .send()
        .await
        .unwrap();
    assert!(
        accepted
            .portfolio_details()
            .iter()
            .any(|p| p.id() == Some(portfolio.as_str()))
    );
}

#[tokio::test]
async fn the_self_service_lab_plans_applies_and_is_really_there() {
    let account = management_account().await;
    let dir = example(LAB);
    let (code, plan) = json_of(&account, dir.path(), "plan");
    assert_eq!(code, 2);
    let planned: Vec<(String, String)> = changes(&plan)
        .into_iter()
        .map(|(address, action, _, _)| (address, action))
        .collect();
    let expected = [
        "unit:/lab",
        "account:tools",
        "account:data-science",
        "account:stage",
        "portfolio:data-scientists",
        "product:data-scientists/secure-sagemaker",
        "productVersion:data-scientists/secure-sagemaker/v1",
        "constraint:data-scientists/secure-sagemaker/launch",
        "tagOption:data-scientists/cost-center=6534",
        "tagOption:data-scientists/cost-center=8457",
        "principal:data-scientists/arn:aws:iam::(known after apply):role/PlatformAdmin",
        "share:data-scientists/account/data-science",
        "principal:data-scientists@data-science/role/DataScientist",
    ];
    assert_eq!(
        planned,
        expected
            .iter()
            .map(|a| (a.to_string(), "create".to_string()))
            .collect::<Vec<_>>()
    );

    apply_lab(&account, dir.path());

    let ids = account.ids().await;
    let tools = member(&account, &ids["tools"]).await;
    let portfolio = portfolio_id(&tools).await;
    let described = tools
        .describe_portfolio()
        .id(&portfolio)
        .send()
        .await
        .unwrap();
    let detail = described.portfolio_detail().unwrap();
    assert_eq!(detail.provider_name(), Some("Central IT"));
    let mut options: Vec<(&str, &str)> = described
        .tag_options()
        .iter()
        .map(|o| (o.key().unwrap(), o.value().unwrap()))
        .collect();
    options.sort();
    assert_eq!(options, [("cost-center", "6534"), ("cost-center", "8457")]);

    let products = tools
        .search_products_as_admin()
        .portfolio_id(&portfolio)
        .send()
        .await
        .unwrap();
    let [product] = products.product_view_details() else {
        panic!("one product: {products:?}");
    };
    let summary = product.product_view_summary().unwrap();
    assert_eq!(summary.name(), Some("Amazon Secure Sagemaker"));
    let product_id = summary.product_id().unwrap();
    let versions = tools
        .list_provisioning_artifacts()
        .product_id(product_id)
        .send()
        .await
        .unwrap();
    let versions: Vec<(&str, bool)> = versions
        .provisioning_artifact_details()
        .iter()
        .map(|v| (v.name().unwrap(), v.active().unwrap()))
        .collect();
    assert_eq!(versions, [("v1", true)]);

    let constraints = tools
        .list_constraints_for_portfolio()
        .portfolio_id(&portfolio)
        .send()
        .await
        .unwrap();
    let [constraint] = constraints.constraint_details() else {
        panic!("one constraint: {constraints:?}");
    };
    assert_eq!(constraint.r#type(), Some("LAUNCH"));
    assert_eq!(constraint.product_id(), Some(product_id));
    let parameters = tools
        .describe_constraint()
        .id(constraint.constraint_id().unwrap())
        .send()
        .await
        .unwrap();
    let parameters: Value =
        serde_json::from_str(parameters.constraint_parameters().unwrap()).unwrap();
    assert_eq!(parameters, json!({"LocalRoleName": "SCLaunchRole"}));

    let principals = tools
        .list_principals_for_portfolio()
        .portfolio_id(&portfolio)
        .send()
        .await
        .unwrap();
    let principals: Vec<&str> = principals
        .principals()
        .iter()
        .filter_map(|p| p.principal_arn())
        .collect();
    assert_eq!(
        principals,
        [format!("arn:aws:iam::{}:role/PlatformAdmin", ids["tools"])]
    );
    let shared = tools
        .list_portfolio_access()
        .portfolio_id(&portfolio)
        .send()
        .await
        .unwrap();
    assert_eq!(shared.account_ids(), [ids["data-science"].as_str()]);

    // The recipient accepted the share and has its own principal on it.
    let data_science = member(&account, &ids["data-science"]).await;
    let accepted = data_science
        .list_accepted_portfolio_shares()
        .send()
        .await
        .unwrap();
    let accepted: Vec<&str> = accepted
        .portfolio_details()
        .iter()
        .filter_map(|p| p.id())
        .collect();
    assert_eq!(accepted, [portfolio.as_str()]);
    let principals = data_science
        .list_principals_for_portfolio()
        .portfolio_id(&portfolio)
        .send()
        .await
        .unwrap();
    let principals: Vec<&str> = principals
        .principals()
        .iter()
        .filter_map(|p| p.principal_arn())
        .collect();
    assert_eq!(
        principals,
        [format!(
            "arn:aws:iam::{}:role/DataScientist",
            ids["data-science"]
        )]
    );
}

/// Plans an edit of the applied lab: the JSON plan's changes, and the text plan snapshotted;
/// then applies it and checks it converged.
async fn edit_plans_and_converges(
    account: &TestAccount,
    dir: &Path,
    snapshot: &str,
) -> Vec<(String, String, Value, Value)> {
    let (code, plan) = json_of(account, dir, "plan");
    assert_eq!(code, 2, "{plan}");
    let (code, text, _) = run(account, dir, &["plan", "."]);
    assert_eq!(code, 2);
    let ids = account.ids().await;
    insta::assert_snapshot!(snapshot, stable(&text, &ids));
    let (code, out, err) = apply(account, dir, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert_converged(account, dir);
    // What was planned, ids made stable for comparison.
    let plan: Value = serde_json::from_str(&stable(&plan.to_string(), &ids)).unwrap();
    changes(&plan)
}

#[tokio::test]
async fn a_changed_tag_option_value_is_one_delete_and_one_create() {
    let account = management_account().await;
    let dir = example(LAB);
    apply_lab(&account, dir.path());
    edit(dir.path(), "portfolio.yaml", "\"8457\"", "\"9999\"");

    let planned = edit_plans_and_converges(&account, dir.path(), "portfolio-tag-option").await;
    assert_eq!(
        planned,
        [
            (
                "tagOption:data-scientists/cost-center=9999".to_string(),
                "create".to_string(),
                Value::Null,
                json!({"portfolio": "data-scientists", "portfolioId": "<id>", "key": "cost-center", "value": "9999"}),
            ),
            (
                "tagOption:data-scientists/cost-center=8457".to_string(),
                "delete".to_string(),
                json!({"portfolio": "data-scientists", "portfolioId": "<id>", "key": "cost-center", "value": "8457", "id": "<tag-id>"}),
                Value::Null,
            ),
        ]
    );
    let ids = account.ids().await;
    let tools = member(&account, &ids["tools"]).await;
    let portfolio = portfolio_id(&tools).await;
    let described = tools
        .describe_portfolio()
        .id(&portfolio)
        .send()
        .await
        .unwrap();
    let mut values: Vec<&str> = described
        .tag_options()
        .iter()
        .filter_map(|o| o.value())
        .collect();
    values.sort();
    assert_eq!(values, ["6534", "9999"]);
}

#[tokio::test]
async fn a_new_version_is_added_and_a_removed_one_deprecated_never_deleted() {
    let account = management_account().await;
    let dir = example(LAB);
    apply_lab(&account, dir.path());
    edit(
        dir.path(),
        "portfolio.yaml",
        "description: First release}",
        "description: First release}\n        - {name: v2, template: templates/secure-sagemaker.yaml, description: Second release}",
    );

    let planned = edit_plans_and_converges(&account, dir.path(), "portfolio-version-added").await;
    assert_eq!(
        planned,
        [(
            "productVersion:data-scientists/secure-sagemaker/v2".to_string(),
            "create".to_string(),
            Value::Null,
            json!({"portfolio": "data-scientists", "product": "secure-sagemaker", "productId": "<id>", "name": "v2", "description": "Second release", "active": true}),
        )]
    );

    // v1 leaves the manifest: deprecated, kept for what was launched from it.
    edit(
        dir.path(),
        "portfolio.yaml",
        "        - {name: v1, template: templates/secure-sagemaker.yaml, description: First release}\n",
        "",
    );
    let planned =
        edit_plans_and_converges(&account, dir.path(), "portfolio-version-deprecated").await;
    let [(address, action, before, after)] = planned.as_slice() else {
        panic!("one change: {planned:?}");
    };
    assert_eq!(
        address,
        "productVersion:data-scientists/secure-sagemaker/v1"
    );
    assert_eq!(action, "update");
    assert_eq!(before["active"], true);
    assert_eq!(after["active"], false);

    let ids = account.ids().await;
    let tools = member(&account, &ids["tools"]).await;
    let portfolio = portfolio_id(&tools).await;
    let products = tools
        .search_products_as_admin()
        .portfolio_id(&portfolio)
        .send()
        .await
        .unwrap();
    let product = products.product_view_details()[0]
        .product_view_summary()
        .and_then(|s| s.product_id())
        .unwrap()
        .to_string();
    let versions = tools
        .list_provisioning_artifacts()
        .product_id(&product)
        .send()
        .await
        .unwrap();
    let mut versions: Vec<(&str, bool)> = versions
        .provisioning_artifact_details()
        .iter()
        .map(|v| (v.name().unwrap(), v.active().unwrap()))
        .collect();
    versions.sort();
    assert_eq!(versions, [("v1", false), ("v2", true)]);

    // Both versions' template went to the hub's bucket, once, under its content address.
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&account.member(&ids["tools"]).await)
            .force_path_style(true)
            .build(),
    );
    let bucket = format!("estate-templates-{}-us-east-1", ids["tools"]);
    let objects = s3.list_objects_v2().bucket(&bucket).send().await.unwrap();
    let keys: Vec<String> = objects
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect();
    let text = std::fs::read(dir.path().join("templates/secure-sagemaker.yaml")).unwrap();
    use sha2::Digest;
    let key = format!(
        "templates/{}.template",
        hex::encode(sha2::Sha256::digest(&text))
    );
    assert_eq!(keys, std::slice::from_ref(&key));
    let body = s3
        .get_object()
        .bucket(&bucket)
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        body.body.collect().await.unwrap().into_bytes().as_ref(),
        text
    );
}

#[tokio::test]
async fn a_new_recipient_account_is_created_shared_with_and_accepts() {
    let account = management_account().await;
    let dir = example(LAB);
    apply_lab(&account, dir.path());
    edit(
        dir.path(),
        "organization.yaml",
        "    - {name: stage,",
        "    - {name: research, email: lab-research@example.com, unit: /lab}\n    - {name: stage,",
    );
    edit(
        dir.path(),
        "portfolio.yaml",
        "shareWith: {accounts: [data-science]}",
        "shareWith: {accounts: [data-science, research]}",
    );

    let planned = edit_plans_and_converges(&account, dir.path(), "portfolio-new-recipient").await;
    let summary: Vec<(&str, &str)> = planned
        .iter()
        .map(|(address, action, _, _)| (address.as_str(), action.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("account:research", "create"),
            ("share:data-scientists/account/research", "create"),
            (
                "principal:data-scientists@research/role/DataScientist",
                "create"
            ),
        ]
    );
    assert_eq!(
        planned[1].3,
        json!({"portfolio": "data-scientists", "portfolioId": "<id>", "account": null, "accountName": "research", "accepted": true})
    );
    assert_eq!(
        planned[2].3["principal"],
        "arn:aws:iam::(known after apply):role/DataScientist"
    );

    let ids = account.ids().await;
    let tools = member(&account, &ids["tools"]).await;
    let portfolio = portfolio_id(&tools).await;
    let research = member(&account, &ids["research"]).await;
    let accepted = research
        .list_accepted_portfolio_shares()
        .send()
        .await
        .unwrap();
    assert!(
        accepted
            .portfolio_details()
            .iter()
            .any(|p| p.id() == Some(portfolio.as_str()))
    );
    let principals = research
        .list_principals_for_portfolio()
        .portfolio_id(&portfolio)
        .send()
        .await
        .unwrap();
    let principals: Vec<&str> = principals
        .principals()
        .iter()
        .filter_map(|p| p.principal_arn())
        .collect();
    assert_eq!(
        principals,
        [format!(
            "arn:aws:iam::{}:role/DataScientist",
            ids["research"]
        )]
    );
}

#[tokio::test]
async fn portfolio_and_product_attributes_change_in_place_and_converge() {
    let account = management_account().await;
    let dir = example(LAB);
    apply_lab(&account, dir.path());
    // A tag added, the portfolio's description and the product's support email removed.
    edit(
        dir.path(),
        "portfolio.yaml",
        "  description: Self-service products for data scientists, owned by the tools account\n",
        "  tags: {team: ml}\n",
    );
    edit(
        dir.path(),
        "portfolio.yaml",
        "      supportEmail: ml-platform@example.com\n",
        "",
    );
    let (code, plan) = json_of(&account, dir.path(), "plan");
    assert_eq!(code, 2);
    let planned = changes(&plan);
    let summary: Vec<(&str, &str)> = planned
        .iter()
        .map(|(address, action, _, _)| (address.as_str(), action.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("portfolio:data-scientists", "update"),
            ("product:data-scientists/secure-sagemaker", "update"),
        ]
    );
    assert_eq!(
        plan["changes"][0]["reason"], "changed: description, tags",
        "{plan}"
    );
    assert_eq!(planned[0].3["tags"]["team"], "ml");
    assert!(planned[0].3["description"].is_null());
    assert_eq!(plan["changes"][1]["reason"], "changed: supportEmail");
    let (code, out, err) = apply(&account, dir.path(), &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert_converged(&account, dir.path());

    // The tag's value changes, then the tag leaves the manifest: removed from AWS too.
    edit(
        dir.path(),
        "portfolio.yaml",
        "tags: {team: ml}",
        "tags: {team: ai}",
    );
    let (code, out, err) = apply(&account, dir.path(), &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert_converged(&account, dir.path());
    edit(dir.path(), "portfolio.yaml", "  tags: {team: ai}\n", "");
    let (code, plan) = json_of(&account, dir.path(), "plan");
    assert_eq!(code, 2);
    assert_eq!(plan["changes"][0]["before"]["tags"]["team"], "ai", "{plan}");
    let (code, out, err) = apply(&account, dir.path(), &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert_converged(&account, dir.path());

    let ids = account.ids().await;
    let tools = member(&account, &ids["tools"]).await;
    let portfolio = portfolio_id(&tools).await;
    let described = tools
        .describe_portfolio()
        .id(&portfolio)
        .send()
        .await
        .unwrap();
    let mut keys: Vec<&str> = described.tags().iter().map(|t| t.key()).collect();
    keys.sort();
    assert_eq!(keys, ["estate:managed-by", "estate:portfolio"]);
}

/// `estate drift --format json` shows exactly these (address, action); apply heals it.
fn drift_shows_and_apply_heals(account: &TestAccount, dir: &Path, expected: &[(&str, &str)]) {
    let (code, drift) = json_of(account, dir, "drift");
    assert_eq!(code, 2, "{drift}");
    let found: Vec<(String, String)> = changes(&drift)
        .into_iter()
        .map(|(address, action, _, _)| (address, action))
        .collect();
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(found, expected, "{drift}");
    let (code, out, err) = apply(account, dir, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert_converged(account, dir);
}

#[tokio::test]
async fn a_principal_disassociated_out_of_band_is_drift_and_apply_heals_it() {
    let account = management_account().await;
    let dir = example(LAB);
    apply_lab(&account, dir.path());
    let ids = account.ids().await;
    let tools = member(&account, &ids["tools"]).await;
    let portfolio = portfolio_id(&tools).await;
    let admin = format!("arn:aws:iam::{}:role/PlatformAdmin", ids["tools"]);
    tools
        .disassociate_principal_from_portfolio()
        .portfolio_id(&portfolio)
        .principal_arn(&admin)
        .principal_type(PrincipalType::Iam)
        .send()
        .await
        .unwrap();

    let address = format!("principal:data-scientists/{admin}");
    drift_shows_and_apply_heals(&account, dir.path(), &[(&address, "create")]);
    let principals = tools
        .list_principals_for_portfolio()
        .portfolio_id(&portfolio)
        .send()
        .await
        .unwrap();
    assert_eq!(principals.principals().len(), 1);
}

#[tokio::test]
async fn a_share_deleted_out_of_band_is_drift_and_apply_heals_it() {
    let account = management_account().await;
    let dir = example(LAB);
    apply_lab(&account, dir.path());
    let ids = account.ids().await;
    let tools = member(&account, &ids["tools"]).await;
    let portfolio = portfolio_id(&tools).await;
    tools
        .delete_portfolio_share()
        .portfolio_id(&portfolio)
        .account_id(&ids["data-science"])
        .send()
        .await
        .unwrap();

    // Unshared, the recipient's acceptance and principals are gone from its view too.
    drift_shows_and_apply_heals(
        &account,
        dir.path(),
        &[
            ("share:data-scientists/account/data-science", "create"),
            (
                "principal:data-scientists@data-science/role/DataScientist",
                "create",
            ),
        ],
    );
    let data_science = member(&account, &ids["data-science"]).await;
    let accepted = data_science
        .list_accepted_portfolio_shares()
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.portfolio_details().len(), 1);
}

#[tokio::test]
async fn a_member_hub_shares_with_a_unit_as_delegated_administrator() {
    let account = management_account().await;
    let dir = example("examples/environments/ml-platform");
    edit(
        dir.path(),
        "portfolios.yaml",
        "shareWith: {accounts: [data-science]}",
        "shareWith: {accounts: [data-science], units: [/ml/data-science]}",
    );
    let (code, plan) = json_of(&account, dir.path(), "plan");
    assert_eq!(code, 2);
    let addresses: Vec<&str> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["address"].as_str())
        .filter(|a| a.starts_with("share:"))
        .collect();
    assert_eq!(
        addresses,
        [
            "share:aws-organizations-access",
            "share:aws-organizations-delegated-admin/tools",
            "share:data-scientists/account/data-science",
            "share:data-scientists/unit/ml/data-science",
        ]
    );
    let (code, out, err) = apply(&account, dir.path(), &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("RegisterDelegatedAdministrator"), "{err}");
    let (code, out, err) = apply(&account, dir.path(), &["--env", "production"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_converged(&account, dir.path());

    let ids = account.ids().await;
    let admins = aws_sdk_organizations::Client::new(&account.config)
        .list_delegated_administrators()
        .service_principal("servicecatalog.amazonaws.com")
        .send()
        .await
        .unwrap();
    let admins: Vec<&str> = admins
        .delegated_administrators()
        .iter()
        .filter_map(|a| a.id())
        .collect();
    assert_eq!(admins, [ids["tools"].as_str()]);
    let tools = member(&account, &ids["tools"]).await;
    let portfolio = portfolio_id(&tools).await;
    let shares = tools
        .describe_portfolio_shares()
        .portfolio_id(&portfolio)
        .r#type(aws_sdk_servicecatalog::types::DescribePortfolioShareType::OrganizationalUnit)
        .send()
        .await
        .unwrap();
    let org = aws_sdk_organizations::Client::new(&account.config);
    let ml = org
        .list_organizational_units_for_parent()
        .parent_id(&account.root_id)
        .send()
        .await
        .unwrap();
    let ml = ml.organizational_units()[0].id().unwrap().to_string();
    let units = org
        .list_organizational_units_for_parent()
        .parent_id(&ml)
        .send()
        .await
        .unwrap();
    let data_science = units
        .organizational_units()
        .iter()
        .find(|u| u.name() == Some("data-science"))
        .and_then(|u| u.id())
        .unwrap();
    let shared: Vec<&str> = shares
        .portfolio_share_details()
        .iter()
        .filter_map(|s| s.principal_id())
        .collect();
    assert_eq!(shared, [data_science]);

    // The unit leaves shareWith: unshared (asynchronously, waited for), and converged.
    edit(
        dir.path(),
        "portfolios.yaml",
        "shareWith: {accounts: [data-science], units: [/ml/data-science]}",
        "shareWith: {accounts: [data-science]}",
    );
    let (code, plan) = json_of(&account, dir.path(), "plan");
    assert_eq!(code, 2);
    let planned: Vec<(&str, &str)> = crate::plan::change_fields(&plan, "address", "action");
    let unshare = format!("share:data-scientists/unit/{data_science}");
    assert_eq!(planned, [(unshare.as_str(), "delete")]);
    let (code, out, err) = apply(&account, dir.path(), &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("share COMPLETED"),
        "the unshare was waited for: {err}"
    );
    assert_converged(&account, dir.path());
}
