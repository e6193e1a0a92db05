//! Paying invoices (as bank entries): receivable rows, partial payments, reversal, BankEntries webhooks.

use crate::common::*;
use exact_sandbox::Sandbox;
use serde_json::Value;

const RECEIVABLES: &str = "/api/v1/3001/cashflow/Receivables";

async fn rows(api: &Api, invoice_id: &str) -> Vec<Value> {
    let filter = format!("TransactionEntryID eq guid'{invoice_id}'");
    api.get(
        RECEIVABLES,
        &[
            ("$filter", &filter),
            (
                "$select",
                "ID,EntryID,AmountDC,IsFullyPaid,Status,LastPaymentDate,EndDate",
            ),
        ],
    )
    .await
    .results()
}

async fn setup() -> (Sandbox, Api, String) {
    let sb = frozen().await;
    let (account, contact) = seed_customer(&sb, 3001, "Acme Ltd", None);
    let api = Api::new(&sb, TOM).await;
    let id = processed_invoice(&api, 3001, account, contact).await;
    (sb, api, id)
}

#[tokio::test]
async fn a_partial_payment_leaves_the_invoice_open_and_the_rest_pays_it() {
    let (sb, api, id) = setup().await;
    let now = sb.clock().now_ms();
    sb.pay_invoice(3001, &id, 1000.0).unwrap();
    let after_partial = rows(&api, &id).await;
    assert_eq!(after_partial.len(), 2, "the receivable was split");
    assert!(
        !after_partial.iter().all(|r| r["IsFullyPaid"] == true),
        "not paid yet"
    );
    let open: Vec<&Value> = after_partial
        .iter()
        .filter(|r| r["IsFullyPaid"] == false)
        .collect();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0]["AmountDC"], 8680.0);
    assert_eq!(open[0]["Status"], 20);
    // Exact writes moments as the Amsterdam wall clock.
    assert_eq!(
        open[0]["LastPaymentDate"],
        format!("/Date({})/", exact_sandbox::amsterdam_wall_ms(now))
    );
    let total: f64 = after_partial
        .iter()
        .map(|r| r["AmountDC"].as_f64().unwrap())
        .sum();
    assert!((total - 9680.0).abs() < 0.001);
    assert_eq!(after_partial[0]["EntryID"], after_partial[1]["EntryID"]);

    assert!(
        sb.pay_invoice(3001, &id, 9000.0).is_err(),
        "more than is open"
    );
    sb.pay_invoice(3001, &id, 8680.0).unwrap();
    let paid = rows(&api, &id).await;
    assert!(
        paid.iter()
            .all(|r| r["IsFullyPaid"] == true && r["Status"] == 50)
    );
    assert!(paid.iter().all(|r| r["EndDate"].is_string()));
    assert!(sb.pay_invoice(3001, &id, 1.0).is_err(), "already paid");
    assert_eq!(sb.world().division(3001).unwrap().bank_entries.len(), 2);
}

#[tokio::test]
async fn paying_in_full_at_once_and_reversing() {
    let (sb, api, id) = setup().await;
    sb.pay_invoice(3001, &id, 9680.0).unwrap();
    let paid = rows(&api, &id).await;
    assert_eq!(paid.len(), 1);
    assert_eq!(
        (paid[0]["IsFullyPaid"].as_bool(), paid[0]["Status"].as_i64()),
        (Some(true), Some(50))
    );

    sb.reverse_payments(3001, &id).unwrap();
    let open = rows(&api, &id).await;
    assert_eq!(open.len(), 1);
    assert_eq!(open[0]["IsFullyPaid"], false);
    assert_eq!(open[0]["Status"], 20);
    assert_eq!(open[0]["AmountDC"], 9680.0);
    assert!(open[0]["LastPaymentDate"].is_null());
    assert!(
        sb.reverse_payments(3001, &id).is_err(),
        "nothing left to reverse"
    );
}

#[tokio::test]
async fn only_processed_invoices_can_be_paid() {
    let sb = Sandbox::start().await;
    let (account, contact) = seed_customer(&sb, 3001, "Acme Ltd", None);
    let api = Api::new(&sb, TOM).await;
    let id = create_invoice(&api, 3001, account, contact).await;
    assert!(
        sb.pay_invoice(3001, &id, 1.0)
            .unwrap_err()
            .contains("not processed")
    );
    assert!(
        sb.pay_invoice(3001, "00000000-0000-0000-0000-000000000001", 1.0)
            .is_err()
    );
    assert!(sb.pay_invoice(3001, "not-a-guid", 1.0).is_err());
    assert!(sb.pay_invoice(3001, &id, -5.0).is_err());
    assert!(sb.pay_invoice(9999, &id, 1.0).is_err());
}

#[tokio::test]
async fn payments_queue_signed_bank_entries_webhooks() {
    let (sb, api, id) = setup().await;
    let hook = receiver(200).await;
    let r = api
        .post(
            "/api/v1/3001/webhooks/WebhookSubscriptions",
            &serde_json::json!({"Topic": "BankEntries", "CallbackURL": hook.url}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert!(sb.pending_webhooks().is_empty());
    sb.pay_invoice(3001, &id, 100.0).unwrap();
    sb.reverse_payments(3001, &id).unwrap();
    let queued = sb.take_webhooks();
    assert_eq!(queued.len(), 2);
    let body: Value = serde_json::from_str(&queued[0].body).unwrap();
    assert_eq!(body["Content"]["Topic"], "BankEntries");
    assert_eq!(body["Content"]["Action"], "Update");
    assert_eq!(body["Content"]["Division"], 3001);
    let key = body["Content"]["Key"].as_str().unwrap();
    let entry = sb.world().division(3001).unwrap().bank_entries[0]
        .id
        .to_string();
    assert_eq!(key, entry);
    assert!(
        body["Content"]["ExactOnlineEndpoint"]
            .as_str()
            .unwrap()
            .ends_with(&format!(
                "/api/v1/3001/financialtransaction/BankEntries(guid'{key}')"
            ))
    );
    assert!(sb.pending_webhooks().is_empty(), "take drained the queue");
}
