//! A row's generated texts (option `saveResponseTexts`, the kit's `--save-llm-responses`):
//! each finished request's prompt and completion appended as one JSON line to a hidden file
//! in the run folder while the row runs, then synced and renamed to `<base>_response_texts.jsonl`
//! with the row's other files, so the file appears whole or not at all.
//!
//! Each line is the kit's `{"prompt": {"name": ..., "template": ...}, "completion": ...}`
//! followed by coebench's `request_idx`, in the order requests finished (as the kit writes
//! them). The hidden file is removed if the row's files are never written.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

use crate::statistics::spool::SpoolError;

/// The generated texts of one running row.
#[derive(Debug)]
pub struct ResponseTextSpool {
    path: PathBuf,
    writer: Mutex<Option<BufWriter<File>>>,
}

#[derive(Serialize)]
struct Line<'a> {
    prompt: Prompt<'a>,
    completion: &'a str,
    request_idx: u32,
}

#[derive(Serialize)]
struct Prompt<'a> {
    name: &'a str,
    template: &'a str,
}

impl ResponseTextSpool {
    /// Creates the hidden spool of the row whose files are named from `base` in `dir`.
    pub fn create(dir: &Path, base: &str) -> Result<ResponseTextSpool, SpoolError> {
        let path = dir.join(format!(".{base}.response_texts.jsonl"));
        let file = File::create(&path).map_err(|source| SpoolError::Write {
            path: path.clone(),
            source,
        })?;
        Ok(ResponseTextSpool {
            path,
            writer: Mutex::new(Some(BufWriter::with_capacity(1 << 16, file))),
        })
    }

    /// Appends request `request_idx`'s prompt (its name and text) and generated text.
    pub fn append(
        &self,
        request_idx: u32,
        prompt_name: &str,
        prompt: &str,
        completion: &str,
    ) -> Result<(), SpoolError> {
        let mut line = serde_json::to_vec(&Line {
            prompt: Prompt {
                name: prompt_name,
                template: prompt,
            },
            completion,
            request_idx,
        })
        .map_err(|source| SpoolError::Json {
            path: self.path.clone(),
            source,
        })?;
        line.push(b'\n');
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        match writer.as_mut() {
            Some(out) => out.write_all(&line).map_err(|e| self.write_error(e)),
            None => {
                Err(self.write_error(std::io::Error::other("the row's texts were already saved")))
            }
        }
    }

    /// Syncs the texts to disk and renames them to `target`, atomically. Later appends fail.
    pub fn persist(&self, target: &Path) -> Result<(), SpoolError> {
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let Some(out) = writer.take() else {
            return Err(
                self.write_error(std::io::Error::other("the row's texts were already saved"))
            );
        };
        let file = out
            .into_inner()
            .map_err(|e| self.write_error(e.into_error()))?;
        file.sync_all().map_err(|e| self.write_error(e))?;
        std::fs::rename(&self.path, target).map_err(|source| SpoolError::Write {
            path: target.to_path_buf(),
            source,
        })
    }

    fn write_error(&self, source: std::io::Error) -> SpoolError {
        SpoolError::Write {
            path: self.path.clone(),
            source,
        }
    }
}

impl Drop for ResponseTextSpool {
    fn drop(&mut self) {
        // Gone already when persisted.
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_the_kits_and_appear_only_when_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let spool = ResponseTextSpool::create(dir.path(), "row").unwrap();
        spool
            .append(1, "default", "Tell me \"why\"", "Because.\nYes")
            .unwrap();
        spool.append(0, "default", "Tell me", "No").unwrap();
        let target = dir.path().join("row_response_texts.jsonl");
        assert!(!target.exists());
        spool.persist(&target).unwrap();
        let text = std::fs::read_to_string(&target).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            lines[0],
            serde_json::json!({"prompt": {"name": "default", "template": "Tell me \"why\""},
                               "completion": "Because.\nYes", "request_idx": 1})
        );
        assert_eq!(lines.len(), 2);
        assert!(spool.append(2, "default", "x", "y").is_err());
        drop(spool);
        assert!(target.exists(), "a persisted file stays");
        // An unpersisted spool leaves nothing behind.
        let other = ResponseTextSpool::create(dir.path(), "other").unwrap();
        other.append(0, "default", "p", "c").unwrap();
        drop(other);
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["row_response_texts.jsonl"]);
    }
}
