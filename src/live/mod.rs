//! Live state: what AWS holds, as plain values (the organization, stack sets and their
//! instances, portfolios). The readers fill them through the AWS edge: `read` (organization and
//! stack sets), `catalog` (Service Catalog), `drift` (resource drift); everything else only
//! looks at the values.

pub mod catalog;
pub mod drift;
pub mod floor;
pub mod read;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Organizations and CloudFormation state relevant to one estate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveState {
    /// The organization's management account.
    pub management_account: String,
    /// The account estate's credentials act as: the management account, or a delegated
    /// administrator (empty in old fixtures: taken to be the management account).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub caller_account: String,
    /// The AWS partition (`aws`, `aws-cn`, `aws-us-gov`), from the caller's identity.
    #[serde(default = "default_partition")]
    pub partition: String,
    pub root_id: String,
    /// Every unit of the organization, parents before children.
    pub units: Vec<LiveUnit>,
    pub accounts: Vec<LiveAccount>,
    /// Every active stack set of the administrator account, by name.
    pub stack_sets: BTreeMap<String, LiveStackSet>,
    /// Portfolios this estate manages, read in their hub accounts, and those without any
    /// estate's tag that the manifest adopts or `estate import` reads.
    #[serde(default)]
    pub portfolios: Vec<LivePortfolio>,
    /// Whether Service Catalog may use AWS Organizations (read only when a portfolio is
    /// shared with units).
    #[serde(default)]
    pub catalog_organizations_access: Option<bool>,
    /// Accounts registered as delegated administrators for Service Catalog (read only when a
    /// portfolio is shared with units: only these and the management account may do that).
    #[serde(default)]
    pub catalog_delegated_admins: Option<Vec<String>>,
    /// Portfolios in hub accounts without this estate's tag, by name (conflicts if a manifest
    /// portfolio has the same one).
    #[serde(default)]
    pub unmanaged_portfolios: Vec<UnmanagedPortfolio>,
    /// Accounts the organization root records as holding this estate's portfolios (written by
    /// apply): read for portfolios even when no manifest portfolio names them.
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub portfolio_hub_record: std::collections::BTreeSet<String>,
    /// This estate's generation on the organization root (`None`: never applied, or by a
    /// version before generations): changed by every apply before it changes anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<String>,
    /// Pipelines' source bundles present in their artifact buckets, as `bucket/key`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub pipeline_sources: std::collections::BTreeSet<String>,
    /// Pipelines' artifact buckets that exist (possibly kept from a deleted pipeline).
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub pipeline_buckets: std::collections::BTreeSet<String>,
    /// Whether CloudFormation StackSets may act in AWS Organizations (trusted access), read
    /// only when service-managed stack sets are, or may be, needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack_sets_organizations_access: Option<bool>,
    /// The stack holding the administration role estate bootstrapped (`None`: not read, or
    /// absent; see `bootstrap_read`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub administration_stack: Option<LiveStack>,
    /// Whether the bootstrap reads above were made.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bootstrap_read: bool,
    /// Outputs of the stack instances whose outputs the manifest uses as parameters, by
    /// [`output_key`]; an instance without a stack in a completed state has no entry.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub stack_outputs: BTreeMap<String, BTreeMap<String, String>>,
}

/// The key of an instance's outputs in [`LiveState::stack_outputs`].
pub fn output_key(stack_set: &str, account: &str, region: &str) -> String {
    format!("{stack_set}/{account}/{region}")
}

/// A CloudFormation stack (not a stack set) estate created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveStack {
    pub name: String,
    /// `CREATE_COMPLETE`, `ROLLBACK_COMPLETE`, …
    pub status: String,
    pub status_reason: Option<String>,
    /// Output keys (not values: nothing here needs them).
    pub outputs: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveUnit {
    pub id: String,
    /// `/ml/staging`.
    pub path: String,
    pub parent_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveAccount {
    pub id: String,
    pub name: String,
    pub email: String,
    /// Organizations' `Account.State` (`Status` was retired by AWS on 2026-09-09).
    pub state: AccountState,
    /// Unit (`ou-…`) or root (`r-…`) id the account is in.
    pub parent_id: String,
    /// Its tags, read only where the manifest would move it without adopting it (whether it
    /// is this estate's decides); `None`: not read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
}

/// Where an account is in its lifecycle, as Organizations' `Account.State` says. The reader
/// fails on a state it does not know (or none): it is never guessed, so never taken for gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AccountState {
    PendingActivation,
    Active,
    Suspended,
    PendingClosure,
    Closed,
}

impl AccountState {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountState::PendingActivation => "PENDING_ACTIVATION",
            AccountState::Active => "ACTIVE",
            AccountState::Suspended => "SUSPENDED",
            AccountState::PendingClosure => "PENDING_CLOSURE",
            AccountState::Closed => "CLOSED",
        }
    }

    /// Positive evidence AWS can no longer deploy to the account (suspended, or closed): its
    /// stack instances are removed (stacks retained, AWS cannot reach them). An account
    /// PENDING_CLOSURE is not yet: its closure may still not happen, and it keeps its
    /// instances until AWS says it is closed.
    pub fn is_closing(self) -> bool {
        matches!(self, AccountState::Suspended | AccountState::Closed)
    }
}

impl std::fmt::Display for AccountState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveStackSet {
    pub name: String,
    pub description: Option<String>,
    pub template_body: String,
    /// Parameter values; AWS returns NoEcho values masked.
    pub parameters: BTreeMap<String, String>,
    pub capabilities: Vec<String>,
    pub tags: BTreeMap<String, String>,
    /// `SELF_MANAGED` or `SERVICE_MANAGED`.
    pub permission_model: String,
    pub administration_role_arn: Option<String>,
    pub execution_role_name: Option<String>,
    pub auto_deployment: Option<LiveAutoDeployment>,
    /// `None` when not read: stack sets estate does not manage are never listed further.
    pub instances: Option<Vec<LiveInstance>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LiveAutoDeployment {
    pub enabled: bool,
    pub retain_stacks_on_account_removal: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveInstance {
    pub account: String,
    pub region: String,
    /// `CURRENT`, `OUTDATED` or `INOPERABLE`.
    pub status: String,
    pub status_reason: Option<String>,
    /// Service-managed stack sets: the unit AWS deployed the instance through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Read only where the manifest gives overrides (one DescribeStackInstance each);
    /// `None` means not read.
    pub overrides: Option<BTreeMap<String, String>>,
    /// Set when the last drift detection found the instance's stack DRIFTED. Never
    /// serialized: the state is serialized only for its fingerprint, which leaves resource
    /// drift out (see `LiveState::fingerprint`).
    #[serde(default, skip_serializing)]
    pub drift: Option<InstanceDrift>,
    /// The last stack-set operation on the instance (a drift detection is one). Never
    /// serialized, as `drift`.
    #[serde(default, skip_serializing)]
    pub last_operation: Option<String>,
    /// The instance's stack (its id, from ListStackInstances): where its outputs are read.
    /// Never serialized: the outputs read are (`LiveState::stack_outputs`).
    #[serde(default, skip_serializing)]
    pub stack_id: Option<String>,
}

/// What drift detection (DetectStackSetDrift) last found in one instance's stack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceDrift {
    /// When AWS last checked, as it reports it.
    pub last_checked: Option<String>,
    /// The resources that differ; `None` when not read (no detection in this run).
    pub resources: Option<Vec<ResourceDrift>>,
    /// The detection's operation, when it is still the last operation on the instance: its
    /// result is then the latest word on the stack (nothing has deployed to it since).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// Every resource of the stack (read unfiltered, in-sync ones included) was DELETED.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stack_gone: bool,
}

impl InstanceDrift {
    /// The latest detection found the instance's whole stack gone.
    pub fn stack_deleted(&self) -> bool {
        self.operation.is_some() && self.stack_gone
    }
}

/// Whether a detection's full resource list says the stack is gone: every resource DELETED.
pub(crate) fn stack_gone(every: &[ResourceDrift]) -> bool {
    !every.is_empty() && every.iter().all(|d| d.status == "DELETED")
}

/// The resources a reader is shown: those changed or deleted.
pub(crate) fn changed_only(every: Vec<ResourceDrift>) -> Vec<ResourceDrift> {
    every
        .into_iter()
        .filter(|d| d.status == "MODIFIED" || d.status == "DELETED")
        .collect()
}

/// One resource of a stack changed (or deleted) outside CloudFormation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceDrift {
    pub logical_id: String,
    pub resource_type: String,
    /// `MODIFIED` or `DELETED`.
    pub status: String,
    /// `PropertyPath: expected → actual` of each difference (NoEcho-free: AWS never returns
    /// NoEcho values, and drift detection does not check them).
    pub differences: Vec<String>,
}

fn default_partition() -> String {
    crate::aws::partition_of_region("")
}

impl LiveState {
    /// The account estate acts as (where its own edge, not a member role, is used).
    pub fn caller(&self) -> &str {
        if self.caller_account.is_empty() {
            &self.management_account
        } else {
            &self.caller_account
        }
    }

    /// A digest of the whole state, so a saved plan can tell whether live changed since.
    /// Digest of what apply acts on. Resource drift and the last operation are left out (never
    /// serialized): apply never reads drift, and a detection is an operation, so a drift
    /// detection between `plan --out` and `apply --plan` must not make the plan stale.
    /// Streamed into the hash: 100,000 instances are neither cloned nor held as text.
    pub fn fingerprint(&self) -> String {
        /// The JSON text goes straight into the hash.
        struct Hashing(Sha256);
        impl std::io::Write for Hashing {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.update(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        // Buffered: serde_json writes a few bytes at a time.
        let mut hashing = std::io::BufWriter::with_capacity(1 << 16, Hashing(Sha256::new()));
        serde_json::to_writer(&mut hashing, self).expect("live state serializes");
        let Ok(Hashing(hash)) = hashing.into_inner() else {
            unreachable!("writing into a hash never fails")
        };
        format!("sha256:{}", hex::encode(hash.finalize()))
    }

    pub fn unit_by_path(&self, path: &str) -> Option<&LiveUnit> {
        self.units.iter().find(|u| u.path == path)
    }

    /// Path of a unit or root id (`/` for the root).
    pub fn path_of(&self, parent_id: &str) -> Option<&str> {
        if parent_id == self.root_id {
            return Some("/");
        }
        self.units
            .iter()
            .find(|u| u.id == parent_id)
            .map(|u| u.path.as_str())
    }

    pub fn account_by_email(&self, email: &str) -> Option<&LiveAccount> {
        self.accounts
            .iter()
            .find(|a| a.email.eq_ignore_ascii_case(email))
    }
}

// ------------------------------------------------------------------ Service Catalog

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LivePortfolio {
    pub id: String,
    /// The hub account that owns it.
    pub account: String,
    pub display_name: String,
    pub provider_name: String,
    pub description: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub products: Vec<LiveProduct>,
    pub constraints: Vec<LiveConstraint>,
    pub tag_options: Vec<LiveTagOption>,
    /// Principal ARNs associated in the hub account.
    pub principals: Vec<String>,
    /// Accounts the portfolio is shared with.
    pub shared_accounts: Vec<String>,
    /// Organization units (`ou-…`) the portfolio is shared with.
    pub shared_units: Vec<String>,
    /// What each share (by recipient account or unit id) gives besides the portfolio.
    #[serde(default)]
    pub share_flags: BTreeMap<String, LiveShareFlags>,
    /// Per recipient account (of an account share): acceptance and principals there.
    pub recipients: BTreeMap<String, LiveRecipient>,
}

/// A share's flags as DescribePortfolioShares reports them: whether the recipients get the
/// portfolio's tag options, and its name-pattern principals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveShareFlags {
    pub tag_options: bool,
    pub principals: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveProduct {
    pub id: String,
    pub name: String,
    pub owner: String,
    pub description: Option<String>,
    pub distributor: Option<String>,
    pub support_email: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub versions: Vec<LiveVersion>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveVersion {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub active: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveConstraint {
    pub id: String,
    pub product_id: String,
    /// `LAUNCH`, …
    pub kind: String,
    /// The constraint's parameters, as the JSON text AWS keeps.
    pub parameters: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveTagOption {
    pub id: String,
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveRecipient {
    pub accepted: bool,
    pub principals: Vec<String>,
}

/// A portfolio in a hub account without this estate's tag: never read further or touched,
/// only compared by name so that a manifest portfolio of the same name is a conflict.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnmanagedPortfolio {
    pub id: String,
    pub account: String,
    pub display_name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(status: &str, drift: bool, operation: &str) -> LiveState {
        let instance = serde_json::json!({
            "account": "111111111111", "region": "us-east-1", "status": status,
            "statusReason": null, "overrides": null, "lastOperation": operation,
            "drift": drift.then(|| serde_json::json!({"lastChecked": "2026-12-01"})),
        });
        serde_json::from_value(serde_json::json!({
            "managementAccount": "000000000000", "rootId": "r-1", "units": [], "accounts": [],
            "stackSets": {"s": {
                "name": "s", "description": null, "templateBody": "{}", "parameters": {},
                "capabilities": [], "tags": {}, "permissionModel": "SELF_MANAGED",
                "administrationRoleArn": null, "executionRoleName": null,
                "autoDeployment": null, "instances": [instance],
            }},
        }))
        .unwrap()
    }

    #[test]
    fn the_fingerprint_leaves_out_drift_and_the_last_operation_only() {
        let base = state("CURRENT", false, "op-1").fingerprint();
        assert!(
            base.starts_with("sha256:") && base.len() == 7 + 64,
            "{base}"
        );
        assert_eq!(state("CURRENT", true, "op-2").fingerprint(), base);
        assert_ne!(state("OUTDATED", false, "op-1").fingerprint(), base);
    }
}
