//! Stack-set outputs as other stack sets' parameters (`${stackSet:NAME.outputs.OUTPUT}`),
//! end to end against the emulator: the cross-account-pipeline example on a fresh
//! organization plans its consumers "(known after apply)", applies the shared account first,
//! passes the outputs its stack really has to the training and production accounts' stacks,
//! and plans nothing after, reading only the outputs it uses.

use crate::support::builders::copy_of;
use crate::support::emulator::{management_account, ok, stack_set_stack};
use crate::support::run::{json_changes, run, stats_of};
use std::collections::BTreeMap;

const EXAMPLE: &str = "examples/environments/cross-account-pipeline";

/// The outputs, or the parameters, of the stack of `set` in the account `config` acts in.
async fn stack_values(
    config: &aws_config::SdkConfig,
    set: &str,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let cfn = aws_sdk_cloudformation::Client::new(config);
    let name = stack_set_stack(config, set).await;
    let stack = ok(cfn.describe_stacks().stack_name(name).send().await)
        .stacks
        .unwrap_or_default()
        .remove(0);
    let outputs = stack
        .outputs()
        .iter()
        .map(|o| {
            (
                o.output_key().unwrap_or_default().to_string(),
                o.output_value().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let parameters = stack
        .parameters()
        .iter()
        .map(|p| {
            (
                p.parameter_key().unwrap_or_default().to_string(),
                p.parameter_value().unwrap_or_default().to_string(),
            )
        })
        .collect();
    (outputs, parameters)
}

#[tokio::test]
async fn the_shared_accounts_outputs_reach_the_stage_accounts_and_replan_empty() {
    let account = management_account().await;
    let dir = copy_of(EXAMPLE);

    let plan = json_changes(&account, dir.path(), "plan", &[]);
    let change = |address: &str| {
        plan["changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["address"] == address)
            .unwrap_or_else(|| panic!("no {address} in {plan}"))
            .clone()
    };
    for consumer in ["training-roles-training", "production-roles-production"] {
        let after = &change(&format!("stackSet:{consumer}"))["after"];
        assert_eq!(after["parameters"]["ArtifactKeyArn"], "(known after apply)");
        assert_eq!(
            after["knownAfterApply"],
            serde_json::json!(["ArtifactBucket", "ArtifactKeyArn", "PipelineRoleArn"])
        );
    }
    assert!(
        change("stackSet:artifact-store-shared")["after"]
            .get("knownAfterApply")
            .is_none()
    );

    // shared, then training; production (approval: manual) only when named. From a saved
    // plan: the outputs it could not know are read when apply reaches the consumers.
    let (code, out, err) = run(&account, dir.path(), &["plan", ".", "--out", "saved.plan"]);
    assert_eq!(code, 2, "{out}{err}");
    let (code, out, err) = run(
        &account,
        dir.path(),
        &["apply", ".", "--plan", "saved.plan", "--auto-approve"],
    );
    assert_eq!(code, 0, "{out}{err}");
    let at = |err: &str, needle: &str| {
        err.find(needle)
            .unwrap_or_else(|| panic!("no `{needle}` in {err}"))
    };
    assert!(
        at(&err, "stackInstance:artifact-store-shared/")
            < at(&err, "stackSet:training-roles-training: CreateStackSet")
    );
    let (code, out, err) = run(
        &account,
        dir.path(),
        &["apply", ".", "--env", "production", "--auto-approve"],
    );
    assert_eq!(code, 0, "{out}{err}");

    // What the consumers' stacks received is what the shared account's stack answers.
    let ids = account.ids().await;
    let (shared, _) = stack_values(
        &account.member(&ids["shared"]).await,
        "artifact-store-shared",
    )
    .await;
    assert!(
        shared["ArtifactKeyArn"]
            .starts_with(&format!("arn:aws:kms:us-east-1:{}:key/", ids["shared"])),
        "{shared:?}"
    );
    // A generated bucket name as S3 takes it: lower case, at most 63 characters.
    let bucket = &shared["ArtifactBucket"];
    assert!(
        bucket.len() <= 63 && *bucket == bucket.to_lowercase(),
        "{bucket}"
    );
    assert!(
        shared["PipelineRoleArn"].starts_with(&format!("arn:aws:iam::{}:role/", ids["shared"])),
        "{shared:?}"
    );
    for (stage, set) in [
        ("training", "training-roles-training"),
        ("production", "production-roles-production"),
    ] {
        let (_, parameters) = stack_values(&account.member(&ids[stage]).await, set).await;
        for key in ["ArtifactKeyArn", "ArtifactBucket", "PipelineRoleArn"] {
            assert_eq!(parameters[key], shared[key], "{stage} {key}");
        }
        assert_eq!(parameters["SharedAccountId"], ids["shared"]);
    }

    // Nothing left to do; the stacks described are the floor's: the administration role's
    // (bootstrapped) and the one producer instance's.
    let (code, out, err) = run(&account, dir.path(), &["plan", ".", "--stats"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Live state matches the manifest"), "{out}");
    let stats = stats_of(&err);
    assert_eq!(
        stats.get("CloudFormation.DescribeStacks"),
        Some(&2),
        "{err}"
    );
    assert!(!err.contains("above the floor"), "{err}");
}

const CHAIN: &[(&str, &str)] = &[
    (
        "estate.yaml",
        "apiVersion: estate/v1
kind: Estate
metadata: {name: chain}
spec:
  homeRegion: us-east-1
  regions: [us-east-1]
  promotion: [dev]
  include: [all.yaml]
",
    ),
    (
        "all.yaml",
        "apiVersion: estate/v1
kind: Organization
metadata: {name: chain}
spec:
  accounts:
    - {name: a, email: chain-a@example.com}
    - {name: b, email: chain-b@example.com}
---
apiVersion: estate/v1
kind: Environment
metadata: {name: dev}
spec:
  targets: {accounts: [a, b]}
---
apiVersion: estate/v1
kind: StackSet
metadata: {name: topic}
spec:
  template: topic.yaml
  environments: [dev]
---
apiVersion: estate/v1
kind: StackSet
metadata: {name: relay}
spec:
  template: relay.yaml
  environments: [dev]
  parameters: {TopicArn: '${stackSet:topic.outputs.TopicArn@a}'}
---
apiVersion: estate/v1
kind: StackSet
metadata: {name: reader}
spec:
  template: reader.yaml
  environments: [dev]
  overrides:
    - accounts: [a, b]
      parameters:
        Relayed: '${stackSet:relay.outputs.Relayed}'
        Owner: '${stackSet:relay.outputs.Owner}'
",
    ),
    (
        "topic.yaml",
        "Resources:
  Topic: {Type: AWS::SNS::Topic}
Outputs:
  TopicArn: {Value: !Ref Topic}
",
    ),
    (
        "relay.yaml",
        "Parameters:
  TopicArn: {Type: String}
Resources:
  Queue: {Type: AWS::SQS::Queue}
Outputs:
  Relayed: {Value: !Ref TopicArn}
  Owner: {Value: !Ref AWS::AccountId}
",
    ),
    (
        "reader.yaml",
        "Parameters:
  Relayed: {Type: String, Default: none}
  Owner: {Type: String, Default: none}
Resources:
  Queue: {Type: AWS::SQS::Queue}
",
    ),
];

/// Three stack sets of one environment in a chain (topic → relay → reader): applied in three
/// waves, each reading the outputs its producers just made, an override taking the producer's
/// instance in its own account; a changed producer makes its consumer's value "(known after
/// apply)" until apply reads it again.
#[tokio::test]
async fn a_chain_in_one_environment_applies_in_waves_with_each_instances_own_outputs() {
    let account = management_account().await;
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in CHAIN {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let (code, out, err) = run(&account, dir.path(), &["apply", ".", "--auto-approve"]);
    assert_eq!(code, 0, "{out}{err}");
    let at = |needle: &str| {
        err.find(needle)
            .unwrap_or_else(|| panic!("no `{needle}` in {err}"))
    };
    assert!(at("stackInstance:topic-dev/") < at("stackSet:relay-dev: CreateStackSet"));
    assert!(at("stackInstance:relay-dev/") < at("stackSet:reader-dev: CreateStackSet"));

    let ids = account.ids().await;
    let (topic, _) = stack_values(&account.member(&ids["a"]).await, "topic-dev").await;
    for name in ["a", "b"] {
        let (_, reader) = stack_values(&account.member(&ids[name]).await, "reader-dev").await;
        assert_eq!(reader["Relayed"], topic["TopicArn"], "{name}");
        assert_eq!(
            reader["Owner"], ids[name],
            "{name}: its own account's relay"
        );
    }
    let (code, out, err) = run(&account, dir.path(), &["plan", "."]);
    assert_eq!(code, 0, "{out}{err}");

    // The producer changes: its consumer's value is not known until apply reads it again.
    let topic_yaml = dir.path().join("topic.yaml");
    let changed = std::fs::read_to_string(&topic_yaml).unwrap().replace(
        "{Type: AWS::SNS::Topic}",
        "{Type: AWS::SNS::Topic, Properties: {DisplayName: relayed}}",
    );
    std::fs::write(&topic_yaml, changed).unwrap();
    let plan = json_changes(&account, dir.path(), "plan", &[]);
    let relay = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == "stackSet:relay-dev")
        .unwrap_or_else(|| panic!("relay-dev updated: {plan}"));
    assert_eq!(
        relay["after"]["parameters"]["TopicArn"],
        "(known after apply)"
    );
    let (code, out, err) = run(&account, dir.path(), &["apply", ".", "--auto-approve"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = run(&account, dir.path(), &["plan", "."]);
    assert_eq!(code, 0, "{out}{err}");
}
