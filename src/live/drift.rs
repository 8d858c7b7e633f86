//! Resource drift: DetectStackSetDrift on the managed stack sets, waited for, then which
//! resources of each drifted instance changed (ListStackInstanceResourceDrifts). It starts an
//! AWS operation but changes no resource; `estate drift` runs it, `plan` only reads its result.

use super::LiveState;
use crate::aws::wait::{Backoff, Polling, Timeout};
use crate::aws::{Aws, AwsError};
use aws_sdk_cloudformation::types::{
    RegionConcurrencyType, StackSetOperationPreferences, StackSetOperationStatus,
};
use futures::StreamExt;
use std::collections::BTreeMap;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum DriftError {
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error("drift detection of stack set {stack_set} ended {status}{reason}")]
    Failed {
        stack_set: String,
        status: String,
        reason: String,
    },
    #[error(transparent)]
    Wait(#[from] Timeout),
}

/// Stack sets checked at once: each is one AWS operation; AWS runs one per stack set.
const CONCURRENCY: usize = 8;

/// What a round of detections came to.
#[derive(Debug, Default)]
pub struct Detections {
    /// The detection operation of each stack set it succeeded for.
    pub operations: BTreeMap<String, String>,
    /// Stack sets whose detection did not succeed, and why: reported, never fatal to the rest.
    pub failed: BTreeMap<String, String>,
}

/// Runs drift detection on each stack set and waits for it. A detection that fails (an
/// instance that cannot be checked, a stopped operation) is reported for its stack set; an
/// error reaching AWS at all fails the whole round.
pub async fn detect(
    aws: &Aws,
    region: &str,
    names: &[String],
    polling: Polling,
) -> Result<Detections, DriftError> {
    let results: Vec<(String, Result<String, DriftError>)> =
        futures::stream::iter(names.iter().cloned())
            .map(|name| async move {
                let op = detect_one(aws, region, &name, polling).await;
                (name, op)
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
    let mut out = Detections::default();
    for (name, result) in results {
        match result {
            Ok(op) => {
                out.operations.insert(name, op);
            }
            Err(e @ DriftError::Failed { .. }) => {
                out.failed.insert(name, e.to_string());
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

async fn detect_one(
    aws: &Aws,
    region: &str,
    name: &str,
    polling: Polling,
) -> Result<String, DriftError> {
    let cfn = aws.cloudformation(region);
    let mut wait = Backoff::new(polling);
    // Another operation (an apply, another detection) may be running: AWS runs one at a time.
    let op = loop {
        // Detection changes nothing: every account at once, and an instance that cannot be
        // checked must not stop the others being checked.
        let preferences = StackSetOperationPreferences::builder()
            .max_concurrent_percentage(100)
            .failure_tolerance_percentage(100)
            .region_concurrency_type(RegionConcurrencyType::Parallel)
            .build();
        match cfn
            .detect_stack_set_drift()
            .stack_set_name(name)
            .operation_preferences(preferences)
            .send()
            .await
        {
            Ok(out) => break out.operation_id.unwrap_or_default(),
            Err(e) => {
                let e = AwsError::call("CloudFormation.DetectStackSetDrift", e);
                if e.code() != Some("OperationInProgressException") {
                    return Err(e.into());
                }
                wait.sleep(&format!("the running operation on {name} to finish"))
                    .await?;
            }
        }
    };
    let mut wait = Backoff::new(polling);
    let what = format!("drift detection of {name}");
    loop {
        // An unanswered poll is asked again: the detection goes on meanwhile.
        let out = wait
            .call(&what, || async {
                cfn.describe_stack_set_operation()
                    .stack_set_name(name)
                    .operation_id(&op)
                    .send()
                    .await
                    .map_err(|e| AwsError::call("CloudFormation.DescribeStackSetOperation", e))
            })
            .await?;
        let operation = out.stack_set_operation;
        match operation.as_ref().and_then(|o| o.status.clone()) {
            Some(StackSetOperationStatus::Succeeded) => return Ok(op),
            Some(status @ (StackSetOperationStatus::Failed | StackSetOperationStatus::Stopped)) => {
                return Err(DriftError::Failed {
                    stack_set: name.to_string(),
                    status: status.as_str().to_string(),
                    reason: operation
                        .and_then(|o| o.status_reason)
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default(),
                });
            }
            _ => wait.sleep(&what).await?,
        }
    }
}

/// Brings the detections' results into `state`: each detected stack set's instances listed
/// again (one paginated ListStackInstances, for their drift status; nothing else of live state
/// changes), then, for every instance found drifted, which resources changed and how (property
/// paths and the kind of difference; never values, which may be secrets).
pub async fn refresh(
    aws: &Aws,
    region: &str,
    state: &mut LiveState,
    operations: &BTreeMap<String, String>,
) -> Result<(), AwsError> {
    let cfn = aws.cloudformation(region);
    for (name, op) in operations {
        let Some(set) = state.stack_sets.get_mut(name) else {
            continue;
        };
        let mut status = BTreeMap::new();
        for i in super::read::list_instances(aws, &cfn, name).await? {
            let key = (
                i.account.clone().unwrap_or_default(),
                i.region.clone().unwrap_or_default(),
            );
            status.insert(key, super::read::instance_drift(&i));
        }
        for instance in set.instances.iter_mut().flatten() {
            instance.drift = status
                .remove(&(instance.account.clone(), instance.region.clone()))
                .flatten();
        }
        for instance in set.instances.iter_mut().flatten() {
            let Some(drift) = instance.drift.as_mut() else {
                continue;
            };
            let every = super::read::resource_drifts(
                aws,
                &cfn,
                name,
                &instance.account,
                &instance.region,
                op,
                true,
            )
            .await?;
            drift.stack_gone = super::stack_gone(&every);
            drift.resources = Some(super::changed_only(every));
            if instance.last_operation.as_deref() == Some(op.as_str()) {
                drift.operation = Some(op.clone());
            }
        }
    }
    Ok(())
}
