//! Addresses of planned changes: one variant per resource, written and read as the text the
//! JSON plan (formatVersion 1) has always carried, so apply matches on variants, never on text.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// Where a change or finding applies. `Display` gives the plan's text (`stackSet:ml-dev`,
/// `stackInstance:ml-dev/data/eu-west-1`, …); `FromStr` reads it back.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Address {
    /// `unit:/ml/prod`
    Unit { path: String },
    /// `account:NAME` (a manifest account) or `account:ID` (one the manifest does not list).
    Account { key: String },
    /// `stackSet:NAME-ENV`
    StackSet { name: String },
    /// `stackInstance:SET/ACCOUNT/REGION`; the account by manifest name, or id when live has
    /// an instance the manifest does not.
    StackInstance {
        stack_set: String,
        account: String,
        region: String,
    },
    /// `pipeline:NAME`: the pipeline's source bundle.
    Pipeline { name: String },
    /// `portfolio:NAME`, or `portfolio:NAME@ACCOUNT` for an orphan left in a former hub.
    Portfolio {
        name: String,
        account: Option<String>,
    },
    /// `product:PORTFOLIO/PRODUCT`
    Product { portfolio: String, product: String },
    /// `productVersion:PORTFOLIO/PRODUCT/VERSION`
    ProductVersion {
        portfolio: String,
        product: String,
        version: String,
    },
    /// `constraint:PORTFOLIO/PRODUCT/KIND` (kind in lower case: `launch`).
    Constraint {
        portfolio: String,
        product: String,
        kind: String,
    },
    /// `tagOption:PORTFOLIO/KEY=VALUE`
    TagOption {
        portfolio: String,
        key: String,
        value: String,
    },
    /// `principal:PORTFOLIO/ARN` in the hub; `principal:PORTFOLIO@ACCOUNT/role/NAME` in a
    /// recipient account.
    Principal {
        portfolio: String,
        recipient: Option<String>,
        principal: String,
    },
    /// `share:PORTFOLIO/account/ACCOUNT`, `share:PORTFOLIO/unit/PATH` or
    /// `share:PORTFOLIO/unit/ou-…`.
    Share {
        portfolio: String,
        with: ShareTarget,
    },
    /// `share:aws-organizations-access`: Service Catalog's access to AWS Organizations.
    CatalogOrganizationsAccess,
    /// `share:aws-organizations-delegated-admin/ACCOUNT`: a hub registered as Service
    /// Catalog's delegated administrator.
    CatalogDelegatedAdmin { account: String },
    /// `prerequisite:organizations-access`: StackSets' trusted access to AWS Organizations.
    StackSetsOrganizationsAccess,
    /// `prerequisite:administration-role`: the administration role's stack.
    AdministrationRole,
    /// `prerequisite:execution-role` (the bootstrap stack set) or
    /// `prerequisite:execution-role/ACCOUNT` (its instance in one account).
    ExecutionRole { account: Option<String> },
}

/// Whom a portfolio is shared with.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ShareTarget {
    /// By manifest name, or by id for a live share the manifest does not list.
    Account(String),
    /// A unit of the manifest, by path (`/ml/prod`).
    UnitPath(String),
    /// A live unit share the manifest does not list, by id (`ou-…`).
    UnitId(String),
}

const CATALOG_ORGANIZATIONS_ACCESS: &str = "aws-organizations-access";
const CATALOG_DELEGATED_ADMIN: &str = "aws-organizations-delegated-admin/";

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Address::*;
        match self {
            Unit { path } => write!(f, "unit:{path}"),
            Account { key } => write!(f, "account:{key}"),
            StackSet { name } => write!(f, "stackSet:{name}"),
            StackInstance {
                stack_set,
                account,
                region,
            } => write!(f, "stackInstance:{stack_set}/{account}/{region}"),
            Pipeline { name } => write!(f, "pipeline:{name}"),
            Portfolio {
                name,
                account: None,
            } => write!(f, "portfolio:{name}"),
            Portfolio {
                name,
                account: Some(a),
            } => write!(f, "portfolio:{name}@{a}"),
            Product { portfolio, product } => write!(f, "product:{portfolio}/{product}"),
            ProductVersion {
                portfolio,
                product,
                version,
            } => write!(f, "productVersion:{portfolio}/{product}/{version}"),
            Constraint {
                portfolio,
                product,
                kind,
            } => write!(f, "constraint:{portfolio}/{product}/{kind}"),
            TagOption {
                portfolio,
                key,
                value,
            } => write!(f, "tagOption:{portfolio}/{key}={value}"),
            Principal {
                portfolio,
                recipient: None,
                principal,
            } => write!(f, "principal:{portfolio}/{principal}"),
            Principal {
                portfolio,
                recipient: Some(r),
                principal,
            } => write!(f, "principal:{portfolio}@{r}/{principal}"),
            Share { portfolio, with } => match with {
                ShareTarget::Account(a) => write!(f, "share:{portfolio}/account/{a}"),
                ShareTarget::UnitPath(p) => write!(f, "share:{portfolio}/unit{p}"),
                ShareTarget::UnitId(id) => write!(f, "share:{portfolio}/unit/{id}"),
            },
            CatalogOrganizationsAccess => write!(f, "share:{CATALOG_ORGANIZATIONS_ACCESS}"),
            CatalogDelegatedAdmin { account } => {
                write!(f, "share:{CATALOG_DELEGATED_ADMIN}{account}")
            }
            StackSetsOrganizationsAccess => write!(f, "prerequisite:organizations-access"),
            AdministrationRole => write!(f, "prerequisite:administration-role"),
            ExecutionRole { account: None } => write!(f, "prerequisite:execution-role"),
            ExecutionRole { account: Some(a) } => write!(f, "prerequisite:execution-role/{a}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("not a plan address: {0:?}")]
pub struct AddressError(String);

/// AWS's ids of units (`ou-` and two groups of letters and digits) and of the root (`r-…`).
fn is_unit_id(s: &str) -> bool {
    let mut parts = s.split('-');
    let groups = match parts.next() {
        Some("ou") => 2,
        Some("r") => 1,
        _ => return false,
    };
    parts.clone().count() == groups
        && parts.all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric()))
}

impl FromStr for Address {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || AddressError(s.to_string());
        let (kind, rest) = s.split_once(':').ok_or_else(bad)?;
        let nonempty = |v: &str| (!v.is_empty()).then(|| v.to_string()).ok_or_else(bad);
        // Names of the manifest never hold `/` or `@`: the first one ends the portfolio.
        let two = |r: &str| -> Result<(String, String), AddressError> {
            let (a, b) = r.split_once('/').ok_or_else(bad)?;
            Ok((nonempty(a)?, nonempty(b)?))
        };
        Ok(match kind {
            "unit" if rest.starts_with('/') => Address::Unit {
                path: rest.to_string(),
            },
            "account" => Address::Account {
                key: nonempty(rest)?,
            },
            "stackSet" => Address::StackSet {
                name: nonempty(rest)?,
            },
            "stackInstance" => {
                let mut p = rest.splitn(3, '/');
                let (Some(set), Some(account), Some(region)) = (p.next(), p.next(), p.next())
                else {
                    return Err(bad());
                };
                Address::StackInstance {
                    stack_set: nonempty(set)?,
                    account: nonempty(account)?,
                    region: nonempty(region)?,
                }
            }
            "pipeline" => Address::Pipeline {
                name: nonempty(rest)?,
            },
            "portfolio" => match rest.split_once('@') {
                Some((name, account)) => Address::Portfolio {
                    name: nonempty(name)?,
                    account: Some(nonempty(account)?),
                },
                None => Address::Portfolio {
                    name: nonempty(rest)?,
                    account: None,
                },
            },
            "product" => {
                let (portfolio, product) = two(rest)?;
                Address::Product { portfolio, product }
            }
            "productVersion" => {
                let (portfolio, rest) = two(rest)?;
                let (product, version) = two(&rest)?;
                Address::ProductVersion {
                    portfolio,
                    product,
                    version,
                }
            }
            "constraint" => {
                let (portfolio, rest) = two(rest)?;
                let (product, kind) = two(&rest)?;
                Address::Constraint {
                    portfolio,
                    product,
                    kind,
                }
            }
            "tagOption" => {
                let (portfolio, option) = two(rest)?;
                let (key, value) = option.split_once('=').ok_or_else(bad)?;
                Address::TagOption {
                    portfolio,
                    key: nonempty(key)?,
                    value: value.to_string(),
                }
            }
            "principal" => {
                let (head, principal) = two(rest)?;
                match head.split_once('@') {
                    Some((portfolio, recipient)) => Address::Principal {
                        portfolio: nonempty(portfolio)?,
                        recipient: Some(nonempty(recipient)?),
                        principal,
                    },
                    None => Address::Principal {
                        portfolio: head,
                        recipient: None,
                        principal,
                    },
                }
            }
            "share" if rest == CATALOG_ORGANIZATIONS_ACCESS => Address::CatalogOrganizationsAccess,
            "share" if rest.starts_with(CATALOG_DELEGATED_ADMIN) => {
                Address::CatalogDelegatedAdmin {
                    account: nonempty(&rest[CATALOG_DELEGATED_ADMIN.len()..])?,
                }
            }
            "share" => {
                let (portfolio, target) = two(rest)?;
                let with = if let Some(a) = target.strip_prefix("account/") {
                    ShareTarget::Account(nonempty(a)?)
                } else if let Some(u) = target.strip_prefix("unit/") {
                    if is_unit_id(u) {
                        ShareTarget::UnitId(u.to_string())
                    } else {
                        // The root's path is `/`: `share:P/unit/`.
                        ShareTarget::UnitPath(format!("/{u}"))
                    }
                } else {
                    return Err(bad());
                };
                Address::Share { portfolio, with }
            }
            "prerequisite" => match rest {
                "organizations-access" => Address::StackSetsOrganizationsAccess,
                "administration-role" => Address::AdministrationRole,
                "execution-role" => Address::ExecutionRole { account: None },
                _ => Address::ExecutionRole {
                    account: Some(nonempty(
                        rest.strip_prefix("execution-role/").ok_or_else(bad)?,
                    )?),
                },
            },
            _ => return Err(bad()),
        })
    }
}

impl Address {
    /// The stack set a stack-set or instance change belongs to.
    pub fn stack_set(&self) -> Option<&str> {
        match self {
            Address::StackSet { name } => Some(name),
            Address::StackInstance { stack_set, .. } => Some(stack_set),
            _ => None,
        }
    }

    /// The portfolio a catalog change belongs to; `None` for the organization's settings.
    pub fn portfolio(&self) -> Option<&str> {
        match self {
            Address::Portfolio { name, .. } => Some(name),
            Address::Product { portfolio, .. }
            | Address::ProductVersion { portfolio, .. }
            | Address::Constraint { portfolio, .. }
            | Address::TagOption { portfolio, .. }
            | Address::Principal { portfolio, .. }
            | Address::Share { portfolio, .. } => Some(portfolio),
            _ => None,
        }
    }
}

impl Serialize for Address {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// In JSON an address is its text (`stackSet:ml-dev`), `kind:rest`.
impl schemars::JsonSchema for Address {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Address".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "pattern": "^[a-zA-Z]+:.+$"})
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_reads_back_as_written() {
        for text in [
            "unit:/ml/prod",
            "account:data-science",
            "account:123456789012",
            "stackSet:baseline-dev",
            "stackInstance:baseline-dev/data-science/eu-west-1",
            "stackInstance:baseline-dev/123456789012/us-east-1",
            "pipeline:churn",
            "portfolio:ml",
            "portfolio:ml@123456789012",
            "product:ml/notebook",
            "productVersion:ml/notebook/v1.2",
            "constraint:ml/notebook/launch",
            "tagOption:ml/team=data science",
            "tagOption:ml/cost-center=",
            "principal:ml/arn:aws:iam::123456789012:role/DataScientist",
            "principal:ml@staging/role/DataScientist",
            "share:ml/account/staging",
            "share:ml/account/123456789012",
            "share:ml/unit/ml/prod",
            "share:ml/unit/ou-ab12-cdef3456",
            "share:ml/unit/",
            "share:ml/unit/r-ab12",
            "share:aws-organizations-access",
            "share:aws-organizations-delegated-admin/tools",
            "prerequisite:organizations-access",
            "prerequisite:administration-role",
            "prerequisite:execution-role",
            "prerequisite:execution-role/staging",
        ] {
            let a: Address = text.parse().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(a.to_string(), text);
        }
    }

    #[test]
    fn unit_shares_tell_paths_from_ids() {
        let path: Address = "share:ml/unit/ou-team".parse().unwrap();
        assert!(matches!(
            path,
            Address::Share {
                with: ShareTarget::UnitPath(ref p),
                ..
            } if p == "/ou-team"
        ));
        let id: Address = "share:ml/unit/ou-ab12-cdef3456".parse().unwrap();
        assert!(matches!(
            id,
            Address::Share {
                with: ShareTarget::UnitId(_),
                ..
            }
        ));
    }

    #[test]
    fn text_that_is_no_address_is_refused() {
        for text in [
            "",
            "stackSet",
            "stackSet:",
            "unit:ml",
            "stackInstance:a/b",
            "share:ml/elsewhere/x",
            "prerequisite:other",
            "widget:x",
        ] {
            assert!(text.parse::<Address>().is_err(), "{text}");
        }
    }
}
