//! Exact's HashCode: verifying a delivery before anything is parsed (`docs/exact-online.md` §6.3).

use mapping::signature::verify_hash_code;

use super::*;

pub use mapping::signature::hash_code;

/// Checks a delivery's HashCode against its `Content`, before anything is parsed, and answers the raw bytes of the
/// `Content` object. `None` when the body is not exactly `{"Content":{…},"HashCode":"…"}` (in that order, each key
/// once, nothing else), the hash is not 64 upper-case hex digits, or it is not the HMAC of those exact bytes
/// ([`verify_hash_code`]: constant time, by `Mac::verify_slice`). An unset secret refuses everything.
pub fn verify_delivery<'a>(body: &'a [u8], secret: &SecretString) -> Option<&'a [u8]> {
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
    verify_hash_code(secret.expose_secret(), content, delivery.hash_code).then_some(content)
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
