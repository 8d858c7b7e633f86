//! SDK-level tests (aws-smithy-mocks) of apply against AWS's real behaviour: batched instance
//! calls, FAILED operations with paged per-instance reasons, OperationInProgress and
//! OperationIdAlreadyExists, polling that reports state changes only, and account creation.

use crate::support::builders::{change, plan_of};
use crate::support::mocks::{calls, edge, fast, meta};
use crate::support::run::texts;
use aws_sdk_cloudformation::operation::create_stack_instances::{
    CreateStackInstancesError, CreateStackInstancesInput, CreateStackInstancesOutput,
};
use aws_sdk_cloudformation::operation::describe_stack_set_operation::DescribeStackSetOperationOutput;
use aws_sdk_cloudformation::operation::list_stack_set_operation_results::ListStackSetOperationResultsOutput;
use aws_sdk_cloudformation::operation::list_stack_set_operations::ListStackSetOperationsOutput;
use aws_sdk_cloudformation::operation::update_stack_instances::{
    UpdateStackInstancesError, UpdateStackInstancesOutput,
};
use aws_sdk_cloudformation::operation::update_stack_set::UpdateStackSetOutput;
use aws_sdk_cloudformation::types::error::OperationInProgressException;
use aws_sdk_cloudformation::types::{
    StackSetOperation, StackSetOperationResultStatus, StackSetOperationResultSummary,
    StackSetOperationStatus, StackSetOperationSummary,
};
use aws_sdk_organizations::operation::create_account::CreateAccountOutput;
use aws_sdk_organizations::operation::describe_create_account_status::DescribeCreateAccountStatusOutput;
use aws_sdk_organizations::operation::move_account::{MoveAccountInput, MoveAccountOutput};
use aws_sdk_organizations::types::{
    CreateAccountFailureReason, CreateAccountState, CreateAccountStatus,
};
use aws_smithy_mocks::{MockResponse, Rule, mock};
use estate::apply::{self, ApplyError, DesiredInstanceView, Event, Options, Progress, Report};
use estate::aws::Aws;
use estate::live::{LiveState, LiveUnit};
use estate::manifest::model::OperationPreferences;
use estate::plan::desired::{AccountRef, Desired, DesiredInstance, DesiredStackSet};
use estate::plan::{
    AccountSide, Action, Address, Change, Hint, InstanceSide, Plan, ResourceType, StackSetSide,
};
use estate::template::Template;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Cfn = aws_sdk_cloudformation::Client;
type Orgs = aws_sdk_organizations::Client;

const REGION: &str = "us-east-1";

fn options() -> Options {
    Options {
        // One at a time: the mock interceptor holds one pending response, not one per call.
        parallelism: 1,
        polling: fast(),
        template_bucket: None,
        home_region: REGION.into(),
    }
}

fn account(i: usize) -> String {
    format!("{:012}", 300_000_000_000u64 + i as u64)
}

fn instance(account: &str, region: &str, overrides: &[(&str, &str)]) -> DesiredInstance {
    DesiredInstance {
        account: AccountRef {
            id: Some(account.to_string()),
            name: None,
        },
        region: region.to_string(),
        overrides: overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn stack_set(
    name: &str,
    env: &str,
    operation: OperationPreferences,
    instances: Vec<DesiredInstance>,
) -> DesiredStackSet {
    let template = Template::parse(
        b"Parameters: {Size: {Type: String, Default: small}}\nResources: {T: {Type: AWS::SNS::Topic}}",
    )
    .unwrap();
    DesiredStackSet {
        adopt: false,
        name: format!("{name}-{env}"),
        stack_set: name.to_string(),
        environment: env.to_string(),
        description: None,
        template,
        parameters: BTreeMap::new(),
        sensitive: BTreeSet::new(),
        capabilities: Vec::new(),
        tags: BTreeMap::from([
            ("estate:managed-by".into(), "e".into()),
            ("estate:environment".into(), env.to_string()),
        ]),
        permission_model: "SELF_MANAGED".into(),
        administration_role_arn: None,
        execution_role_name: None,
        auto_deployment: None,
        operation,
        units: Vec::new(),
        unit_ids: Vec::new(),
        instances,
        producers: BTreeSet::new(),
        unknown: BTreeSet::new(),
        wave: 0,
    }
}

/// The Plan `plan::diff` makes when every desired instance is missing from an existing set.
fn plan_creating_instances(environments: &[&str], desired: &Desired) -> Plan {
    let changes: Vec<Change> = desired
        .stack_sets
        .iter()
        .flat_map(|d| {
            d.instances.iter().map(move |i| {
                let id = i.account.id.clone().unwrap();
                Change {
                    after: Some(instance_side(&d.name, &id, &i.region, &i.overrides)),
                    ..change(
                        &format!("stackInstance:{}/{id}/{}", d.name, i.region),
                        ResourceType::StackInstance,
                        Action::Create,
                        Some(&d.environment),
                        "not deployed",
                    )
                }
            })
        })
        .collect();
    plan_of(environments, changes)
}

fn instance_side(
    stack_set: &str,
    account: &str,
    region: &str,
    overrides: &BTreeMap<String, String>,
) -> estate::plan::Side {
    InstanceSide {
        stack_set: stack_set.into(),
        account: Some(account.into()),
        account_name: None,
        region: region.into(),
        parameter_overrides: overrides.clone(),
        status: None,
        organizational_unit_id: None,
        last_operation: None,
    }
    .into()
}

fn desired(stack_sets: Vec<DesiredStackSet>) -> Desired {
    let mut environments: Vec<String> = Vec::new();
    for d in &stack_sets {
        if !environments.contains(&d.environment) {
            environments.push(d.environment.clone());
        }
    }
    Desired {
        units: Vec::new(),
        accounts: Vec::new(),
        stack_sets,
        sources: Vec::new(),
        compiled: Default::default(),
        environments,
    }
}

type Requests = Arc<Mutex<Vec<CreateStackInstancesInput>>>;

/// CreateStackInstances as AWS answers it: the operation gets the id the caller gave.
/// Every request is kept for the test to look at.
fn create_instances(requests: &Requests) -> Rule {
    let requests = requests.clone();
    mock!(Cfn::create_stack_instances).then_compute_output(move |req| {
        requests.lock().unwrap().push(req.clone());
        CreateStackInstancesOutput::builder()
            .set_operation_id(req.operation_id().map(str::to_string))
            .build()
    })
}

fn operation(status: StackSetOperationStatus) -> DescribeStackSetOperationOutput {
    DescribeStackSetOperationOutput::builder()
        .stack_set_operation(StackSetOperation::builder().status(status).build())
        .build()
}

fn succeeded_operations() -> Rule {
    mock!(Cfn::describe_stack_set_operation)
        .then_output(|| operation(StackSetOperationStatus::Succeeded))
}

/// ListStackSetOperationResults listing these (account, status, reason) results.
fn operation_results(results: Vec<(String, &'static str, &'static str)>) -> Rule {
    mock!(Cfn::list_stack_set_operation_results).then_output(move || {
        aws_sdk_cloudformation::operation::list_stack_set_operation_results::ListStackSetOperationResultsOutput::builder()
            .set_summaries(Some(
                results
                    .iter()
                    .map(|(account, status, reason)| {
                        aws_sdk_cloudformation::types::StackSetOperationResultSummary::builder()
                            .account(account)
                            .region(REGION)
                            .status(aws_sdk_cloudformation::types::StackSetOperationResultStatus::from(*status))
                            .status_reason(*reason)
                            .build()
                    })
                    .collect(),
            ))
            .build()
    })
}

fn in_progress() -> CreateStackInstancesError {
    let message = "Another Operation on StackSet base-dev is in progress";
    CreateStackInstancesError::OperationInProgressException(
        OperationInProgressException::builder()
            .message(message)
            .meta(meta("OperationInProgressException", message))
            .build(),
    )
}

/// Records what apply reports.
#[derive(Default)]
struct Recorder(Mutex<Vec<Event>>);

impl Progress for Recorder {
    fn event(&self, event: Event) {
        self.0.lock().unwrap().push(event);
    }
}

impl Recorder {
    /// (operation id, status) of every Operation event, in order.
    fn operations(&self) -> Vec<(String, String)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                Event::Operation {
                    operation_id,
                    status,
                    ..
                } => Some((operation_id.clone(), status.clone())),
                _ => None,
            })
            .collect()
    }
    /// Addresses of the Done events, in order.
    fn done(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                Event::Done { address } => Some(address.clone()),
                _ => None,
            })
            .collect()
    }
    fn started(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                Event::Started { address, .. } => Some(address.clone()),
                _ => None,
            })
            .collect()
    }
}

fn assert_clean(report: &Report) {
    assert!(report.failures.is_empty(), "{:#?}", report.failures);
}

// ------------------------------------------------------------------ batching

/// Within a failure tolerance AWS reports the operation SUCCEEDED although instances failed:
/// those are failures of the apply, with AWS's reasons (and OUTDATED for the next plan).
#[tokio::test]
async fn instances_failed_within_the_tolerance_fail_the_apply() {
    let prefs = OperationPreferences {
        failure_tolerance_percentage: Some(50),
        ..Default::default()
    };
    let instances = (0..2).map(|i| instance(&account(i), REGION, &[])).collect();
    let desired = desired(vec![stack_set("base", "dev", prefs, instances)]);
    let plan = plan_creating_instances(&["dev"], &desired);
    let requests = Requests::default();
    let reason = "Account 300000000001 should have 'AWSCloudFormationStackSetExecutionRole' role";
    let aws = edge(&[
        &create_instances(&requests),
        &succeeded_operations(),
        &operation_results(vec![
            (account(0), "SUCCEEDED", ""),
            (account(1), "FAILED", reason),
        ]),
    ]);

    let report = apply::stack_sets(&aws, &plan, &desired, &options(), &apply::Silent).await;

    let [failure] = report.failures.as_slice() else {
        panic!("{:#?}", report.failures);
    };
    assert!(
        failure
            .message
            .contains("SUCCEEDED within its failure tolerance, but 1 instance failed"),
        "{}",
        failure.message
    );
    assert_eq!(failure.instances.len(), 1);
    assert_eq!(failure.instances[0].reason, reason);
}

#[tokio::test]
async fn forty_new_instances_of_one_set_are_one_create_call() {
    let prefs = OperationPreferences {
        max_concurrent_percentage: Some(100),
        failure_tolerance_count: Some(2),
        ..Default::default()
    };
    let instances = (0..40)
        .map(|i| instance(&account(i), REGION, &[]))
        .collect();
    let desired = desired(vec![stack_set("base", "dev", prefs, instances)]);
    let plan = plan_creating_instances(&["dev"], &desired);
    let requests = Requests::default();
    let aws = edge(&[
        &create_instances(&requests),
        &succeeded_operations(),
        &operation_results(Vec::new()),
    ]);
    let progress = Recorder::default();

    let report = apply::stack_sets(&aws, &plan, &desired, &options(), &progress).await;

    assert_clean(&report);
    // With a failure tolerance, a SUCCEEDED operation may hide failed instances: looked at.
    assert_eq!(
        calls(&aws, "CloudFormation.ListStackSetOperationResults"),
        1
    );
    // Each instance is reported done as it is: a stop part-way counts them.
    assert_eq!(progress.done(), texts(&report.done));
    assert_eq!(calls(&aws, "CloudFormation.CreateStackInstances"), 1);
    let requests = requests.lock().unwrap();
    let [req] = requests.as_slice() else {
        panic!("{} CreateStackInstances calls", requests.len());
    };
    assert_eq!(req.stack_set_name(), Some("base-dev"));
    assert_eq!(req.accounts().len(), 40);
    let expected: Vec<String> = (0..40).map(account).collect();
    assert_eq!(req.accounts(), expected.as_slice());
    assert_eq!(req.regions(), [REGION]);
    assert!(req.parameter_overrides().is_empty());
    // The manifest's preferences reach the instance operation: without them AWS deploys to
    // one account at a time and stops at the first failure.
    let p = req
        .operation_preferences()
        .expect("operation preferences passed");
    assert_eq!(p.max_concurrent_percentage(), Some(100));
    assert_eq!(p.failure_tolerance_count(), Some(2));
    assert_eq!(report.done.len(), 40);
    assert_eq!(report.operations["base-dev"].len(), 1);
    assert_eq!(
        Some(report.operations["base-dev"][0].as_str()),
        req.operation_id()
    );
}

#[tokio::test]
async fn two_override_groups_are_two_create_calls() {
    let small: Vec<String> = (0..4).map(account).collect();
    let large: Vec<String> = (4..7).map(account).collect();
    let mut instances: Vec<DesiredInstance> = small
        .iter()
        .map(|a| instance(a, REGION, &[("Size", "small")]))
        .collect();
    instances.extend(
        large
            .iter()
            .map(|a| instance(a, REGION, &[("Size", "large")])),
    );
    let desired = desired(vec![stack_set(
        "base",
        "dev",
        OperationPreferences::default(),
        instances,
    )]);
    let plan = plan_creating_instances(&["dev"], &desired);
    let requests = Requests::default();
    let aws = edge(&[&create_instances(&requests), &succeeded_operations()]);

    let report = apply::stack_sets(&aws, &plan, &desired, &options(), &apply::Silent).await;

    assert_clean(&report);
    assert_eq!(calls(&aws, "CloudFormation.CreateStackInstances"), 2);
    let requests = requests.lock().unwrap();
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for req in requests.iter() {
        let [p] = req.parameter_overrides() else {
            panic!("one override per call: {:?}", req.parameter_overrides());
        };
        assert_eq!(p.parameter_key(), Some("Size"));
        assert_eq!(req.regions(), [REGION]);
        seen.insert(
            p.parameter_value().unwrap().to_string(),
            req.accounts().to_vec(),
        );
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen["small"], small);
    assert_eq!(seen["large"], large);
    // Two distinct operations: each call has its own id.
    assert_ne!(requests[0].operation_id(), requests[1].operation_id());
    assert_eq!(report.done.len(), 7);
}

#[test]
fn batches_group_accounts_by_region_set_and_overrides() {
    let view = |a: &str, r: &str, o: &[(&str, &str)]| DesiredInstanceView {
        account: a.to_string(),
        region: r.to_string(),
        overrides: o
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        retain: false,
        units: Vec::new(),
        since: None,
    };
    let (a, b, c, d) = (
        "111111111111",
        "222222222222",
        "333333333333",
        "444444444444",
    );
    let views = [
        view(b, "eu-west-1", &[]),
        view(a, "us-east-1", &[]),
        view(a, "eu-west-1", &[]),
        view(b, "us-east-1", &[]),
        // Same overrides, but only one of the regions: a call of its own.
        view(c, "us-east-1", &[]),
        // Same regions as a and b, but different overrides.
        view(d, "us-east-1", &[("Size", "large")]),
        view(d, "eu-west-1", &[("Size", "large")]),
    ];
    let input: Vec<(Address, &DesiredInstanceView)> = views
        .iter()
        .map(|v| {
            let a = format!("stackInstance:s/{}/{}", v.account, v.region);
            (a.parse().unwrap(), v)
        })
        .collect();

    let batches = apply::batches(&input);

    let shape: Vec<(Vec<&str>, Vec<&str>, usize)> = batches
        .iter()
        .map(|b| {
            (
                b.accounts.iter().map(String::as_str).collect(),
                b.regions.iter().map(String::as_str).collect(),
                b.overrides.len(),
            )
        })
        .collect();
    assert_eq!(shape.len(), 3, "{shape:?}");
    assert!(shape.contains(&(vec![a, b], vec!["eu-west-1", "us-east-1"], 0)));
    assert!(shape.contains(&(vec![c], vec!["us-east-1"], 0)));
    assert!(shape.contains(&(vec![d], vec!["eu-west-1", "us-east-1"], 1)));
    // Each batch is exactly accounts × regions of the input: nothing added, nothing lost.
    let mut covered: Vec<(String, String)> = batches
        .iter()
        .flat_map(|b| {
            b.accounts.iter().flat_map(|a| {
                b.regions
                    .iter()
                    .map(move |r| (a.to_string(), r.to_string()))
            })
        })
        .collect();
    covered.sort();
    let mut wanted: Vec<(String, String)> = views
        .iter()
        .map(|v| (v.account.clone(), v.region.clone()))
        .collect();
    wanted.sort();
    assert_eq!(covered, wanted);
    let mut addresses: Vec<&Address> = batches.iter().flat_map(|b| &b.addresses).collect();
    addresses.sort();
    addresses.dedup();
    assert_eq!(addresses.len(), views.len());
    // Deterministic whatever the input order (operation ids are derived from batches).
    let reversed: Vec<(Address, &DesiredInstanceView)> = input.iter().rev().cloned().collect();
    let again = apply::batches(&reversed);
    let key = |bs: &[apply::Batch]| -> Vec<(Vec<String>, Vec<String>)> {
        bs.iter()
            .map(|b| (b.accounts.clone(), b.regions.clone()))
            .collect()
    };
    assert_eq!(key(&again), key(&batches));
}

// ------------------------------------------------------------------ failures

#[tokio::test]
async fn a_failed_operation_lists_every_failed_instance_and_stops_later_stages() {
    let dev: Vec<DesiredInstance> = (0..4).map(|i| instance(&account(i), REGION, &[])).collect();
    let staging = vec![instance(&account(10), REGION, &[])];
    let desired = desired(vec![
        stack_set("base", "dev", OperationPreferences::default(), dev),
        stack_set("base", "staging", OperationPreferences::default(), staging),
    ]);
    let plan = plan_creating_instances(&["dev", "staging"], &desired);
    let requests = Requests::default();
    let failed = mock!(Cfn::describe_stack_set_operation)
        .then_output(|| operation(StackSetOperationStatus::Failed));
    // Two pages, as AWS pages results; failures on both.
    let result = |i: usize, status: StackSetOperationResultStatus, reason: Option<&str>| {
        StackSetOperationResultSummary::builder()
            .account(account(i))
            .region(REGION)
            .status(status)
            .set_status_reason(reason.map(str::to_string))
            .build()
    };
    const ROLE: &str = "Account 300000000001 should have 'AWSCloudFormationStackSetExecutionRole' role with trust relationship to Role 'AWSCloudFormationStackSetAdministrationRole'.";
    const TOPIC: &str = "ResourceLogicalId:T, ResourceType:AWS::SNS::Topic, ResourceStatusReason:Resource handler returned message: \"Access Denied\".";
    let results = mock!(Cfn::list_stack_set_operation_results).then_compute_output(move |req| {
        use StackSetOperationResultStatus as R;
        match req.next_token() {
            None => ListStackSetOperationResultsOutput::builder()
                .summaries(result(0, R::Succeeded, None))
                .summaries(result(1, R::Failed, Some(ROLE)))
                .next_token("page-2")
                .build(),
            Some("page-2") => ListStackSetOperationResultsOutput::builder()
                .summaries(result(2, R::Succeeded, None))
                .summaries(result(3, R::Failed, Some(TOPIC)))
                .build(),
            Some(other) => panic!("unexpected token {other}"),
        }
    });
    let aws = edge(&[&create_instances(&requests), &failed, &results]);
    let progress = Recorder::default();

    let report = apply::stack_sets(&aws, &plan, &desired, &options(), &progress).await;

    let [failure] = report.failures.as_slice() else {
        panic!("{:#?}", report.failures);
    };
    assert_eq!(failure.stack_set, "base-dev");
    assert_eq!(failure.step, "CreateStackInstances");
    assert!(failure.message.contains("FAILED"), "{}", failure.message);
    let got: Vec<(&str, &str, &str, &str)> = failure
        .instances
        .iter()
        .map(|i| {
            (
                i.account.as_str(),
                i.region.as_str(),
                i.status.as_str(),
                i.reason.as_str(),
            )
        })
        .collect();
    let (a1, a3) = (account(1), account(3));
    assert_eq!(
        got,
        [
            (a1.as_str(), REGION, "FAILED", ROLE),
            (a3.as_str(), REGION, "FAILED", TOPIC),
        ]
    );
    assert_eq!(
        calls(&aws, "CloudFormation.ListStackSetOperationResults"),
        2
    );
    // Staging never starts on top of a failed dev.
    assert_eq!(calls(&aws, "CloudFormation.CreateStackInstances"), 1);
    assert!(
        requests
            .lock()
            .unwrap()
            .iter()
            .all(|r| r.stack_set_name() == Some("base-dev"))
    );
    assert!(
        !progress.started().iter().any(|a| a.contains("staging")),
        "{:?}",
        progress.started()
    );
    assert!(report.done.is_empty(), "{:?}", report.done);
    // The failure is reported as it happens (a bar marked FAILED, a log line).
    let failed: Vec<String> = progress
        .0
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::Failed { address, message } => Some(format!("{address} {message}")),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0].starts_with("stackSet:base-dev CreateStackInstances: operation"),
        "{failed:?}"
    );
}

/// A producer whose operation failed stops the stack sets using its outputs: in a later wave
/// of its environment and in later environments, each reported not attempted.
#[tokio::test]
async fn a_failed_producer_stops_its_consumers_reported_not_attempted() {
    let mut consumer = stack_set(
        "user",
        "dev",
        OperationPreferences::default(),
        vec![instance(&account(1), REGION, &[])],
    );
    consumer.producers = BTreeSet::from(["store-dev".to_string()]);
    consumer.wave = 1;
    let mut later = stack_set(
        "user",
        "staging",
        OperationPreferences::default(),
        vec![instance(&account(2), REGION, &[])],
    );
    later.producers = BTreeSet::from(["store-dev".to_string()]);
    let desired = desired(vec![
        stack_set(
            "store",
            "dev",
            OperationPreferences::default(),
            vec![instance(&account(0), REGION, &[])],
        ),
        consumer,
        later,
    ]);
    let plan = plan_creating_instances(&["dev", "staging"], &desired);
    let requests = Requests::default();
    let failed = mock!(Cfn::describe_stack_set_operation)
        .then_output(|| operation(StackSetOperationStatus::Failed));
    let aws = edge(&[
        &create_instances(&requests),
        &failed,
        &operation_results(vec![(account(0), "FAILED", "Access Denied")]),
    ]);

    let report = apply::stack_sets(&aws, &plan, &desired, &options(), &apply::Silent).await;

    let got: Vec<(&str, &str)> = report
        .failures
        .iter()
        .map(|f| (f.stack_set.as_str(), f.step.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("store-dev", "CreateStackInstances"),
            ("user-dev", "ReadOutputs"),
            ("user-staging", "ReadOutputs"),
        ]
    );
    assert!(report.failures[1].message.starts_with("not attempted"));
    let asked: Vec<String> = requests
        .lock()
        .unwrap()
        .iter()
        .filter_map(|r| r.stack_set_name().map(str::to_string))
        .collect();
    assert_eq!(asked, ["store-dev"]);
}

/// A value still "(known after apply)" when its wave comes (its producer was not applied) is
/// never deployed: the stack set is reported not attempted, and nothing is called for it.
#[tokio::test]
async fn an_output_still_unknown_is_never_deployed() {
    let mut consumer = stack_set(
        "user",
        "dev",
        OperationPreferences::default(),
        vec![instance(&account(1), REGION, &[])],
    );
    consumer.producers = BTreeSet::from(["store-prod".to_string()]);
    consumer.unknown = BTreeSet::from(["Key".to_string()]);
    let desired = desired(vec![consumer]);
    let plan = plan_creating_instances(&["dev"], &desired);
    let requests = Requests::default();
    let aws = edge(&[&create_instances(&requests), &succeeded_operations()]);

    let report = apply::stack_sets(&aws, &plan, &desired, &options(), &apply::Silent).await;

    let [failure] = report.failures.as_slice() else {
        panic!("{:#?}", report.failures);
    };
    assert_eq!(
        (failure.stack_set.as_str(), failure.step.as_str()),
        ("user-dev", "ReadOutputs")
    );
    assert!(
        failure.message.contains("Key hold outputs of store-prod"),
        "{}",
        failure.message
    );
    assert!(requests.lock().unwrap().is_empty());
}

// ------------------------------------------------------------------ concurrency and re-runs

#[tokio::test]
async fn operation_in_progress_waits_for_the_running_operation_then_retries() {
    let desired = desired(vec![stack_set(
        "base",
        "dev",
        OperationPreferences::default(),
        vec![instance(&account(0), REGION, &[])],
    )]);
    let plan = plan_creating_instances(&["dev"], &desired);
    let requests = Requests::default();
    let tries = Arc::new(AtomicUsize::new(0));
    let create = {
        let (requests, tries) = (requests.clone(), tries.clone());
        mock!(Cfn::create_stack_instances).then_compute_response(move |req| {
            requests.lock().unwrap().push(req.clone());
            if tries.fetch_add(1, Ordering::SeqCst) == 0 {
                MockResponse::Error(in_progress())
            } else {
                MockResponse::Output(
                    CreateStackInstancesOutput::builder()
                        .set_operation_id(req.operation_id().map(str::to_string))
                        .build(),
                )
            }
        })
    };
    let summary = |status| {
        ListStackSetOperationsOutput::builder()
            .summaries(
                StackSetOperationSummary::builder()
                    .operation_id("console-op")
                    .status(status)
                    .build(),
            )
            .build()
    };
    // Someone else's operation: running for three polls, then done.
    let list = mock!(Cfn::list_stack_set_operations)
        .sequence()
        .output(move || summary(StackSetOperationStatus::Running))
        .times(3)
        .output(move || summary(StackSetOperationStatus::Succeeded))
        .repeatedly()
        .build();
    let aws = edge(&[&create, &list, &succeeded_operations()]);
    let progress = Recorder::default();

    let report = apply::stack_sets(&aws, &plan, &desired, &options(), &progress).await;

    assert_clean(&report);
    assert_eq!(report.done.len(), 1);
    assert_eq!(calls(&aws, "CloudFormation.CreateStackInstances"), 2);
    assert_eq!(calls(&aws, "CloudFormation.ListStackSetOperations"), 4);
    let requests = requests.lock().unwrap();
    // The rejected call started nothing, so the retry may (and does) use the same id.
    assert_eq!(requests[0].operation_id(), requests[1].operation_id());
    // One line for the wait, not one per poll.
    let waits: Vec<_> = progress
        .operations()
        .into_iter()
        .filter(|(id, _)| id == "(another operation)")
        .collect();
    assert_eq!(waits.len(), 1, "{waits:?}");
}

#[tokio::test]
async fn operation_in_progress_with_none_listed_backs_off_and_times_out() {
    // AWS says an operation is in progress while ListStackSetOperations (eventually
    // consistent, paged) shows none running: apply must back off and give up at the
    // timeout, not spin on CreateStackInstances.
    let desired = desired(vec![stack_set(
        "base",
        "dev",
        OperationPreferences::default(),
        vec![instance(&account(0), REGION, &[])],
    )]);
    let plan = plan_creating_instances(&["dev"], &desired);
    let create = mock!(Cfn::create_stack_instances).then_error(in_progress);
    let list = mock!(Cfn::list_stack_set_operations)
        .then_output(|| ListStackSetOperationsOutput::builder().build());
    let aws = edge(&[&create, &list]);
    let mut opts = options();
    opts.polling.timeout = Duration::from_millis(100);

    let report = tokio::time::timeout(
        Duration::from_secs(30),
        apply::stack_sets(&aws, &plan, &desired, &opts, &apply::Silent),
    )
    .await
    .expect("apply gives up at the polling timeout");

    let [failure] = report.failures.as_slice() else {
        panic!("{:#?}", report.failures);
    };
    assert_eq!(failure.step, "CreateStackInstances");
    assert!(failure.message.contains("timed out"), "{}", failure.message);
    // 100 ms of backoff capped at 5 ms is a few dozen tries, not a busy loop.
    let tries = calls(&aws, "CloudFormation.CreateStackInstances");
    assert!((2..=100).contains(&tries), "{tries} tries");
}

#[tokio::test]
async fn polling_reports_each_state_change_once() {
    let desired = desired(vec![stack_set(
        "base",
        "dev",
        OperationPreferences::default(),
        vec![instance(&account(0), REGION, &[])],
    )]);
    let plan = plan_creating_instances(&["dev"], &desired);
    let requests = Requests::default();
    let describe = mock!(Cfn::describe_stack_set_operation)
        .sequence()
        .output(|| operation(StackSetOperationStatus::Running))
        .times(2)
        .output(|| operation(StackSetOperationStatus::Succeeded))
        .build();
    let aws = edge(&[&create_instances(&requests), &describe]);
    let progress = Recorder::default();

    let report = apply::stack_sets(&aws, &plan, &desired, &options(), &progress).await;

    assert_clean(&report);
    assert_eq!(calls(&aws, "CloudFormation.DescribeStackSetOperation"), 3);
    assert_eq!(describe.num_calls(), 3);
    let id = requests.lock().unwrap()[0]
        .operation_id()
        .unwrap()
        .to_string();
    assert_eq!(
        progress.operations(),
        [(id.clone(), "RUNNING".into()), (id, "SUCCEEDED".into())]
    );
}

#[tokio::test]
async fn a_rerun_waits_for_the_operation_it_already_started() {
    let desired = desired(vec![stack_set(
        "base",
        "dev",
        OperationPreferences::default(),
        (0..3).map(|i| instance(&account(i), REGION, &[])).collect(),
    )]);
    let plan = plan_creating_instances(&["dev"], &desired);

    // First run: the operation starts, then the process is cut off (the operation goes on).
    let requests = Requests::default();
    let aws = edge(&[&create_instances(&requests), &succeeded_operations()]);
    let first = apply::stack_sets(&aws, &plan, &desired, &options(), &apply::Silent).await;
    assert_clean(&first);
    let id = requests.lock().unwrap()[0]
        .operation_id()
        .unwrap()
        .to_string();

    // Second run of the same plan: AWS refuses the id it already has, on the wire as AWS
    // sends it (awsQuery XML), and the operation with that id is the one to wait for.
    let rerun_requests = Requests::default();
    let refused = {
        let rerun_requests = rerun_requests.clone();
        let id = id.clone();
        mock!(Cfn::create_stack_instances).then_compute_response(move |req| {
            rerun_requests.lock().unwrap().push(req.clone());
            MockResponse::Http(aws_smithy_runtime_api::http::Response::new(
                aws_smithy_runtime_api::http::StatusCode::try_from(400).unwrap(),
                aws_smithy_types::body::SdkBody::from(format!(
                    "<ErrorResponse xmlns=\"http://cloudformation.amazonaws.com/doc/2010-05-15/\">\
                     <Error><Type>Sender</Type><Code>OperationIdAlreadyExistsException</Code>\
                     <Message>The operation id {id} already exists</Message></Error>\
                     <RequestId>0f3a1c2e-0000-4000-8000-000000000000</RequestId></ErrorResponse>"
                )),
            ))
        })
    };
    // Only the operation with that id exists; asking for any other is an unmatched call (an error).
    let that_operation = {
        let id = id.clone();
        mock!(Cfn::describe_stack_set_operation)
            .match_requests(move |r| r.operation_id() == Some(id.as_str()))
            .then_output(|| operation(StackSetOperationStatus::Succeeded))
    };
    let aws = edge(&[&refused, &that_operation]);
    let progress = Recorder::default();

    let report = apply::stack_sets(&aws, &plan, &desired, &options(), &progress).await;

    assert_clean(&report);
    assert_eq!(report.done.len(), 3);
    assert_eq!(calls(&aws, "CloudFormation.CreateStackInstances"), 1);
    assert_eq!(
        rerun_requests.lock().unwrap()[0].operation_id(),
        Some(id.as_str()),
        "the same plan and step give the same id"
    );
    assert_eq!(that_operation.num_calls(), 1);
    assert_eq!(report.operations["base-dev"], std::slice::from_ref(&id));
    assert_eq!(progress.operations(), [(id, "SUCCEEDED".to_string())]);
}

#[test]
fn operation_ids_are_deterministic_and_valid_for_aws() {
    let id = apply::operation_id("fingerprint-1", "base-dev/CreateStackInstances/a/b/");
    assert_eq!(
        id,
        apply::operation_id("fingerprint-1", "base-dev/CreateStackInstances/a/b/")
    );
    let others = [
        apply::operation_id("fingerprint-1", "base-dev/UpdateStackInstances/a/b/"),
        apply::operation_id("fingerprint-2", "base-dev/CreateStackInstances/a/b/"),
        apply::operation_id("fingerprint-1", "base-prod/CreateStackInstances/a/b/"),
    ];
    for other in &others {
        assert_ne!(&id, other);
    }
    // OperationId and ClientRequestToken: [a-zA-Z0-9][-a-zA-Z0-9]*, at most 128 characters,
    // whatever the step text (account lists of hundreds of ids included).
    let long_step = (0..500).map(account).collect::<Vec<_>>().join(",");
    let pattern = regex::Regex::new("^[a-zA-Z0-9][-a-zA-Z0-9]*$").unwrap();
    for id in others.iter().chain([
        &id,
        &apply::operation_id("", ""),
        &apply::operation_id("x", &long_step),
    ]) {
        assert!(pattern.is_match(id), "{id}");
        assert!(id.len() <= 128, "{id}");
    }
}

// ------------------------------------------------------------------ accounts

fn account_status(state: CreateAccountState) -> CreateAccountStatus {
    CreateAccountStatus::builder()
        .id("car-0123456789abcdef")
        .account_name("ml-dev")
        .state(state)
        .build()
}

/// DescribeCreateAccountStatus's answer: request `request` SUCCEEDED, as account 123456789012.
fn succeeded(request: &str) -> DescribeCreateAccountStatusOutput {
    DescribeCreateAccountStatusOutput::builder()
        .create_account_status(
            CreateAccountStatus::builder()
                .id(request)
                .state(CreateAccountState::Succeeded)
                .account_id("123456789012")
                .build(),
        )
        .build()
}

fn create_account_rule() -> Rule {
    mock!(Orgs::create_account).then_output(|| {
        CreateAccountOutput::builder()
            .create_account_status(account_status(CreateAccountState::InProgress))
            .build()
    })
}

#[tokio::test]
async fn account_creation_that_fails_names_the_account_and_the_reason() {
    let describe = mock!(Orgs::describe_create_account_status)
        .match_requests(|r| r.create_account_request_id() == Some("car-0123456789abcdef"))
        .sequence()
        .output(|| {
            DescribeCreateAccountStatusOutput::builder()
                .create_account_status(account_status(CreateAccountState::InProgress))
                .build()
        })
        .output(|| {
            DescribeCreateAccountStatusOutput::builder()
                .create_account_status(
                    CreateAccountStatus::builder()
                        .id("car-0123456789abcdef")
                        .state(CreateAccountState::Failed)
                        .failure_reason(CreateAccountFailureReason::EmailAlreadyExists)
                        .build(),
                )
                .build()
        })
        .build();
    // The email is taken, and by no request of this name (a lost answer would have left one):
    // not ours, so the failure stands.
    let aws = edge(&[&create_account_rule(), &describe, &no_earlier_requests()]);

    let err = apply::create_account(&aws, "ml-dev", "ml-dev@example.com", "e", fast())
        .await
        .unwrap_err();

    match &err {
        ApplyError::AccountFailed { name, reason } => {
            assert_eq!(name, "ml-dev");
            assert_eq!(reason, "EMAIL_ALREADY_EXISTS");
        }
        other => panic!("{other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("ml-dev") && message.contains("EMAIL_ALREADY_EXISTS"),
        "{message}"
    );
    assert_eq!(describe.num_calls(), 2);
}

#[tokio::test]
async fn account_creation_polls_until_it_succeeds_and_returns_the_id() {
    let describe = mock!(Orgs::describe_create_account_status)
        .match_requests(|r| r.create_account_request_id() == Some("car-0123456789abcdef"))
        .sequence()
        .output(|| {
            DescribeCreateAccountStatusOutput::builder()
                .create_account_status(account_status(CreateAccountState::InProgress))
                .build()
        })
        .times(2)
        .output(|| succeeded("car-0123456789abcdef"))
        .build();
    let aws = edge(&[&create_account_rule(), &describe]);

    let id = apply::create_account(&aws, "ml-dev", "ml-dev@example.com", "e", fast())
        .await
        .unwrap();

    assert_eq!(id, "123456789012");
    assert_eq!(describe.num_calls(), 3);
    assert_eq!(calls(&aws, "Organizations.CreateAccount"), 1);
}

#[tokio::test]
async fn a_new_account_is_created_then_moved_from_the_root_into_its_unit() {
    let describe = mock!(Orgs::describe_create_account_status)
        .then_output(|| succeeded("car-0123456789abcdef"));
    let moves: Arc<Mutex<Vec<MoveAccountInput>>> = Arc::default();
    let move_account = {
        let moves = moves.clone();
        mock!(Orgs::move_account).then_compute_output(move |req| {
            moves.lock().unwrap().push(req.clone());
            MoveAccountOutput::builder().build()
        })
    };
    let aws = edge(&[
        &create_account_rule(),
        &describe,
        &move_account,
        &no_earlier_requests(),
    ]);
    let live = LiveState {
        root_id: "r-root".into(),
        units: vec![LiveUnit {
            id: "ou-root-ml".into(),
            path: "/ml".into(),
            parent_id: "r-root".into(),
        }],
        ..Default::default()
    };
    let plan = plan_of(
        &[],
        vec![Change {
            after: Some(new_account("ml-dev", "/ml")),
            ..change(
                "account:ml-dev",
                ResourceType::Account,
                Action::Create,
                None,
                "not in the organization",
            )
        }],
    );

    let done = apply::organization(
        &aws,
        &plan,
        &live,
        "e",
        apply::AtOnce::default(),
        fast(),
        &apply::Silent,
    )
    .await
    .unwrap();

    assert_eq!(texts(&done), ["account:ml-dev"]);
    let moves = moves.lock().unwrap();
    let [m] = moves.as_slice() else {
        panic!("{moves:?}");
    };
    assert_eq!(m.account_id(), Some("123456789012"));
    assert_eq!(m.source_parent_id(), Some("r-root"));
    assert_eq!(m.destination_parent_id(), Some("ou-root-ml"));
}

/// ListCreateAccountStatus with nothing in progress or succeeded.
fn no_earlier_requests() -> Rule {
    mock!(Orgs::list_create_account_status).then_output(|| {
        aws_sdk_organizations::operation::list_create_account_status::ListCreateAccountStatusOutput::builder().build()
    })
}

/// `apply::organization` creating the accounts `names` (each `NAME@example.com`, under the
/// root) in an organization that has only its root; the addresses done, as text.
async fn create_new_accounts(
    aws: &Aws,
    names: &[&str],
    progress: &dyn Progress,
) -> Result<Vec<String>, ApplyError> {
    let live = LiveState {
        root_id: "r-root".into(),
        ..Default::default()
    };
    apply::organization(
        aws,
        &new_account_plan(names),
        &live,
        "e",
        apply::AtOnce::default(),
        fast(),
        progress,
    )
    .await
    .map(|done| texts(&done))
}

fn new_account(name: &str, unit: &str) -> estate::plan::Side {
    AccountSide {
        id: None,
        name: Some(name.into()),
        email: Some(format!("{name}@example.com")),
        unit: Some(unit.into()),
    }
    .into()
}

fn new_account_plan(names: &[&str]) -> Plan {
    plan_of(
        &[],
        names
            .iter()
            .map(|n| Change {
                after: Some(new_account(n, "/")),
                ..change(
                    &format!("account:{n}"),
                    ResourceType::Account,
                    Action::Create,
                    None,
                    "not in the organization",
                )
            })
            .collect(),
    )
}

/// A re-run after an apply cut off mid-creation: AWS still has the earlier request in
/// progress; estate waits for it and takes its account (same email, estate's tag) instead of
/// asking again. The same request made by someone else (no tag) is a conflict.
#[tokio::test]
async fn an_earlier_runs_creation_request_is_waited_for_not_repeated() {
    async fn rerun(
        tags: &'static [(&'static str, &'static str)],
    ) -> (Aws, Result<Vec<String>, ApplyError>, usize) {
        let earlier = mock!(Orgs::list_create_account_status).then_output(|| {
            aws_sdk_organizations::operation::list_create_account_status::ListCreateAccountStatusOutput::builder()
                .create_account_statuses(
                    CreateAccountStatus::builder()
                        .id("car-earlier")
                        .account_name("ml-dev")
                        .state(CreateAccountState::InProgress)
                        .build(),
                )
                .build()
        });
        let describe = mock!(Orgs::describe_create_account_status)
            .match_requests(|r| r.create_account_request_id() == Some("car-earlier"))
            .sequence()
            .output(|| {
                DescribeCreateAccountStatusOutput::builder()
                    .create_account_status(account_status(CreateAccountState::InProgress))
                    .build()
            })
            .output(|| succeeded("car-earlier"))
            .build();
        let describe_account = mock!(Orgs::describe_account).then_output(|| {
            aws_sdk_organizations::operation::describe_account::DescribeAccountOutput::builder()
                .account(
                    aws_sdk_organizations::types::Account::builder()
                        .id("123456789012")
                        .email("ML-DEV@example.com")
                        .build(),
                )
                .build()
        });
        let tagged = mock!(Orgs::list_tags_for_resource)
            .match_requests(|r| r.resource_id() == Some("123456789012"))
            .then_output(move || {
                aws_sdk_organizations::operation::list_tags_for_resource::ListTagsForResourceOutput::builder()
                    .set_tags(Some(
                        tags.iter()
                            .map(|(k, v)| {
                                aws_sdk_organizations::types::Tag::builder()
                                    .key(*k)
                                    .value(*v)
                                    .build()
                                    .unwrap()
                            })
                            .collect(),
                    ))
                    .build()
            });
        let aws = edge(&[
            &earlier,
            &describe,
            &describe_account,
            &tagged,
            &create_account_rule(),
        ]);
        let done = create_new_accounts(&aws, &["ml-dev"], &apply::Silent).await;
        let polls = describe.num_calls();
        (aws, done, polls)
    }

    let (aws, done, polls) = rerun(&[("estate:managed-by", "e")]).await;
    assert_eq!(done.unwrap(), ["account:ml-dev"]);
    assert_eq!(calls(&aws, "Organizations.CreateAccount"), 0);
    assert_eq!(polls, 2);

    let (aws, done, _) = rerun(&[("estate:managed-by", "another-estate")]).await;
    let err = done.unwrap_err().to_string();
    assert!(
        err.contains("conflict: account ml-dev") && err.contains("adopt: true"),
        "{err}"
    );
    assert_eq!(calls(&aws, "Organizations.CreateAccount"), 0);
}

/// AWS answers ConcurrentModificationException (and, for the creation quota,
/// ConstraintViolationException ACCOUNT_CREATION_RATE_LIMIT_EXCEEDED) when it is busy: both are
/// retried; the role the account is created with is the Estate's memberRole.
#[tokio::test]
async fn a_busy_organization_is_asked_again_and_the_member_role_named() {
    let create = mock!(Orgs::create_account)
        .match_requests(|r| r.role_name() == Some("OrganizationAccountAccessRole"))
        .sequence()
        .error(|| {
            aws_sdk_organizations::operation::create_account::CreateAccountError::ConcurrentModificationException(
                aws_sdk_organizations::types::error::ConcurrentModificationException::builder()
                    .message("busy")
                    .meta(meta("ConcurrentModificationException", "busy"))
                    .build(),
            )
        })
        .error(|| {
            aws_sdk_organizations::operation::create_account::CreateAccountError::ConstraintViolationException(
                // The reason is a member of its own; the message need not name it.
                aws_sdk_organizations::types::error::ConstraintViolationException::builder()
                    .message("You attempted to exceed the number of accounts that can be in progress at a time.")
                    .reason(aws_sdk_organizations::types::ConstraintViolationExceptionReason::AccountCreationRateLimitExceeded)
                    .meta(meta(
                        "ConstraintViolationException",
                        "You attempted to exceed the number of accounts that can be in progress at a time.",
                    ))
                    .build(),
            )
        })
        .output(|| {
            CreateAccountOutput::builder()
                .create_account_status(account_status(CreateAccountState::InProgress))
                .build()
        })
        .build();
    let describe = mock!(Orgs::describe_create_account_status)
        .then_output(|| succeeded("car-0123456789abcdef"));
    let aws = edge(&[&create, &describe, &no_earlier_requests()]);

    let done = create_new_accounts(&aws, &["ml-dev"], &apply::Silent)
        .await
        .unwrap();
    assert_eq!(done, ["account:ml-dev"]);
    assert_eq!(create.num_calls(), 3);
}

/// Accounts are created at once; every failure is reported with AWS's reason, not only the
/// first, and the accounts that succeeded are reported done.
#[tokio::test]
async fn every_failed_account_is_reported_with_its_reason() {
    let create = mock!(Orgs::create_account).then_compute_output(|r| {
        CreateAccountOutput::builder()
            .create_account_status(
                CreateAccountStatus::builder()
                    .id(format!("car-{}", r.account_name().unwrap()))
                    .state(CreateAccountState::InProgress)
                    .build(),
            )
            .build()
    });
    let describe = mock!(Orgs::describe_create_account_status).then_compute_output(|r| {
        let request = r.create_account_request_id().unwrap().to_string();
        let status = match request.as_str() {
            "car-good" => CreateAccountStatus::builder()
                .state(CreateAccountState::Succeeded)
                .account_id("123456789012"),
            "car-taken" => CreateAccountStatus::builder()
                .state(CreateAccountState::Failed)
                .failure_reason(CreateAccountFailureReason::EmailAlreadyExists),
            _ => CreateAccountStatus::builder()
                .state(CreateAccountState::Failed)
                .failure_reason(CreateAccountFailureReason::AccountLimitExceeded),
        };
        DescribeCreateAccountStatusOutput::builder()
            .create_account_status(status.id(request).build())
            .build()
    });
    let aws = edge(&[&create, &describe, &no_earlier_requests()]);
    let progress = Recorder::default();

    let err = create_new_accounts(&aws, &["good", "taken", "full"], &progress)
        .await
        .unwrap_err()
        .to_string();

    assert!(
        err.contains("taken: creation failed: EMAIL_ALREADY_EXISTS"),
        "{err}"
    );
    assert!(
        err.contains("full: creation failed: ACCOUNT_LIMIT_EXCEEDED"),
        "{err}"
    );
    assert_eq!(progress.done(), ["account:good"]);
}

// ------------------------------------------------------------------ the overrides tag

/// `base-dev` with one instance whose override changes: the set's overrides tag moves from
/// `old` to `new`. `other_reasons` adds a template change to the set's update.
fn overrides_moving(other_reasons: bool) -> (Desired, Plan) {
    let acct = account(0);
    let mut d = stack_set(
        "base",
        "dev",
        OperationPreferences::default(),
        vec![instance(&acct, REGION, &[("Size", "large")])],
    );
    d.tags
        .insert("estate:overrides-sha256".into(), "new".into());
    let reason = if other_reasons {
        format!(
            "changed: template; {}",
            estate::plan::diff::OVERRIDES_REASON
        )
    } else {
        format!("changed: {}", estate::plan::diff::OVERRIDES_REASON)
    };
    let set = |tags: BTreeMap<String, String>| -> estate::plan::Side {
        StackSetSide {
            name: "base-dev".into(),
            description: None,
            parameters: BTreeMap::new(),
            capabilities: Vec::new(),
            tags,
            permission_model: "SELF_MANAGED".into(),
            administration_role_arn: None,
            execution_role_name: None,
            auto_deployment: None,
            operation: None,
            template: String::new(),
            known_after_apply: Default::default(),
        }
        .into()
    };
    let live_tags = BTreeMap::from([
        ("estate:managed-by".to_string(), "e".to_string()),
        ("estate:overrides-sha256".to_string(), "old".to_string()),
    ]);
    let changes = vec![
        Change {
            hint: (!other_reasons).then_some(Hint::OverridesTagOnly),
            before: Some(set(live_tags)),
            after: Some(set(d.tags.clone())),
            ..change(
                "stackSet:base-dev",
                ResourceType::StackSet,
                Action::Update,
                Some("dev"),
                &reason,
            )
        },
        Change {
            before: Some(instance_side(
                "base-dev",
                &acct,
                REGION,
                &BTreeMap::from([("Size".to_string(), "small".to_string())]),
            )),
            after: Some(instance_side(
                "base-dev",
                &acct,
                REGION,
                &BTreeMap::from([("Size".to_string(), "large".to_string())]),
            )),
            ..change(
                &format!("stackInstance:base-dev/{acct}/{REGION}"),
                ResourceType::StackInstance,
                Action::Update,
                Some("dev"),
                "parameter overrides differ from live",
            )
        },
    ];
    (desired(vec![d]), plan_of(&["dev"], changes))
}

type Calls = Arc<Mutex<Vec<String>>>;

/// UpdateStackSet and UpdateStackInstances, recorded in order with what matters here.
fn recording_updates(calls: &Calls, instances_fail: bool) -> (Rule, Rule) {
    let (c1, c2) = (calls.clone(), calls.clone());
    let set = mock!(Cfn::update_stack_set).then_compute_output(move |req| {
        let tag = req
            .tags()
            .iter()
            .find(|t| t.key() == Some("estate:overrides-sha256"))
            .map_or("(none)", |t| t.value().unwrap_or_default());
        // Naming one instance with a template or parameters would make AWS mark every other
        // instance OUTDATED: such a call must keep both.
        if !req.accounts().is_empty() {
            assert_eq!(req.use_previous_template(), Some(true));
            assert!(req.template_body().is_none() && req.template_url().is_none());
            assert!(req.parameters().is_empty(), "{:?}", req.parameters());
        }
        c1.lock().unwrap().push(format!(
            "UpdateStackSet tag={tag} accounts={:?} regions={:?}",
            req.accounts(),
            req.regions()
        ));
        UpdateStackSetOutput::builder()
            .set_operation_id(req.operation_id().map(str::to_string))
            .build()
    });
    let instances = if instances_fail {
        mock!(Cfn::update_stack_instances).then_error(move || {
            c2.lock().unwrap().push("UpdateStackInstances".into());
            UpdateStackInstancesError::generic(meta("ValidationError", "stopped short"))
        })
    } else {
        mock!(Cfn::update_stack_instances).then_compute_output(move |req| {
            c2.lock().unwrap().push("UpdateStackInstances".into());
            UpdateStackInstancesOutput::builder()
                .set_operation_id(req.operation_id().map(str::to_string))
                .build()
        })
    };
    (set, instances)
}

/// Applies `overrides_moving(other_reasons)`, the instance update failing when told: the
/// report, and the update calls in order.
async fn apply_overrides_moving(
    other_reasons: bool,
    instances_fail: bool,
) -> (Report, Vec<String>) {
    let (desired, plan) = overrides_moving(other_reasons);
    let calls = Calls::default();
    let (set, instances) = recording_updates(&calls, instances_fail);
    let aws = edge(&[&set, &instances, &succeeded_operations()]);
    let report = apply::stack_sets(&aws, &plan, &desired, &options(), &apply::Silent).await;
    let calls = calls.lock().unwrap().clone();
    (report, calls)
}

#[tokio::test]
async fn the_overrides_tag_is_written_only_after_the_instances_carry_the_overrides() {
    let (report, calls) = apply_overrides_moving(false, false).await;

    assert_clean(&report);
    // Only the tag moves: no UpdateStackSet before, one naming a single instance after.
    assert_eq!(
        calls,
        [
            "UpdateStackInstances".to_string(),
            format!(
                "UpdateStackSet tag=new accounts=[\"{}\"] regions=[\"{REGION}\"]",
                account(0)
            ),
        ]
    );
}

#[tokio::test]
async fn with_other_changes_the_set_update_keeps_the_old_tag_until_the_instances_are_done() {
    let (report, calls) = apply_overrides_moving(true, false).await;

    assert_clean(&report);
    assert_eq!(
        calls,
        [
            "UpdateStackSet tag=old accounts=[] regions=[]".to_string(),
            "UpdateStackInstances".to_string(),
            format!(
                "UpdateStackSet tag=new accounts=[\"{}\"] regions=[\"{REGION}\"]",
                account(0)
            ),
        ]
    );
}

#[tokio::test]
async fn an_apply_stopped_before_the_instances_leaves_the_old_tag_so_the_next_plan_looks() {
    let (report, calls) = apply_overrides_moving(true, true).await;

    assert_eq!(report.failures.len(), 1, "{report:?}");
    assert_eq!(
        calls,
        [
            "UpdateStackSet tag=old accounts=[] regions=[]",
            "UpdateStackInstances"
        ],
        "the new tag is never written while an instance lacks the overrides"
    );
    assert!(!texts(&report.done).contains(&"stackSet:base-dev".to_string()));
}

/// A template bucket in another region than the home region is named as such (S3 answers
/// 301 with the bucket's region), never reported as an opaque redirect.
#[tokio::test]
async fn a_template_bucket_in_another_region_is_reported_clearly() {
    use aws_smithy_runtime_api::http::{Response, StatusCode};
    use aws_smithy_types::body::SdkBody;
    let head = mock!(aws_sdk_s3::Client::head_bucket).then_http_response(|| {
        let mut r = Response::new(StatusCode::try_from(301).unwrap(), SdkBody::empty());
        r.headers_mut().insert("x-amz-bucket-region", "eu-west-1");
        r
    });
    let aws = edge(&[&head]);
    let err = apply::templates::upload(
        &aws,
        "111111111111",
        "team-templates",
        "us-east-1",
        "Resources: {}",
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("template bucket team-templates is in eu-west-1, not us-east-1"),
        "{err}"
    );
}

/// A stack set of the same name created since the plan, not by this estate: CreateStackSet's
/// NameAlreadyExists is a conflict, never taken for the set an earlier run created.
#[tokio::test]
async fn a_stack_set_created_since_the_plan_by_someone_else_is_a_conflict() {
    let d = stack_set("base", "dev", OperationPreferences::default(), Vec::new());
    let desired = desired(vec![d]);
    let plan = plan_of(
        &["dev"],
        vec![change(
            "stackSet:base-dev",
            ResourceType::StackSet,
            Action::Create,
            Some("dev"),
            "stack set base-dev does not exist",
        )],
    );
    let create = mock!(Cfn::create_stack_set).then_error(|| {
        aws_sdk_cloudformation::operation::create_stack_set::CreateStackSetError::NameAlreadyExistsException(
            aws_sdk_cloudformation::types::error::NameAlreadyExistsException::builder()
                .message("The specified name is already in use.")
                .meta(meta("NameAlreadyExistsException", "The specified name is already in use."))
                .build(),
        )
    });
    let describe = mock!(Cfn::describe_stack_set).then_output(|| {
        aws_sdk_cloudformation::operation::describe_stack_set::DescribeStackSetOutput::builder()
            .stack_set(
                aws_sdk_cloudformation::types::StackSet::builder()
                    .stack_set_name("base-dev")
                    .build(),
            )
            .build()
    });
    let aws = edge(&[&create, &describe]);

    let report = apply::stack_sets(&aws, &plan, &desired, &options(), &apply::Silent).await;

    let [failure] = report.failures.as_slice() else {
        panic!("{:#?}", report);
    };
    assert!(
        failure
            .message
            .contains("conflict: stack set base-dev was created outside this estate"),
        "{}",
        failure.message
    );
    assert!(report.done.is_empty(), "{:?}", report.done);
}

/// DescribeStackSetOperation unanswered (HTTP 503) three times, more than the SDK's own
/// attempts, then SUCCEEDED: the wait asks again, and the step succeeds. Before, the operation
/// was reported FAILED although it had succeeded.
#[tokio::test]
async fn an_unanswered_poll_is_asked_again_not_reported_failed() {
    let desired = desired(vec![stack_set(
        "base",
        "dev",
        OperationPreferences::default(),
        vec![instance(&account(0), REGION, &[])],
    )]);
    let plan = plan_creating_instances(&["dev"], &desired);
    let requests = Requests::default();
    let describe = mock!(Cfn::describe_stack_set_operation)
        .sequence()
        .http_response(unavailable)
        .times(3)
        .output(|| operation(StackSetOperationStatus::Succeeded))
        .build();
    let aws = edge(&[&create_instances(&requests), &describe]);

    let report = apply::stack_sets(&aws, &plan, &desired, &options(), &apply::Silent).await;

    assert_clean(&report);
    assert_eq!(report.done.len(), 1);
    assert_eq!(describe.num_calls(), 4);
}

/// A poll AWS never answers again gives up with the outcome unknown, never FAILED.
#[tokio::test]
async fn a_poll_never_answered_says_the_outcome_is_unknown() {
    let desired = desired(vec![stack_set(
        "base",
        "dev",
        OperationPreferences::default(),
        vec![instance(&account(0), REGION, &[])],
    )]);
    let plan = plan_creating_instances(&["dev"], &desired);
    let requests = Requests::default();
    let describe = mock!(Cfn::describe_stack_set_operation).then_http_response(unavailable);
    let aws = edge(&[&create_instances(&requests), &describe]);

    let report = apply::stack_sets(&aws, &plan, &desired, &options(), &apply::Silent).await;

    let [failure] = report.failures.as_slice() else {
        panic!("{:#?}", report.failures)
    };
    assert!(
        failure.message.contains("outcome unknown") && !failure.message.contains("FAILED"),
        "{}",
        failure.message
    );
    assert!(failure.instances.is_empty());
}

/// HTTP 503, as CloudFormation answers when it fails itself (awsQuery XML).
fn unavailable() -> aws_smithy_runtime_api::http::Response {
    aws_smithy_runtime_api::http::Response::new(
        aws_smithy_runtime_api::http::StatusCode::try_from(503).unwrap(),
        aws_smithy_types::body::SdkBody::from(
            "<ErrorResponse><Error><Type>Receiver</Type><Code>ServiceUnavailable</Code>\
             <Message>Service unavailable</Message></Error></ErrorResponse>",
        ),
    )
}
