//! The HMAC-SHA256 signatures on both sides of the connector, signed and checked here only (the connector, the
//! Exact sandbox, the local run and the tests all use these):
//!
//! - Exact's webhook `HashCode`: the upper-case hex HMAC of the raw bytes of the delivery's `Content`, keyed with
//!   the app's webhook secret (`docs/exact-online.md` §6.3).
//! - The connector's `X-Signature-256` on its callbacks to the PSA: `t=<unix seconds>,v1=<lower-case hex HMAC of
//!   "<t>.<body>">`, keyed with the PSA callback secret. The timestamp is signed with the body, so a captured
//!   callback cannot be replayed later than [`CALLBACK_TOLERANCE`] (`README.md`, "Callbacks to the PSA").
//!
//! A check compares in constant time (`Mac::verify_slice`), accepts only the one spelling that is signed (no other
//! case, no base64), and an empty secret verifies nothing.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// HMAC-SHA256 of `message` keyed with `key`.
pub fn hmac_sha256(
    key: &(impl AsRef<[u8]> + ?Sized),
    message: &(impl AsRef<[u8]> + ?Sized),
) -> Vec<u8> {
    match keyed(key.as_ref()) {
        Some(mac) => mac
            .chain_update(message.as_ref())
            .finalize()
            .into_bytes()
            .to_vec(),
        None => Vec::new(),
    }
}

/// Exact's `HashCode` of a delivery's raw `Content` bytes.
pub fn hash_code(
    webhook_secret: &(impl AsRef<[u8]> + ?Sized),
    content: &(impl AsRef<[u8]> + ?Sized),
) -> String {
    hex::encode_upper(hmac_sha256(webhook_secret, content))
}

/// Whether `given` is the `HashCode` of `content`: 64 upper-case hex digits, checked in constant time.
pub fn verify_hash_code(
    webhook_secret: &(impl AsRef<[u8]> + ?Sized),
    content: &(impl AsRef<[u8]> + ?Sized),
    given: &str,
) -> bool {
    verify(
        webhook_secret.as_ref(),
        content.as_ref(),
        given,
        b'A'..=b'F',
    )
}

/// How far a callback's signed timestamp may be from the receiver's clock (either way) and still be accepted.
/// Five minutes, as the widely used webhook signing schemes choose: enough for clock drift and a slow delivery, short
/// enough that a captured callback is useless soon after.
pub const CALLBACK_TOLERANCE_SECS: i64 = 300;
/// [`CALLBACK_TOLERANCE_SECS`] as a `Duration`.
pub const CALLBACK_TOLERANCE: std::time::Duration =
    std::time::Duration::from_secs(CALLBACK_TOLERANCE_SECS as u64);

/// The `X-Signature-256` header of a PSA callback body sent at `timestamp` (Unix seconds):
/// `t=<timestamp>,v1=<hex HMAC-SHA256 of "<timestamp>.<body>">`.
pub fn sign_callback(
    callback_secret: &(impl AsRef<[u8]> + ?Sized),
    timestamp: i64,
    body: &(impl AsRef<[u8]> + ?Sized),
) -> String {
    format!(
        "t={timestamp},v1={}",
        hex::encode(hmac_sha256(
            callback_secret,
            &signed_payload(timestamp, body.as_ref())
        ))
    )
}

/// Why a PSA refuses a callback (what [`verify_callback`] answers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackRefusal {
    /// The header is not `t=<digits>,v1=<64 lower-case hex digits>` (more `v1=` entries are allowed, for a secret
    /// being rotated; any one may match).
    Malformed,
    /// The timestamp is further than the tolerance from the receiver's clock: a replay, or a clock far off.
    Stale,
    /// No `v1` is the HMAC of `<t>.<body>` with this secret (or the secret is empty).
    Mismatch,
}

/// What a PSA does with each callback: the header must be `t=…,v1=…`, `t` within `tolerance_secs` of `now_unix`,
/// and one `v1` the HMAC-SHA256 of `"<t>.<body>"` (constant-time comparison).
pub fn verify_callback(
    callback_secret: &(impl AsRef<[u8]> + ?Sized),
    body: &(impl AsRef<[u8]> + ?Sized),
    header: &str,
    now_unix: i64,
    tolerance_secs: i64,
) -> Result<(), CallbackRefusal> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", t)) if timestamp.is_none() && !t.is_empty() && t.len() <= 12 => {
                if !t.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(CallbackRefusal::Malformed);
                }
                timestamp = t.parse::<i64>().ok();
            }
            Some(("v1", v)) => signatures.push(v),
            _ => return Err(CallbackRefusal::Malformed),
        }
    }
    let Some(t) = timestamp else {
        return Err(CallbackRefusal::Malformed);
    };
    if signatures.is_empty() {
        return Err(CallbackRefusal::Malformed);
    }
    if (now_unix - t).abs() > tolerance_secs {
        return Err(CallbackRefusal::Stale);
    }
    let message = signed_payload(t, body.as_ref());
    let key = callback_secret.as_ref();
    if signatures
        .iter()
        .any(|given| verify(key, &message, given, b'a'..=b'f'))
    {
        Ok(())
    } else {
        Err(CallbackRefusal::Mismatch)
    }
}

/// `"<timestamp>.<body>"`: what a callback signature covers.
fn signed_payload(timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(body.len() + 21);
    m.extend_from_slice(timestamp.to_string().as_bytes());
    m.push(b'.');
    m.extend_from_slice(body);
    m
}

/// `given` spelled with digits and `letters` only, and the HMAC of `message`.
fn verify(key: &[u8], message: &[u8], given: &str, letters: std::ops::RangeInclusive<u8>) -> bool {
    let spelled = given.len() == 64
        && given
            .bytes()
            .all(|b| b.is_ascii_digit() || letters.contains(&b));
    if key.is_empty() || !spelled {
        return false;
    }
    let (Ok(given), Some(mac)) = (hex::decode(given), keyed(key)) else {
        return false;
    };
    mac.chain_update(message).verify_slice(&given).is_ok()
}

fn keyed(key: &[u8]) -> Option<Hmac<Sha256>> {
    // HMAC takes keys of any length: this cannot fail.
    Hmac::<Sha256>::new_from_slice(key).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231, test case 2.
    const JEFE: &str = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
    const JEFE_DATA: &str = "what do ya want for nothing?";

    /// `docs/exact-online.md` §6.3: the documented delivery's `Content` and `HashCode`.
    const DOC_CONTENT: &str = r#"{"Topic":"SalesInvoices","ClientId":"3f1c2b7e-8d4a-4c61-9b2e-5a7d0e9c1f42","Division":1234567,"Action":"Update","Key":"7b9e4c2a-1d3f-4e5a-8b6c-0f1e2d3c4b5a","ExactOnlineEndpoint":"https://start.exactonline.nl/api/v1/1234567/salesinvoice/SalesInvoices(guid'7b9e4c2a-1d3f-4e5a-8b6c-0f1e2d3c4b5a')","EventCreatedOn":"2025-03-14T10:15:42.137"}"#;
    const DOC_HASH: &str = "0DFF441BE9735A9E20039517DFCECFCE0BBEB8785636886B2B5ED7567C4F8519";
    const DOC_SECRET: &str = "demo-webhook-secret-2025";

    #[test]
    fn hmac_is_rfc_4231() {
        assert_eq!(hex::encode(hmac_sha256("Jefe", JEFE_DATA)), JEFE);
        assert_eq!(hash_code("Jefe", JEFE_DATA), JEFE.to_uppercase());
    }

    #[test]
    fn reproduces_and_verifies_the_documented_hash_code() {
        assert_eq!(hash_code(DOC_SECRET, DOC_CONTENT), DOC_HASH);
        assert!(verify_hash_code(DOC_SECRET, DOC_CONTENT, DOC_HASH));
    }

    #[test]
    fn a_hash_code_verifies_only_as_exact_signs_it() {
        let refused = [
            DOC_HASH.to_lowercase(),
            DOC_HASH[..63].to_owned(),
            format!("{DOC_HASH}0"),
            format!(" {}", &DOC_HASH[1..]),
            hash_code("other-secret", DOC_CONTENT),
            String::new(),
        ];
        for given in &refused {
            assert!(!verify_hash_code(DOC_SECRET, DOC_CONTENT, given), "{given}");
        }
        let pretty = DOC_CONTENT.replace(',', ", ");
        assert!(!verify_hash_code(DOC_SECRET, &pretty, DOC_HASH));
        assert!(!verify_hash_code(
            "",
            DOC_CONTENT,
            &hash_code("", DOC_CONTENT)
        ));
    }

    const NOW: i64 = 1_764_489_600; // 2025-11-30T08:00:00Z

    #[test]
    fn a_callback_signature_is_the_hmac_of_the_timestamp_a_dot_and_the_body() {
        let header = sign_callback("Jefe", NOW, JEFE_DATA);
        let want = hex::encode(hmac_sha256("Jefe", &format!("{NOW}.{JEFE_DATA}")));
        assert_eq!(header, format!("t={NOW},v1={want}"));
        // The HMAC itself is RFC 4231's: with timestamp and dot left out it is the test vector.
        assert_ne!(want, JEFE);
    }

    #[test]
    fn a_callback_signature_verifies_only_as_the_connector_signs_it() {
        let body = br#"{"id":"evt_1","type":"invoice.paid"}"#;
        let header = sign_callback("cb-secret", NOW, body);
        let ok = |h: &str| verify_callback("cb-secret", body, h, NOW, CALLBACK_TOLERANCE_SECS);
        assert_eq!(ok(&header), Ok(()));
        let v1 = header.split_once(",v1=").unwrap().1.to_owned();
        // A second v1 (a secret being rotated) is allowed; one must match.
        assert_eq!(
            ok(&format!("t={NOW},v1={},v1={v1}", "0".repeat(64))),
            Ok(())
        );
        let malformed = [
            String::new(),
            v1.clone(),
            format!("sha256={v1}"),
            format!("v1={v1}"),
            format!("t={NOW}"),
            format!("t=-{NOW},v1={v1}"),
            format!("t={NOW},t={NOW},v1={v1}"),
            format!("t={NOW}, v1={v1}"),
            format!("t={NOW},v1={v1},x=1"),
        ];
        for h in &malformed {
            assert_eq!(ok(h), Err(CallbackRefusal::Malformed), "{h}");
        }
        let mismatched = [
            format!("t={NOW},v1={}", v1.to_uppercase()),
            format!("t={NOW},v1={v1}0"),
            sign_callback("other-secret", NOW, body),
            // The same signature with another timestamp: the timestamp is signed.
            format!("t={},v1={v1}", NOW - 1),
        ];
        for h in &mismatched {
            assert_eq!(ok(h), Err(CallbackRefusal::Mismatch), "{h}");
        }
        assert_eq!(
            verify_callback("cb-secret", b"{}", &header, NOW, 300),
            Err(CallbackRefusal::Mismatch)
        );
        assert_eq!(
            verify_callback("", body, &sign_callback("", NOW, body), NOW, 300),
            Err(CallbackRefusal::Mismatch)
        );
    }

    #[test]
    fn a_callback_outside_the_tolerance_is_refused_as_stale_either_way() {
        let body = br#"{"id":"evt_1"}"#;
        let header = sign_callback("cb-secret", NOW, body);
        let at =
            |now: i64| verify_callback("cb-secret", body, &header, now, CALLBACK_TOLERANCE_SECS);
        assert_eq!(at(NOW + CALLBACK_TOLERANCE_SECS), Ok(()));
        assert_eq!(at(NOW - CALLBACK_TOLERANCE_SECS), Ok(()));
        assert_eq!(
            at(NOW + CALLBACK_TOLERANCE_SECS + 1),
            Err(CallbackRefusal::Stale)
        );
        assert_eq!(
            at(NOW - CALLBACK_TOLERANCE_SECS - 1),
            Err(CallbackRefusal::Stale)
        );
        // A day-old capture, replayed: refused even though the signature is right.
        assert_eq!(at(NOW + 86_400), Err(CallbackRefusal::Stale));
    }
}
