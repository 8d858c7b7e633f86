//! The AWS edge's member access (aws-smithy-mocks): AssumeRole into accounts this run created
//! is retried while AWS readies them, credentials are renewed before they expire, and role
//! sessions name the run.

use crate::support::mocks::{edge, member_credentials, meta};
use aws_smithy_mocks::{Rule, mock};
use estate::aws::{Aws, ReachRetry};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

type Sts = aws_sdk_sts::Client;
type Orgs = aws_sdk_organizations::Client;

fn credentials(expires_in: Duration) -> aws_sdk_sts::types::Credentials {
    let at = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + expires_in;
    member_credentials(at.as_secs() as i64)
}

fn granted(expires_in: Duration) -> aws_sdk_sts::operation::assume_role::AssumeRoleOutput {
    aws_sdk_sts::operation::assume_role::AssumeRoleOutput::builder()
        .credentials(credentials(expires_in))
        .build()
}

fn denied() -> aws_sdk_sts::operation::assume_role::AssumeRoleError {
    let message = "User is not authorized to perform: sts:AssumeRole";
    aws_sdk_sts::operation::assume_role::AssumeRoleError::generic(meta("AccessDenied", message))
}

fn fast(aws: Aws) -> Aws {
    aws.with_reach_retry(ReachRetry {
        initial: Duration::from_millis(1),
        max: Duration::from_millis(5),
        budget: Duration::from_secs(5),
    })
}

fn list_roots() -> Rule {
    mock!(Orgs::list_roots).then_output(|| {
        aws_sdk_organizations::operation::list_roots::ListRootsOutput::builder().build()
    })
}

#[tokio::test]
async fn a_new_account_is_reached_once_aws_lets_its_role_in() {
    let assume = mock!(Sts::assume_role)
        .sequence()
        .error(denied)
        .times(2)
        .output(|| granted(Duration::from_secs(3600)))
        .build();
    let aws = fast(edge(&[&assume]));
    aws.mark_new_account("222222222222");
    aws.member("222222222222").await.unwrap();
    assert_eq!(assume.num_calls(), 3);
}

#[tokio::test]
async fn an_account_this_run_did_not_create_fails_at_the_first_refusal() {
    let assume = mock!(Sts::assume_role).then_error(denied);
    let aws = fast(edge(&[&assume]));
    let Err(err) = aws.member("222222222222").await else {
        panic!("reached an account that refused AssumeRole");
    };
    let err = err.to_string();
    assert!(err.contains("AccessDenied"), "{err}");
    assert!(
        err.contains("arn:aws:iam::222222222222:role/OrganizationAccountAccessRole"),
        "{err}"
    );
    assert_eq!(assume.num_calls(), 1);
}

#[tokio::test]
async fn member_credentials_are_renewed_before_they_expire_and_sessions_name_the_run() {
    let pid = std::process::id().to_string();
    // Expiring within seconds: every signed request must get fresh credentials.
    let short = mock!(Sts::assume_role)
        .match_requests(move |r| {
            r.role_session_name()
                .is_some_and(|s| s.starts_with("estate-") && s.ends_with(&format!("-{pid}")))
        })
        .then_output(|| granted(Duration::from_secs(5)));
    let roots = list_roots();
    let aws = edge(&[&short, &roots]);
    let member = aws.member("222222222222").await.unwrap();
    member.organizations().list_roots().send().await.unwrap();
    member.organizations().list_roots().send().await.unwrap();
    assert!(
        short.num_calls() >= 3,
        "{} AssumeRole calls",
        short.num_calls()
    );

    // Good for an hour: assumed once, whatever the number of requests.
    let long = mock!(Sts::assume_role).then_output(|| granted(Duration::from_secs(3600)));
    let aws = edge(&[&long, &roots]);
    let member = aws.member("333333333333").await.unwrap();
    for _ in 0..3 {
        member.organizations().list_roots().send().await.unwrap();
    }
    assert_eq!(long.num_calls(), 1);
}
