//! SDK-level tests (aws-smithy-mocks) of how the Service Catalog read and apply code meets AWS's
//! errors: a portfolio gone between list and describe, a tag option that already exists
//! account-wide, invalid parameters, a share not yet visible to its recipient, unit shares
//! still IN_PROGRESS or completed with errors; and the ownership rules for products.

use crate::support::builders::plan_of;
use crate::support::mocks::{calls, edge_with_members as edge, fast, meta};
use crate::support::run::{address_actions, addresses};
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
use aws_sdk_servicecatalog::operation::delete_constraint::DeleteConstraintOutput;
use aws_sdk_servicecatalog::operation::delete_portfolio_share::DeletePortfolioShareOutput;
use aws_sdk_servicecatalog::operation::delete_product::DeleteProductOutput;
use aws_sdk_servicecatalog::operation::describe_portfolio::DescribePortfolioError;
use aws_sdk_servicecatalog::operation::describe_portfolio_share_status::DescribePortfolioShareStatusOutput;
use aws_sdk_servicecatalog::operation::disassociate_principal_from_portfolio::DisassociatePrincipalFromPortfolioOutput;
use aws_sdk_servicecatalog::operation::disassociate_product_from_portfolio::DisassociateProductFromPortfolioOutput;
use aws_sdk_servicecatalog::operation::list_portfolios::ListPortfoliosOutput;
use aws_sdk_servicecatalog::operation::list_tag_options::ListTagOptionsOutput;
use aws_sdk_servicecatalog::operation::update_portfolio_share::UpdatePortfolioShareOutput;
use aws_sdk_servicecatalog::types::error::{
    DuplicateResourceException, InvalidParametersException, ResourceNotFoundException,
};
use aws_sdk_servicecatalog::types::{
    PortfolioDetail, ShareDetails, ShareError, ShareStatus, TagOptionDetail,
};
use aws_smithy_mocks::{Rule, mock};
use estate::apply::{self, ApplyError, Polling};
use estate::aws::Aws;
use estate::live::LiveState;
use estate::live::{LivePortfolio, LiveProduct, LiveVersion};
use estate::plan::catalog::{DesiredPortfolio, DesiredProduct, DesiredVersion};
use estate::plan::{Action, Change, Plan};
use estate::tags::{TAG_PORTFOLIO, TAG_PRODUCT};
use estate::template::Template;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Sc = aws_sdk_servicecatalog::Client;

const REGION: &str = "us-east-1";
const MANAGEMENT: &str = "111111111111";
const HUB: &str = "222222222222";
const RECIPIENT: &str = "333333333333";
const PORTFOLIO: &str = "port-abcdefghijklm";
const PRODUCT: &str = "prod-abcdefghijklm";

fn not_found(message: &str) -> ResourceNotFoundException {
    ResourceNotFoundException::builder()
        .message(message)
        .meta(meta("ResourceNotFoundException", message))
        .build()
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
        partition: "aws".into(),
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
            // As resolve gives them, and as live has them.
            tags: BTreeMap::from([
                ("estate:managed-by".to_string(), "e".to_string()),
                (TAG_PRODUCT.to_string(), "notebook".to_string()),
            ]),
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
        share_principals: false,
        share_tag_options: false,
        adopt: false,
    }
}

/// The plan `plan::catalog::diff` makes for `d` against `live`, with (address, action) checked.
fn plan(d: &DesiredPortfolio, live: &LiveState, expected: &[(&str, Action)]) -> Plan {
    let (changes, findings) =
        estate::plan::catalog::diff(std::slice::from_ref(d), live, "e", false);
    assert!(findings.is_empty(), "{findings:?}");
    assert_eq!(address_actions(&changes), owned(expected));
    plan_of(&[], changes)
}

/// `expected` as [`address_actions`] gives it.
fn owned(expected: &[(&str, Action)]) -> Vec<(String, Action)> {
    expected.iter().map(|(a, x)| (a.to_string(), *x)).collect()
}

/// The plan of [`plan`] for the unchanged portfolio, holding these changes instead.
fn with_changes(changes: Vec<Change>) -> Plan {
    Plan {
        conflicts: Vec::new(),
        summary: Plan::summarize(&changes),
        changes,
        ..plan(&desired(), &live(), &[])
    }
}

/// Addresses of the Done events, in order.
#[derive(Default)]
struct DoneEvents(std::sync::Mutex<Vec<String>>);

impl apply::Progress for DoneEvents {
    fn event(&self, e: apply::Event) {
        if let apply::Event::Done { address } = e {
            self.0.lock().unwrap().push(address);
        }
    }
}

async fn apply_catalog(
    aws: &Aws,
    plan: &Plan,
    d: &DesiredPortfolio,
    live: &LiveState,
    polling: Polling,
) -> Result<Vec<String>, ApplyError> {
    let progress = DoneEvents::default();
    let result = tokio::time::timeout(
        Duration::from_secs(30),
        apply::catalog::portfolios(
            aws,
            plan,
            std::slice::from_ref(d),
            live,
            REGION,
            polling,
            &progress,
        ),
    )
    .await
    .expect("apply ends within its bounds");
    // Every change is reported done as it is done: a stop part-way counts it.
    let result: Result<Vec<String>, ApplyError> =
        result.map(|done| done.iter().map(ToString::to_string).collect());
    if let Ok(done) = &result {
        assert_eq!(*progress.0.lock().unwrap(), *done);
    }
    result
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
    let hub = estate::live::catalog::read_hub(&aws, HUB, REGION, "e", &|_| false)
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
    let err = estate::live::catalog::read_hub(&aws, HUB, REGION, "e", &|_| false)
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

/// How AWS answers ListTagOptions while apply creates cost-center=8457 (whose CreateTagOption
/// always answers DuplicateResourceException), and what apply must do.
struct TagOptionCase {
    name: &'static str,
    list: fn() -> Rule,
    /// CreateTagOption and ListTagOptions calls made, where the case counts them.
    create_calls: Option<usize>,
    list_calls: Option<usize>,
    /// The tag option associated with the portfolio, or apply's error.
    outcome: Result<&'static str, &'static str>,
}

const TAG_OPTION_CASES: &[TagOptionCase] = &[
    // The account's tag option is on the second page (AWS pages ListTagOptions; a filter
    // does not promise the match on the first page).
    TagOptionCase {
        name: "a tag option on a later page is reused, not created",
        list: || {
            mock!(Sc::list_tag_options).then_compute_output(|req| match req.page_token() {
                None => ListTagOptionsOutput::builder()
                    .tag_option_details(tag_option("tag-other00000000", "cost-center", "6534"))
                    .page_token("page-2")
                    .build(),
                Some(_) => ListTagOptionsOutput::builder()
                    .tag_option_details(tag_option("tag-existing00000", "cost-center", "8457"))
                    .build(),
            })
        },
        create_calls: Some(0),
        list_calls: Some(2),
        outcome: Ok("tag-existing00000"),
    },
    // Not there when listed; someone else creates it before estate does.
    TagOptionCase {
        name: "a tag option created meanwhile is found after DuplicateResource",
        list: || {
            mock!(Sc::list_tag_options)
                .sequence()
                .output(|| ListTagOptionsOutput::builder().build())
                .output(|| {
                    ListTagOptionsOutput::builder()
                        .tag_option_details(tag_option("tag-theirs0000000", "cost-center", "8457"))
                        .build()
                })
                .build()
        },
        create_calls: Some(1),
        list_calls: Some(2),
        outcome: Ok("tag-theirs0000000"),
    },
    TagOptionCase {
        name: "a duplicate tag option that cannot be found fails with AWS's message",
        list: || {
            mock!(Sc::list_tag_options).then_output(|| ListTagOptionsOutput::builder().build())
        },
        create_calls: None,
        list_calls: None,
        outcome: Err(
            "ServiceCatalog.CreateTagOption: DuplicateResourceException: TagOption cost-center=8457 already exists.",
        ),
    },
];

#[tokio::test]
async fn tag_options_are_reused_found_after_duplicate_resource_or_fail_with_aws_message() {
    for case in TAG_OPTION_CASES {
        let name = case.name;
        let (d, plan) = with_cost_center();
        let list = (case.list)();
        let create = mock!(Sc::create_tag_option).then_error(duplicate_tag_option);
        let seen = Associations::default();
        let aws = edge(&[&list, &create, &associate_tag_option(&seen)]);

        let result = apply_catalog(&aws, &plan, &d, &live(), fast()).await;

        match case.outcome {
            Ok(tag_option) => {
                let done = result.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(done, ["tagOption:p/cost-center=8457"], "{name}");
                let seen = seen.lock().unwrap();
                let [assoc] = seen.as_slice() else {
                    panic!("{name}: {seen:?}");
                };
                assert_eq!(assoc.tag_option_id(), Some(tag_option), "{name}");
                assert_eq!(assoc.resource_id(), Some(PORTFOLIO), "{name}");
            }
            Err(message) => {
                let err = result.expect_err(name);
                assert_eq!(err.to_string(), message, "{name}");
                assert!(seen.lock().unwrap().is_empty(), "{name}");
            }
        }
        if let Some(calls) = case.create_calls {
            assert_eq!(create.num_calls(), calls, "{name}: CreateTagOption");
        }
        if let Some(calls) = case.list_calls {
            assert_eq!(list.num_calls(), calls, "{name}: ListTagOptions");
        }
    }
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

/// An idempotency token names the intent: the same constraint created from the same live
/// state carries the same token (a retry AWS answers with what it did), but after live moved
/// (it was deleted, say) a new one, which AWS cannot answer with the old constraint.
#[tokio::test]
async fn idempotency_tokens_differ_per_intent_and_repeat_within_one() {
    let mut d = desired();
    d.products[0].launch_role_name = Some("SCLaunchRole".into());
    let tokens: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = tokens.clone();
    let create = mock!(Sc::create_constraint).then_compute_output(move |req| {
        seen.lock()
            .unwrap()
            .push(req.idempotency_token().unwrap().to_string());
        aws_sdk_servicecatalog::operation::create_constraint::CreateConstraintOutput::builder()
            .build()
    });
    let aws = edge(&[&create]);
    let live_now = live();
    let mut later = live();
    later.root_id = "r-moved".into();
    for state in [&live_now, &live_now, &later] {
        let plan = plan(
            &d,
            state,
            &[("constraint:p/notebook/launch", Action::Create)],
        );
        apply_catalog(&aws, &plan, &d, state, fast()).await.unwrap();
    }
    let tokens = tokens.lock().unwrap();
    assert_eq!(tokens.len(), 3);
    assert_eq!(tokens[0], tokens[1], "one intent, one token");
    assert_ne!(tokens[0], tokens[2], "another intent, another token");
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

/// A refusal of AcceptPortfolioShare that is not about propagation.
const INVALID_SHARE_TYPE: &str =
    "PortfolioShareType AWS_ORGANIZATIONS is not valid for an account share.";

/// How the recipient's AcceptPortfolioShare answers, and what apply must make of it.
struct AcceptCase {
    name: &'static str,
    accept: fn() -> Rule,
    /// Polling's timeout, where the case shortens it.
    timeout: Option<Duration>,
    outcome: AcceptOutcome,
}

enum AcceptOutcome {
    /// Shared, accepted after this many tries, and the recipient's principal added.
    Accepted { tries: usize },
    /// Timed out, having backed off between tries; nothing after the accept ran.
    GaveUp,
    /// Failed at once with AWS's message.
    Refused { message: &'static str },
}

const ACCEPT_CASES: &[AcceptCase] = &[
    // AWS shares propagate: the recipient may not see a share made a moment ago.
    AcceptCase {
        name: "an accept before the share propagated is retried until it succeeds",
        accept: || {
            mock!(Sc::accept_portfolio_share)
                .match_requests(|r| r.portfolio_id() == Some(PORTFOLIO))
                .sequence()
                .error(not_shared_yet)
                .times(3)
                .output(|| AcceptPortfolioShareOutput::builder().build())
                .build()
        },
        timeout: None,
        outcome: AcceptOutcome::Accepted { tries: 4 },
    },
    AcceptCase {
        name: "an accept that never finds the share gives up at the bound",
        accept: || mock!(Sc::accept_portfolio_share).then_error(not_shared_yet),
        timeout: Some(Duration::from_millis(100)),
        outcome: AcceptOutcome::GaveUp,
    },
    AcceptCase {
        name: "an accept refused for another reason is not retried",
        accept: || {
            mock!(Sc::accept_portfolio_share).then_error(|| {
                AcceptPortfolioShareError::InvalidParametersException(
                    InvalidParametersException::builder()
                        .message(INVALID_SHARE_TYPE)
                        .meta(meta("InvalidParametersException", INVALID_SHARE_TYPE))
                        .build(),
                )
            })
        },
        timeout: None,
        outcome: AcceptOutcome::Refused {
            message: INVALID_SHARE_TYPE,
        },
    },
];

#[tokio::test]
async fn accepts_are_retried_while_the_share_propagates_up_to_the_bound_and_not_otherwise() {
    for case in ACCEPT_CASES {
        let name = case.name;
        let (d, plan) = shared_with_recipient();
        let (share, principal) = share_rules();
        let accept = (case.accept)();
        let aws = edge(&[&share, &accept, &principal]);
        let polling = match case.timeout {
            Some(timeout) => Polling { timeout, ..fast() },
            None => fast(),
        };

        let result = apply_catalog(&aws, &plan, &d, &live(), polling).await;

        match case.outcome {
            AcceptOutcome::Accepted { tries } => {
                let done = result.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(accept.num_calls(), tries, "{name}");
                assert_eq!(
                    done,
                    [
                        "share:p/account/data-science",
                        "principal:p@data-science/role/DataScientist"
                    ],
                    "{name}"
                );
                assert_eq!(principal.num_calls(), 1, "{name}");
                assert_eq!(
                    calls(&aws, "STS.AssumeRole"),
                    2,
                    "{name}: the hub and the recipient"
                );
            }
            AcceptOutcome::GaveUp => {
                let err = result.expect_err(name);
                assert!(matches!(err, ApplyError::Timeout { .. }), "{name}: {err:?}");
                let message = err.to_string();
                assert!(message.contains(RECIPIENT), "{name}: {message}");
                assert!(
                    message
                        .contains("ServiceCatalog.AcceptPortfolioShare: ResourceNotFoundException"),
                    "{name}: {message}"
                );
                // Backed off (5 ms at most between tries), not a busy loop; nothing after it
                // ran.
                let tries = accept.num_calls();
                assert!((2..=100).contains(&tries), "{name}: {tries} tries");
                assert_eq!(principal.num_calls(), 0, "{name}");
            }
            AcceptOutcome::Refused { message } => {
                assert_eq!(
                    result.expect_err(name).to_string(),
                    format!(
                        "ServiceCatalog.AcceptPortfolioShare: InvalidParametersException: {message}"
                    ),
                    "{name}"
                );
                assert_eq!(accept.num_calls(), 1, "{name}");
            }
        }
    }
}

// ------------------------------------------------------------------ unit shares

const UNIT: &str = "ou-abcd-12345678";

/// `p` shared with unit /ml/ds from the hub, a delegated administrator with access on.
fn shared_with_unit() -> (DesiredPortfolio, Plan, LiveState) {
    let mut d = desired();
    d.share_units = vec![("/ml/ds".into(), Some(UNIT.into()))];
    let mut live = live();
    live.catalog_organizations_access = Some(true);
    live.catalog_delegated_admins = Some(vec![HUB.into()]);
    let plan = plan(&d, &live, &[("share:p/unit/ml/ds", Action::Create)]);
    (d, plan, live)
}

fn unit_share() -> Rule {
    mock!(Sc::create_portfolio_share)
        .match_requests(|r| {
            r.organization_node().and_then(|n| n.value()) == Some(UNIT) && r.account_id().is_none()
        })
        .then_output(|| {
            CreatePortfolioShareOutput::builder()
                .portfolio_share_token("share-token-1")
                .build()
        })
}

fn share_status(status: ShareStatus) -> DescribePortfolioShareStatusOutput {
    DescribePortfolioShareStatusOutput::builder()
        .portfolio_share_token("share-token-1")
        .portfolio_id(PORTFOLIO)
        .organization_node_value(UNIT)
        .status(status)
        .build()
}

/// What a unit share's DescribePortfolioShareStatus goes through, and what apply must make
/// of it.
struct UnitShareCase {
    name: &'static str,
    status: fn() -> Rule,
    /// Polling's timeout, where the case shortens it.
    timeout: Option<Duration>,
    outcome: UnitShareOutcome,
}

enum UnitShareOutcome {
    /// Done, after this many status calls (and one share call).
    Done { status_calls: usize },
    /// Failed with this message.
    Failed(&'static str),
    /// Timed out: a share stuck IN_PROGRESS must not count as done.
    TimedOut,
}

const UNIT_SHARE_CASES: &[UnitShareCase] = &[
    // Organization-node shares run asynchronously: NOT_STARTED, IN_PROGRESS, then COMPLETED.
    UnitShareCase {
        name: "a unit share is done only once AWS reports it completed",
        status: || {
            mock!(Sc::describe_portfolio_share_status)
                .match_requests(|r| r.portfolio_share_token() == Some("share-token-1"))
                .sequence()
                .output(|| share_status(ShareStatus::NotStarted))
                .output(|| share_status(ShareStatus::InProgress))
                .times(2)
                .output(|| {
                    DescribePortfolioShareStatusOutput::builder()
                        .status(ShareStatus::Completed)
                        .share_details(ShareDetails::builder().successful_shares(RECIPIENT).build())
                        .build()
                })
                .build()
        },
        timeout: None,
        outcome: UnitShareOutcome::Done { status_calls: 4 },
    },
    UnitShareCase {
        name: "a unit share completed with errors fails naming the accounts and why",
        status: || {
            mock!(Sc::describe_portfolio_share_status)
                .sequence()
                .output(|| share_status(ShareStatus::InProgress))
                .output(|| {
                    DescribePortfolioShareStatusOutput::builder()
                        .status(ShareStatus::CompletedWithErrors)
                        .share_details(
                            ShareDetails::builder()
                                .successful_shares(RECIPIENT)
                                .share_errors(
                                    ShareError::builder()
                                        .accounts("444444444444")
                                        .message("Account is suspended.")
                                        .error("InvalidStateException")
                                        .build(),
                                )
                                .build(),
                        )
                        .build()
                })
                .build()
        },
        timeout: None,
        outcome: UnitShareOutcome::Failed(
            "share:p/unit/ml/ds (COMPLETED_WITH_ERRORS) failed: 444444444444: Account is suspended. (InvalidStateException)",
        ),
    },
    UnitShareCase {
        name: "a unit share that never completes times out",
        status: || {
            mock!(Sc::describe_portfolio_share_status)
                .then_output(|| share_status(ShareStatus::InProgress))
        },
        timeout: Some(Duration::from_millis(50)),
        outcome: UnitShareOutcome::TimedOut,
    },
];

#[tokio::test]
async fn unit_shares_are_done_when_completed_fail_with_errors_or_time_out() {
    for case in UNIT_SHARE_CASES {
        let name = case.name;
        let (d, plan, live) = shared_with_unit();
        let status = (case.status)();
        let share = unit_share();
        let aws = edge(&[&share, &status]);
        let polling = match case.timeout {
            Some(timeout) => Polling { timeout, ..fast() },
            None => fast(),
        };

        let result = apply_catalog(&aws, &plan, &d, &live, polling).await;

        match case.outcome {
            UnitShareOutcome::Done { status_calls } => {
                let done = result.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(done, ["share:p/unit/ml/ds"], "{name}");
                assert_eq!(share.num_calls(), 1, "{name}");
                assert_eq!(status.num_calls(), status_calls, "{name}");
            }
            UnitShareOutcome::Failed(message) => {
                assert_eq!(result.expect_err(name).to_string(), message, "{name}");
            }
            UnitShareOutcome::TimedOut => {
                let err = result.expect_err(name);
                assert!(
                    matches!(err, ApplyError::Timeout { .. }),
                    "{name}: {err}: a share stuck IN_PROGRESS must not count as done"
                );
            }
        }
    }
}

/// A unit share whose flags differ from the manifest's is updated in place: the plan says
/// which flags, apply sends only the changed one and waits for AWS to complete the update.
#[tokio::test]
async fn a_unit_share_whose_flags_differ_is_updated_in_place_and_waited_for() {
    let mut d = desired();
    d.share_units = vec![("/ml/ds".into(), Some(UNIT.into()))];
    d.share_principals = true;
    d.share_tag_options = true;
    let mut live = live();
    live.catalog_organizations_access = Some(true);
    live.catalog_delegated_admins = Some(vec![HUB.into()]);
    let lp = &mut live.portfolios[0];
    lp.shared_units = vec![UNIT.into()];
    lp.share_flags.insert(
        UNIT.into(),
        estate::live::LiveShareFlags {
            tag_options: true,
            principals: false,
        },
    );
    // Flags as live has them: nothing to do.
    let mut same = d.clone();
    same.share_principals = false;
    plan(&same, &live, &[]);
    let plan = plan(&d, &live, &[("share:p/unit/ml/ds", Action::Update)]);
    assert_eq!(
        plan.changes[0].reason,
        "the share with unit /ml/ds: sharePrincipals is off on the share, on in the manifest"
    );

    let update = mock!(Sc::update_portfolio_share)
        .match_requests(|r| {
            r.organization_node().and_then(|n| n.value()) == Some(UNIT)
                && r.share_principals() == Some(true)
                && r.share_tag_options().is_none()
        })
        .then_output(|| {
            UpdatePortfolioShareOutput::builder()
                .portfolio_share_token("share-token-1")
                .status(ShareStatus::InProgress)
                .build()
        });
    let status = mock!(Sc::describe_portfolio_share_status)
        .match_requests(|r| r.portfolio_share_token() == Some("share-token-1"))
        .sequence()
        .output(|| share_status(ShareStatus::InProgress))
        .output(|| share_status(ShareStatus::Completed))
        .build();
    let aws = edge(&[&update, &status]);
    let done = apply_catalog(&aws, &plan, &d, &live, fast()).await.unwrap();
    assert_eq!(done, ["share:p/unit/ml/ds"]);
    assert_eq!(update.num_calls(), 1);
    assert_eq!(status.num_calls(), 2);
}

#[test]
fn a_member_hub_sharing_with_units_is_registered_as_delegated_administrator_first() {
    let mut d = desired();
    d.share_units = vec![("/ml/ds".into(), Some(UNIT.into()))];
    let mut live = live();
    live.catalog_organizations_access = Some(false);
    live.catalog_delegated_admins = Some(Vec::new());
    plan(
        &d,
        &live,
        &[
            ("share:aws-organizations-access", Action::Create),
            (
                "share:aws-organizations-delegated-admin/tools",
                Action::Create,
            ),
            ("share:p/unit/ml/ds", Action::Create),
        ],
    );
    // Once registered, or when the hub is the management account, nothing is needed.
    live.catalog_organizations_access = Some(true);
    live.catalog_delegated_admins = Some(vec![HUB.into()]);
    plan(&d, &live, &[("share:p/unit/ml/ds", Action::Create)]);
    live.catalog_delegated_admins = Some(Vec::new());
    d.hub = Some(MANAGEMENT.into());
    live.portfolios[0].account = MANAGEMENT.into();
    plan(&d, &live, &[("share:p/unit/ml/ds", Action::Create)]);
}

// ------------------------------------------------------------------ ownership

#[test]
fn an_untagged_product_of_the_same_name_is_a_conflict_never_adopted() {
    let d = desired();
    let mut live = live();
    live.portfolios[0].products[0].tags.clear();
    let (changes, findings) =
        estate::plan::catalog::diff(std::slice::from_ref(&d), &live, "e", false);
    assert!(changes.is_empty(), "{changes:?}");
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].kind, estate::plan::FindingKind::Conflict);
    assert_eq!(findings[0].address.to_string(), "product:p/notebook");
    assert!(
        findings[0].message.contains(PRODUCT),
        "{}",
        findings[0].message
    );
}

#[test]
fn an_untagged_portfolio_of_the_same_name_is_a_conflict_never_duplicated() {
    let d = desired();
    let mut live = live();
    live.portfolios.clear();
    live.unmanaged_portfolios = vec![estate::live::UnmanagedPortfolio {
        id: "port-someoneelse0".into(),
        account: HUB.into(),
        display_name: "Data Scientists".into(),
    }];
    let (changes, findings) =
        estate::plan::catalog::diff(std::slice::from_ref(&d), &live, "e", false);
    assert!(changes.is_empty(), "{changes:?}");
    assert_eq!(findings[0].kind, estate::plan::FindingKind::Conflict);
    assert!(findings[0].message.contains("port-someoneelse0"));
    // In another account the name is free.
    live.unmanaged_portfolios[0].account = RECIPIENT.into();
    let (changes, findings) =
        estate::plan::catalog::diff(std::slice::from_ref(&d), &live, "e", false);
    assert!(findings.is_empty());
    assert_eq!(addresses(&changes)[0], "portfolio:p");
}

#[tokio::test]
async fn a_product_that_left_the_manifest_is_an_orphan_or_with_prune_deleted_after_its_constraint()
{
    let mut d = desired();
    d.products.clear();
    let mut live = live();
    live.portfolios[0].constraints = vec![estate::live::LiveConstraint {
        id: "cons-abcdefghijklm".into(),
        product_id: PRODUCT.into(),
        kind: "LAUNCH".into(),
        parameters: r#"{"LocalRoleName":"SCLaunchRole"}"#.into(),
    }];
    let (changes, findings) =
        estate::plan::catalog::diff(std::slice::from_ref(&d), &live, "e", false);
    assert!(changes.is_empty(), "{changes:?}");
    assert_eq!(findings[0].kind, estate::plan::FindingKind::Orphan);
    assert_eq!(findings[0].address.to_string(), "product:p/notebook");

    let (changes, findings) =
        estate::plan::catalog::diff(std::slice::from_ref(&d), &live, "e", true);
    assert!(findings.is_empty(), "{findings:?}");
    assert_eq!(
        address_actions(&changes),
        owned(&[
            ("constraint:p/notebook/launch", Action::Delete),
            ("product:p/notebook", Action::Delete)
        ])
    );
    let order = Arc::new(Mutex::new(Vec::<&str>::new()));
    let (o1, o2, o3) = (order.clone(), order.clone(), order.clone());
    let constraint = mock!(Sc::delete_constraint)
        .match_requests(|r| r.id() == Some("cons-abcdefghijklm"))
        .then_compute_output(move |_| {
            o1.lock().unwrap().push("DeleteConstraint");
            DeleteConstraintOutput::builder().build()
        });
    let disassociate = mock!(Sc::disassociate_product_from_portfolio)
        .match_requests(|r| r.product_id() == Some(PRODUCT) && r.portfolio_id() == Some(PORTFOLIO))
        .then_compute_output(move |_| {
            o2.lock().unwrap().push("DisassociateProductFromPortfolio");
            DisassociateProductFromPortfolioOutput::builder().build()
        });
    let delete = mock!(Sc::delete_product)
        .match_requests(|r| r.id() == Some(PRODUCT))
        .then_compute_output(move |_| {
            o3.lock().unwrap().push("DeleteProduct");
            DeleteProductOutput::builder().build()
        });
    let aws = edge(&[&constraint, &disassociate, &delete]);
    let plan = with_changes(changes);
    let done = apply_catalog(&aws, &plan, &d, &live, fast()).await.unwrap();
    assert_eq!(done, ["constraint:p/notebook/launch", "product:p/notebook"]);
    assert_eq!(
        *order.lock().unwrap(),
        [
            "DeleteConstraint",
            "DisassociateProductFromPortfolio",
            "DeleteProduct"
        ]
    );
}

#[tokio::test]
async fn deletes_run_in_reverse_apply_order_recipient_principals_shares_then_hub_principals() {
    let d = desired();
    let mut live = live();
    let hub_arn = "arn:aws:iam::222222222222:role/PlatformAdmin";
    let recipient_arn = "arn:aws:iam::333333333333:role/DataScientist";
    let p = &mut live.portfolios[0];
    p.principals = vec![hub_arn.into()];
    p.shared_accounts = vec![RECIPIENT.into()];
    p.recipients.insert(
        RECIPIENT.into(),
        estate::live::LiveRecipient {
            accepted: true,
            principals: vec![recipient_arn.into()],
        },
    );
    let (changes, _) = estate::plan::catalog::diff(std::slice::from_ref(&d), &live, "e", false);
    let plan = with_changes(changes);
    let order = Arc::new(Mutex::new(Vec::<String>::new()));
    let (o1, o2) = (order.clone(), order.clone());
    let disassociate =
        mock!(Sc::disassociate_principal_from_portfolio).then_compute_output(move |r| {
            o1.lock()
                .unwrap()
                .push(format!("Disassociate {}", r.principal_arn().unwrap()));
            DisassociatePrincipalFromPortfolioOutput::builder().build()
        });
    let unshare = mock!(Sc::delete_portfolio_share)
        .match_requests(|r| r.account_id() == Some(RECIPIENT))
        .then_compute_output(move |_| {
            o2.lock().unwrap().push("DeletePortfolioShare".into());
            DeletePortfolioShareOutput::builder().build()
        });
    let aws = edge(&[&disassociate, &unshare]);

    apply_catalog(&aws, &plan, &d, &live, fast()).await.unwrap();

    assert_eq!(
        *order.lock().unwrap(),
        [
            format!("Disassociate {recipient_arn}"),
            "DeletePortfolioShare".to_string(),
            format!("Disassociate {hub_arn}"),
        ]
    );
}

#[tokio::test]
async fn a_product_that_cannot_be_deleted_is_put_back_in_its_portfolio() {
    let mut d = desired();
    d.products.clear();
    let live = live();
    let (changes, _) = estate::plan::catalog::diff(std::slice::from_ref(&d), &live, "e", true);
    let plan = with_changes(changes);
    let disassociate = mock!(Sc::disassociate_product_from_portfolio)
        .then_output(|| DisassociateProductFromPortfolioOutput::builder().build());
    let message = "Product has provisioned products; terminate them first.";
    let delete = mock!(Sc::delete_product).then_error(move || {
        aws_sdk_servicecatalog::operation::delete_product::DeleteProductError::generic(meta(
            "ResourceInUseException",
            message,
        ))
    });
    let back = mock!(Sc::associate_product_with_portfolio)
        .match_requests(|r| r.product_id() == Some(PRODUCT) && r.portfolio_id() == Some(PORTFOLIO))
        .then_output(|| {
            aws_sdk_servicecatalog::operation::associate_product_with_portfolio::AssociateProductWithPortfolioOutput::builder().build()
        });
    let aws = edge(&[&disassociate, &delete, &back]);

    let err = apply_catalog(&aws, &plan, &d, &live, fast())
        .await
        .unwrap_err();

    assert_eq!(
        err.to_string(),
        format!("ServiceCatalog.DeleteProduct: ResourceInUseException: {message}")
    );
    assert_eq!(back.num_calls(), 1, "the next plan must still see it");
}

// ------------------------------------------------------------------ the hub record

/// A recorded hub is retired only when a read entered it and found it empty: a hub the read
/// could not enter (a suspended account) is not known to be empty and stays recorded.
#[tokio::test]
async fn a_recorded_hub_is_retired_only_when_it_was_read_empty() {
    use estate::live::{AccountState, LiveAccount};
    for (state, untagged) in [(AccountState::Active, 1), (AccountState::Suspended, 0)] {
        let untag = mock!(aws_sdk_organizations::Client::untag_resource).then_output(|| {
            aws_sdk_organizations::operation::untag_resource::UntagResourceOutput::builder().build()
        });
        let aws = crate::support::mocks::edge(&[&untag]);
        let live = LiveState {
            root_id: "r-root".into(),
            accounts: vec![LiveAccount {
                id: HUB.into(),
                name: "old-hub".into(),
                email: "old-hub@example.com".into(),
                state,
                parent_id: "r-root".into(),
                tags: None,
            }],
            portfolio_hub_record: [HUB.to_string()].into(),
            ..Default::default()
        };
        apply::record::retire_hubs(&aws, &live, "e", &[])
            .await
            .unwrap();
        assert_eq!(untag.num_calls(), untagged, "{state:?}");
    }
}
