//! The typed before/after of a change, one shape per resource family (two where live and the
//! manifest describe it differently). They serialize to the JSON plan's objects exactly as
//! formatVersion 1 has them and are read back by the change's address, so apply reads fields,
//! never JSON keys by name.

use super::address::Address;
use crate::live::LiveAutoDeployment;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use std::collections::BTreeMap;
use thiserror::Error;

/// Field order is the JSON plan's: with serde_json's `preserve_order` (which the build
/// enables) keys are written in the order declared here.
///
/// A field that one shape of a family leaves out and another gives, possibly as `null`:
/// `None` is absent, `Some(None)` is `null`.
pub type Maybe<T> = Option<Option<T>>;

/// Reads a present field (even `null`) as `Some`, so `Maybe` keeps absent and `null` apart.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Maybe<T>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// `unit:…`: a unit to create.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UnitSide {
    pub path: String,
    /// The parent's path (`/` for the root).
    pub parent: String,
}

/// `account:…`: an account to create (`name`, `email`, `unit`) or to move (`id`, `unit`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccountSide {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The unit's path; `None`: the root.
    pub unit: Option<String>,
}

/// `stackSet:…`: a stack set as the manifest wants it or as live has it (values masked where
/// NoEcho, the template as canonical YAML).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StackSetSide {
    pub name: String,
    pub description: Option<String>,
    pub parameters: BTreeMap<String, String>,
    pub capabilities: Vec<String>,
    pub tags: BTreeMap<String, String>,
    pub permission_model: String,
    pub administration_role_arn: Option<String>,
    pub execution_role_name: Option<String>,
    pub auto_deployment: Option<LiveAutoDeployment>,
    /// The operation preferences, as the `estate:operation` tag keeps them.
    pub operation: Option<String>,
    pub template: String,
    /// Parameters (or instance overrides) whose value is another stack set's output that
    /// this plan creates or changes (or not applied yet): shown "(known after apply)", read
    /// by apply once the producer is applied.
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub known_after_apply: std::collections::BTreeSet<String>,
}

/// `stackInstance:…`: one account × region of a stack set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InstanceSide {
    pub stack_set: String,
    /// `None` until the account exists (created by this plan).
    pub account: Option<String>,
    pub account_name: Option<String>,
    pub region: String,
    pub parameter_overrides: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Service-managed: the unit AWS deployed the instance through (removed through it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organizational_unit_id: Option<String>,
    /// A retry: the operation it follows, part of its operation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_operation: Option<String>,
}

/// `pipeline:…`: a pipeline's source bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BundleSide {
    pub account: String,
    pub bucket: String,
    pub key: String,
    pub files: Vec<String>,
}

/// `portfolio:…` as the manifest wants it (an update's after names the live id, last).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortfolioSide {
    /// The hub account; `None` until it exists.
    pub account: Option<String>,
    pub account_name: String,
    pub display_name: String,
    pub provider_name: String,
    pub description: Option<String>,
    pub tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// `portfolio:…` as live has it (an update's before carries its tags).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LivePortfolioSide {
    pub id: String,
    pub account: String,
    pub display_name: String,
    pub provider_name: String,
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
}

/// `product:…` as the manifest wants it (an update's after names the live id, last).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProductSide {
    pub portfolio: String,
    /// `None` until the portfolio exists.
    pub portfolio_id: Option<String>,
    /// The manifest's product name.
    pub name: String,
    pub display_name: String,
    pub owner: String,
    pub description: Option<String>,
    pub distributor: Option<String>,
    pub support_email: Option<String>,
    /// Its tags, estate's own included.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// `product:…` as live has it: an update's before, or a delete's (with its portfolio and
/// versions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LiveProductSide {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub portfolio: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub portfolio_id: Maybe<String>,
    pub id: String,
    pub display_name: String,
    pub owner: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub description: Maybe<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub distributor: Maybe<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub support_email: Maybe<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versions: Option<Vec<String>>,
    /// An update's before: the tags live has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
}

/// `productVersion:…`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VersionSide {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub portfolio: Option<String>,
    /// The manifest's product name (creates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// `None` until the product exists.
    pub product_id: Option<String>,
    pub name: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub description: Maybe<String>,
    pub active: bool,
}

/// `constraint:…` as the manifest wants it (a replace's after names the live id, last).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConstraintSide {
    pub portfolio: String,
    pub portfolio_id: Option<String>,
    pub product: String,
    /// `None` until the product exists.
    pub product_id: Option<String>,
    /// `LAUNCH`, …
    #[serde(rename = "type")]
    pub kind: String,
    pub local_role_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// `constraint:…` as live has it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LiveConstraintSide {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// The launch role its parameters name (not given for a product's pruned constraints).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub local_role_name: Maybe<String>,
    /// The parameters AWS keeps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<String>,
}

/// `tagOption:…`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TagOptionSide {
    pub portfolio: String,
    pub portfolio_id: Option<String>,
    pub key: String,
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// `principal:…`: in the hub, or in a recipient account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrincipalSide {
    pub portfolio: String,
    pub portfolio_id: Option<String>,
    /// The account it is associated in; `None` until that account exists.
    pub account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_name: Option<String>,
    pub principal: String,
}

/// `share:…`: with an account (and its acceptance there) or a unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ShareSide {
    pub portfolio: String,
    pub portfolio_id: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub account: Maybe<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted: Option<bool>,
    /// The unit's path (creates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub unit_id: Maybe<String>,
    /// The recipients get the portfolio's tag options (creates and updates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_tag_options: Option<bool>,
    /// The unit's accounts get the name-pattern principals (unit creates and updates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_principals: Option<bool>,
}

/// `share:aws-organizations-access`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CatalogAccessSide {
    pub organizations_access: bool,
}

/// `share:aws-organizations-delegated-admin/…`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DelegatedAdminSide {
    /// `None` until the hub account exists.
    pub account: Option<String>,
    pub account_name: String,
    pub service_principal: String,
}

/// `prerequisite:organizations-access`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrustedAccessSide {
    pub service: String,
}

/// `prerequisite:administration-role`: the stack that creates it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdministrationSide {
    pub stack: String,
    pub account: String,
    /// The stack also creates the execution role in that account (a target itself).
    pub execution_role: bool,
}

/// `prerequisite:execution-role`: the service-managed stack set that deploys it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecutionSetSide {
    pub stack_set: String,
    pub administrator: String,
}

/// `prerequisite:execution-role/…`: that stack set's instance in one account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecutionInstanceSide {
    /// `None` until the account exists.
    pub account: Option<String>,
    pub account_name: Option<String>,
    /// A retry: the operation it follows.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub last_operation: Maybe<String>,
}

/// One side (before or after) of a change.
#[derive(Debug, Clone, PartialEq)]
pub enum Side {
    Unit(UnitSide),
    Account(AccountSide),
    StackSet(Box<StackSetSide>),
    Instance(InstanceSide),
    Bundle(BundleSide),
    Portfolio(PortfolioSide),
    LivePortfolio(LivePortfolioSide),
    Product(ProductSide),
    LiveProduct(LiveProductSide),
    Version(VersionSide),
    Constraint(ConstraintSide),
    LiveConstraint(LiveConstraintSide),
    TagOption(TagOptionSide),
    Principal(PrincipalSide),
    Share(ShareSide),
    CatalogAccess(CatalogAccessSide),
    DelegatedAdmin(DelegatedAdminSide),
    TrustedAccess(TrustedAccessSide),
    Administration(AdministrationSide),
    ExecutionSet(ExecutionSetSide),
    ExecutionInstance(ExecutionInstanceSide),
}

macro_rules! sides {
    ($($variant:ident($ty:ty) = $what:literal),* $(,)?) => {
        $(
            impl From<$ty> for Side {
                fn from(v: $ty) -> Side {
                    Side::$variant(v.into())
                }
            }
            impl Shape for $ty {
                const WHAT: &'static str = $what;
                fn of(side: &Side) -> Option<&Self> {
                    match side {
                        Side::$variant(v) => Some(v),
                        _ => None,
                    }
                }
            }
        )*
        /// Any of the shapes: which one a change holds is decided by its address.
        impl JsonSchema for Side {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                "Side".into()
            }
            fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({
                    "anyOf": [g.subschema_for::<StackSetSide>(), $(g.subschema_for::<$ty>(),)*]
                })
            }
        }
        impl Side {
            /// The JSON object the plan shows.
            pub fn to_value(&self) -> Value {
                let v = match self {
                    Side::StackSet(v) => serde_json::to_value(v),
                    $(Side::$variant(v) => serde_json::to_value(v),)*
                };
                v.expect("plan sides are plain data")
            }
        }
    };
}

sides! {
    Unit(UnitSide) = "unit",
    Account(AccountSide) = "account",
    Instance(InstanceSide) = "stack instance",
    Bundle(BundleSide) = "source bundle",
    Portfolio(PortfolioSide) = "portfolio",
    LivePortfolio(LivePortfolioSide) = "live portfolio",
    Product(ProductSide) = "product",
    LiveProduct(LiveProductSide) = "live product",
    Version(VersionSide) = "product version",
    Constraint(ConstraintSide) = "constraint",
    LiveConstraint(LiveConstraintSide) = "live constraint",
    TagOption(TagOptionSide) = "tag option",
    Principal(PrincipalSide) = "principal",
    Share(ShareSide) = "share",
    CatalogAccess(CatalogAccessSide) = "organizations access",
    DelegatedAdmin(DelegatedAdminSide) = "delegated administrator",
    TrustedAccess(TrustedAccessSide) = "trusted access",
    Administration(AdministrationSide) = "administration role",
    ExecutionSet(ExecutionSetSide) = "execution-role stack set",
    ExecutionInstance(ExecutionInstanceSide) = "execution-role instance",
}

impl From<StackSetSide> for Side {
    fn from(v: StackSetSide) -> Side {
        Side::StackSet(Box::new(v))
    }
}

impl Shape for StackSetSide {
    const WHAT: &'static str = "stack set";
    fn of(side: &Side) -> Option<&Self> {
        match side {
            Side::StackSet(v) => Some(v),
            _ => None,
        }
    }
}

/// A family's shape, found in a [`Side`].
pub trait Shape: Sized {
    /// What it is, for errors.
    const WHAT: &'static str;
    fn of(side: &Side) -> Option<&Self>;
}

impl Serialize for Side {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(s)
    }
}

impl Side {
    /// Reads a plan's JSON side as the shape its address calls for.
    pub fn from_value(address: &Address, v: Value) -> Result<Side, serde_json::Error> {
        use serde_json::from_value as read;
        Ok(match address {
            Address::Unit { .. } => Side::Unit(read(v)?),
            Address::Account { .. } => Side::Account(read(v)?),
            Address::StackSet { .. } => Side::StackSet(Box::new(read(v)?)),
            Address::StackInstance { .. } => Side::Instance(read(v)?),
            Address::Pipeline { .. } => Side::Bundle(read(v)?),
            // The manifest's shape names what only it knows (the hub's name, the product's
            // manifest name, the product): anything else is live's.
            Address::Portfolio { .. } => read(v.clone())
                .map(Side::Portfolio)
                .or_else(|_| read(v).map(Side::LivePortfolio))?,
            Address::Product { .. } => read(v.clone())
                .map(Side::Product)
                .or_else(|_| read(v).map(Side::LiveProduct))?,
            Address::ProductVersion { .. } => Side::Version(read(v)?),
            Address::Constraint { .. } => read(v.clone())
                .map(Side::Constraint)
                .or_else(|_| read(v).map(Side::LiveConstraint))?,
            Address::TagOption { .. } => Side::TagOption(read(v)?),
            Address::Principal { .. } => Side::Principal(read(v)?),
            Address::Share { .. } => Side::Share(read(v)?),
            Address::CatalogOrganizationsAccess => Side::CatalogAccess(read(v)?),
            Address::CatalogDelegatedAdmin { .. } => Side::DelegatedAdmin(read(v)?),
            Address::StackSetsOrganizationsAccess => Side::TrustedAccess(read(v)?),
            Address::AdministrationRole => Side::Administration(read(v)?),
            Address::ExecutionRole { account: None } => Side::ExecutionSet(read(v)?),
            Address::ExecutionRole { account: Some(_) } => Side::ExecutionInstance(read(v)?),
        })
    }
}

/// A change whose before or after is not what its address calls for (a plan edited by hand,
/// or written by another version).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{address}: the plan gives no {what} {side} for it")]
pub struct ShapeError {
    pub address: String,
    pub what: &'static str,
    pub side: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip(address: &str, v: Value) -> Side {
        let address: Address = address.parse().unwrap();
        let side = Side::from_value(&address, v.clone()).unwrap_or_else(|e| panic!("{e}"));
        // Byte for byte: key order and present-but-null fields are kept.
        assert_eq!(
            serde_json::to_string(&side).unwrap(),
            serde_json::to_string(&v).unwrap()
        );
        side
    }

    #[test]
    fn every_shape_reads_back_as_written() {
        round_trip("unit:/ml", json!({"path": "/ml", "parent": "/"}));
        round_trip(
            "account:tools",
            json!({"name": "tools", "email": "t@example.com", "unit": null}),
        );
        round_trip(
            "account:tools",
            json!({"id": "111111111111", "unit": "/ml"}),
        );
        round_trip(
            "stackInstance:s-dev/tools/eu-west-1",
            json!({"stackSet": "s-dev", "account": "111111111111", "accountName": null,
                "region": "eu-west-1", "parameterOverrides": {}, "status": "OUTDATED",
                "organizationalUnitId": "ou-ab12-cdef3456", "lastOperation": "op-1"}),
        );
        // Live and manifest shapes of one family are told apart by what they hold.
        let live = round_trip(
            "product:p/notebook",
            json!({"id": "prod-1", "displayName": "Notebook", "owner": "ml",
                "description": null, "distributor": null, "supportEmail": null}),
        );
        assert!(matches!(live, Side::LiveProduct(_)));
        let wanted = round_trip(
            "product:p/notebook",
            json!({"portfolio": "p", "portfolioId": null, "name": "notebook",
                "displayName": "Notebook", "owner": "ml", "description": null,
                "distributor": null, "supportEmail": null, "id": "prod-1"}),
        );
        assert!(matches!(wanted, Side::Product(_)));
        // Absent and null are different shapes of a share: both survive.
        round_trip(
            "share:p/account/staging",
            json!({"portfolio": "p", "portfolioId": "port-1", "account": null,
                "accountName": "staging", "accepted": true}),
        );
        round_trip(
            "share:p/unit/ou-ab12-cdef3456",
            json!({"portfolio": "p", "portfolioId": "port-1", "unitId": "ou-ab12-cdef3456"}),
        );
        // What a share carries to its recipients, and a product's tags.
        let share = round_trip(
            "share:p/unit/ml",
            json!({"portfolio": "p", "portfolioId": null, "unit": "/ml", "unitId": null,
                "shareTagOptions": true, "sharePrincipals": false}),
        );
        assert!(matches!(
            share,
            Side::Share(ShareSide {
                share_principals: Some(false),
                ..
            })
        ));
        round_trip(
            "product:p/notebook",
            json!({"portfolio": "p", "portfolioId": null, "name": "notebook",
                "displayName": "Notebook", "owner": "ml", "description": null,
                "distributor": null, "supportEmail": null,
                "tags": {"sagemaker:studio-visibility": "true"}}),
        );
        round_trip(
            "product:p/notebook",
            json!({"id": "prod-1", "displayName": "Notebook", "owner": "ml",
                "tags": {"estate:product": "notebook"}}),
        );
        round_trip(
            "prerequisite:execution-role/staging",
            json!({"account": "222222222222", "accountName": "staging", "lastOperation": null}),
        );
    }

    #[test]
    fn a_side_of_the_wrong_shape_is_refused() {
        let address: Address = "stackInstance:s-dev/tools/eu-west-1".parse().unwrap();
        assert!(Side::from_value(&address, json!({"path": "/ml", "parent": "/"})).is_err());
        // A key no shape has: a plan from another version, not silently half-read.
        let unit: Address = "unit:/ml".parse().unwrap();
        assert!(
            Side::from_value(&unit, json!({"path": "/ml", "parent": "/", "extra": 1})).is_err()
        );
    }

    #[test]
    fn apply_reads_a_side_by_its_shape_or_says_which_change_is_wrong() {
        let change: crate::plan::Change = serde_json::from_value(json!({
            "address": "unit:/ml", "resourceType": "unit", "action": "create",
            "environment": null, "reason": "r", "before": null,
            "after": {"path": "/ml", "parent": "/"}
        }))
        .unwrap();
        assert_eq!(change.after_as::<UnitSide>().unwrap().parent, "/");
        let e = change.after_as::<InstanceSide>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unit:/ml: the plan gives no stack instance after for it"
        );
        let bad = serde_json::from_value::<crate::plan::Change>(json!({
            "address": "unit:/ml", "resourceType": "unit", "action": "create",
            "environment": null, "reason": "r", "before": null, "after": {"path": "/ml"}
        }))
        .unwrap_err();
        assert!(bad.to_string().starts_with("unit:/ml (after):"), "{bad}");
    }
}
