//! Creating the table (tests and the local run; the SAM template declares the same one in AWS).

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::create_table::CreateTableError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TableStatus, TimeToLiveSpecification,
};

use crate::error::{Service, StoreError, StoreResult, from_sdk};
use crate::layout::{GSI1, GSI1_PK, GSI1_SK, GSI2, GSI2_PK, PK, SK, TTL};

fn attr(name: &str) -> StoreResult<AttributeDefinition> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .map_err(|e| config(e.to_string()))
}

fn key(name: &str, kind: KeyType) -> StoreResult<KeySchemaElement> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .map_err(|e| config(e.to_string()))
}

fn config(detail: String) -> StoreError {
    StoreError::Config {
        op: "table.create",
        detail,
    }
}

/// Creates the table with the layout of the crate docs (on-demand billing, `gsi1`, `gsi2`, TTL on `ttl`) and
/// waits until it is active. An existing table of that name is left as it is.
pub async fn create_table(client: &Client, name: &str) -> StoreResult<()> {
    const OP: &str = "table.create";
    let gsi1 = GlobalSecondaryIndex::builder()
        .index_name(GSI1)
        .key_schema(key(GSI1_PK, KeyType::Hash)?)
        .key_schema(key(GSI1_SK, KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        )
        .build()
        .map_err(|e| config(e.to_string()))?;
    let gsi2 = GlobalSecondaryIndex::builder()
        .index_name(GSI2)
        .key_schema(key(GSI2_PK, KeyType::Hash)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::KeysOnly)
                .build(),
        )
        .build()
        .map_err(|e| config(e.to_string()))?;
    let created = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr(PK)?)
        .attribute_definitions(attr(SK)?)
        .attribute_definitions(attr(GSI1_PK)?)
        .attribute_definitions(attr(GSI1_SK)?)
        .attribute_definitions(attr(GSI2_PK)?)
        .key_schema(key(PK, KeyType::Hash)?)
        .key_schema(key(SK, KeyType::Range)?)
        .global_secondary_indexes(gsi1)
        .global_secondary_indexes(gsi2)
        .send()
        .await;
    match created {
        Ok(_) => {}
        Err(e)
            if matches!(
                e.as_service_error(),
                Some(CreateTableError::ResourceInUseException(_))
            ) =>
        {
            return Ok(());
        }
        Err(e) => return Err(from_sdk(OP, Service::DynamoDb, e)),
    }
    wait_active(client, name).await?;
    let ttl = TimeToLiveSpecification::builder()
        .attribute_name(TTL)
        .enabled(true)
        .build()
        .map_err(|e| config(e.to_string()))?;
    client
        .update_time_to_live()
        .table_name(name)
        .time_to_live_specification(ttl)
        .send()
        .await
        .map_err(|e| from_sdk(OP, Service::DynamoDb, e))?;
    Ok(())
}

async fn wait_active(client: &Client, name: &str) -> StoreResult<()> {
    const OP: &str = "table.create";
    for _ in 0..120 {
        let out = client
            .describe_table()
            .table_name(name)
            .send()
            .await
            .map_err(|e| from_sdk(OP, Service::DynamoDb, e))?;
        if out.table.and_then(|t| t.table_status) == Some(TableStatus::Active) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(config(format!(
        "table {name} did not become active within a minute"
    )))
}
