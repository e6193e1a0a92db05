//! Tokens over a whole day and many tenants, end to end on the Exact sandbox with a driven clock:
//! - Secrets Manager's version quota: a day of refreshes spread over a connection's two token secrets (moto);
//! - the refresh lease outlives a slow refresh, refreshes never start without time to finish, and the new pair's
//!   store write is retried;
//! - refusals by the token endpoint that are not the user's fault leave the connection connected;
//! - the keep-alive stops before its deadline and the next runs resume where it stopped.
//!
//! The token layout is described in the store's crate docs ("Tokens").

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use connector::App;
use connector::deadline::Deadline;
use e2e::Harness;

use crate::push::invoice;
use exact_sandbox::{Fault, FaultKind, SandboxClock};
use mapping::{ConnectionId, Country, Division, ExactGuid};
use secrecy::SecretString;
use store::{
    ConnectionRecord, ConnectionState, Delivery, SettingsRecord, StoreError, StoreResult,
    TaxCategoryRecord, TokenRecord, TokenSlot, TokenStore,
};

const JAN: &str = "jan@jansen.example";
/// One push every 610 s: every push finds its 600-s access token expired and refreshes.
const CADENCE: Duration = Duration::from_secs(610);

fn cid(s: &str) -> ConnectionId {
    ConnectionId::parse(s).unwrap()
}

fn guid(u: impl Into<ExactGuid>) -> ExactGuid {
    u.into()
}

/// What a successful connection test saves for journal 72 (numbers at entry) in `division`.
fn settings(h: &Harness, division: u32) -> SettingsRecord {
    let w = h.sandbox.world();
    let d = w.division(division).unwrap();
    let vat = |code: &str| Some(guid(d.vat_code(code).unwrap().id));
    SettingsRecord {
        division: Division::new(division).unwrap(),
        item_code: "CONSULT".into(),
        item_id: guid(d.item_by_code("CONSULT").unwrap().id),
        journal_code: "72".into(),
        tax_code: "2".into(),
        tax_code_id: vat("2"),
        tax_categories: vec![TaxCategoryRecord {
            category: "high".into(),
            exact_vat_code: "2".into(),
            exact_vat_code_id: vat("2"),
        }],
        send_invoice_to_customer: false,
        delivery: Delivery::Psa,
        saved_at: chrono::Utc::now(),
    }
}

/// Connects `conn` as Jan to 1001 (which has a default payment condition) with settings saved.
async fn ready(h: &Harness, conn: &str) {
    h.sandbox.world().user_mut(JAN).unwrap().current_division = 1001;
    let loc = h.connect(conn, JAN, "nl").await;
    assert!(loc.ends_with("division=1001"), "{loc}");
    let s = settings(h, 1001);
    h.app.state.put_settings(&cid(conn), &s).await.unwrap();
}

async fn state_of(h: &Harness, conn: &str) -> String {
    let (_, body) = h.get(&format!("/connections/{conn}/exact")).await;
    body["state"].as_str().unwrap_or("?").to_owned()
}

/// 24 h of pushes, one every 610 s (each refreshing the token), on moto: every push 201, the connection stays
/// connected, and no token secret receives more than 100 versions (moto 5.2.5 keeps every version it is given,
/// so ListSecretVersionIds counts every write of the day).
#[tokio::test]
async fn a_day_of_pushes_every_610_s_keeps_each_token_secret_under_100_versions() {
    let h = Harness::moto().await;
    ready(&h, "bu_day").await;
    let clock = h.sandbox.clock();
    clock.freeze();
    let pushes = (24 * 3600) / CADENCE.as_secs() as usize + 1; // 142
    let tokens_before = h.sandbox.token_calls();
    for i in 0..pushes {
        clock.advance(CADENCE);
        let (status, _, body) = h
            .call(
                reqwest::Method::POST,
                "/connections/bu_day/invoices",
                Some(&invoice(&format!("inv_{i:03}"))),
            )
            .await;
        assert_eq!(status, 201, "push {i}: {body}");
    }
    assert_eq!(
        h.sandbox.token_calls() - tokens_before,
        pushes,
        "one refresh per push"
    );
    assert_eq!(state_of(&h, "bu_day").await, "connected");
    let (_, _, prefix) = h.aws.as_ref().unwrap();
    let slot0 = h.secret_versions(&format!("{prefix}bu_day")).await.unwrap();
    let slot1 = h
        .secret_versions(&format!("{prefix}bu_day.1"))
        .await
        .unwrap();
    println!("versions after {pushes} pushes in 24 h: slot 0 {slot0}, slot 1 {slot1}");
    assert_eq!(
        slot0 + slot1,
        pushes + 1,
        "the connect's pair and every refresh"
    );
    assert!(slot0.max(slot1) <= 100, "slot 0 {slot0}, slot 1 {slot1}");
    let c = h
        .app
        .state
        .get_connection(&cid("bu_day"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.token_seq, pushes as u64 + 1);
}

/// After a connect (slot 0), the first refresh goes to slot 1 (`{prefix}{id}.1`); disconnect deletes both.
#[tokio::test]
async fn refreshes_alternate_slots_and_disconnect_deletes_both() {
    let h = Harness::moto().await;
    ready(&h, "bu_two").await;
    let (_, _, prefix) = h.aws.as_ref().unwrap();
    let c = h
        .app
        .state
        .get_connection(&cid("bu_two"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((c.token_slot, c.token_seq), (TokenSlot::Zero, 1));
    for (slot, seq) in [(TokenSlot::One, 2), (TokenSlot::Zero, 3)] {
        h.sandbox.clock().advance(CADENCE);
        let s = connector::tokens::session(&h.app, &cid("bu_two"))
            .await
            .unwrap();
        assert!(
            s.exact
                .division_info(s.exact.division())
                .await
                .unwrap()
                .is_some()
        );
        let c = h
            .app
            .state
            .get_connection(&cid("bu_two"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((c.token_slot, c.token_seq), (slot, seq));
    }
    assert_eq!(
        h.secret_versions(&format!("{prefix}bu_two")).await.unwrap(),
        2
    );
    assert_eq!(
        h.secret_versions(&format!("{prefix}bu_two.1"))
            .await
            .unwrap(),
        1
    );
    let (status, _, _) = h
        .call(reqwest::Method::DELETE, "/connections/bu_two/exact", None)
        .await;
    assert_eq!(status, 200);
    for slot in TokenSlot::BOTH {
        assert!(
            h.app
                .tokens
                .get(&cid("bu_two"), slot)
                .await
                .unwrap()
                .is_none()
        );
    }
    // Reconnect restores a slot; its next refresh restores the other.
    h.connect("bu_two", JAN, "nl").await;
    h.sandbox.clock().advance(CADENCE);
    connector::tokens::session(&h.app, &cid("bu_two"))
        .await
        .unwrap();
    assert_eq!(state_of(&h, "bu_two").await, "connected");
}

/// A refresh slower than the old 20-s lease: a second request arriving 25 s into it must wait for the new pair,
/// not take the lease and spend the same refresh token (which made Exact refuse the first one and the connection
/// need a reconnect).
#[tokio::test]
async fn a_refresh_slower_than_the_old_lease_keeps_the_connection() {
    let h = Harness::memory().await;
    ready(&h, "bu_slow").await;
    let clock = h.sandbox.clock();
    clock.advance(CADENCE);
    // Exact takes its time answering the first refresh.
    h.sandbox.inject(Fault::new(
        "/api/oauth2/token",
        FaultKind::Delay(Duration::from_millis(1500)),
    ));
    let before = h.sandbox.token_calls();
    let first = {
        let app = h.app.clone();
        tokio::spawn(async move {
            connector::tokens::session(&app, &cid("bu_slow"))
                .await
                .map(|_| ())
        })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    clock.advance(Duration::from_secs(25)); // the first refresh has now run 25 s
    let second = {
        let app = h.app.clone();
        tokio::spawn(async move {
            connector::tokens::session(&app, &cid("bu_slow"))
                .await
                .map(|_| ())
        })
    };
    let (a, b) = (first.await.unwrap(), second.await.unwrap());
    assert!(a.is_ok(), "first: {:?}", a.err());
    assert!(b.is_ok(), "second: {:?}", b.err());
    assert_eq!(h.sandbox.token_calls() - before, 1, "one refresh");
    assert_eq!(state_of(&h, "bu_slow").await, "connected");
}

/// The user reconnects while a refresh of the old grant is still waiting for Exact: when that refresh finally
/// answers, its pair must not replace the reconnect's (the refresher's commit fails, and the slot it writes is not
/// the one the reconnect made current).
#[tokio::test]
async fn a_reconnect_during_a_slow_refresh_keeps_the_new_pair() {
    let h = Harness::memory().await;
    ready(&h, "bu_re").await;
    h.sandbox.clock().advance(CADENCE);
    // Only the refresh (the first token call) is slow; the reconnect's code exchange is not.
    h.sandbox.inject(
        Fault::new(
            "/api/oauth2/token",
            FaultKind::Delay(Duration::from_millis(1500)),
        )
        .on_method("POST"),
    );
    let refresh = {
        let app = h.app.clone();
        tokio::spawn(async move {
            connector::tokens::session(&app, &cid("bu_re"))
                .await
                .map(|_| ())
        })
    };
    let in_flight = || {
        h.sandbox
            .requests()
            .iter()
            .any(|r| r.path.contains("/api/oauth2/token") && r.status == 0)
    };
    for _ in 0..200 {
        if in_flight() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(in_flight(), "the refresh never reached Exact");
    let loc = h.connect("bu_re", JAN, "nl").await;
    assert!(loc.contains("exact=connected"), "{loc}");
    let current = |h: &Harness| {
        let app = h.app.clone();
        async move {
            let c = app
                .state
                .get_connection(&cid("bu_re"))
                .await
                .unwrap()
                .unwrap();
            let t = app
                .tokens
                .get(&cid("bu_re"), c.token_slot)
                .await
                .unwrap()
                .unwrap();
            use secrecy::ExposeSecret;
            t.refresh_token.expose_secret().to_owned()
        }
    };
    let after_reconnect = current(&h).await;
    let _ = refresh.await.unwrap();
    assert_eq!(
        current(&h).await,
        after_reconnect,
        "the late refresh of the old grant replaced the reconnect's tokens"
    );
    assert_eq!(state_of(&h, "bu_re").await, "connected");
}

/// A refresh is not started with less than 15 s left of the request: 503 with Retry-After, no token call.
#[tokio::test]
async fn no_refresh_starts_without_time_to_finish() {
    let h = Harness::memory().await;
    ready(&h, "bu_late").await;
    h.sandbox.clock().advance(CADENCE);
    let before = h.sandbox.token_calls();
    let deadline = Deadline::after(h.app.as_ref(), Duration::from_secs(10));
    let err = connector::tokens::session_until(&h.app, &cid("bu_late"), deadline)
        .await
        .err()
        .unwrap();
    assert_eq!((err.status, err.code), (503, "token_refresh_deferred"));
    assert!(err.retry_after.is_some());
    assert_eq!(h.sandbox.token_calls(), before);
    // With the time a request has, it refreshes.
    connector::tokens::session(&h.app, &cid("bu_late"))
        .await
        .unwrap();
    assert_eq!(h.sandbox.token_calls() - before, 1);
}

/// Fails the first `fail` writes with an outage, then writes.
struct FlakyTokens {
    inner: Arc<dyn TokenStore>,
    fail: AtomicUsize,
}

#[async_trait]
impl TokenStore for FlakyTokens {
    async fn get(&self, conn: &ConnectionId, slot: TokenSlot) -> StoreResult<Option<TokenRecord>> {
        self.inner.get(conn, slot).await
    }
    async fn put(&self, conn: &ConnectionId, slot: TokenSlot, t: &TokenRecord) -> StoreResult<()> {
        if self
            .fail
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(StoreError::Unavailable {
                op: "tokens.put",
                source: Box::new(std::io::Error::other("injected outage")),
            });
        }
        self.inner.put(conn, slot, t).await
    }
    async fn delete(&self, conn: &ConnectionId) -> StoreResult<()> {
        self.inner.delete(conn).await
    }
}

/// Secrets Manager failing twice while the refreshed pair is stored: retried, the pair kept, still connected.
#[tokio::test]
async fn the_new_pair_is_stored_despite_two_failed_writes() {
    let h = Harness::memory().await;
    ready(&h, "bu_flaky").await;
    let mut app: App = (*h.app).clone();
    app.tokens = Arc::new(FlakyTokens {
        inner: h.app.tokens.clone(),
        fail: AtomicUsize::new(2),
    });
    h.sandbox.clock().advance(CADENCE);
    let s = connector::tokens::session(&app, &cid("bu_flaky"))
        .await
        .unwrap();
    assert!(
        s.exact
            .division_info(s.exact.division())
            .await
            .unwrap()
            .is_some()
    );
    // The stored pair is the new one: the next request uses it without a refresh.
    let before = h.sandbox.token_calls();
    connector::tokens::session(&h.app, &cid("bu_flaky"))
        .await
        .unwrap();
    assert_eq!(h.sandbox.token_calls(), before);
    assert_eq!(state_of(&h, "bu_flaky").await, "connected");
}

/// The token endpoint refuses for reasons that are not the user's: wrong app credentials (Exact's bare
/// `invalid_request`), a 429, a 500. Each is a clear 503; the connection stays connected and works afterwards.
#[tokio::test]
async fn refusals_that_are_not_the_users_fault_leave_the_connection_connected() {
    let h = Harness::memory().await;
    ready(&h, "bu_app").await;
    h.sandbox.clock().advance(CADENCE);

    let mut wrong: App = (*h.app).clone();
    let mut secret = e2e::app_secret(&h.sandbox);
    secret.exact_client_secret = SecretString::from("not-the-client-secret");
    wrong.secret = Arc::new(secret);
    let err = connector::tokens::session(&wrong, &cid("bu_app"))
        .await
        .err()
        .unwrap();
    assert_eq!(
        (err.status, err.code),
        (503, "exact_app_credentials_refused"),
        "{err:?}"
    );
    assert!(err.retry_after.is_some());
    assert_eq!(state_of(&h, "bu_app").await, "connected");

    for (fault, what) in [
        (Fault::new("/api/oauth2/token", FaultKind::RateLimit), "429"),
        (
            Fault::status("/api/oauth2/token", 500, "Internal error"),
            "500",
        ),
        (
            Fault::status("/api/oauth2/token", 503, "Service unavailable"),
            "503",
        ),
    ] {
        h.sandbox.inject(fault);
        let err = connector::tokens::session(&h.app, &cid("bu_app"))
            .await
            .err()
            .unwrap();
        assert_eq!(
            (err.status, err.code),
            (503, "exact_token_endpoint_unavailable"),
            "{what}: {err:?}"
        );
        assert!(err.retry_after.is_some(), "{what}");
        assert_eq!(state_of(&h, "bu_app").await, "connected", "{what}");
    }
    // Through the HTTP API: the envelope with the code.
    h.sandbox
        .inject(Fault::status("/api/oauth2/token", 502, "Bad gateway"));
    let (status, headers, body) = h
        .call(
            reqwest::Method::POST,
            "/connections/bu_app/invoices",
            Some(&invoice("inv_1")),
        )
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "exact_token_endpoint_unavailable");
    assert!(headers.get("retry-after").is_some());
    // Exact healthy again: the refresh works (the refresh token was never spent).
    let (status, _, body) = h
        .call(
            reqwest::Method::POST,
            "/connections/bu_app/invoices",
            Some(&invoice("inv_1")),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(state_of(&h, "bu_app").await, "connected");
}

/// Slow Secrets Manager: every write takes `write` of the (driven) clock; reads of the `stuck` connections take
/// `stuck` and fail.
struct SlowTokens {
    inner: Arc<dyn TokenStore>,
    clock: SandboxClock,
    write: Duration,
    stuck: Duration,
}

impl SlowTokens {
    fn is_stuck(conn: &ConnectionId) -> bool {
        conn.as_str().starts_with("a_stuck")
    }
}

#[async_trait]
impl TokenStore for SlowTokens {
    async fn get(&self, conn: &ConnectionId, slot: TokenSlot) -> StoreResult<Option<TokenRecord>> {
        if Self::is_stuck(conn) {
            self.clock.advance(self.stuck);
            return Err(StoreError::Unavailable {
                op: "tokens.get",
                source: Box::new(std::io::Error::other("injected timeout")),
            });
        }
        self.inner.get(conn, slot).await
    }
    async fn put(&self, conn: &ConnectionId, slot: TokenSlot, t: &TokenRecord) -> StoreResult<()> {
        self.clock.advance(self.write);
        self.inner.put(conn, slot, t).await
    }
    async fn delete(&self, conn: &ConnectionId) -> StoreResult<()> {
        self.inner.delete(conn).await
    }
}

/// 40 connections due for the keep-alive and 4 whose secrets time out, sorted first. One run cannot cover them all
/// within its deadline; consecutive runs resume where the previous stopped: every connection is refreshed, none
/// twice, and no run goes past its deadline.
#[tokio::test]
async fn the_keep_alive_stops_before_its_deadline_and_resumes_where_it_stopped() {
    let h = Harness::memory().await;
    let clock = h.sandbox.clock();
    clock.freeze();
    let now = h.app.now();
    let healthy: Vec<String> = (0..40).map(|i| format!("bu_{i:02}")).collect();
    let stuck: Vec<String> = (0..4).map(|i| format!("a_stuck_{i}")).collect();
    for id in healthy.iter().chain(stuck.iter()) {
        let issued = h.sandbox.issue_tokens(JAN);
        let conn = cid(id);
        let pair = TokenRecord {
            access_token: SecretString::from(issued.access_token),
            refresh_token: SecretString::from(issued.refresh_token),
            access_expires_at: now + chrono::TimeDelta::seconds(600),
            last_refresh_at: now,
            country: Country::Nl,
            division: Division::new(1002).unwrap(),
        };
        h.app
            .tokens
            .put(&conn, TokenSlot::Zero, &pair)
            .await
            .unwrap();
        h.app
            .state
            .put_connection(&ConnectionRecord {
                connection_id: conn,
                state: ConnectionState::Connected,
                country: Country::Nl,
                base_url: None,
                division: Division::new(1002).unwrap(),
                division_name: "Jansen Holding B.V.".into(),
                connected_user_email: JAN.into(),
                connected_user_name: "Jan Jansen".into(),
                connected_at: now,
                updated_at: now,
                needs_reconnect_reason: None,
                webhook_subscriptions: Vec::new(),
                last_token_refresh_at: Some(now),
                token_slot: TokenSlot::Zero,
                token_seq: 0,
                last_push_at: None,
                pending_event: None,
            })
            .await
            .unwrap();
    }
    clock.advance(Duration::from_secs(8 * 24 * 3600));
    let mut app: App = (*h.app).clone();
    app.tokens = Arc::new(SlowTokens {
        inner: h.app.tokens.clone(),
        clock: clock.clone(),
        write: Duration::from_secs(2),
        stuck: Duration::from_secs(4),
    });

    let budget_ms = connector::connect::KEEP_ALIVE_BUDGET.as_millis() as i64;
    let mut refreshed: Vec<String> = Vec::new();
    let mut runs = 0;
    while refreshed.len() < healthy.len() {
        runs += 1;
        assert!(runs <= 20, "not covered after 20 runs: {refreshed:?}");
        let started = app.now_ms();
        let report = psa_exact_local::run_job(&app, "keep-alive").await.unwrap();
        let took = app.now_ms() - started;
        assert!(took <= budget_ms, "run {runs} took {took} ms: {report}");
        let this: Vec<String> = report["refreshed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        println!(
            "run {runs}: {took} ms, refreshed {}, failed {}, complete {}",
            this.len(),
            report["failed"].as_array().unwrap().len(),
            report["complete"]
        );
        let reached = this.len() + report["failed"].as_array().unwrap().len();
        assert!(
            reached > 0 || report["complete"] == true,
            "run {runs} made no progress: {report}"
        );
        refreshed.extend(this);
        clock.advance(Duration::from_secs(3600)); // the next run
    }
    assert!(runs > 1, "one run could not cover every connection");
    let distinct: BTreeSet<&String> = refreshed.iter().collect();
    assert_eq!(distinct.len(), refreshed.len(), "none refreshed twice");
    assert_eq!(distinct.into_iter().cloned().collect::<Vec<_>>(), healthy);
    for id in &healthy {
        let c = h.app.state.get_connection(&cid(id)).await.unwrap().unwrap();
        assert_eq!(
            (c.state, c.token_seq),
            (ConnectionState::Connected, 1),
            "{id}"
        );
    }
}
