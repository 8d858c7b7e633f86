//! Integration tests for estate, in one binary so all tests share one AWS emulator per run.

mod cli;
mod emulator;
mod samples;
mod smoke;
mod validate;
