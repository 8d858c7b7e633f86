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

    // shared, then training; production (approval: manual) only when named.
    let (code, out, err) = run(&account, dir.path(), &["apply", ".", "--auto-approve"]);
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
