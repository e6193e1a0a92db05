//! How a sandbox is set up.

/// Options for [`crate::Sandbox::start_with`]. `Default` gives Exact's real numbers.
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    /// Calls per minute per (client, division). Exact: 60.
    pub minutely_limit: u32,
    /// Calls per day (UTC) per (client, division). Exact: 5,000.
    pub daily_limit: u32,
    /// Rows per page on collection GETs. Exact: 60.
    pub page_size: usize,
    /// `None`: any redirect URI is accepted; `Some`: the authorize page and the token call require exactly this one.
    pub redirect_uri: Option<String>,
    /// `true`: subscribing a webhook POSTs an empty body to the callback (over HTTP) and refuses unless it answers 2xx.
    pub validate_webhook_callbacks: bool,
    /// `true`: start with the default world (users, divisions, codes; see the crate docs). `false`: an empty world.
    pub seed: bool,
    /// How the sandbox answers where Exact's behaviour is still a belief (`docs/exact-online.md`).
    pub beliefs: Beliefs,
}

/// The beliefs about Exact the sandbox models (the smoke test settles each against a real administration). `Default`
/// answers as each belief says; a switch turned the other way makes the sandbox contradict it, so the smoke test's
/// own tests can see a contradiction reported.
#[derive(Clone, Debug)]
pub struct Beliefs {
    /// A journal set to number at entry gives the invoice its number on create. `false`: every journal numbers at
    /// processing (the create answer has `InvoiceNumber: null`).
    pub numbering_at_entry: bool,
    /// `trim(Code)` is accepted in `$filter`. `false`: a filter using `trim` is refused with 400.
    pub trim_in_filters: bool,
    /// `webhooks/WebhookSubscriptions` accepts `$filter=Division eq N`. `false`: 400 "This $filter parameter is not
    /// supported for this resource".
    pub subscription_division_filter: bool,
    /// The `Reason` header of a refresh within 570 s.
    pub too_early_reason: String,
    /// `X-RateLimit-Reset` and `X-RateLimit-Minutely-Reset` in epoch milliseconds. `false`: in epoch seconds.
    pub reset_in_epoch_ms: bool,
}

impl Default for Beliefs {
    fn default() -> Self {
        Self {
            numbering_at_entry: true,
            trim_in_filters: true,
            subscription_division_filter: true,
            too_early_reason: crate::oauth::TOO_EARLY_REASON.to_owned(),
            reset_in_epoch_ms: true,
        }
    }
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            minutely_limit: 60,
            daily_limit: 5_000,
            page_size: 60,
            redirect_uri: None,
            validate_webhook_callbacks: true,
            seed: true,
            beliefs: Beliefs::default(),
        }
    }
}
