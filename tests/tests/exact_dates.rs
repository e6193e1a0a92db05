//! Exact's `/Date(ms)/` values are the Amsterdam wall clock (see `exact::parse_exact_date`): the sandbox writes
//! them that way over HTTP and the connector reads them back as the UTC instant, across the DST edges (summer
//! +2 h, winter +1 h). The paid-at round trip through webhooks and reconciliation is in the `paid` tests.

use e2e::Harness;
use serde_json::Value;

const JAN: &str = "jan@jansen.example";

fn utc_ms(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap()
        .timestamp_millis()
}

/// Creates an account at the sandbox's `now` and reads its `Created` over HTTP, as Exact sends it.
async fn created_as_sent(h: &Harness, token: &str, name: &str) -> String {
    let base = format!("{}/api/v1/1001/crm/Accounts", h.sandbox.base_url());
    let http = reqwest::Client::new();
    let resp = http
        .post(&base)
        .bearer_auth(token)
        .header("accept", "application/json")
        .json(&serde_json::json!({"Name": name, "Status": "C"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let resp = http
        .get(&base)
        .bearer_auth(token)
        .header("accept", "application/json")
        .query(&[
            ("$filter", format!("Name eq '{name}'")),
            ("$select", "ID,Created".to_owned()),
        ])
        .send()
        .await
        .unwrap();
    let v: Value = resp.json().await.unwrap();
    v["d"]["results"][0]["Created"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn exact_dates_are_amsterdam_wall_clock_both_ways_across_dst() {
    let h = Harness::memory().await;
    let token = h.sandbox.issue_tokens(JAN).access_token;
    let clock = h.sandbox.clock();
    clock.freeze();
    for (i, (now, wall)) in [
        // The recorded case: 14:31 GMT in summer is sent as 16:31.
        ("2025-07-01T14:31:00Z", "2025-07-01T16:31:00Z"),
        ("2025-01-15T14:31:00Z", "2025-01-15T15:31:00Z"),
        // Spring forward, 30 March 2025: the last winter minute and the first summer one.
        ("2025-03-30T00:59:00Z", "2025-03-30T01:59:00Z"),
        ("2025-03-30T01:00:00Z", "2025-03-30T03:00:00Z"),
        // Fall back, 26 October 2025: the first 02:30 (summer time) and after the change.
        ("2025-10-26T00:30:00Z", "2025-10-26T02:30:00Z"),
        ("2025-10-26T02:00:00Z", "2025-10-26T03:00:00Z"),
    ]
    .into_iter()
    .enumerate()
    {
        clock.set_ms(utc_ms(now));
        let sent = created_as_sent(&h, &token, &format!("Dates {i}")).await;
        assert_eq!(sent, format!("/Date({})/", utc_ms(wall)), "{now}");
        assert_eq!(
            exact::parse_exact_date(&sent).unwrap().timestamp_millis(),
            utc_ms(now),
            "read back: {now}"
        );
    }
    // The second 02:30 of the fall-back night is sent the same as the first: Exact's format cannot tell them
    // apart, and it is read as the first (summer time).
    clock.set_ms(utc_ms("2025-10-26T01:30:00Z"));
    let sent = created_as_sent(&h, &token, "Dates repeated hour").await;
    assert_eq!(sent, format!("/Date({})/", utc_ms("2025-10-26T02:30:00Z")));
    assert_eq!(
        exact::parse_exact_date(&sent).unwrap().timestamp_millis(),
        utc_ms("2025-10-26T00:30:00Z")
    );
}
