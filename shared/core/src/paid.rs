//! Invoice paid: Exact webhooks, the receivable check, the scheduled reconciliation and the PSA notification.
