//! What a binding write means, decided once for every store: a store reads the rows under
//! its own isolation (a write transaction), and these functions say what the rows imply.

use exbind_api::accounts::fold;
use exbind_api::BindingStatus;

use crate::domain::model::{BindingRecord, CreateOutcome, NewBinding, StatusChange, Step};

/// A create that finds `existing` bound to its Exchange account: the same (admin, exchange,
/// user) is answered as is, anything else is taken. `None` when nothing is bound there.
pub fn exchange_bound(existing: Option<BindingRecord>, new: &NewBinding) -> Option<CreateOutcome> {
    let b = existing?;
    let same = fold(&b.admin_account) == fold(&new.admin_account)
        && b.tenant_key == new.tenant_key
        && b.user_id == new.user_id;
    Some(if same {
        CreateOutcome::Existing(b)
    } else {
        CreateOutcome::ExchangeTaken
    })
}

/// The record a create makes, once its row has `seq`.
pub fn created(seq: i64, new: NewBinding) -> BindingRecord {
    BindingRecord {
        seq,
        admin_account: new.admin_account,
        exchange_account: new.exchange_account,
        tenant_key: new.tenant_key,
        user_id: new.user_id,
        status: BindingStatus::Doing,
        reason: None,
        scenario: new.scenario,
        next_at: new.next_at,
        created_at: new.now,
        updated_at: new.now,
    }
}

/// The first step of every binding.
pub fn first_step(now: i64) -> Step {
    Step {
        status: BindingStatus::Doing,
        at: now,
    }
}

/// Whether a delete in `tenant_key` under the admin `admin_folded` may remove `b`.
pub fn owns(b: &BindingRecord, tenant_key: &str, admin_folded: &str) -> bool {
    b.tenant_key == tenant_key && fold(&b.admin_account) == admin_folded
}

/// What an admin account going `failed` does to one of its syncing bindings.
pub fn admin_failed(
    seq: i64,
    from: BindingStatus,
    exchange_folded: String,
    now: i64,
) -> StatusChange {
    StatusChange {
        seq,
        exchange_folded,
        from,
        status: BindingStatus::Err,
        reason: Some("admin account binding failed".into()),
        next_at: None,
        steps: vec![Step {
            status: BindingStatus::Err,
            at: now,
        }],
    }
}
