//! The DynamoDB adapter: every state port on one table (layout in the crate docs and [`crate::layout`]).

mod budget;
mod codec;
mod connections;
mod ephemeral;
mod events;
mod invoices;
mod queued_push;
mod table;

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};

pub use table::create_table;

use crate::error::{Service, StoreError, StoreResult, from_sdk};
use crate::layout::{PK, SK};
use codec::{Item, s};

/// Every DynamoDB-backed port on one table. Cheap to clone (the SDK client is an `Arc` inside).
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoStore {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    async fn get_item(&self, op: &'static str, pk: String, sk: &str) -> StoreResult<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, s(pk))
            .key(SK, s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| from_sdk(op, Service::DynamoDb, e))?;
        Ok(out.item)
    }

    async fn put_item(&self, op: &'static str, item: Item) -> StoreResult<()> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| from_sdk(op, Service::DynamoDb, e))?;
        Ok(())
    }

    /// A put that only happens when `cond` holds; on failure the item as it was (if any) comes back.
    async fn put_if(&self, op: &'static str, item: Item, cond: Cond) -> StoreResult<Written> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(cond.expr)
            .set_expression_attribute_names(non_empty(cond.names))
            .set_expression_attribute_values(non_empty(cond.values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Written::Yes),
            Err(e) => match e.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(c)) => Ok(Written::No {
                    old: c.item().cloned(),
                }),
                _ => Err(from_sdk(op, Service::DynamoDb, e)),
            },
        }
    }

    async fn delete_item(&self, op: &'static str, pk: String, sk: &str) -> StoreResult<()> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(PK, s(pk))
            .key(SK, s(sk))
            .send()
            .await
            .map_err(|e| from_sdk(op, Service::DynamoDb, e))?;
        Ok(())
    }

    /// A delete that only happens when `cond` holds. `Ok(Some(old))`: deleted, with the item as it was.
    async fn delete_if(
        &self,
        op: &'static str,
        pk: String,
        sk: &str,
        cond: Cond,
    ) -> StoreResult<Option<Item>> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(PK, s(pk))
            .key(SK, s(sk))
            .condition_expression(cond.expr)
            .set_expression_attribute_names(non_empty(cond.names))
            .set_expression_attribute_values(non_empty(cond.values))
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => Ok(Some(out.attributes.unwrap_or_default())),
            Err(e) => match e.as_service_error() {
                Some(DeleteItemError::ConditionalCheckFailedException(_)) => Ok(None),
                _ => Err(from_sdk(op, Service::DynamoDb, e)),
            },
        }
    }

    /// An update that only happens when `cond` holds. False when it did not.
    async fn update_if(
        &self,
        op: &'static str,
        pk: String,
        sk: &str,
        update: &str,
        cond: Cond,
    ) -> StoreResult<bool> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(pk))
            .key(SK, s(sk))
            .update_expression(update)
            .condition_expression(cond.expr)
            .set_expression_attribute_names(non_empty(cond.names))
            .set_expression_attribute_values(non_empty(cond.values))
            .send()
            .await;
        match result.map_err(|e| from_sdk(op, Service::DynamoDb, e)) {
            Ok(_) => Ok(true),
            Err(StoreError::ConditionFailed { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every item under one partition key of the table (consistent) or of an index (eventually consistent),
    /// following pagination.
    async fn query(
        &self,
        op: &'static str,
        index: Option<(&str, &str)>,
        pk: String,
    ) -> StoreResult<Vec<Item>> {
        let (index_name, key_attr) = match index {
            Some((name, attr)) => (Some(name.to_owned()), attr),
            None => (None, PK),
        };
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .set_index_name(index_name.clone())
                .key_condition_expression("#k = :k")
                .expression_attribute_names("#k", key_attr)
                .expression_attribute_values(":k", s(pk.clone()))
                .set_consistent_read(index_name.is_none().then_some(true))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| from_sdk(op, Service::DynamoDb, e))?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(items),
            }
        }
    }
}

/// A condition expression with its placeholders.
#[derive(Debug, Default)]
struct Cond {
    expr: String,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Cond {
    fn new(expr: &str) -> Self {
        Cond {
            expr: expr.to_owned(),
            ..Cond::default()
        }
    }

    fn name(mut self, placeholder: &str, attr: &str) -> Self {
        self.names.insert(placeholder.to_owned(), attr.to_owned());
        self
    }

    fn value(mut self, placeholder: &str, v: AttributeValue) -> Self {
        self.values.insert(placeholder.to_owned(), v);
        self
    }
}

/// Whether a conditional put happened.
#[derive(Debug)]
enum Written {
    Yes,
    No { old: Option<Item> },
}

/// DynamoDB refuses empty placeholder maps.
fn non_empty<K, V>(m: HashMap<K, V>) -> Option<HashMap<K, V>> {
    (!m.is_empty()).then_some(m)
}

/// How often an optimistic read-modify-write retries after losing a race before giving up.
const OPTIMISTIC_ATTEMPTS: usize = 5;
