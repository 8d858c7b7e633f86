//! The floor of a live read: the fewest AWS calls, by operation, that reading this state for
//! this manifest can cost (pages of AWS's largest size, nothing read twice). `--stats` prints
//! it beside the calls made, so a read that costs more than it should is seen. Pure: computed
//! from the state read and the read's options, never from the calls counted.
//!
//! Only the organization, stack-set and prerequisite reads have a floor here; Service Catalog
//! and pipeline-bucket reads (one account each, their pages unknown) have none.

use super::LiveState;
use super::read::{EMPTY_OVERRIDES, ReadOptions};
use crate::tags::TAG_OVERRIDES;
use std::collections::{BTreeMap, BTreeSet};

/// Organizations answers at most 20 units or accounts a page (API reference, MaxResults of
/// ListOrganizationalUnitsForParent and ListAccountsForParent).
const ORGANIZATIONS_PAGE: usize = 20;
/// CloudFormation answers at most 100 stack sets or instances a page (MaxResults of
/// ListStackSets and ListStackInstances).
const CLOUDFORMATION_PAGE: usize = 100;

/// Pages of `n` items, `size` a page: an empty list is still one call.
fn pages(n: usize, size: usize) -> u64 {
    n.div_ceil(size).max(1) as u64
}

/// The floor of [`super::read::read`] of `state` with `opts`, by `Service.Operation`.
pub fn floor(opts: &ReadOptions, state: &LiveState) -> BTreeMap<&'static str, u64> {
    let mut f = BTreeMap::new();
    // Who is asking (account, partition), the organization, its root, the root's records.
    f.insert("STS.GetCallerIdentity", 1);
    f.insert("Organizations.DescribeOrganization", 1);
    f.insert("Organizations.ListRoots", 1);
    // The root's tags, and those of each account the manifest would move (their tags say
    // whether it is the estate's to move).
    f.insert(
        "Organizations.ListTagsForResource",
        1 + state.accounts.iter().filter(|a| a.tags.is_some()).count() as u64,
    );
    // The root and every unit: its child units, then its accounts.
    let parents: Vec<&str> = std::iter::once(state.root_id.as_str())
        .chain(state.units.iter().map(|u| u.id.as_str()))
        .collect();
    let mut children: BTreeMap<&str, (usize, usize)> =
        parents.iter().map(|p| (*p, (0, 0))).collect();
    for u in &state.units {
        if let Some(c) = children.get_mut(u.parent_id.as_str()) {
            c.0 += 1;
        }
    }
    for a in &state.accounts {
        if let Some(c) = children.get_mut(a.parent_id.as_str()) {
            c.1 += 1;
        }
    }
    f.insert(
        "Organizations.ListOrganizationalUnitsForParent",
        children
            .values()
            .map(|c| pages(c.0, ORGANIZATIONS_PAGE))
            .sum(),
    );
    f.insert(
        "Organizations.ListAccountsForParent",
        children
            .values()
            .map(|c| pages(c.1, ORGANIZATIONS_PAGE))
            .sum(),
    );
    // Every active stack set is described (its tags say whose it is); only this estate's
    // have their instances listed.
    f.insert(
        "CloudFormation.ListStackSets",
        pages(state.stack_sets.len(), CLOUDFORMATION_PAGE),
    );
    f.insert(
        "CloudFormation.DescribeStackSet",
        state.stack_sets.len() as u64,
    );
    let mut listed = 0;
    let mut described = 0;
    let mut detections = BTreeSet::new();
    let mut resource_drifts = 0;
    for set in state.stack_sets.values() {
        let Some(instances) = &set.instances else {
            continue;
        };
        listed += pages(instances.len(), CLOUDFORMATION_PAGE);
        // Overrides are not in the list: each instance is described when the digest differs.
        let digest = set
            .tags
            .get(TAG_OVERRIDES)
            .map_or(EMPTY_OVERRIDES, String::as_str);
        // Read instances are this estate's or adopted ones: described alike.
        if opts
            .overrides_digests
            .get(&set.name)
            .is_some_and(|d| d != digest)
        {
            described += instances.len() as u64;
        }
        // What a drift detection found, for drifted instances it was the last operation of.
        for i in instances {
            if let Some(op) = i.drift.as_ref().and_then(|d| d.operation.as_ref()) {
                detections.insert((set.name.as_str(), op.as_str()));
                resource_drifts += 1;
            }
        }
    }
    f.insert("CloudFormation.ListStackInstances", listed);
    for (op, n) in [
        ("CloudFormation.DescribeStackInstance", described),
        (
            "CloudFormation.DescribeStackSetOperation",
            detections.len() as u64,
        ),
        (
            "CloudFormation.ListStackInstanceResourceDrifts",
            resource_drifts,
        ),
    ] {
        if n > 0 {
            f.insert(op, n);
        }
    }
    // What stack-set roles and service-managed sets need: one call each.
    if opts.bootstrap || opts.stack_sets_access {
        f.insert("CloudFormation.DescribeOrganizationsAccess", 1);
    }
    // The administration stack, and each instance's stack whose outputs other stack sets use.
    let outputs = state
        .stack_sets
        .iter()
        .filter(|(name, _)| opts.outputs_of.contains(*name))
        .flat_map(|(_, set)| set.instances.iter().flatten())
        .filter(|i| i.stack_id.is_some())
        .filter(|i| {
            i.account == state.caller()
                || state
                    .accounts
                    .iter()
                    .any(|a| a.id == i.account && a.state == super::AccountState::Active)
        })
        .count() as u64;
    let stacks = u64::from(opts.bootstrap) + outputs;
    if stacks > 0 {
        f.insert("CloudFormation.DescribeStacks", stacks);
    }
    f
}

/// Calls by operation beside `floor`, as `--stats` prints them (stderr): a total line, then a
/// line per operation; an operation above its floor is marked.
pub fn stats_lines(calls: &BTreeMap<String, u64>, floor: &BTreeMap<&'static str, u64>) -> String {
    let total: u64 = calls.values().sum();
    let floored: u64 = floor.values().sum();
    let mut out = format!(
        "AWS API calls: {total} (the live read's floor: {floored}; writes, waits, locks and Service Catalog reads have none)\n"
    );
    out.push_str(&format!(
        "  {:<48} {:>6} {:>6}\n",
        "operation", "calls", "floor"
    ));
    let ops: BTreeSet<&str> = calls
        .keys()
        .map(String::as_str)
        .chain(floor.keys().copied())
        .collect();
    for op in ops {
        let n = calls.get(op).copied().unwrap_or(0);
        match floor.get(op) {
            Some(&least) if n > least => {
                out.push_str(&format!("  {op:<48} {n:>6} {least:>6}  above the floor\n"))
            }
            Some(&least) => out.push_str(&format!("  {op:<48} {n:>6} {least:>6}\n")),
            None => out.push_str(&format!("  {op:<48} {n:>6} {:>6}\n", "-")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::{AccountState, LiveAccount, LiveInstance, LiveStackSet, LiveUnit};

    fn unit(id: &str, parent: &str) -> LiveUnit {
        LiveUnit {
            id: id.into(),
            path: format!("/{id}"),
            parent_id: parent.into(),
        }
    }

    fn account(id: usize, parent: &str) -> LiveAccount {
        LiveAccount {
            id: format!("{id:012}"),
            name: format!("a{id}"),
            email: format!("a{id}@example.com"),
            state: AccountState::Active,
            parent_id: parent.into(),
            tags: None,
        }
    }

    fn set(name: &str, owner: Option<&str>, instances: usize) -> LiveStackSet {
        LiveStackSet {
            name: name.into(),
            description: None,
            template_body: String::new(),
            parameters: BTreeMap::new(),
            capabilities: Vec::new(),
            tags: owner
                .map(|o| [(crate::tags::TAG_MANAGED_BY.to_string(), o.to_string())].into())
                .unwrap_or_default(),
            permission_model: "SELF_MANAGED".into(),
            administration_role_arn: None,
            execution_role_name: None,
            auto_deployment: None,
            instances: owner.map(|_| {
                (0..instances)
                    .map(|i| LiveInstance {
                        account: format!("{i:012}"),
                        region: "us-east-1".into(),
                        status: "CURRENT".into(),
                        status_reason: None,
                        unit: None,
                        overrides: None,
                        drift: None,
                        last_operation: None,
                        stack_id: None,
                    })
                    .collect()
            }),
        }
    }

    #[test]
    fn pages_count_every_parent_and_every_managed_set() {
        let mut state = LiveState {
            root_id: "r-1".into(),
            units: vec![unit("ou-a", "r-1"), unit("ou-b", "ou-a")],
            ..Default::default()
        };
        // 45 accounts in ou-a (3 pages), one in the root, none in ou-b (still one call).
        state.accounts = (0..45).map(|i| account(i, "ou-a")).collect();
        state.accounts.push(account(99, "r-1"));
        for s in [set("ours", Some("e"), 250), set("theirs", None, 0)] {
            state.stack_sets.insert(s.name.clone(), s);
        }
        let opts = ReadOptions {
            estate: "e".into(),
            overrides_digests: [("ours".to_string(), "sha".to_string())].into(),
            ..Default::default()
        };
        let f = floor(&opts, &state);
        assert_eq!(f["Organizations.ListOrganizationalUnitsForParent"], 3);
        assert_eq!(f["Organizations.ListAccountsForParent"], 1 + 3 + 1);
        assert_eq!(f["CloudFormation.DescribeStackSet"], 2);
        assert_eq!(
            f["CloudFormation.ListStackInstances"], 3,
            "250 instances of ours"
        );
        // The digest differs from the (absent) tag: every instance of ours is described.
        assert_eq!(f["CloudFormation.DescribeStackInstance"], 250);
        assert!(!f.contains_key("CloudFormation.DescribeStacks"));
    }

    #[test]
    fn the_stacks_of_producers_instances_are_described_each() {
        let mut state = LiveState {
            root_id: "r-1".into(),
            ..Default::default()
        };
        // Three instances: two with a stack in an active account, one without a stack yet.
        state.accounts = (0..3).map(|i| account(i, "r-1")).collect();
        let mut producer = set("producer", Some("e"), 3);
        for (i, inst) in producer.instances.iter_mut().flatten().enumerate() {
            inst.stack_id = (i < 2).then(|| format!("arn:aws:cloudformation:::stack/s{i}"));
        }
        let mut other = set("other", Some("e"), 2);
        for inst in other.instances.iter_mut().flatten() {
            inst.stack_id = Some("arn:aws:cloudformation:::stack/o".into());
        }
        for s in [producer, other] {
            state.stack_sets.insert(s.name.clone(), s);
        }
        let opts = ReadOptions {
            estate: "e".into(),
            bootstrap: true,
            outputs_of: ["producer".to_string()].into(),
            ..Default::default()
        };
        // The administration stack, and the producer's two stacks (not the other set's).
        assert_eq!(floor(&opts, &state)["CloudFormation.DescribeStacks"], 1 + 2);
    }

    #[test]
    fn stats_lines_mark_what_is_above_the_floor() {
        let calls: BTreeMap<String, u64> = [
            ("Organizations.ListRoots".to_string(), 2),
            ("Organizations.DescribeOrganization".to_string(), 1),
            ("ServiceCatalog.ListPortfolios".to_string(), 4),
        ]
        .into();
        let floor: BTreeMap<&str, u64> = [
            ("Organizations.ListRoots", 1),
            ("Organizations.DescribeOrganization", 1),
        ]
        .into();
        let text = stats_lines(&calls, &floor);
        assert!(
            text.starts_with("AWS API calls: 7 (the live read's floor: 2;"),
            "{text}"
        );
        let line = |op: &str| text.lines().find(|l| l.contains(op)).unwrap().to_string();
        assert!(
            line("ListRoots").ends_with("2      1  above the floor"),
            "{text}"
        );
        assert!(line("DescribeOrganization").ends_with("1      1"), "{text}");
        assert!(line("ListPortfolios").ends_with("4      -"), "{text}");
    }
}
