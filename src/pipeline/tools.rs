//! The tools part of a pipeline: the artifacts key and bucket, the roles and builds, the
//! CodePipeline with a stage per environment, and the rules that start it.

use super::bundle::{SOURCE_PREFIX, test_buildspec_path};
use super::cfn::{
    deny_insecure_transport, deny_other_keys, document, local_arn, retained_key, role, role_arn,
    rule, service_trust, sub, tags, template,
};
use super::inputs::{MODELS_PREFIX, Source, Stage};
use crate::manifest::names::{MODEL_DATA_PARAMETER, MODEL_PACKAGE_PARAMETER, Names, bucket};
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// Everything the tools template is built from.
#[derive(Debug, Clone, PartialEq)]
pub struct Tools<'a> {
    pub names: &'a Names,
    pub tools: &'a str,
    pub source_account: &'a str,
    pub source: Source<'a>,
    pub region: &'a str,
    pub stages: &'a [Stage],
    /// Capabilities the stage template needs from CloudFormation.
    pub capabilities: &'a [String],
    /// Whether the stage template takes the approved model package's ARN (a registry
    /// source) or the uploaded model's URL (an upload source).
    pub takes_model: bool,
    /// The source bundle's key in the artifact bucket.
    pub source_key: &'a str,
    /// Who is emailed when a stage waits for a manual approval.
    pub approval_emails: &'a [String],
}

/// The build that finds what to deploy (the latest approved model package, or a pinned copy
/// of the latest upload) and writes each stage's template configuration with it.
fn resolve_buildspec(source: &Source, takes_model: bool) -> String {
    let (find, parameter) = match source {
        Source::Registry { .. } => (REGISTRY_SCRIPT, MODEL_PACKAGE_PARAMETER),
        Source::Upload { .. } => (UPLOAD_SCRIPT, MODEL_DATA_PARAMETER),
    };
    let set = if takes_model {
        format!("          config['Parameters']['{parameter}'] = found\n")
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
        def client(service):
            return boto3.client(service,
                aws_access_key_id=creds['AccessKeyId'],
                aws_secret_access_key=creds['SecretAccessKey'],
                aws_session_token=creds['SessionToken'])
{find}        print('deploying', found)
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

const REGISTRY_SCRIPT: &str = r#"        registry = client('sagemaker')
        # The approval filter applies after a page is cut: a page may be empty with more to come.
        pages = registry.get_paginator('list_model_packages').paginate(
            ModelPackageGroupName=os.environ['MODEL_PACKAGE_GROUP'],
            ModelApprovalStatus='Approved', SortBy='CreationTime', SortOrder='Descending')
        package = next((p for page in pages for p in page['ModelPackageSummaryList']), None)
        if package is None:
            raise SystemExit('no approved version in ' + os.environ['MODEL_PACKAGE_GROUP'])
        found = package['ModelPackageArn']
"#;

const UPLOAD_SCRIPT: &str = r#"        s3 = client('s3')
        bucket, key = os.environ['MODEL_BUCKET'], os.environ['MODEL_KEY']
        # The latest upload, copied under a key naming its version: stages deploy the copy, so
        # an upload during the run never changes what a later stage deploys.
        version = s3.head_object(Bucket=bucket, Key=key)['VersionId']
        pinned = os.environ['MODELS_PREFIX'] + version + '/' + key.rsplit('/', 1)[-1]
        s3.copy({'Bucket': bucket, 'Key': key, 'VersionId': version}, bucket, pinned,
            ExtraArgs={'ServerSideEncryption': 'aws:kms', 'SSEKMSKeyId': os.environ['MODELS_KEY']})
        found = 's3://' + bucket + '/' + pinned
"#;

/// ARNs and action lists that several of the tools template's resources name.
struct Shared {
    bucket: String,
    action_roles: Vec<Value>,
    registry_role: Value,
    objects: Value,
    bucket_arn: Value,
    pipeline_arn: Value,
    kms_use: Value,
    /// The roles the stages' tests assume, one per account of a stage with a test.
    test_roles: Vec<Value>,
    /// The CodeBuild projects the pipeline runs.
    projects: Vec<Value>,
}

impl Shared {
    fn new(t: &Tools) -> Shared {
        let n = t.names;
        // Named from the account the stack is in, not the id the template was made with:
        // moving the tools part to another account must not first rename the old account's
        // bucket.
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
        let test_roles: Vec<Value> = t
            .stages
            .iter()
            .filter(|s| s.test)
            .flat_map(|s| s.accounts.iter())
            .map(|a| role_arn(a, &n.test_role))
            .collect();
        let objects = sub(format!("arn:${{AWS::Partition}}:s3:::{bucket}/*"));
        let bucket_arn = sub(format!("arn:${{AWS::Partition}}:s3:::{bucket}"));
        let pipeline_arn = sub(format!(
            "arn:${{AWS::Partition}}:codepipeline:${{AWS::Region}}:${{AWS::AccountId}}:{}",
            n.pipeline
        ));
        // S3 (and SNS) encrypt with a data key; nothing here encrypts or re-encrypts directly.
        let kms_use = json!(["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey"]);
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
        Shared {
            bucket,
            action_roles,
            registry_role,
            objects,
            bucket_arn,
            pipeline_arn,
            kms_use,
            test_roles,
            projects,
        }
    }
}

type Resources = serde_json::Map<String, Value>;

/// The tools account's part: key, bucket, roles, builds, the pipeline and its trigger.
pub fn tools_template(t: &Tools) -> Value {
    let n = t.names;
    let shared = Shared::new(t);
    let mut resources = Resources::new();
    artifacts(t, &shared, &mut resources);
    roles(t, &shared, &mut resources);
    builds(t, &shared, &mut resources);
    pipeline(t, &mut resources);
    triggers(t, &shared, &mut resources);
    if !t.approval_emails.is_empty() {
        approvals_topic(t, &mut resources);
    }
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

/// The artifacts' KMS key and S3 bucket, with policies naming exactly the stage roles.
fn artifacts(t: &Tools, shared: &Shared, resources: &mut Resources) {
    let n = t.names;
    let Shared {
        bucket,
        action_roles,
        objects,
        bucket_arn,
        ..
    } = shared;
    resources.insert(
        "ArtifactKey".into(),
        // The tools account's own roles get the key through their IAM policies; other
        // accounts' roles need the key policy to name them, and only read what they deploy.
        retained_key(
            format!("Encrypts the artifacts of the pipeline {}", n.pipeline),
            action_roles.clone(),
        ),
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
                    deny_insecure_transport(bucket_arn, objects),
                    deny_other_keys(objects, &n.key_alias, "ArtifactKey"),
                    json!({
                        "Sid": "StageRoles",
                        "Effect": "Allow",
                        "Principal": {"AWS": action_roles},
                        "Action": ["s3:GetObject", "s3:GetObjectVersion"],
                        "Resource": objects
                    })
                ])
            }
        }),
    );
}

/// The roles the CodePipeline and its builds run as, with their permissions.
fn roles(t: &Tools, shared: &Shared, resources: &mut Resources) {
    let n = t.names;
    let Shared {
        action_roles,
        registry_role,
        objects,
        bucket_arn,
        pipeline_arn,
        kms_use,
        test_roles,
        projects,
        ..
    } = shared;
    resources.insert(
        "PipelineRole".into(),
        role(
            n,
            &n.pipeline_role,
            format!("The CodePipeline {} runs as this role", n.pipeline),
            service_trust("codepipeline.amazonaws.com", Some(pipeline_arn.clone())),
            None,
        ),
    );
    let mut pipeline_statements = vec![
        json!({"Effect": "Allow", "Action": ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject"], "Resource": objects}),
        json!({"Effect": "Allow", "Action": ["s3:GetBucketVersioning", "s3:ListBucket"], "Resource": bucket_arn}),
        json!({"Effect": "Allow", "Action": kms_use, "Resource": {"Fn::GetAtt": ["ArtifactKey", "Arn"]}}),
        json!({"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": action_roles}),
        json!({"Effect": "Allow", "Action": ["codebuild:BatchGetBuilds", "codebuild:StartBuild"], "Resource": projects}),
    ];
    if !t.approval_emails.is_empty() {
        pipeline_statements.push(json!({"Effect": "Allow", "Action": "sns:Publish", "Resource": {"Ref": "ApprovalsTopic"}}));
    }
    // The roles' permissions name the key, whose policy names the roles: separate resources
    // break the cycle.
    resources.insert(
        "PipelineRolePolicy".into(),
        json!({
            "Type": "AWS::IAM::RolePolicy",
            "Properties": {
                "RoleName": {"Ref": "PipelineRole"},
                "PolicyName": "run-pipeline",
                "PolicyDocument": document(pipeline_statements)
            }
        }),
    );
    resources.insert(
        "BuildRole".into(),
        role(
            n,
            &n.build_role,
            format!("The CodeBuild projects of {} run as this role", n.pipeline),
            service_trust(
                "codebuild.amazonaws.com",
                Some(local_arn("codebuild", &format!("project/{}-*", n.pipeline))),
            ),
            None,
        ),
    );
    let mut build_statements = vec![
        json!({
            "Effect": "Allow",
            "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": sub(format!("arn:${{AWS::Partition}}:logs:${{AWS::Region}}:${{AWS::AccountId}}:log-group:/aws/codebuild/{}-*", n.pipeline))
        }),
        json!({"Effect": "Allow", "Action": ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject"], "Resource": objects}),
        json!({"Effect": "Allow", "Action": kms_use, "Resource": {"Fn::GetAtt": ["ArtifactKey", "Arn"]}}),
        json!({"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": registry_role}),
    ];
    if !test_roles.is_empty() {
        build_statements
            .push(json!({"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": test_roles}));
    }
    resources.insert(
        "BuildRolePolicy".into(),
        json!({
            "Type": "AWS::IAM::RolePolicy",
            "Properties": {
                "RoleName": {"Ref": "BuildRole"},
                "PolicyName": "build",
                "PolicyDocument": document(build_statements)
            }
        }),
    );
}

/// The CodeBuild projects: the one that resolves the approved model, and each stage's test.
fn builds(t: &Tools, shared: &Shared, resources: &mut Resources) {
    let n = t.names;
    let registry_role = &shared.registry_role;
    let build_environment = |variables: Vec<Value>| {
        json!({
            "Type": "LINUX_CONTAINER",
            "ComputeType": "BUILD_GENERAL1_SMALL",
            "Image": "aws/codebuild/standard:7.0",
            "EnvironmentVariables": variables
        })
    };
    let variable = |name: &str, value: Value| json!({"Name": name, "Value": value});
    let mut variables = vec![variable("REGISTRY_ROLE", registry_role.clone())];
    let what = match t.source {
        Source::Registry { group } => {
            variables.push(variable(
                "MODEL_PACKAGE_GROUP",
                sub(format!(
                    "arn:${{AWS::Partition}}:sagemaker:${{AWS::Region}}:{}:model-package-group/{group}",
                    t.source_account
                )),
            ));
            format!("the latest approved version of {group}")
        }
        Source::Upload { bucket, key } => {
            variables.push(variable("MODEL_BUCKET", json!(bucket)));
            variables.push(variable("MODEL_KEY", json!(key)));
            variables.push(variable("MODELS_PREFIX", json!(MODELS_PREFIX)));
            variables.push(variable(
                "MODELS_KEY",
                sub(format!(
                    "arn:${{AWS::Partition}}:kms:${{AWS::Region}}:{}:{}",
                    t.source_account, n.models_key_alias
                )),
            ));
            format!("the latest upload of s3://{bucket}/{key}")
        }
    };
    resources.insert(
        "ResolveProject".into(),
        json!({
            "Type": "AWS::CodeBuild::Project",
            "DependsOn": "BuildRolePolicy",
            "Properties": {
                "Name": n.resolve_project,
                "Description": format!("Finds {what} for the pipeline {}", n.pipeline),
                "ServiceRole": {"Fn::GetAtt": ["BuildRole", "Arn"]},
                "EncryptionKey": {"Fn::GetAtt": ["ArtifactKey", "Arn"]},
                "Artifacts": {"Type": "CODEPIPELINE"},
                "Source": {"Type": "CODEPIPELINE", "BuildSpec": resolve_buildspec(&t.source, t.takes_model)},
                "Environment": build_environment(variables),
                "Tags": tags(&n.pipeline)
            }
        }),
    );
    for (i, s) in t.stages.iter().enumerate().filter(|(_, s)| s.test) {
        // The role to assume in each of the stage's accounts, comma-separated.
        let roles = s
            .accounts
            .iter()
            .map(|a| format!("arn:${{AWS::Partition}}:iam::{a}:role/{}", n.test_role))
            .collect::<Vec<_>>()
            .join(",");
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
                        variable("ESTATE_TEST_ROLES", sub(roles)),
                    ]),
                    "Tags": tags(&n.pipeline)
                }
            }),
        );
    }
}

/// The CodePipeline itself.
fn pipeline(t: &Tools, resources: &mut Resources) {
    let n = t.names;
    let stages = pipeline_stages(t);
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
}

/// The pipeline's stages: the source bundle, the model resolution, then one deploy stage per
/// environment (approval first when asked, tests after deploying).
fn pipeline_stages(t: &Tools) -> Vec<Value> {
    let n = t.names;
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
            let mut configuration =
                json!({"CustomData": format!("Deploy the model to {}?", s.environment)});
            if !t.approval_emails.is_empty() {
                configuration["NotificationArn"] = json!({"Ref": "ApprovalsTopic"});
            }
            actions.push(json!({
                "Name": "Approve",
                "ActionTypeId": {"Category": "Approval", "Owner": "AWS", "Provider": "Manual", "Version": "1"},
                "Configuration": configuration,
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
    stages
}

/// The rules that start the pipeline (an approved model, a new source bundle), the role they
/// do it with, and the bus policy that lets a separate source account forward approvals.
fn triggers(t: &Tools, shared: &Shared, resources: &mut Resources) {
    let n = t.names;
    let Shared {
        bucket,
        pipeline_arn,
        ..
    } = shared;
    resources.insert(
        "EventsRole".into(),
        role(
            n,
            &n.events_role,
            format!(
                "EventBridge starts the CodePipeline {} with this role",
                n.pipeline
            ),
            service_trust(
                "events.amazonaws.com",
                Some(local_arn("events", &format!("rule/{}-*", n.pipeline))),
            ),
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
    let (event, what) = t.source.event();
    if t.source_account != t.tools {
        resources.insert(
        "EventsFromSource".into(),
        json!({
            "Type": "AWS::Events::EventBusPolicy",
            "Properties": {
                "StatementId": format!("{}-source", n.pipeline),
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
    let source_bucket = json!(t.source.bucket(n, t.source_account));
    resources.insert(
        format!("StartOn{event}"),
        rule(
            format!("{}-start", n.pipeline),
            format!("{what} start the pipeline {}", n.pipeline),
            t.source.pattern(&source_bucket, Some(t.source_account)),
            ("pipeline", pipeline_arn),
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
            ("pipeline", pipeline_arn),
            "EventsRole",
        ),
    );
}

/// The topic manual approvals are announced on, and its email subscriptions.
fn approvals_topic(t: &Tools, resources: &mut Resources) {
    let n = t.names;
    resources.insert(
        "ApprovalsTopic".into(),
        json!({
            "Type": "AWS::SNS::Topic",
            "Properties": {
                "TopicName": n.approvals_topic,
                "DisplayName": format!("Approvals of {}", n.pipeline),
                // The pipeline role publishes with the key its IAM policy grants.
                "KmsMasterKeyId": {"Fn::GetAtt": ["ArtifactKey", "Arn"]},
                "Tags": tags(&n.pipeline)
            }
        }),
    );
    for (i, email) in t.approval_emails.iter().enumerate() {
        resources.insert(
            format!("ApprovalsSubscription{i}"),
            json!({
                "Type": "AWS::SNS::Subscription",
                "Properties": {
                    "TopicArn": {"Ref": "ApprovalsTopic"},
                    "Protocol": "email",
                    "Endpoint": email
                }
            }),
        );
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(crate) fn stages() -> Vec<Stage> {
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

    pub(crate) fn tools_with(source_account: &str, source: Source) -> Value {
        let n = Names::new("abalone");
        let stages = stages();
        tools_template(&Tools {
            names: &n,
            tools: "111111111111",
            source_account,
            source,
            region: "us-east-1",
            stages: &stages,
            capabilities: &["CAPABILITY_IAM".into()],
            takes_model: true,
            source_key: "estate/source-0123.zip",
            approval_emails: &["approvers@example.com".into()],
        })
    }

    fn tools() -> Value {
        tools_with("222222222222", Source::Registry { group: "abalone" })
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
            bucket[1]["Condition"]["StringNotEquals"]["s3:x-amz-server-side-encryption-aws-kms-key-id"],
            json!([
                {"Fn::GetAtt": ["ArtifactKey", "Arn"]},
                {"Fn::Sub": "arn:${AWS::Partition}:kms:${AWS::Region}:${AWS::AccountId}:alias/estate-abalone"}
            ]),
            "only the pipeline's own key"
        );
        assert_eq!(
            bucket[2]["Action"],
            json!(["s3:GetObject", "s3:GetObjectVersion"]),
            "stages only read"
        );
        assert_eq!(key[1]["Action"], json!(["kms:Decrypt", "kms:DescribeKey"]));
        assert_eq!(
            arns(&bucket[2]["Principal"]["AWS"]),
            [
                role("333333333333", "estate-abalone-action"),
                role("444444444444", "estate-abalone-action"),
                role("555555555555", "estate-abalone-action"),
            ]
        );
        let text = serde_json::to_string(&t).unwrap();
        for unused in ["kms:Encrypt", "kms:ReEncrypt"] {
            assert!(
                !text.contains(unused),
                "{unused}: no role encrypts directly"
            );
        }
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
        let rule = &t["Resources"]["StartOnApprovals"]["Properties"]["EventPattern"];
        assert_eq!(rule["account"], json!(["222222222222"]));
        assert_eq!(rule["detail"]["ModelApprovalStatus"], json!(["Approved"]));
        let approve = &stages[3]["Actions"][0];
        assert_eq!(
            approve["Configuration"]["NotificationArn"],
            json!({"Ref": "ApprovalsTopic"})
        );
        assert_eq!(
            t["Resources"]["ApprovalsSubscription0"]["Properties"]["Endpoint"],
            "approvers@example.com"
        );
    }

    #[test]
    fn tests_assume_the_test_roles_and_services_act_for_this_pipeline_only() {
        let t = tools();
        let build = &t["Resources"]["BuildRolePolicy"]["Properties"]["PolicyDocument"]["Statement"];
        let assumes: Vec<&Value> = build
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["Action"] == "sts:AssumeRole")
            .collect();
        assert_eq!(
            assumes[1]["Resource"],
            json!([{"Fn::Sub": "arn:${AWS::Partition}:iam::333333333333:role/estate-abalone-test"}]),
            "only staging has a test"
        );
        let test =
            &t["Resources"]["TestProject0"]["Properties"]["Environment"]["EnvironmentVariables"];
        assert!(
            test.as_array()
                .unwrap()
                .iter()
                .any(|v| v["Name"] == "ESTATE_TEST_ROLES")
        );
        let trust = |r: &str| {
            t["Resources"][r]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Condition"]
                .clone()
        };
        assert_eq!(
            trust("PipelineRole")["ArnLike"]["aws:SourceArn"]["Fn::Sub"],
            "arn:${AWS::Partition}:codepipeline:${AWS::Region}:${AWS::AccountId}:estate-abalone"
        );
        assert_eq!(
            trust("BuildRole")["ArnLike"]["aws:SourceArn"]["Fn::Sub"],
            "arn:${AWS::Partition}:codebuild:${AWS::Region}:${AWS::AccountId}:project/estate-abalone-*"
        );
        assert_eq!(
            trust("EventsRole")["StringEquals"]["aws:SourceAccount"],
            json!({"Ref": "AWS::AccountId"})
        );
    }

    #[test]
    fn an_upload_source_starts_on_uploads_and_deploys_a_pinned_copy() {
        let t = tools_with(
            "222222222222",
            Source::Upload {
                bucket: "abalone-models",
                key: "submit/model.tar.gz",
            },
        );
        let rule = &t["Resources"]["StartOnUploads"]["Properties"]["EventPattern"];
        assert_eq!(rule["account"], json!(["222222222222"]));
        assert_eq!(rule["detail"]["bucket"]["name"], json!(["abalone-models"]));
        let spec = t["Resources"]["ResolveProject"]["Properties"]["Source"]["BuildSpec"]
            .as_str()
            .unwrap();
        assert!(
            spec.contains("config['Parameters']['ModelDataUrl'] = found"),
            "{spec}"
        );
        assert!(spec.contains("head_object"), "{spec}");
    }
}
