//! Specification pages: PDF files the PSA sends with an invoice, attached to the Exact invoice (through a
//! `documents/Documents` record, see `docs/exact-online.md` §5.9) and e-mailed with it.
//!
//! | field | rule | refusal |
//! |---|---|---|
//! | `attachments` | optional array; `null` or `[]` = none; at most [`MAX_ATTACHMENTS`] files | 400 |
//! | `attachments` | at most [`MAX_ATTACHMENT_BYTES`] bytes decoded, all files together | 413 |
//! | `attachments[i].file_name` | required; sanitised (below), then 1..=[`MAX_FILE_NAME_LEN`] | 400 |
//! | `attachments[i].content_type` | optional; when given `application/pdf` | 400 |
//! | `attachments[i].content_base64` | required; standard base64 (line breaks allowed); the bytes start with `%PDF-` | 400 |
//!
//! PDF is checked by the content, not by the name or the content type: a file whose bytes do not start with
//! `%PDF-` is refused whatever it is called. The 4 MB total keeps a body with its base64 (a third larger) and the
//! invoice under the 6 MB that API Gateway and a synchronous Lambda invocation carry.
//!
//! A file name is sanitised, not refused: only its last path segment is kept (`../../a.pdf` → `a.pdf`), control
//! characters are dropped, the characters Windows refuses in names (`<>:"|?*`) become `_`, blanks and dots at
//! either end go, and `.pdf` is appended when it does not end so. What is left must be non-empty. A name already
//! taken by an earlier file of the invoice (ignoring case) gets ` (2)`, ` (3)`, … before its `.pdf`: the names of an
//! invoice's files are unique, which is how a retry tells which files Exact already has.

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};
use serde_json::Value;

use crate::error::{FieldError, InvalidInvoice};
use crate::json::{Obj, index_path, type_error};

/// At most this many files per invoice.
pub const MAX_ATTACHMENTS: usize = 5;
/// At most this many bytes, decoded, all files of one invoice together (4 MB; base64 ≈ 5.3 MB).
pub const MAX_ATTACHMENT_BYTES: usize = 4_000_000;
/// A sanitised file name's length in characters (the `.pdf` included).
pub const MAX_FILE_NAME_LEN: usize = 100;
/// The only content type accepted.
pub const PDF_CONTENT_TYPE: &str = "application/pdf";
/// What every PDF file starts with (ISO 32000-1 §7.5.2, the file header).
pub const PDF_MAGIC: &[u8] = b"%PDF-";

/// Standard alphabet; padding may be present or not (both are base64 as PSA libraries write it).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// One PDF file, decoded and checked.
#[derive(Clone, PartialEq, Eq)]
pub struct Attachment {
    /// Sanitised (see the module doc).
    pub file_name: String,
    /// The file's bytes; they start with `%PDF-`.
    pub content: Vec<u8>,
}

impl std::fmt::Debug for Attachment {
    // Never the bytes: a debug print of an invoice must stay short and carry no document content.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attachment")
            .field("file_name", &self.file_name)
            .field("size", &self.content.len())
            .finish()
    }
}

impl Attachment {
    pub fn size(&self) -> usize {
        self.content.len()
    }

    /// The content as Exact's `DocumentAttachments.Attachment` takes it (standard base64, padded).
    pub fn content_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.content)
    }
}

impl Serialize for Attachment {
    /// The request's shape, with the content re-encoded in one fixed form (padded, no line breaks): the same file
    /// written with or without padding or line breaks serialises to the same bytes.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Attachment", 3)?;
        st.serialize_field("file_name", &self.file_name)?;
        st.serialize_field("content_type", PDF_CONTENT_TYPE)?;
        st.serialize_field("content_base64", &self.content_base64())?;
        st.end()
    }
}

/// Keeps the last path segment, drops control characters, replaces `<>:"|?*`, trims blanks and dots, ensures a
/// `.pdf` ending and at most [`MAX_FILE_NAME_LEN`] characters. Empty when nothing usable is left.
pub fn sanitise_file_name(raw: &str) -> String {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = last
        .chars()
        .filter(|c| !c.is_control())
        .map(|c| if "<>:\"|?*".contains(c) { '_' } else { c })
        .collect();
    let trimmed = cleaned.trim_matches(|c: char| c.is_whitespace() || c == '.');
    if trimmed.is_empty() {
        return String::new();
    }
    let n = trimmed.len();
    let has_ext = n > 4
        && trimmed
            .get(n - 4..)
            .is_some_and(|e| e.eq_ignore_ascii_case(".pdf"));
    let stem = if has_ext { &trimmed[..n - 4] } else { trimmed };
    let stem = stem.trim_end_matches(|c: char| c.is_whitespace() || c == '.');
    if stem.is_empty() {
        return String::new();
    }
    let stem: String = stem.chars().take(MAX_FILE_NAME_LEN - 4).collect();
    format!("{}.pdf", stem.trim_end())
}

/// Reads `attachments` from the request body (the root object).
pub(crate) fn read_attachments(root: &Value) -> Result<Vec<Attachment>, InvalidInvoice> {
    let root = Obj::root(root)?;
    let field = root.path("attachments");
    let items = root.opt_array("attachments")?;
    if items.len() > MAX_ATTACHMENTS {
        return Err(FieldError::new(
            &field,
            "too_many_attachments",
            format!(
                "{field} may hold at most {MAX_ATTACHMENTS} files, got {}; combine the specification pages into fewer PDFs",
                items.len()
            ),
        )
        .into());
    }
    // Bounded before anything is decoded: base64 carries 3 bytes in 4 characters.
    let estimated: usize = items
        .iter()
        .filter_map(|a| a.get("content_base64").and_then(Value::as_str))
        .map(|s| s.len() / 4 * 3)
        .sum();
    if estimated > MAX_ATTACHMENT_BYTES + 3 * items.len() {
        return Err(too_large(&field, estimated));
    }
    let mut out: Vec<Attachment> = Vec::with_capacity(items.len());
    let mut total = 0usize;
    for (i, item) in items.iter().enumerate() {
        let path = index_path(&field, i);
        let mut a = read_one(item, &path)?;
        a.file_name = unique_name(&a.file_name, &out);
        total += a.size();
        out.push(a);
    }
    if total > MAX_ATTACHMENT_BYTES {
        return Err(too_large(&field, total));
    }
    Ok(out)
}

/// `name`, or `{stem} (n).pdf` with the smallest n ≥ 2 that no file in `taken` has (ignoring case).
fn unique_name(name: &str, taken: &[Attachment]) -> String {
    let free = |n: &str| !taken.iter().any(|t| t.file_name.eq_ignore_ascii_case(n));
    if free(name) {
        return name.to_owned();
    }
    let stem = &name[..name.len() - 4];
    (2..)
        .map(|n| {
            let suffix = format!(" ({n}).pdf");
            let keep = MAX_FILE_NAME_LEN - suffix.chars().count();
            let short: String = stem.chars().take(keep).collect();
            format!("{}{suffix}", short.trim_end())
        })
        .find(|n| free(n))
        .unwrap_or_default()
}

fn too_large(field: &str, size: usize) -> InvalidInvoice {
    InvalidInvoice::TooLarge(FieldError::new(
        field,
        "attachments_too_large",
        format!(
            "{field} total about {size} bytes decoded; the limit is {MAX_ATTACHMENT_BYTES} bytes (4 MB) for all files \
             of an invoice together"
        ),
    ))
}

fn read_one(item: &Value, path: &str) -> Result<Attachment, FieldError> {
    let obj = Obj::new(item, path)?;
    let name_field = obj.path("file_name");
    let raw_name = obj.parsed("file_name", |raw, _| Ok(raw.to_owned()))?;
    let file_name = sanitise_file_name(&raw_name);
    if file_name.is_empty() {
        return Err(FieldError::new(
            &name_field,
            "invalid_file_name",
            format!(
                "{name_field} has no usable characters left after sanitising; send a name like \"specification.pdf\""
            ),
        ));
    }
    if let Some(ct) = obj.opt_text("content_type", 255)? {
        let essence = ct.split(';').next().unwrap_or_default().trim();
        if !essence.eq_ignore_ascii_case(PDF_CONTENT_TYPE) {
            let f = obj.path("content_type");
            return Err(FieldError::new(
                &f,
                "unsupported_content_type",
                format!("{f} must be \"{PDF_CONTENT_TYPE}\": only PDF files can be attached"),
            ));
        }
    }
    let content_field = obj.path("content_base64");
    let encoded = match item.get("content_base64") {
        None | Some(Value::Null) => return Err(crate::json::missing(&content_field)),
        Some(Value::String(s)) => s,
        Some(other) => return Err(type_error(&content_field, "a base64 string", other)),
    };
    // Line breaks (MIME-style wrapping) and blanks are not part of the data.
    let compact: Vec<u8> = encoded
        .bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let content = BASE64.decode(&compact).map_err(|_| {
        FieldError::new(
            &content_field,
            "invalid_base64",
            format!(
                "{content_field} is not valid base64 (standard alphabet A-Z a-z 0-9 + /, optional = padding)"
            ),
        )
    })?;
    if !content.starts_with(PDF_MAGIC) {
        return Err(FieldError::new(
            &content_field,
            "not_pdf",
            format!(
                "{content_field} is not a PDF file (its content does not start with %PDF-); only PDF files can be \
                 attached"
            ),
        ));
    }
    Ok(Attachment { file_name, content })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_keep_the_last_segment_and_end_in_pdf() {
        assert_eq!(sanitise_file_name("spec.pdf"), "spec.pdf");
        assert_eq!(sanitise_file_name("../../etc/passwd"), "passwd.pdf");
        assert_eq!(sanitise_file_name("C:\\Users\\x\\Spec.PDF"), "Spec.pdf");
        assert_eq!(sanitise_file_name("a\u{0}b\r\nc?.pdf"), "abc_.pdf");
        assert_eq!(sanitise_file_name(" .hidden. "), "hidden.pdf");
        assert_eq!(sanitise_file_name("..."), "");
        assert_eq!(sanitise_file_name(".pdf"), "pdf.pdf");
        assert_eq!(sanitise_file_name("dir/"), "");
        let long = "x".repeat(300);
        assert_eq!(sanitise_file_name(&long).chars().count(), MAX_FILE_NAME_LEN);
    }

    #[test]
    fn serialises_to_one_form_whatever_the_padding() {
        let a = Attachment {
            file_name: "a.pdf".into(),
            content: b"%PDF-1".to_vec(),
        };
        let v = serde_json::to_value(&a).unwrap();
        assert_eq!(v["content_base64"], "JVBERi0x");
        assert_eq!(v["content_type"], PDF_CONTENT_TYPE);
        assert!(!format!("{a:?}").contains("PDF"), "no content in Debug");
    }
}
