//! Writes a file atomically: readers see either the old content or the whole new content.
//!
//! The bytes go to a hidden temporary file in the destination folder, are synced to disk, and
//! the temporary file is renamed over the destination (then the folder is synced, best effort).
//! On failure the temporary file is removed. This module knows nothing about formats beyond
//! pretty-printed JSON.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::OutputError;

/// Writes `bytes` to `path` atomically, creating the parent folders.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), OutputError> {
    write_atomic_with(path, |out| {
        out.write_all(bytes).map_err(OutputError::from_io(path))
    })
}

/// `value` as JSON indented by 4 spaces, like Python's `json.dump(..., indent=4)`.
pub fn to_json_pretty<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::new();
    pretty_into(&mut out, value)?;
    Ok(out)
}

/// Appends `value` to `out` as JSON indented by 4 spaces.
pub fn pretty_into<T: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    value: &T,
) -> Result<(), serde_json::Error> {
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut serializer = serde_json::Serializer::with_formatter(out, formatter);
    value.serialize(&mut serializer)
}

/// Writes `path` atomically with `fill`, which writes the content into a buffered temporary
/// file in the same folder; on success the file is synced and renamed over `path`.
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut std::io::BufWriter<fs::File>) -> Result<(), OutputError>,
) -> Result<(), OutputError> {
    let dir = parent_dir(path);
    fs::create_dir_all(&dir).map_err(|source| OutputError::CreateDir {
        path: dir.clone(),
        source,
    })?;
    let tmp = temporary_path(&dir, path);
    let written = fs::File::create(&tmp)
        .map_err(OutputError::from_io(path))
        .and_then(|file| {
            let mut out = std::io::BufWriter::with_capacity(1 << 16, file);
            fill(&mut out)?;
            let file = out
                .into_inner()
                .map_err(|e| OutputError::from_io(path)(e.into_error()))?;
            file.sync_all().map_err(OutputError::from_io(path))
        })
        .and_then(|()| fs::rename(&tmp, path).map_err(OutputError::from_io(path)));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(&dir);
    Ok(())
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn temporary_path(dir: &Path, path: &Path) -> PathBuf {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dir.join(format!(
        ".{file_name}.tmp-{}",
        uuid::Uuid::new_v4().simple()
    ))
}

/// Persists a rename; not every platform or filesystem allows syncing a folder.
fn sync_dir(dir: &Path) {
    if let Ok(folder) = fs::File::open(dir) {
        let _ = folder.sync_all();
    }
}

/// Writes `value` to `path` as 4-space-indented JSON, atomically.
pub fn write_json_atomic<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<(), OutputError> {
    let bytes = to_json_pretty(value).map_err(|source| OutputError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/a.json");
        write_json_atomic(&path, &serde_json::json!({"a": [1, 2]})).unwrap();
        write_json_atomic(&path, &serde_json::json!({"b": 2})).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "{\n    \"b\": 2\n}");
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.json")]);
    }

    #[test]
    fn a_failed_write_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        // The destination is an existing folder: the rename fails.
        let path = dir.path().join("taken");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("keep"), b"x").unwrap();
        let err = write_atomic(&path, b"data").unwrap_err();
        assert!(err.to_string().contains("taken"), "{err}");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "temp file removed"
        );
    }
}
