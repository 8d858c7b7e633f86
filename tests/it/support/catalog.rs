//! Service Catalog state read back from the emulator (principals, shares, accepted
//! portfolios), for the tests of portfolios through estate and of the emulator's catalog.

use crate::support::emulator::ok;
use aws_sdk_servicecatalog::Client;
use aws_sdk_servicecatalog::types::{DescribePortfolioShareType, PortfolioShareType};

/// The principal ARNs associated with `portfolio`, as the account `sc` acts in sees them.
pub async fn principals(sc: &Client, portfolio: &str) -> Vec<String> {
    let out = ok(sc
        .list_principals_for_portfolio()
        .portfolio_id(portfolio)
        .send()
        .await);
    out.principals()
        .iter()
        .map(|p| p.principal_arn().unwrap_or_default().to_string())
        .collect()
}

/// (recipient, accepted) of the portfolio's shares of one type.
pub async fn shares(
    sc: &Client,
    portfolio: &str,
    kind: DescribePortfolioShareType,
) -> Vec<(String, bool)> {
    let out = ok(sc
        .describe_portfolio_shares()
        .portfolio_id(portfolio)
        .r#type(kind)
        .send()
        .await);
    out.portfolio_share_details()
        .iter()
        .map(|s| {
            (
                s.principal_id().unwrap_or_default().to_string(),
                s.accepted(),
            )
        })
        .collect()
}

/// Ids of the portfolios the account `sc` acts in has accepted (of one share type, or of
/// the type AWS lists when none is given).
pub async fn accepted(sc: &Client, kind: Option<PortfolioShareType>) -> Vec<String> {
    let out = ok(sc
        .list_accepted_portfolio_shares()
        .set_portfolio_share_type(kind)
        .send()
        .await);
    out.portfolio_details()
        .iter()
        .map(|p| p.id().unwrap_or_default().to_string())
        .collect()
}
