//! Every file in `tests/fixtures/exact/` (Exact's answers in the shapes Exact documents, and recordings of
//! `cargo run -- smoke --record`) read with the client's own parsers, and checked against what the file expects.

use std::path::PathBuf;

use exact::recorded::{Exchange, read};

pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/exact")
}

/// Every fixture, by file name.
pub fn all() -> Vec<(String, Exchange)> {
    let mut files: Vec<(String, Exchange)> = std::fs::read_dir(dir())
        .expect("tests/fixtures/exact")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&p).expect("readable");
            let e: Exchange = serde_json::from_str(&text)
                .unwrap_or_else(|err| panic!("{name} is not an exchange: {err}"));
            (name, e)
        })
        .collect();
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files
}

#[test]
fn every_fixture_reads_as_it_says() {
    let files = all();
    assert!(files.len() >= 20, "{} fixtures", files.len());
    for (name, e) in &files {
        let got = read(e).unwrap_or_else(|m| panic!("{name}: {m}"));
        assert!(
            e.source.as_deref().is_some_and(|s| !s.is_empty()),
            "{name} says where its shape comes from"
        );
        let Some(want) = &e.expect else {
            assert!(
                name.starts_with("smoke-"),
                "{name}: only a recording may come without expectations"
            );
            continue;
        };
        if let Some(k) = &want.error_kind {
            assert_eq!(
                got.error_kind.map(|k| k.as_str()),
                Some(k.as_str()),
                "{name}"
            );
        } else {
            assert_eq!(got.error_kind, None, "{name}");
        }
        if want.message.is_some() {
            assert_eq!(got.message, want.message, "{name}");
        }
        if want.reason.is_some() {
            assert_eq!(got.reason, want.reason, "{name}");
        }
        if let Some(rows) = want.rows {
            assert_eq!(got.rows, rows, "{name}");
        }
        if let Some(next) = want.next {
            assert_eq!(got.next, next, "{name}");
        }
        for (k, v) in &want.facts {
            assert_eq!(got.facts.get(k), Some(v), "{name}: {k} in {:?}", got.facts);
        }
    }
}

/// The fixtures cover every shape the client must read: webhook bodies, token refusals with their `Reason`, OData
/// errors with `\r\n` and Dutch text, an invoice with a padded VAT code and no number, a `__next` page, `/Date()`
/// values, receivables.
#[test]
fn the_fixtures_cover_the_documented_shapes() {
    let files = all();
    let has = |what: &str, f: &dyn Fn(&Exchange) -> bool| {
        assert!(files.iter().any(|(_, e)| f(e)), "no fixture with {what}");
    };
    let body = |e: &Exchange| serde_json::to_string(&e.response.body).unwrap_or_default();
    has("a webhook delivery", &|e| {
        e.operation == "webhook_delivery"
            && e.request
                .body_text
                .as_deref()
                .is_some_and(|b| b.contains("\"EventCreatedOn\""))
    });
    has("a token refusal with a Reason header", &|e| {
        e.operation.starts_with("oauth_") && e.response.headers.contains_key("reason")
    });
    has("an OData error in Dutch, joined with \\r\\n", &|e| {
        body(e).contains("Verplicht") && body(e).contains("\\r\\n")
    });
    has(
        "an invoice with a padded VATCode and InvoiceNumber null",
        &|e| body(e).contains("\"VATCode\":\"2  \"") && body(e).contains("\"InvoiceNumber\":null"),
    );
    has("a __next page", &|e| body(e).contains("\"__next\""));
    has("a /Date() value", &|e| body(e).contains("/Date("));
    has("a Receivables page", &|e| e.operation == "receivables");
}

/// A file that does not parse is reported, not skipped: the reader fails on a wrong shape.
#[test]
fn a_wrong_shape_is_an_error() {
    let (_, mut e) = all()
        .into_iter()
        .find(|(n, _)| n == "vat-codes-padded.json")
        .expect("the VAT code fixture");
    e.response.body = Some(serde_json::json!({"d": {"results": [{"Code": 2}]}}));
    assert!(read(&e).is_err());
    e.operation = "made_up".into();
    e.response.body = Some(serde_json::json!({"d": {}}));
    assert!(read(&e).unwrap_err().contains("made_up"));
}
