//! Instance changes grouped into as few stack-set operations as AWS allows.

use crate::plan::Address;
use std::collections::{BTreeMap, BTreeSet};

/// One batched instance operation: these accounts × these regions, with these overrides.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub accounts: Vec<String>,
    pub regions: Vec<String>,
    pub overrides: BTreeMap<String, String>,
    /// Deletes only: keep the stacks (accounts AWS can no longer reach).
    pub retain: bool,
    /// Service-managed stack sets: the units AWS is given, narrowed to `accounts`.
    pub units: Vec<String>,
    /// Retries: the operations they follow, so each attempt has an operation id of its own.
    pub since: Vec<String>,
    pub addresses: Vec<Address>,
}

/// Key of an instance group: its parameter overrides, whether stacks are retained, its units,
/// account.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Overrides(BTreeMap<String, String>, bool, Vec<String>, String);

/// Groups instance changes into as few calls as AWS allows: a call covers accounts × regions
/// with one set of overrides, so instances are grouped by overrides, then by region set.
pub fn batches(instances: &[(Address, &DesiredInstanceView)]) -> Vec<Batch> {
    // (overrides, account) → (its regions, the plan addresses they cover)
    let mut by_account: BTreeMap<Overrides, (BTreeSet<String>, Vec<Address>)> = BTreeMap::new();
    for (address, i) in instances {
        let entry = by_account
            .entry(Overrides(
                i.overrides.clone(),
                i.retain,
                i.units.clone(),
                i.account.clone(),
            ))
            .or_default();
        entry.0.insert(i.region.clone());
        entry.1.push(address.clone());
    }
    type Key = (BTreeMap<String, String>, bool, Vec<String>, Vec<String>);
    let mut groups: BTreeMap<Key, Batch> = BTreeMap::new();
    let since: BTreeMap<&str, &str> = instances
        .iter()
        .filter_map(|(_, i)| Some((i.account.as_str(), i.since.as_deref()?)))
        .collect();
    for (Overrides(overrides, retain, units, account), (regions, addresses)) in by_account {
        let regions: Vec<String> = regions.into_iter().collect();
        let batch = groups
            .entry((overrides.clone(), retain, units.clone(), regions.clone()))
            .or_insert_with(|| Batch {
                accounts: Vec::new(),
                regions,
                overrides,
                retain,
                units,
                since: Vec::new(),
                addresses: Vec::new(),
            });
        if let Some(op) = since.get(account.as_str()) {
            batch.since.push(op.to_string());
        }
        batch.accounts.push(account);
        batch.addresses.extend(addresses);
    }
    for b in groups.values_mut() {
        b.since.sort();
        b.since.dedup();
    }
    groups.into_values().collect()
}

/// An instance as apply sees it: a known account id, a region, overrides with real values.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredInstanceView {
    pub account: String,
    pub region: String,
    pub overrides: BTreeMap<String, String>,
    /// Removed with its stack kept (the plan's `RetainStacks` hint).
    pub retain: bool,
    /// Service-managed stack sets: the units to name (AWS takes no account alone).
    pub units: Vec<String>,
    /// A retry: the operation it follows (part of its operation id).
    pub since: Option<String>,
}
