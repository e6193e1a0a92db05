//! The HMAC-SHA256 signatures on both sides of the connector, signed and checked here only (the connector, the
//! Exact sandbox, the local run and the tests all use these):
//!
//! - Exact's webhook `HashCode`: the upper-case hex HMAC of the raw bytes of the delivery's `Content`, keyed with
//!   the app's webhook secret (`docs/exact-online.md` §6.3).
//! - The connector's `X-Signature-256` on its callbacks to the PSA: `sha256=` and the lower-case hex HMAC of the
//!   body, keyed with the PSA callback secret.
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

/// The `X-Signature-256` header of a PSA callback body.
pub fn sign_callback(
    callback_secret: &(impl AsRef<[u8]> + ?Sized),
    body: &(impl AsRef<[u8]> + ?Sized),
) -> String {
    format!("sha256={}", hex::encode(hmac_sha256(callback_secret, body)))
}

/// Whether `header` is the `X-Signature-256` of `body`: `sha256=` and 64 lower-case hex digits, checked in
/// constant time. What a PSA does with each callback.
pub fn verify_callback(
    callback_secret: &(impl AsRef<[u8]> + ?Sized),
    body: &(impl AsRef<[u8]> + ?Sized),
    header: &str,
) -> bool {
    header
        .strip_prefix("sha256=")
        .is_some_and(|given| verify(callback_secret.as_ref(), body.as_ref(), given, b'a'..=b'f'))
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
        assert_eq!(sign_callback("Jefe", JEFE_DATA), format!("sha256={JEFE}"));
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

    #[test]
    fn a_callback_signature_verifies_only_as_the_connector_signs_it() {
        let body = br#"{"type":"invoice.paid"}"#;
        let header = sign_callback("cb-secret", body);
        assert!(verify_callback("cb-secret", body, &header));
        let refused = [
            header.to_uppercase(),
            format!("SHA256={}", &header[7..]),
            header[7..].to_owned(),
            format!("{header}0"),
            sign_callback("other-secret", body),
            String::new(),
        ];
        for given in &refused {
            assert!(!verify_callback("cb-secret", body, given), "{given}");
        }
        assert!(!verify_callback("cb-secret", b"{}", &header));
        assert!(!verify_callback("", body, &sign_callback("", body)));
    }
}
