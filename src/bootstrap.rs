//! The roles self-managed stack sets need, as estate bootstraps them: the administration role
//! (a CloudFormation stack where estate runs) and the execution role in member accounts (a
//! service-managed stack set, deployed to exactly the accounts that need it). Pure: names and
//! templates only.

use serde_json::{Value, json};

/// AWS's default role names for self-managed stack sets.
pub const ADMINISTRATION_ROLE: &str = "AWSCloudFormationStackSetAdministrationRole";
pub const EXECUTION_ROLE: &str = "AWSCloudFormationStackSetExecutionRole";

/// The stack holding the administration role in the account estate runs as.
pub fn administration_stack(estate: &str) -> String {
    format!("estate-{estate}-stackset-administration")
}

/// The service-managed stack set deploying the execution role to member accounts.
pub fn execution_stack_set(estate: &str) -> String {
    format!("estate-{estate}-stackset-execution")
}

/// The administration role (trusted by CloudFormation in this account only, allowed to
/// assume the execution role anywhere) and, when self-managed stack sets target this very
/// account, the execution role here too.
pub fn administration_template(with_execution_role: bool) -> Value {
    let mut resources = json!({
        "AdministrationRole": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "RoleName": ADMINISTRATION_ROLE,
                "Description": "estate: CloudFormation StackSets administers self-managed stack sets with this role",
                "AssumeRolePolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [{
                        "Effect": "Allow",
                        "Principal": {"Service": "cloudformation.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                        "Condition": {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
                    }]
                },
                "Policies": [{
                    "PolicyName": "assume-execution-role",
                    "PolicyDocument": {
                        "Version": "2012-10-17",
                        "Statement": [{
                            "Effect": "Allow",
                            "Action": "sts:AssumeRole",
                            "Resource": {"Fn::Sub": format!("arn:${{AWS::Partition}}:iam::*:role/{EXECUTION_ROLE}")}
                        }]
                    }
                }]
            }
        }
    });
    let mut outputs = json!({
        "AdministrationRoleArn": {"Value": {"Fn::GetAtt": ["AdministrationRole", "Arn"]}}
    });
    if with_execution_role {
        resources["ExecutionRole"] = execution_role(json!({
            "Fn::GetAtt": ["AdministrationRole", "Arn"]
        }));
        // The output is how a plan tells, from DescribeStacks alone, that the role is here.
        outputs["ExecutionRoleArn"] = json!({"Value": {"Fn::GetAtt": ["ExecutionRole", "Arn"]}});
    }
    json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "estate: the administration role of self-managed stack sets",
        "Resources": resources,
        "Outputs": outputs
    })
}

/// The execution role for member accounts, trusting exactly the administration role of the
/// account estate runs as.
pub fn execution_template(administrator: &str) -> Value {
    json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "estate: the execution role self-managed stack sets deploy with",
        "Resources": {
            "ExecutionRole": execution_role(json!({
                "Fn::Sub": format!("arn:${{AWS::Partition}}:iam::{administrator}:role/{ADMINISTRATION_ROLE}")
            }))
        }
    })
}

fn execution_role(trusted: Value) -> Value {
    json!({
        "Type": "AWS::IAM::Role",
        "Properties": {
            "RoleName": EXECUTION_ROLE,
            "Description": "estate: self-managed stack sets deploy their stacks in this account with this role",
            "AssumeRolePolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [{
                    "Effect": "Allow",
                    "Principal": {"AWS": trusted},
                    "Action": "sts:AssumeRole"
                }]
            },
            // What AWS's own StackSets set-up grants: a stack set may deploy any resource.
            "ManagedPolicyArns": [{"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/AdministratorAccess"}]
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_execution_role_trusts_exactly_the_administration_role() {
        let t = execution_template("111111111111");
        let trust = &t["Resources"]["ExecutionRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
            [0]["Principal"]["AWS"]["Fn::Sub"];
        assert_eq!(
            trust,
            "arn:${AWS::Partition}:iam::111111111111:role/AWSCloudFormationStackSetAdministrationRole"
        );
        let admin = administration_template(false);
        assert!(admin["Resources"].get("ExecutionRole").is_none());
        let both = administration_template(true);
        assert_eq!(
            both["Resources"]["ExecutionRole"]["Properties"]["RoleName"],
            EXECUTION_ROLE
        );
    }
}
