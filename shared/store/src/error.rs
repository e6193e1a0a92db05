//! One error type for every port, and the mapping from AWS SDK errors to it.

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
pub type StoreResult<T> = Result<T, StoreError>;

/// What went wrong in the store. `op` names the port operation (e.g. `invoice.claim`). Messages never carry a
/// stored value (tokens, bodies): only operation names, AWS error codes and attribute names.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// AWS throttled the call even after the SDK's own retries (ProvisionedThroughputExceeded, ThrottlingException,
    /// RequestLimitExceeded, …). Retry later.
    #[error("{op}: throttled by AWS; retry later")]
    Throttled {
        op: &'static str,
        #[source]
        source: BoxError,
    },
    /// A conditional write found the item in another state than the caller assumed (e.g. a claim or lease that
    /// is no longer the caller's).
    #[error("{op}: the stored item is not in the expected state")]
    ConditionFailed { op: &'static str },
    /// The item (or secret) the operation needs does not exist.
    #[error("{op}: not found")]
    NotFound { op: &'static str },
    /// AWS could not be reached, timed out, or failed on its side (5xx). Retry later.
    #[error("{op}: AWS unavailable or timed out; retry later")]
    Unavailable {
        op: &'static str,
        #[source]
        source: BoxError,
    },
    /// A stored item or secret does not have the shape this crate writes.
    #[error("{op}: stored data is corrupt: {detail}")]
    Corrupt { op: &'static str, detail: String },
    /// Wrong table, missing permissions, no region or credentials: an operator must fix the deployment.
    #[error("{op}: store misconfigured: {detail}")]
    Config { op: &'static str, detail: String },
    /// AWS refused the request for another reason (a validation error: a bug in this crate). Not retryable.
    #[error("{op}: refused by AWS ({code})")]
    Rejected {
        op: &'static str,
        code: String,
        #[source]
        source: BoxError,
    },
}

impl StoreError {
    /// Whether the same call may succeed later without any change (throttling, outages, timeouts).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Throttled { .. } | StoreError::Unavailable { .. }
        )
    }

    pub(crate) fn corrupt(op: &'static str, detail: impl Into<String>) -> Self {
        StoreError::Corrupt {
            op,
            detail: detail.into(),
        }
    }
}

/// Which service answered: the same error code means different things (DynamoDB's ResourceNotFoundException is
/// a missing table, a configuration error; Secrets Manager's is a missing secret).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    DynamoDb,
    SecretsManager,
    Sqs,
    S3,
}

const THROTTLING_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
];

const SERVER_CODES: &[&str] = &[
    "InternalServerError",
    "InternalFailure",
    "InternalServiceError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
];

/// SQS: the receipt handle is no longer the message's (it became visible again and was received anew).
const STALE_RECEIPT_CODES: &[&str] = &[
    "ReceiptHandleIsInvalid",
    "AWS.SimpleQueueService.ReceiptHandleIsInvalid",
    "InvalidReceiptHandle",
];

/// SQS: the queue URL names no queue.
const MISSING_QUEUE_CODES: &[&str] = &[
    "QueueDoesNotExist",
    "AWS.SimpleQueueService.NonExistentQueue",
];

const CONFIG_CODES: &[&str] = &[
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "ExpiredTokenException",
    "DecryptionFailure",
];

/// What AWS said, without the raw HTTP response: an SDK error keeps the response body, which for Secrets Manager
/// can be a secret, so it is never kept as the source of a [`StoreError`] (whose `Debug` may be logged).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct AwsFailure(String);

/// Maps any SDK error of either service to a [`StoreError`].
pub(crate) fn from_sdk<E>(
    op: &'static str,
    service: Service,
    err: SdkError<E, HttpResponse>,
) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let failure = |text: String| -> BoxError { Box::new(AwsFailure(text)) };
    match &err {
        SdkError::ConstructionFailure(_) => {
            return StoreError::Config {
                op,
                detail: format!("request could not be built: {}", err_chain(&err)),
            };
        }
        // Transport failures carry no response: their chain names the cause (refused, reset, timed out).
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => {
            return StoreError::Unavailable {
                op,
                source: failure(err_chain(&err)),
            };
        }
        SdkError::ResponseError(_) => {
            return StoreError::Unavailable {
                op,
                source: failure("the response could not be read".into()),
            };
        }
        _ => {}
    }
    let code = err.code().unwrap_or("Unknown").to_owned();
    let status = err.raw_response().map(|r| r.status().as_u16()).unwrap_or(0);
    let said = || {
        failure(format!(
            "{code} (HTTP {status}): {}",
            err.message().unwrap_or("no message")
        ))
    };
    let code_is = |list: &[&str]| list.contains(&code.as_str());
    if code_is(THROTTLING_CODES) || status == 429 {
        StoreError::Throttled { op, source: said() }
    } else if code == "ConditionalCheckFailedException" || code_is(STALE_RECEIPT_CODES) {
        StoreError::ConditionFailed { op }
    } else if code == "ResourceNotFoundException" {
        match service {
            Service::SecretsManager => StoreError::NotFound { op },
            Service::DynamoDb => StoreError::Config {
                op,
                detail: "the DynamoDB table does not exist (check TABLE_NAME)".into(),
            },
            Service::Sqs => StoreError::Config {
                op,
                detail: "the queue does not exist (check the *_QUEUE_URL settings)".into(),
            },
            Service::S3 => StoreError::NotFound { op },
        }
    } else if code == "NoSuchBucket" {
        StoreError::Config {
            op,
            detail: "the bucket does not exist (check ATTACHMENT_BUCKET)".into(),
        }
    } else if code_is(MISSING_QUEUE_CODES) {
        StoreError::Config {
            op,
            detail: "the queue does not exist (check the *_QUEUE_URL settings)".into(),
        }
    } else if code_is(SERVER_CODES) || status >= 500 {
        StoreError::Unavailable { op, source: said() }
    } else if code_is(CONFIG_CODES) {
        StoreError::Config {
            op,
            detail: format!("AWS refused the credentials or permissions ({code})"),
        }
    } else {
        let source = said();
        StoreError::Rejected { op, code, source }
    }
}

/// The error and its sources on one line (SDK errors put the useful part in the source chain).
fn err_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        out.push_str(": ");
        out.push_str(&e.to_string());
        next = e.source();
    }
    out
}
