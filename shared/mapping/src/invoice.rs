//! The PSA invoice as the PSA posts it, parsed and validated in one pass.
//!
//! Limits (Exact's own field lengths are not documented — see `docs/exact-online.md` §5.7 — so each
//! limit below is our choice, kept generous but sane, and says why):
//!
//! | field | rule | refusal |
//! |---|---|---|
//! | `id` | 1..=128 of `A-Z a-z 0-9 _ - . :` — part of the storage (DynamoDB) key | 400 |
//! | `reference` | 1..=60 — becomes `YourRef`; Exact's limit is undocumented, 60 is a safe guess | 400 |
//! | `name` | 1..=255 — becomes the header `Description` | 400 |
//! | `credit` | boolean, absent = `false` | 400 |
//! | `invoice_date` | `yyyy-mm-dd`, years 1900..=9999 | 400 |
//! | `period` | optional `{from, until}` dates, `from <= until` (named `period`) | 400 |
//! | `project.number`, `project.name` | 1..=255 each | 400 |
//! | `company.id` | 1..=128 — a key for the remembered Exact account | 400 |
//! | `company.name` | 1..=255 (Exact's `Name` limit is undocumented) | 400 |
//! | `company.address`, `company.city` | optional, ≤ 255 | 400 |
//! | `contact.first_name`, `contact.last_name` | optional, ≤ 50 each | 400 |
//! | `contact.email` | see [`Email`] | 400 |
//! | `lines[i].number` | whole number 1..=u32::MAX, unique within the invoice | 400 |
//! | `lines[i].name` | non-empty; `"{number} - {name}"` ≤ 60 (Exact's item description length) | 400 |
//! | `lines[i].description` | optional, ≤ 1000 — becomes the line `Notes` | 400 |
//! | `lines[i].amount` | a decimal *string*, see [`Amount`]; a JSON number is refused | 400 |
//! | `lines[i].item_code`, `lines[i].tax_category` | optional, ≤ 60 | 400 |
//! | `lines` | at most 500 (checked before any line is read) | 400 |
//! | `lines` | at least 1 line | 422 |
//! | `credit` vs total | credit note: total ≤ 0; invoice: total ≥ 0 (zero allowed for both) | 422 |
//! | `attachments` | PDF files, see [`crate::attachment`] | 400 / 413 |
//!
//! All strings are trimmed; control characters inside are refused; lengths count characters; an
//! optional string that is blank counts as absent; `null` counts as absent; unknown fields are
//! ignored so the PSA can add fields without breaking us.

use std::collections::HashMap;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::amount::Amount;
use crate::attachment::{Attachment, read_attachments};
use crate::email::Email;
use crate::error::{FieldError, InvalidInvoice};
use crate::json::{Obj, index_path, missing, parse_body, too_long, type_error};

pub const MAX_INVOICE_ID_LEN: usize = 128;
pub const MAX_REFERENCE_LEN: usize = 60;
pub const MAX_NAME_LEN: usize = 255;
pub const MAX_PROJECT_FIELD_LEN: usize = 255;
pub const MAX_COMPANY_ID_LEN: usize = 128;
pub const MAX_COMPANY_FIELD_LEN: usize = 255;
pub const MAX_PERSON_NAME_LEN: usize = 50;
/// Exact's line `Description` follows the item description, documented as 60 characters.
pub const MAX_LINE_DESCRIPTION_LEN: usize = 60;
pub const MAX_LINE_NOTES_LEN: usize = 1000;
pub const MAX_CODE_LEN: usize = 60;
/// One Exact POST carries all lines; 500 is far beyond a real PSA invoice and keeps the request
/// well inside Lambda's and Exact's size limits.
pub const MAX_LINES: usize = 500;

/// A finished PSA invoice, validated. Build it with [`Invoice::parse_json`] (or serde, which
/// applies the same validation); it serializes back to the same JSON shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Invoice {
    pub id: String,
    pub reference: String,
    pub name: String,
    pub credit: bool,
    pub invoice_date: NaiveDate,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<Period>,
    pub project: Project,
    pub company: Company,
    pub contact: Contact,
    pub lines: Vec<InvoiceLine>,
    /// Specification pages (PDF) to attach to the Exact invoice; see [`crate::attachment`].
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
}

/// The service period; goes on every Exact line as `StartTime`/`EndTime`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Period {
    pub from: NaiveDate,
    pub until: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Project {
    pub number: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Company {
    pub id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Contact {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    pub email: Email,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InvoiceLine {
    pub number: u32,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub amount: Amount,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tax_category: Option<String>,
}

impl Invoice {
    /// Parse the raw request body. Malformed JSON, wrong types, missing or out-of-limit fields are
    /// [`InvalidInvoice::Malformed`]; business rules are checked only on a well-formed invoice and
    /// are [`InvalidInvoice::Rule`]. The first problem found is returned, naming its field.
    pub fn parse_json(body: &[u8]) -> Result<Invoice, InvalidInvoice> {
        let value = parse_body(body)?;
        Self::from_value(&value)
    }

    /// As [`Invoice::parse_json`], from an already parsed JSON value.
    pub fn from_value(value: &Value) -> Result<Invoice, InvalidInvoice> {
        let mut invoice = read_invoice(value)?;
        invoice.attachments = read_attachments(value)?;
        invoice.check_rules()?;
        Ok(invoice)
    }

    /// Sum of the line amounts (exact decimal arithmetic; cannot overflow within the limits).
    pub fn total(&self) -> Decimal {
        self.lines.iter().map(|l| l.amount.as_decimal()).sum()
    }

    /// The bytes that identify "the same invoice" for idempotency: the *parsed* invoice in a fixed form, so a
    /// body re-serialised by the PSA is a replay, not a conflict. Two bodies are the same invoice when they parse
    /// to the same values: key order, whitespace and unknown fields do not count, nor do surrounding blanks, a
    /// blank optional (= absent), `null` (= absent), `"credit": false` (= absent) or how an amount is written
    /// (`"8000"`, `"8000.0"` and `"8000.00"` are one amount). Everything that reaches Exact counts, including the
    /// order of the lines, and the attachments (names and content, in their order; absent when there are none, so
    /// an invoice without attachments keeps the hash it always had). Versioned, so a later change of the form cannot collide with this one.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = b"psa-invoice/v1\n".to_vec();
        // Serialising the validated model cannot fail: strings, numbers, dates and amounts (always 2 decimals).
        out.extend(serde_json::to_vec(self).unwrap_or_default());
        out
    }

    fn check_rules(&self) -> Result<(), InvalidInvoice> {
        let rule = |field: &str, code, message: String| {
            Err(InvalidInvoice::Rule(FieldError::new(field, code, message)))
        };
        if self.lines.is_empty() {
            return rule(
                "lines",
                "no_lines",
                "lines must contain at least one line: Exact cannot book an invoice without lines"
                    .into(),
            );
        }
        // Named `credit` in both cases: the flag and the amounts disagree.
        let total = self.total();
        if self.credit && total > Decimal::ZERO {
            return rule(
                "credit",
                "credit_note_positive_total",
                format!(
                    "credit is true but the lines total {total} is positive: a credit note carries \
                     negative amounts (total zero or less); send \"credit\": false for an invoice"
                ),
            );
        }
        if !self.credit && total < Decimal::ZERO {
            return rule(
                "credit",
                "invoice_negative_total",
                format!(
                    "credit is false but the lines total {total} is negative: send a negative \
                     total as a credit note (\"credit\": true) or correct the amounts"
                ),
            );
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Invoice {
    /// Same validation as [`Invoice::parse_json`], so a stored invoice reads back only if valid.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        Invoice::from_value(&value).map_err(serde::de::Error::custom)
    }
}

fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')
}

fn read_invoice(value: &Value) -> Result<Invoice, FieldError> {
    let root = Obj::root(value)?;

    let id = root.parsed("id", |raw, field| {
        let id = raw.trim();
        let n = id.chars().count();
        if n == 0 || n > MAX_INVOICE_ID_LEN || !id.chars().all(is_id_char) {
            return Err(FieldError::new(
                field,
                "invalid_id",
                format!(
                    "{field} must be 1 to {MAX_INVOICE_ID_LEN} characters of A-Z, a-z, 0-9, '_', \
                     '-', '.' or ':' (it becomes part of the connector's storage key)"
                ),
            ));
        }
        Ok(id.to_owned())
    })?;
    let reference = root.text("reference", MAX_REFERENCE_LEN)?;
    let name = root.text("name", MAX_NAME_LEN)?;
    let credit = root.bool_or("credit", false)?;
    let invoice_date = root.date("invoice_date")?;
    let period = root
        .opt_object("period")?
        .map(|p| read_period(&p))
        .transpose()?;

    let project = root.object("project")?;
    let project = Project {
        number: project.text("number", MAX_PROJECT_FIELD_LEN)?,
        name: project.text("name", MAX_PROJECT_FIELD_LEN)?,
    };

    let company = root.object("company")?;
    let company = Company {
        id: company.text("id", MAX_COMPANY_ID_LEN)?,
        name: company.text("name", MAX_COMPANY_FIELD_LEN)?,
        address: company.opt_text("address", MAX_COMPANY_FIELD_LEN)?,
        city: company.opt_text("city", MAX_COMPANY_FIELD_LEN)?,
    };

    let contact = root.object("contact")?;
    let contact = Contact {
        first_name: contact.opt_text("first_name", MAX_PERSON_NAME_LEN)?,
        last_name: contact.opt_text("last_name", MAX_PERSON_NAME_LEN)?,
        email: contact.parsed("email", Email::parse_at)?,
    };

    let lines_path = root.path("lines");
    let raw_lines = root.array("lines")?;
    // Bounded before any line is read, so a huge list costs nothing.
    if raw_lines.len() > MAX_LINES {
        return Err(FieldError::new(
            &lines_path,
            "too_many_lines",
            format!(
                "{lines_path} may contain at most {MAX_LINES} lines, got {}; split the invoice",
                raw_lines.len()
            ),
        ));
    }
    let mut lines = Vec::new();
    let mut seen: HashMap<u32, usize> = HashMap::new();
    for (i, item) in raw_lines.iter().enumerate() {
        let line = read_line(item, &index_path(&lines_path, i))?;
        if let Some(first) = seen.insert(line.number, i) {
            let field = format!("{}.number", index_path(&lines_path, i));
            return Err(FieldError::new(
                &field,
                "duplicate_line_number",
                format!(
                    "{field} repeats the number of lines[{first}]; line numbers must be unique"
                ),
            ));
        }
        lines.push(line);
    }

    Ok(Invoice {
        id,
        reference,
        name,
        credit,
        invoice_date,
        period,
        project,
        company,
        contact,
        lines,
        attachments: Vec::new(),
    })
}

fn read_period(p: &Obj<'_>) -> Result<Period, FieldError> {
    let from = p.date("from")?;
    let until = p.date("until")?;
    if from > until {
        let field = p.own_path().to_owned();
        return Err(FieldError::new(
            &field,
            "period_out_of_order",
            format!("{field}.from must be on or before {field}.until"),
        ));
    }
    Ok(Period { from, until })
}

fn read_line(value: &Value, path: &str) -> Result<InvoiceLine, FieldError> {
    let line = Obj::new(value, path)?;
    let number = line.positive_u32("number")?;
    let name = line.text("name", MAX_LINE_DESCRIPTION_LEN)?;
    // The name ends up in `"{number} - {name}"`, which must fit Exact's line description.
    let composed = number.to_string().len() + 3 + name.chars().count();
    if composed > MAX_LINE_DESCRIPTION_LEN {
        let field = line.path("name");
        let mut e = too_long(&field, MAX_LINE_DESCRIPTION_LEN, composed);
        e.message = format!(
            "{field} is too long: the Exact line description \"{{number}} - {{name}}\" must be at \
             most {MAX_LINE_DESCRIPTION_LEN} characters, this one would be {composed}"
        );
        return Err(e);
    }
    let description = line.opt_text("description", MAX_LINE_NOTES_LEN)?;
    let amount_field = line.path("amount");
    let amount = match value.get("amount") {
        None | Some(Value::Null) => return Err(missing(&amount_field)),
        Some(Value::String(raw)) => Amount::parse_at(raw, &amount_field)?,
        Some(Value::Number(_)) => {
            return Err(FieldError::new(
                &amount_field,
                "wrong_type",
                format!(
                    "{amount_field} must be a decimal written as a string, e.g. \"8000.00\", not a \
                     JSON number (numbers may lose cents)"
                ),
            ));
        }
        Some(other) => return Err(type_error(&amount_field, "a decimal string", other)),
    };
    let item_code = line.opt_text("item_code", MAX_CODE_LEN)?;
    let tax_category = line.opt_text("tax_category", MAX_CODE_LEN)?;
    Ok(InvoiceLine {
        number,
        name,
        description,
        amount,
        item_code,
        tax_category,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn design_body() -> Value {
        json!({
          "id": "inv_8f2c",
          "reference": "INV-2025-0042",
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

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn parse(v: &Value) -> Result<Invoice, InvalidInvoice> {
        Invoice::parse_json(&serde_json::to_vec(v).unwrap())
    }

    /// Apply `edit` to the sample invoice body and expect a refusal of `kind` naming `field` with `code`.
    #[track_caller]
    fn refused(edit: impl FnOnce(&mut Value), rule: bool, field: &str, code: &str) {
        let mut v = design_body();
        edit(&mut v);
        let err = parse(&v).expect_err("should be refused");
        assert_eq!(err.is_rule(), rule, "kind of {err:?}");
        assert_eq!(err.field(), field, "{err:?}");
        assert_eq!(err.code(), code, "{err:?}");
        assert!(
            err.to_string().contains(field),
            "message must name the field: {err}"
        );
    }

    #[test]
    fn design_example_parses_into_the_model() {
        let inv = parse(&design_body()).unwrap();
        assert_eq!(inv.id, "inv_8f2c");
        assert_eq!(inv.reference, "INV-2025-0042");
        assert_eq!(inv.name, "September 2025 - Website relaunch");
        assert!(!inv.credit);
        assert_eq!(inv.invoice_date, date("2025-10-01"));
        assert_eq!(
            inv.period,
            Some(Period {
                from: date("2025-09-01"),
                until: date("2025-09-30")
            })
        );
        assert_eq!(
            inv.project,
            Project {
                number: "P-1001".into(),
                name: "Website relaunch".into()
            }
        );
        assert_eq!(
            inv.company,
            Company {
                id: "cmp_17".into(),
                name: "Acme B.V.".into(),
                address: Some("Stationsplein 1".into()),
                city: Some("Utrecht".into()),
            }
        );
        assert_eq!(inv.contact.first_name.as_deref(), Some("Jane"));
        assert_eq!(inv.contact.last_name.as_deref(), Some("Doe"));
        assert_eq!(inv.contact.email.as_str(), "jane@acme.example");
        assert_eq!(inv.lines.len(), 1);
        let l = &inv.lines[0];
        assert_eq!(l.number, 1);
        assert_eq!(l.name, "Consultancy");
        assert_eq!(l.description.as_deref(), Some("80 hours senior consultant"));
        assert_eq!(l.amount.to_string(), "8000.00");
        assert_eq!(l.item_code, None);
        assert_eq!(l.tax_category, None);
        assert_eq!(inv.total().to_string(), "8000.00");
    }

    #[test]
    fn serializes_back_to_the_same_shape_and_reparses() {
        let inv = parse(&design_body()).unwrap();
        let v = serde_json::to_value(&inv).unwrap();
        assert_eq!(v["lines"][0]["amount"], json!("8000.00"));
        assert_eq!(v["period"]["from"], json!("2025-09-01"));
        let back: Invoice = serde_json::from_value(v).unwrap();
        assert_eq!(back, inv);
    }

    #[test]
    fn serde_deserialize_applies_the_rules() {
        let mut v = design_body();
        v["credit"] = json!(true);
        let err = serde_json::from_value::<Invoice>(v).unwrap_err();
        assert!(err.to_string().contains("credit"), "{err}");
    }

    #[test]
    fn strings_are_trimmed_blank_optionals_absent_unknown_fields_ignored() {
        let mut v = design_body();
        v["reference"] = json!("  INV-1  ");
        v["company"]["address"] = json!("   ");
        v["company"]["city"] = json!(null);
        v["contact"].as_object_mut().unwrap().remove("first_name");
        v["lines"][0]["item_code"] = json!(" CONSULT ");
        v["lines"][0]["future_field"] = json!({"x": 1});
        v["something_new"] = json!([1, 2]);
        v.as_object_mut().unwrap().remove("period");
        v.as_object_mut().unwrap().remove("credit");
        let inv = parse(&v).unwrap();
        assert_eq!(inv.reference, "INV-1");
        assert_eq!(inv.company.address, None);
        assert_eq!(inv.company.city, None);
        assert_eq!(inv.contact.first_name, None);
        assert_eq!(inv.lines[0].item_code.as_deref(), Some("CONSULT"));
        assert_eq!(inv.period, None);
        assert!(!inv.credit, "credit defaults to false");
    }

    #[test]
    fn body_errors_are_malformed() {
        let e = Invoice::parse_json(b"not json").unwrap_err();
        assert_eq!(
            (e.is_rule(), e.field(), e.code()),
            (false, "body", "invalid_json")
        );
        let e = Invoice::parse_json(b"[]").unwrap_err();
        assert_eq!(
            (e.is_rule(), e.field(), e.code()),
            (false, "body", "wrong_type")
        );
        let e = Invoice::parse_json(b"").unwrap_err();
        assert_eq!(e.code(), "invalid_json");
    }

    #[test]
    fn missing_required_fields_are_named() {
        for (path, field) in [
            (&["id"][..], "id"),
            (&["reference"], "reference"),
            (&["name"], "name"),
            (&["invoice_date"], "invoice_date"),
            (&["project"], "project"),
            (&["project", "number"], "project.number"),
            (&["project", "name"], "project.name"),
            (&["company"], "company"),
            (&["company", "id"], "company.id"),
            (&["company", "name"], "company.name"),
            (&["contact"], "contact"),
            (&["contact", "email"], "contact.email"),
            (&["period", "from"], "period.from"),
            (&["period", "until"], "period.until"),
            (&["lines"], "lines"),
        ] {
            refused(
                |v| {
                    let (last, parents) = path.split_last().unwrap();
                    let mut o = v;
                    for p in parents {
                        o = &mut o[*p];
                    }
                    o.as_object_mut().unwrap().remove(*last);
                },
                false,
                field,
                "missing_field",
            );
        }
        for key in ["number", "name", "amount"] {
            refused(
                |v| {
                    v["lines"][0].as_object_mut().unwrap().remove(key);
                },
                false,
                &format!("lines[0].{key}"),
                "missing_field",
            );
        }
    }

    #[test]
    fn wrong_types_are_named() {
        refused(|v| v["id"] = json!(17), false, "id", "wrong_type");
        refused(
            |v| v["credit"] = json!("false"),
            false,
            "credit",
            "wrong_type",
        );
        refused(
            |v| v["invoice_date"] = json!(20251001),
            false,
            "invoice_date",
            "wrong_type",
        );
        refused(
            |v| v["period"] = json!("2025-09"),
            false,
            "period",
            "wrong_type",
        );
        refused(|v| v["project"] = json!([]), false, "project", "wrong_type");
        refused(
            |v| v["company"]["city"] = json!(3),
            false,
            "company.city",
            "wrong_type",
        );
        refused(
            |v| v["contact"]["email"] = json!(true),
            false,
            "contact.email",
            "wrong_type",
        );
        refused(|v| v["lines"] = json!({}), false, "lines", "wrong_type");
        refused(
            |v| v["lines"][0] = json!("line"),
            false,
            "lines[0]",
            "wrong_type",
        );
        refused(
            |v| v["lines"][0]["number"] = json!("1"),
            false,
            "lines[0].number",
            "wrong_type",
        );
        refused(
            |v| v["lines"][0]["tax_category"] = json!(21),
            false,
            "lines[0].tax_category",
            "wrong_type",
        );
    }

    #[test]
    fn id_rules() {
        refused(|v| v["id"] = json!(""), false, "id", "invalid_id");
        refused(|v| v["id"] = json!("inv/1"), false, "id", "invalid_id");
        refused(|v| v["id"] = json!("inv 1"), false, "id", "invalid_id");
        refused(
            |v| v["id"] = json!("a".repeat(129)),
            false,
            "id",
            "invalid_id",
        );
        let mut v = design_body();
        v["id"] = json!(format!("A-z_0.9:{}", "x".repeat(120)));
        assert_eq!(parse(&v).unwrap().id.len(), 128);
        let mut v = design_body();
        v["id"] = json!("bad id");
        let msg = parse(&v).unwrap_err().to_string();
        assert!(msg.contains("storage key"), "{msg}");
    }

    #[test]
    fn length_rules() {
        let s = |n: usize| json!("x".repeat(n));
        refused(|v| v["reference"] = s(61), false, "reference", "too_long");
        refused(|v| v["reference"] = json!(" "), false, "reference", "empty");
        refused(|v| v["name"] = s(256), false, "name", "too_long");
        refused(|v| v["name"] = json!(""), false, "name", "empty");
        refused(
            |v| v["project"]["number"] = json!(""),
            false,
            "project.number",
            "empty",
        );
        refused(
            |v| v["project"]["name"] = s(256),
            false,
            "project.name",
            "too_long",
        );
        refused(
            |v| v["company"]["id"] = json!(" "),
            false,
            "company.id",
            "empty",
        );
        refused(
            |v| v["company"]["id"] = s(129),
            false,
            "company.id",
            "too_long",
        );
        refused(
            |v| v["company"]["name"] = json!(""),
            false,
            "company.name",
            "empty",
        );
        refused(
            |v| v["company"]["name"] = s(256),
            false,
            "company.name",
            "too_long",
        );
        refused(
            |v| v["company"]["address"] = s(256),
            false,
            "company.address",
            "too_long",
        );
        refused(
            |v| v["company"]["city"] = s(256),
            false,
            "company.city",
            "too_long",
        );
        refused(
            |v| v["contact"]["first_name"] = s(51),
            false,
            "contact.first_name",
            "too_long",
        );
        refused(
            |v| v["contact"]["last_name"] = s(51),
            false,
            "contact.last_name",
            "too_long",
        );
        refused(
            |v| v["lines"][0]["name"] = json!(""),
            false,
            "lines[0].name",
            "empty",
        );
        refused(
            |v| v["lines"][0]["description"] = s(1001),
            false,
            "lines[0].description",
            "too_long",
        );
        refused(
            |v| v["lines"][0]["item_code"] = s(61),
            false,
            "lines[0].item_code",
            "too_long",
        );
        refused(
            |v| v["lines"][0]["tax_category"] = s(61),
            false,
            "lines[0].tax_category",
            "too_long",
        );
        // Exactly at the limits is fine.
        let mut v = design_body();
        v["reference"] = s(60);
        v["name"] = s(255);
        v["contact"]["first_name"] = s(50);
        v["company"]["name"] = s(255);
        assert!(parse(&v).is_ok());
    }

    #[test]
    fn line_name_must_fit_the_composed_exact_description() {
        // "1 - " is 4 characters, so 56 characters of name fit in 60.
        let mut v = design_body();
        v["lines"][0]["name"] = json!("n".repeat(56));
        assert!(parse(&v).is_ok());
        refused(
            |v| v["lines"][0]["name"] = json!("n".repeat(57)),
            false,
            "lines[0].name",
            "too_long",
        );
        // A longer line number leaves less room: "1000 - " is 7 characters.
        refused(
            |v| {
                v["lines"][0]["number"] = json!(1000);
                v["lines"][0]["name"] = json!("n".repeat(54));
            },
            false,
            "lines[0].name",
            "too_long",
        );
    }

    #[test]
    fn control_characters_are_refused() {
        refused(
            |v| v["name"] = json!("a\tb"),
            false,
            "name",
            "control_character",
        );
        refused(
            |v| v["company"]["name"] = json!("Acme\u{0}"),
            false,
            "company.name",
            "control_character",
        );
        refused(
            |v| v["lines"][0]["description"] = json!("80 hours\nsenior"),
            false,
            "lines[0].description",
            "control_character",
        );
    }

    #[test]
    fn email_rule() {
        refused(
            |v| v["contact"]["email"] = json!("jane"),
            false,
            "contact.email",
            "invalid_email",
        );
        refused(
            |v| v["contact"]["email"] = json!(""),
            false,
            "contact.email",
            "empty",
        );
    }

    #[test]
    fn date_rules() {
        refused(
            |v| v["invoice_date"] = json!("01-10-2025"),
            false,
            "invoice_date",
            "invalid_date",
        );
        refused(
            |v| v["invoice_date"] = json!("2025-02-29"),
            false,
            "invoice_date",
            "invalid_date",
        );
        refused(
            |v| v["period"]["from"] = json!("2025-9-1"),
            false,
            "period.from",
            "invalid_date",
        );
        refused(
            |v| v["period"]["until"] = json!("2025-09-31"),
            false,
            "period.until",
            "invalid_date",
        );
        refused(
            |v| v["period"] = json!({"from": "2025-10-01", "until": "2025-09-30"}),
            false,
            "period",
            "period_out_of_order",
        );
        // A one-day period is ordered.
        let mut v = design_body();
        v["period"] = json!({"from": "2025-09-30", "until": "2025-09-30"});
        assert!(parse(&v).is_ok());
    }

    #[test]
    fn amount_rules() {
        refused(
            |v| v["lines"][0]["amount"] = json!(8000.0),
            false,
            "lines[0].amount",
            "wrong_type",
        );
        refused(
            |v| v["lines"][0]["amount"] = json!(8000),
            false,
            "lines[0].amount",
            "wrong_type",
        );
        refused(
            |v| v["lines"][0]["amount"] = json!("8.000,00"),
            false,
            "lines[0].amount",
            "invalid_amount",
        );
        refused(
            |v| v["lines"][0]["amount"] = json!("0.001"),
            false,
            "lines[0].amount",
            "too_many_decimals",
        );
        refused(
            |v| v["lines"][0]["amount"] = json!("1000000000000"),
            false,
            "lines[0].amount",
            "amount_out_of_range",
        );
        let mut v = design_body();
        v["lines"][0]["amount"] = json!(8000);
        let msg = parse(&v).unwrap_err().to_string();
        assert!(msg.contains("not a JSON number"), "{msg}");
    }

    #[test]
    fn line_number_rules() {
        refused(
            |v| v["lines"][0]["number"] = json!(0),
            false,
            "lines[0].number",
            "invalid_number",
        );
        refused(
            |v| v["lines"][0]["number"] = json!(-1),
            false,
            "lines[0].number",
            "invalid_number",
        );
        refused(
            |v| v["lines"][0]["number"] = json!(1.5),
            false,
            "lines[0].number",
            "invalid_number",
        );
        refused(
            |v| {
                let l = v["lines"][0].clone();
                let mut other = l.clone();
                other["number"] = json!(2);
                v["lines"] = json!([l, other, l]);
            },
            false,
            "lines[2].number",
            "duplicate_line_number",
        );
    }

    #[test]
    fn line_count_rules_are_business_rules() {
        refused(|v| v["lines"] = json!([]), true, "lines", "no_lines");
        refused(
            |v| {
                let l = v["lines"][0].clone();
                let lines: Vec<Value> = (1..=501)
                    .map(|n| {
                        let mut l = l.clone();
                        l["number"] = json!(n);
                        l
                    })
                    .collect();
                v["lines"] = Value::Array(lines);
            },
            false,
            "lines",
            "too_many_lines",
        );
    }

    #[test]
    fn malformed_is_reported_before_rules() {
        let mut v = design_body();
        v["lines"] = json!([]);
        v["contact"]["email"] = json!("nope");
        let e = parse(&v).unwrap_err();
        assert_eq!((e.is_rule(), e.field()), (false, "contact.email"));
    }

    fn with_amounts(credit: bool, amounts: &[&str]) -> Value {
        let mut v = design_body();
        v["credit"] = json!(credit);
        let lines: Vec<Value> = amounts
            .iter()
            .enumerate()
            .map(|(i, a)| json!({"number": i + 1, "name": "Work", "amount": a}))
            .collect();
        v["lines"] = Value::Array(lines);
        v
    }

    #[test]
    fn credit_sign_rules() {
        let e = parse(&with_amounts(true, &["-100.00", "100.01"])).unwrap_err();
        assert_eq!(
            (e.is_rule(), e.field(), e.code()),
            (true, "credit", "credit_note_positive_total")
        );
        let e = parse(&with_amounts(false, &["100.00", "-100.01"])).unwrap_err();
        assert_eq!(
            (e.is_rule(), e.field(), e.code()),
            (true, "credit", "invoice_negative_total")
        );
        // Mixed signs are fine when the total has the right sign; zero totals are allowed.
        assert!(parse(&with_amounts(true, &["-100.00", "20.00"])).is_ok());
        assert!(parse(&with_amounts(false, &["100.00", "-20.00"])).is_ok());
        assert!(parse(&with_amounts(true, &["0.00"])).is_ok());
        assert!(parse(&with_amounts(false, &["10.00", "-10.00"])).is_ok());
        let inv = parse(&with_amounts(true, &["-100.00", "20.00"])).unwrap();
        assert_eq!(inv.total().to_string(), "-80.00");
    }

    #[test]
    fn canonical_bytes_ignore_the_writing_but_not_the_invoice() {
        let base = design_body();
        let canon = |v: &Value| parse(v).unwrap().canonical_bytes();
        let expected = canon(&base);
        // Re-serialised: keys in another order, whitespace, amounts written otherwise, unknown fields.
        let text = serde_json::to_string_pretty(&base).unwrap();
        let mut reordered: serde_json::Map<String, Value> = serde_json::Map::new();
        for (k, v) in base.as_object().unwrap().iter().rev() {
            reordered.insert(k.clone(), v.clone());
        }
        let mut same = Value::Object(reordered);
        same["lines"][0]["amount"] = json!("8000.0");
        same["lines"][0]["future_field"] = json!(1);
        same["name"] = json!(format!("  {}  ", base["name"].as_str().unwrap()));
        assert_eq!(canon(&serde_json::from_str(&text).unwrap()), expected);
        assert_eq!(canon(&same), expected);
        assert!(expected.starts_with(b"psa-invoice/v1\n"));
        // Anything that reaches Exact counts.
        for edit in [
            (|v: &mut Value| v["lines"][0]["amount"] = json!("8000.01")) as fn(&mut Value),
            |v| v["reference"] = json!("other"),
            |v| v["contact"]["email"] = json!("other@example.com"),
            |v| v["invoice_date"] = json!("2025-10-02"),
        ] {
            let mut v = base.clone();
            edit(&mut v);
            assert_ne!(canon(&v), expected, "{v}");
        }
    }

    // ---- attachments ------------------------------------------------------------------------

    const PDF: &str = "JVBERi0xLjQKJSVFT0YK"; // "%PDF-1.4\n%%EOF\n"

    fn with_files(files: Value) -> Value {
        let mut v = design_body();
        v["attachments"] = files;
        v
    }

    fn file(name: &str, b64: &str) -> Value {
        json!({"file_name": name, "content_type": "application/pdf", "content_base64": b64})
    }

    #[test]
    fn attachments_parse_with_sanitised_names_and_decoded_content() {
        let inv = parse(&with_files(json!([
            file("../spec.pdf", PDF),
            {"file_name": "hours", "content_base64": "JVBERi0xLjQKJSVFT0YK\r\n"}
        ])))
        .unwrap();
        let names: Vec<_> = inv
            .attachments
            .iter()
            .map(|a| a.file_name.as_str())
            .collect();
        assert_eq!(names, ["spec.pdf", "hours.pdf"]);
        // A name taken by an earlier file gets a number.
        let inv = parse(&with_files(json!([
            file("a.pdf", PDF),
            file("dir/A.PDF", PDF),
            file("a", PDF)
        ])))
        .unwrap();
        let names: Vec<_> = inv
            .attachments
            .iter()
            .map(|a| a.file_name.as_str())
            .collect();
        assert_eq!(names, ["a.pdf", "A (2).pdf", "a (3).pdf"]);
        assert_eq!(inv.attachments[0].content, b"%PDF-1.4\n%%EOF\n");
        // None, null and [] are the same invoice as one without the field.
        for none in [json!(null), json!([])] {
            assert!(parse(&with_files(none)).unwrap().attachments.is_empty());
        }
    }

    #[test]
    fn attachment_refusals_name_the_field() {
        let refuse = |files: Value| parse(&with_files(files)).unwrap_err();
        let e = refuse(json!([file("a.pdf", "aGVsbG8=")]));
        assert_eq!(
            (e.field(), e.code()),
            ("attachments[0].content_base64", "not_pdf")
        );
        let e = refuse(json!([file("a.pdf", "%%%not base64")]));
        assert_eq!(
            (e.field(), e.code()),
            ("attachments[0].content_base64", "invalid_base64")
        );
        let e = refuse(
            json!([{"file_name": "a.pdf", "content_type": "image/png", "content_base64": PDF}]),
        );
        assert_eq!(
            (e.field(), e.code()),
            ("attachments[0].content_type", "unsupported_content_type")
        );
        let e = refuse(json!([file("///", PDF)]));
        assert_eq!(
            (e.field(), e.code()),
            ("attachments[0].file_name", "invalid_file_name")
        );
        let six: Vec<Value> = (0..6).map(|i| file(&format!("{i}.pdf"), PDF)).collect();
        let e = refuse(Value::Array(six));
        assert_eq!(
            (e.field(), e.code(), e.is_rule()),
            ("attachments", "too_many_attachments", false)
        );
        assert!(matches!(e, InvalidInvoice::Malformed(_)));
        // 5 MB of PDF: 413, before anything is decoded.
        let mut big = b"%PDF-1.4\n".to_vec();
        big.resize(5_000_000, b' ');
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&big);
        let e = refuse(json!([file("big.pdf", &b64)]));
        assert!(matches!(e, InvalidInvoice::TooLarge(_)), "{e:?}");
        assert_eq!(
            (e.field(), e.code()),
            ("attachments", "attachments_too_large")
        );
        // Two files of 2.1 MB each: over the total.
        big.truncate(2_100_000);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&big);
        let e = refuse(json!([file("a.pdf", &b64), file("b.pdf", &b64)]));
        assert!(matches!(e, InvalidInvoice::TooLarge(_)), "{e:?}");
    }

    #[test]
    fn canonical_bytes_cover_the_attachments() {
        let without = parse(&design_body()).unwrap().canonical_bytes();
        let with = parse(&with_files(json!([file("a.pdf", PDF)])))
            .unwrap()
            .canonical_bytes();
        assert_ne!(with, without);
        // Another name, another content: another invoice. Padding and line breaks: the same one.
        let other_name = parse(&with_files(json!([file("b.pdf", PDF)])))
            .unwrap()
            .canonical_bytes();
        assert_ne!(other_name, with);
        let other_content = parse(&with_files(json!([file("a.pdf", "JVBERi0xLjUKJSVFT0YK")])))
            .unwrap()
            .canonical_bytes();
        assert_ne!(other_content, with);
        let rewritten = parse(&with_files(json!([file(
            "a.pdf",
            "JVBERi0x\nLjQKJSVFT0YK"
        )])))
        .unwrap()
        .canonical_bytes();
        assert_eq!(rewritten, with);
        // The canonical form without attachments is the one stored before they existed.
        assert!(!String::from_utf8_lossy(&without).contains("attachments"));
    }
}
