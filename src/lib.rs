//! estate: a declarative GitOps reconciler for multi-account AWS machine-learning platforms.
//!
//! The library is the core (manifest, templates, diagnostics); the binary in `main.rs` is the
//! command-line edge.

pub mod apply;
pub mod aws;
pub mod bootstrap;
pub mod diag;
pub mod import;
pub mod live;
pub mod manifest;
pub mod pipeline;
pub mod plan;
pub mod render;
pub mod source;
pub mod tags;
pub mod template;
pub mod yaml;
