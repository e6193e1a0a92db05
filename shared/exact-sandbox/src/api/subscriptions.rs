//! `webhooks/WebhookSubscriptions`: per client and division; the callback is validated with an empty POST.

use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::json;

use super::{ApiResult, Ctx, Reply, guid_key, ok};
use crate::Inner;
use crate::error::ApiError;
use crate::i18n::{Label, Msg};
use crate::odata::body::{self, Props};
use crate::odata::query::{self, ListRules, QueryOptions};
use crate::odata::{FieldDef, Resource, Ty, Val, entity_json, ro, rw};
use crate::webhooks::{self, TOPICS};
use crate::world::{Division, WebhookSubscription};

struct SubscriptionRow<'a> {
    s: &'a WebhookSubscription,
}

const FIELDS: &[FieldDef] = &[
    ro("ID", Ty::Guid),
    rw("Topic", Ty::Str),
    rw("CallbackURL", Ty::Str),
    rw("Description", Ty::Str),
    rw("IsInstant", Ty::Bool),
    ro("ClientID", Ty::Guid),
    ro("UserID", Ty::Guid),
    ro("Division", Ty::Int32),
    ro("Created", Ty::DateTime),
    ro("Creator", Ty::Guid),
];

impl Resource for SubscriptionRow<'_> {
    const TYPE: &'static str = "Exact.Web.Api.Models.Webhooks.WebhookSubscription";
    const SET: &'static str = "webhooks/WebhookSubscriptions";
    const KEY: &'static str = "ID";

    fn fields() -> &'static [FieldDef] {
        FIELDS
    }

    fn get(&self, field: &str) -> Val {
        let s = self.s;
        match field {
            "ID" => Val::Guid(s.id),
            "Topic" => Val::str(&s.topic),
            "CallbackURL" => Val::str(&s.callback_url),
            "Description" => Val::opt_str(&s.description),
            "IsInstant" => Val::Bool(false),
            "ClientID" => {
                uuid::Uuid::parse_str(&s.client_id).map_or(Val::str(&s.client_id), Val::Guid)
            }
            "UserID" | "Creator" => Val::Guid(s.user_id),
            "Division" => Val::Int(i64::from(s.division)),
            "Created" => Val::DateTime(s.created_ms),
            _ => Val::Null,
        }
    }
}

fn own<'a>(d: &'a Division, ctx: &Ctx) -> Vec<SubscriptionRow<'a>> {
    d.webhook_subscriptions
        .iter()
        .filter(|s| s.client_id == ctx.client_id)
        .map(|s| SubscriptionRow { s })
        .collect()
}

pub(super) fn list(inner: &Arc<Inner>, ctx: &Ctx, q: &QueryOptions) -> ApiResult {
    if !inner.cfg.beliefs.subscription_division_filter
        && q.filter.as_deref().is_some_and(|f| f.contains("Division"))
    {
        return Err(ApiError::bad_request(
            "This $filter parameter is not supported for this resource",
        ));
    }
    let world = inner.world();
    let d = world
        .division(ctx.division)
        .ok_or_else(|| ApiError::not_found("WebhookSubscriptions"))?;
    ok(query::list(&own(d, ctx), q, &ctx.url, ListRules::default()))
}

pub(super) fn get(inner: &Arc<Inner>, ctx: &Ctx, key: &Val, q: &QueryOptions) -> ApiResult {
    let world = inner.world();
    let d = world
        .division(ctx.division)
        .ok_or_else(|| ApiError::not_found("WebhookSubscriptions"))?;
    ok(query::by_key(&own(d, ctx), key, q, &ctx.url))
}

/// `https`, or `http` on a loopback host (sandbox concession so tests can receive deliveries).
fn callback_allowed(url: &str) -> bool {
    let Ok(u) = url::Url::parse(url) else {
        return false;
    };
    match u.scheme() {
        "https" => u.host().is_some(),
        "http" => match u.host() {
            Some(url::Host::Domain(h)) => h.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        },
        _ => false,
    }
}

/// Exact allows one subscription per topic per division for the app, whatever its callback URL: a second
/// answers 500 "Data already exists".
fn exists(d: &Division, ctx: &Ctx, topic: &str) -> bool {
    d.webhook_subscriptions
        .iter()
        .any(|s| s.client_id == ctx.client_id && s.topic.eq_ignore_ascii_case(topic))
}

fn already_exists() -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Data already exists")
}

pub(super) async fn create(inner: &Arc<Inner>, ctx: &Ctx, raw: &[u8]) -> ApiResult {
    let obj = body::object(raw)?;
    let p = Props::parse(&obj, FIELDS, &[], SubscriptionRow::TYPE)?;
    let mut errors = Vec::new();
    let topic = p.text("Topic");
    let callback = p.text("CallbackURL");
    let canonical = topic
        .as_deref()
        .and_then(|t| TOPICS.iter().find(|k| k.eq_ignore_ascii_case(t.trim())));
    match (&topic, canonical) {
        (None, _) => errors.push(Msg::Mandatory(Label::Topic)),
        (Some(_), None) => errors.push(Msg::InvalidValue(Label::Topic)),
        _ => {}
    }
    match &callback {
        None => errors.push(Msg::Mandatory(Label::CallbackUrl)),
        Some(c) if !callback_allowed(c) => errors.push(Msg::InvalidValue(Label::CallbackUrl)),
        Some(_) => {}
    }
    if p.bool("IsInstant") == Some(true) && canonical != Some(&"GoodsDeliveries") {
        errors.push(Msg::InvalidValue(Label::Topic));
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(ctx.lang, &errors));
    }
    let (Some(topic), Some(callback)) = (canonical.map(|t| t.to_string()), callback) else {
        return Err(ApiError::validation(
            ctx.lang,
            &[Msg::Mandatory(Label::Topic)],
        ));
    };
    {
        let world = inner.world();
        let d = world
            .division(ctx.division)
            .ok_or_else(|| ApiError::not_found("WebhookSubscriptions"))?;
        if exists(d, ctx, &topic) {
            return Err(already_exists());
        }
    }
    if inner.cfg.validate_webhook_callbacks {
        // Exact POSTs an empty body to the callback and refuses the subscription unless it answers 2xx.
        if let Err(status) = webhooks::validate_callback(&inner.http, &callback).await {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("Invalid: Post to callback URL endpoint returns {status}"),
            ));
        }
    }
    let mut world = inner.world();
    let d = world
        .divisions
        .get_mut(&ctx.division)
        .ok_or_else(|| ApiError::not_found("WebhookSubscriptions"))?;
    if exists(d, ctx, &topic) {
        return Err(already_exists());
    }
    let s = WebhookSubscription {
        id: crate::world::new_id(),
        topic,
        callback_url: callback,
        client_id: ctx.client_id.clone(),
        user_id: ctx.user.user_id,
        division: ctx.division,
        description: p.str("Description"),
        created_ms: ctx.now_ms,
    };
    let body = json!({ "d": entity_json(&SubscriptionRow { s: &s }, &ctx.url, None, &[]) });
    d.webhook_subscriptions.push(s);
    Ok(Reply::Json(StatusCode::CREATED, body))
}

pub(super) fn delete(inner: &Arc<Inner>, ctx: &Ctx, key: &Val) -> ApiResult {
    let id = guid_key(key, "WebhookSubscriptions")?;
    let mut world = inner.world();
    let d = world
        .divisions
        .get_mut(&ctx.division)
        .ok_or_else(|| ApiError::not_found("WebhookSubscriptions"))?;
    let Some(index) = d
        .webhook_subscriptions
        .iter()
        .position(|s| s.id == id && s.client_id == ctx.client_id)
    else {
        return Err(ApiError::not_found("WebhookSubscriptions"));
    };
    d.webhook_subscriptions.remove(index);
    Ok(Reply::NoContent)
}
