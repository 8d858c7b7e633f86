//! What the benchmarks share: a synthetic manifest of any size, the live state estate would
//! have left for it, timing, and the process's memory as Linux reports it.

use estate::live::{LiveAccount, LiveInstance, LiveStackSet, LiveState, LiveUnit};
use estate::manifest;
use estate::plan;
use std::fmt::Write;
use std::time::{Duration, Instant};

/// The size of a synthetic estate: accounts alternate between /staging and /production (one
/// environment each); every stack set targets both environments in every region.
pub struct Shape {
    pub accounts: usize,
    pub stack_sets: usize,
    pub regions: &'static [&'static str],
}

pub fn write_manifest(dir: &std::path::Path, shape: &Shape) {
    std::fs::create_dir_all(dir.join("templates")).unwrap();
    std::fs::write(
        dir.join("templates/t.yaml"),
        "Parameters:\n  EnvType: {Type: String}\nResources:\n  T:\n    Type: AWS::SNS::Topic\n    Properties: {TopicName: !Sub 'x-${EnvType}'}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("estate.yaml"),
        format!(
            "apiVersion: estate/v1\nkind: Estate\nmetadata: {{name: bench}}\nspec:\n  homeRegion: {}\n  regions: [{}]\n  promotion: [staging, production]\n  include: ['*.yaml']\n",
            shape.regions[0],
            shape.regions.join(", ")
        ),
    )
    .unwrap();
    let mut org = String::from(
        "apiVersion: estate/v1\nkind: Organization\nmetadata: {name: o}\nspec:\n  units:\n    - path: /staging\n    - path: /production\n  accounts:\n",
    );
    for i in 0..shape.accounts {
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
    for i in 0..shape.stack_sets {
        let _ = write!(
            sets,
            "---\napiVersion: estate/v1\nkind: StackSet\nmetadata: {{name: s{i}}}\nspec:\n  template: templates/t.yaml\n  environments: [staging, production]\n"
        );
    }
    std::fs::write(dir.join("stacksets.yaml"), sets).unwrap();
}

/// Live state as estate would have left it, minus every `missing_every`-th instance of each
/// stack set (0: none missing).
pub fn live(m: &manifest::Manifest, missing_every: usize) -> LiveState {
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
            tags: None,
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
                stack_id: None,
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

/// Runs `f` `runs` times and prints the best time; returns the last result and the best time.
pub fn time<T>(what: &str, runs: u32, mut f: impl FnMut() -> T) -> (T, Duration) {
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
    (out.unwrap(), best)
}

/// A field of `/proc/self/status` in bytes (`VmRSS`: now, `VmHWM`: peak); `None` off Linux.
#[allow(dead_code)] // one benchmark reads memory, the other does not
pub fn memory(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line
        .trim_start_matches(field)
        .trim_start_matches(':')
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}
