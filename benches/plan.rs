//! Benchmarks of the pure core on a large synthetic estate: loading and validating the
//! manifest, and planning it against a live state that already matches (the common no-op
//! plan) and one where half the instances are missing. Run with `cargo bench`.
//!
//! Targets (2-core CI machine, release build): a 200-account, 50-stack-set manifest
//! validates in under 1 s and plans in under 1 s; they are printed, not asserted, so a slow
//! machine does not fail the build.

mod support;

use estate::manifest;
use estate::plan;
use estate::source::ManifestSource;
use support::{Shape, live, time};

const SHAPE: Shape = Shape {
    accounts: 200,
    stack_sets: 50,
    regions: &["us-east-1"],
};

fn main() {
    let dir = tempfile::tempdir().unwrap();
    support::write_manifest(dir.path(), &SHAPE);
    let source = ManifestSource::work_tree(dir.path()).unwrap();
    let (m, _) = time(
        &format!(
            "validate: {} accounts, {} stack sets",
            SHAPE.accounts, SHAPE.stack_sets
        ),
        5,
        || manifest::load(&source).manifest.expect("valid"),
    );
    let matching = live(&m, 0);
    let (p, _) = time("plan, live matches (no-op)", 5, || {
        plan::make(&m, &matching, &[]).unwrap()
    });
    assert!(
        p.changes.is_empty(),
        "the no-op plan has {} changes",
        p.changes.len()
    );
    let half = live(&m, 2);
    let (p, _) = time("plan, half the instances missing", 5, || {
        plan::make(&m, &half, &[]).unwrap()
    });
    println!("  ({} changes)", p.changes.len());
    time("render the markdown comment of that plan", 5, || {
        estate::render::markdown(&p)
    });
}
