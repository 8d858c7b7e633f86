//! Service Catalog portfolios: the manifest's Portfolio documents resolved against live ids
//! and diffed with live portfolios into changes. Pure, like the rest of planning.

use super::address::{Address, ShareTarget};
use super::desired::KNOWN_AFTER_APPLY;
use super::model::*;
use super::side::*;
use crate::live::LiveState;
use crate::live::{LivePortfolio, LiveProduct};
use crate::manifest::model::PortfolioSpec;
use crate::manifest::refs::{self, Ref};
use crate::manifest::{Doc, Manifest};
use crate::tags::{TAG_PORTFOLIO, TAG_PRODUCT};
use crate::template::Template;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

/// A portfolio as the manifest wants it, with ids resolved where they exist.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredPortfolio {
    pub name: String,
    pub hub_name: String,
    /// The hub account id, `None` when apply creates the account.
    pub hub: Option<String>,
    pub display_name: String,
    pub provider_name: String,
    pub description: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub products: Vec<DesiredProduct>,
    pub tag_options: BTreeSet<(String, String)>,
    pub principals: BTreeSet<String>,
    /// Recipient accounts: (name, id when known).
    pub share_accounts: Vec<(String, Option<String>)>,
    /// Units by path, with their id when they exist.
    pub share_units: Vec<(String, Option<String>)>,
    /// `role/Name` forms, made ARNs in each recipient account.
    pub recipient_principals: Vec<String>,
    /// Unit shares give their accounts the name-pattern principals (SharePrincipals).
    pub share_principals: bool,
    /// Shares give their recipients the tag options (ShareTagOptions).
    pub share_tag_options: bool,
    /// The AWS partition those ARNs are in.
    pub partition: String,
    /// The manifest adopts the hub's untagged portfolio of this display name, and its
    /// untagged products of the names `products` give.
    pub adopt: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DesiredProduct {
    pub name: String,
    pub display_name: String,
    pub owner: String,
    pub description: Option<String>,
    pub distributor: Option<String>,
    pub support_email: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub versions: Vec<DesiredVersion>,
    pub launch_role_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DesiredVersion {
    pub name: String,
    pub description: Option<String>,
    pub template: Template,
}

/// Resolves every Portfolio of the manifest.
pub fn resolve(m: &Manifest, live: &LiveState) -> Vec<DesiredPortfolio> {
    m.portfolios
        .iter()
        .map(|p| resolve_one(m, live, p))
        .collect()
}

fn account_id(m: &Manifest, live: &LiveState, name: &str) -> Option<String> {
    let a = m.accounts().iter().find(|a| a.name == name)?;
    live.account_by_email(&a.email)
        .map(|l| l.id.clone())
        .or_else(|| a.id.clone())
}

fn resolve_one(m: &Manifest, live: &LiveState, p: &Doc<PortfolioSpec>) -> DesiredPortfolio {
    let spec = &p.spec;
    let value = |s: &str| {
        refs::substitute(s, |r| match r {
            Ref::Account(n) => {
                Some(account_id(m, live, n).unwrap_or_else(|| KNOWN_AFTER_APPLY.into()))
            }
            Ref::Unit(path) if path == "/" => Some(live.root_id.clone()),
            Ref::Unit(path) => Some(
                live.unit_by_path(path)
                    .map_or_else(|| KNOWN_AFTER_APPLY.to_string(), |u| u.id.clone()),
            ),
            Ref::Estate => Some(m.name().to_string()),
            Ref::Environment | Ref::Region | Ref::Output(_) => None,
        })
        .unwrap_or_else(|_| s.to_string())
    };
    let mut tags = spec.tags.clone();
    tags.insert(crate::tags::TAG_MANAGED_BY.into(), m.name().into());
    tags.insert(TAG_PORTFOLIO.into(), p.name.clone());
    // The documented defaults: share what the portfolio declares.
    let share_principals = spec.share_principals.unwrap_or(!spec.principals.is_empty());
    let share_tag_options = spec
        .share_tag_options
        .unwrap_or(!spec.tag_options.is_empty());
    DesiredPortfolio {
        partition: live.partition.clone(),
        name: p.name.clone(),
        hub_name: spec.account.clone(),
        hub: account_id(m, live, &spec.account),
        display_name: spec.display_name.clone(),
        provider_name: spec.provider_name.clone(),
        description: spec.description.clone(),
        tags,
        products: spec
            .products
            .iter()
            .map(|pr| DesiredProduct {
                name: pr.name.clone(),
                display_name: pr.display_name.clone(),
                owner: pr.owner.clone(),
                description: pr.description.clone(),
                distributor: pr.distributor.clone(),
                support_email: pr.support_email.clone(),
                // The manifest's tags, then estate's own (validate refuses `estate:` keys).
                tags: pr
                    .tags
                    .iter()
                    .map(|(k, v)| (k.clone(), v.0.clone()))
                    .chain([
                        (
                            crate::tags::TAG_MANAGED_BY.to_string(),
                            m.name().to_string(),
                        ),
                        (TAG_PRODUCT.to_string(), pr.name.clone()),
                    ])
                    .collect(),
                versions: pr
                    .versions
                    .iter()
                    .map(|v| DesiredVersion {
                        name: v.name.clone(),
                        description: v.description.clone(),
                        template: m.templates[&p.resolve_path(&v.template)].clone(),
                    })
                    .collect(),
                launch_role_name: pr.launch_role_name.clone(),
            })
            .collect(),
        tag_options: spec
            .tag_options
            .iter()
            .flat_map(|(k, vs)| vs.iter().map(move |v| (k.clone(), v.clone())))
            .collect(),
        principals: spec.principals.iter().map(|s| value(s)).collect(),
        share_accounts: spec
            .share_with
            .accounts
            .iter()
            .map(|a| (a.clone(), account_id(m, live, a)))
            .collect(),
        share_units: spec
            .share_with
            .units
            .iter()
            .map(|u| {
                let id = if u == "/" {
                    Some(live.root_id.clone())
                } else {
                    live.unit_by_path(u).map(|x| x.id.clone())
                };
                (u.clone(), id)
            })
            .collect(),
        recipient_principals: spec.recipient_principals.clone(),
        share_principals,
        share_tag_options,
        adopt: spec.adopt,
    }
}

/// The live portfolio `d` plans against: this estate's of its name in its hub or, when the
/// manifest adopts it, the hub's one portfolio of its display name without any estate's tag.
pub fn live_portfolio<'a>(d: &DesiredPortfolio, live: &'a LiveState) -> Option<&'a LivePortfolio> {
    let in_hub = |l: &&LivePortfolio| Some(&l.account) == d.hub.as_ref();
    live.portfolios
        .iter()
        .filter(in_hub)
        .find(|l| l.tags.get(TAG_PORTFOLIO) == Some(&d.name) && !adoptable(&l.tags))
        .or_else(|| {
            let mut found = live
                .portfolios
                .iter()
                .filter(in_hub)
                .filter(|l| d.adopt && adoptable(&l.tags) && l.display_name == d.display_name);
            // Two of that name: which one is meant is not known, so neither is (a conflict).
            match (found.next(), found.next()) {
                (Some(one), None) => Some(one),
                _ => None,
            }
        })
}

/// Whether tags differ; while adopting, estate's own are absent by nature, not a difference:
/// the first change written carries them.
fn tags_differ(
    live: &BTreeMap<String, String>,
    wanted: &BTreeMap<String, String>,
    adopting: bool,
) -> bool {
    let kept = |tags: &BTreeMap<String, String>| -> Vec<(String, String)> {
        tags.iter()
            .filter(|(k, _)| !(adopting && k.starts_with(crate::tags::TAG_PREFIX)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    kept(live) != kept(wanted)
}

/// An update's reason: what differs, after what is adopted (which the update also tags).
fn changed_reason(differs: &[&str], adopted: Option<String>) -> String {
    let changed = format!("changed: {}", differs.join(", "));
    match adopted {
        Some(what) => {
            format!("{what} carries no estate's tags; this update writes them; {changed}")
        }
        None => changed,
    }
}

/// Whether `changes` adopt the portfolio (an update that writes estate's tags).
fn portfolio_adopted_now(changes: &[Change], portfolio: &str) -> bool {
    changes
        .iter()
        .any(|c| c.address == portfolio_address(portfolio) && c.hint == Some(Hint::Adopt))
}

/// Whether a resource carries no estate's tag at all: only such a one may be adopted.
fn adoptable(tags: &BTreeMap<String, String>) -> bool {
    !tags.contains_key(crate::tags::TAG_MANAGED_BY)
}

/// The live product `p` of portfolio `d` plans against (in `l`, the live portfolio): this
/// estate's of its name or, when the manifest adopts the portfolio, its one product of that
/// display name without any estate's tag.
pub fn live_product<'a>(
    d: &DesiredPortfolio,
    p: &DesiredProduct,
    l: Option<&'a LivePortfolio>,
    estate: &str,
) -> Option<&'a LiveProduct> {
    let products = l.map(|l| l.products.as_slice()).unwrap_or_default();
    products
        .iter()
        .filter(|x| is_ours(x, estate))
        .find(|x| x.tags.get(TAG_PRODUCT) == Some(&p.name))
        .or_else(|| {
            let mut found = products
                .iter()
                .filter(|x| d.adopt && adoptable(&x.tags) && x.name == p.display_name);
            match (found.next(), found.next()) {
                (Some(one), None) => Some(one),
                _ => None,
            }
        })
}

/// A product this estate made (or adopted and tagged).
fn is_ours(x: &LiveProduct, estate: &str) -> bool {
    x.tags.get(crate::tags::TAG_MANAGED_BY).map(String::as_str) == Some(estate)
        && x.tags.contains_key(TAG_PRODUCT)
}

/// Whether a principal ARN is a name pattern (no account: AWS's PrincipalType IAM_PATTERN)
/// rather than one IAM principal (IAM).
pub fn is_name_pattern(arn: &str) -> bool {
    arn.split(':').nth(4) == Some("")
}

/// The portfolio a catalog change belongs to; `None` for other changes and for the
/// organization-wide Service Catalog settings unit shares need.
pub fn portfolio_of(c: &Change) -> Option<&str> {
    c.address.portfolio()
}

/// Whether a catalog create is drift: part of a portfolio that exists has gone missing (a
/// principal disassociated, a share deleted), like an instance of an existing stack set. Parts
/// of a portfolio the plan creates were never applied: pending, not drift.
pub fn create_is_drift(c: &Change, plan_changes: &[Change]) -> bool {
    let Some(portfolio) = portfolio_of(c) else {
        return false;
    };
    c.resource_type != ResourceType::Portfolio
        && !plan_changes.iter().any(|p| {
            p.resource_type == ResourceType::Portfolio
                && p.action == Action::Create
                && portfolio_of(p) == Some(portfolio)
        })
}

/// The ARN a `role/Name` recipient principal has in `account`, in `partition`.
pub fn recipient_arn(partition: &str, account: &str, principal: &str) -> String {
    format!("arn:{partition}:iam::{account}:{principal}")
}

/// The LAUNCH constraint parameters AWS keeps for a local role name.
pub fn launch_parameters(role: &str) -> String {
    json!({ "LocalRoleName": role }).to_string()
}

fn change<T: Into<Side>>(
    address: Address,
    resource_type: ResourceType,
    action: Action,
    reason: String,
    before: Option<T>,
    after: Option<T>,
) -> Change {
    Change {
        hint: None,
        reach: None,
        address,
        resource_type,
        action,
        environment: None,
        reason,
        before: before.map(Into::into),
        after: after.map(Into::into),
    }
}

fn portfolio_address(name: &str) -> Address {
    Address::Portfolio {
        name: name.to_string(),
        account: None,
    }
}

fn product_address(portfolio: &str, product: &str) -> Address {
    Address::Product {
        portfolio: portfolio.to_string(),
        product: product.to_string(),
    }
}

fn version_address(portfolio: &str, product: &str, version: &str) -> Address {
    Address::ProductVersion {
        portfolio: portfolio.to_string(),
        product: product.to_string(),
        version: version.to_string(),
    }
}

fn constraint_address(portfolio: &str, product: &str, kind: &str) -> Address {
    Address::Constraint {
        portfolio: portfolio.to_string(),
        product: product.to_string(),
        kind: kind.to_ascii_lowercase(),
    }
}

fn tag_option_address(portfolio: &str, key: &str, value: &str) -> Address {
    Address::TagOption {
        portfolio: portfolio.to_string(),
        key: key.to_string(),
        value: value.to_string(),
    }
}

/// A principal in the hub (`recipient` `None`) or in a recipient account, by its `role/…`.
fn principal_address(portfolio: &str, recipient: Option<&str>, arn: &str) -> Address {
    Address::Principal {
        portfolio: portfolio.to_string(),
        recipient: recipient.map(str::to_string),
        principal: match recipient {
            Some(_) => arn.rsplit(':').next().unwrap_or(arn).to_string(),
            None => arn.to_string(),
        },
    }
}

fn share_address(portfolio: &str, with: ShareTarget) -> Address {
    Address::Share {
        portfolio: portfolio.to_string(),
        with,
    }
}

/// Changes and findings for every portfolio, in apply order: portfolio, products and
/// versions, constraints, tag options, principals, shares (with acceptance), recipient
/// principals.
pub fn diff(
    desired: &[DesiredPortfolio],
    live: &LiveState,
    estate: &str,
    prune: bool,
) -> (Vec<Change>, Vec<Finding>) {
    let mut changes = Vec::new();
    let mut findings = Vec::new();
    let needs_org_access = desired.iter().any(|d| !d.share_units.is_empty());
    if needs_org_access && live.catalog_organizations_access == Some(false) {
        changes.push(change(
            Address::CatalogOrganizationsAccess,
            ResourceType::Share,
            Action::Create,
            "sharing portfolios with units needs Service Catalog's AWS Organizations access, which is off".into(),
            None,
            Some(CatalogAccessSide {
                organizations_access: true,
            }),
        ));
    }
    // Only the management account and Service Catalog's delegated administrators may share
    // with units: a member hub that does so is registered first.
    let mut registered: Vec<&str> = Vec::new();
    for d in desired.iter().filter(|d| !d.share_units.is_empty()) {
        if d.hub.as_deref() == Some(live.management_account.as_str())
            || registered.contains(&d.hub_name.as_str())
        {
            continue;
        }
        let admins = live.catalog_delegated_admins.as_deref().unwrap_or_default();
        if d.hub.as_ref().is_some_and(|id| admins.contains(id)) {
            continue;
        }
        registered.push(&d.hub_name);
        changes.push(change(
            Address::CatalogDelegatedAdmin {
                account: d.hub_name.clone(),
            },
            ResourceType::Share,
            Action::Create,
            format!(
                "portfolio {} is shared with units from account {}, which must be a delegated administrator for Service Catalog",
                d.name, d.hub_name
            ),
            None,
            Some(DelegatedAdminSide {
                account: d.hub.clone(),
                account_name: d.hub_name.clone(),
                service_principal: crate::live::catalog::SERVICE_PRINCIPAL.into(),
            }),
        ));
    }
    for d in desired {
        let l = live_portfolio(d, live);
        // Someone else's portfolio of the same name in the hub: reported, never taken over
        // (an untagged one the manifest adopts was read in full, and is `l`).
        let other = live
            .unmanaged_portfolios
            .iter()
            .map(|u| (u.id.as_str(), u.account.as_str(), u.display_name.as_str()))
            .chain(
                live.portfolios
                    .iter()
                    .filter(|u| adoptable(&u.tags))
                    .map(|u| (u.id.as_str(), u.account.as_str(), u.display_name.as_str())),
            )
            .find(|(id, account, name)| {
                Some(*account) == d.hub.as_deref()
                    && *name == d.display_name
                    && l.is_none_or(|l| l.id != *id)
            });
        if let (None, Some((id, account, display_name))) = (l, other) {
            findings.push(Finding {
                kind: FindingKind::Conflict,
                address: portfolio_address(&d.name),
                environment: None,
                message: if d.adopt {
                    format!(
                        "portfolio {display_name} ({id}) in account {account} cannot be adopted: it carries another estate's tag, or the account holds several untagged portfolios of that name; estate will not manage it"
                    )
                } else {
                    format!(
                        "portfolio {display_name} ({id}) in account {account} does not carry this estate's tag; estate will not manage it unless the manifest adopts it (`adopt: true`), or rename the portfolio in the manifest"
                    )
                },
            });
            continue;
        }
        diff_portfolio(d, l, estate, prune, &mut changes, &mut findings);
    }
    for l in &live.portfolios {
        let ours = l.tags.get(crate::tags::TAG_MANAGED_BY).map(String::as_str) == Some(estate);
        let name = l.tags.get(TAG_PORTFOLIO).cloned().unwrap_or_default();
        // Same name in another account is still an orphan: the portfolio moved hubs.
        if !ours
            || desired
                .iter()
                .any(|d| d.name == name && d.hub.as_ref() == Some(&l.account))
        {
            continue;
        }
        if prune {
            let moved = desired.iter().any(|d| d.name == name);
            changes.push(change(
                Address::Portfolio {
                    name: name.clone(),
                    account: moved.then(|| l.account.clone()),
                },
                ResourceType::Portfolio,
                Action::Delete,
                format!("portfolio {name} left the manifest (prune is on)"),
                Some(portfolio_json(l)),
                None,
            ));
        } else {
            findings.push(Finding {
                kind: FindingKind::Orphan,
                address: portfolio_address(&name),
                environment: None,
                message: format!(
                    "portfolio {} ({}) in account {} is managed by this estate but no longer in the manifest; set `prune: true` to delete it",
                    l.display_name, l.id, l.account
                ),
            });
        }
    }
    (changes, findings)
}

fn portfolio_json(l: &LivePortfolio) -> LivePortfolioSide {
    LivePortfolioSide {
        id: l.id.clone(),
        account: l.account.clone(),
        display_name: l.display_name.clone(),
        provider_name: l.provider_name.clone(),
        description: l.description.clone(),
        tags: None,
    }
}

/// A portfolio's changes, in apply order: the portfolio, its products (with versions and
/// constraints), tag options, principals, shares (with acceptance and recipient principals).
fn diff_portfolio(
    d: &DesiredPortfolio,
    l: Option<&LivePortfolio>,
    estate: &str,
    prune: bool,
    changes: &mut Vec<Change>,
    findings: &mut Vec<Finding>,
) {
    portfolio_change(d, l, changes);
    let portfolio_id = l.map(|l| l.id.clone());
    products(d, l, &portfolio_id, estate, prune, changes, findings);
    tag_options(d, l, &portfolio_id, changes);
    hub_principals(d, l, &portfolio_id, changes);
    account_shares(d, l, &portfolio_id, changes);
    unit_shares(d, l, &portfolio_id, changes);
}

/// The portfolio itself: created, or updated where its attributes or tags differ.
fn portfolio_change(d: &DesiredPortfolio, l: Option<&LivePortfolio>, changes: &mut Vec<Change>) {
    let name = &d.name;
    let hub = d.hub.clone();
    let after = PortfolioSide {
        account: hub.clone(),
        account_name: d.hub_name.clone(),
        display_name: d.display_name.clone(),
        provider_name: d.provider_name.clone(),
        description: d.description.clone(),
        tags: d.tags.clone(),
        id: None,
    };
    match l {
        None => changes.push(change(
            portfolio_address(name),
            ResourceType::Portfolio,
            Action::Create,
            format!(
                "portfolio {} does not exist in account {}",
                d.display_name, d.hub_name
            ),
            None,
            Some(after),
        )),
        Some(l) => {
            let mut differs = Vec::new();
            if l.display_name != d.display_name {
                differs.push("displayName");
            }
            if l.provider_name != d.provider_name {
                differs.push("providerName");
            }
            if l.description != d.description {
                differs.push("description");
            }
            let adopting = adoptable(&l.tags);
            if tags_differ(&l.tags, &d.tags, adopting) {
                differs.push("tags");
            }
            if !differs.is_empty() {
                let mut before = portfolio_json(l);
                before.tags = Some(l.tags.clone());
                let mut after = after;
                after.id = Some(l.id.clone());
                let reason = changed_reason(
                    &differs,
                    adopting.then(|| {
                        format!(
                            "adopted (`adopt: true`): portfolio {} ({})",
                            l.display_name, l.id
                        )
                    }),
                );
                let mut c = change(
                    portfolio_address(name),
                    ResourceType::Portfolio,
                    Action::Update,
                    reason,
                    Some(Side::from(before)),
                    Some(Side::from(after)),
                );
                c.hint = adopting.then_some(Hint::Adopt);
                changes.push(c);
            }
        }
    }
}

/// Products of the manifest (someone else's of the same name is a conflict), and this
/// estate's products that left it: deleted when pruning (after their constraints), else
/// orphans.
#[allow(clippy::too_many_arguments)] // one call site; the arguments are the portfolio's context
fn products(
    d: &DesiredPortfolio,
    l: Option<&LivePortfolio>,
    portfolio_id: &Option<String>,
    estate: &str,
    prune: bool,
    changes: &mut Vec<Change>,
    findings: &mut Vec<Finding>,
) {
    let name = &d.name;
    let live_products: &[LiveProduct] = l.map(|l| l.products.as_slice()).unwrap_or_default();
    let ours = |x: &&LiveProduct| is_ours(x, estate);
    for p in &d.products {
        let lp = live_product(d, p, l, estate);
        // A product of the same name without this estate's tags is someone else's (unless the
        // manifest adopts the portfolio, and it is the one untagged of that name): reported,
        // never updated, and not duplicated beside it.
        if lp.is_none() {
            if let Some(other) = live_products
                .iter()
                .find(|x| !ours(x) && x.name == p.display_name)
            {
                findings.push(Finding {
                    kind: FindingKind::Conflict,
                    address: product_address(name, &p.name),
                    environment: None,
                    message: format!(
                        "product {} ({}) in the portfolio does not carry this estate's tags; estate will not manage it. Remove it, rename the product in the manifest, or adopt it (`adopt: true` on the portfolio adopts the one untagged product of each name its products give)",
                        other.name, other.id
                    ),
                });
                continue;
            }
        }
        diff_product(name, portfolio_id.as_deref(), p, lp, l, prune, changes);
    }
    // Products of this estate that left the manifest: deleted when pruning, else orphans.
    for lp in live_products.iter().filter(ours) {
        let product = &lp.tags[TAG_PRODUCT];
        if d.products.iter().any(|p| &p.name == product) {
            continue;
        }
        if !prune {
            findings.push(Finding {
                kind: FindingKind::Orphan,
                address: product_address(name, product),
                environment: None,
                message: format!(
                    "product {} ({}) is managed by this estate but no longer in the manifest; set `prune: true` to delete it",
                    lp.name, lp.id
                ),
            });
            continue;
        }
        // AWS deletes a product only once nothing constrains it in the portfolio.
        for c in l
            .map(|l| l.constraints.as_slice())
            .unwrap_or_default()
            .iter()
            .filter(|c| c.product_id == lp.id)
        {
            changes.push(change(
                constraint_address(name, product, &c.kind),
                ResourceType::Constraint,
                Action::Delete,
                format!("product {product} left the manifest (prune is on)"),
                Some(LiveConstraintSide {
                    id: c.id.clone(),
                    kind: c.kind.clone(),
                    local_role_name: None,
                    parameters: Some(c.parameters.clone()),
                }),
                None,
            ));
        }
        changes.push(change(
            product_address(name, product),
            ResourceType::Product,
            Action::Delete,
            format!("product {product} left the manifest (prune is on)"),
            Some(LiveProductSide {
                portfolio: Some(name.clone()),
                portfolio_id: Some(portfolio_id.clone()),
                id: lp.id.clone(),
                display_name: lp.name.clone(),
                owner: lp.owner.clone(),
                description: None,
                distributor: None,
                support_email: None,
                versions: Some(lp.versions.iter().map(|v| v.name.clone()).collect()),
                tags: None,
            }),
            None,
        ));
    }
}

fn tag_options(
    d: &DesiredPortfolio,
    l: Option<&LivePortfolio>,
    portfolio_id: &Option<String>,
    changes: &mut Vec<Change>,
) {
    let name = &d.name;
    // Tag options associated with the portfolio.
    let live_options: BTreeMap<(String, String), String> = l
        .map(|l| {
            l.tag_options
                .iter()
                .map(|t| ((t.key.clone(), t.value.clone()), t.id.clone()))
                .collect()
        })
        .unwrap_or_default();
    for (k, v) in &d.tag_options {
        if !live_options.contains_key(&(k.clone(), v.clone())) {
            changes.push(change(
                tag_option_address(name, k, v),
                ResourceType::TagOption,
                Action::Create,
                format!("tag option {k}={v} is not associated with the portfolio"),
                None,
                Some(TagOptionSide {
                    portfolio: name.clone(),
                    portfolio_id: portfolio_id.clone(),
                    key: k.clone(),
                    value: v.clone(),
                    id: None,
                }),
            ));
        }
    }
    for ((k, v), id) in &live_options {
        if !d.tag_options.contains(&(k.clone(), v.clone())) {
            changes.push(change(
                tag_option_address(name, k, v),
                ResourceType::TagOption,
                Action::Delete,
                format!("tag option {k}={v} is no longer in the manifest"),
                Some(TagOptionSide {
                    portfolio: name.clone(),
                    portfolio_id: portfolio_id.clone(),
                    key: k.clone(),
                    value: v.clone(),
                    id: Some(id.clone()),
                }),
                None,
            ));
        }
    }
}

/// A principal associated in `account` (the hub, or a recipient, by name where known).
fn principal(
    d: &DesiredPortfolio,
    portfolio_id: &Option<String>,
    account: &Option<String>,
    account_name: Option<&String>,
    arn: &str,
) -> PrincipalSide {
    PrincipalSide {
        portfolio: d.name.clone(),
        portfolio_id: portfolio_id.clone(),
        account: account.clone(),
        account_name: account_name.cloned(),
        principal: arn.to_string(),
    }
}

fn hub_principals(
    d: &DesiredPortfolio,
    l: Option<&LivePortfolio>,
    portfolio_id: &Option<String>,
    changes: &mut Vec<Change>,
) {
    let name = &d.name;
    // Principals in the hub account.
    let live_principals: BTreeSet<String> = l
        .map(|l| l.principals.iter().cloned().collect())
        .unwrap_or_default();
    for arn in d.principals.difference(&live_principals) {
        changes.push(change(
            principal_address(name, None, arn),
            ResourceType::Principal,
            Action::Create,
            format!("{arn} is not associated with the portfolio"),
            None,
            Some(principal(d, portfolio_id, &d.hub, None, arn)),
        ));
    }
    for arn in live_principals.difference(&d.principals) {
        changes.push(change(
            principal_address(name, None, arn),
            ResourceType::Principal,
            Action::Delete,
            format!("{arn} is associated but not in the manifest"),
            Some(principal(d, portfolio_id, &d.hub, None, arn)),
            None,
        ));
    }
}

/// Shares with accounts (accepted there), and the principals associated in each recipient.
fn account_shares(
    d: &DesiredPortfolio,
    l: Option<&LivePortfolio>,
    portfolio_id: &Option<String>,
    changes: &mut Vec<Change>,
) {
    let name = &d.name;
    let live_accounts: BTreeSet<String> = l
        .map(|l| l.shared_accounts.iter().cloned().collect())
        .unwrap_or_default();
    let mut wanted_accounts = BTreeSet::new();
    for (account_name, id) in &d.share_accounts {
        let key = id
            .clone()
            .unwrap_or_else(|| format!("{account_name} {KNOWN_AFTER_APPLY}"));
        wanted_accounts.insert(key.clone());
        let recipient = id
            .as_ref()
            .and_then(|id| l.and_then(|l| l.recipients.get(id)));
        let shared = id.as_ref().is_some_and(|id| live_accounts.contains(id));
        let address = share_address(name, ShareTarget::Account(account_name.clone()));
        // An account share gives tag options at most: AWS shares principals with units only.
        let share = |accepted: bool, tag_options: bool| ShareSide {
            portfolio: name.clone(),
            portfolio_id: portfolio_id.clone(),
            account: Some(id.clone()),
            account_name: Some(account_name.clone()),
            accepted: Some(accepted),
            unit: None,
            unit_id: None,
            share_tag_options: Some(tag_options),
            share_principals: None,
        };
        let after = share(true, d.share_tag_options);
        if !shared {
            changes.push(change(
                address,
                ResourceType::Share,
                Action::Create,
                format!("the portfolio is not shared with account {account_name}"),
                None,
                Some(after),
            ));
        } else {
            let accepted = recipient.is_some_and(|r| r.accepted);
            let live_flags = id
                .as_ref()
                .and_then(|id| l.and_then(|l| l.share_flags.get(id)))
                .copied()
                .unwrap_or_default();
            let mut differs = Vec::new();
            if !accepted {
                differs.push(format!(
                    "the share is not accepted in account {account_name}"
                ));
            }
            if live_flags.tag_options != d.share_tag_options {
                differs.push(flag_reason("shareTagOptions", d.share_tag_options));
            }
            if !differs.is_empty() {
                changes.push(change(
                    address,
                    ResourceType::Share,
                    Action::Update,
                    differs.join("; "),
                    Some(share(accepted, live_flags.tag_options)),
                    Some(after),
                ));
            }
        }
        // Principals associated in the recipient account.
        let live_rp: BTreeSet<String> = recipient
            .map(|r| r.principals.iter().cloned().collect())
            .unwrap_or_default();
        let account_part = id.clone().unwrap_or_else(|| KNOWN_AFTER_APPLY.into());
        let wanted_rp: BTreeSet<String> = d
            .recipient_principals
            .iter()
            .map(|p| recipient_arn(&d.partition, &account_part, p))
            .collect();
        for arn in wanted_rp.difference(&live_rp) {
            changes.push(change(
                principal_address(name, Some(account_name), arn),
                ResourceType::Principal,
                Action::Create,
                format!("{arn} is not associated with the portfolio in account {account_name}"),
                None,
                Some(principal(d, portfolio_id, id, Some(account_name), arn)),
            ));
        }
        for arn in live_rp.difference(&wanted_rp) {
            changes.push(change(
                principal_address(name, Some(account_name), arn),
                ResourceType::Principal,
                Action::Delete,
                format!("{arn} is associated in account {account_name} but not in the manifest"),
                Some(principal(d, portfolio_id, id, Some(account_name), arn)),
                None,
            ));
        }
    }
    for id in live_accounts.difference(&wanted_accounts) {
        // The recipient's principals go before its share, the reverse of how they came.
        let rp = l.and_then(|l| l.recipients.get(id));
        for arn in rp.map(|r| r.principals.as_slice()).unwrap_or_default() {
            changes.push(change(
                principal_address(name, Some(id), arn),
                ResourceType::Principal,
                Action::Delete,
                format!("{arn} is associated in account {id}, whose share is removed"),
                Some(principal(d, portfolio_id, &Some(id.clone()), None, arn)),
                None,
            ));
        }
        changes.push(change(
            share_address(name, ShareTarget::Account(id.clone())),
            ResourceType::Share,
            Action::Delete,
            format!("the portfolio is shared with account {id}, which the manifest does not list"),
            Some(ShareSide {
                portfolio: name.clone(),
                portfolio_id: portfolio_id.clone(),
                account: Some(Some(id.clone())),
                account_name: None,
                accepted: None,
                unit: None,
                unit_id: None,
                share_tag_options: None,
                share_principals: None,
            }),
            None,
        ));
    }
}

fn unit_shares(
    d: &DesiredPortfolio,
    l: Option<&LivePortfolio>,
    portfolio_id: &Option<String>,
    changes: &mut Vec<Change>,
) {
    let name = &d.name;
    let live_units: BTreeSet<String> = l
        .map(|l| l.shared_units.iter().cloned().collect())
        .unwrap_or_default();
    let mut wanted_units = BTreeSet::new();
    for (path, id) in &d.share_units {
        if let Some(id) = id {
            wanted_units.insert(id.clone());
        }
        let share = |tag_options: bool, principals: bool| ShareSide {
            portfolio: name.clone(),
            portfolio_id: portfolio_id.clone(),
            account: None,
            account_name: None,
            accepted: None,
            unit: Some(path.clone()),
            unit_id: Some(id.clone()),
            share_tag_options: Some(tag_options),
            share_principals: Some(principals),
        };
        let after = share(d.share_tag_options, d.share_principals);
        let address = share_address(name, ShareTarget::UnitPath(path.clone()));
        let Some(id) = id.as_ref().filter(|id| live_units.contains(*id)) else {
            changes.push(change(
                address,
                ResourceType::Share,
                Action::Create,
                format!("the portfolio is not shared with unit {path}"),
                None,
                Some(after),
            ));
            continue;
        };
        let live_flags = l
            .and_then(|l| l.share_flags.get(id))
            .copied()
            .unwrap_or_default();
        let mut differs = Vec::new();
        if live_flags.tag_options != d.share_tag_options {
            differs.push(flag_reason("shareTagOptions", d.share_tag_options));
        }
        if live_flags.principals != d.share_principals {
            differs.push(flag_reason("sharePrincipals", d.share_principals));
        }
        if !differs.is_empty() {
            changes.push(change(
                address,
                ResourceType::Share,
                Action::Update,
                format!("the share with unit {path}: {}", differs.join("; ")),
                Some(share(live_flags.tag_options, live_flags.principals)),
                Some(after),
            ));
        }
    }
    for id in live_units.difference(&wanted_units) {
        changes.push(change(
            share_address(name, ShareTarget::UnitId(id.clone())),
            ResourceType::Share,
            Action::Delete,
            format!("the portfolio is shared with unit {id}, which the manifest does not list"),
            Some(ShareSide {
                portfolio: name.clone(),
                portfolio_id: portfolio_id.clone(),
                account: None,
                account_name: None,
                accepted: None,
                unit: None,
                unit_id: Some(Some(id.clone())),
                share_tag_options: None,
                share_principals: None,
            }),
            None,
        ));
    }
}

/// Why a share's flag is planned to change, in the manifest's words.
fn flag_reason(field: &str, wanted: bool) -> String {
    let (now, then) = if wanted { ("off", "on") } else { ("on", "off") };
    format!("{field} is {now} on the share, {then} in the manifest")
}

#[allow(clippy::too_many_arguments)] // one call site; the arguments are the product's context
fn diff_product(
    portfolio: &str,
    portfolio_id: Option<&str>,
    p: &DesiredProduct,
    lp: Option<&LiveProduct>,
    l: Option<&LivePortfolio>,
    prune: bool,
    changes: &mut Vec<Change>,
) {
    let product = OneProduct {
        portfolio,
        portfolio_id,
        p,
        lp,
        product_id: lp.map(|x| x.id.clone()),
    };
    product.product_change(changes);
    // An adopted product's versions were never estate's: none is deleted by pruning.
    let adopting = lp.is_some_and(|x| adoptable(&x.tags));
    product.versions(prune && !adopting, changes);
    product.launch_constraint(l, changes);
}

/// One product of a portfolio, desired and live, as `diff_product` compares it.
struct OneProduct<'a> {
    portfolio: &'a str,
    portfolio_id: Option<&'a str>,
    p: &'a DesiredProduct,
    lp: Option<&'a LiveProduct>,
    product_id: Option<String>,
}

impl OneProduct<'_> {
    /// The product itself: created when missing, updated when its attributes differ.
    fn product_change(&self, changes: &mut Vec<Change>) {
        let (portfolio, p) = (self.portfolio, self.p);
        let address = product_address(portfolio, &p.name);
        let attrs = ProductSide {
            portfolio: portfolio.to_string(),
            portfolio_id: self.portfolio_id.map(str::to_string),
            name: p.name.clone(),
            display_name: p.display_name.clone(),
            owner: p.owner.clone(),
            description: p.description.clone(),
            distributor: p.distributor.clone(),
            support_email: p.support_email.clone(),
            tags: p.tags.clone(),
            id: None,
        };
        match self.lp {
            None => changes.push(change(
                address,
                ResourceType::Product,
                Action::Create,
                format!("product {} is not in the portfolio", p.display_name),
                None,
                Some(attrs),
            )),
            Some(lp) => {
                let differs: Vec<&str> = [
                    ("displayName", lp.name != p.display_name),
                    ("owner", lp.owner != p.owner),
                    ("description", lp.description != p.description),
                    ("distributor", lp.distributor != p.distributor),
                    ("supportEmail", lp.support_email != p.support_email),
                    // Adopted with a portfolio this plan adopts: tagged in the same apply.
                    (
                        "tags",
                        tags_differ(
                            &lp.tags,
                            &p.tags,
                            adoptable(&lp.tags) && !portfolio_adopted_now(changes, portfolio),
                        ),
                    ),
                ]
                .into_iter()
                .filter_map(|(field, differs)| differs.then_some(field))
                .collect();
                if !differs.is_empty() {
                    let mut after = attrs;
                    after.id = Some(lp.id.clone());
                    let adopting = adoptable(&lp.tags);
                    let reason = changed_reason(
                        &differs,
                        adopting.then(|| {
                            format!(
                                "adopted with its portfolio: product {} ({})",
                                lp.name, lp.id
                            )
                        }),
                    );
                    let mut c = change(
                        address,
                        ResourceType::Product,
                        Action::Update,
                        reason,
                        Some(Side::from(LiveProductSide {
                            portfolio: None,
                            portfolio_id: None,
                            id: lp.id.clone(),
                            display_name: lp.name.clone(),
                            owner: lp.owner.clone(),
                            description: Some(lp.description.clone()),
                            distributor: Some(lp.distributor.clone()),
                            support_email: Some(lp.support_email.clone()),
                            versions: None,
                            tags: Some(lp.tags.clone()),
                        })),
                        Some(Side::from(after)),
                    );
                    c.hint = adopting.then_some(Hint::Adopt);
                    changes.push(c);
                }
            }
        }
    }

    /// A live version as a side of a change, active or not.
    fn live_version(&self, lv: &crate::live::LiveVersion, active: bool) -> VersionSide {
        VersionSide {
            id: Some(lv.id.clone()),
            portfolio: None,
            product: None,
            product_id: self.product_id.clone(),
            name: lv.name.clone(),
            description: None,
            active,
        }
    }

    /// The product's versions: added, brought back, deprecated or (pruning) deleted.
    fn versions(&self, prune: bool, changes: &mut Vec<Change>) {
        let (portfolio, p, lp) = (self.portfolio, self.p, self.lp);
        // Versions: new ones are added, existing ones never rewritten; removed ones deprecated.
        for v in &p.versions {
            let live_v = lp.and_then(|x| x.versions.iter().find(|lv| lv.name == v.name));
            let address = version_address(portfolio, &p.name, &v.name);
            match live_v {
                None => changes.push(change(
                    address,
                    ResourceType::ProductVersion,
                    Action::Create,
                    format!("version {} of {} does not exist", v.name, p.display_name),
                    None,
                    Some(VersionSide {
                        id: None,
                        portfolio: Some(portfolio.to_string()),
                        product: Some(p.name.clone()),
                        product_id: self.product_id.clone(),
                        name: v.name.clone(),
                        description: Some(v.description.clone()),
                        active: true,
                    }),
                )),
                Some(lv) if !lv.active => changes.push(change(
                    address,
                    ResourceType::ProductVersion,
                    Action::Update,
                    format!("version {} is deprecated but back in the manifest", v.name),
                    Some(self.live_version(lv, false)),
                    Some(self.live_version(lv, true)),
                )),
                Some(_) => {}
            }
        }
        for lv in lp.map(|x| x.versions.as_slice()).unwrap_or_default() {
            if p.versions.iter().any(|v| v.name == lv.name) {
                continue;
            }
            if prune {
                // Pruning deletes what left the manifest, deprecated versions included.
                changes.push(change(
                    version_address(portfolio, &p.name, &lv.name),
                    ResourceType::ProductVersion,
                    Action::Delete,
                    format!("version {} left the manifest (prune is on)", lv.name),
                    Some(self.live_version(lv, lv.active)),
                    None,
                ));
                continue;
            }
            if !lv.active {
                continue;
            }
            changes.push(change(
                version_address(portfolio, &p.name, &lv.name),
                ResourceType::ProductVersion,
                Action::Update,
                format!(
                    "version {} left the manifest: deprecated (Active: false), not deleted",
                    lv.name
                ),
                Some(self.live_version(lv, true)),
                Some(self.live_version(lv, false)),
            ));
        }
    }

    /// The product's LAUNCH constraint in the live portfolio `l`: created, replaced or deleted.
    fn launch_constraint(&self, l: Option<&LivePortfolio>, changes: &mut Vec<Change>) {
        let (portfolio, p, product_id) = (self.portfolio, self.p, &self.product_id);
        // The LAUNCH constraint.
        let live_c = l.and_then(|l| {
            l.constraints
                .iter()
                .find(|c| c.kind == "LAUNCH" && Some(&c.product_id) == product_id.as_ref())
        });
        let address = constraint_address(portfolio, &p.name, "launch");
        let live_role = live_c.and_then(|c| {
            serde_json::from_str::<serde_json::Value>(&c.parameters)
                .ok()
                .and_then(|v| {
                    v.get("LocalRoleName")
                        .and_then(|r| r.as_str())
                        .map(str::to_string)
                })
        });
        let launch = |role: &String, id: Option<&String>| -> Side {
            ConstraintSide {
                portfolio: portfolio.to_string(),
                portfolio_id: self.portfolio_id.map(str::to_string),
                product: p.name.clone(),
                product_id: product_id.clone(),
                kind: "LAUNCH".into(),
                local_role_name: role.clone(),
                id: id.cloned(),
            }
            .into()
        };
        let live = |c: &crate::live::LiveConstraint, parameters: bool| -> Side {
            LiveConstraintSide {
                id: c.id.clone(),
                kind: "LAUNCH".into(),
                local_role_name: Some(live_role.clone()),
                parameters: parameters.then(|| c.parameters.clone()),
            }
            .into()
        };
        match (&p.launch_role_name, live_c) {
            (Some(role), None) => changes.push(change(
                address,
                ResourceType::Constraint,
                Action::Create,
                format!("{} has no launch constraint", p.display_name),
                None,
                Some(launch(role, None)),
            )),
            (Some(role), Some(c)) if live_role.as_ref() != Some(role) => changes.push(change(
                address,
                ResourceType::Constraint,
                Action::Replace,
                "the launch role differs".into(),
                Some(live(c, true)),
                Some(launch(role, Some(&c.id))),
            )),
            (None, Some(c)) => changes.push(change(
                address,
                ResourceType::Constraint,
                Action::Delete,
                "the manifest gives no launch role".into(),
                Some(live(c, false)),
                None,
            )),
            _ => {}
        }
    }
}
