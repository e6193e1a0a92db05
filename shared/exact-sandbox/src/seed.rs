//! The default world (documented in the crate docs; other crates depend on these values).

use uuid::Uuid;

use crate::world::{App, Division, Numbering, User, World};

/// The sandbox app's client id.
pub const CLIENT_ID: &str = "3f1c2b7e-8d4a-4c61-9b2e-5a7d0e9c1f42";
/// The sandbox app's client secret.
pub const CLIENT_SECRET: &str = "sandbox-client-secret";
/// The sandbox app's webhook secret.
pub const WEBHOOK_SECRET: &str = "sandbox-webhook-secret";

/// 2020-12-31T00:00:00Z: the end date of `OLDITEM`.
const PAST_END_DATE_MS: i64 = 1_609_372_800_000;

pub(crate) fn default_app() -> App {
    App {
        client_id: CLIENT_ID.into(),
        client_secret: CLIENT_SECRET.into(),
        webhook_secret: WEBHOOK_SECRET.into(),
    }
}

/// Items, journals, VAT codes and payment conditions every seeded division has.
pub fn seed_division_codes(d: &mut Division, now_ms: i64) {
    d.add_item("CONSULT", "Consultancy", true, now_ms);
    d.add_item("TRAVEL", "Travel expenses", true, now_ms);
    d.add_item("LICENSE", "Software license (purchase)", false, now_ms);
    d.add_item("OLDITEM", "Discontinued service", true, now_ms)
        .end_date_ms = Some(PAST_END_DATE_MS);

    d.add_journal("70", "Verkoopboek", 20, Numbering::AtProcessing, false);
    d.add_journal(
        "72",
        "Verkoopboek (nummering bij invoer)",
        20,
        Numbering::AtEntry,
        false,
    );
    d.add_journal(
        "71",
        "Verkoopboek (geblokkeerd)",
        20,
        Numbering::AtProcessing,
        true,
    );
    d.add_journal("60", "Inkoopboek", 22, Numbering::AtProcessing, false);
    d.add_journal("20", "Bank", 12, Numbering::AtProcessing, false);

    d.add_vat_code("2", "BTW hoog 21%", 0.21, "S", false);
    d.add_vat_code("1", "BTW laag 9%", 0.09, "B", false);
    d.add_vat_code("0", "BTW 0%", 0.0, "B", false);
    d.add_vat_code("5", "Inkoop BTW 21%", 0.21, "P", false);
    d.add_vat_code("8", "Geblokkeerde code", 0.21, "B", true);

    d.add_payment_condition("30", "30 dagen", 30);
    d.add_payment_condition("14", "14 dagen", 14);
}

fn seeded_division(
    code: u32,
    description: &str,
    country: &str,
    currency: &str,
    default_pc: Option<&str>,
    now_ms: i64,
) -> Division {
    let mut d = Division::new(code, description, country, currency);
    seed_division_codes(&mut d, now_ms);
    d.default_payment_condition = default_pc.map(str::to_string);
    d
}

fn user(login: &str, first: &str, last: &str, lang: &str, divisions: &[u32], current: u32) -> User {
    User {
        user_id: Uuid::new_v4(),
        login: login.into(),
        full_name: format!("{first} {last}"),
        first_name: first.into(),
        last_name: last.into(),
        language_code: lang.into(),
        divisions: divisions.to_vec(),
        current_division: current,
    }
}

/// The default world.
pub fn default_world(now_ms: i64) -> World {
    let mut w = World::empty(default_app());
    for d in [
        seeded_division(
            1001,
            "Jansen Consultancy B.V.",
            "NL",
            "EUR",
            Some("30"),
            now_ms,
        ),
        seeded_division(1002, "Jansen Holding B.V.", "NL", "EUR", None, now_ms),
        seeded_division(2001, "Dupont Services SRL", "BE", "EUR", Some("30"), now_ms),
        seeded_division(3001, "Smith Ltd", "GB", "GBP", Some("30"), now_ms),
    ] {
        w.add_division(d);
    }
    w.add_user(user(
        "jan@jansen.example",
        "Jan",
        "Jansen",
        "nl-NL",
        &[1001, 1002],
        1002,
    ));
    w.add_user(user(
        "claire@dupont.example",
        "Claire",
        "Dupont",
        "fr-BE",
        &[2001],
        2001,
    ));
    w.add_user(user(
        "tom@smith.example",
        "Tom",
        "Smith",
        "en-GB",
        &[3001],
        3001,
    ));
    w
}
