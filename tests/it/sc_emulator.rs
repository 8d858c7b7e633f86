//! Service Catalog on the emulator (tests/emulator/servicecatalog_ext.py): the calls estate makes,
//! from the hub account to a recipient and back, with AWS's error codes, per account and region.

use crate::support::catalog::{accepted, principals, shares};
use crate::support::emulator::{TestAccount, management_account, ok};
use aws_config::SdkConfig;
use aws_sdk_servicecatalog::Client;
use aws_sdk_servicecatalog::error::ProvideErrorMetadata;
use aws_sdk_servicecatalog::operation::create_product::CreateProductOutput;
use aws_sdk_servicecatalog::types::{
    AccessStatus, DescribePortfolioShareType, ListTagOptionsFilters, OrganizationNode,
    OrganizationNodeType, PortfolioShareType, PrincipalType, ProductType,
    ProvisioningArtifactProperties, ProvisioningArtifactType, ShareStatus, Status, Tag,
};
use aws_sdk_sts::config::Region;

const NO_PORTFOLIO: &str = "port-doesnotexist";
const LAUNCH: &str = r#"{"LocalRoleName":"SCLaunchRole"}"#;

/// The AWS error code of a call that must fail.
fn code<T: std::fmt::Debug, E: ProvideErrorMetadata>(result: Result<T, E>) -> String {
    match result {
        Ok(value) => panic!("expected an error, got {value:?}"),
        Err(e) => e.code().unwrap_or("(no code)").to_string(),
    }
}

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build().unwrap()
}

fn version(name: &str) -> ProvisioningArtifactProperties {
    ProvisioningArtifactProperties::builder()
        .name(name)
        .description(format!("template {name}"))
        .info(
            "LoadTemplateFromURL",
            format!("https://s3.amazonaws.com/templates/training-{name}.yaml"),
        )
        // No such object: these tests are about the catalog, not the templates.
        .disable_template_validation(true)
        .r#type(ProvisioningArtifactType::CloudFormationTemplate)
        .build()
}

/// A new member account in `management`'s organization, and a configuration acting in it
/// (its OrganizationAccountAccessRole, assumed with the management account's credentials).
async fn member_account(management: &TestAccount, name: &str) -> (String, SdkConfig) {
    let id = management
        .create_account(name, &format!("{name}@example.com"))
        .await;
    let config = management.member(&id).await;
    (id, config)
}

/// The id of the product a CreateProduct made.
fn product_id(created: &CreateProductOutput) -> String {
    created
        .product_view_detail()
        .and_then(|v| v.product_view_summary())
        .and_then(|s| s.product_id())
        .unwrap()
        .to_string()
}

async fn new_portfolio(sc: &Client, name: &str) -> String {
    let created = ok(sc
        .create_portfolio()
        .display_name(name)
        .provider_name("platform")
        .tags(tag("estate:managed-by", "test"))
        .send()
        .await);
    created
        .portfolio_detail()
        .and_then(|p| p.id())
        .unwrap()
        .to_string()
}

/// Asks DescribePortfolioShareStatus until the share's work is COMPLETED (AWS runs it in the
/// background; the emulator answers IN_PROGRESS first).
async fn completed(sc: &Client, token: &str) {
    for _ in 0..5 {
        let status = ok(sc
            .describe_portfolio_share_status()
            .portfolio_share_token(token)
            .send()
            .await);
        if status.status() == Some(&ShareStatus::Completed) {
            return;
        }
    }
    panic!("share {token} never completed");
}

async fn access_status(sc: &Client) -> AccessStatus {
    let out = ok(sc.get_aws_organizations_access_status().send().await);
    out.access_status().cloned().expect("an AccessStatus")
}

#[tokio::test]
async fn a_portfolio_goes_from_the_hub_to_a_recipient_and_is_torn_down() {
    let hub = management_account().await;
    let sc = Client::new(&hub.config);
    let (member_id, member_config) = member_account(&hub, "data-science").await;
    let member = Client::new(&member_config);

    // The portfolio, updated in place.
    let portfolio = new_portfolio(&sc, "ML platform").await;
    ok(sc
        .update_portfolio()
        .id(&portfolio)
        .description("Models and pipelines")
        .add_tags(tag("team", "ml"))
        .send()
        .await);
    let listed = ok(sc.list_portfolios().send().await);
    assert!(
        listed
            .portfolio_details()
            .iter()
            .any(|p| p.id() == Some(portfolio.as_str()))
    );

    // A product with v1; v2 added, v1 deactivated.
    let created = ok(sc
        .create_product()
        .name("training")
        .owner("ml")
        .product_type(ProductType::CloudFormationTemplate)
        .tags(tag("estate:product", "training"))
        .provisioning_artifact_parameters(version("v1"))
        .send()
        .await);
    let product = product_id(&created);
    let v1 = created.provisioning_artifact_detail().unwrap();
    assert_eq!(v1.name(), Some("v1"));
    assert_eq!(v1.active(), Some(true));
    let v1 = v1.id().unwrap().to_string();
    let v2 = ok(sc
        .create_provisioning_artifact()
        .product_id(&product)
        .parameters(version("v2"))
        .send()
        .await);
    assert_eq!(v2.status(), Some(&Status::Available));
    let v2 = v2
        .provisioning_artifact_detail()
        .and_then(|a| a.id())
        .unwrap();
    ok(sc
        .update_provisioning_artifact()
        .product_id(&product)
        .provisioning_artifact_id(&v1)
        .active(false)
        .send()
        .await);
    let versions = ok(sc
        .list_provisioning_artifacts()
        .product_id(&product)
        .send()
        .await);
    let versions: Vec<(&str, &str, bool)> = versions
        .provisioning_artifact_details()
        .iter()
        .map(|a| {
            assert!(a.created_time().is_some());
            assert_eq!(
                a.r#type(),
                Some(&ProvisioningArtifactType::CloudFormationTemplate)
            );
            (a.id().unwrap(), a.name().unwrap(), a.active().unwrap())
        })
        .collect();
    assert_eq!(versions, [(v1.as_str(), "v1", false), (v2, "v2", true)]);

    ok(sc
        .update_product()
        .id(&product)
        .owner("ml-team")
        .description("Trains models")
        .distributor("platform")
        .support_email("ml@example.com")
        .send()
        .await);
    let described = ok(sc.describe_product_as_admin().id(&product).send().await);
    let summary = described
        .product_view_detail()
        .and_then(|v| v.product_view_summary())
        .unwrap();
    assert_eq!(summary.owner(), Some("ml-team"));
    assert_eq!(summary.short_description(), Some("Trains models"));
    assert_eq!(summary.distributor(), Some("platform"));
    assert_eq!(summary.support_email(), Some("ml@example.com"));
    assert_eq!(described.provisioning_artifact_summaries().len(), 2);
    assert_eq!(described.tags(), [tag("estate:product", "training")]);

    // In the portfolio, with one launch constraint.
    ok(sc
        .associate_product_with_portfolio()
        .product_id(&product)
        .portfolio_id(&portfolio)
        .send()
        .await);
    let found = ok(sc
        .search_products_as_admin()
        .portfolio_id(&portfolio)
        .send()
        .await);
    let found: Vec<_> = found
        .product_view_details()
        .iter()
        .filter_map(|v| v.product_view_summary()?.product_id())
        .collect();
    assert_eq!(found, [product.as_str()]);
    let launch = || {
        sc.create_constraint()
            .portfolio_id(&portfolio)
            .product_id(&product)
            .r#type("LAUNCH")
            .parameters(LAUNCH)
    };
    let constraint = ok(launch().send().await);
    let constraint = constraint
        .constraint_detail()
        .and_then(|c| c.constraint_id())
        .unwrap()
        .to_string();
    assert_eq!(code(launch().send().await), "DuplicateResourceException");
    let listed = ok(sc
        .list_constraints_for_portfolio()
        .portfolio_id(&portfolio)
        .send()
        .await);
    let listed: Vec<_> = listed
        .constraint_details()
        .iter()
        .map(|c| {
            (
                c.constraint_id().unwrap(),
                c.r#type().unwrap(),
                c.product_id().unwrap(),
            )
        })
        .collect();
    assert_eq!(listed, [(constraint.as_str(), "LAUNCH", product.as_str())]);
    let described = ok(sc.describe_constraint().id(&constraint).send().await);
    assert_eq!(described.constraint_parameters(), Some(LAUNCH));
    assert_eq!(described.status(), Some(&Status::Available));

    // A tag option on the portfolio.
    let new_option = || sc.create_tag_option().key("cost-center").value("ml");
    let option = ok(new_option().send().await);
    let option = option
        .tag_option_detail()
        .and_then(|o| o.id())
        .unwrap()
        .to_string();
    assert_eq!(
        code(new_option().send().await),
        "DuplicateResourceException"
    );
    ok(sc
        .associate_tag_option_with_resource()
        .resource_id(&portfolio)
        .tag_option_id(&option)
        .send()
        .await);
    let described = ok(sc.describe_portfolio().id(&portfolio).send().await);
    assert_eq!(
        described.portfolio_detail().and_then(|p| p.description()),
        Some("Models and pipelines")
    );
    let mut tags: Vec<_> = described
        .tags()
        .iter()
        .map(|t| (t.key(), t.value()))
        .collect();
    tags.sort();
    assert_eq!(tags, [("estate:managed-by", "test"), ("team", "ml")]);
    let options: Vec<_> = described
        .tag_options()
        .iter()
        .map(|o| (o.id().unwrap(), o.key().unwrap(), o.value().unwrap()))
        .collect();
    assert_eq!(options, [(option.as_str(), "cost-center", "ml")]);
    let filtered = ok(sc
        .list_tag_options()
        .filters(ListTagOptionsFilters::builder().key("cost-center").build())
        .send()
        .await);
    assert_eq!(filtered.tag_option_details().len(), 1);

    // A principal in the hub; the share, accepted by the member, which adds its own principal.
    let hub_role = format!("arn:aws:iam::{}:role/DataScientist", hub.id);
    let member_role = format!("arn:aws:iam::{member_id}:role/DataScientist");
    ok(sc
        .associate_principal_with_portfolio()
        .portfolio_id(&portfolio)
        .principal_arn(&hub_role)
        .principal_type(PrincipalType::Iam)
        .send()
        .await);
    ok(sc
        .create_portfolio_share()
        .portfolio_id(&portfolio)
        .account_id(&member_id)
        .send()
        .await);
    let access = ok(sc
        .list_portfolio_access()
        .portfolio_id(&portfolio)
        .send()
        .await);
    assert_eq!(access.account_ids(), [member_id.as_str()]);
    assert_eq!(
        shares(&sc, &portfolio, DescribePortfolioShareType::Account).await,
        [(member_id.clone(), false)]
    );
    assert_eq!(
        code(
            member
                .accept_portfolio_share()
                .portfolio_id(NO_PORTFOLIO)
                .send()
                .await
        ),
        "ResourceNotFoundException"
    );
    ok(member
        .accept_portfolio_share()
        .portfolio_id(&portfolio)
        .send()
        .await);
    let imported = ok(member.list_accepted_portfolio_shares().send().await);
    let imported: Vec<_> = imported
        .portfolio_details()
        .iter()
        .map(|p| (p.id().unwrap(), p.arn().unwrap()))
        .collect();
    assert_eq!(imported.len(), 1);
    assert_eq!(imported[0].0, portfolio);
    assert!(imported[0].1.contains(&hub.id), "{}", imported[0].1);
    ok(member
        .associate_principal_with_portfolio()
        .portfolio_id(&portfolio)
        .principal_arn(&member_role)
        .principal_type(PrincipalType::Iam)
        .send()
        .await);
    assert_eq!(
        principals(&member, &portfolio).await,
        [member_role.as_str()]
    );
    assert_eq!(principals(&sc, &portfolio).await, [hub_role.as_str()]);
    assert_eq!(
        shares(&sc, &portfolio, DescribePortfolioShareType::Account).await,
        [(member_id.clone(), true)]
    );

    // Torn down in the order AWS insists on: nothing in use is deleted.
    assert_eq!(
        code(sc.delete_portfolio().id(&portfolio).send().await),
        "ResourceInUseException"
    );
    ok(member
        .disassociate_principal_from_portfolio()
        .portfolio_id(&portfolio)
        .principal_arn(&member_role)
        .principal_type(PrincipalType::Iam)
        .send()
        .await);
    ok(sc
        .delete_portfolio_share()
        .portfolio_id(&portfolio)
        .account_id(&member_id)
        .send()
        .await);
    assert!(
        accepted(&member, Some(PortfolioShareType::Imported))
            .await
            .is_empty()
    );
    assert_eq!(
        code(
            member
                .list_principals_for_portfolio()
                .portfolio_id(&portfolio)
                .send()
                .await
        ),
        "ResourceNotFoundException",
        "an unshared portfolio is gone from the recipient"
    );
    ok(sc
        .disassociate_principal_from_portfolio()
        .portfolio_id(&portfolio)
        .principal_arn(&hub_role)
        .principal_type(PrincipalType::Iam)
        .send()
        .await);
    let disassociate = || {
        sc.disassociate_product_from_portfolio()
            .portfolio_id(&portfolio)
            .product_id(&product)
    };
    assert_eq!(
        code(disassociate().send().await),
        "ResourceInUseException",
        "the launch constraint goes first"
    );
    ok(sc.delete_constraint().id(&constraint).send().await);
    ok(disassociate().send().await);
    ok(sc
        .disassociate_tag_option_from_resource()
        .resource_id(&portfolio)
        .tag_option_id(&option)
        .send()
        .await);
    ok(sc.delete_tag_option().id(&option).send().await);
    let delete_version = |id: &str| {
        sc.delete_provisioning_artifact()
            .product_id(&product)
            .provisioning_artifact_id(id)
    };
    ok(delete_version(&v1).send().await);
    assert_eq!(
        code(delete_version(v2).send().await),
        "InvalidParametersException",
        "a product keeps at least one version"
    );
    ok(sc.delete_product().id(&product).send().await);
    ok(sc.delete_portfolio().id(&portfolio).send().await);
    assert_eq!(
        code(sc.describe_portfolio().id(&portfolio).send().await),
        "ResourceNotFoundException"
    );
    let listed = ok(sc.list_portfolios().send().await);
    assert!(listed.portfolio_details().is_empty());
}

#[tokio::test]
async fn unit_shares_need_organizations_access_and_reach_accounts_in_the_unit() {
    let hub = management_account().await;
    let sc = Client::new(&hub.config);
    let (member_id, member_config) = member_account(&hub, "staging").await;
    let member = Client::new(&member_config);
    let org = aws_sdk_organizations::Client::new(&hub.config);
    let unit = ok(org
        .create_organizational_unit()
        .parent_id(&hub.root_id)
        .name("workloads")
        .send()
        .await);
    let unit = unit
        .organizational_unit()
        .and_then(|u| u.id())
        .unwrap()
        .to_string();
    ok(org
        .move_account()
        .account_id(&member_id)
        .source_parent_id(&hub.root_id)
        .destination_parent_id(&unit)
        .send()
        .await);
    let portfolio = new_portfolio(&sc, "Serving").await;
    let share = || {
        sc.create_portfolio_share()
            .portfolio_id(&portfolio)
            .organization_node(
                OrganizationNode::builder()
                    .r#type(OrganizationNodeType::OrganizationalUnit)
                    .value(&unit)
                    .build(),
            )
    };

    assert_eq!(access_status(&sc).await, AccessStatus::Disabled);
    assert_eq!(code(share().send().await), "InvalidStateException");
    assert_eq!(
        code(member.enable_aws_organizations_access().send().await),
        "OperationNotSupportedException",
        "only the management account may enable it"
    );
    ok(sc.enable_aws_organizations_access().send().await);
    assert_eq!(access_status(&sc).await, AccessStatus::Enabled);
    let services = ok(org.list_aws_service_access_for_organization().send().await);
    assert!(
        services
            .enabled_service_principals()
            .iter()
            .any(|s| s.service_principal() == Some("servicecatalog.amazonaws.com"))
    );

    let token = ok(share().send().await);
    assert!(token.portfolio_share_token().is_some());
    assert_eq!(
        shares(
            &sc,
            &portfolio,
            DescribePortfolioShareType::OrganizationalUnit
        )
        .await,
        [(unit.clone(), true)]
    );
    assert!(
        shares(&sc, &portfolio, DescribePortfolioShareType::Account)
            .await
            .is_empty()
    );

    // The member, in the unit, accepts an organization share, not an account share, and only
    // once the share has reached it: AWS makes it in the background.
    let accept = |kind| {
        member
            .accept_portfolio_share()
            .portfolio_id(&portfolio)
            .portfolio_share_type(kind)
    };
    assert_eq!(
        code(accept(PortfolioShareType::AwsOrganizations).send().await),
        "ResourceNotFoundException",
        "the share is still being made"
    );
    let status = || {
        sc.describe_portfolio_share_status()
            .portfolio_share_token(token.portfolio_share_token().unwrap())
            .send()
    };
    let first = ok(status().await);
    assert_eq!(first.status(), Some(&ShareStatus::InProgress), "{first:?}");
    let done = ok(status().await);
    assert_eq!(done.status(), Some(&ShareStatus::Completed), "{done:?}");
    assert_eq!(
        done.share_details().unwrap().successful_shares(),
        std::slice::from_ref(&member_id)
    );
    assert_eq!(
        code(accept(PortfolioShareType::Imported).send().await),
        "ResourceNotFoundException"
    );
    ok(accept(PortfolioShareType::AwsOrganizations).send().await);
    assert_eq!(
        accepted(&member, Some(PortfolioShareType::AwsOrganizations)).await,
        [portfolio.as_str()]
    );
    assert!(
        accepted(&member, Some(PortfolioShareType::Imported))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn unknown_ids_and_bad_parameters_get_aws_error_codes() {
    let hub = management_account().await;
    let sc = Client::new(&hub.config);
    let not_found = [
        (
            "DescribePortfolio",
            code(sc.describe_portfolio().id(NO_PORTFOLIO).send().await),
        ),
        (
            "UpdatePortfolio",
            code(sc.update_portfolio().id(NO_PORTFOLIO).send().await),
        ),
        (
            "DeletePortfolio",
            code(sc.delete_portfolio().id(NO_PORTFOLIO).send().await),
        ),
        (
            "SearchProductsAsAdmin",
            code(
                sc.search_products_as_admin()
                    .portfolio_id(NO_PORTFOLIO)
                    .send()
                    .await,
            ),
        ),
        (
            "ListConstraintsForPortfolio",
            code(
                sc.list_constraints_for_portfolio()
                    .portfolio_id(NO_PORTFOLIO)
                    .send()
                    .await,
            ),
        ),
        (
            "ListPrincipalsForPortfolio",
            code(
                sc.list_principals_for_portfolio()
                    .portfolio_id(NO_PORTFOLIO)
                    .send()
                    .await,
            ),
        ),
        (
            "ListPortfolioAccess",
            code(
                sc.list_portfolio_access()
                    .portfolio_id(NO_PORTFOLIO)
                    .send()
                    .await,
            ),
        ),
        (
            "DescribePortfolioShares",
            code(
                sc.describe_portfolio_shares()
                    .portfolio_id(NO_PORTFOLIO)
                    .r#type(DescribePortfolioShareType::Account)
                    .send()
                    .await,
            ),
        ),
        (
            "CreatePortfolioShare",
            code(
                sc.create_portfolio_share()
                    .portfolio_id(NO_PORTFOLIO)
                    .account_id("123456789012")
                    .send()
                    .await,
            ),
        ),
        (
            "DescribeProductAsAdmin",
            code(sc.describe_product_as_admin().id("prod-nope").send().await),
        ),
        (
            "ListProvisioningArtifacts",
            code(
                sc.list_provisioning_artifacts()
                    .product_id("prod-nope")
                    .send()
                    .await,
            ),
        ),
        (
            "DeleteProduct",
            code(sc.delete_product().id("prod-nope").send().await),
        ),
        (
            "DescribeProvisioningArtifact",
            code(
                sc.describe_provisioning_artifact()
                    .product_id("prod-nope")
                    .provisioning_artifact_id("pa-nope")
                    .send()
                    .await,
            ),
        ),
        (
            "DescribeConstraint",
            code(sc.describe_constraint().id("cons-nope").send().await),
        ),
        (
            "DeleteTagOption",
            code(sc.delete_tag_option().id("tag-nope").send().await),
        ),
    ];
    for (case, c) in &not_found {
        assert_eq!(c, "ResourceNotFoundException", "{case}");
    }

    let portfolio = new_portfolio(&sc, "Errors").await;
    let product = ok(sc
        .create_product()
        .name("p")
        .owner("o")
        .product_type(ProductType::CloudFormationTemplate)
        .provisioning_artifact_parameters(version("v1"))
        .send()
        .await);
    let product = product_id(&product);
    ok(sc
        .associate_product_with_portfolio()
        .product_id(&product)
        .portfolio_id(&portfolio)
        .send()
        .await);
    let constraint = |parameters: &str| {
        sc.create_constraint()
            .portfolio_id(&portfolio)
            .product_id(&product)
            .r#type("LAUNCH")
            .parameters(parameters)
            .send()
    };
    let invalid = [
        (
            "CreateConstraint {not json",
            code(constraint("{not json").await),
        ),
        (
            "CreateConstraint [\"RoleArn\"]",
            code(constraint(r#"["RoleArn"]"#).await),
        ),
        (
            "CreateConstraint {\"RoleArn\":\"arn:aws:iam::1:role/a\",\"LocalRoleName\":\"a\"}",
            code(constraint(r#"{"RoleArn":"arn:aws:iam::1:role/a","LocalRoleName":"a"}"#).await),
        ),
        ("CreateConstraint {}", code(constraint("{}").await)),
        (
            "CreatePortfolio no provider",
            code(
                sc.create_portfolio()
                    .display_name("no provider")
                    .send()
                    .await,
            ),
        ),
        (
            "CreateProduct no version",
            code(
                sc.create_product()
                    .name("no version")
                    .owner("o")
                    .product_type(ProductType::CloudFormationTemplate)
                    .send()
                    .await,
            ),
        ),
        (
            "CreateProvisioningArtifact no template",
            code(
                sc.create_provisioning_artifact()
                    .product_id(&product)
                    .parameters(
                        ProvisioningArtifactProperties::builder()
                            .name("no template")
                            .build(),
                    )
                    .send()
                    .await,
            ),
        ),
        (
            // AWS reads the template when the version is made: one it cannot read is refused
            // unless template validation is disabled.
            "CreateProvisioningArtifact unreadable template",
            code(
                sc.create_provisioning_artifact()
                    .product_id(&product)
                    .parameters(
                        ProvisioningArtifactProperties::builder()
                            .name("v2")
                            .info(
                                "LoadTemplateFromURL",
                                "https://s3.amazonaws.com/none/t.yaml",
                            )
                            .build(),
                    )
                    .send()
                    .await,
            ),
        ),
        (
            "UpdatePortfolio 21 AddTags",
            code(
                sc.update_portfolio()
                    .id(&portfolio)
                    .set_add_tags(Some((0..21).map(|i| tag(&format!("k{i}"), "v")).collect()))
                    .send()
                    .await,
            ),
        ),
        (
            "AssociatePrincipalWithPortfolio PrincipalType::IamPattern",
            code(
                sc.associate_principal_with_portfolio()
                    .portfolio_id(&portfolio)
                    .principal_arn(format!("arn:aws:iam::{}:role/*", hub.id))
                    .principal_type(PrincipalType::IamPattern)
                    .send()
                    .await,
            ),
        ),
        (
            "DescribePortfolioShares without a type",
            code(
                sc.describe_portfolio_shares()
                    .portfolio_id(&portfolio)
                    .send()
                    .await,
            ),
        ),
    ];
    for (case, c) in &invalid {
        assert_eq!(c, "InvalidParametersException", "{case}");
    }
    // An account-less pattern is what IAM_PATTERN takes.
    ok(sc
        .associate_principal_with_portfolio()
        .portfolio_id(&portfolio)
        .principal_arn("arn:aws:iam:::role/DataScientist*")
        .principal_type(PrincipalType::IamPattern)
        .send()
        .await);
}

#[tokio::test]
async fn accounts_and_regions_do_not_see_each_other() {
    let first = management_account().await;
    let second = management_account().await;
    let sc = Client::new(&first.config);
    let other = Client::new(&second.config);
    let elsewhere = Client::new(
        &first
            .config
            .to_builder()
            .region(Region::new("eu-west-1"))
            .build(),
    );
    let portfolio = new_portfolio(&sc, "Private").await;
    let option = ok(sc.create_tag_option().key("team").value("ml").send().await);
    let option = option
        .tag_option_detail()
        .and_then(|o| o.id())
        .unwrap()
        .to_string();

    for client in [&other, &elsewhere] {
        let options = ok(client.list_tag_options().send().await);
        assert!(options.tag_option_details().is_empty());
        assert_eq!(
            code(client.describe_portfolio().id(&portfolio).send().await),
            "ResourceNotFoundException"
        );
        // The same key and value are free there.
        ok(client
            .create_tag_option()
            .key("team")
            .value("ml")
            .send()
            .await);
    }
    let own = new_portfolio(&other, "Theirs").await;
    assert_eq!(
        code(
            other
                .associate_tag_option_with_resource()
                .resource_id(&own)
                .tag_option_id(&option)
                .send()
                .await
        ),
        "ResourceNotFoundException"
    );
    assert_eq!(
        code(
            other
                .accept_portfolio_share()
                .portfolio_id(&portfolio)
                .send()
                .await
        ),
        "ResourceNotFoundException",
        "a portfolio nobody shared cannot be accepted"
    );
    let options = ok(sc.list_tag_options().send().await);
    assert_eq!(options.tag_option_details().len(), 1);
}

#[tokio::test]
async fn lists_come_in_pages_of_twenty() {
    let account = management_account().await;
    let sc = Client::new(&account.config);
    for i in 0..21 {
        ok(sc
            .create_tag_option()
            .key("team")
            .value(format!("t{i:02}"))
            .send()
            .await);
    }
    let first = ok(sc.list_tag_options().send().await);
    assert_eq!(first.tag_option_details().len(), 20);
    let token = first.page_token().expect("a second page");
    let second = ok(sc.list_tag_options().page_token(token).send().await);
    let values: Vec<_> = second
        .tag_option_details()
        .iter()
        .filter_map(|o| o.value())
        .collect();
    assert_eq!(values, ["t20"]);
    assert!(second.page_token().is_none());
}

/// Principal name sharing and tag option sharing: what a unit share carries reaches the
/// accounts under the unit (name patterns, never IAM principals; tag options), UpdatePortfolioShare
/// toggles it, and AWS's limits on both are kept.
#[tokio::test]
async fn unit_shares_carry_name_patterns_and_tag_options_and_update_in_place() {
    let hub = management_account().await;
    let sc = Client::new(&hub.config);
    let (member_id, member_config) = member_account(&hub, "analyst").await;
    let member = Client::new(&member_config);
    let (other_id, _) = member_account(&hub, "elsewhere").await;
    let org = aws_sdk_organizations::Client::new(&hub.config);
    let unit = ok(org
        .create_organizational_unit()
        .parent_id(&hub.root_id)
        .name("science")
        .send()
        .await);
    let unit = unit
        .organizational_unit()
        .and_then(|u| u.id())
        .unwrap()
        .to_string();
    ok(org
        .move_account()
        .account_id(&member_id)
        .source_parent_id(&hub.root_id)
        .destination_parent_id(&unit)
        .send()
        .await);
    ok(sc.enable_aws_organizations_access().send().await);
    let portfolio = new_portfolio(&sc, "Studio").await;
    let pattern = "arn:aws:iam:::role/ml-*";
    let hub_role = format!("arn:aws:iam::{}:role/Admin", hub.id);
    for (arn, kind) in [
        (pattern, PrincipalType::IamPattern),
        (hub_role.as_str(), PrincipalType::Iam),
    ] {
        ok(sc
            .associate_principal_with_portfolio()
            .portfolio_id(&portfolio)
            .principal_arn(arn)
            .principal_type(kind)
            .send()
            .await);
    }
    let option = ok(sc.create_tag_option().key("team").value("ml").send().await);
    let option = option
        .tag_option_detail()
        .and_then(|t| t.id())
        .unwrap()
        .to_string();
    ok(sc
        .associate_tag_option_with_resource()
        .resource_id(&portfolio)
        .tag_option_id(&option)
        .send()
        .await);
    let node = OrganizationNode::builder()
        .r#type(OrganizationNodeType::OrganizationalUnit)
        .value(&unit)
        .build();
    let created = ok(sc
        .create_portfolio_share()
        .portfolio_id(&portfolio)
        .organization_node(node.clone())
        .share_principals(true)
        .share_tag_options(true)
        .send()
        .await);
    completed(&sc, created.portfolio_share_token().unwrap()).await;
    let details = ok(sc
        .describe_portfolio_shares()
        .portfolio_id(&portfolio)
        .r#type(DescribePortfolioShareType::OrganizationalUnit)
        .send()
        .await);
    let [detail] = details.portfolio_share_details() else {
        panic!("one share: {details:?}");
    };
    assert!(detail.share_principals() && detail.share_tag_options());

    ok(member
        .accept_portfolio_share()
        .portfolio_id(&portfolio)
        .portfolio_share_type(PortfolioShareType::AwsOrganizations)
        .send()
        .await);
    let listed = ok(member
        .list_principals_for_portfolio()
        .portfolio_id(&portfolio)
        .send()
        .await);
    let seen: Vec<(&str, &PrincipalType)> = listed
        .principals()
        .iter()
        .map(|p| (p.principal_arn().unwrap(), p.principal_type().unwrap()))
        .collect();
    assert_eq!(seen, [(pattern, &PrincipalType::IamPattern)]);
    let described = ok(member.describe_portfolio().id(&portfolio).send().await);
    let options: Vec<(&str, &str)> = described
        .tag_options()
        .iter()
        .map(|o| (o.key().unwrap(), o.value().unwrap()))
        .collect();
    assert_eq!(options, [("team", "ml")]);

    // Both turned off, asynchronously: the token is the share's, and completes.
    let updated = ok(sc
        .update_portfolio_share()
        .portfolio_id(&portfolio)
        .organization_node(node.clone())
        .share_principals(false)
        .share_tag_options(false)
        .send()
        .await);
    let token = updated.portfolio_share_token().unwrap();
    let status = || {
        sc.describe_portfolio_share_status()
            .portfolio_share_token(token)
            .send()
    };
    for expected in [ShareStatus::InProgress, ShareStatus::Completed] {
        assert_eq!(ok(status().await).status(), Some(&expected));
    }
    assert!(principals(&member, &portfolio).await.is_empty());
    let described = ok(member.describe_portfolio().id(&portfolio).send().await);
    assert!(described.tag_options().is_empty());

    // AWS's rules: principals go to organization nodes only; an update names a share that
    // exists and changes something; at most 10 name patterns per portfolio.
    assert_eq!(
        code(
            sc.create_portfolio_share()
                .portfolio_id(&portfolio)
                .account_id(&other_id)
                .share_principals(true)
                .send()
                .await
        ),
        "InvalidParametersException"
    );
    assert_eq!(
        code(
            sc.update_portfolio_share()
                .portfolio_id(&portfolio)
                .account_id(&other_id)
                .share_tag_options(true)
                .send()
                .await
        ),
        "ResourceNotFoundException"
    );
    assert_eq!(
        code(
            sc.update_portfolio_share()
                .portfolio_id(&portfolio)
                .organization_node(node)
                .send()
                .await
        ),
        "InvalidParametersException"
    );
    ok(sc
        .create_portfolio_share()
        .portfolio_id(&portfolio)
        .account_id(&other_id)
        .send()
        .await);
    let updated = ok(sc
        .update_portfolio_share()
        .portfolio_id(&portfolio)
        .account_id(&other_id)
        .share_tag_options(true)
        .send()
        .await);
    assert_eq!(
        updated.status(),
        Some(&aws_sdk_servicecatalog::types::ShareStatus::Completed)
    );
    let details = ok(sc
        .describe_portfolio_shares()
        .portfolio_id(&portfolio)
        .r#type(DescribePortfolioShareType::Account)
        .send()
        .await);
    let [detail] = details.portfolio_share_details() else {
        panic!("one account share: {details:?}");
    };
    assert!(detail.share_tag_options() && !detail.share_principals());
    for i in 1..10 {
        ok(sc
            .associate_principal_with_portfolio()
            .portfolio_id(&portfolio)
            .principal_arn(format!("arn:aws:iam:::role/team-{i}-*"))
            .principal_type(PrincipalType::IamPattern)
            .send()
            .await);
    }
    assert_eq!(
        code(
            sc.associate_principal_with_portfolio()
                .portfolio_id(&portfolio)
                .principal_arn("arn:aws:iam:::role/one-too-many")
                .principal_type(PrincipalType::IamPattern)
                .send()
                .await
        ),
        "LimitExceededException"
    );
}
