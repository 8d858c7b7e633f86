//! Renderers: a Plan as terminal text, as the pull-request comment (markdown), or as JSON.
//! They read only the Plan.
//!
//! Every renderer is a pure function of the Plan and its options: no clock, no environment, no
//! terminal detection (the caller decides colour). `drift` reuses them with [`Mode::Drift`],
//! which changes only the wording. Values of NoEcho parameters arrive already masked as
//! [`SENSITIVE`](crate::plan::SENSITIVE); nothing here can recover them, and templates of
//! created resources are summarized, never printed whole.

mod markdown;
mod outline;
mod text;

pub use markdown::{COMMENT_BUDGET, MarkdownOptions, markdown, markdown_with};
pub use outline::Mode;
pub use text::{TextOptions, text};

use crate::plan::Plan;

/// The Plan exactly as serde writes it: pretty, in the model's key order, newline-terminated.
/// This is the contract of docs/manifest.md ("The JSON plan"), so it adds and hides nothing.
pub fn json(plan: &Plan) -> String {
    // A Plan holds only string-keyed maps, the one thing serde_json could refuse.
    let mut out = serde_json::to_string_pretty(plan).expect("a Plan always serializes to JSON");
    out.push('\n');
    out
}
