//! The app secret: one Secrets Manager secret (`APP_SECRET_ARN`) holding the app's credentials as JSON.
//! Read once per execution environment; values are `SecretString`s and never logged.

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
    pub psa_callback_secret: SecretString,
}

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
            psa_api_key: SecretString::from(j.psa_api_key),
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
        assert!(AppSecret::from_json("not json s3cr3t").is_none());
    }
}
