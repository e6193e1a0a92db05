//! Read-only code lists: `logistics/Items`, `financial/Journals`, `vat/VATCodes`, `cashflow/PaymentConditions`.

use std::sync::Arc;

use super::{ApiResult, Ctx, ok};
use crate::Inner;
use crate::error::ApiError;
use crate::odata::query::{self, ListRules, QueryOptions};
use crate::odata::{FieldDef, Resource, Ty, Val, ro};
use crate::world::{Item, Journal, PaymentCondition, VatCode};

/// Fields accepted by Exact's mandatory filtering on Items.
pub(crate) const ITEM_FILTER_FIELDS: &[&str] = &[
    "ID",
    "Code",
    "Description",
    "Barcode",
    "Created",
    "Modified",
];

struct Row<'a, T> {
    r: &'a T,
    division: u32,
}

const ITEM_FIELDS: &[FieldDef] = &[
    ro("ID", Ty::Guid),
    ro("Code", Ty::Str),
    ro("Description", Ty::Str),
    ro("IsSalesItem", Ty::Bool),
    ro("SalesVatCode", Ty::Str),
    ro("StartDate", Ty::DateTime),
    ro("EndDate", Ty::DateTime),
    ro("Unit", Ty::Str),
    ro("Barcode", Ty::Str),
    ro("IsStockItem", Ty::Bool),
    ro("Division", Ty::Int32),
    ro("Created", Ty::DateTime),
    ro("Modified", Ty::DateTime),
];

impl Resource for Row<'_, Item> {
    const TYPE: &'static str = "Exact.Web.Api.Models.Logistics.Item";
    const SET: &'static str = "logistics/Items";
    const KEY: &'static str = "ID";

    fn fields() -> &'static [FieldDef] {
        ITEM_FIELDS
    }

    fn get(&self, field: &str) -> Val {
        let i = self.r;
        match field {
            "ID" => Val::Guid(i.id),
            "Code" => Val::str(&i.code),
            "Description" => Val::str(&i.description),
            "IsSalesItem" => Val::Bool(i.is_sales_item),
            "SalesVatCode" => Val::opt_str(&i.sales_vat_code),
            "StartDate" => Val::opt_date(i.start_date_ms),
            "EndDate" => Val::opt_date(i.end_date_ms),
            "Unit" => Val::str(&i.unit),
            "IsStockItem" => Val::Bool(false),
            "Division" => Val::Int(i64::from(self.division)),
            "Created" => Val::DateTime(i.created_ms),
            "Modified" => Val::DateTime(i.modified_ms),
            _ => Val::Null,
        }
    }
}

const JOURNAL_FIELDS: &[FieldDef] = &[
    ro("ID", Ty::Guid),
    ro("Code", Ty::Str),
    ro("Description", Ty::Str),
    ro("Type", Ty::Int32),
    ro("IsBlocked", Ty::Bool),
    ro("Division", Ty::Int32),
];

impl Resource for Row<'_, Journal> {
    const TYPE: &'static str = "Exact.Web.Api.Models.Financial.Journal";
    const SET: &'static str = "financial/Journals";
    const KEY: &'static str = "ID";

    fn fields() -> &'static [FieldDef] {
        JOURNAL_FIELDS
    }

    fn get(&self, field: &str) -> Val {
        let j = self.r;
        match field {
            "ID" => Val::Guid(j.id),
            "Code" => Val::str(&j.code),
            "Description" => Val::str(&j.description),
            "Type" => Val::Int(i64::from(j.journal_type)),
            "IsBlocked" => Val::Bool(j.is_blocked),
            "Division" => Val::Int(i64::from(self.division)),
            _ => Val::Null,
        }
    }
}

const VAT_FIELDS: &[FieldDef] = &[
    ro("ID", Ty::Guid),
    ro("Code", Ty::Str),
    ro("Description", Ty::Str),
    ro("Percentage", Ty::Double),
    ro("Type", Ty::Str),
    ro("VATTransactionType", Ty::Str),
    ro("IsBlocked", Ty::Bool),
    ro("Division", Ty::Int32),
];

impl Resource for Row<'_, VatCode> {
    const TYPE: &'static str = "Exact.Web.Api.Models.VAT.VATCode";
    const SET: &'static str = "vat/VATCodes";
    const KEY: &'static str = "ID";

    fn fields() -> &'static [FieldDef] {
        VAT_FIELDS
    }

    fn get(&self, field: &str) -> Val {
        let v = self.r;
        match field {
            "ID" => Val::Guid(v.id),
            "Code" => Val::str(&v.code),
            "Description" => Val::str(&v.description),
            "Percentage" => Val::Double(v.percentage),
            "Type" => Val::str("E"),
            "VATTransactionType" => Val::str(&v.vat_transaction_type),
            "IsBlocked" => Val::Bool(v.is_blocked),
            "Division" => Val::Int(i64::from(self.division)),
            _ => Val::Null,
        }
    }
}

const PC_FIELDS: &[FieldDef] = &[
    ro("ID", Ty::Guid),
    ro("Code", Ty::Str),
    ro("Description", Ty::Str),
    ro("PaymentDays", Ty::Int32),
    ro("Division", Ty::Int32),
];

impl Resource for Row<'_, PaymentCondition> {
    const TYPE: &'static str = "Exact.Web.Api.Models.Cashflow.PaymentCondition";
    const SET: &'static str = "cashflow/PaymentConditions";
    const KEY: &'static str = "ID";

    fn fields() -> &'static [FieldDef] {
        PC_FIELDS
    }

    fn get(&self, field: &str) -> Val {
        let p = self.r;
        match field {
            "ID" => Val::Guid(p.id),
            "Code" => Val::str(&p.code),
            "Description" => Val::str(&p.description),
            "PaymentDays" => Val::Int(i64::from(p.payment_days)),
            "Division" => Val::Int(i64::from(self.division)),
            _ => Val::Null,
        }
    }
}

fn rows<T>(list: &[T], division: u32) -> Vec<Row<'_, T>> {
    list.iter().map(|r| Row { r, division }).collect()
}

fn answer<'a, R: Resource + 'a>(
    rows: &'a [R],
    key: Option<&Val>,
    q: &QueryOptions,
    ctx: &Ctx,
    rules: ListRules,
) -> ApiResult {
    match key {
        Some(k) => ok(query::by_key(rows, k, q, &ctx.url)),
        None => ok(query::list(rows, q, &ctx.url, rules)),
    }
}

pub(super) fn get(
    inner: &Arc<Inner>,
    ctx: &Ctx,
    set: &str,
    key: Option<&Val>,
    q: &QueryOptions,
) -> ApiResult {
    let world = inner.world();
    let Some(d) = world.division(ctx.division) else {
        return Err(ApiError::not_found(set));
    };
    let plain = ListRules::default();
    match set {
        "logistics/Items" => {
            let rules = ListRules {
                mandatory_filter: Some(ITEM_FILTER_FIELDS),
            };
            answer(&rows(&d.items, d.code), key, q, ctx, rules)
        }
        "financial/Journals" => answer(&rows(&d.journals, d.code), key, q, ctx, plain),
        "vat/VATCodes" => answer(&rows(&d.vat_codes, d.code), key, q, ctx, plain),
        _ => answer(&rows(&d.payment_conditions, d.code), key, q, ctx, plain),
    }
}
