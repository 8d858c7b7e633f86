//! Integration tests for estate, in one binary so all tests share one AWS emulator per run.

mod apply;
mod cli;
mod emulator;
mod plan;
mod read_cost;
mod render;
mod samples;
mod smoke;
mod validate;
