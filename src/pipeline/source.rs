//! The source part of a pipeline: model approvals forwarded from the source account to the
//! tools account, and the role the pipeline's build reads the model registry with.

use super::Names;
use super::cfn::{role, role_trust, rule, service_trust, sub, template};
use serde_json::{Value, json};

pub(super) fn approved_pattern(group: &str, account: Option<&str>) -> Value {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::tools::tests::stages;
    use crate::pipeline::{Tools, tools_template};

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
}
