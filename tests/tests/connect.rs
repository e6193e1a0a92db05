//! Connecting, status, disconnect, token access and the keep-alive, end to end through the handlers.

use e2e::Harness;
use serde_json::json;

#[tokio::test]
async fn connect_two_countries_on_moto_stores_everything() {
    let h = Harness::moto().await;
    // Jan has 1001 and 1002 and had 1002 selected in Exact.
    let loc = h.connect("bu_nl", "jan@jansen.example", "nl").await;
    assert_eq!(
        loc,
        "https://psa.example/settings?exact=connected&division=1002"
    );
    let loc = h.connect("bu_be", "claire@dupont.example", "be").await;
    assert_eq!(
        loc,
        "https://psa.example/settings?exact=connected&division=2001"
    );

    let (status, body) = h.get("/connections/bu_nl/exact").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "connected");
    assert_eq!(body["country"], "nl");
    assert_eq!(body["division"], 1002);
    assert_eq!(body["division_name"], "Jansen Holding B.V.");
    assert_eq!(body["connected_user"]["email"], "jan@jansen.example");
    assert!(!body.to_string().contains("token"), "{body}");
    let (_, be) = h.get("/connections/bu_be/exact").await;
    assert_eq!(
        (be["country"].clone(), be["division"].clone()),
        (json!("be"), json!(2001))
    );

    // Tokens in Secrets Manager (moto), under the prefix.
    let (clients, _, prefix) = h.aws.as_ref().unwrap();
    let secret = clients
        .secrets()
        .get_secret_value()
        .secret_id(format!("{prefix}bu_nl"))
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(secret.secret_string().unwrap()).unwrap();
    assert_eq!(v["division"], 1002);
    assert!(!v["refresh_token"].as_str().unwrap().is_empty());

    // Webhook subscriptions in the sandbox, for the selected division only, all five topics.
    let topics = |d: u32| {
        let w = h.sandbox.world();
        let mut t: Vec<String> = w
            .division(d)
            .map(|div| {
                div.webhook_subscriptions
                    .iter()
                    .map(|s| s.topic.clone())
                    .collect()
            })
            .unwrap_or_default();
        t.sort();
        t
    };
    assert_eq!(
        topics(1002),
        vec![
            "BankEntries",
            "CashEntries",
            "GeneralJournalEntries",
            "SalesEntries",
            "SalesInvoices"
        ]
    );
    assert!(topics(1001).is_empty());
    assert_eq!(topics(2001).len(), 5);
    assert_eq!(body["webhook_topics"].as_array().unwrap().len(), 5);
}

fn conn(s: &str) -> mapping::ConnectionId {
    mapping::ConnectionId::parse(s).unwrap()
}

/// The `state` query value of a URL.
fn state_of(url: &str) -> String {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .unwrap()
}

fn replace_state(url: &str, state: &str) -> String {
    let mut u = url::Url::parse(url).unwrap();
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" {
                state.to_owned()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    u.query_pairs_mut().clear().extend_pairs(pairs);
    u.to_string()
}

async fn nothing_stored(h: &Harness, c: &str) {
    let (status, body) = h.get(&format!("/connections/{c}/exact")).await;
    assert_eq!(status, 200);
    assert_eq!(body["state"], "not_connected", "{body}");
    assert!(
        connector::tokens::current(&h.app, &conn(c))
            .await
            .unwrap()
            .is_none(),
        "no tokens for {c}"
    );
}

#[tokio::test]
async fn bad_states_are_refused_and_nothing_is_stored() {
    let h = Harness::moto().await;

    // Missing state.
    let (status, _) = h
        .follow_callback(&h.url("/exact/oauth/callback?code=abc"))
        .await;
    assert_eq!(status, 400);

    // Tampered state (one character changed): unknown.
    let url = h.authorize("bu_t", "nl").await;
    let back = h.sandbox.consent(&url, "jan@jansen.example").await.unwrap();
    let st = state_of(&back);
    let mut tampered = st.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'a' { 'b' } else { 'a' });
    let (status, loc) = h.follow_callback(&replace_state(&back, &tampered)).await;
    assert_eq!((status, loc), (400, None));
    nothing_stored(&h, "bu_t").await;

    // Replay: the first use connects, the second is refused (and changes nothing).
    let (status, loc) = h.follow_callback(&back).await;
    assert_eq!(status, 302);
    assert!(loc.unwrap().contains("exact=connected"));
    let calls_before = h.sandbox.token_calls();
    let (status, _) = h.follow_callback(&back).await;
    assert_eq!(status, 400, "a used state is refused");
    assert_eq!(
        h.sandbox.token_calls(),
        calls_before,
        "no code exchange on a replay"
    );

    // A state belongs to one connection: consuming bu_a's state never touches bu_b.
    let url_a = h.authorize("bu_a", "nl").await;
    let _url_b = h.authorize("bu_b", "nl").await;
    let back_a = h
        .sandbox
        .consent(&url_a, "jan@jansen.example")
        .await
        .unwrap();
    let (status, _) = h.follow_callback(&back_a).await;
    assert_eq!(status, 302);
    nothing_stored(&h, "bu_b").await;

    // Expired: 10 minutes is the limit.
    let url = h.authorize("bu_e", "nl").await;
    let back = h.sandbox.consent(&url, "jan@jansen.example").await.unwrap();
    h.sandbox
        .clock()
        .advance(std::time::Duration::from_secs(601));
    let (status, _) = h.follow_callback(&back).await;
    assert_eq!(status, 400);
    nothing_stored(&h, "bu_e").await;
}

#[tokio::test]
async fn denied_consent_redirects_with_denied() {
    let h = Harness::memory().await;
    let url = h.authorize("bu_d", "nl").await;
    let st = state_of(&url);
    let (status, loc) = h
        .follow_callback(&h.url(&format!(
            "/exact/oauth/callback?error=access_denied&state={st}"
        )))
        .await;
    assert_eq!(status, 302);
    assert_eq!(
        loc.as_deref(),
        Some("https://psa.example/settings?exact=denied")
    );
    nothing_stored(&h, "bu_d").await;
}

#[tokio::test]
async fn authorize_validates_its_input() {
    let h = Harness::memory().await;
    let cases = [
        (
            json!({"country": "gb", "return_url": "https://psa.example/"}),
            "country",
        ),
        (json!({"return_url": "https://psa.example/"}), "country"),
        (
            json!({"country": "nl", "return_url": "http://psa.example/"}),
            "return_url",
        ),
        (json!({"country": "nl"}), "return_url"),
        (
            json!({"country": 7, "return_url": "https://psa.example/"}),
            "country",
        ),
    ];
    for (body, field) in cases {
        let (status, b) = h.post("/connections/bu_1/exact/authorize", &body).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(b["error"]["field"], field, "{b}");
    }
    let (status, b) = h
        .post(
            "/connections/bad%20id/exact/authorize",
            &json!({"country": "nl", "return_url": "https://x.example/"}),
        )
        .await;
    assert_eq!(
        (status, b["error"]["field"].clone()),
        (400, json!("connection_id"))
    );
    // The authorize URL is the country's host with the app's parameters.
    let url = h.authorize("bu_1", "be").await;
    let u = url::Url::parse(&url).unwrap();
    assert_eq!(u.path(), "/api/oauth2/auth");
    let q: std::collections::HashMap<_, _> = u.query_pairs().into_owned().collect();
    assert_eq!(q["client_id"], h.sandbox.client_id());
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["redirect_uri"], h.url("/exact/oauth/callback"));
    assert_eq!(q["state"].len(), 64);
    // Without the key: 401.
    let resp = h
        .http
        .post(h.url("/connections/bu_1/exact/authorize"))
        .json(&json!({"country": "nl", "return_url": "https://x.example/"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
}

/// Sixteen requests on an expired token: one refresh, sixteen working tokens, still connected.
async fn sixteen_on_an_expired_token(h: Harness) {
    h.connect("bu_1", "jan@jansen.example", "nl").await;
    h.sandbox
        .clock()
        .advance(std::time::Duration::from_secs(700));
    let before = h.sandbox.token_calls();
    let c = conn("bu_1");
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let app = h.app.clone();
            let c = c.clone();
            tokio::spawn(async move {
                let s = connector::tokens::session(&app, &c).await.expect("session");
                s.exact
                    .division_info(s.exact.division())
                    .await
                    .map(|d| d.is_some())
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), Ok(true), "every token works");
    }
    assert_eq!(h.sandbox.token_calls() - before, 1, "exactly one refresh");
    let (_, body) = h.get("/connections/bu_1/exact").await;
    assert_eq!(body["state"], "connected");
}

#[tokio::test]
async fn sixteen_concurrent_token_requests_refresh_once_memory() {
    sixteen_on_an_expired_token(Harness::memory().await).await;
}

#[tokio::test]
async fn sixteen_concurrent_token_requests_refresh_once_moto() {
    sixteen_on_an_expired_token(Harness::moto().await).await;
}

#[tokio::test]
async fn a_refused_refresh_marks_needs_reconnect() {
    let h = Harness::moto().await;
    h.connect("bu_1", "jan@jansen.example", "nl").await;
    // Someone else used our refresh token (single use): the stored one is now dead at Exact.
    let stored = connector::tokens::current(&h.app, &conn("bu_1"))
        .await
        .unwrap()
        .unwrap();
    h.sandbox
        .clock()
        .advance(std::time::Duration::from_secs(700));
    let auth = h.app.auth(&h.api.base_url(), &exact::CallStats::new());
    auth.refresh(mapping::Country::Nl, &stored.refresh_token)
        .await
        .expect("stolen refresh");

    let err = connector::tokens::session(&h.app, &conn("bu_1"))
        .await
        .err()
        .unwrap();
    assert_eq!((err.status, err.code), (409, "needs_reconnect"));
    let before = h.sandbox.token_calls();
    let (_, body) = h.get("/connections/bu_1/exact").await;
    assert_eq!(body["state"], "needs_reconnect");
    assert_eq!(body["needs_reconnect"], true);
    // Not retried: the next request answers 409 without calling Exact.
    let err = connector::tokens::session(&h.app, &conn("bu_1"))
        .await
        .err()
        .unwrap();
    assert_eq!(err.code, "needs_reconnect");
    assert_eq!(h.sandbox.token_calls(), before);
    // Reconnecting heals it.
    let loc = h.connect("bu_1", "jan@jansen.example", "nl").await;
    assert!(loc.contains("exact=connected"));
    let (_, body) = h.get("/connections/bu_1/exact").await;
    assert_eq!(body["state"], "connected");
}

/// `bu_idle` connected 8 days ago (due a keep-alive refresh), `bu_fresh` now; answers bu_idle's tokens as they are.
async fn idle_and_fresh(h: &Harness) -> store::TokenRecord {
    h.connect("bu_idle", "jan@jansen.example", "nl").await;
    h.sandbox
        .clock()
        .advance(std::time::Duration::from_secs(8 * 24 * 3600));
    h.connect("bu_fresh", "claire@dupont.example", "be").await;
    connector::tokens::current(&h.app, &conn("bu_idle"))
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn keep_alive_refreshes_idle_connections_only() {
    let h = Harness::moto().await;
    let idle_before = idle_and_fresh(&h).await;
    let fresh_before = connector::tokens::current(&h.app, &conn("bu_fresh"))
        .await
        .unwrap()
        .unwrap();
    let calls = h.sandbox.token_calls();

    let report = psa_exact_local::run_job(&h.app, "keep-alive")
        .await
        .unwrap();
    assert_eq!(report["refreshed"], json!(["bu_idle"]), "{report}");
    assert_eq!(report["fresh"], 1);
    assert_eq!(report["failed"], json!([]));
    assert_eq!(h.sandbox.token_calls() - calls, 1);
    let idle_after = connector::tokens::current(&h.app, &conn("bu_idle"))
        .await
        .unwrap()
        .unwrap();
    let fresh_after = connector::tokens::current(&h.app, &conn("bu_fresh"))
        .await
        .unwrap()
        .unwrap();
    assert!(idle_after.last_refresh_at > idle_before.last_refresh_at);
    assert_eq!(fresh_after.last_refresh_at, fresh_before.last_refresh_at);
    // The refreshed pair works.
    let s = connector::tokens::session(&h.app, &conn("bu_idle"))
        .await
        .unwrap();
    assert!(
        s.exact
            .division_info(s.exact.division())
            .await
            .unwrap()
            .is_some()
    );
    // Run again right away: nothing to do.
    let report = psa_exact_local::run_job(&h.app, "keep-alive")
        .await
        .unwrap();
    assert_eq!(report["refreshed"], json!([]));
}

#[tokio::test]
async fn disconnect_removes_subscriptions_and_tokens_and_is_idempotent() {
    let h = Harness::moto().await;
    h.connect("bu_1", "jan@jansen.example", "nl").await;
    let subs = |d: u32| {
        h.sandbox
            .world()
            .division(d)
            .map(|x| x.webhook_subscriptions.len())
            .unwrap_or(0)
    };
    assert_eq!(subs(1002), 5);
    for _ in 0..2 {
        let (status, _, body) = h
            .call(reqwest::Method::DELETE, "/connections/bu_1/exact", None)
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["state"], "disconnected");
    }
    assert_eq!(subs(1002), 0);
    assert!(
        connector::tokens::current(&h.app, &conn("bu_1"))
            .await
            .unwrap()
            .is_none()
    );
    let err = connector::tokens::session(&h.app, &conn("bu_1"))
        .await
        .err()
        .unwrap();
    assert_eq!((err.status, err.code), (409, "not_connected"));
    let (status, _, _) = h
        .call(reqwest::Method::DELETE, "/connections/nobody/exact", None)
        .await;
    assert_eq!(status, 404);
    // Reconnect after a disconnect (the secret is restored from its recovery window).
    let loc = h.connect("bu_1", "jan@jansen.example", "nl").await;
    assert!(loc.contains("exact=connected"));
    assert_eq!(subs(1002), 5);
}

#[tokio::test]
async fn reconnect_to_another_division_moves_everything() {
    let h = Harness::memory().await;
    h.connect("bu_1", "jan@jansen.example", "nl").await;
    // Jan switches to 1001 in Exact and connects again.
    h.sandbox
        .world()
        .users
        .iter_mut()
        .find(|u| u.login == "jan@jansen.example")
        .unwrap()
        .current_division = 1001;
    let loc = h.connect("bu_1", "jan@jansen.example", "nl").await;
    assert!(loc.ends_with("division=1001"), "{loc}");
    let subs = |d: u32| {
        h.sandbox
            .world()
            .division(d)
            .map(|x| x.webhook_subscriptions.len())
            .unwrap_or(0)
    };
    assert_eq!((subs(1001), subs(1002)), (5, 0));
    let t = connector::tokens::current(&h.app, &conn("bu_1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(t.division.get(), 1001);
    let d1001 = mapping::Division::new(1001).unwrap();
    let d1002 = mapping::Division::new(1002).unwrap();
    assert_eq!(
        h.app.state.connections_for_division(d1001).await.unwrap(),
        vec![conn("bu_1")]
    );
    assert!(
        h.app
            .state
            .connections_for_division(d1002)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn with_the_jobs_queue_the_keep_alive_queues_each_due_connection_and_refreshes_it_from_the_queue()
 {
    let h = Harness::start(e2e::Options {
        backend: e2e::Backend::Moto,
        jobs_queue: true,
        ..e2e::Options::default()
    })
    .await;
    let idle_before = idle_and_fresh(&h).await;
    let calls = h.sandbox.token_calls();

    let report = psa_exact_local::run_job(&h.app, "keep-alive")
        .await
        .unwrap();
    assert_eq!(report["job"], "keep-alive", "{report}");
    assert_eq!(report["connections"], 2, "{report}");
    assert_eq!(
        report["connections_queued"], 1,
        "only the idle one: {report}"
    );
    assert_eq!(
        h.sandbox.token_calls(),
        calls,
        "the run itself refreshes nothing"
    );

    let reports = h.drain_jobs_queue().await;
    let handled: Vec<_> = reports
        .iter()
        .map(|r| (r.received, r.deleted, r.returned))
        .collect();
    assert_eq!(handled, [(1, 1, 0)], "{reports:?}");
    assert_eq!(
        h.sandbox.token_calls() - calls,
        1,
        "one refresh, from the queue"
    );
    let idle_after = connector::tokens::current(&h.app, &conn("bu_idle"))
        .await
        .unwrap()
        .unwrap();
    assert!(idle_after.last_refresh_at > idle_before.last_refresh_at);
    // The next day's run finds nothing due.
    h.sandbox
        .clock()
        .advance(std::time::Duration::from_secs(24 * 3600));
    let report = psa_exact_local::run_job(&h.app, "keep-alive")
        .await
        .unwrap();
    assert_eq!(report["connections_queued"], 0, "{report}");
}
