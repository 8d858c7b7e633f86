//! What a test starts from: example manifests copied to a temporary folder and edited there,
//! manifests loaded from a folder, and plans, changes and live state built in code.

use estate::plan::{Action, Change, Plan, PlanSource, ResourceType};
use std::path::Path;

/// `from` copied into `to`, recursively.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A temporary copy of the folder `from` (relative to the crate).
pub fn copy_of(from: impl AsRef<Path>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(from.as_ref(), dir.path());
    dir
}

/// `examples/environments/NAME` copied out of the repository, so plans carry no commit and
/// the same path.
pub fn example(name: &str) -> tempfile::TempDir {
    copy_of(Path::new("examples/environments").join(name))
}

/// The cross-account MLOps lab's self-service half: the example without its pipeline, what
/// portfolio tests start from (the pipeline would only make them slower).
pub fn self_service_lab() -> tempfile::TempDir {
    let dir = example("cross-account-mlops-lab");
    edit(dir.path(), "estate.yaml", ", pipeline.yaml]", "]");
    dir
}

/// The first `from` in `dir/file` replaced by `to`; the file must have it.
pub fn edit(dir: &Path, file: &str, from: &str, to: &str) {
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{file} has no `{from}`");
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

/// Every `from` in `dir/file` replaced by `to`; the file must have one.
pub fn edit_all(dir: &Path, file: &str, from: &str, to: &str) {
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{file} has no `{from}`");
    std::fs::write(path, text.replace(from, to)).unwrap();
}

/// `prune: true` in the manifest's `estate.yaml`: what left the manifest is deleted.
pub fn prune(dir: &Path) {
    edit_all(
        dir,
        "estate.yaml",
        "  include:",
        "  prune: true\n  include:",
    );
}

/// The manifest in `dir`, which must be valid.
pub fn manifest(dir: &Path) -> estate::manifest::Manifest {
    let loaded = estate::manifest::load(&estate::source::ManifestSource::work_tree(dir).unwrap());
    loaded
        .manifest
        .unwrap_or_else(|| panic!("{}", loaded.diagnostics.render(false)))
}

/// Live state where every account of the manifest exists, with an id.
pub fn live_with_ids(m: &estate::manifest::Manifest) -> estate::live::LiveState {
    estate::live::LiveState {
        management_account: "999999999999".into(),
        root_id: "r-root".into(),
        accounts: m
            .accounts()
            .iter()
            .enumerate()
            .map(|(i, a)| estate::live::LiveAccount {
                id: format!("{:012}", 111_111_111_111u64 * (i as u64 + 1)),
                name: a.name.clone(),
                email: a.email.clone(),
                state: estate::live::AccountState::Active,
                parent_id: "r-root".into(),
                tags: None,
            })
            .collect(),
        ..Default::default()
    }
}

/// A change with no before or after (a test adds them with `..change(...)`).
pub fn change(
    address: &str,
    resource_type: ResourceType,
    action: Action,
    environment: Option<&str>,
    reason: &str,
) -> Change {
    Change {
        hint: None,
        reach: None,
        address: address.parse().unwrap(),
        resource_type,
        action,
        environment: environment.map(str::to_string),
        reason: reason.into(),
        before: None,
        after: None,
    }
}

/// A plan of these changes for these environments, of estate `e` from `.` with no commit.
pub fn plan_of(environments: &[&str], changes: Vec<Change>) -> Plan {
    Plan {
        conflicts: Vec::new(),
        format_version: estate::plan::FORMAT_VERSION,
        estate: "e".into(),
        source: PlanSource {
            commit: None,
            path: ".".into(),
            dirty: false,
        },
        environments: environments.iter().map(|e| e.to_string()).collect(),
        gates: Vec::new(),
        fingerprint: "fingerprint-1".into(),
        summary: Plan::summarize(&changes),
        changes,
        findings: Vec::new(),
        stats: None,
    }
}
