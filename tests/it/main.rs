//! Integration tests for estate, in one binary so all tests share one AWS emulator per run.

mod support;

mod apply;
mod apply_mocks;
mod cfn_lint;
mod ci;
mod cli;
mod drift_mocks;
mod edge;
mod emulator;
mod faults;
mod gitops;
mod iam;
mod import;
mod organizations;
mod outputs;
mod pipeline;
mod plan;
mod plan_cases;
mod plan_schema;
mod portfolio;
mod portfolio_mocks;
mod read_cost;
mod render;
mod samples;
mod sc_emulator;
mod smoke;
mod stacksets;
mod validate;
