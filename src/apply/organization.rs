//! The organization's changes, always applied first: units, new accounts (created several at
//! once, found again after an interruption, moved into their unit), account moves.

use super::error::ApplyError;
use super::progress::{Done, Event, Progress};
use crate::aws::wait::Backoff;
use crate::aws::wait::Polling;
use crate::aws::{Aws, AwsError};
use crate::live::LiveState;
use crate::plan::{AccountSide, Action, Address, Plan, ResourceType, UnitSide};
use futures::stream::{self, StreamExt};
use std::collections::BTreeMap;

/// Units, new accounts (created, then moved into their unit) and account moves: the changes
/// that belong to no environment, always applied first. Returns the addresses done.
pub async fn organization(
    aws: &Aws,
    plan: &Plan,
    live: &LiveState,
    estate: &str,
    at_once: AtOnce,
    polling: Polling,
    progress: &dyn Progress,
) -> Result<Vec<Address>, ApplyError> {
    let org = aws.organizations();
    let mut done = Done::new(progress);
    let mut unit_ids: BTreeMap<String, String> = live
        .units
        .iter()
        .map(|u| (u.path.clone(), u.id.clone()))
        .collect();
    unit_ids.insert("/".into(), live.root_id.clone());

    // Units in plan order: the manifest lists parents before children.
    for c in plan
        .changes
        .iter()
        .filter(|c| c.resource_type == ResourceType::Unit)
    {
        let UnitSide { path, parent } = c.after_as()?;
        let parent_id = unit_ids.get(parent).cloned().ok_or_else(|| {
            ApplyError::Inconsistent(format!("parent unit {parent} of {path} does not exist"))
        })?;
        let name = path.rsplit('/').next().unwrap_or_default();
        progress.event(Event::Started {
            address: c.address.to_string(),
            what: format!("CreateOrganizationalUnit {name} under {parent}"),
        });
        let mut wait = Backoff::new(polling);
        let what = format!("creating unit {path}");
        let created = wait
            .call(&what, || async {
                org.create_organizational_unit()
                    .parent_id(&parent_id)
                    .name(name)
                    .tags(managed_by(estate))
                    .send()
                    .await
                    .map_err(|e| AwsError::call("Organizations.CreateOrganizationalUnit", e))
            })
            .await;
        let id = match created {
            Ok(out) => out
                .organizational_unit
                .and_then(|u| u.id)
                .unwrap_or_default(),
            // Made by this request (its answer lost, the request sent again) or by an earlier
            // run: ours if it carries our tag; someone else's is a conflict.
            Err(e) if e.code() == Some("DuplicateOrganizationalUnitException") => {
                unit_made_by(aws, &parent_id, name, estate, &mut wait)
                    .await?
                    .ok_or_else(|| {
                        ApplyError::Inconsistent(format!(
                            "conflict: unit {path} was created outside this estate since the plan; estate will not take it over"
                        ))
                    })?
            }
            Err(e) => return Err(e.into()),
        };
        unit_ids.insert(path.clone(), id);
        done.push(&c.address);
    }

    // New accounts, several at once: each is created (or found, if an earlier run's request
    // is still in progress or has succeeded), then moved into its unit.
    let mut creates = Vec::new();
    for c in plan
        .changes
        .iter()
        .filter(|c| c.resource_type == ResourceType::Account && c.action == Action::Create)
    {
        let after: &AccountSide = c.after_as()?;
        let given = |v: &Option<String>, what: &str| {
            v.clone().ok_or_else(|| {
                ApplyError::Inconsistent(format!("{}: the plan gives no {what}", c.address))
            })
        };
        creates.push(NewAccount {
            address: c.address.clone(),
            name: given(&after.name, "name")?,
            email: given(&after.email, "email")?,
            unit: after.unit.clone().filter(|u| u != "/"),
        });
    }
    if !creates.is_empty() {
        let earlier = Backoff::new(polling)
            .call("the account creation requests", || creation_requests(aws))
            .await?;
        let mut results = stream::iter(creates.iter().map(|a| {
            let unit_ids = &unit_ids;
            let earlier = &earlier;
            async move {
                progress.event(Event::Started {
                    address: a.address.to_string(),
                    what: format!("CreateAccount {} <{}>", a.name, a.email),
                });
                let id = find_or_create_account(aws, a, earlier, estate, polling).await?;
                aws.mark_new_account(&id);
                if let Some(unit) = &a.unit {
                    let dest = unit_ids.get(unit).cloned().ok_or_else(|| {
                        ApplyError::Inconsistent(format!("unit {unit} does not exist"))
                    })?;
                    move_account(aws, &id, &live.root_id, &dest, polling).await?;
                }
                Ok::<_, ApplyError>(a.address.clone())
            }
        }))
        .buffer_unordered(at_once.0.clamp(1, 5));
        let mut failures = Vec::new();
        while let Some(result) = results.next().await {
            match result {
                Ok(address) => done.push(&address),
                Err(e) => failures.push(e),
            }
        }
        every_failure(failures)?;
    }

    // Moves, several at once like creations; every failure reported.
    let mut moves = Vec::new();
    for c in plan
        .changes
        .iter()
        .filter(|c| c.resource_type == ResourceType::Account && c.action == Action::Update)
    {
        let before: &AccountSide = c.before_as()?;
        let (Some(id), Some(from)) = (&before.id, &before.unit) else {
            return Err(ApplyError::Inconsistent(format!(
                "{}: the plan gives no account id or unit to move from",
                c.address
            )));
        };
        let to = c
            .after_as::<AccountSide>()?
            .unit
            .clone()
            .ok_or_else(|| ApplyError::Inconsistent("move without unit".into()))?;
        let (Some(src), Some(dest)) = (unit_ids.get(from), unit_ids.get(&to)) else {
            return Err(ApplyError::Inconsistent(format!(
                "cannot move {id}: unit {from} or {to} is unknown"
            )));
        };
        moves.push((c, id, format!("MoveAccount {id} {from} → {to}"), src, dest));
    }
    let mut results = stream::iter(
        moves
            .into_iter()
            .map(|(c, id, what, src, dest)| async move {
                progress.event(Event::Started {
                    address: c.address.to_string(),
                    what,
                });
                move_account(aws, id, src, dest, polling).await?;
                // Taken over: from now on it carries estate's tag like the accounts it creates.
                if c.hint == Some(crate::plan::Hint::Adopt) {
                    aws.organizations()
                        .tag_resource()
                        .resource_id(id.as_str())
                        .tags(managed_by(estate))
                        .send()
                        .await
                        .map_err(|e| AwsError::call("Organizations.TagResource", e))?;
                }
                Ok::<_, ApplyError>(&c.address)
            }),
    )
    .buffer_unordered(at_once.0.clamp(1, 5));
    let mut failures = Vec::new();
    while let Some(result) = results.next().await {
        match result {
            Ok(address) => done.push(address),
            Err(e) => failures.push(e),
        }
    }
    every_failure(failures)?;
    // Accounts are never closed or removed by the reconciler.
    Ok(done.into_vec())
}

/// The id of the unit `name` under `parent` if this estate made it (its tag says so), found
/// after CreateOrganizationalUnit answered that the name is taken.
async fn unit_made_by(
    aws: &Aws,
    parent: &str,
    name: &str,
    estate: &str,
    wait: &mut Backoff,
) -> Result<Option<String>, AwsError> {
    let org = aws.organizations();
    let units = wait
        .call(&format!("the units under {parent}"), || async {
            let mut units = Vec::new();
            let mut pages = org
                .list_organizational_units_for_parent()
                .parent_id(parent)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| {
                    AwsError::call("Organizations.ListOrganizationalUnitsForParent", e)
                })?;
                units.extend(page.organizational_units.unwrap_or_default());
            }
            Ok(units)
        })
        .await?;
    let Some(id) = units
        .into_iter()
        .find(|u| u.name.as_deref() == Some(name))
        .and_then(|u| u.id)
    else {
        return Ok(None);
    };
    Ok(made_by(aws, &id, estate, wait).await?.then_some(id))
}

/// The tag that makes a unit or account this estate's.
fn managed_by(estate: &str) -> aws_sdk_organizations::types::Tag {
    aws_sdk_organizations::types::Tag::builder()
        .key(crate::tags::TAG_MANAGED_BY)
        .value(estate)
        .build()
        .expect("key and value are set")
}

/// Whether the unit or account `id` carries this estate's `estate:managed-by` tag.
async fn made_by(aws: &Aws, id: &str, estate: &str, wait: &mut Backoff) -> Result<bool, AwsError> {
    let tags = wait
        .call(&format!("the tags of {id}"), || async {
            aws.organizations()
                .list_tags_for_resource()
                .resource_id(id)
                .send()
                .await
                .map_err(|e| AwsError::call("Organizations.ListTagsForResource", e))
        })
        .await?;
    Ok(tags
        .tags
        .unwrap_or_default()
        .iter()
        .any(|t| t.key == crate::tags::TAG_MANAGED_BY && t.value == estate))
}

/// Every account's failure reported, not only the first.
fn every_failure(mut failures: Vec<ApplyError>) -> Result<(), ApplyError> {
    match failures.len() {
        0 => Ok(()),
        1 => Err(failures.remove(0)),
        _ => Err(ApplyError::Several(
            failures.iter().map(ToString::to_string).collect(),
        )),
    }
}

/// Account creations (and moves) in flight at once: at most AWS's quota of 5 creations in
/// progress per organization; by default one below it, so another tool's creation still fits.
#[derive(Debug, Clone, Copy)]
pub struct AtOnce(pub usize);

impl Default for AtOnce {
    fn default() -> Self {
        AtOnce(4)
    }
}

/// An account the plan creates.
struct NewAccount {
    address: Address,
    name: String,
    email: String,
    unit: Option<String>,
}

/// Whether an Organizations error is AWS asking to come back later: another request is
/// changing the same thing, the creation quota is in use, or the call was throttled.
fn try_again_later(e: &AwsError) -> bool {
    match e {
        AwsError::Call { code, message, .. } => {
            matches!(
                code.as_deref(),
                Some("ConcurrentModificationException" | "TooManyRequestsException")
            ) || (code.as_deref() == Some("ConstraintViolationException")
                && message.contains("ACCOUNT_CREATION_RATE_LIMIT_EXCEEDED"))
        }
        _ => false,
    }
}

async fn move_account(
    aws: &Aws,
    id: &str,
    from: &str,
    to: &str,
    polling: Polling,
) -> Result<(), ApplyError> {
    let mut wait = Backoff::new(polling);
    let what = format!("moving account {id}");
    loop {
        let result = wait
            .call(&what, || async {
                aws.organizations()
                    .move_account()
                    .account_id(id)
                    .source_parent_id(from)
                    .destination_parent_id(to)
                    .send()
                    .await
                    .map_err(|e| AwsError::call("Organizations.MoveAccount", e))
            })
            .await;
        match result {
            Ok(_) => return Ok(()),
            // Already there: this move's answer was lost and the request sent again.
            Err(e) if e.code() == Some("DuplicateAccountException") => return Ok(()),
            Err(e) if try_again_later(&e) => wait.sleep(&format!("moving account {id}")).await?,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Creation requests AWS still has in progress or has completed (ListCreateAccountStatus,
/// every page): a re-run after a cut-off apply finds its own request instead of creating the
/// account twice.
async fn creation_requests(
    aws: &Aws,
) -> Result<Vec<aws_sdk_organizations::types::CreateAccountStatus>, AwsError> {
    use aws_sdk_organizations::types::CreateAccountState;
    let mut out = Vec::new();
    let mut pages = aws
        .organizations()
        .list_create_account_status()
        .states(CreateAccountState::InProgress)
        .states(CreateAccountState::Succeeded)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AwsError::call("Organizations.ListCreateAccountStatus", e))?;
        out.extend(page.create_account_statuses.unwrap_or_default());
    }
    Ok(out)
}

/// The email of an account (DescribeAccount); `None` for one no longer in the organization.
async fn email_of(aws: &Aws, id: &str) -> Result<Option<String>, AwsError> {
    let out = aws
        .organizations()
        .describe_account()
        .account_id(id)
        .send()
        .await;
    match out {
        Ok(out) => Ok(out.account.and_then(|a| a.email)),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_account_not_found_exception()) =>
        {
            Ok(None)
        }
        Err(e) => Err(AwsError::call("Organizations.DescribeAccount", e)),
    }
}

/// Creates one account (no earlier request considered) and waits until it SUCCEEDED.
pub async fn create_account(
    aws: &Aws,
    name: &str,
    email: &str,
    estate: &str,
    polling: Polling,
) -> Result<String, ApplyError> {
    let a = NewAccount {
        address: Address::Account {
            key: name.to_string(),
        },
        name: name.to_string(),
        email: email.to_string(),
        unit: None,
    };
    find_or_create_account(aws, &a, &[], estate, polling).await
}

/// Creates one account, or finds the one an earlier run asked for, and waits until AWS says
/// it SUCCEEDED; returns its id. A request of the same name still in progress is waited for
/// and taken when its account has this email; so is a succeeded one. CreateAccount takes no
/// idempotency token (Organizations API reference): a request whose answer was lost is found
/// the same way (by name, then email), and AWS's email uniqueness keeps a request sent twice
/// from making two accounts. The account's role is `memberRole`.
async fn find_or_create_account(
    aws: &Aws,
    a: &NewAccount,
    earlier: &[aws_sdk_organizations::types::CreateAccountStatus],
    estate: &str,
    polling: Polling,
) -> Result<String, ApplyError> {
    if let Some(id) = find_earlier(aws, a, earlier, estate, polling).await? {
        return Ok(id);
    }
    let org = aws.organizations();
    let mut wait = Backoff::new(polling);
    let mut lost = 0;
    let out = loop {
        let result = org
            .create_account()
            .account_name(&a.name)
            .email(&a.email)
            .role_name(aws.member_role())
            .tags(managed_by(estate))
            .send()
            .await;
        // AWS says "too many in progress" in the exception's Reason, not its message.
        let rate_limited = result.as_ref().err().and_then(|e| e.as_service_error()).is_some_and(|e| {
            matches!(
                e,
                aws_sdk_organizations::operation::create_account::CreateAccountError::ConstraintViolationException(violation)
                    if violation.reason == Some(aws_sdk_organizations::types::ConstraintViolationExceptionReason::AccountCreationRateLimitExceeded)
            )
        });
        let result = result.map_err(|e| AwsError::call("Organizations.CreateAccount", e));
        match result {
            Ok(out) => break out,
            Err(_) if rate_limited => wait.sleep(&format!("creating account {}", a.name)).await?,
            // No answer: the request may have reached AWS. CreateAccount takes no idempotency
            // token, so its request is looked for (by name, then email) before another.
            Err(e) if e.is_transient() && lost < crate::aws::wait::TRANSIENT_IN_A_ROW => {
                lost += 1;
                if let Some(id) = find_again(aws, a, estate, polling).await? {
                    return Ok(id);
                }
                wait.sleep(&format!("creating account {}", a.name)).await?
            }
            Err(e) if try_again_later(&e) => {
                wait.sleep(&format!("creating account {}", a.name)).await?
            }
            Err(e) => return Err(e.into()),
        }
    };
    let request = out
        .create_account_status
        .and_then(|s| s.id)
        .ok_or_else(|| {
            ApplyError::Inconsistent(format!("CreateAccount {}: no request id returned", a.name))
        })?;
    match wait_for_creation(aws, &a.name, &request, polling).await {
        // The SDK sent the request again after a lost answer: the first one is creating (or
        // made) the account, so this one fails on its email. That account is ours.
        Err(ApplyError::AccountFailed { name, reason })
            if reason == "EMAIL_ALREADY_EXISTS" || reason == "CONCURRENT_ACCOUNT_MODIFICATION" =>
        {
            match find_again(aws, a, estate, polling).await? {
                Some(id) => Ok(id),
                None => Err(ApplyError::AccountFailed { name, reason }),
            }
        }
        other => other,
    }
}

/// [`find_earlier`] with the creation requests read again now.
async fn find_again(
    aws: &Aws,
    a: &NewAccount,
    estate: &str,
    polling: Polling,
) -> Result<Option<String>, ApplyError> {
    let mut wait = Backoff::new(polling);
    let requests = wait
        .call(&format!("the creation requests of {}", a.name), || {
            creation_requests(aws)
        })
        .await?;
    find_earlier(aws, a, &requests, estate, polling).await
}

/// The account an earlier request of this name made (or, still in progress, is making),
/// waited for, when it has this email. ListCreateAccountStatus carries no email:
/// DescribeAccount tells. The request must have been this estate's (its account carries the
/// tag CreateAccount gave it): one made by someone else is a conflict, never taken over.
async fn find_earlier(
    aws: &Aws,
    a: &NewAccount,
    earlier: &[aws_sdk_organizations::types::CreateAccountStatus],
    estate: &str,
    polling: Polling,
) -> Result<Option<String>, ApplyError> {
    use aws_sdk_organizations::types::CreateAccountState;
    let same_name: Vec<_> = earlier
        .iter()
        .filter(|s| s.account_name.as_deref() == Some(a.name.as_str()))
        .collect();
    for s in same_name {
        let id = match (&s.state, &s.id) {
            (Some(CreateAccountState::Succeeded), _) => s.account_id.clone(),
            (Some(CreateAccountState::InProgress), Some(request)) => {
                tracing::info!(
                    "account {}: an earlier request ({request}) is in progress; waiting for it",
                    a.name
                );
                match wait_for_creation(aws, &a.name, request, polling).await {
                    Ok(id) => Some(id),
                    // Failed: it is not an account; ours is created below.
                    Err(ApplyError::AccountFailed { .. }) => None,
                    Err(e) => return Err(e),
                }
            }
            _ => None,
        };
        if let Some(id) = id {
            let mut wait = Backoff::new(polling);
            let email = wait
                .call(&format!("the email of account {id}"), || email_of(aws, &id))
                .await?;
            if email.is_some_and(|e| e.eq_ignore_ascii_case(&a.email)) {
                if !made_by(aws, &id, estate, &mut wait).await? {
                    return Err(ApplyError::Inconsistent(format!(
                        "conflict: account {} <{}> ({id}) was created since the plan by a request that is not this estate's (it lacks the tag {}={estate}); estate will not take it over: plan again, and give the account `adopt: true` to take it over",
                        a.name,
                        a.email,
                        crate::tags::TAG_MANAGED_BY
                    )));
                }
                tracing::info!(
                    "account {}: found {id}, created by an earlier request",
                    a.name
                );
                return Ok(Some(id));
            }
        }
    }
    Ok(None)
}

/// DescribeCreateAccountStatus, with backoff, until the request SUCCEEDED (its account id) or
/// FAILED (AWS's reason).
async fn wait_for_creation(
    aws: &Aws,
    name: &str,
    request: &str,
    polling: Polling,
) -> Result<String, ApplyError> {
    use aws_sdk_organizations::types::CreateAccountState;
    let org = aws.organizations();
    let mut wait = Backoff::new(polling);
    let what = format!("account {name}");
    loop {
        let status = match wait
            .call(&what, || async {
                org.describe_create_account_status()
                    .create_account_request_id(request)
                    .send()
                    .await
                    .map_err(|e| AwsError::call("Organizations.DescribeCreateAccountStatus", e))
            })
            .await
        {
            Ok(out) => out.create_account_status,
            Err(e) if try_again_later(&e) => None,
            Err(e) => return Err(e.into()),
        };
        if let Some(status) = status {
            match status.state {
                Some(CreateAccountState::Succeeded) => {
                    return status.account_id.ok_or_else(|| {
                        ApplyError::Inconsistent(format!("account {name} succeeded without an id"))
                    });
                }
                Some(CreateAccountState::Failed) => {
                    return Err(ApplyError::AccountFailed {
                        name: name.to_string(),
                        reason: status
                            .failure_reason
                            .map_or("no reason given".into(), |r| r.as_str().to_string()),
                    });
                }
                _ => {}
            }
        }
        wait.sleep(&what).await?;
    }
}
