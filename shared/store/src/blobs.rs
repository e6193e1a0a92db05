//! Files kept outside the database: the attachments (PDF specification pages) of an asynchronous push, which are
//! too large for a queue message (256 KiB) or a DynamoDB item (400 KB). [`crate::ports::BlobStore`] with an
//! in-memory adapter and one on S3.
//!
//! S3: one object per file, `PutObject` (a single PUT takes up to 5 GB; our files are at most 4 MB together), with
//! server-side encryption (SSE-S3, AES-256) asked on every PUT besides the bucket's default; the bucket (template)
//! blocks public access, refuses plain HTTP and expires objects after 30 days, so a file whose push never ran is
//! gone by itself. Keys are chosen by the caller from validated ids (URL-safe), never from a file name.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;

use crate::error::{Service, StoreError, StoreResult, from_sdk};
use crate::ports::BlobStore;

/// Blobs in a map (tests, the local run without AWS).
#[derive(Debug, Default)]
pub struct MemoryBlobs(Mutex<HashMap<String, Vec<u8>>>);

impl MemoryBlobs {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many blobs are kept (tests).
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl BlobStore for MemoryBlobs {
    async fn put_blob(&self, key: &str, bytes: &[u8]) -> StoreResult<()> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_owned(), bytes.to_vec());
        Ok(())
    }

    async fn get_blob(&self, key: &str) -> StoreResult<Option<Vec<u8>>> {
        Ok(self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned())
    }

    async fn delete_blob(&self, key: &str) -> StoreResult<()> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
        Ok(())
    }
}

/// Blobs as objects of one S3 bucket (`ATTACHMENT_BUCKET`).
#[derive(Debug, Clone)]
pub struct S3Blobs {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3Blobs {
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        S3Blobs {
            client,
            bucket: bucket.into(),
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }
}

#[async_trait]
impl BlobStore for S3Blobs {
    async fn put_blob(&self, key: &str, bytes: &[u8]) -> StoreResult<()> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/octet-stream")
            .server_side_encryption(ServerSideEncryption::Aes256)
            .body(ByteStream::from(bytes.to_vec()))
            .send()
            .await
            .map_err(|e| from_sdk("blob.put", Service::S3, e))?;
        Ok(())
    }

    async fn get_blob(&self, key: &str) -> StoreResult<Option<Vec<u8>>> {
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(o) => o,
            Err(e) => {
                if e.as_service_error().is_some_and(|s| s.is_no_such_key()) {
                    return Ok(None);
                }
                return Err(from_sdk("blob.get", Service::S3, e));
            }
        };
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| StoreError::Unavailable {
                op: "blob.get",
                source: Box::new(e),
            })?;
        Ok(Some(bytes.into_bytes().to_vec()))
    }

    async fn delete_blob(&self, key: &str) -> StoreResult<()> {
        // S3 answers 204 for a key that does not exist as well.
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| from_sdk("blob.delete", Service::S3, e))?;
        Ok(())
    }
}

/// Creates a bucket (tests and the local run on moto; the template creates the real one).
pub async fn create_bucket(client: &aws_sdk_s3::Client, bucket: &str) -> StoreResult<()> {
    // Outside us-east-1, S3 wants the region named as the location constraint.
    let region = client.config().region().map(|r| r.as_ref().to_owned());
    let mut req = client.create_bucket().bucket(bucket);
    if let Some(r) = region.filter(|r| r != "us-east-1") {
        req = req.create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(
                    r.as_str(),
                ))
                .build(),
        );
    }
    req.send()
        .await
        .map_err(|e| from_sdk("blob.create_bucket", Service::S3, e))?;
    Ok(())
}
