//! Forged and replayed Exact webhooks against `POST /exact/webhooks`.
//!
//! Two connections, each with a pushed invoice that is then paid in Exact: the sandbox queues one signed
//! `BankEntries` delivery per payment (taken, not delivered). The forgeries are built from the victim's delivery
//! (division 2001) and sent first; a forgery was *acted on* when it answered 2xx, or when any Exact call was made
//! or any PSA notification was sent because of it. Then the genuine deliveries are each sent 5×: each payment must
//! produce exactly one (correctly signed) PSA notification — which also shows the forgeries did not poison the
//! duplicate filter.

use std::time::Duration;

use mapping::signature::{hash_code, verify_callback};
use reqwest::Method;
use serde_json::{Value, json};

use crate::hostile::send;
use crate::logs::Secrets;
use crate::rng::Rng;
use crate::table::Table;
use crate::world::{Company, World, WorldOptions, invoice};

const JAN: &str = "jan@jansen.example";
const CLAIRE: &str = "claire@dupont.example";

/// A paid invoice and its (not yet delivered) webhook.
struct Paid {
    conn: &'static str,
    division: u32,
    invoice_id: String,
    delivery: String,
}

async fn paid_invoice(
    w: &World,
    conn: &'static str,
    login: &str,
    division: u32,
) -> Result<Paid, String> {
    w.connect(conn, login, division).await;
    w.configure(conn, "72").await?;
    let tag = format!("wh_{conn}");
    let body = invoice(&tag, &Company::new(&tag));
    let (_, exact_id, amount) = w.push_created(conn, &body, division).await?;
    w.h.sandbox.take_webhooks();
    w.h.sandbox.pay_invoice(division, &exact_id, amount)?;
    let delivery =
        w.h.sandbox
            .take_webhooks()
            .into_iter()
            .find(|d| d.division == division && d.topic == "BankEntries")
            .ok_or("no BankEntries delivery was queued")?;
    Ok(Paid {
        conn,
        division,
        invoice_id: body["id"].as_str().unwrap_or("").to_owned(),
        delivery: delivery.body,
    })
}

/// The raw `Content` bytes and the HashCode of a delivery body `{"Content":…,"HashCode":"…"}`.
fn split(delivery: &str) -> Option<(String, String)> {
    let start = delivery.find("\"Content\":")? + "\"Content\":".len();
    let end = delivery.rfind(",\"HashCode\"")?;
    let content = delivery.get(start..end)?.to_owned();
    let v: Value = serde_json::from_str(delivery).ok()?;
    Some((content, v["HashCode"].as_str()?.to_owned()))
}

fn body(content: &str, hash: &str) -> String {
    format!(r#"{{"Content":{content},"HashCode":"{hash}"}}"#)
}

fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(T[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// How many kinds of forgery [`forgeries`] builds: a row that sent fewer measured less than it claims.
const FORGERY_KINDS: usize = 21;

/// The forgery row: fails when fewer forgeries than [`FORGERY_KINDS`] were sent (a parse that yielded none would
/// otherwise compare 0 acted-on with 0), or when any was acted on.
fn forged_row(table: &mut Table, case: &str, sent: usize, acted: &[String], detail: &str) {
    if sent < FORGERY_KINDS {
        table.not_measured(
            case,
            "must be 0",
            &format!("{sent} of {FORGERY_KINDS} kinds of forgery could be built from the genuine delivery"),
        );
        return;
    }
    table.exact(case, acted.len(), 0, &format!("{sent} forgeries: {detail}"));
    for a in acted {
        table.note(format!("- forged webhook acted on: {a}"));
    }
}

/// The forgeries: (what, body).
fn forgeries(victim: &str, other: &str, secret: &str) -> Vec<(String, String)> {
    let Some((content, hash)) = split(victim) else {
        return Vec::new();
    };
    let Some((other_content, other_hash)) = split(other) else {
        return Vec::new();
    };
    let sign = |c: &str| hash_code(secret, c);
    let mut rng = Rng::new(0x0EB_400C);
    let random_hex: String = (0..64)
        .map(|_| char::from(b"0123456789ABCDEF"[rng.below(16)]))
        .collect();
    let parsed: Value = serde_json::from_str(&content).unwrap_or(Value::Null);
    let pretty = serde_json::to_string_pretty(&parsed).unwrap_or_default();
    let mut reordered = String::from("{");
    if let Value::Object(m) = &parsed {
        let mut keys: Vec<&String> = m.keys().collect();
        keys.reverse();
        let parts: Vec<String> = keys
            .iter()
            .map(|k| format!("{}:{}", Value::String((*k).clone()), m[*k]))
            .collect();
        reordered.push_str(&parts.join(","));
    }
    reordered.push('}');
    let mut changed_key = parsed.clone();
    changed_key["Key"] = json!("00000000-0000-0000-0000-000000000001");
    let changed_key = changed_key.to_string();
    let mut changed_div = parsed.clone();
    changed_div["Division"] = json!(1002);
    let changed_div = changed_div.to_string();
    // Another event for the victim's division with a fresh Key: processing it would check the victim's invoices.
    let mut evil = parsed.clone();
    evil["Key"] = json!("11111111-2222-3333-4444-555555555555");
    let evil = evil.to_string();
    let whole_body_hash = sign(&body(&content, ""));
    vec![
        ("random HashCode".into(), body(&content, &random_hex)),
        (
            "the right HashCode in lower-case hex".into(),
            body(&content, &hash.to_lowercase()),
        ),
        (
            "the right HMAC in base64".into(),
            body(&content, &base64(&hex_bytes(&hash))),
        ),
        (
            "the right HashCode truncated to 63 characters".into(),
            body(&content, &hash[..63]),
        ),
        (
            "the right HashCode with a trailing character".into(),
            body(&content, &format!("{hash}0")),
        ),
        (
            "signed with another secret".into(),
            body(&content, &hash_code("not-the-secret", &content)),
        ),
        (
            "re-serialised body (pretty-printed Content), same HashCode".into(),
            body(&pretty, &hash),
        ),
        (
            "re-serialised body (keys reordered), same HashCode".into(),
            body(&reordered, &hash),
        ),
        (
            "Content with another Key, same HashCode".into(),
            body(&changed_key, &hash),
        ),
        (
            "Content with another Division, same HashCode".into(),
            body(&changed_div, &hash),
        ),
        (
            "HashCode of the whole body instead of Content".into(),
            body(&content, &whole_body_hash),
        ),
        (
            "HashCode missing".into(),
            format!(r#"{{"Content":{content}}}"#),
        ),
        ("HashCode empty".into(), body(&content, "")),
        (
            "HashCode null".into(),
            format!(r#"{{"Content":{content},"HashCode":null}}"#),
        ),
        (
            "HashCode a number".into(),
            format!(r#"{{"Content":{content},"HashCode":12345}}"#),
        ),
        (
            "Content as a JSON string, same HashCode".into(),
            body(&Value::String(content.clone()).to_string(), &hash),
        ),
        (
            "Content missing".into(),
            format!(r#"{{"HashCode":"{hash}"}}"#),
        ),
        (
            "body not JSON".into(),
            format!("Content={content}&HashCode={hash}"),
        ),
        (
            "HashCode given twice (forged first)".into(),
            format!(r#"{{"Content":{evil},"HashCode":"{random_hex}","HashCode":"{hash}"}}"#),
        ),
        (
            "Content given twice: a genuine signed one first, a forged one second".into(),
            format!(r#"{{"Content":{other_content},"Content":{evil},"HashCode":"{other_hash}"}}"#),
        ),
        (
            "Content given twice: a forged one first, a genuine signed one second".into(),
            format!(r#"{{"Content":{evil},"Content":{other_content},"HashCode":"{other_hash}"}}"#),
        ),
    ]
}

async fn post(w: &World, body: &str) -> u16 {
    send(
        &w.h,
        Method::POST,
        "/exact/webhooks",
        Some(body.as_bytes().to_vec()),
        Some("application/json"),
        None,
    )
    .await
    .0
}

/// Notifications the PSA received for `invoice_id`.
fn notifications(w: &World, invoice_id: &str) -> usize {
    w.psa
        .all()
        .iter()
        .filter(|(b, _)| e2e::callback_fields(b.as_bytes())["invoice_id"] == invoice_id)
        .count()
}

pub async fn run(table: &mut Table, secrets: &mut Secrets) {
    let w = World::start(WorldOptions {
        psa_receiver: true,
        ..WorldOptions::default()
    })
    .await;
    let forged_case = "Forged webhooks (bad/lower-case/base64/truncated HashCode, other secret, re-serialised or changed Content, duplicate keys, …) → accepted or acted on";
    let other = paid_invoice(&w, "bu_w", JAN, 1001).await;
    let victim = paid_invoice(&w, "bu_v", CLAIRE, 2001).await;
    let (other, victim) = match (other, victim) {
        (Ok(o), Ok(v)) => (o, v),
        (Err(e), _) | (_, Err(e)) => {
            table.not_measured(forged_case, "must be 0", &e);
            table.not_measured(
                "Genuine webhook delivered 5× → PSA notifications per payment",
                "must be 1",
                &e,
            );
            secrets.collect(&w.h);
            return;
        }
    };
    let secret = w.h.sandbox.webhook_secret();
    let forged = forgeries(&victim.delivery, &other.delivery, &secret);

    // 1. Forgeries.
    let mut acted = Vec::new();
    let mut statuses: std::collections::BTreeMap<u16, usize> = Default::default();
    for (what, b) in &forged {
        let before = (
            w.h.sandbox.api_calls(victim.division),
            w.psa.count(),
            notifications(&w, &victim.invoice_id),
        );
        let status = post(&w, b).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let after = (
            w.h.sandbox.api_calls(victim.division),
            w.psa.count(),
            notifications(&w, &victim.invoice_id),
        );
        *statuses.entry(status).or_default() += 1;
        let genuine_first = what.contains("genuine signed one first");
        let accepted = (200..300).contains(&status) && !genuine_first;
        if accepted
            || after.0 > before.0
            || after.2 > before.2
            || (after.1 > before.1 && !genuine_first)
        {
            acted.push(format!("{what} → {status}"));
        }
    }
    let detail = statuses
        .iter()
        .map(|(s, n)| format!("{n}×{s}"))
        .collect::<Vec<_>>()
        .join(", ");
    forged_row(table, forged_case, forged.len(), &acted, &detail);

    // 2. The genuine deliveries, each 5×.
    let mut answers = Vec::new();
    for p in [&victim, &other] {
        for _ in 0..5 {
            answers.push(post(&w, &p.delivery).await);
        }
    }
    // Notifications are sent while the delivery is handled; give a retried one a moment.
    for _ in 0..50 {
        if notifications(&w, &victim.invoice_id) >= 1 && notifications(&w, &other.invoice_id) >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let per_payment = [
        notifications(&w, &victim.invoice_id),
        notifications(&w, &other.invoice_id),
    ];
    let ok_answers = answers.iter().filter(|s| (200..300).contains(*s)).count();
    table.exact(
        "Genuine webhook deliveries (2 payments × 5) answered other than 2xx",
        answers.len() - ok_answers,
        0,
        &format!("{} sent", answers.len()),
    );
    {
        let worst = if per_payment.iter().all(|n| *n == 1) {
            1
        } else {
            per_payment.iter().copied().find(|n| *n != 1).unwrap_or(0)
        };
        table.exact(
            "Genuine webhook delivered 5× (after the forgeries) → PSA notifications per payment",
            worst,
            1,
            &format!(
                "2 payments: {per_payment:?} notifications; {ok_answers}/10 deliveries answered 2xx"
            ),
        );
        let secret = e2e::PSA_CALLBACK_SECRET;
        let all = w.psa.all();
        let signed = all
            .iter()
            .filter(|(b, sig)| {
                // The bench drives its own clock: the signature is checked at the time it names.
                let at = sig
                    .strip_prefix("t=")
                    .and_then(|r| r.split(',').next())
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(0);
                verify_callback(secret, b, sig, at, 0).is_ok()
            })
            .count();
        table.exact(
            "PSA notifications without a valid X-Signature-256",
            all.len() - signed,
            0,
            &format!("{} sent", all.len()),
        );
        let mut paid_states = 0;
        for p in [&victim, &other] {
            let (s, b) =
                w.h.get(&format!(
                    "/connections/{}/invoices/{}",
                    p.conn, p.invoice_id
                ))
                .await;
            if s == 200 && b["status"] == "paid" {
                paid_states += 1;
            }
        }
        table.exact(
            "Paid invoices not shown as paid by GET …/invoices/{id}",
            2 - paid_states,
            0,
            "",
        );
    }
    secrets.collect(&w.h);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_and_split_are_right() {
        assert_eq!(base64(b"Man"), "TWFu");
        assert_eq!(base64(b"Ma"), "TWE=");
        assert_eq!(base64(b"M"), "TQ==");
        assert_eq!(hex_bytes("0aFF"), vec![10, 255]);
        let d = exact_sandbox::webhooks::delivery_body(
            "s3cret-key",
            r#"{"Topic":"BankEntries","Division":1}"#,
        );
        let (content, hash) = split(&d).unwrap();
        assert_eq!(content, r#"{"Topic":"BankEntries","Division":1}"#);
        assert_eq!(hash, hash_code("s3cret-key", &content));
    }

    #[test]
    fn every_forgery_differs_from_the_genuine_delivery() {
        let genuine = exact_sandbox::webhooks::delivery_body(
            "k-secret-1",
            r#"{"Topic":"BankEntries","Division":2001,"Key":"a"}"#,
        );
        let other = exact_sandbox::webhooks::delivery_body(
            "k-secret-1",
            r#"{"Topic":"BankEntries","Division":1001,"Key":"b"}"#,
        );
        let f = forgeries(&genuine, &other, "k-secret-1");
        assert_eq!(f.len(), FORGERY_KINDS);
        assert!(f.iter().all(|(_, b)| *b != genuine && *b != other));
    }

    #[test]
    fn a_forgery_row_that_sent_nothing_fails() {
        // A delivery the splitter cannot parse yields no forgeries: the row must not read "0 acted on, PASS".
        let f = forgeries("not a delivery", "neither", "k");
        assert!(f.is_empty());
        let mut t = Table::new("t");
        forged_row(&mut t, "forged", f.len(), &[], "");
        assert_eq!(t.failures().len(), 1, "{}", t.render());
        let mut t = Table::new("t");
        forged_row(&mut t, "forged", FORGERY_KINDS, &[], "21×401");
        assert!(t.failures().is_empty(), "{}", t.render());
        let mut t = Table::new("t");
        forged_row(&mut t, "forged", FORGERY_KINDS, &["x → 200".into()], "");
        assert_eq!(t.failures().len(), 1);
    }
}
