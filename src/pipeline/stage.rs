//! The stage part of a pipeline: the roles it deploys with in each target account.

use super::Names;
use super::cfn::{role, role_trust, service_trust, sub, template};
use crate::template::Template;
use serde_json::{Value, json};
use std::collections::BTreeSet;

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

#[cfg(test)]
mod tests {
    use super::*;

    fn deployed() -> Template {
        Template::parse(
            b"Parameters:\n  ModelPackageArn: {Type: String}\nResources:\n  Model:\n    Type: AWS::SageMaker::Model\n    Properties: {ExecutionRoleArn: x}\n  Scaling:\n    Type: AWS::ApplicationAutoScaling::ScalableTarget\n",
        )
        .unwrap()
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
}
