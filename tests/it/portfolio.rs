//! Service Catalog portfolios end to end against the emulator: the examples plan, apply and
//! re-plan empty; manifest edits plan exactly their change and converge; out-of-band changes
//! show as drift and are healed by apply.

use crate::support::builders::{edit, example, self_service_lab};
use crate::support::catalog::{accepted, principals, shares};
use crate::support::emulator::{TestAccount, management_account, ok, s3, stack_resources};
use crate::support::run::{apply, change_fields, json_of, run};
use aws_sdk_servicecatalog::Client;
use aws_sdk_servicecatalog::types::{
    DescribePortfolioShareType, PortfolioShareType, PrincipalType,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;

const LAB: &str = "cross-account-mlops-lab";
const DISPLAY_NAME: &str = "Data Scientists - Sample Portfolio";

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

/// Acting in a member account, as estate does.
async fn member(account: &TestAccount, id: &str) -> Client {
    Client::new(&account.member(id).await)
}

/// The id of the lab's portfolio in the tools account.
async fn portfolio_id(tools: &Client) -> String {
    portfolio_named(tools, DISPLAY_NAME).await
}

/// The id of the one portfolio of the hub `sc` acts in with this display name.
async fn portfolio_named(sc: &Client, display_name: &str) -> String {
    let listed = sc.list_portfolios().send().await.unwrap();
    let found: Vec<&str> = listed
        .portfolio_details()
        .iter()
        .filter(|p| p.display_name() == Some(display_name))
        .filter_map(|p| p.id())
        .collect();
    let [id] = found.as_slice() else {
        panic!("one portfolio named {display_name:?}, found {found:?}");
    };
    id.to_string()
}

/// (name, active) of a product's versions, as AWS lists them.
async fn versions(tools: &Client, product: &str) -> Vec<(String, bool)> {
    let listed = ok(tools
        .list_provisioning_artifacts()
        .product_id(product)
        .send()
        .await);
    listed
        .provisioning_artifact_details()
        .iter()
        .map(|v| (v.name().unwrap().to_string(), v.active().unwrap()))
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
    let dir = example("ml-platform");
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
    assert!(accepted(&data_science, None).await.contains(&portfolio));

    // A no-op plan enters only the hub and the recipient of its share, never every account.
    let stats = plan_stats(&account, dir.path());
    assert_eq!(stats.get("STS.AssumeRole"), Some(&2), "{stats:?}");
    // Apply recorded the hub on the organization root.
    let root_tags = aws_sdk_organizations::Client::new(&account.config)
        .list_tags_for_resource()
        .resource_id(&account.root_id)
        .send()
        .await
        .unwrap();
    let record = format!("estate-hub:ml-platform:{}", ids["tools"]);
    assert!(
        root_tags.tags().iter().any(|t| t.key() == record),
        "{root_tags:?}"
    );
    // A hub holding portfolios from before the record (none on the root) is recorded by an
    // apply even with nothing to change.
    let orgs = aws_sdk_organizations::Client::new(&account.config);
    orgs.untag_resource()
        .resource_id(&account.root_id)
        .tag_keys(&record)
        .send()
        .await
        .unwrap();
    let (code, out, err) = apply(&account, dir.path(), &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("No changes"), "{out}");
    let root_tags = orgs
        .list_tags_for_resource()
        .resource_id(&account.root_id)
        .send()
        .await
        .unwrap();
    assert!(
        root_tags.tags().iter().any(|t| t.key() == record),
        "{root_tags:?}"
    );

    // The portfolio leaves the manifest: the hub apply recorded is still read, so the
    // portfolio is found (an orphan, as prune is off), not forgotten.
    edit(dir.path(), "estate.yaml", ", portfolios.yaml]", "]");
    let (code, plan) = json_of(&account, dir.path(), "plan", &[]);
    assert_eq!(code, 0, "{plan}");
    let orphans: Vec<&str> = plan["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "orphan")
        .filter_map(|f| f["address"].as_str())
        .collect();
    assert_eq!(orphans, ["portfolio:data-scientists"], "{plan}");
}

/// AWS calls of `estate plan . --stats`, by operation.
fn plan_stats(account: &TestAccount, dir: &Path) -> BTreeMap<String, u64> {
    let (code, out, err) = run(account, dir, &["plan", ".", "--format", "json", "--stats"]);
    assert!(code == 0 || code == 2, "{out}{err}");
    let plan: Value = serde_json::from_str(&out).unwrap();
    serde_json::from_value(plan["stats"].clone()).unwrap()
}

#[tokio::test]
async fn a_manifest_without_portfolios_never_calls_service_catalog_or_enters_an_account() {
    let account = management_account().await;
    let dir = example("ml-platform");
    edit(dir.path(), "estate.yaml", ", portfolios.yaml]", "]");
    // Applied, so every manifest account exists and could be entered.
    let (code, out, err) = apply(&account, dir.path(), &[]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = apply(&account, dir.path(), &["--env", "production"]);
    assert_eq!(code, 0, "{out}{err}");
    let stats = plan_stats(&account, dir.path());
    assert_eq!(account.ids().await.len(), 5, "{stats:?}");
    let entered: Vec<&String> = stats
        .keys()
        .filter(|op| op.starts_with("ServiceCatalog.") || *op == "STS.AssumeRole")
        .collect();
    assert!(entered.is_empty(), "{stats:?}");
    // The read costs exactly its floor, which `--stats` prints beside every operation.
    let (code, out, err) = run(&account, dir.path(), &["plan", ".", "--stats"]);
    assert_eq!(code, 0, "{out}{err}");
    let table: Vec<Vec<&str>> = err
        .lines()
        .skip_while(|l| !l.starts_with("AWS API calls"))
        .skip(2)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(table.len() > 10, "{err}");
    for row in table {
        assert_eq!(row[1], row[2], "calls and floor of {}: {err}", row[0]);
    }
}

/// Issue 13's S1, the whole lab: it validates, plans, applies on a fresh organization and
/// re-plans empty; the portfolio is shared and accepted, and the pipeline's upload bucket is
/// in the tools account, as AWS has them.
#[tokio::test]
async fn the_cross_account_mlops_lab_plans_applies_and_is_really_there() {
    let account = management_account().await;
    let dir = example(LAB);
    let (code, out, err) = run(&account, dir.path(), &["validate", "."]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, plan) = json_of(&account, dir.path(), "plan", &[]);
    assert_eq!(code, 2);
    let planned = change_fields(&plan, "address", "action");
    let expected = [
        "unit:/lab",
        "account:tools",
        "account:data-science",
        "account:stage",
        // The roles the pipeline's self-managed stack sets need, in the accounts they reach.
        "prerequisite:organizations-access",
        "prerequisite:administration-role",
        "prerequisite:execution-role",
        "prerequisite:execution-role/stage (known after apply)",
        "prerequisite:execution-role/tools (known after apply)",
        "portfolio:data-scientists",
        "product:data-scientists/secure-sagemaker",
        "productVersion:data-scientists/secure-sagemaker/v1",
        "constraint:data-scientists/secure-sagemaker/launch",
        "tagOption:data-scientists/cost-center=6534",
        "tagOption:data-scientists/cost-center=8457",
        "principal:data-scientists/arn:aws:iam::(known after apply):role/PlatformAdmin",
        "share:data-scientists/account/data-science",
        "principal:data-scientists@data-science/role/DataScientist",
        // The pipeline deploys in tools, then stage; its source and tools parts come with
        // the last stage.
        "stackSet:pipeline-mlops-tools",
        "stackInstance:pipeline-mlops-tools/tools (known after apply)/us-east-1",
        "stackSet:pipeline-mlops-stage",
        "stackInstance:pipeline-mlops-stage/stage (known after apply)/us-east-1",
        "stackSet:pipeline-mlops-source",
        "stackInstance:pipeline-mlops-source/tools (known after apply)/us-east-1",
        "stackSet:pipeline-mlops",
        "stackInstance:pipeline-mlops/tools (known after apply)/us-east-1",
        "pipeline:mlops",
    ];
    assert_eq!(
        planned,
        expected.iter().map(|a| (*a, "create")).collect::<Vec<_>>()
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
    assert_eq!(
        versions(&tools, product_id).await,
        [("v1".to_string(), true)]
    );

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

    assert_eq!(
        principals(&tools, &portfolio).await,
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
    assert_eq!(
        accepted(&data_science, None).await,
        std::slice::from_ref(&portfolio)
    );
    assert_eq!(
        principals(&data_science, &portfolio).await,
        [format!(
            "arn:aws:iam::{}:role/DataScientist",
            ids["data-science"]
        )]
    );

    // The bucket the notebook uploads the model to, in the tools account, named with its id
    // (S3's names are global) and encrypted with the pipeline's models key.
    let s3 = s3(&account.member(&ids["tools"]).await);
    let bucket = format!("mlops-lab-models-{}", ids["tools"]);
    let listed = ok(s3.list_buckets().send().await);
    assert!(
        listed.buckets().iter().any(|b| b.name() == Some(&bucket)),
        "{listed:?}"
    );
    let encryption = ok(s3.get_bucket_encryption().bucket(&bucket).send().await);
    let rule = encryption
        .server_side_encryption_configuration()
        .and_then(|c| c.rules().first())
        .and_then(|r| r.apply_server_side_encryption_by_default())
        .unwrap_or_else(|| panic!("{encryption:?}"));
    assert_eq!(rule.sse_algorithm().as_str(), "aws:kms");
}

/// The lab's self-service half applied and converged in a fresh organization, with the handles the
/// checks after an edit need.
struct Lab {
    account: TestAccount,
    dir: tempfile::TempDir,
}

impl Lab {
    async fn applied() -> Lab {
        let account = management_account().await;
        let dir = self_service_lab();
        apply_lab(&account, dir.path());
        Lab { account, dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The organization's account ids by name, the tools account and the lab's portfolio id
    /// in it, as they are now.
    async fn hub(&self) -> (BTreeMap<String, String>, Client, String) {
        let ids = self.account.ids().await;
        let tools = member(&self.account, &ids["tools"]).await;
        let portfolio = portfolio_id(&tools).await;
        (ids, tools, portfolio)
    }
}

/// One manifest edit of the applied lab and what it must plan, then applied to convergence.
struct Step {
    /// (file, text, replacement): the first `text` of `file` replaced.
    edits: &'static [(&'static str, &'static str, &'static str)],
    /// The text plan's snapshot, ids made stable.
    snapshot: Option<&'static str>,
    /// (address, action) of every change the JSON plan holds, in order.
    planned: Option<&'static [(&'static str, &'static str)]>,
    /// (change index, JSON pointer into the change, value) of the plan, ids made stable
    /// (`<id>`, `<tag-id>`...); a missing field reads as null.
    checks: Vec<(usize, &'static str, Value)>,
}

impl Step {
    fn plans(&self) -> bool {
        self.snapshot.is_some() || self.planned.is_some() || !self.checks.is_empty()
    }
}

/// A named sequence of edits of the applied lab.
struct EditCase {
    name: &'static str,
    steps: Vec<Step>,
}

const V2: &str = "description: First release}\n        - {name: v2, template: templates/secure-sagemaker.yaml, description: Second release}";

fn edit_cases() -> Vec<EditCase> {
    vec![
        EditCase {
            name: "a changed tag option value is one delete and one create",
            steps: vec![Step {
                edits: &[("portfolio.yaml", "\"8457\"", "\"9999\"")],
                snapshot: Some("portfolio-tag-option"),
                planned: Some(&[
                    ("tagOption:data-scientists/cost-center=9999", "create"),
                    ("tagOption:data-scientists/cost-center=8457", "delete"),
                ]),
                checks: vec![
                    (0, "/before", Value::Null),
                    (
                        0,
                        "/after",
                        json!({"portfolio": "data-scientists", "portfolioId": "<id>", "key": "cost-center", "value": "9999"}),
                    ),
                    (
                        1,
                        "/before",
                        json!({"portfolio": "data-scientists", "portfolioId": "<id>", "key": "cost-center", "value": "8457", "id": "<tag-id>"}),
                    ),
                    (1, "/after", Value::Null),
                ],
            }],
        },
        EditCase {
            name: "a new version is added and a removed one deprecated, never deleted",
            steps: vec![
                Step {
                    edits: &[("portfolio.yaml", "description: First release}", V2)],
                    snapshot: Some("portfolio-version-added"),
                    planned: Some(&[(
                        "productVersion:data-scientists/secure-sagemaker/v2",
                        "create",
                    )]),
                    checks: vec![
                        (0, "/before", Value::Null),
                        (
                            0,
                            "/after",
                            json!({"portfolio": "data-scientists", "product": "secure-sagemaker", "productId": "<id>", "name": "v2", "description": "Second release", "active": true}),
                        ),
                    ],
                },
                // v1 leaves the manifest: deprecated, kept for what was launched from it.
                Step {
                    edits: &[(
                        "portfolio.yaml",
                        "        - {name: v1, template: templates/secure-sagemaker.yaml, description: First release}\n",
                        "",
                    )],
                    snapshot: Some("portfolio-version-deprecated"),
                    planned: Some(&[(
                        "productVersion:data-scientists/secure-sagemaker/v1",
                        "update",
                    )]),
                    checks: vec![
                        (0, "/before/active", json!(true)),
                        (0, "/after/active", json!(false)),
                    ],
                },
            ],
        },
        EditCase {
            name: "a new recipient account is created, shared with, and accepts",
            steps: vec![Step {
                edits: &[
                    (
                        "organization.yaml",
                        "    - {name: stage,",
                        "    - {name: research, email: lab-research@example.com, unit: /lab}\n    - {name: stage,",
                    ),
                    (
                        "portfolio.yaml",
                        "shareWith: {accounts: [data-science]}",
                        "shareWith: {accounts: [data-science, research]}",
                    ),
                ],
                snapshot: Some("portfolio-new-recipient"),
                planned: Some(&[
                    ("account:research", "create"),
                    ("share:data-scientists/account/research", "create"),
                    (
                        "principal:data-scientists@research/role/DataScientist",
                        "create",
                    ),
                ]),
                checks: vec![
                    (
                        1,
                        "/after",
                        json!({"portfolio": "data-scientists", "portfolioId": "<id>", "account": null, "accountName": "research", "accepted": true, "shareTagOptions": true}),
                    ),
                    (
                        2,
                        "/after/principal",
                        json!("arn:aws:iam::(known after apply):role/DataScientist"),
                    ),
                ],
            }],
        },
        EditCase {
            name: "portfolio and product attributes change in place and converge",
            steps: vec![
                // A tag added, the portfolio's description and the product's support email
                // removed.
                Step {
                    edits: &[
                        (
                            "portfolio.yaml",
                            "  description: Self-service products for data scientists, owned by the tools account\n",
                            "  tags: {team: ml}\n",
                        ),
                        (
                            "portfolio.yaml",
                            "      supportEmail: ml-platform@example.com\n",
                            "",
                        ),
                    ],
                    snapshot: None,
                    planned: Some(&[
                        ("portfolio:data-scientists", "update"),
                        ("product:data-scientists/secure-sagemaker", "update"),
                    ]),
                    checks: vec![
                        (0, "/reason", json!("changed: description, tags")),
                        (0, "/after/tags/team", json!("ml")),
                        (0, "/after/description", Value::Null),
                        (1, "/reason", json!("changed: supportEmail")),
                    ],
                },
                // The tag's value changes, then the tag leaves the manifest: removed from AWS
                // too.
                Step {
                    edits: &[("portfolio.yaml", "tags: {team: ml}", "tags: {team: ai}")],
                    snapshot: None,
                    planned: None,
                    checks: Vec::new(),
                },
                Step {
                    edits: &[("portfolio.yaml", "  tags: {team: ai}\n", "")],
                    snapshot: None,
                    planned: None,
                    checks: vec![(0, "/before/tags/team", json!("ai"))],
                },
            ],
        },
    ]
}

/// Runs the edit case named `name` on a freshly applied lab: each step's edits are planned
/// (JSON checked, text snapshotted), applied, and converge.
async fn edit_case(name: &str) -> Lab {
    let case = edit_cases()
        .into_iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no edit case {name:?}"));
    let lab = Lab::applied().await;
    let (account, dir) = (&lab.account, lab.path());
    for (i, step) in case.steps.iter().enumerate() {
        let at = format!("{name}, step {}", i + 1);
        for (file, from, to) in step.edits {
            edit(dir, file, from, to);
        }
        if step.plans() {
            let (code, plan) = json_of(account, dir, "plan", &[]);
            assert_eq!(code, 2, "{at}: {plan}");
            let ids = account.ids().await;
            if let Some(snapshot) = step.snapshot {
                let (code, text, _) = run(account, dir, &["plan", "."]);
                assert_eq!(code, 2, "{at}");
                insta::assert_snapshot!(snapshot, stable(&text, &ids));
            }
            // What was planned, ids made stable for comparison.
            let plan: Value = serde_json::from_str(&stable(&plan.to_string(), &ids)).unwrap();
            if let Some(planned) = step.planned {
                assert_eq!(change_fields(&plan, "address", "action"), planned, "{at}");
            }
            for (index, pointer, expected) in &step.checks {
                let change = &plan["changes"][index];
                let found = change.pointer(pointer).unwrap_or(&Value::Null);
                assert_eq!(found, expected, "{at}: change {index} at {pointer}: {plan}");
            }
        }
        let (code, out, err) = apply(account, dir, &[]);
        assert_eq!(code, 0, "{at}: {out}{err}");
        assert_converged(account, dir);
    }
    lab
}

#[tokio::test]
async fn a_changed_tag_option_value_is_one_delete_and_one_create() {
    let lab = edit_case("a changed tag option value is one delete and one create").await;
    let (_, tools, portfolio) = lab.hub().await;
    let described = ok(tools.describe_portfolio().id(&portfolio).send().await);
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
    let lab = edit_case("a new version is added and a removed one deprecated, never deleted").await;
    let (ids, tools, portfolio) = lab.hub().await;
    let products = ok(tools
        .search_products_as_admin()
        .portfolio_id(&portfolio)
        .send()
        .await);
    let product = products.product_view_details()[0]
        .product_view_summary()
        .and_then(|s| s.product_id())
        .unwrap()
        .to_string();
    let mut versions = versions(&tools, &product).await;
    versions.sort();
    assert_eq!(
        versions,
        [("v1".to_string(), false), ("v2".to_string(), true)]
    );

    // Both versions' template went to the hub's bucket, once, under its content address.
    let s3 = s3(&lab.account.member(&ids["tools"]).await);
    let bucket = format!("estate-templates-{}-us-east-1", ids["tools"]);
    let objects = ok(s3.list_objects_v2().bucket(&bucket).send().await);
    let keys: Vec<String> = objects
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect();
    let text = std::fs::read(lab.path().join("templates/secure-sagemaker.yaml")).unwrap();
    use sha2::Digest;
    let key = format!(
        "templates/{}.template",
        hex::encode(sha2::Sha256::digest(&text))
    );
    assert_eq!(keys, std::slice::from_ref(&key));
    let body = ok(s3.get_object().bucket(&bucket).key(&key).send().await);
    assert_eq!(
        body.body.collect().await.unwrap().into_bytes().as_ref(),
        text
    );
}

#[tokio::test]
async fn a_new_recipient_account_is_created_shared_with_and_accepts() {
    let lab = edit_case("a new recipient account is created, shared with, and accepts").await;
    let (ids, _, portfolio) = lab.hub().await;
    let research = member(&lab.account, &ids["research"]).await;
    assert!(accepted(&research, None).await.contains(&portfolio));
    assert_eq!(
        principals(&research, &portfolio).await,
        [format!(
            "arn:aws:iam::{}:role/DataScientist",
            ids["research"]
        )]
    );
}

#[tokio::test]
async fn portfolio_and_product_attributes_change_in_place_and_converge() {
    let lab = edit_case("portfolio and product attributes change in place and converge").await;
    let (_, tools, portfolio) = lab.hub().await;
    let described = ok(tools.describe_portfolio().id(&portfolio).send().await);
    let mut keys: Vec<&str> = described.tags().iter().map(|t| t.key()).collect();
    keys.sort();
    assert_eq!(keys, ["estate:managed-by", "estate:portfolio"]);
}

/// What someone does to the applied lab outside estate.
#[derive(Clone, Copy, Debug, PartialEq)]
enum OutOfBand {
    /// The hub's PlatformAdmin principal disassociated from the portfolio.
    DisassociateHubPrincipal,
    /// The portfolio's share with data-science deleted.
    DeleteShare,
}

/// A named out-of-band change, and the (address, action) drift shows for it (`<tools>` the
/// tools account's id).
struct DriftCase {
    name: &'static str,
    change: OutOfBand,
    drift: &'static [(&'static str, &'static str)],
}

const DRIFT_CASES: &[DriftCase] = &[
    DriftCase {
        name: "a principal disassociated out of band",
        change: OutOfBand::DisassociateHubPrincipal,
        drift: &[(
            "principal:data-scientists/arn:aws:iam::<tools>:role/PlatformAdmin",
            "create",
        )],
    },
    // Unshared, the recipient's acceptance and principals are gone from its view too.
    DriftCase {
        name: "a share deleted out of band",
        change: OutOfBand::DeleteShare,
        drift: &[
            ("share:data-scientists/account/data-science", "create"),
            (
                "principal:data-scientists@data-science/role/DataScientist",
                "create",
            ),
        ],
    },
];

/// The drift case of `change` on a freshly applied lab: `estate drift --format json` shows
/// exactly its (address, action), apply heals it, and AWS holds what the lab wants again.
async fn drift_case(change: OutOfBand) {
    let case = DRIFT_CASES
        .iter()
        .find(|c| c.change == change)
        .unwrap_or_else(|| panic!("no drift case of {change:?}"));
    let name = case.name;
    let lab = Lab::applied().await;
    let (account, dir) = (&lab.account, lab.path());
    let (ids, tools, portfolio) = lab.hub().await;
    let admin = format!("arn:aws:iam::{}:role/PlatformAdmin", ids["tools"]);
    match change {
        OutOfBand::DisassociateHubPrincipal => {
            ok(tools
                .disassociate_principal_from_portfolio()
                .portfolio_id(&portfolio)
                .principal_arn(&admin)
                .principal_type(PrincipalType::Iam)
                .send()
                .await);
        }
        OutOfBand::DeleteShare => {
            ok(tools
                .delete_portfolio_share()
                .portfolio_id(&portfolio)
                .account_id(&ids["data-science"])
                .send()
                .await);
        }
    }

    let (code, drift) = json_of(account, dir, "drift", &[]);
    assert_eq!(code, 2, "{name}: {drift}");
    let expected: Vec<(String, String)> = case
        .drift
        .iter()
        .map(|(a, b)| (a.replace("<tools>", &ids["tools"]), b.to_string()))
        .collect();
    let found: Vec<(String, String)> = change_fields(&drift, "address", "action")
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(found, expected, "{name}: {drift}");
    let (code, out, err) = apply(account, dir, &[]);
    assert_eq!(code, 0, "{name}: {out}{err}");
    assert_converged(account, dir);

    match change {
        OutOfBand::DisassociateHubPrincipal => {
            assert_eq!(principals(&tools, &portfolio).await.len(), 1, "{name}");
        }
        OutOfBand::DeleteShare => {
            let data_science = member(account, &ids["data-science"]).await;
            assert_eq!(accepted(&data_science, None).await.len(), 1, "{name}");
        }
    }
}

#[tokio::test]
async fn a_principal_disassociated_out_of_band_is_drift_and_apply_heals_it() {
    drift_case(OutOfBand::DisassociateHubPrincipal).await;
}

#[tokio::test]
async fn a_share_deleted_out_of_band_is_drift_and_apply_heals_it() {
    drift_case(OutOfBand::DeleteShare).await;
}

#[tokio::test]
async fn a_member_hub_shares_with_a_unit_as_delegated_administrator() {
    let account = management_account().await;
    let dir = example("ml-platform");
    edit(
        dir.path(),
        "portfolios.yaml",
        "shareWith: {accounts: [data-science]}",
        "shareWith: {accounts: [data-science], units: [/ml/data-science]}",
    );
    let (code, plan) = json_of(&account, dir.path(), "plan", &[]);
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
    let data_science = account.unit_id("/ml/data-science").await;
    let shared: Vec<String> = shares(
        &tools,
        &portfolio,
        DescribePortfolioShareType::OrganizationalUnit,
    )
    .await
    .into_iter()
    .map(|(unit, _)| unit)
    .collect();
    assert_eq!(shared, std::slice::from_ref(&data_science));

    // The unit leaves shareWith: unshared (asynchronously, waited for), and converged.
    edit(
        dir.path(),
        "portfolios.yaml",
        "shareWith: {accounts: [data-science], units: [/ml/data-science]}",
        "shareWith: {accounts: [data-science]}",
    );
    let (code, plan) = json_of(&account, dir.path(), "plan", &[]);
    assert_eq!(code, 2);
    let planned: Vec<(&str, &str)> = change_fields(&plan, "address", "action");
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

/// (ARN, type) of the principals associated with `portfolio`, as the account `sc` acts in
/// sees them.
async fn typed_principals(sc: &Client, portfolio: &str) -> Vec<(String, PrincipalType)> {
    let out = ok(sc
        .list_principals_for_portfolio()
        .portfolio_id(portfolio)
        .send()
        .await);
    out.principals()
        .iter()
        .map(|p| {
            (
                p.principal_arn().unwrap().to_string(),
                p.principal_type().unwrap().clone(),
            )
        })
        .collect()
}

/// (key, value) of the tag options the account `sc` acts in sees on `portfolio`, sorted.
async fn tag_options_seen(sc: &Client, portfolio: &str) -> Vec<(String, String)> {
    let described = ok(sc.describe_portfolio().id(portfolio).send().await);
    let mut options: Vec<(String, String)> = described
        .tag_options()
        .iter()
        .map(|o| (o.key().unwrap().to_string(), o.value().unwrap().to_string()))
        .collect();
    options.sort();
    options
}

/// The tags of the portfolio's one product, as DescribeProductAsAdmin gives them in the hub.
async fn product_tags(tools: &Client, portfolio: &str) -> BTreeMap<String, String> {
    let found = ok(tools
        .search_products_as_admin()
        .portfolio_id(portfolio)
        .send()
        .await);
    let [product] = found.product_view_details() else {
        panic!("one product: {found:?}");
    };
    let id = product
        .product_view_summary()
        .unwrap()
        .product_id()
        .unwrap();
    let described = ok(tools.describe_product_as_admin().id(id).send().await);
    described
        .tags()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect()
}

/// Issue 13's S2: a portfolio shared with a unit gives every account of the unit its
/// name-pattern principal and its tag options (as the recipient sees them through the AWS
/// API, estate never entering it), and its product carries SageMaker Studio's visibility tag.
/// An account of the unit that is also an account-share recipient keeps its own principal
/// beside the pattern, which estate leaves alone there. Turning principal sharing off and
/// changing the tags later updates both in place.
#[tokio::test]
async fn a_unit_share_gives_the_units_accounts_the_principal_names_and_tag_options() {
    let account = management_account().await;
    let dir = example("ml-platform");
    let pattern = "arn:aws:iam:::role/DataScientist-*";
    edit(
        dir.path(),
        "organization.yaml",
        "    - {name: staging,",
        "    - {name: analyst, email: ml-analyst@example.com, unit: /ml/data-science}\n    - {name: staging,",
    );
    edit(
        dir.path(),
        "portfolios.yaml",
        "  shareWith: {accounts: [data-science]}\n",
        &format!(
            "  principals: [\"{pattern}\", \"arn:aws:iam::${{account:tools}}:role/PlatformAdmin\"]\n  shareWith: {{accounts: [data-science], units: [/ml/data-science]}}\n"
        ),
    );
    edit(
        dir.path(),
        "portfolios.yaml",
        "      versions: [{name: v1, template: templates/secure-notebook.yaml}]\n",
        "      versions: [{name: v1, template: templates/secure-notebook.yaml}]\n      tags: {sagemaker:studio-visibility: true}\n",
    );
    let (code, plan) = json_of(&account, dir.path(), "plan", &[]);
    assert_eq!(code, 2, "{plan}");
    let share = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == "share:data-scientists/unit/ml/data-science")
        .unwrap_or_else(|| panic!("a unit share: {plan}"));
    assert_eq!(share["after"]["shareTagOptions"], true, "{share}");
    assert_eq!(share["after"]["sharePrincipals"], true, "{share}");
    let (code, out, err) = apply(&account, dir.path(), &[]);
    assert_eq!(code, 0, "{out}{err}");
    // The share was made with both flags, not fixed up by a later apply.
    let ids = account.ids().await;
    let tools = member(&account, &ids["tools"]).await;
    let portfolio = portfolio_id(&tools).await;
    let made = ok(tools
        .describe_portfolio_shares()
        .portfolio_id(&portfolio)
        .r#type(DescribePortfolioShareType::OrganizationalUnit)
        .send()
        .await);
    let [made] = made.portfolio_share_details() else {
        panic!("one unit share: {made:?}");
    };
    assert!(
        made.share_principals() && made.share_tag_options(),
        "{made:?}"
    );
    let (code, out, err) = apply(&account, dir.path(), &["--env", "production"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_converged(&account, dir.path());

    let tags = product_tags(&tools, &portfolio).await;
    assert_eq!(
        tags.get("sagemaker:studio-visibility").map(String::as_str),
        Some("true"),
        "{tags:?}"
    );

    // In the unit's account, through the AWS API: the share is there to accept (shared
    // through AWS Organizations, nothing to import), and with it the hub's name pattern (not
    // its IAM principal, which names the hub's own role) and the tag options.
    let recipient = member(&account, &ids["analyst"]).await;
    ok(recipient
        .accept_portfolio_share()
        .portfolio_id(&portfolio)
        .portfolio_share_type(PortfolioShareType::AwsOrganizations)
        .send()
        .await);
    assert_eq!(
        typed_principals(&recipient, &portfolio).await,
        [(pattern.to_string(), PrincipalType::IamPattern)]
    );
    let cost_centers = [
        ("cost-center".to_string(), "6534".to_string()),
        ("cost-center".to_string(), "8457".to_string()),
    ];
    assert_eq!(tag_options_seen(&recipient, &portfolio).await, cost_centers);
    // The account-share recipient in the unit: its own principal, and the hub's pattern,
    // which is not estate's to disassociate there (the re-plan is clean).
    let data_science = member(&account, &ids["data-science"]).await;
    let mut seen = typed_principals(&data_science, &portfolio).await;
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        seen,
        [
            (
                format!("arn:aws:iam::{}:role/DataScientist", ids["data-science"]),
                PrincipalType::Iam
            ),
            (pattern.to_string(), PrincipalType::IamPattern),
        ]
    );
    // What the recipient did is not estate's to change.
    assert_converged(&account, dir.path());

    // Principal sharing off and the product's tags changed: both updated in place.
    edit(
        dir.path(),
        "portfolios.yaml",
        "units: [/ml/data-science]}\n",
        "units: [/ml/data-science]}\n  sharePrincipals: false\n",
    );
    edit(
        dir.path(),
        "portfolios.yaml",
        "tags: {sagemaker:studio-visibility: true}",
        "tags: {team: ml}",
    );
    let (code, plan) = json_of(&account, dir.path(), "plan", &[]);
    assert_eq!(code, 2, "{plan}");
    assert_eq!(
        change_fields(&plan, "address", "action"),
        [
            ("product:data-scientists/secure-notebook", "update"),
            ("share:data-scientists/unit/ml/data-science", "update"),
        ]
    );
    let (code, out, err) = apply(&account, dir.path(), &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("UpdatePortfolioShare SharePrincipals=false"),
        "{err}"
    );
    assert_converged(&account, dir.path());
    assert!(typed_principals(&recipient, &portfolio).await.is_empty());
    assert_eq!(tag_options_seen(&recipient, &portfolio).await, cost_centers);
    let tags = product_tags(&tools, &portfolio).await;
    assert_eq!(tags.get("team").map(String::as_str), Some("ml"), "{tags:?}");
    assert!(
        !tags.contains_key("sagemaker:studio-visibility"),
        "{tags:?}"
    );
}

/// Issue 13's S2, the secure multi-account ML environment: it validates, plans, applies on a
/// fresh organization (staging, then production past its gate) and re-plans empty. Through
/// the AWS API: the IAM roles and VPC stack sets are in the staging and production accounts,
/// and a team account of the shared unit sees the Studio-visible product with the name
/// pattern principal and the tag options, estate never entering it.
#[tokio::test]
async fn the_secure_ml_environment_deploys_roles_and_vpcs_and_shares_studio_projects_by_unit() {
    let account = management_account().await;
    let dir = example("secure-ml-environment");
    let (code, out, err) = run(&account, dir.path(), &["validate", "."]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, plan) = json_of(&account, dir.path(), "plan", &[]);
    assert_eq!(code, 2, "{plan}");
    let planned = change_fields(&plan, "address", "action");
    for address in [
        "stackSet:env-iam-roles-staging",
        "stackSet:env-vpc-staging",
        "stackSet:env-iam-roles-production",
        "stackSet:env-vpc-production",
        "product:mlops-projects/model-registry",
        "share:mlops-projects/unit/ml/teams",
    ] {
        assert!(
            planned.contains(&(address, "create")),
            "{address}: {planned:?}"
        );
    }
    let (code, out, err) = apply(&account, dir.path(), &[]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = apply(&account, dir.path(), &["--env", "production"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_converged(&account, dir.path());

    let ids = account.ids().await;
    for (env, id) in [
        ("staging", &ids["staging"]),
        ("production", &ids["production"]),
    ] {
        let roles = stack_resources(&account, id, &format!("env-iam-roles-{env}")).await;
        assert!(
            roles.contains("SageMakerModelExecutionRole"),
            "{env}: {roles:?}"
        );
        let vpc = stack_resources(&account, id, &format!("env-vpc-{env}")).await;
        for r in [
            "Vpc",
            "PrivateSubnetA",
            "PrivateSubnetB",
            "S3Endpoint",
            "SageMakerApiEndpoint",
        ] {
            assert!(vpc.contains(r), "{env}: {r} in {vpc:?}");
        }
    }

    let hub = member(&account, &ids["data-science"]).await;
    let portfolio = portfolio_named(
        &hub,
        "Products for creating MLOps projects in sm-mlops data science environment",
    )
    .await;
    let tags = product_tags(&hub, &portfolio).await;
    assert_eq!(
        tags.get("sagemaker:studio-visibility").map(String::as_str),
        Some("true"),
        "{tags:?}"
    );
    // The team's account accepts the unit share (AWS Organizations sharing, nothing to
    // import) and sees the product, the pattern and the tag options.
    let team = member(&account, &ids["team-a"]).await;
    ok(team
        .accept_portfolio_share()
        .portfolio_id(&portfolio)
        .portfolio_share_type(PortfolioShareType::AwsOrganizations)
        .send()
        .await);
    let products = ok(team
        .search_products_as_admin()
        .portfolio_id(&portfolio)
        .send()
        .await);
    let names: Vec<&str> = products
        .product_view_details()
        .iter()
        .filter_map(|p| p.product_view_summary().and_then(|s| s.name()))
        .collect();
    assert_eq!(names, ["sm-mlops MLOps Model Registry v1.0"]);
    assert_eq!(
        typed_principals(&team, &portfolio).await,
        [(
            "arn:aws:iam:::role/sm-mlops-studio-execution-*".to_string(),
            PrincipalType::IamPattern
        )]
    );
    let types = ["dev", "prod", "staging"].map(|v| ("EnvironmentType".to_string(), v.to_string()));
    assert_eq!(tag_options_seen(&team, &portfolio).await, types);
    // What the recipient did is not estate's to change.
    let (code, out, err) = run(&account, dir.path(), &["plan", "."]);
    assert_eq!(code, 0, "{out}{err}");
}
