//! Prompts from a jsonl dataset, the kit's custom-dataset format: one JSON object per line,
//! `{"prompt": "<text>"}`, optionally with `"image_path": "<local image file>"`, and no other
//! key (kit-reference 1.1). Blank lines are skipped. Image paths resolve against the dataset's
//! folder; URLs are refused as the kit refuses them. The kit requires `prompt` to be the first
//! key; coebench accepts the two keys in either order.
//!
//! Every bad line is reported at once, each naming the file, the line and the fix. Request `i`
//! of a row sends line `i mod n` (`cycle`) or a line drawn from the run's seed and `i`
//! (`sample`, with replacement), so the choice never depends on the order requests finish in.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use coebench_plan::DatasetOrder;
use coebench_plan::input::{InputError, InputErrors};

use crate::workload::image::EncodedImage;
use crate::workload::prompt::splitmix64;

/// The `prompt_name` of requests whose prompt came from a dataset (the kit's).
pub const DATASET_PROMPT_NAME: &str = "custom_prompt";

/// One line of a dataset.
#[derive(Debug, Clone)]
pub struct DatasetLine {
    /// The prompt text, sent as it is.
    pub prompt: Arc<str>,
    /// The line's image, if it names one.
    pub image: Option<Arc<EncodedImage>>,
    /// Its line number in the file (from 1).
    pub line: usize,
}

/// A dataset's prompts, in file order.
#[derive(Debug)]
pub struct DatasetPrompts {
    /// The file it was read from.
    pub path: PathBuf,
    lines: Vec<DatasetLine>,
}

impl DatasetPrompts {
    /// Reads the jsonl file at `path` and the image files its lines name.
    pub fn read(path: &Path) -> Result<DatasetPrompts, InputErrors> {
        let source = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            InputErrors::one(InputError::new(
                &source,
                "",
                format!("cannot read the dataset: {e}"),
                "set dataset.path to a readable jsonl file of {\"prompt\": ...} lines",
            ))
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        DatasetPrompts::parse(&text, path, &|image| std::fs::read(base.join(image)))
    }

    /// Parses `text`, the content of `path`; `read_image` reads an image path as written in
    /// the file. Every problem is reported.
    pub fn parse(
        text: &str,
        path: &Path,
        read_image: &dyn Fn(&Path) -> std::io::Result<Vec<u8>>,
    ) -> Result<DatasetPrompts, InputErrors> {
        let source = path.display().to_string();
        let mut errors = Vec::new();
        let mut lines = Vec::new();
        let mut images: HashMap<String, Arc<EncodedImage>> = HashMap::new();
        for (index, raw) in text.lines().enumerate() {
            let number = index + 1;
            if raw.trim().is_empty() {
                continue;
            }
            let mut problem = |problem: String, fix: &str| {
                errors.push(InputError::new(
                    &source,
                    format!("line {number}"),
                    problem,
                    fix,
                ));
            };
            let object = match serde_json::from_str::<serde_json::Value>(raw) {
                Ok(serde_json::Value::Object(object)) => object,
                Ok(other) => {
                    problem(
                        format!("expected a JSON object, found {}", kind(&other)),
                        "write each line as {\"prompt\": \"...\"}",
                    );
                    continue;
                }
                Err(e) => {
                    problem(
                        format!("not valid JSON: {e}"),
                        "write each line as one JSON object, {\"prompt\": \"...\"}",
                    );
                    continue;
                }
            };
            let extra: Vec<&String> = object
                .keys()
                .filter(|k| !matches!(k.as_str(), "prompt" | "image_path"))
                .collect();
            if !extra.is_empty() {
                problem(
                    format!("unknown key(s) {extra:?}"),
                    "a line holds only \"prompt\" and, optionally, \"image_path\"",
                );
                continue;
            }
            let prompt = match object.get("prompt") {
                Some(serde_json::Value::String(p)) if !p.trim().is_empty() => p.clone(),
                Some(serde_json::Value::String(_)) => {
                    problem(
                        "the prompt is empty".into(),
                        "give every line a non-empty \"prompt\"",
                    );
                    continue;
                }
                Some(other) => {
                    problem(
                        format!("\"prompt\" is {}, not text", kind(other)),
                        "write the prompt as a JSON string",
                    );
                    continue;
                }
                None => {
                    problem(
                        "no \"prompt\" key".into(),
                        "give every line a \"prompt\" with the text to send",
                    );
                    continue;
                }
            };
            let image = match object.get("image_path") {
                None => None,
                Some(serde_json::Value::String(image_path)) => {
                    match image_of(image_path, read_image, &mut images) {
                        Ok(image) => Some(image),
                        Err((message, fix)) => {
                            problem(message, fix);
                            continue;
                        }
                    }
                }
                Some(other) => {
                    problem(
                        format!("\"image_path\" is {}, not text", kind(other)),
                        "write the image's path as a JSON string",
                    );
                    continue;
                }
            };
            lines.push(DatasetLine {
                prompt: prompt.into(),
                image,
                line: number,
            });
        }
        if lines.is_empty() && errors.is_empty() {
            errors.push(InputError::new(
                &source,
                "",
                "the dataset has no prompts",
                "add lines of the form {\"prompt\": \"...\"}",
            ));
        }
        InputErrors::check(
            DatasetPrompts {
                path: path.to_path_buf(),
                lines,
            },
            errors,
        )
    }

    /// Number of prompts.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// Whether there are none (never, for a dataset that parsed).
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The position (in [`DatasetPrompts::line`] order) of the line request `request_index` sends.
    pub fn position(&self, order: DatasetOrder, seed: u64, request_index: u64) -> usize {
        let n = self.lines.len().max(1);
        match order {
            DatasetOrder::Cycle => (request_index % n as u64) as usize,
            DatasetOrder::Sample => {
                let draw = splitmix64(seed ^ splitmix64(request_index ^ 0x6461_7461));
                ((u128::from(draw) * n as u128) >> 64) as usize
            }
        }
    }

    /// The line at `position`.
    pub fn line(&self, position: usize) -> &DatasetLine {
        &self.lines[position.min(self.lines.len().saturating_sub(1))]
    }
}

/// The image `image_path` names, read once per path.
fn image_of(
    image_path: &str,
    read_image: &dyn Fn(&Path) -> std::io::Result<Vec<u8>>,
    images: &mut HashMap<String, Arc<EncodedImage>>,
) -> Result<Arc<EncodedImage>, (String, &'static str)> {
    if image_path.starts_with("http://") || image_path.starts_with("https://") {
        return Err((
            format!("image_path {image_path:?} is a URL"),
            "URLs are not supported (as in the kit): download the image and give its local path",
        ));
    }
    if let Some(image) = images.get(image_path) {
        return Ok(Arc::clone(image));
    }
    let extension = Path::new(image_path)
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let mime = match extension.as_deref() {
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("png") => "image/png",
        Some("webp") => "image/webp",
        Some("gif") => "image/gif",
        _ => {
            return Err((
                format!("image_path {image_path:?} is not a .jpg, .jpeg, .png, .webp or .gif file"),
                "convert the image to JPEG or PNG",
            ));
        }
    };
    let bytes = read_image(Path::new(image_path)).map_err(|e| {
        (
            format!("cannot read image_path {image_path:?}: {e}"),
            "image paths are relative to the dataset's folder; fix the path or add the file",
        )
    })?;
    let image = Arc::new(EncodedImage::from_file_bytes(&bytes, mime));
    images.insert(image_path.to_string(), Arc::clone(&image));
    Ok(image)
}

/// The JSON kind of `value`, for messages.
fn kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_images(_: &Path) -> std::io::Result<Vec<u8>> {
        Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no such file",
        ))
    }

    #[test]
    fn the_kits_format_parses_with_and_without_images() {
        let read = |p: &Path| {
            assert_eq!(p, Path::new("imgs/cat.png"));
            Ok(vec![1, 2, 3])
        };
        let text = "{\"prompt\": \"Find the median.\"}\n\n\
                    {\"image_path\": \"imgs/cat.png\", \"prompt\": \"Describe it.\"}\n\
                    {\"prompt\": \"Again.\", \"image_path\": \"imgs/cat.png\"}\n";
        let dataset = DatasetPrompts::parse(text, Path::new("d.jsonl"), &read).unwrap();
        assert_eq!(dataset.len(), 3);
        assert_eq!(&*dataset.line(0).prompt, "Find the median.");
        assert!(dataset.line(0).image.is_none());
        let image = dataset.line(1).image.as_ref().unwrap();
        assert_eq!(&*image.data_url, "data:image/png;base64,AQID");
        assert_eq!(dataset.line(1).line, 3);
        // One image file, read once, shared.
        assert!(Arc::ptr_eq(image, dataset.line(2).image.as_ref().unwrap()));
    }

    #[test]
    fn every_bad_line_is_reported_with_its_number_and_fix() {
        let text = "{\"prompt\": \"ok\"}\n\
                    not json\n\
                    [1, 2]\n\
                    {\"text\": \"wrong key\"}\n\
                    {\"prompt\": 42}\n\
                    {\"prompt\": \"  \"}\n\
                    {\"prompt\": \"x\", \"image_path\": \"https://example.com/a.png\"}\n\
                    {\"prompt\": \"x\", \"image_path\": \"missing.jpg\"}\n\
                    {\"prompt\": \"x\", \"image_path\": \"doc.pdf\"}\n\
                    {\"prompt\": \"y\"}\n";
        let err = DatasetPrompts::parse(text, Path::new("data/p.jsonl"), &no_images).unwrap_err();
        let lines: Vec<&str> = err.0.iter().map(|e| e.location.as_str()).collect();
        assert_eq!(
            lines,
            [
                "line 2", "line 3", "line 4", "line 5", "line 6", "line 7", "line 8", "line 9"
            ]
        );
        let message = err.to_string();
        for needle in [
            "data/p.jsonl, line 2: not valid JSON",
            "line 3: expected a JSON object, found an array",
            "line 4: unknown key(s) [\"text\"]",
            "line 5: \"prompt\" is a number",
            "line 6: the prompt is empty",
            "line 7: image_path \"https://example.com/a.png\" is a URL",
            "line 8: cannot read image_path \"missing.jpg\"",
            "line 9: image_path \"doc.pdf\" is not a",
        ] {
            assert!(message.contains(needle), "{needle} not in {message}");
        }
        let empty = DatasetPrompts::parse("\n  \n", Path::new("e.jsonl"), &no_images).unwrap_err();
        assert!(
            empty
                .to_string()
                .contains("e.jsonl: the dataset has no prompts")
        );
    }

    #[test]
    fn cycling_visits_every_line_in_order_and_sampling_follows_the_seed() {
        let text: String = (0..5)
            .map(|i| format!("{{\"prompt\": \"p{i}\"}}\n"))
            .collect();
        let dataset = DatasetPrompts::parse(&text, Path::new("d.jsonl"), &no_images).unwrap();
        let cycle: Vec<usize> = (0..7)
            .map(|i| dataset.position(DatasetOrder::Cycle, 9, i))
            .collect();
        assert_eq!(cycle, [0, 1, 2, 3, 4, 0, 1]);
        let sample = |seed| -> Vec<usize> {
            (0..200)
                .map(|i| dataset.position(DatasetOrder::Sample, seed, i))
                .collect()
        };
        assert_eq!(sample(1), sample(1));
        assert_ne!(sample(1), sample(2));
        let mut seen = sample(1);
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen, [0, 1, 2, 3, 4], "every line is drawn");
    }
}
