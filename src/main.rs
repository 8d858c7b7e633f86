//! The `estate` command line: the binary edge, where errors become messages and exit codes.

mod cmd;

fn main() {
    // A reader that stops reading (`estate plan | head`) ends estate quietly, as it ends
    // grep or cat, instead of an error about a broken pipe: Rust ignores SIGPIPE by default.
    #[cfg(unix)]
    // SAFETY: before any thread starts, restoring the signal's default disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    std::process::exit(cmd::run());
}
