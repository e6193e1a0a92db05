//! What the sandbox remembers of each request.

/// One request as received, with the status it was answered with.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// Path without the query, e.g. `/api/v1/1001/crm/Accounts`.
    pub path: String,
    /// The raw query string, still percent-encoded.
    pub query: Option<String>,
    /// The division the call was for: the one in the path, or for `current/Me` the token user's current division
    /// (the one Exact charges it to). `None` for OAuth calls.
    pub division: Option<u32>,
    /// The body: parsed JSON, or a form body as a JSON object of its fields. `None` when empty or unreadable.
    pub body: Option<serde_json::Value>,
    /// The status answered (for [`crate::FaultKind::DropAfterStore`]: the status of the handled request that was
    /// then dropped). `0` while the request is still being handled.
    pub status: u16,
    /// Whether an `Authorization: Basic ...` header was sent.
    pub authorization_basic: bool,
}

impl RecordedRequest {
    /// Whether this was an API call (under `/api/v1`).
    pub fn is_api(&self) -> bool {
        self.path.starts_with("/api/v1/")
    }

    /// Whether this was a token call (`POST /api/oauth2/token`).
    pub fn is_token_call(&self) -> bool {
        self.method == "POST" && self.path == "/api/oauth2/token"
    }

    /// The decoded value of a query parameter (e.g. `$filter`).
    pub fn query_param(&self, name: &str) -> Option<String> {
        let q = self.query.as_deref()?;
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}
