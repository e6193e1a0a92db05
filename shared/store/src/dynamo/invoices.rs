//! Invoice records on DynamoDB. A new claim is one conditional put (`attribute_not_exists`); every other change
//! reads the item, applies the rule from [`crate::invoice`], and writes it back on the condition that the item's
//! version (`ver`, a fresh UUID per write) is still the one read. A lost race re-reads and re-decides.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::Select;
use chrono::{DateTime, Utc};
use mapping::{ConnectionId, ExactGuid};

use super::codec::{self, Item, s};
use super::{Cond, DynamoStore, OPTIMISTIC_ATTEMPTS, Written};
use crate::error::{Service, StoreError, StoreResult, from_sdk};
use crate::invoice::{
    Claim, InvoiceDone, InvoiceProgress, InvoiceRecord, Judgement, StoredInvoice,
};
use crate::layout::{self, GSI1, GSI1_PK, GSI2, GSI2_PK, PK, SK};
use crate::ports::InvoiceStore;

fn new_version() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn same_version(ver: &str) -> Cond {
    Cond::new("#ver = :ver")
        .name("#ver", "ver")
        .value(":ver", s(ver))
}

impl DynamoStore {
    async fn read_invoice(
        &self,
        op: &'static str,
        conn: &ConnectionId,
        invoice_id: &str,
    ) -> StoreResult<Option<(StoredInvoice, String)>> {
        self.get_item(op, layout::conn_pk(conn), &layout::invoice_sk(invoice_id))
            .await?
            .as_ref()
            .map(codec::invoice_from)
            .transpose()
    }

    /// Read, apply `f` (which says whether it changed anything), write back if the version is unchanged.
    async fn mutate_invoice<T>(
        &self,
        op: &'static str,
        conn: &ConnectionId,
        invoice_id: &str,
        f: impl Fn(&mut StoredInvoice) -> StoreResult<(bool, T)> + Send,
    ) -> StoreResult<T> {
        for _ in 0..OPTIMISTIC_ATTEMPTS {
            let (mut stored, ver) = self
                .read_invoice(op, conn, invoice_id)
                .await?
                .ok_or(StoreError::NotFound { op })?;
            let (changed, out) = f(&mut stored)?;
            if !changed {
                return Ok(out);
            }
            let item = codec::invoice_item(&stored, &new_version());
            if let Written::Yes = self.put_if(op, item, same_version(&ver)).await? {
                return Ok(out);
            }
            tracing::debug!(op, "invoice changed concurrently; re-reading");
        }
        Err(StoreError::ConditionFailed { op })
    }

    async fn invoices_in(
        &self,
        op: &'static str,
        gsi1pk: String,
    ) -> StoreResult<Vec<InvoiceRecord>> {
        self.query(op, Some((GSI1, GSI1_PK)), gsi1pk)
            .await?
            .iter()
            .map(|item| codec::invoice_from(item).map(|(s, _)| s.record))
            .collect()
    }
}

#[async_trait]
impl InvoiceStore for DynamoStore {
    async fn claim(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        body_hash: &str,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> StoreResult<Claim> {
        const OP: &str = "invoice.claim";
        for _ in 0..OPTIMISTIC_ATTEMPTS {
            let fresh = StoredInvoice::new_claim(conn, invoice_id, body_hash, owner, now, lease);
            let absent = Cond::new("attribute_not_exists(#pk)").name("#pk", PK);
            let old = match self
                .put_if(OP, codec::invoice_item(&fresh, &new_version()), absent)
                .await?
            {
                Written::Yes => {
                    return Ok(Claim::Claimed {
                        record: Box::new(fresh.record),
                        taken_over: false,
                    });
                }
                Written::No { old: Some(old) } => old,
                // The old item should come back with the failure; read it if it did not.
                Written::No { old: None } => match self
                    .get_item(OP, layout::conn_pk(conn), &layout::invoice_sk(invoice_id))
                    .await?
                {
                    Some(item) => item,
                    None => continue,
                },
            };
            let (existing, ver) = codec::invoice_from(&old)?;
            match existing.judge(body_hash, owner, now, lease)? {
                Judgement::Answer(claim) => return Ok(claim),
                Judgement::TakeOver(next) => {
                    let item = codec::invoice_item(&next, &new_version());
                    if let Written::Yes = self.put_if(OP, item, same_version(&ver)).await? {
                        return Ok(Claim::Claimed {
                            record: Box::new(next.record),
                            taken_over: true,
                        });
                    }
                    // Another claimer took it over first: look again.
                }
            }
        }
        Err(StoreError::ConditionFailed { op: OP })
    }

    async fn save_progress(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        owner: &str,
        progress: &InvoiceProgress,
        now: DateTime<Utc>,
    ) -> StoreResult<InvoiceRecord> {
        self.mutate_invoice("invoice.save_progress", conn, invoice_id, |s| {
            s.save_progress(owner, progress, now)?;
            Ok((true, s.record.clone()))
        })
        .await
    }

    async fn complete(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        owner: &str,
        done: &InvoiceDone,
        now: DateTime<Utc>,
    ) -> StoreResult<InvoiceRecord> {
        self.mutate_invoice("invoice.complete", conn, invoice_id, |s| {
            s.complete(owner, done, now)?;
            Ok((true, s.record.clone()))
        })
        .await
    }

    async fn release_claim(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        owner: &str,
    ) -> StoreResult<bool> {
        const OP: &str = "invoice.release";
        for _ in 0..OPTIMISTIC_ATTEMPTS {
            let Some((stored, ver)) = self.read_invoice(OP, conn, invoice_id).await? else {
                return Ok(false);
            };
            if !stored.releasable_by(owner) {
                return Ok(false);
            }
            let deleted = self
                .delete_if(
                    OP,
                    layout::conn_pk(conn),
                    &layout::invoice_sk(invoice_id),
                    same_version(&ver),
                )
                .await?;
            if deleted.is_some() {
                return Ok(true);
            }
        }
        Err(StoreError::ConditionFailed { op: OP })
    }

    async fn get_invoice(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
    ) -> StoreResult<Option<InvoiceRecord>> {
        Ok(self
            .read_invoice("invoice.get", conn, invoice_id)
            .await?
            .map(|(s, _)| s.record))
    }

    /// One query of the sparse `gsi1` partition `OPEN#{conn}`: only created/sent invoices carry that key, so the
    /// cost is proportional to the open invoices, not to the connection's history.
    async fn open_invoices(&self, conn: &ConnectionId) -> StoreResult<Vec<InvoiceRecord>> {
        self.invoices_in("invoice.open", layout::open_invoices_gsi1pk(conn))
            .await
    }

    /// The KEYS_ONLY `gsi2` finds the item; it is then read consistently (the index lags the table).
    async fn find_by_exact_invoice(
        &self,
        conn: &ConnectionId,
        exact_invoice_id: ExactGuid,
    ) -> StoreResult<Option<InvoiceRecord>> {
        const OP: &str = "invoice.find_by_exact";
        let keys: Vec<Item> = self
            .query(
                OP,
                Some((GSI2, GSI2_PK)),
                layout::exact_invoice_gsi2pk(conn, exact_invoice_id),
            )
            .await?;
        for key in keys {
            let Some(sk) = key.get(SK).and_then(|v| v.as_s().ok()) else {
                return Err(StoreError::corrupt(OP, "index entry without a sort key"));
            };
            let Some(invoice_id) = layout::invoice_id_from_sk(sk) else {
                continue;
            };
            if let Some((stored, _)) = self.read_invoice(OP, conn, invoice_id).await?
                && stored.record.exact_invoice_id == Some(exact_invoice_id)
            {
                return Ok(Some(stored.record));
            }
        }
        Ok(None)
    }

    async fn set_number(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        number: i64,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        self.mutate_invoice("invoice.set_number", conn, invoice_id, |s| {
            let changed = s.set_number(number, now);
            Ok((changed, changed))
        })
        .await
    }

    async fn mark_paid(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        paid_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        self.mutate_invoice("invoice.mark_paid", conn, invoice_id, |s| {
            let changed = s.mark_paid(paid_at, now);
            Ok((changed, changed))
        })
        .await
    }

    async fn mark_credited(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        self.mutate_invoice("invoice.mark_credited", conn, invoice_id, |s| {
            let changed = s.mark_credited(at, now);
            Ok((changed, changed))
        })
        .await
    }

    async fn mark_open(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        self.mutate_invoice("invoice.mark_open", conn, invoice_id, |s| {
            let changed = s.mark_open(now);
            Ok((changed, changed))
        })
        .await
    }

    async fn mark_notified(
        &self,
        conn: &ConnectionId,
        invoice_id: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        self.mutate_invoice("invoice.mark_notified", conn, invoice_id, |s| {
            let changed = s.mark_notified(at);
            Ok((changed, changed))
        })
        .await
    }

    async fn paid_unnotified(&self, conn: &ConnectionId) -> StoreResult<Vec<InvoiceRecord>> {
        self.invoices_in(
            "invoice.paid_unnotified",
            layout::paid_unnotified_gsi1pk(conn),
        )
        .await
    }

    /// `Select=COUNT` queries of the sparse `gsi1` partition `OPEN#{conn}`: no item crosses the wire, but read
    /// units are charged for the items counted as for reading them (a Query counts at most 1 MB per call; the
    /// loop follows `LastEvaluatedKey`).
    async fn count_open_invoices(&self, conn: &ConnectionId) -> StoreResult<usize> {
        let mut count = 0usize;
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(GSI1)
                .key_condition_expression("#k = :k")
                .expression_attribute_names("#k", GSI1_PK)
                .expression_attribute_values(":k", s(layout::open_invoices_gsi1pk(conn)))
                .select(Select::Count)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| from_sdk("invoice.count_open", Service::DynamoDb, e))?;
            count += usize::try_from(out.count).unwrap_or(0);
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(count),
            }
        }
    }
}
