//! Which Exact Online host an administration lives on, and the client configuration.

use std::time::Duration;

use mapping::Country;
use secrecy::SecretString;
use url::Url;

/// The Exact Online host for a country (one host per country; a division only answers on its own).
pub fn base_url(country: Country) -> Url {
    let host = match country {
        Country::Nl => "https://start.exactonline.nl",
        Country::Be => "https://start.exactonline.be",
        Country::De => "https://start.exactonline.de",
        Country::Uk => "https://start.exactonline.co.uk",
        Country::Us => "https://start.exactonline.com",
        Country::Es => "https://start.exactonline.es",
        Country::Fr => "https://start.exactonline.fr",
    };
    Url::parse(host).expect("the seven Exact hosts are valid URLs")
}

/// Default per-request timeout (Exact answers most calls in well under a second; a Lambda has minutes).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// The app's registration at Exact plus how to reach Exact.
#[derive(Clone, Debug)]
pub struct ExactConfig {
    pub client_id: String,
    pub client_secret: SecretString,
    /// Must equal the redirect URI registered for the app in Exact's App Center.
    pub redirect_uri: Url,
    /// `EXACT_BASE_URL`: one host for every country (the sandbox, tests).
    pub base_url_override: Option<Url>,
    /// Applied to every request (token and API).
    pub request_timeout: Duration,
}

impl ExactConfig {
    /// A configuration with the default timeout and no host override.
    pub fn new(
        client_id: impl Into<String>,
        client_secret: SecretString,
        redirect_uri: Url,
    ) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret,
            redirect_uri,
            base_url_override: None,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }

    /// The host to use for `country`: the override when set, else Exact's host for that country.
    pub fn host_for(&self, country: Country) -> Url {
        self.base_url_override
            .clone()
            .unwrap_or_else(|| base_url(country))
    }
}

/// Joins `{host}` and a path that starts with `/api/…`, keeping any path prefix of the host.
pub(crate) fn join(host: &Url, path: &str) -> Result<Url, url::ParseError> {
    let base = host.as_str().trim_end_matches('/');
    Url::parse(&format!("{base}{path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_country_has_its_own_host() {
        let hosts: Vec<String> = Country::ALL
            .iter()
            .map(|c| base_url(*c).to_string())
            .collect();
        assert_eq!(
            hosts,
            [
                "https://start.exactonline.nl/",
                "https://start.exactonline.be/",
                "https://start.exactonline.de/",
                "https://start.exactonline.co.uk/",
                "https://start.exactonline.com/",
                "https://start.exactonline.es/",
                "https://start.exactonline.fr/",
            ]
        );
    }

    #[test]
    fn override_replaces_every_country_host() {
        let mut cfg = ExactConfig::new(
            "id",
            SecretString::from("s"),
            Url::parse("https://psa.example/exact/oauth/callback").unwrap(),
        );
        assert_eq!(
            cfg.host_for(Country::Uk).as_str(),
            "https://start.exactonline.co.uk/"
        );
        assert_eq!(cfg.request_timeout, Duration::from_secs(20));
        cfg.base_url_override = Some(Url::parse("http://127.0.0.1:9999").unwrap());
        for c in Country::ALL {
            assert_eq!(cfg.host_for(c).as_str(), "http://127.0.0.1:9999/");
        }
    }

    #[test]
    fn join_keeps_a_path_prefix_and_drops_double_slashes() {
        let h = Url::parse("http://127.0.0.1:1/exact/").unwrap();
        assert_eq!(
            join(&h, "/api/v1/1/crm/Accounts").unwrap().as_str(),
            "http://127.0.0.1:1/exact/api/v1/1/crm/Accounts"
        );
        let h = Url::parse("https://start.exactonline.nl").unwrap();
        assert_eq!(
            join(&h, "/api/oauth2/token").unwrap().as_str(),
            "https://start.exactonline.nl/api/oauth2/token"
        );
    }
}
