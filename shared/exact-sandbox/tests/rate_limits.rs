//! Rate limits per (client, division): headers on every answer, minutely and daily 429s, windows, budgets.

use std::time::Duration;

use crate::common::*;
use exact_sandbox::{Sandbox, SandboxConfig};

const JOURNALS: &str = "/api/v1/1001/financial/Journals";
const SELECT: &[(&str, &str)] = &[("$select", "Code")];

/// A frozen sandbox at 10 s into a minute of a fixed day.
async fn at_known_time(cfg: SandboxConfig) -> Sandbox {
    let sb = Sandbox::start_with(cfg).await;
    sb.clock().freeze();
    sb.clock()
        .set_ms(1_760_000_010_000 - 1_760_000_010_000 % 60_000 + 10_000);
    sb
}

fn num(r: &Resp, name: &str) -> i64 {
    r.header(name)
        .unwrap_or_else(|| panic!("missing {name}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn every_answer_carries_the_headers_and_remaining_goes_down() {
    let sb = at_known_time(SandboxConfig::default()).await;
    let now = sb.clock().now_ms();
    let api = Api::new(&sb, JAN).await;
    let a = api.get(JOURNALS, SELECT).await;
    let b = api.get(JOURNALS, &[]).await; // a 400 carries them too
    assert_eq!((a.status, b.status), (200, 400));
    assert_eq!(num(&a, "X-RateLimit-Limit"), 5000);
    assert_eq!(num(&a, "X-RateLimit-Minutely-Limit"), 60);
    assert_eq!(num(&a, "X-RateLimit-Remaining"), 4999);
    assert_eq!(num(&b, "X-RateLimit-Remaining"), 4998);
    assert_eq!(num(&a, "X-RateLimit-Minutely-Remaining"), 59);
    assert_eq!(num(&b, "X-RateLimit-Minutely-Remaining"), 58);
    assert_eq!(
        num(&a, "X-RateLimit-Minutely-Reset"),
        now - now % 60_000 + 60_000,
        "next whole minute, epoch ms"
    );
    assert_eq!(
        num(&a, "X-RateLimit-Reset"),
        now - now % 86_400_000 + 86_400_000,
        "next 00:00 UTC"
    );
    assert_eq!(sb.api_calls(1001), 2);
}

#[tokio::test]
async fn the_61st_call_in_a_minute_is_429_with_only_minutely_headers() {
    let sb = at_known_time(SandboxConfig::default()).await;
    let api = Api::new(&sb, JAN).await;
    for _ in 0..60 {
        assert_eq!(api.get(JOURNALS, SELECT).await.status, 200);
    }
    let refused = api.get(JOURNALS, SELECT).await;
    assert_eq!(refused.status, 429);
    assert_eq!(num(&refused, "X-RateLimit-Minutely-Remaining"), 0);
    assert_eq!(num(&refused, "X-RateLimit-Minutely-Limit"), 60);
    assert!(refused.header("X-RateLimit-Minutely-Reset").is_some());
    for daily in [
        "X-RateLimit-Limit",
        "X-RateLimit-Remaining",
        "X-RateLimit-Reset",
    ] {
        assert!(
            refused.header(daily).is_none(),
            "{daily} must be absent on a minutely 429"
        );
    }
    assert!(!refused.message().is_empty());
    assert_eq!(
        sb.api_calls(1001),
        61,
        "the refused call is counted as a call"
    );
    // Another division has its own budget.
    assert_eq!(
        api.get("/api/v1/1002/financial/Journals", SELECT)
            .await
            .status,
        200
    );

    sb.clock().advance(Duration::from_secs(50)); // next whole minute
    let ok = api.get(JOURNALS, SELECT).await;
    assert_eq!(ok.status, 200);
    assert_eq!(num(&ok, "X-RateLimit-Minutely-Remaining"), 59);
    assert_eq!(
        num(&ok, "X-RateLimit-Remaining"),
        5000 - 61,
        "the 429 used no budget"
    );
}

#[tokio::test]
async fn over_the_daily_limit_is_429_with_only_daily_headers_until_midnight() {
    let sb = at_known_time(SandboxConfig {
        daily_limit: 3,
        ..SandboxConfig::default()
    })
    .await;
    let api = Api::new(&sb, TOM).await;
    let path = "/api/v1/3001/financial/Journals";
    for _ in 0..3 {
        assert_eq!(api.get(path, SELECT).await.status, 200);
    }
    let refused = api.get(path, SELECT).await;
    assert_eq!(refused.status, 429);
    assert_eq!(num(&refused, "X-RateLimit-Remaining"), 0);
    assert_eq!(num(&refused, "X-RateLimit-Limit"), 3);
    assert!(refused.header("X-RateLimit-Minutely-Remaining").is_none());
    sb.clock().advance(Duration::from_secs(120));
    assert_eq!(
        api.get(path, SELECT).await.status,
        429,
        "a new minute does not help"
    );
    sb.clock().advance(Duration::from_secs(86_400));
    // The token expired meanwhile; sign in again.
    let api = Api::new(&sb, TOM).await;
    assert_eq!(api.get(path, SELECT).await.status, 200);
}

#[tokio::test]
async fn unauthenticated_calls_carry_no_rate_headers_but_are_recorded() {
    let sb = Sandbox::start().await;
    let mut api = Api::new(&sb, JAN).await;
    api.token = "bogus".into();
    let r = api.get(JOURNALS, SELECT).await;
    assert_eq!(r.status, 401);
    assert!(r.header("X-RateLimit-Remaining").is_none());
    assert_eq!(sb.api_calls(1001), 1);
}
