//! The CloudFormation calls for one stack set: create, update, delete, instance operations,
//! each with a deterministic operation id, waited for, with every failed instance and its reason.

use super::batching::Batch;
use super::options::operation_id;
use super::progress::{Event, Progress};
use super::report::{InstanceFailure, StepFailure};
use super::templates;
use crate::aws::AwsError;
use crate::aws::wait::Backoff;
use crate::aws::wait::Polling;
use crate::plan::desired::DesiredStackSet;
use std::collections::BTreeMap;

/// The calls for one stack set.
pub(crate) struct Ops<'a> {
    pub(crate) cfn: &'a aws_sdk_cloudformation::Client,
    pub(crate) name: &'a str,
    pub(crate) fingerprint: &'a str,
    pub(crate) polling: Polling,
    pub(crate) progress: &'a dyn Progress,
    /// The manifest's operation preferences, for instance operations too (AWS's default is
    /// one account at a time, stopping at the first failure).
    pub(crate) preferences: Option<aws_sdk_cloudformation::types::StackSetOperationPreferences>,
}

fn parameters(values: &BTreeMap<String, String>) -> Vec<aws_sdk_cloudformation::types::Parameter> {
    values
        .iter()
        .map(|(k, v)| {
            aws_sdk_cloudformation::types::Parameter::builder()
                .parameter_key(k)
                .parameter_value(v)
                .build()
        })
        .collect()
}

pub(crate) fn preferences(
    op: &crate::manifest::model::OperationPreferences,
) -> aws_sdk_cloudformation::types::StackSetOperationPreferences {
    use aws_sdk_cloudformation::types::{RegionConcurrencyType, StackSetOperationPreferences};
    let to_i32 = |v: Option<u32>| v.map(|n| n as i32);
    StackSetOperationPreferences::builder()
        .set_max_concurrent_percentage(to_i32(op.max_concurrent_percentage))
        .set_max_concurrent_count(to_i32(op.max_concurrent_count))
        .set_failure_tolerance_percentage(to_i32(op.failure_tolerance_percentage))
        .set_failure_tolerance_count(to_i32(op.failure_tolerance_count))
        .set_region_concurrency_type(op.region_concurrency.map(|r| match r {
            crate::manifest::model::RegionConcurrency::Sequential => {
                RegionConcurrencyType::Sequential
            }
            crate::manifest::model::RegionConcurrency::Parallel => RegionConcurrencyType::Parallel,
        }))
        .set_region_order(op.region_order.clone())
        .set_concurrency_mode(
            op.concurrency_mode
                .map(|m| aws_sdk_cloudformation::types::ConcurrencyMode::from(m.as_str())),
        )
        .build()
}

fn capabilities(d: &DesiredStackSet) -> Vec<aws_sdk_cloudformation::types::Capability> {
    d.capabilities
        .iter()
        .map(|c| aws_sdk_cloudformation::types::Capability::from(c.as_str()))
        .collect()
}

fn stack_set_tags(d: &DesiredStackSet) -> Vec<aws_sdk_cloudformation::types::Tag> {
    d.tags
        .iter()
        .map(|(k, v)| {
            aws_sdk_cloudformation::types::Tag::builder()
                .key(k)
                .value(v)
                .build()
        })
        .collect()
}

fn auto_deployment(d: &DesiredStackSet) -> Option<aws_sdk_cloudformation::types::AutoDeployment> {
    d.auto_deployment.map(|a| {
        aws_sdk_cloudformation::types::AutoDeployment::builder()
            .enabled(a.enabled)
            .retain_stacks_on_account_removal(a.retain_stacks_on_account_removal)
            .build()
    })
}

impl Ops<'_> {
    pub(crate) fn op_id(&self, step: &str) -> String {
        operation_id(self.fingerprint, &format!("{}/{step}", self.name))
    }

    pub(crate) async fn create_stack_set(
        &self,
        d: &DesiredStackSet,
        template: &templates::Location,
    ) -> Result<(), AwsError> {
        use aws_sdk_cloudformation::types::PermissionModels;
        let mut req = self
            .cfn
            .create_stack_set()
            .stack_set_name(&d.name)
            .set_description(d.description.clone())
            .set_parameters(Some(parameters(&d.parameters)))
            .set_capabilities(Some(capabilities(d)))
            .set_tags(Some(stack_set_tags(d)))
            .permission_model(PermissionModels::from(d.permission_model.as_str()))
            .set_administration_role_arn(d.administration_role_arn.clone())
            .set_execution_role_name(d.execution_role_name.clone())
            .client_request_token(self.op_id("create"));
        req = match template {
            templates::Location::Body(b) => req.template_body(b),
            templates::Location::Url(u) => req.template_url(u),
        };
        req = req.set_auto_deployment(auto_deployment(d));
        // A lost answer is asked again: the same ClientRequestToken, and a stack set this
        // request made is found by name and tag below.
        let mut retry = Backoff::new(self.polling);
        let what = format!("creating stack set {}", d.name);
        let sent = retry
            .call(&what, || {
                let req = req.clone();
                async move {
                    req.send()
                        .await
                        .map_err(|e| AwsError::call("CloudFormation.CreateStackSet", e))
                }
            })
            .await;
        match sent {
            Ok(_) => Ok(()),
            Err(e) => {
                if e.code() != Some("NameAlreadyExistsException") {
                    return Err(e);
                }
                // Ours, from an earlier run cut off after creating it (or from this one, its
                // answer lost); or someone else's, made since the plan: then a conflict,
                // never taken over.
                let existing = retry
                    .call(&what, || async {
                        self.cfn
                            .describe_stack_set()
                            .stack_set_name(&d.name)
                            .send()
                            .await
                            .map_err(|e| AwsError::call("CloudFormation.DescribeStackSet", e))
                    })
                    .await?;
                let owner = existing
                    .stack_set
                    .and_then(|s| s.tags)
                    .unwrap_or_default()
                    .into_iter()
                    .find(|t| t.key.as_deref() == Some(crate::tags::TAG_MANAGED_BY))
                    .and_then(|t| t.value);
                if owner.as_ref() == d.tags.get(crate::tags::TAG_MANAGED_BY) {
                    Ok(())
                } else {
                    Err(AwsError::Call {
                        transient: false,
                        operation: "CloudFormation.CreateStackSet".into(),
                        code: Some("NameAlreadyExistsException".into()),
                        message: format!(
                            "conflict: stack set {} was created outside this estate since the plan ({}); estate will not take it over",
                            d.name,
                            owner.map_or("no estate tag".to_string(), |o| format!(
                                "managed by `{o}`"
                            ))
                        ),
                    })
                }
            }
        }
    }

    /// UpdateStackSet to `d`; with `only`, just that instance is updated, with the previous
    /// template and parameters so AWS leaves the others as they are, for a change no stack
    /// needs (the overrides tag).
    pub(crate) async fn update_stack_set(
        &self,
        d: &DesiredStackSet,
        template: &templates::Location,
        only: Option<(&str, &str)>,
        step: &str,
    ) -> Result<String, AwsError> {
        let op_id = self.op_id(step);
        let send = || {
            let mut req = self
                .cfn
                .update_stack_set()
                .stack_set_name(&d.name)
                .set_description(d.description.clone())
                .set_capabilities(Some(capabilities(d)))
                .set_tags(Some(stack_set_tags(d)))
                .set_administration_role_arn(d.administration_role_arn.clone())
                .set_execution_role_name(d.execution_role_name.clone())
                .operation_preferences(preferences(&d.operation))
                .operation_id(&op_id);
            req = match (only, template) {
                // Naming one instance: AWS marks every other instance OUTDATED when the
                // template or the parameters are given (UpdateStackSet, Accounts), so neither
                // is: the previous template, and parameters left as they are. Service-managed
                // stack sets take no account alone: their units, narrowed to it.
                (Some((account, region)), _) if d.permission_model == "SERVICE_MANAGED" => req
                    .use_previous_template(true)
                    .deployment_targets(
                        aws_sdk_cloudformation::types::DeploymentTargets::builder()
                            .set_organizational_unit_ids(Some(d.unit_ids.clone()))
                            .accounts(account)
                            .account_filter_type(
                                aws_sdk_cloudformation::types::AccountFilterType::Intersection,
                            )
                            .build(),
                    )
                    .regions(region),
                (Some((account, region)), _) => req
                    .use_previous_template(true)
                    .accounts(account)
                    .regions(region),
                (None, templates::Location::Body(b)) => req
                    .template_body(b)
                    .set_parameters(Some(parameters(&d.parameters))),
                (None, templates::Location::Url(u)) => req
                    .template_url(u)
                    .set_parameters(Some(parameters(&d.parameters))),
            };
            req = req.set_auto_deployment(auto_deployment(d));
            let sent = req.send();
            async move {
                sent.await
                    .map_err(|e| AwsError::call("CloudFormation.UpdateStackSet", e))
            }
        };
        let mut retry = Backoff::new(self.polling);
        let what = format!("updating stack set {}", d.name);
        loop {
            // A lost answer is asked again: the same OperationId finds the operation started.
            match retry.call(&what, send).await {
                Ok(out) => return Ok(out.operation_id.unwrap_or(op_id)),
                Err(e) => match e.code() {
                    Some("OperationIdAlreadyExistsException") => return Ok(op_id),
                    Some("OperationInProgressException") => {
                        self.wait_for_running(&mut retry).await?
                    }
                    _ => return Err(e),
                },
            }
        }
    }

    pub(crate) async fn delete_stack_set(&self) -> Result<(), AwsError> {
        let mut retry = Backoff::new(self.polling);
        let what = format!("deleting stack set {}", self.name);
        loop {
            let sent = retry
                .call(&what, || async {
                    self.cfn
                        .delete_stack_set()
                        .stack_set_name(self.name)
                        .send()
                        .await
                        .map_err(|e| AwsError::call("CloudFormation.DeleteStackSet", e))
                })
                .await;
            match sent {
                Ok(_) => return Ok(()),
                Err(e) => match e.code() {
                    Some("StackSetNotFoundException") => return Ok(()),
                    Some("OperationInProgressException") => {
                        self.wait_for_running(&mut retry).await?
                    }
                    _ => return Err(e),
                },
            }
        }
    }

    /// Create, update or delete instances in one call; retries behind a running operation.
    pub(crate) async fn instances(&self, action: &str, b: &Batch) -> Result<String, AwsError> {
        let step = format!(
            "{action}{}/{}{}/{}/{}",
            if b.retain { "-retain" } else { "" },
            if b.units.is_empty() {
                String::new()
            } else {
                format!("{}:", b.units.join(","))
            },
            if b.since.is_empty() {
                b.accounts.join(",")
            } else {
                format!("{}@{}", b.accounts.join(","), b.since.join(","))
            },
            b.regions.join(","),
            b.overrides
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        let op_id = self.op_id(&step);
        let mut retry = Backoff::new(self.polling);
        let what = format!("{action} on {}", self.name);
        loop {
            // A lost answer is asked again: the same OperationId finds the operation started.
            let result = retry
                .call(&what, || self.start_instances(action, b, &op_id))
                .await;
            match result {
                Ok(id) => return Ok(id.unwrap_or(op_id)),
                Err(e) => match e.code() {
                    // This very step was started by an earlier, interrupted apply.
                    Some("OperationIdAlreadyExistsException") => return Ok(op_id),
                    Some("OperationInProgressException") => {
                        self.wait_for_running(&mut retry).await?
                    }
                    _ => return Err(e),
                },
            }
        }
    }

    /// One CreateStackInstances, UpdateStackInstances or DeleteStackInstances call.
    async fn start_instances(
        &self,
        action: &str,
        b: &Batch,
        op_id: &str,
    ) -> Result<Option<String>, AwsError> {
        // Service-managed: the units, narrowed to exactly these accounts.
        let (accounts, targets) = if b.units.is_empty() {
            (Some(b.accounts.clone()), None)
        } else {
            (
                None,
                Some(
                    aws_sdk_cloudformation::types::DeploymentTargets::builder()
                        .set_organizational_unit_ids(Some(b.units.clone()))
                        .set_accounts(Some(b.accounts.clone()))
                        .account_filter_type(
                            aws_sdk_cloudformation::types::AccountFilterType::Intersection,
                        )
                        .build(),
                ),
            )
        };
        match action {
            "CreateStackInstances" => self
                .cfn
                .create_stack_instances()
                .stack_set_name(self.name)
                .set_accounts(accounts)
                .set_deployment_targets(targets)
                .set_regions(Some(b.regions.clone()))
                .set_parameter_overrides(
                    (!b.overrides.is_empty()).then(|| parameters(&b.overrides)),
                )
                .set_operation_preferences(self.preferences.clone())
                .operation_id(op_id)
                .send()
                .await
                .map(|o| o.operation_id)
                .map_err(|e| AwsError::call("CloudFormation.CreateStackInstances", e)),
            "UpdateStackInstances" => self
                .cfn
                .update_stack_instances()
                .stack_set_name(self.name)
                .set_accounts(accounts)
                .set_deployment_targets(targets)
                .set_regions(Some(b.regions.clone()))
                .set_parameter_overrides(Some(parameters(&b.overrides)))
                .set_operation_preferences(self.preferences.clone())
                .operation_id(op_id)
                .send()
                .await
                .map(|o| o.operation_id)
                .map_err(|e| AwsError::call("CloudFormation.UpdateStackInstances", e)),
            _ => self
                .cfn
                .delete_stack_instances()
                .stack_set_name(self.name)
                .set_accounts(accounts)
                .set_deployment_targets(targets)
                .set_regions(Some(b.regions.clone()))
                .retain_stacks(b.retain)
                .set_operation_preferences(self.preferences.clone())
                .operation_id(op_id)
                .send()
                .await
                .map(|o| o.operation_id)
                .map_err(|e| AwsError::call("CloudFormation.DeleteStackInstances", e)),
        }
    }

    /// Waits for whatever operation is running on the stack set (another apply, the console).
    /// `retry` spans all attempts of one call: when AWS refuses with OperationInProgress but
    /// lists nothing running (the list is eventually consistent and paged), it backs off
    /// before the next attempt and gives up at the timeout, instead of spinning.
    pub(crate) async fn wait_for_running(&self, retry: &mut Backoff) -> Result<(), AwsError> {
        use aws_sdk_cloudformation::types::StackSetOperationStatus as S;
        let timed_out = |e: crate::aws::wait::Timeout| AwsError::Call {
            transient: false,
            operation: "CloudFormation.ListStackSetOperations".into(),
            code: None,
            message: e.to_string(),
        };
        let mut wait = Backoff::new(self.polling);
        let mut waited = false;
        let what = format!("the running operation on {}", self.name);
        loop {
            let out = wait
                .call(&what, || async {
                    self.cfn
                        .list_stack_set_operations()
                        .stack_set_name(self.name)
                        .send()
                        .await
                        .map_err(|e| AwsError::call("CloudFormation.ListStackSetOperations", e))
                })
                .await?;
            let running = out
                .summaries
                .unwrap_or_default()
                .into_iter()
                .any(|s| matches!(s.status, Some(S::Running | S::Queued | S::Stopping)));
            if !running {
                if !waited {
                    retry
                        .sleep(&format!("the operation in progress on {}", self.name))
                        .await
                        .map_err(timed_out)?;
                }
                return Ok(());
            }
            // One progress line for the wait, not one per poll.
            if !waited {
                self.progress.event(Event::Operation {
                    stack_set: self.name.to_string(),
                    operation_id: "(another operation)".into(),
                    status: "RUNNING".into(),
                });
                waited = true;
            }
            wait.sleep(&what).await.map_err(timed_out)?;
        }
    }

    /// Polls the operation until it ends; a FAILED or STOPPED one is reported with every
    /// failed account and region and its StatusReason.
    pub(crate) async fn wait(&self, op_id: &str, step: &str) -> Result<(), StepFailure> {
        use aws_sdk_cloudformation::types::StackSetOperationStatus as S;
        let fail = |message: String, instances| StepFailure {
            stack_set: self.name.to_string(),
            step: step.to_string(),
            message,
            instances,
        };
        // AWS did not answer, again and again: whether the operation succeeded is unknown, so
        // it is said so, never reported as FAILED.
        let unknown = |e: AwsError| {
            let message = if e.is_transient() {
                format!(
                    "operation {op_id}: outcome unknown, AWS did not answer ({e}); it may \
                     still succeed: run `estate plan` to see what it did"
                )
            } else {
                e.to_string()
            };
            fail(message, Vec::new())
        };
        let mut wait = Backoff::new(self.polling);
        let what = format!("operation {op_id} on {}", self.name);
        let mut last = None;
        loop {
            let out = wait
                .call(&what, || async {
                    self.cfn
                        .describe_stack_set_operation()
                        .stack_set_name(self.name)
                        .operation_id(op_id)
                        .send()
                        .await
                        .map_err(|e| AwsError::call("CloudFormation.DescribeStackSetOperation", e))
                })
                .await
                .map_err(unknown)?;
            let Some(op) = out.stack_set_operation else {
                return Err(fail(format!("operation {op_id}: not found"), Vec::new()));
            };
            let status = op.status.clone();
            if status != last {
                self.progress.event(Event::Operation {
                    stack_set: self.name.to_string(),
                    operation_id: op_id.to_string(),
                    status: status
                        .as_ref()
                        .map_or("UNKNOWN", |s| s.as_str())
                        .to_string(),
                });
                last = status.clone();
            }
            match status {
                // Within a failure tolerance AWS reports success with instances failed: they
                // are failures of this apply all the same (and OUTDATED for the next plan).
                Some(S::Succeeded) if self.tolerates_failures() => {
                    // Unread results are not "no failures": the apply cannot vouch for them.
                    let instances = wait
                        .call(&what, || self.failed_instances(op_id))
                        .await
                        .map_err(unknown)?;
                    if instances.is_empty() {
                        return Ok(());
                    }
                    return Err(fail(
                        format!(
                            "operation {op_id} SUCCEEDED within its failure tolerance, but {} instance{} failed",
                            instances.len(),
                            if instances.len() == 1 { "" } else { "s" }
                        ),
                        instances,
                    ));
                }
                Some(S::Succeeded) => return Ok(()),
                Some(S::Failed | S::Stopped) => {
                    let instances = wait
                        .call(&what, || self.failed_instances(op_id))
                        .await
                        .unwrap_or_default();
                    return Err(fail(
                        format!(
                            "operation {op_id} {}{}",
                            status.as_ref().map_or("FAILED", |s| s.as_str()),
                            op.status_reason
                                .map(|r| format!(": {r}"))
                                .unwrap_or_default()
                        ),
                        instances,
                    ));
                }
                _ => wait
                    .sleep(&what)
                    .await
                    .map_err(|e| fail(e.to_string(), Vec::new()))?,
            }
        }
    }

    /// Whether the operation preferences let an operation succeed with failed instances.
    pub(crate) fn tolerates_failures(&self) -> bool {
        self.preferences.as_ref().is_some_and(|p| {
            p.failure_tolerance_count.is_some_and(|n| n > 0)
                || p.failure_tolerance_percentage.is_some_and(|n| n > 0)
        })
    }

    pub(crate) async fn failed_instances(
        &self,
        op_id: &str,
    ) -> Result<Vec<InstanceFailure>, AwsError> {
        use aws_sdk_cloudformation::types::StackSetOperationResultStatus as R;
        let mut out = Vec::new();
        let mut pages = self
            .cfn
            .list_stack_set_operation_results()
            .stack_set_name(self.name)
            .operation_id(op_id)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|e| AwsError::call("CloudFormation.ListStackSetOperationResults", e))?;
            for r in page.summaries.unwrap_or_default() {
                // Instances AWS cancelled after a failure are not failures themselves.
                if !matches!(r.status, Some(R::Failed)) {
                    continue;
                }
                out.push(InstanceFailure {
                    account: r.account.unwrap_or_default(),
                    region: r.region.unwrap_or_default(),
                    status: r
                        .status
                        .map_or("UNKNOWN".into(), |s| s.as_str().to_string()),
                    reason: r.status_reason.unwrap_or_else(|| "no reason given".into()),
                });
            }
        }
        Ok(out)
    }
}
