//! A minimal local Lambda Runtime API (`/2018-06-01/runtime/...`): hands one event to the function on its first
//! `invocation/next`, records the time of its `response` (or `error`), and holds every later `next` open (as Lambda
//! does between invocations), so the process can be measured and killed.
//!
//! The killed process's last `next` may still be in the emulator's queue when the following event is armed; it comes
//! on the connection the previous event was handed to, so that connection is never handed another event.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::Notify;

/// What the function did with the event.
#[derive(Debug, Clone)]
pub enum Answered {
    /// `POST …/invocation/{id}/response` with this body, at this instant.
    Response { at: Instant, body: String },
    /// `POST …/invocation/{id}/error` or `…/init/error`.
    Error { at: Instant, body: String },
}

#[derive(Default)]
struct Slot {
    event: Option<String>,
    request_id: String,
    answered: Option<Answered>,
    /// When the armed event was handed out (the runtime finished its init and asked for work).
    handed_out: Option<Instant>,
    /// The connection the armed event was handed to.
    handed_to: Option<SocketAddr>,
    /// The connection the previous event was handed to: its process is gone, its queued `next` gets nothing.
    retired: Option<SocketAddr>,
}

#[derive(Clone, Default)]
struct Shared {
    slot: Arc<Mutex<Slot>>,
    done: Arc<Notify>,
}

/// A running emulator on `127.0.0.1:<port>`.
pub struct RuntimeApi {
    pub addr: std::net::SocketAddr,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn next(State(s): State<Shared>, ConnectInfo(peer): ConnectInfo<SocketAddr>) -> Response {
    let (event, id) = {
        let mut slot = s.slot.lock().unwrap_or_else(|e| e.into_inner());
        let event = if slot.retired == Some(peer) {
            None
        } else {
            slot.event.take()
        };
        if event.is_some() {
            slot.handed_out = Some(Instant::now());
            slot.handed_to = Some(peer);
        }
        (event, slot.request_id.clone())
    };
    let Some(event) = event else {
        // No more work: hold the request open, as Lambda freezes an idle environment.
        std::future::pending::<()>().await;
        return StatusCode::NO_CONTENT.into_response();
    };
    let deadline = chrono::Utc::now().timestamp_millis() + 30_000;
    let mut h = HeaderMap::new();
    let mut put = |k: &'static str, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    };
    put("lambda-runtime-aws-request-id", id);
    put("lambda-runtime-deadline-ms", deadline.to_string());
    put(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:eu-west-1:123456789012:function:bench".into(),
    );
    put(
        "lambda-runtime-trace-id",
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0".into(),
    );
    put("content-type", "application/json".into());
    (StatusCode::OK, h, event).into_response()
}

fn answer(s: &Shared, a: Answered) -> StatusCode {
    s.slot.lock().unwrap_or_else(|e| e.into_inner()).answered = Some(a);
    s.done.notify_waiters();
    s.done.notify_one();
    StatusCode::ACCEPTED
}

async fn response(State(s): State<Shared>, Path(_id): Path<String>, body: String) -> StatusCode {
    answer(
        &s,
        Answered::Response {
            at: Instant::now(),
            body,
        },
    )
}

async fn invocation_error(
    State(s): State<Shared>,
    Path(_id): Path<String>,
    body: String,
) -> StatusCode {
    answer(
        &s,
        Answered::Error {
            at: Instant::now(),
            body,
        },
    )
}

async fn init_error(State(s): State<Shared>, body: String) -> StatusCode {
    answer(
        &s,
        Answered::Error {
            at: Instant::now(),
            body,
        },
    )
}

impl RuntimeApi {
    pub async fn start() -> std::io::Result<RuntimeApi> {
        let shared = Shared::default();
        let router = axum::Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route(
                "/2018-06-01/runtime/invocation/{id}/error",
                post(invocation_error),
            )
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await;
        });
        Ok(RuntimeApi { addr, shared, task })
    }

    /// Queues one event for the next `invocation/next`.
    pub fn arm(&self, event: &str, request_id: &str) {
        let mut slot = self.shared.slot.lock().unwrap_or_else(|e| e.into_inner());
        slot.event = Some(event.to_owned());
        slot.request_id = request_id.to_owned();
        slot.answered = None;
        slot.handed_out = None;
        slot.retired = slot.handed_to.take();
    }

    /// When the armed event was handed to the function (`None`: it never asked).
    pub fn handed_out(&self) -> Option<Instant> {
        self.shared
            .slot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .handed_out
    }

    /// Waits for the answer to the armed event, at most `max`.
    pub async fn wait(&self, max: std::time::Duration) -> Option<Answered> {
        let deadline = Instant::now() + max;
        loop {
            let notified = self.shared.done.notified();
            if let Some(a) = self
                .shared
                .slot
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .answered
                .clone()
            {
                return Some(a);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            let _ = tokio::time::timeout(left, notified).await;
        }
    }
}
