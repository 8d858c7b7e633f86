//! What apply did: the changes carried out, the steps that failed and why, the operations
//! started.

use crate::plan::Address;
use std::collections::BTreeMap;

/// The version of the JSON `apply` and `reconcile` print (`formatVersion`); a breaking change
/// bumps it, as the plan's does.
pub const REPORT_FORMAT_VERSION: u32 = 1;

/// One instance AWS could not converge, with its reason.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct InstanceFailure {
    pub account: String,
    pub region: String,
    pub status: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StepFailure {
    pub stack_set: String,
    pub step: String,
    pub message: String,
    pub instances: Vec<InstanceFailure>,
}

/// What apply did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Report {
    /// Addresses of changes carried out.
    pub done: Vec<Address>,
    pub failures: Vec<StepFailure>,
    /// AWS stack-set operations started, by stack set.
    pub operations: BTreeMap<String, Vec<String>>,
    /// The floor of the one live read this apply made (`live::floor`): `--stats` prints it
    /// beside the calls.
    #[serde(skip)]
    pub read_floor: BTreeMap<&'static str, u64>,
}
