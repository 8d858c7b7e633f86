//! Smoke tests of the emulator harness: Organizations calls work and test accounts are isolated.

use aws_sdk_organizations::Client;
use aws_sdk_organizations::types::CreateAccountState;

use crate::emulator::{self, management_account};

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

    // CreateAccount completes synchronously in moto; the status call is what
    // estate polls against real AWS, so check it agrees.
    let created = org
        .create_account()
        .email(format!("ml-dev+{}@example.com", mgmt.id))
        .account_name("ml-dev")
        .send()
        .await
        .expect(&log)
        .create_account_status
        .expect("CreateAccount returns a status");
    let request_id = created.id().expect("request id").to_string();
    let status = org
        .describe_create_account_status()
        .create_account_request_id(&request_id)
        .send()
        .await
        .expect(&log)
        .create_account_status
        .expect("DescribeCreateAccountStatus returns a status");
    assert_eq!(status.state(), Some(&CreateAccountState::Succeeded));
    let account_id = status.account_id().expect("account id").to_string();

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
