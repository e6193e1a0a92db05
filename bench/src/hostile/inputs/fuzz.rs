//! The seeded fuzz of the push and test bodies: the same inputs on every run.

use std::fmt::Write as _;

use super::*;
use crate::hostile::set_path;
use crate::rng::Rng;

/// Seeded fuzz: a random field of a valid invoice or settings body replaced by random text or values. Such input
/// may be valid, so either answer is right — as long as a refusal is clear and nothing answers 5xx.
pub(super) fn cases(ids: &mut Ids) -> Vec<Case> {
    let mut rng = Rng::new(0x5EED_0009);
    let mut out = Vec::new();
    let invoice_fields: Vec<&str> = push::INVOICE_STRINGS
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
        let (group, route, field, mut body) = if i % 4 == 3 {
            let field = *rng.pick(&settings_fields);
            (Group::Test, test_path(), field, base_settings())
        } else {
            let field = *rng.pick(&invoice_fields);
            let mut body = base_invoice(ids.next());
            body["company"]["id"] = json!(format!("cmp_fuzz_{i}"));
            (Group::Push, push_path(), field, body)
        };
        let what = format!("fuzz #{i}: {field} = {}", short(&value));
        set_path(&mut body, field, Some(value));
        out.push(json_case(group, what, &route, &body, Expect::Either));
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
