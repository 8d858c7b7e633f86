//! Applying portfolio changes: in the hub account (through `memberRole`) the portfolio,
//! products and versions, constraints, tag options, principals and shares; in each recipient
//! account the share's acceptance and the principals there. Deletes run in reverse order.

use super::error::ApplyError;
use super::progress::{Done, Event, Progress};
use super::templates;
use crate::aws::wait::Backoff;
use crate::aws::wait::Polling;
use crate::aws::{Aws, AwsError};
use crate::live::LiveState;
use crate::live::catalog::SERVICE_PRINCIPAL;
use crate::plan::catalog::{
    DesiredPortfolio, is_name_pattern, launch_parameters, live_portfolio, live_product,
};
use crate::plan::{
    Action, Address, Change, ConstraintSide, DelegatedAdminSide, LiveConstraintSide,
    LivePortfolioSide, LiveProductSide, Plan, PortfolioSide, PrincipalSide, ProductSide,
    ResourceType, ShareSide, Side, TagOptionSide, VersionSide,
};
use crate::tags::{TAG_MANAGED_BY, TAG_PRODUCT};
use aws_sdk_servicecatalog::types::{
    OrganizationNode, OrganizationNodeType, PrincipalType, ProductType,
    ProvisioningArtifactProperties, ProvisioningArtifactType, Tag,
};
use std::collections::{BTreeMap, HashMap};

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
) -> Result<Vec<Address>, ApplyError> {
    let mut done = Done::new(progress);
    let changes: Vec<&Change> = plan
        .changes
        .iter()
        .filter(|c| c.resource_type.is_catalog())
        .collect();
    if let Some(c) = changes
        .iter()
        .find(|c| c.address == Address::CatalogOrganizationsAccess)
    {
        started(progress, c, "EnableAWSOrganizationsAccess".into());
        aws.servicecatalog(region)
            .enable_aws_organizations_access()
            .send()
            .await
            .map_err(sc_err("ServiceCatalog.EnableAWSOrganizationsAccess"))?;
        done.push(&c.address);
    }
    // After the access above: AWS registers delegated administrators only for trusted services.
    for c in changes
        .iter()
        .filter(|c| matches!(c.address, Address::CatalogDelegatedAdmin { .. }))
    {
        let after: &DelegatedAdminSide = c.after_as()?;
        let account = after.account.clone().ok_or_else(|| {
            ApplyError::Inconsistent(format!("{}: the account is not known yet", c.address))
        })?;
        started(
            progress,
            c,
            format!("RegisterDelegatedAdministrator {account} {SERVICE_PRINCIPAL}"),
        );
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
        done.push(&c.address);
    }
    let mut names: Vec<&str> = Vec::new();
    for n in changes.iter().filter_map(|c| c.address.portfolio()) {
        if !names.contains(&n) {
            names.push(n);
        }
    }
    for name in names {
        let mine: Vec<&Change> = changes
            .iter()
            .copied()
            .filter(|c| c.address.portfolio() == Some(name))
            .collect();
        let d = desired.iter().find(|d| d.name == name);
        let hub_id = d
            .and_then(|d| d.hub.clone())
            .or_else(|| {
                // A pruned portfolio: the account its delete names.
                mine.iter()
                    .find_map(|c| Some(c.before_as::<LivePortfolioSide>().ok()?.account.clone()))
            })
            .ok_or_else(|| {
                ApplyError::Inconsistent(format!("portfolio {name}: hub account unknown"))
            })?;
        let hub = edge_for(aws, live, &hub_id).await?;
        let mut one = OnePortfolio {
            aws,
            sc: hub.servicecatalog(region),
            hub,
            hub_id,
            name,
            changes: &mine,
            live,
            region,
            polling,
            progress,
            // Tokens name the intent, not only the resource: from the live state planned
            // from, so a constraint or product deleted and made again later is created anew,
            // never answered with the old one AWS remembers for the token; retries within
            // this apply still match.
            intent: live.fingerprint(),
            done: Done::new(progress),
        };
        let result = one.apply(d).await;
        done.append(one.done.into_vec());
        result?;
    }
    Ok(done.into_vec())
}

fn started(progress: &dyn Progress, c: &Change, what: String) {
    progress.event(Event::Started {
        address: c.address.to_string(),
        what,
    })
}

async fn edge_for(aws: &Aws, live: &LiveState, account: &str) -> Result<Aws, ApplyError> {
    Ok(aws.acting_in(account, live.caller()).await?)
}

fn tags(m: &BTreeMap<String, String>) -> Vec<Tag> {
    m.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build().expect("tag"))
        .collect()
}

/// The tags to add (new or changed) and the keys to remove to turn `live` into `wanted`.
fn tag_changes(
    live: &BTreeMap<String, String>,
    wanted: &BTreeMap<String, String>,
) -> (BTreeMap<String, String>, Vec<String>) {
    let add = wanted
        .iter()
        .filter(|(k, v)| live.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let remove = live
        .keys()
        .filter(|k| !wanted.contains_key(*k))
        .cloned()
        .collect();
    (add, remove)
}

/// The PrincipalType AWS needs with an ARN: IAM_PATTERN for a name pattern (no account).
fn principal_type(arn: &str) -> PrincipalType {
    if is_name_pattern(arn) {
        PrincipalType::IamPattern
    } else {
        PrincipalType::Iam
    }
}

fn unit_node(unit: &str) -> OrganizationNode {
    OrganizationNode::builder()
        .r#type(OrganizationNodeType::OrganizationalUnit)
        .value(unit)
        .build()
}

/// Whether a share change has apply accept it in its recipient account: an account share
/// created, or one the plan found not accepted.
fn needs_accept(c: &Change) -> Result<bool, ApplyError> {
    let after: &ShareSide = c.after_as()?;
    if after.account.clone().flatten().is_none() || after.accepted != Some(true) {
        return Ok(false);
    }
    Ok(match c.action {
        Action::Create => true,
        Action::Update => c.before_as::<ShareSide>()?.accepted != Some(true),
        _ => false,
    })
}

/// Whether a principal change is in a recipient account (else in the hub).
fn in_recipient(c: &Change) -> bool {
    matches!(
        c.address,
        Address::Principal {
            recipient: Some(_),
            ..
        }
    )
}

/// The portfolio id a change's `after` names, where it names one.
fn portfolio_id_in(c: &Change) -> Option<String> {
    match c.after.as_ref()? {
        Side::Portfolio(p) => p.id.clone(),
        Side::Product(p) => p.portfolio_id.clone(),
        Side::Constraint(x) => x.portfolio_id.clone(),
        Side::TagOption(t) => t.portfolio_id.clone(),
        Side::Principal(p) => p.portfolio_id.clone(),
        Side::Share(x) => x.portfolio_id.clone(),
        _ => None,
    }
}

/// The (manifest name, id) of an existing product a change's `after` names.
fn product_in(c: &Change) -> Option<(String, String)> {
    match c.after.as_ref()? {
        Side::Product(p) => Some((p.name.clone(), p.id.clone()?)),
        Side::Version(v) => Some((v.product.clone()?, v.product_id.clone()?)),
        Side::Constraint(x) => Some((x.product.clone(), x.product_id.clone()?)),
        _ => None,
    }
}

/// One portfolio's changes, applied in its hub (and its recipients).
struct OnePortfolio<'a> {
    aws: &'a Aws,
    hub: Aws,
    hub_id: String,
    sc: aws_sdk_servicecatalog::Client,
    name: &'a str,
    changes: &'a [&'a Change],
    live: &'a LiveState,
    region: &'a str,
    polling: Polling,
    progress: &'a dyn Progress,
    intent: String,
    done: Done<'a>,
}

impl<'a> OnePortfolio<'a> {
    fn of(&self, t: ResourceType, a: Action) -> Vec<&'a Change> {
        self.changes
            .iter()
            .copied()
            .filter(|c| c.resource_type == t && c.action == a)
            .collect()
    }

    fn token(&self, c: &Change) -> String {
        super::options::operation_id(&self.intent, &c.address.to_string())
    }

    fn started(&self, c: &Change, what: String) {
        started(self.progress, c, what)
    }

    async fn apply(&mut self, d: Option<&DesiredPortfolio>) -> Result<(), ApplyError> {
        let created = !self.of(ResourceType::Portfolio, Action::Create).is_empty();
        if self.deletes().await? && !created {
            return Ok(());
        }
        let Some(d) = d else {
            return Ok(());
        };
        let pid = self.portfolio(d).await?;
        let (product_ids, first_versions) = self.products(d, &pid).await?;
        self.versions(d, &product_ids, &first_versions).await?;
        self.constraints(&pid, &product_ids).await?;
        self.tag_options(&pid).await?;
        self.hub_principals(&pid).await?;
        self.shares(&pid).await?;
        self.recipient_principals(&pid).await
    }

    /// Deletes first, in reverse dependency order: recipient principals, shares, principals,
    /// tag options, constraints, products; the portfolio itself last of all. True when the
    /// portfolio was deleted.
    async fn deletes(&mut self) -> Result<bool, ApplyError> {
        let (recipient_deletes, hub_deletes): (Vec<&Change>, Vec<&Change>) = self
            .of(ResourceType::Principal, Action::Delete)
            .into_iter()
            .partition(|c| in_recipient(c));
        for c in recipient_deletes {
            self.disassociate(c).await?;
            self.done.push(&c.address);
        }
        for c in self.of(ResourceType::Share, Action::Delete) {
            let b: &ShareSide = c.before_as()?;
            let pid = b.portfolio_id.clone().unwrap_or_default();
            self.started(c, "DeletePortfolioShare".into());
            let mut req = self.sc.delete_portfolio_share().portfolio_id(&pid);
            if let Some(account) = b.account.clone().flatten() {
                req = req.account_id(account);
            } else if let Some(unit) = b.unit_id.clone().flatten() {
                req = req.organization_node(unit_node(&unit));
            }
            let out = req
                .send()
                .await
                .map_err(sc_err("ServiceCatalog.DeletePortfolioShare"))?;
            // Unsharing an organization node runs asynchronously too.
            self.share_done(out.portfolio_share_token(), c).await?;
            self.done.push(&c.address);
        }
        for c in hub_deletes {
            self.disassociate(c).await?;
            self.done.push(&c.address);
        }
        for c in self.of(ResourceType::TagOption, Action::Delete) {
            let b: &TagOptionSide = c.before_as()?;
            self.started(c, "DisassociateTagOptionFromResource".into());
            self.sc
                .disassociate_tag_option_from_resource()
                .resource_id(b.portfolio_id.clone().unwrap_or_default())
                .tag_option_id(b.id.clone().unwrap_or_default())
                .send()
                .await
                .map_err(sc_err("ServiceCatalog.DisassociateTagOptionFromResource"))?;
            self.done.push(&c.address);
        }
        for c in self
            .of(ResourceType::Constraint, Action::Delete)
            .into_iter()
            .chain(self.of(ResourceType::Constraint, Action::Replace))
        {
            let b: &LiveConstraintSide = c.before_as()?;
            self.started(c, "DeleteConstraint".into());
            self.sc
                .delete_constraint()
                .id(&b.id)
                .send()
                .await
                .map_err(sc_err("ServiceCatalog.DeleteConstraint"))?;
            if c.action == Action::Delete {
                self.done.push(&c.address);
            }
        }
        // Products that left the manifest, once their constraints are gone (above).
        for c in self.of(ResourceType::Product, Action::Delete) {
            let b: &LiveProductSide = c.before_as()?;
            let pid = b.portfolio_id.clone().flatten().unwrap_or_default();
            self.started(c, "DisassociateProductFromPortfolio, DeleteProduct".into());
            self.delete_product(&pid, &b.id).await?;
            self.done.push(&c.address);
        }
        let Some(c) = self
            .of(ResourceType::Portfolio, Action::Delete)
            .first()
            .copied()
        else {
            return Ok(false);
        };
        let b: &LivePortfolioSide = c.before_as()?;
        let pid = b.id.clone();
        // The account that owns it: a portfolio whose hub moved is deleted in the old one.
        let owner = b.account.clone();
        self.started(c, "DeletePortfolio, after everything attached to it".into());
        let owner_sc = edge_for(self.aws, self.live, &owner)
            .await?
            .servicecatalog(self.region);
        if let Some(l) = self.live.portfolios.iter().find(|p| p.id == pid) {
            teardown(
                &owner_sc,
                l,
                &c.address.to_string(),
                self.polling,
                self.progress,
            )
            .await?;
        }
        owner_sc
            .delete_portfolio()
            .id(&pid)
            .send()
            .await
            .map_err(sc_err("ServiceCatalog.DeletePortfolio"))?;
        self.done.push(&c.address);
        Ok(true)
    }

    async fn delete_product(&self, pid: &str, id: &str) -> Result<(), ApplyError> {
        self.sc
            .disassociate_product_from_portfolio()
            .product_id(id)
            .portfolio_id(pid)
            .send()
            .await
            .map_err(sc_err("ServiceCatalog.DisassociateProductFromPortfolio"))?;
        if let Err(e) = self.sc.delete_product().id(id).send().await {
            // Out of the portfolio, the product would be out of sight of the next plan (read
            // per portfolio): put it back so the delete is planned and tried again.
            let back = self
                .sc
                .associate_product_with_portfolio()
                .product_id(id)
                .portfolio_id(pid)
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
        Ok(())
    }

    /// The portfolio created or updated; its id.
    async fn portfolio(&mut self, d: &DesiredPortfolio) -> Result<String, ApplyError> {
        // Not every change names it (a new version names only its product): the live
        // portfolio does, when it exists.
        let live_portfolio = live_portfolio(d, self.live);
        let mut portfolio_id = self
            .changes
            .iter()
            .find_map(|c| portfolio_id_in(c))
            .or_else(|| live_portfolio.map(|l| l.id.clone()));
        for c in self.of(ResourceType::Portfolio, Action::Create) {
            self.started(c, format!("CreatePortfolio {}", d.display_name));
            let out = self
                .sc
                .create_portfolio()
                .display_name(&d.display_name)
                .provider_name(&d.provider_name)
                .set_description(d.description.clone())
                .set_tags(Some(tags(&d.tags)))
                .idempotency_token(self.token(c))
                .send()
                .await
                .map_err(sc_err("ServiceCatalog.CreatePortfolio"))?;
            portfolio_id = out.portfolio_detail.and_then(|p| p.id);
            self.done.push(&c.address);
        }
        for c in self.of(ResourceType::Portfolio, Action::Update) {
            let id = c
                .after_as::<PortfolioSide>()?
                .id
                .clone()
                .unwrap_or_default();
            // Only the tags that differ: AddTags takes at most 20, and tags that left the
            // manifest must be removed or the plan never converges.
            let live_tags = c
                .before_as::<LivePortfolioSide>()?
                .tags
                .clone()
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
            self.started(c, "UpdatePortfolio".into());
            self.sc
                .update_portfolio()
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
            self.done.push(&c.address);
        }
        portfolio_id
            .ok_or_else(|| ApplyError::Inconsistent(format!("portfolio {}: no id", self.name)))
    }

    /// Products created (with their first version) and updated; the ids of all products by
    /// manifest name, and the versions created with their product.
    async fn products(
        &mut self,
        d: &DesiredPortfolio,
        pid: &str,
    ) -> Result<(HashMap<String, String>, Vec<Address>), ApplyError> {
        let mut first_versions = Vec::new();
        // Ids of existing products: from the live portfolio, and from changes that name them
        // (a constraint added to an existing product names its id only there).
        // An adopted product is known by its display name until its tags are written.
        let estate = d.tags.get(TAG_MANAGED_BY).map(String::as_str);
        let l = live_portfolio(d, self.live);
        let mut product_ids: HashMap<String, String> = l
            .map(|l| {
                l.products
                    .iter()
                    .filter_map(|p| Some((p.tags.get(TAG_PRODUCT)?.clone(), p.id.clone())))
                    .collect()
            })
            .unwrap_or_default();
        product_ids.extend(d.products.iter().filter_map(|p| {
            let found = live_product(d, p, l, estate.unwrap_or_default())?;
            Some((p.name.clone(), found.id.clone()))
        }));
        product_ids.extend(self.changes.iter().filter_map(|c| product_in(c)));
        for c in self.of(ResourceType::Product, Action::Create) {
            let pname = c.after_as::<ProductSide>()?.name.clone();
            let p = d.products.iter().find(|p| p.name == pname).ok_or_else(|| {
                ApplyError::Inconsistent(format!("product {pname} is not in the manifest"))
            })?;
            let first = p.versions.first().ok_or_else(|| {
                ApplyError::Inconsistent(format!("product {pname} has no version"))
            })?;
            let url =
                template_url(&self.hub, &self.hub_id, self.region, &first.template.text).await?;
            self.started(
                c,
                format!(
                    "CreateProduct {} with version {}",
                    p.display_name, first.name
                ),
            );
            let out = self
                .sc
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
                .idempotency_token(self.token(c))
                .send()
                .await
                .map_err(sc_err("ServiceCatalog.CreateProduct"))?;
            let product_id = out
                .product_view_detail
                .and_then(|v| v.product_view_summary)
                .and_then(|s| s.product_id)
                .unwrap_or_default();
            self.sc
                .associate_product_with_portfolio()
                .product_id(&product_id)
                .portfolio_id(pid)
                .send()
                .await
                .map_err(sc_err("ServiceCatalog.AssociateProductWithPortfolio"))?;
            product_ids.insert(pname.clone(), product_id);
            first_versions.push(Address::ProductVersion {
                portfolio: self.name.to_string(),
                product: pname.clone(),
                version: first.name.clone(),
            });
            self.done.push(&c.address);
        }
        for c in self.of(ResourceType::Product, Action::Update) {
            let after: &ProductSide = c.after_as()?;
            let Some(p) = d.products.iter().find(|p| p.name == after.name) else {
                continue;
            };
            // Only the tags that differ, as for the portfolio: AddTags takes at most 20.
            let live_tags = c
                .before_as::<LiveProductSide>()?
                .tags
                .clone()
                .unwrap_or_default();
            let (add, remove) = tag_changes(&live_tags, &after.tags);
            self.started(c, "UpdateProduct".into());
            self.sc
                .update_product()
                .id(after.id.clone().unwrap_or_default())
                .name(&p.display_name)
                .owner(&p.owner)
                // Absent leaves the old value; empty clears it (read back as absent).
                .description(p.description.clone().unwrap_or_default())
                .distributor(p.distributor.clone().unwrap_or_default())
                .support_email(p.support_email.clone().unwrap_or_default())
                .set_add_tags((!add.is_empty()).then(|| tags(&add)))
                .set_remove_tags((!remove.is_empty()).then_some(remove))
                .send()
                .await
                .map_err(sc_err("ServiceCatalog.UpdateProduct"))?;
            self.done.push(&c.address);
        }
        Ok((product_ids, first_versions))
    }

    async fn versions(
        &mut self,
        d: &DesiredPortfolio,
        product_ids: &HashMap<String, String>,
        first_versions: &[Address],
    ) -> Result<(), ApplyError> {
        for c in self.of(ResourceType::ProductVersion, Action::Create) {
            if first_versions.contains(&c.address) {
                // Created together with its product.
                self.done.push(&c.address);
                continue;
            }
            let after: &VersionSide = c.after_as()?;
            let pname = after.product.clone().unwrap_or_default();
            let vname = &after.name;
            let product_id = product_ids.get(&pname).cloned().unwrap_or_default();
            let v = d
                .products
                .iter()
                .find(|p| p.name == pname)
                .and_then(|p| p.versions.iter().find(|v| &v.name == vname))
                .ok_or_else(|| {
                    ApplyError::Inconsistent(format!(
                        "version {vname} of {pname} is not in the manifest"
                    ))
                })?;
            let url = template_url(&self.hub, &self.hub_id, self.region, &v.template.text).await?;
            self.started(c, format!("CreateProvisioningArtifact {vname}"));
            self.sc
                .create_provisioning_artifact()
                .product_id(&product_id)
                .parameters(
                    ProvisioningArtifactProperties::builder()
                        .name(vname)
                        .set_description(v.description.clone())
                        .info("LoadTemplateFromURL", url)
                        .r#type(ProvisioningArtifactType::CloudFormationTemplate)
                        .build(),
                )
                .idempotency_token(self.token(c))
                .send()
                .await
                .map_err(sc_err("ServiceCatalog.CreateProvisioningArtifact"))?;
            self.done.push(&c.address);
        }
        for c in self.of(ResourceType::ProductVersion, Action::Delete) {
            let b: &VersionSide = c.before_as()?;
            self.started(c, "DeleteProvisioningArtifact".into());
            self.sc
                .delete_provisioning_artifact()
                .product_id(b.product_id.clone().unwrap_or_default())
                .provisioning_artifact_id(b.id.clone().unwrap_or_default())
                .send()
                .await
                .map_err(sc_err("ServiceCatalog.DeleteProvisioningArtifact"))?;
            self.done.push(&c.address);
        }
        for c in self.of(ResourceType::ProductVersion, Action::Update) {
            let after: &VersionSide = c.after_as()?;
            let active = after.active;
            self.started(c, format!("UpdateProvisioningArtifact Active={active}"));
            self.sc
                .update_provisioning_artifact()
                .product_id(after.product_id.clone().unwrap_or_default())
                .provisioning_artifact_id(after.id.clone().unwrap_or_default())
                .active(active)
                .send()
                .await
                .map_err(sc_err("ServiceCatalog.UpdateProvisioningArtifact"))?;
            self.done.push(&c.address);
        }
        Ok(())
    }

    /// Launch constraints.
    async fn constraints(
        &mut self,
        pid: &str,
        product_ids: &HashMap<String, String>,
    ) -> Result<(), ApplyError> {
        for c in self
            .of(ResourceType::Constraint, Action::Create)
            .into_iter()
            .chain(self.of(ResourceType::Constraint, Action::Replace))
        {
            let after: &ConstraintSide = c.after_as()?;
            let role = &after.local_role_name;
            let product_id = product_ids.get(&after.product).cloned().unwrap_or_default();
            self.started(c, format!("CreateConstraint LAUNCH {role}"));
            self.sc
                .create_constraint()
                .portfolio_id(pid)
                .product_id(&product_id)
                .r#type("LAUNCH")
                .parameters(launch_parameters(role))
                .idempotency_token(self.token(c))
                .send()
                .await
                .map_err(sc_err("ServiceCatalog.CreateConstraint"))?;
            self.done.push(&c.address);
        }
        Ok(())
    }

    /// Tag options: reuse the account's tag option when it exists, then associate.
    async fn tag_options(&mut self, pid: &str) -> Result<(), ApplyError> {
        for c in self.of(ResourceType::TagOption, Action::Create) {
            let after: &TagOptionSide = c.after_as()?;
            let (key, value) = (&after.key, &after.value);
            self.started(c, format!("AssociateTagOptionWithResource {key}={value}"));
            let sc = &self.sc;
            let id = match find_tag_option(sc, key, value).await? {
                Some(id) => id,
                None => match sc.create_tag_option().key(key).value(value).send().await {
                    Ok(out) => out.tag_option_detail.and_then(|t| t.id).unwrap_or_default(),
                    Err(e) => {
                        let e = AwsError::call("ServiceCatalog.CreateTagOption", e);
                        // Created by someone else since we listed: it is account-wide, reuse
                        // it.
                        match e.code() {
                            Some("DuplicateResourceException") => {
                                find_tag_option(sc, key, value).await?.ok_or(e)?
                            }
                            _ => return Err(e.into()),
                        }
                    }
                },
            };
            sc.associate_tag_option_with_resource()
                .resource_id(pid)
                .tag_option_id(&id)
                .send()
                .await
                .map_err(sc_err("ServiceCatalog.AssociateTagOptionWithResource"))?;
            self.done.push(&c.address);
        }
        Ok(())
    }

    async fn hub_principals(&mut self, pid: &str) -> Result<(), ApplyError> {
        for c in self
            .of(ResourceType::Principal, Action::Create)
            .into_iter()
            .filter(|c| !in_recipient(c))
        {
            let principal = &c.after_as::<PrincipalSide>()?.principal;
            self.started(c, format!("AssociatePrincipalWithPortfolio {principal}"));
            self.sc
                .associate_principal_with_portfolio()
                .portfolio_id(pid)
                .principal_arn(principal)
                .principal_type(principal_type(principal))
                .send()
                .await
                .map_err(sc_err("ServiceCatalog.AssociatePrincipalWithPortfolio"))?;
            self.done.push(&c.address);
        }
        Ok(())
    }

    /// Shares, created or with their flags updated; account shares are accepted in the
    /// recipient.
    async fn shares(&mut self, pid: &str) -> Result<(), ApplyError> {
        for c in self.of(ResourceType::Share, Action::Create) {
            let after: &ShareSide = c.after_as()?;
            self.started(c, "CreatePortfolioShare".into());
            let mut req = self
                .sc
                .create_portfolio_share()
                .portfolio_id(pid)
                .set_share_tag_options(after.share_tag_options)
                .set_share_principals(after.share_principals);
            if let Some(unit) = after.unit_id.clone().flatten() {
                req = req.organization_node(unit_node(&unit));
            } else if let Some(account) = after.account.clone().flatten() {
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
            self.share_done(out.portfolio_share_token(), c).await?;
            self.done.push(&c.address);
        }
        for c in self.of(ResourceType::Share, Action::Update) {
            self.update_share(pid, c).await?;
            if !needs_accept(c)? {
                self.done.push(&c.address);
            }
        }
        for c in self
            .of(ResourceType::Share, Action::Create)
            .into_iter()
            .chain(self.of(ResourceType::Share, Action::Update))
        {
            if !needs_accept(c)? {
                continue;
            }
            let Some(account) = c.after_as::<ShareSide>()?.account.clone().flatten() else {
                continue;
            };
            self.started(c, format!("AcceptPortfolioShare in {account}"));
            let edge = edge_for(self.aws, self.live, &account).await?;
            accept_share(
                &edge.servicecatalog(self.region),
                pid,
                &account,
                self.polling,
            )
            .await?;
            if c.action == Action::Update {
                self.done.push(&c.address);
            }
        }
        Ok(())
    }

    /// UpdatePortfolioShare when a share's flags differ from live's (an update may also be
    /// only the acceptance). AWS updates asynchronously: a token to wait on unless done.
    async fn update_share(&self, pid: &str, c: &Change) -> Result<(), ApplyError> {
        use aws_sdk_servicecatalog::types::ShareStatus;
        let (before, after): (&ShareSide, &ShareSide) = (c.before_as()?, c.after_as()?);
        let flag = |b: Option<bool>, a: Option<bool>| (b != a).then_some(a).flatten();
        let tag_options = flag(before.share_tag_options, after.share_tag_options);
        let principals = flag(before.share_principals, after.share_principals);
        if tag_options.is_none() && principals.is_none() {
            return Ok(());
        }
        let mut req = self
            .sc
            .update_portfolio_share()
            .portfolio_id(pid)
            .set_share_tag_options(tag_options)
            .set_share_principals(principals);
        if let Some(account) = after.account.clone().flatten() {
            req = req.account_id(account);
        } else if let Some(unit) = after.unit_id.clone().flatten() {
            req = req.organization_node(unit_node(&unit));
        } else {
            return Err(ApplyError::Inconsistent(format!(
                "{}: the recipient is not known",
                c.address
            )));
        }
        self.started(
            c,
            format!(
                "UpdatePortfolioShare{}{}",
                tag_options.map_or(String::new(), |v| format!(" ShareTagOptions={v}")),
                principals.map_or(String::new(), |v| format!(" SharePrincipals={v}"))
            ),
        );
        let out = req
            .send()
            .await
            .map_err(sc_err("ServiceCatalog.UpdatePortfolioShare"))?;
        if out.status() == Some(&ShareStatus::Completed) {
            return Ok(());
        }
        self.share_done(out.portfolio_share_token(), c).await
    }

    /// Principals in recipient accounts, once their share is accepted.
    async fn recipient_principals(&mut self, pid: &str) -> Result<(), ApplyError> {
        for c in self
            .of(ResourceType::Principal, Action::Create)
            .into_iter()
            .filter(|c| in_recipient(c))
        {
            let after: &PrincipalSide = c.after_as()?;
            let account = after.account.clone().ok_or_else(|| {
                ApplyError::Inconsistent(format!("{}: the recipient is not known yet", c.address))
            })?;
            let principal = &after.principal;
            self.started(
                c,
                format!("AssociatePrincipalWithPortfolio {principal} in {account}"),
            );
            let edge = edge_for(self.aws, self.live, &account).await?;
            edge.servicecatalog(self.region)
                .associate_principal_with_portfolio()
                .portfolio_id(pid)
                .principal_arn(principal)
                .principal_type(PrincipalType::Iam)
                .send()
                .await
                .map_err(sc_err("ServiceCatalog.AssociatePrincipalWithPortfolio"))?;
            self.done.push(&c.address);
        }
        Ok(())
    }

    /// Waits for an asynchronous share change, when AWS gave a token for one.
    async fn share_done(&self, token: Option<&str>, c: &Change) -> Result<(), ApplyError> {
        match token {
            Some(token) => {
                let address = c.address.to_string();
                wait_share(&self.sc, token, &address, self.polling, self.progress).await
            }
            None => Ok(()),
        }
    }

    /// Disassociates a principal deleted by the plan, in the account it was associated in.
    async fn disassociate(&self, c: &Change) -> Result<(), ApplyError> {
        let b: &PrincipalSide = c.before_as()?;
        let account = b.account.clone().unwrap_or_else(|| self.hub_id.clone());
        self.started(
            c,
            format!("DisassociatePrincipalFromPortfolio {}", b.principal),
        );
        edge_for(self.aws, self.live, &account)
            .await?
            .servicecatalog(self.region)
            .disassociate_principal_from_portfolio()
            .portfolio_id(b.portfolio_id.clone().unwrap_or_default())
            .principal_arn(&b.principal)
            .principal_type(principal_type(&b.principal))
            .send()
            .await
            .map_err(sc_err("ServiceCatalog.DisassociatePrincipalFromPortfolio"))?;
        Ok(())
    }
}

/// Detaches everything from a pruned portfolio, as AWS requires before DeletePortfolio:
/// shares, principals, tag options, constraints, then its products (estate's own, deleted).
async fn teardown(
    sc: &aws_sdk_servicecatalog::Client,
    l: &crate::live::LivePortfolio,
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
            .principal_type(principal_type(arn))
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
            && p.tags.get(crate::tags::TAG_MANAGED_BY) == l.tags.get(crate::tags::TAG_MANAGED_BY)
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
    let what = format!("{address} to complete");
    loop {
        let out = wait
            .call(&what, || async {
                sc.describe_portfolio_share_status()
                    .portfolio_share_token(token)
                    .send()
                    .await
                    .map_err(|e| AwsError::call("ServiceCatalog.DescribePortfolioShareStatus", e))
            })
            .await?;
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
            _ => wait.sleep(&what).await?,
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
