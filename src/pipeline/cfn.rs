//! JSON building blocks the pipeline's templates share: `Fn::Sub` strings, IAM documents,
//! roles, EventBridge rules and the template skeleton.

use super::{Names, TAG_PIPELINE};
use crate::template::Template;
use serde_json::{Value, json};

pub(super) fn sub(text: String) -> Value {
    json!({"Fn::Sub": text})
}

pub(super) fn role_arn(account: &str, name: &str) -> Value {
    sub(format!(
        "arn:${{AWS::Partition}}:iam::{account}:role/{name}"
    ))
}

pub(super) fn document(statements: Vec<Value>) -> Value {
    json!({"Version": "2012-10-17", "Statement": statements})
}

pub(super) fn service_trust(service: &str) -> Value {
    document(vec![json!({
        "Effect": "Allow",
        "Principal": {"Service": service},
        "Action": "sts:AssumeRole"
    })])
}

/// Trust in exactly one role of another account, which need not exist yet.
pub(super) fn role_trust(account: &str, role: &str) -> Value {
    document(vec![json!({
        "Effect": "Allow",
        "Principal": {"AWS": sub(format!("arn:${{AWS::Partition}}:iam::{account}:root"))},
        "Action": "sts:AssumeRole",
        "Condition": {"ArnEquals": {"aws:PrincipalArn": role_arn(account, role)}}
    })])
}

/// An IAM role of the pipeline `n`, with its inline policy when it has one.
pub(super) fn role(
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
pub(super) fn rule(
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

pub(super) fn tags(pipeline: &str) -> Value {
    json!([{"Key": TAG_PIPELINE, "Value": pipeline}])
}

pub(super) fn template(description: String, resources: Value, outputs: Value) -> Value {
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
