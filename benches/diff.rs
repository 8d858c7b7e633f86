//! The pure diff at scale: 1,000 accounts × 50 stack sets × 2 regions = 100,000 stack
//! instances planned in memory (no AWS), with the time and the process's peak memory. Run
//! with `cargo bench --bench diff`.
//!
//! Targets (issue 12; release build): planning 100,000 instances in under 100 ms and under
//! 300 MB. They are printed beside the measurement, "over target" when over; nothing is
//! asserted, so a slow machine does not fail the build. Peak memory is the process's peak
//! resident set (`VmHWM` of `/proc/self/status`, Linux only): the manifest, the live state
//! and every plan made here, all held at once.

mod support;

use estate::manifest;
use estate::plan;
use estate::source::ManifestSource;
use std::time::Duration;
use support::{Shape, live, memory, time};

const SHAPE: Shape = Shape {
    accounts: 1_000,
    stack_sets: 50,
    regions: &["us-east-1", "eu-west-1"],
};
const TARGET_TIME: Duration = Duration::from_millis(100);
const TARGET_MEMORY: u64 = 300 * 1024 * 1024;

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The verdict on the line under a timing.
fn against_time(best: Duration) {
    let verdict = if best > TARGET_TIME {
        "over target"
    } else {
        "within target"
    };
    println!(
        "  {verdict} (target < {} ms for 100,000 instances)",
        TARGET_TIME.as_millis()
    );
}

fn main() {
    let instances = SHAPE.accounts * SHAPE.stack_sets * SHAPE.regions.len();
    println!(
        "diff at scale: {} accounts × {} stack sets × {} regions = {instances} instances",
        SHAPE.accounts,
        SHAPE.stack_sets,
        SHAPE.regions.len()
    );
    let dir = tempfile::tempdir().unwrap();
    support::write_manifest(dir.path(), &SHAPE);
    let source = ManifestSource::work_tree(dir.path()).unwrap();
    let (m, _) = time("validate the manifest (not part of the target)", 1, || {
        manifest::load(&source).manifest.expect("valid")
    });
    let matching = live(&m, 0);
    let envs = plan::environments(&m, &[]).unwrap();
    let desired = plan::desired::resolve(&m, &matching, &envs).unwrap();
    let resolved: usize = desired.stack_sets.iter().map(|s| s.instances.len()).sum();
    assert_eq!(
        resolved, instances,
        "the manifest resolves to every instance"
    );
    let before = memory("VmRSS");

    let (p, best) = time("plan::make, live matches (no-op)", 5, || {
        plan::make(&m, &matching, &[]).unwrap()
    });
    against_time(best);
    assert!(
        p.changes.is_empty(),
        "the no-op plan has {} changes",
        p.changes.len()
    );
    drop(p);

    let options = plan::diff::DiffOptions {
        estate: m.name(),
        environments: &envs,
        prune: m.estate.spec.prune,
    };
    let (_, best) = time("plan::diff alone (desired already resolved)", 5, || {
        plan::diff::diff(&desired, &matching, &options)
    });
    against_time(best);

    let (_, best) = time("plan::desired::resolve alone (no diff)", 5, || {
        plan::desired::resolve(&m, &matching, &envs).unwrap()
    });
    against_time(best);

    let (_, best) = time("live fingerprint alone (part of plan::make)", 5, || {
        matching.fingerprint()
    });
    against_time(best);

    let half = live(&m, 2);
    let (p, best) = time("plan::make, half the instances missing", 5, || {
        plan::make(&m, &half, &[]).unwrap()
    });
    against_time(best);
    println!("  ({} changes)", p.changes.len());

    match (before, memory("VmHWM")) {
        (Some(before), Some(peak)) => {
            let verdict = if peak > TARGET_MEMORY {
                "over target"
            } else {
                "within target"
            };
            println!(
                "peak memory (VmHWM)                                        {:>8.1} MiB  (target < {} MiB: {verdict})",
                mib(peak),
                TARGET_MEMORY / (1024 * 1024)
            );
            println!(
                "  resident before planning (manifest, live state, desired) {:>8.1} MiB",
                mib(before)
            );
        }
        _ => println!("peak memory: not known here (/proc/self/status is Linux's)"),
    }
}
