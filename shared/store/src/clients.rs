//! The AWS SDK clients, built once per execution environment (a Lambda's init phase) and shared by every
//! invocation.

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, ConfigLoader, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;

use crate::dynamo::DynamoStore;
use crate::error::{StoreError, StoreResult};
use crate::secrets::SecretsTokenStore;
use crate::sqs::SqsQueue;

/// A whole call, SDK retries included, must leave room inside the 29 s function timeout; a single attempt to
/// DynamoDB or Secrets Manager normally takes milliseconds.
fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(2))
        .operation_attempt_timeout(Duration::from_secs(5))
        .operation_timeout(Duration::from_secs(12))
        .build()
}

/// DynamoDB, Secrets Manager and SQS clients from one SDK configuration.
#[derive(Debug, Clone)]
pub struct AwsClients {
    dynamodb: aws_sdk_dynamodb::Client,
    secrets: aws_sdk_secretsmanager::Client,
    sqs: aws_sdk_sqs::Client,
}

impl AwsClients {
    /// The standard AWS configuration chain: region and credentials from the environment (Lambda sets them),
    /// `AWS_ENDPOINT_URL` honoured (moto in tests and the local run).
    pub async fn from_env() -> StoreResult<Self> {
        let config = Self::loader().load().await;
        if config.region().is_none() {
            return Err(StoreError::Config {
                op: "aws.config",
                detail: "no AWS region (set AWS_REGION)".into(),
            });
        }
        Ok(Self::from_sdk_config(&config))
    }

    /// A fixed endpoint, region and static test credentials (moto, the local run). Never for real AWS.
    pub async fn for_endpoint(endpoint_url: &str, region: &str) -> Self {
        let config = Self::loader()
            .region(Region::new(region.to_owned()))
            .credentials_provider(Credentials::new(
                "testing",
                "testing",
                None,
                None,
                "static-test",
            ))
            .endpoint_url(endpoint_url)
            .load()
            .await;
        Self::from_sdk_config(&config)
    }

    pub fn from_sdk_config(config: &SdkConfig) -> Self {
        AwsClients {
            dynamodb: aws_sdk_dynamodb::Client::new(config),
            secrets: aws_sdk_secretsmanager::Client::new(config),
            sqs: aws_sdk_sqs::Client::new(config),
        }
    }

    fn loader() -> ConfigLoader {
        aws_config::defaults(BehaviorVersion::latest()).timeout_config(timeouts())
    }

    pub fn dynamodb(&self) -> &aws_sdk_dynamodb::Client {
        &self.dynamodb
    }

    pub fn secrets(&self) -> &aws_sdk_secretsmanager::Client {
        &self.secrets
    }

    pub fn sqs(&self) -> &aws_sdk_sqs::Client {
        &self.sqs
    }

    /// The work queues (SQS FIFO).
    pub fn queue(&self) -> SqsQueue {
        SqsQueue::new(self.sqs.clone())
    }

    /// The state store on `table` (`TABLE_NAME`).
    pub fn dynamo_store(&self, table: &str) -> DynamoStore {
        DynamoStore::new(self.dynamodb.clone(), table)
    }

    /// The token store with secret names `{prefix}{connection_id}` (`TOKEN_SECRET_PREFIX`).
    pub fn token_store(&self, prefix: &str) -> SecretsTokenStore {
        SecretsTokenStore::new(self.secrets.clone(), prefix)
    }
}
