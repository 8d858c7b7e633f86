//! The source part of a pipeline, in the source account: what starts it (approvals in a
//! model package group estate creates, or uploads to a bucket estate creates) forwarded to
//! the tools account, the model artifacts' bucket and key readable by exactly the stages'
//! roles, and the role the pipeline's build reads the source with.

use super::cfn::{
    deny_insecure_transport, deny_other_keys, document, local_arn, retained_key, role, role_arn,
    role_trust, rule, service_trust, sub, tags, template,
};
use super::inputs::{MODELS_PREFIX, Source, Stage};
use crate::manifest::names::Names;
use serde_json::{Value, json};

/// The source account's part.
pub fn source_template(
    n: &Names,
    tools: &str,
    source_account: &str,
    source: &Source,
    stages: &[Stage],
) -> Value {
    let bus = sub(format!(
        "arn:${{AWS::Partition}}:events:${{AWS::Region}}:{tools}:event-bus/default"
    ));
    // Named from the account the stack is in, like the tools part's bucket.
    let bucket = source.bucket(n, "${AWS::AccountId}");
    let bucket_name = if bucket.contains("${") {
        sub(bucket.clone())
    } else {
        json!(bucket)
    };
    let bucket_arn = sub(format!("arn:${{AWS::Partition}}:s3:::{bucket}"));
    let objects = sub(format!("arn:${{AWS::Partition}}:s3:::{bucket}/*"));
    let models = match source {
        Source::Registry { .. } => objects.clone(),
        Source::Upload { .. } => sub(format!(
            "arn:${{AWS::Partition}}:s3:::{bucket}/{MODELS_PREFIX}*"
        )),
    };
    // Exactly the stages' roles: the deploy roles (which make the models) and the model
    // roles (which SageMaker reads the artifacts as).
    let mut deploy_roles = Vec::new();
    let mut readers = Vec::new();
    for s in stages {
        for a in &s.accounts {
            let deploy = role_arn(a, &n.deploy_role);
            deploy_roles.push(deploy.clone());
            readers.push(deploy);
            readers.push(role_arn(a, &n.stage_model_role(&s.environment)));
        }
    }
    let (event, what) = source.event();
    let mut resources = serde_json::Map::new();
    if source_account != tools {
        resources.insert(
            "ForwardRole".into(),
            role(
                n,
                &n.forward_role,
                format!(
                    "EventBridge forwards what starts the pipeline {} with this role",
                    n.pipeline
                ),
                service_trust(
                    "events.amazonaws.com",
                    Some(local_arn("events", &format!("rule/{}-forward", n.pipeline))),
                ),
                Some((
                    "forward-events",
                    vec![json!({
                        "Effect": "Allow",
                        "Action": "events:PutEvents",
                        "Resource": bus
                    })],
                )),
            ),
        );
        resources.insert(
            format!("Forward{event}"),
            rule(
                format!("{}-forward", n.pipeline),
                format!("{what} start the pipeline {}", n.pipeline),
                source.pattern(&bucket_name, None),
                ("tools", &bus),
                "ForwardRole",
            ),
        );
    }
    let mut registry_statements = Vec::new();
    match source {
        Source::Registry { group } => {
            registry_statements.push(json!({
                "Effect": "Allow",
                "Action": "sagemaker:ListModelPackages",
                // Takes no resource ARN.
                "Resource": "*"
            }));
            registry_statements.push(json!({
                "Effect": "Allow",
                "Action": ["sagemaker:DescribeModelPackage", "sagemaker:DescribeModelPackageGroup"],
                "Resource": [
                    local_arn("sagemaker", &format!("model-package-group/{}", group.to_ascii_lowercase())),
                    local_arn("sagemaker", &format!("model-package/{}/*", group.to_ascii_lowercase()))
                ]
            }));
            resources.insert(
                "ModelPackageGroup".into(),
                json!({
                    "Type": "AWS::SageMaker::ModelPackageGroup",
                    // The versions registered in it outlive the pipeline.
                    "DeletionPolicy": "RetainExceptOnCreate",
                    "UpdateReplacePolicy": "Retain",
                    "Properties": {
                        "ModelPackageGroupName": group,
                        "ModelPackageGroupDescription": format!("Models the pipeline {} deploys once approved", n.pipeline),
                        "ModelPackageGroupPolicy": document(vec![json!({
                            "Sid": "StageDeployRoles",
                            "Effect": "Allow",
                            "Principal": {"AWS": deploy_roles},
                            "Action": ["sagemaker:DescribeModelPackage", "sagemaker:DescribeModelPackageGroup", "sagemaker:ListModelPackages"],
                            "Resource": [
                                local_arn("sagemaker", &format!("model-package-group/{}", group.to_ascii_lowercase())),
                                local_arn("sagemaker", &format!("model-package/{}/*", group.to_ascii_lowercase()))
                            ]
                        })]),
                        "Tags": tags(&n.pipeline)
                    }
                }),
            );
        }
        Source::Upload { key, .. } => {
            // The build pins the uploaded version: it copies it under the models prefix,
            // which the stages read, so a later upload never changes what a stage deploys.
            registry_statements.push(json!({
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:GetObjectVersion"],
                "Resource": sub(format!("arn:${{AWS::Partition}}:s3:::{bucket}/{key}"))
            }));
            registry_statements.push(json!({
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject"],
                "Resource": models
            }));
            registry_statements.push(json!({
                "Effect": "Allow",
                "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                "Resource": {"Fn::GetAtt": ["ModelsKey", "Arn"]}
            }));
        }
    }
    resources.insert(
        "RegistryRole".into(),
        role(
            n,
            &n.registry_role,
            format!(
                "The pipeline {} reads what starts it with this role",
                n.pipeline
            ),
            role_trust(tools, &n.build_role),
            Some(("read-source", registry_statements)),
        ),
    );
    resources.insert(
        "ModelsKey".into(),
        retained_key(
            format!(
                "Encrypts the model artifacts of the pipeline {}",
                n.pipeline
            ),
            readers.clone(),
        ),
    );
    resources.insert(
        "ModelsKeyAlias".into(),
        json!({
            "Type": "AWS::KMS::Alias",
            "Properties": {"AliasName": n.models_key_alias, "TargetKeyId": {"Ref": "ModelsKey"}}
        }),
    );
    let mut bucket_properties = json!({
        "BucketName": bucket_name,
        "VersioningConfiguration": {"Status": "Enabled"},
        "BucketEncryption": {"ServerSideEncryptionConfiguration": [{
            "ServerSideEncryptionByDefault": {
                "SSEAlgorithm": "aws:kms",
                "KMSMasterKeyID": {"Fn::GetAtt": ["ModelsKey", "Arn"]}
            },
            "BucketKeyEnabled": true
        }]},
        "PublicAccessBlockConfiguration": {
            "BlockPublicAcls": true,
            "BlockPublicPolicy": true,
            "IgnorePublicAcls": true,
            "RestrictPublicBuckets": true
        },
        "Tags": tags(&n.pipeline)
    });
    if matches!(source, Source::Upload { .. }) {
        // An upload starts the pipeline through EventBridge.
        bucket_properties["NotificationConfiguration"] =
            json!({"EventBridgeConfiguration": {"EventBridgeEnabled": true}});
    }
    resources.insert(
        "ModelsBucket".into(),
        json!({
            "Type": "AWS::S3::Bucket",
            "DeletionPolicy": "RetainExceptOnCreate",
            "UpdateReplacePolicy": "Retain",
            "Properties": bucket_properties
        }),
    );
    resources.insert(
        "ModelsBucketPolicy".into(),
        json!({
            "Type": "AWS::S3::BucketPolicy",
            "Properties": {
                "Bucket": {"Ref": "ModelsBucket"},
                "PolicyDocument": document(vec![
                    deny_insecure_transport(&bucket_arn, &objects),
                    deny_other_keys(&objects, &n.models_key_alias, "ModelsKey"),
                    json!({
                        "Sid": "StageRoles",
                        "Effect": "Allow",
                        "Principal": {"AWS": readers},
                        "Action": "s3:GetObject",
                        "Resource": models
                    })
                ])
            }
        }),
    );
    // The group's ARN is known from its name; an output of it would be the only attribute
    // read from the group.
    let outputs = json!({
        "RegistryRoleArn": {"Value": {"Fn::GetAtt": ["RegistryRole", "Arn"]}},
        "ModelsBucketName": {"Value": {"Ref": "ModelsBucket"}},
        "ModelsKeyArn": {"Value": {"Fn::GetAtt": ["ModelsKey", "Arn"]}}
    });
    template(
        format!("estate: {what}, forwarded to the pipeline {}", n.pipeline),
        Value::Object(resources),
        outputs,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::tools::tests::{stages, tools_with};

    fn principals(v: &Value) -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|a| a["Fn::Sub"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn a_source_in_the_tools_account_needs_no_forwarding() {
        let n = Names::new("abalone");
        let registry = Source::Registry { group: "abalone" };
        let same = source_template(&n, "111111111111", "111111111111", &registry, &stages());
        let resources = same["Resources"].as_object().unwrap();
        assert!(!resources.contains_key("ForwardRole"));
        assert!(!resources.contains_key("ForwardApprovals"));
        let apart = source_template(&n, "111111111111", "222222222222", &registry, &stages());
        assert!(apart["Resources"]["ForwardApprovals"].is_object());
        let tools = tools_with("111111111111", registry);
        assert!(tools["Resources"].get("EventsFromSource").is_none());
        assert!(tools["Resources"]["StartOnApprovals"].is_object());
        assert!(tools["Resources"]["StartOnSource"].is_object());
    }

    #[test]
    fn the_group_and_the_artifacts_grant_exactly_the_stage_roles() {
        let n = Names::new("abalone");
        let registry = Source::Registry { group: "abalone" };
        let t = source_template(&n, "111111111111", "222222222222", &registry, &stages());
        let policy = &t["Resources"]["ModelPackageGroup"]["Properties"]["ModelPackageGroupPolicy"]
            ["Statement"][0];
        let role = |a: &str, r: &str| format!("arn:${{AWS::Partition}}:iam::{a}:role/{r}");
        assert_eq!(
            principals(&policy["Principal"]["AWS"]),
            [
                role("333333333333", "estate-abalone-deploy"),
                role("444444444444", "estate-abalone-deploy"),
                role("555555555555", "estate-abalone-deploy"),
            ]
        );
        let readers = [
            role("333333333333", "estate-abalone-deploy"),
            role("333333333333", "estate-abalone-staging-model"),
            role("444444444444", "estate-abalone-deploy"),
            role("444444444444", "estate-abalone-production-model"),
            role("555555555555", "estate-abalone-deploy"),
            role("555555555555", "estate-abalone-production-model"),
        ];
        let bucket =
            &t["Resources"]["ModelsBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"];
        assert_eq!(principals(&bucket[2]["Principal"]["AWS"]), readers);
        assert_eq!(bucket[2]["Action"], "s3:GetObject", "read only");
        let key = &t["Resources"]["ModelsKey"]["Properties"]["KeyPolicy"]["Statement"];
        assert_eq!(principals(&key[1]["Principal"]["AWS"]), readers);
        assert_eq!(key[1]["Action"], json!(["kms:Decrypt", "kms:DescribeKey"]));
        assert_eq!(
            t["Resources"]["ModelsBucket"]["Properties"]["BucketName"]["Fn::Sub"],
            "estate-abalone-${AWS::AccountId}-models"
        );
    }

    #[test]
    fn an_upload_source_forwards_uploads_of_its_key_and_pins_versions_under_a_prefix() {
        let n = Names::new("abalone");
        let upload = Source::Upload {
            bucket: "abalone-models",
            key: "submit/model.tar.gz",
        };
        let t = source_template(&n, "111111111111", "222222222222", &upload, &stages());
        assert!(t["Resources"].get("ModelPackageGroup").is_none());
        let pattern = &t["Resources"]["ForwardUploads"]["Properties"]["EventPattern"];
        assert_eq!(
            pattern["detail"]["object"]["key"],
            json!(["submit/model.tar.gz"])
        );
        assert_eq!(
            t["Resources"]["ModelsBucket"]["Properties"]["NotificationConfiguration"]["EventBridgeConfiguration"]
                ["EventBridgeEnabled"],
            true
        );
        let bucket =
            &t["Resources"]["ModelsBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"];
        assert_eq!(
            bucket[2]["Resource"]["Fn::Sub"],
            "arn:${AWS::Partition}:s3:::abalone-models/estate/models/*",
            "stages read pinned copies, not the uploads"
        );
    }
}
