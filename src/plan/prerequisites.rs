//! What stack sets need before they can deploy, planned before them: StackSets' trusted
//! access to AWS Organizations (service-managed stack sets, and the execution-role bootstrap),
//! and the roles self-managed stack sets use by default: the administration role where estate
//! runs and the execution role in every target account. Unless the Estate says
//! `stackSetRoles: existing`, estate creates what is missing; otherwise findings say what the
//! organization must provide. Pure, like the rest of planning.
//!
//! Cost: nothing per account. A role is known to be there from positive evidence in state
//! already read: a CURRENT instance of a self-managed stack set of this estate in that account
//! (for the administration role, in any account), or the bootstrap's own stack and instances.

use super::address::Address;
use super::desired::{AccountRef, Desired, DesiredStackSet};
use super::model::*;
use super::side::*;
use crate::bootstrap::{self, ADMINISTRATION_ROLE, EXECUTION_ROLE};
use crate::live::{LiveInstance, LiveStackSet, LiveState};
use crate::manifest::Manifest;
use crate::manifest::model::StackSetRoles;
use crate::tags::TAG_MANAGED_BY;
use std::collections::BTreeMap;

/// The address of the execution role's bootstrap in one account.
pub fn execution_in(account_key: &str) -> Address {
    Address::ExecutionRole {
        account: Some(account_key.to_string()),
    }
}

/// The default administration role ARN of self-managed stack sets of this organization.
pub fn default_administration_arn(live: &LiveState) -> String {
    format!(
        "arn:{}:iam::{}:role/{ADMINISTRATION_ROLE}",
        live.partition,
        live.caller()
    )
}

fn relies_on_defaults(d: &DesiredStackSet, admin: &str) -> bool {
    d.permission_model == "SELF_MANAGED"
        && d.administration_role_arn.as_deref() == Some(admin)
        && d.execution_role_name.as_deref() == Some(EXECUTION_ROLE)
}

fn change(address: Address, action: Action, reason: String, after: impl Into<Side>) -> Change {
    Change {
        address,
        resource_type: ResourceType::Prerequisite,
        action,
        environment: None,
        reason,
        before: None,
        after: Some(after.into()),
        hint: None,
        reach: None,
    }
}

fn administration(stack: &str, account: &str, execution_role: bool) -> AdministrationSide {
    AdministrationSide {
        stack: stack.to_string(),
        account: account.to_string(),
        execution_role,
    }
}

pub fn diff(m: &Manifest, desired: &Desired, live: &LiveState) -> (Vec<Change>, Vec<Finding>) {
    let mut changes = Vec::new();
    let mut findings = Vec::new();
    let roles = Roles::read(m.name(), desired, live);

    // Not read (no self-managed stack set was in the manifest when live was read): nothing
    // to say about roles.
    if m.estate.spec.stack_set_roles == StackSetRoles::Bootstrap && !live.bootstrap_read {
        if roles.service_managed && live.stack_sets_organizations_access == Some(false) {
            changes.push(access_change(
                "service-managed stack sets deploy through it",
            ));
        }
        return (changes, findings);
    }
    if m.estate.spec.stack_set_roles == StackSetRoles::Existing {
        for (key, account) in &roles.needing {
            findings.push(Finding {
                kind: FindingKind::Prerequisite,
                address: execution_in(key),
                environment: None,
                message: format!(
                    "{} needs the role {EXECUTION_ROLE} trusting {} before self-managed stack sets deploy to it (stackSetRoles: existing: the organization provides it)",
                    phrase(account),
                    roles.admin
                ),
            });
        }
        if roles.service_managed && live.stack_sets_organizations_access == Some(false) {
            changes.push(access_change(
                "service-managed stack sets deploy through it",
            ));
        }
        return (changes, findings);
    }

    let needs_bootstrap_set = roles.needing.keys().any(|k| {
        roles.needing[k]
            .id
            .as_deref()
            .is_none_or(|id| roles.has_instance(id).is_none())
    });
    if live.stack_sets_organizations_access == Some(false)
        && (needs_bootstrap_set || roles.service_managed)
    {
        changes.push(access_change(if needs_bootstrap_set {
            "the execution role is deployed to member accounts by a service-managed stack set"
        } else {
            "service-managed stack sets deploy through it"
        }));
    }

    if !roles.relying.is_empty() {
        roles.administration_role(&mut changes, &mut findings);
    }

    if roles.needing.is_empty() {
        return (changes, findings);
    }
    roles.execution_roles(&mut changes);
    (changes, findings)
}

/// What the default roles' plan reads from desired and live: who relies on them, and the
/// evidence of where they work.
struct Roles<'a> {
    estate: &'a str,
    live: &'a LiveState,
    caller: String,
    admin: String,
    relying: Vec<&'a DesiredStackSet>,
    service_managed: bool,
    working: BTreeMap<&'a str, ()>,
    execution_set: String,
    bootstrapped: Option<&'a LiveStackSet>,
    /// Accounts a relying stack set deploys to, without evidence of the execution role.
    needing: BTreeMap<String, AccountRef>,
    in_caller: bool,
}

impl<'a> Roles<'a> {
    /// Gathers who relies on the default roles and where live shows them working.
    fn read(estate: &'a str, desired: &'a Desired, live: &'a LiveState) -> Self {
        let caller = live.caller().to_string();
        let admin = default_administration_arn(live);
        let relying: Vec<&DesiredStackSet> = desired
            .stack_sets
            .iter()
            .filter(|d| relies_on_defaults(d, &admin))
            .collect();
        let service_managed = desired
            .stack_sets
            .iter()
            .any(|d| d.permission_model == "SERVICE_MANAGED");

        // Positive evidence of working roles: CURRENT instances of this estate's self-managed
        // stack sets that use the defaults (those the manifest adopts included: their
        // instances are read, and a CURRENT one proves the roles as well).
        let mut working: BTreeMap<&str, ()> = BTreeMap::new();
        for l in live.stack_sets.values() {
            let adopted = !l.tags.contains_key(TAG_MANAGED_BY)
                && desired
                    .stack_sets
                    .iter()
                    .any(|d| d.adopt && d.name == l.name);
            let ours = l.tags.get(TAG_MANAGED_BY).map(String::as_str) == Some(estate) || adopted;
            let defaults = l.permission_model == "SELF_MANAGED"
                && l.administration_role_arn.as_deref() == Some(admin.as_str())
                && l.execution_role_name.as_deref() == Some(EXECUTION_ROLE);
            if ours && defaults {
                for i in l.instances.iter().flatten() {
                    if i.status == "CURRENT" {
                        working.insert(i.account.as_str(), ());
                    }
                }
            }
        }
        let execution_set = bootstrap::execution_stack_set(estate);
        let bootstrapped = live.stack_sets.get(&execution_set);

        // Accounts a relying stack set deploys to, without evidence of the execution role.
        let mut needing: BTreeMap<String, AccountRef> = BTreeMap::new();
        let mut in_caller = false;
        for d in &relying {
            for i in &d.instances {
                match &i.account.id {
                    Some(id) if working.contains_key(id.as_str()) => {}
                    Some(id) if *id == caller => in_caller = true,
                    _ => {
                        needing.insert(i.account.key(), i.account.clone());
                    }
                }
            }
        }
        Roles {
            estate,
            live,
            caller,
            admin,
            relying,
            service_managed,
            working,
            execution_set,
            bootstrapped,
            needing,
            in_caller,
        }
    }

    /// The execution-role bootstrap's live instance in an account, if it has one.
    fn has_instance(&self, id: &str) -> Option<&'a LiveInstance> {
        self.bootstrapped
            .and_then(|s| s.instances.as_ref())
            .and_then(|is| is.iter().find(|i| i.account == id))
    }

    /// The administration role's stack where estate runs: created, replaced, updated or reported.
    fn administration_role(&self, changes: &mut Vec<Change>, findings: &mut Vec<Finding>) {
        let (caller, admin, in_caller) = (&self.caller, &self.admin, self.in_caller);
        let stack = bootstrap::administration_stack(self.estate);
        let evidence = !self.working.is_empty();
        let with_execution =
            |s: &crate::live::LiveStack| s.outputs.iter().any(|o| o == "ExecutionRoleArn");
        match &self.live.administration_stack {
            // The role works, made some other way: only the execution role here is missing,
            // and a stack of estate's would collide with the role that exists.
            None if evidence && in_caller => findings.push(Finding {
                kind: FindingKind::Prerequisite,
                address: execution_in(caller),
                environment: None,
                message: format!(
                    "account {caller} itself is a target of a self-managed stack set and needs {EXECUTION_ROLE} trusting {admin}; {ADMINISTRATION_ROLE} exists but not from estate, so create the execution role there"
                ),
            }),
            None if !evidence => changes.push(change(
                Address::AdministrationRole,
                Action::Create,
                format!(
                    "self-managed stack sets use {ADMINISTRATION_ROLE}{}, and nothing shows it exists in account {caller}: stack {stack} creates it",
                    if in_caller {
                        format!(" and deploy to account {caller} itself (so {EXECUTION_ROLE} there too)")
                    } else {
                        String::new()
                    }
                ),
                administration(&stack, caller, in_caller),
            )),
            None => {}
            Some(s) if s.status == "ROLLBACK_COMPLETE" => changes.push(change(
                Address::AdministrationRole,
                Action::Replace,
                format!(
                    "stack {stack} failed to create ({}{}): it is deleted and created again",
                    s.status,
                    s.status_reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default()
                ),
                administration(&stack, caller, in_caller),
            )),
            Some(s) if !s.status.ends_with("_COMPLETE") || s.status.contains("ROLLBACK") => {
                findings.push(Finding {
                    kind: FindingKind::Unhealthy,
                    address: Address::AdministrationRole,
                    environment: None,
                    message: format!(
                        "stack {stack} is {}{}",
                        s.status,
                        s.status_reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default()
                    ),
                });
            }
            Some(s) if in_caller && !with_execution(s) => changes.push(change(
                Address::AdministrationRole,
                Action::Update,
                format!(
                    "a self-managed stack set now deploys to account {caller} itself: stack {stack} adds {EXECUTION_ROLE} there"
                ),
                administration(&stack, caller, true),
            )),
            Some(_) => {}
        }
    }

    /// The execution-role bootstrap stack set, if missing, and its instances in the accounts needing it.
    fn execution_roles(&self, changes: &mut Vec<Change>) {
        let execution_set = &self.execution_set;
        if self.bootstrapped.is_none() {
            changes.push(change(
                Address::ExecutionRole { account: None },
                Action::Create,
                format!(
                    "accounts need {EXECUTION_ROLE}: the service-managed stack set {execution_set} deploys it where it is missing"
                ),
                ExecutionSetSide {
                    stack_set: execution_set.clone(),
                    administrator: self.caller.clone(),
                },
            ));
        }
        for (key, account) in &self.needing {
            let existing = account.id.as_deref().and_then(|id| self.has_instance(id));
            match existing {
                None => changes.push(change(
                    execution_in(key),
                    Action::Create,
                    format!(
                        "{} is a target of a self-managed stack set and has no {EXECUTION_ROLE} from estate",
                        phrase(account)
                    ),
                    ExecutionInstanceSide {
                        account: account.id.clone(),
                        account_name: account.name.clone(),
                        last_operation: None,
                    },
                )),
                Some(i) if i.status != "CURRENT" => changes.push(change(
                    execution_in(key),
                    Action::Update,
                    format!(
                        "its {EXECUTION_ROLE} instance is {}{}; apply deploys it again",
                        i.status,
                        i.status_reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default()
                    ),
                    ExecutionInstanceSide {
                        account: account.id.clone(),
                        account_name: account.name.clone(),
                        last_operation: Some(i.last_operation.clone()),
                    },
                )),
                Some(_) => {}
            }
        }
    }
}

fn access_change(why: &str) -> Change {
    change(
        Address::StackSetsOrganizationsAccess,
        Action::Create,
        format!("CloudFormation StackSets has no trusted access to AWS Organizations, and {why}"),
        TrustedAccessSide {
            service: "member.org.stacksets.cloudformation.amazonaws.com".into(),
        },
    )
}

fn phrase(a: &AccountRef) -> String {
    match (&a.id, &a.name) {
        (Some(id), Some(name)) => format!("account {name} ({id})"),
        (Some(id), None) => format!("account {id}"),
        (None, Some(name)) => format!("account {name} (created by this plan)"),
        (None, None) => "an account".into(),
    }
}
