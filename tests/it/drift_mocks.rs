//! SDK-level tests (aws-smithy-mocks) of resource drift detection, which the emulator cannot
//! produce: DetectStackSetDrift behind a running operation, RUNNING → SUCCEEDED, a FAILED
//! detection, and the drifted resources of an instance listed over pages.

use crate::support::mocks::{edge, fast, meta};
use aws_sdk_cloudformation::operation::describe_stack_set_operation::DescribeStackSetOperationOutput;
use aws_sdk_cloudformation::operation::detect_stack_set_drift::{
    DetectStackSetDriftError, DetectStackSetDriftOutput,
};
use aws_sdk_cloudformation::operation::list_stack_instance_resource_drifts::ListStackInstanceResourceDriftsOutput;
use aws_sdk_cloudformation::operation::list_stack_instances::ListStackInstancesOutput;
use aws_sdk_cloudformation::types::error::OperationInProgressException;
use aws_sdk_cloudformation::types::{
    DifferenceType, PropertyDifference, StackDriftStatus, StackInstanceResourceDriftsSummary,
    StackInstanceSummary, StackResourceDriftStatus, StackSetOperation, StackSetOperationStatus,
};
use aws_smithy_mocks::mock;
use estate::live::drift;
use estate::live::{InstanceDrift, LiveInstance, LiveStackSet, LiveState};
use std::collections::BTreeMap;

type Cfn = aws_sdk_cloudformation::Client;

fn operation(status: StackSetOperationStatus) -> DescribeStackSetOperationOutput {
    DescribeStackSetOperationOutput::builder()
        .stack_set_operation(
            StackSetOperation::builder()
                .operation_id("drift-op-1")
                .status(status)
                .build(),
        )
        .build()
}

fn in_progress() -> DetectStackSetDriftError {
    let message = "Another Operation on StackSet role-staging is in progress";
    DetectStackSetDriftError::OperationInProgressException(
        OperationInProgressException::builder()
            .message(message)
            .meta(meta("OperationInProgressException", message))
            .build(),
    )
}

#[tokio::test]
async fn detection_waits_behind_a_running_operation_then_polls_to_succeeded() {
    let detect = mock!(Cfn::detect_stack_set_drift)
        .match_requests(|r| r.stack_set_name() == Some("role-staging"))
        .sequence()
        .error(in_progress)
        .times(2)
        .output(|| {
            DetectStackSetDriftOutput::builder()
                .operation_id("drift-op-1")
                .build()
        })
        .build();
    let describe = mock!(Cfn::describe_stack_set_operation)
        .match_requests(|r| r.operation_id() == Some("drift-op-1"))
        .sequence()
        .output(|| operation(StackSetOperationStatus::Queued))
        .output(|| operation(StackSetOperationStatus::Running))
        .times(2)
        .output(|| operation(StackSetOperationStatus::Succeeded))
        .build();
    let aws = edge(&[&detect, &describe]);

    let ops = drift::detect(&aws, "us-east-1", &["role-staging".into()], fast())
        .await
        .unwrap()
        .operations;

    assert_eq!(
        ops,
        BTreeMap::from([("role-staging".to_string(), "drift-op-1".to_string())])
    );
    assert_eq!(detect.num_calls(), 3);
    assert_eq!(describe.num_calls(), 4);
}

#[tokio::test]
async fn a_failed_detection_is_reported_for_its_stack_set_with_aws_reason() {
    // Detection changes nothing, so it runs everywhere at once and tolerates failures.
    let detect = mock!(Cfn::detect_stack_set_drift)
        .match_requests(|r| {
            let p = r.operation_preferences();
            p.and_then(|p| p.failure_tolerance_percentage()) == Some(100)
                && p.and_then(|p| p.max_concurrent_percentage()) == Some(100)
        })
        .then_compute_output(|r| {
            DetectStackSetDriftOutput::builder()
                .operation_id(if r.stack_set_name() == Some("role-staging") {
                    "drift-op-1"
                } else {
                    "drift-op-2"
                })
                .build()
        });
    let ok = mock!(Cfn::describe_stack_set_operation)
        .match_requests(|r| r.operation_id() == Some("drift-op-2"))
        .then_output(|| operation(StackSetOperationStatus::Succeeded));
    let failed = mock!(Cfn::describe_stack_set_operation)
        .match_requests(|r| r.operation_id() == Some("drift-op-1"))
        .then_output(|| {
            DescribeStackSetOperationOutput::builder()
                .stack_set_operation(
                    StackSetOperation::builder()
                        .operation_id("drift-op-1")
                        .status(StackSetOperationStatus::Failed)
                        .status_reason("Account 444444444444 should have 'AWSCloudFormationStackSetExecutionRole' role")
                        .build(),
                )
                .build()
        });
    let aws = edge(&[&detect, &ok, &failed]);

    let detections = drift::detect(
        &aws,
        "us-east-1",
        &["role-staging".into(), "role-production".into()],
        fast(),
    )
    .await
    .unwrap();

    // Reported for its stack set; the other is still checked.
    assert_eq!(
        detections.failed["role-staging"],
        "drift detection of stack set role-staging ended FAILED: Account 444444444444 should have 'AWSCloudFormationStackSetExecutionRole' role"
    );
    assert_eq!(
        detections.operations,
        BTreeMap::from([("role-production".to_string(), "drift-op-2".to_string())])
    );
}

fn summary(id: &str, status: StackResourceDriftStatus) -> StackInstanceResourceDriftsSummary {
    StackInstanceResourceDriftsSummary::builder()
        .stack_id("arn:aws:cloudformation:us-east-1:333333333333:stack/StackSet-role/1")
        .logical_resource_id(id)
        .resource_type("AWS::IAM::Role")
        .stack_resource_drift_status(status)
        .timestamp(aws_smithy_types::DateTime::from_secs(1_800_000_000))
        .build()
}

#[tokio::test]
async fn drifted_resources_of_each_drifted_instance_are_listed_over_pages_without_values() {
    let pages = mock!(Cfn::list_stack_instance_resource_drifts)
        .match_requests(|r| {
            r.stack_set_name() == Some("role-staging")
                && r.stack_instance_account() == Some("333333333333")
                && r.operation_id() == Some("drift-op-1")
                // Every resource, in-sync ones too: "the whole stack is gone" must not be
                // read from a list that leaves the others out.
                && r.stack_instance_resource_drift_statuses().is_empty()
        })
        .then_compute_output(|r| match r.next_token() {
            None => ListStackInstanceResourceDriftsOutput::builder()
                .summaries(
                    StackInstanceResourceDriftsSummary::builder()
                        .property_differences(
                            PropertyDifference::builder()
                                .property_path("/Properties/MaxSessionDuration")
                                .expected_value("3600")
                                .actual_value("43200")
                                .difference_type(DifferenceType::NotEqual)
                                .build(),
                        )
                        .stack_id("arn:aws:cloudformation:us-east-1:333333333333:stack/s/1")
                        .logical_resource_id("Role")
                        .resource_type("AWS::IAM::Role")
                        .stack_resource_drift_status(StackResourceDriftStatus::Modified)
                        .timestamp(aws_smithy_types::DateTime::from_secs(1_800_000_000))
                        .build(),
                )
                .next_token("page-2")
                .build(),
            Some(_) => ListStackInstanceResourceDriftsOutput::builder()
                .summaries(summary("Policy", StackResourceDriftStatus::Deleted))
                .summaries(summary("Bucket", StackResourceDriftStatus::InSync))
                .build(),
        });
    // The detection's result: only the first instance drifted.
    let listed = mock!(Cfn::list_stack_instances)
        .match_requests(|r| {
            r.stack_set_name() == Some("role-staging") && r.max_results() == Some(100)
        })
        .then_output(|| {
            let summary = |account: &str, status: StackDriftStatus| {
                StackInstanceSummary::builder()
                    .account(account)
                    .region("us-east-1")
                    .drift_status(status)
                    .last_drift_check_timestamp(aws_smithy_types::DateTime::from_secs(
                        1_800_000_000,
                    ))
                    .build()
            };
            ListStackInstancesOutput::builder()
                .summaries(summary("333333333333", StackDriftStatus::Drifted))
                .summaries(summary("333333333334", StackDriftStatus::InSync))
                .build()
        });
    let aws = edge(&[&pages, &listed]);
    let instance = |account: &str, drifted: bool| LiveInstance {
        account: account.into(),
        region: "us-east-1".into(),
        status: "CURRENT".into(),
        status_reason: None,
        unit: None,
        overrides: None,
        drift: drifted.then_some(InstanceDrift {
            last_checked: None,
            resources: None,
            operation: None,
            stack_gone: false,
        }),
        last_operation: None,
        stack_id: None,
    };
    let mut state = LiveState {
        stack_sets: BTreeMap::from([(
            "role-staging".to_string(),
            LiveStackSet {
                name: "role-staging".into(),
                description: None,
                template_body: String::new(),
                parameters: BTreeMap::new(),
                capabilities: Vec::new(),
                tags: BTreeMap::new(),
                permission_model: "SELF_MANAGED".into(),
                administration_role_arn: None,
                execution_role_name: None,
                auto_deployment: None,
                // Only the drifted instance is asked about.
                instances: Some(vec![
                    // Drift status as the read before the detection saw it: stale.
                    instance("333333333333", false),
                    instance("333333333334", true),
                ]),
            },
        )]),
        ..Default::default()
    };
    let ops = BTreeMap::from([("role-staging".to_string(), "drift-op-1".to_string())]);

    drift::refresh(&aws, "us-east-1", &mut state, &ops)
        .await
        .unwrap();

    assert_eq!(pages.num_calls(), 2);
    assert_eq!(
        listed.num_calls(),
        1,
        "one list for the statuses, no full re-read"
    );
    let instances = state.stack_sets["role-staging"].instances.as_ref().unwrap();
    // One resource deleted among others that are not: the stack is not gone.
    assert!(!instances[0].drift.as_ref().unwrap().stack_gone);
    let found = instances[0]
        .drift
        .as_ref()
        .unwrap()
        .resources
        .as_ref()
        .unwrap();
    let got: Vec<(&str, &str, &[String])> = found
        .iter()
        .map(|r| {
            (
                r.logical_id.as_str(),
                r.status.as_str(),
                r.differences.as_slice(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("Policy", "DELETED", &[][..]),
            (
                "Role",
                "MODIFIED",
                &["/Properties/MaxSessionDuration NOT_EQUAL".to_string()][..]
            ),
        ]
    );
    // Values never: they may be secrets.
    let text = format!("{state:?}");
    assert!(!text.contains("43200") && !text.contains("3600"), "{text}");
    assert!(instances[1].drift.is_none());
}
