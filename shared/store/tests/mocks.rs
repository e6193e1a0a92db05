//! Fault injection with aws-smithy-mocks (and a failing HTTP connector): how AWS errors map to domain outcomes.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
use aws_sdk_dynamodb::operation::put_item::{PutItemError, PutItemOutput};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::types::error::ConditionalCheckFailedException;
use aws_sdk_secretsmanager::operation::create_secret::CreateSecretOutput;
use aws_sdk_secretsmanager::operation::describe_secret::{
    DescribeSecretError, DescribeSecretOutput,
};
use aws_sdk_secretsmanager::operation::get_secret_value::{
    GetSecretValueError, GetSecretValueOutput,
};
use aws_sdk_secretsmanager::operation::put_secret_value::PutSecretValueOutput;
use aws_sdk_secretsmanager::operation::restore_secret::RestoreSecretOutput;
use aws_sdk_secretsmanager::types::error::{InvalidRequestException, ResourceNotFoundException};
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use aws_smithy_runtime_api::client::http::{
    HttpConnector, HttpConnectorFuture, SharedHttpConnector, http_client_fn,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::http::{Response, StatusCode};
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::timeout::TimeoutConfig;
use mapping::Country;
use secrecy::{ExposeSecret, SecretString};
use store::{
    Claim, DynamoStore, InvoiceStore, LeaseStore, OAuthStateStore, SecretsTokenStore, StoreError,
    TokenRecord, TokenSlot, TokenStore, WebhookDedupe,
};

use crate::common::{conn, div, t};

const TABLE: &str = "state";

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

/// An in-progress invoice item as the crate documents it (claimed by `a` until t(60)).
fn in_progress_item() -> HashMap<String, AttributeValue> {
    [
        ("pk", s("CONN#bu_1")),
        ("sk", s("INV#inv_1")),
        ("kind", s("invoice")),
        ("ver", s("v1")),
        ("connection_id", s("bu_1")),
        ("invoice_id", s("inv_1")),
        ("body_hash", s("h1")),
        ("phase", s("in_progress")),
        ("owner", s("a")),
        ("lease_expires_at", s("2025-10-01T12:01:00Z")),
        ("state", s("pending")),
        ("created_at", s("2025-10-01T12:00:00Z")),
        ("updated_at", s("2025-10-01T12:00:00Z")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

fn no_retries(c: aws_sdk_dynamodb::config::Builder) -> aws_sdk_dynamodb::config::Builder {
    c.retry_config(RetryConfig::disabled())
}

/// A DynamoDB error as it comes over the wire (awsJson1_0), so the SDK's own deserializer and retry classifier
/// see exactly what AWS sends.
fn dynamo_error(status: u16, code: &str) -> Response<SdkBody> {
    let body =
        format!(r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{code}","message":"injected"}}"#);
    let mut resp = Response::new(StatusCode::try_from(status).unwrap(), SdkBody::from(body));
    resp.headers_mut()
        .insert("content-type", "application/x-amz-json-1.0");
    resp
}

#[tokio::test]
async fn provisioned_throughput_exceeded_is_retried_by_the_sdk_then_throttled() {
    let throttled = mock!(aws_sdk_dynamodb::Client::put_item)
        .then_http_response(|| dynamo_error(400, "ProvisionedThroughputExceededException"));
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&throttled], |c| c
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(1))
        ));
    let store = DynamoStore::new(client, TABLE);
    let err = store
        .first_seen("evt", t(0), Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Throttled {
                op: "webhook.first_seen",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert_eq!(
        throttled.num_calls(),
        3,
        "the SDK retried throttling before giving up"
    );
}

#[tokio::test]
async fn unmodelled_throttling_exception_is_throttled() {
    // ThrottlingException is not in GetItem's model: it arrives as an unhandled error with that code.
    let throttled = mock!(aws_sdk_dynamodb::Client::get_item)
        .then_http_response(|| dynamo_error(400, "ThrottlingException"));
    let client = mock_client!(
        aws_sdk_dynamodb,
        RuleMode::MatchAny,
        [&throttled],
        no_retries
    );
    let err = DynamoStore::new(client, TABLE)
        .get_invoice(&conn("bu_1"), "inv_1")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Throttled { .. }), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn request_limit_exceeded_is_throttled() {
    let limited = mock!(aws_sdk_dynamodb::Client::put_item)
        .then_http_response(|| dynamo_error(400, "RequestLimitExceeded"));
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&limited], no_retries);
    let err = DynamoStore::new(client, TABLE)
        .acquire("refresh:bu_1", "a", t(0), Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Throttled {
                op: "lease.acquire",
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn server_errors_are_unavailable_and_a_missing_table_is_config() {
    let internal = mock!(aws_sdk_dynamodb::Client::get_item)
        .match_requests(|r| r.table_name() == Some("up"))
        .then_http_response(|| dynamo_error(500, "InternalServerError"));
    let missing = mock!(aws_sdk_dynamodb::Client::get_item)
        .match_requests(|r| r.table_name() == Some("gone"))
        .then_http_response(|| dynamo_error(400, "ResourceNotFoundException"));
    let invalid = mock!(aws_sdk_dynamodb::Client::get_item)
        .match_requests(|r| r.table_name() == Some("bad"))
        .then_http_response(|| dynamo_error(400, "ValidationException"));
    let client = mock_client!(
        aws_sdk_dynamodb,
        RuleMode::MatchAny,
        [&internal, &missing, &invalid],
        no_retries
    );
    let get = |table: &str| {
        let store = DynamoStore::new(client.clone(), table);
        async move { store.get_invoice(&conn("bu_1"), "inv_1").await.unwrap_err() }
    };

    let err = get("up").await;
    assert!(
        matches!(err, StoreError::Unavailable { .. }) && err.is_retryable(),
        "{err:?}"
    );
    let shown = format!("{err:?}");
    assert!(shown.contains("InternalServerError"), "{shown}");
    assert!(
        !shown.contains("__type"),
        "the raw response body is not kept: {shown}"
    );
    let err = get("gone").await;
    assert!(
        matches!(err, StoreError::Config { .. }) && !err.is_retryable(),
        "{err:?}"
    );
    let err = get("bad").await;
    assert!(
        matches!(&err, StoreError::Rejected { code, .. } if code == "ValidationException")
            && !err.is_retryable(),
        "{err:?}"
    );
}

#[tokio::test]
async fn conditional_failure_on_a_claim_answers_in_progress() {
    let taken = mock!(aws_sdk_dynamodb::Client::put_item).then_error(|| {
        let mut e =
            ConditionalCheckFailedException::builder().message("The conditional request failed");
        for (k, v) in in_progress_item() {
            e = e.item(k, v);
        }
        PutItemError::ConditionalCheckFailedException(e.build())
    });
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&taken], no_retries);
    let claim = DynamoStore::new(client, TABLE)
        .claim(
            &conn("bu_1"),
            "inv_1",
            "h1",
            "b",
            t(20),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(
        claim,
        Claim::InProgress {
            retry_after: Duration::from_secs(40)
        }
    );
    assert_eq!(
        taken.num_calls(),
        1,
        "one conditional put; the old item came back with the failure"
    );
}

#[tokio::test]
async fn conditional_failure_without_the_old_item_reads_it() {
    let taken = mock!(aws_sdk_dynamodb::Client::put_item).then_error(|| {
        PutItemError::ConditionalCheckFailedException(
            ConditionalCheckFailedException::builder().build(),
        )
    });
    let read = mock!(aws_sdk_dynamodb::Client::get_item).then_output(|| {
        GetItemOutput::builder()
            .set_item(Some(in_progress_item()))
            .build()
    });
    let client = mock_client!(
        aws_sdk_dynamodb,
        RuleMode::MatchAny,
        [&taken, &read],
        no_retries
    );
    let claim = DynamoStore::new(client, TABLE)
        .claim(
            &conn("bu_1"),
            "inv_1",
            "h2",
            "b",
            t(30),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert!(matches!(claim, Claim::InProgress { .. }), "{claim:?}");
    assert_eq!(read.num_calls(), 1);
}

#[tokio::test]
async fn conditional_failures_on_leases_and_states_are_plain_answers() {
    let held = mock!(aws_sdk_dynamodb::Client::put_item).then_error(|| {
        PutItemError::ConditionalCheckFailedException(
            ConditionalCheckFailedException::builder().build(),
        )
    });
    let not_owner = mock!(aws_sdk_dynamodb::Client::delete_item).then_error(|| {
        DeleteItemError::ConditionalCheckFailedException(
            ConditionalCheckFailedException::builder().build(),
        )
    });
    let client = mock_client!(
        aws_sdk_dynamodb,
        RuleMode::MatchAny,
        [&held, &not_owner],
        no_retries
    );
    let store = DynamoStore::new(client, TABLE);

    assert!(
        !store
            .acquire("refresh:bu_1", "b", t(0), Duration::from_secs(30))
            .await
            .unwrap()
    );
    assert!(!store.release("refresh:bu_1", "b").await.unwrap());
    assert!(
        !store
            .first_seen("evt", t(0), Duration::from_secs(60))
            .await
            .unwrap()
    );
    assert_eq!(
        store.take_state("st", t(0)).await.unwrap(),
        None,
        "already taken"
    );
    assert_eq!((held.num_calls(), not_owner.num_calls()), (2, 2));
}

#[tokio::test]
async fn a_successful_lease_put_is_acquired() {
    let free = mock!(aws_sdk_dynamodb::Client::put_item)
        .match_requests(|r| {
            r.condition_expression()
                .is_some_and(|c| c.contains("attribute_not_exists"))
                && r.item().and_then(|i| i.get("owner")) == Some(&s("a"))
        })
        .then_output(|| PutItemOutput::builder().build());
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&free], no_retries);
    assert!(
        DynamoStore::new(client, TABLE)
            .acquire("refresh:bu_1", "a", t(0), Duration::from_secs(30))
            .await
            .unwrap()
    );
}

// --- Secrets Manager ---

fn sm_no_retries(
    c: aws_sdk_secretsmanager::config::Builder,
) -> aws_sdk_secretsmanager::config::Builder {
    c.retry_config(RetryConfig::disabled())
}

fn tokens() -> TokenRecord {
    TokenRecord {
        access_token: SecretString::from("acc"),
        refresh_token: SecretString::from("ref"),
        access_expires_at: t(600),
        last_refresh_at: t(0),
        country: Country::Nl,
        division: div(1234567),
    }
}

#[tokio::test]
async fn missing_secret_is_not_connected() {
    let missing = mock!(aws_sdk_secretsmanager::Client::get_secret_value).then_error(|| {
        GetSecretValueError::ResourceNotFoundException(
            ResourceNotFoundException::builder()
                .message("Secrets Manager can't find the specified secret.")
                .build(),
        )
    });
    let client = mock_client!(
        aws_sdk_secretsmanager,
        RuleMode::MatchAny,
        [&missing],
        sm_no_retries
    );
    let got = SecretsTokenStore::new(client, "psa-exact/tokens/")
        .get(&conn("bu_1"), TokenSlot::Zero)
        .await
        .unwrap();
    assert!(got.is_none());
    assert_eq!(missing.num_calls(), 1);
}

#[tokio::test]
async fn secret_scheduled_for_deletion_is_not_connected() {
    let deleted = mock!(aws_sdk_secretsmanager::Client::get_secret_value).then_error(|| {
        GetSecretValueError::InvalidRequestException(
            InvalidRequestException::builder()
                .message("You can't perform this operation on the secret because it was marked for deletion.")
                .build(),
        )
    });
    let client = mock_client!(
        aws_sdk_secretsmanager,
        RuleMode::MatchAny,
        [&deleted],
        sm_no_retries
    );
    let got = SecretsTokenStore::new(client, "p/")
        .get(&conn("bu_1"), TokenSlot::Zero)
        .await
        .unwrap();
    assert!(got.is_none());
}

#[tokio::test]
async fn secret_reads_use_the_prefixed_name_and_reject_foreign_json() {
    let ok = mock!(aws_sdk_secretsmanager::Client::get_secret_value)
        .match_requests(|r| r.secret_id() == Some("psa-exact/tokens/bu_1"))
        .then_output(|| {
            GetSecretValueOutput::builder()
                .secret_string(
                    r#"{"access_token":"acc","refresh_token":"ref","access_expires_at":"2025-10-01T12:10:00Z",
                        "last_refresh_at":"2025-10-01T12:00:00Z","country":"nl","division":1234567}"#,
                )
                .build()
        });
    let foreign = mock!(aws_sdk_secretsmanager::Client::get_secret_value)
        .match_requests(|r| r.secret_id() == Some("psa-exact/tokens/bu_2"))
        .then_output(|| {
            GetSecretValueOutput::builder()
                .secret_string(r#"{"token":"leaky-value"}"#)
                .build()
        });
    let client = mock_client!(
        aws_sdk_secretsmanager,
        RuleMode::MatchAny,
        [&ok, &foreign],
        sm_no_retries
    );
    let ts = SecretsTokenStore::new(client, "psa-exact/tokens/");

    let got = ts
        .get(&conn("bu_1"), TokenSlot::Zero)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.refresh_token.expose_secret(), "ref");
    assert_eq!(got.access_expires_at, t(600));

    let err = ts.get(&conn("bu_2"), TokenSlot::Zero).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(
        !format!("{err} {err:?}").contains("leaky-value"),
        "errors never quote a secret"
    );
}

#[tokio::test]
async fn first_put_creates_the_secret() {
    let none = mock!(aws_sdk_secretsmanager::Client::describe_secret).then_error(|| {
        DescribeSecretError::ResourceNotFoundException(ResourceNotFoundException::builder().build())
    });
    let create = mock!(aws_sdk_secretsmanager::Client::create_secret)
        .match_requests(|r| {
            r.name() == Some("p/bu_1.1")
                && r.secret_string()
                    .and_then(|v| serde_json::from_str::<serde_json::Value>(v).ok())
                    .is_some_and(|j| j["refresh_token"] == "ref" && j["division"] == 1234567)
        })
        .then_output(|| CreateSecretOutput::builder().name("p/bu_1.1").build());
    let client = mock_client!(
        aws_sdk_secretsmanager,
        RuleMode::MatchAny,
        [&none, &create],
        sm_no_retries
    );
    // Slot 1 of a connection: its first write creates `{prefix}{id}.1`.
    SecretsTokenStore::new(client, "p/")
        .put(&conn("bu_1"), TokenSlot::One, &tokens())
        .await
        .unwrap();
    assert_eq!(create.num_calls(), 1);
}

#[tokio::test]
async fn put_after_disconnect_restores_then_puts_a_new_version() {
    // Real Secrets Manager refuses PutSecretValue on a secret scheduled for deletion, so it is restored first.
    let scheduled = mock!(aws_sdk_secretsmanager::Client::describe_secret).then_output(|| {
        DescribeSecretOutput::builder()
            .name("p/bu_1")
            .deleted_date(aws_smithy_types::DateTime::from_secs(1_760_000_000))
            .build()
    });
    let restore = mock!(aws_sdk_secretsmanager::Client::restore_secret)
        .match_requests(|r| r.secret_id() == Some("p/bu_1"))
        .then_output(|| RestoreSecretOutput::builder().build());
    let put = mock!(aws_sdk_secretsmanager::Client::put_secret_value)
        .match_requests(|r| r.secret_id() == Some("p/bu_1"))
        .then_output(|| PutSecretValueOutput::builder().build());
    let client = mock_client!(
        aws_sdk_secretsmanager,
        RuleMode::MatchAny,
        [&scheduled, &restore, &put],
        sm_no_retries
    );
    SecretsTokenStore::new(client, "p/")
        .put(&conn("bu_1"), TokenSlot::Zero, &tokens())
        .await
        .unwrap();
    assert_eq!((restore.num_calls(), put.num_calls()), (1, 1));
}

#[tokio::test]
async fn delete_uses_the_seven_day_recovery_window() {
    // Both slots: `{prefix}{id}` and `{prefix}{id}.1`.
    let delete = mock!(aws_sdk_secretsmanager::Client::delete_secret)
        .match_requests(|r| {
            matches!(r.secret_id(), Some("p/bu_1" | "p/bu_1.1"))
                && r.recovery_window_in_days() == Some(7)
                && r.force_delete_without_recovery().is_none()
        })
        .then_output(|| {
            aws_sdk_secretsmanager::operation::delete_secret::DeleteSecretOutput::builder().build()
        });
    let client = mock_client!(
        aws_sdk_secretsmanager,
        RuleMode::MatchAny,
        [&delete],
        sm_no_retries
    );
    SecretsTokenStore::new(client, "p/")
        .delete(&conn("bu_1"))
        .await
        .unwrap();
    assert_eq!(delete.num_calls(), 2);
}

// --- transport failures ---

/// A connector that fails the way a network does: refused (`io`) or never answering.
#[derive(Debug, Clone, Copy)]
enum Network {
    Refused,
    Silent,
}

impl HttpConnector for Network {
    fn call(&self, _request: HttpRequest) -> HttpConnectorFuture {
        match self {
            Network::Refused => {
                HttpConnectorFuture::ready(Err(ConnectorError::io("connection refused".into())))
            }
            Network::Silent => HttpConnectorFuture::new(std::future::pending()),
        }
    }
}

fn dynamo_over(network: Network) -> DynamoStore {
    let config = aws_sdk_dynamodb::Config::builder()
        .with_test_defaults_v2()
        .http_client(http_client_fn(move |_, _| {
            SharedHttpConnector::new(network)
        }))
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .operation_timeout(Duration::from_millis(200))
                .build(),
        )
        .build();
    DynamoStore::new(aws_sdk_dynamodb::Client::from_conf(config), TABLE)
}

#[tokio::test]
async fn dispatch_failure_is_unavailable() {
    let err = dynamo_over(Network::Refused)
        .get_invoice(&conn("bu_1"), "inv_1")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn timeout_is_unavailable() {
    let err = dynamo_over(Network::Silent)
        .claim(
            &conn("bu_1"),
            "inv_1",
            "h",
            "a",
            t(0),
            Duration::from_secs(60),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn secrets_manager_outage_is_unavailable() {
    let config = aws_sdk_secretsmanager::Config::builder()
        .with_test_defaults_v2()
        .http_client(http_client_fn(|_, _| {
            SharedHttpConnector::new(Network::Refused)
        }))
        .retry_config(RetryConfig::disabled())
        .build();
    let ts = SecretsTokenStore::new(aws_sdk_secretsmanager::Client::from_conf(config), "p/");
    let err = ts.get(&conn("bu_1"), TokenSlot::Zero).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Unavailable { .. }) && err.is_retryable(),
        "{err:?}"
    );
}
