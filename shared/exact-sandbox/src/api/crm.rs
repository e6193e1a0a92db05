//! `crm/Accounts` and `crm/Contacts`.

use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::json;

use super::{ApiResult, Ctx, Reply, ok};
use crate::Inner;
use crate::error::ApiError;
use crate::i18n::{Label, Msg};
use crate::odata::body::{self, Props};
use crate::odata::query::{self, ListRules, QueryOptions};
use crate::odata::{FieldDef, Resource, Ty, Val, entity_json, ro, rw};
use crate::world::{Account, Contact, Division, pad_account_code};

/// Fields accepted by Exact's mandatory filtering on Accounts.
pub(crate) const ACCOUNT_FILTER_FIELDS: &[&str] = &[
    "ID",
    "Code",
    "Name",
    "Email",
    "Status",
    "Modified",
    "Created",
    "VATNumber",
    "ChamberOfCommerce",
    "Postcode",
    "City",
];

pub(crate) struct AccountRow<'a> {
    pub(crate) a: &'a Account,
    pub(crate) division: u32,
}

const ACCOUNT_FIELDS: &[FieldDef] = &[
    ro("ID", Ty::Guid),
    rw("Code", Ty::Str),
    rw("Name", Ty::Str),
    rw("Status", Ty::Str),
    rw("Email", Ty::Str),
    rw("AddressLine1", Ty::Str),
    rw("Postcode", Ty::Str),
    rw("City", Ty::Str),
    rw("Country", Ty::Str),
    rw("Phone", Ty::Str),
    rw("VATNumber", Ty::Str),
    rw("ChamberOfCommerce", Ty::Str),
    rw("PaymentConditionSales", Ty::Str),
    rw("SalesVATCode", Ty::Str),
    rw("MainContact", Ty::Guid),
    rw("Blocked", Ty::Bool),
    rw("IsSupplier", Ty::Bool),
    ro("IsSales", Ty::Bool),
    ro("Type", Ty::Str),
    ro("Division", Ty::Int32),
    ro("Created", Ty::DateTime),
    ro("Modified", Ty::DateTime),
];

impl Resource for AccountRow<'_> {
    const TYPE: &'static str = "Exact.Web.Api.Models.Account";
    const SET: &'static str = "crm/Accounts";
    const KEY: &'static str = "ID";

    fn fields() -> &'static [FieldDef] {
        ACCOUNT_FIELDS
    }

    fn get(&self, field: &str) -> Val {
        let a = self.a;
        match field {
            "ID" => Val::Guid(a.id),
            "Code" => Val::str(&a.code),
            "Name" => Val::str(&a.name),
            "Status" => Val::opt_str(&a.status),
            "Email" => Val::opt_str(&a.email),
            "AddressLine1" => Val::opt_str(&a.address_line1),
            "Postcode" => Val::opt_str(&a.postcode),
            "City" => Val::opt_str(&a.city),
            "Country" => Val::opt_str(&a.country),
            "Phone" => Val::opt_str(&a.phone),
            "VATNumber" => Val::opt_str(&a.vat_number),
            "ChamberOfCommerce" => Val::opt_str(&a.chamber_of_commerce),
            "PaymentConditionSales" => Val::opt_str(&a.payment_condition_sales),
            "SalesVATCode" => Val::opt_str(&a.sales_vat_code),
            "MainContact" => Val::opt_guid(a.main_contact),
            "Blocked" => Val::Bool(a.blocked),
            "IsSupplier" => Val::Bool(a.is_supplier),
            "IsSales" => Val::Bool(a.status.as_deref() == Some("C")),
            "Type" => Val::str("A"),
            "Division" => Val::Int(i64::from(self.division)),
            "Created" => Val::instant(a.created_ms),
            "Modified" => Val::instant(a.modified_ms),
            _ => Val::Null,
        }
    }
}

fn division<'a>(world: &'a crate::World, ctx: &Ctx) -> Result<&'a Division, ApiError> {
    world
        .division(ctx.division)
        .ok_or_else(|| ApiError::new(StatusCode::FORBIDDEN, "Forbidden - WrongDivision"))
}

fn account_rows(d: &Division) -> Vec<AccountRow<'_>> {
    d.accounts
        .iter()
        .map(|a| AccountRow {
            a,
            division: d.code,
        })
        .collect()
}

pub(super) fn list_accounts(inner: &Arc<Inner>, ctx: &Ctx, q: &QueryOptions) -> ApiResult {
    let world = inner.world();
    let rows = account_rows(division(&world, ctx)?);
    let rules = ListRules {
        mandatory_filter: Some(ACCOUNT_FILTER_FIELDS),
    };
    ok(query::list(&rows, q, &ctx.url, rules))
}

pub(super) fn get_account(inner: &Arc<Inner>, ctx: &Ctx, key: &Val, q: &QueryOptions) -> ApiResult {
    let world = inner.world();
    let rows = account_rows(division(&world, ctx)?);
    ok(query::by_key(&rows, key, q, &ctx.url))
}

pub(super) fn create_account(inner: &Arc<Inner>, ctx: &Ctx, raw: &[u8]) -> ApiResult {
    let obj = body::object(raw)?;
    let p = Props::parse(&obj, ACCOUNT_FIELDS, &[], AccountRow::TYPE)?;
    let mut world = inner.world();
    let d = world
        .divisions
        .get_mut(&ctx.division)
        .ok_or_else(|| ApiError::new(StatusCode::FORBIDDEN, "Forbidden - WrongDivision"))?;
    let mut errors = Vec::new();
    if p.text("Name").is_none() {
        errors.push(Msg::Mandatory(Label::Name));
    }
    if let Some(s) = p.text("Status")
        && !["A", "S", "P", "C"].contains(&s.as_str())
    {
        errors.push(Msg::InvalidValue(Label::Status));
    }
    if let Some(pc) = p.text("PaymentConditionSales")
        && d.payment_condition(&pc).is_none()
    {
        errors.push(Msg::InvalidReference(Label::PaymentCondition));
    }
    if let Some(v) = p.text("SalesVATCode")
        && d.vat_code(&v).is_none()
    {
        errors.push(Msg::InvalidReference(Label::VatCode));
    }
    if let Some(c) = p.guid("MainContact")
        && d.contact(c).is_none()
    {
        errors.push(Msg::InvalidReference(Label::Account));
    }
    let code = p.text("Code").map(|c| pad_account_code(&c));
    if let Some(code) = &code
        && d.accounts.iter().any(|a| &a.code == code)
    {
        errors.push(Msg::Duplicate(Label::Code));
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(ctx.lang, &errors));
    }
    let code = code.unwrap_or_else(|| {
        loop {
            let candidate = pad_account_code(&d.next_account_code.to_string());
            d.next_account_code += 1;
            if !d.accounts.iter().any(|a| a.code == candidate) {
                break candidate;
            }
        }
    });
    let a = Account {
        id: crate::world::new_id(),
        code,
        name: p.text("Name").unwrap_or_default(),
        status: p.text("Status"),
        email: p.text("Email"),
        address_line1: p.str("AddressLine1"),
        postcode: p.str("Postcode"),
        city: p.str("City"),
        country: p.str("Country"),
        phone: p.str("Phone"),
        vat_number: p.str("VATNumber"),
        chamber_of_commerce: p.str("ChamberOfCommerce"),
        payment_condition_sales: p.text("PaymentConditionSales"),
        sales_vat_code: p.text("SalesVATCode"),
        main_contact: p.guid("MainContact"),
        blocked: p.bool("Blocked").unwrap_or(false),
        is_supplier: p.bool("IsSupplier").unwrap_or(false),
        created_ms: ctx.now_ms,
        modified_ms: ctx.now_ms,
    };
    let body =
        json!({ "d": entity_json(&AccountRow { a: &a, division: d.code }, &ctx.url, None, &[]) });
    d.accounts.push(a);
    Ok(Reply::Json(StatusCode::CREATED, body))
}

struct ContactRow<'a> {
    c: &'a Contact,
    account_name: Option<String>,
    division: u32,
}

const CONTACT_FIELDS: &[FieldDef] = &[
    ro("ID", Ty::Guid),
    rw("Account", Ty::Guid),
    ro("AccountName", Ty::Str),
    rw("FirstName", Ty::Str),
    rw("LastName", Ty::Str),
    ro("FullName", Ty::Str),
    rw("Email", Ty::Str),
    rw("BusinessEmail", Ty::Str),
    rw("Phone", Ty::Str),
    ro("IsMainContact", Ty::Bool),
    ro("Division", Ty::Int32),
    ro("Created", Ty::DateTime),
    ro("Modified", Ty::DateTime),
];

impl Resource for ContactRow<'_> {
    const TYPE: &'static str = "Exact.Web.Api.Models.Contact";
    const SET: &'static str = "crm/Contacts";
    const KEY: &'static str = "ID";

    fn fields() -> &'static [FieldDef] {
        CONTACT_FIELDS
    }

    fn get(&self, field: &str) -> Val {
        let c = self.c;
        match field {
            "ID" => Val::Guid(c.id),
            "Account" => Val::Guid(c.account),
            "AccountName" => Val::opt_str(&self.account_name),
            "FirstName" => Val::opt_str(&c.first_name),
            "LastName" => Val::opt_str(&c.last_name),
            "FullName" => Val::Str(
                [c.first_name.as_deref(), c.last_name.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            "Email" | "BusinessEmail" => Val::opt_str(&c.email),
            "Phone" => Val::opt_str(&c.phone),
            "IsMainContact" => Val::Bool(false),
            "Division" => Val::Int(i64::from(self.division)),
            "Created" => Val::instant(c.created_ms),
            "Modified" => Val::instant(c.modified_ms),
            _ => Val::Null,
        }
    }
}

fn contact_rows(d: &Division) -> Vec<ContactRow<'_>> {
    d.contacts
        .iter()
        .map(|c| ContactRow {
            c,
            account_name: d.account(c.account).map(|a| a.name.clone()),
            division: d.code,
        })
        .collect()
}

pub(super) fn list_contacts(inner: &Arc<Inner>, ctx: &Ctx, q: &QueryOptions) -> ApiResult {
    let world = inner.world();
    let rows = contact_rows(division(&world, ctx)?);
    ok(query::list(&rows, q, &ctx.url, ListRules::default()))
}

pub(super) fn get_contact(inner: &Arc<Inner>, ctx: &Ctx, key: &Val, q: &QueryOptions) -> ApiResult {
    let world = inner.world();
    let rows = contact_rows(division(&world, ctx)?);
    ok(query::by_key(&rows, key, q, &ctx.url))
}

pub(super) fn create_contact(inner: &Arc<Inner>, ctx: &Ctx, raw: &[u8]) -> ApiResult {
    let obj = body::object(raw)?;
    let p = Props::parse(&obj, CONTACT_FIELDS, &[], ContactRow::TYPE)?;
    let mut world = inner.world();
    let d = world
        .divisions
        .get_mut(&ctx.division)
        .ok_or_else(|| ApiError::new(StatusCode::FORBIDDEN, "Forbidden - WrongDivision"))?;
    let mut errors = Vec::new();
    match p.guid("Account") {
        None => errors.push(Msg::Mandatory(Label::Account)),
        Some(a) if d.account(a).is_none() => errors.push(Msg::InvalidReference(Label::Account)),
        Some(_) => {}
    }
    if p.text("FirstName").is_none() && p.text("LastName").is_none() {
        errors.push(Msg::ContactNameRequired);
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(ctx.lang, &errors));
    }
    let account = p.guid("Account").unwrap_or_default();
    let contact = Contact {
        id: crate::world::new_id(),
        account,
        first_name: p.text("FirstName"),
        last_name: p.text("LastName"),
        email: p.text("Email").or_else(|| p.text("BusinessEmail")),
        phone: p.text("Phone"),
        created_ms: ctx.now_ms,
        modified_ms: ctx.now_ms,
    };
    let id = contact.id;
    d.contacts.push(contact);
    let rows = contact_rows(d);
    let row = rows
        .iter()
        .find(|r| r.c.id == id)
        .ok_or_else(|| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "contact vanished"))?;
    Ok(Reply::Json(
        StatusCode::CREATED,
        json!({ "d": entity_json(row, &ctx.url, None, &[]) }),
    ))
}
