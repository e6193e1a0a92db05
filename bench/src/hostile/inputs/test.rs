//! `POST …/exact/test`: the connection settings made missing, mistyped or too long, and codes that only an
//! injectable OData filter would find in Exact.

use super::*;

const REQUIRED: &[&str] = &["item_code", "journal_code"];

/// Values of the wrong type or range (JSON).
const MISTYPED: &[(&str, &[&str])] = &[
    ("item_code", &["12345", "true", "[]", "{}"]),
    ("journal_code", &["72", "false", r#"["72"]"#]),
    ("tax_code", &["2", "true", r#"["2"]"#]),
    ("tax_categories", &[r#""low""#, "5", r#"{"low":"1"}"#]),
    ("tax_categories[0]", &["5", r#""low""#]),
    ("tax_categories[0].category", &["5", r#""""#, "null"]),
    (
        "tax_categories[0].exact_vat_code",
        &["1", r#""""#, "null", r#""1111""#],
    ),
    ("send_invoice_to_customer", &[r#""yes""#, "1", "[]"]),
    ("delivery", &[r#""email""#, "5", r#""""#]),
];

/// Codes that must fail Exact's check (an injectable OData filter would make them pass): (field, code).
const UNKNOWN_CODES: &[(&str, &str)] = &[
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
];

const BAD_JSON: &[(&str, &[u8])] = &[
    ("truncated JSON", b"{"),
    ("top-level array", b"[]"),
    ("empty body", b""),
    ("null", b"null"),
];

pub(super) fn cases(ids: &mut Ids) -> Vec<Case> {
    let mut c = Cases::new(Group::Test, test_path(), |_| base_settings(), ids);
    for f in REQUIRED {
        c.refuse(format!("missing {f}"), f, None);
        c.refuse(format!("{f} = null"), f, Some(Value::Null));
        c.refuse(format!("{f} empty"), f, Some(json!("")));
    }
    c.refuse_literals(MISTYPED);
    // Lengths and rules: (what, field, value, field at fault).
    let rules = [
        (
            "item_code 61 characters",
            "item_code",
            json!("I".repeat(61)),
            "item_code",
        ),
        (
            "item_code 100,000 characters",
            "item_code",
            json!("I".repeat(100_000)),
            "item_code",
        ),
        (
            "journal_code 21 characters",
            "journal_code",
            json!("7".repeat(21)),
            "journal_code",
        ),
        (
            "tax_code 4 characters",
            "tax_code",
            json!("2222"),
            "tax_code",
        ),
        (
            "category 61 characters",
            "tax_categories[0].category",
            json!("c".repeat(61)),
            "tax_categories",
        ),
        (
            "item_code with a line break",
            "item_code",
            json!("CON\nSULT"),
            "item_code",
        ),
        (
            "duplicate tax category",
            "tax_categories",
            json!([{"category": "a", "exact_vat_code": "1"}, {"category": "a", "exact_vat_code": "2"}]),
            "tax_categories",
        ),
    ];
    for (what, field, value, at_fault) in rules {
        c.set(what, field, Some(value), reject(at_fault));
    }
    for (f, v) in UNKNOWN_CODES {
        c.set(
            format!("{f} {v:?} (must fail the check)"),
            f,
            Some(json!(v)),
            reject_any(),
        );
    }
    c.bad_json(BAD_JSON);
    c.set(
        "unicode and quotes in a category name",
        "tax_categories",
        Some(json!([{"category": "Hoog tarief 🇳🇱 'x'", "exact_vat_code": "2"}])),
        Expect::Accept(None),
    );
    c.finish()
}
