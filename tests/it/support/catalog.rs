//! Service Catalog state read back from the emulator (principals, shares, accepted
//! portfolios), for the tests of portfolios through estate and of the emulator's catalog.

use crate::support::emulator::ok;
use aws_sdk_servicecatalog::Client;
use aws_sdk_servicecatalog::types::{DescribePortfolioShareType, PortfolioShareType};

/// The principal ARNs associated with `portfolio`, as the account `sc` acts in sees them.
pub async fn principals(sc: &Client, portfolio: &str) -> Vec<String> {
    let out = ok(sc
        .list_principals_for_portfolio()
        .portfolio_id(portfolio)
        .send()
        .await);
    out.principals()
        .iter()
        .map(|p| p.principal_arn().unwrap_or_default().to_string())
        .collect()
}

/// (recipient, accepted) of the portfolio's shares of one type.
pub async fn shares(
    sc: &Client,
    portfolio: &str,
    kind: DescribePortfolioShareType,
) -> Vec<(String, bool)> {
    let out = ok(sc
        .describe_portfolio_shares()
        .portfolio_id(portfolio)
        .r#type(kind)
        .send()
        .await);
    out.portfolio_share_details()
        .iter()
        .map(|s| {
            (
                s.principal_id().unwrap_or_default().to_string(),
                s.accepted(),
            )
        })
        .collect()
}

/// Ids of the portfolios the account `sc` acts in has accepted (of one share type, or of
/// the type AWS lists when none is given).
pub async fn accepted(sc: &Client, kind: Option<PortfolioShareType>) -> Vec<String> {
    let out = ok(sc
        .list_accepted_portfolio_shares()
        .set_portfolio_share_type(kind)
        .send()
        .await);
    out.portfolio_details()
        .iter()
        .map(|p| p.id().unwrap_or_default().to_string())
        .collect()
}

/// A portfolio made with the API, not by estate (no tags), in the account `config` acts in:
/// one product with version `v1`, whose template is uploaded to a bucket there and given by
/// its S3 URL, as AWS takes it; a tag option and a LAUNCH constraint with a local role.
/// (portfolio id, product id).
pub async fn portfolio_by_hand(
    config: &aws_config::SdkConfig,
    account: &str,
    display_name: &str,
    template: &str,
) -> (String, String) {
    use aws_sdk_servicecatalog::types::{ProductType, ProvisioningArtifactProperties};
    let bucket = format!("templates-by-hand-{account}");
    let s3 = crate::support::emulator::s3(config);
    ok(s3.create_bucket().bucket(&bucket).send().await);
    ok(s3
        .put_object()
        .bucket(&bucket)
        .key("notebook/v1.yaml")
        .body(template.as_bytes().to_vec().into())
        .send()
        .await);
    let sc = Client::new(config);
    let portfolio = ok(sc
        .create_portfolio()
        .display_name(display_name)
        .provider_name("Central IT")
        .description("made by hand")
        .idempotency_token(format!("{display_name}-{account}"))
        .send()
        .await)
    .portfolio_detail
    .and_then(|p| p.id)
    .unwrap();
    let product = ok(sc
        .create_product()
        .name("Notebook")
        .owner("Central IT")
        .product_type(ProductType::CloudFormationTemplate)
        .provisioning_artifact_parameters(
            ProvisioningArtifactProperties::builder()
                .name("v1")
                .info(
                    "LoadTemplateFromURL",
                    format!("https://{bucket}.s3.us-east-1.amazonaws.com/notebook/v1.yaml"),
                )
                .build(),
        )
        .idempotency_token(format!("notebook-{account}"))
        .send()
        .await)
    .product_view_detail
    .and_then(|d| d.product_view_summary)
    .and_then(|s| s.product_id)
    .unwrap();
    ok(sc
        .associate_product_with_portfolio()
        .product_id(&product)
        .portfolio_id(&portfolio)
        .send()
        .await);
    ok(sc
        .create_constraint()
        .portfolio_id(&portfolio)
        .product_id(&product)
        .r#type("LAUNCH")
        .parameters(r#"{"LocalRoleName": "notebook-launch"}"#)
        .idempotency_token(format!("launch-{account}"))
        .send()
        .await);
    let option = ok(sc.create_tag_option().key("team").value("ml").send().await)
        .tag_option_detail
        .and_then(|t| t.id)
        .unwrap();
    ok(sc
        .associate_tag_option_with_resource()
        .resource_id(&portfolio)
        .tag_option_id(option)
        .send()
        .await);
    (portfolio, product)
}

/// The tags of a portfolio and of a product, as their owner account `sc` reads them.
pub async fn catalog_tags(
    sc: &Client,
    portfolio: &str,
    product: &str,
) -> (
    std::collections::BTreeMap<String, String>,
    std::collections::BTreeMap<String, String>,
) {
    let p = ok(sc.describe_portfolio().id(portfolio).send().await);
    let q = ok(sc.describe_product_as_admin().id(product).send().await);
    let map = |tags: &[aws_sdk_servicecatalog::types::Tag]| {
        tags.iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect()
    };
    (map(p.tags()), map(q.tags()))
}
