//! Exact's rate limits per (client, division): a minute window up to the next whole minute and a day window up to
//! 00:00 UTC, with the `X-RateLimit-*` headers (reset values in epoch ms). A refused call (429) uses no budget and
//! carries only the headers of the limit that was hit.

use crate::config::SandboxConfig;
use crate::world::World;

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;

pub(crate) type Headers = Vec<(&'static str, String)>;

fn minutely(limit: u32, remaining: u32, reset: i64) -> Headers {
    vec![
        ("X-RateLimit-Minutely-Limit", limit.to_string()),
        ("X-RateLimit-Minutely-Remaining", remaining.to_string()),
        ("X-RateLimit-Minutely-Reset", reset.to_string()),
    ]
}

fn daily(limit: u32, remaining: u32, reset: i64) -> Headers {
    vec![
        ("X-RateLimit-Limit", limit.to_string()),
        ("X-RateLimit-Remaining", remaining.to_string()),
        ("X-RateLimit-Reset", reset.to_string()),
    ]
}

/// Count one call. `Ok(all six headers)` or `Err(headers of the exhausted limit)` for a 429.
pub(crate) fn charge(
    world: &mut World,
    cfg: &SandboxConfig,
    client_id: &str,
    division: u32,
    now_ms: i64,
) -> Result<Headers, Headers> {
    let minute_start = now_ms - now_ms.rem_euclid(MINUTE_MS);
    let day_start = now_ms - now_ms.rem_euclid(DAY_MS);
    let c = world
        .rate
        .entry((client_id.to_string(), division))
        .or_default();
    if c.minute_start_ms != minute_start {
        c.minute_start_ms = minute_start;
        c.minute_used = 0;
    }
    if c.day_start_ms != day_start {
        c.day_start_ms = day_start;
        c.day_used = 0;
    }
    let minute_reset = in_header_units(cfg, minute_start + MINUTE_MS);
    let day_reset = in_header_units(cfg, day_start + DAY_MS);
    if c.day_used >= cfg.daily_limit {
        return Err(daily(cfg.daily_limit, 0, day_reset));
    }
    if c.minute_used >= cfg.minutely_limit {
        return Err(minutely(cfg.minutely_limit, 0, minute_reset));
    }
    c.minute_used += 1;
    c.day_used += 1;
    let mut h = daily(cfg.daily_limit, cfg.daily_limit - c.day_used, day_reset);
    h.extend(minutely(
        cfg.minutely_limit,
        cfg.minutely_limit - c.minute_used,
        minute_reset,
    ));
    Ok(h)
}

/// Headers of a forced minutely 429 (the `RateLimit` fault).
pub(crate) fn spent_minute(cfg: &SandboxConfig, now_ms: i64) -> Headers {
    minutely(
        cfg.minutely_limit,
        0,
        in_header_units(cfg, now_ms - now_ms.rem_euclid(MINUTE_MS) + MINUTE_MS),
    )
}

/// A reset time as the headers carry it: epoch ms, or epoch seconds when that belief is switched off.
fn in_header_units(cfg: &SandboxConfig, ms: i64) -> i64 {
    if cfg.beliefs.reset_in_epoch_ms {
        ms
    } else {
        ms / 1000
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seed::default_app;

    #[test]
    fn windows_are_fixed_and_refusals_are_free() {
        let mut w = World::empty(default_app());
        let cfg = SandboxConfig {
            minutely_limit: 2,
            daily_limit: 3,
            ..SandboxConfig::default()
        };
        let t0 = 1_700_000_080_000; // 40 s into a minute
        assert!(charge(&mut w, &cfg, "c", 1, t0).is_ok());
        assert!(charge(&mut w, &cfg, "c", 1, t0).is_ok());
        let refused = charge(&mut w, &cfg, "c", 1, t0).unwrap_err();
        assert_eq!(refused.len(), 3);
        assert_eq!(refused[2].1, (t0 + 20_000).to_string());
        assert!(
            charge(&mut w, &cfg, "c", 2, t0).is_ok(),
            "another division has its own budget"
        );
        assert!(
            charge(&mut w, &cfg, "c", 1, t0 + 20_000).is_ok(),
            "next minute"
        );
        let refused = charge(&mut w, &cfg, "c", 1, t0 + 80_000).unwrap_err();
        assert_eq!(refused[0].0, "X-RateLimit-Limit", "daily limit hit");
    }
}
