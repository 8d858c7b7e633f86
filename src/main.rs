//! The `estate` command line: the binary edge, where errors become messages and exit codes.

mod cmd;

fn main() {
    std::process::exit(cmd::run());
}
