//! Helpers shared by the integration tests; feature files keep only their tests and the
//! helpers private to them.

pub mod builders;
pub mod catalog;
pub mod emulator;
pub mod mocks;
pub mod run;
