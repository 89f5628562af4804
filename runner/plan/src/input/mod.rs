//! Reading benchmark inputs into a [`Plan`](crate::Plan), and validating them.
//!
//! Three ways in, one plan out: the kit's `config.yaml` with its model-configs CSV
//! ([`kit_config`], [`model_configs`]), a native plan file in YAML or JSON ([`plan_file`]), and
//! single-row command-line flags (built by the CLI). [`validate`] then checks the whole plan
//! before anything is sent. Every problem is collected, never just the first, and each names the
//! file, the line or row, the field and the fix. This module reads files but sends nothing.

pub mod kit_config;
pub mod kit_config_types;
pub mod model_configs;
pub mod plan_file;
pub mod ranges;
pub mod sampling;
pub mod validate;

use std::fmt;

/// One problem with an input, located as precisely as the input allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    /// The file (or `command line`) the problem is in.
    pub source: String,
    /// Where in the source: a line number, a row, or a field path; empty when it is the whole
    /// source.
    pub location: String,
    /// What is wrong, quoting the bad value.
    pub problem: String,
    /// How to fix it.
    pub fix: String,
}

impl InputError {
    /// A problem at `location` of `source`.
    pub fn new(
        source: impl Into<String>,
        location: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        InputError {
            source: source.into(),
            location: location.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.location.is_empty() {
            write!(f, "{}: {}", self.source, self.problem)?;
        } else {
            write!(f, "{}, {}: {}", self.source, self.location, self.problem)?;
        }
        if !self.fix.is_empty() {
            write!(f, "; {}", self.fix)?;
        }
        Ok(())
    }
}

/// Every problem found in an input. Never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputErrors(pub Vec<InputError>);

impl InputErrors {
    /// A single problem.
    pub fn one(error: InputError) -> Self {
        InputErrors(vec![error])
    }

    /// `Ok(value)` when `errors` is empty, else all of them.
    pub fn check<T>(value: T, errors: Vec<InputError>) -> Result<T, InputErrors> {
        if errors.is_empty() {
            Ok(value)
        } else {
            Err(InputErrors(errors))
        }
    }
}

impl fmt::Display for InputErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "{n} problem{} in the input:",
            if n == 1 { "" } else { "s" }
        )?;
        for error in &self.0 {
            writeln!(f, "  - {error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for InputErrors {}

/// Reads an input file named on the command line by `flag`, or says why it cannot.
pub fn read_input_file(path: &std::path::Path, flag: &str) -> Result<String, InputErrors> {
    read_utf8(path).map_err(|e| {
        InputErrors::one(InputError::new(
            path.display().to_string(),
            "",
            format!("cannot read the file: {e}"),
            format!("check the path given to {flag}"),
        ))
    })
}

/// Reads a text file; a file that is not UTF-8 fails with the line and column of the first
/// bad byte, so it can be found and the file re-saved.
pub fn read_utf8(path: &std::path::Path) -> std::io::Result<String> {
    let bytes = std::fs::read(path)?;
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
        let line_start = valid.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "the file is not UTF-8: byte 0x{:02x} at line {line}, column {} (byte offset {}); \
                 save it as UTF-8",
                e.as_bytes()[valid.len()],
                valid.len() - line_start + 1,
                valid.len()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_not_utf8_names_the_line_and_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.csv");
        std::fs::write(&path, b"model_name,qps\nm\xe9,1\n").unwrap();
        let e = read_utf8(&path).unwrap_err().to_string();
        assert!(e.contains("line 2, column 2") && e.contains("0xe9"), "{e}");
    }

    #[test]
    fn errors_render_with_location_and_fix() {
        let e = InputError::new(
            "m.csv",
            "line 3, column qps",
            "\"x\" is not a number",
            "write e.g. 2.5",
        );
        assert_eq!(
            e.to_string(),
            "m.csv, line 3, column qps: \"x\" is not a number; write e.g. 2.5"
        );
        let all = InputErrors(vec![e.clone(), e]);
        assert!(
            all.to_string()
                .starts_with("2 problems in the input:\n  - m.csv")
        );
    }
}
