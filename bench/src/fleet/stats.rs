//! Small pure helpers of the fleet figures: how connections spread over administrations, percentiles, and the
//! gaps between a connection's checks.

use std::time::Duration;

use crate::rng::Rng;

/// `total` connections over `admins` administrations, each getting between `min` and `max` (inclusive): every
/// administration starts with `min`, the rest is dealt one by one to random administrations that still have room.
/// When `total` allows it, one administration gets exactly `min` and one exactly `max`, so both extremes are in the
/// fleet. `None` when `total` does not fit (`admins * min > total` or `admins * max < total`).
pub fn spread(
    total: usize,
    admins: usize,
    min: usize,
    max: usize,
    rng: &mut Rng,
) -> Option<Vec<usize>> {
    if admins == 0 || min > max || admins * min > total || admins * max < total {
        return None;
    }
    let mut out = vec![min; admins];
    let mut left = total - admins * min;
    // The extremes first: the last administration full, the first one left at `min`.
    if admins >= 2 && left >= max - min {
        out[admins - 1] = max;
        left -= max - min;
    }
    let open_from = usize::from(admins >= 2);
    let mut open: Vec<usize> = (open_from..admins).filter(|&i| out[i] < max).collect();
    while left > 0 {
        if open.is_empty() {
            // Only the administration kept at `min` has room (and `total` fits, so it takes the rest).
            out[0] += left.min(max - out[0]);
            break;
        }
        let k = rng.below(open.len());
        let i = open[k];
        out[i] += 1;
        left -= 1;
        if out[i] == max {
            open.swap_remove(k);
        }
    }
    Some(out)
}

/// The `p`-th percentile (0–100) of `sorted` (ascending), nearest-rank: the smallest value with at least `p` % of
/// the values at or below it. `None` for no values.
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The longest wait between a connection's checks (epoch ms, ascending) within `[start, end]`: between
/// consecutive checks, and from the last check to `end`. The time before the first check is not counted (what
/// happened before the measured span is unknown) unless there is no check at all, when the whole span is.
pub fn max_gap_ms(checks: &[i64], start: i64, end: i64) -> i64 {
    let Some(last) = checks.last() else {
        return end - start;
    };
    let between = checks.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    between.max(end - last)
}

/// How many of the `period`-long windows of `[start, end)` (aligned on `start`) hold at least one check, and how
/// many windows there are (a last window shorter than `period` counts when it is at least half a period long).
pub fn windows_with_a_check(checks: &[i64], start: i64, end: i64, period: i64) -> (usize, usize) {
    if period <= 0 || end <= start {
        return (0, 0);
    }
    let span = end - start;
    let mut windows = usize::try_from(span / period).unwrap_or(0);
    if span % period >= period / 2 {
        windows += 1;
    }
    let mut hit = vec![false; windows];
    for &t in checks {
        if t < start || t >= end {
            continue;
        }
        if let Some(h) = usize::try_from((t - start) / period)
            .ok()
            .and_then(|i| hit.get_mut(i))
        {
            *h = true;
        }
    }
    (hit.iter().filter(|h| **h).count(), windows)
}

/// `ms` as `m:ss.s` (minutes may exceed 59).
pub fn min_sec(ms: i64) -> String {
    let tenths = ms.max(0) / 100;
    let s = tenths / 10;
    format!("{}:{:02}.{}", s / 60, s % 60, tenths % 10)
}

/// `n` with thousands separators: `10000` → `10,000`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_hits_the_total_within_bounds_with_both_extremes() {
        let mut rng = Rng::new(3);
        let s = spread(10_000, 2_000, 1, 10, &mut rng).unwrap();
        assert_eq!(s.iter().sum::<usize>(), 10_000);
        assert!(s.iter().all(|&n| (1..=10).contains(&n)));
        assert!(s.contains(&1) && s.contains(&10));
        let small = spread(7, 3, 1, 10, &mut rng).unwrap();
        assert_eq!(small.iter().sum::<usize>(), 7);
        assert!(small.contains(&1));
        assert_eq!(spread(30, 3, 1, 10, &mut rng).unwrap(), [10, 10, 10]);
        assert!(spread(31, 3, 1, 10, &mut rng).is_none());
        assert!(spread(2, 3, 1, 10, &mut rng).is_none());
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 50.0), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&v, 99.0), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&v, 100.0), Some(Duration::from_millis(100)));
        assert_eq!(percentile(&v[..1], 99.0), Some(Duration::from_millis(1)));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn gaps_count_between_checks_and_to_the_end() {
        assert_eq!(max_gap_ms(&[100, 130, 190], 0, 200), 60);
        assert_eq!(max_gap_ms(&[100, 110], 0, 200), 90, "the tail counts");
        assert_eq!(
            max_gap_ms(&[], 0, 200),
            200,
            "never checked: the whole span"
        );
        assert_eq!(
            max_gap_ms(&[150], 0, 160),
            10,
            "before the first check is unknown"
        );
    }

    #[test]
    fn windows_are_aligned_on_the_start() {
        // Three whole windows of 30 from 0 to 90; checks in the first and the last.
        assert_eq!(windows_with_a_check(&[5, 70, 89], 0, 90, 30), (2, 3));
        // A short last window (10 of 30) does not count; one of 20 does.
        assert_eq!(windows_with_a_check(&[5, 35], 0, 70, 30), (2, 2));
        assert_eq!(windows_with_a_check(&[5, 35, 65], 0, 80, 30), (3, 3));
        assert_eq!(min_sec(1_805_000), "30:05.0");
        assert_eq!(
            [0, 999, 1_000, 53_707, 1_000_000].map(thousands),
            ["0", "999", "1,000", "53,707", "1,000,000"]
        );
        assert_eq!(min_sec(1_800_450), "30:00.4");
    }
}
