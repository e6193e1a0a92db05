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
/// `Content` object. `None` when the body is not `{"Content":{…},"HashCode":"…"}`, the hash is missing, or it is not
/// the upper-case hex HMAC of those exact bytes (compared in constant time). An unset secret refuses everything.
pub fn verify_delivery<'a>(body: &'a [u8], secret: &SecretString) -> Option<&'a [u8]> {
    let key = secret.expose_secret().as_bytes();
    if key.is_empty() {
        return None;
    }
    let (content, given) = split_delivery(body)?;
    let expected = hash_code(key, content);
    bool::from(expected.as_bytes().ct_eq(given)).then_some(content)
}

pub(super) fn skip_ws(s: &[u8]) -> &[u8] {
    s.trim_ascii_start()
}

/// The `Content` object's bytes exactly as sent and the HashCode's text, found without re-serialising anything.
pub(super) fn split_delivery(body: &[u8]) -> Option<(&[u8], &[u8])> {
    let rest = skip_ws(body).strip_prefix(b"{")?;
    let rest = skip_ws(rest).strip_prefix(b"\"Content\"")?;
    let rest = skip_ws(skip_ws(rest).strip_prefix(b":")?);
    let len = object_len(rest)?;
    let (content, rest) = rest.split_at(len);
    let rest = skip_ws(rest).strip_prefix(b",")?;
    let rest = skip_ws(rest).strip_prefix(b"\"HashCode\"")?;
    let rest = skip_ws(skip_ws(rest).strip_prefix(b":")?).strip_prefix(b"\"")?;
    let end = rest.iter().position(|&b| b == b'"' || b == b'\\')?;
    let (hash, rest) = rest.split_at(end);
    let rest = skip_ws(rest.strip_prefix(b"\"")?).strip_prefix(b"}")?;
    skip_ws(rest).is_empty().then_some((content, hash))
}

/// The length of the JSON object at the start of `s` (braces inside strings, and escaped quotes, do not count).
pub(super) fn object_len(s: &[u8]) -> Option<usize> {
    if s.first() != Some(&b'{') {
        return None;
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, &b) in s.iter().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return (b == b'}').then_some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}
