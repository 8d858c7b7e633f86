//! The JSON Schema: generated from the typed model, published as schema/estate.schema.json,
//! and used to check each document before it is deserialized.

use super::model::*;
use crate::diag::{Code, Diagnostics};
use crate::yaml::Node;
use schemars::generate::SchemaSettings;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// The schema as committed in the repository (a test keeps it equal to [`generate`]).
pub const PUBLISHED: &str = include_str!("../../schema/estate.schema.json");

/// Builds the schema from the model: one `$defs` entry per kind, chosen by `kind`.
pub fn generate() -> Value {
    let mut generator = SchemaSettings::draft2020_12().into_generator();
    let mut refs = Vec::new();
    macro_rules! kind {
        ($kind:expr, $spec:ty) => {
            refs.push(($kind, generator.subschema_for::<Document<$spec>>()));
        };
    }
    kind!(Kind::Estate, EstateSpec);
    kind!(Kind::Organization, OrganizationSpec);
    kind!(Kind::Environment, EnvironmentSpec);
    kind!(Kind::StackSet, StackSetSpec);
    kind!(Kind::Portfolio, PortfolioSpec);
    kind!(Kind::Pipeline, PipelineSpec);

    let mut defs: serde_json::Map<String, Value> = generator
        .take_definitions(true)
        .into_iter()
        .collect::<BTreeMap<_, _>>()
        .into_iter()
        .collect();
    let mut branches = Vec::new();
    for (kind, reference) in refs {
        let reference = reference.as_value()["$ref"]
            .as_str()
            .expect("documents are generated as references")
            .to_string();
        let old = reference.trim_start_matches("#/$defs/").to_string();
        let new = format!("{}Document", kind.as_str());
        let mut def = defs.remove(&old).expect("referenced definition exists");
        def["properties"]["kind"] = json!({"const": kind.as_str()});
        def["title"] = json!(format!("{} document", kind.as_str()));
        defs.insert(new.clone(), def);
        branches.push(json!({
            "if": {"properties": {"kind": {"const": kind.as_str()}}, "required": ["kind"]},
            "then": {"$ref": format!("#/$defs/{new}")}
        }));
    }
    let mut defs = Value::Object(defs);
    strip_null(&mut defs);
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://github.com/estate-dev/estate/schema/estate.schema.json",
        "title": "estate manifest document",
        "description": "One YAML document of an estate manifest (apiVersion estate/v1).",
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": API_VERSION},
            "kind": {"enum": Kind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>()},
        },
        "allOf": branches,
        "$defs": defs,
    })
}

/// Omitted fields are absent, never null: schemars lets `Option` fields be null, which would let
/// `foo:` with no value through, so null is taken out of every union.
fn strip_null(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if let Some(Value::Array(types)) = map.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let only = types.remove(0);
                    map.insert("type".into(), only);
                }
            }
            if let Some(Value::Array(branches)) = map.get("anyOf") {
                let rest: Vec<Value> = branches
                    .iter()
                    .filter(|b| b.get("type") != Some(&json!("null")))
                    .cloned()
                    .collect();
                if rest.len() == 1 {
                    map.remove("anyOf");
                    if let Value::Object(inner) = &rest[0] {
                        for (k, v) in inner {
                            map.entry(k.clone()).or_insert_with(|| v.clone());
                        }
                    }
                } else if rest.len() < branches.len() {
                    map.insert("anyOf".into(), Value::Array(rest));
                }
            }
            for child in map.values_mut() {
                strip_null(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(strip_null),
        _ => {}
    }
}

/// Keys in sorted order whatever map serde_json was built with (a dependency may turn on
/// `preserve_order`), so the published file is byte-for-byte reproducible.
fn sorted(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// Pretty JSON with a trailing newline, as committed.
pub fn generate_text() -> String {
    let mut text = serde_json::to_string_pretty(&sorted(generate())).expect("schema serializes");
    text.push('\n');
    text
}

fn published() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| serde_json::from_str(PUBLISHED).expect("published schema is JSON"))
}

fn validator(kind: Kind) -> &'static jsonschema::Validator {
    static VALIDATORS: OnceLock<BTreeMap<Kind, jsonschema::Validator>> = OnceLock::new();
    let all = VALIDATORS.get_or_init(|| {
        Kind::ALL
            .into_iter()
            .map(|k| {
                let schema = json!({
                    "$schema": "https://json-schema.org/draft/2020-12/schema",
                    "$ref": format!("#/$defs/{}Document", k.as_str()),
                    "$defs": published()["$defs"].clone(),
                });
                let v = jsonschema::validator_for(&schema).expect("published schema compiles");
                (k, v)
            })
            .collect()
    });
    &all[&kind]
}

/// Checks one document of `kind`; returns whether it is valid. Every error is reported.
pub fn check(kind: Kind, doc: &Node, file: &str, diags: &mut Diagnostics) -> bool {
    let instance = doc.to_json();
    let mut valid = true;
    for error in validator(kind).iter_errors(&instance) {
        valid = false;
        let path = error.instance_path().as_str().to_string();
        report(kind, doc, file, &path, error.kind(), diags);
    }
    valid
}

fn report(
    kind: Kind,
    doc: &Node,
    file: &str,
    path: &str,
    error: &jsonschema::error::ValidationErrorKind,
    diags: &mut Diagnostics,
) {
    use jsonschema::error::ValidationErrorKind as K;
    let at = if path.is_empty() {
        "the document".to_string()
    } else {
        format!("`{}`", dotted(path))
    };
    let span = doc.span_for(path);
    if in_parameters(path) {
        // Which parameters are NoEcho is known only once templates are read: say nothing of
        // any parameter value here, and hide its source lines.
        let node = doc.pointer(path);
        let message = match error {
            K::Type { kind } => format!("{at} must be {}, found {}", type_name(kind), shape(node)),
            _ => format!(
                "{at} must be a string, number or boolean, found {}",
                shape(node)
            ),
        };
        diags
            .error(Code::Type, file, span, message)
            .label("not a parameter value")
            .sensitive();
        return;
    }
    match error {
        K::AdditionalProperties { unexpected } => {
            let allowed = properties_at(kind, path);
            for name in unexpected {
                let span = doc.key_span(path, name).unwrap_or_else(|| span.clone());
                let help = match crate::diag::closest(name, allowed.iter().map(String::as_str)) {
                    Some(best) => format!("did you mean `{best}`?"),
                    None => format!("allowed fields: {}", allowed.join(", ")),
                };
                diags
                    .error(
                        Code::UnknownField,
                        file,
                        span,
                        format!("unknown field `{name}` in {}", where_(kind, path)),
                    )
                    .label("not a field here")
                    .help(help);
            }
        }
        K::Required { property } => {
            let property = property.as_str().unwrap_or_default();
            diags
                .error(
                    Code::MissingField,
                    file,
                    span,
                    format!(
                        "missing required field `{property}` in {}",
                        where_(kind, path)
                    ),
                )
                .label(format!("`{property}` is required here"));
        }
        K::Type { kind: expected } => {
            let node = doc.pointer(path);
            let expected = type_name(expected);
            let b = diags
                .error(
                    Code::Type,
                    file,
                    span,
                    format!("{at} must be {expected}, found {}", found(node)),
                )
                .label(format!("expected {expected}"));
            if expected.contains("string") && node.is_some_and(|n| n.plain && n.as_str().is_none())
            {
                b.help(
                    "quote the value to keep it a string: YAML reads unquoted digits as a number",
                );
            }
        }
        K::Enum { options }
        | K::Constant {
            expected_value: options,
        } => {
            let options: Vec<String> = match options.as_ref() {
                Value::Array(a) => a.iter().map(text).collect(),
                other => vec![text(other)],
            };
            let node = doc.pointer(path);
            let actual = node.map(|n| text(&n.to_json())).unwrap_or_default();
            diags
                .error(
                    Code::Value,
                    file,
                    span,
                    format!("{at} must be one of: {}", options.join(", ")),
                )
                .label(format!("`{actual}` is not allowed"))
                .suggest(&actual, options.iter().map(String::as_str));
        }
        K::Pattern { pattern } => {
            let actual = doc
                .pointer(path)
                .map(|n| text(&n.to_json()))
                .unwrap_or_default();
            diags
                .error(
                    Code::Value,
                    file,
                    span,
                    format!(
                        "{at} `{actual}` is not valid: {}",
                        pattern_hint(path, pattern)
                    ),
                )
                .label("invalid value");
        }
        K::Not { schema } => {
            // `not: {required: [a, b]}`: AWS takes one of the two, never both.
            let pair: Vec<String> = schema["required"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            diags
                .error(
                    Code::Value,
                    file,
                    span,
                    format!(
                        "{at} gives both `{}`: AWS accepts one or the other",
                        pair.join("` and `")
                    ),
                )
                .help(format!("keep one of `{}`", pair.join("` or `")));
        }
        K::MinItems { limit } => {
            diags.error(
                Code::Value,
                file,
                span,
                format!(
                    "{at} needs at least {limit} item{}",
                    if *limit == 1 { "" } else { "s" }
                ),
            );
        }
        other => {
            diags.error(
                Code::Schema,
                file,
                span,
                format!("{at}: {}", describe(other)),
            );
        }
    }
}

fn describe(kind: &jsonschema::error::ValidationErrorKind) -> String {
    use jsonschema::error::ValidationErrorKind as K;
    match kind {
        K::Minimum { limit } => format!("must be at least {limit}"),
        K::Maximum { limit } => format!("must be at most {limit}"),
        K::MinLength { limit } => format!("must be at least {limit} characters long"),
        K::MaxLength { limit } => format!("must be at most {limit} characters long"),
        K::MaxItems { limit } => format!("must have at most {limit} items"),
        other => format!("{other:?}"),
    }
}

fn pattern_hint(path: &str, pattern: &str) -> String {
    let last = path
        .rsplit('/')
        .find(|t| t.parse::<usize>().is_err())
        .unwrap_or("");
    match last {
        "id" => "an account id is exactly 12 digits".into(),
        "email" => "expected an email address".into(),
        "homeRegion" | "regions" | "regionOrder" => {
            "expected an AWS region such as us-east-1".into()
        }
        "name" => "use letters, digits and dashes, starting with a letter".into(),
        "path" | "unit" => "expected a unit path such as /ml/staging".into(),
        _ => format!("must match {pattern}"),
    }
}

fn where_(kind: Kind, path: &str) -> String {
    if path.is_empty() {
        format!("{} document", kind.as_str())
    } else {
        format!("`{}`", dotted(path))
    }
}

/// `/spec/units/0/path` as `spec.units[0].path`.
pub fn dotted(pointer: &str) -> String {
    let mut out = String::new();
    for token in pointer.split('/').skip(1) {
        if token.parse::<usize>().is_ok() {
            out.push_str(&format!("[{token}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&token.replace("~1", "/").replace("~0", "~"));
        }
    }
    out
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn type_name(kind: &jsonschema::error::TypeKind) -> String {
    use jsonschema::error::TypeKind;
    let one = |t: &jsonschema::JsonType| match t.to_string().as_str() {
        "object" => "a mapping".to_string(),
        "array" => "a list".to_string(),
        "string" => "a string".to_string(),
        "boolean" => "true or false".to_string(),
        "integer" => "a whole number".to_string(),
        "number" => "a number".to_string(),
        other => other.to_string(),
    };
    match kind {
        TypeKind::Single(t) => one(t),
        TypeKind::Multiple(ts) => ts.iter().map(|t| one(&t)).collect::<Vec<_>>().join(" or "),
    }
}

fn found(node: Option<&Node>) -> String {
    use crate::yaml::Value as Y;
    match node.map(|n| &n.value) {
        None | Some(Y::Null) => "nothing (null)".into(),
        Some(Y::Bool(b)) => format!("`{b}`"),
        Some(Y::Int(i)) => format!("the number {i}"),
        Some(Y::Float(f)) => format!("the number {f}"),
        Some(Y::String(s)) => format!("the string `{s}`"),
        Some(Y::Seq(_)) => "a list".into(),
        Some(Y::Map(_)) => "a mapping".into(),
    }
}

/// The location is a parameters mapping (of the spec or of an override) or inside one: its
/// values may be secrets.
fn in_parameters(pointer: &str) -> bool {
    let parts: Vec<&str> = pointer.split('/').collect();
    matches!(
        parts.as_slice(),
        ["", "spec", "parameters", ..] | ["", "spec", "overrides", _, "parameters", ..]
    )
}

/// What a value is, never what it says.
fn shape(node: Option<&Node>) -> &'static str {
    use crate::yaml::Value as Y;
    match node.map(|n| &n.value) {
        None | Some(Y::Null) => "nothing (null)",
        Some(Y::Bool(_)) => "true or false",
        Some(Y::Int(_) | Y::Float(_)) => "a number",
        Some(Y::String(_)) => "a string",
        Some(Y::Seq(_)) => "a list",
        Some(Y::Map(_)) => "a mapping",
    }
}

/// The property names the schema allows at an instance location, for "did you mean".
pub fn properties_at(kind: Kind, pointer: &str) -> Vec<String> {
    let root = published();
    let defs = &root["$defs"];
    let mut schema = &defs[format!("{}Document", kind.as_str())];
    for token in pointer.split('/').skip(1).filter(|t| !t.is_empty()) {
        schema = resolve(defs, schema);
        let next = if token.parse::<usize>().is_ok() {
            schema.get("items")
        } else {
            let token = token.replace("~1", "/").replace("~0", "~");
            schema
                .get("properties")
                .and_then(|p| p.get(&token))
                .or_else(|| schema.get("additionalProperties"))
        };
        match next {
            Some(s) => schema = s,
            None => return Vec::new(),
        }
    }
    let schema = resolve(defs, schema);
    let mut names: Vec<String> = schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    names.sort();
    names
}

fn resolve<'a>(defs: &'a Value, mut schema: &'a Value) -> &'a Value {
    while let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        match r.strip_prefix("#/$defs/") {
            Some(name) => schema = &defs[name],
            None => break,
        }
    }
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_schema_is_the_generated_one() {
        // The loader's types generate the schema; the committed file must not drift from them.
        // Regenerate with: cargo run -- schema --generate > schema/estate.schema.json
        assert_eq!(PUBLISHED, generate_text());
    }

    #[test]
    fn properties_follow_refs_and_items() {
        let p = properties_at(Kind::Organization, "/spec/accounts/0");
        assert_eq!(p, ["adopt", "email", "id", "name", "unit"]);
        let p = properties_at(Kind::StackSet, "/spec/operation");
        assert!(p.contains(&"maxConcurrentPercentage".to_string()));
    }

    #[test]
    fn dotted_paths_read_naturally() {
        assert_eq!(dotted("/spec/units/0/path"), "spec.units[0].path");
    }
}
