//! SDK-level tests (aws-smithy-mocks) of how the Service Catalog read and apply code meets AWS's
//! errors: a portfolio gone between list and describe, a tag option that already exists
//! account-wide, invalid parameters, and a share not yet visible to its recipient.

use crate::mocks::config;
use aws_sdk_servicecatalog::operation::accept_portfolio_share::{
    AcceptPortfolioShareError, AcceptPortfolioShareOutput,
};
use aws_sdk_servicecatalog::operation::associate_principal_with_portfolio::AssociatePrincipalWithPortfolioOutput;
use aws_sdk_servicecatalog::operation::associate_tag_option_with_resource::{
    AssociateTagOptionWithResourceInput, AssociateTagOptionWithResourceOutput,
};
use aws_sdk_servicecatalog::operation::create_constraint::{
    CreateConstraintError, CreateConstraintInput,
};
use aws_sdk_servicecatalog::operation::create_portfolio_share::CreatePortfolioShareOutput;
use aws_sdk_servicecatalog::operation::create_tag_option::CreateTagOptionError;
use aws_sdk_servicecatalog::operation::describe_portfolio::DescribePortfolioError;
use aws_sdk_servicecatalog::operation::list_portfolios::ListPortfoliosOutput;
use aws_sdk_servicecatalog::operation::list_tag_options::ListTagOptionsOutput;
use aws_sdk_servicecatalog::types::error::{
    DuplicateResourceException, InvalidParametersException, ResourceNotFoundException,
};
use aws_sdk_servicecatalog::types::{PortfolioDetail, TagOptionDetail};
use aws_smithy_mocks::{Rule, RuleMode, mock};
use aws_smithy_types::error::ErrorMetadata;
use estate::apply::{self, ApplyError, Polling};
use estate::aws::Aws;
use estate::live::LiveState;
use estate::live::catalog::{LivePortfolio, LiveProduct, LiveVersion, TAG_PORTFOLIO, TAG_PRODUCT};
use estate::plan::catalog::{DesiredPortfolio, DesiredProduct, DesiredVersion};
use estate::plan::{Action, Change, Plan, PlanSource};
use estate::template::Template;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Sc = aws_sdk_servicecatalog::Client;
type Sts = aws_sdk_sts::Client;

const REGION: &str = "us-east-1";
const MANAGEMENT: &str = "111111111111";
const HUB: &str = "222222222222";
const RECIPIENT: &str = "333333333333";
const PORTFOLIO: &str = "port-abcdefghijklm";
const PRODUCT: &str = "prod-abcdefghijklm";

/// The edge with these rules standing in for AWS (member accounts reached through a mocked
/// AssumeRole); a call no rule matches gets an error.
fn edge(rules: &[&Rule]) -> Aws {
    let assume = mock!(Sts::assume_role).then_output(|| {
        aws_sdk_sts::operation::assume_role::AssumeRoleOutput::builder()
            .credentials(
                aws_sdk_sts::types::Credentials::builder()
                    .access_key_id("AKIAMEMBER")
                    .secret_access_key("secret")
                    .session_token("token")
                    .expiration(aws_smithy_types::DateTime::from_secs(4_000_000_000))
                    .build()
                    .unwrap(),
            )
            .build()
    });
    let mut interceptor =
        aws_smithy_mocks::MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny);
    for r in rules.iter().copied().chain([&assume]) {
        interceptor = interceptor.with_rule(r);
    }
    Aws::from_config(config(), "OrganizationAccountAccessRole").with_interceptor(interceptor)
}

fn fast() -> Polling {
    Polling {
        initial: Duration::from_millis(1),
        max: Duration::from_millis(5),
        timeout: Duration::from_secs(5),
    }
}

/// An error as the SDK deserializes it from AWS: the code lives in the error metadata.
fn meta(code: &str, message: &str) -> ErrorMetadata {
    ErrorMetadata::builder().code(code).message(message).build()
}

fn not_found(message: &str) -> ResourceNotFoundException {
    ResourceNotFoundException::builder()
        .message(message)
        .meta(meta("ResourceNotFoundException", message))
        .build()
}

fn calls(aws: &Aws, operation: &str) -> u64 {
    aws.stats()
        .snapshot()
        .get(operation)
        .copied()
        .unwrap_or_default()
}

fn tags(portfolio: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("estate:managed-by".to_string(), "e".to_string()),
        (TAG_PORTFOLIO.to_string(), portfolio.to_string()),
    ])
}

/// Live: portfolio `p` in the hub, with product `notebook` (v1), nothing else.
fn live() -> LiveState {
    LiveState {
        management_account: MANAGEMENT.into(),
        root_id: "r-root".into(),
        portfolios: vec![LivePortfolio {
            id: PORTFOLIO.into(),
            account: HUB.into(),
            display_name: "Data Scientists".into(),
            provider_name: "Central IT".into(),
            tags: tags("p"),
            products: vec![LiveProduct {
                id: PRODUCT.into(),
                name: "Notebook".into(),
                owner: "Central IT".into(),
                tags: BTreeMap::from([
                    ("estate:managed-by".to_string(), "e".to_string()),
                    (TAG_PRODUCT.to_string(), "notebook".to_string()),
                ]),
                versions: vec![LiveVersion {
                    id: "pa-abcdefghijklm".into(),
                    name: "v1".into(),
                    description: None,
                    active: true,
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The manifest's portfolio `p` as live has it; each test adds what it changes.
fn desired() -> DesiredPortfolio {
    DesiredPortfolio {
        name: "p".into(),
        hub_name: "tools".into(),
        hub: Some(HUB.into()),
        display_name: "Data Scientists".into(),
        provider_name: "Central IT".into(),
        description: None,
        tags: tags("p"),
        products: vec![DesiredProduct {
            name: "notebook".into(),
            display_name: "Notebook".into(),
            owner: "Central IT".into(),
            description: None,
            distributor: None,
            support_email: None,
            tags: BTreeMap::new(),
            versions: vec![DesiredVersion {
                name: "v1".into(),
                description: None,
                template: Template::parse(b"Resources: {T: {Type: AWS::SNS::Topic}}").unwrap(),
            }],
            launch_role_name: None,
        }],
        tag_options: BTreeSet::new(),
        principals: BTreeSet::new(),
        share_accounts: Vec::new(),
        share_units: Vec::new(),
        recipient_principals: Vec::new(),
    }
}

/// The plan `plan::catalog::diff` makes for `d` against `live`, with (address, action) checked.
fn plan(d: &DesiredPortfolio, live: &LiveState, expected: &[(&str, Action)]) -> Plan {
    let (changes, findings) =
        estate::plan::catalog::diff(std::slice::from_ref(d), live, "e", false);
    assert!(findings.is_empty(), "{findings:?}");
    let got: Vec<(&str, Action)> = changes
        .iter()
        .map(|c: &Change| (c.address.as_str(), c.action))
        .collect();
    assert_eq!(got, expected);
    Plan {
        format_version: estate::plan::FORMAT_VERSION,
        estate: "e".into(),
        source: PlanSource {
            commit: None,
            path: ".".into(),
            dirty: false,
        },
        environments: Vec::new(),
        fingerprint: "fingerprint-1".into(),
        summary: Plan::summarize(&changes),
        changes,
        findings: Vec::new(),
        stats: None,
    }
}

async fn apply_catalog(
    aws: &Aws,
    plan: &Plan,
    d: &DesiredPortfolio,
    live: &LiveState,
    polling: Polling,
) -> Result<Vec<String>, ApplyError> {
    tokio::time::timeout(
        Duration::from_secs(30),
        apply::catalog::portfolios(
            aws,
            plan,
            std::slice::from_ref(d),
            live,
            REGION,
            polling,
            &apply::Silent,
        ),
    )
    .await
    .expect("apply ends within its bounds")
}

// ------------------------------------------------------------------ read

#[tokio::test]
async fn a_portfolio_deleted_between_list_and_describe_is_skipped() {
    let list = mock!(Sc::list_portfolios).then_output(|| {
        ListPortfoliosOutput::builder()
            .portfolio_details(PortfolioDetail::builder().id(PORTFOLIO).build())
            .build()
    });
    let message = format!("Portfolio {PORTFOLIO} not found.");
    let describe = mock!(Sc::describe_portfolio)
        .then_error(move || DescribePortfolioError::ResourceNotFoundException(not_found(&message)));
    let aws = edge(&[&list, &describe]);

    // What a fresh list would show: the portfolio is gone, so it is not live state.
    let hub = estate::live::catalog::read_hub(&aws, HUB, REGION, "e")
        .await
        .unwrap();
    assert!(hub.portfolios.is_empty());
    assert!(hub.unmanaged.is_empty());
}

#[tokio::test]
async fn other_describe_errors_fail_the_read_naming_the_call() {
    let list = mock!(Sc::list_portfolios).then_output(|| {
        ListPortfoliosOutput::builder()
            .portfolio_details(PortfolioDetail::builder().id(PORTFOLIO).build())
            .build()
    });
    let describe = mock!(Sc::describe_portfolio)
        .then_error(|| DescribePortfolioError::generic(meta("AccessDeniedException", "denied")));
    let aws = edge(&[&list, &describe]);
    let err = estate::live::catalog::read_hub(&aws, HUB, REGION, "e")
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "ServiceCatalog.DescribePortfolio: AccessDeniedException: denied"
    );
}

// ------------------------------------------------------------------ tag options

fn tag_option(id: &str, key: &str, value: &str) -> TagOptionDetail {
    TagOptionDetail::builder()
        .id(id)
        .key(key)
        .value(value)
        .active(true)
        .build()
}

fn duplicate_tag_option() -> CreateTagOptionError {
    let message = "TagOption cost-center=8457 already exists.";
    CreateTagOptionError::DuplicateResourceException(
        DuplicateResourceException::builder()
            .message(message)
            .meta(meta("DuplicateResourceException", message))
            .build(),
    )
}

type Associations = Arc<Mutex<Vec<AssociateTagOptionWithResourceInput>>>;

fn associate_tag_option(seen: &Associations) -> Rule {
    let seen = seen.clone();
    mock!(Sc::associate_tag_option_with_resource).then_compute_output(move |req| {
        seen.lock().unwrap().push(req.clone());
        AssociateTagOptionWithResourceOutput::builder().build()
    })
}

fn with_cost_center() -> (DesiredPortfolio, Plan) {
    let mut d = desired();
    d.tag_options
        .insert(("cost-center".to_string(), "8457".to_string()));
    let plan = plan(
        &d,
        &live(),
        &[("tagOption:p/cost-center=8457", Action::Create)],
    );
    (d, plan)
}

#[tokio::test]
async fn a_tag_option_on_a_later_page_is_reused_not_created() {
    let (d, plan) = with_cost_center();
    // The account's tag option is on the second page (AWS pages ListTagOptions; a filter
    // does not promise the match on the first page).
    let list = mock!(Sc::list_tag_options).then_compute_output(|req| match req.page_token() {
        None => ListTagOptionsOutput::builder()
            .tag_option_details(tag_option("tag-other00000000", "cost-center", "6534"))
            .page_token("page-2")
            .build(),
        Some(_) => ListTagOptionsOutput::builder()
            .tag_option_details(tag_option("tag-existing00000", "cost-center", "8457"))
            .build(),
    });
    let create = mock!(Sc::create_tag_option).then_error(duplicate_tag_option);
    let seen = Associations::default();
    let aws = edge(&[&list, &create, &associate_tag_option(&seen)]);

    let done = apply_catalog(&aws, &plan, &d, &live(), fast())
        .await
        .unwrap();

    assert_eq!(done, ["tagOption:p/cost-center=8457"]);
    assert_eq!(create.num_calls(), 0);
    assert_eq!(list.num_calls(), 2);
    let seen = seen.lock().unwrap();
    let [assoc] = seen.as_slice() else {
        panic!("{seen:?}");
    };
    assert_eq!(assoc.tag_option_id(), Some("tag-existing00000"));
    assert_eq!(assoc.resource_id(), Some(PORTFOLIO));
}

#[tokio::test]
async fn a_tag_option_created_meanwhile_is_found_after_duplicate_resource() {
    let (d, plan) = with_cost_center();
    // Not there when listed; someone else creates it before estate does.
    let list = mock!(Sc::list_tag_options)
        .sequence()
        .output(|| ListTagOptionsOutput::builder().build())
        .output(|| {
            ListTagOptionsOutput::builder()
                .tag_option_details(tag_option("tag-theirs0000000", "cost-center", "8457"))
                .build()
        })
        .build();
    let create = mock!(Sc::create_tag_option).then_error(duplicate_tag_option);
    let seen = Associations::default();
    let aws = edge(&[&list, &create, &associate_tag_option(&seen)]);

    let done = apply_catalog(&aws, &plan, &d, &live(), fast())
        .await
        .unwrap();

    assert_eq!(done, ["tagOption:p/cost-center=8457"]);
    assert_eq!(create.num_calls(), 1);
    assert_eq!(list.num_calls(), 2);
    assert_eq!(
        seen.lock().unwrap()[0].tag_option_id(),
        Some("tag-theirs0000000")
    );
}

#[tokio::test]
async fn a_duplicate_tag_option_that_cannot_be_found_fails_with_aws_message() {
    let (d, plan) = with_cost_center();
    let list = mock!(Sc::list_tag_options).then_output(|| ListTagOptionsOutput::builder().build());
    let create = mock!(Sc::create_tag_option).then_error(duplicate_tag_option);
    let seen = Associations::default();
    let aws = edge(&[&list, &create, &associate_tag_option(&seen)]);

    let err = apply_catalog(&aws, &plan, &d, &live(), fast())
        .await
        .unwrap_err();

    assert_eq!(
        err.to_string(),
        "ServiceCatalog.CreateTagOption: DuplicateResourceException: TagOption cost-center=8457 already exists."
    );
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_plan_of_deletes_only_finds_the_portfolio_in_live_state() {
    // A principal left the manifest: the one change names the portfolio only in `before`.
    let mut live = live();
    let admin = format!("arn:aws:iam::{HUB}:role/PlatformAdmin");
    live.portfolios[0].principals = vec![admin.clone()];
    let d = desired();
    let address = format!("principal:p/{admin}");
    let plan = plan(&d, &live, &[(&address, Action::Delete)]);
    let disassociate = mock!(Sc::disassociate_principal_from_portfolio)
        .match_requests(move |r| {
            r.portfolio_id() == Some(PORTFOLIO) && r.principal_arn() == Some(admin.as_str())
        })
        .then_output(|| {
            aws_sdk_servicecatalog::operation::disassociate_principal_from_portfolio::DisassociatePrincipalFromPortfolioOutput::builder().build()
        });
    let aws = edge(&[&disassociate]);

    let done = apply_catalog(&aws, &plan, &d, &live, fast()).await.unwrap();

    assert_eq!(done, [address]);
    assert_eq!(disassociate.num_calls(), 1);
}

// ------------------------------------------------------------------ invalid parameters

#[tokio::test]
async fn invalid_parameters_are_reported_with_aws_message() {
    let mut d = desired();
    d.products[0].launch_role_name = Some("SCLaunchRole".into());
    let plan = plan(
        &d,
        &live(),
        &[("constraint:p/notebook/launch", Action::Create)],
    );
    let message = "Invalid parameter: LocalRoleName SCLaunchRole does not exist in 222222222222";
    let requests: Arc<Mutex<Vec<CreateConstraintInput>>> = Arc::default();
    let seen = requests.clone();
    let create = mock!(Sc::create_constraint).then_compute_response(move |req| {
        seen.lock().unwrap().push(req.clone());
        aws_smithy_mocks::MockResponse::Error(CreateConstraintError::InvalidParametersException(
            InvalidParametersException::builder()
                .message(message)
                .meta(meta("InvalidParametersException", message))
                .build(),
        ))
    });
    let aws = edge(&[&create]);

    let err = apply_catalog(&aws, &plan, &d, &live(), fast())
        .await
        .unwrap_err();

    assert_eq!(
        err.to_string(),
        format!("ServiceCatalog.CreateConstraint: InvalidParametersException: {message}")
    );
    // The constraint of an existing product names that product, not an empty id.
    let requests = requests.lock().unwrap();
    assert_eq!(requests[0].product_id(), Some(PRODUCT));
    assert_eq!(requests[0].portfolio_id(), Some(PORTFOLIO));
    assert_eq!(
        requests[0].parameters(),
        Some(r#"{"LocalRoleName":"SCLaunchRole"}"#)
    );
}

// ------------------------------------------------------------------ shares

fn shared_with_recipient() -> (DesiredPortfolio, Plan) {
    let mut d = desired();
    d.share_accounts = vec![("data-science".into(), Some(RECIPIENT.into()))];
    d.recipient_principals = vec!["role/DataScientist".into()];
    let plan = plan(
        &d,
        &live(),
        &[
            ("share:p/account/data-science", Action::Create),
            (
                "principal:p@data-science/role/DataScientist",
                Action::Create,
            ),
        ],
    );
    (d, plan)
}

fn share_rules() -> (Rule, Rule) {
    (
        mock!(Sc::create_portfolio_share)
            .match_requests(|r| {
                r.portfolio_id() == Some(PORTFOLIO) && r.account_id() == Some(RECIPIENT)
            })
            .then_output(|| CreatePortfolioShareOutput::builder().build()),
        mock!(Sc::associate_principal_with_portfolio)
            .match_requests(|r| {
                r.principal_arn() == Some("arn:aws:iam::333333333333:role/DataScientist")
            })
            .then_output(|| AssociatePrincipalWithPortfolioOutput::builder().build()),
    )
}

fn not_shared_yet() -> AcceptPortfolioShareError {
    AcceptPortfolioShareError::ResourceNotFoundException(not_found(&format!(
        "Portfolio {PORTFOLIO} is not shared with account {RECIPIENT}."
    )))
}

#[tokio::test]
async fn an_accept_before_the_share_propagated_is_retried_until_it_succeeds() {
    let (d, plan) = shared_with_recipient();
    let (share, principal) = share_rules();
    // AWS shares propagate: the recipient may not see a share made a moment ago.
    let accept = mock!(Sc::accept_portfolio_share)
        .match_requests(|r| r.portfolio_id() == Some(PORTFOLIO))
        .sequence()
        .error(not_shared_yet)
        .times(3)
        .output(|| AcceptPortfolioShareOutput::builder().build())
        .build();
    let aws = edge(&[&share, &accept, &principal]);

    let done = apply_catalog(&aws, &plan, &d, &live(), fast())
        .await
        .unwrap();

    assert_eq!(accept.num_calls(), 4);
    assert_eq!(
        done,
        [
            "share:p/account/data-science",
            "principal:p@data-science/role/DataScientist"
        ]
    );
    assert_eq!(principal.num_calls(), 1);
    assert_eq!(
        calls(&aws, "STS.AssumeRole"),
        2,
        "the hub and the recipient"
    );
}

#[tokio::test]
async fn an_accept_that_never_finds_the_share_gives_up_at_the_bound() {
    let (d, plan) = shared_with_recipient();
    let (share, principal) = share_rules();
    let accept = mock!(Sc::accept_portfolio_share).then_error(not_shared_yet);
    let aws = edge(&[&share, &accept, &principal]);
    let polling = Polling {
        timeout: Duration::from_millis(100),
        ..fast()
    };

    let err = apply_catalog(&aws, &plan, &d, &live(), polling)
        .await
        .unwrap_err();

    assert!(matches!(err, ApplyError::Timeout { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(RECIPIENT), "{message}");
    assert!(
        message.contains("ServiceCatalog.AcceptPortfolioShare: ResourceNotFoundException"),
        "{message}"
    );
    // Backed off (5 ms at most between tries), not a busy loop; nothing after it ran.
    let tries = accept.num_calls();
    assert!((2..=100).contains(&tries), "{tries} tries");
    assert_eq!(principal.num_calls(), 0);
}

#[tokio::test]
async fn an_accept_refused_for_another_reason_is_not_retried() {
    let (d, plan) = shared_with_recipient();
    let (share, principal) = share_rules();
    let message = "PortfolioShareType AWS_ORGANIZATIONS is not valid for an account share.";
    let accept = mock!(Sc::accept_portfolio_share).then_error(move || {
        AcceptPortfolioShareError::InvalidParametersException(
            InvalidParametersException::builder()
                .message(message)
                .meta(meta("InvalidParametersException", message))
                .build(),
        )
    });
    let aws = edge(&[&share, &accept, &principal]);

    let err = apply_catalog(&aws, &plan, &d, &live(), fast())
        .await
        .unwrap_err();

    assert_eq!(
        err.to_string(),
        format!("ServiceCatalog.AcceptPortfolioShare: InvalidParametersException: {message}")
    );
    assert_eq!(accept.num_calls(), 1);
}
