//! Sampling frequency and time gaps of a series.

use chrono::{Datelike, NaiveDateTime, Weekday};
use serde::Serialize;

const DAY_SECS: i64 = 86_400;

/// How often a series is sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Frequency {
    /// One bar per day; `business_days` when no bar falls on a weekend (exchange-traded
    /// instruments), else every calendar day (crypto).
    Daily {
        /// Weekends are not trading days.
        business_days: bool,
    },
    /// Bars shorter than a day.
    Intraday {
        /// Seconds per bar.
        interval_secs: i64,
    },
}

impl Frequency {
    /// Bars per year: 365 for calendar-daily, 252 for business-daily, scaled for intraday.
    pub fn periods_per_year(&self) -> f64 {
        match *self {
            Frequency::Daily { business_days: false } => 365.0,
            Frequency::Daily { business_days: true } => 252.0,
            Frequency::Intraday { interval_secs } => 365.0 * DAY_SECS as f64 / interval_secs as f64,
        }
    }

    /// A few words for people.
    pub fn describe(&self) -> String {
        match *self {
            Frequency::Daily { business_days: false } => "daily (every calendar day)".into(),
            Frequency::Daily { business_days: true } => "daily (business days)".into(),
            Frequency::Intraday { interval_secs } if interval_secs % 3600 == 0 => {
                format!("intraday ({}-hour bars)", interval_secs / 3600)
            }
            Frequency::Intraday { interval_secs } => format!("intraday ({interval_secs}-second bars)"),
        }
    }
}

/// One stretch of missing bars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Gap {
    /// Last bar before the gap.
    pub after: NaiveDateTime,
    /// First bar after the gap.
    pub before: NaiveDateTime,
    /// Bars missing in between.
    pub missing: usize,
}

/// Time gaps are allowed in the data; this says how many and how large.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub struct GapReport {
    /// Number of gaps.
    pub count: usize,
    /// Bars missing in all gaps together.
    pub missing_bars: usize,
    /// The gap with the most missing bars.
    pub largest: Option<Gap>,
}

impl GapReport {
    /// One line for people.
    pub fn describe(&self) -> String {
        match self.largest {
            None => "no gaps".into(),
            Some(g) => format!(
                "{} gap(s), {} bar(s) missing; largest: {} bar(s) between {} and {}",
                self.count, self.missing_bars, g.missing, g.after, g.before
            ),
        }
    }
}

/// Infers the frequency (the most common spacing) and lists the gaps of sorted `timestamps`.
/// On a business-day calendar weekends are not gaps; holidays are (they are not known here).
pub fn detect(timestamps: &[NaiveDateTime]) -> (Frequency, GapReport) {
    let spacings: Vec<i64> = timestamps.windows(2).map(|w| (w[1] - w[0]).num_seconds()).collect();
    let mut counts = std::collections::HashMap::<i64, usize>::new();
    for s in &spacings {
        *counts.entry(*s).or_default() += 1;
    }
    // Most common spacing; ties broken towards the shorter one.
    let interval = counts
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
        .map(|(s, _)| *s)
        .unwrap_or(DAY_SECS);
    let frequency = if interval >= DAY_SECS {
        let weekend = timestamps.iter().any(|t| matches!(t.weekday(), Weekday::Sat | Weekday::Sun));
        Frequency::Daily { business_days: !weekend && timestamps.len() > 5 }
    } else {
        Frequency::Intraday { interval_secs: interval.max(1) }
    };
    let mut report = GapReport::default();
    for w in timestamps.windows(2) {
        let missing = match frequency {
            Frequency::Daily { business_days: false } => ((w[1] - w[0]).num_days() - 1).max(0) as usize,
            Frequency::Daily { business_days: true } => {
                let mut day = w[0].date();
                let mut n = 0;
                while let Some(next) = day.succ_opt() {
                    if next >= w[1].date() {
                        break;
                    }
                    if !matches!(next.weekday(), Weekday::Sat | Weekday::Sun) {
                        n += 1;
                    }
                    day = next;
                }
                n
            }
            Frequency::Intraday { interval_secs } => {
                (((w[1] - w[0]).num_seconds() / interval_secs) - 1).max(0) as usize
            }
        };
        if missing > 0 {
            report.count += 1;
            report.missing_bars += missing;
            if report.largest.is_none_or(|g| missing > g.missing) {
                report.largest = Some(Gap { after: w[0], before: w[1], missing });
            }
        }
    }
    (frequency, report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::table::parse_timestamp;

    fn ts(v: &[&str]) -> Vec<NaiveDateTime> {
        v.iter().map(|s| parse_timestamp(s).unwrap()).collect()
    }

    #[test]
    fn business_days_do_not_count_weekends_as_gaps() {
        // Thu, Fri, Mon, Tue, (Wed missing) Thu, Fri.
        let t = ts(&["2024-01-04", "2024-01-05", "2024-01-08", "2024-01-09", "2024-01-11", "2024-01-12"]);
        let (f, g) = detect(&t);
        assert_eq!(f, Frequency::Daily { business_days: true });
        assert_eq!(g.count, 1);
        assert_eq!(g.largest.unwrap().missing, 1);
    }

    #[test]
    fn intraday_gaps_count_missing_intervals() {
        let t = ts(&["2024-01-01T00:00:00", "2024-01-01T02:00:00", "2024-01-01T04:00:00", "2024-01-01T10:00:00", "2024-01-01T12:00:00"]);
        let (f, g) = detect(&t);
        assert_eq!(f, Frequency::Intraday { interval_secs: 7200 });
        assert_eq!((g.count, g.missing_bars), (1, 2));
        assert_eq!(f.periods_per_year(), 365.0 * 12.0);
    }
}
