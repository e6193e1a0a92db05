//! The blob port's contract (attachments of asynchronous pushes), over the in-memory adapter and S3 on moto (the
//! real wire protocol, path-style addressing).

use store::{AwsClients, BlobStore, MemoryBlobs, StoreError, create_bucket};
use testkit::{MotoServer, unique};

use crate::common::REGION;

async fn contract(s: &dyn BlobStore) {
    assert_eq!(s.get_blob("c/inv/0").await.unwrap(), None, "nothing yet");
    // A 1 MB file with every byte value: what goes in comes out, byte for byte.
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    s.put_blob("c/inv/0", &big).await.unwrap();
    s.put_blob("c/inv/1", b"%PDF-1.4 small").await.unwrap();
    assert_eq!(
        s.get_blob("c/inv/0").await.unwrap().as_deref(),
        Some(&big[..])
    );
    assert_eq!(
        s.get_blob("c/inv/1").await.unwrap().as_deref(),
        Some(&b"%PDF-1.4 small"[..])
    );
    // A put over a key replaces it.
    s.put_blob("c/inv/1", b"%PDF-1.5").await.unwrap();
    assert_eq!(
        s.get_blob("c/inv/1").await.unwrap().as_deref(),
        Some(&b"%PDF-1.5"[..])
    );
    s.delete_blob("c/inv/0").await.unwrap();
    assert_eq!(s.get_blob("c/inv/0").await.unwrap(), None);
    s.delete_blob("c/inv/0").await.unwrap();
    s.delete_blob("never/there").await.unwrap();
    assert!(
        s.get_blob("c/inv/1").await.unwrap().is_some(),
        "others stay"
    );
}

#[tokio::test]
async fn blobs_in_memory() {
    contract(&MemoryBlobs::new()).await;
}

#[tokio::test]
async fn blobs_on_moto_s3() {
    let server = MotoServer::shared().await;
    let clients = AwsClients::for_endpoint(&server.endpoint(), REGION).await;
    let bucket = unique("attachments");
    create_bucket(&clients.s3(), &bucket).await.unwrap();
    let s = clients.blobs(&bucket);
    contract(&s).await;
    // Encrypted at rest as asked.
    let head = clients
        .s3()
        .head_object()
        .bucket(&bucket)
        .key("c/inv/1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.server_side_encryption().map(|e| e.as_str()),
        Some("AES256")
    );
    // A bucket that does not exist is a configuration error, not a missing file.
    let missing = clients.blobs(&unique("nobucket"));
    match missing.get_blob("k").await {
        Err(StoreError::Config { .. }) => {}
        other => panic!("{other:?}"),
    }
}
