//! `docs/openapi.json` describes what the handlers really do: the same routes as the template, each routed to a
//! function, every documented example answered with a documented status and the documented required fields, and
//! every answer type of the connector shaped as its documented schema.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use connector::ApiError;
use connector::admin::{
    ConfigHealth, ConnectionList, ConnectionSummary, Health, SecretHealth, TableHealth,
};
use connector::connect::{AuthorizeAnswer, StatusAnswer};
use connector::push::{InvoiceStateAnswer, PushResult};
use connector::queued_push::{BatchAnswer, BatchError, BatchResult, QueuedAnswer};
use connector::test_connection::{Check, TestError, TestInvoice, TestResult};
use e2e::Harness;
use mapping::{ConnectionId, Country, Delivery, Division, ExactGuid};
use serde_json::Value;
use store::{
    ConnectionRecord, ConnectionState, InvoicePhase, InvoiceRecord, InvoiceState, SettingsRecord,
    TaxCategoryRecord, TokenSlot, WebhookSubscriptionRecord,
};

fn root(rel: &str) -> String {
    let path = format!("{}/../{rel}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn doc() -> Value {
    serde_json::from_str(&root("docs/openapi.json")).unwrap()
}

/// `(METHOD, /path/{param})` of every operation.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            out.insert((method.to_uppercase(), path.clone()));
        }
    }
    out
}

/// The HttpApi events of template.yaml: `Method: X, Path: "/…"`.
fn template_routes() -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for line in root("template.yaml").lines() {
        let (Some(m), Some(p)) = (line.find("Method: "), line.find("Path: ")) else {
            continue;
        };
        let method: String = line[m + 8..]
            .chars()
            .take_while(|c| c.is_ascii_alphabetic())
            .collect();
        let rest = &line[p + 6..];
        let path: String = match rest.strip_prefix('"') {
            Some(quoted) => quoted.chars().take_while(|c| *c != '"').collect(),
            None => rest
                .chars()
                .take_while(|c| !matches!(c, ' ' | '}' | ','))
                .collect(),
        };
        out.insert((method, path));
    }
    out
}

fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let ptr = r.trim_start_matches('#');
            resolve(
                doc,
                doc.pointer(ptr).unwrap_or_else(|| panic!("dangling {r}")),
            )
        }
        None => v,
    }
}

#[test]
fn documents_exactly_the_templates_routes_and_each_has_a_function() {
    let doc = doc();
    assert_eq!(documented(&doc), template_routes());
    for (method, path) in documented(&doc) {
        let concrete = path
            .replace("{connection_id}", "bu_1")
            .replace("{invoice_id}", "inv_1");
        let m = lambda_http::http::Method::from_bytes(method.as_bytes()).unwrap();
        assert!(
            psa_exact_local::function_for(&m, &concrete).is_some(),
            "{method} {path} has no function"
        );
    }
}

#[tokio::test]
async fn every_example_is_answered_as_documented() {
    let doc = doc();
    let h = Harness::memory().await;
    h.sandbox
        .world()
        .users
        .iter_mut()
        .find(|u| u.login == "jan@jansen.example")
        .unwrap()
        .current_division = 1001;
    h.connect("bu_1", "jan@jansen.example", "nl").await;
    let order = [
        ("post", "/connections/{connection_id}/exact/authorize"),
        ("get", "/connections/{connection_id}/exact"),
        ("post", "/connections/{connection_id}/exact/test"),
        ("post", "/connections/{connection_id}/invoices"),
        ("get", "/connections/{connection_id}/invoices/{invoice_id}"),
        ("post", "/exact/webhooks"),
        ("delete", "/connections/{connection_id}/exact"),
    ];
    for (method, path) in order {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} documented");
        let example = op.pointer("/requestBody/content/application~1json/example");
        let concrete = path
            .replace("{connection_id}", "bu_1")
            .replace("{invoice_id}", "inv_8f2c");
        let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let (status, _, body) = h.call(m, &concrete, example).await;
        let responses = op["responses"].as_object().unwrap();
        let documented = responses
            .get(&status.to_string())
            .unwrap_or_else(|| panic!("{method} {path} answered {status}, not documented: {body}"));
        let schema = resolve(&doc, documented);
        let schema = schema
            .pointer("/content/application~1json/schema")
            .map(|s| resolve(&doc, s));
        if let Some(required) = schema.and_then(|s| s["required"].as_array()) {
            for field in required {
                let f = field.as_str().unwrap();
                assert!(
                    body.get(f).is_some(),
                    "{method} {path} {status}: `{f}` missing in {body}"
                );
            }
        }
        assert!(status < 500, "{method} {path}: {status} {body}");
    }
}

/// What is wrong with `value` as an instance of `schema`: a key that is not one of its properties, a required
/// property left out, a null it does not allow, a value of another type or outside its `enum`. Objects and arrays
/// are followed into their properties' and items' schemas; an object schema without `properties` takes any keys.
fn mismatches(doc: &Value, schema: &Value, value: &Value, at: &str, out: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    // OpenAPI 3.1: `type` is one JSON Schema type or a list of them; a nullable value lists "null".
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    assert!(
        schema.get("nullable").is_none(),
        "{at}: `nullable` is OpenAPI 3.0; list \"null\" in `type`"
    );
    if value.is_null() {
        if !types.contains(&"null") {
            out.push(format!(
                "{at}: null, but the schema's type does not list null"
            ));
        }
        return;
    }
    let kind_ok = types.is_empty()
        || types.iter().any(|t| match *t {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            _ => false,
        });
    if !kind_ok {
        out.push(format!("{at}: {value} is not of type {}", schema["type"]));
        return;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        out.push(format!("{at}: {value} is not one of {allowed:?}"));
    }
    match value {
        Value::Object(fields) => {
            for required in schema["required"].as_array().into_iter().flatten() {
                let name = required.as_str().unwrap_or_default();
                if !fields.contains_key(name) {
                    out.push(format!("{at}: the required `{name}` is missing"));
                }
            }
            if let Some(properties) = schema["properties"].as_object() {
                for (key, v) in fields {
                    match properties.get(key) {
                        Some(s) => mismatches(doc, s, v, &format!("{at}.{key}"), out),
                        None => out.push(format!("{at}.{key}: not a property of the schema")),
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    mismatches(doc, s, v, &format!("{at}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// The schema documented for `status` of `method path`.
fn answer_schema<'a>(doc: &'a Value, method: &str, path: &str, status: &str) -> &'a Value {
    let response = &doc["paths"][path][method]["responses"][status];
    assert!(
        response.is_object(),
        "{method} {path} documents no {status}"
    );
    resolve(doc, response)
        .pointer("/content/application~1json/schema")
        .unwrap_or_else(|| panic!("{method} {path} {status} documents no JSON body"))
}

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_759_300_000 + secs, 0).unwrap()
}

fn connection(state: ConnectionState) -> ConnectionRecord {
    ConnectionRecord {
        connection_id: ConnectionId::parse("bu_1").unwrap(),
        state,
        country: Country::Nl,
        base_url: None,
        division: Division::new(1001).unwrap(),
        division_name: "Jansen B.V.".into(),
        connected_user_email: "jan@jansen.example".into(),
        connected_user_name: "Jan Jansen".into(),
        connected_at: at(0),
        updated_at: at(60),
        needs_reconnect_reason: (state == ConnectionState::NeedsReconnect)
            .then(|| "Exact refused the refresh token".into()),
        webhook_subscriptions: vec![WebhookSubscriptionRecord {
            id: ExactGuid::new_random(),
            topic: "SalesInvoices".into(),
        }],
        last_token_refresh_at: Some(at(0)),
        token_slot: TokenSlot::Zero,
        token_seq: 1,
        last_push_at: None,
        pending_event: None,
    }
}

fn settings() -> SettingsRecord {
    SettingsRecord {
        division: Division::new(1001).unwrap(),
        item_code: "CONSULT".into(),
        item_id: ExactGuid::new_random(),
        journal_code: "70".into(),
        tax_code: "2".into(),
        tax_code_id: Some(ExactGuid::new_random()),
        tax_categories: vec![TaxCategoryRecord {
            category: "high".into(),
            exact_vat_code: "2".into(),
            exact_vat_code_id: Some(ExactGuid::new_random()),
        }],
        send_invoice_to_customer: true,
        delivery: Delivery::Psa,
        saved_at: at(30),
    }
}

/// A pushed invoice: paid, with every field known (`full`), or just claimed (nothing known yet).
fn invoice(full: bool) -> InvoiceRecord {
    let known = |g: ExactGuid| full.then_some(g);
    InvoiceRecord {
        connection_id: ConnectionId::parse("bu_1").unwrap(),
        invoice_id: "inv_8f2c".into(),
        body_hash: "hash".into(),
        phase: InvoicePhase::Done,
        state: if full {
            InvoiceState::Paid
        } else {
            InvoiceState::Pending
        },
        reference: full.then(|| "INV-2025-0042".into()),
        division: full.then(|| Division::new(1001).unwrap()),
        exact_account_id: known(ExactGuid::new_random()),
        exact_contact_id: known(ExactGuid::new_random()),
        exact_invoice_id: known(ExactGuid::new_random()),
        exact_invoice_number: full.then_some(25_000_001),
        journal_code: full.then(|| "70".into()),
        response: None,
        paid_at: full.then(|| at(3_600)),
        notified_at: None,
        event_at: full.then(|| at(3_600)),
        created_at: at(0),
        updated_at: at(3_600),
        attachments: store::AttachmentsRecord::default(),
    }
}

fn checks() -> Vec<Check> {
    vec![
        Check {
            category: None,
            field: None,
            message: "Connected to Exact Online administration 1001.".into(),
            name: "connection",
            ok: true,
            verified: None,
        },
        Check {
            category: Some("high".into()),
            field: Some("tax_categories[0].exact_vat_code".into()),
            message: "Tax category 'high': VAT code '2' can be used on sales invoices.".into(),
            name: "tax_category",
            ok: true,
            verified: None,
        },
        Check {
            category: None,
            field: None,
            message: "Whether the administration has a default payment condition cannot be read."
                .into(),
            name: "payment_condition",
            ok: true,
            verified: Some(false),
        },
    ]
}

fn test_result(
    ok: bool,
    error: Option<TestError>,
    test_invoice: Option<TestInvoice>,
) -> TestResult {
    TestResult {
        checks: checks(),
        division: 1001,
        division_name: "Jansen B.V.".into(),
        dry_run: test_invoice.is_none() && error.is_none(),
        error,
        exact_calls: 6,
        ok,
        settings_saved: ok && test_invoice.is_some(),
        test_invoice,
    }
}

/// An answer as it goes out.
macro_rules! json {
    ($answer:expr) => {
        sorted_json(serde_json::to_string($answer).expect("an answer serialises"))
    };
}

/// The answer's text parsed; the text must list every object's keys in alphabetical order (what a serde_json map
/// writes), as the answers always have, so a typed answer keeps its bytes. Only the error envelope has an order of
/// its own (code, message, field, exact_message).
fn sorted_json(text: String) -> Value {
    let value: Value = serde_json::from_str(&text).unwrap();
    let envelope = value
        .as_object()
        .is_some_and(|o| o.len() == 1 && o.contains_key("error"));
    if !envelope {
        assert_eq!(text, value.to_string(), "keys out of alphabetical order");
    }
    value
}

/// `(method, path, status, answers)`: representative values of every answer type, serialised as they go out, with
/// every optional field present and absent.
fn answers() -> Vec<(&'static str, &'static str, &'static str, Vec<Value>)> {
    let status = |state, settings: Option<&SettingsRecord>| {
        json!(&StatusAnswer::of(&connection(state), settings))
    };
    let tested = |number: Option<i64>| {
        let invoice = TestInvoice::Processed {
            emailed: number.is_some(),
            emailed_to: number.map(|_| "jan@jansen.example".into()),
            exact_invoice_id: ExactGuid::new_random(),
            exact_invoice_number: number,
        };
        json!(&test_result(true, None, Some(invoice)))
    };
    let failed = |exact: Option<&str>, invoice: Option<TestInvoice>| {
        let error = TestError {
            code: "test_invoice_processing_refused",
            exact_message: exact.map(str::to_owned),
            message: "Exact refused to process the test invoice.".into(),
        };
        json!(&test_result(false, Some(error), invoice))
    };
    let pushed = |warning: Option<&str>, number: Option<i64>| {
        json!(&PushResult {
            account_id: ExactGuid::new_random(),
            contact_id: ExactGuid::new_random(),
            exact_invoice_id: ExactGuid::new_random(),
            exact_invoice_number: number,
            exact_warning: warning.map(str::to_owned),
            invoice_id: "inv_8f2c".into(),
            status: "sent",
        })
    };
    let state = |full: bool, shown| json!(&InvoiceStateAnswer::of(&invoice(full), shown));
    let queued = |failure: Option<store::PushFailureRecord>| {
        let mut p = store::QueuedPush::accepted(
            &ConnectionId::parse("bu_1").unwrap(),
            "inv_8f2c",
            Division::new(1001).unwrap(),
            "hash",
            "{}".into(),
            at(0),
        );
        if failure.is_some() {
            p.finish("hash", failure, true, at(1));
        }
        json!(&InvoiceStateAnswer::of_queued(&p))
    };
    let refusal = |exact: Option<&str>, field: Option<&str>| store::PushFailureRecord {
        status: 422,
        code: "exact_refused".into(),
        message: "Exact refused the request".into(),
        field: field.map(str::to_owned),
        exact_message: exact.map(str::to_owned),
    };
    let accepted = QueuedAnswer {
        invoice_id: "inv_8f2c".into(),
        location: "/connections/bu_1/invoices/inv_8f2c".into(),
        status: "queued",
    };
    let result =
        |i: usize, status: u16, state: &'static str, error: Option<BatchError>| BatchResult {
            error,
            index: i,
            invoice_id: Some(format!("inv_{i}")),
            location: (status < 300).then(|| format!("/connections/bu_1/invoices/inv_{i}")),
            state,
            status,
        };
    let batch = BatchAnswer {
        already_pushed: 1,
        queued: 1,
        refused: 2,
        results: vec![
            result(0, 202, "queued", None),
            result(1, 200, "sent", None),
            result(
                2,
                400,
                "refused",
                Some(BatchError {
                    code: "invalid_amount".into(),
                    exact_message: None,
                    field: Some("invoices[2].lines[0].amount".into()),
                    message: "amount must be a decimal".into(),
                }),
            ),
            BatchResult {
                invoice_id: None,
                ..result(
                    3,
                    400,
                    "refused",
                    Some(BatchError {
                        code: "invalid_json".into(),
                        exact_message: Some("never".into()),
                        field: None,
                        message: "not an object".into(),
                    }),
                )
            },
        ],
    };
    let refused = |e: ApiError| json!(&e.envelope());
    let refused_in = |e: ApiError, id: &str| json!(&e.envelope_for(Some(id)));
    let authorize = AuthorizeAnswer {
        authorize_url: "https://start.exactonline.nl/api/oauth2/auth?client_id=x".into(),
        expires_in: 600,
    };
    let never = StatusAnswer::never_connected(&ConnectionId::parse("bu_1").unwrap());
    let exact_text = Some("Betalingsconditie: Verplicht");
    let (conn, test) = (
        "/connections/{connection_id}/exact",
        "/connections/{connection_id}/exact/test",
    );
    let (push, invoice_state) = (
        "/connections/{connection_id}/invoices",
        "/connections/{connection_id}/invoices/{invoice_id}",
    );
    let listed = ConnectionList {
        connections: [
            ConnectionState::Connected,
            ConnectionState::NeedsReconnect,
            ConnectionState::Disconnected,
        ]
        .into_iter()
        .map(|s| ConnectionSummary::of(&connection(s), 3))
        .collect(),
        next_cursor: Some(connector::admin::encode_cursor(
            &ConnectionId::parse("bu_Z-9").unwrap(),
        )),
    };
    let health = |ok: bool, table: Option<&str>| Health {
        app_secret: SecretHealth {
            loaded: true,
            missing_fields: if ok {
                vec![]
            } else {
                vec!["psa_callback_secret"]
            },
            ok,
        },
        configuration: ConfigHealth {
            missing: vec![],
            ok: true,
            unset_optional: vec!["PSA_CALLBACK_URL", "PUBLIC_BASE_URL"],
        },
        ok,
        table: TableHealth {
            message: table.map(str::to_owned),
            ok: table.is_none(),
        },
    };
    vec![
        (
            "get",
            "/connections",
            "200",
            vec![
                json!(&listed),
                json!(&ConnectionList {
                    connections: vec![],
                    next_cursor: None
                }),
            ],
        ),
        (
            "get",
            "/health",
            "200",
            vec![
                json!(&health(true, None)),
                json!(&health(false, Some("throttled by DynamoDB"))),
            ],
        ),
        (
            "post",
            "/connections/{connection_id}/invoices/{invoice_id}/check",
            "200",
            vec![state(true, "paid"), state(false, "pending")],
        ),
        (
            "post",
            "/connections/{connection_id}/exact/authorize",
            "200",
            vec![json!(&authorize)],
        ),
        (
            "get",
            conn,
            "200",
            vec![
                status(ConnectionState::Connected, Some(&settings())),
                status(ConnectionState::NeedsReconnect, None),
                json!(&never),
            ],
        ),
        (
            "delete",
            conn,
            "200",
            vec![status(ConnectionState::Disconnected, None)],
        ),
        (
            "post",
            test,
            "200",
            vec![
                tested(Some(25_000_001)),
                tested(None),
                json!(&test_result(true, None, None)),
            ],
        ),
        (
            "post",
            test,
            "422",
            vec![
                failed(None, None),
                failed(
                    exact_text,
                    Some(TestInvoice::NotProcessed {
                        exact_invoice_id: ExactGuid::new_random(),
                        status: "deleted",
                    }),
                ),
                failed(
                    exact_text,
                    Some(TestInvoice::ProcessedWithErrors {
                        exact_invoice_id: ExactGuid::new_random(),
                        exact_invoice_number: Some(25_000_001),
                        status: "processed",
                    }),
                ),
            ],
        ),
        (
            "post",
            push,
            "201",
            vec![pushed(Some("E-mail failed"), Some(25_000_001))],
        ),
        ("post", push, "200", vec![pushed(None, None)]),
        ("post", push, "202", vec![json!(&accepted)]),
        (
            "post",
            "/connections/{connection_id}/invoices:batch",
            "202",
            vec![json!(&batch)],
        ),
        (
            "get",
            invoice_state,
            "200",
            vec![
                state(true, "paid"),
                state(false, "pending"),
                queued(None),
                queued(Some(refusal(
                    Some("Ongeldig: Dagboek"),
                    Some("journal_code"),
                ))),
                queued(Some(refusal(None, None))),
            ],
        ),
        (
            "post",
            push,
            "400",
            vec![refused(
                ApiError::bad_field("lines[0].amount", "invalid_amount", "not a decimal")
                    .with_exact_message(Some("Exact's text".into())),
            )],
        ),
        (
            "post",
            push,
            "409",
            vec![
                refused(ApiError::conflict("invoice_conflict", "another body")),
                refused_in(
                    ApiError::conflict("push_in_progress", "running").with_retry_after(2),
                    "psa-2f6c0e1d",
                ),
            ],
        ),
        (
            "get",
            conn,
            "405",
            vec![refused_in(
                ApiError::method_not_allowed(connector::http::Allow::GetDelete),
                "7d0e1c2a-3b4c-4d5e-8f90-a1b2c3d4e5f6",
            )],
        ),
    ]
}

#[test]
fn every_answer_type_is_shaped_as_its_documented_schema() {
    let doc = doc();
    let mut problems = Vec::new();
    for (method, path, status, values) in answers() {
        let schema = answer_schema(&doc, method, path, status);
        for value in values {
            let at = format!("{method} {path} {status}");
            mismatches(&doc, schema, &value, &at, &mut problems);
        }
    }
    assert!(
        problems.is_empty(),
        "answers and docs/openapi.json differ:\n{}",
        problems.join("\n")
    );
}

/// Every error `code` the connector answers with is in the documented enum of `Error.error.code`, and every
/// operation documents 405 (with `Allow`) and `X-Request-Id`.
#[test]
fn every_error_code_and_header_is_documented() {
    let doc = doc();
    let documented: BTreeSet<&str> = doc
        .pointer("/components/schemas/Error/properties/error/properties/code/enum")
        .and_then(Value::as_array)
        .expect("the codes are an enum")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mut missing = Vec::new();
    for dir in ["shared/connector/src", "shared/mapping/src"] {
        for code in codes_in(&format!("{}/../{dir}", env!("CARGO_MANIFEST_DIR"))) {
            if !documented.contains(code.as_str()) {
                missing.push(code);
            }
        }
    }
    missing.sort();
    missing.dedup();
    assert!(
        missing.is_empty(),
        "error codes not in docs/openapi.json: {missing:?}"
    );
    // Each code has its meaning in the description (`- `code`: status: meaning`).
    let description = doc
        .pointer("/components/schemas/Error/properties/error/properties/code/description")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let undescribed: Vec<&&str> = documented
        .iter()
        .filter(|c| !description.contains(&format!("\n- `{c}`: ")))
        .collect();
    assert!(
        undescribed.is_empty(),
        "error codes without a meaning in docs/openapi.json: {undescribed:?}"
    );
    for (method, path) in self::documented(&doc) {
        let op = &doc["paths"][&path][method.to_lowercase()];
        let r405 = resolve(&doc, &op["responses"]["405"]);
        assert!(
            r405["headers"]["Allow"].is_object(),
            "{method} {path}: 405 with Allow"
        );
        let params = op["parameters"].as_array().unwrap();
        assert!(
            params
                .iter()
                .any(|p| resolve(&doc, p)["name"] == "X-Request-Id"),
            "{method} {path}: X-Request-Id parameter"
        );
        for (status, r) in op["responses"].as_object().unwrap() {
            let r = resolve(&doc, r);
            assert!(
                r["headers"]["X-Request-Id"].is_object(),
                "{method} {path} {status}: X-Request-Id"
            );
            if ["409", "429", "503"].contains(&status.as_str()) {
                assert!(
                    r["headers"]["Retry-After"].is_object(),
                    "{method} {path} {status}: Retry-After"
                );
            }
        }
    }
}

/// The snake_case codes given to `ApiError::{new, bad_field, conflict, not_found, unprocessable}` and
/// `FieldError::new` in the Rust files under `dir` (test modules left out).
fn codes_in(dir: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![std::path::PathBuf::from(dir)];
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        if p.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        let text = text.split("#[cfg(test)]").next().unwrap_or_default();
        for ctor in [
            "ApiError::new(",
            "ApiError::bad_field(",
            "ApiError::conflict(",
            "ApiError::not_found(",
            "ApiError::unprocessable(",
            "FieldError::new(",
        ] {
            for (i, _) in text.match_indices(ctor) {
                let args = &text[i + ctor.len()..];
                let args = &args[..args.find(");").unwrap_or(args.len()).min(600)];
                let mut literals: Vec<&str> = args.split('"').skip(1).step_by(2).collect();
                // bad_field and FieldError::new name the field first.
                if (ctor.ends_with("bad_field(") || ctor.starts_with("FieldError"))
                    && args.trim_start().starts_with('"')
                    && !literals.is_empty()
                {
                    literals.remove(0);
                }
                let code = literals.iter().find(|l| {
                    !l.is_empty()
                        && l.contains('_')
                        && l.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                });
                // `unknown_job` answers a scheduled event, never an HTTP request.
                if let Some(code) = code.filter(|c| **c != "unknown_job") {
                    out.push((*code).to_owned());
                }
            }
        }
    }
    out
}

/// Every callback the connector sends matches its documented webhook: the envelope, the `type`, the `data` of each
/// kind (built by the code that sends them, from records in every state that sends one).
#[test]
fn every_callback_body_matches_its_documented_webhook() {
    use connector::callbacks::Event;
    let doc = doc();
    let mut events: Vec<Event> = Vec::new();
    let mut paid = invoice(true);
    events.extend(Event::of_invoice(&paid));
    paid.state = InvoiceState::Credited;
    events.extend(Event::of_invoice(&paid));
    let mut reopened = invoice(true);
    reopened.state = InvoiceState::Sent;
    reopened.paid_at = None;
    events.extend(Event::of_invoice(&reopened));
    let mut legacy = invoice(true);
    legacy.event_at = None;
    events.extend(Event::of_invoice(&legacy));
    let mut queued = store::QueuedPush::accepted(
        &ConnectionId::parse("bu_1").unwrap(),
        "inv_8f2c",
        Division::new(1001).unwrap(),
        "hash",
        "{}".into(),
        at(0),
    );
    let result = store::SavedResponse {
        status: 201,
        body: serde_json::to_value(PushResult {
            invoice_id: "inv_8f2c".into(),
            status: "sent",
            exact_invoice_id: ExactGuid::new_random(),
            exact_invoice_number: Some(25_000_001),
            account_id: ExactGuid::new_random(),
            contact_id: ExactGuid::new_random(),
            exact_warning: None,
        })
        .unwrap(),
    };
    assert!(queued.finish("hash", None, true, at(60)));
    events.extend(Event::of_push(&queued, Some(&result)));
    let mut failed = queued.clone();
    failed.state = store::QueuedPushState::Failed;
    failed.failure = Some(store::PushFailureRecord {
        status: 422,
        code: "exact_refused".into(),
        message: "Exact refused the invoice".into(),
        field: None,
        exact_message: Some("Betalingsconditie: Verplicht".into()),
    });
    events.extend(Event::of_push(&failed, None));
    let mut c = connection(ConnectionState::NeedsReconnect);
    c.needs_reconnect_reason = Some("Exact refused the refresh token".into());
    for kind in [
        store::ConnectionEventKind::NeedsReconnect,
        store::ConnectionEventKind::Restored,
    ] {
        events.push(Event::of_connection(
            &c,
            &store::ConnectionEvent { kind, at: at(90) },
        ));
    }
    let kinds: BTreeSet<&str> = events.iter().map(|e| e.kind).collect();
    let documented: BTreeSet<&str> = doc["webhooks"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        kinds, documented,
        "every documented callback is sent, and only those"
    );
    let mut problems = Vec::new();
    for e in &events {
        let body: Value = serde_json::from_slice(&e.body()).unwrap();
        let schema = doc["webhooks"][e.kind]
            .pointer("/post/requestBody/content/application~1json/schema")
            .unwrap_or_else(|| panic!("{} documents its body", e.kind));
        mismatches(&doc, schema, &body, e.kind, &mut problems);
        let id = body["id"].as_str().unwrap();
        assert!(
            id.len() == 36
                && id.starts_with("evt_")
                && id[4..]
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
            "{id}"
        );
    }
    assert!(
        problems.is_empty(),
        "callbacks and docs/openapi.json differ:\n{}",
        problems.join("\n")
    );
}
