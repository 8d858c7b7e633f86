//! Benchmarks of the pure core on a large synthetic estate: loading and validating the
//! manifest, and planning it against a live state that already matches (the common no-op
//! plan) and one where half the instances are missing. Run with `cargo bench`.
//!
//! Targets (2-core CI machine, release build): a 200-account, 50-stack-set manifest
//! validates in under 1 s and plans in under 1 s; they are printed, not asserted, so a slow
//! machine does not fail the build.

use estate::live::{LiveAccount, LiveInstance, LiveStackSet, LiveState, LiveUnit};
use estate::manifest;
use estate::plan;
use estate::source::ManifestSource;
use std::fmt::Write;
use std::time::{Duration, Instant};

const ACCOUNTS: usize = 200;
const STACK_SETS: usize = 50;

fn write_manifest(dir: &std::path::Path) {
    std::fs::create_dir_all(dir.join("templates")).unwrap();
    std::fs::write(
        dir.join("templates/t.yaml"),
        "Parameters:\n  EnvType: {Type: String}\nResources:\n  T:\n    Type: AWS::SNS::Topic\n    Properties: {TopicName: !Sub 'x-${EnvType}'}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("estate.yaml"),
        "apiVersion: estate/v1\nkind: Estate\nmetadata: {name: bench}\nspec:\n  homeRegion: us-east-1\n  regions: [us-east-1]\n  promotion: [staging, production]\n  include: ['*.yaml']\n",
    )
    .unwrap();
    let mut org = String::from(
        "apiVersion: estate/v1\nkind: Organization\nmetadata: {name: o}\nspec:\n  units:\n    - path: /staging\n    - path: /production\n  accounts:\n",
    );
    for i in 0..ACCOUNTS {
        let unit = if i % 2 == 0 {
            "/staging"
        } else {
            "/production"
        };
        let _ = writeln!(
            org,
            "    - {{name: a{i}, email: a{i}@example.com, unit: {unit}}}"
        );
    }
    org.push_str("---\napiVersion: estate/v1\nkind: Environment\nmetadata: {name: staging}\nspec:\n  targets: {units: [/staging]}\n  parameters: {EnvType: staging}\n");
    org.push_str("---\napiVersion: estate/v1\nkind: Environment\nmetadata: {name: production}\nspec:\n  targets: {units: [/production]}\n  parameters: {EnvType: production}\n");
    std::fs::write(dir.join("org.yaml"), org).unwrap();
    let mut sets = String::new();
    for i in 0..STACK_SETS {
        let _ = write!(
            sets,
            "---\napiVersion: estate/v1\nkind: StackSet\nmetadata: {{name: s{i}}}\nspec:\n  template: templates/t.yaml\n  environments: [staging, production]\n"
        );
    }
    std::fs::write(dir.join("stacksets.yaml"), sets).unwrap();
}

/// Live state as estate would have left it, minus `missing` of each stack set's instances.
fn live(m: &manifest::Manifest, missing_every: usize) -> LiveState {
    let mut live = LiveState {
        management_account: "100000000000".into(),
        root_id: "r-root".into(),
        units: vec![
            LiveUnit {
                id: "ou-s".into(),
                path: "/staging".into(),
                parent_id: "r-root".into(),
            },
            LiveUnit {
                id: "ou-p".into(),
                path: "/production".into(),
                parent_id: "r-root".into(),
            },
        ],
        ..Default::default()
    };
    for (i, a) in m.accounts().iter().enumerate() {
        live.accounts.push(LiveAccount {
            id: format!("{:012}", 200_000_000_000u64 + i as u64),
            name: a.name.clone(),
            email: a.email.clone(),
            state: estate::live::AccountState::Active,
            parent_id: if i % 2 == 0 {
                "ou-s".into()
            } else {
                "ou-p".into()
            },
        });
    }
    let desired = plan::desired::resolve(m, &live, &plan::environments(m, &[]).unwrap()).unwrap();
    for d in &desired.stack_sets {
        let instances = d
            .instances
            .iter()
            .enumerate()
            .filter(|(i, _)| missing_every == 0 || i % missing_every != 0)
            .map(|(_, i)| LiveInstance {
                account: i.account.id.clone().unwrap(),
                region: i.region.clone(),
                status: "CURRENT".into(),
                status_reason: None,
                unit: None,
                overrides: None,
                drift: None,
                last_operation: None,
            })
            .collect();
        live.stack_sets.insert(
            d.name.clone(),
            LiveStackSet {
                name: d.name.clone(),
                description: d.description.clone(),
                template_body: d.template.text.clone(),
                parameters: d.parameters.clone(),
                capabilities: d.capabilities.clone(),
                tags: d.tags.clone(),
                permission_model: d.permission_model.clone(),
                administration_role_arn: d.administration_role_arn.clone(),
                execution_role_name: d.execution_role_name.clone(),
                auto_deployment: d.auto_deployment,
                instances: Some(instances),
            },
        );
    }
    live
}

fn time<T>(what: &str, runs: u32, mut f: impl FnMut() -> T) -> T {
    let mut best = Duration::MAX;
    let mut out = None;
    for _ in 0..runs {
        let start = Instant::now();
        out = Some(f());
        best = best.min(start.elapsed());
    }
    println!(
        "{what:<58} best of {runs}: {:>8.1} ms",
        best.as_secs_f64() * 1e3
    );
    out.unwrap()
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    write_manifest(dir.path());
    let source = ManifestSource::work_tree(dir.path()).unwrap();
    let m = time(
        &format!("validate: {ACCOUNTS} accounts, {STACK_SETS} stack sets"),
        5,
        || manifest::load(&source).manifest.expect("valid"),
    );
    let matching = live(&m, 0);
    let p = time("plan, live matches (no-op)", 5, || {
        plan::make(&m, &matching, &[]).unwrap()
    });
    assert!(
        p.changes.is_empty(),
        "the no-op plan has {} changes",
        p.changes.len()
    );
    let half = live(&m, 2);
    let p = time("plan, half the instances missing", 5, || {
        plan::make(&m, &half, &[]).unwrap()
    });
    println!("  ({} changes)", p.changes.len());
    time("render the markdown comment of that plan", 5, || {
        estate::render::markdown(&p)
    });
}
