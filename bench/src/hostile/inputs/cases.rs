//! What the route modules build their cases with: a valid body per route, and [`Cases`], whose small generators
//! walk a table of (field, value, field at fault) rows.

use reqwest::Method;
use serde_json::{Value, json};

use super::{AUTH_CONN, CONN, Case, Expect, Group, TEST_CONN};
use crate::hostile::set_path;
use crate::world::Company;

pub(super) fn key() -> Option<String> {
    Some(format!("Bearer {}", e2e::PSA_KEY))
}

pub(super) fn reject(field: &str) -> Expect {
    Expect::Reject {
        field: Some(field.to_owned()),
        status: None,
    }
}

pub(super) fn reject_any() -> Expect {
    Expect::Reject {
        field: None,
        status: None,
    }
}

/// A value of a case table, written as JSON text (the tables cannot hold a `Value`).
pub(super) fn lit(json: &str) -> Value {
    serde_json::from_str(json).expect("the case tables hold valid JSON")
}

pub(super) fn json_case(
    group: Group,
    what: String,
    path: &str,
    body: &Value,
    expect: Expect,
) -> Case {
    let body = body.to_string().into_bytes();
    raw_case(group, what, path, body, "application/json", expect)
}

/// A POST of `body` as `content_type`, with the PSA key.
fn raw_case(
    group: Group,
    what: String,
    path: &str,
    body: Vec<u8>,
    content_type: &'static str,
    expect: Expect,
) -> Case {
    Case {
        group,
        what,
        method: Method::POST,
        path: path.to_owned(),
        body: Some(body),
        content_type: Some(content_type),
        auth: key(),
        expect,
        follow_up: None,
    }
}

/// A request without a body (reads and wrong methods).
pub(super) fn bodiless_case(group: Group, what: String, method: Method, path: String) -> Case {
    Case {
        group,
        what,
        method,
        path,
        body: None,
        content_type: None,
        auth: key(),
        expect: reject_any(),
        follow_up: None,
    }
}

/// Numbers the invoices of a run (`inv_h{n}`), so that no two pushes share an id.
#[derive(Debug, Default)]
pub(super) struct Ids(usize);

impl Ids {
    pub(super) fn next(&mut self) -> usize {
        self.0 += 1;
        self.0
    }
}

/// The cases of one group on one route, each built from a fresh valid body.
pub(super) struct Cases<'a> {
    group: Group,
    route: String,
    base: fn(&mut Ids) -> Value,
    ids: &'a mut Ids,
    list: Vec<Case>,
}

impl<'a> Cases<'a> {
    pub(super) fn new(
        group: Group,
        route: String,
        base: fn(&mut Ids) -> Value,
        ids: &'a mut Ids,
    ) -> Self {
        Cases {
            group,
            route,
            base,
            ids,
            list: Vec::new(),
        }
    }

    /// A fresh valid body (a push body takes the next invoice number).
    pub(super) fn base(&mut self) -> Value {
        (self.base)(self.ids)
    }

    /// A valid body with `value` at `field` (`None` removes it).
    pub(super) fn set(
        &mut self,
        what: impl Into<String>,
        field: &str,
        value: Option<Value>,
        expect: Expect,
    ) {
        let mut body = self.base();
        set_path(&mut body, field, value);
        self.body(what, &body, expect);
    }

    /// A valid body with `value` at `field` (`None` removes it), refused naming that field.
    pub(super) fn refuse(&mut self, what: impl Into<String>, field: &str, value: Option<Value>) {
        self.set(what, field, value, reject(field));
    }

    /// `field` set to each value: `{field} = {value}`, refused naming the field.
    pub(super) fn refuse_each(&mut self, field: &str, values: impl IntoIterator<Item = Value>) {
        for v in values {
            self.refuse(format!("{field} = {}", short(&v)), field, Some(v));
        }
    }

    /// Each row's field set to each of its values (JSON text), refused naming the field.
    pub(super) fn refuse_literals(&mut self, rows: &[(&str, &[&str])]) {
        for (field, values) in rows {
            self.refuse_each(field, values.iter().map(|v| lit(v)));
        }
    }

    /// `field` set to each text: `{label} {text:?}`, refused naming the field.
    pub(super) fn refuse_texts(&mut self, label: &str, field: &str, texts: &[&str]) {
        for t in texts {
            self.refuse(format!("{label} {t:?}"), field, Some(json!(t)));
        }
    }

    /// A whole JSON body.
    pub(super) fn body(
        &mut self,
        what: impl Into<String>,
        body: &Value,
        expect: Expect,
    ) -> &mut Case {
        let case = json_case(self.group, what.into(), &self.route, body, expect);
        self.list.push(case);
        let last = self.list.len() - 1;
        &mut self.list[last]
    }

    /// Raw bytes sent as `content_type`.
    pub(super) fn raw(
        &mut self,
        what: impl Into<String>,
        body: Vec<u8>,
        content_type: &'static str,
        expect: Expect,
    ) {
        let case = raw_case(
            self.group,
            what.into(),
            &self.route,
            body,
            content_type,
            expect,
        );
        self.list.push(case);
    }

    /// Each (what, bytes) row sent as JSON: refused naming the body.
    pub(super) fn bad_json(&mut self, rows: &[(&str, &[u8])]) {
        for (what, bytes) in rows {
            self.raw(*what, bytes.to_vec(), "application/json", reject("body"));
        }
    }

    pub(super) fn finish(self) -> Vec<Case> {
        self.list
    }
}

pub(super) fn push_path() -> String {
    format!("/connections/{CONN}/invoices")
}

pub(super) fn test_path() -> String {
    format!("/connections/{TEST_CONN}/exact/test")
}

pub(super) fn authorize_path() -> String {
    format!("/connections/{AUTH_CONN}/exact/authorize")
}

/// A valid invoice with a unique id (`n`).
pub(super) fn base_invoice(n: usize) -> Value {
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

pub(super) fn base_settings() -> Value {
    json!({"item_code": "CONSULT", "journal_code": "72", "tax_code": "",
           "tax_categories": [{"category": "low", "exact_vat_code": "1"}],
           "send_invoice_to_customer": false, "delivery": "psa"})
}

pub(super) fn base_authorize(return_url: &str) -> Value {
    json!({"country": "nl", "return_url": return_url})
}

pub(super) fn short(v: &Value) -> String {
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
