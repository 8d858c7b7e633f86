//! schema/plan.schema.json against real plans: every JSON plan the snapshot tests keep (the
//! plan cases and renderer fixtures, which cover every side shape estate writes) validates, and
//! what the contract rules out does not.

use serde_json::Value;

fn validator() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(estate::plan::schema::PUBLISHED).unwrap();
    jsonschema::validator_for(&schema).expect("the plan schema compiles")
}

/// The JSON plans of the snapshot files: the body after insta's header, when it is a plan.
fn snapshot_plans() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("tests/it/snapshots").unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        // `---\nheader\n---\nbody`
        let Some(body) = text.splitn(3, "---\n").nth(2) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<Value>(body) else {
            continue;
        };
        if v.get("formatVersion").is_some() && v.get("changes").is_some() {
            out.push((path.display().to_string(), v));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn every_snapshot_plan_validates_against_the_published_schema() {
    let v = validator();
    let plans = snapshot_plans();
    assert!(
        plans.len() >= 20,
        "the snapshot plans were found: {}",
        plans.len()
    );
    let shapes: usize = plans
        .iter()
        .map(|(_, p)| p["changes"].as_array().map_or(0, Vec::len))
        .sum();
    assert!(shapes > 50, "{shapes} changes");
    for (name, plan) in &plans {
        let errors: Vec<String> = v
            .iter_errors(plan)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{name}:\n{}", errors.join("\n"));
    }
}

#[test]
fn the_schema_refuses_what_the_contract_rules_out() {
    let v = validator();
    let (_, plan) = snapshot_plans()
        .into_iter()
        .find(|(_, p)| !p["changes"].as_array().unwrap().is_empty())
        .unwrap();
    assert!(v.is_valid(&plan));
    let mut bad = plan.clone();
    bad["changes"][0]["action"] = "upsert".into();
    assert!(!v.is_valid(&bad), "an action outside the contract");
    let mut bad = plan.clone();
    bad["changes"][0]["after"] = serde_json::json!({"nothing": "of any shape"});
    assert!(!v.is_valid(&bad), "a side of no shape");
    let mut bad = plan;
    bad.as_object_mut().unwrap().remove("fingerprint");
    assert!(!v.is_valid(&bad), "a plan without its fingerprint");
}
