//! SDK-level tests (aws-smithy-mocks) of what reading live state costs, with AWS's real paging:
//! one DescribeStackSet per stack set, ceil(I/100) ListStackInstances pages per managed set,
//! and no call per instance unless overrides must be read.

use crate::support::mocks::{caller_identity, edge, meta};
use aws_sdk_cloudformation::types::{
    PermissionModels, StackInstanceStatus, StackInstanceSummary, StackSet, StackSetStatus,
    StackSetSummary, Tag,
};
use aws_sdk_organizations::types::{Account, AccountState, AccountStatus, Organization, Root};
use aws_smithy_mocks::{Rule, mock};
use estate::aws::Aws;
use estate::live::read::{ReadOptions, read};
use std::collections::BTreeMap;

type Cfn = aws_sdk_cloudformation::Client;
type Orgs = aws_sdk_organizations::Client;

/// An organization with one account under the root, and `sets` stack sets (name → instance
/// count), all managed by estate `e` unless named `foreign-*`.
fn mocked(sets: &[(&str, usize)], override_tag: Option<&str>) -> Aws {
    mocked_with(
        sets,
        override_tag,
        Account::builder()
            .id("111111111111")
            .name("mgmt")
            .email("m@example.com")
            .state(AccountState::Active)
            .build(),
    )
}

/// As [`mocked`], the organization's one account as given.
fn mocked_with(sets: &[(&str, usize)], override_tag: Option<&str>, account: Account) -> Aws {
    let org_rules = [
        mock!(Orgs::describe_organization).then_output(|| {
            aws_sdk_organizations::operation::describe_organization::DescribeOrganizationOutput::builder()
                .organization(Organization::builder().master_account_id("111111111111").build())
                .build()
        }),
        mock!(Orgs::list_roots).then_output(|| {
            aws_sdk_organizations::operation::list_roots::ListRootsOutput::builder()
                .roots(Root::builder().id("r-root").build())
                .build()
        }),
        mock!(Orgs::list_organizational_units_for_parent).then_output(|| {
            aws_sdk_organizations::operation::list_organizational_units_for_parent::ListOrganizationalUnitsForParentOutput::builder().build()
        }),
        // The root's tags: where this estate recorded portfolio hubs (none here).
        mock!(Orgs::list_tags_for_resource).then_output(|| {
            aws_sdk_organizations::operation::list_tags_for_resource::ListTagsForResourceOutput::builder().build()
        }),
        mock!(Orgs::list_accounts_for_parent).then_output(move || {
            aws_sdk_organizations::operation::list_accounts_for_parent::ListAccountsForParentOutput::builder()
                .accounts(account.clone())
                .build()
        }),
    ];
    let identity = caller_identity("111111111111");

    // ListStackSets pages 2 at a time, like AWS with a small page size.
    let names: Vec<String> = sets.iter().map(|(n, _)| n.to_string()).collect();
    let list = mock!(Cfn::list_stack_sets).then_compute_output(move |req| {
        let start: usize = req.next_token().map_or(0, |t| t.parse().unwrap());
        let page: Vec<StackSetSummary> = names
            .iter()
            .skip(start)
            .take(2)
            .map(|n| {
                StackSetSummary::builder()
                    .stack_set_name(n)
                    .status(StackSetStatus::Active)
                    .build()
            })
            .collect();
        let next = (start + 2 < names.len()).then(|| (start + 2).to_string());
        aws_sdk_cloudformation::operation::list_stack_sets::ListStackSetsOutput::builder()
            .set_summaries(Some(page))
            .set_next_token(next)
            .build()
    });
    let override_tag = override_tag.map(str::to_string);
    let describe = mock!(Cfn::describe_stack_set).then_compute_output(move |req| {
        let name = req.stack_set_name().unwrap().to_string();
        let owner = if name.starts_with("foreign-") {
            "other"
        } else {
            "e"
        };
        let mut tags = vec![Tag::builder().key("estate:managed-by").value(owner).build()];
        if let Some(t) = &override_tag {
            tags.push(
                Tag::builder()
                    .key("estate:overrides-sha256")
                    .value(t)
                    .build(),
            );
        }
        aws_sdk_cloudformation::operation::describe_stack_set::DescribeStackSetOutput::builder()
            .stack_set(
                StackSet::builder()
                    .stack_set_name(&name)
                    .template_body("Resources: {}")
                    .permission_model(PermissionModels::SelfManaged)
                    .set_tags(Some(tags))
                    .build(),
            )
            .build()
    });
    let counts: BTreeMap<String, usize> = sets.iter().map(|(n, c)| (n.to_string(), *c)).collect();
    let instances = mock!(Cfn::list_stack_instances)
        // estate must ask for full pages: 100 is the API's maximum.
        .match_requests(|req| req.max_results() == Some(100))
        .then_compute_output(move |req| {
            let total = counts[req.stack_set_name().unwrap()];
            let start: usize = req.next_token().map_or(0, |t| t.parse().unwrap());
            let end = (start + 100).min(total);
            let page: Vec<StackInstanceSummary> = (start..end)
                .map(|i| {
                    StackInstanceSummary::builder()
                        .account(format!("{:012}", 200_000_000_000u64 + i as u64))
                        .region("us-east-1")
                        .status(StackInstanceStatus::Current)
                        .build()
                })
                .collect();
            aws_sdk_cloudformation::operation::list_stack_instances::ListStackInstancesOutput::builder()
                .set_summaries(Some(page))
                .set_next_token((end < total).then(|| end.to_string()))
                .build()
        });
    let describe_instance = mock!(Cfn::describe_stack_instance).then_compute_output(|_| {
        aws_sdk_cloudformation::operation::describe_stack_instance::DescribeStackInstanceOutput::builder()
            .stack_instance(aws_sdk_cloudformation::types::StackInstance::builder().build())
            .build()
    });
    let rules: Vec<&Rule> = org_rules
        .iter()
        .chain([&identity, &list, &describe, &instances, &describe_instance])
        .collect();
    edge(&rules)
}

fn options(digests: &[(&str, &str)]) -> ReadOptions {
    ReadOptions {
        estate: "e".into(),
        home_region: "us-east-1".into(),
        overrides_digests: digests
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        ..Default::default()
    }
}

#[tokio::test]
async fn reading_costs_one_describe_per_set_and_one_list_per_hundred_instances() {
    let sets = [
        ("a-dev", 0),
        ("b-dev", 1),
        ("c-dev", 100),
        ("d-dev", 101),
        ("e-dev", 250),
    ];
    let aws = mocked(&sets, None);
    let digests: Vec<(&str, &str)> = sets.iter().map(|(n, _)| (*n, "none")).collect();
    let live = read(&aws, &options(&digests)).await.unwrap();
    let stats = aws.stats().snapshot();

    let s = sets.len() as u64;
    // Σ ceil(I/100); an empty set still costs its one (empty) page: AWS cannot say it is
    // empty without being asked.
    let pages: u64 = sets
        .iter()
        .map(|(_, i)| (*i as u64).div_ceil(100).max(1))
        .sum();
    assert_eq!(stats["CloudFormation.DescribeStackSet"], s);
    assert_eq!(stats["CloudFormation.ListStackInstances"], pages);
    assert_eq!(stats["CloudFormation.ListStackSets"], 3, "5 sets, 2 a page");
    assert!(!stats.contains_key("CloudFormation.DescribeStackInstance"));
    for (name, count) in sets {
        assert_eq!(
            live.stack_sets[name].instances.as_ref().unwrap().len(),
            count,
            "{name}"
        );
    }
}

#[tokio::test]
async fn stack_sets_of_other_owners_are_described_but_never_listed() {
    let aws = mocked(&[("foreign-x", 500), ("mine-dev", 3)], None);
    let live = read(&aws, &options(&[("mine-dev", "none")])).await.unwrap();
    let stats = aws.stats().snapshot();
    assert_eq!(stats["CloudFormation.DescribeStackSet"], 2);
    assert_eq!(stats["CloudFormation.ListStackInstances"], 1);
    assert!(live.stack_sets["foreign-x"].instances.is_none());
}

#[tokio::test]
async fn changed_overrides_are_read_per_instance_only_for_that_set() {
    // The manifest's overrides digest differs from the tag: overrides must be read.
    let aws = mocked(&[("a-dev", 3), ("b-dev", 2)], Some("old"));
    let live = read(&aws, &options(&[("a-dev", "new"), ("b-dev", "old")]))
        .await
        .unwrap();
    let stats = aws.stats().snapshot();
    assert_eq!(stats["CloudFormation.DescribeStackInstance"], 3);
    assert!(
        live.stack_sets["a-dev"].instances.as_ref().unwrap()[0]
            .overrides
            .is_some()
    );
    assert!(
        live.stack_sets["b-dev"].instances.as_ref().unwrap()[0]
            .overrides
            .is_none()
    );
}

/// An account as Organizations answers since `Status` was retired (2026-09-09).
fn account(state: Option<AccountState>, status: Option<AccountStatus>) -> Account {
    Account::builder()
        .id("111111111111")
        .name("mgmt")
        .email("m@example.com")
        .set_state(state)
        .set_status(status)
        .build()
}

#[tokio::test]
async fn account_state_comes_from_state_without_the_retired_status() {
    let aws = mocked_with(&[], None, account(Some(AccountState::Suspended), None));
    let live = read(&aws, &options(&[])).await.unwrap();
    assert_eq!(
        live.accounts[0].state,
        estate::live::AccountState::Suspended
    );
    // The caller's identity gives the account estate acts as and its partition.
    assert_eq!(live.caller_account, "111111111111");
    assert_eq!(live.partition, "aws-cn");
}

#[tokio::test]
async fn the_retired_status_is_read_only_when_state_is_missing() {
    let aws = mocked_with(&[], None, account(None, Some(AccountStatus::Active)));
    let live = read(&aws, &options(&[])).await.unwrap();
    assert_eq!(live.accounts[0].state, estate::live::AccountState::Active);
}

/// Never delete from ambiguity: an account whose state estate cannot read, or does not know,
/// fails the read (and so the plan) instead of being taken for gone.
#[tokio::test]
async fn an_account_without_a_known_state_fails_the_read() {
    for (state, said) in [
        (None, "gave no State"),
        (Some(AccountState::from("FROZEN")), "unknown State `FROZEN`"),
    ] {
        let aws = mocked_with(&[], None, account(state, None));
        let err = read(&aws, &options(&[])).await.unwrap_err().to_string();
        assert!(err.contains(said), "{err}");
        assert!(err.contains("111111111111"), "{err}");
    }
}

/// First-run mistakes say what to do: credentials of an account in no organization.
#[tokio::test]
async fn an_account_in_no_organization_is_told_how_to_start() {
    use aws_sdk_organizations::operation::describe_organization::DescribeOrganizationError;
    let aws = edge(&[
        &caller_identity("111111111111"),
        &mock!(Orgs::describe_organization).then_error(|| {
            DescribeOrganizationError::AwsOrganizationsNotInUseException(
                aws_sdk_organizations::types::error::AwsOrganizationsNotInUseException::builder()
                    .message("Your account is not a member of an organization.")
                    .meta(meta(
                        "AWSOrganizationsNotInUseException",
                        "Your account is not a member of an organization.",
                    ))
                    .build(),
            )
        }),
    ]);
    let err = read(&aws, &options(&[])).await.unwrap_err().to_string();
    assert!(err.contains("not in an AWS organization"), "{err}");
    assert!(err.contains("create-organization"), "{err}");
}

/// ... and credentials of a member account that is not a delegated administrator.
#[tokio::test]
async fn a_member_account_is_told_it_is_not_the_management_account() {
    use aws_sdk_organizations::operation::list_roots::ListRootsError;
    let aws = edge(&[
        &caller_identity("222222222222"),
        &mock!(Orgs::describe_organization).then_output(|| {
            aws_sdk_organizations::operation::describe_organization::DescribeOrganizationOutput::builder()
                .organization(Organization::builder().master_account_id("111111111111").build())
                .build()
        }),
        &mock!(Orgs::list_roots).then_error(|| {
            ListRootsError::AccessDeniedException(
                aws_sdk_organizations::types::error::AccessDeniedException::builder()
                    .message("You don't have permissions to access this resource.")
                    .meta(meta(
                        "AccessDeniedException",
                        "You don't have permissions to access this resource.",
                    ))
                    .build(),
            )
        }),
    ]);
    let err = read(&aws, &options(&[])).await.unwrap_err().to_string();
    assert!(
        err.contains(
            "account 222222222222 is not the organization's management account (111111111111)"
        ),
        "{err}"
    );
    assert!(err.contains("management account's credentials"), "{err}");
}
