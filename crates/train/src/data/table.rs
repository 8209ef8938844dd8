//! Reading a CSV or Parquet table with polars and pulling typed, validated columns out of it.
//! Every error names the file, the 1-based data row (and CSV line) and the column.

use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use polars::prelude::*;

use crate::error::{DataError, Result};

/// A table as read from disk, before validation.
pub(crate) struct Table {
    file: PathBuf,
    is_csv: bool,
    df: DataFrame,
}

impl Table {
    /// Reads `path` as Parquet (`.parquet`, `.pq`) or CSV (anything else). CSV columns are read
    /// as text so that every value is parsed here, where a bad one can be named by row.
    pub fn read(path: &Path) -> Result<Self> {
        let file = path.to_path_buf();
        let is_parquet = matches!(
            path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref(),
            Some("parquet" | "pq")
        );
        let handle = std::fs::File::open(path).map_err(|source| DataError::Io { file: file.clone(), source })?;
        let df = if is_parquet {
            ParquetReader::new(handle).finish().map_err(|e| DataError::Unreadable {
                file: file.clone(),
                format: "Parquet",
                message: e.to_string(),
            })?
        } else {
            drop(handle);
            CsvReadOptions::default()
                .with_has_header(true)
                .with_infer_schema_length(Some(0))
                .try_into_reader_with_file_path(Some(file.clone()))
                .and_then(|r| r.finish())
                .map_err(|e| DataError::Unreadable { file: file.clone(), format: "CSV", message: e.to_string() })?
        };
        if df.height() == 0 {
            return Err(DataError::Empty { file });
        }
        Ok(Self { file, is_csv: !is_parquet, df })
    }

    pub fn path(&self) -> &Path {
        &self.file
    }

    pub fn height(&self) -> usize {
        self.df.height()
    }

    /// Column names as in the file.
    pub fn names(&self) -> Vec<String> {
        self.df.get_column_names().iter().map(|n| n.to_string()).collect()
    }

    /// The file's name for `wanted`, matched without regard to case or surrounding spaces.
    pub fn find(&self, wanted: &str) -> Option<String> {
        self.names().into_iter().find(|n| n.trim().eq_ignore_ascii_case(wanted))
    }

    /// Fails with every missing column named at once.
    pub fn require(&self, wanted: &[&str]) -> Result<()> {
        let missing: Vec<String> =
            wanted.iter().filter(|w| self.find(w).is_none()).map(|w| w.to_string()).collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(DataError::MissingColumns { file: self.file.clone(), missing, found: self.names() })
        }
    }

    /// An error about the value at zero-based `index` of `column`.
    pub fn invalid(&self, index: usize, column: &str, message: impl Into<String>) -> DataError {
        DataError::Invalid {
            file: self.file.clone(),
            row: index + 1,
            line: self.is_csv.then_some(index + 2),
            column: column.to_string(),
            message: message.into(),
        }
    }

    fn column(&self, wanted: &str) -> Result<&Column> {
        self.require(&[wanted])?;
        let name = self.find(wanted).unwrap_or_default();
        self.df.column(&name).map_err(|e| self.unreadable(e))
    }

    fn unreadable(&self, e: PolarsError) -> DataError {
        DataError::Unreadable {
            file: self.file.clone(),
            format: if self.is_csv { "CSV" } else { "Parquet" },
            message: e.to_string(),
        }
    }

    /// The column as text (dates and numbers of a Parquet file formatted by polars).
    fn text(&self, wanted: &str) -> Result<Vec<Option<String>>> {
        let column = self.column(wanted)?;
        let column = column.cast(&DataType::String).map_err(|e| self.unreadable(e))?;
        let strings = column.str().map_err(|e| self.unreadable(e))?;
        Ok(strings.iter().map(|s| s.map(str::to_string)).collect())
    }

    /// A numeric column: every value present, a number, and finite.
    pub fn floats(&self, wanted: &str) -> Result<Vec<f64>> {
        let column = self.column(wanted)?;
        let values: Vec<Option<f64>> = if column.dtype() == &DataType::String {
            let strings = column.str().map_err(|e| self.unreadable(e))?;
            strings
                .iter()
                .enumerate()
                .map(|(i, s)| match s.map(str::trim) {
                    None | Some("") => Ok(None),
                    Some(s) => s
                        .parse::<f64>()
                        .map(Some)
                        .map_err(|_| self.invalid(i, wanted, format!("`{s}` is not a number"))),
                })
                .collect::<Result<_>>()?
        } else {
            let cast = column.cast(&DataType::Float64).map_err(|e| self.unreadable(e))?;
            cast.f64().map_err(|e| self.unreadable(e))?.iter().collect()
        };
        values
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                None => Err(self.invalid(i, wanted, "missing value")),
                Some(v) if !v.is_finite() => Err(self.invalid(i, wanted, format!("{v} is not a finite number"))),
                Some(v) => Ok(v),
            })
            .collect()
    }

    /// The timestamp column: every value parsed, strictly ascending, no duplicates.
    pub fn timestamps(&self, wanted: &str) -> Result<Vec<NaiveDateTime>> {
        let text = self.text(wanted)?;
        let mut out: Vec<NaiveDateTime> = Vec::with_capacity(text.len());
        for (i, s) in text.iter().enumerate() {
            let s = s.as_deref().map(str::trim).unwrap_or("");
            let t = parse_timestamp(s).ok_or_else(|| {
                self.invalid(
                    i,
                    wanted,
                    format!("cannot parse `{s}` as a date: expected YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS (UTC)"),
                )
            })?;
            if let Some(prev) = out.last() {
                if t == *prev {
                    return Err(self.invalid(i, wanted, format!("duplicate timestamp {t} (also row {i})")));
                }
                if t < *prev {
                    return Err(self.invalid(
                        i,
                        wanted,
                        format!("timestamps are not sorted: {t} is earlier than {prev} on row {i}; rows must be in ascending time"),
                    ));
                }
            }
            out.push(t);
        }
        Ok(out)
    }
}

/// Parses `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM[:SS[.fff]]` (or with a space, optional `Z`) as UTC,
/// and RFC 3339 timestamps with an offset (converted to UTC).
pub(crate) fn parse_timestamp(s: &str) -> Option<NaiveDateTime> {
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0);
    }
    let naive = s.strip_suffix('Z').unwrap_or(s);
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(naive, format) {
            return Some(t);
        }
    }
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.naive_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_formats() {
        let day = parse_timestamp("2020-03-12").unwrap();
        assert_eq!(day.to_string(), "2020-03-12 00:00:00");
        assert_eq!(parse_timestamp("2020-03-12T04:00:00").unwrap().to_string(), "2020-03-12 04:00:00");
        assert_eq!(parse_timestamp("2020-03-12 04:00:00Z").unwrap().to_string(), "2020-03-12 04:00:00");
        assert_eq!(parse_timestamp("2020-03-12T06:00:00+02:00").unwrap().to_string(), "2020-03-12 04:00:00");
        assert!(parse_timestamp("12/03/2020").is_none());
        assert!(parse_timestamp("2020-02-30").is_none());
    }
}
