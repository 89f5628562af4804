//! The consolidated table of a run: one row per plan row, in plan order, written as
//! `consolidated_results_<run_name>.xlsx` (the kit's spreadsheet), `.csv` and `.json`, or
//! under the kit's latest name `<run_name>.*` (plan `output.consolidatedFileNames`).
//!
//! The engine inserts each row's summary as the row finishes and may rewrite the files after
//! every row, so an interrupted run still has a table; every write is atomic. The columns are
//! defined in [`super::columns`]; a run's table leaves out the kit's optional columns no row
//! has a value for, as the kit does, and ends with one `metadata_<key>` column per key of the
//! run's metadata. The xlsx starts with the unnamed index column pandas' `to_excel` writes
//! (0, 1, ... in plan order), so `pd.read_excel` sees the kit's layout; the xlsx and csv
//! write list and dict cells as Python's `str()` like the kit; the json writes them as JSON
//! arrays and objects.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

use super::OutputError;
use super::atomic::{to_json_pretty, write_atomic};
use super::columns::{self, Cell, METADATA_COLUMN_PREFIX};
use super::naming::{consolidated_stem, python_float_str};
use crate::statistics::summary::RowSummary;
use coebench_plan::ConsolidatedFileNames;

/// Excel's limit on the characters of one cell.
const XLSX_MAX_CELL_CHARS: usize = 32_767;

/// Name of the worksheet, pandas' default.
const SHEET_NAME: &str = "Sheet1";

/// The consolidated table of a run, built up row by row.
#[derive(Debug, Clone, Default)]
pub struct ConsolidatedTable {
    run_name: String,
    rows: BTreeMap<usize, Vec<Cell>>,
    names: ConsolidatedFileNames,
    metadata: BTreeMap<String, String>,
}

/// Where the table was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsolidatedPaths {
    /// The spreadsheet.
    pub xlsx: PathBuf,
    /// The same table as CSV.
    pub csv: PathBuf,
    /// The same table as a JSON array of objects.
    pub json: PathBuf,
    /// The spreadsheet again under the kit's latest name `<run_name>.xlsx`
    /// ([`ConsolidatedFileNames::Both`]).
    pub kit_xlsx: Option<PathBuf>,
}

impl ConsolidatedTable {
    /// An empty table for the run `run_name`, named the seed's way, without metadata.
    pub fn new(run_name: impl Into<String>) -> Self {
        ConsolidatedTable {
            run_name: run_name.into(),
            ..ConsolidatedTable::default()
        }
    }

    /// The same table with its files named `names`.
    pub fn named(mut self, names: ConsolidatedFileNames) -> Self {
        self.names = names;
        self
    }

    /// The same table with a `metadata_<key>` column for each key of the run's `metadata`.
    pub fn with_metadata(mut self, metadata: BTreeMap<String, String>) -> Self {
        self.metadata = metadata;
        self
    }

    /// Adds a row's summary, replacing any earlier one for the same row index.
    pub fn insert(&mut self, summary: &RowSummary) {
        self.rows.insert(summary.row_index, columns::cells(summary));
    }

    /// Number of rows in the table.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The paths the table is written to in `dir`.
    pub fn paths(&self, dir: &Path) -> ConsolidatedPaths {
        let seed = consolidated_stem(&self.run_name);
        let stem = match self.names {
            ConsolidatedFileNames::Seed | ConsolidatedFileNames::Both => seed.as_str(),
            ConsolidatedFileNames::Kit => self.run_name.as_str(),
        };
        ConsolidatedPaths {
            xlsx: dir.join(format!("{stem}.xlsx")),
            csv: dir.join(format!("{stem}.csv")),
            json: dir.join(format!("{stem}.json")),
            kit_xlsx: (self.names == ConsolidatedFileNames::Both)
                .then(|| dir.join(format!("{}.xlsx", self.run_name))),
        }
    }

    /// Writes (or rewrites) the xlsx, csv and json files in `dir`, each atomically.
    pub fn write(&self, dir: &Path) -> Result<ConsolidatedPaths, OutputError> {
        let paths = self.paths(dir);
        let xlsx = self.to_xlsx().map_err(|source| OutputError::Xlsx {
            path: paths.xlsx.clone(),
            source,
        })?;
        write_atomic(&paths.xlsx, &xlsx)?;
        if let Some(kit_xlsx) = &paths.kit_xlsx {
            write_atomic(kit_xlsx, &xlsx)?;
        }
        let csv = self.to_csv().map_err(|source| OutputError::Csv {
            path: paths.csv.clone(),
            source,
        })?;
        write_atomic(&paths.csv, &csv)?;
        let json = to_json_pretty(&JsonTable(self)).map_err(|source| OutputError::Json {
            path: paths.json.clone(),
            source,
        })?;
        write_atomic(&paths.json, &json)?;
        Ok(paths)
    }

    /// The header of this run's table: the kit's columns that have a value in some row (and
    /// those it always writes), coebench's, then `metadata_<key>` per metadata key.
    pub fn header(&self) -> Vec<String> {
        let all = columns::header();
        self.kept_columns()
            .into_iter()
            .map(|i| all[i].to_string())
            .chain(
                self.metadata
                    .keys()
                    .map(|k| format!("{METADATA_COLUMN_PREFIX}{k}")),
            )
            .collect()
    }

    /// Indexes (into [`columns::header`]) of the columns this run's table has.
    fn kept_columns(&self) -> Vec<usize> {
        columns::all_columns()
            .enumerate()
            .filter(|(i, column)| {
                !column.optional
                    || self
                        .rows
                        .values()
                        .any(|cells| !matches!(cells[*i], Cell::Empty))
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// Each row's cells, in [`ConsolidatedTable::header`] order.
    fn table_rows(&self) -> Vec<Vec<Cell>> {
        let kept = self.kept_columns();
        self.rows
            .values()
            .map(|cells| {
                kept.iter()
                    .map(|&i| cells[i].clone())
                    .chain(self.metadata.values().map(|v| Cell::Text(v.clone())))
                    .collect()
            })
            .collect()
    }

    /// The spreadsheet's bytes: pandas' layout, a bold header row with an empty first cell
    /// over the bold index column (0, 1, ...), then one row per plan row.
    pub fn to_xlsx(&self) -> Result<Vec<u8>, rust_xlsxwriter::XlsxError> {
        let mut workbook = rust_xlsxwriter::Workbook::new();
        let bold = rust_xlsxwriter::Format::new().set_bold();
        let sheet = workbook.add_worksheet();
        sheet.set_name(SHEET_NAME)?;
        for (col, name) in self.header().iter().enumerate() {
            sheet.write_string_with_format(0, col_index(col + 1), name, &bold)?;
        }
        for (row, cells) in self.table_rows().iter().enumerate() {
            let index = row as f64;
            let row = u32::try_from(row + 1).unwrap_or(u32::MAX);
            sheet.write_number_with_format(row, 0, index, &bold)?;
            for (col, cell) in cells.iter().enumerate() {
                let col = col_index(col + 1);
                match cell {
                    Cell::Empty => {}
                    Cell::Number(x) => {
                        sheet.write_number(row, col, *x)?;
                    }
                    Cell::Int(n) => {
                        sheet.write_number(row, col, *n as f64)?;
                    }
                    Cell::Bool(b) => {
                        sheet.write_boolean(row, col, *b)?;
                    }
                    Cell::Text(text) => {
                        sheet.write_string(row, col, fit_cell(text))?;
                    }
                    other => {
                        let text = other.python_text().unwrap_or_default();
                        sheet.write_string(row, col, fit_cell(&text))?;
                    }
                }
            }
        }
        workbook.save_to_buffer()
    }

    /// The CSV bytes: header, then one line per plan row; numbers as Python prints them.
    pub fn to_csv(&self) -> Result<Vec<u8>, csv::Error> {
        let mut writer = csv::Writer::from_writer(Vec::new());
        writer.write_record(self.header())?;
        for cells in self.table_rows() {
            writer.write_record(cells.iter().map(csv_field))?;
        }
        writer.into_inner().map_err(|e| e.into_error().into())
    }
}

fn col_index(col: usize) -> u16 {
    u16::try_from(col).unwrap_or(u16::MAX)
}

/// Cuts text to Excel's cell limit (at a character boundary).
fn fit_cell(text: &str) -> &str {
    match text.char_indices().nth(XLSX_MAX_CELL_CHARS) {
        Some((cut, _)) => &text[..cut],
        None => text,
    }
}

fn csv_field(cell: &Cell) -> String {
    match cell {
        Cell::Empty => String::new(),
        Cell::Number(x) => python_float_str(*x),
        Cell::Int(n) => n.to_string(),
        Cell::Bool(b) => if *b { "True" } else { "False" }.to_string(),
        Cell::Text(text) => text.clone(),
        other => other.python_text().unwrap_or_default(),
    }
}

/// The table as a JSON array of objects, keys in column order.
struct JsonTable<'a>(&'a ConsolidatedTable);

impl Serialize for JsonTable<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let header = self.0.header();
        let rows = self.0.table_rows();
        let mut seq = serializer.serialize_seq(Some(rows.len()))?;
        for cells in &rows {
            seq.serialize_element(&JsonRow(&header, cells))?;
        }
        seq.end()
    }
}

struct JsonRow<'a>(&'a [String], &'a [Cell]);

impl Serialize for JsonRow<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, cell) in self.0.iter().zip(self.1) {
            match cell {
                Cell::Empty => map.serialize_entry(name, &())?,
                Cell::Number(x) => map.serialize_entry(name, &x.is_finite().then_some(*x))?,
                Cell::Int(n) => map.serialize_entry(name, n)?,
                Cell::Bool(b) => map.serialize_entry(name, b)?,
                Cell::Text(text) => map.serialize_entry(name, text)?,
                Cell::IntList(items) => map.serialize_entry(name, items)?,
                Cell::IntMap(items) => map.serialize_entry(name, items)?,
                Cell::CountMap(items) => map.serialize_entry(name, items)?,
            }
        }
        map.end()
    }
}
