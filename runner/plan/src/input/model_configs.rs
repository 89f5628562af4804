//! The kit's model-configs CSV: one benchmark row per line.
//!
//! Header (any column order): `model_name,input_tokens,output_tokens,num_requests,
//! concurrent_requests,qps,qps_distribution,multimodal_img_size`. The oldest kit header
//! (`model_names,input_tokens,output_tokens,concurrent_requests`, where the number of requests was
//! `max(64, concurrent_requests)`) is accepted too. Blank cells and pandas' `nan`/`N/A` spellings
//! mean "not set"; a `0` in `concurrent_requests` or `qps` means "not set", as in the kit.
//!
//! Fixes of the kit (kit-reference section 8): a blank `qps_distribution` means `constant`
//! (item 22), a blank `concurrent_requests` on a QPS row is fine (item 23), and a row that sets
//! both or neither of `concurrent_requests` and `qps` is an error reported before anything runs,
//! not a row silently skipped.

use crate::input::{InputError, InputErrors};
use crate::{ImageSize, QpsDistribution, Row};

/// The columns of the current kit format, in the kit's order.
pub const COLUMNS: [&str; 8] = [
    "model_name",
    "input_tokens",
    "output_tokens",
    "num_requests",
    "concurrent_requests",
    "qps",
    "qps_distribution",
    "multimodal_img_size",
];

/// The oldest kit format's model column, whose rows had no `num_requests`.
const LEGACY_MODEL_COLUMN: &str = "model_names";

/// Requests per row in the oldest kit format: `max(64, concurrent_requests)`.
const LEGACY_MIN_REQUESTS: u32 = 64;

/// Parses a model-configs CSV. `source` names the file in error messages.
///
/// Returns the rows in file order, or every problem found (each with its line and column).
pub fn parse_model_configs_csv(text: &str, source: &str) -> Result<Vec<Row>, InputErrors> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(text.as_bytes());
    let header = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            return Err(InputErrors::one(InputError::new(
                source,
                "line 1",
                format!("the header cannot be read: {e}"),
                "save the file as UTF-8 CSV",
            )));
        }
    };
    let columns = Columns::locate(&header, source)?;
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                errors.push(InputError::new(
                    source,
                    format!("line {line}"),
                    format!("the line cannot be read: {e}"),
                    "check its quoting and encoding (UTF-8)",
                ));
                continue;
            }
        };
        if record.iter().all(|cell| cell.is_empty()) {
            continue;
        }
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        if record.len() > header.len() {
            errors.push(InputError::new(
                source,
                format!("line {line}"),
                format!(
                    "the line has {} fields but the header has {} columns; the extra ones \
                     would be dropped",
                    record.len(),
                    header.len()
                ),
                "remove the extra fields (a comma too many?) or add their column to the header",
            ));
            continue;
        }
        let mut cells = RowCells {
            record: &record,
            line,
            source,
            errors: &mut errors,
        };
        if let Some(row) = columns.read_row(&mut cells) {
            rows.push(row);
        }
    }
    if rows.is_empty() && errors.is_empty() {
        errors.push(InputError::new(
            source,
            "",
            "the file has a header but no rows",
            "add one line per model configuration to benchmark",
        ));
    }
    InputErrors::check(rows, errors)
}

/// Where each known column sits in the header.
struct Columns {
    model: usize,
    legacy: bool,
    input_tokens: usize,
    output_tokens: usize,
    num_requests: Option<usize>,
    concurrent_requests: Option<usize>,
    qps: Option<usize>,
    qps_distribution: Option<usize>,
    multimodal_img_size: Option<usize>,
}

impl Columns {
    fn locate(header: &csv::StringRecord, source: &str) -> Result<Columns, InputErrors> {
        let find = |name: &str| header.iter().position(|h| h.eq_ignore_ascii_case(name));
        let mut errors = Vec::new();
        for (i, name) in header.iter().enumerate() {
            let known = COLUMNS.iter().any(|c| c.eq_ignore_ascii_case(name))
                || name.eq_ignore_ascii_case(LEGACY_MODEL_COLUMN);
            if !known {
                errors.push(InputError::new(
                    source,
                    format!("line 1, column {}", i + 1),
                    format!("unknown column {name:?}"),
                    format!("the columns are {}", COLUMNS.join(",")),
                ));
            }
        }
        let (model, legacy) = match (find("model_name"), find(LEGACY_MODEL_COLUMN)) {
            (Some(i), _) => (Some(i), false),
            (None, Some(i)) => (Some(i), true),
            (None, None) => (None, false),
        };
        let mut required = |name: &str, at: Option<usize>| {
            if at.is_none() {
                errors.push(InputError::new(
                    source,
                    "line 1",
                    format!("the header has no {name} column"),
                    format!("the header must be {}", COLUMNS.join(",")),
                ));
            }
            at.unwrap_or(0)
        };
        let model = required("model_name", model);
        let input_tokens = required("input_tokens", find("input_tokens"));
        let output_tokens = required("output_tokens", find("output_tokens"));
        let num_requests = find("num_requests");
        if num_requests.is_none() && !legacy {
            required("num_requests", None);
        }
        let columns = Columns {
            model,
            legacy,
            input_tokens,
            output_tokens,
            num_requests,
            concurrent_requests: find("concurrent_requests"),
            qps: find("qps"),
            qps_distribution: find("qps_distribution"),
            multimodal_img_size: find("multimodal_img_size"),
        };
        InputErrors::check(columns, errors)
    }

    fn read_row(&self, cells: &mut RowCells<'_>) -> Option<Row> {
        let model = cells.text(Some(self.model), "model_name");
        let input_tokens = cells.positive_int(Some(self.input_tokens), "input_tokens");
        let output_tokens = cells.positive_int(Some(self.output_tokens), "output_tokens");
        let concurrency = cells.optional_int(self.concurrent_requests, "concurrent_requests");
        let qps = cells.optional_qps(self.qps);
        let num_requests = if self.legacy && self.num_requests.is_none() {
            Some(concurrency.flatten().unwrap_or(0).max(LEGACY_MIN_REQUESTS))
        } else {
            cells.positive_int(self.num_requests, "num_requests")
        };
        let qps_distribution = cells.distribution(self.qps_distribution);
        let image_size = cells.image_size(self.multimodal_img_size);
        let (concurrency, qps) = (concurrency?, qps?);
        match (concurrency, qps) {
            (Some(_), Some(_)) => cells.error::<()>(
                "concurrent_requests, qps",
                "both concurrent_requests and qps are set",
                "a row is either closed-loop (concurrent_requests) or open-loop (qps): clear one of them",
            ),
            (None, None) => cells.error::<()>(
                "concurrent_requests, qps",
                cells.neither_load_problem(self.concurrent_requests, self.qps),
                "set concurrent_requests (e.g. 1) for a closed loop, or qps (e.g. 2.5) for an open loop",
            ),
            _ => None,
        };
        let row = Row {
            model: model?,
            input_tokens: input_tokens?,
            output_tokens: output_tokens?,
            num_requests: num_requests?,
            concurrency,
            qps,
            qps_distribution: if qps.is_some() {
                Some(qps_distribution?.unwrap_or_default())
            } else {
                None
            },
            image_size: image_size?,
            max_sequence_length: None,
            ignore_eos: None,
            min_tokens: None,
            sampling_params: Default::default(),
            dataset: None,
            workers: None,
            objectives: None,
        };
        (concurrency.is_some() != qps.is_some()).then_some(row)
    }
}

/// The cells of one data line, with the error sink they report into.
struct RowCells<'a> {
    record: &'a csv::StringRecord,
    line: u64,
    source: &'a str,
    errors: &'a mut Vec<InputError>,
}

impl<'a> RowCells<'a> {
    /// The cell at `at`, with kit spellings of "empty" mapped to `None`.
    fn cell(&self, at: Option<usize>) -> Option<&'a str> {
        let value = self.record.get(at?)?;
        let empty = value.is_empty()
            || ["nan", "n/a", "na", "none", "null"]
                .iter()
                .any(|e| value.eq_ignore_ascii_case(e));
        (!empty).then_some(value)
    }

    fn error<T>(&mut self, column: &str, problem: impl Into<String>, fix: &str) -> Option<T> {
        self.errors.push(InputError::new(
            self.source,
            format!("line {}, column {column}", self.line),
            problem,
            fix,
        ));
        None
    }

    fn text(&mut self, at: Option<usize>, column: &str) -> Option<String> {
        match self.cell(at) {
            Some(v) => Some(v.to_string()),
            None => self.error(
                column,
                "the model name is empty",
                "write the model's name as the endpoint knows it",
            ),
        }
    }

    /// An integer cell; pandas writes integers as `16.0` when a column has blanks.
    fn int(&mut self, value: &str, column: &str) -> Option<u32> {
        const FIX: &str = "write a positive whole number such as 16";
        if let Ok(n) = value.parse::<u32>() {
            return Some(n);
        }
        match value.parse::<f64>() {
            Ok(f) if f.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&f) => Some(f as u32),
            Ok(f) if f < 0.0 => self.error(column, format!("{value:?} is negative"), FIX),
            Ok(f) if f.is_finite() && f.fract() == 0.0 => self.error(
                column,
                format!("{value:?} is too large (at most {})", u32::MAX),
                FIX,
            ),
            Ok(f) if f.is_finite() => {
                self.error(column, format!("{value:?} is not a whole number"), FIX)
            }
            Ok(_) => self.error(column, format!("{value:?} is not a finite number"), FIX),
            Err(_) => self.error(column, format!("{value:?} is not a number"), FIX),
        }
    }

    /// Why a required cell has no value: empty, or a pandas spelling of empty.
    fn missing(&mut self, at: Option<usize>, column: &str, fix: &str) -> Option<u32> {
        let raw = at.and_then(|i| self.record.get(i)).unwrap_or_default();
        let problem = if raw.is_empty() {
            "the cell is empty".to_string()
        } else {
            format!(
                "{raw:?} means \"not set\" (pandas' spelling of an empty cell), but the column needs a value"
            )
        };
        self.error(column, problem, fix)
    }

    fn positive_int(&mut self, at: Option<usize>, column: &str) -> Option<u32> {
        let Some(value) = self.cell(at) else {
            return self.missing(at, column, "write a positive whole number such as 16");
        };
        match self.int(value, column)? {
            0 => self.error(
                column,
                "0 is not allowed",
                "write a positive whole number such as 16",
            ),
            n => Some(n),
        }
    }

    /// `Some(None)` for a blank or `0` cell (not set, as in the kit); `None` after an error.
    fn optional_int(&mut self, at: Option<usize>, column: &str) -> Option<Option<u32>> {
        match self.cell(at) {
            None => Some(None),
            Some(value) => Some(self.int(value, column).map(|n| (n > 0).then_some(n))?),
        }
    }

    /// Why a row has no load: `0` means "not set" in the kit, which surprises.
    fn neither_load_problem(&self, concurrency: Option<usize>, qps: Option<usize>) -> String {
        let zero = |at: Option<usize>| {
            at.and_then(|i| self.record.get(i))
                .and_then(|v| v.parse::<f64>().ok())
                == Some(0.0)
        };
        match (zero(concurrency), zero(qps)) {
            (true, _) => "concurrent_requests is 0, which means \"not set\" (as in the kit), \
                          and qps is not set either"
                .to_string(),
            (false, true) => "qps is 0, which means \"not set\" (as in the kit), and \
                              concurrent_requests is not set either"
                .to_string(),
            _ => "neither concurrent_requests nor qps is set".to_string(),
        }
    }

    fn optional_qps(&mut self, at: Option<usize>) -> Option<Option<f64>> {
        let Some(value) = self.cell(at) else {
            return Some(None);
        };
        match value.parse::<f64>() {
            Ok(q) if q.is_finite() && q > 0.0 => Some(Some(q)),
            Ok(0.0) => Some(None),
            _ => self.error(
                "qps",
                format!("{value:?} is not a positive number of requests per second"),
                "write requests per second such as 2.5, or leave it empty on a concurrency row",
            ),
        }
    }

    fn distribution(&mut self, at: Option<usize>) -> Option<Option<QpsDistribution>> {
        let Some(value) = self.cell(at) else {
            return Some(None);
        };
        match value.to_ascii_lowercase().as_str() {
            "constant" => Some(Some(QpsDistribution::Constant)),
            "uniform" => Some(Some(QpsDistribution::Uniform)),
            "exponential" | "poisson" => Some(Some(QpsDistribution::Exponential)),
            _ => self.error(
                "qps_distribution",
                format!("unknown distribution {value:?}"),
                "write constant, uniform or exponential (empty means constant)",
            ),
        }
    }

    fn image_size(&mut self, at: Option<usize>) -> Option<Option<ImageSize>> {
        let Some(value) = self.cell(at) else {
            return Some(None);
        };
        match value.to_ascii_lowercase().as_str() {
            "small" => Some(Some(ImageSize::Small)),
            "medium" => Some(Some(ImageSize::Medium)),
            "large" => Some(Some(ImageSize::Large)),
            _ => self.error(
                "multimodal_img_size",
                format!("unknown image size {value:?}"),
                "write small (500 px), medium (1000 px), large (2000 px), or N/A for text-only models",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "model_name,input_tokens,output_tokens,num_requests,concurrent_requests,qps,qps_distribution,multimodal_img_size\n";

    fn parse(body: &str) -> Result<Vec<Row>, InputErrors> {
        parse_model_configs_csv(&format!("{HEADER}{body}"), "configs.csv")
    }

    fn messages(body: &str) -> Vec<String> {
        parse(body)
            .unwrap_err()
            .0
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn reads_concurrency_qps_and_multimodal_rows() {
        let rows = parse(
            "Meta-Llama-3.3-70B-Instruct,1000,100,16,4,,,\n\
             Meta-Llama-3.1-8B-Instruct,500,50,20,,2.5,exponential,N/A\n\
             Llama-4-Maverick-17B-128E-Instruct,100,50,4,1.0,nan,,Small\n",
        )
        .unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].concurrency, Some(4));
        assert_eq!(rows[0].qps_distribution, None);
        assert_eq!(rows[1].qps, Some(2.5));
        assert_eq!(rows[1].qps_distribution, Some(QpsDistribution::Exponential));
        assert_eq!(rows[1].image_size, None);
        assert_eq!(rows[2].concurrency, Some(1));
        assert_eq!(rows[2].image_size, Some(ImageSize::Small));
    }

    #[test]
    fn blank_distribution_means_constant_and_blank_concurrency_is_fine() {
        // Kit defects 22 and 23: both crashed or skipped the row.
        let rows = parse("m,10,10,5,,1,,\nm,10,10,5,nan,0.5,nan,nan\n").unwrap();
        for row in rows {
            assert_eq!(row.qps_distribution, Some(QpsDistribution::Constant));
            assert_eq!(row.concurrency, None);
        }
    }

    #[test]
    fn every_problem_is_reported_with_line_and_column() {
        let errors = messages(
            "m,10,10,5,2,1.5,,\n\
             m,10,10,5,,,,\n\
             m,10,10,5,,2,weibull,\n\
             m,0,-3,5,1,,,\n\
             m,10,10,5,1,,,huge\n\
             ,10,10,5,1,,,\n\
             m,10,10,x,1,,,\n",
        );
        let expect = [
            "line 2, column concurrent_requests, qps: both concurrent_requests and qps are set",
            "line 3, column concurrent_requests, qps: neither",
            "line 4, column qps_distribution: unknown distribution \"weibull\"",
            "line 5, column input_tokens: 0 is not allowed",
            "line 5, column output_tokens: \"-3\" is negative",
            "line 6, column multimodal_img_size: unknown image size \"huge\"",
            "line 7, column model_name: the model name is empty",
            "line 8, column num_requests: \"x\" is not a number",
        ];
        assert_eq!(errors.len(), expect.len(), "{errors:#?}");
        for (got, want) in errors.iter().zip(expect) {
            assert!(
                got.starts_with(&format!("configs.csv, {want}")),
                "{got}\n  wanted {want}"
            );
            assert!(got.contains("; "), "no fix in {got}");
        }
    }

    #[test]
    fn messages_say_what_is_actually_wrong() {
        let errors = messages(
            "m,nan,10,5,1,,,\n\
             m,10,10,5,0,,,\n\
             m,10,10,4294967296,1,,,\n\
             m,10,10,-20,1,,,\n\
             m,10,10,2.5,1,,,\n\
             m,10,10,5,1,,,,extra\n",
        );
        let expect = [
            "line 2, column input_tokens: \"nan\" means \"not set\" (pandas' spelling of an empty cell)",
            "line 3, column concurrent_requests, qps: concurrent_requests is 0, which means \"not set\"",
            "line 4, column num_requests: \"4294967296\" is too large (at most 4294967295)",
            "line 5, column num_requests: \"-20\" is negative",
            "line 6, column num_requests: \"2.5\" is not a whole number",
            "line 7: the line has 9 fields but the header has 8 columns",
        ];
        assert_eq!(errors.len(), expect.len(), "{errors:#?}");
        for (got, want) in errors.iter().zip(expect) {
            assert!(
                got.starts_with(&format!("configs.csv, {want}")),
                "{got}\n  wanted {want}"
            );
        }
    }

    #[test]
    fn header_problems_name_the_columns() {
        let err = parse_model_configs_csv(
            "model_name,input_tokens,output_tokens,concurent_requests\n",
            "c.csv",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("unknown column \"concurent_requests\""),
            "{err}"
        );
        assert!(err.contains("no num_requests column"), "{err}");
    }

    #[test]
    fn the_oldest_kit_header_is_accepted() {
        let rows = parse_model_configs_csv(
            "model_names,input_tokens,output_tokens,concurrent_requests\nm,100,10,8\nm,100,10,128\n",
            "old.csv",
        )
        .unwrap();
        assert_eq!(rows[0].num_requests, 64);
        assert_eq!(rows[1].num_requests, 128);
    }

    #[test]
    fn columns_may_come_in_any_order_and_blank_lines_are_skipped() {
        let rows = parse_model_configs_csv(
            "\u{feff}qps,model_name,num_requests,output_tokens,input_tokens\n3,m,9,8,7\n,,,,\n",
            "c.csv",
        )
        .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (
                rows[0].input_tokens,
                rows[0].output_tokens,
                rows[0].num_requests
            ),
            (7, 8, 9)
        );
    }

    #[test]
    fn a_header_without_rows_is_an_error() {
        let err = parse("").unwrap_err().to_string();
        assert!(err.contains("no rows"), "{err}");
    }
}
