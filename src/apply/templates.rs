//! Where CloudFormation reads a template from: inline up to 51,200 bytes, otherwise an S3
//! object in the home region under a content-addressed key, in a bucket estate creates with
//! default encryption and public access blocked when it is missing. Its own (default-named)
//! bucket has whichever of the two is missing restored on every use.

use super::options::Options;
use crate::aws::{Aws, AwsError};
use crate::plan::desired::DesiredStackSet;
use crate::template::INLINE_TEMPLATE_LIMIT;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq)]
pub enum Location {
    Body(String),
    Url(String),
}

/// The default bucket: one per management account and home region.
pub fn default_bucket(management_account: &str, region: &str) -> String {
    format!("estate-templates-{management_account}-{region}")
}

/// Content-addressed key: the same template is uploaded once, whichever stack set uses it.
pub fn key(text: &str) -> String {
    format!(
        "templates/{}.template",
        hex::encode(Sha256::digest(text.as_bytes()))
    )
}

pub async fn location(
    aws: &Aws,
    d: &DesiredStackSet,
    opts: &Options,
) -> Result<Location, AwsError> {
    let text = &d.template.text;
    if text.len() <= INLINE_TEMPLATE_LIMIT {
        return Ok(Location::Body(text.clone()));
    }
    let region = &opts.home_region;
    let owner = aws.caller_account().await?;
    let bucket = match &opts.template_bucket {
        Some(b) => b.clone(),
        None => default_bucket(&owner, region),
    };
    upload(aws, &owner, &bucket, region, text).await
}

/// Uploads `text` to `bucket`, which `owner` (the account `aws` acts in) must own: every call
/// carries the expected owner, so a bucket of the same name in another account (taken by
/// chance or on purpose) is refused instead of receiving templates.
pub async fn upload(
    aws: &Aws,
    owner: &str,
    bucket: &str,
    region: &str,
    text: &str,
) -> Result<Location, AwsError> {
    use aws_sdk_s3::types::{
        BucketLocationConstraint, CreateBucketConfiguration, ServerSideEncryption,
    };
    let s3 = aws.s3(region);
    let head = s3
        .head_bucket()
        .bucket(bucket)
        .expected_bucket_owner(owner)
        .send()
        .await;
    // CloudFormation reads templates only from a bucket in the stack set's region.
    let elsewhere = |found: Option<&str>| match found {
        Some(found) if found != region => Err(AwsError::BucketRegion {
            bucket: bucket.to_string(),
            found: found.to_string(),
            region: region.to_string(),
        }),
        _ => Ok(()),
    };
    let missing = match head {
        Ok(out) => {
            elsewhere(out.bucket_region())?;
            false
        }
        // S3 redirects a request for a bucket of another region, naming its region.
        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 301) => {
            let found = e
                .raw_response()
                .and_then(|r| r.headers().get("x-amz-bucket-region"))
                .unwrap_or("another region")
                .to_string();
            elsewhere(Some(&found))?;
            return Err(AwsError::call("S3.HeadBucket", e));
        }
        Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => true,
        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 403) => {
            return Err(AwsError::BucketNotOwned {
                bucket: bucket.to_string(),
                account: owner.to_string(),
            });
        }
        Err(e) => return Err(AwsError::call("S3.HeadBucket", e)),
    };
    if missing {
        let mut create = s3.create_bucket().bucket(bucket);
        // us-east-1 is the one region that takes no location constraint.
        if region != "us-east-1" {
            create = create.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(region))
                    .build(),
            );
        }
        create
            .send()
            .await
            .map_err(|e| AwsError::call("S3.CreateBucket", e))?;
        protect(&s3, bucket, owner, Protection::default()).await?;
    } else if bucket == default_bucket(owner, region) {
        // estate's own bucket: a run cut off between creating it and protecting it left it
        // open or unencrypted, and this one restores what is missing.
        protect(&s3, bucket, owner, protection(&s3, bucket, owner).await?).await?;
    }
    let key = key(text);
    s3.put_object()
        .bucket(bucket)
        .expected_bucket_owner(owner)
        .key(&key)
        .body(text.as_bytes().to_vec().into())
        .server_side_encryption(ServerSideEncryption::Aes256)
        .send()
        .await
        .map_err(|e| AwsError::call("S3.PutObject", e))?;
    // China's regions answer under amazonaws.com.cn; every other partition under amazonaws.com.
    let domain = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    Ok(Location::Url(format!(
        "https://{bucket}.s3.{region}.{domain}/{key}"
    )))
}

/// What a bucket already has of estate's protection.
#[derive(Debug, Default, Clone, Copy)]
struct Protection {
    public_access_blocked: bool,
    encrypted: bool,
}

/// The bucket's public-access block (all four settings on) and default encryption, as S3
/// reports them (GetPublicAccessBlock, GetBucketEncryption).
async fn protection(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    owner: &str,
) -> Result<Protection, AwsError> {
    let block = s3
        .get_public_access_block()
        .bucket(bucket)
        .expected_bucket_owner(owner)
        .send()
        .await;
    let public_access_blocked = match block {
        Ok(out) => out.public_access_block_configuration.is_some_and(|c| {
            [
                c.block_public_acls,
                c.ignore_public_acls,
                c.block_public_policy,
                c.restrict_public_buckets,
            ]
            .iter()
            .all(|v| *v == Some(true))
        }),
        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => false,
        Err(e) => return Err(AwsError::call("S3.GetPublicAccessBlock", e)),
    };
    let encryption = s3
        .get_bucket_encryption()
        .bucket(bucket)
        .expected_bucket_owner(owner)
        .send()
        .await;
    let encrypted = match encryption {
        Ok(out) => out
            .server_side_encryption_configuration
            .is_some_and(|c| !c.rules.is_empty()),
        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => false,
        Err(e) => return Err(AwsError::call("S3.GetBucketEncryption", e)),
    };
    Ok(Protection {
        public_access_blocked,
        encrypted,
    })
}

/// Blocks public access and sets default encryption, where `has` says they are missing.
async fn protect(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    owner: &str,
    has: Protection,
) -> Result<(), AwsError> {
    use aws_sdk_s3::types::{
        PublicAccessBlockConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault,
        ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
    };
    if !has.public_access_blocked {
        s3.put_public_access_block()
            .bucket(bucket)
            .expected_bucket_owner(owner)
            .public_access_block_configuration(
                PublicAccessBlockConfiguration::builder()
                    .block_public_acls(true)
                    .ignore_public_acls(true)
                    .block_public_policy(true)
                    .restrict_public_buckets(true)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| AwsError::call("S3.PutPublicAccessBlock", e))?;
    }
    if !has.encrypted {
        s3.put_bucket_encryption()
            .bucket(bucket)
            .expected_bucket_owner(owner)
            .server_side_encryption_configuration(
                ServerSideEncryptionConfiguration::builder()
                    .rules(
                        ServerSideEncryptionRule::builder()
                            .apply_server_side_encryption_by_default(
                                ServerSideEncryptionByDefault::builder()
                                    .sse_algorithm(ServerSideEncryption::Aes256)
                                    .build()
                                    .expect("algorithm is set"),
                            )
                            .build(),
                    )
                    .build()
                    .expect("rules are set"),
            )
            .send()
            .await
            .map_err(|e| AwsError::call("S3.PutBucketEncryption", e))?;
    }
    Ok(())
}
