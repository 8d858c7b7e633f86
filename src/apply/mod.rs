//! Apply: carries out a Plan's changes through the AWS edge, in dependency order, batched
//! (one stack-set operation per action and parameter-override group), waiting on each
//! operation and reporting every failed instance. Values the Plan masks (NoEcho parameters,
//! whole templates) come from the desired state the Plan was computed from.

mod batching;
pub mod catalog;
mod error;
pub mod lock;
mod ops;
mod options;
mod organization;
pub mod prerequisites;
mod progress;
pub mod record;
mod report;
pub mod run;
mod stack_sets;
pub mod templates;

pub use batching::{Batch, DesiredInstanceView, batches};
pub use organization::{AtOnce, create_account, organization};
pub use progress::{Event, Progress, SharedProgress, Silent};
pub use stack_sets::stack_sets;

pub use crate::aws::wait::Polling;
pub use error::ApplyError;
pub use options::{Options, operation_id};
pub use report::{InstanceFailure, REPORT_FORMAT_VERSION, Report, StepFailure};
