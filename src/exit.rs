//! The exit codes of product.md, as named constants.

/// Every row of the manifest is done.
pub const OK: i32 = 0;
/// The run finished, and some rows failed for good.
pub const ROWS_FAILED: i32 = 1;
/// Bad usage, settings or manifest: nothing was sent.
pub const USAGE: i32 = 2;
/// The run stopped on an error that retrying cannot fix (auth, quota, unknown model,
/// the output folder or the checkpoint failing); unfinished rows stay pending.
pub const STOPPED: i32 = 3;
/// Interrupted by Ctrl-C.
pub const INTERRUPTED: i32 = 130;

/// Writes to stdout. A reader that goes away early (`bulkgen report | head -1`) shows as
/// an error of kind `BrokenPipe`, which callers treat as a quiet end (exit 0), where
/// `println!` would panic (exit 101).
///
/// Every command writes its stdout through here, rather than resetting SIGPIPE to its
/// default: that would let any write to a closed pipe or socket kill the process, and
/// hyper's vectored socket writes carry no MSG_NOSIGNAL, so a provider that drops a
/// connection could then kill a run.
pub fn write_stdout(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}
