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
