//! The stage part of a pipeline: in each target account, the roles it deploys with, the
//! permissions boundary of every role the stage's stack creates, the role its models run as,
//! and the role its test assumes.

use super::cfn::{document, local_arn, role, role_trust, service_trust, sub, template};
use super::inputs::{MODELS_PREFIX, Source};
use crate::manifest::model::TestRight;
use crate::manifest::names::Names;
use crate::manifest::stage_rights::{self, BOUNDED_ROLE_ACTIONS, POLICY_ACTIONS, Scope};
use crate::template::Template;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// Everything a stage's roles are built from.
#[derive(Debug, Clone, Copy)]
pub struct StagePart<'a> {
    pub names: &'a Names,
    pub environment: &'a str,
    /// The tools account's id.
    pub tools: &'a str,
    /// The artifact bucket in the tools account.
    pub bucket: &'a str,
    pub source_account: &'a str,
    pub source: &'a Source<'a>,
    /// The stage template.
    pub deployed: &'a Template,
    /// Whether the stage has a test, and the rights it declares (default when `None`).
    pub test: bool,
    pub test_rights: Option<&'a [TestRight]>,
}

impl StagePart<'_> {
    /// The prefix of every name the stage's stack may create: its own stack name.
    fn prefix(&self) -> String {
        self.names.stage_stack(self.environment)
    }

    fn iam(&self, kind: &str, name: &str) -> Value {
        sub(format!(
            "arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:{kind}/{name}"
        ))
    }

    fn boundary_arn(&self) -> Value {
        self.iam("policy", &self.names.stage_boundary(self.environment))
    }

    /// ARNs of names in the prefix after `arn` (both cases when the service lower-cases).
    fn named(&self, arn: &str, lowercase: bool) -> Vec<Value> {
        let prefix = self.prefix();
        let mut prefixes = vec![prefix.clone()];
        if lowercase && prefix.to_ascii_lowercase() != prefix {
            prefixes.push(prefix.to_ascii_lowercase());
        }
        prefixes
            .into_iter()
            .map(|p| sub(format!("arn:${{AWS::Partition}}:{arn}{p}-*")))
            .collect()
    }

    /// Where a scope's actions apply, and on what condition.
    fn resources(&self, scope: Scope) -> (Value, Option<Value>) {
        let prefix = self.prefix();
        match scope {
            Scope::Named { arn, lowercase } => (json!(self.named(arn, lowercase)), None),
            Scope::InAccount(arn) => (sub(format!("arn:${{AWS::Partition}}:{arn}")), None),
            Scope::Any => (json!("*"), None),
            Scope::BoundedRole => (
                self.iam("role", &format!("{prefix}-*")),
                Some(json!({"StringEquals": {"iam:PermissionsBoundary": self.boundary_arn()}})),
            ),
            Scope::Role => (self.iam("role", &format!("{prefix}-*")), None),
            Scope::Policy => (self.iam("policy", &format!("{prefix}-*")), None),
            Scope::ServiceLinkedRole(service) => (
                self.iam("role", &format!("aws-service-role/{service}/*")),
                Some(json!({"StringEquals": {"iam:AWSServiceName": service}})),
            ),
        }
    }

    /// The deploy role's statements: the handler actions of each resource type the stage
    /// template holds, scoped; passing the stage's roles to the services that take them;
    /// reading the source's model package; never touching the pipeline's own names in the
    /// prefix.
    fn deploy_statements(&self) -> Vec<Value> {
        let types: BTreeSet<&str> = self.deployed.resource_types().map(|(t, _)| t).collect();
        // Statements keyed by where they apply, so types sharing a scope share a statement.
        let mut grouped: BTreeMap<String, (BTreeSet<&str>, Value, Option<Value>)> = BTreeMap::new();
        let mut passed_to: BTreeSet<&str> = BTreeSet::new();
        let mut iam = false;
        for t in types.iter().filter_map(|t| stage_rights::rights(t)) {
            passed_to.extend(t.passes_role_to);
            for r in t.rights {
                iam |= matches!(r.scope, Scope::BoundedRole | Scope::Role | Scope::Policy);
                let (resource, condition) = self.resources(r.scope);
                let key = format!("{resource}{condition:?}");
                grouped
                    .entry(key)
                    .or_insert_with(|| (BTreeSet::new(), resource, condition))
                    .0
                    .extend(r.actions.iter().copied());
            }
        }
        let mut statements: Vec<Value> = grouped
            .into_values()
            .map(|(actions, resource, condition)| {
                let mut s = json!({"Effect": "Allow", "Action": actions, "Resource": resource});
                if let Some(c) = condition {
                    s["Condition"] = c;
                }
                s
            })
            .collect();
        if !passed_to.is_empty() {
            // Only the stage's own roles (its model role among them), only to the services
            // the template's resources hand them to.
            statements.push(json!({
                "Effect": "Allow",
                "Action": "iam:PassRole",
                "Resource": self.iam("role", &format!("{}-*", self.prefix())),
                "Condition": {"StringEquals": {"iam:PassedToService": passed_to}}
            }));
        }
        if let Source::Registry { group } = self.source {
            if types.contains("AWS::SageMaker::Model") {
                // A model made from a package of the source account's group (which grants
                // this role the same through its resource policy).
                statements.push(json!({
                    "Effect": "Allow",
                    "Action": "sagemaker:DescribeModelPackage",
                    "Resource": sub(format!(
                        "arn:${{AWS::Partition}}:sagemaker:${{AWS::Region}}:{}:model-package/{}/*",
                        self.source_account,
                        group.to_ascii_lowercase()
                    ))
                }));
            }
        }
        if iam {
            // The pipeline's own role and boundary carry the prefix too: the stage's stack
            // may pass the role, never change either.
            let mut role_writes: Vec<&str> = BOUNDED_ROLE_ACTIONS.to_vec();
            role_writes.extend([
                "iam:DeleteRole",
                "iam:DeleteRolePermissionsBoundary",
                "iam:UpdateRole",
                "iam:UpdateRoleDescription",
                "iam:UpdateAssumeRolePolicy",
                "iam:TagRole",
                "iam:UntagRole",
            ]);
            statements.push(json!({
                "Sid": "PipelineRoleUnchanged",
                "Effect": "Deny",
                "Action": role_writes,
                "Resource": self.iam("role", &self.names.stage_model_role(self.environment))
            }));
            let policy_writes: Vec<&str> = POLICY_ACTIONS
                .iter()
                .copied()
                .filter(|a| !a.contains(":Get") && !a.contains(":List"))
                .chain([
                    "iam:SetDefaultPolicyVersion",
                    "iam:TagPolicy",
                    "iam:UntagPolicy",
                ])
                .collect();
            statements.push(json!({
                "Sid": "BoundaryUnchanged",
                "Effect": "Deny",
                "Action": policy_writes,
                "Resource": self.boundary_arn()
            }));
        }
        statements
    }

    /// What a model of the stage may do: read its artifacts in the source account, pull its
    /// image, write its logs and metrics. Also the boundary of every role the stage creates.
    fn model_statements(&self) -> Vec<Value> {
        let n = self.names;
        let objects = match self.source {
            Source::Registry { .. } => format!(
                "{}/*",
                crate::manifest::names::models_bucket(&n.name, self.source_account)
            ),
            Source::Upload { bucket, .. } => format!("{bucket}/{}*", MODELS_PREFIX),
        };
        vec![
            json!({
                "Sid": "ModelArtifacts",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": sub(format!("arn:${{AWS::Partition}}:s3:::{objects}"))
            }),
            json!({
                "Sid": "ModelArtifactsKey",
                "Effect": "Allow",
                "Action": "kms:Decrypt",
                "Resource": sub(format!("arn:${{AWS::Partition}}:kms:${{AWS::Region}}:{}:key/*", self.source_account)),
                "Condition": {"ForAnyValue:StringEquals": {"kms:ResourceAliases": n.models_key_alias}}
            }),
            // Takes no resource ARN.
            json!({
                "Sid": "ImageRegistryLogin",
                "Effect": "Allow",
                "Action": "ecr:GetAuthorizationToken",
                "Resource": "*"
            }),
            // Built-in algorithms' images are in AWS's accounts: any account's repository.
            json!({
                "Sid": "Images",
                "Effect": "Allow",
                "Action": ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
                "Resource": sub("arn:${AWS::Partition}:ecr:${AWS::Region}:*:repository/*".into())
            }),
            json!({
                "Sid": "Logs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"],
                "Resource": local_arn("logs", "log-group:/aws/sagemaker/*")
            }),
            // Takes no resource ARN: limited to SageMaker's namespaces.
            json!({
                "Sid": "Metrics",
                "Effect": "Allow",
                "Action": "cloudwatch:PutMetricData",
                "Resource": "*",
                "Condition": {"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}}
            }),
        ]
    }

    /// The test role's statements: those the Pipeline declares, or invoking and describing
    /// the stage's endpoints.
    fn test_statements(&self) -> Vec<Value> {
        let Some(rights) = self.test_rights else {
            return vec![json!({
                "Effect": "Allow",
                "Action": ["sagemaker:DescribeEndpoint", "sagemaker:InvokeEndpoint"],
                "Resource": self.named("sagemaker:${AWS::Region}:${AWS::AccountId}:endpoint/", true)
            })];
        };
        rights
            .iter()
            .map(|r| {
                let resources: Vec<Value> = r.resources.iter().map(|x| test_resource(x)).collect();
                json!({"Effect": "Allow", "Action": r.actions, "Resource": resources})
            })
            .collect()
    }
}

/// A declared test resource: an ARN as written, or `<service>:<resource>` in the stage
/// account and region.
fn test_resource(resource: &str) -> Value {
    if resource.starts_with("arn:") {
        return json!(resource);
    }
    let (service, rest) = resource
        .split_once(':')
        .expect("the schema requires a colon");
    local_arn(service, rest)
}

/// The roles and boundary in each target account of a stage.
pub fn stage_template(s: &StagePart) -> Value {
    let n = s.names;
    let tools = s.tools;
    let bucket = s.bucket;
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
                // Takes no resource ARN.
                json!({
                    "Effect": "Allow",
                    "Action": "cloudformation:ValidateTemplate",
                    "Resource": "*"
                }),
                json!({
                    "Effect": "Allow",
                    "Action": "iam:PassRole",
                    "Resource": {"Fn::GetAtt": ["DeployRole", "Arn"]},
                    "Condition": {"StringEquals": {"iam:PassedToService": "cloudformation.amazonaws.com"}}
                }),
                // The deploy action only reads its input artifact: no writes, no encryption.
                json!({
                    "Effect": "Allow",
                    "Action": ["s3:GetObject", "s3:GetObjectVersion"],
                    "Resource": sub(format!("arn:${{AWS::Partition}}:s3:::{bucket}/*"))
                }),
                json!({
                    "Effect": "Allow",
                    "Action": ["kms:Decrypt", "kms:DescribeKey"],
                    "Resource": sub(format!("arn:${{AWS::Partition}}:kms:${{AWS::Region}}:{tools}:key/*")),
                    "Condition": {"ForAnyValue:StringEquals": {"kms:ResourceAliases": n.key_alias}}
                }),
            ],
        )),
    );
    let deploy = s.deploy_statements();
    let deploy_role = role(
        n,
        &n.deploy_role,
        format!(
            "CloudFormation deploys the stage stacks of {} with this role",
            n.pipeline
        ),
        // CloudFormation acts for the account's own stacks; it is not documented to say
        // which stack (`aws:SourceArn`), so only the account is checked.
        service_trust("cloudformation.amazonaws.com", None),
        (!deploy.is_empty()).then_some(("stage-resources", deploy)),
    );
    let boundary = json!({
        "Type": "AWS::IAM::ManagedPolicy",
        "Properties": {
            "ManagedPolicyName": n.stage_boundary(s.environment),
            "Description": format!(
                "The most any role the stage {} of {} creates may do",
                s.environment, n.pipeline
            ),
            "PolicyDocument": document(s.model_statements())
        }
    });
    let mut model_role = role(
        n,
        &n.stage_model_role(s.environment),
        format!(
            "The models the pipeline {} deploys to {} run as this role",
            n.pipeline, s.environment
        ),
        // Models of the account only; which model is not known when the role is made.
        service_trust("sagemaker.amazonaws.com", None),
        Some(("run-models", s.model_statements())),
    );
    model_role["Properties"]["PermissionsBoundary"] = json!({"Ref": "Boundary"});
    let mut resources = json!({
        "ActionRole": action_role,
        "DeployRole": deploy_role,
        "Boundary": boundary,
        "ModelRole": model_role
    });
    let mut outputs = json!({
        "ActionRoleArn": {"Value": {"Fn::GetAtt": ["ActionRole", "Arn"]}},
        "DeployRoleArn": {"Value": {"Fn::GetAtt": ["DeployRole", "Arn"]}},
        "ModelRoleArn": {"Value": {"Fn::GetAtt": ["ModelRole", "Arn"]}},
        "BoundaryArn": {"Value": {"Ref": "Boundary"}}
    });
    if s.test {
        resources["TestRole"] = role(
            n,
            &n.test_role,
            format!(
                "The test of the stage {} of {} runs as this role here",
                s.environment, n.pipeline
            ),
            role_trust(tools, &n.build_role),
            Some(("test-stage", s.test_statements())),
        );
        outputs["TestRoleArn"] = json!({"Value": {"Fn::GetAtt": ["TestRole", "Arn"]}});
    }
    template(
        format!(
            "estate: the roles the pipeline {} deploys the stage {} with",
            n.pipeline, s.environment
        ),
        resources,
        outputs,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployed() -> Template {
        Template::parse(
            b"Parameters:\n  ModelPackageArn: {Type: String}\nResources:\n  Model:\n    Type: AWS::SageMaker::Model\n    Properties: {ExecutionRoleArn: x}\n  Scaling:\n    Type: AWS::ApplicationAutoScaling::ScalableTarget\n  Role:\n    Type: AWS::IAM::Role\n",
        )
        .unwrap()
    }

    pub(crate) fn part<'a>(
        n: &'a Names,
        source: &'a Source<'a>,
        deployed: &'a Template,
    ) -> StagePart<'a> {
        StagePart {
            names: n,
            environment: "staging",
            tools: "111111111111",
            bucket: "estate-abalone-111111111111",
            source_account: "222222222222",
            source,
            deployed,
            test: true,
            test_rights: None,
        }
    }

    fn statement<'a>(t: &'a Value, role: &str, action: &str) -> &'a Value {
        t["Resources"][role]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| {
                s["Effect"] == "Allow"
                    && match &s["Action"] {
                        Value::Array(a) => a.iter().any(|x| x == action),
                        one => one == action,
                    }
            })
            .unwrap_or_else(|| panic!("no {action} in {role}"))
    }

    #[test]
    fn the_deploy_role_gets_the_handlers_actions_scoped_to_the_stage_prefix() {
        let n = Names::new("Abalone");
        let source = Source::Registry { group: "abalone" };
        let d = deployed();
        let t = stage_template(&part(&n, &source, &d));
        let create = statement(&t, "DeployRole", "sagemaker:CreateModel");
        assert_eq!(
            create["Resource"],
            json!([
                {"Fn::Sub": "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:model/estate-Abalone-staging-*"},
                {"Fn::Sub": "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:model/estate-abalone-staging-*"}
            ]),
            "SageMaker writes names in ARNs in lower case"
        );
        let create_role = statement(&t, "DeployRole", "iam:CreateRole");
        assert_eq!(
            create_role["Resource"]["Fn::Sub"],
            "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/estate-Abalone-staging-*"
        );
        assert_eq!(
            create_role["Condition"]["StringEquals"]["iam:PermissionsBoundary"]["Fn::Sub"],
            "arn:${AWS::Partition}:iam::${AWS::AccountId}:policy/estate-Abalone-staging-boundary"
        );
        let pass = statement(&t, "DeployRole", "iam:PassRole");
        assert_eq!(
            pass["Condition"]["StringEquals"]["iam:PassedToService"],
            json!(["sagemaker.amazonaws.com"])
        );
        let linked = statement(&t, "DeployRole", "iam:CreateServiceLinkedRole");
        assert_eq!(
            linked["Condition"]["StringEquals"]["iam:AWSServiceName"],
            "sagemaker.application-autoscaling.amazonaws.com"
        );
        let package = statement(&t, "DeployRole", "sagemaker:DescribeModelPackage");
        assert_eq!(
            package["Resource"]["Fn::Sub"],
            "arn:${AWS::Partition}:sagemaker:${AWS::Region}:222222222222:model-package/abalone/*"
        );
        let denies: Vec<&Value> = t["Resources"]["DeployRole"]["Properties"]["Policies"][0]
            ["PolicyDocument"]["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["Effect"] == "Deny")
            .collect();
        assert_eq!(
            denies.len(),
            2,
            "the model role and the boundary stay as made"
        );
        assert_eq!(
            t["Resources"]["ModelRole"]["Properties"]["PermissionsBoundary"],
            json!({"Ref": "Boundary"})
        );
    }

    #[test]
    fn the_action_role_only_reads_artifacts_and_service_roles_trust_their_own_account() {
        let n = Names::new("abalone");
        let source = Source::Registry { group: "abalone" };
        let d = deployed();
        let t = stage_template(&part(&n, &source, &d));
        let trust =
            &t["Resources"]["ActionRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0];
        assert_eq!(
            trust["Condition"]["ArnEquals"]["aws:PrincipalArn"]["Fn::Sub"],
            "arn:${AWS::Partition}:iam::111111111111:role/estate-abalone-pipeline"
        );
        let text = serde_json::to_string(&t["Resources"]["ActionRole"]).unwrap();
        for unused in [
            "s3:PutObject",
            "kms:Encrypt",
            "kms:GenerateDataKey",
            "kms:ReEncrypt",
        ] {
            assert!(!text.contains(unused), "{unused}");
        }
        for role in ["DeployRole", "ModelRole"] {
            let trust =
                &t["Resources"][role]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0];
            assert_eq!(
                trust["Condition"]["StringEquals"]["aws:SourceAccount"],
                json!({"Ref": "AWS::AccountId"}),
                "{role}"
            );
        }
        let test = statement(&t, "TestRole", "sagemaker:InvokeEndpoint");
        assert_eq!(
            test["Resource"][0]["Fn::Sub"],
            "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:endpoint/estate-abalone-staging-*"
        );
        let reads = statement(&t, "ModelRole", "s3:GetObject");
        assert_eq!(
            reads["Resource"]["Fn::Sub"],
            "arn:${AWS::Partition}:s3:::estate-abalone-222222222222-models/*"
        );
    }

    #[test]
    fn declared_test_rights_replace_the_default() {
        let n = Names::new("abalone");
        let source = Source::Upload {
            bucket: "models",
            key: "abalone/model.tar.gz",
        };
        let d = deployed();
        let rights = [TestRight {
            actions: vec!["s3:GetObject".into()],
            resources: vec![
                "arn:aws:s3:::results/*".into(),
                "sagemaker:endpoint/x".into(),
            ],
        }];
        let mut p = part(&n, &source, &d);
        p.test_rights = Some(&rights);
        let t = stage_template(&p);
        let test =
            &t["Resources"]["TestRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"];
        assert_eq!(test.as_array().unwrap().len(), 1);
        assert_eq!(
            test[0]["Resource"],
            json!([
                "arn:aws:s3:::results/*",
                {"Fn::Sub": "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:endpoint/x"}
            ])
        );
        let reads = statement(&t, "ModelRole", "s3:GetObject");
        assert_eq!(
            reads["Resource"]["Fn::Sub"],
            "arn:${AWS::Partition}:s3:::models/estate/models/*"
        );
        assert!(
            !serde_json::to_string(&t)
                .unwrap()
                .contains("DescribeModelPackage"),
            "no registry to read"
        );
        p.test = false;
        assert!(stage_template(&p)["Resources"].get("TestRole").is_none());
    }
}
