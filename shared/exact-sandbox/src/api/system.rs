//! `current/Me` and `system/Divisions`.

use std::sync::Arc;

use super::{ApiResult, Ctx, ok};
use crate::Inner;
use crate::odata::query::{self, ListRules, QueryOptions};
use crate::odata::{FieldDef, Resource, Ty, Val, ro};
use crate::world::{Division, User};

struct MeRow<'a> {
    user: &'a User,
    division_name: String,
    now_ms: i64,
}

const ME_FIELDS: &[FieldDef] = &[
    ro("UserID", Ty::Guid),
    ro("UserName", Ty::Str),
    ro("FullName", Ty::Str),
    ro("FirstName", Ty::Str),
    ro("LastName", Ty::Str),
    ro("Email", Ty::Str),
    ro("LanguageCode", Ty::Str),
    ro("Language", Ty::Str),
    ro("CurrentDivision", Ty::Int32),
    ro("AccountingDivision", Ty::Int32),
    ro("DivisionCustomerName", Ty::Str),
    ro("PackageCode", Ty::Str),
    ro("Legislation", Ty::Str),
    ro("ServerTime", Ty::DateTime),
    ro("ServerUtcOffset", Ty::Double),
    ro("IsClientUser", Ty::Bool),
];

impl Resource for MeRow<'_> {
    const TYPE: &'static str = "Exact.Web.Api.Models.Me";
    const SET: &'static str = "Me";
    const KEY: &'static str = "UserID";

    fn fields() -> &'static [FieldDef] {
        ME_FIELDS
    }

    fn get(&self, field: &str) -> Val {
        let u = self.user;
        match field {
            "UserID" => Val::Guid(u.user_id),
            "UserName" | "Email" => Val::str(&u.login),
            "FullName" => Val::str(&u.full_name),
            "FirstName" => Val::str(&u.first_name),
            "LastName" => Val::str(&u.last_name),
            "LanguageCode" => Val::str(&u.language_code),
            "Language" => Val::Str(
                u.language_code
                    .split('-')
                    .next()
                    .unwrap_or_default()
                    .to_ascii_uppercase(),
            ),
            "CurrentDivision" | "AccountingDivision" => Val::Int(i64::from(u.current_division)),
            "DivisionCustomerName" => Val::str(&self.division_name),
            "PackageCode" => Val::str("EOLAPPCENTER"),
            "Legislation" => Val::str("1"),
            "ServerTime" => Val::DateTime(self.now_ms),
            "ServerUtcOffset" => Val::Double(0.0),
            "IsClientUser" => Val::Bool(false),
            _ => Val::Null,
        }
    }
}

pub(super) fn me(inner: &Arc<Inner>, ctx: &Ctx, q: &QueryOptions) -> ApiResult {
    let world = inner.world();
    let division_name = world
        .division(ctx.user.current_division)
        .map(|d| d.description.clone())
        .unwrap_or_default();
    let row = MeRow {
        user: &ctx.user,
        division_name,
        now_ms: ctx.now_ms,
    };
    ok(query::list([&row], q, &ctx.url, ListRules::default()))
}

struct DivisionRow<'a> {
    d: &'a Division,
    current: bool,
}

const DIVISION_FIELDS: &[FieldDef] = &[
    ro("Code", Ty::Int32),
    ro("Description", Ty::Str),
    ro("Country", Ty::Str),
    ro("Currency", Ty::Str),
    ro("Current", Ty::Bool),
    ro("Hid", Ty::Int64),
    ro("IsMainDivision", Ty::Bool),
    ro("Status", Ty::Int32),
    ro("BlockingStatus", Ty::Int32),
];

impl Resource for DivisionRow<'_> {
    const TYPE: &'static str = "Exact.Web.Api.System.SystemDivision";
    const SET: &'static str = "system/Divisions";
    const KEY: &'static str = "Code";

    fn fields() -> &'static [FieldDef] {
        DIVISION_FIELDS
    }

    fn get(&self, field: &str) -> Val {
        match field {
            "Code" => Val::Int(i64::from(self.d.code)),
            "Description" => Val::str(&self.d.description),
            "Country" => Val::str(&self.d.country),
            "Currency" => Val::str(&self.d.currency),
            "Current" => Val::Bool(self.current),
            "Hid" => Val::Int(i64::from(self.d.code)),
            "IsMainDivision" => Val::Bool(false),
            "Status" => Val::Int(1),
            "BlockingStatus" => Val::Int(0),
            _ => Val::Null,
        }
    }
}

fn rows<'a>(divisions: impl Iterator<Item = &'a Division>, ctx: &Ctx) -> Vec<DivisionRow<'a>> {
    divisions
        .filter(|d| ctx.user.divisions.contains(&d.code))
        .map(|d| DivisionRow {
            d,
            current: d.code == ctx.user.current_division,
        })
        .collect()
}

pub(super) fn divisions(inner: &Arc<Inner>, ctx: &Ctx, q: &QueryOptions) -> ApiResult {
    let world = inner.world();
    let rows = rows(world.divisions.values(), ctx);
    ok(query::list(&rows, q, &ctx.url, ListRules::default()))
}

pub(super) fn division(inner: &Arc<Inner>, ctx: &Ctx, key: &Val, q: &QueryOptions) -> ApiResult {
    let world = inner.world();
    let rows = rows(world.divisions.values(), ctx);
    ok(query::by_key(&rows, key, q, &ctx.url))
}
