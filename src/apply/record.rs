//! What apply remembers in AWS, as tags on the organization root: where this estate keeps
//! portfolios (a tag per hub account, `tags::hub_record_key`: plans read portfolios only in the
//! manifest's hubs and the recorded ones, and so still find those of a hub that left the
//! manifest, without visiting every account), and its generation (`tags::generation_key`: how
//! an apply holding its locks tells, in one call, that another apply ran since it read live).

use crate::aws::{Aws, AwsError};
use crate::live::read::{generation_of, root_tags};
use crate::live::{AccountState, LiveState};
use crate::plan::catalog::DesiredPortfolio;
use crate::tags::{TAG_MANAGED_BY, generation_key, hub_record_key};
use aws_sdk_organizations::types::Tag;
use std::collections::BTreeSet;

/// Hubs of the manifest's portfolios not recorded yet: recorded before anything is created
/// there, so an apply cut off later still leaves them found.
pub async fn record_hubs(
    aws: &Aws,
    live: &LiveState,
    estate: &str,
    desired: &[DesiredPortfolio],
) -> Result<(), AwsError> {
    let missing: BTreeSet<&str> = desired
        .iter()
        .filter_map(|d| d.hub.as_deref())
        .filter(|hub| !live.portfolio_hub_record.contains(*hub))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let tags: Vec<Tag> = missing
        .iter()
        .map(|hub| {
            Tag::builder()
                .key(hub_record_key(estate, hub))
                .value("portfolios")
                .build()
                .expect("key and value are set")
        })
        .collect();
    aws.organizations()
        .tag_resource()
        .resource_id(&live.root_id)
        .set_tags(Some(tags))
        .send()
        .await
        .map_err(|e| AwsError::call("Organizations.TagResource", e))?;
    Ok(())
}

/// Recorded hubs the manifest no longer names and where the live read found none of this
/// estate's portfolios: nothing left to find there. A hub whose last portfolio this apply
/// deletes is retired by the next one, once a read has seen it empty. A hub the read did not
/// enter (an account not ACTIVE) is not known to be empty, and stays recorded.
pub async fn retire_hubs(
    aws: &Aws,
    live: &LiveState,
    estate: &str,
    desired: &[DesiredPortfolio],
) -> Result<(), AwsError> {
    let empty: Vec<String> = live
        .portfolio_hub_record
        .iter()
        .filter(|hub| !desired.iter().any(|d| d.hub.as_ref() == Some(*hub)))
        .filter(|hub| {
            live.accounts
                .iter()
                .any(|a| &a.id == *hub && a.state == AccountState::Active)
        })
        .filter(|hub| {
            !live.portfolios.iter().any(|p| {
                &p.account == *hub && p.tags.get(TAG_MANAGED_BY).map(String::as_str) == Some(estate)
            })
        })
        .map(|hub| hub_record_key(estate, hub))
        .collect();
    if empty.is_empty() {
        return Ok(());
    }
    aws.organizations()
        .untag_resource()
        .resource_id(&live.root_id)
        .set_tag_keys(Some(empty))
        .send()
        .await
        .map_err(|e| AwsError::call("Organizations.UntagResource", e))?;
    Ok(())
}

/// Whether an apply of `estate` started or finished since `live` was read: the generation on
/// the root moved (one call). Asked with the locks held, when no other apply of these scopes
/// can move it.
pub async fn generation_moved(aws: &Aws, live: &LiveState, estate: &str) -> Result<bool, AwsError> {
    let tags = root_tags(aws, &live.root_id).await?;
    Ok(generation_of(&tags, estate) != live.generation)
}

/// Writes a new generation of `estate` (one call): before an apply changes anything, and
/// again when it ends, so an apply that read live during this one is refused at its locks.
pub async fn next_generation(aws: &Aws, root_id: &str, estate: &str) -> Result<(), AwsError> {
    let value = format!("{:x}", super::lock::rand_token());
    aws.organizations()
        .tag_resource()
        .resource_id(root_id)
        .tags(
            Tag::builder()
                .key(generation_key(estate))
                .value(value)
                .build()
                .expect("key and value are set"),
        )
        .send()
        .await
        .map_err(|e| AwsError::call("Organizations.TagResource", e))?;
    Ok(())
}
