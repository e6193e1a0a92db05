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
        }
    }
}
