//! A/B assignment: each account goes to an arm by a stable hash of its id, so it stays on the
//! same arm across calls, restarts and versions while the split is unchanged.

/// FNV-1a, 64 bits: stable across platforms and releases (unlike `std`'s hasher).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// MurmurHash3's 64-bit finaliser: FNV-1a alone mixes short, similar ids (`acct-1`,
/// `acct-2`, ...) poorly in its high bits.
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The position of `account_id` in [0, 1).
pub fn bucket(account_id: &str) -> f64 {
    (fmix64(fnv1a(account_id.as_bytes())) >> 11) as f64 / (1u64 << 53) as f64
}

/// The arm of `account_id` under `split` (arm, weight): weights need not sum to 1, they are
/// normalised; `None` when no weight is positive.
pub fn assign<'a>(account_id: &str, split: &'a [(String, f64)]) -> Option<&'a str> {
    let total: f64 = split.iter().map(|(_, w)| w.max(0.0)).filter(|w| w.is_finite()).sum();
    if total <= 0.0 {
        return None;
    }
    let point = bucket(account_id) * total;
    let mut acc = 0.0;
    for (arm, w) in split {
        let w = if w.is_finite() { w.max(0.0) } else { 0.0 };
        acc += w;
        if point < acc {
            return Some(arm);
        }
    }
    split.iter().rev().find(|(_, w)| *w > 0.0).map(|(a, _)| a.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_its_published_vectors() {
        // From the FNV reference test suite.
        assert_eq!(fnv1a(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn assignment_is_stable_and_follows_the_split() {
        let split = vec![("ewma".to_string(), 0.8), ("model:btc-dvol-har-x".to_string(), 0.2)];
        let arms: Vec<&str> = (0..10_000).map(|i| assign(&format!("acct-{i}"), &split).unwrap()).collect();
        let share = arms.iter().filter(|a| a.starts_with("model")).count() as f64 / arms.len() as f64;
        assert!((share - 0.2).abs() < 0.02, "{share}");
        assert_eq!(assign("acct-42", &split), assign("acct-42", &split));
        assert_eq!(assign("x", &[("a".into(), 0.0)]), None);
        assert_eq!(assign("x", &[("a".into(), 1.0)]), Some("a"));
    }
}
