//! Model pipelines end to end against the emulator: the example compiles to stack sets that
//! create the stage roles, the source forwarding and the tools part in their accounts, the
//! source bundle lands encrypted in the artifact bucket, and the plan is empty after. (moto's
//! CloudFormation skips CodePipeline, CodeBuild and policy resources it does not know; their
//! content is checked by the unit tests of `estate::pipeline` and by cfn-lint.)

use crate::support::builders::{copy_of, edit_all, live_with_ids, manifest};
use crate::support::emulator::{TestAccount, management_account, s3, stack_set_stack};
use crate::support::run::{change_fields, json_changes, run};
use std::collections::BTreeSet;
use std::io::Read;

const EXAMPLE: &str = "examples/environments/model-pipeline";

#[test]
fn an_account_in_two_stages_is_refused_at_plan_time() {
    let dir = copy_of(EXAMPLE);
    edit_all(
        dir.path(),
        "environments.yaml",
        "targets: {units: [/ml/production]}",
        "targets: {units: [/ml/production], accounts: [staging]}",
    );
    let m = manifest(dir.path());
    let err = estate::plan::desired::resolve(&m, &live_with_ids(&m), &[]).unwrap_err();
    assert!(
        err.to_string()
            .contains("is a target of both stage `staging` and stage `production`"),
        "{err}"
    );
}

/// Logical ids of the resources the stack of `stack_set` holds in account `id`.
async fn stack_resources(account: &TestAccount, id: &str, stack_set: &str) -> BTreeSet<String> {
    let config = account.member(id).await;
    let cfn = aws_sdk_cloudformation::Client::new(&config);
    let stack = stack_set_stack(&config, stack_set).await;
    cfn.list_stack_resources()
        .stack_name(stack)
        .send()
        .await
        .unwrap()
        .stack_resource_summaries()
        .iter()
        .filter_map(|r| r.logical_resource_id().map(str::to_string))
        .filter(|l| !l.is_empty())
        .collect()
}

#[tokio::test]
async fn the_model_pipeline_compiles_to_stack_sets_applies_stage_by_stage_and_replans_empty() {
    let account = management_account().await;
    let dir = copy_of(EXAMPLE);

    let plan = json_changes(&account, dir.path(), "plan", &[]);
    let addresses: Vec<(&str, &str)> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["environment"].is_string())
        .map(|c| {
            (
                c["environment"].as_str().unwrap(),
                c["address"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        addresses,
        [
            ("staging", "stackSet:pipeline-abalone-deploy-staging"),
            (
                "staging",
                "stackInstance:pipeline-abalone-deploy-staging/staging (known after apply)/us-east-1"
            ),
            ("production", "stackSet:pipeline-abalone-deploy-production"),
            (
                "production",
                "stackInstance:pipeline-abalone-deploy-production/production (known after apply)/us-east-1"
            ),
            ("production", "stackSet:pipeline-abalone-deploy-source"),
            (
                "production",
                "stackInstance:pipeline-abalone-deploy-source/data-science (known after apply)/us-east-1"
            ),
            ("production", "stackSet:pipeline-abalone-deploy"),
            (
                "production",
                "stackInstance:pipeline-abalone-deploy/tools (known after apply)/us-east-1"
            ),
            ("production", "pipeline:abalone-deploy"),
        ]
    );

    // Staging first; production (approval: manual) only when named.
    let (code, out, err) = run(&account, dir.path(), &["apply", ".", "--auto-approve"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!err.contains("pipeline:abalone-deploy"), "{err}");
    let (code, out, err) = run(
        &account,
        dir.path(),
        &["apply", ".", "--env", "production", "--auto-approve"],
    );
    assert_eq!(code, 0, "{out}{err}");
    // The tools part waits for the roles its policies name.
    let at = |needle: &str| {
        err.find(needle)
            .unwrap_or_else(|| panic!("no `{needle}` in {err}"))
    };
    assert!(
        at("stackInstance:pipeline-abalone-deploy-production/")
            < at("stackSet:pipeline-abalone-deploy: CreateStackSet")
    );
    assert!(
        at("stackInstance:pipeline-abalone-deploy-source/")
            < at("stackSet:pipeline-abalone-deploy: CreateStackSet")
    );
    assert!(
        at("stackSet:pipeline-abalone-deploy: CreateStackSet")
            < at("pipeline:abalone-deploy: done")
    );
    let (code, out, err) = run(&account, dir.path(), &["plan", "."]);
    assert_eq!(code, 0, "{out}{err}");
    // Drift detection covers the pipeline's stack sets like any other.
    let (code, out, err) = run(&account, dir.path(), &["drift", "."]);
    assert_eq!(code, 0, "{out}{err}");

    let ids = account.ids().await;
    for (stage, tested) in [("staging", true), ("production", false)] {
        let mut expected: BTreeSet<String> = ["ActionRole", "DeployRole", "Boundary", "ModelRole"]
            .map(str::to_string)
            .into();
        if tested {
            expected.insert("TestRole".into());
        }
        assert_eq!(
            stack_resources(
                &account,
                &ids[stage],
                &format!("pipeline-abalone-deploy-{stage}")
            )
            .await,
            expected,
            "{stage}"
        );
    }
    let source = stack_resources(
        &account,
        &ids["data-science"],
        "pipeline-abalone-deploy-source",
    )
    .await;
    for r in [
        "ForwardRole",
        "ForwardApprovals",
        "RegistryRole",
        "ModelsKey",
        "ModelsBucket",
    ] {
        assert!(source.contains(r), "{r} in {source:?}");
    }
    let tools = stack_resources(&account, &ids["tools"], "pipeline-abalone-deploy").await;
    for r in [
        "ArtifactKey",
        "ArtifactKeyAlias",
        "ArtifactBucket",
        "PipelineRole",
        "BuildRole",
        "EventsRole",
        "StartOnApprovals",
        "StartOnSource",
    ] {
        assert!(tools.contains(r), "{r} in {tools:?}");
    }

    // The source bundle: in the tools account's artifact bucket, encrypted with the key.
    let s3 = s3(&account.member(&ids["tools"]).await);
    let bucket = format!("estate-abalone-deploy-{}", ids["tools"]);
    let listed = s3.list_objects_v2().bucket(&bucket).send().await.unwrap();
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    let [key] = keys.as_slice() else {
        panic!("one bundle: {keys:?}")
    };
    let object = s3
        .get_object()
        .bucket(&bucket)
        .key(*key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        object.server_side_encryption().map(|s| s.as_str()),
        Some("aws:kms")
    );
    assert!(
        object
            .ssekms_key_id()
            .is_some_and(|k| k.ends_with("alias/estate-abalone-deploy")),
        "{:?}",
        object.ssekms_key_id()
    );
    let bytes = object.body.collect().await.unwrap().into_bytes();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    let mut names: Vec<String> = (0..zip.len())
        .map(|i| zip.by_index(i).unwrap().name().to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "stages/production.json",
            "stages/staging.json",
            "template.json",
            "tests/staging/buildspec.yml"
        ]
    );
    let mut staging = String::new();
    zip.by_name("stages/staging.json")
        .unwrap()
        .read_to_string(&mut staging)
        .unwrap();
    let staging: serde_json::Value = serde_json::from_str(&staging).unwrap();
    assert_eq!(
        staging["Parameters"],
        serde_json::json!({"EnvType": "staging"})
    );
    assert_eq!(staging["Tags"]["estate:environment"], "staging");

    // A change to what a stage deploys is a new bundle, and the pipeline reads it.
    edit_all(
        dir.path(),
        "environments.yaml",
        "EnvType: prod}",
        "EnvType: staging}",
    );
    let plan = json_changes(&account, dir.path(), "plan", &["--env", "production"]);
    let changed: Vec<(&str, &str)> = change_fields(&plan, "address", "action");
    assert_eq!(
        changed,
        [
            ("stackSet:pipeline-abalone-deploy", "update"),
            ("pipeline:abalone-deploy", "create")
        ],
        "the pipeline's source key moves to the new bundle"
    );
    let (code, out, err) = run(
        &account,
        dir.path(),
        &["apply", ".", "--env", "production", "--auto-approve"],
    );
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = run(&account, dir.path(), &["plan", "."]);
    assert_eq!(code, 0, "{out}{err}");
}

/// The artifact bucket is kept when a pipeline is deleted; one of the same name left behind
/// would make the pipeline's creation fail, so the plan says so first.
#[tokio::test]
async fn a_leftover_artifact_bucket_is_reported_before_the_pipeline_is_created() {
    let account = management_account().await;
    let dir = copy_of(EXAMPLE);
    let (code, out, err) = run(&account, dir.path(), &["apply", ".", "--auto-approve"]);
    assert_eq!(code, 0, "{out}{err}");
    let tools = account.ids().await["tools"].clone();
    let s3 = s3(&account.member(&tools).await);
    let bucket = format!("estate-abalone-deploy-{tools}");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();

    let (code, out, err) = run(&account, dir.path(), &["plan", ".", "--env", "production"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        out.contains(&format!("the artifact bucket {bucket} already exists")),
        "{out}"
    );
}

/// A pipeline's tools part belongs to its last stage; when a stage is added after it, a plan
/// of the earlier environment alone (what `apply` runs up to a manual gate) must neither
/// prune it nor call it an orphan.
#[tokio::test]
async fn the_tools_part_moving_to_a_new_last_stage_is_never_an_orphan() {
    let account = management_account().await;
    let dir = copy_of(EXAMPLE);
    let estate = dir.path().join("estate.yaml");
    let text = std::fs::read_to_string(&estate).unwrap();
    std::fs::write(
        &estate,
        text.replace("  include:", "  prune: true\n  include:"),
    )
    .unwrap();
    let pipeline = dir.path().join("pipelines/abalone.yaml");
    let full = std::fs::read_to_string(&pipeline).unwrap();
    let production = "    - {environment: production, approval: manual}\n";
    assert!(full.contains(production));
    std::fs::write(&pipeline, full.replace(production, "")).unwrap();
    let (code, out, err) = run(&account, dir.path(), &["apply", ".", "--auto-approve"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("pipeline:abalone-deploy: done"), "{err}");

    std::fs::write(&pipeline, full).unwrap();
    let (code, out, err) = run(
        &account,
        dir.path(),
        &["plan", ".", "--env", "staging", "--format", "json"],
    );
    assert!(code == 0 || code == 2, "{out}{err}");
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        plan["changes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["action"] != "delete"),
        "{plan:#}"
    );
    assert!(
        plan["findings"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|f| f["kind"] != "orphan"),
        "{plan:#}"
    );
    // The production plan takes it over: the set moves there, with its new stage.
    let plan = json_changes(&account, dir.path(), "plan", &["--env", "production"]);
    let tools = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == "stackSet:pipeline-abalone-deploy")
        .unwrap_or_else(|| panic!("{plan:#}"));
    assert_eq!(tools["action"], "update", "{tools:#}");
}
