//! The JSON Schema of the JSON plan (`plan --format json`, `--out`): generated from the Plan's
//! own types, published as schema/plan.schema.json (a test keeps the two equal).

use super::model::Plan;
use schemars::generate::SchemaSettings;
use serde_json::Value;

/// The schema as committed in the repository.
pub const PUBLISHED: &str = include_str!("../../schema/plan.schema.json");

/// Builds the schema from the Plan's types.
pub fn generate() -> Value {
    let mut schema = SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<Plan>()
        .to_value();
    if let Value::Object(o) = &mut schema {
        o.insert(
            "$id".into(),
            "https://github.com/estate-dev/estate/schema/plan.schema.json".into(),
        );
        o.insert("title".into(), "estate plan".into());
        o.insert(
            "description".into(),
            "What `estate plan --format json` writes (docs/manifest.md, \"The JSON plan\"). Readers ignore keys they do not know; a breaking change bumps formatVersion."
                .into(),
        );
    }
    schema
}

/// Pretty JSON with a trailing newline, as committed.
pub fn generate_text() -> String {
    let mut text = serde_json::to_string_pretty(&generate()).expect("schema serializes");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regenerate with `cargo run -- schema --plan --generate > schema/plan.schema.json`.
    #[test]
    fn the_published_plan_schema_is_the_generated_one() {
        let published: Value = serde_json::from_str(PUBLISHED).unwrap();
        assert!(
            published == generate(),
            "schema/plan.schema.json is stale: run `cargo run -- schema --plan --generate > schema/plan.schema.json`"
        );
    }
}
