//! What a pipeline's deploy role may do for each resource type a stage template may hold: the
//! actions of the type's CloudFormation handlers (create, read, update, delete; from the
//! registry's resource schemas), each scoped to the stage's name prefix where the action takes
//! a resource ARN. Manifest knowledge: `validate` refuses a stage template with a type this
//! table does not know or a resource not named in the prefix; `pipeline` builds the policy.

/// Where a group of actions applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Resources the template names in the stage's prefix: the ARN up to the name
    /// (`sagemaker:${AWS::Region}:${AWS::AccountId}:endpoint/`), then `<prefix>-*`.
    /// `lowercase`: the service writes names in ARNs in lower case.
    Named { arn: &'static str, lowercase: bool },
    /// Resources whose names AWS chooses, in the stage account (a full ARN pattern after
    /// `arn:${AWS::Partition}:`).
    InAccount(&'static str),
    /// Actions that take no resource ARN (describe and list calls, metric reads).
    Any,
    /// Roles in the prefix, and only while they carry the stage's permissions boundary
    /// (`iam:PermissionsBoundary`): the actions that write a role's rights.
    BoundedRole,
    /// Roles in the prefix: the actions that read, tag or delete them.
    Role,
    /// Managed policies in the prefix.
    Policy,
    /// The service-linked role of a service (`iam:CreateServiceLinkedRole`).
    ServiceLinkedRole(&'static str),
}

/// Actions and where they apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rights {
    pub actions: &'static [&'static str],
    pub scope: Scope,
}

/// What the deploy role needs for one resource type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeRights {
    pub type_name: &'static str,
    /// The property that names the resource, which must start with the stage's prefix (the
    /// scoped ARNs name it); `None` when AWS chooses the name or no ARN carries it.
    pub name_property: Option<&'static str>,
    pub rights: &'static [Rights],
    /// The service a role of the stage is passed to (`iam:PassedToService`), if the type
    /// takes one.
    pub passes_role_to: Option<&'static str>,
}

const SAGEMAKER_TAGS: [&str; 3] = [
    "sagemaker:AddTags",
    "sagemaker:DeleteTags",
    "sagemaker:ListTags",
];

/// Alarms that target tracking creates for a scaling policy (`TargetTracking-<resource>-…`).
const TARGET_TRACKING_ALARMS: &str =
    "cloudwatch:${AWS::Region}:${AWS::AccountId}:alarm:TargetTracking-*";
const SCALABLE_TARGETS: &str =
    "application-autoscaling:${AWS::Region}:${AWS::AccountId}:scalable-target/*";
const SAGEMAKER_SCALING_ROLE: &str = "sagemaker.application-autoscaling.amazonaws.com";

/// Every resource type a stage template may hold.
pub const TABLE: &[TypeRights] = &[
    TypeRights {
        type_name: "AWS::SageMaker::Model",
        name_property: Some("ModelName"),
        rights: &[Rights {
            actions: &[
                "sagemaker:CreateModel",
                "sagemaker:DescribeModel",
                "sagemaker:DeleteModel",
                SAGEMAKER_TAGS[0],
                SAGEMAKER_TAGS[1],
                SAGEMAKER_TAGS[2],
            ],
            scope: Scope::Named {
                arn: "sagemaker:${AWS::Region}:${AWS::AccountId}:model/",
                lowercase: true,
            },
        }],
        passes_role_to: Some("sagemaker.amazonaws.com"),
    },
    TypeRights {
        type_name: "AWS::SageMaker::EndpointConfig",
        name_property: Some("EndpointConfigName"),
        rights: &[
            Rights {
                actions: &[
                    "sagemaker:CreateEndpointConfig",
                    "sagemaker:DescribeEndpointConfig",
                    "sagemaker:DeleteEndpointConfig",
                    SAGEMAKER_TAGS[0],
                    SAGEMAKER_TAGS[1],
                    SAGEMAKER_TAGS[2],
                ],
                scope: Scope::Named {
                    arn: "sagemaker:${AWS::Region}:${AWS::AccountId}:endpoint-config/",
                    lowercase: true,
                },
            },
            // A configuration may encrypt the endpoint's storage with a key of the account.
            Rights {
                actions: &["kms:DescribeKey", "kms:CreateGrant"],
                scope: Scope::InAccount("kms:${AWS::Region}:${AWS::AccountId}:key/*"),
            },
        ],
        passes_role_to: Some("sagemaker.amazonaws.com"),
    },
    TypeRights {
        type_name: "AWS::SageMaker::Endpoint",
        name_property: Some("EndpointName"),
        rights: &[
            Rights {
                actions: &[
                    "sagemaker:CreateEndpoint",
                    "sagemaker:DescribeEndpoint",
                    "sagemaker:UpdateEndpoint",
                    "sagemaker:DeleteEndpoint",
                    SAGEMAKER_TAGS[0],
                    SAGEMAKER_TAGS[1],
                    SAGEMAKER_TAGS[2],
                ],
                scope: Scope::Named {
                    arn: "sagemaker:${AWS::Region}:${AWS::AccountId}:endpoint/",
                    lowercase: true,
                },
            },
            // Creating or updating an endpoint is also authorized on its configuration.
            Rights {
                actions: &["sagemaker:CreateEndpoint", "sagemaker:UpdateEndpoint"],
                scope: Scope::Named {
                    arn: "sagemaker:${AWS::Region}:${AWS::AccountId}:endpoint-config/",
                    lowercase: true,
                },
            },
        ],
        passes_role_to: None,
    },
    TypeRights {
        type_name: "AWS::ApplicationAutoScaling::ScalableTarget",
        name_property: None,
        rights: &[
            Rights {
                actions: &[
                    "application-autoscaling:RegisterScalableTarget",
                    "application-autoscaling:DeregisterScalableTarget",
                    "application-autoscaling:PutScheduledAction",
                    "application-autoscaling:DeleteScheduledAction",
                    "application-autoscaling:TagResource",
                    "application-autoscaling:UntagResource",
                    "application-autoscaling:ListTagsForResource",
                ],
                scope: Scope::InAccount(SCALABLE_TARGETS),
            },
            Rights {
                actions: &[
                    "application-autoscaling:DescribeScalableTargets",
                    "application-autoscaling:DescribeScheduledActions",
                    "cloudwatch:DescribeAlarms",
                ],
                scope: Scope::Any,
            },
            Rights {
                actions: &["cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms"],
                scope: Scope::InAccount(TARGET_TRACKING_ALARMS),
            },
            // The first scalable target of an endpoint creates its service-linked role.
            Rights {
                actions: &["iam:CreateServiceLinkedRole"],
                scope: Scope::ServiceLinkedRole(SAGEMAKER_SCALING_ROLE),
            },
        ],
        passes_role_to: None,
    },
    TypeRights {
        type_name: "AWS::ApplicationAutoScaling::ScalingPolicy",
        name_property: None,
        rights: &[
            Rights {
                actions: &[
                    "application-autoscaling:PutScalingPolicy",
                    "application-autoscaling:DeleteScalingPolicy",
                ],
                scope: Scope::InAccount(SCALABLE_TARGETS),
            },
            Rights {
                actions: &[
                    "application-autoscaling:DescribeScalingPolicies",
                    "cloudwatch:GetMetricData",
                    "cloudwatch:DescribeAlarms",
                ],
                scope: Scope::Any,
            },
            // Target tracking creates and deletes its alarms with the caller's rights.
            Rights {
                actions: &["cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms"],
                scope: Scope::InAccount(TARGET_TRACKING_ALARMS),
            },
        ],
        passes_role_to: None,
    },
    TypeRights {
        type_name: "AWS::CloudWatch::Alarm",
        name_property: Some("AlarmName"),
        rights: &[
            Rights {
                actions: &[
                    "cloudwatch:PutMetricAlarm",
                    "cloudwatch:DeleteAlarms",
                    "cloudwatch:TagResource",
                    "cloudwatch:UntagResource",
                    "cloudwatch:ListTagsForResource",
                ],
                scope: Scope::Named {
                    arn: "cloudwatch:${AWS::Region}:${AWS::AccountId}:alarm:",
                    lowercase: false,
                },
            },
            Rights {
                actions: &["cloudwatch:DescribeAlarms"],
                scope: Scope::Any,
            },
        ],
        passes_role_to: None,
    },
    TypeRights {
        type_name: "AWS::Logs::LogGroup",
        name_property: Some("LogGroupName"),
        rights: &[
            Rights {
                actions: &[
                    "logs:CreateLogGroup",
                    "logs:DeleteLogGroup",
                    "logs:PutRetentionPolicy",
                    "logs:DeleteRetentionPolicy",
                    "logs:AssociateKmsKey",
                    "logs:DisassociateKmsKey",
                    "logs:TagResource",
                    "logs:UntagResource",
                    "logs:ListTagsForResource",
                ],
                scope: Scope::Named {
                    arn: "logs:${AWS::Region}:${AWS::AccountId}:log-group:",
                    lowercase: false,
                },
            },
            Rights {
                actions: &["logs:DescribeLogGroups"],
                scope: Scope::Any,
            },
        ],
        passes_role_to: None,
    },
    TypeRights {
        type_name: "AWS::SNS::Topic",
        name_property: Some("TopicName"),
        rights: &[Rights {
            actions: &[
                "sns:CreateTopic",
                "sns:DeleteTopic",
                "sns:GetTopicAttributes",
                "sns:SetTopicAttributes",
                "sns:Subscribe",
                "sns:Unsubscribe",
                "sns:ListSubscriptionsByTopic",
                "sns:TagResource",
                "sns:UntagResource",
                "sns:ListTagsForResource",
            ],
            scope: Scope::Named {
                arn: "sns:${AWS::Region}:${AWS::AccountId}:",
                lowercase: false,
            },
        }],
        passes_role_to: None,
    },
    TypeRights {
        type_name: "AWS::S3::Bucket",
        name_property: Some("BucketName"),
        rights: &[Rights {
            actions: &[
                "s3:CreateBucket",
                "s3:DeleteBucket",
                "s3:ListBucket",
                "s3:GetBucketAcl",
                "s3:GetBucketTagging",
                "s3:PutBucketTagging",
                "s3:GetEncryptionConfiguration",
                "s3:PutEncryptionConfiguration",
                "s3:GetBucketVersioning",
                "s3:PutBucketVersioning",
                "s3:GetBucketPublicAccessBlock",
                "s3:PutBucketPublicAccessBlock",
                "s3:GetBucketOwnershipControls",
                "s3:PutBucketOwnershipControls",
                "s3:GetLifecycleConfiguration",
                "s3:PutLifecycleConfiguration",
                "s3:GetBucketNotification",
                "s3:PutBucketNotification",
                "s3:GetBucketLogging",
                "s3:PutBucketLogging",
                "s3:GetBucketCORS",
                "s3:PutBucketCORS",
            ],
            scope: Scope::Named {
                arn: "s3:::",
                lowercase: true,
            },
        }],
        passes_role_to: None,
    },
    TypeRights {
        type_name: "AWS::IAM::Role",
        name_property: Some("RoleName"),
        rights: &[
            Rights {
                actions: BOUNDED_ROLE_ACTIONS,
                scope: Scope::BoundedRole,
            },
            Rights {
                actions: &[
                    "iam:GetRole",
                    "iam:GetRolePolicy",
                    "iam:ListRolePolicies",
                    "iam:ListAttachedRolePolicies",
                    "iam:DeleteRole",
                    "iam:UpdateRole",
                    "iam:UpdateRoleDescription",
                    "iam:UpdateAssumeRolePolicy",
                    "iam:TagRole",
                    "iam:UntagRole",
                ],
                scope: Scope::Role,
            },
        ],
        passes_role_to: None,
    },
    TypeRights {
        type_name: "AWS::IAM::RolePolicy",
        name_property: None,
        rights: &[
            Rights {
                actions: &["iam:PutRolePolicy", "iam:DeleteRolePolicy"],
                scope: Scope::BoundedRole,
            },
            Rights {
                actions: &["iam:GetRolePolicy"],
                scope: Scope::Role,
            },
        ],
        passes_role_to: None,
    },
    TypeRights {
        type_name: "AWS::IAM::ManagedPolicy",
        name_property: Some("ManagedPolicyName"),
        rights: &[
            Rights {
                actions: POLICY_ACTIONS,
                scope: Scope::Policy,
            },
            // Attached to the stage's bounded roles only (not to users or groups).
            Rights {
                actions: &["iam:AttachRolePolicy", "iam:DetachRolePolicy"],
                scope: Scope::BoundedRole,
            },
        ],
        passes_role_to: None,
    },
    TypeRights {
        type_name: "AWS::CloudFormation::WaitConditionHandle",
        name_property: None,
        rights: &[],
        passes_role_to: None,
    },
];

/// The actions that change what a role may do: allowed only on roles carrying the stage's
/// boundary, and denied on the pipeline's own role in the prefix.
pub const BOUNDED_ROLE_ACTIONS: &[&str] = &[
    "iam:CreateRole",
    "iam:PutRolePolicy",
    "iam:DeleteRolePolicy",
    "iam:AttachRolePolicy",
    "iam:DetachRolePolicy",
    "iam:PutRolePermissionsBoundary",
];

/// The actions on managed policies in the prefix.
pub const POLICY_ACTIONS: &[&str] = &[
    "iam:CreatePolicy",
    "iam:GetPolicy",
    "iam:GetPolicyVersion",
    "iam:ListPolicyVersions",
    "iam:ListEntitiesForPolicy",
    "iam:CreatePolicyVersion",
    "iam:DeletePolicyVersion",
    "iam:DeletePolicy",
];

/// The rights of a resource type, if a stage template may hold it.
pub fn rights(type_name: &str) -> Option<&'static TypeRights> {
    TABLE.iter().find(|t| t.type_name == type_name)
}

/// The type names of the table, for "did you mean".
pub fn type_names() -> Vec<&'static str> {
    TABLE.iter().map(|t| t.type_name).collect()
}

/// Whether `value` (a template property, canonical JSON) names a resource in the stage's
/// prefix: `!Sub "${AWS::StackName}-…"`, or `!Join ["-", [!Ref AWS::StackName, …]]`.
pub fn in_stage_prefix(value: &serde_json::Value) -> bool {
    if let Some(sub) = value.get("Fn::Sub") {
        let text = match sub {
            serde_json::Value::Array(a) => a.first().and_then(|v| v.as_str()),
            other => other.as_str(),
        };
        return text.is_some_and(|t| t.starts_with("${AWS::StackName}-"));
    }
    if let Some(serde_json::Value::Array(join)) = value.get("Fn::Join") {
        return join.first().and_then(|d| d.as_str()) == Some("-")
            && join
                .get(1)
                .and_then(|l| l.get(0))
                .and_then(|f| f.get("Ref"))
                .and_then(|r| r.as_str())
                == Some("AWS::StackName");
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_in_the_prefix_start_with_the_stack_name() {
        assert!(in_stage_prefix(
            &json!({"Fn::Sub": "${AWS::StackName}-model"})
        ));
        assert!(in_stage_prefix(
            &json!({"Fn::Sub": ["${AWS::StackName}-${X}", {"X": "y"}]})
        ));
        assert!(in_stage_prefix(
            &json!({"Fn::Join": ["-", [{"Ref": "AWS::StackName"}, "endpoint"]]})
        ));
        assert!(!in_stage_prefix(
            &json!({"Fn::Sub": "model-${AWS::StackName}"})
        ));
        assert!(!in_stage_prefix(
            &json!({"Fn::Sub": "${AWS::StackName}model"})
        ));
        assert!(!in_stage_prefix(&json!("estate-p-staging-model")));
        assert!(!in_stage_prefix(
            &json!({"Fn::Join": ["", [{"Ref": "AWS::StackName"}, "x"]]})
        ));
    }

    #[test]
    fn no_type_grants_a_whole_service_or_everything() {
        for t in TABLE {
            for r in t.rights {
                for a in r.actions {
                    assert!(!a.ends_with(":*") && *a != "*", "{} {a}", t.type_name);
                    assert!(a.contains(':'), "{} {a}", t.type_name);
                }
            }
        }
    }
}
