//! The names estate writes into AWS to recognise its own resources and remember what AWS does
//! not keep: every `estate:*` tag, and the apply lock's key. One place, so a reader sees the
//! whole vocabulary and no module invents a name of its own.

/// Every resource estate creates carries it, naming the estate.
pub const TAG_MANAGED_BY: &str = "estate:managed-by";
/// The environment a resource belongs to.
pub const TAG_ENVIRONMENT: &str = "estate:environment";
/// Digest of the NoEcho parameter values last applied: AWS masks them on read.
pub const TAG_SECRETS: &str = "estate:secrets-sha256";
/// Operation preferences last applied (AWS does not keep them on the stack set).
pub const TAG_OPERATION: &str = "estate:operation";
/// Digest of the instance overrides last applied to a stack set's instances: tells a plan
/// whether they must be read, without a call per instance.
pub const TAG_OVERRIDES: &str = "estate:overrides-sha256";
/// Tags that are estate's memory, not the user's: a change to one is shown as what it stands
/// for (the operation preferences, a sensitive parameter, instance overrides), never as a tag.
pub const BOOKKEEPING: [&str; 3] = [TAG_OPERATION, TAG_SECRETS, TAG_OVERRIDES];

/// The manifest name of a portfolio.
pub const TAG_PORTFOLIO: &str = "estate:portfolio";
/// The manifest name of a product.
pub const TAG_PRODUCT: &str = "estate:product";
/// The pipeline a stack set is part of.
pub const TAG_PIPELINE: &str = "estate:pipeline";

/// The tag on the organization root recording that `estate` keeps portfolios in `account`:
/// plans read portfolios only in the manifest's hubs and these, never in every account, and
/// still find the portfolios of a hub that left the manifest.
pub fn hub_record_key(estate: &str, account: &str) -> String {
    format!("estate-hub:{estate}:{account}")
}

/// The account a root tag key records as a portfolio hub of `estate`, if it is one.
pub fn hub_of_record<'k>(estate: &str, key: &'k str) -> Option<&'k str> {
    key.strip_prefix("estate-hub:")?
        .strip_prefix(estate)?
        .strip_prefix(':')
}

/// The tag on the organization root holding `estate`'s generation: a new value is written by
/// every apply before it changes anything, so an apply that has just taken its locks tells
/// whether another apply ran since it read live state from this one tag, not a second full
/// read.
pub fn generation_key(estate: &str) -> String {
    format!("estate-generation:{estate}")
}

/// The tag on the organization root that holds an apply lock of `estate` and `scope`.
pub fn lock_key(estate: &str, scope: &str) -> String {
    format!("estate-lock:{estate}:{scope}")
}
