//! The smoke test's one listener, on a loopback address: Exact's redirect after sign-in (`GET` on the redirect
//! URI's path, carrying `code` and `state`), and webhook deliveries (`POST` on any other path; the empty POST Exact
//! sends when a subscription is made is answered 200).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use exact::probe::WebhookEvent;
use secrecy::SecretString;
use tokio::sync::mpsc;

/// A delivery that verified, and when it came.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub event: WebhookEvent,
    pub at: Instant,
    /// The body exactly as received (for a recording).
    pub body: String,
}

/// What came back to the redirect URI.
#[derive(Debug)]
pub enum Redirect {
    Code(String),
    /// Exact (or the user) refused: `error` and its description.
    Refused(String),
}

struct Shared {
    redirect_path: String,
    state: String,
    webhook_secret: Option<SecretString>,
    codes: mpsc::Sender<Redirect>,
    deliveries: Mutex<Vec<Delivery>>,
    /// Deliveries that did not verify (counted, never parsed).
    unverified: Mutex<usize>,
}

/// A running listener; stops when dropped.
pub struct Listener {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    codes: mpsc::Receiver<Redirect>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `addr`, which must be a loopback address: nothing but this machine (or a tunnel the operator runs on it)
/// may reach the listener.
pub async fn bind(
    addr: SocketAddr,
    redirect_path: &str,
    state: &str,
    webhook_secret: Option<SecretString>,
) -> Result<Listener, String> {
    if !addr.ip().is_loopback() {
        return Err(format!(
            "the listener must be on a loopback address, not {addr}"
        ));
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("listening on {addr}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let (tx, rx) = mpsc::channel(4);
    let shared = Arc::new(Shared {
        redirect_path: redirect_path.to_owned(),
        state: state.to_owned(),
        webhook_secret,
        codes: tx,
        deliveries: Mutex::default(),
        unverified: Mutex::default(),
    });
    let router = axum::Router::new()
        .fallback(handle)
        .with_state(shared.clone());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok(Listener {
        addr,
        shared,
        codes: rx,
        task,
    })
}

impl Listener {
    /// Waits for the redirect with the right `state`, at most `timeout`.
    pub async fn code(&mut self, timeout: Duration) -> Result<String, String> {
        match tokio::time::timeout(timeout, self.codes.recv()).await {
            Ok(Some(Redirect::Code(c))) => Ok(c),
            Ok(Some(Redirect::Refused(why))) => Err(format!("Exact did not sign in: {why}")),
            Ok(None) => Err("the listener stopped".into()),
            Err(_) => Err(format!(
                "no redirect came back within {} s",
                timeout.as_secs()
            )),
        }
    }

    /// Verified deliveries so far.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared
            .deliveries
            .lock()
            .map(|d| d.clone())
            .unwrap_or_default()
    }

    /// Deliveries whose HashCode did not verify.
    pub fn unverified(&self) -> usize {
        self.shared.unverified.lock().map(|n| *n).unwrap_or(0)
    }
}

/// A query parameter's decoded value.
fn param(uri: &Uri, name: &str) -> Option<String> {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

const SIGNED_IN: &str = "<!DOCTYPE html><html><body><p>Signed in. The smoke test continues in your terminal; \
    this window can be closed.</p></body></html>";

async fn handle(
    State(s): State<Arc<Shared>>,
    method: axum::http::Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    if method == axum::http::Method::GET && uri.path() == s.redirect_path {
        // Another tab's or an attacker's redirect carries another state: ignore it, keep waiting.
        if param(&uri, "state").as_deref() != Some(s.state.as_str()) {
            return (StatusCode::BAD_REQUEST, "unknown state").into_response();
        }
        let got = match (param(&uri, "code"), param(&uri, "error")) {
            (Some(c), _) if !c.is_empty() => Redirect::Code(c),
            (_, e) => Redirect::Refused(
                [e, param(&uri, "error_description")]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(": "),
            ),
        };
        let _ = s.codes.send(got).await;
        return Html(SIGNED_IN).into_response();
    }
    if method != axum::http::Method::POST {
        return StatusCode::NOT_FOUND.into_response();
    }
    // Exact's validation call when a subscription is made.
    if body.is_empty() {
        return StatusCode::OK.into_response();
    }
    let verified = s
        .webhook_secret
        .as_ref()
        .and_then(|secret| connector::paid::verify_delivery(&body, secret))
        .and_then(WebhookEvent::from_content);
    match verified {
        Some(event) => {
            if let Ok(mut d) = s.deliveries.lock() {
                d.push(Delivery {
                    event,
                    at: Instant::now(),
                    body: String::from_utf8_lossy(&body).into_owned(),
                });
            }
            StatusCode::OK.into_response()
        }
        None => {
            if let Ok(mut n) = s.unverified.lock() {
                *n += 1;
            }
            StatusCode::UNAUTHORIZED.into_response()
        }
    }
}
