//! oauth-callback: authorize, the OAuth callback, status, disconnect, the admin list of connections, health; the
//! daily keep-alive.

use async_trait::async_trait;
use lambda_http::http::Method;
use lambda_http::{Body, Request, Response};
use serde_json::Value;

use crate::admin;
use crate::app::App;
use crate::connect::{self, CallbackOutcome};
use crate::http::{
    self, Allow, ApiError, check_psa_request, json, json_body, match_path, parse_connection_id,
    query_param,
};
use crate::lambda::{self, Function};
use crate::work::{NotDone, Work};

pub struct OAuthCallback;

fn public_base(app: &App, req: &Request) -> Result<String, ApiError> {
    http::public_base_url(app.public_base_url.as_deref(), req).ok_or_else(|| {
        ApiError::new(
            500,
            "public_base_url_unknown",
            "PUBLIC_BASE_URL is not set and the request carries no host",
        )
    })
}

async fn route(app: &App, req: Request) -> Result<Response<Body>, ApiError> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    if match_path(&path, "/exact/oauth/callback").is_some() {
        if method != Method::GET {
            return Err(ApiError::method_not_allowed(Allow::Get));
        }
        let base = public_base(app, &req)?;
        let outcome = connect::callback(
            app,
            query_param(&req, "code").as_deref(),
            query_param(&req, "state").as_deref(),
            query_param(&req, "error").as_deref(),
            &base,
        )
        .await;
        return Ok(match outcome {
            CallbackOutcome::Redirect(to) => http::redirect(&to),
            CallbackOutcome::BadState(text) => {
                http::html(400, "Connecting to Exact Online failed", text)
            }
        });
    }
    if let Some(ids) = match_path(&path, "/connections/{}/exact/authorize") {
        if method != Method::POST {
            return Err(ApiError::method_not_allowed(Allow::Post));
        }
        check_psa_request(&req, &app.secret)?;
        let conn = parse_connection_id(&ids[0])?;
        let body = json_body(&req)?;
        http::check_return_url_len(&body)?;
        let base = public_base(app, &req)?;
        let v = connect::authorize(app, &conn, &body, &base).await?;
        return Ok(json(200, &v));
    }
    if let Some(ids) = match_path(&path, "/connections/{}/exact") {
        if method != Method::GET && method != Method::DELETE {
            return Err(ApiError::method_not_allowed(Allow::GetDelete));
        }
        check_psa_request(&req, &app.secret)?;
        let conn = parse_connection_id(&ids[0])?;
        let v = match method {
            Method::GET => connect::status(app, &conn).await?,
            Method::DELETE => connect::disconnect(app, &conn).await?,
            _ => unreachable!("checked above"),
        };
        return Ok(json(200, &v));
    }
    if match_path(&path, "/connections").is_some() {
        if method != Method::GET {
            return Err(ApiError::method_not_allowed(Allow::Get));
        }
        check_psa_request(&req, &app.secret)?;
        let q = admin::ConnectionsQuery::parse(
            query_param(&req, "limit").as_deref(),
            query_param(&req, "cursor").as_deref(),
            query_param(&req, "state").as_deref(),
        )?;
        return Ok(json(200, &admin::list_connections(app, &q).await?));
    }
    // Without the PSA key: a load balancer or uptime check has none, and the answer holds names, never values.
    if match_path(&path, "/health").is_some() {
        if method != Method::GET {
            return Err(ApiError::method_not_allowed(Allow::Get));
        }
        let h = admin::health(app).await;
        let mut resp = json(h.status(), &h);
        if !h.ok {
            resp.headers_mut().insert(
                lambda_http::http::header::RETRY_AFTER,
                lambda_http::http::HeaderValue::from_static("30"),
            );
        }
        return Ok(resp);
    }
    Err(http::no_route(&req))
}

#[async_trait]
impl Function for OAuthCallback {
    fn name(&self) -> &'static str {
        "oauth-callback"
    }

    fn secret_fields(&self) -> &'static [&'static str] {
        &["psa_api_key", "exact_client_id", "exact_client_secret"]
    }

    async fn http(&self, app: &App, req: Request) -> Response<Body> {
        route(app, req).await.unwrap_or_else(|e| e.to_response())
    }

    async fn work(&self, app: &App, work: Work) -> Result<(), NotDone> {
        let Work::KeepAlive { connection_id } = work else {
            return Err(NotDone::Poison(
                "oauth-callback takes only keep-alive work".into(),
            ));
        };
        match connect::keep_alive_one(app, &connection_id).await {
            Ok(_) => Ok(()),
            Err(e) => NotDone::from_api(app, &e).map_or(Ok(()), Err),
        }
    }

    async fn job(&self, app: &App, name: &str) -> Result<Value, ApiError> {
        match name {
            // With the jobs queue the run only fans out; without it, one invocation walks the connections.
            "keep-alive" if app.jobs_queue().is_some() => {
                lambda::report(&connect::keep_alive_fan_out(app).await?)
            }
            "keep-alive" => lambda::report(&connect::keep_alive(app).await?),
            other => Err(ApiError::new(
                400,
                "unknown_job",
                format!("oauth-callback has no scheduled job `{other}`"),
            )),
        }
    }
}
