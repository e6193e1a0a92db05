//! OData v2 as Exact speaks it: typed values, entity JSON (`__metadata`, `/Date(ms)/`, deferred/inline
//! navigation), `$filter`, `$select`, `$expand`, `$orderby`, `$top`/`$skip`, 60-row pages with `__next`, and typed
//! POST bodies.

pub(crate) mod body;
pub(crate) mod filter;
pub(crate) mod query;

use serde_json::{Map, Value, json};
use uuid::Uuid;

/// EDM types of fields and literals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ty {
    Str,
    Guid,
    Int16,
    Int32,
    Int64,
    Double,
    Decimal,
    Bool,
    DateTime,
}

impl Ty {
    /// The CLR name Exact's messages use.
    pub(crate) fn clr(self) -> &'static str {
        match self {
            Ty::Str => "System.String",
            Ty::Guid => "System.Guid",
            Ty::Int16 => "System.Int16",
            Ty::Int32 => "System.Int32",
            Ty::Int64 => "System.Int64",
            Ty::Double => "System.Double",
            Ty::Decimal => "System.Decimal",
            Ty::Bool => "System.Boolean",
            Ty::DateTime => "System.DateTime",
        }
    }

    pub(crate) fn edm(self) -> &'static str {
        match self {
            Ty::Str => "Edm.String",
            Ty::Guid => "Edm.Guid",
            Ty::Int16 => "Edm.Int16",
            Ty::Int32 => "Edm.Int32",
            Ty::Int64 => "Edm.Int64",
            Ty::Double => "Edm.Double",
            Ty::Decimal => "Edm.Decimal",
            Ty::Bool => "Edm.Boolean",
            Ty::DateTime => "Edm.DateTime",
        }
    }

    pub(crate) fn is_numeric(self) -> bool {
        matches!(
            self,
            Ty::Int16 | Ty::Int32 | Ty::Int64 | Ty::Double | Ty::Decimal
        )
    }
}

/// A typed value of a field or literal.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Val {
    Null,
    Str(String),
    Guid(Uuid),
    Int(i64),
    Double(f64),
    Bool(bool),
    /// Epoch milliseconds as Exact writes them: the Amsterdam wall clock (see [`Val::instant`]).
    DateTime(i64),
}

impl Val {
    pub(crate) fn opt_str(s: &Option<String>) -> Val {
        s.as_ref().map_or(Val::Null, |s| Val::Str(s.clone()))
    }

    pub(crate) fn str(s: &str) -> Val {
        Val::Str(s.to_string())
    }

    pub(crate) fn opt_guid(g: Option<Uuid>) -> Val {
        g.map_or(Val::Null, Val::Guid)
    }

    pub(crate) fn opt_date(ms: Option<i64>) -> Val {
        ms.map_or(Val::Null, Val::DateTime)
    }

    /// A moment (a UTC instant, e.g. from the clock) as Exact writes it: Amsterdam wall-clock time. Date-only
    /// values (`InvoiceDate`, midnight of the date) are kept as given with [`Val::opt_date`].
    pub(crate) fn instant(utc_ms: i64) -> Val {
        Val::DateTime(crate::clock::amsterdam_wall_ms(utc_ms))
    }

    pub(crate) fn opt_instant(utc_ms: Option<i64>) -> Val {
        utc_ms.map_or(Val::Null, Val::instant)
    }

    pub(crate) fn opt_int(i: Option<i64>) -> Val {
        i.map_or(Val::Null, Val::Int)
    }

    pub(crate) fn to_json(&self) -> Value {
        match self {
            Val::Null => Value::Null,
            Val::Str(s) => Value::String(s.clone()),
            Val::Guid(g) => Value::String(g.to_string()),
            Val::Int(i) => json!(i),
            Val::Double(f) => json!(f),
            Val::Bool(b) => json!(b),
            Val::DateTime(ms) => Value::String(format!("/Date({ms})/")),
        }
    }

    /// The key as it appears in a URI: `guid'..'`, `1001`, `'abc'`.
    pub(crate) fn key_literal(&self) -> String {
        match self {
            Val::Guid(g) => format!("guid'{g}'"),
            Val::Int(i) => i.to_string(),
            Val::Str(s) => format!("'{}'", s.replace('\'', "''")),
            other => other.to_json().to_string(),
        }
    }

    /// Parse a key literal from a URI (`guid'..'`, an integer, `'text'`).
    pub(crate) fn parse_key(s: &str) -> Option<Val> {
        let s = s.trim();
        if let Some(g) = s.strip_prefix("guid'").and_then(|r| r.strip_suffix('\'')) {
            return Uuid::parse_str(g).ok().map(Val::Guid);
        }
        if let Some(t) = s.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
            return Some(Val::Str(t.replace("''", "'")));
        }
        s.trim_end_matches(['L', 'l'])
            .parse::<i64>()
            .ok()
            .map(Val::Int)
    }
}

/// A field of an entity type.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FieldDef {
    pub(crate) name: &'static str,
    pub(crate) ty: Ty,
    /// Taken from a POST/PUT body; read-only fields are type-checked and ignored.
    pub(crate) writable: bool,
}

/// A read-only field.
pub(crate) const fn ro(name: &'static str, ty: Ty) -> FieldDef {
    FieldDef {
        name,
        ty,
        writable: false,
    }
}

/// A writable field.
pub(crate) const fn rw(name: &'static str, ty: Ty) -> FieldDef {
    FieldDef {
        name,
        ty,
        writable: true,
    }
}

pub(crate) fn field<'a>(fields: &'a [FieldDef], name: &str) -> Option<&'a FieldDef> {
    fields.iter().find(|f| f.name == name)
}

/// Where entity URIs point: `{base}/api/v1/{division}` (or `/current`).
#[derive(Clone, Debug)]
pub(crate) struct UrlCtx {
    /// `http://127.0.0.1:PORT/api/v1/1001`
    pub(crate) prefix: String,
    /// The request's full URL without the query (for `__next`).
    pub(crate) request_url: String,
    pub(crate) page_size: usize,
}

/// An entity set the generic OData code can list, filter and serialise.
pub(crate) trait Resource {
    /// `Exact.Web.Api.Models.Account`
    const TYPE: &'static str;
    /// `crm/Accounts`
    const SET: &'static str;
    /// Key field name.
    const KEY: &'static str;
    fn fields() -> &'static [FieldDef];
    /// Navigation properties.
    fn navs() -> &'static [&'static str] {
        &[]
    }
    fn get(&self, field: &str) -> Val;
    /// Inline value of an expanded navigation property (`{"results":[..]}`); `sub_select` limits its fields.
    fn expand(&self, _nav: &str, _ctx: &UrlCtx, _sub_select: &[String]) -> Value {
        json!({"results": []})
    }

    fn key(&self) -> Val {
        self.get(Self::KEY)
    }

    fn uri(&self, ctx: &UrlCtx) -> String {
        format!("{}/{}({})", ctx.prefix, Self::SET, self.key().key_literal())
    }
}

/// Which fields to write: `None` = all.
pub(crate) fn entity_json<R: Resource>(
    r: &R,
    ctx: &UrlCtx,
    select: Option<&[String]>,
    expand: &[String],
) -> Value {
    let uri = r.uri(ctx);
    let mut m = Map::new();
    m.insert("__metadata".into(), json!({"uri": uri, "type": R::TYPE}));
    let wanted: Vec<&str> = match select {
        Some(s) if !s.iter().any(|x| x == "*") => {
            let mut v: Vec<&str> = Vec::new();
            for name in s {
                let head = name.split('/').next().unwrap_or(name);
                if !v.contains(&head) {
                    v.push(head);
                }
            }
            // An expanded navigation property is written even when the selection names only its sub-fields.
            for e in expand {
                if !v.contains(&e.as_str()) {
                    v.push(e.as_str());
                }
            }
            v
        }
        _ => R::fields()
            .iter()
            .map(|f| f.name)
            .chain(R::navs().iter().copied())
            .collect(),
    };
    for name in wanted {
        if R::navs().contains(&name) {
            let value = if expand.iter().any(|e| e == name) {
                let prefix = format!("{name}/");
                let sub: Vec<String> = select
                    .unwrap_or(&[])
                    .iter()
                    .filter_map(|s| s.strip_prefix(&prefix).map(str::to_string))
                    .collect();
                r.expand(name, ctx, &sub)
            } else {
                json!({"__deferred": {"uri": format!("{uri}/{name}")}})
            };
            m.insert(name.to_string(), value);
        } else if let Some(f) = field(R::fields(), name) {
            m.insert(f.name.to_string(), r.get(f.name).to_json());
        }
    }
    Value::Object(m)
}
