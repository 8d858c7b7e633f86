//! Planning: resolve the manifest against live state and diff the two into a [`Plan`].
//! Everything here is pure: no I/O, no clock, no randomness.

pub mod address;
pub mod catalog;
pub mod desired;
pub mod diff;
pub mod model;
pub mod prerequisites;
pub mod schema;
pub mod side;

pub use address::{Address, ShareTarget};
pub use desired::PlanError;
pub use model::*;
pub use side::*;

use crate::live::LiveState;
use crate::live::read::ReadOptions;
use crate::manifest::Manifest;
use std::collections::BTreeSet;

/// The environments a plan covers: those asked for, in promotion order, or all of them.
pub fn environments(m: &Manifest, only: &[String]) -> Result<Vec<String>, PlanError> {
    for e in only {
        if m.environment(e).is_none() {
            return Err(PlanError::UnknownEnvironment(e.clone()));
        }
    }
    Ok(m.environments_in_order()
        .into_iter()
        .map(|e| e.name.clone())
        .filter(|n| only.is_empty() || only.contains(n))
        .collect())
}

/// What the live reader needs from the manifest (which stack sets, which override digests).
pub fn read_options(m: &Manifest) -> ReadOptions {
    let mut overrides_digests = std::collections::BTreeMap::new();
    for s in &m.stack_sets {
        for env in &s.spec.environments {
            overrides_digests.insert(
                s.spec.aws_name(&s.name, env),
                desired::overrides_digest(&s.spec, env),
            );
        }
    }
    // The hubs the manifest's portfolios name; portfolios that left the manifest are found
    // through the hubs the organization root records (apply keeps that record).
    let portfolio_hubs = m
        .portfolios
        .iter()
        .filter_map(|p| m.accounts().iter().find(|a| a.name == p.spec.account))
        .map(|a| a.email.clone())
        .collect();
    let pipelines = m
        .pipelines
        .iter()
        .filter_map(|p| {
            let tools = m.accounts().iter().find(|a| a.name == p.spec.account)?;
            Some((p.name.clone(), tools.email.clone()))
        })
        .collect();
    let self_managed =
        m.stack_sets.iter().any(|s| {
            s.spec.permission_model == crate::manifest::model::PermissionModel::SelfManaged
        }) || !m.pipelines.is_empty();
    let service_managed = m.stack_sets.iter().any(|s| {
        s.spec.permission_model == crate::manifest::model::PermissionModel::ServiceManaged
    });
    let adopted = m
        .stack_sets
        .iter()
        .filter(|s| s.spec.adopt)
        .flat_map(|s| {
            s.spec
                .environments
                .iter()
                .map(|env| s.spec.aws_name(&s.name, env))
        })
        .collect();
    let placements = m
        .accounts()
        .iter()
        .filter(|a| !a.adopt)
        .filter_map(|a| Some((a.email.clone(), a.unit.clone()?)))
        .collect();
    let adopted_portfolios = m
        .portfolios
        .iter()
        .filter(|p| p.spec.adopt)
        .filter_map(|p| {
            let hub = m.accounts().iter().find(|a| a.name == p.spec.account)?;
            Some((hub.email.clone(), p.spec.display_name.clone()))
        })
        .collect();
    ReadOptions {
        outputs_of: desired::output_producers(m),
        placements,
        adopted,
        adopted_portfolios,
        import_portfolios: None,
        every_instance_of: Vec::new(),
        bootstrap: self_managed
            && m.estate.spec.stack_set_roles == crate::manifest::model::StackSetRoles::Bootstrap,
        stack_sets_access: service_managed,
        pipelines,
        estate: m.name().to_string(),
        home_region: m.estate.spec.home_region.clone(),
        overrides_digests,
        portfolio_hubs,
        portfolio_unit_shares: m
            .portfolios
            .iter()
            .any(|p| !p.spec.share_with.units.is_empty()),
    }
}

/// The plan: `diff(resolve(manifest, live), live)`.
pub fn make(m: &Manifest, live: &LiveState, only: &[String]) -> Result<Plan, PlanError> {
    make_for(m, live, environments(m, only)?)
}

/// The plan of exactly these environments (none: the organization alone), in promotion order.
pub fn make_for(
    m: &Manifest,
    live: &LiveState,
    environments: Vec<String>,
) -> Result<Plan, PlanError> {
    let scope = m.estate.spec.scope.as_ref();
    let out_of_scope = out_of_scope(m, live);
    let options = diff::DiffOptions {
        estate: m.name(),
        environments: &environments,
        prune: m.estate.spec.prune,
        out_of_scope: &out_of_scope,
        scope,
    };
    // Outputs of stack sets this plan changes are known only after apply, and a consumer of
    // one changes with it: resolve again with the changed producers until that settles (it
    // only grows, so at most once per stack set). Without outputs used, one pass.
    let mut pending: Option<BTreeSet<String>> = None;
    let mut rounds = 0;
    let (desired, changes, findings) = loop {
        let mut desired = desired::resolve_with(m, live, &environments, pending.as_ref())?;
        // `resolve` takes no environment for all of them; here none means none.
        desired
            .stack_sets
            .retain(|s| environments.contains(&s.environment));
        desired
            .sources
            .retain(|s| environments.contains(&s.environment));
        let (changes, findings) = diff::diff(&desired, live, &options);
        if desired.stack_sets.iter().all(|s| s.producers.is_empty()) {
            break (desired, changes, findings);
        }
        let changed: BTreeSet<String> = changes
            .iter()
            .filter(|c| c.environment.is_some())
            .filter_map(|c| c.address.stack_set().map(str::to_string))
            .collect();
        rounds += 1;
        if pending.as_ref() == Some(&changed) || rounds > desired.stack_sets.len() + 1 {
            break (desired, changes, findings);
        }
        pending = Some(changed);
    };
    let (mut changes, mut findings) = (changes, findings);
    // Portfolios belong to no environment: like units and accounts, always planned, after
    // the organization (their hub and recipient accounts) and before stack sets.
    let (catalog_changes, catalog_findings) = catalog::diff(
        &catalog::resolve(m, live),
        live,
        m.name(),
        m.estate.spec.prune,
    );
    // Prerequisites too: applied after the organization, before anything that needs them.
    let (prerequisite_changes, prerequisite_findings) = prerequisites::diff(m, &desired, live);
    let org_end = changes
        .iter()
        .position(|c| c.environment.is_some())
        .unwrap_or(changes.len());
    changes.splice(
        org_end..org_end,
        prerequisite_changes.into_iter().chain(catalog_changes),
    );
    findings.extend(prerequisite_findings);
    findings.extend(catalog_findings);
    let conflicts = findings
        .iter()
        .filter(|f| f.kind == FindingKind::Conflict)
        .map(|f| format!("{}: {}", f.address, f.message))
        .collect();
    let gates = environments
        .iter()
        .filter_map(|name| m.environment(name))
        .map(|e| Gate {
            environment: e.name.clone(),
            manual_approval: e.spec.approval == crate::manifest::model::Approval::Manual,
            protected: e.spec.protected,
        })
        .filter(|g| g.manual_approval || g.protected)
        .collect();
    Ok(Plan {
        conflicts,
        format_version: FORMAT_VERSION,
        estate: m.name().to_string(),
        source: PlanSource {
            commit: m.commit.clone(),
            path: m.root.to_string_lossy().replace('\\', "/"),
            dirty: m.dirty,
        },
        environments,
        gates,
        fingerprint: live.fingerprint(),
        summary: Plan::summarize(&changes),
        changes,
        findings,
        stats: None,
    })
}

/// The live stack sets of `envs` this estate owns: tagged as its own, or without any estate's
/// tag and adopted by the manifest.
pub fn owned_stack_sets(m: &Manifest, live: &LiveState, envs: &[String]) -> Vec<String> {
    use crate::tags::{TAG_ENVIRONMENT, TAG_MANAGED_BY};
    let adopted: std::collections::BTreeSet<String> = m
        .stack_sets
        .iter()
        .filter(|s| s.spec.adopt)
        .flat_map(|s| {
            s.spec
                .environments
                .iter()
                .filter(|e| envs.contains(e))
                .map(|e| s.spec.aws_name(&s.name, e))
        })
        .collect();
    live.stack_sets
        .iter()
        .filter(|(name, s)| match s.tags.get(TAG_MANAGED_BY) {
            Some(owner) => {
                owner == m.name()
                    && s.tags
                        .get(TAG_ENVIRONMENT)
                        .is_some_and(|e| envs.contains(e))
            }
            None => adopted.contains(*name),
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// Live accounts outside the Estate's scope units that the manifest does not name (none
/// without a scope): someone else's, so neither findings nor stack-instance changes.
pub fn out_of_scope(m: &Manifest, live: &LiveState) -> std::collections::BTreeSet<String> {
    let Some(scope) = &m.estate.spec.scope else {
        return Default::default();
    };
    live.accounts
        .iter()
        .filter(|l| {
            !m.accounts()
                .iter()
                .any(|a| a.email.eq_ignore_ascii_case(&l.email))
        })
        .filter(|l| {
            // An account whose unit is not known is not known to be outside.
            live.path_of(&l.parent_id)
                .is_some_and(|path| !scope.has_unit(path))
        })
        .map(|l| l.id.clone())
        .collect()
}

/// The plan framed as drift: what live has that differs from the manifest. Creates count only
/// for instances of stack sets that exist (an instance gone missing) and for parts of
/// portfolios that exist (a principal or share gone missing); a resource never applied is
/// pending, not drift.
pub fn drift_view(plan: &Plan) -> Plan {
    let created_sets: std::collections::BTreeSet<String> = plan
        .changes
        .iter()
        .filter(|c| c.resource_type == ResourceType::StackSet && c.action == Action::Create)
        .filter_map(|c| c.address.stack_set().map(str::to_string))
        .collect();
    let changes: Vec<Change> = plan
        .changes
        .iter()
        .filter(|c| match (c.action, c.resource_type) {
            (Action::Create, ResourceType::StackInstance) => {
                let set = c.address.stack_set().unwrap_or_default();
                !created_sets.contains(set)
            }
            // A missing part of an existing portfolio is drift, as an instance is above.
            (Action::Create, _) => catalog::create_is_drift(c, &plan.changes),
            _ => true,
        })
        .cloned()
        .collect();
    // What the organization must provide is not drift: nothing moved.
    let findings = plan
        .findings
        .iter()
        .filter(|f| f.kind != FindingKind::Prerequisite)
        .cloned()
        .collect();
    Plan {
        summary: Plan::summarize(&changes),
        changes,
        findings,
        ..plan.clone()
    }
}

/// Changes of a plan that are not drift: never applied yet.
pub fn pending_count(plan: &Plan) -> usize {
    plan.changes.len() - drift_view(plan).changes.len()
}
