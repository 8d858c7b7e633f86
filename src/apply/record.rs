//! What apply remembers in AWS about where this estate keeps portfolios: a tag per hub account
//! on the organization root (`tags::hub_record_key`). Plans read portfolios only in the
//! manifest's hubs and the recorded ones, and so still find those of a hub that left the
//! manifest, without visiting every account.

use crate::aws::{Aws, AwsError};
use crate::live::{AccountState, LiveState};
use crate::plan::catalog::DesiredPortfolio;
use crate::tags::{TAG_MANAGED_BY, hub_record_key};
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
