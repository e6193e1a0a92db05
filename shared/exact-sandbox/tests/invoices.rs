//! Sales invoices: validation, amounts, numbering, processing (number, receivable, e-mail), payment conditions.

use crate::common::*;
use exact_sandbox::Sandbox;
use serde_json::{Value, json};

async fn setup(login: &str, division: u32) -> (Sandbox, Api, uuid::Uuid, uuid::Uuid) {
    let sb = frozen().await;
    sb.clock().set_ms(1_759_276_800_000); // 2025-10-01T00:00:00Z
    let (account, contact) = seed_customer(&sb, division, "Acme B.V.", Some("jane@acme.example"));
    let api = Api::new(&sb, login).await;
    (sb, api, account, contact)
}

fn invoice_count(sb: &Sandbox, division: u32) -> usize {
    sb.world().division(division).unwrap().sales_invoices.len()
}

#[tokio::test]
async fn a_created_invoice_is_open_unnumbered_with_computed_amounts() {
    let (sb, api, account, contact) = setup(JAN, 1001).await;
    let mut body = invoice_body(&sb, 1001, "70", account, contact);
    body["SalesInvoiceLines"].as_array_mut().unwrap().push(json!({
        "Item": item_id(&sb, 1001, "TRAVEL").to_string(), "Quantity": 2, "NetPrice": 45.5, "VATCode": "1"
    }));
    let r = api.post(&invoices_path(1001), &body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let d = r.d();
    assert_eq!(d["Status"], 20);
    assert!(d["InvoiceNumber"].is_null());
    assert_eq!(d["AmountFCExclVat"], 8091.0);
    assert_eq!(d["VATAmountFC"], 1688.19, "8000 × 21% + 91 × 9%");
    assert_eq!(d["AmountDC"], 9779.19);
    assert_eq!(d["YourRef"], "INV-2025-0042");
    assert_eq!(
        d["PaymentCondition"], "30",
        "filled from the division default"
    );
    let id = d["InvoiceID"].as_str().unwrap();
    assert_eq!(
        d["SalesInvoiceLines"]["__deferred"]["uri"],
        format!(
            "{}/api/v1/1001/salesinvoice/SalesInvoices(guid'{id}')/SalesInvoiceLines",
            sb.base_url()
        )
    );

    let r = api
        .get(&format!("{}(guid'{id}')", invoices_path(1001)), &[("$expand", "SalesInvoiceLines"), ("$select", "InvoiceID,SalesInvoiceLines/AmountFC,SalesInvoiceLines/VATCode,SalesInvoiceLines/StartTime,SalesInvoiceLines/Notes")])
        .await;
    let lines = r.d()["SalesInvoiceLines"]["results"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["AmountFC"], 8000.0);
    assert_eq!(lines[0]["VATCode"], "2  ");
    assert_eq!(lines[0]["StartTime"], "/Date(1756684800000)/");
    assert_eq!(lines[0]["Notes"], "80 hours senior consultant");
    assert_eq!(lines[1]["AmountFC"], 91.0);

    let by_ref = api
        .get(
            &invoices_path(1001),
            &[
                (
                    "$filter",
                    &format!("YourRef eq 'INV-2025-0042' and OrderedBy eq guid'{account}'"),
                ),
                ("$select", "InvoiceID,Status"),
            ],
        )
        .await;
    assert_eq!(by_ref.results().len(), 1);
}

#[tokio::test]
async fn journal_72_numbers_at_entry() {
    let (sb, api, account, contact) = setup(TOM, 3001).await;
    let r = api
        .post(
            &invoices_path(3001),
            &invoice_body(&sb, 3001, "72", account, contact),
        )
        .await;
    assert_eq!(r.d()["InvoiceNumber"], 25720001);
    let r = api
        .post(
            &invoices_path(3001),
            &invoice_body(&sb, 3001, "72", account, contact),
        )
        .await;
    assert_eq!(r.d()["InvoiceNumber"], 25720002);
}

async fn refused(api: &Api, division: u32, body: &Value) -> String {
    let r = api.post(&invoices_path(division), body).await;
    assert_eq!(r.status, 400, "{}", r.text);
    r.message()
}

#[tokio::test]
async fn invoice_validation_errors() {
    let (sb, api, account, contact) = setup(JAN, 1001).await;
    let (other_account, other_contact) = seed_customer(&sb, 1001, "Other B.V.", None);
    let base = invoice_body(&sb, 1001, "70", account, contact);
    let with = |f: &dyn Fn(&mut Value)| {
        let mut b = base.clone();
        f(&mut b);
        b
    };
    let line = |f: &'static str, v: Value| {
        with(&move |b: &mut Value| b["SalesInvoiceLines"][0][f] = v.clone())
    };

    assert_eq!(
        refused(&api, 1001, &with(&|b| b["Journal"] = json!("71"))).await,
        "Geblokkeerd: Dagboek"
    );
    assert!(
        refused(&api, 1001, &with(&|b| b["Journal"] = json!("60")))
            .await
            .contains("verkoopboek")
    );
    assert_eq!(
        refused(&api, 1001, &with(&|b| b["Journal"] = json!("99"))).await,
        "Ongeldige referentie: Dagboek"
    );
    // A contact ID where an account ID belongs.
    assert_eq!(
        refused(
            &api,
            1001,
            &with(&|b| {
                b["OrderedBy"] = json!(contact.to_string());
                b["InvoiceTo"] = json!(account.to_string());
            })
        )
        .await,
        "Ongeldige referentie: Besteld door"
    );
    // The contact of another account.
    assert_eq!(
        refused(
            &api,
            1001,
            &with(&|b| b["InvoiceToContactPerson"] = json!(other_contact.to_string()))
        )
        .await,
        "Ongeldige referentie: Factuur voor contactpersoon"
    );
    let _ = other_account;
    assert_eq!(
        refused(&api, 1001, &with(&|b| b["Type"] = json!(8023))).await,
        "Ongeldige waarde: Soort"
    );
    assert_eq!(
        refused(&api, 1001, &with(&|b| b["PaymentCondition"] = json!("99"))).await,
        "Ongeldige referentie: Betalingsconditie"
    );
    assert_eq!(
        refused(
            &api,
            1001,
            &line("Item", json!(item_id(&sb, 1001, "LICENSE").to_string()))
        )
        .await,
        "Artikel is geen verkoopartikel: LICENSE"
    );
    assert_eq!(
        refused(
            &api,
            1001,
            &line("Item", json!(item_id(&sb, 1001, "OLDITEM").to_string()))
        )
        .await,
        "Artikel is niet meer geldig: OLDITEM"
    );
    assert_eq!(
        refused(&api, 1001, &line("VATCode", json!("5"))).await,
        "Btw-code is niet toegestaan voor verkoop: 5"
    );
    assert_eq!(
        refused(&api, 1001, &line("VATCode", json!("8"))).await,
        "Geblokkeerd: Btw-code"
    );
    assert_eq!(
        refused(&api, 1001, &line("VATCode", json!("9"))).await,
        "Ongeldige referentie: Btw-code"
    );
    assert!(
        refused(&api, 1001, &line("NetPrice", json!("8000.00")))
            .await
            .starts_with("Error processing request stream.")
    );
    assert!(
        refused(&api, 1001, &line("Quantity", json!("1")))
            .await
            .starts_with("Error processing request stream.")
    );
    assert!(
        refused(
            &api,
            1001,
            &with(&|b| b["SalesInvoiceLines"] = b["SalesInvoiceLines"][0].clone())
        )
        .await
        .starts_with("Error processing request stream.")
    );
    assert!(
        refused(
            &api,
            1001,
            &with(&|b| b["SalesInvoiceLines"] = json!(["CONSULT"]))
        )
        .await
        .starts_with("Error processing request stream.")
    );
    assert_eq!(
        refused(&api, 1001, &with(&|b| b["SalesInvoiceLines"] = json!([]))).await,
        "Verplicht: Factuurregels"
    );
    assert_eq!(invoice_count(&sb, 1001), 0, "nothing was created");

    // The same rules in English for an English user.
    let tom = Api::new(&sb, TOM).await;
    let (t_account, t_contact) = seed_customer(&sb, 3001, "Acme Ltd", None);
    let mut b = invoice_body(&sb, 3001, "70", t_account, t_contact);
    b["OrderedBy"] = json!(t_contact.to_string());
    b["InvoiceTo"] = json!(t_account.to_string());
    assert_eq!(
        refused(&tom, 3001, &b).await,
        "Invalid reference: Ordered by"
    );
}

#[tokio::test]
async fn processing_numbers_the_invoice_and_creates_the_receivable() {
    let (sb, api, account, contact) = setup(JAN, 1001).await;
    let id = create_invoice(&api, 1001, account, contact).await;
    let r = api
        .post(
            &process_path(1001),
            &json!({"InvoiceID": id, "SendEmailToCustomer": true, "InvoiceDate": "2025-10-01", "ExtraText": "Period 2025-09"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let d = r.d();
    assert!(
        d.get("InvoiceNumber").is_none(),
        "PrintedSalesInvoice has no InvoiceNumber"
    );
    assert_eq!(d["InvoiceID"], id.as_str());
    assert!(d["DocumentCreationSuccess"].is_string());
    assert!(
        d["EmailCreationSuccess"]
            .as_str()
            .unwrap()
            .contains("jane@acme.example")
    );
    assert!(d["EmailCreationError"].is_null());

    let inv = api
        .get(
            &format!("{}(guid'{id}')", invoices_path(1001)),
            &[(
                "$select",
                "InvoiceNumber,Status,InvoiceDate,DueDate,AmountDC",
            )],
        )
        .await;
    assert_eq!(inv.d()["Status"], 50);
    assert_eq!(inv.d()["InvoiceNumber"], 25700001);
    assert_eq!(inv.d()["InvoiceDate"], "/Date(1759276800000)/");
    assert_eq!(
        inv.d()["DueDate"],
        format!("/Date({})/", 1_759_276_800_000_i64 + 30 * 86_400_000)
    );

    let rec = api
        .get(
            "/api/v1/1001/cashflow/Receivables",
            &[
                ("$filter", "InvoiceNumber eq 25700001 and Journal eq '70'"),
                ("$select", "ID,EntryID,InvoiceNumber,AmountDC,IsFullyPaid,Status,LastPaymentDate,EndDate,TransactionEntryID,YourRef,Account"),
            ],
        )
        .await;
    let rows = rec.results();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["AmountDC"], 9680.0);
    assert_eq!(rows[0]["IsFullyPaid"], false);
    assert_eq!(rows[0]["Status"], 20);
    assert!(rows[0]["LastPaymentDate"].is_null());
    assert_eq!(rows[0]["TransactionEntryID"], id.as_str());
    assert_eq!(rows[0]["YourRef"], "INV-2025-0042");
    assert_eq!(rows[0]["Account"], account.to_string());

    let emails = sb.world().division(1001).unwrap().emails_sent.clone();
    assert_eq!(emails.len(), 1);
    assert_eq!(
        (emails[0].to.as_str(), emails[0].invoice_number),
        ("jane@acme.example", Some(25700001))
    );

    // A processed invoice can be neither processed nor changed again.
    let again = api
        .post(&process_path(1001), &json!({"InvoiceID": id}))
        .await;
    assert_eq!(again.status, 400);
    assert!(again.message().contains("al verwerkt"));
    let put = api
        .put(
            &format!("{}(guid'{id}')", invoices_path(1001)),
            &json!({"Description": "x"}),
        )
        .await;
    assert_eq!(put.status, 400);
    assert_eq!(
        api.delete(&format!("{}(guid'{id}')", invoices_path(1001)))
            .await
            .status,
        400
    );
    assert_eq!(sb.world().division(1001).unwrap().receivables.len(), 1);

    let second = processed_invoice(&api, 1001, account, contact).await;
    let n = sb
        .world()
        .invoice(1001, second.parse().unwrap())
        .unwrap()
        .invoice_number;
    assert_eq!(n, Some(25700002));
}

#[tokio::test]
async fn processing_needs_a_payment_condition_in_1002() {
    let (sb, api, account, contact) = setup(JAN, 1002).await;
    let id = create_invoice(&api, 1002, account, contact).await;
    let r = api
        .post(
            &process_path(1002),
            &json!({"InvoiceID": id, "SendEmailToCustomer": false}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.message(), "Verplicht: Betalingsconditie");
    {
        let w = sb.world();
        let inv = w.invoice(1002, id.parse().unwrap()).unwrap();
        assert_eq!(
            (inv.status, inv.invoice_number),
            (20, None),
            "nothing changed"
        );
        assert!(w.division(1002).unwrap().receivables.is_empty());
    }
    // An open invoice can still be changed: give it a payment condition, then processing works.
    let put = api
        .put(
            &format!("{}(guid'{id}')", invoices_path(1002)),
            &json!({"PaymentCondition": "14"}),
        )
        .await;
    assert_eq!(put.status, 204, "{}", put.text);
    let r = api
        .post(&process_path(1002), &json!({"InvoiceID": id}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let w = sb.world();
    let inv = w.invoice(1002, id.parse().unwrap()).unwrap();
    assert_eq!(
        inv.due_date_ms,
        Some(inv.invoice_date_ms.unwrap() + 14 * 86_400_000)
    );
}

#[tokio::test]
async fn the_account_payment_condition_is_used_in_1002() {
    let (sb, api, account, contact) = setup(JAN, 1002).await;
    sb.world().division_mut(1002).accounts[0].payment_condition_sales = Some("14".into());
    let id = processed_invoice(&api, 1002, account, contact).await;
    assert_eq!(
        sb.world()
            .invoice(1002, id.parse().unwrap())
            .unwrap()
            .payment_condition
            .as_deref(),
        Some("14")
    );
}

#[tokio::test]
async fn without_an_email_address_the_email_fails_but_processing_succeeds() {
    let (sb, api, _, _) = setup(TOM, 3001).await;
    let (account, contact) = seed_customer(&sb, 3001, "No Mail Ltd", None);
    let id = create_invoice(&api, 3001, account, contact).await;
    let r = api
        .post(
            &process_path(3001),
            &json!({"InvoiceID": id, "SendEmailToCustomer": true}),
        )
        .await;
    assert_eq!(r.status, 201);
    assert!(
        r.d()["EmailCreationError"]
            .as_str()
            .unwrap()
            .contains("no e-mail address")
    );
    assert!(r.d()["EmailCreationSuccess"].is_null());
    assert!(sb.world().division(3001).unwrap().emails_sent.is_empty());
    assert_eq!(
        sb.world()
            .invoice(3001, id.parse().unwrap())
            .unwrap()
            .status,
        50
    );
}

#[tokio::test]
async fn processing_an_unknown_invoice_or_with_wrong_fields_is_refused() {
    let (_sb, api, _, _) = setup(TOM, 3001).await;
    let r = api
        .post(
            &process_path(3001),
            &json!({"InvoiceID": "00000000-0000-0000-0000-000000000001"}),
        )
        .await;
    assert_eq!(
        (r.status, r.message()),
        (400, "Invalid reference: Invoice".to_string())
    );
    let r = api
        .post(
            &process_path(3001),
            &json!({"InvoiceID": "00000000-0000-0000-0000-000000000001", "InvoiceNumber": 1}),
        )
        .await;
    assert!(r.message().starts_with("Error processing request stream."));
}
