//! Reading live state through the AWS edge: the organization tree and accounts, then the
//! stack sets of the administrator account. One DescribeStackSet per stack set and paged
//! ListStackInstances (100 a page) for managed ones; never a call per instance, except
//! DescribeStackInstance where overrides must be read (see [`ReadOptions`]).

use super::*;
use crate::aws::{Aws, AwsError};
use crate::tags::{TAG_MANAGED_BY, TAG_OVERRIDES};
use aws_sdk_organizations::types::AccountJoinedMethod;
use futures::future::try_join_all;
use std::collections::BTreeMap;

/// What the reader needs to know from the manifest to read no more than necessary.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// The estate's name: stack sets tagged `estate:managed-by=<estate>` are read in full.
    pub estate: String,
    /// Region where stack sets are administered.
    pub home_region: String,
    /// Accounts (by email) the manifest's portfolios name as hubs: their portfolios are read,
    /// with those of the hubs the organization root records (see `tags::hub_record_key`).
    /// Whether any portfolio is shared with units (then Service Catalog's AWS Organizations
    /// access is read too).
    pub portfolio_hubs: Vec<String>,
    pub portfolio_unit_shares: bool,
    /// Per stack set, the digest of the overrides the manifest gives. Instances of a stack set
    /// whose `estate:overrides-sha256` tag differs are described one by one, since
    /// ListStackInstances does not return overrides; when the tag matches, none are.
    pub overrides_digests: BTreeMap<String, String>,
    /// Pipelines, with the email of their tools account: their source bundles are listed in
    /// the artifact bucket there.
    pub pipelines: Vec<(String, String)>,
    /// Read what bootstrapping stack-set roles needs: StackSets' trusted access and the
    /// administration stack (one call each).
    pub bootstrap: bool,
    /// Read StackSets' trusted access (service-managed stack sets need it).
    pub stack_sets_access: bool,
    /// Stack sets the manifest adopts, by AWS name: their instances are read although they
    /// carry no estate's tag (when they carry another estate's, they are not).
    pub adopted: std::collections::BTreeSet<String>,
    /// Manifest accounts, by email, with the unit the manifest puts them in, that it does not
    /// adopt: where one is live elsewhere (a move), its tags are read, one call each, to know
    /// whether it is this estate's to move.
    pub placements: Vec<(String, String)>,
    /// Read the instances of every stack set whose name matches one of these patterns,
    /// whoever owns it (`estate import`).
    pub every_instance_of: Vec<String>,
    /// Portfolios the manifest adopts, as (hub email, display name): read in full although
    /// they carry no estate's tag (when they carry another estate's, they are not).
    pub adopted_portfolios: Vec<(String, String)>,
    /// `estate import`: a hub account id and display-name patterns (`*`) of the portfolios
    /// there to read in full although they carry no estate's tag.
    pub import_portfolios: Option<(String, Vec<String>)>,
    /// Stack sets (AWS names) whose outputs the manifest passes to other stack sets: the
    /// outputs of each of their instances are read (one DescribeStacks each, in the
    /// instance's account and region).
    pub outputs_of: std::collections::BTreeSet<String>,
}

pub async fn read(aws: &Aws, opts: &ReadOptions) -> Result<LiveState, AwsError> {
    let org = aws.organizations();
    let identity = aws.identity().await?;
    let description =
        org.describe_organization()
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                Some(s) if s.is_aws_organizations_not_in_use_exception() => {
                    AwsError::NoOrganization
                }
                _ => AwsError::call("Organizations.DescribeOrganization", e),
            })?;
    let management_account = description
        .organization
        .and_then(|o| o.master_account_id)
        .unwrap_or_default();
    // Only the management account and delegated administrators may list the organization.
    let not_management = |e: AwsError| match e.code() {
        Some("AccessDeniedException") => AwsError::NotManagement {
            caller: identity.account.clone(),
            management: management_account.clone(),
            message: e.to_string(),
        },
        _ => e,
    };
    let root_id = root_id(aws).await.map_err(not_management)?;

    let (units, mut accounts) = read_tree(aws, &root_id).await?;
    read_mover_tags(aws, opts, &root_id, &units, &mut accounts).await?;
    let (portfolio_hub_record, generation) = root_record(aws, &root_id, &opts.estate).await?;

    let stack_sets = read_stack_sets(aws, opts).await?;
    let mut state = LiveState {
        management_account,
        caller_account: identity.account.clone(),
        partition: identity.partition.clone(),
        root_id,
        units,
        accounts,
        stack_sets,
        portfolios: Vec::new(),
        portfolio_hub_record,
        generation,
        catalog_organizations_access: None,
        catalog_delegated_admins: None,
        unmanaged_portfolios: Vec::new(),
        pipeline_sources: Default::default(),
        pipeline_buckets: Default::default(),
        stack_sets_organizations_access: None,
        administration_stack: None,
        bootstrap_read: false,
        stack_outputs: BTreeMap::new(),
    };
    read_outputs(aws, &opts.outputs_of, &mut state).await?;
    read_portfolios(aws, opts, &mut state).await?;
    read_pipeline_sources(aws, opts, &mut state, |_| true).await?;
    if opts.bootstrap || opts.stack_sets_access {
        state.stack_sets_organizations_access = Some(stack_sets_access(aws, opts).await?);
    }
    if opts.bootstrap {
        state.bootstrap_read = true;
        state.administration_stack = read_stack(
            aws,
            &opts.home_region,
            &crate::bootstrap::administration_stack(&opts.estate),
        )
        .await?;
    }
    tracing::info!(
        "live state: {} units, {} accounts, {} stack sets, {} portfolios",
        state.units.len(),
        state.accounts.len(),
        state.stack_sets.len(),
        state.portfolios.len()
    );
    Ok(state)
}

/// The outputs of every instance of the stack sets `names` (as `state` lists them), read
/// concurrently (bounded) from each instance's stack in its account and region; an instance
/// without a stack id, or whose account is not active, has none read.
pub async fn read_outputs(
    aws: &Aws,
    names: &std::collections::BTreeSet<String>,
    state: &mut LiveState,
) -> Result<(), AwsError> {
    let active: std::collections::HashSet<&str> = state
        .accounts
        .iter()
        .filter(|a| a.state == AccountState::Active)
        .map(|a| a.id.as_str())
        .collect();
    let mut wanted = Vec::new();
    for name in names {
        let Some(set) = state.stack_sets.get(name) else {
            continue;
        };
        for i in set.instances.iter().flatten() {
            if let Some(id) = &i.stack_id {
                if active.contains(i.account.as_str()) || i.account == state.caller() {
                    wanted.push((
                        name.clone(),
                        i.account.clone(),
                        i.region.clone(),
                        id.clone(),
                    ));
                }
            }
        }
    }
    let caller = state.caller().to_string();
    for (key, outputs) in instance_outputs(aws, &caller, wanted).await? {
        match outputs {
            Some(o) => {
                state.stack_outputs.insert(key, o);
            }
            None => {
                state.stack_outputs.remove(&key);
            }
        }
    }
    Ok(())
}

/// The outputs of these instances (stack set, account, region, stack id), by
/// [`output_key`], read concurrently (bounded) in each instance's account and region as
/// `caller`; `None` for a stack not in a completed state.
pub async fn instance_outputs(
    aws: &Aws,
    caller: &str,
    wanted: Vec<(String, String, String, String)>,
) -> Result<Vec<(String, Option<BTreeMap<String, String>>)>, AwsError> {
    try_join_all(
        wanted
            .into_iter()
            .map(|(name, account, region, id)| async move {
                let _permit = aws.read_permit().await;
                let edge = aws.acting_in(&account, caller).await?;
                let outputs = stack_outputs(&edge, &region, &id).await?;
                Ok::<_, AwsError>((output_key(&name, &account, &region), outputs))
            }),
    )
    .await
}

/// A stack's outputs (DescribeStacks on its id, in the account `aws` acts in); `None` when
/// the stack is not in a state whose outputs hold: only CREATE_COMPLETE, UPDATE_COMPLETE and
/// UPDATE_ROLLBACK_COMPLETE (the last good template's) stacks have them as deployed.
async fn stack_outputs(
    aws: &Aws,
    region: &str,
    stack_id: &str,
) -> Result<Option<BTreeMap<String, String>>, AwsError> {
    let out = aws
        .cloudformation(region)
        .describe_stacks()
        .stack_name(stack_id)
        .send()
        .await
        .map_err(|e| AwsError::call("CloudFormation.DescribeStacks", e))?;
    let Some(stack) = out.stacks.unwrap_or_default().into_iter().next() else {
        return Ok(None);
    };
    let complete = stack.stack_status.as_ref().is_some_and(|s| {
        matches!(
            s.as_str(),
            "CREATE_COMPLETE" | "UPDATE_COMPLETE" | "UPDATE_ROLLBACK_COMPLETE"
        )
    });
    Ok(complete.then(|| {
        stack
            .outputs
            .unwrap_or_default()
            .into_iter()
            .filter_map(|o| Some((o.output_key?, o.output_value.unwrap_or_default())))
            .collect()
    }))
}

/// Whether CloudFormation StackSets has trusted access to AWS Organizations
/// (DescribeOrganizationsAccess).
async fn stack_sets_access(aws: &Aws, opts: &ReadOptions) -> Result<bool, AwsError> {
    let out = aws
        .cloudformation(&opts.home_region)
        .describe_organizations_access()
        .send()
        .await
        .map_err(|e| AwsError::call("CloudFormation.DescribeOrganizationsAccess", e))?;
    match out.status {
        Some(aws_sdk_cloudformation::types::OrganizationStatus::Enabled) => Ok(true),
        Some(
            aws_sdk_cloudformation::types::OrganizationStatus::Disabled
            | aws_sdk_cloudformation::types::OrganizationStatus::DisabledPermanently,
        ) => Ok(false),
        other => Err(AwsError::Call {
            transient: false,
            operation: "CloudFormation.DescribeOrganizationsAccess".into(),
            code: None,
            message: format!("an access status estate does not know: {other:?}"),
        }),
    }
}

/// One stack by name in the account estate runs as (DescribeStacks); `None` when AWS says it
/// does not exist. A deleted stack is none either.
pub(crate) async fn read_stack(
    aws: &Aws,
    region: &str,
    name: &str,
) -> Result<Option<LiveStack>, AwsError> {
    let out = aws
        .cloudformation(region)
        .describe_stacks()
        .stack_name(name)
        .send()
        .await;
    let out = match out {
        Ok(out) => out,
        // AWS answers a missing stack with a ValidationError naming it.
        Err(e)
            if e.as_service_error()
                .and_then(aws_smithy_types::error::metadata::ProvideErrorMetadata::message)
                .is_some_and(|m| m.contains("does not exist")) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(AwsError::call("CloudFormation.DescribeStacks", e)),
    };
    Ok(out
        .stacks
        .unwrap_or_default()
        .into_iter()
        .find(|s| {
            s.stack_status
                .as_ref()
                .is_some_and(|st| st.as_str() != "DELETE_COMPLETE")
        })
        .map(|s| LiveStack {
            name: name.to_string(),
            status: s
                .stack_status
                .map(|st| st.as_str().to_string())
                .unwrap_or_default(),
            status_reason: s.stack_status_reason,
            outputs: s
                .outputs
                .unwrap_or_default()
                .into_iter()
                .filter_map(|o| o.output_key)
                .collect(),
        }))
}

/// The source bundles in each pipeline's artifact bucket (one paginated list per pipeline
/// whose tools account exists; a bucket not created yet holds none), pipelines read
/// concurrently (bounded).
async fn read_pipeline_sources(
    aws: &Aws,
    opts: &ReadOptions,
    state: &mut LiveState,
    in_account: impl Fn(&str) -> bool,
) -> Result<(), AwsError> {
    let wanted: Vec<(String, String)> = opts
        .pipelines
        .iter()
        .filter_map(|(pipeline, email)| {
            state
                .account_by_email(email)
                .filter(|a| a.state == AccountState::Active && in_account(&a.id))
                .map(|a| (pipeline.clone(), a.id.clone()))
        })
        .collect();
    let caller = state.caller().to_string();
    let read = try_join_all(wanted.iter().map(|(pipeline, account)| {
        let caller = &caller;
        async move {
            let _permit = aws.read_permit().await;
            bucket_sources(aws, opts, pipeline, account, caller).await
        }
    }))
    .await?;
    for (bucket, sources) in read.into_iter().flatten() {
        state.pipeline_buckets.insert(bucket);
        state.pipeline_sources.extend(sources);
    }
    Ok(())
}

/// A pipeline's artifact bucket, if it exists (taken by another account counts), and the
/// source bundles in it, as `bucket/key`.
async fn bucket_sources(
    aws: &Aws,
    opts: &ReadOptions,
    pipeline: &str,
    account: &str,
    caller: &str,
) -> Result<Option<(String, Vec<String>)>, AwsError> {
    let edge = aws.acting_in(account, caller).await?;
    let bucket = crate::pipeline::bucket(pipeline, account);
    let s3 = edge.s3(&opts.home_region);
    let mut pages = s3
        .list_objects_v2()
        .bucket(&bucket)
        .prefix(crate::pipeline::SOURCE_PREFIX)
        .expected_bucket_owner(account)
        .into_paginator()
        .send();
    let mut sources = Vec::new();
    while let Some(page) = pages.next().await {
        let page = match page {
            Ok(p) => p,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_bucket()) => {
                return Ok(None);
            }
            // Taken by another account: it exists, and is not the pipeline's.
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 403) => break,
            Err(e) => return Err(AwsError::call("S3.ListObjectsV2", e)),
        };
        for object in page.contents() {
            if let Some(key) = object.key() {
                sources.push(format!("{bucket}/{key}"));
            }
        }
    }
    Ok(Some((bucket, sources)))
}

/// The organization root's id (ListRoots).
pub async fn root_id(aws: &Aws) -> Result<String, AwsError> {
    let roots = aws
        .organizations()
        .list_roots()
        .send()
        .await
        .map_err(|e| AwsError::call("Organizations.ListRoots", e))?;
    roots
        .roots
        .unwrap_or_default()
        .into_iter()
        .find_map(|r| r.id)
        .ok_or_else(|| AwsError::Call {
            transient: false,
            operation: "Organizations.ListRoots".into(),
            code: None,
            message: "the organization has no root".into(),
        })
}

/// The organization's units and accounts, breadth-first over the tree one level at a time,
/// so parents precede children.
async fn read_tree(
    aws: &Aws,
    root_id: &str,
) -> Result<(Vec<LiveUnit>, Vec<LiveAccount>), AwsError> {
    let mut units = Vec::new();
    let mut accounts = Vec::new();
    let mut level = vec![(root_id.to_string(), String::new())];
    while !level.is_empty() {
        let results = try_join_all(
            level
                .iter()
                .map(|(id, path)| read_parent(aws, id.clone(), path.clone())),
        )
        .await?;
        let mut next = Vec::new();
        for (children, members) in results {
            for unit in children {
                next.push((unit.id.clone(), unit.path.clone()));
                units.push(unit);
            }
            accounts.extend(members);
        }
        level = next;
    }
    accounts.sort_by(|a: &LiveAccount, b| a.id.cmp(&b.id));
    Ok((units, accounts))
}

/// `state` after apply changed the organization: the tree read again, and the artifact
/// buckets of pipelines whose tools account only now exists. Nothing else depends on account
/// ids estate did not know: stack sets, portfolios and the roles they need are as read.
pub async fn reread_organization(
    aws: &Aws,
    opts: &ReadOptions,
    mut state: LiveState,
) -> Result<LiveState, AwsError> {
    let known: std::collections::BTreeSet<String> =
        state.accounts.iter().map(|a| a.id.clone()).collect();
    let (units, mut accounts) = read_tree(aws, &state.root_id).await?;
    read_mover_tags(aws, opts, &state.root_id, &units, &mut accounts).await?;
    state.units = units;
    state.accounts = accounts;
    read_pipeline_sources(aws, opts, &mut state, |id| !known.contains(id)).await?;
    // Service-managed stack sets that deploy by themselves may already have followed an
    // account into its unit.
    let cfn = aws.cloudformation(&opts.home_region);
    let following: Vec<String> = state
        .stack_sets
        .values()
        .filter(|s| s.instances.is_some() && s.auto_deployment.is_some_and(|a| a.enabled))
        .map(|s| s.name.clone())
        .collect();
    for set in try_join_all(following.iter().map(|n| read_stack_set(aws, &cfn, n, opts))).await? {
        state.stack_sets.insert(set.name.clone(), set);
    }
    Ok(state)
}

/// Tags of the manifest accounts a plan would move (never of every account: one call each).
async fn read_mover_tags(
    aws: &Aws,
    opts: &ReadOptions,
    root_id: &str,
    units: &[LiveUnit],
    accounts: &mut [LiveAccount],
) -> Result<(), AwsError> {
    let path_of = |parent: &str| {
        if parent == root_id {
            Some("/")
        } else {
            units
                .iter()
                .find(|u| u.id == parent)
                .map(|u| u.path.as_str())
        }
    };
    let movers: Vec<usize> = accounts
        .iter()
        .enumerate()
        .filter(|(_, a)| {
            opts.placements.iter().any(|(email, unit)| {
                email.eq_ignore_ascii_case(&a.email) && path_of(&a.parent_id) != Some(unit)
            })
        })
        .map(|(i, _)| i)
        .collect();
    let read = try_join_all(movers.iter().map(|&i| root_tags(aws, &accounts[i].id))).await?;
    for (i, tags) in movers.into_iter().zip(read) {
        accounts[i].tags = Some(tags.into_iter().collect());
    }
    Ok(())
}

/// The organization root's tags, as (key, value): where estate keeps its locks and its
/// records (one call; Organizations returns at most 50 tags, on one page).
pub async fn root_tags(aws: &Aws, root_id: &str) -> Result<Vec<(String, String)>, AwsError> {
    let mut tags = Vec::new();
    let mut pages = aws
        .organizations()
        .list_tags_for_resource()
        .resource_id(root_id)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AwsError::call("Organizations.ListTagsForResource", e))?;
        tags.extend(
            page.tags
                .unwrap_or_default()
                .into_iter()
                .map(|t| (t.key, t.value)),
        );
    }
    Ok(tags)
}

/// What the organization root records for `estate` (one call): the accounts that are its
/// portfolio hubs, and its generation (see `tags::generation_key`).
async fn root_record(
    aws: &Aws,
    root_id: &str,
    estate: &str,
) -> Result<(std::collections::BTreeSet<String>, Option<String>), AwsError> {
    let tags = root_tags(aws, root_id).await?;
    let hubs = tags
        .iter()
        .filter_map(|(key, _)| crate::tags::hub_of_record(estate, key))
        .map(str::to_string)
        .collect();
    Ok((hubs, generation_of(&tags, estate)))
}

/// `estate`'s generation among the root's tags.
pub fn generation_of(tags: &[(String, String)], estate: &str) -> Option<String> {
    let key = crate::tags::generation_key(estate);
    tags.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone())
}

/// Reads the portfolios of `state` (which [`read`] filled) again, as `opts` now says:
/// `estate import` knows the hub it imports from only once it knows the accounts.
pub async fn reread_portfolios(
    aws: &Aws,
    opts: &ReadOptions,
    state: &mut LiveState,
) -> Result<(), AwsError> {
    state.portfolios.clear();
    state.unmanaged_portfolios.clear();
    read_portfolios(aws, opts, state).await
}

/// Portfolios in the manifest's hubs and the recorded ones that exist, and the recipients of
/// their account shares; hubs, and the recipients of each, read concurrently (bounded).
async fn read_portfolios(
    aws: &Aws,
    opts: &ReadOptions,
    state: &mut LiveState,
) -> Result<(), AwsError> {
    let region = &opts.home_region;
    let mut hubs: Vec<String> = opts
        .portfolio_hubs
        .iter()
        .filter_map(|email| state.account_by_email(email))
        .map(|a| a.id.clone())
        .chain(state.portfolio_hub_record.iter().cloned())
        .chain(opts.import_portfolios.iter().map(|(hub, _)| hub.clone()))
        .chain(
            opts.adopted_portfolios
                .iter()
                .filter_map(|(email, _)| state.account_by_email(email))
                .map(|a| a.id.clone()),
        )
        .filter(|id| {
            // A suspended account cannot be entered, and holds nothing estate can change.
            state
                .accounts
                .iter()
                .any(|a| &a.id == id && a.state == AccountState::Active)
        })
        .collect();
    hubs.sort();
    hubs.dedup();
    let caller = state.caller().to_string();
    // Per hub, the display names of untagged portfolios read in full: adopted, or imported.
    let adopted: Vec<(String, String)> = opts
        .adopted_portfolios
        .iter()
        .filter_map(|(email, name)| Some((state.account_by_email(email)?.id.clone(), name.clone())))
        .collect();
    let adopted = &adopted;
    let read_one = |hub: String| {
        let caller = caller.clone();
        async move {
            let edge = {
                let _permit = aws.read_permit().await;
                aws.acting_in(&hub, &caller).await?
            };
            let untagged = |name: &str| {
                adopted.iter().any(|(h, n)| *h == hub && n == name)
                    || opts
                        .import_portfolios
                        .as_ref()
                        .is_some_and(|(h, patterns)| {
                            *h == hub
                                && patterns
                                    .iter()
                                    .any(|p| crate::manifest::model::glob_match(p, name))
                        })
            };
            let mut read =
                super::catalog::read_hub(&edge, &hub, region, &opts.estate, &untagged).await?;
            for p in &mut read.portfolios {
                let id = p.id.clone();
                let recipients = try_join_all(p.shared_accounts.iter().map(|recipient| {
                    let caller = caller.clone();
                    let id = &id;
                    async move {
                        let _permit = aws.read_permit().await;
                        let edge = aws.acting_in(recipient, &caller).await?;
                        let r = super::catalog::read_recipient(&edge, region, id).await?;
                        Ok::<_, AwsError>((recipient.clone(), r))
                    }
                }))
                .await?;
                p.recipients.extend(recipients);
            }
            Ok::<_, AwsError>(read)
        }
    };
    // In hub order, whatever order they finish in: the plan must not depend on timing.
    for read in try_join_all(hubs.into_iter().map(read_one)).await? {
        state.unmanaged_portfolios.extend(read.unmanaged);
        state.portfolios.extend(read.portfolios);
    }
    if opts.portfolio_unit_shares {
        state.catalog_organizations_access =
            Some(super::catalog::organizations_access(aws, region).await?);
        state.catalog_delegated_admins = Some(super::catalog::delegated_admins(aws).await?);
    }
    Ok(())
}

/// The units and accounts directly under one parent.
async fn read_parent(
    aws: &Aws,
    parent_id: String,
    parent_path: String,
) -> Result<(Vec<LiveUnit>, Vec<LiveAccount>), AwsError> {
    let _permit = aws.read_permit().await;
    let org = aws.organizations();
    let mut units = Vec::new();
    let mut pages = org
        .list_organizational_units_for_parent()
        .parent_id(&parent_id)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page =
            page.map_err(|e| AwsError::call("Organizations.ListOrganizationalUnitsForParent", e))?;
        for ou in page.organizational_units.unwrap_or_default() {
            units.push(LiveUnit {
                id: ou.id.unwrap_or_default(),
                path: format!("{parent_path}/{}", ou.name.unwrap_or_default()),
                parent_id: parent_id.clone(),
            });
        }
    }
    units.sort_by(|a, b| a.path.cmp(&b.path));
    let mut accounts = Vec::new();
    let mut pages = org
        .list_accounts_for_parent()
        .parent_id(&parent_id)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AwsError::call("Organizations.ListAccountsForParent", e))?;
        for a in page.accounts.unwrap_or_default() {
            let state = account_state(&a)?;
            // An account created minutes ago (by an apply cut off since, say) may still refuse
            // AssumeRole: the edge retries it like one this run created.
            let recent = a.joined_method == Some(AccountJoinedMethod::Created)
                && a.joined_timestamp.is_some_and(|t| {
                    std::time::SystemTime::try_from(t).is_ok_and(|t| {
                        t.elapsed()
                            .is_ok_and(|age| age < crate::aws::DEFAULT_REACH_BUDGET)
                    })
                });
            if recent {
                if let Some(id) = &a.id {
                    aws.mark_new_account(id);
                }
            }
            accounts.push(LiveAccount {
                id: a.id.unwrap_or_default(),
                name: a.name.unwrap_or_default(),
                email: a.email.unwrap_or_default(),
                state,
                parent_id: parent_id.clone(),
                tags: None,
            });
        }
    }
    Ok((units, accounts))
}

/// An account's state from `State`; from the retired `Status` only where AWS still sends it
/// without `State`. Neither, or a value estate does not know, fails the read: a plan made from
/// a guess could take a live account for a closed one and remove its instances.
fn account_state(a: &aws_sdk_organizations::types::Account) -> Result<AccountState, AwsError> {
    use aws_sdk_organizations::types::{AccountState as S, AccountStatus as Old};
    let id = a.id.as_deref().unwrap_or("(no id)");
    let not_understood = |what: String| AwsError::Call {
        transient: false,
        operation: "Organizations.ListAccountsForParent".into(),
        code: None,
        message: format!(
            "account {id}: {what}; estate cannot tell whether it is active, and plans nothing \
             from a guess (upgrade estate if AWS added a state)"
        ),
    };
    match (&a.state, &a.status) {
        (Some(S::Active), _) => Ok(AccountState::Active),
        (Some(S::PendingActivation), _) => Ok(AccountState::PendingActivation),
        (Some(S::Suspended), _) => Ok(AccountState::Suspended),
        (Some(S::PendingClosure), _) => Ok(AccountState::PendingClosure),
        (Some(S::Closed), _) => Ok(AccountState::Closed),
        (Some(other), _) => Err(not_understood(format!(
            "unknown State `{}`",
            other.as_str()
        ))),
        (None, Some(Old::Active)) => Ok(AccountState::Active),
        (None, Some(Old::Suspended)) => Ok(AccountState::Suspended),
        (None, Some(Old::PendingClosure)) => Ok(AccountState::PendingClosure),
        (None, Some(other)) => Err(not_understood(format!(
            "unknown Status `{}` and no State",
            other.as_str()
        ))),
        (None, None) => Err(not_understood("Organizations gave no State".into())),
    }
}

async fn read_stack_sets(
    aws: &Aws,
    opts: &ReadOptions,
) -> Result<BTreeMap<String, LiveStackSet>, AwsError> {
    use aws_sdk_cloudformation::types::StackSetStatus;
    let cfn = aws.cloudformation(&opts.home_region);
    let mut names = Vec::new();
    let mut pages = cfn
        .list_stack_sets()
        .status(StackSetStatus::Active)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AwsError::call("CloudFormation.ListStackSets", e))?;
        for s in page.summaries.unwrap_or_default() {
            // Some implementations ignore the status filter; deleted sets are history.
            if s.status
                .as_ref()
                .is_some_and(|st| *st != StackSetStatus::Active)
            {
                continue;
            }
            if let Some(name) = s.stack_set_name {
                names.push(name);
            }
        }
    }
    names.sort();
    names.dedup();
    let sets = try_join_all(names.iter().map(|n| read_stack_set(aws, &cfn, n, opts))).await?;
    Ok(sets.into_iter().map(|s| (s.name.clone(), s)).collect())
}

async fn read_stack_set(
    aws: &Aws,
    cfn: &aws_sdk_cloudformation::Client,
    name: &str,
    opts: &ReadOptions,
) -> Result<LiveStackSet, AwsError> {
    let described = {
        let _permit = aws.read_permit().await;
        cfn.describe_stack_set()
            .stack_set_name(name)
            .send()
            .await
            .map_err(|e| AwsError::call("CloudFormation.DescribeStackSet", e))?
    };
    let s = described.stack_set.ok_or_else(|| AwsError::Call {
        transient: false,
        operation: "CloudFormation.DescribeStackSet".into(),
        code: None,
        message: format!("no stack set `{name}` in the answer"),
    })?;
    let tags: BTreeMap<String, String> = s
        .tags
        .unwrap_or_default()
        .into_iter()
        .filter_map(|t| Some((t.key?, t.value.unwrap_or_default())))
        .collect();
    let mut set = LiveStackSet {
        name: name.to_string(),
        description: s.description,
        template_body: s.template_body.unwrap_or_default(),
        parameters: s
            .parameters
            .unwrap_or_default()
            .into_iter()
            .filter_map(|p| Some((p.parameter_key?, p.parameter_value.unwrap_or_default())))
            .collect(),
        capabilities: s
            .capabilities
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.as_str().to_string())
            .collect(),
        permission_model: s
            .permission_model
            .map_or("SELF_MANAGED".to_string(), |p| p.as_str().to_string()),
        administration_role_arn: s.administration_role_arn,
        execution_role_name: s.execution_role_name,
        auto_deployment: s.auto_deployment.map(|a| LiveAutoDeployment {
            enabled: a.enabled.unwrap_or(false),
            retain_stacks_on_account_removal: a.retain_stacks_on_account_removal.unwrap_or(false),
        }),
        tags,
        instances: None,
    };
    set.capabilities.sort();
    let owner = set.tags.get(TAG_MANAGED_BY);
    let adopted = owner.is_none() && opts.adopted.contains(name);
    let imported = opts
        .every_instance_of
        .iter()
        .any(|p| crate::manifest::model::glob_match(p, name));
    if owner == Some(&opts.estate) || adopted || imported {
        let describe_each = opts.overrides_digests.get(name).map(String::as_str)
            != Some(
                set.tags
                    .get(TAG_OVERRIDES)
                    .map_or(EMPTY_OVERRIDES, String::as_str),
            )
            && opts.overrides_digests.contains_key(name);
        set.instances = Some(read_instances(aws, cfn, name, describe_each).await?);
    }
    Ok(set)
}

/// What the last drift detection found for an instance, when it found it DRIFTED.
pub(crate) fn instance_drift(
    i: &aws_sdk_cloudformation::types::StackInstanceSummary,
) -> Option<super::InstanceDrift> {
    (i.drift_status == Some(aws_sdk_cloudformation::types::StackDriftStatus::Drifted)).then(|| {
        super::InstanceDrift {
            last_checked: i.last_drift_check_timestamp.map(|t| t.to_string()),
            resources: None,
            operation: None,
            stack_gone: false,
        }
    })
}

/// For DRIFTED instances whose last operation is the drift detection itself (nothing has
/// deployed to them since), what it found: one DescribeStackSetOperation per such operation
/// and one ListStackInstanceResourceDrifts per such instance; nothing when none drifted.
/// A stack found deleted this way is restored by the next apply.
async fn latest_drift(
    aws: &Aws,
    cfn: &aws_sdk_cloudformation::Client,
    name: &str,
    instances: &mut [LiveInstance],
) -> Result<(), AwsError> {
    let mut detections: BTreeMap<String, bool> = BTreeMap::new();
    for i in instances.iter() {
        if let (Some(_), Some(op)) = (&i.drift, &i.last_operation) {
            detections.entry(op.clone()).or_default();
        }
    }
    for (op, is_detection) in detections.iter_mut() {
        let _permit = aws.read_permit().await;
        let out = cfn
            .describe_stack_set_operation()
            .stack_set_name(name)
            .operation_id(op)
            .send()
            .await
            .map_err(|e| AwsError::call("CloudFormation.DescribeStackSetOperation", e))?;
        *is_detection = out.stack_set_operation.is_some_and(|o| {
            o.action == Some(aws_sdk_cloudformation::types::StackSetOperationAction::DetectDrift)
        });
    }
    for i in instances.iter_mut() {
        let Some(op) = i
            .last_operation
            .clone()
            .filter(|op| detections.get(op) == Some(&true))
        else {
            continue;
        };
        let every = resource_drifts(aws, cfn, name, &i.account, &i.region, &op, true).await?;
        if let Some(drift) = i.drift.as_mut() {
            drift.stack_gone = super::stack_gone(&every);
            drift.resources = Some(super::changed_only(every));
            drift.operation = Some(op);
        }
    }
    Ok(())
}

/// Digest of "no overrides": what a stack set without the tag is taken to have.
pub const EMPTY_OVERRIDES: &str = "none";

/// Every instance of a stack set: ListStackInstances, 100 a page.
pub(crate) async fn list_instances(
    aws: &Aws,
    cfn: &aws_sdk_cloudformation::Client,
    name: &str,
) -> Result<Vec<aws_sdk_cloudformation::types::StackInstanceSummary>, AwsError> {
    let mut summaries = Vec::new();
    let mut pages = cfn
        .list_stack_instances()
        .stack_set_name(name)
        .max_results(100)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let _permit = aws.read_permit().await;
        let page = page.map_err(|e| AwsError::call("CloudFormation.ListStackInstances", e))?;
        summaries.extend(page.summaries.unwrap_or_default());
    }
    Ok(summaries)
}

async fn read_instances(
    aws: &Aws,
    cfn: &aws_sdk_cloudformation::Client,
    name: &str,
    describe_each: bool,
) -> Result<Vec<LiveInstance>, AwsError> {
    let mut instances = Vec::new();
    for i in list_instances(aws, cfn, name).await? {
        let drift = instance_drift(&i);
        instances.push(LiveInstance {
            account: i.account.unwrap_or_default(),
            region: i.region.unwrap_or_default(),
            status: i.status.map(|s| s.as_str().to_string()).unwrap_or_default(),
            status_reason: i.status_reason,
            unit: i.organizational_unit_id,
            overrides: None,
            drift,
            last_operation: i.last_operation_id,
            stack_id: i.stack_id,
        });
    }
    instances.sort_by(|a, b| (&a.account, &a.region).cmp(&(&b.account, &b.region)));
    latest_drift(aws, cfn, name, &mut instances).await?;
    if describe_each {
        let described = try_join_all(instances.iter().map(|i| async {
            let _permit = aws.read_permit().await;
            cfn.describe_stack_instance()
                .stack_set_name(name)
                .stack_instance_account(&i.account)
                .stack_instance_region(&i.region)
                .send()
                .await
                .map_err(|e| AwsError::call("CloudFormation.DescribeStackInstance", e))
        }))
        .await?;
        for (instance, out) in instances.iter_mut().zip(described) {
            instance.overrides = Some(
                out.stack_instance
                    .and_then(|s| s.parameter_overrides)
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|p| Some((p.parameter_key?, p.parameter_value.unwrap_or_default())))
                    .collect(),
            );
        }
    }
    Ok(instances)
}

/// The resources of one instance's stack as a detection found them (ListStackInstanceResourceDrifts,
/// every page), sorted by logical id: only those changed or deleted, or with `all`, every one
/// (in sync ones included, so "every resource deleted" is not read from a filtered list).
pub(crate) async fn resource_drifts(
    aws: &Aws,
    cfn: &aws_sdk_cloudformation::Client,
    name: &str,
    account: &str,
    region: &str,
    op: &str,
    all: bool,
) -> Result<Vec<super::ResourceDrift>, AwsError> {
    let mut found = Vec::new();
    let mut token = None;
    let filter = if all {
        None
    } else {
        Some(vec![
            aws_sdk_cloudformation::types::StackResourceDriftStatus::Modified,
            aws_sdk_cloudformation::types::StackResourceDriftStatus::Deleted,
        ])
    };
    loop {
        let _permit = aws.read_permit().await;
        let out = cfn
            .list_stack_instance_resource_drifts()
            .stack_set_name(name)
            .stack_instance_account(account)
            .stack_instance_region(region)
            .operation_id(op)
            .set_stack_instance_resource_drift_statuses(filter.clone())
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| AwsError::call("CloudFormation.ListStackInstanceResourceDrifts", e))?;
        for r in out.summaries.unwrap_or_default() {
            found.push(super::ResourceDrift {
                logical_id: r.logical_resource_id.unwrap_or_default(),
                resource_type: r.resource_type.unwrap_or_default(),
                status: r
                    .stack_resource_drift_status
                    .as_ref()
                    .map_or("UNKNOWN", |s| s.as_str())
                    .to_string(),
                differences: r
                    .property_differences
                    .unwrap_or_default()
                    .into_iter()
                    .map(|p| {
                        format!(
                            "{} {}",
                            p.property_path.unwrap_or_default(),
                            p.difference_type
                                .as_ref()
                                .map_or("DIFFERENT", |t| t.as_str())
                        )
                    })
                    .collect(),
            });
        }
        token = out.next_token;
        if token.is_none() {
            break;
        }
    }
    found.sort_by(|a, b| a.logical_id.cmp(&b.logical_id));
    Ok(found)
}
