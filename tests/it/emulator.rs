//! The emulator harness itself: fresh account ids, and a child process pointed at the emulator
//! acting as the test account.

use crate::support::emulator::{REGION, endpoint, fresh_account_id, management_account, python};
use std::path::Path;
use std::process::Command;

#[test]
fn account_ids_are_twelve_digits_and_distinct() {
    let ids: Vec<String> = (0..1000).map(|_| fresh_account_id()).collect();
    for id in &ids {
        assert_eq!(id.len(), 12, "{id}");
        assert!(!id.starts_with('0'), "{id}");
        assert!(id.bytes().all(|b| b.is_ascii_digit()), "{id}");
    }
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len());
}

#[tokio::test]
async fn env_points_a_child_process_at_the_emulator() {
    let account = management_account().await;
    let env: std::collections::HashMap<_, _> = account.env().into_iter().collect();
    assert_eq!(env["AWS_ENDPOINT_URL"], endpoint());
    assert_eq!(env["AWS_REGION"], REGION);
    assert_eq!(env["AWS_MAX_ATTEMPTS"], "1");
    assert!(!env["AWS_SESSION_TOKEN"].is_empty());
    assert!(!Path::new(&env["AWS_CONFIG_FILE"]).exists());

    // A child process given only these variables acts as the account: boto3
    // from the emulator's venv stands in for `estate` here.
    let out = Command::new(python())
        .args([
            "-c",
            "import boto3; print(boto3.client('sts').get_caller_identity()['Account'])",
        ])
        .env_clear()
        .envs(account.env())
        .output()
        .expect("running the venv's python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), account.id);
}
