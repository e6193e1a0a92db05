//! Property tests: formats, validation robustness, valid inputs, the credit sign rule and the
//! amount's journey from PSA string to Exact number.

use std::str::FromStr;

use chrono::{Days, NaiveDate};
use mapping::{
    Amount, Decimal, ExactGuid, Invoice, InvoiceLine, InvoiceRefs, Project, Settings,
    line_description, payment_reference, sales_invoice_payload,
};
use proptest::prelude::*;
use serde_json::{Value, json};

const DESIGN_BODY: &[u8] = include_bytes!("fixtures/design-invoice.json");
const SETTINGS_BODY: &[u8] = include_bytes!("fixtures/design-settings.json");

fn design() -> Value {
    serde_json::from_slice(DESIGN_BODY).expect("fixture is JSON")
}

fn settings() -> Settings {
    Settings::parse_json(SETTINGS_BODY).expect("fixture settings are valid")
}

/// Printable text (no control or other `C` characters) with at least one non-blank character,
/// possibly wrapped in spaces.
fn text(max: usize) -> impl Strategy<Value = String> {
    let core = proptest::string::string_regex(&format!("\\PC{{1,{max}}}")).expect("valid regex");
    (core, " {0,2}", " {0,2}")
        .prop_filter("not blank", |(core, _, _)| !core.trim().is_empty())
        .prop_map(|(core, pre, post)| format!("{pre}{core}{post}"))
}

fn date() -> impl Strategy<Value = NaiveDate> {
    (0u64..40_000).prop_map(|d| {
        NaiveDate::from_ymd_opt(1950, 1, 1)
            .and_then(|base| base.checked_add_days(Days::new(d)))
            .expect("in range")
    })
}

fn cents_to_string(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

fn guids(n: usize) -> Vec<ExactGuid> {
    (0..n).map(|_| ExactGuid::new_random()).collect()
}

/// Any JSON, biased towards the invoice's own keys so the validator is exercised in depth.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::String),
        "-?[0-9]{0,16}(\\.[0-9]{0,4})?".prop_map(Value::String),
        "[0-9]{4}-[0-9]{2}-[0-9]{2}".prop_map(Value::String),
    ];
    let key = prop_oneof![
        prop::sample::select(vec![
            "id",
            "reference",
            "name",
            "credit",
            "invoice_date",
            "period",
            "from",
            "until",
            "project",
            "number",
            "company",
            "address",
            "city",
            "contact",
            "first_name",
            "last_name",
            "email",
            "lines",
            "description",
            "amount",
            "item_code",
            "tax_category",
            "item_code",
            "journal_code",
            "tax_code",
            "tax_categories",
            "category",
            "exact_vat_code",
            "send_invoice_to_customer",
            "delivery",
        ])
        .prop_map(str::to_owned),
        "[a-z_]{1,8}",
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// (JSON pointer into the sample body, the field name an error there must carry).
const FIELDS: &[(&str, &str)] = &[
    ("/id", "id"),
    ("/reference", "reference"),
    ("/name", "name"),
    ("/credit", "credit"),
    ("/invoice_date", "invoice_date"),
    ("/period", "period"),
    ("/period/from", "period.from"),
    ("/period/until", "period.until"),
    ("/project", "project"),
    ("/project/number", "project.number"),
    ("/project/name", "project.name"),
    ("/company", "company"),
    ("/company/id", "company.id"),
    ("/company/name", "company.name"),
    ("/company/address", "company.address"),
    ("/company/city", "company.city"),
    ("/contact", "contact"),
    ("/contact/first_name", "contact.first_name"),
    ("/contact/last_name", "contact.last_name"),
    ("/contact/email", "contact.email"),
    ("/lines", "lines"),
    ("/lines/0", "lines[0]"),
    ("/lines/0/number", "lines[0].number"),
    ("/lines/0/name", "lines[0].name"),
    ("/lines/0/description", "lines[0].description"),
    ("/lines/0/amount", "lines[0].amount"),
    ("/lines/0/item_code", "lines[0].item_code"),
    ("/lines/0/tax_category", "lines[0].tax_category"),
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn formats_join_with_space_dash_space(number in ".{0,30}", name in ".{0,30}", n in any::<u32>()) {
        let reference = payment_reference(&Project { number: number.clone(), name: name.clone() });
        prop_assert!(reference.starts_with(&number));
        prop_assert!(reference.ends_with(&name));
        prop_assert_eq!(&reference[number.len()..reference.len() - name.len()], " - ");

        let line = InvoiceLine {
            number: n,
            name: name.clone(),
            description: None,
            amount: Amount::ZERO,
            item_code: None,
            tax_category: None,
        };
        prop_assert_eq!(line_description(&line), format!("{n} - {name}"));
    }

    #[test]
    fn parsed_text_reaches_exact_trimmed_in_the_formats(
        number in text(40),
        name in text(40),
        line_number in 1u32..100_000,
        line_name in text(40),
    ) {
        let mut v = design();
        v["project"] = json!({"number": number, "name": name});
        v["lines"][0]["number"] = json!(line_number);
        v["lines"][0]["name"] = json!(line_name);
        let inv = Invoice::from_value(&v).expect("valid");
        let items = guids(1);
        let refs = InvoiceRefs {
            account: items[0], contact: items[0], journal_code: "70", line_items: &items,
        };
        let payload = sales_invoice_payload(&inv, &settings(), &refs);
        prop_assert_eq!(payload.payment_reference, format!("{} - {}", number.trim(), name.trim()));
        let description = &payload.sales_invoice_lines[0].description;
        prop_assert_eq!(description, &format!("{line_number} - {}", line_name.trim()));
        prop_assert!(description.chars().count() <= mapping::MAX_LINE_DESCRIPTION_LEN);
    }

    #[test]
    fn line_names_are_refused_exactly_when_the_description_would_not_fit(
        line_number in 1u32..=u32::MAX,
        len in 1usize..70,
    ) {
        let mut v = design();
        v["lines"][0]["number"] = json!(line_number);
        v["lines"][0]["name"] = json!("n".repeat(len));
        let fits = format!("{line_number} - ").len() + len <= mapping::MAX_LINE_DESCRIPTION_LEN;
        match Invoice::from_value(&v) {
            Ok(_) => prop_assert!(fits),
            Err(e) => {
                prop_assert!(!fits);
                prop_assert_eq!((e.is_rule(), e.field(), e.code()), (false, "lines[0].name", "too_long"));
            }
        }
    }

    #[test]
    fn validation_never_panics_on_arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = Invoice::parse_json(&body);
        let _ = Settings::parse_json(&body);
    }

    #[test]
    fn validation_never_panics_on_arbitrary_json(v in any_json()) {
        let _ = Invoice::from_value(&v);
        let _ = Settings::from_value(&v);
        let _ = Invoice::parse_json(&serde_json::to_vec(&v).expect("serializable"));
    }

    #[test]
    fn a_bad_value_is_reported_at_its_own_field(
        (pointer, field) in prop::sample::select(FIELDS),
        replacement in any_json(),
    ) {
        let mut v = design();
        *v.pointer_mut(pointer).expect("pointer exists") = replacement;
        match Invoice::from_value(&v) {
            Ok(_) => {}
            // A business rule may follow from an otherwise valid value (credit: true, lines: []).
            Err(e) if e.is_rule() => {}
            Err(e) => {
                // The field itself, something inside it, or its parent (period ordering).
                let named = e.field();
                prop_assert!(
                    named.starts_with(field) || field.starts_with(named),
                    "changed {} but the error names {}: {}", field, named, e
                );
                prop_assert!(e.to_string().contains(named), "message must name the field: {}", e);
            }
        }
    }

    #[test]
    fn generated_valid_invoices_parse_and_round_trip(
        id in "[A-Za-z0-9_.:-]{1,128}",
        reference in text(60),
        name in text(200),
        credit in any::<bool>(),
        invoice_date in date(),
        period in proptest::option::of((date(), date())),
        company_name in text(100),
        address in proptest::option::of(text(100)),
        first_name in proptest::option::of(text(50)),
        email in "[a-z0-9._%+-]{1,20}@[a-z0-9]{1,10}\\.[a-z]{2,6}",
        numbers in prop::collection::btree_set(1u32..100_000, 1..20),
        cents in prop::collection::vec(0i64..10_000_000_000, 20),
        line_name in text(40),
    ) {
        let sign = if credit { -1 } else { 1 };
        let lines: Vec<Value> = numbers.iter().zip(&cents).map(|(n, c)| json!({
            "number": n, "name": line_name, "amount": cents_to_string(sign * c),
            "item_code": null, "tax_category": "low",
        })).collect();
        let period = period.map(|(a, b)| (a.min(b), a.max(b)));
        let v = json!({
            "id": id, "reference": reference, "name": name, "credit": credit,
            "invoice_date": invoice_date.to_string(),
            "period": period.map(|(from, until)| json!({"from": from.to_string(), "until": until.to_string()})),
            "project": {"number": "P-1", "name": "Project"},
            "company": {"id": "c1", "name": company_name, "address": address},
            "contact": {"first_name": first_name, "email": email},
            "lines": lines,
        });
        let inv = Invoice::from_value(&v).expect("generated invoice is valid");
        prop_assert_eq!(&inv.id, &id);
        prop_assert_eq!(&inv.reference, reference.trim());
        prop_assert_eq!(&inv.name, name.trim());
        prop_assert_eq!(inv.credit, credit);
        prop_assert_eq!(inv.invoice_date, invoice_date);
        prop_assert_eq!(inv.period.map(|p| (p.from, p.until)), period);
        prop_assert_eq!(&inv.company.name, company_name.trim());
        prop_assert_eq!(inv.company.address.as_deref(), address.as_deref().map(str::trim));
        prop_assert_eq!(inv.contact.first_name.as_deref(), first_name.as_deref().map(str::trim));
        prop_assert_eq!(inv.contact.email.as_str(), email.as_str());
        prop_assert_eq!(inv.lines.len(), numbers.len());
        let want_total: i64 = cents.iter().take(numbers.len()).map(|c| sign * c).sum();
        prop_assert_eq!(inv.total(), Decimal::new(want_total, 2));

        // What we store reads back as the same invoice.
        let stored = serde_json::to_vec(&inv).expect("serializable");
        prop_assert_eq!(Invoice::parse_json(&stored).expect("stored invoice re-parses"), inv);
    }

    #[test]
    fn credit_sign_rule_holds_for_any_line_set(
        credit in any::<bool>(),
        cents in prop::collection::vec(-1_000_000i64..1_000_000, 1..12),
    ) {
        let mut v = design();
        v["credit"] = json!(credit);
        v["lines"] = Value::Array(cents.iter().enumerate().map(|(i, c)| json!({
            "number": i + 1, "name": "Work", "amount": cents_to_string(*c),
        })).collect());
        let total: i64 = cents.iter().sum();
        let allowed = if credit { total <= 0 } else { total >= 0 };
        match Invoice::from_value(&v) {
            Ok(inv) => {
                prop_assert!(allowed);
                prop_assert_eq!(inv.total(), Decimal::new(total, 2));
            }
            Err(e) => {
                prop_assert!(!allowed, "refused an allowed invoice: {}", e);
                prop_assert!(e.is_rule());
                prop_assert_eq!(e.field(), "credit");
            }
        }
    }

    #[test]
    fn amount_round_trips_from_psa_string_to_exact_number(
        cents in -99_999_999_999_999i64..=99_999_999_999_999,
        leading_zeros in 0usize..3,
        trailing_zeros in 0usize..3,
    ) {
        // A PSA string, in any of the accepted spellings.
        let canonical = cents_to_string(cents);
        let (sign, digits) = canonical.strip_prefix('-').map_or(("", canonical.as_str()), |d| ("-", d));
        let spelled = format!("{sign}{}{digits}{}", "0".repeat(leading_zeros), "0".repeat(trailing_zeros));
        let amount = Amount::parse(&spelled).expect("valid amount");
        prop_assert_eq!(amount.as_decimal(), Decimal::new(cents, 2));
        prop_assert_eq!(amount.to_string(), canonical);

        // Through the Exact payload: a JSON number that reads back as the same two-decimal value.
        let mut v = design();
        v["credit"] = json!(cents < 0);
        v["lines"][0]["amount"] = json!(spelled);
        let inv = Invoice::from_value(&v).expect("valid");
        let items = guids(1);
        let refs = InvoiceRefs { account: items[0], contact: items[0], journal_code: "70", line_items: &items };
        let payload = serde_json::to_value(sales_invoice_payload(&inv, &settings(), &refs)).expect("json");
        let net = &payload["SalesInvoiceLines"][0]["NetPrice"];
        prop_assert!(net.is_number(), "NetPrice must be a JSON number: {}", net);
        let text = serde_json::to_string(net).expect("json");
        let back = Decimal::from_str(&text).or_else(|_| Decimal::from_scientific(&text)).expect("decimal");
        prop_assert_eq!(back.round_dp(2), Decimal::new(cents, 2), "sent {}", text);
    }
}
