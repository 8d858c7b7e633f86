//! Applying what stack sets need first, in order: StackSets' trusted access to AWS
//! Organizations, the administration-role stack where estate runs, then the service-managed
//! stack set that deploys the execution role and its instances in exactly the accounts that
//! need it (one operation for all of them).

use super::error::ApplyError;
use super::ops::Ops;
use super::progress::{Done, Event, Progress};
use super::report::StepFailure;
use crate::aws::wait::Backoff;
use crate::aws::wait::Polling;
use crate::aws::{Aws, AwsError};
use crate::bootstrap;
use crate::live::LiveState;
use crate::plan::{
    Action, Address, AdministrationSide, Change, ExecutionInstanceSide, Plan, ResourceType,
};
use crate::tags::TAG_MANAGED_BY;
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
    let run = Run {
        aws,
        cfn: aws.cloudformation(region),
        plan,
        live,
        estate,
        region,
        polling,
        progress,
    };

    if let Some(c) = changes
        .iter()
        .find(|c| c.address == Address::StackSetsOrganizationsAccess)
    {
        run.trusted_access(c).await?;
        done.push(&c.address);
    }

    if let Some(c) = changes
        .iter()
        .find(|c| c.address == Address::AdministrationRole)
    {
        run.administration_stack(c).await?;
        done.push(&c.address);
    }

    let set = bootstrap::execution_stack_set(estate);
    if let Some(c) = changes
        .iter()
        .find(|c| c.address == Address::ExecutionRole { account: None })
    {
        run.execution_stack_set(c, &set).await?;
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
        run.execution_instances(action, &set, &wanted, &mut done, &mut failures)
            .await?;
    }
    Ok(Prerequisites {
        done: done.into_vec(),
        failures,
    })
}

/// One prerequisites step's context: what each of its AWS calls is made with.
struct Run<'a> {
    aws: &'a Aws,
    cfn: aws_sdk_cloudformation::Client,
    plan: &'a Plan,
    live: &'a LiveState,
    estate: &'a str,
    region: &'a str,
    polling: Polling,
    progress: &'a dyn Progress,
}

impl Run<'_> {
    /// The tag that marks what this estate made.
    fn tags(&self) -> Tag {
        Tag::builder()
            .key(TAG_MANAGED_BY)
            .value(self.estate)
            .build()
    }

    /// StackSets' trusted access to AWS Organizations.
    async fn trusted_access(&self, c: &Change) -> Result<(), ApplyError> {
        self.progress.event(Event::Started {
            address: c.address.to_string(),
            what: "ActivateOrganizationsAccess".into(),
        });
        self.cfn
            .activate_organizations_access()
            .send()
            .await
            .map_err(|e| AwsError::call("CloudFormation.ActivateOrganizationsAccess", e))?;
        Ok(())
    }

    /// The administration-role stack where estate runs: created, updated, or deleted and
    /// created again after a failed create.
    async fn administration_stack(&self, c: &Change) -> Result<(), ApplyError> {
        let (cfn, progress) = (&self.cfn, self.progress);
        let stack = bootstrap::administration_stack(self.estate);
        let with_execution = c.after_as::<AdministrationSide>()?.execution_role;
        let body = bootstrap::administration_template(with_execution).to_string();
        // A request AWS received but whose answer was lost is not made twice (same plan,
        // same step, same token); another plan is another intent.
        let token = |step: &str| {
            super::options::operation_id(&self.plan.fingerprint, &format!("{stack}/{step}"))
        };
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
            wait_for_stack(self.aws, self.region, &stack, self.polling, true).await?;
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
                .tags(self.tags())
                .send()
                .await
                .map_err(|e| AwsError::call("CloudFormation.UpdateStack", e))?;
        } else {
            cfn.create_stack()
                .stack_name(&stack)
                .client_request_token(token("create"))
                .template_body(body)
                .capabilities(Capability::CapabilityNamedIam)
                .tags(self.tags())
                .send()
                .await
                .map_err(|e| AwsError::call("CloudFormation.CreateStack", e))?;
        }
        wait_for_stack(self.aws, self.region, &stack, self.polling, false).await?;
        Ok(())
    }

    /// The service-managed stack set `set` that deploys the execution role; one an earlier
    /// apply created will do.
    async fn execution_stack_set(&self, c: &Change, set: &str) -> Result<(), ApplyError> {
        self.progress.event(Event::Started {
            address: c.address.to_string(),
            what: format!("CreateStackSet {set} (service-managed)"),
        });
        let created = self
            .cfn
            .create_stack_set()
            .stack_set_name(set)
            .description("estate: the execution role self-managed stack sets deploy with")
            .template_body(bootstrap::execution_template(self.live.caller()).to_string())
            .permission_model(PermissionModels::ServiceManaged)
            // estate deploys it to exactly the accounts that need it, never by itself.
            .auto_deployment(AutoDeployment::builder().enabled(false).build())
            .capabilities(Capability::CapabilityNamedIam)
            .tags(self.tags())
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
        Ok(())
    }

    /// The execution role's instances of one action (create or update), in one operation for
    /// all `wanted` accounts; accounts that fail are recorded in `failures`, the others done.
    async fn execution_instances(
        &self,
        action: Action,
        set: &str,
        wanted: &[&&Change],
        done: &mut Done<'_>,
        failures: &mut Vec<StepFailure>,
    ) -> Result<(), ApplyError> {
        let progress = self.progress;
        let accounts = instance_accounts(wanted)?;
        let verb = if action == Action::Create {
            "CreateStackInstances"
        } else {
            "UpdateStackInstances"
        };
        let ops = Ops {
            cfn: &self.cfn,
            name: set,
            fingerprint: &self.plan.fingerprint,
            polling: self.polling,
            progress,
            preferences: Some(
                aws_sdk_cloudformation::types::StackSetOperationPreferences::builder()
                    // Roles in every account at once; one account failing stops none other.
                    .max_concurrent_percentage(100)
                    .failure_tolerance_percentage(100)
                    .build(),
            ),
        };
        let since = since_of(wanted);
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
            .organizational_unit_ids(&self.live.root_id)
            .set_accounts(Some(accounts.clone()))
            .account_filter_type(AccountFilterType::Intersection)
            .build();
        let mut retry = Backoff::new(self.polling);
        loop {
            match send_instances(&ops, action, &targets, self.region, &op_id).await {
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
                for (c, account) in wanted.iter().zip(&accounts_of(wanted)) {
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
        Ok(())
    }
}

/// CreateStackInstances or UpdateStackInstances of the execution role: one request, but for
/// its verb.
async fn send_instances(
    ops: &Ops<'_>,
    action: Action,
    targets: &DeploymentTargets,
    region: &str,
    op_id: &str,
) -> Result<(), AwsError> {
    // The two builders are different types that take the same fields.
    macro_rules! send {
        ($request:ident, $call:literal) => {
            ops.cfn
                .$request()
                .stack_set_name(ops.name)
                .deployment_targets(targets.clone())
                .regions(region)
                .set_operation_preferences(ops.preferences.clone())
                .operation_id(op_id)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| AwsError::call($call, e))
        };
    }
    if action == Action::Create {
        send!(
            create_stack_instances,
            "CloudFormation.CreateStackInstances"
        )
    } else {
        send!(
            update_stack_instances,
            "CloudFormation.UpdateStackInstances"
        )
    }
}

/// The accounts of the execution-role changes, sorted; refused while one is not known yet.
fn instance_accounts(wanted: &[&&Change]) -> Result<Vec<String>, ApplyError> {
    let mut accounts = Vec::new();
    for c in wanted {
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
    Ok(accounts)
}

/// The last operations of the instances a retry follows, sorted and once each.
fn since_of<'c>(wanted: &[&&'c Change]) -> Vec<&'c str> {
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
    since
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
    let what = format!("stack {stack}");
    loop {
        let live = wait
            .call(&what, || crate::live::read::read_stack(aws, region, stack))
            .await?;
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
        wait.sleep(&what).await?;
    }
}
