//! The Plan: a value describing every change and finding, which renderers and apply read.

use super::address::Address;
use super::side::{Shape, ShapeError, Side};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;

pub const FORMAT_VERSION: u32 = 1;

/// Shown in place of any NoEcho parameter value, in every format.
pub const SENSITIVE: &str = "(sensitive)";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// Resources of the manifest's names that estate will not touch (not its tag): first, so
    /// no reader of any format misses them; they make `plan` exit 2 and stop `apply` there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<String>,
    pub format_version: u32,
    pub estate: String,
    pub source: PlanSource,
    /// Environments this plan covers, in promotion order.
    pub environments: Vec<String>,
    /// The covered environments that hold apply back: a manual approval before them, or
    /// protection of their deletes (`--allow-delete`). Reviewers read it; apply decides from
    /// the manifest itself.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gates: Vec<Gate>,
    /// Digest of the live state the plan was computed from.
    pub fingerprint: String,
    pub summary: Summary,
    pub changes: Vec<Change>,
    /// What the reconciler will not change but a reader must know: orphans, conflicts,
    /// unmanaged accounts.
    #[serde(default)]
    pub findings: Vec<Finding>,
    /// AWS API calls made to read live state, by `Service.Operation` (with `--stats`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<BTreeMap<String, u64>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanSource {
    pub commit: Option<String>,
    pub path: String,
    /// The working tree had uncommitted changes.
    #[serde(default)]
    pub dirty: bool,
}

/// An environment that holds apply back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Gate {
    pub environment: String,
    /// `approval: manual`: apply without `--env` stops before it; CI asks a reviewer.
    pub manual_approval: bool,
    /// `protected: true`: a delete in it needs `--allow-delete`.
    pub protected: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Summary {
    pub create: usize,
    pub update: usize,
    pub delete: usize,
    #[serde(default)]
    pub replace: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    /// `kind:name[/…]`, unique within the plan.
    pub address: Address,
    pub resource_type: ResourceType,
    pub action: Action,
    /// `None` for changes that belong to no environment (units, accounts).
    pub environment: Option<String>,
    /// Why: what differs between the manifest and live.
    pub reason: String,
    pub before: Option<Side>,
    pub after: Option<Side>,
    /// What apply must do beyond turning `before` into `after`; never read from `reason`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<Hint>,
    /// Of a stack-set update that redeploys it: the stack instances it rolls out to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reach: Option<Reach>,
}

/// The stack instances an UpdateStackSet deploys to: every instance of the stack set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Reach {
    pub instances: usize,
    pub accounts: usize,
    pub regions: usize,
}

impl Change {
    /// `before`, as the shape its address calls for.
    pub fn before_as<T: Shape>(&self) -> Result<&T, ShapeError> {
        self.shape(self.before.as_ref(), "before")
    }

    /// `after`, as the shape its address calls for.
    pub fn after_as<T: Shape>(&self) -> Result<&T, ShapeError> {
        self.shape(self.after.as_ref(), "after")
    }

    /// `after`, or `before` for a delete.
    pub fn side_as<T: Shape>(&self) -> Result<&T, ShapeError> {
        self.shape(self.after.as_ref().or(self.before.as_ref()), "side")
    }

    fn shape<'a, T: Shape>(
        &'a self,
        side: Option<&'a Side>,
        which: &'static str,
    ) -> Result<&'a T, ShapeError> {
        side.and_then(T::of).ok_or_else(|| ShapeError {
            address: self.address.to_string(),
            what: T::WHAT,
            side: which,
        })
    }
}

/// A change as the JSON plan holds it: sides are read as the shape their address calls for.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ChangeText {
    address: Address,
    resource_type: ResourceType,
    action: Action,
    environment: Option<String>,
    reason: String,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
    #[serde(default)]
    hint: Option<Hint>,
    #[serde(default)]
    reach: Option<Reach>,
}

impl<'de> Deserialize<'de> for Change {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let t = ChangeText::deserialize(d)?;
        let side = |v: Option<serde_json::Value>, which: &str| {
            v.map(|v| Side::from_value(&t.address, v))
                .transpose()
                .map_err(|e| serde::de::Error::custom(format!("{} ({which}): {e}", t.address)))
        };
        Ok(Change {
            before: side(t.before.clone(), "before")?,
            after: side(t.after.clone(), "after")?,
            address: t.address,
            resource_type: t.resource_type,
            action: t.action,
            environment: t.environment,
            reason: t.reason,
            hint: t.hint,
            reach: t.reach,
        })
    }
}

/// An explicit instruction to apply that before/after alone cannot carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Hint {
    /// Remove the stack instance but keep its stack (`RetainStacks`): the account is
    /// suspended or closed, and AWS can no longer reach it to delete anything.
    RetainStacks,
    /// Of a stack set whose only change is the overrides digest tag: no UpdateStackSet before
    /// the instances, only the tag's, once they carry the new overrides.
    OverridesTagOnly,
    /// Of a stack set, portfolio or product update, or an account move: the resource carries
    /// no estate's tag and the manifest adopts it; the change also writes estate's tags (a
    /// stack set's update is a whole one, never the overrides tag alone).
    Adopt,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum ResourceType {
    Unit,
    Account,
    StackSet,
    StackInstance,
    Portfolio,
    Product,
    ProductVersion,
    TagOption,
    Constraint,
    Principal,
    Share,
    Pipeline,
    /// What stack sets need first: trusted access, the roles of self-managed stack sets.
    Prerequisite,
}

impl ResourceType {
    /// Service Catalog resources: a portfolio and everything under it.
    pub fn is_catalog(self) -> bool {
        matches!(
            self,
            ResourceType::Portfolio
                | ResourceType::Product
                | ResourceType::ProductVersion
                | ResourceType::TagOption
                | ResourceType::Constraint
                | ResourceType::Principal
                | ResourceType::Share
        )
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    Create,
    Update,
    Delete,
    Replace,
}

impl Action {
    pub fn symbol(self) -> &'static str {
        match self {
            Action::Create => "+",
            Action::Update => "~",
            Action::Delete => "-",
            Action::Replace => "-/+",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub kind: FindingKind,
    pub address: Address,
    pub environment: Option<String>,
    pub message: String,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum FindingKind {
    /// Managed by this estate but gone from the manifest; deleted only with `prune: true`.
    Orphan,
    /// Same name as a resource of the manifest, but not carrying this estate's tag.
    Conflict,
    /// In the organization, not in the manifest; never touched.
    Unmanaged,
    /// A stack instance AWS reports as not current (failed or outdated).
    Unhealthy,
    /// Resources of a stack instance changed outside CloudFormation (drift detection).
    Drifted,
    /// A manifest account AWS reports other than ACTIVE (pending activation, suspended,
    /// closing, closed): it takes no new instances.
    Inactive,
    /// Something stack sets need that the organization provides (`stackSetRoles: existing`).
    Prerequisite,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The changes `--allow-delete` must allow: deletes and replaces in the environments
    /// `protected` says are, except instances removed with their stack kept (an account
    /// closing: nothing is lost). Apply refuses them by it; the comment warns by it.
    pub fn protected_deletes(&self, protected: impl Fn(&str) -> bool) -> Vec<&Change> {
        self.changes
            .iter()
            .filter(|c| matches!(c.action, Action::Delete | Action::Replace))
            .filter(|c| c.hint != Some(Hint::RetainStacks))
            .filter(|c| c.environment.as_deref().is_some_and(&protected))
            .collect()
    }

    /// The gate of an environment, when it has one.
    pub fn gate(&self, environment: &str) -> Option<&Gate> {
        self.gates.iter().find(|g| g.environment == environment)
    }

    /// Recounts the summary from the changes.
    pub fn summarize(changes: &[Change]) -> Summary {
        let mut s = Summary::default();
        for c in changes {
            match c.action {
                Action::Create => s.create += 1,
                Action::Update => s.update += 1,
                Action::Delete => s.delete += 1,
                Action::Replace => s.replace += 1,
            }
        }
        s
    }
}
