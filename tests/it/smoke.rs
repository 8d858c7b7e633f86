//! Smoke tests of the emulator harness: Organizations calls work and test accounts are isolated.

use aws_sdk_organizations::Client;
use aws_sdk_organizations::types::{AccountState, CreateAccountFailureReason, CreateAccountState};
use std::time::Duration;

use crate::support::emulator::{self, management_account};

#[tokio::test]
async fn account_moves_into_an_ou_and_organizations_stay_isolated() {
    let mgmt = management_account().await;
    let org = Client::new(&mgmt.config);
    let log = format!(
        "call failed; emulator log: {}",
        emulator::log_path().display()
    );

    let ou = org
        .create_organizational_unit()
        .parent_id(&mgmt.root_id)
        .name("workloads")
        .send()
        .await
        .expect(&log)
        .organizational_unit
        .expect("CreateOrganizationalUnit returns the OU");
    let ou_id = ou.id().expect("OU id").to_string();

    let account_id = mgmt
        .create_account("ml-dev", &format!("ml-dev+{}@example.com", mgmt.id))
        .await;

    org.move_account()
        .account_id(&account_id)
        .source_parent_id(&mgmt.root_id)
        .destination_parent_id(&ou_id)
        .send()
        .await
        .expect(&log);
    let in_ou = org
        .list_accounts_for_parent()
        .parent_id(&ou_id)
        .send()
        .await
        .expect(&log);
    let ids: Vec<_> = in_ou.accounts().iter().filter_map(|a| a.id()).collect();
    assert_eq!(ids, [account_id.as_str()]);

    // Another management account has an organization of its own.
    let other = management_account().await;
    let other_org = Client::new(&other.config);
    let described = other_org
        .describe_organization()
        .send()
        .await
        .expect(&log)
        .organization
        .expect("DescribeOrganization returns the organization");
    assert_eq!(described.master_account_id(), Some(other.id.as_str()));
    assert_ne!(other.root_id, mgmt.root_id);
    let other_ous = other_org
        .list_organizational_units_for_parent()
        .parent_id(&other.root_id)
        .send()
        .await
        .expect(&log);
    assert!(other_ous.organizational_units().is_empty());
    let other_accounts = other_org.list_accounts().send().await.expect(&log);
    let other_ids: Vec<_> = other_accounts
        .accounts()
        .iter()
        .filter_map(|a| a.id())
        .collect();
    assert_eq!(other_ids, [other.id.as_str()]);
    assert!(
        other_org
            .describe_organizational_unit()
            .organizational_unit_id(&ou_id)
            .send()
            .await
            .is_err(),
        "another organization's OU must not be visible"
    );
}

#[tokio::test]
async fn management_accounts_are_distinct() {
    let (a, b) = tokio::join!(management_account(), management_account());
    assert_ne!(a.id, b.id);
    assert_ne!(a.root_id, b.root_id);
    let org_id = |config| async move {
        Client::new(config)
            .describe_organization()
            .send()
            .await
            .expect("DescribeOrganization")
            .organization
            .and_then(|o| o.id)
            .expect("organization id")
    };
    assert_ne!(org_id(&a.config).await, org_id(&b.config).await);
}

/// The strict emulator answers Organizations and STS as AWS does where moto is kinder
/// (tests/emulator/organizations_strict.py cites the API reference for each rule).
#[tokio::test]
async fn organizations_answer_as_aws_does() {
    let mgmt = management_account().await;
    mgmt.configure_emulator(serde_json::json!({"CreateSeconds": 0.5, "UnreachableSeconds": 1.0}));
    let org = Client::new(&mgmt.config);
    let listed = |org: Client| async move {
        org.list_accounts()
            .send()
            .await
            .unwrap()
            .accounts
            .unwrap_or_default()
    };

    // Accounts carry State; the retired Status is gone.
    let accounts = listed(org.clone()).await;
    assert_eq!(accounts.len(), 1);
    assert_eq!(accounts[0].state(), Some(&AccountState::Active));
    assert!(accounts[0].status().is_none(), "{:?}", accounts[0]);

    // CreateAccount is asynchronous: IN_PROGRESS, not listed, polled until SUCCEEDED.
    let status = org
        .create_account()
        .account_name("slow")
        .email("slow@example.com")
        .send()
        .await
        .unwrap()
        .create_account_status
        .unwrap();
    assert_eq!(status.state(), Some(&CreateAccountState::InProgress));
    assert!(status.account_id().is_none());
    assert_eq!(
        listed(org.clone()).await.len(),
        1,
        "listed before it succeeded"
    );
    let request = status.id().unwrap().to_string();
    let describe = || async {
        org.describe_create_account_status()
            .create_account_request_id(&request)
            .send()
            .await
            .unwrap()
            .create_account_status
            .unwrap()
    };
    assert_eq!(
        describe().await.state(),
        Some(&CreateAccountState::InProgress)
    );
    let mut polls = 1;
    let id = loop {
        let s = describe().await;
        polls += 1;
        if s.state() == Some(&CreateAccountState::Succeeded) {
            break s.account_id().unwrap().to_string();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(polls >= 3, "succeeded after {polls} polls");
    assert_eq!(listed(org.clone()).await.len(), 2);

    // A new account refuses AssumeRole for a while, then lets its role in.
    let sts = aws_sdk_sts::Client::new(&mgmt.config);
    let assume = |role: &'static str| {
        sts.assume_role()
            .role_arn(format!("arn:aws:iam::{id}:role/{role}"))
            .role_session_name("estate-tests")
            .send()
    };
    let refused = assume("OrganizationAccountAccessRole").await.unwrap_err();
    assert_eq!(
        aws_sdk_sts::error::ProvideErrorMetadata::code(refused.as_service_error().unwrap()),
        Some("AccessDenied")
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assume("OrganizationAccountAccessRole").await.unwrap();
    // Only a role that exists there.
    assert!(assume("NoSuchRole").await.is_err());

    // A duplicate email fails as AWS fails it.
    let dup = org
        .create_account()
        .account_name("again")
        .email("SLOW@example.com")
        .send()
        .await
        .unwrap()
        .create_account_status
        .unwrap();
    let failed = loop {
        let s = org
            .describe_create_account_status()
            .create_account_request_id(dup.id().unwrap())
            .send()
            .await
            .unwrap()
            .create_account_status
            .unwrap();
        if s.state() != Some(&CreateAccountState::InProgress) {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(failed.state(), Some(&CreateAccountState::Failed));
    assert_eq!(
        failed.failure_reason(),
        Some(&CreateAccountFailureReason::EmailAlreadyExists)
    );

    // No more than AWS's five creations in progress at once.
    for n in 0..5 {
        org.create_account()
            .account_name(format!("batch-{n}"))
            .email(format!("batch-{n}@example.com"))
            .send()
            .await
            .unwrap();
    }
    let sixth = org
        .create_account()
        .account_name("batch-5")
        .email("batch-5@example.com")
        .send()
        .await
        .unwrap_err();
    let sixth = sixth.into_service_error();
    let aws_sdk_organizations::operation::create_account::CreateAccountError::ConstraintViolationException(refused) = &sixth else {
        panic!("{sixth:?}");
    };
    assert_eq!(
        refused.reason(),
        Some(&aws_sdk_organizations::types::ConstraintViolationExceptionReason::AccountCreationRateLimitExceeded),
        "AWS says why in Reason: {refused:?}"
    );

    // CloseAccount: PENDING_CLOSURE, then SUSPENDED.
    org.close_account().account_id(&id).send().await.unwrap();
    let state = |org: Client, id: String| async move {
        org.describe_account()
            .account_id(id)
            .send()
            .await
            .unwrap()
            .account
            .unwrap()
            .state
    };
    assert_eq!(
        state(org.clone(), id.clone()).await,
        Some(AccountState::PendingClosure)
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        state(org.clone(), id.clone()).await,
        Some(AccountState::Suspended)
    );
}

/// The strict StackSets rules hold as tests/emulator/stacksets_strict.py documents them (its
/// own check, which starts emulators of its own).
#[test]
fn the_strict_stack_set_rules_hold() {
    let out = std::process::Command::new(emulator::python())
        .arg(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/emulator/check_stacksets_strict.py"),
        )
        .env_remove("ESTATE_EMULATOR_STRICT_STACKSETS")
        .output()
        .expect("running the check");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
