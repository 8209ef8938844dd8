//! Loading and validating the bundled real market data, and rejecting each kind of bad input
//! with an error that names the file, row and column.

use std::path::{Path, PathBuf};

use foresight_train::DataError;
use foresight_train::data::{Frequency, load_daily_closes, load_ohlcv, load_values};
use polars::prelude::*;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data").join(name)
}

#[test]
fn btc_daily_is_complete_calendar_daily() {
    let btc = load_ohlcv(&data("btc_usdt_1d.csv")).unwrap();
    assert_eq!(btc.bars.len(), 2932);
    assert_eq!(btc.frequency, Frequency::Daily { business_days: false });
    assert_eq!(btc.timestamps[0].to_string(), "2017-08-17 00:00:00");
    assert_eq!(btc.gaps.count, 0);
    assert!(btc.volume.is_some());
    // The COVID crash: BTC closed about 40% lower on 2020-03-12 than the day before.
    let i = btc.timestamps.iter().position(|t| t.date().to_string() == "2020-03-12").unwrap();
    let fall = 1.0 - btc.bars[i].close / btc.bars[i - 1].close;
    assert!(fall > 0.35 && fall < 0.45, "{fall}");
}

#[test]
fn spx_is_business_daily_and_holidays_are_reported_as_gaps() {
    let spx = load_ohlcv(&data("spx_1d.csv")).unwrap();
    assert_eq!(spx.bars.len(), 5031);
    assert_eq!(spx.frequency, Frequency::Daily { business_days: true });
    assert_eq!(spx.frequency.periods_per_year(), 252.0);
    // About nine exchange holidays a year over 20 years, never a weekend.
    assert!(spx.gaps.count > 150 && spx.gaps.count < 220, "{}", spx.gaps.count);
    // The longest closure: four business days after 2001-09-11.
    let largest = spx.gaps.largest.unwrap();
    assert_eq!(largest.missing, 4);
    assert_eq!(largest.after.date().to_string(), "2001-09-10");
}

#[test]
fn btc_two_hour_bars_give_daily_realized_variance_with_interval_counts() {
    let bars = load_ohlcv(&data("btc_usdt_2h.csv")).unwrap();
    assert_eq!(bars.frequency, Frequency::Intraday { interval_secs: 7200 });
    assert!(bars.gaps.count > 0, "the 2-hour file has exchange outages");
    let rv = bars.daily_realized_variance().unwrap();
    // One row per calendar day from 2017-08-17 to 2025-08-26.
    assert_eq!(rv.len(), 2932);
    assert!(rv.iter().all(|(_, d)| d.expected == 12));
    let partial: Vec<_> = rv.iter().filter(|(_, d)| d.intervals < 12).collect();
    assert!(!partial.is_empty());
    for (date, d) in &rv {
        if 2 * d.intervals < 12 {
            assert!(d.rv.is_none(), "{date}: {} intervals must leave RV missing", d.intervals);
        } else {
            assert!(d.rv.unwrap() > 0.0 && d.rv.unwrap().is_finite(), "{date}");
        }
    }
    // 2020-03-12: RV of the crash day is far above a typical day's.
    let crash = rv.iter().find(|(d, _)| d.to_string() == "2020-03-12").unwrap().1.rv.unwrap();
    let mut all: Vec<f64> = rv.iter().filter_map(|(_, d)| d.rv).collect();
    all.sort_by(f64::total_cmp);
    assert!(crash > 20.0 * all[all.len() / 2], "crash RV {crash} vs median {}", all[all.len() / 2]);
    // Aggregated daily closes equal the daily file's closes (both are Binance UTC days).
    let daily = bars.to_daily();
    let reference = load_ohlcv(&data("btc_usdt_1d.csv")).unwrap();
    let k = reference.timestamps.iter().position(|t| *t == daily.timestamps[500]).unwrap();
    assert!((daily.bars[500].close - reference.bars[k].close).abs() < 1e-9);
}

#[test]
fn value_series_load_with_and_without_the_positivity_rule() {
    let funding = load_values(&data("btc_funding_8h.csv"), None, false).unwrap();
    assert_eq!(funding.name, "funding_rate");
    assert_eq!(funding.frequency, Frequency::Intraday { interval_secs: 8 * 3600 });
    assert!(funding.values.iter().any(|v| *v < 0.0), "funding rates can be negative");
    let err = load_values(&data("btc_funding_8h.csv"), None, true).unwrap_err().to_string();
    assert!(err.contains("funding_rate") && err.contains("positive"), "{err}");
    let dvol = load_values(&data("btc_dvol_1d.csv"), None, true).unwrap();
    assert_eq!(dvol.values.len(), 1102);
    let vix = load_values(&data("vix_1d.csv"), Some("close"), true).unwrap();
    assert_eq!(vix.frequency, Frequency::Daily { business_days: true });
    let closes = load_daily_closes(&data("vix_1d.csv")).unwrap();
    assert_eq!(closes.values, vix.values);
}

#[test]
fn parquet_with_a_real_date_type_loads_like_the_csv() {
    let csv = load_ohlcv(&data("btc_usdt_1d.csv")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("btc.parquet");
    let days: Vec<i32> = csv.timestamps.iter().map(|t| (t.and_utc().timestamp() / 86_400) as i32).collect();
    let col = |name: &str, f: fn(&foresight_core::features::Bar) -> f64| {
        Column::new(name.into(), csv.bars.iter().map(f).collect::<Vec<f64>>())
    };
    let mut df = DataFrame::new(
        days.len(),
        vec![
            Column::new("date".into(), days).cast(&DataType::Date).unwrap(),
            col("open", |b| b.open),
            col("high", |b| b.high),
            col("low", |b| b.low),
            col("close", |b| b.close),
        ],
    )
    .unwrap();
    ParquetWriter::new(std::fs::File::create(&path).unwrap()).finish(&mut df).unwrap();
    let pq = load_ohlcv(&path).unwrap();
    assert_eq!(pq.timestamps, csv.timestamps);
    assert_eq!(pq.bars, csv.bars);
    assert_eq!(pq.volume, None);
}

/// A valid little OHLCV file; each bad-input test breaks one thing in it.
const GOOD: &str = "date,open,high,low,close,volume
2024-01-01,100,110,95,105,10
2024-01-02,105,112,101,108,12
2024-01-03,108,109,99,100,9
2024-01-04,100,104,97,103,11
";

fn load_broken(edit: impl Fn(&str) -> String) -> (String, PathBuf) {
    let dir = tempfile::tempdir().unwrap().keep();
    let path = dir.join("broken.csv");
    std::fs::write(&path, edit(GOOD)).unwrap();
    let err = load_ohlcv(&path).expect_err("must be rejected");
    (err.to_string(), path)
}

#[track_caller]
fn assert_names(err: &str, path: &Path, row: Option<usize>, column: &str, words: &str) {
    assert!(err.contains(&path.display().to_string()), "names the file: {err}");
    if let Some(row) = row {
        assert!(err.contains(&format!("row {row} (line {})", row + 1)), "names row {row}: {err}");
    }
    assert!(err.contains(column), "names column {column}: {err}");
    assert!(err.contains(words), "says `{words}`: {err}");
}

#[test]
fn each_validation_rule_names_file_row_and_column() {
    // (how the file is damaged, the row named, the column named, the reason)
    type Case<'a> = (Box<dyn Fn(&str) -> String>, Option<usize>, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (Box::new(|s| s.replace("2024-01-03", "2024-01-02")), Some(3), "`date`", "duplicate timestamp"),
        (Box::new(|s| s.replace("2024-01-03", "2023-12-31")), Some(3), "`date`", "not sorted"),
        (Box::new(|s| s.replace("2024-01-02", "02/01/2024")), Some(2), "`date`", "cannot parse `02/01/2024`"),
        (Box::new(|s| s.replace("108,109,99,100", "108,109,99,-100")), Some(3), "`close`", "returns are logarithmic"),
        (Box::new(|s| s.replace("100,104,97,103", "0,104,97,103")), Some(4), "`open`", "not a positive price"),
        (Box::new(|s| s.replace("105,112,101", "105,inf,101")), Some(2), "`high`", "not a finite number"),
        (Box::new(|s| s.replace("105,112,101", "105,NaN,101")), Some(2), "`high`", "not a finite number"),
        (Box::new(|s| s.replace("105,112,101,108", "105,100,101,108")), Some(2), "`high`", "below low"),
        (Box::new(|s| s.replace("100,110,95,105", "94,110,95,105")), Some(1), "`open`", "outside the bar's range"),
        (Box::new(|s| s.replace("100,104,97,103", "100,104,97,96")), Some(4), "`close`", "outside the bar's range"),
        (Box::new(|s| s.replace("108,109,99,100", "108,109,99,abc")), Some(3), "`close`", "`abc` is not a number"),
        (Box::new(|s| s.replace("108,109,99,100", "108,109,99,")), Some(3), "`close`", "missing value"),
        (Box::new(|s| s.replace(",11\n", ",-11\n")), Some(4), "`volume`", "negative"),
    ];
    for (edit, row, column, words) in cases {
        let (err, path) = load_broken(edit);
        assert_names(&err, &path, row, column, words);
    }
}

#[test]
fn missing_columns_are_all_named_at_once() {
    let (err, path) = load_broken(|s| s.replace("date,open,high,low,close", "day,open,hi,low,close"));
    assert_names(&err, &path, None, "date, high", "missing column");
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.csv");
    std::fs::write(&empty, "date,open,high,low,close\n").unwrap();
    assert!(matches!(load_ohlcv(&empty), Err(DataError::Empty { .. })));
    assert!(matches!(load_ohlcv(&dir.path().join("nope.csv")), Err(DataError::Io { .. })));
}
