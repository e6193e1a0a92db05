//! One contract suite for the ports, run against the in-memory adapters and against DynamoDB + Secrets Manager
//! on a moto server (started by the test setup on a loopback port; a missing moto is a failure, not a skip).

use std::collections::BTreeSet;
use std::time::Duration;

use mapping::{ConnectionId, Country};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use store::{
    AttachmentMeta, BudgetWindow, Claim, ConnectionEvent, ConnectionEventKind, ConnectionState,
    Delivery, DivisionWebhooksRecord, Enqueued, EventDelivery, InvoiceDone, InvoicePhase,
    InvoiceProgress, InvoiceState, MappingKey, OAuthState, OpenState, PushFailureRecord,
    QueuedPush, QueuedPushState, RateBudget, SavedResponse, SettingsRecord, StateStore, StoreError,
    TaxCategoryRecord, TokenRecord, TokenSlot, TokenStore, WebhookSubscriptionRecord,
};

use crate::common::{conn, connection, div, guid, t};

const LEASE: Duration = Duration::from_secs(60);

mod suite {
    use super::*;

    pub async fn connection_and_settings_are_independent(s: &impl StateStore, _: &impl TokenStore) {
        let c = conn("bu_1");
        assert_eq!(s.get_connection(&c).await.unwrap(), None);
        assert_eq!(s.get_settings(&c).await.unwrap(), None);

        let record = connection("bu_1");
        s.put_connection(&record).await.unwrap();
        assert_eq!(s.get_connection(&c).await.unwrap(), Some(record.clone()));

        let settings = SettingsRecord {
            division: div(1234567),
            item_code: "CONSULT".into(),
            item_id: guid(1),
            journal_code: "70".into(),
            tax_code: "2".into(),
            tax_code_id: Some(guid(2)),
            tax_categories: vec![
                TaxCategoryRecord {
                    category: "high".into(),
                    exact_vat_code: "2".into(),
                    exact_vat_code_id: Some(guid(2)),
                },
                TaxCategoryRecord {
                    category: "zero".into(),
                    exact_vat_code: "0".into(),
                    exact_vat_code_id: None,
                },
            ],
            send_invoice_to_customer: true,
            delivery: Delivery::Exact,
            saved_at: t(5),
        };
        s.put_settings(&c, &settings).await.unwrap();
        assert_eq!(s.get_settings(&c).await.unwrap(), Some(settings.clone()));
        assert_eq!(
            s.get_connection(&c).await.unwrap(),
            Some(record.clone()),
            "settings left the connection alone"
        );

        // A connection update (e.g. a reconnect) leaves the settings alone, and the other way round.
        let mut reconnected = record.clone();
        reconnected.division_name = "Acme Holding".into();
        reconnected.base_url = Some("http://127.0.0.1:9/".into());
        reconnected.updated_at = t(10);
        s.put_connection(&reconnected).await.unwrap();
        assert_eq!(s.get_settings(&c).await.unwrap(), Some(settings));
        assert_eq!(s.get_connection(&c).await.unwrap(), Some(reconnected));
    }

    pub async fn needs_reconnect_and_refresh_touch_only_a_connected_connection(
        s: &impl StateStore,
        _: &impl TokenStore,
    ) {
        let c = conn("bu_1");
        assert!(
            !s.mark_needs_reconnect(&c, "refresh refused", t(1))
                .await
                .unwrap(),
            "missing"
        );
        assert!(
            !s.commit_tokens(&c, 0, TokenSlot::One, t(1)).await.unwrap(),
            "missing"
        );

        s.put_connection(&connection("bu_1")).await.unwrap();
        assert!(s.commit_tokens(&c, 0, TokenSlot::One, t(2)).await.unwrap());
        assert!(
            s.mark_needs_reconnect(&c, "refresh refused", t(3))
                .await
                .unwrap()
        );
        let got = s.get_connection(&c).await.unwrap().unwrap();
        assert_eq!(got.state, ConnectionState::NeedsReconnect);
        assert_eq!(
            got.needs_reconnect_reason.as_deref(),
            Some("refresh refused")
        );
        assert_eq!(got.updated_at, t(3));
        assert_eq!(got.last_token_refresh_at, Some(t(2)));
        assert_eq!(
            got.webhook_subscriptions,
            connection("bu_1").webhook_subscriptions
        );

        assert!(
            !s.mark_needs_reconnect(&c, "again", t(4)).await.unwrap(),
            "already needs reconnect"
        );
        assert!(
            !s.commit_tokens(&c, 1, TokenSlot::Zero, t(4)).await.unwrap(),
            "not connected"
        );

        // A disconnect is never undone by a late refresh.
        let mut gone = connection("bu_1");
        gone.state = ConnectionState::Disconnected;
        s.put_connection(&gone).await.unwrap();
        assert!(!s.commit_tokens(&c, 0, TokenSlot::One, t(5)).await.unwrap());
        assert!(!s.mark_needs_reconnect(&c, "late", t(5)).await.unwrap());
        assert_eq!(s.get_connection(&c).await.unwrap(), Some(gone));
    }

    pub async fn list_connections_returns_every_connection(
        s: &impl StateStore,
        _: &impl TokenStore,
    ) {
        assert!(s.list_connections().await.unwrap().is_empty());
        for id in ["a", "b", "c"] {
            s.put_connection(&connection(id)).await.unwrap();
        }
        // Settings and invoices on the same partition are not connections.
        s.claim(&conn("a"), "inv", "h", "w", t(0), LEASE)
            .await
            .unwrap();
        let listed: BTreeSet<String> = s
            .list_connections()
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.connection_id.to_string())
            .collect();
        assert_eq!(listed, BTreeSet::from(["a".into(), "b".into(), "c".into()]));
    }

    pub async fn division_links(s: &impl StateStore, _: &impl TokenStore) {
        let ids = |v: Vec<ConnectionId>| {
            v.into_iter()
                .map(|c| c.to_string())
                .collect::<BTreeSet<_>>()
        };
        s.link_division(div(1), &conn("a")).await.unwrap();
        s.link_division(div(1), &conn("b")).await.unwrap();
        s.link_division(div(1), &conn("b")).await.unwrap(); // idempotent
        s.link_division(div(2), &conn("c")).await.unwrap();
        assert_eq!(
            ids(s.connections_for_division(div(1)).await.unwrap()),
            BTreeSet::from(["a".into(), "b".into()])
        );
        s.unlink_division(div(1), &conn("a")).await.unwrap();
        s.unlink_division(div(1), &conn("zz")).await.unwrap(); // unlinking what is not linked is fine
        assert_eq!(
            ids(s.connections_for_division(div(1)).await.unwrap()),
            BTreeSet::from(["b".into()])
        );
        assert_eq!(
            ids(s.connections_for_division(div(2)).await.unwrap()),
            BTreeSet::from(["c".into()])
        );
        assert!(s.connections_for_division(div(3)).await.unwrap().is_empty());
    }

    pub async fn oauth_state_is_single_use_and_expires(s: &impl StateStore, _: &impl TokenStore) {
        let state = OAuthState {
            connection_id: conn("bu_1"),
            country: Country::Be,
            return_url: "https://psa.example/settings?x=1".into(),
            expires_at: t(600),
        };
        s.put_state("st-1", &state).await.unwrap();
        assert!(
            matches!(
                s.put_state("st-1", &state).await,
                Err(StoreError::ConditionFailed { .. })
            ),
            "a state is never overwritten"
        );
        assert_eq!(
            s.take_state("st-1", t(599)).await.unwrap(),
            Some(state.clone())
        );
        assert_eq!(
            s.take_state("st-1", t(599)).await.unwrap(),
            None,
            "single use"
        );
        assert_eq!(s.take_state("never", t(0)).await.unwrap(), None);

        s.put_state("st-2", &state).await.unwrap();
        assert_eq!(
            s.take_state("st-2", t(600)).await.unwrap(),
            None,
            "expired at expires_at"
        );
        assert_eq!(s.take_state("st-2", t(1)).await.unwrap(), None, "and gone");
    }

    pub async fn mappings_are_isolated_by_connection_and_division(
        s: &impl StateStore,
        _: &impl TokenStore,
    ) {
        let (a, b) = (conn("a"), conn("b"));
        let acct = MappingKey::Account {
            psa_company_id: "cmp_17".into(),
        };
        let contact = MappingKey::Contact {
            account_id: guid(10),
            email: "Jane@Acme.example".into(),
        };
        let item = MappingKey::Item {
            code: "CONSULT".into(),
        };

        assert_eq!(s.get_mapping(&a, div(1), &acct).await.unwrap(), None);
        s.put_mapping(&a, div(1), &acct, guid(100)).await.unwrap();
        s.put_mapping(&a, div(1), &contact, guid(101))
            .await
            .unwrap();
        s.put_mapping(&a, div(1), &item, guid(102)).await.unwrap();
        assert_eq!(
            s.get_mapping(&a, div(1), &acct).await.unwrap(),
            Some(guid(100))
        );
        assert_eq!(
            s.get_mapping(&a, div(1), &item).await.unwrap(),
            Some(guid(102))
        );
        let same_contact = MappingKey::Contact {
            account_id: guid(10),
            email: " jane@ACME.example".into(),
        };
        assert_eq!(
            s.get_mapping(&a, div(1), &same_contact).await.unwrap(),
            Some(guid(101)),
            "e-mail case"
        );
        let other_account = MappingKey::Contact {
            account_id: guid(11),
            email: "jane@acme.example".into(),
        };
        assert_eq!(
            s.get_mapping(&a, div(1), &other_account).await.unwrap(),
            None,
            "per account"
        );

        // Another division of the same connection (a reconnect elsewhere) and another connection see nothing.
        assert_eq!(s.get_mapping(&a, div(2), &acct).await.unwrap(), None);
        assert_eq!(s.get_mapping(&b, div(1), &acct).await.unwrap(), None);
        s.put_mapping(&a, div(2), &acct, guid(200)).await.unwrap();
        assert_eq!(
            s.get_mapping(&a, div(1), &acct).await.unwrap(),
            Some(guid(100))
        );

        s.put_mapping(&a, div(1), &acct, guid(300)).await.unwrap();
        assert_eq!(
            s.get_mapping(&a, div(1), &acct).await.unwrap(),
            Some(guid(300)),
            "replaced"
        );
        s.forget_mapping(&a, div(1), &acct).await.unwrap();
        assert_eq!(s.get_mapping(&a, div(1), &acct).await.unwrap(), None);
        assert_eq!(
            s.get_mapping(&a, div(2), &acct).await.unwrap(),
            Some(guid(200))
        );
    }

    fn done(state: OpenState, number: Option<i64>) -> InvoiceDone {
        InvoiceDone {
            state,
            response: SavedResponse {
                status: 201,
                body: json!({"invoice_id": "inv_1", "exact_invoice_number": number, "amount": 8000.0}),
            },
            progress: InvoiceProgress {
                exact_invoice_id: Some(guid(900)),
                exact_invoice_number: number,
                ..InvoiceProgress::default()
            },
        }
    }

    pub async fn claim_replay_conflict_and_takeover(s: &impl StateStore, _: &impl TokenStore) {
        let c = conn("bu_1");
        let Claim::Claimed { record, taken_over } =
            s.claim(&c, "inv_1", "h1", "a", t(0), LEASE).await.unwrap()
        else {
            panic!("first claim wins");
        };
        assert!(!taken_over);
        assert_eq!(record.state, InvoiceState::Pending);
        assert_eq!(
            record.phase,
            InvoicePhase::InProgress {
                owner: "a".into(),
                expires_at: t(60)
            }
        );
        assert_eq!(s.get_invoice(&c, "inv_1").await.unwrap(), Some(*record));

        // While a's claim is live, everyone else is told to come back when it expires, whatever their body.
        assert_eq!(
            s.claim(&c, "inv_1", "h1", "b", t(20), LEASE).await.unwrap(),
            Claim::InProgress {
                retry_after: Duration::from_secs(40)
            }
        );
        assert!(matches!(
            s.claim(&c, "inv_1", "h2", "b", t(20), LEASE).await.unwrap(),
            Claim::InProgress { .. }
        ));

        // Progress is the owner's only.
        let progress = InvoiceProgress {
            reference: Some("INV-2025-0042".into()),
            division: Some(div(1234567)),
            journal_code: Some("70".into()),
            exact_account_id: Some(guid(1)),
            exact_contact_id: Some(guid(2)),
            ..InvoiceProgress::default()
        };
        assert!(matches!(
            s.save_progress(&c, "inv_1", "b", &progress, t(21)).await,
            Err(StoreError::ConditionFailed { .. })
        ));
        let saved = s
            .save_progress(&c, "inv_1", "a", &progress, t(21))
            .await
            .unwrap();
        assert_eq!(saved.exact_account_id, Some(guid(1)));
        assert_eq!(saved.reference.as_deref(), Some("INV-2025-0042"));
        // None fields leave what is stored.
        let more = InvoiceProgress {
            exact_invoice_id: Some(guid(900)),
            ..InvoiceProgress::default()
        };
        let saved = s
            .save_progress(&c, "inv_1", "a", &more, t(22))
            .await
            .unwrap();
        assert_eq!(
            (saved.exact_account_id, saved.exact_invoice_id),
            (Some(guid(1)), Some(guid(900)))
        );
        assert_eq!(s.get_invoice(&c, "inv_1").await.unwrap(), Some(saved));

        // a dies; after expiry b takes over and finds a's progress.
        let Claim::Claimed { record, taken_over } =
            s.claim(&c, "inv_1", "h1", "b", t(60), LEASE).await.unwrap()
        else {
            panic!("an expired claim is taken over");
        };
        assert!(taken_over);
        assert_eq!(record.exact_contact_id, Some(guid(2)));
        assert_eq!(record.exact_invoice_id, Some(guid(900)));
        assert_eq!(
            record.phase,
            InvoicePhase::InProgress {
                owner: "b".into(),
                expires_at: t(120)
            }
        );
        // A body change cannot take over a claim that already created an Exact invoice.
        assert_eq!(
            s.claim(&c, "inv_1", "h2", "c", t(500), LEASE)
                .await
                .unwrap(),
            Claim::DifferentBody
        );

        // a comes back too late: it no longer owns the push.
        assert!(matches!(
            s.complete(&c, "inv_1", "a", &done(OpenState::Sent, Some(42)), t(61))
                .await,
            Err(StoreError::ConditionFailed { .. })
        ));
        let completed = s
            .complete(&c, "inv_1", "b", &done(OpenState::Sent, Some(42)), t(62))
            .await
            .unwrap();
        assert_eq!(completed.phase, InvoicePhase::Done);
        assert_eq!(completed.state, InvoiceState::Sent);
        assert_eq!(completed.exact_invoice_number, Some(42));
        assert_eq!(completed.exact_account_id, Some(guid(1)), "progress kept");
        assert_eq!(
            s.get_invoice(&c, "inv_1").await.unwrap(),
            Some(completed.clone())
        );

        // Done: same body replays, another body conflicts, the owner cannot complete twice.
        assert_eq!(
            s.claim(&c, "inv_1", "h1", "d", t(63), LEASE).await.unwrap(),
            Claim::Replay {
                response: completed.response.clone().unwrap()
            }
        );
        assert_eq!(
            s.claim(&c, "inv_1", "h2", "d", t(63), LEASE).await.unwrap(),
            Claim::DifferentBody
        );
        assert!(matches!(
            s.complete(&c, "inv_1", "b", &done(OpenState::Sent, Some(42)), t(64))
                .await,
            Err(StoreError::ConditionFailed { .. })
        ));
        assert!(matches!(
            s.save_progress(&c, "inv_1", "b", &more, t(64)).await,
            Err(StoreError::ConditionFailed { .. })
        ));

        // Same invoice id on another connection is another invoice.
        assert!(matches!(
            s.claim(&conn("bu_2"), "inv_1", "h2", "e", t(63), LEASE)
                .await
                .unwrap(),
            Claim::Claimed {
                taken_over: false,
                ..
            }
        ));
        assert!(matches!(
            s.save_progress(&c, "nope", "a", &more, t(64)).await,
            Err(StoreError::NotFound { .. })
        ));
    }

    pub async fn expired_claim_without_exact_invoice_accepts_a_corrected_body(
        s: &impl StateStore,
        _: &impl TokenStore,
    ) {
        let c = conn("bu_1");
        s.claim(&c, "inv_1", "h1", "a", t(0), LEASE).await.unwrap();
        let progress = InvoiceProgress {
            exact_account_id: Some(guid(1)),
            ..InvoiceProgress::default()
        };
        s.save_progress(&c, "inv_1", "a", &progress, t(1))
            .await
            .unwrap();
        let Claim::Claimed { record, taken_over } =
            s.claim(&c, "inv_1", "h2", "b", t(61), LEASE).await.unwrap()
        else {
            panic!("a corrected body takes over an expired claim that created nothing in Exact");
        };
        assert!(taken_over);
        assert_eq!(record.body_hash, "h2");
        assert_eq!(
            record.exact_account_id, None,
            "the old body's progress is not carried over"
        );
        assert_eq!(s.get_invoice(&c, "inv_1").await.unwrap(), Some(*record));
    }

    pub async fn release_frees_only_an_owned_claim_without_exact_invoice(
        s: &impl StateStore,
        _: &impl TokenStore,
    ) {
        let c = conn("bu_1");
        assert!(
            !s.release_claim(&c, "inv_1", "a").await.unwrap(),
            "nothing to release"
        );
        s.claim(&c, "inv_1", "h1", "a", t(0), LEASE).await.unwrap();
        assert!(
            !s.release_claim(&c, "inv_1", "b").await.unwrap(),
            "not b's claim"
        );
        assert!(s.release_claim(&c, "inv_1", "a").await.unwrap());
        assert_eq!(s.get_invoice(&c, "inv_1").await.unwrap(), None);
        // A corrected body can be pushed right away.
        assert!(matches!(
            s.claim(&c, "inv_1", "h2", "b", t(1), LEASE).await.unwrap(),
            Claim::Claimed {
                taken_over: false,
                ..
            }
        ));

        let progress = InvoiceProgress {
            exact_invoice_id: Some(guid(900)),
            ..InvoiceProgress::default()
        };
        s.save_progress(&c, "inv_1", "b", &progress, t(2))
            .await
            .unwrap();
        assert!(
            !s.release_claim(&c, "inv_1", "b").await.unwrap(),
            "an Exact invoice exists: keep the record"
        );
        assert!(s.get_invoice(&c, "inv_1").await.unwrap().is_some());

        s.complete(&c, "inv_1", "b", &done(OpenState::Created, None), t(3))
            .await
            .unwrap();
        assert!(
            !s.release_claim(&c, "inv_1", "b").await.unwrap(),
            "done is never released"
        );
    }

    pub async fn invoice_life_after_the_push(s: &impl StateStore, _: &impl TokenStore) {
        let c = conn("bu_1");
        let ids = |v: Vec<store::InvoiceRecord>| {
            v.into_iter().map(|r| r.invoice_id).collect::<BTreeSet<_>>()
        };
        for (id, exact) in [("i1", 901), ("i2", 902), ("i3", 903)] {
            s.claim(&c, id, "h", "w", t(0), LEASE).await.unwrap();
            let mut d = done(OpenState::Created, None);
            d.progress.exact_invoice_id = Some(guid(exact));
            s.complete(&c, id, "w", &d, t(1)).await.unwrap();
        }
        s.claim(&c, "pending", "h", "w", t(0), LEASE).await.unwrap();
        s.claim(&conn("other"), "o1", "h", "w", t(0), LEASE)
            .await
            .unwrap();
        s.complete(
            &conn("other"),
            "o1",
            "w",
            &done(OpenState::Sent, Some(1)),
            t(1),
        )
        .await
        .unwrap();

        assert_eq!(
            ids(s.open_invoices(&c).await.unwrap()),
            BTreeSet::from(["i1".into(), "i2".into(), "i3".into()])
        );
        assert!(s.paid_unnotified(&c).await.unwrap().is_empty());

        // The number arrives later (delivery exact): created → sent.
        assert!(s.set_number(&c, "i2", 77, t(2)).await.unwrap());
        assert!(
            !s.set_number(&c, "i2", 77, t(2)).await.unwrap(),
            "no change"
        );
        let i2 = s.get_invoice(&c, "i2").await.unwrap().unwrap();
        assert_eq!(
            (i2.state, i2.exact_invoice_number),
            (InvoiceState::Sent, Some(77))
        );

        let found = s
            .find_by_exact_invoice(&c, guid(902))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found, i2);
        assert_eq!(s.find_by_exact_invoice(&c, guid(999)).await.unwrap(), None);
        assert_eq!(
            s.find_by_exact_invoice(&conn("other"), guid(902))
                .await
                .unwrap(),
            None
        );

        // Paid: out of the open list, into the un-notified list until the PSA accepted the callback.
        assert!(s.mark_paid(&c, "i2", t(100), t(101)).await.unwrap());
        assert!(
            !s.mark_paid(&c, "i2", t(100), t(102)).await.unwrap(),
            "already paid"
        );
        assert!(
            !s.mark_paid(&c, "pending", t(100), t(102)).await.unwrap(),
            "not completed"
        );
        assert!(matches!(
            s.mark_paid(&c, "nope", t(100), t(102)).await,
            Err(StoreError::NotFound { .. })
        ));
        let i2 = s.get_invoice(&c, "i2").await.unwrap().unwrap();
        assert_eq!(
            (i2.state, i2.paid_at, i2.updated_at),
            (InvoiceState::Paid, Some(t(100)), t(101))
        );
        assert_eq!(
            ids(s.open_invoices(&c).await.unwrap()),
            BTreeSet::from(["i1".into(), "i3".into()])
        );
        assert_eq!(
            ids(s.paid_unnotified(&c).await.unwrap()),
            BTreeSet::from(["i2".into()])
        );

        assert!(
            !s.mark_notified(&c, "i1", t(103)).await.unwrap(),
            "not paid"
        );
        assert!(s.mark_notified(&c, "i2", t(103)).await.unwrap());
        assert!(
            !s.mark_notified(&c, "i2", t(104)).await.unwrap(),
            "already notified"
        );
        assert!(s.paid_unnotified(&c).await.unwrap().is_empty());
        assert_eq!(
            s.get_invoice(&c, "i2").await.unwrap().unwrap().notified_at,
            Some(t(103))
        );

        // Payment undone: open again in the state it had, paid and notified cleared.
        assert!(s.mark_open(&c, "i2", t(200)).await.unwrap());
        assert!(!s.mark_open(&c, "i2", t(201)).await.unwrap(), "not paid");
        let i2 = s.get_invoice(&c, "i2").await.unwrap().unwrap();
        assert_eq!(
            (i2.state, i2.paid_at, i2.notified_at),
            (InvoiceState::Sent, None, None)
        );
        assert_eq!(
            ids(s.open_invoices(&c).await.unwrap()),
            BTreeSet::from(["i1".into(), "i2".into(), "i3".into()])
        );
        assert!(s.mark_paid(&c, "i1", t(300), t(300)).await.unwrap());
        assert!(s.mark_open(&c, "i1", t(301)).await.unwrap());
        assert_eq!(
            s.get_invoice(&c, "i1").await.unwrap().unwrap().state,
            InvoiceState::Created
        );
    }

    /// The PSA is owed `invoice.reopened` only for an invoice it had been told was paid; each event has its own
    /// time (its id), kept while the PSA has not accepted it.
    pub async fn a_reopened_invoice_owes_its_callback_only_when_the_paid_one_was_accepted(
        s: &impl StateStore,
        _: &impl TokenStore,
    ) {
        let c = conn("bu_1");
        let ids = |v: Vec<store::InvoiceRecord>| {
            v.into_iter()
                .map(|r| r.invoice_id)
                .collect::<BTreeSet<String>>()
        };
        for id in ["told", "untold"] {
            s.claim(&c, id, "h", "w", t(0), LEASE).await.unwrap();
            s.complete(&c, id, "w", &done(OpenState::Sent, Some(5)), t(1))
                .await
                .unwrap();
            let r = s.get_invoice(&c, id).await.unwrap().unwrap();
            assert_eq!((r.event_at, r.owes_reopened()), (None, false));
            assert!(s.mark_paid(&c, id, t(9), t(10)).await.unwrap());
            assert_eq!(
                s.get_invoice(&c, id).await.unwrap().unwrap().event_at,
                Some(t(10))
            );
        }
        assert!(s.mark_notified(&c, "told", t(11)).await.unwrap());
        assert!(s.mark_open(&c, "told", t(20)).await.unwrap());
        assert!(s.mark_open(&c, "untold", t(20)).await.unwrap());
        let told = s.get_invoice(&c, "told").await.unwrap().unwrap();
        let untold = s.get_invoice(&c, "untold").await.unwrap().unwrap();
        assert_eq!(
            (told.event_at, told.notified_at, told.owes_reopened()),
            (Some(t(20)), None, true)
        );
        assert_eq!((untold.event_at, untold.owes_reopened()), (None, false));
        // Both are open (checked for a new payment) and not in the paid list.
        assert_eq!(
            ids(s.open_invoices(&c).await.unwrap()),
            BTreeSet::from(["told".into(), "untold".into()])
        );
        assert!(s.paid_unnotified(&c).await.unwrap().is_empty());
        assert!(
            !s.mark_notified(&c, "untold", t(21)).await.unwrap(),
            "nothing owed"
        );
        assert!(s.mark_notified(&c, "told", t(21)).await.unwrap());
        let told = s.get_invoice(&c, "told").await.unwrap().unwrap();
        assert!(!told.owes_reopened());
        assert_eq!(told.state, InvoiceState::Sent);
        // Paid again: a new event with its own time.
        assert!(s.mark_paid(&c, "told", t(29), t(30)).await.unwrap());
        let told = s.get_invoice(&c, "told").await.unwrap().unwrap();
        assert_eq!((told.event_at, told.notified_at), (Some(t(30)), None));
    }

    pub async fn events_add_up_their_delivery_rounds_and_a_connection_owes_its_latest_change(
        s: &impl StateStore,
        _: &impl TokenStore,
    ) {
        let c = conn("bu_1");
        let round = |attempts: u32, at: i64, outcome: &str, delivered: bool| EventDelivery {
            event_id: "evt_1".into(),
            kind: "invoice.paid".into(),
            subject: "INV-1".into(),
            created_at: t(at * 100),
            attempts,
            attempted_at: t(at),
            outcome: outcome.into(),
            delivered,
        };
        assert_eq!(s.get_event(&c, "evt_1").await.unwrap(), None);
        let first = s
            .record_event_delivery(&c, &round(3, 1, "503", false))
            .await
            .unwrap();
        assert_eq!(
            (first.attempts, first.created_at, first.delivered_at),
            (3, t(100), None)
        );
        // A later round keeps the first created_at, adds the attempts, records the first delivery.
        s.record_event_delivery(&c, &round(1, 2, "200", true))
            .await
            .unwrap();
        let got = s
            .record_event_delivery(&c, &round(1, 3, "200", true))
            .await
            .unwrap();
        assert_eq!(got, s.get_event(&c, "evt_1").await.unwrap().unwrap());
        assert_eq!(
            (
                got.kind.as_str(),
                got.subject.as_str(),
                got.attempts,
                got.created_at,
                got.last_attempt_at,
                got.last_outcome.as_str(),
                got.delivered_at
            ),
            ("invoice.paid", "INV-1", 5, t(100), t(3), "200", Some(t(2)))
        );
        assert_eq!(s.get_event(&conn("bu_2"), "evt_1").await.unwrap(), None);

        // A connection owes the callback about its latest change; an older one cannot clear a newer one.
        s.put_connection(&connection("bu_1")).await.unwrap();
        assert!(s.mark_needs_reconnect(&c, "refused", t(5)).await.unwrap());
        let owed = s.get_connection(&c).await.unwrap().unwrap().pending_event;
        let nr = ConnectionEvent {
            kind: ConnectionEventKind::NeedsReconnect,
            at: t(5),
        };
        assert_eq!(owed, Some(nr));
        let restored = ConnectionEvent {
            kind: ConnectionEventKind::Restored,
            at: t(6),
        };
        let mut back = connection("bu_1");
        back.pending_event = Some(restored);
        s.put_connection(&back).await.unwrap();
        assert!(
            !s.connection_event_sent(&c, &nr).await.unwrap(),
            "superseded"
        );
        assert!(s.connection_event_sent(&c, &restored).await.unwrap());
        assert!(
            !s.connection_event_sent(&c, &restored).await.unwrap(),
            "once"
        );
        let got = s.get_connection(&c).await.unwrap().unwrap();
        assert_eq!(
            (got.pending_event, got.state),
            (None, ConnectionState::Connected)
        );
        assert!(
            !s.connection_event_sent(&conn("nope"), &restored)
                .await
                .unwrap(),
            "missing"
        );
    }

    pub async fn credited_is_settled_but_not_paid(s: &impl StateStore, _: &impl TokenStore) {
        let c = conn("bu_1");
        for id in ["i1", "cn"] {
            s.claim(&c, id, "h", "w", t(0), LEASE).await.unwrap();
            s.complete(&c, id, "w", &done(OpenState::Sent, Some(5)), t(1))
                .await
                .unwrap();
        }
        assert!(s.mark_credited(&c, "i1", t(10), t(11)).await.unwrap());
        assert!(
            !s.mark_credited(&c, "i1", t(10), t(12)).await.unwrap(),
            "already credited"
        );
        assert!(
            !s.mark_paid(&c, "i1", t(10), t(12)).await.unwrap(),
            "a credited invoice is not paid too"
        );
        assert!(matches!(
            s.mark_credited(&c, "nope", t(10), t(12)).await,
            Err(StoreError::NotFound { .. })
        ));
        let i1 = s.get_invoice(&c, "i1").await.unwrap().unwrap();
        assert_eq!(
            (i1.state, i1.paid_at, i1.updated_at),
            (InvoiceState::Credited, Some(t(10)), t(11))
        );
        let open: Vec<String> = s
            .open_invoices(&c)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.invoice_id)
            .collect();
        assert_eq!(open, vec!["cn".to_owned()]);
        let unnotified: Vec<String> = s
            .paid_unnotified(&c)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.invoice_id)
            .collect();
        assert_eq!(
            unnotified,
            vec!["i1".to_owned()],
            "credited waits for its callback"
        );
        assert!(s.mark_notified(&c, "i1", t(13)).await.unwrap());
        assert!(s.paid_unnotified(&c).await.unwrap().is_empty());
        assert!(
            s.mark_open(&c, "i1", t(14)).await.unwrap(),
            "the match was undone"
        );
        assert_eq!(
            s.get_invoice(&c, "i1").await.unwrap().unwrap().state,
            InvoiceState::Sent
        );
    }

    pub async fn division_webhooks_live_beside_the_links(s: &impl StateStore, _: &impl TokenStore) {
        let d = div(1234567);
        assert_eq!(s.get_division_webhooks(d).await.unwrap(), None);
        s.link_division(d, &conn("bu_1")).await.unwrap();
        let record = DivisionWebhooksRecord {
            division: d,
            callback_url: "https://api.example/exact/webhooks".into(),
            subscriptions: vec![
                WebhookSubscriptionRecord {
                    id: guid(1),
                    topic: "BankEntries".into(),
                },
                WebhookSubscriptionRecord {
                    id: guid(2),
                    topic: "SalesInvoices".into(),
                },
            ],
            updated_at: t(3),
        };
        s.put_division_webhooks(&record).await.unwrap();
        assert_eq!(
            s.get_division_webhooks(d).await.unwrap(),
            Some(record.clone())
        );
        assert_eq!(
            s.get_division_webhooks(div(7)).await.unwrap(),
            None,
            "per division"
        );
        // The item shares the division's partition with the links, and is not taken for one.
        assert_eq!(
            s.connections_for_division(d).await.unwrap(),
            vec![conn("bu_1")]
        );
        let mut moved = record.clone();
        moved.callback_url = "https://new.example/exact/webhooks".into();
        moved.subscriptions.truncate(1);
        s.put_division_webhooks(&moved).await.unwrap();
        assert_eq!(s.get_division_webhooks(d).await.unwrap(), Some(moved));
        s.delete_division_webhooks(d).await.unwrap();
        assert_eq!(s.get_division_webhooks(d).await.unwrap(), None);
        s.delete_division_webhooks(d).await.unwrap(); // twice is fine
        assert_eq!(
            s.connections_for_division(d).await.unwrap(),
            vec![conn("bu_1")],
            "the links stay"
        );
    }

    pub async fn webhook_dedupe_expires(s: &impl StateStore, _: &impl TokenStore) {
        let ttl = Duration::from_secs(3600);
        assert!(s.first_seen("evt-1", t(0), ttl).await.unwrap());
        assert!(!s.first_seen("evt-1", t(1), ttl).await.unwrap());
        assert!(!s.first_seen("evt-1", t(3599), ttl).await.unwrap());
        assert!(
            s.first_seen("evt-2", t(1), ttl).await.unwrap(),
            "keys are independent"
        );
        // Expired counts as absent, even though no TTL sweeper ran.
        assert!(s.first_seen("evt-1", t(3600), ttl).await.unwrap());
        assert!(!s.first_seen("evt-1", t(3601), ttl).await.unwrap());
    }

    pub async fn lease_owner_expiry_and_release(s: &impl StateStore, _: &impl TokenStore) {
        let ttl = Duration::from_secs(30);
        assert!(s.acquire("refresh:bu_1", "a", t(0), ttl).await.unwrap());
        assert!(
            !s.acquire("refresh:bu_1", "b", t(10), ttl).await.unwrap(),
            "held by a"
        );
        assert!(
            !s.acquire("refresh:bu_1", "a", t(10), ttl).await.unwrap(),
            "not re-entrant"
        );
        assert!(
            s.acquire("refresh:bu_2", "b", t(10), ttl).await.unwrap(),
            "names are independent"
        );
        assert!(
            !s.release("refresh:bu_1", "b").await.unwrap(),
            "only the owner releases"
        );
        assert!(
            !s.renew("refresh:bu_1", "b", t(10), ttl).await.unwrap(),
            "only the owner renews"
        );

        assert!(s.renew("refresh:bu_1", "a", t(20), ttl).await.unwrap());
        assert!(
            !s.acquire("refresh:bu_1", "b", t(40), ttl).await.unwrap(),
            "renewed until 50"
        );
        // a dies; after expiry b replaces it, and a can neither renew nor release b's lease.
        assert!(s.acquire("refresh:bu_1", "b", t(50), ttl).await.unwrap());
        assert!(!s.renew("refresh:bu_1", "a", t(51), ttl).await.unwrap());
        assert!(!s.release("refresh:bu_1", "a").await.unwrap());
        assert!(s.release("refresh:bu_1", "b").await.unwrap());
        assert!(
            !s.release("refresh:bu_1", "b").await.unwrap(),
            "already released"
        );
        assert!(
            s.acquire("refresh:bu_1", "c", t(52), ttl).await.unwrap(),
            "free after release"
        );
    }

    fn tokens(tag: &str, at: i64) -> TokenRecord {
        TokenRecord {
            access_token: SecretString::from(format!("access-{tag}")),
            refresh_token: SecretString::from(format!("refresh-{tag}")),
            access_expires_at: t(at + 600),
            last_refresh_at: t(at),
            country: Country::Nl,
            division: div(1234567),
        }
    }

    fn assert_tokens(got: Option<TokenRecord>, want: &TokenRecord) {
        let got = got.expect("tokens stored");
        assert_eq!(
            got.access_token.expose_secret(),
            want.access_token.expose_secret()
        );
        assert_eq!(
            got.refresh_token.expose_secret(),
            want.refresh_token.expose_secret()
        );
        assert_eq!(
            (
                got.access_expires_at,
                got.last_refresh_at,
                got.country,
                got.division
            ),
            (
                want.access_expires_at,
                want.last_refresh_at,
                want.country,
                want.division
            )
        );
    }

    pub async fn tokens_put_get_delete_and_reconnect(_: &impl StateStore, ts: &impl TokenStore) {
        let (c, other) = (conn("bu_1"), conn("bu_2"));
        let (zero, one) = (TokenSlot::Zero, TokenSlot::One);
        assert!(ts.get(&c, zero).await.unwrap().is_none(), "never connected");
        ts.delete(&c).await.unwrap(); // disconnecting what is not connected is fine

        ts.put(&c, zero, &tokens("1", 0)).await.unwrap();
        assert_tokens(ts.get(&c, zero).await.unwrap(), &tokens("1", 0));
        assert!(ts.get(&c, one).await.unwrap().is_none(), "per slot");
        assert!(
            ts.get(&other, zero).await.unwrap().is_none(),
            "per connection"
        );

        ts.put(&c, one, &tokens("2", 570)).await.unwrap(); // a refresh: the other slot, created
        assert_tokens(ts.get(&c, one).await.unwrap(), &tokens("2", 570));
        assert_tokens(ts.get(&c, zero).await.unwrap(), &tokens("1", 0));
        ts.put(&c, zero, &tokens("3", 1140)).await.unwrap(); // the next one: back to slot 0
        assert_tokens(ts.get(&c, zero).await.unwrap(), &tokens("3", 1140));

        ts.delete(&c).await.unwrap();
        for slot in TokenSlot::BOTH {
            assert!(
                ts.get(&c, slot).await.unwrap().is_none(),
                "disconnected = not connected, both slots"
            );
        }
        ts.delete(&c).await.unwrap(); // twice is fine

        ts.put(&c, one, &tokens("4", 2000)).await.unwrap(); // reconnect within the recovery window
        assert_tokens(ts.get(&c, one).await.unwrap(), &tokens("4", 2000));
        ts.put(&c, zero, &tokens("5", 2600)).await.unwrap(); // its first refresh restores slot 0
        assert_tokens(ts.get(&c, zero).await.unwrap(), &tokens("5", 2600));
    }

    /// The token commit point: only the sequence read commits, only while connected; an item written before the
    /// slots existed counts as slot 0, sequence 0.
    pub async fn token_commit_is_conditional_on_the_sequence(
        s: &impl StateStore,
        _: &impl TokenStore,
    ) {
        let c = conn("bu_1");
        assert!(
            !s.commit_tokens(&c, 0, TokenSlot::One, t(1)).await.unwrap(),
            "missing"
        );
        s.put_connection(&connection("bu_1")).await.unwrap();
        let got = s.get_connection(&c).await.unwrap().unwrap();
        assert_eq!((got.token_slot, got.token_seq), (TokenSlot::Zero, 0));

        assert!(s.commit_tokens(&c, 0, TokenSlot::One, t(1)).await.unwrap());
        assert!(
            !s.commit_tokens(&c, 0, TokenSlot::One, t(2)).await.unwrap(),
            "a late refresher with the old sequence loses"
        );
        let got = s.get_connection(&c).await.unwrap().unwrap();
        assert_eq!(
            (got.token_slot, got.token_seq, got.last_token_refresh_at),
            (TokenSlot::One, 1, Some(t(1)))
        );
        assert!(s.commit_tokens(&c, 1, TokenSlot::Zero, t(3)).await.unwrap());
        let got = s.get_connection(&c).await.unwrap().unwrap();
        assert_eq!((got.token_slot, got.token_seq), (TokenSlot::Zero, 2));
        // The whole record written again (a reconnect) keeps what it is given.
        let mut again = got.clone();
        again.token_slot = TokenSlot::One;
        again.token_seq = 3;
        s.put_connection(&again).await.unwrap();
        assert!(!s.commit_tokens(&c, 2, TokenSlot::Zero, t(4)).await.unwrap());
        assert!(s.mark_needs_reconnect(&c, "gone", t(5)).await.unwrap());
        assert!(
            !s.commit_tokens(&c, 3, TokenSlot::Zero, t(6)).await.unwrap(),
            "only while connected"
        );
    }

    pub async fn a_queued_push_is_written_once_finished_once_and_owes_one_callback(
        s: &impl StateStore,
        _: &impl TokenStore,
    ) {
        let c = conn("bu_1");
        let accepted = |hash: &str, at| {
            QueuedPush::accepted(
                &c,
                "inv_1",
                div(1001),
                hash,
                "{\"id\":\"inv_1\"}".into(),
                t(at),
            )
        };
        assert_eq!(s.get_queued_push(&c, "inv_1").await.unwrap(), None);
        assert_eq!(
            s.enqueue_push(&accepted("h1", 1)).await.unwrap(),
            Enqueued::Written
        );
        assert_eq!(
            s.get_queued_push(&c, "inv_1").await.unwrap(),
            Some(accepted("h1", 1))
        );
        // A queued push stays, whatever body comes next.
        for hash in ["h1", "h2"] {
            match s.enqueue_push(&accepted(hash, 2)).await.unwrap() {
                Enqueued::Exists(p) => assert_eq!(*p, accepted("h1", 1)),
                other => panic!("{other:?}"),
            }
        }
        // Another body does not finish it; its own does, once.
        assert!(
            !s.finish_queued_push(&c, "inv_1", "h2", None, true, t(3))
                .await
                .unwrap()
        );
        let refusal = PushFailureRecord {
            status: 422,
            code: "exact_rejected".into(),
            message: "Exact refused the invoice".into(),
            field: Some("journal_code".into()),
            exact_message: Some("Ongeldig: Dagboek\r\nniet gevonden".into()),
        };
        assert!(
            s.finish_queued_push(&c, "inv_1", "h1", Some(&refusal), true, t(3))
                .await
                .unwrap()
        );
        assert!(
            !s.finish_queued_push(&c, "inv_1", "h1", None, true, t(4))
                .await
                .unwrap(),
            "a second delivery changes nothing"
        );
        let failed = s.get_queued_push(&c, "inv_1").await.unwrap().unwrap();
        assert_eq!(
            (failed.state, failed.body, failed.failure.as_ref()),
            (QueuedPushState::Failed, None, Some(&refusal))
        );
        let pending = s.push_callbacks_pending(&c).await.unwrap();
        assert_eq!(pending.len(), 1);
        assert!(s.push_callback_sent(&c, "inv_1", t(5)).await.unwrap());
        assert!(!s.push_callback_sent(&c, "inv_1", t(6)).await.unwrap());
        assert!(s.push_callbacks_pending(&c).await.unwrap().is_empty());
        assert!(
            s.push_callbacks_pending(&conn("bu_2"))
                .await
                .unwrap()
                .is_empty()
        );

        // A failed push is replaced by a corrected body; it finishes done and cannot be replaced any more.
        assert_eq!(
            s.enqueue_push(&accepted("h2", 7)).await.unwrap(),
            Enqueued::Written
        );
        assert!(
            s.finish_queued_push(&c, "inv_1", "h2", None, true, t(8))
                .await
                .unwrap()
        );
        let done = s.get_queued_push(&c, "inv_1").await.unwrap().unwrap();
        assert_eq!((done.state, done.failure), (QueuedPushState::Done, None));
        assert!(matches!(
            s.enqueue_push(&accepted("h3", 9)).await.unwrap(),
            Enqueued::Exists(_)
        ));

        // Withdrawing only takes a push still queued with that body.
        let other = QueuedPush::accepted(&c, "inv_2", div(1001), "h1", "{}".into(), t(10));
        s.enqueue_push(&other).await.unwrap();
        assert!(!s.withdraw_push(&c, "inv_2", "h9").await.unwrap());
        assert!(!s.withdraw_push(&c, "inv_1", "h2").await.unwrap(), "done");
        assert!(s.withdraw_push(&c, "inv_2", "h1").await.unwrap());
        assert_eq!(s.get_queued_push(&c, "inv_2").await.unwrap(), None);
    }

    pub async fn the_budget_of_a_window_only_goes_down(s: &impl StateStore, _: &impl TokenStore) {
        let d = div(1001);
        let w = |remaining, reset_ms| BudgetWindow {
            remaining,
            reset_ms,
        };
        let day = |remaining| BudgetWindow {
            remaining,
            reset_ms: 1_759_363_200_000,
        };
        let minute_0 = 1_759_320_060_000;
        assert_eq!(s.get_budget(d).await.unwrap(), None);
        let both = |m, dd| RateBudget {
            minute: Some(m),
            day: Some(dd),
        };
        s.record_budget(d, &both(w(59, minute_0), day(4999)))
            .await
            .unwrap();
        s.record_budget(d, &both(w(57, minute_0), day(4997)))
            .await
            .unwrap();
        // A late answer to an earlier call: neither window goes up again.
        s.record_budget(d, &both(w(58, minute_0), day(4998)))
            .await
            .unwrap();
        assert_eq!(
            s.get_budget(d).await.unwrap(),
            Some(both(w(57, minute_0), day(4997)))
        );
        // The minute is stale but the day is news: the day still lands.
        s.record_budget(d, &both(w(58, minute_0), day(4990)))
            .await
            .unwrap();
        assert_eq!(
            s.get_budget(d).await.unwrap(),
            Some(both(w(57, minute_0), day(4990)))
        );
        // A minute 429 carries no day headers: the day stays as it was.
        let only_minute = RateBudget {
            minute: Some(w(0, minute_0)),
            day: None,
        };
        s.record_budget(d, &only_minute).await.unwrap();
        assert_eq!(
            s.get_budget(d).await.unwrap(),
            Some(both(w(0, minute_0), day(4990)))
        );
        // The next minute starts afresh; another administration is apart.
        s.record_budget(d, &both(w(59, minute_0 + 60_000), day(4989)))
            .await
            .unwrap();
        assert_eq!(
            s.get_budget(d).await.unwrap(),
            Some(both(w(59, minute_0 + 60_000), day(4989)))
        );
        assert_eq!(s.get_budget(div(2002)).await.unwrap(), None);
    }

    pub async fn job_cursor_saves_and_clears(s: &impl StateStore, _: &impl TokenStore) {
        assert_eq!(s.get_job_cursor("keep-alive").await.unwrap(), None);
        s.put_job_cursor("keep-alive", Some("bu_17")).await.unwrap();
        s.put_job_cursor("other", Some("x")).await.unwrap();
        assert_eq!(
            s.get_job_cursor("keep-alive").await.unwrap().as_deref(),
            Some("bu_17")
        );
        s.put_job_cursor("keep-alive", None).await.unwrap();
        assert_eq!(s.get_job_cursor("keep-alive").await.unwrap(), None);
        assert_eq!(
            s.get_job_cursor("other").await.unwrap().as_deref(),
            Some("x")
        );
    }

    pub async fn connections_page_by_page_filtered_by_state(
        s: &impl StateStore,
        _: &impl TokenStore,
    ) {
        let empty = s.list_connections_page(None, None, 10).await.unwrap();
        assert!(empty.connections.is_empty() && empty.next.is_none());
        // 12 connections, every third needs a reconnect; invoices and settings beside them are not listed.
        let ids: Vec<String> = (0..12).map(|i| format!("bu_{i:02}")).collect();
        for (i, id) in ids.iter().enumerate() {
            let mut c = connection(id);
            if i % 3 == 0 {
                c.state = ConnectionState::NeedsReconnect;
            }
            s.put_connection(&c).await.unwrap();
        }
        s.claim(&conn("bu_01"), "inv", "h", "w", t(0), LEASE)
            .await
            .unwrap();

        // Pages of 5 follow each other in id order; every connection once.
        let walk = |state: Option<ConnectionState>, limit: usize| async move {
            let mut seen = Vec::new();
            let mut after: Option<ConnectionId> = None;
            let mut pages = 0;
            loop {
                let page = s
                    .list_connections_page(state, after.as_ref(), limit)
                    .await
                    .unwrap();
                pages += 1;
                assert!(page.connections.len() <= limit);
                if page.next.is_some() {
                    assert_eq!(page.connections.len(), limit, "only a full page has a next");
                    assert_eq!(
                        page.next.as_ref(),
                        page.connections.last().map(|c| &c.connection_id)
                    );
                }
                seen.extend(page.connections.iter().map(|c| c.connection_id.to_string()));
                match page.next {
                    Some(n) => after = Some(n),
                    None => return (seen, pages),
                }
                assert!(pages < 20, "the walk ends");
            }
        };
        let (all, pages) = walk(None, 5).await;
        assert_eq!(all, ids);
        assert!((3..=4).contains(&pages), "{pages}");
        let (reconnect, _) = walk(Some(ConnectionState::NeedsReconnect), 2).await;
        assert_eq!(reconnect, ["bu_00", "bu_03", "bu_06", "bu_09"]);
        let (connected, _) = walk(Some(ConnectionState::Connected), 100).await;
        assert_eq!(connected.len(), 8);
        assert!(
            walk(Some(ConnectionState::Disconnected), 3)
                .await
                .0
                .is_empty()
        );
        // A filtered page is filled from further on, not cut short where the filter dropped items.
        let page = s
            .list_connections_page(Some(ConnectionState::NeedsReconnect), None, 3)
            .await
            .unwrap();
        let got: Vec<String> = page
            .connections
            .iter()
            .map(|c| c.connection_id.to_string())
            .collect();
        assert_eq!(got, ["bu_00", "bu_03", "bu_06"]);
        // Resuming after an id that is not (or no longer) a connection works too.
        let page = s
            .list_connections_page(None, Some(&conn("bu_05x")), 100)
            .await
            .unwrap();
        assert_eq!(page.connections.len(), 6);
        assert_eq!(page.next, None);
        // The limit is at least 1 and at most 100.
        let page = s.list_connections_page(None, None, 0).await.unwrap();
        assert_eq!(page.connections.len(), 1);
    }

    pub async fn the_last_push_only_moves_forward(s: &impl StateStore, _: &impl TokenStore) {
        let c = conn("bu_1");
        s.record_push(&c, t(5)).await.unwrap();
        assert_eq!(
            s.get_connection(&c).await.unwrap(),
            None,
            "no connection made up"
        );
        s.put_connection(&connection("bu_1")).await.unwrap();
        assert_eq!(
            s.get_connection(&c).await.unwrap().unwrap().last_push_at,
            None
        );
        s.record_push(&c, t(10)).await.unwrap();
        s.record_push(&c, t(7)).await.unwrap();
        let got = s.get_connection(&c).await.unwrap().unwrap();
        assert_eq!(
            got.last_push_at,
            Some(t(10)),
            "a late writer cannot move it back"
        );
        assert_eq!(got.state, ConnectionState::Connected);
        s.record_push(&c, t(11)).await.unwrap();
        assert_eq!(
            s.get_connection(&c).await.unwrap().unwrap().last_push_at,
            Some(t(11))
        );
    }

    pub async fn open_invoices_are_counted(s: &impl StateStore, _: &impl TokenStore) {
        let c = conn("bu_1");
        assert_eq!(s.count_open_invoices(&c).await.unwrap(), 0);
        for (id, exact) in [("i1", 901), ("i2", 902), ("i3", 903)] {
            s.claim(&c, id, "h", "w", t(0), LEASE).await.unwrap();
            let mut d = done(OpenState::Created, None);
            d.progress.exact_invoice_id = Some(guid(exact));
            s.complete(&c, id, "w", &d, t(1)).await.unwrap();
        }
        // A claim in progress and another connection's invoice are not counted.
        s.claim(&c, "pending", "h", "w", t(0), LEASE).await.unwrap();
        s.claim(&conn("other"), "o1", "h", "w", t(0), LEASE)
            .await
            .unwrap();
        assert_eq!(s.count_open_invoices(&c).await.unwrap(), 3);
        assert_eq!(
            s.count_open_invoices(&c).await.unwrap(),
            s.open_invoices(&c).await.unwrap().len()
        );
        assert!(s.mark_paid(&c, "i2", t(5), t(5)).await.unwrap());
        assert_eq!(s.count_open_invoices(&c).await.unwrap(), 2);
    }

    pub async fn attachment_progress_is_kept_and_only_grows(
        s: &impl StateStore,
        _: &impl TokenStore,
    ) {
        let c = conn("bu_1");
        let Claim::Claimed { .. } = s.claim(&c, "inv_a", "h1", "a", t(0), LEASE).await.unwrap()
        else {
            panic!("first claim wins");
        };
        let files = vec![
            AttachmentMeta {
                file_name: "hours.pdf".into(),
                size: 1234,
            },
            AttachmentMeta {
                file_name: "expenses.pdf".into(),
                size: 99,
            },
        ];
        let attempt = InvoiceProgress {
            attachment_files: Some(files.clone()),
            document_subject: Some("Specification INV-1".into()),
            ..InvoiceProgress::default()
        };
        s.save_progress(&c, "inv_a", "a", &attempt, t(1))
            .await
            .unwrap();
        let r = s.get_invoice(&c, "inv_a").await.unwrap().unwrap();
        assert_eq!(r.attachments.files, files);
        assert_eq!(
            r.attachments.document_subject.as_deref(),
            Some("Specification INV-1")
        );
        assert_eq!(r.attachments.exact_document_id, None);
        for (p, sent) in [
            (
                InvoiceProgress {
                    exact_document_id: Some(guid(7)),
                    ..InvoiceProgress::default()
                },
                0,
            ),
            (
                InvoiceProgress {
                    attachments_sent: Some(2),
                    ..InvoiceProgress::default()
                },
                2,
            ),
            // A late writer with an older count does not undo a newer one.
            (
                InvoiceProgress {
                    attachments_sent: Some(1),
                    ..InvoiceProgress::default()
                },
                2,
            ),
        ] {
            s.save_progress(&c, "inv_a", "a", &p, t(2)).await.unwrap();
            let r = s.get_invoice(&c, "inv_a").await.unwrap().unwrap();
            assert_eq!(r.attachments.sent, sent);
            assert_eq!(r.attachments.exact_document_id, Some(guid(7)));
            assert_eq!(r.attachments.files, files, "the names stay");
        }
        // Taken over after expiry with the same body: the progress comes along.
        let Claim::Claimed { record, taken_over } =
            s.claim(&c, "inv_a", "h1", "b", t(61), LEASE).await.unwrap()
        else {
            panic!("expired claim is taken over");
        };
        assert!(taken_over);
        assert_eq!(record.attachments.exact_document_id, Some(guid(7)));
        assert_eq!(record.attachments.sent, 2);
        // A record without attachments reads back with none.
        let Claim::Claimed { record, .. } =
            s.claim(&c, "inv_b", "h", "a", t(0), LEASE).await.unwrap()
        else {
            panic!();
        };
        assert!(record.attachments.is_empty());
        assert!(
            s.get_invoice(&c, "inv_b")
                .await
                .unwrap()
                .unwrap()
                .attachments
                .is_empty()
        );
    }
}

macro_rules! contract {
    ($backend:ident: $($case:ident),* $(,)?) => {
        mod $backend {
            $(
                #[tokio::test]
                async fn $case() {
                    let (state, tokens) = crate::common::$backend().await;
                    crate::contract::suite::$case(&state, &tokens).await;
                }
            )*
        }
    };
}

macro_rules! all_backends {
    ($($case:ident),* $(,)?) => {
        contract!(memory: $($case),*);
        contract!(moto: $($case),*);
    };
}

all_backends!(
    connection_and_settings_are_independent,
    needs_reconnect_and_refresh_touch_only_a_connected_connection,
    list_connections_returns_every_connection,
    division_links,
    oauth_state_is_single_use_and_expires,
    mappings_are_isolated_by_connection_and_division,
    claim_replay_conflict_and_takeover,
    expired_claim_without_exact_invoice_accepts_a_corrected_body,
    release_frees_only_an_owned_claim_without_exact_invoice,
    invoice_life_after_the_push,
    credited_is_settled_but_not_paid,
    division_webhooks_live_beside_the_links,
    webhook_dedupe_expires,
    lease_owner_expiry_and_release,
    tokens_put_get_delete_and_reconnect,
    token_commit_is_conditional_on_the_sequence,
    job_cursor_saves_and_clears,
    the_budget_of_a_window_only_goes_down,
    a_queued_push_is_written_once_finished_once_and_owes_one_callback,
    a_reopened_invoice_owes_its_callback_only_when_the_paid_one_was_accepted,
    events_add_up_their_delivery_rounds_and_a_connection_owes_its_latest_change,
    connections_page_by_page_filtered_by_state,
    open_invoices_are_counted,
    the_last_push_only_moves_forward,
    attachment_progress_is_kept_and_only_grows,
);
