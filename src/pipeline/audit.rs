//! The grants too broad for a generated template: any `"Action": "*"`, a whole service
//! (`<service>:*`) on every resource, `iam:PassRole` on every role. The tests run it over
//! every template a pipeline compiles to.

use serde_json::Value;

/// Every too-broad grant of `template`, described (empty when there is none).
///
/// In an identity policy, `"Resource": "*"` is every resource. In a resource policy (a
/// statement with a `Principal`: key, bucket, group and bus policies) it is the resource the
/// policy is attached to, so only `"Action": "*"` counts there.
pub fn broad_grants(template: &Value) -> Vec<String> {
    let mut found = Vec::new();
    walk(template, "", &mut found);
    found
}

fn walk(v: &Value, path: &str, found: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            if let Some(statements) = o.get("Statement") {
                let list = match statements {
                    Value::Array(a) => a.clone(),
                    one => vec![one.clone()],
                };
                for (i, s) in list.iter().enumerate() {
                    statement(s, &format!("{path}/Statement/{i}"), found);
                }
            }
            for (k, child) in o {
                walk(child, &format!("{path}/{k}"), found);
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                walk(child, &format!("{path}/{i}"), found);
            }
        }
        _ => {}
    }
}

fn strings(v: Option<&Value>) -> Vec<&Value> {
    match v {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(one) => vec![one],
        None => Vec::new(),
    }
}

fn statement(s: &Value, path: &str, found: &mut Vec<String>) {
    if s.get("Effect").and_then(Value::as_str) != Some("Allow") {
        return;
    }
    let actions: Vec<&str> = strings(s.get("Action"))
        .into_iter()
        .filter_map(Value::as_str)
        .collect();
    let identity = s.get("Principal").is_none();
    let everything = strings(s.get("Resource")).iter().any(|r| *r == "*");
    for a in actions {
        if a == "*" {
            found.push(format!("{path}: \"Action\": \"*\""));
        } else if identity && everything && a.ends_with(":*") {
            found.push(format!("{path}: {a} on *"));
        } else if identity && everything && a.eq_ignore_ascii_case("iam:PassRole") {
            found.push(format!("{path}: iam:PassRole on *"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn it_finds_each_kind_of_broad_grant_and_nothing_else() {
        let t = json!({"Resources": {
            "A": {"Properties": {"Policies": [{"PolicyDocument": {"Statement": [
                {"Effect": "Allow", "Action": "*", "Resource": {"Fn::Sub": "x"}},
                {"Effect": "Allow", "Action": ["sagemaker:*"], "Resource": "*"},
                {"Effect": "Allow", "Action": "iam:PassRole", "Resource": ["a", "*"]},
                {"Effect": "Allow", "Action": "sagemaker:*", "Resource": {"Fn::Sub": "arn"}},
                {"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
                {"Effect": "Deny", "Action": "s3:*", "Resource": "*"}
            ]}}]}},
            "Key": {"Properties": {"KeyPolicy": {"Statement": {
                "Effect": "Allow", "Principal": {"AWS": "root"}, "Action": "kms:*", "Resource": "*"
            }}}}
        }});
        let found = broad_grants(&t);
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found[0].ends_with("\"Action\": \"*\""));
        assert!(found[1].ends_with("sagemaker:* on *"));
        assert!(found[2].ends_with("iam:PassRole on *"));
    }
}
