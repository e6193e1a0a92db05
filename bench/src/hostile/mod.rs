//! The hostile-conditions suite (`make hostile`): each module runs one group of cases against the real handlers
//! and adds its rows to the table.

pub mod concurrency;
pub mod crashes;
pub mod faults;
pub mod inputs;
pub mod limits;
pub mod webhooks;

use lambda_http::Body;
use serde_json::Value;

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
}
