//! Integration tests for estate, in one binary so all tests share one AWS emulator per run.

mod emulator;
mod smoke;
