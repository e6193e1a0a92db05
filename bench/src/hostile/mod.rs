//! The hostile-conditions suite (`make hostile`): each module runs one group of cases against the real handlers
//! and adds its rows to the table.

pub mod concurrency;
pub mod crashes;
pub mod faults;
pub mod inputs;
pub mod limits;
pub mod tenants;
pub mod tokens;
pub mod webhooks;

use lambda_http::Body;
use serde_json::Value;

use crate::table::Table;
use crate::world::{World, WorldOptions};

/// What a group of concurrent tasks gave back: the answers of those that finished, and why the others did not.
#[derive(Debug)]
pub struct Joined<T> {
    pub answers: Vec<T>,
    /// One entry per task that panicked or was cancelled: never silently dropped.
    pub lost: Vec<String>,
}

/// Awaits every task. A task that panicked is reported in [`Joined::lost`], so an answer list can never be
/// shorter than the tasks started without the row knowing.
pub async fn join_all<T>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Joined<T> {
    let mut out = Joined {
        answers: Vec::with_capacity(tasks.len()),
        lost: Vec::new(),
    };
    for t in tasks {
        match t.await {
            Ok(a) => out.answers.push(a),
            Err(e) => out.lost.push(e.to_string()),
        }
    }
    out
}

/// The row every concurrency case carries: of `started` tasks, how many did not answer (panicked, cancelled,
/// or missing). Must be 0; otherwise the other rows of the case judged fewer answers than they claim.
pub fn unanswered_row<T>(table: &mut Table, case: &str, started: usize, joined: &Joined<T>) {
    let missing = started
        .saturating_sub(joined.answers.len())
        .max(joined.lost.len());
    table.exact(
        format!("{case} → tasks that panicked or gave no answer"),
        missing,
        0,
        &format!(
            "{} of {started} answered{}",
            joined.answers.len(),
            joined
                .lost
                .first()
                .map(|e| format!("; {e}"))
                .unwrap_or_default()
        ),
    );
}

/// A world for a group of request cases, the sandbox's rate limits out of the way (many pushes in a short time
/// are not what such a group tests): `push` connected to `division` as `login` and configured (journal 72), `test`
/// connected. Answers the world and how the configuration went.
pub async fn unlimited_world(
    login: &str,
    division: u32,
    push: &str,
    test: &str,
) -> (World, Result<(), String>) {
    let mut opts = WorldOptions::default();
    opts.sandbox.minutely_limit = 100_000;
    opts.sandbox.daily_limit = 1_000_000;
    let w = World::start(opts).await;
    w.connect(push, login, division).await;
    w.connect(test, login, division).await;
    let configured = w.configure(push, "72").await;
    (w, configured)
}

/// Sends a request to the local API with full control over body, content type and `Authorization`.
pub async fn send(
    h: &e2e::Harness,
    method: reqwest::Method,
    path: &str,
    body: Option<Vec<u8>>,
    content_type: Option<&str>,
    authorization: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut rb = h.http.request(method, h.url(path));
    if let Some(a) = authorization {
        rb = rb.header("authorization", a);
    }
    if let Some(ct) = content_type {
        rb = rb.header("content-type", ct);
    }
    if let Some(b) = body {
        rb = rb.body(b);
    }
    match rb.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let bytes = resp.bytes().await.unwrap_or_default();
            let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            (status, headers, json)
        }
        // The local API closing the connection is as bad as a 5xx.
        Err(_) => (599, reqwest::header::HeaderMap::new(), Value::Null),
    }
}

/// Calls a function's handler in-process, exactly as the local router would (so the call can be aborted
/// mid-way: a Lambda killed at that point).
pub async fn call_handler(
    f: &dyn connector::lambda::Function,
    app: &connector::App,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut b = lambda_http::http::Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {}", e2e::PSA_KEY));
    if body.is_some() {
        b = b.header("content-type", "application/json");
    }
    let body = match body {
        Some(v) => Body::Text(v.to_string()),
        None => Body::Empty,
    };
    let Ok(req) = b.body(body) else {
        return (0, Value::Null);
    };
    let resp = f.http(app, req).await;
    let status = resp.status().as_u16();
    let json = match resp.body() {
        Body::Text(t) => serde_json::from_str(t).unwrap_or(Value::Null),
        Body::Binary(b) => serde_json::from_slice(b).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    (status, json)
}

/// Sets (`Some`) or removes (`None`) the value at a path such as `lines[0].amount` or `company.name`.
pub fn set_path(root: &mut Value, path: &str, value: Option<Value>) {
    let mut segs: Vec<Seg> = Vec::new();
    for part in path.split('.') {
        match part.split_once('[') {
            Some((key, rest)) => {
                segs.push(Seg::Key(key.to_owned()));
                for idx in rest.split('[') {
                    let n = idx.trim_end_matches(']').parse().unwrap_or(0);
                    segs.push(Seg::Index(n));
                }
            }
            None => segs.push(Seg::Key(part.to_owned())),
        }
    }
    let Some((last, parents)) = segs.split_last() else {
        return;
    };
    let mut cur = root;
    for s in parents {
        cur = match s {
            Seg::Key(k) => match cur {
                Value::Object(m) => m.entry(k.clone()).or_insert(Value::Null),
                _ => return,
            },
            Seg::Index(i) => match cur.get_mut(*i) {
                Some(v) => v,
                None => return,
            },
        };
    }
    match (last, value) {
        (Seg::Key(k), Some(v)) => {
            if let Some(m) = cur.as_object_mut() {
                m.insert(k.clone(), v);
            }
        }
        (Seg::Key(k), None) => {
            if let Some(m) = cur.as_object_mut() {
                m.remove(k);
            }
        }
        (Seg::Index(i), Some(v)) => {
            if let Some(slot) = cur.get_mut(*i) {
                *slot = v;
            }
        }
        (Seg::Index(i), None) => {
            if let Some(a) = cur.as_array_mut()
                && *i < a.len()
            {
                a.remove(*i);
            }
        }
    }
}

enum Seg {
    Key(String),
    Index(usize),
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn set_path_sets_and_removes_nested_values() {
        let mut v = json!({"a": {"b": 1}, "lines": [{"amount": "1.00"}]});
        set_path(&mut v, "a.b", Some(json!(2)));
        set_path(&mut v, "lines[0].amount", None);
        set_path(&mut v, "lines[0].name", Some(json!("x")));
        set_path(&mut v, "c", Some(json!(null)));
        assert_eq!(
            v,
            json!({"a": {"b": 2}, "lines": [{"name": "x"}], "c": null})
        );
        set_path(&mut v, "lines", None);
        assert!(v.get("lines").is_none());
    }

    #[tokio::test]
    async fn a_panicking_task_is_counted_and_fails_the_row() {
        let tasks: Vec<tokio::task::JoinHandle<u16>> = vec![
            tokio::spawn(async { 201 }),
            tokio::spawn(async { panic!("boom") }),
            tokio::spawn(async { 200 }),
        ];
        let joined = join_all(tasks).await;
        assert_eq!(joined.answers, vec![201, 200]);
        assert_eq!(joined.lost.len(), 1);
        let mut t = Table::new("t");
        unanswered_row(&mut t, "3 pushes", 3, &joined);
        assert_eq!(t.failures().len(), 1, "{}", t.render());
        // All answered: the row passes.
        let ok = join_all(vec![tokio::spawn(async { 1 })]).await;
        let mut t = Table::new("t");
        unanswered_row(&mut t, "1 push", 1, &ok);
        assert!(t.failures().is_empty());
        // Nothing ran at all: fails as well.
        let none: Joined<u16> = Joined {
            answers: Vec::new(),
            lost: Vec::new(),
        };
        let mut t = Table::new("t");
        unanswered_row(&mut t, "32 pushes", 32, &none);
        assert_eq!(t.failures().len(), 1);
    }
}
