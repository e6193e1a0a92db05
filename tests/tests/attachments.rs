//! Specification pages (PDF attachments) on a pushed invoice, end to end through the push-invoice handler, the
//! Exact sandbox and the stores: one Exact document per invoice, one attachment per file, the invoice linked to the
//! document and e-mailed with the files; retries after a crash reuse what exists; bad files never reach Exact.

use std::time::Duration;

use connector::lambda::Function;
use connector::routes::PushInvoice;
use e2e::{Harness, PSA_KEY};
use exact_sandbox::{Fault, FaultKind};
use mapping::ConnectionId;
use serde_json::{Value, json};
use store::Delivery;
use testkit::pdf::{base64, pdf_of_size, sample_specification, specification_pdf};

use crate::push::{invoice, save_settings, settings};

const PAST_LEASE: Duration = Duration::from_secs(61);

fn cid(s: &str) -> ConnectionId {
    ConnectionId::parse(s).unwrap()
}

/// Connected to 1001, delivery `psa`, e-mailing the customer.
async fn ready_emailing(h: &Harness) {
    crate::push::connect(h, "bu_1", 1001).await;
    let mut s = settings(h, 1001, "70", Delivery::Psa);
    s.send_invoice_to_customer = true;
    save_settings(h, "bu_1", &s).await;
}

fn file(name: &str, bytes: &[u8]) -> Value {
    json!({"file_name": name, "content_type": "application/pdf", "content_base64": base64(bytes)})
}

/// The sample invoice `id` with the two specification pages of the sample event.
fn with_specification(id: &str) -> Value {
    let mut v = invoice(id);
    v["attachments"] = sample_specification()
        .iter()
        .map(|(name, bytes)| file(name, bytes))
        .collect();
    v
}

async fn push(h: &Harness, body: &Value) -> (u16, reqwest::header::HeaderMap, Value) {
    h.call(
        reqwest::Method::POST,
        "/connections/bu_1/invoices",
        Some(body),
    )
    .await
}

/// Pushes; answers the number of Exact calls it made in 1001, the status and the answer.
async fn counted(h: &Harness, body: &Value) -> (usize, u16, Value) {
    let before = h.sandbox.api_calls(1001);
    let (status, _, answer) = push(h, body).await;
    (h.sandbox.api_calls(1001) - before, status, answer)
}

/// Documents of division 1001 with this subject: (ID, type, account).
fn documents(h: &Harness, subject: &str) -> Vec<(String, i32, Option<String>)> {
    let w = h.sandbox.world();
    w.division(1001)
        .unwrap()
        .documents
        .iter()
        .filter(|d| d.subject == subject)
        .map(|d| {
            (
                d.id.to_string(),
                d.document_type,
                d.account.map(|a| a.to_string()),
            )
        })
        .collect()
}

/// The files of a document: (name, bytes).
fn files_of(h: &Harness, document: &str) -> Vec<(String, Vec<u8>)> {
    let w = h.sandbox.world();
    w.division(1001)
        .unwrap()
        .document_attachments
        .iter()
        .filter(|a| a.document.to_string() == document)
        .map(|a| (a.file_name.clone(), a.content.clone()))
        .collect()
}

fn posts(h: &Harness, path: &str) -> usize {
    let want = format!("/api/v1/1001/{path}");
    h.sandbox
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == want)
        .count()
}

/// The Exact invoice with this reference: (ID, status, linked document).
fn exact_invoice(h: &Harness, reference: &str) -> Vec<(String, i32, Option<String>)> {
    let w = h.sandbox.world();
    w.division(1001)
        .unwrap()
        .sales_invoices
        .iter()
        .filter(|i| i.your_ref.as_deref() == Some(reference))
        .map(|i| {
            (
                i.invoice_id.to_string(),
                i.status,
                i.document.map(|d| d.to_string()),
            )
        })
        .collect()
}

/// After a finished push: exactly one document with both sample files, the invoice processed and linked to it.
fn assert_one_document_with_both_files(h: &Harness, reference: &str, answer: &Value) -> String {
    let docs = documents(h, &format!("Specification {reference}"));
    assert_eq!(docs.len(), 1, "one document: {docs:?}");
    let (doc, doc_type, account) = &docs[0];
    assert_eq!(*doc_type, 183, "Exact's general attachment type");
    assert_eq!(account.as_deref(), answer["account_id"].as_str());
    let files = files_of(h, doc);
    let names: Vec<&str> = files.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(
        names,
        ["time-and-material-2025-09.pdf", "expenses-2025-09.pdf"],
        "both files, once each, in order"
    );
    let want: Vec<Vec<u8>> = sample_specification().into_iter().map(|f| f.1).collect();
    assert!(files.iter().map(|f| &f.1).eq(want.iter()), "byte for byte");
    let inv = exact_invoice(h, reference);
    assert_eq!(inv.len(), 1, "{inv:?}");
    assert_eq!(json!(inv[0].0), answer["exact_invoice_id"]);
    assert_eq!(inv[0].1, 50, "processed");
    assert_eq!(
        inv[0].2.as_deref(),
        Some(doc.as_str()),
        "linked to the document"
    );
    doc.clone()
}

#[tokio::test]
async fn two_pdfs_make_one_document_two_attachments_and_an_email_carrying_both() {
    let h = Harness::memory().await;
    ready_emailing(&h).await;
    // Warm the caches (account, contact), then compare a plain push with one carrying two files.
    let (_, status, _) = counted(&h, &invoice("inv_warm")).await;
    assert_eq!(status, 201);
    let (plain, status, _) = counted(&h, &invoice("inv_plain")).await;
    assert_eq!(status, 201);
    let body = with_specification("inv_spec");
    let (calls, status, answer) = counted(&h, &body).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(
        calls,
        plain + 3,
        "1 document + 2 attachments more than without"
    );
    assert_eq!(answer["status"], "sent");

    let doc = assert_one_document_with_both_files(&h, "REF-inv_spec", &answer);
    // The invoice was created with `Document` in its one POST: no update call.
    let created = h
        .sandbox
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("salesinvoice/SalesInvoices"))
        .filter_map(|r| r.body)
        .next_back()
        .unwrap();
    assert_eq!(created["Document"], json!(doc));
    assert!(
        !h.sandbox.requests().iter().any(|r| r.method == "PUT"),
        "no update call"
    );
    // The sandbox's e-mail of the processed invoice lists the files it carries.
    let emails: Vec<_> = {
        let w = h.sandbox.world();
        w.division(1001)
            .unwrap()
            .emails_sent
            .iter()
            .filter(|e| json!(e.invoice_id.to_string()) == answer["exact_invoice_id"])
            .map(|e| e.attachments.clone())
            .collect()
    };
    assert_eq!(
        emails,
        vec![vec![
            "time-and-material-2025-09.pdf".to_owned(),
            "expenses-2025-09.pdf".to_owned()
        ]]
    );
    // The record keeps the names and sizes, and the progress; not the bytes.
    let rec = h
        .app
        .state
        .get_invoice(&cid("bu_1"), "inv_spec")
        .await
        .unwrap()
        .unwrap();
    let kept: Vec<_> = rec
        .attachments
        .files
        .iter()
        .map(|f| (f.file_name.as_str(), f.size))
        .collect();
    let sizes: Vec<_> = sample_specification()
        .iter()
        .map(|(n, b)| (*n, b.len() as u64))
        .collect();
    assert_eq!(kept, sizes);
    assert_eq!(
        rec.attachments.exact_document_id.map(|d| d.to_string()),
        Some(doc)
    );
    assert_eq!(rec.attachments.sent, 2);

    // The same push again: the saved answer, no Exact call.
    let (calls, status, replay) = counted(&h, &body).await;
    assert_eq!((calls, status, &replay), (0, 200, &answer));
    // Other files under the same invoice id: another invoice, a conflict.
    let mut other = body.clone();
    other["attachments"][1] = file("expenses-2025-09.pdf", &specification_pdf(&["changed"]));
    let (calls, status, e) = counted(&h, &other).await;
    assert_eq!((calls, status), (0, 409), "{e}");
    assert_eq!(e["error"]["code"], "invoice_conflict");
}

/// The document's creation reached Exact but its answer was lost, and Exact could not be asked right then: the
/// record keeps the attempt; once the claim expires, the retry finds the document and finishes with it.
async fn crash_after_the_document(h: Harness) {
    ready_emailing(&h).await;
    h.sandbox
        .inject(Fault::new("documents/Documents", FaultKind::DropAfterStore).on_method("POST"));
    h.sandbox.inject(
        Fault::status("documents/Documents", 503, "Service Unavailable")
            .on_method("GET")
            .times(10),
    );
    let body = with_specification("inv_doc_crash");
    let (status, _, e) = push(&h, &body).await;
    assert_eq!(status, 502, "{e}");
    h.sandbox.clear_faults();
    let subject = "Specification REF-inv_doc_crash";
    assert_eq!(documents(&h, subject).len(), 1, "Exact made the document");
    let rec = h
        .app
        .state
        .get_invoice(&cid("bu_1"), "inv_doc_crash")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.attachments.document_subject.as_deref(), Some(subject));
    assert_eq!(
        rec.attachments.exact_document_id, None,
        "never learnt its ID"
    );
    assert_eq!(posts(&h, "documents/DocumentAttachments"), 0);

    // While the claim lives: come back later.
    let (status, _, e) = push(&h, &body).await;
    assert_eq!(status, 409, "{e}");
    h.sandbox.clock().advance(PAST_LEASE);
    let (status, _, answer) = push(&h, &body).await;
    assert_eq!(status, 201, "{answer}");
    assert_one_document_with_both_files(&h, "REF-inv_doc_crash", &answer);
    assert_eq!(
        posts(&h, "documents/Documents"),
        1,
        "never a second document"
    );
    assert_eq!(posts(&h, "documents/DocumentAttachments"), 2);
}

#[tokio::test]
async fn crash_after_the_document_in_memory() {
    crash_after_the_document(Harness::memory().await).await;
}

#[tokio::test]
async fn crash_after_the_document_on_moto() {
    crash_after_the_document(Harness::moto().await).await;
}

/// The first file reached Exact but its answer was lost (and the document's files could not be listed then): the
/// retry reuses the recorded document, sees the first file there and sends only the second.
async fn crash_after_the_first_attachment(h: Harness) {
    ready_emailing(&h).await;
    h.sandbox.inject(
        Fault::new("documents/DocumentAttachments", FaultKind::DropAfterStore).on_method("POST"),
    );
    h.sandbox.inject(
        Fault::status("documents/DocumentAttachments", 503, "Service Unavailable")
            .on_method("GET")
            .times(10),
    );
    let body = with_specification("inv_file_crash");
    let (status, headers, e) = push(&h, &body).await;
    assert_eq!(status, 502, "{e}");
    assert!(headers.contains_key("retry-after"));
    h.sandbox.clear_faults();
    let rec = h
        .app
        .state
        .get_invoice(&cid("bu_1"), "inv_file_crash")
        .await
        .unwrap()
        .unwrap();
    let doc = rec
        .attachments
        .exact_document_id
        .expect("document recorded")
        .to_string();
    assert_eq!(rec.attachments.sent, 0, "the first file's answer was lost");
    assert_eq!(files_of(&h, &doc).len(), 1, "but Exact has it");
    assert!(exact_invoice(&h, "REF-inv_file_crash").is_empty());

    h.sandbox.clock().advance(PAST_LEASE);
    let (status, _, answer) = push(&h, &body).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(
        assert_one_document_with_both_files(&h, "REF-inv_file_crash", &answer),
        doc
    );
    assert_eq!(posts(&h, "documents/Documents"), 1);
    assert_eq!(
        posts(&h, "documents/DocumentAttachments"),
        2,
        "the first file is not sent again"
    );
}

#[tokio::test]
async fn crash_after_the_first_attachment_in_memory() {
    crash_after_the_first_attachment(Harness::memory().await).await;
}

#[tokio::test]
async fn crash_after_the_first_attachment_on_moto() {
    crash_after_the_first_attachment(Harness::moto().await).await;
}

/// Exact refuses the second file (before storing it): the claim is kept with one file recorded; the retry sends the
/// second only.
#[tokio::test]
async fn a_refused_second_file_is_the_only_one_sent_again() {
    let h = Harness::memory().await;
    ready_emailing(&h).await;
    let body = with_specification("inv_second");
    // The second POST of an attachment fails: let the first through by a fault that fires on the second call.
    h.sandbox.inject(
        Fault::status("documents/DocumentAttachments", 503, "Service Unavailable")
            .on_method("POST")
            .after(1),
    );
    let (status, _, e) = push(&h, &body).await;
    assert_eq!(status, 502, "{e}");
    h.sandbox.clear_faults();
    let rec = h
        .app
        .state
        .get_invoice(&cid("bu_1"), "inv_second")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.attachments.sent, 1);
    h.sandbox.clock().advance(PAST_LEASE);
    let (status, _, answer) = push(&h, &body).await;
    assert_eq!(status, 201, "{answer}");
    assert_one_document_with_both_files(&h, "REF-inv_second", &answer);
    assert_eq!(posts(&h, "documents/Documents"), 1);
}

/// A request straight to the handler (for bodies the local server would refuse before it, as Lambda would).
async fn handler(h: &Harness, body: &Value) -> (u16, Value) {
    let req = lambda_http::http::Request::builder()
        .method("POST")
        .uri("/connections/bu_1/invoices")
        .header("authorization", format!("Bearer {PSA_KEY}"))
        .body(lambda_http::Body::Text(body.to_string()))
        .unwrap();
    let resp = PushInvoice.http(&h.app, req).await;
    let lambda_http::Body::Text(text) = resp.body() else {
        panic!("a JSON body")
    };
    (resp.status().as_u16(), serde_json::from_str(text).unwrap())
}

#[tokio::test]
async fn bad_attachments_are_refused_naming_the_field_and_nothing_reaches_exact() {
    let h = Harness::memory().await;
    ready_emailing(&h).await;
    let pdf = specification_pdf(&["x"]);
    let with = |files: Value| {
        let mut v = invoice("inv_bad");
        v["attachments"] = files;
        v
    };
    let six: Vec<Value> = (0..6).map(|i| file(&format!("{i}.pdf"), &pdf)).collect();
    let half = pdf_of_size(&["half"], 2_100_000);
    let cases: Vec<(Value, u16, &str, &str)> = vec![
        (
            with(json!([file("spec.pdf", b"PK\x03\x04 a zip, not a PDF")])),
            400,
            "attachments[0].content_base64",
            "not_pdf",
        ),
        (
            with(json!([{"file_name": "spec.pdf", "content_base64": "%%% not base64 %%%"}])),
            400,
            "attachments[0].content_base64",
            "invalid_base64",
        ),
        (
            with(Value::Array(six)),
            400,
            "attachments",
            "too_many_attachments",
        ),
        (
            with(json!([file("a.pdf", &half), file("b.pdf", &half)])),
            413,
            "attachments",
            "attachments_too_large",
        ),
        (
            with(json!([file("big.pdf", &pdf_of_size(&["big"], 5_000_000))])),
            413,
            "attachments",
            "attachments_too_large",
        ),
    ];
    let before = h.sandbox.api_calls(1001);
    for (body, want_status, field, code) in cases {
        let (status, e) = handler(&h, &body).await;
        assert_eq!(status, want_status, "{e}");
        assert_eq!(e["error"]["field"], field, "{e}");
        assert_eq!(e["error"]["code"], code, "{e}");
        assert!(
            e["error"]["message"]
                .as_str()
                .unwrap()
                .contains("attachments")
        );
    }
    assert_eq!(h.sandbox.api_calls(1001), before, "nothing sent to Exact");
    assert_eq!(
        h.app
            .state
            .get_invoice(&cid("bu_1"), "inv_bad")
            .await
            .unwrap(),
        None,
        "nothing stored"
    );
    // A path in a file name is not a refusal: the name is sanitised.
    let (status, answer) = handler(&h, &{
        let mut v = invoice("inv_path");
        v["attachments"] = json!([file("../../etc/spec\u{7}.pdf", &pdf)]);
        v
    })
    .await;
    assert_eq!(status, 201, "{answer}");
    let docs = documents(&h, "Specification REF-inv_path");
    let names: Vec<_> = files_of(&h, &docs[0].0).into_iter().map(|f| f.0).collect();
    assert_eq!(names, ["spec.pdf"]);
}

#[tokio::test]
async fn the_sample_event_carries_the_pdfs_the_helper_makes() {
    let path = format!(
        "{}/../events/invoice-with-specification.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut want: Value = serde_json::from_str(include_str!("../../events/invoice.json")).unwrap();
    want["id"] = json!("inv_8f2d");
    want["reference"] = json!("INV-2025-0043");
    want["attachments"] = sample_specification()
        .iter()
        .map(|(name, bytes)| file(name, bytes))
        .collect();
    if std::env::var_os("UPDATE_EVENTS").is_some() {
        std::fs::write(&path, serde_json::to_string_pretty(&want).unwrap() + "\n").unwrap();
    }
    let got: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        got, want,
        "regenerate with UPDATE_EVENTS=1 cargo test -p e2e --test e2e the_sample_event"
    );
    // And it is a push the handler takes.
    let h = Harness::memory().await;
    ready_emailing(&h).await;
    let (status, answer) = handler(&h, &got).await;
    assert_eq!(status, 201, "{answer}");
    assert_one_document_with_both_files(&h, "INV-2025-0043", &answer);
}

async fn push_async(h: &Harness, body: &Value) -> (u16, Value) {
    let resp = h
        .http
        .post(h.url("/connections/bu_1/invoices"))
        .bearer_auth(PSA_KEY)
        .header("prefer", "respond-async")
        .json(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Without an attachment bucket an asynchronous push with files is refused, and a batch never carries them:
/// refused naming the field, nothing stored or queued, nothing sent to Exact.
#[tokio::test]
async fn without_a_bucket_asynchronous_pushes_and_batches_refuse_attachments() {
    let h = Harness::start(e2e::Options {
        backend: e2e::Backend::Moto,
        push_queue: true,
        ..e2e::Options::default()
    })
    .await;
    ready_emailing(&h).await;
    let before = h.sandbox.api_calls(1001);
    let body = with_specification("inv_async");
    let (status, e) = push_async(&h, &body).await;
    assert_eq!(status, 400, "{e}");
    assert_eq!(
        (e["error"]["field"].as_str(), e["error"]["code"].as_str()),
        (Some("attachments"), Some("attachments_not_queued")),
        "{e}"
    );
    let (status, answer) = h
        .post(
            "/connections/bu_1/invoices:batch",
            &json!({"invoices": [invoice("inv_b1"), body]}),
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    let refused: Vec<_> = answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["error"]["code"] == "attachments_not_queued")
        .map(|r| r["error"]["field"].clone())
        .collect();
    assert_eq!(refused, [json!("invoices[1].attachments")], "{answer}");
    assert_eq!(h.sandbox.api_calls(1001), before, "nothing sent to Exact");
    assert_eq!(
        h.app
            .state
            .get_queued_push(&cid("bu_1"), "inv_async")
            .await
            .unwrap(),
        None
    );
}

/// With the bucket (moto's S3): the files wait there, not on the queue nor in the stored push; the push from the
/// queue attaches them exactly as a synchronous push would, and the kept files are removed once it is done.
#[tokio::test]
async fn an_asynchronous_push_keeps_its_files_in_s3_until_it_runs() {
    let h = Harness::start(e2e::Options {
        backend: e2e::Backend::Moto,
        push_queue: true,
        attachment_bucket: true,
        ..e2e::Options::default()
    })
    .await;
    ready_emailing(&h).await;
    let body = with_specification("inv_async_s3");
    let (status, answer) = push_async(&h, &body).await;
    assert_eq!(status, 202, "{answer}");
    let kept = h
        .app
        .state
        .get_queued_push(&cid("bu_1"), "inv_async_s3")
        .await
        .unwrap()
        .unwrap();
    let kept_body = kept.body.clone().unwrap();
    assert!(
        kept_body.len() < 4096 && !kept_body.contains("content_base64"),
        "the stored push holds references, not the files: {} bytes",
        kept_body.len()
    );
    let blobs = h.app.attachments.clone().unwrap();
    let key = |i: usize| format!("bu_1/inv_async_s3/{}/{i}", kept.body_hash);
    let want: Vec<Vec<u8>> = sample_specification().into_iter().map(|f| f.1).collect();
    for (i, bytes) in want.iter().enumerate() {
        assert_eq!(blobs.get_blob(&key(i)).await.unwrap().as_ref(), Some(bytes));
    }
    // The same body again while queued: the same queued push.
    let (status, again) = push_async(&h, &body).await;
    assert_eq!(status, 202, "{again}");

    h.drain_push_queue().await;
    let (status, state) = h.get("/connections/bu_1/invoices/inv_async_s3").await;
    assert_eq!(
        (status, state["state"].as_str()),
        (200, Some("sent")),
        "{state}"
    );
    let pushed =
        json!({"account_id": state["account_id"], "exact_invoice_id": state["exact_invoice_id"]});
    assert_one_document_with_both_files(&h, "REF-inv_async_s3", &pushed);
    for i in 0..2 {
        assert_eq!(
            blobs.get_blob(&key(i)).await.unwrap(),
            None,
            "removed once done"
        );
    }
    // A synchronous push of the same body now is a replay of the same invoice.
    let (calls, status, _) = counted(&h, &body).await;
    assert_eq!((calls, status), (0, 200));
}

/// A queued push whose kept files are gone (the bucket expires them after 30 days) fails naming the attachments,
/// with nothing sent to Exact.
#[tokio::test]
async fn a_queued_push_whose_files_expired_fails_naming_them() {
    let h = Harness::start(e2e::Options {
        backend: e2e::Backend::Moto,
        push_queue: true,
        attachment_bucket: true,
        ..e2e::Options::default()
    })
    .await;
    ready_emailing(&h).await;
    let body = with_specification("inv_expired");
    let (status, answer) = push_async(&h, &body).await;
    assert_eq!(status, 202, "{answer}");
    let kept = h
        .app
        .state
        .get_queued_push(&cid("bu_1"), "inv_expired")
        .await
        .unwrap()
        .unwrap();
    let blobs = h.app.attachments.clone().unwrap();
    blobs
        .delete_blob(&format!("bu_1/inv_expired/{}/1", kept.body_hash))
        .await
        .unwrap();
    let before = h.sandbox.api_calls(1001);
    h.drain_push_queue().await;
    let (status, state) = h.get("/connections/bu_1/invoices/inv_expired").await;
    assert_eq!(
        (status, state["state"].as_str()),
        (200, Some("failed")),
        "{state}"
    );
    assert_eq!(state["error"]["code"], "attachments_expired", "{state}");
    assert_eq!(state["error"]["field"], "attachments", "{state}");
    assert_eq!(h.sandbox.api_calls(1001), before, "nothing sent to Exact");
}
