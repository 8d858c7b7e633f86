//! The `estate` command line: the binary edge, where errors become messages and exit codes.

mod apply_cmd;
mod cli;
mod gitops;

fn main() {
    std::process::exit(cli::run());
}
