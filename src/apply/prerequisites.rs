//! Applying what stack sets need first, in order: StackSets' trusted access to AWS
//! Organizations, the administration-role stack where estate runs, then the service-managed
//! stack set that deploys the execution role and its instances in exactly the accounts that
//! need it (one operation for all of them).

use super::{ApplyError, Backoff, Done, Event, Ops, Polling, Progress, StepFailure};
use crate::aws::{Aws, AwsError};
use crate::bootstrap;
use crate::live::{LiveState, TAG_MANAGED_BY};
use crate::plan::{
    Action, Address, AdministrationSide, Change, ExecutionInstanceSide, Plan, ResourceType,
};
use aws_sdk_cloudformation::types::{
    AccountFilterType, AutoDeployment, Capability, DeploymentTargets, PermissionModels, Tag,
};

/// How the stack-set roles were provided, for errors that should say how to opt out.
const OPT_OUT: &str =
    "if the organization already has these roles, set `stackSetRoles: existing` on the Estate";

/// What the prerequisites step did: the changes done, and the accounts where the execution
/// role could not be deployed (the rest of the apply goes on).
#[derive(Debug, Default)]
pub struct Prerequisites {
    pub done: Vec<Address>,
    pub failures: Vec<StepFailure>,
}

pub async fn prerequisites(
    aws: &Aws,
    plan: &Plan,
    live: &LiveState,
    estate: &str,
    region: &str,
    polling: Polling,
    progress: &dyn Progress,
) -> Result<Prerequisites, ApplyError> {
    let mut done = Done::new(progress);
    let mut failures = Vec::new();
    let changes: Vec<&Change> = plan
        .changes
        .iter()
        .filter(|c| c.resource_type == ResourceType::Prerequisite)
        .collect();
    if changes.is_empty() {
        return Ok(Prerequisites::default());
    }
    let cfn = aws.cloudformation(region);
    let tags = || Tag::builder().key(TAG_MANAGED_BY).value(estate).build();

    if let Some(c) = changes
        .iter()
        .find(|c| c.address == Address::StackSetsOrganizationsAccess)
    {
        progress.event(Event::Started {
            address: c.address.to_string(),
            what: "ActivateOrganizationsAccess".into(),
        });
        cfn.activate_organizations_access()
            .send()
            .await
            .map_err(|e| AwsError::call("CloudFormation.ActivateOrganizationsAccess", e))?;
        done.push(&c.address);
    }

    if let Some(c) = changes
        .iter()
        .find(|c| c.address == Address::AdministrationRole)
    {
        let stack = bootstrap::administration_stack(estate);
        let with_execution = c.after_as::<AdministrationSide>()?.execution_role;
        let body = bootstrap::administration_template(with_execution).to_string();
        // A request AWS received but whose answer was lost is not made twice (same plan,
        // same step, same token); another plan is another intent.
        let token = |step: &str| super::operation_id(&plan.fingerprint, &format!("{stack}/{step}"));
        if c.action == Action::Replace {
            progress.event(Event::Started {
                address: c.address.to_string(),
                what: format!("DeleteStack {stack} (failed before)"),
            });
            cfn.delete_stack()
                .stack_name(&stack)
                .client_request_token(token("delete"))
                .send()
                .await
                .map_err(|e| AwsError::call("CloudFormation.DeleteStack", e))?;
            wait_for_stack(aws, region, &stack, polling, true).await?;
        }
        progress.event(Event::Started {
            address: c.address.to_string(),
            what: format!(
                "{} {stack}",
                if c.action == Action::Update {
                    "UpdateStack"
                } else {
                    "CreateStack"
                }
            ),
        });
        if c.action == Action::Update {
            cfn.update_stack()
                .stack_name(&stack)
                .client_request_token(token("update"))
                .template_body(body)
                .capabilities(Capability::CapabilityNamedIam)
                .tags(tags())
                .send()
                .await
                .map_err(|e| AwsError::call("CloudFormation.UpdateStack", e))?;
        } else {
            cfn.create_stack()
                .stack_name(&stack)
                .client_request_token(token("create"))
                .template_body(body)
                .capabilities(Capability::CapabilityNamedIam)
                .tags(tags())
                .send()
                .await
                .map_err(|e| AwsError::call("CloudFormation.CreateStack", e))?;
        }
        wait_for_stack(aws, region, &stack, polling, false).await?;
        done.push(&c.address);
    }

    let set = bootstrap::execution_stack_set(estate);
    if let Some(c) = changes
        .iter()
        .find(|c| c.address == Address::ExecutionRole { account: None })
    {
        progress.event(Event::Started {
            address: c.address.to_string(),
            what: format!("CreateStackSet {set} (service-managed)"),
        });
        let created = cfn
            .create_stack_set()
            .stack_set_name(&set)
            .description("estate: the execution role self-managed stack sets deploy with")
            .template_body(bootstrap::execution_template(live.caller()).to_string())
            .permission_model(PermissionModels::ServiceManaged)
            // estate deploys it to exactly the accounts that need it, never by itself.
            .auto_deployment(AutoDeployment::builder().enabled(false).build())
            .capabilities(Capability::CapabilityNamedIam)
            .tags(tags())
            .send()
            .await;
        match created {
            Ok(_) => {}
            // Created by an earlier, interrupted apply.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_name_already_exists_exception()) => {}
            Err(e) => return Err(AwsError::call("CloudFormation.CreateStackSet", e).into()),
        }
        done.push(&c.address);
    }

    // Instances: one operation for all accounts created, one for all retried.
    for action in [Action::Create, Action::Update] {
        let wanted: Vec<&&Change> = changes
            .iter()
            .filter(|c| {
                matches!(c.address, Address::ExecutionRole { account: Some(_) })
                    && c.action == action
            })
            .collect();
        if wanted.is_empty() {
            continue;
        }
        let mut accounts = Vec::new();
        for c in &wanted {
            let id = c
                .after_as::<ExecutionInstanceSide>()?
                .account
                .clone()
                .ok_or_else(|| {
                    ApplyError::Inconsistent(format!(
                        "{}: the account is not known yet; run apply again once it exists",
                        c.address
                    ))
                })?;
            accounts.push(id);
        }
        accounts.sort();
        let verb = if action == Action::Create {
            "CreateStackInstances"
        } else {
            "UpdateStackInstances"
        };
        let ops = Ops {
            cfn: &cfn,
            name: &set,
            fingerprint: &plan.fingerprint,
            polling,
            progress,
            preferences: Some(
                aws_sdk_cloudformation::types::StackSetOperationPreferences::builder()
                    // Roles in every account at once; one account failing stops none other.
                    .max_concurrent_percentage(100)
                    .failure_tolerance_percentage(100)
                    .build(),
            ),
        };
        // A retry follows the instances' last operations: its id must differ from theirs.
        let mut since: Vec<&str> = wanted
            .iter()
            .filter_map(|c| {
                c.after_as::<ExecutionInstanceSide>()
                    .ok()?
                    .last_operation
                    .as_ref()?
                    .as_deref()
            })
            .collect();
        since.sort();
        since.dedup();
        let step = format!("{verb}/{}@{}", accounts.join(","), since.join(","));
        let op_id = ops.op_id(&step);
        progress.event(Event::Started {
            address: Address::ExecutionRole { account: None }.to_string(),
            what: format!(
                "{verb}: {} account{} (the execution role)",
                accounts.len(),
                if accounts.len() == 1 { "" } else { "s" }
            ),
        });
        // The root, narrowed to these accounts: service-managed stack sets take units only.
        let targets = DeploymentTargets::builder()
            .organizational_unit_ids(&live.root_id)
            .set_accounts(Some(accounts.clone()))
            .account_filter_type(AccountFilterType::Intersection)
            .build();
        let mut retry = Backoff::new(polling);
        loop {
            let sent = if action == Action::Create {
                cfn.create_stack_instances()
                    .stack_set_name(&set)
                    .deployment_targets(targets.clone())
                    .regions(region)
                    .set_operation_preferences(ops.preferences.clone())
                    .operation_id(&op_id)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| AwsError::call("CloudFormation.CreateStackInstances", e))
            } else {
                cfn.update_stack_instances()
                    .stack_set_name(&set)
                    .deployment_targets(targets.clone())
                    .regions(region)
                    .set_operation_preferences(ops.preferences.clone())
                    .operation_id(&op_id)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| AwsError::call("CloudFormation.UpdateStackInstances", e))
            };
            match sent {
                Ok(()) => break,
                Err(e) => match e.code() {
                    Some("OperationIdAlreadyExistsException") => break,
                    Some("OperationInProgressException") => {
                        ops.wait_for_running(&mut retry).await?
                    }
                    _ => return Err(e.into()),
                },
            }
        }
        match ops.wait(&op_id, verb).await {
            Ok(()) => {
                for c in wanted {
                    done.push(&c.address);
                }
            }
            // Accounts that failed (a role made by hand already there, say) are reported, and
            // the others go on: a stack set whose instances need the role fails there itself.
            Err(mut f) if !f.instances.is_empty() => {
                let failed: Vec<&str> = f.instances.iter().map(|i| i.account.as_str()).collect();
                for (c, account) in wanted.iter().zip(&accounts_of(&wanted)) {
                    if !failed.contains(&account.as_deref().unwrap_or_default()) {
                        done.push(&c.address);
                    }
                }
                f.message = format!("{} ({OPT_OUT})", f.message);
                progress.event(Event::Failed {
                    address: Address::ExecutionRole { account: None }.to_string(),
                    message: f.message.clone(),
                });
                failures.push(f);
            }
            Err(f) => {
                return Err(ApplyError::Prerequisite {
                    what: format!("the execution role ({set})"),
                    reason: f.message,
                    hint: OPT_OUT.into(),
                });
            }
        }
    }
    Ok(Prerequisites {
        done: done.into_vec(),
        failures,
    })
}

/// The account of each execution-role change, in order.
fn accounts_of(changes: &[&&Change]) -> Vec<Option<String>> {
    changes
        .iter()
        .map(|c| {
            c.after_as::<ExecutionInstanceSide>()
                .ok()
                .and_then(|a| a.account.clone())
        })
        .collect()
}

/// DescribeStacks until the stack is complete (or gone, when deleting); a failed or rolled
/// back stack is reported with AWS's reason.
async fn wait_for_stack(
    aws: &Aws,
    region: &str,
    stack: &str,
    polling: Polling,
    deleting: bool,
) -> Result<(), ApplyError> {
    let mut wait = Backoff::new(polling);
    loop {
        let live = crate::live::read::read_stack(aws, region, stack).await?;
        match live {
            None if deleting => return Ok(()),
            None => {
                return Err(ApplyError::Inconsistent(format!(
                    "stack {stack} vanished while being created"
                )));
            }
            Some(s) if s.status.ends_with("_IN_PROGRESS") => {}
            Some(s)
                if !deleting
                    && s.status.ends_with("_COMPLETE")
                    && !s.status.contains("ROLLBACK") =>
            {
                return Ok(());
            }
            Some(s) => {
                return Err(ApplyError::Prerequisite {
                    what: format!("stack {stack}"),
                    reason: format!(
                        "{}{}",
                        s.status,
                        s.status_reason
                            .map(|r| format!(": {r}"))
                            .unwrap_or_default()
                    ),
                    hint: OPT_OUT.into(),
                });
            }
        }
        wait.sleep(&format!("stack {stack}")).await?;
    }
}
