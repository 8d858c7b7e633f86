//! CloudFormation templates: parsing (YAML with short-form intrinsic tags, or JSON), the
//! canonical data form used to compare templates, and parameter declarations and their checks.

use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use thiserror::Error;

/// Templates larger than this cannot be passed inline (`TemplateBody`) and go through S3.
pub const INLINE_TEMPLATE_LIMIT: usize = 51_200;
/// The largest template CloudFormation takes from S3 (TemplateURL), in bytes.
pub const URL_TEMPLATE_LIMIT: usize = 460_800;

#[derive(Debug, Error, PartialEq)]
pub enum TemplateError {
    #[error("template is not UTF-8 text")]
    NotUtf8,
    #[error("template does not parse: {message}")]
    Syntax {
        message: String,
        /// 1-based line, when the parser knows it.
        line: Option<usize>,
    },
    #[error("template must be a mapping with a `Resources` section")]
    NotATemplate,
    #[error("parameter `{0}` must be a mapping")]
    BadParameter(String),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    /// The text as written: what is sent to AWS, so reviewers see their own formatting.
    pub text: String,
    /// Canonical data: short-form tags expanded to their long form, so formatting, key order,
    /// comments or YAML-versus-JSON never show as a difference.
    pub body: Value,
    pub parameters: BTreeMap<String, ParameterDecl>,
}

/// One entry of the template's `Parameters` section.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParameterDecl {
    pub kind: String,
    pub default: Option<String>,
    pub allowed_values: Option<Vec<String>>,
    pub allowed_pattern: Option<String>,
    pub min_length: Option<u64>,
    pub max_length: Option<u64>,
    pub min_value: Option<f64>,
    pub max_value: Option<f64>,
    pub no_echo: bool,
}

impl Template {
    /// The keys of the template's `Outputs` section.
    pub fn outputs(&self) -> Vec<&str> {
        self.body
            .get("Outputs")
            .and_then(Value::as_object)
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }

    pub fn parse(bytes: &[u8]) -> Result<Template, TemplateError> {
        let text = std::str::from_utf8(bytes).map_err(|_| TemplateError::NotUtf8)?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let body = parse_body(text)?;
        let Some(resources) = body.get("Resources") else {
            return Err(TemplateError::NotATemplate);
        };
        if !resources.is_object() {
            return Err(TemplateError::NotATemplate);
        }
        let mut parameters = BTreeMap::new();
        if let Some(Value::Object(params)) = body.get("Parameters") {
            for (name, decl) in params {
                let decl = ParameterDecl::from_json(decl)
                    .ok_or_else(|| TemplateError::BadParameter(name.clone()))?;
                parameters.insert(name.clone(), decl);
            }
        }
        Ok(Template {
            text: text.to_string(),
            body,
            parameters,
        })
    }

    /// Resource types the template declares, for capability checks.
    pub fn resource_types(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.body["Resources"]
            .as_object()
            .into_iter()
            .flat_map(|r| r.values())
            .filter_map(|r| {
                Some((
                    r.get("Type")?.as_str()?,
                    r.get("Properties").unwrap_or(&Value::Null),
                ))
            })
    }

    /// The capabilities CloudFormation will insist on for this template.
    pub fn required_capabilities(&self) -> Vec<&'static str> {
        let mut needed = Vec::new();
        let mut iam = false;
        let mut named = false;
        for (ty, props) in self.resource_types() {
            if ty.starts_with("AWS::IAM::") {
                iam = true;
                let name_keys = [
                    "RoleName",
                    "UserName",
                    "GroupName",
                    "ManagedPolicyName",
                    "InstanceProfileName",
                ];
                if name_keys.iter().any(|k| props.get(k).is_some()) {
                    named = true;
                }
            }
        }
        if named {
            needed.push("CAPABILITY_NAMED_IAM");
        } else if iam {
            needed.push("CAPABILITY_IAM");
        }
        if self.body.get("Transform").is_some() {
            needed.push("CAPABILITY_AUTO_EXPAND");
        }
        needed
    }
}

/// Parses template text as JSON when it looks like JSON, otherwise as YAML.
pub fn parse_body(text: &str) -> Result<Value, TemplateError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim_start().starts_with('{') {
        match serde_json::from_str(text) {
            Ok(v) => return Ok(v),
            // A YAML flow mapping also starts with `{`: try YAML before giving up.
            Err(e) => {
                if let Ok(yaml) = serde_yaml::from_str::<serde_yaml::Value>(text) {
                    return Ok(canonical(yaml));
                }
                return Err(TemplateError::Syntax {
                    message: e.to_string(),
                    line: Some(e.line()),
                });
            }
        }
    }
    let yaml: serde_yaml::Value =
        serde_yaml::from_str(text).map_err(|e| TemplateError::Syntax {
            message: e.to_string(),
            line: e.location().map(|l| l.line()),
        })?;
    Ok(canonical(yaml))
}

/// YAML to JSON, expanding short-form intrinsics (`!Ref x` → `{"Ref": "x"}`).
fn canonical(value: serde_yaml::Value) -> Value {
    use serde_yaml::Value as Y;
    match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                json!(i)
            } else if let Some(u) = n.as_u64() {
                json!(u)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map_or(Value::Null, Value::Number)
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(canonical).collect()),
        Y::Mapping(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let key = match k {
                    Y::String(s) => s,
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    other => serde_yaml::to_string(&other)
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                };
                out.insert(key, canonical(v));
            }
            Value::Object(out)
        }
        Y::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let name = tag.trim_start_matches('!');
            let inner = canonical(tagged.value);
            match name {
                "Ref" | "Condition" => json!({ name: inner }),
                // `!GetAtt a.b` is shorthand for ["a", "b"]; the list form passes through.
                "GetAtt" => match inner {
                    Value::String(s) => {
                        let (res, attr) = s.split_once('.').unwrap_or((&s, ""));
                        json!({"Fn::GetAtt": [res, attr]})
                    }
                    other => json!({ "Fn::GetAtt": other }),
                },
                _ => json!({ format!("Fn::{name}"): inner }),
            }
        }
    }
}

impl ParameterDecl {
    fn from_json(v: &Value) -> Option<ParameterDecl> {
        let obj = v.as_object()?;
        let text = |k: &str| obj.get(k).map(scalar_text);
        let num = |k: &str| {
            obj.get(k)
                .and_then(|v| v.as_f64().or_else(|| v.as_str()?.parse().ok()))
        };
        Some(ParameterDecl {
            kind: text("Type").unwrap_or_else(|| "String".into()),
            default: text("Default"),
            allowed_values: obj
                .get("AllowedValues")
                .and_then(Value::as_array)
                .map(|a| a.iter().map(scalar_text).collect()),
            allowed_pattern: text("AllowedPattern"),
            min_length: num("MinLength").map(|f| f as u64),
            max_length: num("MaxLength").map(|f| f as u64),
            min_value: num("MinValue"),
            max_value: num("MaxValue"),
            no_echo: obj
                .get("NoEcho")
                .is_some_and(|v| v.as_bool() == Some(true) || v.as_str() == Some("true")),
        })
    }

    /// Checks a literal value against the declaration; returns what is wrong, if anything.
    pub fn check(&self, value: &str) -> Option<String> {
        if let Some(allowed) = &self.allowed_values {
            if !allowed.iter().any(|a| a == value) {
                return Some(format!("must be one of: {}", allowed.join(", ")));
            }
        }
        if self.kind == "Number" {
            let Ok(n) = value.trim().parse::<f64>() else {
                return Some("must be a number (the parameter's Type is Number)".into());
            };
            if let Some(min) = self.min_value {
                if n < min {
                    return Some(format!("must be at least {min}"));
                }
            }
            if let Some(max) = self.max_value {
                if n > max {
                    return Some(format!("must be at most {max}"));
                }
            }
        }
        let len = value.chars().count() as u64;
        if let Some(min) = self.min_length {
            if len < min {
                return Some(format!("must be at least {min} characters long"));
            }
        }
        if let Some(max) = self.max_length {
            if len > max {
                return Some(format!("must be at most {max} characters long"));
            }
        }
        if let Some(pattern) = &self.allowed_pattern {
            // CloudFormation matches the whole value against AllowedPattern.
            if let Ok(re) = regex::Regex::new(&format!("^(?:{pattern})$")) {
                if !re.is_match(value) {
                    return Some(format!("must match the pattern {pattern}"));
                }
            }
        }
        None
    }
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_and_json_forms_compare_equal() {
        let yaml = "Parameters:\r\n  Env: {Type: String, Default: dev}\r\nResources:\r\n  R:\r\n    Type: AWS::S3::Bucket\r\n    Properties:\r\n      BucketName: !Sub '${Env}-x'\r\n      Arn: !GetAtt Other.Arn\r\n      Id: !Ref Env\r\n";
        let json = r#"{"Resources": {"R": {"Properties": {"Id": {"Ref": "Env"},
            "Arn": {"Fn::GetAtt": ["Other", "Arn"]}, "BucketName": {"Fn::Sub": "${Env}-x"}},
            "Type": "AWS::S3::Bucket"}}, "Parameters": {"Env": {"Default": "dev", "Type": "String"}}}"#;
        let a = Template::parse(yaml.as_bytes()).unwrap();
        let b = Template::parse(json.as_bytes()).unwrap();
        assert_eq!(a.body, b.body);
        assert_eq!(a.parameters["Env"].default.as_deref(), Some("dev"));
    }

    #[test]
    fn checks_allowed_values_patterns_and_lengths() {
        let d = ParameterDecl {
            kind: "String".into(),
            allowed_pattern: Some("[a-z0-9\\-]*".into()),
            max_length: Some(5),
            ..Default::default()
        };
        assert_eq!(d.check("ab-1"), None);
        assert!(d.check("AB").unwrap().contains("pattern"));
        assert!(d.check("abcdef").unwrap().contains("at most 5"));
        let m = ParameterDecl {
            kind: "String".into(),
            min_length: Some(3),
            ..Default::default()
        };
        assert!(
            m.check("ab").unwrap().contains("at least 3"),
            "{:?}",
            m.check("ab")
        );
        assert_eq!(m.check("abc"), None);
        let n = ParameterDecl {
            kind: "Number".into(),
            min_value: Some(1.0),
            ..Default::default()
        };
        assert!(n.check("x").is_some());
        assert!(n.check("0").is_some());
        assert_eq!(n.check("3"), None);
    }

    #[test]
    fn yaml_flow_mappings_and_byte_order_marks_parse() {
        let flow = "{Resources: {T: {Type: 'AWS::SNS::Topic', Properties: {TopicName: !Ref N}}}}";
        let t = Template::parse(flow.as_bytes()).unwrap();
        assert_eq!(
            t.body["Resources"]["T"]["Properties"]["TopicName"],
            json!({"Ref": "N"})
        );
        let bom = "\u{feff}{\"Resources\": {}}";
        assert_eq!(parse_body(bom).unwrap(), json!({"Resources": {}}));
    }

    #[test]
    fn a_document_without_resources_is_not_a_template() {
        assert_eq!(
            Template::parse(b"{\"pipeline\": {}}").unwrap_err(),
            TemplateError::NotATemplate
        );
    }
}
