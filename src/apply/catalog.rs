//! Applying portfolio changes: in the hub account (through `memberRole`) the portfolio,
//! products and versions, constraints, tag options, principals and shares; in each recipient
//! account the share's acceptance and the principals there. Deletes run in reverse order.

use super::{ApplyError, Backoff, Done, Event, Polling, Progress, templates};
use crate::aws::{Aws, AwsError};
use crate::live::LiveState;
use crate::live::catalog::{SERVICE_PRINCIPAL, TAG_PORTFOLIO, TAG_PRODUCT};
use crate::plan::catalog::{
    DELEGATED_ADMIN, DesiredPortfolio, ORGANIZATIONS_ACCESS, is_organization_setting,
    launch_parameters,
};
use crate::plan::{Action, Change, Plan, ResourceType};
use aws_sdk_servicecatalog::types::{
    OrganizationNode, OrganizationNodeType, PrincipalType, ProductType,
    ProvisioningArtifactProperties, ProvisioningArtifactType, Tag,
};
use std::collections::{BTreeMap, HashMap};

/// The portfolio a catalog change belongs to: `kind:NAME/…` or `kind:NAME@account/…`.
fn portfolio_of(c: &Change) -> &str {
    let rest = c.address.split_once(':').map_or("", |(_, r)| r);
    rest.split(['/', '@']).next().unwrap_or_default()
}

fn s(v: &Option<serde_json::Value>, key: &str) -> Option<String> {
    v.as_ref()?.get(key)?.as_str().map(str::to_string)
}

fn sc_err<E>(
    op: &'static str,
) -> impl FnOnce(
    aws_smithy_runtime_api::client::result::SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> ApplyError
where
    E: std::error::Error + aws_smithy_types::error::metadata::ProvideErrorMetadata + 'static,
{
    move |e| ApplyError::Aws(AwsError::call(op, e))
}

/// Applies every catalog change of the plan; returns the addresses done.
pub async fn portfolios(
    aws: &Aws,
    plan: &Plan,
    desired: &[DesiredPortfolio],
    live: &LiveState,
    region: &str,
    polling: Polling,
    progress: &dyn Progress,
) -> Result<Vec<String>, ApplyError> {
    let mut done = Done::new(progress);
    let changes: Vec<&Change> = plan
        .changes
        .iter()
        .filter(|c| c.resource_type.is_catalog())
        .collect();
    if let Some(c) = changes.iter().find(|c| c.address == ORGANIZATIONS_ACCESS) {
        progress.event(Event::Started {
            address: c.address.clone(),
            what: "EnableAWSOrganizationsAccess".into(),
        });
        aws.servicecatalog(region)
            .enable_aws_organizations_access()
            .send()
            .await
            .map_err(sc_err("ServiceCatalog.EnableAWSOrganizationsAccess"))?;
        done.push(c.address.clone());
    }
    // After the access above: AWS registers delegated administrators only for trusted services.
    for c in changes
        .iter()
        .filter(|c| c.address.starts_with(DELEGATED_ADMIN))
    {
        let account = s(&c.after, "account").ok_or_else(|| {
            ApplyError::Inconsistent(format!("{}: the account is not known yet", c.address))
        })?;
        progress.event(Event::Started {
            address: c.address.clone(),
            what: format!("RegisterDelegatedAdministrator {account} {SERVICE_PRINCIPAL}"),
        });
        aws.organizations()
            .register_delegated_administrator()
            .account_id(&account)
            .service_principal(SERVICE_PRINCIPAL)
            .send()
            .await
            .map(|_| ())
            .or_else(|e| {
                let e = AwsError::call("Organizations.RegisterDelegatedAdministrator", e);
                // Registered meanwhile (another apply, or by hand): what was wanted.
                match e.code() {
                    Some("AccountAlreadyRegisteredException") => Ok(()),
                    _ => Err(e),
                }
            })?;
        done.push(c.address.clone());
    }
    let mut names: Vec<&str> = Vec::new();
    for c in &changes {
        let n = portfolio_of(c);
        if !is_organization_setting(&c.address) && !names.contains(&n) {
            names.push(n);
        }
    }
    for name in names {
        let mine: Vec<&Change> = changes
            .iter()
            .copied()
            .filter(|c| portfolio_of(c) == name && !is_organization_setting(&c.address))
            .collect();
        let d = desired.iter().find(|d| d.name == name);
        done.append(apply_portfolio(aws, name, d, &mine, live, region, polling, progress).await?);
    }
    Ok(done.into_vec())
}

async fn edge_for(aws: &Aws, live: &LiveState, account: &str) -> Result<Aws, ApplyError> {
    Ok(aws.acting_in(account, live.caller()).await?)
}

#[allow(clippy::too_many_arguments)]
async fn apply_portfolio(
    aws: &Aws,
    name: &str,
    d: Option<&DesiredPortfolio>,
    changes: &[&Change],
    live: &LiveState,
    region: &str,
    polling: Polling,
    progress: &dyn Progress,
) -> Result<Vec<String>, ApplyError> {
    let mut done = Done::new(progress);
    // Tokens name the intent, not only the resource: from the live state planned from, so a
    // constraint or product deleted and made again later is created anew, never answered
    // with the old one AWS remembers for the token; retries within this apply still match.
    let intent = live.fingerprint();
    let token = |address: &str| super::operation_id(&intent, address);
    let hub_id = d
        .and_then(|d| d.hub.clone())
        .or_else(|| changes.iter().find_map(|c| s(&c.before, "account")))
        .ok_or_else(|| {
            ApplyError::Inconsistent(format!("portfolio {name}: hub account unknown"))
        })?;
    let hub = edge_for(aws, live, &hub_id).await?;
    let sc = hub.servicecatalog(region);
    let started = |c: &Change, what: String| {
        progress.event(Event::Started {
            address: c.address.clone(),
            what,
        })
    };
    let of = |t: ResourceType, a: Action| -> Vec<&Change> {
        changes
            .iter()
            .copied()
            .filter(|c| c.resource_type == t && c.action == a)
            .collect()
    };
    let tags = |m: &BTreeMap<String, String>| -> Vec<Tag> {
        m.iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build().expect("tag"))
            .collect()
    };

    // Deletes first, in reverse dependency order: recipient principals, shares, principals,
    // tag options, constraints; the portfolio itself last of all. A recipient principal's
    // address names its account (`principal:NAME@account/…`).
    let principal_deletes = of(ResourceType::Principal, Action::Delete);
    let (recipient_deletes, hub_deletes): (Vec<&Change>, Vec<&Change>) = principal_deletes
        .into_iter()
        .partition(|c| c.address.contains('@'));
    for c in recipient_deletes {
        disassociate(aws, live, &hub_id, region, c, progress).await?;
        done.push(c.address.clone());
    }
    for c in of(ResourceType::Share, Action::Delete) {
        let pid = s(&c.before, "portfolioId").unwrap_or_default();
        started(c, "DeletePortfolioShare".into());
        let mut req = sc.delete_portfolio_share().portfolio_id(&pid);
        if let Some(account) = s(&c.before, "account") {
            req = req.account_id(account);
        } else if let Some(unit) = s(&c.before, "unitId") {
            req = req.organization_node(
                OrganizationNode::builder()
                    .r#type(OrganizationNodeType::OrganizationalUnit)
                    .value(unit)
                    .build(),
            );
        }
        let out = req
            .send()
            .await
            .map_err(sc_err("ServiceCatalog.DeletePortfolioShare"))?;
        // Unsharing an organization node runs asynchronously too.
        if let Some(token) = out.portfolio_share_token() {
            wait_share(&sc, token, &c.address, polling, progress).await?;
        }
        done.push(c.address.clone());
    }
    for c in hub_deletes {
        disassociate(aws, live, &hub_id, region, c, progress).await?;
        done.push(c.address.clone());
    }
    for c in of(ResourceType::TagOption, Action::Delete) {
        let pid = s(&c.before, "portfolioId").unwrap_or_default();
        let id = s(&c.before, "id").unwrap_or_default();
        started(c, "DisassociateTagOptionFromResource".into());
        sc.disassociate_tag_option_from_resource()
            .resource_id(&pid)
            .tag_option_id(&id)
            .send()
            .await
            .map_err(sc_err("ServiceCatalog.DisassociateTagOptionFromResource"))?;
        done.push(c.address.clone());
    }
    for c in of(ResourceType::Constraint, Action::Delete)
        .into_iter()
        .chain(of(ResourceType::Constraint, Action::Replace))
    {
        let id = s(&c.before, "id").unwrap_or_default();
        started(c, "DeleteConstraint".into());
        sc.delete_constraint()
            .id(&id)
            .send()
            .await
            .map_err(sc_err("ServiceCatalog.DeleteConstraint"))?;
        if c.action == Action::Delete {
            done.push(c.address.clone());
        }
    }
    // Products that left the manifest, once their constraints are gone (above).
    for c in of(ResourceType::Product, Action::Delete) {
        let pid = s(&c.before, "portfolioId").unwrap_or_default();
        let id = s(&c.before, "id").unwrap_or_default();
        started(c, "DisassociateProductFromPortfolio, DeleteProduct".into());
        sc.disassociate_product_from_portfolio()
            .product_id(&id)
            .portfolio_id(&pid)
            .send()
            .await
            .map_err(sc_err("ServiceCatalog.DisassociateProductFromPortfolio"))?;
        if let Err(e) = sc.delete_product().id(&id).send().await {
            // Out of the portfolio, the product would be out of sight of the next plan (read
            // per portfolio): put it back so the delete is planned and tried again.
            let back = sc
                .associate_product_with_portfolio()
                .product_id(&id)
                .portfolio_id(&pid)
                .send()
                .await;
            if let Err(again) = back {
                tracing::warn!(
                    "product {id} could not be put back in portfolio {pid}: {}",
                    AwsError::call("ServiceCatalog.AssociateProductWithPortfolio", again)
                );
            }
            return Err(AwsError::call("ServiceCatalog.DeleteProduct", e).into());
        }
        done.push(c.address.clone());
    }
    if let Some(c) = of(ResourceType::Portfolio, Action::Delete).first() {
        let pid = s(&c.before, "id").unwrap_or_default();
        // The account that owns it: a portfolio whose hub moved is deleted in the old one.
        let owner = s(&c.before, "account").unwrap_or_else(|| hub_id.clone());
        started(c, "DeletePortfolio, after everything attached to it".into());
        let owner_sc = edge_for(aws, live, &owner).await?.servicecatalog(region);
        if let Some(l) = live.portfolios.iter().find(|p| p.id == pid) {
            teardown(&owner_sc, l, &c.address, polling, progress).await?;
        }
        owner_sc
            .delete_portfolio()
            .id(&pid)
            .send()
            .await
            .map_err(sc_err("ServiceCatalog.DeletePortfolio"))?;
        done.push(c.address.clone());
        if of(ResourceType::Portfolio, Action::Create).is_empty() {
            return Ok(done.into_vec());
        }
    }

    let Some(d) = d else {
        return Ok(done.into_vec());
    };
    // The portfolio.
    // Not every change names it (a new version names only its product): the live portfolio
    // does, when it exists.
    let live_portfolio = live.portfolios.iter().find(|l| {
        l.account == hub_id && l.tags.get(TAG_PORTFOLIO).map(String::as_str) == Some(name)
    });
    let mut portfolio_id = changes
        .iter()
        .find_map(|c| {
            s(&c.after, "portfolioId").or_else(|| {
                s(&c.after, "id").filter(|_| c.resource_type == ResourceType::Portfolio)
            })
        })
        .or_else(|| live_portfolio.map(|l| l.id.clone()));
    for c in of(ResourceType::Portfolio, Action::Create) {
        started(c, format!("CreatePortfolio {}", d.display_name));
        let out = sc
            .create_portfolio()
            .display_name(&d.display_name)
            .provider_name(&d.provider_name)
            .set_description(d.description.clone())
            .set_tags(Some(tags(&d.tags)))
            .idempotency_token(token(&c.address))
            .send()
            .await
            .map_err(sc_err("ServiceCatalog.CreatePortfolio"))?;
        portfolio_id = out.portfolio_detail.and_then(|p| p.id);
        done.push(c.address.clone());
    }
    for c in of(ResourceType::Portfolio, Action::Update) {
        let id = s(&c.after, "id").unwrap_or_default();
        // Only the tags that differ: AddTags takes at most 20, and tags that left the
        // manifest must be removed or the plan never converges.
        let live_tags: BTreeMap<String, String> = c
            .before
            .as_ref()
            .and_then(|b| serde_json::from_value(b.get("tags")?.clone()).ok())
            .unwrap_or_default();
        let add: BTreeMap<String, String> = d
            .tags
            .iter()
            .filter(|(k, v)| live_tags.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let remove: Vec<String> = live_tags
            .keys()
            .filter(|k| !d.tags.contains_key(*k))
            .cloned()
            .collect();
        started(c, "UpdatePortfolio".into());
        sc.update_portfolio()
            .id(&id)
            .display_name(&d.display_name)
            .provider_name(&d.provider_name)
            // An absent Description leaves the old one; an empty one clears it.
            .description(d.description.clone().unwrap_or_default())
            .set_add_tags((!add.is_empty()).then(|| tags(&add)))
            .set_remove_tags((!remove.is_empty()).then_some(remove))
            .send()
            .await
            .map_err(sc_err("ServiceCatalog.UpdatePortfolio"))?;
        done.push(c.address.clone());
    }
    let pid =
        portfolio_id.ok_or_else(|| ApplyError::Inconsistent(format!("portfolio {name}: no id")))?;

    // Products and their versions.
    // Ids of existing products: from the live portfolio, and from changes that name them
    // (a constraint added to an existing product names its id only there).
    let mut product_ids: HashMap<String, String> = live_portfolio
        .map(|l| {
            l.products
                .iter()
                .filter_map(|p| Some((p.tags.get(TAG_PRODUCT)?.clone(), p.id.clone())))
                .collect()
        })
        .unwrap_or_default();
    for c in changes {
        if c.resource_type == ResourceType::Product {
            if let Some(id) = s(&c.after, "id") {
                product_ids.insert(s(&c.after, "name").unwrap_or_default(), id);
            }
        } else if let (Some(product), Some(id)) = (s(&c.after, "product"), s(&c.after, "productId"))
        {
            product_ids.insert(product, id);
        }
    }
    let mut first_versions: Vec<String> = Vec::new();
    for c in of(ResourceType::Product, Action::Create) {
        let pname = s(&c.after, "name").unwrap_or_default();
        let p = d.products.iter().find(|p| p.name == pname).ok_or_else(|| {
            ApplyError::Inconsistent(format!("product {pname} is not in the manifest"))
        })?;
        let first = p
            .versions
            .first()
            .ok_or_else(|| ApplyError::Inconsistent(format!("product {pname} has no version")))?;
        let url = template_url(&hub, &hub_id, region, &first.template.text).await?;
        started(
            c,
            format!(
                "CreateProduct {} with version {}",
                p.display_name, first.name
            ),
        );
        let out = sc
            .create_product()
            .name(&p.display_name)
            .owner(&p.owner)
            .set_description(p.description.clone())
            .set_distributor(p.distributor.clone())
            .set_support_email(p.support_email.clone())
            .product_type(ProductType::CloudFormationTemplate)
            .set_tags(Some(tags(&p.tags)))
            .provisioning_artifact_parameters(
                ProvisioningArtifactProperties::builder()
                    .name(&first.name)
                    .set_description(first.description.clone())
                    .info("LoadTemplateFromURL", url)
                    .r#type(ProvisioningArtifactType::CloudFormationTemplate)
                    .build(),
            )
            .idempotency_token(token(&c.address))
            .send()
            .await
            .map_err(sc_err("ServiceCatalog.CreateProduct"))?;
        let product_id = out
            .product_view_detail
            .and_then(|v| v.product_view_summary)
            .and_then(|s| s.product_id)
            .unwrap_or_default();
        sc.associate_product_with_portfolio()
            .product_id(&product_id)
            .portfolio_id(&pid)
            .send()
            .await
            .map_err(sc_err("ServiceCatalog.AssociateProductWithPortfolio"))?;
        product_ids.insert(pname.clone(), product_id);
        first_versions.push(format!("productVersion:{name}/{pname}/{}", first.name));
        done.push(c.address.clone());
    }
    for c in of(ResourceType::Product, Action::Update) {
        let id = s(&c.after, "id").unwrap_or_default();
        let pname = s(&c.after, "name").unwrap_or_default();
        let Some(p) = d.products.iter().find(|p| p.name == pname) else {
            continue;
        };
        started(c, "UpdateProduct".into());
        sc.update_product()
            .id(&id)
            .name(&p.display_name)
            .owner(&p.owner)
            // Absent leaves the old value; empty clears it (read back as absent).
            .description(p.description.clone().unwrap_or_default())
            .distributor(p.distributor.clone().unwrap_or_default())
            .support_email(p.support_email.clone().unwrap_or_default())
            .send()
            .await
            .map_err(sc_err("ServiceCatalog.UpdateProduct"))?;
        done.push(c.address.clone());
    }
    for c in of(ResourceType::ProductVersion, Action::Create) {
        if first_versions.contains(&c.address) {
            // Created together with its product.
            done.push(c.address.clone());
            continue;
        }
        let pname = s(&c.after, "product").unwrap_or_default();
        let vname = s(&c.after, "name").unwrap_or_default();
        let product_id = product_ids.get(&pname).cloned().unwrap_or_default();
        let v = d
            .products
            .iter()
            .find(|p| p.name == pname)
            .and_then(|p| p.versions.iter().find(|v| v.name == vname))
            .ok_or_else(|| {
                ApplyError::Inconsistent(format!(
                    "version {vname} of {pname} is not in the manifest"
                ))
            })?;
        let url = template_url(&hub, &hub_id, region, &v.template.text).await?;
        started(c, format!("CreateProvisioningArtifact {vname}"));
        sc.create_provisioning_artifact()
            .product_id(&product_id)
            .parameters(
                ProvisioningArtifactProperties::builder()
                    .name(&vname)
                    .set_description(v.description.clone())
                    .info("LoadTemplateFromURL", url)
                    .r#type(ProvisioningArtifactType::CloudFormationTemplate)
                    .build(),
            )
            .idempotency_token(token(&c.address))
            .send()
            .await
            .map_err(sc_err("ServiceCatalog.CreateProvisioningArtifact"))?;
        done.push(c.address.clone());
    }
    for c in of(ResourceType::ProductVersion, Action::Delete) {
        let product_id = s(&c.before, "productId").unwrap_or_default();
        let id = s(&c.before, "id").unwrap_or_default();
        started(c, "DeleteProvisioningArtifact".into());
        sc.delete_provisioning_artifact()
            .product_id(&product_id)
            .provisioning_artifact_id(&id)
            .send()
            .await
            .map_err(sc_err("ServiceCatalog.DeleteProvisioningArtifact"))?;
        done.push(c.address.clone());
    }
    for c in of(ResourceType::ProductVersion, Action::Update) {
        let product_id = s(&c.after, "productId").unwrap_or_default();
        let id = s(&c.after, "id").unwrap_or_default();
        let active = c
            .after
            .as_ref()
            .and_then(|a| a.get("active"))
            .and_then(|a| a.as_bool())
            .unwrap_or(true);
        started(c, format!("UpdateProvisioningArtifact Active={active}"));
        sc.update_provisioning_artifact()
            .product_id(&product_id)
            .provisioning_artifact_id(&id)
            .active(active)
            .send()
            .await
            .map_err(sc_err("ServiceCatalog.UpdateProvisioningArtifact"))?;
        done.push(c.address.clone());
    }

    // Launch constraints.
    for c in of(ResourceType::Constraint, Action::Create)
        .into_iter()
        .chain(of(ResourceType::Constraint, Action::Replace))
    {
        let pname = s(&c.after, "product").unwrap_or_default();
        let role = s(&c.after, "localRoleName").unwrap_or_default();
        let product_id = product_ids.get(&pname).cloned().unwrap_or_default();
        started(c, format!("CreateConstraint LAUNCH {role}"));
        sc.create_constraint()
            .portfolio_id(&pid)
            .product_id(&product_id)
            .r#type("LAUNCH")
            .parameters(launch_parameters(&role))
            .idempotency_token(token(&c.address))
            .send()
            .await
            .map_err(sc_err("ServiceCatalog.CreateConstraint"))?;
        done.push(c.address.clone());
    }

    // Tag options: reuse the account's tag option when it exists, then associate.
    for c in of(ResourceType::TagOption, Action::Create) {
        let key = s(&c.after, "key").unwrap_or_default();
        let value = s(&c.after, "value").unwrap_or_default();
        started(c, format!("AssociateTagOptionWithResource {key}={value}"));
        let id = match find_tag_option(&sc, &key, &value).await? {
            Some(id) => id,
            None => match sc.create_tag_option().key(&key).value(&value).send().await {
                Ok(out) => out.tag_option_detail.and_then(|t| t.id).unwrap_or_default(),
                Err(e) => {
                    let e = AwsError::call("ServiceCatalog.CreateTagOption", e);
                    // Created by someone else since we listed: it is account-wide, reuse it.
                    match e.code() {
                        Some("DuplicateResourceException") => {
                            find_tag_option(&sc, &key, &value).await?.ok_or(e)?
                        }
                        _ => return Err(e.into()),
                    }
                }
            },
        };
        sc.associate_tag_option_with_resource()
            .resource_id(&pid)
            .tag_option_id(&id)
            .send()
            .await
            .map_err(sc_err("ServiceCatalog.AssociateTagOptionWithResource"))?;
        done.push(c.address.clone());
    }

    // Principals in the hub.
    for c in of(ResourceType::Principal, Action::Create)
        .into_iter()
        .filter(|c| !c.address.contains('@'))
    {
        let principal = s(&c.after, "principal").unwrap_or_default();
        started(c, format!("AssociatePrincipalWithPortfolio {principal}"));
        sc.associate_principal_with_portfolio()
            .portfolio_id(&pid)
            .principal_arn(&principal)
            .principal_type(PrincipalType::Iam)
            .send()
            .await
            .map_err(sc_err("ServiceCatalog.AssociatePrincipalWithPortfolio"))?;
        done.push(c.address.clone());
    }

    // Shares; account shares are accepted in the recipient, then its principals associated.
    for c in of(ResourceType::Share, Action::Create) {
        started(c, "CreatePortfolioShare".into());
        let mut req = sc.create_portfolio_share().portfolio_id(&pid);
        if let Some(unit) = s(&c.after, "unitId") {
            req = req.organization_node(
                OrganizationNode::builder()
                    .r#type(OrganizationNodeType::OrganizationalUnit)
                    .value(unit)
                    .build(),
            );
        } else if let Some(account) = s(&c.after, "account") {
            req = req.account_id(account);
        } else {
            return Err(ApplyError::Inconsistent(format!(
                "{}: the recipient is not known yet; run apply again",
                c.address
            )));
        }
        let out = req
            .send()
            .await
            .map_err(sc_err("ServiceCatalog.CreatePortfolioShare"))?;
        // Organization-node shares run asynchronously: the token says when they are done.
        if let Some(token) = out.portfolio_share_token() {
            wait_share(&sc, token, &c.address, polling, progress).await?;
        }
        done.push(c.address.clone());
    }
    for c in of(ResourceType::Share, Action::Create)
        .into_iter()
        .chain(of(ResourceType::Share, Action::Update))
    {
        let Some(account) = s(&c.after, "account") else {
            continue;
        };
        progress.event(Event::Started {
            address: c.address.clone(),
            what: format!("AcceptPortfolioShare in {account}"),
        });
        let edge = edge_for(aws, live, &account).await?;
        accept_share(&edge.servicecatalog(region), &pid, &account, polling).await?;
        if c.action == Action::Update {
            done.push(c.address.clone());
        }
    }
    for c in of(ResourceType::Principal, Action::Create)
        .into_iter()
        .filter(|c| c.address.contains('@'))
    {
        let account = s(&c.after, "account").ok_or_else(|| {
            ApplyError::Inconsistent(format!("{}: the recipient is not known yet", c.address))
        })?;
        let principal = s(&c.after, "principal").unwrap_or_default();
        started(
            c,
            format!("AssociatePrincipalWithPortfolio {principal} in {account}"),
        );
        let edge = edge_for(aws, live, &account).await?;
        edge.servicecatalog(region)
            .associate_principal_with_portfolio()
            .portfolio_id(&pid)
            .principal_arn(&principal)
            .principal_type(PrincipalType::Iam)
            .send()
            .await
            .map_err(sc_err("ServiceCatalog.AssociatePrincipalWithPortfolio"))?;
        done.push(c.address.clone());
    }
    Ok(done.into_vec())
}

/// Disassociates a principal deleted by the plan, in the account it was associated in.
async fn disassociate(
    aws: &Aws,
    live: &LiveState,
    hub_id: &str,
    region: &str,
    c: &Change,
    progress: &dyn Progress,
) -> Result<(), ApplyError> {
    let account = s(&c.before, "account").unwrap_or_else(|| hub_id.to_string());
    let pid = s(&c.before, "portfolioId").unwrap_or_default();
    let principal = s(&c.before, "principal").unwrap_or_default();
    progress.event(Event::Started {
        address: c.address.clone(),
        what: format!("DisassociatePrincipalFromPortfolio {principal}"),
    });
    edge_for(aws, live, &account)
        .await?
        .servicecatalog(region)
        .disassociate_principal_from_portfolio()
        .portfolio_id(&pid)
        .principal_arn(&principal)
        .send()
        .await
        .map_err(sc_err("ServiceCatalog.DisassociatePrincipalFromPortfolio"))?;
    Ok(())
}

/// Detaches everything from a pruned portfolio, as AWS requires before DeletePortfolio:
/// shares, principals, tag options, constraints, then its products (estate's own, deleted).
async fn teardown(
    sc: &aws_sdk_servicecatalog::Client,
    l: &crate::live::catalog::LivePortfolio,
    address: &str,
    polling: Polling,
    progress: &dyn Progress,
) -> Result<(), ApplyError> {
    for account in &l.shared_accounts {
        sc.delete_portfolio_share()
            .portfolio_id(&l.id)
            .account_id(account)
            .send()
            .await
            .map_err(sc_err("ServiceCatalog.DeletePortfolioShare"))?;
    }
    for unit in &l.shared_units {
        let out = sc
            .delete_portfolio_share()
            .portfolio_id(&l.id)
            .organization_node(
                OrganizationNode::builder()
                    .r#type(OrganizationNodeType::OrganizationalUnit)
                    .value(unit)
                    .build(),
            )
            .send()
            .await
            .map_err(sc_err("ServiceCatalog.DeletePortfolioShare"))?;
        // DeletePortfolio refuses a portfolio whose unshare is still running.
        if let Some(token) = out.portfolio_share_token() {
            wait_share(sc, token, address, polling, progress).await?;
        }
    }
    for arn in &l.principals {
        sc.disassociate_principal_from_portfolio()
            .portfolio_id(&l.id)
            .principal_arn(arn)
            .send()
            .await
            .map_err(sc_err("ServiceCatalog.DisassociatePrincipalFromPortfolio"))?;
    }
    for t in &l.tag_options {
        sc.disassociate_tag_option_from_resource()
            .resource_id(&l.id)
            .tag_option_id(&t.id)
            .send()
            .await
            .map_err(sc_err("ServiceCatalog.DisassociateTagOptionFromResource"))?;
    }
    for c in &l.constraints {
        sc.delete_constraint()
            .id(&c.id)
            .send()
            .await
            .map_err(sc_err("ServiceCatalog.DeleteConstraint"))?;
    }
    for p in &l.products {
        sc.disassociate_product_from_portfolio()
            .product_id(&p.id)
            .portfolio_id(&l.id)
            .send()
            .await
            .map_err(sc_err("ServiceCatalog.DisassociateProductFromPortfolio"))?;
        // Only this estate's own products: another's may sit in the same portfolio.
        if p.tags.contains_key(TAG_PRODUCT)
            && p.tags.get(crate::live::TAG_MANAGED_BY) == l.tags.get(crate::live::TAG_MANAGED_BY)
        {
            sc.delete_product()
                .id(&p.id)
                .send()
                .await
                .map_err(sc_err("ServiceCatalog.DeleteProduct"))?;
        }
    }
    Ok(())
}

/// The id of the account's tag option `key=value`, looked for on every page.
async fn find_tag_option(
    sc: &aws_sdk_servicecatalog::Client,
    key: &str,
    value: &str,
) -> Result<Option<String>, ApplyError> {
    let mut pages = sc
        .list_tag_options()
        .filters(
            aws_sdk_servicecatalog::types::ListTagOptionsFilters::builder()
                .key(key)
                .value(value)
                .build(),
        )
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(sc_err("ServiceCatalog.ListTagOptions"))?;
        let found = page
            .tag_option_details
            .unwrap_or_default()
            .into_iter()
            .find(|t| t.key.as_deref() == Some(key) && t.value.as_deref() == Some(value))
            .and_then(|t| t.id);
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

/// Waits for an organization-node share to finish: DescribePortfolioShareStatus until
/// COMPLETED; COMPLETED_WITH_ERRORS or ERROR fail with every account AWS names and why.
async fn wait_share(
    sc: &aws_sdk_servicecatalog::Client,
    token: &str,
    address: &str,
    polling: Polling,
    progress: &dyn Progress,
) -> Result<(), ApplyError> {
    use aws_sdk_servicecatalog::types::ShareStatus;
    let mut wait = Backoff::new(polling);
    let mut last: Option<ShareStatus> = None;
    loop {
        let out = sc
            .describe_portfolio_share_status()
            .portfolio_share_token(token)
            .send()
            .await
            .map_err(sc_err("ServiceCatalog.DescribePortfolioShareStatus"))?;
        let status = out.status().cloned().unwrap_or(ShareStatus::NotStarted);
        if last.as_ref() != Some(&status) {
            progress.event(Event::Started {
                address: address.to_string(),
                what: format!("share {}", status.as_str()),
            });
            last = Some(status.clone());
        }
        match status {
            ShareStatus::Completed => return Ok(()),
            ShareStatus::CompletedWithErrors | ShareStatus::Error => {
                let errors: Vec<String> = out
                    .share_details()
                    .map(|d| d.share_errors())
                    .unwrap_or_default()
                    .iter()
                    .map(|e| {
                        format!(
                            "{}: {} ({})",
                            e.accounts().join(", "),
                            e.message().unwrap_or("no message"),
                            e.error().unwrap_or("no error code")
                        )
                    })
                    .collect();
                return Err(ApplyError::ShareFailed {
                    what: format!("{address} ({})", status.as_str()),
                    reason: if errors.is_empty() {
                        "AWS gave no details".into()
                    } else {
                        errors.join("; ")
                    },
                });
            }
            _ => wait.sleep(&format!("{address} to complete")).await?,
        }
    }
}

/// The longest wait for a share to reach its recipient.
const ACCEPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// Accepts the share in the recipient (`sc` acts there). A share made a moment ago may not
/// have reached the recipient yet (AWS answers ResourceNotFoundException until it has), so
/// that answer is retried with backoff, for a bounded time.
async fn accept_share(
    sc: &aws_sdk_servicecatalog::Client,
    portfolio: &str,
    account: &str,
    polling: Polling,
) -> Result<(), ApplyError> {
    let mut wait = Backoff::new(Polling {
        timeout: polling.timeout.min(ACCEPT_TIMEOUT),
        ..polling
    });
    loop {
        match sc
            .accept_portfolio_share()
            .portfolio_id(portfolio)
            .send()
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) => {
                let e = AwsError::call("ServiceCatalog.AcceptPortfolioShare", e);
                if e.code() != Some("ResourceNotFoundException") {
                    return Err(e.into());
                }
                wait.sleep(&format!(
                    "the share of portfolio {portfolio} to reach account {account} ({e})"
                ))
                .await?;
            }
        }
    }
}

/// Product templates are always passed by URL: uploaded to the hub account's bucket.
async fn template_url(
    hub: &Aws,
    hub_id: &str,
    region: &str,
    text: &str,
) -> Result<String, ApplyError> {
    let bucket = templates::default_bucket(hub_id, region);
    match templates::upload(hub, hub_id, &bucket, region, text).await? {
        templates::Location::Url(u) => Ok(u),
        templates::Location::Body(_) => unreachable!("upload always gives a URL"),
    }
}
