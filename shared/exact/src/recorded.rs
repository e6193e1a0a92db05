//! Exact's answers as data: a request/response pair ([`Exchange`]) in the shape of the files under
//! `tests/fixtures/exact/`, a [`Recorder`] the client and the OAuth calls fill when asked, and [`read`], which runs
//! the client's own parsers over an exchange (the fixture test reads every file with it).
//!
//! A recording never holds a token or a secret: the `Authorization` header is not recorded at all, the token
//! endpoint's form fields `code`, `refresh_token`, `client_id` and `client_secret` and its answer's
//! `access_token`/`refresh_token` are replaced by [`REDACTED`] before anything is kept. Names, e-mails and amounts
//! in API bodies are kept here (the caller redacts what it writes out).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::entities::{
    AccountRef, ContactRef, DivisionInfo, Item, Journal, Me, PrintResult, Receivable, SalesInvoice,
    VatCode, WebhookSubscription,
};
use crate::error::{ErrorKind, from_status};
use crate::odata::{parse_exact_date, parse_page, parse_single};
use crate::probe::{CodeRow, CreatedInvoice, InvoiceWithLines, Processed};

/// What replaces a token, a secret or an authorization code in a recording.
pub const REDACTED: &str = "[redacted]";

/// Response headers worth keeping: the ones the client reads, and what tells a format apart.
const KEPT_HEADERS: &[&str] = &[
    "content-type",
    "date",
    "reason",
    "www-authenticate",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "x-ratelimit-minutely-limit",
    "x-ratelimit-minutely-remaining",
    "x-ratelimit-minutely-reset",
];

/// Form fields of a token request that are credentials.
const SECRET_FORM_FIELDS: &[&str] = &["code", "refresh_token", "client_id", "client_secret"];
/// Fields of a token answer that are credentials.
const SECRET_TOKEN_FIELDS: &[&str] = &["access_token", "refresh_token"];

/// One request and its answer, as a fixture file holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exchange {
    /// Where the shape comes from: a section of `docs/exact-online.md`, or "recorded by smoke on <date>".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The client's operation name (`find_item`, `oauth_refresh`, `webhook_delivery`, …): it picks the parser.
    pub operation: String,
    pub request: Request,
    pub response: Response,
    /// Only for `webhook_delivery`: the secret the `HashCode` in the body was made with (a fixture secret, never the
    /// app's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
    /// What [`read`] must find in this file (hand-written fixtures; a recording has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Expect>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub method: String,
    /// Without the query; the division as in the call (`/api/v1/1001/crm/Accounts`).
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// A body whose exact bytes matter (a webhook delivery: its HashCode is over the raw `Content`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_text: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub status: u16,
    /// Lower-case names, only [`KEPT_HEADERS`].
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The body when it is JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// The body when it is not JSON (XML, HTML, plain text), verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_text: Option<String>,
}

/// Expectations a fixture states about itself; every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The error kind the client makes of the answer ([`ErrorKind::as_str`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<String>,
    /// Exact's message, verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The `Reason` header as the client keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Rows on a list page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<usize>,
    /// Whether a list page has a `__next`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<bool>,
    /// Free facts the reading must state, `name` → value as [`Reading::facts`] writes it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub facts: BTreeMap<String, String>,
}

impl Exchange {
    /// The response body as bytes, as Exact sent it (JSON re-serialised, text verbatim).
    pub fn response_bytes(&self) -> Vec<u8> {
        body_bytes(
            self.response.body.as_ref(),
            self.response.body_text.as_deref(),
        )
    }

    /// The response headers as a `HeaderMap` (unknown or unprintable names are left out).
    pub fn response_headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in &self.response.headers {
            if let (Ok(name), Ok(value)) = (
                reqwest::header::HeaderName::from_bytes(k.as_bytes()),
                reqwest::header::HeaderValue::from_str(v),
            ) {
                h.insert(name, value);
            }
        }
        h
    }
}

fn body_bytes(json: Option<&Value>, text: Option<&str>) -> Vec<u8> {
    match (json, text) {
        (Some(v), _) => serde_json::to_vec(v).unwrap_or_default(),
        (None, Some(t)) => t.as_bytes().to_vec(),
        (None, None) => Vec::new(),
    }
}

fn kept_headers(headers: &HeaderMap) -> BTreeMap<String, String> {
    KEPT_HEADERS
        .iter()
        .filter_map(|name| {
            let v = headers.get(*name)?.to_str().ok()?;
            Some(((*name).to_owned(), v.to_owned()))
        })
        .collect()
}

/// JSON when the bytes are JSON, else text (lossy UTF-8), else nothing.
fn split_body(bytes: &[u8]) -> (Option<Value>, Option<String>) {
    if bytes.is_empty() {
        return (None, None);
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v) => (Some(v), None),
        Err(_) => (None, Some(String::from_utf8_lossy(bytes).into_owned())),
    }
}

/// Collects exchanges when a client or the OAuth calls are given one. Cheap to clone; clones share the list.
#[derive(Clone, Debug, Default)]
pub struct Recorder(Arc<Mutex<Vec<Exchange>>>);

impl Recorder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything recorded so far, in call order.
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.0.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Adds an exchange made outside the client (e.g. a webhook delivery received).
    pub fn push(&self, e: Exchange) {
        if let Ok(mut l) = self.0.lock() {
            l.push(e);
        }
    }

    /// An API call: the request body is the JSON the client sent.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn api(
        &self,
        op: &'static str,
        method: &reqwest::Method,
        url: &url::Url,
        request_body: Option<&[u8]>,
        status: u16,
        headers: &HeaderMap,
        body: &[u8],
    ) {
        let (req_json, req_text) = split_body(request_body.unwrap_or_default());
        let (json, text) = split_body(body);
        self.push(Exchange {
            source: None,
            operation: op.to_owned(),
            request: Request {
                method: method.as_str().to_owned(),
                path: url.path().to_owned(),
                query: url.query().map(str::to_owned),
                body: req_json,
                body_text: req_text,
            },
            response: Response {
                status,
                headers: kept_headers(headers),
                body: json,
                body_text: text,
            },
            webhook_secret: None,
            expect: None,
        });
    }

    /// A token-endpoint call: credentials in the form and in the answer are replaced before anything is kept.
    pub(crate) fn token(
        &self,
        op: &'static str,
        path: &str,
        form: &[u8],
        status: u16,
        headers: &HeaderMap,
        body: &[u8],
    ) {
        let fields: serde_json::Map<String, Value> = url::form_urlencoded::parse(form)
            .map(|(k, v)| {
                let v = if SECRET_FORM_FIELDS.contains(&k.as_ref()) {
                    REDACTED.to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), Value::String(v))
            })
            .collect();
        let (mut json, text) = split_body(body);
        if let Some(Value::Object(o)) = json.as_mut() {
            for f in SECRET_TOKEN_FIELDS {
                if let Some(v) = o.get_mut(*f) {
                    *v = Value::String(REDACTED.to_owned());
                }
            }
        }
        // A text answer is kept only when it cannot be a token (short refusals such as "Access Token not expired").
        let text = text.filter(|t| t.len() <= 300 && !t.trim().is_empty());
        self.push(Exchange {
            source: None,
            operation: op.to_owned(),
            request: Request {
                method: "POST".to_owned(),
                path: path.to_owned(),
                query: None,
                body: Some(Value::Object(fields)),
                body_text: None,
            },
            response: Response {
                status,
                headers: kept_headers(headers),
                body: json,
                body_text: text,
            },
            webhook_secret: None,
            expect: None,
        });
    }
}

/// What the client made of an exchange.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading {
    /// The error kind, for a refusal.
    pub error_kind: Option<ErrorKind>,
    pub message: Option<String>,
    pub reason: Option<String>,
    /// Rows of a list page (1 for a single entity).
    pub rows: usize,
    pub next: bool,
    /// Further facts by name (e.g. `InvoiceNumber` → `null`), for a fixture's `expect.facts`.
    pub facts: BTreeMap<String, String>,
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "null".to_owned(), |x| x.to_string())
}

/// Runs the client's parser for `e.operation` over the answer. An error answer is mapped as the client maps it; a
/// success must parse into the entity the operation reads. `Err` names what did not parse.
pub fn read(e: &Exchange) -> Result<Reading, String> {
    let op = e.operation.as_str();
    let body = e.response_bytes();
    if op == "webhook_delivery" {
        return read_delivery(e);
    }
    if op.starts_with("oauth_") {
        return read_token(e, &body);
    }
    if !(200..300).contains(&e.response.status) {
        let err = from_status("recorded", status(e)?, &e.response_headers(), &body);
        return Ok(Reading {
            error_kind: Some(err.kind),
            message: err.message,
            reason: err.reason,
            ..Reading::default()
        });
    }
    read_success(op, &body)
}

fn status(e: &Exchange) -> Result<reqwest::StatusCode, String> {
    reqwest::StatusCode::from_u16(e.response.status).map_err(|_| "not an HTTP status".to_owned())
}

fn page<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<(Vec<T>, bool), String> {
    parse_page::<T>(body).map(|(rows, next)| (rows, next.is_some()))
}

fn listed<T: serde::de::DeserializeOwned>(
    body: &[u8],
    facts: impl Fn(&[T]) -> BTreeMap<String, String>,
) -> Result<Reading, String> {
    let (rows, next) = page::<T>(body)?;
    Ok(Reading {
        rows: rows.len(),
        next,
        facts: facts(&rows),
        ..Reading::default()
    })
}

fn single<T: serde::de::DeserializeOwned>(
    body: &[u8],
    facts: impl Fn(&T) -> BTreeMap<String, String>,
) -> Result<Reading, String> {
    let v = parse_single::<T>(body)?;
    Ok(Reading {
        rows: 1,
        facts: facts(&v),
        ..Reading::default()
    })
}

fn none<T: ?Sized>(_: &T) -> BTreeMap<String, String> {
    BTreeMap::new()
}

fn read_success(op: &str, body: &[u8]) -> Result<Reading, String> {
    match op {
        "me" => listed::<Me>(body, |r| {
            r.first()
                .map(|m| [("CurrentDivision".to_owned(), m.current_division.to_string())].into())
                .unwrap_or_default()
        }),
        "division_info" => listed::<DivisionInfo>(body, none),
        "find_accounts_by_name" | "probe_accounts_page" => listed::<AccountRef>(body, |r| {
            r.first()
                .map(|a| [("Code".to_owned(), opt(a.code.clone()))].into())
                .unwrap_or_default()
        }),
        "find_contacts_by_email" => listed::<ContactRef>(body, none),
        "find_item" => listed::<Item>(body, none),
        "find_journal" => listed::<Journal>(body, none),
        "find_vat_code" => listed::<VatCode>(body, |r| {
            r.first()
                .map(|v| [("Code".to_owned(), v.code.clone())].into())
                .unwrap_or_default()
        }),
        "probe_items_by_code" | "probe_vat_codes_by_code" => listed::<CodeRow>(body, |r| {
            r.first()
                .map(|c| [("Code".to_owned(), c.code_as_stored.clone())].into())
                .unwrap_or_default()
        }),
        "receivables" => listed::<Receivable>(body, |r| {
            r.first()
                .map(|x| {
                    [
                        ("IsFullyPaid".to_owned(), x.is_fully_paid.to_string()),
                        ("Status".to_owned(), opt(x.status)),
                        (
                            "LastPaymentDate".to_owned(),
                            opt(x.last_payment_date.map(|d| d.to_rfc3339())),
                        ),
                    ]
                    .into()
                })
                .unwrap_or_default()
        }),
        "list_webhook_subscriptions" => listed::<WebhookSubscription>(body, none),
        "find_sales_invoices_by_your_ref" => listed::<SalesInvoice>(body, none),
        "get_sales_invoice" => single::<SalesInvoice>(body, invoice_facts),
        "create_sales_invoice" => single::<SalesInvoice>(body, invoice_facts),
        "probe_create_invoice" => single::<CreatedInvoice>(body, |c| {
            [
                ("InvoiceNumber".to_owned(), opt(c.invoice_number)),
                ("Created".to_owned(), opt(c.created_wall_ms)),
            ]
            .into()
        }),
        "print_sales_invoice" => single::<PrintResult>(body, none),
        "probe_process_invoice" => single::<Processed>(body, |p| {
            [("InvoiceNumber".to_owned(), opt(p.invoice_number))].into()
        }),
        "probe_invoice_lines" => single::<InvoiceWithLines>(body, |i| {
            let mut f: BTreeMap<String, String> =
                [("InvoiceNumber".to_owned(), opt(i.invoice_number))].into();
            for (n, l) in i.lines.iter().enumerate() {
                f.insert(format!("line{n}.VATCode"), opt(l.vat_code.clone()));
            }
            f
        }),
        "find_documents" => listed::<crate::DocumentRef>(body, none),
        "document_attachments" => listed::<crate::DocumentAttachmentRef>(body, none),
        "create_account"
        | "create_contact"
        | "create_document"
        | "create_document_attachment"
        | "probe_subscribe" => single::<crate::calls::Created>(body, none),
        "probe_items_without_filter" => listed::<Value>(body, none),
        // An answer in whatever format Exact chose (the probe only reads its Content-Type).
        "probe_without_accept" => Ok(Reading::default()),
        // DELETE answers nothing.
        _ if body.is_empty() => Ok(Reading::default()),
        other => Err(format!("no parser for the operation `{other}`")),
    }
}

fn invoice_facts(si: &SalesInvoice) -> BTreeMap<String, String> {
    [
        ("InvoiceNumber".to_owned(), opt(si.invoice_number)),
        ("Status".to_owned(), opt(si.status)),
    ]
    .into()
}

/// A token answer: a success must carry the tokens (the recording shows them redacted), a refusal maps to the kind
/// the OAuth calls would give.
fn read_token(e: &Exchange, body: &[u8]) -> Result<Reading, String> {
    let reason = e.response.headers.get("reason").cloned();
    if (200..300).contains(&e.response.status) {
        crate::auth::parse_token_answer(body)?;
        return Ok(Reading {
            rows: 1,
            ..Reading::default()
        });
    }
    let err = crate::auth::token_refusal(e.response.status, reason, body);
    Ok(Reading {
        error_kind: Some(err.kind),
        message: err.message,
        reason: err.reason,
        ..Reading::default()
    })
}

/// A delivery: the `HashCode` verifies over the raw `Content` bytes with the fixture's secret, and `Content` has
/// the fields the connector reads, `EventCreatedOn` parsing as a date.
fn read_delivery(e: &Exchange) -> Result<Reading, String> {
    let raw = e
        .request
        .body_text
        .as_deref()
        .ok_or("a delivery keeps its body as text (body_text)")?;
    let secret = e
        .webhook_secret
        .as_deref()
        .ok_or("a delivery names the secret its HashCode was made with")?;
    let event = crate::probe::WebhookEvent::verify(raw.as_bytes(), secret)
        .ok_or("the HashCode does not verify over the raw Content")?;
    let created = parse_exact_date(&event.event_created_on)
        .ok_or("EventCreatedOn is not a date the client reads")?;
    Ok(Reading {
        rows: 1,
        facts: [
            ("Topic".to_owned(), event.topic),
            ("Action".to_owned(), event.action),
            ("EventCreatedOn".to_owned(), created.to_rfc3339()),
        ]
        .into(),
        ..Reading::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_recordings_hold_no_credential() {
        let r = Recorder::new();
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer secret-access".parse().unwrap());
        h.insert("date", "Tue, 01 Jul 2025 14:31:00 GMT".parse().unwrap());
        r.token(
            "oauth_exchange_code",
            "/api/oauth2/token",
            b"grant_type=authorization_code&code=the-code&redirect_uri=http%3A%2F%2Flocalhost%2Fcb&client_id=cid&client_secret=csecret",
            200,
            &h,
            br#"{"access_token":"secret-access","token_type":"bearer","expires_in":"600","refresh_token":"secret-refresh"}"#,
        );
        r.token(
            "oauth_refresh",
            "/api/oauth2/token",
            b"grant_type=refresh_token&refresh_token=secret-refresh&client_id=cid&client_secret=csecret",
            400,
            &h,
            br#"{"error":"access_denied","error_description":"Rate limit exceeded","refresh_token":"rotated-anyway"}"#,
        );
        let text = serde_json::to_string(&r.exchanges()).unwrap();
        for secret in [
            "the-code",
            "cid",
            "csecret",
            "secret-access",
            "secret-refresh",
            "rotated-anyway",
            "Bearer",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(text.contains("authorization_code") && text.contains("Rate limit exceeded"));
        assert!(text.contains("14:31:00"), "the Date header is kept");
    }

    #[test]
    fn api_recordings_keep_the_body_and_only_known_headers() {
        let r = Recorder::new();
        let mut h = HeaderMap::new();
        h.insert(
            "x-ratelimit-minutely-reset",
            "1638447360000".parse().unwrap(),
        );
        h.insert("set-cookie", "session=abc".parse().unwrap());
        r.api(
            "find_item",
            &reqwest::Method::GET,
            &url::Url::parse("https://start.exactonline.nl/api/v1/1/logistics/Items?$select=ID")
                .unwrap(),
            None,
            200,
            &h,
            br#"{"d":{"results":[]}}"#,
        );
        let e = &r.exchanges()[0];
        assert_eq!(e.request.path, "/api/v1/1/logistics/Items");
        assert_eq!(e.request.query.as_deref(), Some("$select=ID"));
        assert_eq!(
            e.response.headers.keys().collect::<Vec<_>>(),
            ["x-ratelimit-minutely-reset"]
        );
        assert_eq!(read(e).unwrap().rows, 0);
    }
}
