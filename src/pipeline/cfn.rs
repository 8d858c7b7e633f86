//! JSON building blocks the pipeline's templates share: `Fn::Sub` strings, IAM documents,
//! roles, EventBridge rules and the template skeleton.

use crate::manifest::names::Names;
use crate::tags::TAG_PIPELINE;
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

/// Trust in an AWS service, acting for the role's own account only (`aws:SourceAccount`)
/// and, when given, for one resource (`aws:SourceArn`): no other account's resource can make
/// the service use the role (the confused deputy).
pub(super) fn service_trust(service: &str, source_arn: Option<Value>) -> Value {
    let mut condition = json!({"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}});
    if let Some(arn) = source_arn {
        condition["ArnLike"] = json!({ "aws:SourceArn": arn });
    }
    document(vec![json!({
        "Effect": "Allow",
        "Principal": {"Service": service},
        "Action": "sts:AssumeRole",
        "Condition": condition
    })])
}

/// A KMS key kept past the pipeline (what it encrypted outlives it; a failed first create
/// leaves nothing behind): its own account administers it, `readers` may only decrypt.
pub(super) fn retained_key(description: String, readers: Vec<Value>) -> Value {
    json!({
        "Type": "AWS::KMS::Key",
        "DeletionPolicy": "RetainExceptOnCreate",
        "UpdateReplacePolicy": "Retain",
        "Properties": {
            "Description": description,
            "EnableKeyRotation": true,
            "KeyPolicy": document(vec![
                json!({
                    "Sid": "KeyAdministration",
                    "Effect": "Allow",
                    "Principal": {"AWS": sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:root".into())},
                    "Action": "kms:*",
                    "Resource": "*"
                }),
                json!({
                    "Sid": "StageRoles",
                    "Effect": "Allow",
                    "Principal": {"AWS": readers},
                    "Action": ["kms:Decrypt", "kms:DescribeKey"],
                    "Resource": "*"
                })
            ])
        }
    })
}

/// An ARN of the stack's own account and region: `arn:${AWS::Partition}:<service>:…:<rest>`.
pub(super) fn local_arn(service: &str, rest: &str) -> Value {
    sub(format!(
        "arn:${{AWS::Partition}}:{service}:${{AWS::Region}}:${{AWS::AccountId}}:{rest}"
    ))
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

/// A bucket policy statement refusing any access without TLS.
pub(super) fn deny_insecure_transport(bucket_arn: &Value, objects: &Value) -> Value {
    json!({
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [bucket_arn, objects],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}}
    })
}

/// A bucket policy statement refusing uploads not encrypted with the bucket's own key (the
/// template's `key`, by ARN or by its alias `alias`): not another key, not S3's, not none.
pub(super) fn deny_other_keys(objects: &Value, alias: &str, key: &str) -> Value {
    json!({
        "Sid": "DenyOtherKeys",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:PutObject",
        "Resource": objects,
        "Condition": {"StringNotEquals": {"s3:x-amz-server-side-encryption-aws-kms-key-id": [
            {"Fn::GetAtt": [key, "Arn"]},
            local_arn("kms", alias)
        ]}}
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
