use super::*;
use serde_json::Value;

const DOC_BODY: &str = r#"{"Content":{"Topic":"SalesInvoices","ClientId":"3f1c2b7e-8d4a-4c61-9b2e-5a7d0e9c1f42","Division":1234567,"Action":"Update","Key":"7b9e4c2a-1d3f-4e5a-8b6c-0f1e2d3c4b5a","ExactOnlineEndpoint":"https://start.exactonline.nl/api/v1/1234567/salesinvoice/SalesInvoices(guid'7b9e4c2a-1d3f-4e5a-8b6c-0f1e2d3c4b5a')","EventCreatedOn":"2025-03-14T10:15:42.137"},"HashCode":"0DFF441BE9735A9E20039517DFCECFCE0BBEB8785636886B2B5ED7567C4F8519"}"#;

fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

fn signed(content: &str, key: &str) -> String {
    format!(
        r#"{{"Content":{content},"HashCode":"{}"}}"#,
        hash_code(key.as_bytes(), content.as_bytes())
    )
}

#[test]
fn verifies_the_documented_example() {
    let content = verify_delivery(DOC_BODY.as_bytes(), &secret("demo-webhook-secret-2025"))
        .expect("the example of docs/exact-online.md §6.3 verifies");
    assert!(content.starts_with(b"{\"Topic\":\"SalesInvoices\""));
    assert!(content.ends_with(b"\"EventCreatedOn\":\"2025-03-14T10:15:42.137\"}"));
    assert!(verify_delivery(DOC_BODY.as_bytes(), &secret("other")).is_none());
    assert!(verify_delivery(DOC_BODY.as_bytes(), &secret("")).is_none());
}

#[test]
fn refuses_lower_case_base64_missing_and_changed() {
    let key = secret("demo-webhook-secret-2025");
    let lower = DOC_BODY.replace(
        "0DFF441BE9735A9E20039517DFCECFCE0BBEB8785636886B2B5ED7567C4F8519",
        &"0DFF441BE9735A9E20039517DFCECFCE0BBEB8785636886B2B5ED7567C4F8519".to_lowercase(),
    );
    assert!(verify_delivery(lower.as_bytes(), &key).is_none());
    let b64 = DOC_BODY.replace(
        "0DFF441BE9735A9E20039517DFCECFCE0BBEB8785636886B2B5ED7567C4F8519",
        "Df9EG+lzWp4gA5UX387PzgvruHhWNohrK17XVnxPhRk=",
    );
    assert!(verify_delivery(b64.as_bytes(), &key).is_none());
    let cut = DOC_BODY.split(",\"HashCode\"").next().unwrap().to_owned() + "}";
    assert!(verify_delivery(cut.as_bytes(), &key).is_none());
    let changed = DOC_BODY.replace("1234567,", "1234568,");
    assert!(verify_delivery(changed.as_bytes(), &key).is_none());
    // Re-serialised (pretty-printed here; key order and escaping may change too): other bytes, another hash.
    let v: Value = serde_json::from_str(DOC_BODY).unwrap();
    let pretty = serde_json::to_string_pretty(&v).unwrap();
    assert_ne!(pretty, DOC_BODY);
    assert!(verify_delivery(pretty.as_bytes(), &key).is_none());
    // Anything after the envelope, or a second Content, is refused.
    let extra = DOC_BODY.trim_end_matches('}').to_owned() + r#","Content":{}}"#;
    assert!(verify_delivery(extra.as_bytes(), &key).is_none());
    assert!(verify_delivery(b"", &key).is_none());
    assert!(verify_delivery(b"{\"Content\":", &key).is_none());
}

#[test]
fn braces_and_quotes_inside_strings_do_not_end_the_content() {
    let content = r#"{"Topic":"BankEntries","Division":1,"Action":"Update","Key":"a}\"{b","X":{"y":["}"]},"EventCreatedOn":"\\"}"#;
    let body = signed(content, "k");
    assert_eq!(
        verify_delivery(body.as_bytes(), &secret("k")),
        Some(content.as_bytes())
    );
    let spaced = format!(
        "{{ \"Content\" : {content} , \"HashCode\" : \"{}\" }}\n",
        hash_code(b"k", content.as_bytes())
    );
    assert_eq!(
        verify_delivery(spaced.as_bytes(), &secret("k")),
        Some(content.as_bytes())
    );
}

#[test]
fn only_the_exact_envelope_with_an_upper_case_hash_is_a_delivery() {
    let content = r#"{"Topic":"BankEntries","Division":1,"Key":"a"}"#;
    let hash = hash_code(b"k", content.as_bytes());
    let ok = format!(r#"{{"Content":{content},"HashCode":"{hash}"}}"#);
    assert!(verify_delivery(ok.as_bytes(), &secret("k")).is_some());
    for bad in [
        format!(
            r#"{{"Content":{content},"HashCode":"{}"}}"#,
            hash.to_lowercase()
        ),
        format!(r#"{{"Content":{content},"HashCode":"X{hash}","HashCode":"{hash}"}}"#),
        format!(r#"{{"Content":{content},"HashCode":"{hash}","Extra":1}}"#),
        format!(
            r#"{{"Content":{},"HashCode":"{hash}"}}"#,
            Value::String(content.into())
        ),
        format!(r#"{{"Content":{content},"HashCode":null}}"#),
        format!(r#"{{"HashCode":"{hash}","Content":{content}}}"#),
    ] {
        assert!(
            verify_delivery(bad.as_bytes(), &secret("k")).is_none(),
            "{bad}"
        );
    }
}

fn row(number: i64, paid: bool, status: i32, last: Option<i64>) -> Receivable {
    Receivable {
        id: ExactGuid::new_random(),
        entry_id: None,
        invoice_number: Some(number),
        journal: Some("70".into()),
        your_ref: None,
        amount_dc: Some(10.0),
        is_fully_paid: paid,
        status: Some(status),
        last_payment_date: last.and_then(DateTime::from_timestamp_millis),
        end_date: None,
        transaction_entry_id: None,
        account: None,
    }
}

#[test]
fn paid_means_every_row_settled() {
    assert_eq!(settlement(&[]), Settlement::NoReceivable);
    let open = row(1, false, 20, None);
    let split_paid = row(1, true, 50, Some(2_000));
    let matched = row(1, false, 50, Some(1_000));
    assert_eq!(settlement(&[&open]), Settlement::Open);
    assert_eq!(settlement(&[&split_paid, &open]), Settlement::Open);
    assert_eq!(
        settlement(&[&split_paid, &matched]),
        Settlement::Paid {
            at: DateTime::from_timestamp_millis(2_000)
        }
    );
    assert_eq!(
        settlement(&[&row(1, true, 50, None)]),
        Settlement::Paid { at: None }
    );
}

#[test]
fn topics_compare_case_insensitively() {
    assert_eq!(topic_kind("bankentries"), Topic::Payment);
    assert_eq!(topic_kind("SalesEntries"), Topic::Payment);
    assert_eq!(topic_kind("SALESINVOICES"), Topic::Invoice);
    assert_eq!(topic_kind("Accounts"), Topic::Other);
}
