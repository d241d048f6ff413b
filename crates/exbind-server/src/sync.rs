//! The sync engine: moves every binding through its stages on schedule. One task for all
//! bindings: it asks the store for what is due (an index on the deadline), applies each
//! binding's catch-up in one transaction, and sleeps until the next deadline or until a new
//! binding wakes it. Progress lives in the store, so a restart resumes where it was.

use std::time::Duration;

use tokio::sync::watch;

use crate::domain::model::StatusChange;
use crate::domain::sync::catch_up;
use crate::state::SharedState;
use crate::store::StoreResult;

/// Bindings stepped per transaction.
const BATCH: usize = 1000;
/// The engine looks again at least this often, whatever it was told.
const MAX_SLEEP: Duration = Duration::from_secs(60);
/// On a shared store, other servers add bindings without waking this one: it looks this often,
/// so a step is taken within 1 s of its deadline while any server is up.
const SHARED_MAX_SLEEP: Duration = Duration::from_millis(500);

pub async fn run(state: SharedState, mut stop: watch::Receiver<bool>) {
    let max_sleep = if state.shared_store {
        SHARED_MAX_SLEEP
    } else {
        MAX_SLEEP
    };
    loop {
        let wait = match tick(&state).await {
            Ok(true) => Duration::ZERO,
            Ok(false) => match state.store.next_deadline().await {
                Ok(Some(at)) => {
                    Duration::from_millis((at - state.now()).max(0) as u64).min(max_sleep)
                }
                Ok(None) => max_sleep,
                Err(e) => {
                    tracing::error!(error = %e, "sync engine cannot read the schedule");
                    Duration::from_secs(1)
                }
            },
            Err(e) => {
                tracing::error!(error = %e, "sync engine step failed");
                Duration::from_secs(1)
            }
        };
        if wait.is_zero() {
            tokio::task::yield_now().await;
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = state.sync_wake.notified() => {}
            _ = stop.changed() => return,
        }
    }
}

/// Steps what is due now; says whether more may be due.
async fn tick(state: &SharedState) -> StoreResult<bool> {
    let now = state.now();
    let due = state.store.due_bindings(now, BATCH).await?;
    let full = due.len() == BATCH;
    let changes: Vec<StatusChange> = due
        .iter()
        .map(|b| {
            let p = catch_up(&state.schedule, &b.scenario, b.status, b.next_at, now);
            StatusChange {
                seq: b.seq,
                exchange_folded: exbind_api::accounts::fold(&b.exchange_account),
                from: b.status,
                status: p.status,
                reason: p.reason.or_else(|| b.reason.clone()),
                next_at: p.next_at,
                steps: p.steps,
            }
        })
        .collect();
    if !changes.is_empty() {
        // Kept for the event bus only when someone listens.
        let published = state.events.wanted().then(|| changes.clone());
        let applied = state.store.change_status(changes, now).await?;
        if let Some(changes) = published {
            state.events.status_changes(&due, &changes, &applied, now);
        }
    }
    Ok(full)
}
