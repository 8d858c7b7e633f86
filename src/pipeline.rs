//! Model pipelines compiled to CloudFormation: the templates of the stack sets that deploy a
//! `kind: Pipeline`, and the source bundle its CodePipeline reads. Pure: no I/O.
//!
//! A pipeline `p` with tools account `T`, source account `S` and stages `E1…En` becomes:
//! - `pipeline-p-Ei` (environment `Ei`, in each target account of `Ei`): the cross-account
//!   role the pipeline assumes there (`estate-p-action`) and the role CloudFormation deploys
//!   the stage template with (`estate-p-deploy`);
//! - `pipeline-p-source` (in `S`): an EventBridge rule forwarding approvals of the model
//!   package group to `T`, and the role that lets the pipeline's build read the registry;
//! - `pipeline-p` (in `T`, after the others: its key, bucket and event bus policies name their
//!   roles, and AWS rejects a policy naming a principal that does not exist): the KMS key,
//!   the artifact bucket, the CodePipeline, its CodeBuild projects and the trigger rule.
//!
//! Trust policies name the tools account's role through `aws:PrincipalArn` (a trust policy
//! may name a role that does not exist yet that way); key and bucket policies name exactly the
//! roles, never a whole account other than the key's own.

use crate::template::Template;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

// The naming rules live with the manifest, which validates them; re-exported for callers.
pub use crate::manifest::names::{
    MAX_NAME, MODEL_PACKAGE_PARAMETER, Names, bucket, source_stack_set, stack_set_names,
    stage_stack_set, tools_stack_set,
};

/// Tag on the pipeline's stack sets naming the pipeline.
pub const TAG_PIPELINE: &str = "estate:pipeline";
/// Where source bundles are kept in the artifact bucket.
pub const SOURCE_PREFIX: &str = "estate/source-";

/// One stage as the tools template needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub environment: String,
    /// Target account ids (or "(known after apply)" at plan time).
    pub accounts: Vec<String>,
    pub test: bool,
    pub manual_approval: bool,
}

/// Everything the tools template is built from.
#[derive(Debug, Clone, PartialEq)]
pub struct Tools<'a> {
    pub names: &'a Names,
    pub tools: &'a str,
    pub source_account: &'a str,
    pub model_package_group: &'a str,
    pub region: &'a str,
    pub stages: &'a [Stage],
    /// Capabilities the stage template needs from CloudFormation.
    pub capabilities: &'a [String],
    /// Whether the stage template takes the approved model package's ARN.
    pub takes_model_package: bool,
    /// The source bundle's key in the artifact bucket.
    pub source_key: &'a str,
}

fn sub(text: String) -> Value {
    json!({"Fn::Sub": text})
}

fn role_arn(account: &str, name: &str) -> Value {
    sub(format!(
        "arn:${{AWS::Partition}}:iam::{account}:role/{name}"
    ))
}

fn document(statements: Vec<Value>) -> Value {
    json!({"Version": "2012-10-17", "Statement": statements})
}

fn service_trust(service: &str) -> Value {
    document(vec![json!({
        "Effect": "Allow",
        "Principal": {"Service": service},
        "Action": "sts:AssumeRole"
    })])
}

/// Trust in exactly one role of another account, which need not exist yet.
fn role_trust(account: &str, role: &str) -> Value {
    document(vec![json!({
        "Effect": "Allow",
        "Principal": {"AWS": sub(format!("arn:${{AWS::Partition}}:iam::{account}:root"))},
        "Action": "sts:AssumeRole",
        "Condition": {"ArnEquals": {"aws:PrincipalArn": role_arn(account, role)}}
    })])
}

/// An IAM role of the pipeline `n`, with its inline policy when it has one.
fn role(
    n: &Names,
    name: &str,
    description: String,
    trust: Value,
    policy: Option<(&str, Vec<Value>)>,
) -> Value {
    let mut properties = json!({
        "RoleName": name,
        "Description": description,
        "AssumeRolePolicyDocument": trust,
        "Tags": tags(&n.pipeline)
    });
    if let Some((policy_name, statements)) = policy {
        properties["Policies"] =
            json!([{"PolicyName": policy_name, "PolicyDocument": document(statements)}]);
    }
    json!({"Type": "AWS::IAM::Role", "Properties": properties})
}

/// An EventBridge rule sending what matches `pattern` to `target`, as the role `role` (a
/// logical id of the same template).
fn rule(
    name: String,
    description: String,
    pattern: Value,
    target: (&str, &Value),
    role: &str,
) -> Value {
    json!({
        "Type": "AWS::Events::Rule",
        "Properties": {
            "Name": name,
            "Description": description,
            "EventPattern": pattern,
            "State": "ENABLED",
            "Targets": [{
                "Id": target.0,
                "Arn": target.1,
                "RoleArn": {"Fn::GetAtt": [role, "Arn"]}
            }]
        }
    })
}

fn tags(pipeline: &str) -> Value {
    json!([{"Key": TAG_PIPELINE, "Value": pipeline}])
}

fn template(description: String, resources: Value, outputs: Value) -> Value {
    json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": description,
        "Resources": resources,
        "Outputs": outputs,
    })
}

/// A generated template as the rest of estate sees templates.
pub fn to_template(body: &Value) -> Template {
    let text = serde_json::to_string_pretty(body).expect("a JSON value serializes");
    Template::parse(text.as_bytes()).expect("generated templates are well-formed")
}

/// The IAM service prefix of a CloudFormation resource type (`AWS::SageMaker::Endpoint` →
/// `sagemaker`), for the deploy role; `None` for types that need no service permission.
fn service_prefix(resource_type: &str) -> Option<String> {
    let mut parts = resource_type.split("::");
    if parts.next()? != "AWS" {
        return None;
    }
    let service = parts.next()?;
    let prefix = match service {
        "CloudFormation" => "cloudformation",
        "ApplicationAutoScaling" => "application-autoscaling",
        "CertificateManager" => "acm",
        "Cognito" => "cognito-idp",
        "ElasticLoadBalancing" | "ElasticLoadBalancingV2" => "elasticloadbalancing",
        "StepFunctions" => "states",
        "Logs" => "logs",
        "CloudWatch" => "cloudwatch",
        other => return Some(other.to_ascii_lowercase()),
    };
    Some(prefix.to_string())
}

/// The roles in each target account of a stage.
pub fn stage_template(n: &Names, tools: &str, bucket: &str, deployed: &Template) -> Value {
    let services: BTreeSet<String> = deployed
        .resource_types()
        .filter_map(|(t, _)| service_prefix(t))
        .collect();
    let mut deploy_actions: Vec<String> = services.iter().map(|s| format!("{s}:*")).collect();
    if !services.contains("iam") {
        // Models and endpoints run as roles of the account, which the stack passes.
        deploy_actions.push("iam:PassRole".into());
    }
    if services.contains("application-autoscaling") {
        // Target tracking creates CloudWatch alarms with the caller's rights.
        deploy_actions.extend(
            [
                "cloudwatch:DeleteAlarms",
                "cloudwatch:DescribeAlarms",
                "cloudwatch:PutMetricAlarm",
            ]
            .map(str::to_string),
        );
    }
    deploy_actions.sort();
    deploy_actions.dedup();
    let mut deploy_statements = vec![json!({
        "Effect": "Allow",
        "Action": deploy_actions,
        "Resource": "*"
    })];
    if services.contains("application-autoscaling") {
        // The first scalable target of an account creates its service-linked role.
        deploy_statements.push(json!({
            "Effect": "Allow",
            "Action": "iam:CreateServiceLinkedRole",
            "Resource": sub("arn:${AWS::Partition}:iam::*:role/aws-service-role/sagemaker.application-autoscaling.amazonaws.com/*".into())
        }));
    }
    if services.is_empty() {
        deploy_statements = vec![json!({
            "Effect": "Allow",
            "Action": "iam:PassRole",
            "Resource": sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:role/*".into())
        })];
    }
    let action_role = role(
        n,
        &n.action_role,
        format!(
            "Assumed by the CodePipeline {} in {tools} to deploy this stage",
            n.pipeline
        ),
        role_trust(tools, &n.pipeline_role),
        Some((
            "deploy-stage",
            vec![
                json!({
                    "Effect": "Allow",
                    "Action": [
                        "cloudformation:CreateStack",
                        "cloudformation:UpdateStack",
                        "cloudformation:DeleteStack",
                        "cloudformation:DescribeStack*",
                        "cloudformation:GetTemplate*",
                        "cloudformation:GetStackPolicy",
                        "cloudformation:SetStackPolicy",
                        "cloudformation:CreateChangeSet",
                        "cloudformation:DescribeChangeSet",
                        "cloudformation:ExecuteChangeSet",
                        "cloudformation:DeleteChangeSet"
                    ],
                    "Resource": sub(format!(
                        "arn:${{AWS::Partition}}:cloudformation:${{AWS::Region}}:${{AWS::AccountId}}:stack/{}-*/*",
                        n.pipeline
                    ))
                }),
                json!({
                    "Effect": "Allow",
                    "Action": "cloudformation:ValidateTemplate",
                    "Resource": "*"
                }),
                json!({
                    "Effect": "Allow",
                    "Action": "iam:PassRole",
                    "Resource": {"Fn::GetAtt": ["DeployRole", "Arn"]}
                }),
                json!({
                    "Effect": "Allow",
                    "Action": ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject"],
                    "Resource": sub(format!("arn:${{AWS::Partition}}:s3:::{bucket}/*"))
                }),
                json!({
                    "Effect": "Allow",
                    "Action": ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*"],
                    "Resource": sub(format!("arn:${{AWS::Partition}}:kms:${{AWS::Region}}:{tools}:key/*")),
                    "Condition": {"ForAnyValue:StringEquals": {"kms:ResourceAliases": n.key_alias}}
                }),
            ],
        )),
    );
    let deploy_role = role(
        n,
        &n.deploy_role,
        format!(
            "CloudFormation deploys the stage stacks of {} with this role",
            n.pipeline
        ),
        service_trust("cloudformation.amazonaws.com"),
        Some(("stage-resources", deploy_statements)),
    );
    let resources = json!({
        "ActionRole": action_role,
        "DeployRole": deploy_role
    });
    template(
        format!(
            "estate: the roles the pipeline {} deploys this stage with",
            n.pipeline
        ),
        resources,
        json!({
            "ActionRoleArn": {"Value": {"Fn::GetAtt": ["ActionRole", "Arn"]}},
            "DeployRoleArn": {"Value": {"Fn::GetAtt": ["DeployRole", "Arn"]}}
        }),
    )
}

fn approved_pattern(group: &str, account: Option<&str>) -> Value {
    let mut pattern = json!({
        "source": ["aws.sagemaker"],
        "detail-type": ["SageMaker Model Package State Change"],
        "detail": {
            "ModelPackageGroupName": [group],
            "ModelApprovalStatus": ["Approved"]
        }
    });
    if let Some(a) = account {
        pattern["account"] = json!([a]);
    }
    pattern
}

/// The source account's part: approvals forwarded to the tools account, and a role the
/// pipeline's build reads the model registry with.
pub fn source_template(n: &Names, tools: &str, source: &str, group: &str) -> Value {
    let bus = sub(format!(
        "arn:${{AWS::Partition}}:events:${{AWS::Region}}:{tools}:event-bus/default"
    ));
    let forward_role = role(
        n,
        &n.forward_role,
        format!(
            "EventBridge forwards model approvals to the pipeline {} with this role",
            n.pipeline
        ),
        service_trust("events.amazonaws.com"),
        Some((
            "forward-approvals",
            vec![json!({
                "Effect": "Allow",
                "Action": "events:PutEvents",
                "Resource": bus
            })],
        )),
    );
    let registry_role = role(
        n,
        &n.registry_role,
        format!(
            "The pipeline {} finds the latest approved version of {group} with this role",
            n.pipeline
        ),
        role_trust(tools, &n.build_role),
        Some((
            "read-registry",
            vec![
                json!({
                    "Effect": "Allow",
                    "Action": "sagemaker:ListModelPackages",
                    "Resource": "*"
                }),
                json!({
                    "Effect": "Allow",
                    "Action": ["sagemaker:DescribeModelPackage", "sagemaker:DescribeModelPackageGroup"],
                    "Resource": [
                        sub(format!("arn:${{AWS::Partition}}:sagemaker:${{AWS::Region}}:${{AWS::AccountId}}:model-package-group/{group}")),
                        sub(format!("arn:${{AWS::Partition}}:sagemaker:${{AWS::Region}}:${{AWS::AccountId}}:model-package/{group}/*"))
                    ]
                }),
            ],
        )),
    );
    let mut resources = json!({
        "ForwardRole": forward_role,
        "ForwardApprovals": rule(
            format!("{}-approved", n.pipeline),
            format!("Approved versions of {group} start the pipeline {}", n.pipeline),
            approved_pattern(group, None),
            ("tools", &bus),
            "ForwardRole",
        ),
        "RegistryRole": registry_role
    });
    if source == tools {
        // Approvals happen on the tools account's own bus: nothing to forward.
        let r = resources.as_object_mut().expect("an object");
        r.remove("ForwardRole");
        r.remove("ForwardApprovals");
    }
    template(
        format!(
            "estate: approvals of {group} forwarded to the pipeline {}",
            n.pipeline
        ),
        resources,
        json!({"RegistryRoleArn": {"Value": {"Fn::GetAtt": ["RegistryRole", "Arn"]}}}),
    )
}

/// The build that finds the latest approved model package and writes each stage's template
/// configuration with it.
fn resolve_buildspec(takes_model_package: bool) -> String {
    let set = if takes_model_package {
        format!("          config['Parameters']['{MODEL_PACKAGE_PARAMETER}'] = arn\n")
    } else {
        String::new()
    };
    format!(
        r#"version: 0.2
phases:
  build:
    commands:
      - |
        python3 - <<'EOF'
        import glob, json, os
        import boto3
        creds = boto3.client('sts').assume_role(
            RoleArn=os.environ['REGISTRY_ROLE'], RoleSessionName='estate-resolve')['Credentials']
        registry = boto3.client('sagemaker',
            aws_access_key_id=creds['AccessKeyId'],
            aws_secret_access_key=creds['SecretAccessKey'],
            aws_session_token=creds['SessionToken'])
        # The approval filter applies after a page is cut: a page may be empty with more to come.
        pages = registry.get_paginator('list_model_packages').paginate(
            ModelPackageGroupName=os.environ['MODEL_PACKAGE_GROUP'],
            ModelApprovalStatus='Approved', SortBy='CreationTime', SortOrder='Descending')
        found = next((p for page in pages for p in page['ModelPackageSummaryList']), None)
        if found is None:
            raise SystemExit('no approved version in ' + os.environ['MODEL_PACKAGE_GROUP'])
        arn = found['ModelPackageArn']
        print('deploying', arn)
        for path in glob.glob('stages/*.json'):
          with open(path) as f:
            config = json.load(f)
{set}          with open(path, 'w') as f:
            json.dump(config, f)
        EOF
artifacts:
  files:
    - template.json
    - stages/*.json
"#
    )
}

/// The tools account's part: key, bucket, roles, builds, the pipeline and its trigger.
pub fn tools_template(t: &Tools) -> Value {
    let n = t.names;
    // Named from the account the stack is in, not the id the template was made with: moving
    // the tools part to another account must not first rename the old account's bucket.
    let bucket = bucket(&n.name, "${AWS::AccountId}");
    let action_roles: Vec<Value> = t
        .stages
        .iter()
        .flat_map(|s| s.accounts.iter())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(|a| role_arn(a, &n.action_role))
        .collect();
    let registry_role = role_arn(t.source_account, &n.registry_role);
    let objects = sub(format!("arn:${{AWS::Partition}}:s3:::{bucket}/*"));
    let bucket_arn = sub(format!("arn:${{AWS::Partition}}:s3:::{bucket}"));
    let pipeline_arn = sub(format!(
        "arn:${{AWS::Partition}}:codepipeline:${{AWS::Region}}:${{AWS::AccountId}}:{}",
        n.pipeline
    ));
    let kms_use = json!([
        "kms:Decrypt",
        "kms:DescribeKey",
        "kms:Encrypt",
        "kms:GenerateDataKey*",
        "kms:ReEncrypt*"
    ]);
    let mut projects = vec![sub(format!(
        "arn:${{AWS::Partition}}:codebuild:${{AWS::Region}}:${{AWS::AccountId}}:project/{}",
        n.resolve_project
    ))];
    for s in t.stages.iter().filter(|s| s.test) {
        projects.push(sub(format!(
            "arn:${{AWS::Partition}}:codebuild:${{AWS::Region}}:${{AWS::AccountId}}:project/{}",
            n.test_project(&s.environment)
        )));
    }

    let mut resources = serde_json::Map::new();
    resources.insert(
        "ArtifactKey".into(),
        json!({
            "Type": "AWS::KMS::Key",
            // Artifacts outlive the pipeline: deleting it must not make them unreadable; a
            // failed first create leaves nothing behind.
            "DeletionPolicy": "RetainExceptOnCreate",
            "UpdateReplacePolicy": "Retain",
            "Properties": {
                "Description": format!("Encrypts the artifacts of the pipeline {}", n.pipeline),
                "EnableKeyRotation": true,
                "KeyPolicy": document(vec![
                    json!({
                        "Sid": "KeyAdministration",
                        "Effect": "Allow",
                        "Principal": {"AWS": sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:root".into())},
                        "Action": "kms:*",
                        "Resource": "*"
                    }),
                    // The tools account's own roles get the key through their IAM
                    // policies (the statement above); other accounts' roles need the key
                    // policy to name them.
                    json!({
                        "Sid": "StageRoles",
                        "Effect": "Allow",
                        "Principal": {"AWS": action_roles.clone()},
                        "Action": kms_use,
                        "Resource": "*"
                    })
                ])
            }
        }),
    );
    resources.insert(
        "ArtifactKeyAlias".into(),
        json!({
            "Type": "AWS::KMS::Alias",
            "Properties": {"AliasName": n.key_alias, "TargetKeyId": {"Ref": "ArtifactKey"}}
        }),
    );
    resources.insert(
        "ArtifactBucket".into(),
        json!({
            "Type": "AWS::S3::Bucket",
            // A bucket holding objects cannot be deleted; it is kept with the pipeline's history
            // (but not after a failed first create, which would block the next one).
            "DeletionPolicy": "RetainExceptOnCreate",
            "UpdateReplacePolicy": "Retain",
            "Properties": {
                "BucketName": sub(bucket.clone()),
                "VersioningConfiguration": {"Status": "Enabled"},
                "BucketEncryption": {"ServerSideEncryptionConfiguration": [{
                    "ServerSideEncryptionByDefault": {
                        "SSEAlgorithm": "aws:kms",
                        "KMSMasterKeyID": {"Fn::GetAtt": ["ArtifactKey", "Arn"]}
                    },
                    "BucketKeyEnabled": true
                }]},
                // A new source bundle starts the pipeline (rule StartOnSource).
                "NotificationConfiguration": {"EventBridgeConfiguration": {"EventBridgeEnabled": true}},
                "PublicAccessBlockConfiguration": {
                    "BlockPublicAcls": true,
                    "BlockPublicPolicy": true,
                    "IgnorePublicAcls": true,
                    "RestrictPublicBuckets": true
                },
                "Tags": tags(&n.pipeline)
            }
        }),
    );
    resources.insert(
        "ArtifactBucketPolicy".into(),
        json!({
            "Type": "AWS::S3::BucketPolicy",
            "Properties": {
                "Bucket": {"Ref": "ArtifactBucket"},
                "PolicyDocument": document(vec![
                    json!({
                        "Sid": "DenyInsecureTransport",
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": "s3:*",
                        "Resource": [bucket_arn, objects],
                        "Condition": {"Bool": {"aws:SecureTransport": "false"}}
                    }),
                    json!({
                        "Sid": "DenyUnencryptedUploads",
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": "s3:PutObject",
                        "Resource": objects,
                        "Condition": {"StringNotEquals": {"s3:x-amz-server-side-encryption": "aws:kms"}}
                    }),
                    json!({
                        "Sid": "StageRoles",
                        "Effect": "Allow",
                        "Principal": {"AWS": action_roles},
                        "Action": ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject"],
                        "Resource": objects
                    })
                ])
            }
        }),
    );
    resources.insert(
        "PipelineRole".into(),
        role(
            n,
            &n.pipeline_role,
            format!("The CodePipeline {} runs as this role", n.pipeline),
            service_trust("codepipeline.amazonaws.com"),
            None,
        ),
    );
    // The roles' permissions name the key, whose policy names the roles: separate resources
    // break the cycle.
    resources.insert(
        "PipelineRolePolicy".into(),
        json!({
            "Type": "AWS::IAM::RolePolicy",
            "Properties": {
                "RoleName": {"Ref": "PipelineRole"},
                "PolicyName": "run-pipeline",
                "PolicyDocument": document(vec![
                        json!({"Effect": "Allow", "Action": ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject"], "Resource": objects}),
                        json!({"Effect": "Allow", "Action": ["s3:GetBucketVersioning", "s3:ListBucket"], "Resource": bucket_arn}),
                        json!({"Effect": "Allow", "Action": kms_use, "Resource": {"Fn::GetAtt": ["ArtifactKey", "Arn"]}}),
                        json!({"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": action_roles}),
                        json!({"Effect": "Allow", "Action": ["codebuild:BatchGetBuilds", "codebuild:StartBuild"], "Resource": projects})
                    ])
            }
        }),
    );
    resources.insert(
        "BuildRole".into(),
        role(
            n,
            &n.build_role,
            format!("The CodeBuild projects of {} run as this role", n.pipeline),
            service_trust("codebuild.amazonaws.com"),
            None,
        ),
    );
    resources.insert(
        "BuildRolePolicy".into(),
        json!({
            "Type": "AWS::IAM::RolePolicy",
            "Properties": {
                "RoleName": {"Ref": "BuildRole"},
                "PolicyName": "build",
                "PolicyDocument": document(vec![
                        json!({
                            "Effect": "Allow",
                            "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                            "Resource": sub(format!("arn:${{AWS::Partition}}:logs:${{AWS::Region}}:${{AWS::AccountId}}:log-group:/aws/codebuild/{}-*", n.pipeline))
                        }),
                        json!({"Effect": "Allow", "Action": ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject"], "Resource": objects}),
                        json!({"Effect": "Allow", "Action": kms_use, "Resource": {"Fn::GetAtt": ["ArtifactKey", "Arn"]}}),
                        json!({"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": registry_role})
                    ])
            }
        }),
    );
    let build_environment = |variables: Vec<Value>| {
        json!({
            "Type": "LINUX_CONTAINER",
            "ComputeType": "BUILD_GENERAL1_SMALL",
            "Image": "aws/codebuild/standard:7.0",
            "EnvironmentVariables": variables
        })
    };
    let variable = |name: &str, value: Value| json!({"Name": name, "Value": value});
    resources.insert(
        "ResolveProject".into(),
        json!({
            "Type": "AWS::CodeBuild::Project",
            "DependsOn": "BuildRolePolicy",
            "Properties": {
                "Name": n.resolve_project,
                "Description": format!("Finds the latest approved version of {} for the pipeline {}", t.model_package_group, n.pipeline),
                "ServiceRole": {"Fn::GetAtt": ["BuildRole", "Arn"]},
                "EncryptionKey": {"Fn::GetAtt": ["ArtifactKey", "Arn"]},
                "Artifacts": {"Type": "CODEPIPELINE"},
                "Source": {"Type": "CODEPIPELINE", "BuildSpec": resolve_buildspec(t.takes_model_package)},
                "Environment": build_environment(vec![
                    variable("REGISTRY_ROLE", registry_role.clone()),
                    variable("MODEL_PACKAGE_GROUP", sub(format!(
                        "arn:${{AWS::Partition}}:sagemaker:${{AWS::Region}}:{}:model-package-group/{}",
                        t.source_account, t.model_package_group
                    ))),
                ]),
                "Tags": tags(&n.pipeline)
            }
        }),
    );
    for (i, s) in t.stages.iter().enumerate().filter(|(_, s)| s.test) {
        resources.insert(
            format!("TestProject{i}"),
            json!({
                "Type": "AWS::CodeBuild::Project",
                "DependsOn": "BuildRolePolicy",
                "Properties": {
                    "Name": n.test_project(&s.environment),
                    "Description": format!("Tests the {} stage of the pipeline {}", s.environment, n.pipeline),
                    "ServiceRole": {"Fn::GetAtt": ["BuildRole", "Arn"]},
                    "EncryptionKey": {"Fn::GetAtt": ["ArtifactKey", "Arn"]},
                    "Artifacts": {"Type": "CODEPIPELINE"},
                    "Source": {"Type": "CODEPIPELINE", "BuildSpec": test_buildspec_path(&s.environment)},
                    "Environment": build_environment(vec![
                        variable("ESTATE_ENVIRONMENT", json!(s.environment)),
                        variable("ESTATE_ACCOUNTS", json!(s.accounts.join(","))),
                        variable("ESTATE_STACK_NAME", json!(n.stage_stack(&s.environment))),
                    ]),
                    "Tags": tags(&n.pipeline)
                }
            }),
        );
    }

    let mut stages = vec![
        json!({
            "Name": "Source",
            "Actions": [{
                "Name": "SourceBundle",
                "ActionTypeId": {"Category": "Source", "Owner": "AWS", "Provider": "S3", "Version": "1"},
                "Configuration": {
                    "S3Bucket": {"Ref": "ArtifactBucket"},
                    "S3ObjectKey": t.source_key,
                    "PollForSourceChanges": false
                },
                "OutputArtifacts": [{"Name": "Source"}],
                "RunOrder": 1
            }]
        }),
        json!({
            "Name": "Resolve",
            "Actions": [{
                "Name": "LatestApprovedModel",
                "ActionTypeId": {"Category": "Build", "Owner": "AWS", "Provider": "CodeBuild", "Version": "1"},
                "Configuration": {"ProjectName": n.resolve_project},
                "InputArtifacts": [{"Name": "Source"}],
                "OutputArtifacts": [{"Name": "Resolved"}],
                "RunOrder": 1
            }]
        }),
    ];
    let capabilities = t.capabilities.join(",");
    for s in t.stages {
        let mut actions = Vec::new();
        let mut order = 1;
        if s.manual_approval {
            actions.push(json!({
                "Name": "Approve",
                "ActionTypeId": {"Category": "Approval", "Owner": "AWS", "Provider": "Manual", "Version": "1"},
                "Configuration": {"CustomData": format!("Deploy the approved model to {}?", s.environment)},
                "RunOrder": order
            }));
            order += 1;
        }
        for account in &s.accounts {
            let mut configuration = json!({
                // A stack whose first create failed is replaced, not left blocking the stage.
                "ActionMode": "REPLACE_ON_FAILURE",
                "StackName": n.stage_stack(&s.environment),
                "TemplatePath": "Resolved::template.json",
                "TemplateConfiguration": format!("Resolved::stages/{}.json", s.environment),
                "RoleArn": role_arn(account, &n.deploy_role)
            });
            if !capabilities.is_empty() {
                configuration["Capabilities"] = json!(capabilities);
            }
            actions.push(json!({
                "Name": format!("Deploy-{account}"),
                "ActionTypeId": {"Category": "Deploy", "Owner": "AWS", "Provider": "CloudFormation", "Version": "1"},
                "Configuration": configuration,
                "InputArtifacts": [{"Name": "Resolved"}],
                "RoleArn": role_arn(account, &n.action_role),
                "Region": t.region,
                "RunOrder": order
            }));
        }
        order += 1;
        if s.test {
            actions.push(json!({
                "Name": "Test",
                "ActionTypeId": {"Category": "Test", "Owner": "AWS", "Provider": "CodeBuild", "Version": "1"},
                "Configuration": {"ProjectName": n.test_project(&s.environment)},
                "InputArtifacts": [{"Name": "Source"}],
                "RunOrder": order
            }));
        }
        stages.push(json!({"Name": format!("Deploy-{}", s.environment), "Actions": actions}));
    }
    resources.insert(
        "Pipeline".into(),
        json!({
            "Type": "AWS::CodePipeline::Pipeline",
            "DependsOn": "PipelineRolePolicy",
            "Properties": {
                "Name": n.pipeline,
                "RoleArn": {"Fn::GetAtt": ["PipelineRole", "Arn"]},
                "ArtifactStore": {
                    "Type": "S3",
                    "Location": {"Ref": "ArtifactBucket"},
                    "EncryptionKey": {"Id": {"Fn::GetAtt": ["ArtifactKey", "Arn"]}, "Type": "KMS"}
                },
                "RestartExecutionOnUpdate": false,
                "Stages": stages,
                "Tags": tags(&n.pipeline)
            }
        }),
    );
    resources.insert(
        "EventsRole".into(),
        role(
            n,
            &n.events_role,
            format!(
                "EventBridge starts the CodePipeline {} with this role",
                n.pipeline
            ),
            service_trust("events.amazonaws.com"),
            Some((
                "start-pipeline",
                vec![json!({
                    "Effect": "Allow",
                    "Action": "codepipeline:StartPipelineExecution",
                    "Resource": pipeline_arn
                })],
            )),
        ),
    );
    if t.source_account != t.tools {
        resources.insert(
        "ApprovalsFromSource".into(),
        json!({
            "Type": "AWS::Events::EventBusPolicy",
            "Properties": {
                "StatementId": format!("{}-approvals", n.pipeline),
                "Statement": {
                    "Effect": "Allow",
                    "Principal": {"AWS": role_arn(t.source_account, &n.forward_role)},
                    "Action": "events:PutEvents",
                    "Resource": sub("arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/default".into())
                }
            }
        }),
        );
    }
    resources.insert(
        "StartOnApproval".into(),
        rule(
            format!("{}-start", n.pipeline),
            format!(
                "An approved version of {} starts the pipeline {}",
                t.model_package_group, n.pipeline
            ),
            approved_pattern(t.model_package_group, Some(t.source_account)),
            ("pipeline", &pipeline_arn),
            "EventsRole",
        ),
    );
    resources.insert(
        "StartOnSource".into(),
        rule(
            format!("{}-source", n.pipeline),
            format!(
                "A new source bundle (the manifest changed) starts the pipeline {}",
                n.pipeline
            ),
            json!({
                "source": ["aws.s3"],
                "detail-type": ["Object Created"],
                "detail": {
                    "bucket": {"name": [sub(bucket.clone())]},
                    "object": {"key": [{"prefix": SOURCE_PREFIX}]}
                }
            }),
            ("pipeline", &pipeline_arn),
            "EventsRole",
        ),
    );
    template(
        format!(
            "estate: the model pipeline {}: artifacts key and bucket, builds, CodePipeline, trigger",
            n.pipeline
        ),
        Value::Object(resources),
        json!({
            "ArtifactBucketName": {"Value": {"Ref": "ArtifactBucket"}},
            "ArtifactKeyArn": {"Value": {"Fn::GetAtt": ["ArtifactKey", "Arn"]}}
        }),
    )
}

/// Where a stage's test buildspec is in the source bundle.
pub fn test_buildspec_path(environment: &str) -> String {
    format!("tests/{environment}/buildspec.yml")
}

/// The files of the source bundle: the stage template, each stage's template configuration,
/// each stage's test buildspec.
#[derive(Debug, Clone, PartialEq)]
pub struct Bundle {
    pub files: BTreeMap<String, Vec<u8>>,
}

impl Bundle {
    /// A digest of the names and contents, independent of zip timestamps.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        for (name, bytes) in &self.files {
            h.update((name.len() as u64).to_be_bytes());
            h.update(name.as_bytes());
            h.update((bytes.len() as u64).to_be_bytes());
            h.update(bytes);
        }
        hex::encode(h.finalize())
    }

    /// The content-addressed key the bundle is kept under in the artifact bucket.
    pub fn key(&self) -> String {
        format!("{SOURCE_PREFIX}{}.zip", &self.digest()[..16])
    }

    /// The zip CodePipeline's S3 source reads. Entries carry a fixed timestamp, so the same
    /// files always give the same bytes.
    pub fn zip(&self) -> Vec<u8> {
        let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .last_modified_time(zip::DateTime::default());
        for (name, bytes) in &self.files {
            out.start_file(name.as_str(), options)
                .expect("writing to memory");
            out.write_all(bytes).expect("writing to memory");
        }
        out.finish().expect("writing to memory").into_inner()
    }
}

/// A stage's template configuration: its parameters and the estate's tags.
pub fn stage_configuration(
    parameters: &BTreeMap<String, String>,
    estate: &str,
    environment: &str,
) -> Vec<u8> {
    let config = json!({
        "Parameters": parameters,
        "Tags": {
            crate::live::TAG_MANAGED_BY: estate,
            crate::live::TAG_ENVIRONMENT: environment
        }
    });
    serde_json::to_vec_pretty(&config).expect("a JSON value serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployed() -> Template {
        Template::parse(
            b"Parameters:\n  ModelPackageArn: {Type: String}\nResources:\n  Model:\n    Type: AWS::SageMaker::Model\n    Properties: {ExecutionRoleArn: x}\n  Scaling:\n    Type: AWS::ApplicationAutoScaling::ScalableTarget\n",
        )
        .unwrap()
    }

    fn stages() -> Vec<Stage> {
        vec![
            Stage {
                environment: "staging".into(),
                accounts: vec!["333333333333".into()],
                test: true,
                manual_approval: false,
            },
            Stage {
                environment: "production".into(),
                accounts: vec!["444444444444".into(), "555555555555".into()],
                test: false,
                manual_approval: true,
            },
        ]
    }

    fn tools() -> Value {
        let n = Names::new("abalone");
        let stages = stages();
        tools_template(&Tools {
            names: &n,
            tools: "111111111111",
            source_account: "222222222222",
            model_package_group: "abalone",
            region: "us-east-1",
            stages: &stages,
            capabilities: &["CAPABILITY_IAM".into()],
            takes_model_package: true,
            source_key: "estate/source-0123.zip",
        })
    }

    fn arns(v: &Value) -> Vec<String> {
        let list = match v {
            Value::Array(a) => a.clone(),
            one => vec![one.clone()],
        };
        list.iter()
            .map(|a| a["Fn::Sub"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn key_and_bucket_policies_name_exactly_the_roles() {
        let t = tools();
        let key = &t["Resources"]["ArtifactKey"]["Properties"]["KeyPolicy"]["Statement"];
        assert_eq!(
            arns(&key[0]["Principal"]["AWS"]),
            ["arn:${AWS::Partition}:iam::${AWS::AccountId}:root"],
            "only the key's own account administers it"
        );
        let role = |a: &str, r: &str| format!("arn:${{AWS::Partition}}:iam::{a}:role/{r}");
        assert_eq!(
            arns(&key[1]["Principal"]["AWS"]),
            [
                role("333333333333", "estate-abalone-action"),
                role("444444444444", "estate-abalone-action"),
                role("555555555555", "estate-abalone-action"),
            ]
        );
        let bucket =
            &t["Resources"]["ArtifactBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"];
        assert_eq!(bucket[0]["Effect"], "Deny");
        assert_eq!(
            bucket[0]["Condition"]["Bool"]["aws:SecureTransport"],
            "false"
        );
        assert_eq!(bucket[1]["Effect"], "Deny");
        assert_eq!(
            bucket[1]["Condition"]["StringNotEquals"]["s3:x-amz-server-side-encryption"],
            "aws:kms"
        );
        assert_eq!(
            arns(&bucket[2]["Principal"]["AWS"]),
            [
                role("333333333333", "estate-abalone-action"),
                role("444444444444", "estate-abalone-action"),
                role("555555555555", "estate-abalone-action"),
            ]
        );
        let text = serde_json::to_string(&t).unwrap();
        for account in ["222222222222", "333333333333", "444444444444"] {
            assert!(
                !text.contains(&format!("{account}:root")),
                "no other account as a whole"
            );
        }
        for kept in ["ArtifactKey", "ArtifactBucket"] {
            assert_eq!(
                t["Resources"][kept]["DeletionPolicy"], "RetainExceptOnCreate",
                "{kept}: kept with the pipeline's history, not after a failed first create"
            );
        }
        let bucket = &t["Resources"]["ArtifactBucket"]["Properties"];
        assert_eq!(
            bucket["BucketName"],
            json!({"Fn::Sub": "estate-abalone-${AWS::AccountId}"}),
            "named from the account it is in"
        );
        assert_eq!(
            bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
                ["SSEAlgorithm"],
            "aws:kms"
        );
    }

    #[test]
    fn stages_run_in_order_with_approval_before_and_tests_after_deploying() {
        let t = tools();
        let stages = t["Resources"]["Pipeline"]["Properties"]["Stages"]
            .as_array()
            .unwrap();
        let names: Vec<&str> = stages.iter().map(|s| s["Name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            ["Source", "Resolve", "Deploy-staging", "Deploy-production"]
        );
        let actions = |i: usize| -> Vec<(String, u64)> {
            stages[i]["Actions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| {
                    (
                        a["Name"].as_str().unwrap().to_string(),
                        a["RunOrder"].as_u64().unwrap(),
                    )
                })
                .collect()
        };
        assert_eq!(
            actions(2),
            [("Deploy-333333333333".into(), 1), ("Test".into(), 2)]
        );
        assert_eq!(
            actions(3),
            [
                ("Approve".into(), 1),
                ("Deploy-444444444444".into(), 2),
                ("Deploy-555555555555".into(), 2)
            ]
        );
        let deploy = &stages[3]["Actions"][1];
        assert_eq!(
            deploy["RoleArn"]["Fn::Sub"],
            "arn:${AWS::Partition}:iam::444444444444:role/estate-abalone-action"
        );
        assert_eq!(
            deploy["Configuration"]["TemplateConfiguration"],
            "Resolved::stages/production.json"
        );
        // A stack whose first create failed is replaced rather than blocking the stage.
        assert_eq!(deploy["Configuration"]["ActionMode"], "REPLACE_ON_FAILURE");
        let rule = &t["Resources"]["StartOnApproval"]["Properties"]["EventPattern"];
        assert_eq!(rule["account"], json!(["222222222222"]));
        assert_eq!(rule["detail"]["ModelApprovalStatus"], json!(["Approved"]));
    }

    #[test]
    fn stage_roles_trust_exactly_the_pipeline_role_and_deploy_what_the_template_uses() {
        let n = Names::new("abalone");
        let t = stage_template(
            &n,
            "111111111111",
            "estate-abalone-111111111111",
            &deployed(),
        );
        let trust =
            &t["Resources"]["ActionRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0];
        assert_eq!(
            trust["Condition"]["ArnEquals"]["aws:PrincipalArn"]["Fn::Sub"],
            "arn:${AWS::Partition}:iam::111111111111:role/estate-abalone-pipeline"
        );
        let deploy = &t["Resources"]["DeployRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
            [0]["Action"];
        assert_eq!(
            deploy,
            &json!([
                "application-autoscaling:*",
                "cloudwatch:DeleteAlarms",
                "cloudwatch:DescribeAlarms",
                "cloudwatch:PutMetricAlarm",
                "iam:PassRole",
                "sagemaker:*"
            ])
        );
        let linked = &t["Resources"]["DeployRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
            [1];
        assert_eq!(linked["Action"], "iam:CreateServiceLinkedRole");
    }

    #[test]
    fn a_source_in_the_tools_account_needs_no_forwarding() {
        let n = Names::new("abalone");
        let same = source_template(&n, "111111111111", "111111111111", "abalone");
        let resources = same["Resources"].as_object().unwrap();
        assert_eq!(resources.keys().collect::<Vec<_>>(), ["RegistryRole"]);
        let apart = source_template(&n, "111111111111", "222222222222", "abalone");
        assert!(apart["Resources"]["ForwardApprovals"].is_object());
        let stages = stages();
        let tools = tools_template(&Tools {
            names: &n,
            tools: "111111111111",
            source_account: "111111111111",
            model_package_group: "abalone",
            region: "us-east-1",
            stages: &stages,
            capabilities: &[],
            takes_model_package: true,
            source_key: "k",
        });
        assert!(tools["Resources"].get("ApprovalsFromSource").is_none());
        assert!(tools["Resources"]["StartOnApproval"].is_object());
        assert!(tools["Resources"]["StartOnSource"].is_object());
    }

    #[test]
    fn the_bundle_is_deterministic_and_content_addressed() {
        let mut files = BTreeMap::new();
        files.insert("template.json".to_string(), b"{}".to_vec());
        let a = Bundle {
            files: files.clone(),
        };
        assert_eq!(a.zip(), a.clone().zip());
        files.insert("stages/staging.json".to_string(), b"{}".to_vec());
        let b = Bundle { files };
        assert_ne!(a.key(), b.key());
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(b.zip())).unwrap();
        let mut names: Vec<String> = (0..archive.len())
            .map(|i| archive.by_index(i).unwrap().name().to_string())
            .collect();
        names.sort();
        assert_eq!(names, ["stages/staging.json", "template.json"]);
    }
}
