//! The HTTP client every Exact call goes through.

use std::time::Duration;

/// A reqwest client for Exact: rustls, redirects never followed (a redirect from Exact means a
/// login page or a wrong host, and following one could send a token elsewhere), explicit timeouts.
pub fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .build()
        .expect("a reqwest client with rustls and timeouts can always be built")
}
