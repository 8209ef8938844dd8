//! Guard rails between a forward-looking margin and what is posted: a cap and floors against
//! the reactive arm, limits on how fast margin may rise or fall per update (anti-procyclicality),
//! and maintenance margin as a fraction of initial margin. Every rule that moved the number is
//! reported, so a response can say why.

use serde::Serialize;

use crate::error::{CoreError, Result};

/// The configurable rails.
/// Read from a service config with every field optional (the defaults fill in).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GuardRails {
    /// Never below this multiple of the reactive arm's IM (e.g. 0.8).
    pub reactive_floor: f64,
    /// Never below this rate times the gross notional (a static minimum, e.g. 0.02).
    pub static_floor_rate: f64,
    /// Never above this multiple of the reactive arm's IM (e.g. 3).
    pub cap: f64,
    /// Largest relative rise per update (e.g. 0.25); `None`: unlimited.
    pub max_rise: Option<f64>,
    /// Largest relative fall per update (e.g. 0.10); `None`: unlimited.
    pub max_fall: Option<f64>,
    /// Maintenance margin as a fraction of IM (e.g. 0.5).
    pub maintenance_fraction: f64,
}

impl Default for GuardRails {
    /// Floor at 80% of reactive and 2% of gross notional, cap at 3× reactive, rises limited to
    /// +25% per update (EMIR Art. 28-style speed limit) and falls to −10% (margin released
    /// slowly after a storm), maintenance at half of initial margin (the convention of crypto
    /// perpetual venues).
    fn default() -> Self {
        Self { reactive_floor: 0.8, static_floor_rate: 0.02, cap: 3.0, max_rise: Some(0.25), max_fall: Some(0.10), maintenance_fraction: 0.5 }
    }
}

/// A rule that changed the margin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Guard {
    /// Capped at `cap ×` reactive.
    Cap,
    /// Raised to `reactive_floor ×` reactive.
    ReactiveFloor,
    /// Raised to the static minimum.
    StaticFloor,
    /// Held to the largest rise per update.
    MaxRise,
    /// Held to the largest fall per update.
    MaxFall,
}

impl Guard {
    /// Its name as serialised (`cap`, `reactive_floor`...), for responses, audit lines and logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cap => "cap",
            Self::ReactiveFloor => "reactive_floor",
            Self::StaticFloor => "static_floor",
            Self::MaxRise => "max_rise",
            Self::MaxFall => "max_fall",
        }
    }
}

/// The posted margin.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Guarded {
    /// Initial margin.
    pub initial_margin: f64,
    /// Maintenance margin.
    pub maintenance_margin: f64,
    /// `initial_margin / reactive IM` (1 when the reactive IM is 0).
    pub multiplier: f64,
    /// Rules that moved the number, in the order applied.
    pub applied: Vec<Guard>,
}

fn invalid(field: &'static str, value: f64) -> CoreError {
    CoreError::InvalidInput { field, index: 0, value, reason: "must be finite and ≥ 0" }
}

/// Applies `rails` to the forward IM: cap, floors, then the speed limits against the previous
/// posted IM, then the floors again (a floor is a hard minimum and wins over the fall limit).
pub fn apply(forward_im: f64, reactive_im: f64, gross_notional: f64, previous_im: Option<f64>, rails: &GuardRails) -> Result<Guarded> {
    for (field, v) in [("forward_im", forward_im), ("reactive_im", reactive_im), ("gross_notional", gross_notional), ("previous_im", previous_im.unwrap_or(0.0))] {
        if !(v.is_finite() && v >= 0.0) {
            return Err(invalid(field, v));
        }
    }
    let rails_ok = rails.reactive_floor >= 0.0
        && rails.static_floor_rate >= 0.0
        && rails.cap >= rails.reactive_floor
        && rails.max_rise.is_none_or(|r| r >= 0.0)
        && rails.max_fall.is_none_or(|f| (0.0..=1.0).contains(&f))
        && (0.0..=1.0).contains(&rails.maintenance_fraction);
    if !rails_ok {
        return Err(CoreError::InvalidParameter { name: "guard rails", value: rails.cap, reason: "need floors ≥ 0, cap ≥ reactive floor, rises ≥ 0, falls and maintenance fraction in [0, 1]" });
    }
    let mut applied = Vec::new();
    let mut im = forward_im;
    let cap = rails.cap * reactive_im;
    if im > cap {
        im = cap;
        applied.push(Guard::Cap);
    }
    let floors = |im: f64, applied: &mut Vec<Guard>| -> f64 {
        let mut im = im;
        if im < rails.reactive_floor * reactive_im {
            im = rails.reactive_floor * reactive_im;
            applied.push(Guard::ReactiveFloor);
        }
        if im < rails.static_floor_rate * gross_notional {
            im = rails.static_floor_rate * gross_notional;
            applied.push(Guard::StaticFloor);
        }
        im
    };
    im = floors(im, &mut applied);
    if let Some(previous) = previous_im.filter(|p| *p > 0.0) {
        if let Some(rise) = rails.max_rise
            && im > previous * (1.0 + rise)
        {
            im = previous * (1.0 + rise);
            applied.push(Guard::MaxRise);
        }
        if let Some(fall) = rails.max_fall
            && im < previous * (1.0 - fall)
        {
            im = previous * (1.0 - fall);
            applied.push(Guard::MaxFall);
        }
        im = floors(im, &mut applied);
    }
    Ok(Guarded {
        initial_margin: im,
        maintenance_margin: rails.maintenance_fraction * im,
        multiplier: if reactive_im > 0.0 { im / reactive_im } else { 1.0 },
        applied,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guards_name_is_its_serialised_form() {
        for g in [Guard::Cap, Guard::ReactiveFloor, Guard::StaticFloor, Guard::MaxRise, Guard::MaxFall] {
            assert_eq!(serde_json::to_value(g).unwrap(), g.name());
        }
    }

    #[test]
    fn each_rail_moves_the_margin_and_says_so() {
        let rails = GuardRails::default();
        // Inside every rail: unchanged.
        let g = apply(1_200.0, 1_000.0, 10_000.0, Some(1_100.0), &rails).unwrap();
        assert_eq!((g.initial_margin, g.applied.clone()), (1_200.0, vec![]));
        assert_eq!(g.maintenance_margin, 600.0);
        assert!((g.multiplier - 1.2).abs() < 1e-12);
        // Cap at 3× reactive.
        assert_eq!(apply(5_000.0, 1_000.0, 10_000.0, None, &rails).unwrap().applied, vec![Guard::Cap]);
        // Floors: 80% of reactive, then 2% of gross notional.
        let g = apply(500.0, 1_000.0, 10_000.0, None, &rails).unwrap();
        assert_eq!((g.initial_margin, g.applied), (800.0, vec![Guard::ReactiveFloor]));
        let g = apply(100.0, 100.0, 100_000.0, None, &rails).unwrap();
        assert_eq!((g.initial_margin, g.applied), (2_000.0, vec![Guard::StaticFloor]));
        // Speed limits against the previous posted margin.
        let g = apply(2_000.0, 1_000.0, 10_000.0, Some(1_000.0), &rails).unwrap();
        assert_eq!((g.initial_margin, g.applied), (1_250.0, vec![Guard::MaxRise]));
        let g = apply(850.0, 1_000.0, 10_000.0, Some(1_000.0), &rails).unwrap();
        assert_eq!((g.initial_margin, g.applied), (900.0, vec![Guard::MaxFall]));
    }

    #[test]
    fn the_floor_wins_over_the_rise_limit() {
        // Reactive jumps: the rise limit would hold 1,250, the floor demands 80% of 2,000.
        let g = apply(1_500.0, 2_000.0, 10_000.0, Some(1_000.0), &GuardRails::default()).unwrap();
        assert_eq!(g.initial_margin, 1_600.0);
        assert_eq!(g.applied, vec![Guard::ReactiveFloor, Guard::MaxRise, Guard::ReactiveFloor]);
    }

    #[test]
    fn bad_numbers_are_refused() {
        let rails = GuardRails::default();
        assert!(apply(f64::NAN, 1.0, 1.0, None, &rails).unwrap_err().to_string().contains("forward_im"));
        assert!(apply(1.0, -1.0, 1.0, None, &rails).unwrap_err().to_string().contains("reactive_im"));
        let bad = GuardRails { maintenance_fraction: 1.5, ..rails };
        assert!(apply(1.0, 1.0, 1.0, None, &bad).is_err());
    }
}
