//! The app secret: one Secrets Manager secret (`APP_SECRET_ARN`) holding the app's credentials as JSON.
//! Values are `SecretString`s and never logged.
//!
//! [`AppSecretCache`] keeps it per execution environment for a short time ([`APP_SECRET_TTL`]) on the caller's
//! clock, and reads it again at once while a field the caller needs is unusable, so an operator who fills the
//! secret after `sam deploy` or rotates `psa_api_key` does not have to wait for Lambda to recycle its
//! environments.

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::error::{Service, StoreError, StoreResult, from_sdk};

/// The app's credentials. `Debug` shows no value.
#[derive(Clone, Debug)]
pub struct AppSecret {
    pub exact_client_id: String,
    pub exact_client_secret: SecretString,
    pub exact_webhook_secret: SecretString,
    pub psa_api_key: SecretString,
    /// During a rotation: the key being replaced, still accepted (optional; empty = none).
    pub psa_api_key_previous: SecretString,
    pub psa_callback_secret: SecretString,
}

/// The shortest `psa_api_key` the connector accepts: 32 characters (e.g. `openssl rand -hex 16`).
pub const MIN_PSA_API_KEY_LEN: usize = 32;

/// How long a read app secret is used before it is read again.
pub const APP_SECRET_TTL: Duration = Duration::from_secs(300);

#[derive(Deserialize)]
struct AppSecretJson {
    #[serde(default)]
    exact_client_id: String,
    #[serde(default)]
    exact_client_secret: String,
    #[serde(default)]
    exact_webhook_secret: String,
    #[serde(default)]
    psa_api_key: String,
    #[serde(default)]
    psa_api_key_previous: String,
    #[serde(default)]
    psa_callback_secret: String,
}

impl AppSecret {
    /// Parses the secret's JSON. Fields that are missing are empty; [`AppSecret::missing_fields`] names them.
    /// The parse error is not kept: its text could quote the secret.
    pub fn from_json(text: &str) -> Option<AppSecret> {
        let j: AppSecretJson = serde_json::from_str(text).ok()?;
        Some(AppSecret {
            exact_client_id: j.exact_client_id.trim().to_owned(),
            exact_client_secret: SecretString::from(j.exact_client_secret),
            exact_webhook_secret: SecretString::from(j.exact_webhook_secret),
            psa_api_key: SecretString::from(j.psa_api_key.trim().to_owned()),
            psa_api_key_previous: SecretString::from(j.psa_api_key_previous.trim().to_owned()),
            psa_callback_secret: SecretString::from(j.psa_callback_secret),
        })
    }

    /// Names of the fields left empty (the template creates the secret empty, to be filled after deploy).
    pub fn missing_fields(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.exact_client_id.is_empty() {
            out.push("exact_client_id");
        }
        for (name, v) in [
            ("exact_client_secret", &self.exact_client_secret),
            ("exact_webhook_secret", &self.exact_webhook_secret),
            ("psa_api_key", &self.psa_api_key),
            ("psa_callback_secret", &self.psa_callback_secret),
        ] {
            if v.expose_secret().is_empty() {
                out.push(name);
            }
        }
        out
    }

    /// Whether `field` (a name of [`AppSecret::missing_fields`]) can be used: filled, and for `psa_api_key` at
    /// least [`MIN_PSA_API_KEY_LEN`] characters.
    pub fn usable(&self, field: &str) -> bool {
        match field {
            "psa_api_key" => {
                self.psa_api_key.expose_secret().chars().count() >= MIN_PSA_API_KEY_LEN
            }
            f => !self.missing_fields().contains(&f),
        }
    }

    /// The PSA keys accepted now: `psa_api_key` and, during a rotation, `psa_api_key_previous` — each only when
    /// at least [`MIN_PSA_API_KEY_LEN`] characters long.
    pub fn psa_keys(&self) -> impl Iterator<Item = &SecretString> {
        [&self.psa_api_key, &self.psa_api_key_previous]
            .into_iter()
            .filter(|k| k.expose_secret().chars().count() >= MIN_PSA_API_KEY_LEN)
    }

    /// Reads and parses the app secret (name or ARN).
    pub async fn load(
        client: &aws_sdk_secretsmanager::Client,
        secret_id: &str,
    ) -> StoreResult<AppSecret> {
        const OP: &str = "app_secret.get";
        let out = client
            .get_secret_value()
            .secret_id(secret_id)
            .send()
            .await
            .map_err(|e| from_sdk(OP, Service::SecretsManager, e))?;
        let text = SecretString::from(
            out.secret_string
                .ok_or_else(|| StoreError::corrupt(OP, "the app secret has no SecretString"))?,
        );
        AppSecret::from_json(text.expose_secret()).ok_or_else(|| {
            StoreError::corrupt(OP, "the app secret is not a JSON object of strings")
        })
    }
}

/// The app secret of one execution environment, read again after [`APP_SECRET_TTL`] (on the caller's clock) or
/// at once while a needed field is unusable. One read at a time; a failed read keeps serving the last value (and
/// is tried again after the TTL), so a Secrets Manager hiccup does not fail requests that worked a moment ago.
#[derive(Debug)]
pub struct AppSecretCache {
    client: aws_sdk_secretsmanager::Client,
    secret_id: String,
    ttl: Duration,
    state: tokio::sync::Mutex<Option<(Arc<AppSecret>, i64)>>,
}

impl AppSecretCache {
    /// A cache over `secret_id`, optionally seeded with a value read at `read_at_ms`.
    pub fn new(
        client: aws_sdk_secretsmanager::Client,
        secret_id: impl Into<String>,
        ttl: Duration,
        seed: Option<(AppSecret, i64)>,
    ) -> Self {
        AppSecretCache {
            client,
            secret_id: secret_id.into(),
            ttl,
            state: tokio::sync::Mutex::new(seed.map(|(s, at)| (Arc::new(s), at))),
        }
    }

    /// The app secret to use at `now_ms`: the cached one while fresh and every field in `need` is usable, else
    /// read again.
    pub async fn get(&self, now_ms: i64, need: &[&str]) -> StoreResult<Arc<AppSecret>> {
        let mut state = self.state.lock().await;
        let ttl_ms = i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX);
        if let Some((secret, at)) = state.as_ref() {
            let fresh = now_ms >= *at && now_ms - *at < ttl_ms;
            if fresh && need.iter().all(|f| secret.usable(f)) {
                return Ok(secret.clone());
            }
        }
        match AppSecret::load(&self.client, &self.secret_id).await {
            Ok(secret) => {
                let secret = Arc::new(secret);
                *state = Some((secret.clone(), now_ms));
                Ok(secret)
            }
            Err(e) => match state.as_mut() {
                Some((secret, at)) => {
                    tracing::warn!(error = %e, "reading the app secret again failed; using the last value");
                    *at = now_ms;
                    Ok(secret.clone())
                }
                None => Err(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_names_missing_fields() {
        let s = AppSecret::from_json(
            r#"{"exact_client_id":" abc ","exact_client_secret":"s3cr3t","exact_webhook_secret":"","psa_api_key":"k"}"#,
        )
        .unwrap();
        assert_eq!(s.exact_client_id, "abc");
        assert_eq!(
            s.missing_fields(),
            vec!["exact_webhook_secret", "psa_callback_secret"]
        );
        assert!(!format!("{s:?}").contains("s3cr3t"));
        // A short key is not usable and not accepted; a previous key of full length is.
        assert!(!s.usable("psa_api_key"));
        assert_eq!(s.psa_keys().count(), 0);
        let long = "k".repeat(MIN_PSA_API_KEY_LEN);
        let s = AppSecret::from_json(&format!(
            r#"{{"psa_api_key":"{long}","psa_api_key_previous":" {long}2 "}}"#
        ))
        .unwrap();
        assert!(s.usable("psa_api_key"));
        assert_eq!(s.psa_keys().count(), 2);
        assert_eq!(s.psa_api_key_previous.expose_secret(), &format!("{long}2"));
        assert!(AppSecret::from_json("not json s3cr3t").is_none());
    }
}
