//! The settings chosen on the test-connection screen (body of `POST …/exact/test`).
//!
//! | field | rule |
//! |---|---|
//! | `item_code` | required, 1..=60 (the default Exact item code) |
//! | `journal_code` | required, 1..=20 (a sales journal code such as `70`) |
//! | `tax_code` | optional, ≤ 3 (Exact VAT codes are at most 3 characters); absent/blank = `"2"` |
//! | `tax_categories` | optional array of at most 100 `{category, exact_vat_code}`; category 1..=60 and unique; code 1..=3 |
//! | `send_invoice_to_customer` | optional boolean, default `false` |
//! | `delivery` | optional `"psa"` or `"exact"`, default `"psa"` (the PSA sends its own document, the invoice is processed in Exact right away) |
//!
//! Codes are trimmed (Exact pads codes; comparisons with Exact's values are trimmed too).
//! Category matching is exact after trimming (case-sensitive): the PSA owns these names.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::error::FieldError;
use crate::invoice::InvoiceLine;
use crate::json::{Obj, index_path, parse_body, type_error};

/// Exact's standard "high rate" sales VAT code in Dutch divisions; the default when `tax_code` is left out.
pub const DEFAULT_TAX_CODE: &str = "2";
pub const MAX_ITEM_CODE_LEN: usize = 60;
pub const MAX_JOURNAL_CODE_LEN: usize = 20;
/// `vat/VATCodes.Code` is at most 3 characters (`docs/exact-online.md` §5.7).
pub const MAX_VAT_CODE_LEN: usize = 3;
pub const MAX_TAX_CATEGORY_LEN: usize = 60;
/// A PSA has a handful of tax categories; 100 mappings is far beyond that and keeps the saved settings small.
pub const MAX_TAX_CATEGORIES: usize = 100;

/// How an invoice reaches the customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Delivery {
    /// The PSA sends its own document; the invoice is processed in Exact right away.
    #[default]
    Psa,
    /// The invoice is left open in Exact, to be sent there with Exact's template.
    Exact,
}

impl Delivery {
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Psa => "psa",
            Delivery::Exact => "exact",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaxCategoryMapping {
    pub category: String,
    pub exact_vat_code: String,
}

/// Validated connection settings. Serializes to the same shape it is parsed from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Settings {
    pub item_code: String,
    pub journal_code: String,
    /// The default VAT code, `"2"` when none was given.
    pub tax_code: String,
    pub tax_categories: Vec<TaxCategoryMapping>,
    pub send_invoice_to_customer: bool,
    pub delivery: Delivery,
}

impl Settings {
    /// Parse the body of `POST /connections/{id}/exact/test`. Every refusal names its field
    /// (`tax_categories[1].exact_vat_code`) and is a malformed body (400).
    pub fn parse_json(body: &[u8]) -> Result<Settings, FieldError> {
        Self::from_value(&parse_body(body)?)
    }

    pub fn from_value(value: &Value) -> Result<Settings, FieldError> {
        let root = Obj::root(value)?;
        let item_code = root.text("item_code", MAX_ITEM_CODE_LEN)?;
        let journal_code = root.text("journal_code", MAX_JOURNAL_CODE_LEN)?;
        let tax_code = root
            .opt_text("tax_code", MAX_VAT_CODE_LEN)?
            .unwrap_or_else(|| DEFAULT_TAX_CODE.to_owned());

        let list_path = root.path("tax_categories");
        let mut tax_categories: Vec<TaxCategoryMapping> = Vec::new();
        let raw_categories = root.opt_array("tax_categories")?;
        if raw_categories.len() > MAX_TAX_CATEGORIES {
            return Err(FieldError::new(
                &list_path,
                "too_many_tax_categories",
                format!(
                    "{list_path} may contain at most {MAX_TAX_CATEGORIES} mappings, got {}",
                    raw_categories.len()
                ),
            ));
        }
        for (i, item) in raw_categories.iter().enumerate() {
            let entry = Obj::new(item, &index_path(&list_path, i))?;
            let category = entry.text("category", MAX_TAX_CATEGORY_LEN)?;
            if let Some(first) = tax_categories.iter().position(|m| m.category == category) {
                let field = entry.path("category");
                return Err(FieldError::new(
                    &field,
                    "duplicate_tax_category",
                    format!(
                        "{field} repeats tax_categories[{first}].category; map each category once"
                    ),
                ));
            }
            let exact_vat_code = entry.text("exact_vat_code", MAX_VAT_CODE_LEN)?;
            tax_categories.push(TaxCategoryMapping {
                category,
                exact_vat_code,
            });
        }

        let send_invoice_to_customer = root.bool_or("send_invoice_to_customer", false)?;
        let delivery_field = root.path("delivery");
        let delivery = match value.get("delivery") {
            None | Some(Value::Null) => Delivery::default(),
            Some(Value::String(s)) => match s.trim() {
                "psa" => Delivery::Psa,
                "exact" => Delivery::Exact,
                _ => {
                    return Err(FieldError::new(
                        &delivery_field,
                        "invalid_delivery",
                        format!("{delivery_field} must be \"psa\" or \"exact\""),
                    ));
                }
            },
            Some(other) => return Err(type_error(&delivery_field, "\"psa\" or \"exact\"", other)),
        };

        Ok(Settings {
            item_code,
            journal_code,
            tax_code,
            tax_categories,
            send_invoice_to_customer,
            delivery,
        })
    }

    /// The Exact VAT code for a line's tax category: the mapped code, else the default code.
    pub fn vat_code_for(&self, tax_category: Option<&str>) -> &str {
        tax_category
            .map(str::trim)
            .and_then(|c| self.tax_categories.iter().find(|m| m.category == c))
            .map_or(self.tax_code.as_str(), |m| m.exact_vat_code.as_str())
    }

    /// The Exact item code for a line: its own code, else the default item.
    pub fn item_code_for<'a>(&'a self, line: &'a InvoiceLine) -> &'a str {
        line.item_code.as_deref().unwrap_or(&self.item_code)
    }
}

impl<'de> Deserialize<'de> for Settings {
    /// Same validation as [`Settings::parse_json`] (stored settings read back through it).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        Settings::from_value(&value).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::amount::Amount;
    use serde_json::json;

    pub(crate) fn settings_body() -> Value {
        json!({
            "item_code": "CONSULT",
            "journal_code": "70",
            "tax_code": "",
            "tax_categories": [
                {"category": "high", "exact_vat_code": "2"},
                {"category": "low", "exact_vat_code": "1"},
                {"category": "reverse-charge", "exact_vat_code": "RC"}
            ],
            "send_invoice_to_customer": true,
            "delivery": "exact"
        })
    }

    fn parse(v: &Value) -> Result<Settings, FieldError> {
        Settings::parse_json(&serde_json::to_vec(v).unwrap())
    }

    #[track_caller]
    fn refused(edit: impl FnOnce(&mut Value), field: &str, code: &str) {
        let mut v = settings_body();
        edit(&mut v);
        let e = parse(&v).expect_err("should be refused");
        assert_eq!((e.field.as_str(), e.code), (field, code), "{e:?}");
        assert!(e.message.contains(field), "{e}");
    }

    fn line(item_code: Option<&str>) -> InvoiceLine {
        InvoiceLine {
            number: 1,
            name: "Work".into(),
            description: None,
            amount: Amount::ZERO,
            item_code: item_code.map(Into::into),
            tax_category: None,
        }
    }

    #[test]
    fn parses_the_full_body() {
        let s = parse(&settings_body()).unwrap();
        assert_eq!(s.item_code, "CONSULT");
        assert_eq!(s.journal_code, "70");
        assert_eq!(s.tax_code, "2", "empty tax_code means 2");
        assert_eq!(s.tax_categories.len(), 3);
        assert_eq!(
            s.tax_categories[2],
            TaxCategoryMapping {
                category: "reverse-charge".into(),
                exact_vat_code: "RC".into()
            }
        );
        assert!(s.send_invoice_to_customer);
        assert_eq!(s.delivery, Delivery::Exact);
    }

    #[test]
    fn minimal_body_takes_the_documented_defaults() {
        let s = parse(&json!({"item_code": " CONSULT ", "journal_code": "70"})).unwrap();
        assert_eq!(s.item_code, "CONSULT");
        assert_eq!(s.tax_code, DEFAULT_TAX_CODE);
        assert!(s.tax_categories.is_empty());
        assert!(!s.send_invoice_to_customer);
        assert_eq!(s.delivery, Delivery::Psa);
        let s = parse(
            &json!({"item_code": "A", "journal_code": "70", "tax_code": " 4 ",
            "tax_categories": null, "delivery": null}),
        )
        .unwrap();
        assert_eq!(s.tax_code, "4");
    }

    #[test]
    fn refusals_name_the_field() {
        refused(
            |v| {
                v.as_object_mut().unwrap().remove("item_code");
            },
            "item_code",
            "missing_field",
        );
        refused(|v| v["item_code"] = json!("  "), "item_code", "empty");
        refused(|v| v["journal_code"] = json!(""), "journal_code", "empty");
        refused(
            |v| v["journal_code"] = json!(70),
            "journal_code",
            "wrong_type",
        );
        refused(
            |v| v["journal_code"] = json!("x".repeat(21)),
            "journal_code",
            "too_long",
        );
        refused(|v| v["tax_code"] = json!("1234"), "tax_code", "too_long");
        refused(
            |v| v["tax_categories"] = json!({}),
            "tax_categories",
            "wrong_type",
        );
        refused(
            |v| v["tax_categories"][1] = json!("low"),
            "tax_categories[1]",
            "wrong_type",
        );
        refused(
            |v| v["tax_categories"][1]["category"] = json!(""),
            "tax_categories[1].category",
            "empty",
        );
        refused(
            |v| v["tax_categories"][2]["category"] = json!(" high "),
            "tax_categories[2].category",
            "duplicate_tax_category",
        );
        refused(
            |v| v["tax_categories"][0]["exact_vat_code"] = json!(""),
            "tax_categories[0].exact_vat_code",
            "empty",
        );
        refused(
            |v| v["tax_categories"][0]["exact_vat_code"] = json!("1234"),
            "tax_categories[0].exact_vat_code",
            "too_long",
        );
        refused(
            |v| {
                v["tax_categories"] = (0..=MAX_TAX_CATEGORIES)
                    .map(|i| json!({"category": format!("c{i}"), "exact_vat_code": "2"}))
                    .collect();
            },
            "tax_categories",
            "too_many_tax_categories",
        );
        refused(
            |v| v["tax_categories"][0]["exact_vat_code"] = json!("1234"),
            "tax_categories[0].exact_vat_code",
            "too_long",
        );
        refused(
            |v| v["send_invoice_to_customer"] = json!("yes"),
            "send_invoice_to_customer",
            "wrong_type",
        );
        refused(
            |v| v["delivery"] = json!("email"),
            "delivery",
            "invalid_delivery",
        );
        refused(|v| v["delivery"] = json!(1), "delivery", "wrong_type");
        let e = Settings::parse_json(b"{").unwrap_err();
        assert_eq!((e.field.as_str(), e.code), ("body", "invalid_json"));
    }

    #[test]
    fn vat_code_for_maps_categories_else_the_default() {
        let s = parse(&settings_body()).unwrap();
        assert_eq!(s.vat_code_for(Some("low")), "1");
        assert_eq!(s.vat_code_for(Some(" reverse-charge ")), "RC");
        assert_eq!(s.vat_code_for(Some("unknown")), "2");
        assert_eq!(
            s.vat_code_for(Some("LOW")),
            "2",
            "categories match case-sensitively"
        );
        assert_eq!(s.vat_code_for(None), "2");
        let mut v = settings_body();
        v["tax_code"] = json!("5");
        let s = parse(&v).unwrap();
        assert_eq!(s.vat_code_for(None), "5");
        assert_eq!(s.vat_code_for(Some("high")), "2");
    }

    #[test]
    fn item_code_for_prefers_the_line() {
        let s = parse(&settings_body()).unwrap();
        assert_eq!(s.item_code_for(&line(Some("TRAVEL"))), "TRAVEL");
        assert_eq!(s.item_code_for(&line(None)), "CONSULT");
    }

    #[test]
    fn serde_round_trips_and_validates() {
        let s = parse(&settings_body()).unwrap();
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["delivery"], json!("exact"));
        assert_eq!(v["tax_code"], json!("2"));
        assert_eq!(serde_json::from_value::<Settings>(v).unwrap(), s);
        assert!(serde_json::from_value::<Settings>(json!({"item_code": ""})).is_err());
        assert_eq!(Delivery::Psa.as_str(), "psa");
        assert_eq!(serde_json::to_value(Delivery::Psa).unwrap(), json!("psa"));
    }
}
