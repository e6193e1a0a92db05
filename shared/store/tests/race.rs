//! Concurrency on moto (DynamoDB over the wire): many pushes of one invoice, many holders of one lease.
//! The in-memory adapter runs the same races, so both keep the same guarantees.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use store::{Claim, InvoiceDone, InvoiceProgress, OpenState, SavedResponse, StateStore};
use tokio::sync::Barrier;

use crate::common::{conn, guid, t};

const CLAIMERS: usize = 32;
const LEASE_HOLDERS: usize = 16;
const CLAIM_LEASE: Duration = Duration::from_secs(60);

/// `CLAIMERS` tasks claim the same invoice at the same moment; returns the claims in task order.
async fn claim_all<S: StateStore + 'static>(store: &Arc<S>, now_secs: i64) -> Vec<Claim> {
    let barrier = Arc::new(Barrier::new(CLAIMERS));
    let tasks: Vec<_> = (0..CLAIMERS)
        .map(|i| {
            let (store, barrier) = (Arc::clone(store), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                store
                    .claim(
                        &conn("bu_1"),
                        "inv_1",
                        "h1",
                        &format!("w{i}"),
                        t(now_secs),
                        CLAIM_LEASE,
                    )
                    .await
                    .expect("claim answers")
            })
        })
        .collect();
    let mut claims = Vec::with_capacity(CLAIMERS);
    for task in tasks {
        claims.push(task.await.expect("claim task"));
    }
    claims
}

async fn exactly_one_claim_wins_then_everyone_replays<S: StateStore + 'static>(store: S) {
    let store = Arc::new(store);
    let claims = claim_all(&store, 0).await;
    let winners: Vec<usize> = (0..CLAIMERS)
        .filter(|&i| {
            matches!(
                claims[i],
                Claim::Claimed {
                    taken_over: false,
                    ..
                }
            )
        })
        .collect();
    assert_eq!(winners.len(), 1, "{claims:?}");
    let in_progress = claims
        .iter()
        .filter(|c| matches!(c, Claim::InProgress { .. }))
        .count();
    assert_eq!(in_progress, CLAIMERS - 1, "{claims:?}");

    let response = SavedResponse {
        status: 201,
        body: json!({"invoice_id": "inv_1", "exact_invoice_number": 20250042}),
    };
    let done = InvoiceDone {
        state: OpenState::Sent,
        response: response.clone(),
        progress: InvoiceProgress {
            exact_invoice_id: Some(guid(900)),
            exact_invoice_number: Some(20250042),
            ..InvoiceProgress::default()
        },
    };
    store
        .complete(
            &conn("bu_1"),
            "inv_1",
            &format!("w{}", winners[0]),
            &done,
            t(1),
        )
        .await
        .expect("the winner completes");

    for claim in claim_all(&store, 2).await {
        assert_eq!(
            claim,
            Claim::Replay {
                response: response.clone()
            }
        );
    }
}

async fn exactly_one_takes_over_an_expired_claim<S: StateStore + 'static>(store: S) {
    let store = Arc::new(store);
    store
        .claim(&conn("bu_1"), "inv_1", "h1", "dead", t(0), CLAIM_LEASE)
        .await
        .expect("first claim");
    let claims = claim_all(&store, 61).await;
    let taken_over = claims
        .iter()
        .filter(|c| {
            matches!(
                c,
                Claim::Claimed {
                    taken_over: true,
                    ..
                }
            )
        })
        .count();
    let in_progress = claims
        .iter()
        .filter(|c| matches!(c, Claim::InProgress { .. }))
        .count();
    assert_eq!((taken_over, in_progress), (1, CLAIMERS - 1), "{claims:?}");
}

/// `LEASE_HOLDERS` tasks want the same lease at once; each retries until it had its turn. A shared counter
/// checks that no two ever hold it together.
async fn one_lease_holder_at_a_time<S: StateStore + 'static>(store: S) {
    let store = Arc::new(store);
    let barrier = Arc::new(Barrier::new(LEASE_HOLDERS));
    let holding = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let first_round_wins = Arc::new(AtomicUsize::new(0));
    let turns = Arc::new(AtomicUsize::new(0));
    let ttl = Duration::from_secs(300); // never expires during the test: only releases hand it on
    let first_round_done = Arc::new(Barrier::new(LEASE_HOLDERS));
    let tasks: Vec<_> = (0..LEASE_HOLDERS)
        .map(|i| {
            let (store, barrier, first_round_done) = (
                Arc::clone(&store),
                Arc::clone(&barrier),
                Arc::clone(&first_round_done),
            );
            let (holding, most, first_round_wins, turns) = (
                Arc::clone(&holding),
                Arc::clone(&most),
                Arc::clone(&first_round_wins),
                Arc::clone(&turns),
            );
            tokio::spawn(async move {
                let owner = format!("h{i}");
                let acquire = || store.acquire("refresh:bu_1", &owner, t(0), ttl);
                // Round one: everyone at once; nobody releases before all have tried.
                barrier.wait().await;
                let mut held = acquire().await.expect("acquire answers");
                if held {
                    first_round_wins.fetch_add(1, Ordering::SeqCst);
                }
                first_round_done.wait().await;
                // Then take turns: hold, release, and the others retry until they get it.
                while !held {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    held = acquire().await.expect("acquire answers");
                }
                let now_holding = holding.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now_holding, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(15)).await;
                holding.fetch_sub(1, Ordering::SeqCst);
                turns.fetch_add(1, Ordering::SeqCst);
                let released = store
                    .release("refresh:bu_1", &owner)
                    .await
                    .expect("release answers");
                assert!(released, "the holder releases its own lease");
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("lease task");
    }
    assert_eq!(
        first_round_wins.load(Ordering::SeqCst),
        1,
        "of simultaneous acquisitions exactly one wins"
    );
    assert_eq!(most.load(Ordering::SeqCst), 1, "never two holders at once");
    assert_eq!(
        turns.load(Ordering::SeqCst),
        LEASE_HOLDERS,
        "everyone had a turn after the others released"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn moto_32_claims_one_winner_then_32_replays() {
    let (state, _) = crate::common::moto().await;
    exactly_one_claim_wins_then_everyone_replays(state).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn moto_32_claims_on_an_expired_claim_one_takeover() {
    let (state, _) = crate::common::moto().await;
    exactly_one_takes_over_an_expired_claim(state).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn moto_16_lease_holders_one_at_a_time() {
    let (state, _) = crate::common::moto().await;
    one_lease_holder_at_a_time(state).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn memory_32_claims_one_winner_then_32_replays() {
    let (state, _) = crate::common::memory().await;
    exactly_one_claim_wins_then_everyone_replays(state).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn memory_32_claims_on_an_expired_claim_one_takeover() {
    let (state, _) = crate::common::memory().await;
    exactly_one_takes_over_an_expired_claim(state).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn memory_16_lease_holders_one_at_a_time() {
    let (state, _) = crate::common::memory().await;
    one_lease_holder_at_a_time(state).await;
}
