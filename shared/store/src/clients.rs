//! The AWS SDK clients, built once per execution environment (a Lambda's init phase) and shared by every
//! invocation.

use std::sync::Arc;
use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, ConfigLoader, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;

use crate::dynamo::DynamoStore;
use crate::error::{StoreError, StoreResult};
use crate::http::sdk_http_client;
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
    /// The configuration, for the S3 client: made only where it is used ([`Self::s3`]), so a binary that never
    /// keeps attachments does not link the S3 SDK at all (it is the largest of them).
    config: SdkConfig,
    tls: Arc<rustls::ClientConfig>,
}

impl AwsClients {
    /// The standard AWS configuration chain: region and credentials from the environment (Lambda sets them),
    /// `AWS_ENDPOINT_URL` honoured (moto in tests and the local run). HTTPS with `tls`: the process's one rustls
    /// configuration, shared with its other HTTP clients.
    pub async fn from_env(tls: Arc<rustls::ClientConfig>) -> StoreResult<Self> {
        let config = Self::loader(&tls).load().await;
        if config.region().is_none() {
            return Err(StoreError::Config {
                op: "aws.config",
                detail: "no AWS region (set AWS_REGION)".into(),
            });
        }
        Ok(Self::new(&config, tls))
    }

    /// A fixed plain-http endpoint, region and static test credentials (moto). Never for real AWS: it trusts no
    /// certificate, so an `https://` endpoint fails instead of being trusted blindly.
    pub async fn for_endpoint(endpoint_url: &str, region: &str) -> Self {
        let tls = trusts_nothing();
        let config = Self::loader(&tls)
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
        Self::new(&config, tls)
    }

    /// `config` must carry the HTTP client built from `tls` (see [`Self::loader`]).
    fn new(config: &SdkConfig, tls: Arc<rustls::ClientConfig>) -> Self {
        AwsClients {
            dynamodb: aws_sdk_dynamodb::Client::new(config),
            secrets: aws_sdk_secretsmanager::Client::new(config),
            sqs: aws_sdk_sqs::Client::new(config),
            config: config.clone(),
            tls,
        }
    }

    fn loader(tls: &Arc<rustls::ClientConfig>) -> ConfigLoader {
        aws_config::defaults(BehaviorVersion::latest())
            .timeout_config(timeouts())
            .http_client(sdk_http_client(Arc::clone(tls)))
    }

    /// The TLS configuration the clients' HTTP client was built from.
    pub fn tls(&self) -> &Arc<rustls::ClientConfig> {
        &self.tls
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

    /// A new S3 client (cheap: it shares the configuration's HTTP client). Path-style addressing when an endpoint
    /// is set (moto: one host serves every bucket); virtual-hosted on AWS.
    pub fn s3(&self) -> aws_sdk_s3::Client {
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&self.config)
                .force_path_style(self.config.endpoint_url().is_some())
                .build(),
        )
    }

    /// The attachment store on `bucket` (`ATTACHMENT_BUCKET`).
    pub fn blobs(&self, bucket: &str) -> crate::S3Blobs {
        crate::S3Blobs::new(self.s3(), bucket)
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

/// A rustls configuration with no root at all, for plain-http test endpoints.
fn trusts_nothing() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the aws-lc-rs provider supports TLS 1.2 and 1.3")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    Arc::new(config)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use aws_config::retry::RetryConfig;

    use super::*;

    /// The first bytes a TLS client sends to a listener on loopback (its ClientHello), and the listener's address.
    fn hello_catcher() -> (String, std::thread::JoinHandle<Vec<u8>>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let hello = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let mut buf = vec![0; 8192];
            let n = s.read(&mut buf).expect("read");
            buf.truncate(n);
            buf
        });
        (format!("https://{addr}"), hello)
    }

    #[tokio::test]
    async fn sdk_requests_go_through_the_given_tls_configuration() {
        // A configuration told apart by its ALPN offer, which travels in the ClientHello.
        let mut marked = rustls::ClientConfig::clone(&trusts_nothing());
        marked.alpn_protocols = vec![b"psa-exact-marker".to_vec()];
        let tls = Arc::new(marked);
        let (endpoint, hello) = hello_catcher();
        let config = AwsClients::loader(&tls)
            .region(Region::new("eu-west-1"))
            .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
            .endpoint_url(endpoint)
            .retry_config(RetryConfig::disabled())
            .load()
            .await;
        let aws = AwsClients::new(&config, Arc::clone(&tls));
        assert!(Arc::ptr_eq(aws.tls(), &tls));
        let sent = aws.secrets().get_secret_value().secret_id("s").send().await;
        assert!(sent.is_err(), "the listener speaks no TLS");
        let hello = hello.join().expect("listener");
        assert_eq!(hello.first(), Some(&0x16), "a TLS handshake record");
        assert!(
            hello.windows(16).any(|w| w == b"psa-exact-marker"),
            "the ClientHello carries the given configuration's ALPN"
        );
    }
}
