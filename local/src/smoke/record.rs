//! `--record DIR`: every request/response pair of the run as a JSON file in the fixtures' shape
//! (`tests/fixtures/exact/`), with tokens, names, e-mail addresses and amounts redacted.
//!
//! Tokens never reach this module (the Exact client records none: the `Authorization` header is not recorded and
//! the token endpoint's credentials are replaced where they are recorded); the same fields are redacted here again
//! all the same. A webhook delivery is kept byte for byte apart from redactions and signed again with
//! [`FIXTURE_WEBHOOK_SECRET`], so the fixture test can verify it without the app's secret.

use std::path::{Path, PathBuf};

use exact::recorded::{Exchange, REDACTED};
use serde_json::Value;

/// The secret a recorded delivery's `HashCode` is made with (never the app's webhook secret).
pub const FIXTURE_WEBHOOK_SECRET: &str = "fixture-webhook-secret";

/// Fields holding a token, a secret or a code.
const CREDENTIAL_FIELDS: &[&str] = &[
    "access_token",
    "refresh_token",
    "code",
    "client_id",
    "client_secret",
];

/// Fields holding a person's or a company's name, or how to reach them.
const NAME_FIELDS: &[&str] = &[
    "Name",
    "FullName",
    "FirstName",
    "MiddleName",
    "LastName",
    "Initials",
    "UserName",
    "AccountName",
    "CustomerName",
    "DivisionCustomerName",
    "OrderedByName",
    "InvoiceToName",
    "DeliverToName",
    "InvoiceToContactPersonFullName",
    "OrderedByContactPersonFullName",
    "Description",
    "AddressLine1",
    "AddressLine2",
    "AddressLine3",
    "Postcode",
    "City",
    "Phone",
    "Mobile",
    "VATNumber",
    "ChamberOfCommerce",
    "Email",
    "BusinessEmail",
    "SenderEmailAddress",
];

/// Whether a field holds money (set to 0, so a number stays a number for the parsers).
fn is_amount(key: &str) -> bool {
    key.starts_with("Amount")
        || key.starts_with("VATAmount")
        || matches!(
            key,
            "UnitPrice" | "NetPrice" | "Price" | "CostPriceStandard"
        )
}

/// Replaces every e-mail address in free text (a query, an error message, an XML body).
pub fn redact_emails(text: &str) -> String {
    let is_part = |c: char| c.is_ascii_alphanumeric() || "._%+-@".contains(c);
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        let at = word.find('@');
        let looks_like_email =
            at.is_some_and(|i| i > 0 && word[i + 1..].contains('.') && !word.ends_with('.'));
        if looks_like_email {
            out.push_str(REDACTED);
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in text.chars() {
        if is_part(c) {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// Redacts a JSON value in place: credentials and names by field, amounts to 0, e-mail addresses anywhere.
pub fn redact_json(v: &mut Value) {
    match v {
        Value::Object(o) => {
            for (k, val) in o.iter_mut() {
                if CREDENTIAL_FIELDS.contains(&k.as_str()) || NAME_FIELDS.contains(&k.as_str()) {
                    if val.is_string() {
                        *val = Value::String(REDACTED.to_owned());
                    }
                } else if is_amount(k) && val.is_number() {
                    *val = Value::from(0);
                } else {
                    redact_json(val);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact_json),
        Value::String(s) => *s = redact_emails(s),
        _ => {}
    }
}

/// Redacts a webhook delivery's body, keeping its bytes otherwise, and signs it with [`FIXTURE_WEBHOOK_SECRET`].
/// The body is one the listener verified: exactly `{"Content":{…},"HashCode":"…"}`, compact, as Exact sends it.
fn redact_delivery(body: &str) -> Option<String> {
    let rest = body.trim().strip_prefix(r#"{"Content":"#)?;
    let content = &rest[..rest.rfind(r#","HashCode":"#)?];
    let content = redact_emails(content);
    Some(format!(
        r#"{{"Content":{content},"HashCode":"{}"}}"#,
        mapping::signature::hash_code(FIXTURE_WEBHOOK_SECRET, &content)
    ))
}

/// The exchange as it may be written out.
pub fn redact(mut e: Exchange, source: &str) -> Exchange {
    e.source = Some(source.to_owned());
    e.request.path = redact_emails(&e.request.path);
    e.request.query = e.request.query.as_deref().map(redact_emails);
    if let Some(b) = e.request.body.as_mut() {
        redact_json(b);
    }
    if let Some(b) = e.response.body.as_mut() {
        redact_json(b);
    }
    e.response.body_text = e.response.body_text.as_deref().map(redact_emails);
    if e.operation == "webhook_delivery" {
        e.request.body_text = e.request.body_text.as_deref().and_then(redact_delivery);
        e.webhook_secret = Some(FIXTURE_WEBHOOK_SECRET.to_owned());
    } else {
        e.request.body_text = e.request.body_text.as_deref().map(redact_emails);
        e.webhook_secret = None;
    }
    e
}

/// Writes each exchange, redacted, as `DIR/smoke-<date>-<NN>-<operation>.json`; answers the files written.
pub fn write(dir: &Path, date: &str, exchanges: Vec<Exchange>) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let source = format!("recorded by smoke on {date}");
    let mut written = Vec::new();
    for (n, e) in exchanges.into_iter().enumerate() {
        let e = redact(e, &source);
        let name = format!("smoke-{date}-{:02}-{}.json", n + 1, e.operation);
        let path = dir.join(name);
        let text = serde_json::to_string_pretty(&e).map_err(|e| e.to_string())?;
        std::fs::write(&path, text + "\n")
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use exact::recorded::{Request, Response};
    use serde_json::json;

    fn exchange(op: &str, request: Option<Value>, response: Value) -> Exchange {
        Exchange {
            source: None,
            operation: op.into(),
            request: Request {
                method: "POST".into(),
                path: "/api/v1/1001/crm/Accounts".into(),
                query: Some("$filter=Email%20eq%20'jane.doe@acme.example'".into()),
                body: request,
                body_text: None,
            },
            response: Response {
                status: 201,
                headers: Default::default(),
                body: Some(response),
                body_text: None,
            },
            webhook_secret: None,
            expect: None,
        }
    }

    #[test]
    fn names_emails_amounts_and_credentials_are_redacted() {
        let e = exchange(
            "probe_create_invoice",
            Some(
                json!({"OrderedBy": "5b7f4515-b7a0-4839-ac69-574968677d96", "Description": "Acme B.V. invoice",
                "SalesInvoiceLines": [{"UnitPrice": 8000.5, "NetPrice": 8000.5, "Notes": "mail jane@acme.example"}]}),
            ),
            json!({"d": {"InvoiceID": "5b7f4515-b7a0-4839-ac69-574968677d96", "InvoiceNumber": null,
                "OrderedByName": "Acme B.V.", "AmountDC": 9680.61, "AmountFCExclVat": 8000.5,
                "VATAmountFC": 1680.11, "Created": "/Date(1751380260000)/", "Status": 20,
                "access_token": "tok-123", "Email": "billing@acme.example"}}),
        );
        let r = redact(e, "recorded by smoke on 2026-01-02");
        let text = serde_json::to_string(&r).unwrap();
        for secret in [
            "Acme", "jane", "billing@", "8000.5", "9680.61", "1680.11", "tok-123",
        ] {
            assert!(!text.contains(secret), "{secret} survived: {text}");
        }
        // Shapes survive: numbers stay numbers, what the parsers read stays.
        assert_eq!(r.response.body.as_ref().unwrap()["d"]["AmountDC"], json!(0));
        assert_eq!(
            r.response.body.as_ref().unwrap()["d"]["Created"],
            json!("/Date(1751380260000)/")
        );
        assert_eq!(r.source.as_deref(), Some("recorded by smoke on 2026-01-02"));
        assert!(exact::recorded::read(&r).is_ok());
    }

    #[test]
    fn emails_in_free_text() {
        assert_eq!(
            redact_emails("Email eq 'a.b@c.example' and x@y"),
            "Email eq '[redacted]' and x@y"
        );
        assert_eq!(redact_emails("no address here."), "no address here.");
    }

    #[test]
    fn a_delivery_is_signed_again_with_the_fixture_secret() {
        let content = r#"{"Topic":"BankEntries","ClientId":"c","Division":1001,"Action":"Update","Key":"k","ExactOnlineEndpoint":"https://x/y","EventCreatedOn":"2025-03-14T10:15:42.137"}"#;
        let body = format!(
            r#"{{"Content":{content},"HashCode":"{}"}}"#,
            mapping::signature::hash_code("the-apps-real-secret", content)
        );
        let mut e = exchange("webhook_delivery", None, json!({}));
        e.request.body_text = Some(body.clone());
        let r = redact(e, "recorded");
        let kept = r.request.body_text.as_deref().unwrap();
        assert!(kept.contains(content), "content bytes kept");
        assert_ne!(kept, body, "the app's HashCode is not kept");
        assert_eq!(r.webhook_secret.as_deref(), Some(FIXTURE_WEBHOOK_SECRET));
        assert_eq!(
            exact::recorded::read(&r).unwrap().facts["Topic"],
            "BankEntries"
        );
    }

    #[test]
    fn files_are_named_by_date_order_and_operation() {
        let dir = std::env::temp_dir().join(format!("smoke-record-{}", std::process::id()));
        let files = write(
            &dir,
            "2026-01-02",
            vec![exchange(
                "create_account",
                None,
                json!({"d": {"ID": "5b7f4515-b7a0-4839-ac69-574968677d96"}}),
            )],
        )
        .unwrap();
        assert_eq!(
            files[0].file_name().unwrap().to_str().unwrap(),
            "smoke-2026-01-02-01-create_account.json"
        );
        let back: Exchange =
            serde_json::from_str(&std::fs::read_to_string(&files[0]).unwrap()).unwrap();
        assert_eq!(back.operation, "create_account");
        let _ = std::fs::remove_dir_all(dir);
    }
}
