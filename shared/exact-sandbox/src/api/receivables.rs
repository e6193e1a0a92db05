//! `cashflow/Receivables`.

use std::sync::Arc;

use super::{ApiResult, Ctx, ok};
use crate::Inner;
use crate::error::ApiError;
use crate::odata::query::{self, ListRules, QueryOptions};
use crate::odata::{FieldDef, Resource, Ty, Val, ro};
use crate::world::{Division, Receivable};

struct ReceivableRow<'a> {
    r: &'a Receivable,
    d: &'a Division,
}

const FIELDS: &[FieldDef] = &[
    ro("ID", Ty::Guid),
    ro("EntryID", Ty::Guid),
    ro("TransactionEntryID", Ty::Guid),
    ro("InvoiceNumber", Ty::Int32),
    ro("InvoiceDate", Ty::DateTime),
    ro("DueDate", Ty::DateTime),
    ro("Journal", Ty::Str),
    ro("YourRef", Ty::Str),
    ro("PaymentReference", Ty::Str),
    ro("Description", Ty::Str),
    ro("Account", Ty::Guid),
    ro("AccountName", Ty::Str),
    ro("Currency", Ty::Str),
    ro("AmountDC", Ty::Double),
    ro("AmountFC", Ty::Double),
    ro("IsFullyPaid", Ty::Bool),
    ro("Status", Ty::Int16),
    ro("LastPaymentDate", Ty::DateTime),
    ro("EndDate", Ty::DateTime),
    ro("Division", Ty::Int32),
];

impl Resource for ReceivableRow<'_> {
    const TYPE: &'static str = "Exact.Web.Api.Models.Cashflow.Receivable";
    const SET: &'static str = "cashflow/Receivables";
    const KEY: &'static str = "ID";

    fn fields() -> &'static [FieldDef] {
        FIELDS
    }

    fn get(&self, field: &str) -> Val {
        let r = self.r;
        match field {
            "ID" => Val::Guid(r.id),
            "EntryID" => Val::Guid(r.entry_id),
            "TransactionEntryID" => Val::Guid(r.transaction_entry_id),
            "InvoiceNumber" => Val::opt_int(r.invoice_number),
            "InvoiceDate" => Val::opt_date(r.invoice_date_ms),
            "DueDate" => Val::opt_date(r.due_date_ms),
            "Journal" => Val::str(&r.journal),
            "YourRef" => Val::opt_str(&r.your_ref),
            "PaymentReference" => Val::opt_str(&r.payment_reference),
            "Description" => Val::opt_str(&r.description),
            "Account" => Val::Guid(r.account),
            "AccountName" => self
                .d
                .account(r.account)
                .map_or(Val::Null, |a| Val::str(&a.name)),
            "Currency" => Val::str(&r.currency),
            "AmountDC" | "AmountFC" => Val::Double(r.amount_dc),
            "IsFullyPaid" => Val::Bool(r.is_fully_paid),
            "Status" => Val::Int(i64::from(r.status)),
            "LastPaymentDate" => Val::opt_instant(r.last_payment_date_ms),
            "EndDate" => Val::opt_date(r.end_date_ms),
            "Division" => Val::Int(i64::from(self.d.code)),
            _ => Val::Null,
        }
    }
}

fn rows(d: &Division) -> Vec<ReceivableRow<'_>> {
    d.receivables
        .iter()
        .map(|r| ReceivableRow { r, d })
        .collect()
}

fn division<'a>(world: &'a crate::World, ctx: &Ctx) -> Result<&'a Division, ApiError> {
    world
        .division(ctx.division)
        .ok_or_else(|| ApiError::not_found("Receivables"))
}

pub(super) fn list(inner: &Arc<Inner>, ctx: &Ctx, q: &QueryOptions) -> ApiResult {
    let world = inner.world();
    let rows = rows(division(&world, ctx)?);
    ok(query::list(&rows, q, &ctx.url, ListRules::default()))
}

pub(super) fn get(inner: &Arc<Inner>, ctx: &Ctx, key: &Val, q: &QueryOptions) -> ApiResult {
    let world = inner.world();
    let rows = rows(division(&world, ctx)?);
    ok(query::by_key(&rows, key, q, &ctx.url))
}
