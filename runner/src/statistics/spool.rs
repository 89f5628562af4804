//! A row's spool: every finished request's full record, appended as one JSON line while the row
//! runs and read back by position when the row's files are written. It keeps a row's memory
//! independent of how many requests and tokens it records, and a crash mid-row leaves the
//! records measured so far on disk (`.<base>.records.jsonl` in the run folder).
//!
//! Appends come from many request tasks: each serialises its record first, then holds the lock
//! only to copy the bytes into a buffered writer. The file is removed when the spool is dropped.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::statistics::record::RequestRecord;

/// A spool could not be created, appended to or read back. Each variant names the spool file.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The run folder could not be created.
    #[error("cannot create folder {path}: {source}")]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The spool could not be created, appended to or flushed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The spool file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The spool could not be opened or read back.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The spool file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A record could not be encoded, or a spooled line decoded.
    #[error("cannot encode or decode a record in {path}: {source}")]
    Json {
        /// The spool file.
        path: PathBuf,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// A request's record never reached the spool (its append failed earlier).
    #[error("cannot read {path}: request {request_idx} could not be spooled")]
    NotSpooled {
        /// The spool file.
        path: PathBuf,
        /// The request whose record is missing.
        request_idx: u32,
    },
}

/// Where one record is in a spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolRef {
    /// Byte offset of the record's line.
    pub offset: u64,
    /// Length of the line without its newline.
    pub len: u32,
}

/// The spool of one row.
#[derive(Debug)]
pub struct RecordSpool {
    path: PathBuf,
    writer: Mutex<Writer>,
}

#[derive(Debug)]
struct Writer {
    file: BufWriter<File>,
    offset: u64,
}

impl RecordSpool {
    /// Creates the spool of the row whose files are named from `base` in `dir`.
    pub fn create(dir: &Path, base: &str) -> Result<RecordSpool, SpoolError> {
        std::fs::create_dir_all(dir).map_err(|source| SpoolError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(format!(".{base}.records.jsonl"));
        let file = File::create(&path).map_err(|source| SpoolError::Write {
            path: path.clone(),
            source,
        })?;
        Ok(RecordSpool {
            path,
            writer: Mutex::new(Writer {
                file: BufWriter::with_capacity(1 << 16, file),
                offset: 0,
            }),
        })
    }

    /// The spool file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `record`; returns where it is.
    pub fn append(&self, record: &RequestRecord) -> Result<SpoolRef, SpoolError> {
        let mut line = serde_json::to_vec(record).map_err(|source| SpoolError::Json {
            path: self.path.clone(),
            source,
        })?;
        line.push(b'\n');
        let len = u32::try_from(line.len() - 1).map_err(|_| self.write_error(too_long()))?;
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let offset = writer.offset;
        writer
            .file
            .write_all(&line)
            .map_err(|e| self.write_error(e))?;
        writer.offset += line.len() as u64;
        Ok(SpoolRef { offset, len })
    }

    /// Flushes what was appended, so [`RecordSpool::reader`] sees every record.
    pub fn flush(&self) -> Result<(), SpoolError> {
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        writer.file.flush().map_err(|e| self.write_error(e))
    }

    /// A reader of the spooled records (call [`RecordSpool::flush`] first).
    pub fn reader(&self) -> Result<SpoolReader, SpoolError> {
        let file = File::open(&self.path).map_err(|source| SpoolError::Read {
            path: self.path.clone(),
            source,
        })?;
        Ok(SpoolReader {
            file,
            path: self.path.clone(),
            buffer: Vec::new(),
        })
    }

    fn write_error(&self, source: std::io::Error) -> SpoolError {
        SpoolError::Write {
            path: self.path.clone(),
            source,
        }
    }
}

impl Drop for RecordSpool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn too_long() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, "a record over 4 GiB")
}

/// Reads spooled records by position.
#[derive(Debug)]
pub struct SpoolReader {
    file: File,
    path: PathBuf,
    buffer: Vec<u8>,
}

impl SpoolReader {
    /// The record at `at`.
    pub fn read(&mut self, at: SpoolRef) -> Result<RequestRecord, SpoolError> {
        let io_error = |source| SpoolError::Read {
            path: self.path.clone(),
            source,
        };
        self.buffer.resize(at.len as usize, 0);
        self.file
            .seek(SeekFrom::Start(at.offset))
            .map_err(io_error)?;
        self.file.read_exact(&mut self.buffer).map_err(io_error)?;
        serde_json::from_slice(&self.buffer).map_err(|source| SpoolError::Json {
            path: self.path.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_back_in_any_order_and_the_file_goes_away() {
        let dir = tempfile::tempdir().unwrap();
        let spool = RecordSpool::create(dir.path(), "row").unwrap();
        let records: Vec<RequestRecord> = (0..50)
            .map(|i| RequestRecord {
                request_idx: i,
                error_msg: format!("message {i} with \"quotes\"\nand a newline"),
                client_inter_token_latencies_s: Some(vec![0.001 * f64::from(i); i as usize]),
                ..RequestRecord::default()
            })
            .collect();
        let refs: Vec<SpoolRef> = records.iter().map(|r| spool.append(r).unwrap()).collect();
        spool.flush().unwrap();
        let mut reader = spool.reader().unwrap();
        for i in (0..50).rev() {
            assert_eq!(reader.read(refs[i]).unwrap(), records[i]);
        }
        let path = spool.path().to_path_buf();
        assert!(path.exists());
        drop(spool);
        assert!(!path.exists());
    }
}
