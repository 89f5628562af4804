//! The command line's own messages on standard error (`note:`, `warning:`, `error:`): plain
//! lines, or with `--log-format json` log events like every other line there, so a log
//! collector reading standard error gets JSON only.

use std::sync::OnceLock;

use crate::cli::args::LogFormat;

static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// Sets the format of every later message (once, at start-up).
pub fn set_format(format: LogFormat) {
    let _ = FORMAT.set(format);
}

/// Whether messages are JSON log events.
pub fn is_json() -> bool {
    FORMAT.get() == Some(&LogFormat::Json)
}

/// Information for the user.
pub fn note(text: &str) {
    if is_json() {
        tracing::info!("{text}");
    } else {
        eprintln!("note: {text}");
    }
}

/// Something the user should know went wrong, without ending the run.
pub fn warn(text: &str) {
    if is_json() {
        tracing::warn!("{text}");
    } else {
        eprintln!("warning: {text}");
    }
}

/// Why the command failed.
pub fn error(text: &str) {
    if is_json() {
        tracing::error!("{text}");
    } else {
        eprintln!("error: {text}");
    }
}

/// A line of progress (no level prefix in text form).
pub fn progress(text: &str) {
    if is_json() {
        tracing::info!("{text}");
    } else {
        eprintln!("{text}");
    }
}
