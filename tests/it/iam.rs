//! docs/iam against what estate calls: the apply policy allows every AWS operation the code
//! names and every one a full emulator run counts (`--stats`); the plan and read-role policies
//! allow every call `plan` and `drift` made, and nothing but reads; and `plan` and `drift` work
//! through a read-only `readRole` that the strict emulator refuses every write.

use crate::support::builders::{edit, edit_all, example, prune};
use crate::support::emulator::{TestAccount, endpoint, management_account};
use crate::support::run::{apply, run};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

/// The IAM actions an SDK operation (`Service.Operation`, as `--stats` counts it) needs.
/// Where IAM names it differently (S3 mostly), the Service Authorization Reference's name.
fn iam_actions(operation: &str) -> Vec<String> {
    let (service, op) = operation.split_once('.').expect("Service.Operation");
    let renamed = match operation {
        // "No permissions are required to perform this operation" (STS API reference).
        "STS.GetCallerIdentity" => return Vec::new(),
        "S3.HeadBucket" | "S3.ListObjectsV2" | "S3.ListObjects" => "s3:ListBucket",
        "S3.HeadObject" => "s3:GetObject",
        "S3.GetBucketEncryption" => "s3:GetEncryptionConfiguration",
        "S3.PutBucketEncryption" => "s3:PutEncryptionConfiguration",
        "S3.GetPublicAccessBlock" => "s3:GetBucketPublicAccessBlock",
        "S3.PutPublicAccessBlock" => "s3:PutBucketPublicAccessBlock",
        _ => "",
    };
    if !renamed.is_empty() {
        return vec![renamed.to_string()];
    }
    vec![format!("{}:{op}", service.to_ascii_lowercase())]
}

/// The actions a policy document allows (lower case: IAM compares them case-insensitively).
fn allowed(file: &str) -> BTreeSet<String> {
    let path = Path::new("docs/iam").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
    let doc: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
    assert_eq!(doc["Version"], "2012-10-17", "{file}");
    let mut out = BTreeSet::new();
    for s in doc["Statement"].as_array().expect("statements") {
        assert_eq!(s["Effect"], "Allow", "{file}: {s}");
        match &s["Action"] {
            Value::String(a) => {
                out.insert(a.to_ascii_lowercase());
            }
            Value::Array(a) => out.extend(
                a.iter()
                    .map(|a| a.as_str().expect("action").to_ascii_lowercase()),
            ),
            other => panic!("{file}: Action {other}"),
        }
    }
    out
}

/// Operations missing from `policy`: the actions they need that it does not allow.
fn missing(operations: &BTreeSet<String>, policy: &BTreeSet<String>) -> Vec<String> {
    operations
        .iter()
        .flat_map(|op| {
            iam_actions(op)
                .into_iter()
                .filter(|a| !policy.contains(&a.to_ascii_lowercase()))
                .map(move |a| format!("{a} (for {op})"))
        })
        .collect()
}

/// Every `"Service.Operation"` the code names in its errors and progress: one per call site.
fn named_in_source() -> BTreeSet<String> {
    let pattern = regex::Regex::new(
        r#""((?:Organizations|CloudFormation|ServiceCatalog|S3|STS)\.[A-Z][A-Za-z0-9]+)""#,
    )
    .unwrap();
    let mut out = BTreeSet::new();
    for entry in walkdir::WalkDir::new("src") {
        let entry = entry.unwrap();
        if entry.path().extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(entry.path()).unwrap();
            out.extend(pattern.captures_iter(&text).map(|c| c[1].to_string()));
        }
    }
    out
}

#[test]
fn the_apply_policy_allows_every_operation_the_code_calls() {
    let named = named_in_source();
    assert!(named.len() > 60, "the call sites were found: {named:?}");
    let gaps = missing(&named, &allowed("apply-policy.json"));
    assert!(
        gaps.is_empty(),
        "docs/iam/apply-policy.json lacks:\n{}",
        gaps.join("\n")
    );
}

/// What a read-only policy may allow: IAM's List and Read levels, entering members through
/// the read role, and drift detection (which starts an operation but changes no resource).
#[test]
fn the_plan_and_read_role_policies_only_read() {
    for file in ["plan-policy.json", "read-role-policy.json"] {
        for action in allowed(file) {
            let (_, name) = action.split_once(':').unwrap();
            let read = ["list", "describe", "get", "search", "head"]
                .iter()
                .any(|v| name.starts_with(v));
            assert!(
                read || action == "sts:assumerole"
                    || action == "cloudformation:detectstacksetdrift",
                "{file} allows {action}, which is not a read"
            );
        }
    }
}

/// The AWS operations one run called: `--stats` on stderr (`  Service.Operation  N …`),
/// those called at least once (a line may name an operation only for its floor).
fn counted(stderr: &str) -> BTreeSet<String> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("  "))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let op = words.next()?;
            let n: u64 = words.next()?.parse().ok()?;
            (n > 0 && op.contains('.') && op.chars().next().is_some_and(char::is_uppercase))
                .then(|| op.to_string())
        })
        .collect()
}

/// `estate ARGS --stats` in `dir`: the operations it called, failing on an error exit.
fn stats_of(account: &TestAccount, dir: &Path, args: &[&str]) -> BTreeSet<String> {
    let mut args = args.to_vec();
    args.push("--stats");
    let (code, out, err) = run(account, dir, &args);
    assert!(code == 0 || code == 2, "{args:?}: {code}\n{out}{err}");
    let ops = counted(&err);
    assert!(!ops.is_empty(), "{args:?} printed its calls: {err}");
    ops
}

/// A full run on the emulator: the examples applied from nothing (every environment, a
/// pipeline, portfolios shared to accounts and units), planned and drift-checked, then pruned;
/// every call counted against the policies.
#[tokio::test]
async fn the_policies_cover_every_call_a_full_emulator_run_makes() {
    let (mut applying, mut reading) = (BTreeSet::new(), BTreeSet::new());
    for name in [
        "ml-platform",
        "cross-account-mlops-lab",
        "sagemaker-pipelines-multi-account",
    ] {
        let account = management_account().await;
        let dir = example(name);
        let apply_all = ["apply", ".", "--auto-approve", "--skip-promotion-check"];
        applying.extend(stats_of(&account, dir.path(), &apply_all));
        if name == "ml-platform" {
            let mut production = apply_all.to_vec();
            production.extend(["--env", "production"]);
            applying.extend(stats_of(&account, dir.path(), &production));
        }
        reading.extend(stats_of(&account, dir.path(), &["plan", "."]));
        reading.extend(stats_of(&account, dir.path(), &["drift", "."]));
        if name == "cross-account-mlops-lab" {
            // Everything deleted: the portfolio and what hangs from it.
            edit_all(dir.path(), "estate.yaml", ", portfolio.yaml", "");
            prune(dir.path());
            applying.extend(stats_of(&account, dir.path(), &apply_all));
        }
    }
    assert!(
        applying.len() > 40 && reading.len() > 15,
        "a full run was counted: {applying:?} {reading:?}"
    );
    let gaps = missing(&applying, &allowed("apply-policy.json"));
    assert!(
        gaps.is_empty(),
        "docs/iam/apply-policy.json lacks:\n{}",
        gaps.join("\n")
    );
    let read: BTreeSet<String> = allowed("plan-policy.json")
        .union(&allowed("read-role-policy.json"))
        .cloned()
        .collect();
    let gaps = missing(&reading, &read);
    assert!(
        gaps.is_empty(),
        "docs/iam/plan-policy.json and read-role-policy.json lack:\n{}",
        gaps.join("\n")
    );
}

/// `plan` and `drift` enter member accounts only through `readRole`: with `memberRole` naming
/// a role no account has, they still read everything (portfolios in the hub, shares accepted in
/// the recipient), while the emulator refuses every write made with the read role's keys.
#[tokio::test]
async fn plan_and_drift_need_only_the_read_only_role() {
    let account = management_account().await;
    let dir = example("ml-platform");
    let (code, out, err) = apply(&account, dir.path(), &[]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = apply(&account, dir.path(), &["--env", "production"]);
    assert_eq!(code, 0, "{out}{err}");
    const READ: &str = "EstateReadOnly";
    account.emulator_call(
        "EstateEmulator.ReadOnlyRole",
        serde_json::json!({"RoleName": READ}),
    );
    edit(
        dir.path(),
        "estate.yaml",
        "  memberRole: OrganizationAccountAccessRole\n",
        "  memberRole: NoSuchRole\n",
    );
    // Without the read role the plan must enter members through memberRole, and cannot. The
    // accounts were created a moment ago, and estate keeps asking a new account that refuses
    // AssumeRole for minutes (AWS readies its role slowly): an hour passes first.
    account.emulator_call(
        "EstateEmulator.PassTime",
        serde_json::json!({"Seconds": 3600}),
    );
    let (code, out, err) = run(&account, dir.path(), &["plan", "."]);
    assert_eq!(code, 1, "the plan reads member accounts: {out}{err}");
    edit(
        dir.path(),
        "estate.yaml",
        "  memberRole: NoSuchRole\n",
        &format!("  memberRole: NoSuchRole\n  readRole: {READ}\n"),
    );
    let (code, out, err) = run(&account, dir.path(), &["plan", "."]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("No changes. Live state matches the manifest."),
        "{out}"
    );
    let (code, out, err) = run(&account, dir.path(), &["drift", "."]);
    assert_eq!(code, 0, "{out}{err}");

    // The emulator holds the role to reads: a write with its keys is refused.
    let tools = account.ids().await["tools"].clone();
    let sts = aws_sdk_sts::Client::new(&account.config);
    let assumed = sts
        .assume_role()
        .role_arn(format!("arn:aws:iam::{tools}:role/{READ}"))
        .role_session_name("estate-tests-read")
        .send()
        .await
        .unwrap();
    let c = assumed.credentials.unwrap();
    let config = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(
                aws_credential_types::Credentials::new(
                    c.access_key_id,
                    c.secret_access_key,
                    Some(c.session_token),
                    None,
                    "read-only",
                ),
            ),
        )
        .build();
    let sc = aws_sdk_servicecatalog::Client::new(&config);
    let portfolios = sc.list_portfolios().send().await.unwrap();
    assert_eq!(portfolios.portfolio_details().len(), 1, "reads are allowed");
    let refused = sc
        .create_portfolio()
        .display_name("x")
        .provider_name("y")
        .idempotency_token("t")
        .send()
        .await
        .unwrap_err();
    let code = refused
        .as_service_error()
        .and_then(|e| aws_sdk_servicecatalog::error::ProvideErrorMetadata::code(e));
    assert_eq!(code, Some("AccessDeniedException"), "{refused:?}");
}
