//! Reading Service Catalog state: portfolios this estate manages in their hub accounts, and
//! untagged ones a manifest adopts or `estate import` reads (products, versions, constraints,
//! tag options, principals, shares), and in each recipient account whether the share is
//! accepted and which principals are associated there; a version's template for import.
//! Every list is read to its last page.

use super::{
    LiveConstraint, LivePortfolio, LiveProduct, LiveRecipient, LiveShareFlags, LiveTagOption,
    LiveVersion, UnmanagedPortfolio,
};
use crate::aws::{Aws, AwsError};
use std::collections::BTreeMap;

fn err<E>(
    op: &str,
) -> impl FnOnce(
    aws_smithy_runtime_api::client::result::SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> AwsError
where
    E: std::error::Error + aws_smithy_types::error::metadata::ProvideErrorMetadata + 'static,
{
    let op = op.to_string();
    move |e| AwsError::call(&op, e)
}

/// What a hub account holds: this estate's portfolios, read in full, and the others' names.
#[derive(Debug, Default)]
pub struct Hub {
    pub portfolios: Vec<LivePortfolio>,
    pub unmanaged: Vec<UnmanagedPortfolio>,
}

/// Portfolios in `hub` (the edge acting in that account): those tagged for this estate in
/// full, and those without any estate's tag whose display name `untagged` accepts (adopted or
/// imported); the others by name only.
pub async fn read_hub(
    hub: &Aws,
    account: &str,
    region: &str,
    estate: &str,
    untagged: &dyn Fn(&str) -> bool,
) -> Result<Hub, AwsError> {
    let sc = hub.servicecatalog(region);
    let mut ids = Vec::new();
    let mut pages = sc.list_portfolios().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(err("ServiceCatalog.ListPortfolios"))?;
        ids.extend(
            page.portfolio_details
                .unwrap_or_default()
                .into_iter()
                .filter_map(|p| p.id),
        );
    }
    let mut portfolios = Vec::new();
    let mut unmanaged = Vec::new();
    for id in ids {
        let d = match sc.describe_portfolio().id(&id).send().await {
            Ok(d) => d,
            Err(e) => {
                let e = AwsError::call("ServiceCatalog.DescribePortfolio", e);
                // Deleted between the list and the describe: a fresh list would not show it.
                if e.code() == Some("ResourceNotFoundException") {
                    continue;
                }
                return Err(e);
            }
        };
        let tags: BTreeMap<String, String> = d
            .tags
            .unwrap_or_default()
            .into_iter()
            .map(|t| (t.key, t.value))
            .collect();
        let detail = d.portfolio_detail;
        let display_name = detail
            .as_ref()
            .and_then(|x| x.display_name.as_deref())
            .unwrap_or_default();
        let read_in_full = match tags.get(crate::tags::TAG_MANAGED_BY) {
            Some(owner) => owner == estate,
            None => untagged(display_name),
        };
        if !read_in_full {
            unmanaged.push(UnmanagedPortfolio {
                id,
                account: account.to_string(),
                display_name: detail.and_then(|x| x.display_name).unwrap_or_default(),
            });
            continue;
        }
        let mut p = LivePortfolio {
            id: id.clone(),
            account: account.to_string(),
            display_name: detail
                .as_ref()
                .and_then(|x| x.display_name.clone())
                .unwrap_or_default(),
            provider_name: detail
                .as_ref()
                .and_then(|x| x.provider_name.clone())
                .unwrap_or_default(),
            description: detail.and_then(|x| x.description).filter(|s| !s.is_empty()),
            tags,
            tag_options: d
                .tag_options
                .unwrap_or_default()
                .into_iter()
                .map(|t| LiveTagOption {
                    id: t.id.unwrap_or_default(),
                    key: t.key.unwrap_or_default(),
                    value: t.value.unwrap_or_default(),
                })
                .collect(),
            ..Default::default()
        };
        p.tag_options
            .sort_by(|a, b| (&a.key, &a.value).cmp(&(&b.key, &b.value)));
        p.products = read_products(&sc, &id).await?;
        let mut details = Vec::new();
        let mut pages = sc
            .list_constraints_for_portfolio()
            .portfolio_id(&id)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(err("ServiceCatalog.ListConstraintsForPortfolio"))?;
            details.extend(page.constraint_details.unwrap_or_default());
        }
        for c in details {
            let cid = c.constraint_id.unwrap_or_default();
            // The parameters are only returned by DescribeConstraint; portfolios have few.
            let described = sc
                .describe_constraint()
                .id(&cid)
                .send()
                .await
                .map_err(err("ServiceCatalog.DescribeConstraint"))?;
            p.constraints.push(LiveConstraint {
                id: cid,
                product_id: c.product_id.unwrap_or_default(),
                kind: c.r#type.unwrap_or_default(),
                parameters: described.constraint_parameters.unwrap_or_default(),
            });
        }
        p.principals = principals(&sc, &id, false).await?;
        let mut pages = sc
            .list_portfolio_access()
            .portfolio_id(&id)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(err("ServiceCatalog.ListPortfolioAccess"))?;
            p.shared_accounts
                .extend(page.account_ids.unwrap_or_default());
        }
        p.shared_accounts.sort();
        use aws_sdk_servicecatalog::types::DescribePortfolioShareType as ShareType;
        // The account shares' flags; a portfolio without account shares pays no call for them.
        if !p.shared_accounts.is_empty() {
            for (account, flags) in shares(&sc, &id, ShareType::Account).await? {
                p.share_flags.insert(account, flags);
            }
        }
        for (unit, flags) in shares(&sc, &id, ShareType::OrganizationalUnit).await? {
            p.share_flags.insert(unit.clone(), flags);
            p.shared_units.push(unit);
        }
        p.shared_units.sort();
        portfolios.push(p);
    }
    Ok(Hub {
        portfolios,
        unmanaged,
    })
}

/// The portfolio's shares of one type: (recipient id, what the share gives besides the
/// portfolio).
async fn shares(
    sc: &aws_sdk_servicecatalog::Client,
    portfolio: &str,
    kind: aws_sdk_servicecatalog::types::DescribePortfolioShareType,
) -> Result<Vec<(String, LiveShareFlags)>, AwsError> {
    let mut found = Vec::new();
    let mut pages = sc
        .describe_portfolio_shares()
        .portfolio_id(portfolio)
        .r#type(kind)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(err("ServiceCatalog.DescribePortfolioShares"))?;
        for s in page.portfolio_share_details.unwrap_or_default() {
            let Some(id) = s.principal_id else { continue };
            let flags = LiveShareFlags {
                tag_options: s.share_tag_options,
                principals: s.share_principals,
            };
            found.push((id, flags));
        }
    }
    Ok(found)
}

/// Principal ARNs associated with the portfolio in the account `sc` acts in; with `iam_only`,
/// only those of type IAM (a recipient also lists the name patterns a unit share gives it,
/// which are the hub's, not the recipient's own).
async fn principals(
    sc: &aws_sdk_servicecatalog::Client,
    portfolio: &str,
    iam_only: bool,
) -> Result<Vec<String>, AwsError> {
    use aws_sdk_servicecatalog::types::PrincipalType;
    let mut arns: Vec<String> = Vec::new();
    let mut pages = sc
        .list_principals_for_portfolio()
        .portfolio_id(portfolio)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(err("ServiceCatalog.ListPrincipalsForPortfolio"))?;
        arns.extend(
            page.principals
                .unwrap_or_default()
                .into_iter()
                .filter(|p| !iam_only || p.principal_type == Some(PrincipalType::Iam))
                .filter_map(|p| p.principal_arn),
        );
    }
    arns.sort();
    Ok(arns)
}

async fn read_products(
    sc: &aws_sdk_servicecatalog::Client,
    portfolio: &str,
) -> Result<Vec<LiveProduct>, AwsError> {
    let mut views = Vec::new();
    let mut pages = sc
        .search_products_as_admin()
        .portfolio_id(portfolio)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(err("ServiceCatalog.SearchProductsAsAdmin"))?;
        views.extend(page.product_view_details.unwrap_or_default());
    }
    let mut products = Vec::new();
    for view in views {
        let Some(summary) = view.product_view_summary else {
            continue;
        };
        let id = summary.product_id.unwrap_or_default();
        let described = sc
            .describe_product_as_admin()
            .id(&id)
            .send()
            .await
            .map_err(err("ServiceCatalog.DescribeProductAsAdmin"))?;
        let artifacts = sc
            .list_provisioning_artifacts()
            .product_id(&id)
            .send()
            .await
            .map_err(err("ServiceCatalog.ListProvisioningArtifacts"))?;
        let mut versions: Vec<LiveVersion> = artifacts
            .provisioning_artifact_details
            .unwrap_or_default()
            .into_iter()
            .map(|a| LiveVersion {
                id: a.id.unwrap_or_default(),
                name: a.name.unwrap_or_default(),
                description: a.description.filter(|s| !s.is_empty()),
                active: a.active.unwrap_or(true),
            })
            .collect();
        versions.sort_by(|a, b| a.name.cmp(&b.name));
        products.push(LiveProduct {
            id,
            name: summary.name.unwrap_or_default(),
            owner: summary.owner.unwrap_or_default(),
            description: summary.short_description.filter(|s| !s.is_empty()),
            distributor: summary.distributor.filter(|s| !s.is_empty()),
            support_email: summary.support_email.filter(|s| !s.is_empty()),
            tags: described
                .tags
                .unwrap_or_default()
                .into_iter()
                .map(|t| (t.key, t.value))
                .collect(),
            versions,
        });
    }
    products.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(products)
}

/// A provisioning artifact's template as AWS keeps it (`estate import`): the URL
/// DescribeProvisioningArtifact returns in `Info.TemplateUrl`, fetched as it is when it is
/// presigned (AWS's own copy of the template), else read with S3 GetObject as the hub
/// account. Only S3 URLs are read.
pub async fn version_template(
    hub: &Aws,
    region: &str,
    product: &str,
    artifact: &str,
) -> Result<String, AwsError> {
    let out = hub
        .servicecatalog(region)
        .describe_provisioning_artifact()
        .product_id(product)
        .provisioning_artifact_id(artifact)
        .send()
        .await
        .map_err(err("ServiceCatalog.DescribeProvisioningArtifact"))?;
    let failed = |message: String| AwsError::ArtifactTemplate {
        artifact: artifact.to_string(),
        message,
    };
    let url = out
        .info
        .as_ref()
        .and_then(|i| i.get("TemplateUrl"))
        .ok_or_else(|| failed("AWS returned no Info.TemplateUrl".into()))?;
    let text = |body: Vec<u8>| {
        String::from_utf8(body).map_err(|_| failed("the template is not UTF-8 text".into()))
    };
    if url.contains("X-Amz-Signature=") {
        return text(hub.get_presigned(url, region).await?);
    }
    let (bucket, key, in_region) =
        s3_location(url).ok_or_else(|| failed(format!("{url} is not an S3 object URL")))?;
    let body = hub
        .s3(in_region.as_deref().unwrap_or(region))
        .get_object()
        .bucket(&bucket)
        .key(&key)
        .send()
        .await
        .map_err(err("S3.GetObject"))?
        .body
        .collect()
        .await
        .map_err(|e| failed(format!("reading {url}: {e}")))?
        .into_bytes();
    text(body.to_vec())
}

/// (bucket, key, region when the host names one) of an S3 object URL, virtual-hosted
/// (`https://b.s3.us-east-1.amazonaws.com/k`) or path-style (`https://s3.amazonaws.com/b/k`);
/// the query (a presigned URL's signature) is dropped and the key percent-decoded.
fn s3_location(url: &str) -> Option<(String, String, Option<String>)> {
    let rest = url.strip_prefix("https://")?;
    let rest = rest.split(['?', '#']).next()?;
    let (host, path) = rest.split_once('/')?;
    let host = host
        .strip_suffix(".amazonaws.com")
        .or_else(|| host.strip_suffix(".amazonaws.com.cn"))?;
    let region_of = |endpoint: &str| {
        let region = endpoint
            .strip_prefix("s3.")
            .or_else(|| endpoint.strip_prefix("s3-"))
            .filter(|r| !r.is_empty() && *r != "dualstack");
        region.map(str::to_string)
    };
    let (bucket, key, endpoint) = match host.split_once(".s3") {
        // Virtual-hosted: the bucket is the host's first labels.
        Some((bucket, endpoint)) => (
            bucket.to_string(),
            path.to_string(),
            format!("s3{endpoint}"),
        ),
        None if host == "s3" || host.starts_with("s3.") || host.starts_with("s3-") => {
            let (bucket, key) = path.split_once('/')?;
            (bucket.to_string(), key.to_string(), host.to_string())
        }
        None => return None,
    };
    let key = percent_decode(&key)?;
    (!bucket.is_empty() && !key.is_empty()).then(|| (bucket, key, region_of(&endpoint)))
}

fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// In a recipient account: is the portfolio's share accepted, and which principals are
/// associated with it there.
pub async fn read_recipient(
    recipient: &Aws,
    region: &str,
    portfolio: &str,
) -> Result<LiveRecipient, AwsError> {
    let sc = recipient.servicecatalog(region);
    let mut accepted = false;
    let mut pages = sc.list_accepted_portfolio_shares().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(err("ServiceCatalog.ListAcceptedPortfolioShares"))?;
        accepted |= page
            .portfolio_details
            .unwrap_or_default()
            .iter()
            .any(|p| p.id.as_deref() == Some(portfolio));
    }
    let principals = if accepted {
        principals(&sc, portfolio, true).await?
    } else {
        Vec::new()
    };
    Ok(LiveRecipient {
        accepted,
        principals,
    })
}

/// Whether Service Catalog may use AWS Organizations (needed to share with units).
pub async fn organizations_access(aws: &Aws, region: &str) -> Result<bool, AwsError> {
    let out = aws
        .servicecatalog(region)
        .get_aws_organizations_access_status()
        .send()
        .await
        .map_err(err("ServiceCatalog.GetAWSOrganizationsAccessStatus"))?;
    Ok(out
        .access_status
        .is_some_and(|s| s == aws_sdk_servicecatalog::types::AccessStatus::Enabled))
}

/// The service principal Service Catalog delegates organization administration under.
pub const SERVICE_PRINCIPAL: &str = "servicecatalog.amazonaws.com";

/// Accounts the management account delegated Service Catalog administration to, sorted.
pub async fn delegated_admins(aws: &Aws) -> Result<Vec<String>, AwsError> {
    let mut pages = aws
        .organizations()
        .list_delegated_administrators()
        .service_principal(SERVICE_PRINCIPAL)
        .into_paginator()
        .send();
    let mut ids = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(err("Organizations.ListDelegatedAdministrators"))?;
        ids.extend(
            page.delegated_administrators()
                .iter()
                .filter_map(|a| a.id().map(str::to_string)),
        );
    }
    ids.sort();
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::s3_location;

    #[test]
    fn s3_urls_give_bucket_key_and_region() {
        let at = |b: &str, k: &str, r: Option<&str>| {
            Some((b.to_string(), k.to_string(), r.map(str::to_string)))
        };
        assert_eq!(
            s3_location("https://b.s3.eu-west-1.amazonaws.com/templates/x%20y.json"),
            at("b", "templates/x y.json", Some("eu-west-1"))
        );
        assert_eq!(
            s3_location("https://my.bucket.s3.amazonaws.com/k?X-Amz-Signature=1"),
            at("my.bucket", "k", None)
        );
        assert_eq!(
            s3_location("https://s3.amazonaws.com/b/a/k.yaml"),
            at("b", "a/k.yaml", None)
        );
        assert_eq!(
            s3_location("https://s3-us-west-2.amazonaws.com/b/k"),
            at("b", "k", Some("us-west-2"))
        );
        assert_eq!(s3_location("https://example.com/b/k"), None);
        assert_eq!(s3_location("https://s3.amazonaws.com/b"), None);
    }
}
