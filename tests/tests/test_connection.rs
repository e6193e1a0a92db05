//! The test-connection function, end to end through the handler (local router → TestConnection →
//! Exact sandbox; stores in memory or on moto).

use e2e::Harness;
use exact_sandbox::Fault;
use serde_json::{Value, json};

const TEST_ACCOUNT: &str = "psa-exact test customer";

fn path(conn: &str) -> String {
    format!("/connections/{conn}/exact/test")
}

fn conn(s: &str) -> mapping::ConnectionId {
    mapping::ConnectionId::parse(s).unwrap()
}

/// A body that passes in every seeded division.
fn good_body() -> Value {
    json!({
        "item_code": " CONSULT ",
        "journal_code": "70",
        "tax_code": "",
        "tax_categories": [
            {"category": "high", "exact_vat_code": "2"},
            {"category": "low", "exact_vat_code": "1"},
            {"category": "zero", "exact_vat_code": "0"}
        ],
        "send_invoice_to_customer": true,
        "delivery": "psa"
    })
}

/// Connects `login` with `division` selected in Exact (jan has 1001 and 1002 and had 1002 selected).
async fn connect_on(h: &Harness, conn: &str, login: &str, division: u32) {
    h.sandbox
        .world()
        .user_mut(login)
        .expect("seeded user")
        .current_division = division;
    let loc = h.connect(conn, login, "nl").await;
    assert!(
        loc.ends_with(&format!("exact=connected&division={division}")),
        "{loc}"
    );
}

fn check<'a>(body: &'a Value, name: &str) -> &'a Value {
    body["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {body}"))
}

fn check_names(body: &Value) -> Vec<String> {
    body["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect()
}

fn failed_checks(body: &Value) -> Vec<String> {
    body["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| {
            c["field"]
                .as_str()
                .or(c["name"].as_str())
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// (accounts named like the test customer, contacts on them) in `division`.
fn test_customers(h: &Harness, division: u32) -> (usize, usize) {
    let w = h.sandbox.world();
    let d = w.division(division).unwrap();
    let ids: Vec<_> = d
        .accounts
        .iter()
        .filter(|a| a.name == TEST_ACCOUNT)
        .map(|a| a.id)
        .collect();
    let contacts = d
        .contacts
        .iter()
        .filter(|c| ids.contains(&c.account))
        .count();
    (ids.len(), contacts)
}

fn invoice_by_id<'a>(
    d: &'a exact_sandbox::world::Division,
    id: &str,
) -> &'a exact_sandbox::world::SalesInvoice {
    d.sales_invoices
        .iter()
        .find(|i| i.invoice_id.to_string() == id)
        .expect("test invoice in Exact")
}

fn invoice_count(h: &Harness, division: u32) -> usize {
    h.sandbox
        .world()
        .division(division)
        .unwrap()
        .sales_invoices
        .len()
}

/// Posts the test and checks that the reported call count is what the sandbox saw.
async fn run_test(h: &Harness, conn: &str, division: u32, body: &Value) -> (u16, Value) {
    let before = h.sandbox.api_calls(division);
    let (status, v) = h.post(&path(conn), body).await;
    if v.get("exact_calls").is_some() {
        let seen = h.sandbox.api_calls(division) - before;
        assert_eq!(v["exact_calls"], json!(seen), "{v}");
    }
    (status, v)
}

#[tokio::test]
async fn success_on_moto_processes_emails_saves_and_reuses_the_test_customer() {
    let h = Harness::moto().await;
    connect_on(&h, "bu_1", "jan@jansen.example", 1001).await;
    h.sandbox.clear_requests();

    // Cold: nothing cached, nothing in Exact yet.
    let (status, body) = run_test(&h, "bu_1", 1001, &good_body()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ok"], true);
    assert_eq!(body["division"], 1001);
    assert_eq!(body["division_name"], "Jansen Consultancy B.V.");
    assert_eq!(
        check_names(&body),
        [
            "connection",
            "item",
            "journal",
            "tax_code",
            "tax_category",
            "tax_category",
            "tax_category",
            "test_invoice"
        ]
    );
    assert!(failed_checks(&body).is_empty(), "{body}");
    let connection = check(&body, "connection")["message"].as_str().unwrap();
    assert!(
        connection.contains("1001") && connection.contains("Jansen Consultancy B.V."),
        "{connection}"
    );
    assert!(
        check(&body, "item")["message"]
            .as_str()
            .unwrap()
            .contains("'CONSULT'")
    );
    let cold_calls = body["exact_calls"].as_u64().unwrap();
    assert!(cold_calls <= 8, "cold test took {cold_calls} calls");
    // One query for all three VAT codes, one each for the item and the journal.
    let reqs = h.sandbox.requests();
    let count = |p: &str| reqs.iter().filter(|r| r.path.ends_with(p)).count();
    assert_eq!(
        (
            count("vat/VATCodes"),
            count("logistics/Items"),
            count("financial/Journals")
        ),
        (1, 1, 1)
    );
    let vat_filter = reqs
        .iter()
        .find(|r| r.path.ends_with("vat/VATCodes"))
        .and_then(|r| r.query_param("$filter"))
        .unwrap();
    assert_eq!(
        vat_filter,
        "((trim(Code) eq '2' or trim(Code) eq '1') or trim(Code) eq '0')"
    );

    // The invoice is processed in Exact, numbered, and e-mailed to the connected user.
    let id = body["test_invoice"]["exact_invoice_id"].as_str().unwrap();
    let (number, consult_id, vat_ids) = {
        let w = h.sandbox.world();
        let d = w.division(1001).unwrap();
        let inv = invoice_by_id(d, id);
        assert_eq!(inv.status, 50, "processed");
        assert_eq!(inv.journal, "70");
        assert_eq!(inv.lines.len(), 1);
        assert_eq!(inv.lines[0].item_code, "CONSULT");
        assert_eq!(inv.lines[0].vat_code.trim(), "2");
        let contact = d.contact(inv.invoice_to_contact_person.unwrap()).unwrap();
        assert_eq!(contact.email.as_deref(), Some("jan@jansen.example"));
        assert_eq!(d.account(inv.invoice_to).unwrap().name, TEST_ACCOUNT);
        assert_eq!(d.emails_sent.len(), 1);
        assert_eq!(d.emails_sent[0].to, "jan@jansen.example");
        assert_eq!(d.emails_sent[0].invoice_id.to_string(), id);
        let vat = |c: &str| d.vat_code(c).unwrap().id.to_string();
        (
            inv.invoice_number.expect("numbered"),
            d.item_by_code("CONSULT").unwrap().id.to_string(),
            [vat("2"), vat("1"), vat("0")],
        )
    };
    assert_eq!(body["test_invoice"]["emailed"], true);
    assert_eq!(body["test_invoice"]["emailed_to"], "jan@jansen.example");
    // The number is read only within the 8-call budget; a cold first test spends it all.
    match body["test_invoice"]["exact_invoice_number"].as_i64() {
        Some(n) => assert_eq!(n, number),
        None => assert_eq!(cold_calls, 8),
    }
    assert_eq!(test_customers(&h, 1001), (1, 1));

    // Settings saved, with the Exact IDs resolved.
    let (_, status_body) = h.get("/connections/bu_1/exact").await;
    let s = &status_body["settings"];
    assert_eq!(s["item_code"], "CONSULT");
    assert_eq!(s["journal_code"], "70");
    assert_eq!(s["tax_code"], "2", "empty tax_code means 2");
    assert_eq!(s["tax_categories"].as_array().unwrap().len(), 3);
    assert_eq!(s["send_invoice_to_customer"], true);
    assert_eq!(s["delivery"], "psa");
    assert_eq!(s["stale"], false);
    let saved = h
        .app
        .state
        .get_settings(&conn("bu_1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(saved.division.get(), 1001);
    assert_eq!(saved.item_id.to_string(), consult_id);
    assert_eq!(saved.tax_code_id.unwrap().to_string(), vat_ids[0]);
    let cat_ids: Vec<String> = saved
        .tax_categories
        .iter()
        .map(|t| t.exact_vat_code_id.unwrap().to_string())
        .collect();
    assert_eq!(cat_ids, vat_ids);

    // Warm: the test customer and contact come from the cache; nothing is duplicated.
    let (status, again) = run_test(&h, "bu_1", 1001, &good_body()).await;
    assert_eq!(status, 200, "{again}");
    let warm_calls = again["exact_calls"].as_u64().unwrap();
    assert!(warm_calls < cold_calls, "{warm_calls} vs {cold_calls}");
    assert_eq!(test_customers(&h, 1001), (1, 1));
    let id2 = again["test_invoice"]["exact_invoice_id"].as_str().unwrap();
    let number2 = invoice_by_id(h.sandbox.world().division(1001).unwrap(), id2).invoice_number;
    assert_eq!(
        again["test_invoice"]["exact_invoice_number"].as_i64(),
        number2
    );
    assert!(number2.is_some());
    assert_eq!(
        h.sandbox.world().division(1001).unwrap().emails_sent.len(),
        2
    );
    println!("measured Exact calls: cold {cold_calls}, warm {warm_calls}");
}

#[tokio::test]
async fn an_existing_test_customer_is_found_not_duplicated() {
    let h = Harness::memory().await;
    connect_on(&h, "bu_a", "tom@smith.example", 3001).await;
    connect_on(&h, "bu_b", "tom@smith.example", 3001).await;
    let (status, body) = run_test(&h, "bu_a", 3001, &good_body()).await;
    assert_eq!(status, 200, "{body}");
    // Another connection on the same administration: its cache is cold, Exact has the customer and contact.
    let (status, body) = run_test(&h, "bu_b", 3001, &good_body()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(test_customers(&h, 3001), (1, 1));
    let calls = body["exact_calls"].as_u64().unwrap();
    assert!(calls <= 8, "{calls}");
    // Found in Exact (account and contact lookups) leaves room to read the number.
    assert!(
        body["test_invoice"]["exact_invoice_number"].is_i64(),
        "{body}"
    );
}

#[tokio::test]
async fn sending_off_is_honoured() {
    let h = Harness::memory().await;
    connect_on(&h, "bu_1", "tom@smith.example", 3001).await;
    let mut b = good_body();
    b["send_invoice_to_customer"] = json!(false);
    b["delivery"] = json!("exact");
    b["tax_categories"] = json!([]);
    let (status, body) = run_test(&h, "bu_1", 3001, &b).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["test_invoice"]["emailed"], false);
    assert!(body["test_invoice"]["emailed_to"].is_null());
    {
        let w = h.sandbox.world();
        let d = w.division(3001).unwrap();
        assert!(d.emails_sent.is_empty());
        assert_eq!(d.sales_invoices.len(), 1);
        assert_eq!(d.sales_invoices[0].status, 50);
    }
    let (_, s) = h.get("/connections/bu_1/exact").await;
    assert_eq!(s["settings"]["send_invoice_to_customer"], false);
    assert_eq!(s["settings"]["delivery"], "exact");
}

#[tokio::test]
async fn each_failing_check_is_named_and_leaves_the_settings_unchanged() {
    let h = Harness::memory().await;
    connect_on(&h, "bu_1", "claire@dupont.example", 2001).await;
    let (status, ok) = run_test(&h, "bu_1", 2001, &good_body()).await;
    assert_eq!(status, 200, "{ok}");
    let (_, before) = h.get("/connections/bu_1/exact").await;
    let invoices = invoice_count(&h, 2001);

    type Edit = fn(&mut Value);
    let cases: &[(Edit, &str, &str)] = &[
        (
            |b| b["item_code"] = json!("NOPE"),
            "item_code",
            "Item 'NOPE' does not exist in administration 2001 \"Dupont Services SRL\"",
        ),
        (
            |b| b["item_code"] = json!("LICENSE"),
            "item_code",
            "is not a sales item",
        ),
        (
            |b| b["item_code"] = json!("OLDITEM"),
            "item_code",
            "ended on 2020-12-31",
        ),
        (
            |b| b["journal_code"] = json!("99"),
            "journal_code",
            "Journal '99' does not exist",
        ),
        (
            |b| b["journal_code"] = json!("60"),
            "journal_code",
            "is not a sales journal (its type is 22",
        ),
        (
            |b| b["journal_code"] = json!("71"),
            "journal_code",
            "is blocked in Exact",
        ),
        (
            |b| b["tax_code"] = json!("9"),
            "tax_code",
            "Default VAT code '9' does not exist",
        ),
        (
            |b| b["tax_code"] = json!("5"),
            "tax_code",
            "is for purchases only",
        ),
        (
            |b| b["tax_categories"][1]["exact_vat_code"] = json!("5"),
            "tax_categories[1].exact_vat_code",
            "Tax category 'low': VAT code '5' (Inkoop BTW 21%) is for purchases only",
        ),
        (
            |b| b["tax_categories"][2]["exact_vat_code"] = json!("8"),
            "tax_categories[2].exact_vat_code",
            "is blocked in Exact",
        ),
    ];
    for (edit, field, text) in cases {
        let mut b = good_body();
        edit(&mut b);
        let (status, body) = run_test(&h, "bu_1", 2001, &b).await;
        assert_eq!(status, 422, "{field}: {body}");
        assert_eq!(body["ok"], false);
        assert_eq!(failed_checks(&body), [*field], "{body}");
        let failed = body["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["ok"] == false)
            .unwrap();
        assert!(
            failed["message"].as_str().unwrap().contains(text),
            "{field}: {failed}"
        );
        assert_eq!(body["error"]["code"], "check_failed");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(field),
            "{body}"
        );
        assert!(body["error"].get("exact_message").is_none());
        assert!(body.get("test_invoice").is_none());
        // Only the three lookups: nothing is created in Exact.
        assert_eq!(body["exact_calls"], 3, "{body}");
        assert_eq!(invoice_count(&h, 2001), invoices);
        let (_, after) = h.get("/connections/bu_1/exact").await;
        assert_eq!(after["settings"], before["settings"], "{field}");
    }

    // Several failures are all reported.
    let mut b = good_body();
    b["item_code"] = json!("LICENSE");
    b["journal_code"] = json!("20");
    let (status, body) = run_test(&h, "bu_1", 2001, &b).await;
    assert_eq!(status, 422);
    assert_eq!(failed_checks(&body), ["item_code", "journal_code"]);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("2 checks failed")
    );
}

#[tokio::test]
async fn a_missing_payment_condition_returns_exacts_text_and_a_hint() {
    let h = Harness::memory().await;
    // Jan had 1002 selected: no default payment condition there.
    connect_on(&h, "bu_1", "jan@jansen.example", 1002).await;
    let (status, body) = run_test(&h, "bu_1", 1002, &good_body()).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["ok"], false);
    assert_eq!(failed_checks(&body), ["test_invoice"], "{body}");
    assert_eq!(body["error"]["code"], "test_invoice_processing_refused");
    // Exact's own text, verbatim (Jan's Exact speaks Dutch).
    assert_eq!(
        body["error"]["exact_message"],
        "Verplicht: Betalingsconditie"
    );
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("default sales payment condition")
            && message.contains("payment condition on the customer account"),
        "{message}"
    );
    assert_eq!(check(&body, "test_invoice")["message"], message);
    let calls = body["exact_calls"].as_u64().unwrap();
    assert!(calls <= 8, "{calls}");
    // The unprocessed invoice: deleted when the call budget allows, else reported as left open.
    let status_of = |b: &Value| b["test_invoice"]["status"].as_str().unwrap().to_owned();
    let open = |h: &Harness| {
        h.sandbox
            .world()
            .division(1002)
            .unwrap()
            .sales_invoices
            .iter()
            .filter(|i| i.status == 20)
            .count()
    };
    assert_eq!(status_of(&body), if calls < 8 { "deleted" } else { "open" });
    let open_after_first = open(&h);
    assert_eq!(open_after_first, usize::from(status_of(&body) == "open"));
    let (_, s) = h.get("/connections/bu_1/exact").await;
    assert!(s["settings"].is_null(), "a failed test saves nothing");

    // Again, warm: the draft is deleted this time, nothing else is left behind.
    let (status, body) = run_test(&h, "bu_1", 1002, &good_body()).await;
    assert_eq!(status, 422);
    assert_eq!(status_of(&body), "deleted");
    assert_eq!(open(&h), open_after_first);
    assert_eq!(test_customers(&h, 1002), (1, 1));

    // The hint works: a payment condition on the customer account lets the test pass.
    {
        let mut w = h.sandbox.world();
        let d = w.division_mut(1002);
        for a in d.accounts.iter_mut().filter(|a| a.name == TEST_ACCOUNT) {
            a.payment_condition_sales = Some("30".into());
        }
    }
    let (status, body) = run_test(&h, "bu_1", 1002, &good_body()).await;
    assert_eq!(status, 200, "{body}");
    let (_, s) = h.get("/connections/bu_1/exact").await;
    assert_eq!(s["settings"]["item_code"], "CONSULT");
}

#[tokio::test]
async fn exact_refusing_the_invoice_keeps_its_text_verbatim() {
    let h = Harness::memory().await;
    connect_on(&h, "bu_1", "tom@smith.example", 3001).await;
    h.sandbox.inject(
        Fault::status(
            "salesinvoice/SalesInvoices",
            400,
            "Invalid reference: Revenue G/L account",
        )
        .on_method("POST"),
    );
    let (status, body) = run_test(&h, "bu_1", 3001, &good_body()).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "test_invoice_refused");
    assert_eq!(
        body["error"]["exact_message"],
        "Invalid reference: Revenue G/L account"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("revenue G/L account")
    );
    let (_, s) = h.get("/connections/bu_1/exact").await;
    assert!(s["settings"].is_null());
}

#[tokio::test]
async fn a_rate_limit_is_429_with_retry_after() {
    let h = Harness::memory().await;
    connect_on(&h, "bu_1", "tom@smith.example", 3001).await;
    // Just after a minute starts: the window is too far away to wait for within the request's budget.
    let clock = h.sandbox.clock();
    let next_minute = (clock.now_ms() / 60_000 + 1) * 60_000;
    clock.set_ms(next_minute + 1_000);
    clock.freeze();
    let mut f = Fault::new("logistics/Items", exact_sandbox::FaultKind::RateLimit);
    f.times = 0;
    h.sandbox.inject(f);
    let (status, headers, body) = h
        .call(reqwest::Method::POST, &path("bu_1"), Some(&good_body()))
        .await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "exact_rate_limited");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let (_, s) = h.get("/connections/bu_1/exact").await;
    assert!(s["settings"].is_null());
}

#[tokio::test]
async fn bad_bodies_are_400_naming_the_field_without_calling_exact() {
    let h = Harness::memory().await;
    connect_on(&h, "bu_1", "tom@smith.example", 3001).await;
    let before = h.sandbox.api_calls(3001);
    type Edit = fn(&mut Value);
    let cases: &[(Edit, &str)] = &[
        (
            |b| {
                b.as_object_mut().unwrap().remove("item_code");
            },
            "item_code",
        ),
        (|b| b["journal_code"] = json!(70), "journal_code"),
        (|b| b["tax_code"] = json!("1234"), "tax_code"),
        (
            |b| b["tax_categories"][1]["category"] = json!("high"),
            "tax_categories[1].category",
        ),
        (
            |b| b["tax_categories"][0]["exact_vat_code"] = json!(""),
            "tax_categories[0].exact_vat_code",
        ),
        (|b| b["delivery"] = json!("email"), "delivery"),
        (
            |b| b["send_invoice_to_customer"] = json!("yes"),
            "send_invoice_to_customer",
        ),
        (|b| b["dry_run"] = json!("yes"), "dry_run"),
        (|b| b["dry_run"] = json!(1), "dry_run"),
        (|b| *b = json!([1, 2]), "body"),
    ];
    for (edit, field) in cases {
        let mut b = good_body();
        edit(&mut b);
        let (status, body) = h.post(&path("bu_1"), &b).await;
        assert_eq!(status, 400, "{field}: {body}");
        assert_eq!(body["error"]["field"], *field, "{body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(field),
            "{body}"
        );
    }
    // Not JSON at all.
    let resp = h
        .http
        .post(h.url(&path("bu_1")))
        .bearer_auth(e2e::PSA_KEY)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["field"], "body");
    assert_eq!(
        h.sandbox.api_calls(3001),
        before,
        "no Exact call for a bad body"
    );
}

#[tokio::test]
async fn key_connection_and_method_are_checked() {
    let h = Harness::memory().await;
    // No key, wrong key.
    for auth in [None, Some("Bearer wrong")] {
        let mut rb = h.http.post(h.url(&path("bu_1"))).json(&good_body());
        if let Some(a) = auth {
            rb = rb.header("authorization", a);
        }
        let resp = rb.send().await.unwrap();
        assert_eq!(resp.status(), 401);
    }
    // Unknown connection.
    let (status, body) = h.post(&path("nobody"), &good_body()).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "unknown_connection");
    // Invalid connection id.
    let (status, body) = h.post(&path("bad%20id"), &good_body()).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["field"], "connection_id");
    // Not connected any more.
    connect_on(&h, "bu_1", "tom@smith.example", 3001).await;
    let (status, _, _) = h
        .call(reqwest::Method::DELETE, "/connections/bu_1/exact", None)
        .await;
    assert_eq!(status, 200);
    let (status, body) = h.post(&path("bu_1"), &good_body()).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "not_connected");
    // Another method.
    let (status, body) = h.get(&path("bu_1")).await;
    assert_eq!(status, 405, "{body}");
}

#[tokio::test]
async fn a_test_customer_deleted_in_exact_is_created_anew_on_the_next_test() {
    let h = Harness::memory().await;
    connect_on(&h, "bu_1", "tom@smith.example", 3001).await;
    let (status, body) = run_test(&h, "bu_1", 3001, &good_body()).await;
    assert_eq!(status, 200, "{body}");
    let (_, before) = h.get("/connections/bu_1/exact").await;
    // Someone removes the test customer (and its contact) in Exact: the cached IDs are stale.
    {
        let mut w = h.sandbox.world();
        let d = w.division_mut(3001);
        d.accounts.retain(|a| a.name != TEST_ACCOUNT);
        let accounts: Vec<_> = d.accounts.iter().map(|a| a.id).collect();
        d.contacts.retain(|c| accounts.contains(&c.account));
    }
    let (status, body) = run_test(&h, "bu_1", 3001, &good_body()).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "test_invoice_refused");
    assert_eq!(
        body["error"]["exact_message"],
        "Invalid reference: Ordered by\r\nInvalid reference: Invoice to\r\nInvalid reference: Invoice to contact person"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("created anew"),
        "{body}"
    );
    let (_, after) = h.get("/connections/bu_1/exact").await;
    assert_eq!(after["settings"], before["settings"]);
    // The next test looks the customer up again and creates it.
    let (status, body) = run_test(&h, "bu_1", 3001, &good_body()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(test_customers(&h, 3001), (1, 1));
}

fn dry(body: Value) -> Value {
    let mut b = body;
    b["dry_run"] = json!(true);
    b
}

/// Every request the sandbox saw that was not a GET (token calls included).
fn writes(h: &Harness) -> Vec<String> {
    h.sandbox
        .requests()
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

#[tokio::test]
async fn a_dry_run_reads_only_creates_nothing_and_saves_nothing() {
    let h = Harness::moto().await;
    connect_on(&h, "bu_1", "jan@jansen.example", 1001).await;
    h.sandbox.clear_requests();
    let invoices = invoice_count(&h, 1001);

    let (status, body) = run_test(&h, "bu_1", 1001, &dry(good_body())).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["ok"], &body["dry_run"], &body["settings_saved"]),
        (&json!(true), &json!(true), &json!(false))
    );
    assert!(body.get("test_invoice").is_none() && body.get("error").is_none());
    assert_eq!(
        check_names(&body),
        [
            "connection",
            "item",
            "journal",
            "tax_code",
            "tax_category",
            "tax_category",
            "tax_category",
            "test_customer",
            "payment_condition"
        ]
    );
    // Nothing POSTed, PUT or DELETEd (no token call either: the token is fresh); nothing created or saved.
    assert_eq!(writes(&h), Vec::<String>::new());
    assert_eq!(invoice_count(&h, 1001), invoices);
    assert_eq!(test_customers(&h, 1001), (0, 0));
    let (_, s) = h.get("/connections/bu_1/exact").await;
    assert!(s["settings"].is_null(), "a dry run saves nothing: {s}");
    // One round of GETs: item, journal, VAT codes (one query), payment conditions, test customer.
    let calls = body["exact_calls"].as_u64().unwrap();
    println!("dry run, cold: {calls} Exact calls");
    assert_eq!(calls, 5, "{body}");
    assert!(
        check(&body, "test_customer")["message"]
            .as_str()
            .unwrap()
            .contains("does not exist in administration 1001")
    );
    // The administration's default cannot be read: said so, not passed silently.
    let pc = check(&body, "payment_condition");
    assert_eq!((&pc["ok"], &pc["verified"]), (&json!(true), &json!(false)));
    assert!(
        pc["message"]
            .as_str()
            .unwrap()
            .contains("cannot be read through Exact's API"),
        "{pc}"
    );

    // A bad setting is reported with its field, still read-only.
    let mut b = dry(good_body());
    b["tax_categories"][1]["exact_vat_code"] = json!("5");
    let (status, body) = run_test(&h, "bu_1", 1001, &b).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(failed_checks(&body), ["tax_categories[1].exact_vat_code"]);
    assert_eq!(body["error"]["code"], "check_failed");
    assert_eq!(body["dry_run"], true);
    assert_eq!(writes(&h), Vec::<String>::new());

    // After a full test the test customer is remembered: the dry run reads it by key.
    let (status, _) = run_test(&h, "bu_1", 1001, &good_body()).await;
    assert_eq!(status, 200);
    h.sandbox.clear_requests();
    let (status, body) = run_test(&h, "bu_1", 1001, &dry(good_body())).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(writes(&h), Vec::<String>::new());
    assert_eq!(body["exact_calls"], 5);
    assert!(
        h.sandbox
            .requests()
            .iter()
            .any(|r| r.path.contains("crm/Accounts(guid'"))
    );
    assert!(
        check(&body, "test_customer")["message"]
            .as_str()
            .unwrap()
            .contains("exists in administration 1001")
    );
    assert_eq!(test_customers(&h, 1001), (1, 1));
}

#[tokio::test]
async fn a_dry_run_reports_the_payment_condition_and_the_customer_rules() {
    let h = Harness::memory().await;
    // 1002 has no default payment condition: a full test creates the customer and is refused at processing.
    connect_on(&h, "bu_1", "jan@jansen.example", 1002).await;
    let (status, _) = run_test(&h, "bu_1", 1002, &good_body()).await;
    assert_eq!(status, 422);

    // With a payment condition on the test customer, the dry run verifies it.
    let set_pc = |h: &Harness, pc: Option<&str>, blocked: bool| {
        let mut w = h.sandbox.world();
        let d = w.division_mut(1002);
        for a in d.accounts.iter_mut().filter(|a| a.name == TEST_ACCOUNT) {
            a.payment_condition_sales = pc.map(str::to_owned);
            a.blocked = blocked;
        }
    };
    set_pc(&h, Some("30"), false);
    let (status, body) = run_test(&h, "bu_1", 1002, &dry(good_body())).await;
    assert_eq!(status, 200, "{body}");
    let pc = check(&body, "payment_condition");
    assert_eq!(pc["ok"], true);
    assert!(pc.get("verified").is_none(), "{pc}");
    assert!(pc["message"].as_str().unwrap().contains("'30'"), "{pc}");

    // A blocked test customer breaks the customer rules.
    set_pc(&h, Some("30"), true);
    let (status, body) = run_test(&h, "bu_1", 1002, &dry(good_body())).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(failed_checks(&body), ["test_customer"]);
    assert!(
        check(&body, "test_customer")["message"]
            .as_str()
            .unwrap()
            .contains("blocked")
    );

    // No payment condition at all in the administration: refused for sure.
    set_pc(&h, None, false);
    h.sandbox
        .world()
        .division_mut(1002)
        .payment_conditions
        .clear();
    let (status, body) = run_test(&h, "bu_1", 1002, &dry(good_body())).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(failed_checks(&body), ["payment_condition"]);
    assert!(
        check(&body, "payment_condition")["message"]
            .as_str()
            .unwrap()
            .contains("has no payment conditions")
    );
    let (_, s) = h.get("/connections/bu_1/exact").await;
    assert!(s["settings"].is_null());
}
