//! Pushing invoices, end to end through the push-invoice handler, the Exact sandbox and the stores
//! (memory, and moto for the concurrency and crash-recovery cases).
//!
//! Settings are seeded straight into the store (what a successful connection test saves), with the Exact IDs read
//! from the sandbox's world.

use std::time::Duration;

use connector::lambda::Function;
use connector::routes::PushInvoice;
use e2e::{Harness, PSA_KEY};
use exact_sandbox::{Fault, FaultKind};
use mapping::{ConnectionId, Division, ExactGuid};
use serde_json::{Value, json};
use store::{Delivery, SettingsRecord, TaxCategoryRecord};

const JAN: &str = "jan@jansen.example";
/// Processing an invoice with the sandbox's clock past the lease of a dead holder.
const PAST_LEASE: Duration = Duration::from_secs(61);

fn cid(s: &str) -> ConnectionId {
    ConnectionId::parse(s).unwrap()
}

fn guid(u: impl Into<ExactGuid>) -> ExactGuid {
    u.into()
}

/// Connects `conn` to `division` as Jan (who has 1001 and 1002; the division selected in Exact is the one stored).
pub(crate) async fn connect(h: &Harness, conn: &str, division: u32) {
    h.sandbox.world().user_mut(JAN).unwrap().current_division = division;
    let loc = h.connect(conn, JAN, "nl").await;
    assert!(loc.ends_with(&format!("division={division}")), "{loc}");
}

/// What a successful connection test saves, resolved in the sandbox's `division`.
pub(crate) fn settings(
    h: &Harness,
    division: u32,
    journal: &str,
    delivery: Delivery,
) -> SettingsRecord {
    let w = h.sandbox.world();
    let d = w.division(division).unwrap();
    let vat = |code: &str| Some(guid(d.vat_code(code).unwrap().id));
    let category = |category: &str, code: &str| TaxCategoryRecord {
        category: category.into(),
        exact_vat_code: code.into(),
        exact_vat_code_id: vat(code),
    };
    SettingsRecord {
        division: Division::new(division).unwrap(),
        item_code: "CONSULT".into(),
        item_id: guid(d.item_by_code("CONSULT").unwrap().id),
        journal_code: journal.into(),
        tax_code: "2".into(),
        tax_code_id: vat("2"),
        tax_categories: vec![
            category("high", "2"),
            category("low", "1"),
            category("zero", "0"),
            // Purchase-only: a test connection would refuse it; seeded to see Exact refuse it.
            category("purchase", "5"),
        ],
        send_invoice_to_customer: false,
        delivery,
        saved_at: chrono::Utc::now(),
    }
}

pub(crate) async fn save_settings(h: &Harness, conn: &str, s: &SettingsRecord) {
    h.app.state.put_settings(&cid(conn), s).await.unwrap();
}

/// A connected connection on `division` with settings for `journal` and `delivery`.
pub(crate) async fn ready(
    h: &Harness,
    conn: &str,
    division: u32,
    journal: &str,
    delivery: Delivery,
) {
    connect(h, conn, division).await;
    let s = settings(h, division, journal, delivery);
    save_settings(h, conn, &s).await;
}

/// The design's example invoice, with its own id and reference.
pub(crate) fn invoice(id: &str) -> Value {
    json!({
      "id": id,
      "reference": format!("REF-{id}"),
      "name": "September 2025 - Website relaunch",
      "credit": false,
      "invoice_date": "2025-10-01",
      "period": {"from": "2025-09-01", "until": "2025-09-30"},
      "project": {"number": "P-1001", "name": "Website relaunch"},
      "company": {"id": "cmp_17", "name": "Acme B.V.", "address": "Stationsplein 1", "city": "Utrecht"},
      "contact": {"first_name": "Jane", "last_name": "Doe", "email": "jane@acme.example"},
      "lines": [
        {"number": 1, "name": "Consultancy", "description": "80 hours senior consultant",
         "amount": "8000.00", "item_code": null, "tax_category": null}
      ]
    })
}

pub(crate) fn invoice_with(id: &str, edit: impl FnOnce(&mut Value)) -> Value {
    let mut v = invoice(id);
    edit(&mut v);
    v
}

async fn push(h: &Harness, conn: &str, body: &Value) -> (u16, reqwest::header::HeaderMap, Value) {
    h.call(
        reqwest::Method::POST,
        &format!("/connections/{conn}/invoices"),
        Some(body),
    )
    .await
}

/// Pushes and answers the Exact API calls it made in `division` with the answer.
async fn counted(h: &Harness, conn: &str, division: u32, body: &Value) -> (usize, u16, Value) {
    let before = h.sandbox.api_calls(division);
    let (status, _, answer) = push(h, conn, body).await;
    (h.sandbox.api_calls(division) - before, status, answer)
}

/// Bodies POSTed to `/api/v1/{division}/{path}`, in order.
fn posted(h: &Harness, division: u32, path: &str) -> Vec<Value> {
    let want = format!("/api/v1/{division}/{path}");
    h.sandbox
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == want)
        .filter_map(|r| r.body)
        .collect()
}

/// The Exact invoices carrying `reference`: (ID, status, number).
fn exact_invoices(h: &Harness, division: u32, reference: &str) -> Vec<(String, i32, Option<i64>)> {
    let w = h.sandbox.world();
    w.division(division)
        .unwrap()
        .sales_invoices
        .iter()
        .filter(|i| i.your_ref.as_deref() == Some(reference))
        .map(|i| (i.invoice_id.to_string(), i.status, i.invoice_number))
        .collect()
}

fn account_named(h: &Harness, division: u32, name: &str) -> Vec<String> {
    let w = h.sandbox.world();
    w.division(division)
        .unwrap()
        .accounts
        .iter()
        .filter(|a| a.name == name)
        .map(|a| a.id.to_string())
        .collect()
}

fn item_id(h: &Harness, division: u32, code: &str) -> String {
    let w = h.sandbox.world();
    w.division(division)
        .unwrap()
        .item_by_code(code)
        .unwrap()
        .id
        .to_string()
}

/// The Exact invoice with this ID, as the sandbox holds it.
fn exact_invoice(h: &Harness, division: u32, id: &str) -> exact_sandbox::world::SalesInvoice {
    let w = h.sandbox.world();
    w.division(division)
        .unwrap()
        .sales_invoices
        .iter()
        .find(|i| i.invoice_id.to_string() == id)
        .cloned()
        .unwrap_or_else(|| panic!("no Exact invoice {id}"))
}

fn emails(h: &Harness, division: u32) -> Vec<String> {
    let w = h.sandbox.world();
    w.division(division)
        .unwrap()
        .emails_sent
        .iter()
        .map(|e| e.to.clone())
        .collect()
}

fn day_ms(date: &str) -> i64 {
    chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_millis()
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    headers.get("retry-after")?.to_str().ok()?.parse().ok()
}

// ---- Mapping: what the sandbox receives ----------------------------------------------------------

#[tokio::test]
async fn plain_invoice_sends_exactly_the_mapped_fields_and_returns_the_number() {
    let h = Harness::memory().await;
    ready(&h, "bu_1", 1001, "70", Delivery::Psa).await;
    let body = invoice("inv_plain");

    let (calls, status, answer) = counted(&h, "bu_1", 1001, &body).await;
    assert_eq!(status, 201, "{answer}");
    // New customer on a journal numbering at processing: find account, create account, create contact (a new
    // account has no contacts to search), create invoice, process, read the number.
    assert_eq!(calls, 6, "new customer calls");

    let account = answer["account_id"].as_str().unwrap().to_owned();
    let contact = answer["contact_id"].as_str().unwrap().to_owned();
    let exact_id = answer["exact_invoice_id"].as_str().unwrap().to_owned();
    let mut keys: Vec<&String> = answer.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "account_id",
            "contact_id",
            "exact_invoice_id",
            "exact_invoice_number",
            "invoice_id",
            "status"
        ]
    );
    assert_eq!(answer["invoice_id"], "inv_plain");
    assert_eq!(answer["status"], "sent");

    assert_eq!(
        posted(&h, 1001, "crm/Accounts"),
        vec![
            json!({"Name": "Acme B.V.", "AddressLine1": "Stationsplein 1", "City": "Utrecht", "Status": "C"})
        ]
    );
    assert_eq!(
        posted(&h, 1001, "crm/Contacts"),
        vec![
            json!({"Account": account, "FirstName": "Jane", "LastName": "Doe", "Email": "jane@acme.example"})
        ]
    );
    assert_eq!(
        posted(&h, 1001, "salesinvoice/SalesInvoices"),
        vec![json!({
            "Journal": "70",
            "Type": 8020,
            "OrderedBy": account,
            "InvoiceTo": account,
            "InvoiceToContactPerson": contact,
            "OrderDate": "2025-10-01",
            "Description": "September 2025 - Website relaunch",
            "YourRef": "REF-inv_plain",
            "PaymentReference": "P-1001 - Website relaunch",
            "SalesInvoiceLines": [{
                "Item": item_id(&h, 1001, "CONSULT"),
                "Description": "1 - Consultancy",
                "Notes": "80 hours senior consultant",
                "Quantity": 1.0,
                "VATCode": "2",
                "UnitPrice": 8000.0,
                "NetPrice": 8000.0,
                "StartTime": "2025-09-01",
                "EndTime": "2025-09-30"
            }]
        })]
    );
    assert_eq!(
        posted(&h, 1001, "salesinvoice/PrintedSalesInvoices"),
        vec![
            json!({"InvoiceID": exact_id, "SendEmailToCustomer": false, "InvoiceDate": "2025-10-01"})
        ]
    );

    // In Exact: one processed invoice with that number, dated the invoice date, and the stored state agrees.
    let found = exact_invoices(&h, 1001, "REF-inv_plain");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].0, exact_id);
    assert_eq!(found[0].1, 50, "processed");
    assert_eq!(json!(found[0].2), answer["exact_invoice_number"]);
    assert!(answer["exact_invoice_number"].is_i64());
    let inv = exact_invoice(&h, 1001, &exact_id);
    assert_eq!(inv.invoice_date_ms, Some(day_ms("2025-10-01")));
    assert_eq!(inv.amount_fc_excl_vat, 8000.0);
    assert!(emails(&h, 1001).is_empty(), "sending is off");
    let (s, state) = h.get("/connections/bu_1/invoices/inv_plain").await;
    assert_eq!(s, 200, "{state}");
    assert_eq!(state["state"], "sent");
    assert_eq!(state["exact_invoice_id"], answer["exact_invoice_id"]);
    assert_eq!(
        state["exact_invoice_number"],
        answer["exact_invoice_number"]
    );
    assert_eq!(state["account_id"], answer["account_id"]);
    assert_eq!(state["contact_id"], answer["contact_id"]);
    assert_eq!(state["paid_at"], Value::Null);
}

#[tokio::test]
async fn credit_note_is_type_8021_with_its_negative_amounts() {
    let h = Harness::memory().await;
    ready(&h, "bu_1", 1001, "70", Delivery::Psa).await;
    let body = invoice_with("inv_credit", |v| {
        v["credit"] = json!(true);
        v["name"] = json!("Credit for September");
        v["lines"] = json!([
            {"number": 1, "name": "Consultancy", "amount": "-8000.00"},
            {"number": 2, "name": "Goodwill", "amount": "-150.25", "tax_category": "low"}
        ]);
    });
    let (status, _, answer) = push(&h, "bu_1", &body).await;
    assert_eq!(status, 201, "{answer}");
    let sent = posted(&h, 1001, "salesinvoice/SalesInvoices")
        .pop()
        .unwrap();
    assert_eq!(sent["Type"], 8021);
    assert_eq!(sent["Description"], "Credit for September");
    let lines = sent["SalesInvoiceLines"].as_array().unwrap();
    assert_eq!(lines[0]["NetPrice"], json!(-8000.0));
    assert_eq!(lines[1]["NetPrice"], json!(-150.25));
    assert_eq!(lines[1]["VATCode"], "1");
    assert!(lines[0].get("Notes").is_none(), "no description, no Notes");
    let inv = exact_invoice(&h, 1001, answer["exact_invoice_id"].as_str().unwrap());
    assert_eq!(inv.invoice_type, 8021);
    assert_eq!(inv.status, 50);
    assert_eq!(inv.amount_fc_excl_vat, -8150.25);
}

#[tokio::test]
async fn line_item_and_tax_category_overrides_and_sending_by_exact() {
    let h = Harness::memory().await;
    connect(&h, "bu_1", 1001).await;
    let mut s = settings(&h, 1001, "70", Delivery::Psa);
    s.send_invoice_to_customer = true;
    save_settings(&h, "bu_1", &s).await;
    let body = invoice_with("inv_lines", |v| {
        v["lines"] = json!([
            {"number": 1, "name": "Consultancy", "amount": "8000.00"},
            {"number": 2, "name": "Travel", "description": "Train", "amount": "45.50",
             "item_code": "TRAVEL", "tax_category": "low"},
            {"number": 3, "name": "Licence fee", "amount": "10.00", "tax_category": "zero"},
            {"number": 4, "name": "Other", "amount": "1.00", "item_code": "CONSULT",
             "tax_category": "not-mapped"},
            {"number": 5, "name": "More travel", "amount": "2.00", "item_code": "TRAVEL"}
        ]);
    });
    let (calls, status, answer) = counted(&h, "bu_1", 1001, &body).await;
    assert_eq!(status, 201, "{answer}");
    // + one item lookup (TRAVEL, once for both lines; CONSULT is the default item from the settings).
    assert_eq!(calls, 7);
    let finds: Vec<String> = h
        .sandbox
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("logistics/Items"))
        .filter_map(|r| r.query_param("$filter"))
        .collect();
    assert_eq!(finds, ["Code eq 'TRAVEL'"]);

    let sent = posted(&h, 1001, "salesinvoice/SalesInvoices")
        .pop()
        .unwrap();
    let lines = sent["SalesInvoiceLines"].as_array().unwrap();
    let (consult, travel) = (item_id(&h, 1001, "CONSULT"), item_id(&h, 1001, "TRAVEL"));
    let got: Vec<(Value, Value, Value)> = lines
        .iter()
        .map(|l| {
            (
                l["Item"].clone(),
                l["VATCode"].clone(),
                l["NetPrice"].clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (json!(consult), json!("2"), json!(8000.0)),
            (json!(travel), json!("1"), json!(45.5)),
            (json!(consult), json!("0"), json!(10.0)),
            (json!(consult), json!("2"), json!(1.0)),
            (json!(travel), json!("2"), json!(2.0)),
        ]
    );
    assert_eq!(lines[1]["Description"], "2 - Travel");
    assert_eq!(lines[1]["Notes"], "Train");
    for l in lines {
        assert_eq!(l["StartTime"], "2025-09-01");
        assert_eq!(l["EndTime"], "2025-09-30");
    }
    // Exact e-mailed it to the invoice contact.
    assert_eq!(
        posted(&h, 1001, "salesinvoice/PrintedSalesInvoices")
            .pop()
            .unwrap()["SendEmailToCustomer"],
        true
    );
    assert_eq!(emails(&h, 1001), ["jane@acme.example"]);

    // The resolved item is cached: the next push with TRAVEL looks nothing up.
    let again = invoice_with("inv_lines_2", |v| {
        v["lines"][0]["item_code"] = json!("TRAVEL")
    });
    let (calls, status, _) = counted(&h, "bu_1", 1001, &again).await;
    assert_eq!((status, calls), (201, 3), "create + process + number");
}

#[tokio::test]
async fn unusable_line_items_are_refused_before_anything_is_created() {
    let h = Harness::memory().await;
    ready(&h, "bu_1", 1001, "70", Delivery::Psa).await;
    for (code, err) in [
        ("NOPE", "unknown_item"),
        ("LICENSE", "item_not_for_sale"),
        ("OLDITEM", "item_ended"),
    ] {
        let body = invoice_with("inv_item", |v| {
            v["lines"][0]["item_code"] = json!(code);
        });
        let (status, _, answer) = push(&h, "bu_1", &body).await;
        assert_eq!(status, 422, "{code}: {answer}");
        assert_eq!(answer["error"]["code"], err);
        assert_eq!(answer["error"]["field"], "lines[0].item_code");
    }
    assert!(posted(&h, 1001, "salesinvoice/SalesInvoices").is_empty());
    // Each refusal released the claim: the corrected invoice goes through under the same id.
    let (status, _, answer) = push(&h, "bu_1", &invoice("inv_item")).await;
    assert_eq!(status, 201, "{answer}");
}

#[tokio::test]
async fn invoice_without_period_sends_no_start_or_end_time() {
    let h = Harness::memory().await;
    ready(&h, "bu_1", 1001, "70", Delivery::Psa).await;
    let body = invoice_with("inv_noperiod", |v| {
        v.as_object_mut().unwrap().remove("period");
        v["lines"]
            .as_array_mut()
            .unwrap()
            .push(json!({"number": 2, "name": "Extra", "amount": "5.00"}));
    });
    let (status, _, answer) = push(&h, "bu_1", &body).await;
    assert_eq!(status, 201, "{answer}");
    let sent = posted(&h, 1001, "salesinvoice/SalesInvoices")
        .pop()
        .unwrap();
    for line in sent["SalesInvoiceLines"].as_array().unwrap() {
        assert!(line.get("StartTime").is_none(), "{line}");
        assert!(line.get("EndTime").is_none(), "{line}");
    }
    let inv = exact_invoice(&h, 1001, answer["exact_invoice_id"].as_str().unwrap());
    assert!(
        inv.lines
            .iter()
            .all(|l| l.start_time_ms.is_none() && l.end_time_ms.is_none())
    );
}

#[tokio::test]
async fn company_name_with_a_quote_is_found_by_its_exact_name() {
    let h = Harness::memory().await;
    ready(&h, "bu_1", 1001, "70", Delivery::Psa).await;
    let existing = {
        let mut w = h.sandbox.world();
        let a = w.add_account(1001, "O'Brien & Zonen B.V.");
        a.status = Some("C".into());
        a.id.to_string()
    };
    let body = invoice_with("inv_quote", |v| {
        v["company"] = json!({"id": "cmp_ob", "name": "O'Brien & Zonen B.V."});
    });
    let (status, _, answer) = push(&h, "bu_1", &body).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["account_id"], json!(existing));
    assert!(
        posted(&h, 1001, "crm/Accounts").is_empty(),
        "no account created"
    );
    let filter = h
        .sandbox
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("crm/Accounts"))
        .and_then(|r| r.query_param("$filter"))
        .unwrap();
    assert_eq!(filter, "Name eq 'O''Brien & Zonen B.V.'");
    assert_eq!(account_named(&h, 1001, "O'Brien & Zonen B.V.").len(), 1);

    // A new company with a quote is created under its name, verbatim (address fields left out when absent).
    let body = invoice_with("inv_quote_2", |v| {
        v["company"] = json!({"id": "cmp_dh", "name": "'t Hoekje"});
    });
    let (status, _, _) = push(&h, "bu_1", &body).await;
    assert_eq!(status, 201);
    assert_eq!(
        posted(&h, 1001, "crm/Accounts"),
        vec![json!({"Name": "'t Hoekje", "Status": "C"})]
    );
}

// ---- Contacts ----------------------------------------------------------------------------------

#[tokio::test]
async fn contacts_are_reused_only_on_the_same_account() {
    let h = Harness::memory().await;
    ready(&h, "bu_1", 1001, "70", Delivery::Psa).await;
    let (alpha, beta, alpha_contact) = {
        let mut w = h.sandbox.world();
        let alpha = w.add_account(1001, "Alpha B.V.").id;
        let beta = w.add_account(1001, "Beta B.V.").id;
        let c = w
            .add_contact(1001, alpha, "Ann", "Alpha", Some("ann@shared.example"))
            .id;
        (alpha.to_string(), beta.to_string(), c.to_string())
    };
    let for_company = |id: &str, cid: &str, name: &str| {
        invoice_with(id, |v| {
            v["company"] = json!({"id": cid, "name": name});
            v["contact"] =
                json!({"first_name": "Ann", "last_name": "Alpha", "email": "ann@shared.example"});
        })
    };

    // On this account → reused: searched, not created.
    let (calls, status, a) = counted(
        &h,
        "bu_1",
        1001,
        &for_company("inv_a", "cmp_a", "Alpha B.V."),
    )
    .await;
    assert_eq!(status, 201, "{a}");
    assert_eq!(
        (a["account_id"].as_str(), a["contact_id"].as_str()),
        (Some(&*alpha), Some(&*alpha_contact))
    );
    assert!(posted(&h, 1001, "crm/Contacts").is_empty());
    assert_eq!(
        calls, 5,
        "find account, find contact, create, process, number"
    );

    // Only on another account → a new contact on this account.
    let (status, _, b) = push(&h, "bu_1", &for_company("inv_b", "cmp_b", "Beta B.V.")).await;
    assert_eq!(status, 201, "{b}");
    assert_eq!(b["account_id"], json!(beta));
    assert_ne!(b["contact_id"], json!(alpha_contact));
    assert_eq!(
        posted(&h, 1001, "crm/Contacts"),
        vec![
            json!({"Account": beta, "FirstName": "Ann", "LastName": "Alpha", "Email": "ann@shared.example"})
        ]
    );
    let inv = exact_invoice(&h, 1001, b["exact_invoice_id"].as_str().unwrap());
    assert_eq!(
        inv.invoice_to_contact_person.map(|c| c.to_string()),
        b["contact_id"].as_str().map(String::from)
    );

    // None anywhere → created (on a known account: searched first).
    let body = invoice_with("inv_c", |v| {
        v["company"] = json!({"id": "cmp_a", "name": "Alpha B.V."});
        v["contact"] = json!({"email": "new.person@alpha.example"});
    });
    let (status, _, c) = push(&h, "bu_1", &body).await;
    assert_eq!(status, 201, "{c}");
    assert_eq!(c["account_id"], json!(alpha));
    assert_eq!(
        posted(&h, 1001, "crm/Contacts").pop().unwrap(),
        json!({"Account": alpha, "LastName": "new.person", "Email": "new.person@alpha.example"})
    );
    let searched: Vec<String> = h
        .sandbox
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("crm/Contacts"))
        .filter_map(|r| r.query_param("$filter"))
        .collect();
    assert_eq!(
        searched,
        [
            "Email eq 'ann@shared.example'",
            "Email eq 'ann@shared.example'",
            "Email eq 'new.person@alpha.example'"
        ]
    );
}

// ---- Call counts -------------------------------------------------------------------------------

#[tokio::test]
async fn call_counts_new_and_known_customers() {
    let h = Harness::memory().await;
    ready(&h, "bu_1", 1001, "72", Delivery::Psa).await;

    // Journal 72 numbers at entry: the create answer carries the number.
    let (calls, status, first) = counted(&h, "bu_1", 1001, &invoice("cc_1")).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(calls, 5, "new customer, journal 72");
    assert!(first["exact_invoice_number"].is_i64());

    let (calls, status, second) = counted(&h, "bu_1", 1001, &invoice("cc_2")).await;
    assert_eq!(status, 201, "{second}");
    assert_eq!(calls, 2, "warm push, journal 72: create + process");
    assert!(second["exact_invoice_number"].as_i64() > first["exact_invoice_number"].as_i64());
    assert_eq!(second["account_id"], first["account_id"]);
    assert_eq!(second["contact_id"], first["contact_id"]);

    // Journal 70 numbers at processing, and the processing answer carries no number: one read more.
    save_settings(&h, "bu_1", &settings(&h, 1001, "70", Delivery::Psa)).await;
    let (calls, status, third) = counted(&h, "bu_1", 1001, &invoice("cc_3")).await;
    assert_eq!(status, 201, "{third}");
    assert_eq!(
        calls, 3,
        "warm push, journal 70: create + process + read the number"
    );
    assert!(third["exact_invoice_number"].is_i64());

    // Delivery exact: only the create; left open, no number yet.
    save_settings(&h, "bu_1", &settings(&h, 1001, "70", Delivery::Exact)).await;
    let (calls, status, fourth) = counted(&h, "bu_1", 1001, &invoice("cc_4")).await;
    assert_eq!((status, calls), (201, 1), "{fourth}");
    assert_eq!(fourth["status"], "created");
    assert_eq!(fourth["exact_invoice_number"], Value::Null);
    let (_, st, n) = exact_invoices(&h, 1001, "REF-cc_4").pop().unwrap();
    assert_eq!((st, n), (20, None), "open in Exact");

    // A replay costs nothing in Exact.
    let (calls, status, replay) = counted(&h, "bu_1", 1001, &invoice("cc_4")).await;
    assert_eq!((status, calls), (200, 0));
    assert_eq!(replay, fourth);
}

// ---- Idempotency: replay, conflict, state ------------------------------------------------------

#[tokio::test]
async fn replay_conflict_and_stored_states() {
    let h = Harness::memory().await;
    ready(&h, "bu_1", 1001, "70", Delivery::Exact).await;
    let body = invoice("inv_state");
    let (status, _, created) = push(&h, "bu_1", &body).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["status"], "created");

    let (status, _, replay) = push(&h, "bu_1", &body).await;
    assert_eq!(status, 200);
    assert_eq!(replay, created, "the saved response, verbatim");

    let changed = invoice_with("inv_state", |v| v["lines"][0]["amount"] = json!("9000.00"));
    let (status, _, conflict) = push(&h, "bu_1", &changed).await;
    assert_eq!(status, 409, "{conflict}");
    assert_eq!(conflict["error"]["code"], "invoice_conflict");
    assert_eq!(exact_invoices(&h, 1001, "REF-inv_state").len(), 1);

    let (s, state) = h.get("/connections/bu_1/invoices/inv_state").await;
    assert_eq!(s, 200);
    assert_eq!(state["state"], "created");
    assert_eq!(state["exact_invoice_id"], created["exact_invoice_id"]);
    assert_eq!(state["exact_invoice_number"], Value::Null);
    assert_eq!(state["reference"], "REF-inv_state");
    assert_eq!(state["division"], 1001);

    // The number arrives later (webhook or reconciliation): sent.
    let c = cid("bu_1");
    h.app
        .state
        .set_number(&c, "inv_state", 25700042, h.app.now())
        .await
        .unwrap();
    let (_, state) = h.get("/connections/bu_1/invoices/inv_state").await;
    assert_eq!(
        (
            state["state"].clone(),
            state["exact_invoice_number"].clone()
        ),
        (json!("sent"), json!(25700042))
    );

    // Paid, with its date.
    let paid_at = chrono::DateTime::parse_from_rfc3339("2025-10-15T00:00:00Z")
        .unwrap()
        .to_utc();
    h.app
        .state
        .mark_paid(&c, "inv_state", paid_at, h.app.now())
        .await
        .unwrap();
    let (_, state) = h.get("/connections/bu_1/invoices/inv_state").await;
    assert_eq!(state["state"], "paid");
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(state["paid_at"].as_str().unwrap()).unwrap(),
        paid_at
    );

    // A push in progress reads as pending.
    h.app
        .state
        .claim(
            &c,
            "inv_running",
            "h",
            "someone",
            h.app.now(),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    let (s, state) = h.get("/connections/bu_1/invoices/inv_running").await;
    assert_eq!((s, state["state"].clone()), (200, json!("pending")));

    let (s, e) = h.get("/connections/bu_1/invoices/inv_unknown").await;
    assert_eq!(
        (s, e["error"]["code"].clone()),
        (404, json!("unknown_invoice"))
    );
    let (s, e) = h.get("/connections/bu_nobody/invoices/inv_state").await;
    assert_eq!(
        (s, e["error"]["code"].clone()),
        (404, json!("unknown_connection"))
    );
    let resp = h
        .http
        .get(h.url("/connections/bu_1/invoices/inv_state"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "PSA key required");
}

/// Pushes something that must be refused before any Exact call.
async fn refused(
    h: &Harness,
    conn: &str,
    body: &Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let before = (h.sandbox.api_calls(1001), h.sandbox.api_calls(1002));
    let answer = push(h, conn, body).await;
    let after = (h.sandbox.api_calls(1001), h.sandbox.api_calls(1002));
    assert_eq!(
        before, after,
        "no Exact call for a refused request: {}",
        answer.2
    );
    answer
}

// ---- Validation and refusals before Exact -------------------------------------------------------

#[tokio::test]
async fn invalid_requests_are_refused_without_calling_exact() {
    let h = Harness::memory().await;
    ready(&h, "bu_1", 1001, "70", Delivery::Psa).await;
    connect(&h, "bu_untested", 1001).await;

    let missing = invoice_with("inv_bad", |v| {
        v.as_object_mut().unwrap().remove("reference");
    });
    let (s, _, e) = refused(&h, "bu_1", &missing).await;
    assert_eq!(
        (s, e["error"]["field"].clone()),
        (400, json!("reference")),
        "{e}"
    );

    let number_amount = invoice_with("inv_bad", |v| v["lines"][0]["amount"] = json!(8000.0));
    let (s, _, e) = refused(&h, "bu_1", &number_amount).await;
    assert_eq!(
        (s, e["error"]["field"].clone()),
        (400, json!("lines[0].amount")),
        "{e}"
    );

    let positive_credit = invoice_with("inv_bad", |v| v["credit"] = json!(true));
    let (s, _, e) = refused(&h, "bu_1", &positive_credit).await;
    assert_eq!(s, 422, "{e}");
    assert_eq!(e["error"]["code"], "credit_note_positive_total");
    assert_eq!(e["error"]["field"], "credit");

    let (s, _, e) = refused(&h, "bu_1", &json!("not an invoice")).await;
    assert_eq!(s, 400, "{e}");

    let resp = h
        .http
        .post(h.url("/connections/bu_1/invoices"))
        .bearer_auth("wrong-key")
        .json(&invoice("inv_bad"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    let (s, _, e) = refused(&h, "bu_nobody", &invoice("inv_bad")).await;
    assert_eq!(
        (s, e["error"]["code"].clone()),
        (404, json!("unknown_connection"))
    );

    // Connected but never tested: not configured.
    let (s, _, e) = refused(&h, "bu_untested", &invoice("inv_bad")).await;
    assert_eq!(
        (s, e["error"]["code"].clone()),
        (409, json!("not_configured")),
        "{e}"
    );

    // Settings from another administration (reconnected elsewhere): not configured either.
    save_settings(&h, "bu_untested", &settings(&h, 1002, "70", Delivery::Psa)).await;
    let (s, _, e) = refused(&h, "bu_untested", &invoice("inv_bad")).await;
    assert_eq!(
        (s, e["error"]["code"].clone()),
        (409, json!("not_configured")),
        "{e}"
    );

    // Disconnected.
    let (s, _, _) = h
        .call(reqwest::Method::DELETE, "/connections/bu_1/exact", None)
        .await;
    assert_eq!(s, 200);
    let (s, _, e) = refused(&h, "bu_1", &invoice("inv_bad")).await;
    assert_eq!(
        (s, e["error"]["code"].clone()),
        (409, json!("not_connected")),
        "{e}"
    );

    assert!(
        h.app
            .state
            .get_invoice(&cid("bu_1"), "inv_bad")
            .await
            .unwrap()
            .is_none()
    );
}

// ---- Concurrency -------------------------------------------------------------------------------

/// 32 pushes of the same invoice at once: one Exact invoice, and every answer names it.
async fn concurrent_pushes_make_one_invoice(h: Harness) {
    ready(&h, "bu_1", 1001, "70", Delivery::Psa).await;
    let body = invoice("inv_race");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let (http, url, body) = (
            h.http.clone(),
            h.url("/connections/bu_1/invoices"),
            body.clone(),
        );
        tasks.spawn(async move {
            let resp = http
                .post(url)
                .bearer_auth(PSA_KEY)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap())
        });
    }
    let answers: Vec<(u16, Value)> = tasks.join_all().await;
    let created: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == 201)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(created.len(), 1, "one push did the work: {answers:?}");
    let first = created[0];
    for (status, b) in &answers {
        assert!(*status == 201 || *status == 200, "{status} {b}");
        assert_eq!(b, first, "every answer agrees");
    }
    let found = exact_invoices(&h, 1001, "REF-inv_race");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(json!(found[0].0), first["exact_invoice_id"]);
    assert_eq!(json!(found[0].2), first["exact_invoice_number"]);
    assert_eq!(account_named(&h, 1001, "Acme B.V.").len(), 1);
    assert_eq!(posted(&h, 1001, "crm/Contacts").len(), 1);
}

#[tokio::test]
async fn concurrent_pushes_make_one_invoice_in_memory() {
    concurrent_pushes_make_one_invoice(Harness::memory().await).await;
}

#[tokio::test]
async fn concurrent_pushes_make_one_invoice_on_moto() {
    concurrent_pushes_make_one_invoice(Harness::moto().await).await;
}

// ---- Crash recovery ----------------------------------------------------------------------------

#[tokio::test]
async fn lost_create_answer_is_found_by_reference_in_the_same_push() {
    let h = Harness::memory().await;
    ready(&h, "bu_1", 1001, "70", Delivery::Psa).await;
    // Exact stores the invoice, then the connection drops before any answer.
    h.sandbox.inject(
        Fault::new("salesinvoice/SalesInvoices", FaultKind::DropAfterStore).on_method("POST"),
    );
    let (status, _, answer) = push(&h, "bu_1", &invoice("inv_drop")).await;
    assert_eq!(status, 201, "{answer}");
    let found = exact_invoices(&h, 1001, "REF-inv_drop");
    assert_eq!(found.len(), 1, "never a second invoice: {found:?}");
    assert_eq!(json!(found[0].0), answer["exact_invoice_id"]);
    assert_eq!(found[0].1, 50);
    assert_eq!(json!(found[0].2), answer["exact_invoice_number"]);
    assert_eq!(posted(&h, 1001, "salesinvoice/SalesInvoices").len(), 1);
    let lookup = h
        .sandbox
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("salesinvoice/SalesInvoices"))
        .filter_map(|r| r.query_param("$filter"))
        .next()
        .unwrap();
    assert_eq!(
        lookup,
        format!(
            "YourRef eq 'REF-inv_drop' and OrderedBy eq guid'{}'",
            answer["account_id"].as_str().unwrap()
        )
    );

    let (status, _, replay) = push(&h, "bu_1", &invoice("inv_drop")).await;
    assert_eq!((status, &replay), (200, &answer));
}

/// The push dies between Exact storing the invoice and the record learning its ID (here: the answer is lost and
/// Exact cannot be asked right then). The claim keeps the attempt; once it expires, the retry finds the invoice.
async fn crash_after_exact_stored_the_invoice(h: Harness) {
    ready(&h, "bu_1", 1001, "70", Delivery::Psa).await;
    h.sandbox.inject(
        Fault::new("salesinvoice/SalesInvoices", FaultKind::DropAfterStore).on_method("POST"),
    );
    h.sandbox.inject(
        Fault::status("salesinvoice/SalesInvoices", 503, "Service Unavailable")
            .on_method("GET")
            .times(10),
    );
    let body = invoice("inv_crash");
    let (status, headers, e) = push(&h, "bu_1", &body).await;
    assert_eq!(status, 502, "{e}");
    assert_eq!(e["error"]["code"], "exact_unavailable");
    let wait = retry_after(&headers).unwrap();
    assert!((50..=60).contains(&wait), "until the claim expires: {wait}");
    h.sandbox.clear_faults();
    assert_eq!(exact_invoices(&h, 1001, "REF-inv_crash").len(), 1);
    let rec = h
        .app
        .state
        .get_invoice(&cid("bu_1"), "inv_crash")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.exact_invoice_id, None, "the record never learnt the ID");
    assert_eq!(
        rec.reference.as_deref(),
        Some("REF-inv_crash"),
        "but knows a create was attempted"
    );

    // While the claim lives, a retry is told to come back later (after waiting a little for it).
    let (status, headers, e) = push(&h, "bu_1", &body).await;
    assert_eq!(status, 409, "{e}");
    assert_eq!(e["error"]["code"], "push_in_progress");
    assert!(retry_after(&headers).is_some());

    // After the lease: taken over, looked up, processed — the same invoice, with its number.
    h.sandbox.clock().advance(PAST_LEASE);
    let before = h.sandbox.api_calls(1001);
    let (status, _, answer) = push(&h, "bu_1", &body).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(
        h.sandbox.api_calls(1001) - before,
        3,
        "lookup, process, number — and no create"
    );
    let found = exact_invoices(&h, 1001, "REF-inv_crash");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(json!(found[0].0), answer["exact_invoice_id"]);
    assert_eq!(found[0].1, 50);
    assert!(answer["exact_invoice_number"].is_i64());
    assert_eq!(json!(found[0].2), answer["exact_invoice_number"]);
    assert_eq!(posted(&h, 1001, "salesinvoice/SalesInvoices").len(), 1);
}

#[tokio::test]
async fn crash_after_exact_stored_the_invoice_in_memory() {
    crash_after_exact_stored_the_invoice(Harness::memory().await).await;
}

#[tokio::test]
async fn crash_after_exact_stored_the_invoice_on_moto() {
    crash_after_exact_stored_the_invoice(Harness::moto().await).await;
}

#[tokio::test]
async fn timed_out_create_is_not_repeated() {
    let h = Harness::memory().await;
    ready(&h, "bu_1", 1001, "70", Delivery::Psa).await;
    // A function whose Exact calls time out after 300 ms; Exact takes 1.5 s and stores the invoice anyway.
    let mut app = (*h.app).clone();
    app.exact_timeout = Duration::from_millis(300);
    h.sandbox.inject(
        Fault::new(
            "salesinvoice/SalesInvoices",
            FaultKind::Delay(Duration::from_millis(1500)),
        )
        .on_method("POST"),
    );
    let body = invoice("inv_slow");
    let req = lambda_http::http::Request::builder()
        .method("POST")
        .uri("/connections/bu_1/invoices")
        .header("authorization", format!("Bearer {PSA_KEY}"))
        .body(lambda_http::Body::Text(body.to_string()))
        .unwrap();
    let resp = PushInvoice.http(&app, req).await;
    assert_eq!(resp.status(), 502);
    let lambda_http::Body::Text(text) = resp.body() else {
        panic!("a JSON body")
    };
    let e: Value = serde_json::from_str(text).unwrap();
    assert_eq!(e["error"]["code"], "exact_unavailable", "{e}");
    assert!(resp.headers().contains_key("retry-after"));

    tokio::time::sleep(Duration::from_millis(1800)).await;
    assert_eq!(
        exact_invoices(&h, 1001, "REF-inv_slow").len(),
        1,
        "Exact did it late"
    );
    h.sandbox.clock().advance(PAST_LEASE);
    let (status, _, answer) = push(&h, "bu_1", &body).await;
    assert_eq!(status, 201, "{answer}");
    let found = exact_invoices(&h, 1001, "REF-inv_slow");
    assert_eq!(found.len(), 1, "no duplicate: {found:?}");
    assert_eq!(json!(found[0].0), answer["exact_invoice_id"]);
    assert_eq!(json!(found[0].2), answer["exact_invoice_number"]);
}

// ---- Exact refusing ----------------------------------------------------------------------------

#[tokio::test]
async fn missing_payment_condition_is_exacts_text_and_the_fixed_retry_processes_the_same_invoice() {
    let h = Harness::memory().await;
    // Jan's 1002 has no default payment condition: processing fails unless the account has one.
    ready(&h, "bu_2", 1002, "70", Delivery::Psa).await;
    let body = invoice("inv_pc");
    let (status, headers, e) = push(&h, "bu_2", &body).await;
    assert_eq!(status, 422, "{e}");
    assert_eq!(e["error"]["code"], "exact_refused");
    assert_eq!(e["error"]["exact_message"], "Verplicht: Betalingsconditie");
    assert!(
        retry_after(&headers).is_some(),
        "the open invoice keeps the claim"
    );
    let found = exact_invoices(&h, 1002, "REF-inv_pc");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].1, 20, "created, not processed");
    let rec = h
        .app
        .state
        .get_invoice(&cid("bu_2"), "inv_pc")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        rec.exact_invoice_id.map(|g| g.to_string()),
        Some(found[0].0.clone())
    );

    // The user gives the customer a payment condition in Exact; the next push processes the same invoice.
    {
        let mut w = h.sandbox.world();
        let d = w.division_mut(1002);
        let acct = d
            .accounts
            .iter_mut()
            .find(|a| a.name == "Acme B.V.")
            .unwrap();
        acct.payment_condition_sales = Some("30".into());
    }
    h.sandbox.clock().advance(PAST_LEASE);
    let before = h.sandbox.api_calls(1002);
    let (status, _, answer) = push(&h, "bu_2", &body).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(
        h.sandbox.api_calls(1002) - before,
        3,
        "read, process, number"
    );
    let found = exact_invoices(&h, 1002, "REF-inv_pc");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].1, 50);
    assert_eq!(json!(found[0].0), answer["exact_invoice_id"]);
    assert_eq!(json!(found[0].2), answer["exact_invoice_number"]);
}

#[tokio::test]
async fn invalid_vat_code_is_exacts_text_and_releases_the_claim() {
    let h = Harness::memory().await;
    ready(&h, "bu_1", 1001, "70", Delivery::Psa).await;
    let bad = invoice_with("inv_vat", |v| {
        v["lines"][0]["tax_category"] = json!("purchase");
    });
    let (status, _, e) = push(&h, "bu_1", &bad).await;
    assert_eq!(status, 422, "{e}");
    assert_eq!(e["error"]["code"], "exact_refused");
    assert_eq!(
        e["error"]["exact_message"],
        "Btw-code is niet toegestaan voor verkoop: 5"
    );
    assert!(exact_invoices(&h, 1001, "REF-inv_vat").is_empty());
    assert!(
        h.app
            .state
            .get_invoice(&cid("bu_1"), "inv_vat")
            .await
            .unwrap()
            .is_none(),
        "released"
    );

    // The corrected invoice goes through at once, under the same id; account and contact came from the cache.
    let good = invoice_with("inv_vat", |v| v["lines"][0]["tax_category"] = json!("high"));
    let (calls, status, answer) = counted(&h, "bu_1", 1001, &good).await;
    assert_eq!((status, calls), (201, 3), "{answer}");
    assert_eq!(exact_invoices(&h, 1001, "REF-inv_vat").len(), 1);
    assert_eq!(account_named(&h, 1001, "Acme B.V.").len(), 1);
}

/// Freezes the sandbox clock one second into a minute, so a spent minute is 59 s away (beyond the request's
/// 20 s budget: the function answers 429 instead of waiting).
fn freeze_at_minute_start(h: &Harness) {
    let clock = h.sandbox.clock();
    let now = clock.now_ms();
    clock.set_ms(now - now.rem_euclid(60_000) + 61_000);
    clock.freeze();
}

#[tokio::test]
async fn rate_limited_create_answers_429_and_the_retry_continues() {
    let h = Harness::memory().await;
    ready(&h, "bu_1", 1001, "70", Delivery::Psa).await;
    freeze_at_minute_start(&h);
    h.sandbox
        .inject(Fault::new("salesinvoice/SalesInvoices", FaultKind::RateLimit).on_method("POST"));
    let body = invoice("inv_429");
    let (status, headers, e) = push(&h, "bu_1", &body).await;
    assert_eq!(status, 429, "{e}");
    assert_eq!(e["error"]["exact_message"], "API rate limit exceeded.");
    assert_eq!(retry_after(&headers), Some(59));
    assert!(exact_invoices(&h, 1001, "REF-inv_429").is_empty());
    // What was done is kept: the account and contact are remembered.
    assert_eq!(posted(&h, 1001, "crm/Accounts").len(), 1);

    h.sandbox.clock().advance(Duration::from_secs(60));
    let (calls, status, answer) = counted(&h, "bu_1", 1001, &body).await;
    assert_eq!((status, calls), (201, 3), "{answer}");
    assert_eq!(exact_invoices(&h, 1001, "REF-inv_429").len(), 1);
    assert_eq!(posted(&h, 1001, "crm/Accounts").len(), 1);
    assert_eq!(posted(&h, 1001, "crm/Contacts").len(), 1);
}

#[tokio::test]
async fn rate_limited_processing_keeps_the_invoice_and_the_retry_processes_it() {
    let h = Harness::memory().await;
    ready(&h, "bu_1", 1001, "70", Delivery::Psa).await;
    freeze_at_minute_start(&h);
    h.sandbox
        .inject(Fault::new("PrintedSalesInvoices", FaultKind::RateLimit));
    let body = invoice("inv_429p");
    let (status, headers, e) = push(&h, "bu_1", &body).await;
    assert_eq!(status, 429, "{e}");
    assert_eq!(e["error"]["exact_message"], "API rate limit exceeded.");
    // Not before the claim (which now holds the Exact invoice) expires.
    assert_eq!(retry_after(&headers), Some(60));
    let found = exact_invoices(&h, 1001, "REF-inv_429p");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].1, 20);

    h.sandbox.clock().advance(PAST_LEASE);
    let (calls, status, answer) = counted(&h, "bu_1", 1001, &body).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(calls, 3, "read, process, number");
    let found = exact_invoices(&h, 1001, "REF-inv_429p");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].1, 50);
    assert_eq!(json!(found[0].2), answer["exact_invoice_number"]);
}

#[tokio::test]
async fn unavailable_exact_answers_502_with_its_text_and_no_duplicate_follows() {
    let h = Harness::memory().await;
    ready(&h, "bu_1", 1001, "70", Delivery::Psa).await;
    h.sandbox.inject(
        Fault::status(
            "salesinvoice/SalesInvoices",
            503,
            "Service Temporarily Unavailable",
        )
        .on_method("POST"),
    );
    let body = invoice("inv_503");
    let (status, headers, e) = push(&h, "bu_1", &body).await;
    assert_eq!(status, 502, "{e}");
    assert_eq!(e["error"]["code"], "exact_unavailable");
    assert_eq!(
        e["error"]["exact_message"],
        "Service Temporarily Unavailable"
    );
    assert!(retry_after(&headers).is_some());
    assert!(exact_invoices(&h, 1001, "REF-inv_503").is_empty());

    h.sandbox.clock().advance(PAST_LEASE);
    let (calls, status, answer) = counted(&h, "bu_1", 1001, &body).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(
        calls, 4,
        "lookup (the outcome was unknown), create, process, number"
    );
    assert_eq!(exact_invoices(&h, 1001, "REF-inv_503").len(), 1);
}

#[tokio::test]
async fn failed_email_on_a_processed_invoice_is_reported_with_the_number() {
    let h = Harness::memory().await;
    connect(&h, "bu_1", 1001).await;
    let mut s = settings(&h, 1001, "70", Delivery::Psa);
    s.send_invoice_to_customer = true;
    save_settings(&h, "bu_1", &s).await;
    // The cached contact lost its e-mail address in Exact: Exact processes the invoice but cannot e-mail it.
    let (account, contact) = {
        let mut w = h.sandbox.world();
        let a = w.add_account(1001, "Acme B.V.").id;
        let c = w.add_contact(1001, a, "Jane", "Doe", None).id;
        (guid(a), guid(c))
    };
    let c = cid("bu_1");
    let div = Division::new(1001).unwrap();
    h.app
        .state
        .put_mapping(
            &c,
            div,
            &store::MappingKey::Contact {
                account_id: account,
                email: "jane@acme.example".into(),
            },
            contact,
        )
        .await
        .unwrap();
    h.app
        .state
        .put_mapping(
            &c,
            div,
            &store::MappingKey::Account {
                psa_company_id: "cmp_17".into(),
            },
            account,
        )
        .await
        .unwrap();

    let (status, _, answer) = push(&h, "bu_1", &invoice("inv_mail")).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["status"], "sent");
    assert!(answer["exact_invoice_number"].is_i64());
    assert_eq!(
        answer["exact_warning"],
        "E-mail kan niet worden verzonden: geen e-mailadres bij de klant"
    );
    assert!(emails(&h, 1001).is_empty());
    let found = exact_invoices(&h, 1001, "REF-inv_mail");
    assert_eq!((found.len(), found[0].1), (1, 50));
}

// ---- Accounts Exact can invoice ----------------------------------------------------------------

/// Seeds an account named `name` in 1001 and lets `edit` make it what the test needs; answers its ID.
fn seed_account(
    h: &Harness,
    name: &str,
    edit: impl FnOnce(&mut exact_sandbox::world::Account),
) -> String {
    let mut w = h.sandbox.world();
    let a = w.add_account(1001, name);
    edit(a);
    a.id.to_string()
}

#[tokio::test]
async fn only_a_customer_that_is_not_blocked_is_reused_by_name() {
    let h = Harness::memory().await;
    ready(&h, "bu_1", 1001, "70", Delivery::Psa).await;
    let not_invoiceable = [
        seed_account(&h, "Acme B.V.", |a| {
            a.status = Some("A".into());
            a.is_supplier = true;
        }),
        seed_account(&h, "Acme B.V.", |a| a.blocked = true),
        seed_account(&h, "Acme B.V.", |a| a.status = Some("P".into())),
        seed_account(&h, "Acme B.V.", |a| a.status = Some("S".into())),
    ];
    let (status, _, answer) = push(&h, "bu_1", &invoice("inv_acct")).await;
    assert_eq!(status, 201, "{answer}");
    let account = answer["account_id"].as_str().unwrap().to_owned();
    assert!(!not_invoiceable.contains(&account), "{account}");
    assert_eq!(
        account_named(&h, 1001, "Acme B.V.").len(),
        5,
        "a new customer"
    );
    let status = {
        let w = h.sandbox.world();
        w.division(1001)
            .unwrap()
            .accounts
            .iter()
            .find(|a| a.id.to_string() == account)
            .and_then(|a| a.status.clone())
    };
    assert_eq!(status.as_deref(), Some("C"));
    assert_eq!(exact_invoices(&h, 1001, "REF-inv_acct").len(), 1);

    // A customer with the name (also a supplier) is reused.
    let customer = seed_account(&h, "Beta B.V.", |a| a.is_supplier = true);
    let body = invoice_with("inv_beta", |v| {
        v["company"] = json!({"id": "cmp_beta", "name": "Beta B.V."})
    });
    let (status, _, answer) = push(&h, "bu_1", &body).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["account_id"], json!(customer));
}

#[tokio::test]
async fn exact_refuses_invoicing_a_supplier_only_or_blocked_account() {
    // What the sandbox does, as Exact: checked through a cached account, which the push does not look up again.
    let h = Harness::memory().await;
    ready(&h, "bu_1", 1001, "70", Delivery::Psa).await;
    for (id, expected, edit) in [
        (
            "inv_sup",
            "Ongeldig: Besteld door (Type)",
            (|a: &mut exact_sandbox::world::Account| {
                a.status = Some("A".into());
                a.is_supplier = true;
            }) as fn(&mut exact_sandbox::world::Account),
        ),
        ("inv_blk", "Geblokkeerd: Besteld door", |a| a.blocked = true),
    ] {
        let account = seed_account(&h, &format!("Account {id}"), edit);
        let company = format!("cmp_{id}");
        h.app
            .state
            .put_mapping(
                &cid("bu_1"),
                Division::new(1001).unwrap(),
                &store::MappingKey::Account {
                    psa_company_id: company.clone(),
                },
                account.parse::<ExactGuid>().unwrap(),
            )
            .await
            .unwrap();
        let body = invoice_with(id, |v| v["company"]["id"] = json!(company));
        let (status, _, e) = push(&h, "bu_1", &body).await;
        assert_eq!(status, 422, "{e}");
        assert_eq!(e["error"]["exact_message"], expected, "{e}");
        assert!(exact_invoices(&h, 1001, &format!("REF-{id}")).is_empty());
    }
}

// ---- Unit price ----------------------------------------------------------------------------------

#[tokio::test]
async fn every_line_carries_its_amount_as_unit_price_and_net_price() {
    let h = Harness::memory().await;
    ready(&h, "bu_1", 1001, "70", Delivery::Psa).await;
    let body = invoice_with("inv_unit", |v| {
        v["lines"] = json!([
            {"number": 1, "name": "Consultancy", "amount": "8000.00"},
            {"number": 2, "name": "Travel", "amount": "45.50"}
        ]);
    });
    let (status, _, answer) = push(&h, "bu_1", &body).await;
    assert_eq!(status, 201, "{answer}");
    let inv = exact_invoice(&h, 1001, answer["exact_invoice_id"].as_str().unwrap());
    let prices: Vec<(f64, f64, f64)> = inv
        .lines
        .iter()
        .map(|l| (l.quantity, l.unit_price, l.net_price))
        .collect();
    assert_eq!(prices, [(1.0, 8000.0, 8000.0), (1.0, 45.5, 45.5)]);
}

// ---- Idempotency: what is "the same invoice" -----------------------------------------------------

/// POSTs `text` as it is (the PSA's own serialisation).
async fn push_raw(h: &Harness, conn: &str, text: &str) -> (u16, Value) {
    let resp = h
        .http
        .post(h.url(&format!("/connections/{conn}/invoices")))
        .bearer_auth(PSA_KEY)
        .header("content-type", "application/json")
        .body(text.to_owned())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_same_invoice_serialised_differently_is_a_replay() {
    let h = Harness::memory().await;
    ready(&h, "bu_1", 1001, "70", Delivery::Exact).await;
    let (status, _, created) = push(&h, "bu_1", &invoice("inv_ser")).await;
    assert_eq!(status, 201, "{created}");
    // Keys in another order, other whitespace, the amount written with one decimal, blanks around a name, an
    // explicit null, a field this connector does not know.
    let text = r#"{
        "lines": [ { "amount": "8000.0", "name": " Consultancy ", "number": 1,
                     "description": "80 hours senior consultant", "item_code": null, "x_psa_field": 7 } ],
        "contact": {"email": "jane@acme.example", "last_name": "Doe", "first_name": "Jane"},
        "company": {"city": "Utrecht", "address": "Stationsplein 1", "name": "Acme B.V.", "id": "cmp_17"},
        "project": {"name": "Website relaunch", "number": "P-1001"},
        "period": {"until": "2025-09-30", "from": "2025-09-01"},
        "invoice_date": "2025-10-01", "credit": false,
        "name": "September 2025 - Website relaunch", "reference": "REF-inv_ser", "id": "inv_ser"
    }"#;
    let before = h.sandbox.api_calls(1001);
    let (status, replay) = push_raw(&h, "bu_1", text).await;
    assert_eq!(status, 200, "{replay}");
    assert_eq!(replay, created);
    assert_eq!(h.sandbox.api_calls(1001), before, "a replay calls no Exact");
    // A real change is still a conflict.
    let (status, e) = push_raw(&h, "bu_1", &text.replace("8000.0", "8000.01")).await;
    assert_eq!(status, 409, "{e}");
    assert_eq!(e["error"]["code"], "invoice_conflict");
    assert_eq!(exact_invoices(&h, 1001, "REF-inv_ser").len(), 1);
}

#[tokio::test]
async fn a_record_stored_with_the_raw_body_hash_is_still_replayed() {
    // Records written before the canonical hash carry the hash of the raw body: a retry of that body after the
    // deploy is a replay, not a conflict.
    let h = Harness::moto().await;
    ready(&h, "bu_1", 1001, "70", Delivery::Exact).await;
    let body = invoice("inv_legacy");
    let raw = serde_json::to_vec(&body).unwrap();
    let c = cid("bu_1");
    let now = h.app.now();
    let saved =
        json!({"invoice_id": "inv_legacy", "status": "created", "saved": "by an older release"});
    let claim = h
        .app
        .state
        .claim(
            &c,
            "inv_legacy",
            &store::body_hash(&raw),
            "old",
            now,
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert!(matches!(claim, store::Claim::Claimed { .. }));
    let done = store::InvoiceDone {
        state: store::OpenState::Created,
        response: store::SavedResponse {
            status: 201,
            body: saved.clone(),
        },
        progress: store::InvoiceProgress::default(),
    };
    h.app
        .state
        .complete(&c, "inv_legacy", "old", &done, now)
        .await
        .unwrap();

    let before = h.sandbox.api_calls(1001);
    let (status, _, replay) = push(&h, "bu_1", &body).await;
    assert_eq!(status, 200, "{replay}");
    assert_eq!(replay, saved);
    assert_eq!(h.sandbox.api_calls(1001), before);
    let changed = invoice_with("inv_legacy", |v| v["lines"][0]["amount"] = json!("1.00"));
    let (status, _, e) = push(&h, "bu_1", &changed).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (409, Some("invoice_conflict")),
        "{e}"
    );
}

#[tokio::test]
async fn another_body_after_a_crashed_create_is_a_conflict_never_an_adoption() {
    let h = Harness::moto().await;
    ready(&h, "bu_1", 1001, "70", Delivery::Psa).await;
    // The create reaches Exact but its answer is lost, and Exact cannot be asked: the record keeps the attempt.
    h.sandbox.inject(
        Fault::new("salesinvoice/SalesInvoices", FaultKind::DropAfterStore).on_method("POST"),
    );
    h.sandbox.inject(
        Fault::status("salesinvoice/SalesInvoices", 503, "Service Unavailable")
            .on_method("GET")
            .times(10),
    );
    let body = invoice("inv_adopt");
    let (status, _, e) = push(&h, "bu_1", &body).await;
    assert_eq!(status, 502, "{e}");
    h.sandbox.clear_faults();
    assert_eq!(exact_invoices(&h, 1001, "REF-inv_adopt").len(), 1);

    let changed = invoice_with("inv_adopt", |v| v["lines"][0]["amount"] = json!("9000.00"));
    // While the claim lives: a conflict at once (no waiting for a push that cannot become this one).
    let (status, _, e) = push(&h, "bu_1", &changed).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (409, Some("invoice_conflict")),
        "{e}"
    );
    // After its holder died: still a conflict, and Exact is not even asked.
    h.sandbox.clock().advance(PAST_LEASE);
    let before = h.sandbox.api_calls(1001);
    let (status, _, e) = push(&h, "bu_1", &changed).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (409, Some("invoice_conflict")),
        "{e}"
    );
    assert_eq!(h.sandbox.api_calls(1001), before);
    assert_eq!(posted(&h, 1001, "salesinvoice/SalesInvoices").len(), 1);

    // The original body continues with the invoice Exact has.
    let (status, _, answer) = push(&h, "bu_1", &body).await;
    assert_eq!(status, 201, "{answer}");
    let found = exact_invoices(&h, 1001, "REF-inv_adopt");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(json!(found[0].0), answer["exact_invoice_id"]);
    assert_eq!(
        exact_invoice(&h, 1001, &found[0].0).lines[0].net_price,
        8000.0
    );
}

// ---- Caps ------------------------------------------------------------------------------------------

#[tokio::test]
async fn oversized_bodies_long_lists_and_return_urls_are_refused_naming_the_limit() {
    let h = Harness::memory().await;
    ready(&h, "bu_1", 1001, "70", Delivery::Psa).await;
    let huge = format!(
        "{{\"name\": \"{}\"}}",
        "x".repeat(connector::http::MAX_PSA_BODY_BYTES)
    );
    for (method, path) in [
        (reqwest::Method::POST, "/connections/bu_1/exact/test"),
        (reqwest::Method::POST, "/connections/bu_1/exact/authorize"),
        (reqwest::Method::GET, "/connections/bu_1/exact"),
        (reqwest::Method::GET, "/connections/bu_1/invoices/inv_1"),
    ] {
        let resp = h
            .http
            .request(method.clone(), h.url(path))
            .bearer_auth(PSA_KEY)
            .body(huge.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 413, "{method} {path}");
        let e: Value = resp.json().await.unwrap();
        assert_eq!(e["error"]["code"], "payload_too_large");
        assert!(
            e["error"]["message"].as_str().unwrap().contains("262144"),
            "{e}"
        );
    }
    // A push may carry attachments: its own, larger limit, named after them.
    let huge_push = format!(
        "{{\"name\": \"{}\"}}",
        "x".repeat(connector::http::MAX_PUSH_BODY_BYTES)
    );
    let (status, e) = push_raw(&h, "bu_1", &huge_push).await;
    assert_eq!(status, 413, "{e}");
    assert_eq!(
        (e["error"]["field"].as_str(), e["error"]["code"].as_str()),
        (Some("attachments"), Some("attachments_too_large"))
    );
    let (status, e) = push_raw(&h, "bu_1", &huge).await;
    assert_eq!(
        status, 400,
        "over the other routes' limit, a push is read: {e}"
    );
    // Just at the limit is read (and refused for what it says, not for its size).
    let at_limit = format!(
        "{{\"name\": \"{}\"}}",
        "x".repeat(connector::http::MAX_PSA_BODY_BYTES - 12)
    );
    assert_eq!(at_limit.len(), connector::http::MAX_PSA_BODY_BYTES);
    let (status, e) = push_raw(&h, "bu_1", &at_limit).await;
    assert_eq!(status, 400, "{e}");

    let many_lines = invoice_with("inv_many", |v| {
        v["lines"] = (1..=501)
            .map(|n| json!({"number": n, "name": "Work", "amount": "1.00"}))
            .collect();
    });
    let (status, _, e) = push(&h, "bu_1", &many_lines).await;
    assert_eq!(status, 400, "{e}");
    assert_eq!(
        (e["error"]["field"].as_str(), e["error"]["code"].as_str()),
        (Some("lines"), Some("too_many_lines"))
    );

    let settings = json!({"item_code": "CONSULT", "journal_code": "70",
        "tax_categories": (0..101).map(|i| json!({"category": format!("c{i}"), "exact_vat_code": "2"})).collect::<Vec<_>>()});
    let (status, e) = h.post("/connections/bu_1/exact/test", &settings).await;
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"]["field"], "tax_categories");

    let url = format!(
        "https://psa.example/{}",
        "a".repeat(connector::http::MAX_RETURN_URL_LEN)
    );
    let (status, e) = h
        .post(
            "/connections/bu_2/exact/authorize",
            &json!({"country": "nl", "return_url": url}),
        )
        .await;
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"]["field"], "return_url");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("2048"),
        "{e}"
    );
    assert!(exact_invoices(&h, 1001, "REF-inv_many").is_empty());
}
