//! The token store on Secrets Manager: two secrets per connection, slot 0 `{prefix}{connection_id}` and slot 1
//! `{prefix}{connection_id}.1`, each holding the JSON of [`TokenRecord`] (which slot is current is in the connection
//! record; see the crate docs, "Tokens"). Values are `SecretString`s from the SDK response to the caller and never
//! logged.

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::operation::create_secret::CreateSecretError;
use aws_sdk_secretsmanager::operation::delete_secret::DeleteSecretError;
use aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretError;
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use aws_sdk_secretsmanager::operation::put_secret_value::PutSecretValueError;
use mapping::ConnectionId;
use secrecy::{ExposeSecret, SecretString};

use crate::error::{Service, StoreError, StoreResult, from_sdk};
use crate::model::{TokenRecord, TokenSlot};
use crate::ports::TokenStore;

/// The shortest recovery window Secrets Manager allows. After a disconnect the tokens are useless to us (and the
/// refresh token dies within 30 days anyway), so they should not linger; but deleting "with recovery" keeps the
/// name reserved and restorable, so an accidental disconnect can be undone by an operator and a reconnect within
/// the window restores the same secret instead of failing on a name that is still taken. Forced deletion
/// (no window) is asynchronous in AWS and a quick reconnect could race it.
const RECOVERY_WINDOW_DAYS: i64 = 7;

/// Tokens in Secrets Manager.
#[derive(Debug, Clone)]
pub struct SecretsTokenStore {
    client: Client,
    prefix: String,
}

/// Why `PutSecretValue` failed, as far as `put` cares.
enum PutOutcome {
    Done,
    /// No secret of that name: the first connect.
    Missing,
    /// The secret is scheduled for deletion (a disconnect): Secrets Manager answers InvalidRequestException.
    ScheduledForDeletion,
}

/// What `put` found before writing.
enum Existing {
    Missing,
    Live,
    ScheduledForDeletion,
}

impl SecretsTokenStore {
    /// `prefix` is `TOKEN_SECRET_PREFIX` (default `psa-exact/tokens/`).
    pub fn new(client: Client, prefix: impl Into<String>) -> Self {
        SecretsTokenStore {
            client,
            prefix: prefix.into(),
        }
    }

    /// The secret's name for a connection's slot. '.' never occurs in a connection id, so the two names of one
    /// connection never collide with another connection's.
    pub fn secret_name(&self, conn: &ConnectionId, slot: TokenSlot) -> String {
        match slot {
            TokenSlot::Zero => format!("{}{conn}", self.prefix),
            TokenSlot::One => format!("{}{conn}.1", self.prefix),
        }
    }

    async fn existing(&self, name: &str) -> StoreResult<Existing> {
        match self.client.describe_secret().secret_id(name).send().await {
            Ok(d) if d.deleted_date.is_some() => Ok(Existing::ScheduledForDeletion),
            Ok(_) => Ok(Existing::Live),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(DescribeSecretError::ResourceNotFoundException(_))
                ) =>
            {
                Ok(Existing::Missing)
            }
            Err(e) => Err(from_sdk("tokens.put", Service::SecretsManager, e)),
        }
    }

    async fn put_value(&self, name: &str, value: &SecretString) -> StoreResult<PutOutcome> {
        let put = self
            .client
            .put_secret_value()
            .secret_id(name)
            .secret_string(value.expose_secret())
            .send()
            .await;
        match put {
            Ok(_) => Ok(PutOutcome::Done),
            Err(e) => match e.as_service_error() {
                Some(PutSecretValueError::ResourceNotFoundException(_)) => Ok(PutOutcome::Missing),
                Some(PutSecretValueError::InvalidRequestException(_)) => {
                    Ok(PutOutcome::ScheduledForDeletion)
                }
                _ => Err(from_sdk("tokens.put", Service::SecretsManager, e)),
            },
        }
    }

    async fn put_existing(&self, name: &str, value: &SecretString) -> StoreResult<()> {
        match self.put_value(name, value).await? {
            PutOutcome::Done => Ok(()),
            _ => Err(StoreError::corrupt(
                "tokens.put",
                "the token secret vanished while it was being written",
            )),
        }
    }
}

#[async_trait]
impl TokenStore for SecretsTokenStore {
    #[tracing::instrument(skip_all, fields(connection_id = %conn))]
    async fn get(&self, conn: &ConnectionId, slot: TokenSlot) -> StoreResult<Option<TokenRecord>> {
        const OP: &str = "tokens.get";
        let out = match self
            .client
            .get_secret_value()
            .secret_id(self.secret_name(conn, slot))
            .send()
            .await
        {
            Ok(out) => out,
            // Never connected, or disconnected (the secret is scheduled for deletion: Secrets Manager answers
            // InvalidRequestException for it): either way "not connected".
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(
                        GetSecretValueError::ResourceNotFoundException(_)
                            | GetSecretValueError::InvalidRequestException(_)
                    )
                ) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(from_sdk(OP, Service::SecretsManager, e)),
        };
        let text = SecretString::from(
            out.secret_string
                .ok_or_else(|| StoreError::corrupt(OP, "token secret has no SecretString"))?,
        );
        TokenRecord::from_secret_json(text.expose_secret())
            .map(Some)
            .ok_or_else(|| StoreError::corrupt(OP, "token secret is not the expected JSON"))
    }

    /// Creates the slot's secret on its first write, restores it when a disconnect scheduled it for deletion, and
    /// puts a new version (which becomes AWSCURRENT) otherwise.
    #[tracing::instrument(skip_all, fields(connection_id = %conn, slot = slot.index()))]
    async fn put(
        &self,
        conn: &ConnectionId,
        slot: TokenSlot,
        tokens: &TokenRecord,
    ) -> StoreResult<()> {
        const OP: &str = "tokens.put";
        let name = self.secret_name(conn, slot);
        let value = tokens.to_secret_json();
        // DescribeSecret first tells the three cases apart on moto and AWS alike (moto, unlike AWS, accepts
        // PutSecretValue on a secret scheduled for deletion). It creates no version; one refresh is two calls.
        match self.existing(&name).await? {
            Existing::Live => self.put_existing(&name, &value).await,
            Existing::ScheduledForDeletion => {
                self.client
                    .restore_secret()
                    .secret_id(&name)
                    .send()
                    .await
                    .map_err(|e| from_sdk(OP, Service::SecretsManager, e))?;
                tracing::info!("restored the token secret scheduled for deletion (reconnect)");
                self.put_existing(&name, &value).await
            }
            Existing::Missing => {
                let created = self
                    .client
                    .create_secret()
                    .name(&name)
                    .description("psa-exact: Exact Online OAuth tokens of one connection")
                    .secret_string(value.expose_secret())
                    .send()
                    .await;
                match created {
                    Ok(_) => Ok(()),
                    // A concurrent connect created it first: ours is the newer pair, so it becomes current.
                    Err(e)
                        if matches!(
                            e.as_service_error(),
                            Some(CreateSecretError::ResourceExistsException(_))
                        ) =>
                    {
                        self.put_existing(&name, &value).await
                    }
                    Err(e) => Err(from_sdk(OP, Service::SecretsManager, e)),
                }
            }
        }
    }

    #[tracing::instrument(skip_all, fields(connection_id = %conn))]
    async fn delete(&self, conn: &ConnectionId) -> StoreResult<()> {
        for slot in TokenSlot::BOTH {
            self.delete_slot(&self.secret_name(conn, slot)).await?;
        }
        Ok(())
    }
}

impl SecretsTokenStore {
    async fn delete_slot(&self, name: &str) -> StoreResult<()> {
        let deleted = self
            .client
            .delete_secret()
            .secret_id(name)
            .recovery_window_in_days(RECOVERY_WINDOW_DAYS)
            .send()
            .await;
        match deleted {
            Ok(_) => Ok(()),
            // Not there, or already scheduled for deletion (InvalidRequestException): disconnect is idempotent.
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(
                        DeleteSecretError::ResourceNotFoundException(_)
                            | DeleteSecretError::InvalidRequestException(_)
                    )
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(from_sdk("tokens.delete", Service::SecretsManager, e)),
        }
    }
}
