//! Exact's HashCode: verifying a delivery before anything is parsed (`docs/exact-online.md` §6.3).

use super::*;

/// Upper-case hex HMAC-SHA256 of `content` with `key`: Exact's HashCode (`docs/exact-online.md` §6.3).
pub fn hash_code(key: &[u8], content: &[u8]) -> String {
    hex::encode_upper(hmac_sha256(key, content))
}

pub(super) fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length: this cannot fail.
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(message);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// Checks a delivery's HashCode against its `Content`, before anything is parsed, and answers the raw bytes of the
/// `Content` object. `None` when the body is not exactly `{"Content":{…},"HashCode":"…"}` (in that order, each key
/// once, nothing else), the hash is not 64 upper-case hex digits, or it is not the HMAC of those exact bytes (checked in constant
/// time by `Mac::verify_slice`). An unset secret refuses everything.
pub fn verify_delivery<'a>(body: &'a [u8], secret: &SecretString) -> Option<&'a [u8]> {
    let key = secret.expose_secret().as_bytes();
    if key.is_empty() {
        return None;
    }
    // Exact's envelope puts `Content` first; a reordered body is a rewrite, not a delivery.
    let head = body
        .trim_ascii_start()
        .strip_prefix(b"{")?
        .trim_ascii_start();
    if !head.starts_with(b"\"Content\"") {
        return None;
    }
    let delivery: Delivery<'a> = serde_json::from_slice(body).ok()?;
    let content = delivery.content.get().as_bytes();
    if content.first() != Some(&b'{') {
        return None;
    }
    let given = delivery.hash_code.as_bytes();
    // Exact sends upper-case hex; lower case or anything else is not its signature.
    if given.len() != 64 || !given.iter().all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F')) {
        return None;
    }
    let given = hex::decode(given).ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(key).ok()?;
    mac.update(content);
    mac.verify_slice(&given).ok().map(|()| content)
}

/// A delivery as sent: `Content` kept as its raw bytes (serde_json's `RawValue`), so the HMAC is computed over
/// exactly what Exact signed; a duplicate or unknown key makes it no delivery at all.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Delivery<'a> {
    #[serde(rename = "Content", borrow)]
    content: &'a serde_json::value::RawValue,
    #[serde(rename = "HashCode")]
    hash_code: &'a str,
}
