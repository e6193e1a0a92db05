//! `salesinvoice/SalesInvoices` (with inline lines), `salesinvoice/SalesInvoiceLines` and
//! `salesinvoice/PrintedSalesInvoices` (processing: number, receivable, e-mail, webhook).

use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::{ApiResult, Ctx, Reply, guid_key, ok};
use crate::Inner;
use crate::error::ApiError;
use crate::i18n::{Label, Msg};
use crate::odata::body::{self, Props, day_start};
use crate::odata::query::{self, ListRules, QueryOptions};
use crate::odata::{FieldDef, Resource, Ty, UrlCtx, Val, entity_json, ro, rw};
use crate::world::{
    Division, Journal, Numbering, Receivable, SalesInvoice, SalesInvoiceLine, SentEmail,
};

const STATUS_OPEN: i32 = 20;
const STATUS_PROCESSED: i32 = 50;
const DAY_MS: i64 = 86_400_000;
const LINES: &str = "SalesInvoiceLines";

pub(crate) fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

struct InvoiceRow<'a> {
    inv: &'a SalesInvoice,
    d: &'a Division,
}

const INVOICE_FIELDS: &[FieldDef] = &[
    ro("InvoiceID", Ty::Guid),
    rw("Journal", Ty::Str),
    ro("JournalDescription", Ty::Str),
    rw("Type", Ty::Int32),
    ro("TypeDescription", Ty::Str),
    rw("OrderedBy", Ty::Guid),
    ro("OrderedByName", Ty::Str),
    rw("OrderedByContactPerson", Ty::Guid),
    rw("InvoiceTo", Ty::Guid),
    ro("InvoiceToName", Ty::Str),
    rw("InvoiceToContactPerson", Ty::Guid),
    ro("InvoiceToContactPersonFullName", Ty::Str),
    rw("Description", Ty::Str),
    rw("YourRef", Ty::Str),
    rw("PaymentReference", Ty::Str),
    rw("PaymentCondition", Ty::Str),
    ro("PaymentConditionDescription", Ty::Str),
    rw("Currency", Ty::Str),
    rw("OrderDate", Ty::DateTime),
    rw("InvoiceDate", Ty::DateTime),
    rw("DueDate", Ty::DateTime),
    ro("InvoiceNumber", Ty::Int32),
    ro("Status", Ty::Int16),
    ro("StatusDescription", Ty::Str),
    rw("Remarks", Ty::Str),
    ro("AmountDC", Ty::Double),
    ro("AmountFC", Ty::Double),
    ro("AmountFCExclVat", Ty::Double),
    ro("AmountDCExclVat", Ty::Double),
    ro("VATAmountDC", Ty::Double),
    ro("VATAmountFC", Ty::Double),
    ro("Division", Ty::Int32),
    ro("Created", Ty::DateTime),
    ro("Modified", Ty::DateTime),
    rw("Document", Ty::Guid),
];

impl Resource for InvoiceRow<'_> {
    const TYPE: &'static str = "Exact.Web.Api.Models.SalesInvoice.SalesInvoice";
    const SET: &'static str = "salesinvoice/SalesInvoices";
    const KEY: &'static str = "InvoiceID";

    fn fields() -> &'static [FieldDef] {
        INVOICE_FIELDS
    }

    fn navs() -> &'static [&'static str] {
        &[LINES]
    }

    fn get(&self, field: &str) -> Val {
        let (i, d) = (self.inv, self.d);
        let account_name = |id: Uuid| d.account(id).map_or(Val::Null, |a| Val::str(&a.name));
        match field {
            "InvoiceID" => Val::Guid(i.invoice_id),
            "Document" => Val::opt_guid(i.document),
            "Journal" => Val::str(&i.journal),
            "JournalDescription" => d
                .journal(&i.journal)
                .map_or(Val::Null, |j| Val::str(&j.description)),
            "Type" => Val::Int(i64::from(i.invoice_type)),
            "TypeDescription" => Val::str(if i.invoice_type == 8021 {
                "Sales credit note"
            } else {
                "Sales invoice"
            }),
            "OrderedBy" => Val::Guid(i.ordered_by),
            "OrderedByName" => account_name(i.ordered_by),
            "OrderedByContactPerson" => Val::opt_guid(i.ordered_by_contact_person),
            "InvoiceTo" => Val::Guid(i.invoice_to),
            "InvoiceToName" => account_name(i.invoice_to),
            "InvoiceToContactPerson" => Val::opt_guid(i.invoice_to_contact_person),
            "InvoiceToContactPersonFullName" => i
                .invoice_to_contact_person
                .and_then(|c| d.contact(c))
                .map_or(Val::Null, |c| {
                    Val::Str(
                        [c.first_name.as_deref(), c.last_name.as_deref()]
                            .into_iter()
                            .flatten()
                            .collect::<Vec<_>>()
                            .join(" "),
                    )
                }),
            "Description" => Val::opt_str(&i.description),
            "YourRef" => Val::opt_str(&i.your_ref),
            "PaymentReference" => Val::opt_str(&i.payment_reference),
            "PaymentCondition" => Val::opt_str(&i.payment_condition),
            "PaymentConditionDescription" => i
                .payment_condition
                .as_deref()
                .and_then(|c| d.payment_condition(c))
                .map_or(Val::Null, |p| Val::str(&p.description)),
            "Currency" => Val::str(&i.currency),
            "OrderDate" => Val::opt_date(i.order_date_ms),
            "InvoiceDate" => Val::opt_date(i.invoice_date_ms),
            "DueDate" => Val::opt_date(i.due_date_ms),
            "InvoiceNumber" => Val::opt_int(i.invoice_number),
            "Status" => Val::Int(i64::from(i.status)),
            "StatusDescription" => Val::str(if i.status == STATUS_PROCESSED {
                "Processed"
            } else {
                "Open"
            }),
            "Remarks" => Val::opt_str(&i.remarks),
            "AmountDC" | "AmountFC" => Val::Double(i.amount_fc),
            "AmountFCExclVat" | "AmountDCExclVat" => Val::Double(i.amount_fc_excl_vat),
            "VATAmountDC" | "VATAmountFC" => Val::Double(i.vat_amount_fc),
            "Division" => Val::Int(i64::from(d.code)),
            "Created" => Val::instant(i.created_ms),
            "Modified" => Val::instant(i.modified_ms),
            _ => Val::Null,
        }
    }

    fn expand(&self, _nav: &str, ctx: &UrlCtx, sub_select: &[String]) -> Value {
        let select = (!sub_select.is_empty()).then_some(sub_select);
        let results: Vec<Value> = self
            .inv
            .lines
            .iter()
            .map(|l| {
                let row = LineRow {
                    l,
                    division: self.d.code,
                };
                entity_json(&row, ctx, select, &[])
            })
            .collect();
        json!({ "results": results })
    }
}

struct LineRow<'a> {
    l: &'a SalesInvoiceLine,
    division: u32,
}

const LINE_FIELDS: &[FieldDef] = &[
    ro("ID", Ty::Guid),
    ro("InvoiceID", Ty::Guid),
    ro("LineNumber", Ty::Int32),
    rw("Item", Ty::Guid),
    ro("ItemCode", Ty::Str),
    ro("ItemDescription", Ty::Str),
    rw("Description", Ty::Str),
    rw("Quantity", Ty::Double),
    rw("UnitPrice", Ty::Double),
    rw("NetPrice", Ty::Double),
    rw("Discount", Ty::Double),
    ro("AmountFC", Ty::Double),
    ro("AmountDC", Ty::Double),
    rw("VATCode", Ty::Str),
    ro("VATPercentage", Ty::Double),
    ro("VATAmountFC", Ty::Double),
    ro("VATAmountDC", Ty::Double),
    rw("Notes", Ty::Str),
    rw("StartTime", Ty::DateTime),
    rw("EndTime", Ty::DateTime),
    rw("DeliveryDate", Ty::DateTime),
    rw("UnitCode", Ty::Str),
    ro("GLAccount", Ty::Guid),
    ro("Division", Ty::Int32),
];

impl Resource for LineRow<'_> {
    const TYPE: &'static str = "Exact.Web.Api.Models.SalesInvoice.SalesInvoiceLine";
    const SET: &'static str = "salesinvoice/SalesInvoiceLines";
    const KEY: &'static str = "ID";

    fn fields() -> &'static [FieldDef] {
        LINE_FIELDS
    }

    fn get(&self, field: &str) -> Val {
        let l = self.l;
        match field {
            "ID" => Val::Guid(l.id),
            "InvoiceID" => Val::Guid(l.invoice_id),
            "LineNumber" => Val::Int(i64::from(l.line_number)),
            "Item" => Val::Guid(l.item),
            "ItemCode" => Val::str(&l.item_code),
            "ItemDescription" => Val::str(&l.item_description),
            "Description" => Val::opt_str(&l.description),
            "Quantity" => Val::Double(l.quantity),
            "UnitPrice" => Val::Double(l.unit_price),
            "NetPrice" => Val::Double(l.net_price),
            "Discount" => Val::Double(l.discount),
            "AmountFC" | "AmountDC" => Val::Double(l.amount_fc),
            "VATCode" => Val::str(&l.vat_code),
            "VATPercentage" => Val::Double(l.vat_percentage),
            "VATAmountFC" | "VATAmountDC" => Val::Double(l.vat_amount_fc),
            "Notes" => Val::opt_str(&l.notes),
            "StartTime" => Val::opt_date(l.start_time_ms),
            "EndTime" => Val::opt_date(l.end_time_ms),
            "DeliveryDate" => Val::opt_date(l.delivery_date_ms),
            "UnitCode" => Val::opt_str(&l.unit_code),
            "Division" => Val::Int(i64::from(self.division)),
            _ => Val::Null,
        }
    }
}

fn division_of<'a>(world: &'a crate::World, ctx: &Ctx) -> Result<&'a Division, ApiError> {
    world
        .division(ctx.division)
        .ok_or_else(|| ApiError::new(StatusCode::FORBIDDEN, "Forbidden - WrongDivision"))
}

fn division_mut<'a>(world: &'a mut crate::World, ctx: &Ctx) -> Result<&'a mut Division, ApiError> {
    world
        .divisions
        .get_mut(&ctx.division)
        .ok_or_else(|| ApiError::new(StatusCode::FORBIDDEN, "Forbidden - WrongDivision"))
}

fn invoice_rows(d: &Division) -> Vec<InvoiceRow<'_>> {
    d.sales_invoices
        .iter()
        .map(|inv| InvoiceRow { inv, d })
        .collect()
}

pub(super) fn list(inner: &Arc<Inner>, ctx: &Ctx, q: &QueryOptions) -> ApiResult {
    let world = inner.world();
    let rows = invoice_rows(division_of(&world, ctx)?);
    ok(query::list(&rows, q, &ctx.url, ListRules::default()))
}

pub(super) fn get(inner: &Arc<Inner>, ctx: &Ctx, key: &Val, q: &QueryOptions) -> ApiResult {
    let world = inner.world();
    let rows = invoice_rows(division_of(&world, ctx)?);
    ok(query::by_key(&rows, key, q, &ctx.url))
}

pub(super) fn lines_of(inner: &Arc<Inner>, ctx: &Ctx, key: &Val, q: &QueryOptions) -> ApiResult {
    let world = inner.world();
    let d = division_of(&world, ctx)?;
    let id = guid_key(key, "SalesInvoices")?;
    let inv = d
        .sales_invoices
        .iter()
        .find(|i| i.invoice_id == id)
        .ok_or_else(|| ApiError::not_found("SalesInvoices"))?;
    let rows: Vec<LineRow<'_>> = inv
        .lines
        .iter()
        .map(|l| LineRow {
            l,
            division: d.code,
        })
        .collect();
    ok(query::list(&rows, q, &ctx.url, ListRules::default()))
}

pub(super) fn list_lines(inner: &Arc<Inner>, ctx: &Ctx, q: &QueryOptions) -> ApiResult {
    let world = inner.world();
    let d = division_of(&world, ctx)?;
    let rows: Vec<LineRow<'_>> = d
        .sales_invoices
        .iter()
        .flat_map(|i| i.lines.iter())
        .map(|l| LineRow {
            l,
            division: d.code,
        })
        .collect();
    ok(query::list(&rows, q, &ctx.url, ListRules::default()))
}

fn bad_lines() -> ApiError {
    ApiError::request_stream("The request should be a valid top-level resource object.")
}

/// The inline lines: an array of objects, each typed against the line fields.
fn parse_lines(obj: &Map<String, Value>) -> Result<Vec<Props>, ApiError> {
    match obj.get(LINES) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::Object(o) => Props::parse(o, LINE_FIELDS, &[], LineRow::TYPE),
                _ => Err(bad_lines()),
            })
            .collect(),
        Some(_) => Err(bad_lines()),
    }
}

/// Several lines with the same problem give one message.
fn push_unique(errors: &mut Vec<Msg>, m: Msg) {
    if !errors.contains(&m) {
        errors.push(m);
    }
}

/// The next number of a sales journal: `YY` + journal code + 4-digit sequence (e.g. 25700001).
fn next_invoice_number(j: &mut Journal, now_ms: i64) -> i64 {
    let year = chrono::DateTime::from_timestamp_millis(now_ms)
        .map_or(2025, |t| chrono::Datelike::year(&t));
    let yy = year.rem_euclid(100);
    let seq = j.last_sequence.entry(yy).or_insert(0);
    *seq += 1;
    let code = j.code.trim();
    let composed = if code.chars().all(|c| c.is_ascii_digit()) && code.len() <= 3 {
        format!("{yy:02}{code}{:04}", *seq).parse::<i64>().ok()
    } else {
        None
    };
    composed.unwrap_or(i64::from(yy) * 1_000_000 + i64::from(*seq))
}

pub(super) fn create(inner: &Arc<Inner>, ctx: &Ctx, raw: &[u8]) -> ApiResult {
    let obj = body::object(raw)?;
    let p = Props::parse(&obj, INVOICE_FIELDS, &[LINES], InvoiceRow::TYPE)?;
    let lines = parse_lines(&obj)?;
    let mut world = inner.world();
    let d = division_mut(&mut world, ctx)?;
    let mut errors = Vec::new();

    let journal = p.text("Journal");
    match journal.as_deref().map(|c| d.journal(c)) {
        None => errors.push(Msg::Mandatory(Label::Journal)),
        Some(None) => errors.push(Msg::InvalidReference(Label::Journal)),
        Some(Some(j)) if j.journal_type != 20 => errors.push(Msg::NotSalesJournal),
        Some(Some(j)) if j.is_blocked => errors.push(Msg::Blocked(Label::Journal)),
        Some(Some(_)) => {}
    }
    let ordered_by = p.guid("OrderedBy");
    match ordered_by {
        None => errors.push(Msg::Mandatory(Label::OrderedBy)),
        Some(a) => match d.account(a) {
            None => errors.push(Msg::InvalidReference(Label::OrderedBy)),
            // As Exact: only a customer, prospect or suspect can be invoiced (a supplier-only relation has no
            // such status), and not while blocked.
            Some(acc)
                if !match acc.status.as_deref() {
                    Some("C" | "P" | "S") => true,
                    None => !acc.is_supplier,
                    Some(_) => false,
                } =>
            {
                errors.push(Msg::InvalidType(Label::OrderedBy));
            }
            Some(acc) if acc.blocked => errors.push(Msg::Blocked(Label::OrderedBy)),
            Some(_) => {}
        },
    }
    let invoice_to = p.guid("InvoiceTo").or(ordered_by);
    if let Some(a) = p.guid("InvoiceTo")
        && d.account(a).is_none()
    {
        errors.push(Msg::InvalidReference(Label::InvoiceTo));
    }
    let contact_of = |contact: Option<Uuid>, account: Option<Uuid>| match contact {
        None => true,
        Some(c) => d.contact(c).is_some_and(|c| Some(c.account) == account),
    };
    if !contact_of(p.guid("InvoiceToContactPerson"), invoice_to) {
        errors.push(Msg::InvalidReference(Label::InvoiceToContactPerson));
    }
    if !contact_of(p.guid("OrderedByContactPerson"), ordered_by) {
        errors.push(Msg::InvalidReference(Label::OrderedByContactPerson));
    }
    let invoice_type = p.i64("Type").unwrap_or(8020);
    if invoice_type != 8020 && invoice_type != 8021 {
        errors.push(Msg::InvalidValue(Label::Type));
    }
    let payment_condition = p.text("PaymentCondition");
    if let Some(pc) = &payment_condition
        && d.payment_condition(pc).is_none()
    {
        errors.push(Msg::InvalidReference(Label::PaymentCondition));
    }
    if lines.is_empty() {
        errors.push(Msg::Mandatory(Label::InvoiceLines));
    }
    let document = p.guid("Document");
    if let Some(doc) = document
        && !d.documents.iter().any(|x| x.id == doc)
    {
        errors.push(Msg::InvalidReference(Label::Document));
    }
    let account_vat = invoice_to
        .and_then(|a| d.account(a))
        .and_then(|a| a.sales_vat_code.clone());
    let invoice_id = crate::world::new_id();
    let mut built = Vec::new();
    for (n, lp) in lines.iter().enumerate() {
        let item = match lp.guid("Item") {
            None => {
                push_unique(&mut errors, Msg::Mandatory(Label::Item));
                None
            }
            Some(id) => match d.items.iter().find(|i| i.id == id) {
                None => {
                    push_unique(&mut errors, Msg::InvalidReference(Label::Item));
                    None
                }
                Some(i) if !i.is_sales_item => {
                    push_unique(&mut errors, Msg::ItemNotSalesItem(i.code.clone()));
                    None
                }
                Some(i) if i.end_date_ms.is_some_and(|e| e <= ctx.now_ms) => {
                    push_unique(&mut errors, Msg::ItemEnded(i.code.clone()));
                    None
                }
                Some(i) => Some(i),
            },
        };
        let vat_code = lp
            .text("VATCode")
            .or_else(|| item.and_then(|i| i.sales_vat_code.clone()))
            .or_else(|| account_vat.clone());
        let vat = match vat_code.as_deref().map(|c| (c, d.vat_code(c))) {
            None => {
                push_unique(&mut errors, Msg::Mandatory(Label::VatCode));
                None
            }
            Some((_, None)) => {
                push_unique(&mut errors, Msg::InvalidReference(Label::VatCode));
                None
            }
            Some((_, Some(v))) if v.is_blocked => {
                push_unique(&mut errors, Msg::Blocked(Label::VatCode));
                None
            }
            Some((c, Some(v))) if !matches!(v.vat_transaction_type.as_str(), "S" | "B") => {
                push_unique(&mut errors, Msg::VatNotForSales(c.trim().to_string()));
                None
            }
            Some((_, Some(v))) => Some(v),
        };
        let (Some(item), Some(vat)) = (item, vat) else {
            continue;
        };
        let quantity = lp.f64("Quantity").unwrap_or(1.0);
        let discount = lp.f64("Discount").unwrap_or(0.0);
        // As Exact: a line without `UnitPrice` keeps a unit price of 0 (printed as such), whatever `NetPrice` is.
        let unit_price = lp.f64("UnitPrice").unwrap_or(0.0);
        let net_price = lp
            .f64("NetPrice")
            .unwrap_or_else(|| round2(unit_price * (1.0 - discount)));
        let amount = round2(net_price * quantity);
        built.push(SalesInvoiceLine {
            id: crate::world::new_id(),
            invoice_id,
            line_number: i32::try_from(n + 1).unwrap_or(i32::MAX),
            item: item.id,
            item_code: item.code.clone(),
            item_description: item.description.clone(),
            description: lp
                .str("Description")
                .or_else(|| Some(item.description.clone())),
            quantity,
            unit_price,
            net_price,
            discount,
            amount_fc: amount,
            vat_code: vat.code.clone(),
            vat_percentage: vat.percentage,
            vat_amount_fc: round2(amount * vat.percentage),
            notes: lp.str("Notes"),
            start_time_ms: lp.date("StartTime"),
            end_time_ms: lp.date("EndTime"),
            delivery_date_ms: lp.date("DeliveryDate"),
            unit_code: lp.str("UnitCode"),
        });
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(ctx.lang, &errors));
    }
    // Checked above; this only unpacks them.
    let (Some(journal_code), Some(ordered_by), Some(invoice_to)) =
        (journal, ordered_by, invoice_to)
    else {
        return Err(ApiError::validation(
            ctx.lang,
            &[Msg::Mandatory(Label::OrderedBy)],
        ));
    };
    // Exact fills the payment condition from the account or the division when it can.
    let payment_condition = payment_condition
        .or_else(|| {
            d.account(invoice_to)
                .and_then(|a| a.payment_condition_sales.clone())
        })
        .or_else(|| d.default_payment_condition.clone());
    let excl: f64 = round2(built.iter().map(|l| l.amount_fc).sum());
    let vat: f64 = round2(built.iter().map(|l| l.vat_amount_fc).sum());
    let currency = p.text("Currency").unwrap_or_else(|| d.currency.clone());
    let now = ctx.now_ms;
    let invoice_number = match d
        .journals
        .iter_mut()
        .find(|j| j.code.trim() == journal_code.trim())
    {
        Some(j) if j.numbering == Numbering::AtEntry && inner.cfg.beliefs.numbering_at_entry => {
            Some(next_invoice_number(j, now))
        }
        _ => None,
    };
    let inv = SalesInvoice {
        invoice_id,
        journal: journal_code.trim().to_string(),
        invoice_type: i32::try_from(invoice_type).unwrap_or(8020),
        ordered_by,
        invoice_to,
        invoice_to_contact_person: p.guid("InvoiceToContactPerson"),
        ordered_by_contact_person: p.guid("OrderedByContactPerson"),
        description: p.str("Description"),
        your_ref: p.str("YourRef"),
        payment_reference: p.str("PaymentReference"),
        payment_condition,
        currency,
        order_date_ms: p.date("OrderDate").or(Some(day_start(now))),
        invoice_date_ms: p.date("InvoiceDate").or(Some(day_start(now))),
        due_date_ms: p.date("DueDate"),
        invoice_number,
        status: STATUS_OPEN,
        remarks: p.str("Remarks"),
        amount_fc_excl_vat: excl,
        vat_amount_fc: vat,
        amount_fc: round2(excl + vat),
        lines: built,
        created_ms: now,
        modified_ms: now,
        document,
    };
    let body = json!({ "d": entity_json(&InvoiceRow { inv: &inv, d }, &ctx.url, None, &[]) });
    d.sales_invoices.push(inv);
    Ok(Reply::Json(StatusCode::CREATED, body))
}

pub(super) fn update(inner: &Arc<Inner>, ctx: &Ctx, key: &Val, raw: &[u8]) -> ApiResult {
    let obj = body::object(raw)?;
    let p = Props::parse(&obj, INVOICE_FIELDS, &[LINES], InvoiceRow::TYPE)?;
    let id = guid_key(key, "SalesInvoices")?;
    let mut world = inner.world();
    let d = division_mut(&mut world, ctx)?;
    let Some(index) = d.sales_invoices.iter().position(|i| i.invoice_id == id) else {
        return Err(ApiError::not_found("SalesInvoices"));
    };
    if d.sales_invoices[index].status == STATUS_PROCESSED {
        return Err(ApiError::validation(ctx.lang, &[Msg::AlreadyProcessed]));
    }
    let mut errors = Vec::new();
    if let Some(pc) = p.text("PaymentCondition")
        && d.payment_condition(&pc).is_none()
    {
        errors.push(Msg::InvalidReference(Label::PaymentCondition));
    }
    if let Some(c) = p.guid("InvoiceToContactPerson") {
        let account = d.sales_invoices[index].invoice_to;
        if d.contact(c).is_none_or(|c| c.account != account) {
            errors.push(Msg::InvalidReference(Label::InvoiceToContactPerson));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(ctx.lang, &errors));
    }
    let inv = &mut d.sales_invoices[index];
    let set_text = |field: &str, target: &mut Option<String>| {
        if p.has(field) {
            *target = p.str(field);
        }
    };
    set_text("Description", &mut inv.description);
    set_text("YourRef", &mut inv.your_ref);
    set_text("PaymentReference", &mut inv.payment_reference);
    set_text("Remarks", &mut inv.remarks);
    set_text("PaymentCondition", &mut inv.payment_condition);
    if p.has("OrderDate") {
        inv.order_date_ms = p.date("OrderDate");
    }
    if p.has("InvoiceDate") {
        inv.invoice_date_ms = p.date("InvoiceDate");
    }
    if p.has("DueDate") {
        inv.due_date_ms = p.date("DueDate");
    }
    if p.has("InvoiceToContactPerson") {
        inv.invoice_to_contact_person = p.guid("InvoiceToContactPerson");
    }
    inv.modified_ms = ctx.now_ms;
    Ok(Reply::NoContent)
}

pub(super) fn delete(inner: &Arc<Inner>, ctx: &Ctx, key: &Val) -> ApiResult {
    let id = guid_key(key, "SalesInvoices")?;
    let mut world = inner.world();
    let d = division_mut(&mut world, ctx)?;
    let Some(index) = d.sales_invoices.iter().position(|i| i.invoice_id == id) else {
        return Err(ApiError::not_found("SalesInvoices"));
    };
    if d.sales_invoices[index].status == STATUS_PROCESSED {
        return Err(ApiError::validation(ctx.lang, &[Msg::AlreadyProcessed]));
    }
    d.sales_invoices.remove(index);
    Ok(Reply::NoContent)
}

const PRINTED_TYPE: &str = "Exact.Web.Api.Models.SalesInvoice.PrintedSalesInvoice";

const PRINTED_FIELDS: &[FieldDef] = &[
    rw("InvoiceID", Ty::Guid),
    rw("SendEmailToCustomer", Ty::Bool),
    rw("SenderEmailAddress", Ty::Str),
    rw("SendInvoiceToCustomerPostbox", Ty::Bool),
    rw("SendInvoiceViaPeppol", Ty::Bool),
    rw("SendOutputBasedOnAccount", Ty::Bool),
    rw("DocumentLayout", Ty::Guid),
    rw("EmailLayout", Ty::Guid),
    rw("ExtraText", Ty::Str),
    rw("InvoiceDate", Ty::DateTime),
    rw("ReportingPeriod", Ty::Int32),
    rw("ReportingYear", Ty::Int32),
    rw("PostboxSender", Ty::Guid),
    ro("Document", Ty::Guid),
    ro("DocumentCreationSuccess", Ty::Str),
    ro("DocumentCreationError", Ty::Str),
    ro("EmailCreationSuccess", Ty::Str),
    ro("EmailCreationError", Ty::Str),
    ro("PostboxMessageCreationSuccess", Ty::Str),
    ro("PostboxMessageCreationError", Ty::Str),
    ro("PeppolCreationSuccess", Ty::Str),
    ro("PeppolCreationError", Ty::Str),
    ro("Division", Ty::Int32),
];

/// `PrintedSalesInvoices`: process (book, number, e-mail) an open invoice.
pub(super) fn process(inner: &Arc<Inner>, ctx: &Ctx, raw: &[u8]) -> ApiResult {
    let obj = body::object(raw)?;
    let p = Props::parse(&obj, PRINTED_FIELDS, &[], PRINTED_TYPE)?;
    let Some(invoice_id) = p.guid("InvoiceID") else {
        return Err(ApiError::validation(
            ctx.lang,
            &[Msg::Mandatory(Label::Invoice)],
        ));
    };
    let send_email = p.bool("SendEmailToCustomer").unwrap_or(false);
    let now = ctx.now_ms;
    let mut world = inner.world();
    let d = division_mut(&mut world, ctx)?;
    let Some(index) = d
        .sales_invoices
        .iter()
        .position(|i| i.invoice_id == invoice_id)
    else {
        return Err(ApiError::validation(
            ctx.lang,
            &[Msg::InvalidReference(Label::Invoice)],
        ));
    };
    if d.sales_invoices[index].status != STATUS_OPEN {
        return Err(ApiError::validation(ctx.lang, &[Msg::AlreadyProcessed]));
    }
    let inv = &d.sales_invoices[index];
    let condition = inv
        .payment_condition
        .clone()
        .or_else(|| {
            d.account(inv.invoice_to)
                .and_then(|a| a.payment_condition_sales.clone())
        })
        .or_else(|| d.default_payment_condition.clone());
    let Some(days) = condition
        .as_deref()
        .and_then(|c| d.payment_condition(c))
        .map(|pc| pc.payment_days)
    else {
        return Err(ApiError::validation(
            ctx.lang,
            &[Msg::Mandatory(Label::PaymentCondition)],
        ));
    };
    let recipient = inv
        .invoice_to_contact_person
        .and_then(|c| d.contact(c))
        .and_then(|c| c.email.clone())
        .or_else(|| d.account(inv.invoice_to).and_then(|a| a.email.clone()))
        .filter(|e| !e.trim().is_empty());
    let journal_code = inv.journal.clone();

    // Everything is valid: apply.
    let number = match d.sales_invoices[index].invoice_number {
        Some(n) => n,
        None => match d
            .journals
            .iter_mut()
            .find(|j| j.code.trim() == journal_code.trim())
        {
            Some(j) => next_invoice_number(j, now),
            None => {
                return Err(ApiError::validation(
                    ctx.lang,
                    &[Msg::InvalidReference(Label::Journal)],
                ));
            }
        },
    };
    let inv = &mut d.sales_invoices[index];
    let invoice_date = p
        .date("InvoiceDate")
        .or(inv.invoice_date_ms)
        .unwrap_or_else(|| day_start(now));
    inv.status = STATUS_PROCESSED;
    inv.invoice_number = Some(number);
    inv.invoice_date_ms = Some(invoice_date);
    inv.due_date_ms = Some(invoice_date + i64::from(days) * DAY_MS);
    inv.payment_condition = condition;
    inv.modified_ms = now;
    let receivable = Receivable {
        id: crate::world::new_id(),
        entry_id: crate::world::new_id(),
        transaction_entry_id: inv.invoice_id,
        invoice_number: Some(number),
        invoice_date_ms: Some(invoice_date),
        due_date_ms: inv.due_date_ms,
        journal: inv.journal.clone(),
        your_ref: inv.your_ref.clone(),
        payment_reference: inv.payment_reference.clone(),
        description: inv.description.clone(),
        account: inv.invoice_to,
        currency: inv.currency.clone(),
        amount_dc: inv.amount_fc,
        is_fully_paid: false,
        status: STATUS_OPEN,
        last_payment_date_ms: None,
        end_date_ms: None,
    };
    d.receivables.push(receivable);
    let (email_success, email_error) = match (send_email, recipient) {
        (false, _) => (None, None),
        (true, Some(to)) => {
            let attachments = d
                .sales_invoices
                .iter()
                .find(|i| i.invoice_id == invoice_id)
                .and_then(|i| i.document)
                .map(|doc| {
                    d.document_attachments
                        .iter()
                        .filter(|a| a.document == doc)
                        .map(|a| a.file_name.clone())
                        .collect()
                })
                .unwrap_or_default();
            d.emails_sent.push(SentEmail {
                invoice_id,
                invoice_number: Some(number),
                to: to.clone(),
                at_ms: now,
                attachments,
            });
            (Some(Msg::EmailSent(to).text(ctx.lang)), None)
        }
        (true, None) => (None, Some(Msg::NoEmailAddress.text(ctx.lang))),
    };
    let endpoint = ctx.entity_url("salesinvoice/SalesInvoices", &Val::Guid(invoice_id));
    let clock_now = chrono::DateTime::from_timestamp_millis(now).unwrap_or_default();
    crate::webhooks::queue_event(
        &mut world,
        ctx.division,
        "SalesInvoices",
        invoice_id,
        endpoint,
        clock_now,
    );

    let opt = |v: Option<String>| v.map_or(Value::Null, Value::String);
    let body = json!({ "d": {
        "__metadata": {
            "uri": ctx.entity_url("salesinvoice/PrintedSalesInvoices", &Val::Guid(invoice_id)),
            "type": PRINTED_TYPE,
        },
        "InvoiceID": invoice_id.to_string(),
        "SendEmailToCustomer": send_email,
        "SenderEmailAddress": opt(p.str("SenderEmailAddress")),
        "SendInvoiceToCustomerPostbox": p.bool("SendInvoiceToCustomerPostbox").unwrap_or(false),
        "SendInvoiceViaPeppol": p.bool("SendInvoiceViaPeppol").unwrap_or(false),
        "SendOutputBasedOnAccount": p.bool("SendOutputBasedOnAccount").unwrap_or(false),
        "DocumentLayout": opt(p.guid("DocumentLayout").map(|g| g.to_string())),
        "EmailLayout": opt(p.guid("EmailLayout").map(|g| g.to_string())),
        "ExtraText": opt(p.str("ExtraText")),
        "InvoiceDate": Val::DateTime(invoice_date).to_json(),
        "ReportingPeriod": p.i64("ReportingPeriod"),
        "ReportingYear": p.i64("ReportingYear"),
        "Document": crate::world::new_id().to_string(),
        "DocumentCreationSuccess": Msg::DocumentCreated.text(ctx.lang),
        "DocumentCreationError": null,
        "EmailCreationSuccess": opt(email_success),
        "EmailCreationError": opt(email_error),
        "PostboxMessageCreationSuccess": null,
        "PostboxMessageCreationError": null,
        "PeppolCreationSuccess": null,
        "PeppolCreationError": null,
        "Division": ctx.division,
    }});
    Ok(Reply::Json(StatusCode::CREATED, body))
}
