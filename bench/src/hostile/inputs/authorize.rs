//! `POST …/exact/authorize`: countries and return URLs that must be refused, and odd ones that are valid.

use super::*;

/// Not a country the connector serves (JSON).
const BAD_COUNTRIES: &[&str] = &[
    r#""gb""#,
    r#""NL'""#,
    r#""nl; DROP TABLE x""#,
    "7",
    "null",
    "[]",
    "{}",
    r#""""#,
    r#""  ""#,
    r#""n\u0000l""#,
    r#""ñl""#,
];

/// Not an https URL to return to (JSON).
const BAD_RETURN_URLS: &[&str] = &[
    r#""http://psa.example/""#,
    r#""javascript:alert(1)""#,
    r#""ftp://psa.example/""#,
    r#""""#,
    "5",
    "null",
    "[]",
    r#""//evil.example/""#,
    r#""https://""#,
    r#""not a url""#,
    r#""data:text/html,<script>alert(1)</script>""#,
];

const BAD_JSON: &[(&str, &[u8])] = &[
    ("truncated JSON", b"{\"country\":"),
    ("top-level array", b"[\"nl\"]"),
    ("empty body", b""),
    ("not UTF-8", &[0xc3, 0x28]),
];

pub(super) fn cases(ids: &mut Ids) -> Vec<Case> {
    let mut c = Cases::new(
        Group::Authorize,
        authorize_path(),
        |_| base_authorize("https://psa.example/settings"),
        ids,
    );
    let huge_country = json!("x".repeat(100_000));
    c.refuse_each(
        "country",
        BAD_COUNTRIES.iter().map(|v| lit(v)).chain([huge_country]),
    );
    c.refuse("country missing", "country", None);
    c.refuse_each("return_url", BAD_RETURN_URLS.iter().map(|v| lit(v)));
    c.set(
        "return_url missing",
        "return_url",
        None,
        reject("return_url"),
    );
    // (what, field, value, expected)
    let odd_but_valid = [
        (
            "return_url of 100,000 characters",
            "return_url",
            json!(format!("https://psa.example/{}", "a".repeat(100_000))),
            Expect::Either,
        ),
        (
            "return_url with quotes, markup and unicode",
            "return_url",
            json!("https://psa.example/ünï?x='1'&y=<b>"),
            Expect::Accept(None),
        ),
        (
            "country \" NL \"",
            "country",
            json!(" NL "),
            Expect::Accept(None),
        ),
    ];
    for (what, field, value, expect) in odd_but_valid {
        c.set(what, field, Some(value), expect);
    }
    c.bad_json(BAD_JSON);
    c.finish()
}
