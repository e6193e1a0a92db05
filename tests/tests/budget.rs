//! One pace per administration across containers (`docs/queues.md`): every App's governor records Exact's
//! rate-limit figures per administration in the state store and reads them before each call, so a container that
//! never saw an answer from an administration still knows its minute is spent.

use connector::{App, AppParts};
use e2e::{Backend, Harness, Options};
use exact::{CallStats, ErrorKind, ExactClient, RateLimiter};
use mapping::{Country, Division};
use secrecy::SecretString;

const LOGIN: &str = "claire@dupont.example";
const DIV: u32 = 2001;

/// Another execution environment of the same deployment: the same stores and sandbox, its own process memory.
fn another_container(h: &Harness) -> App {
    App::new(AppParts {
        state: h.app.state.clone(),
        tokens: h.app.tokens.clone(),
        secret: (*h.app.secret).clone(),
        public_base_url: h.app.public_base_url.clone(),
        exact_base_url: h.app.exact_base_url.clone(),
        psa_callback_url: None,
        clock: h.app.clock.clone(),
    })
}

/// A client that never waits for a window (no deadline): a spent minute is refused at once.
fn client(app: &App, limiter: RateLimiter, token: &str) -> ExactClient {
    ExactClient::new(
        app.http.clone(),
        app.exact_host(Country::Be),
        Division::new(DIV).unwrap(),
        SecretString::from(token.to_owned()),
        limiter,
        CallStats::new(),
        app.clock.clone(),
    )
}

async fn a_spent_minute_is_seen_by_every_container(backend: Backend) {
    let h = Harness::start(Options {
        backend,
        ..Options::default()
    })
    .await;
    h.connect("bu_1", LOGIN, "be").await;
    let token = h.sandbox.issue_tokens(LOGIN).access_token;
    let div = Division::new(DIV).unwrap();

    // Container A spends the administration's minute.
    let a = client(&h.app, h.app.limiter.clone(), &token);
    let mut calls = 0;
    while h.app.limiter.state(div).and_then(|s| s.minutely_remaining) != Some(0) {
        a.find_item("CONSULT")
            .await
            .expect("within the minute budget");
        calls += 1;
        assert!(calls <= 60, "the sandbox announces the minute's budget");
    }
    let spent_at = h.sandbox.api_calls(DIV);

    // Container B has never called this administration: the shared figures stop it before Exact does.
    let b = another_container(&h);
    assert_eq!(
        b.limiter.state(div),
        None,
        "B starts with nothing in memory"
    );
    let err = client(&b, b.limiter.clone(), &token)
        .find_item("CONSULT")
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::RateLimited, "{err:?}");
    assert!(err.retry_at_ms.is_some(), "B knows when the minute resets");
    assert_eq!(
        h.sandbox.api_calls(DIV),
        spent_at,
        "B made no call that Exact would refuse"
    );

    // The control: a container without the share calls, and Exact answers 429.
    let alone = client(&b, RateLimiter::new(), &token);
    let err = alone.find_item("CONSULT").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::RateLimited, "{err:?}");
    assert_eq!(
        h.sandbox.api_calls(DIV),
        spent_at + 1,
        "without the share the call reaches Exact and is refused there"
    );
}

#[tokio::test]
async fn a_spent_minute_is_seen_by_every_container_on_moto() {
    a_spent_minute_is_seen_by_every_container(Backend::Moto).await;
}

#[tokio::test]
async fn a_spent_minute_is_seen_by_every_container_in_memory() {
    a_spent_minute_is_seen_by_every_container(Backend::Memory).await;
}
