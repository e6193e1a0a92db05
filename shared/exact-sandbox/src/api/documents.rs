//! `documents/Documents` and `documents/DocumentAttachments`: files attached to a sales invoice through a document
//! (`SalesInvoices.Document`).
//!
//! Exact's rules as the reference states them (`docs/exact-online.md` §5.9): a document needs `Subject`
//! and `Type`; its `Account` must exist. An attachment needs `Document` (an existing document), `FileName` and
//! `Attachment` (the file as base64). The sandbox keeps the decoded bytes, and a processed invoice's e-mail lists
//! the files of its document.

use std::sync::Arc;

use axum::http::StatusCode;
use base64::Engine;
use serde_json::json;

use super::{ApiResult, Ctx, Reply, ok};
use crate::Inner;
use crate::error::ApiError;
use crate::i18n::{Label, Msg};
use crate::odata::body::{self, Props};
use crate::odata::query::{self, ListRules, QueryOptions};
use crate::odata::{FieldDef, Resource, Ty, Val, entity_json, ro, rw};
use crate::world::{Document, DocumentAttachment};

/// Document types the sandbox knows (Exact has many more): 10 sales invoice, 20 purchase invoice, 55 miscellaneous,
/// 183 general attachment.
pub(crate) const DOCUMENT_TYPES: &[i64] = &[10, 20, 55, 183];

struct DocumentRow<'a> {
    doc: &'a Document,
    division: u32,
}

const DOCUMENT_FIELDS: &[FieldDef] = &[
    ro("ID", Ty::Guid),
    rw("Subject", Ty::Str),
    rw("Type", Ty::Int32),
    rw("Account", Ty::Guid),
    ro("Division", Ty::Int32),
    ro("Created", Ty::DateTime),
];

impl Resource for DocumentRow<'_> {
    const TYPE: &'static str = "Exact.Web.Api.Models.Documents.Document";
    const SET: &'static str = "documents/Documents";
    const KEY: &'static str = "ID";

    fn fields() -> &'static [FieldDef] {
        DOCUMENT_FIELDS
    }

    fn get(&self, field: &str) -> Val {
        let d = self.doc;
        match field {
            "ID" => Val::Guid(d.id),
            "Subject" => Val::str(&d.subject),
            "Type" => Val::Int(i64::from(d.document_type)),
            "Account" => Val::opt_guid(d.account),
            "Division" => Val::Int(i64::from(self.division)),
            "Created" => Val::instant(d.created_ms),
            _ => Val::Null,
        }
    }
}

struct AttachmentRow<'a> {
    a: &'a DocumentAttachment,
    division: u32,
}

const ATTACHMENT_FIELDS: &[FieldDef] = &[
    ro("ID", Ty::Guid),
    rw("Document", Ty::Guid),
    rw("FileName", Ty::Str),
    rw("Attachment", Ty::Str),
    ro("FileSize", Ty::Double),
    ro("Division", Ty::Int32),
];

impl Resource for AttachmentRow<'_> {
    const TYPE: &'static str = "Exact.Web.Api.Models.Documents.DocumentAttachment";
    const SET: &'static str = "documents/DocumentAttachments";
    const KEY: &'static str = "ID";

    fn fields() -> &'static [FieldDef] {
        ATTACHMENT_FIELDS
    }

    fn get(&self, field: &str) -> Val {
        let a = self.a;
        match field {
            "ID" => Val::Guid(a.id),
            "Document" => Val::Guid(a.document),
            "FileName" => Val::str(&a.file_name),
            // Exact answers a download URL, not the content; the sandbox answers nothing.
            "Attachment" => Val::Null,
            #[allow(clippy::cast_precision_loss)]
            "FileSize" => Val::Double(a.content.len() as f64),
            "Division" => Val::Int(i64::from(self.division)),
            _ => Val::Null,
        }
    }
}

fn wrong_division() -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "Forbidden - WrongDivision")
}

pub(super) fn list_documents(inner: &Arc<Inner>, ctx: &Ctx, q: &QueryOptions) -> ApiResult {
    let world = inner.world();
    let d = world.division(ctx.division).ok_or_else(wrong_division)?;
    let rows: Vec<_> = d
        .documents
        .iter()
        .map(|doc| DocumentRow {
            doc,
            division: d.code,
        })
        .collect();
    ok(query::list(&rows, q, &ctx.url, ListRules::default()))
}

pub(super) fn create_document(inner: &Arc<Inner>, ctx: &Ctx, raw: &[u8]) -> ApiResult {
    let obj = body::object(raw)?;
    let p = Props::parse(&obj, DOCUMENT_FIELDS, &[], DocumentRow::TYPE)?;
    let mut world = inner.world();
    let d = world
        .divisions
        .get_mut(&ctx.division)
        .ok_or_else(wrong_division)?;
    let mut errors = Vec::new();
    if p.text("Subject").is_none() {
        errors.push(Msg::Mandatory(Label::Subject));
    }
    match p.i64("Type") {
        None => errors.push(Msg::Mandatory(Label::Type)),
        Some(t) if !DOCUMENT_TYPES.contains(&t) => errors.push(Msg::InvalidValue(Label::Type)),
        Some(_) => {}
    }
    let account = p.guid("Account");
    if let Some(a) = account
        && d.account(a).is_none()
    {
        errors.push(Msg::InvalidReference(Label::Account));
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(ctx.lang, &errors));
    }
    let doc = Document {
        id: crate::world::new_id(),
        subject: p.text("Subject").unwrap_or_default(),
        document_type: p
            .i64("Type")
            .and_then(|t| i32::try_from(t).ok())
            .unwrap_or_default(),
        account,
        created_ms: ctx.now_ms,
    };
    let body = json!({ "d": entity_json(&DocumentRow { doc: &doc, division: d.code }, &ctx.url, None, &[]) });
    d.documents.push(doc);
    Ok(Reply::Json(StatusCode::CREATED, body))
}

pub(super) fn list_attachments(inner: &Arc<Inner>, ctx: &Ctx, q: &QueryOptions) -> ApiResult {
    let world = inner.world();
    let d = world.division(ctx.division).ok_or_else(wrong_division)?;
    let rows: Vec<_> = d
        .document_attachments
        .iter()
        .map(|a| AttachmentRow {
            a,
            division: d.code,
        })
        .collect();
    ok(query::list(&rows, q, &ctx.url, ListRules::default()))
}

pub(super) fn create_attachment(inner: &Arc<Inner>, ctx: &Ctx, raw: &[u8]) -> ApiResult {
    let obj = body::object(raw)?;
    let p = Props::parse(&obj, ATTACHMENT_FIELDS, &[], AttachmentRow::TYPE)?;
    let mut world = inner.world();
    let d = world
        .divisions
        .get_mut(&ctx.division)
        .ok_or_else(wrong_division)?;
    let mut errors = Vec::new();
    let document = p.guid("Document");
    match document {
        None => errors.push(Msg::Mandatory(Label::Document)),
        Some(doc) if !d.documents.iter().any(|x| x.id == doc) => {
            errors.push(Msg::InvalidReference(Label::Document));
        }
        Some(_) => {}
    }
    if p.text("FileName").is_none() {
        errors.push(Msg::Mandatory(Label::FileName));
    }
    let content = match p.text("Attachment") {
        None => {
            errors.push(Msg::Mandatory(Label::Attachment));
            None
        }
        Some(b64) => match base64::engine::general_purpose::STANDARD.decode(b64.as_bytes()) {
            Ok(bytes) => Some(bytes),
            Err(_) => {
                errors.push(Msg::InvalidValue(Label::Attachment));
                None
            }
        },
    };
    let (Some(document), Some(content), true) = (document, content, errors.is_empty()) else {
        return Err(ApiError::validation(ctx.lang, &errors));
    };
    let a = DocumentAttachment {
        id: crate::world::new_id(),
        document,
        file_name: p.text("FileName").unwrap_or_default(),
        content,
    };
    let body = json!({ "d": entity_json(&AttachmentRow { a: &a, division: d.code }, &ctx.url, None, &[]) });
    d.document_attachments.push(a);
    Ok(Reply::Json(StatusCode::CREATED, body))
}
