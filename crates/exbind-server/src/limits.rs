//! Rate limits (contract §5): the gateway quota per (method, app, tenant) over clock-aligned
//! seconds and minutes, the per-(app, tenant) calendar budget (190005) and the per-method
//! budget (190004). Each key is checked and counted under its own map shard lock, so limits are
//! exact under concurrency; a rejected request counts against nothing.
//!
//! Servers sharing a store count in one place instead (Redis, or the database): each check
//! and count is one atomic step there, keyed by the window's start on the UTC clock, so the
//! limits hold over all servers together.

use std::sync::Arc;

use async_trait::async_trait;
use dashmap::DashMap;

use crate::domain::scopes::BindingMethod;
use crate::store::StoreResult;

/// One window of a shared counter: its key (the window's start in it), limit and end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub key: String,
    pub limit: u32,
    /// Milliseconds since the epoch; the counter may be forgotten after this.
    pub ends_at: i64,
}

/// Counters several servers share.
#[async_trait]
pub trait SharedCounters: Send + Sync {
    /// Atomically: if a window is full, the index of the first full one, counting nothing;
    /// else counts one in each window. `now` is this server's clock.
    async fn take(&self, windows: &[Window], now: i64) -> StoreResult<Option<usize>>;
    /// Forgets every counter.
    async fn clear(&self) -> StoreResult<()>;
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub enabled: bool,
    pub per_second: u32,
    pub per_minute: u32,
    pub app_budget_per_second: u32,
    pub method_budget_per_second: u32,
}

/// A gateway rejection: the limit that was hit and whole seconds until its window ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub limit: u32,
    pub reset_secs: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    App,
    Method,
}

#[derive(Default, Clone, Copy)]
struct Windows {
    second: i64,
    in_second: u32,
    minute: i64,
    in_minute: u32,
}

impl Windows {
    fn roll(&mut self, now_ms: i64) {
        let (s, m) = (now_ms.div_euclid(1000), now_ms.div_euclid(60_000));
        if self.second != s {
            self.second = s;
            self.in_second = 0;
        }
        if self.minute != m {
            self.minute = m;
            self.in_minute = 0;
        }
    }
}

/// What a gateway quota counts: an Exchange-binding method, or another route (the token
/// endpoints of the login flows, by `METHOD /route`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Quota {
    Binding(BindingMethod),
    Route(&'static str),
}

impl From<BindingMethod> for Quota {
    fn from(m: BindingMethod) -> Quota {
        Quota::Binding(m)
    }
}

pub struct Limiter {
    limits: Limits,
    shared: Option<Arc<dyn SharedCounters>>,
    gateway: DashMap<(Quota, String, String), Windows>,
    app_budget: DashMap<(String, String), Windows>,
    method_budget: DashMap<BindingMethod, Windows>,
}

fn secs_until(boundary_ms: i64, now_ms: i64) -> i64 {
    ((boundary_ms - now_ms + 999) / 1000).max(1)
}

/// A key part that no other pair of parts spells the same way.
fn part(s: &str) -> String {
    format!("{}:{s}", s.len())
}

impl Limiter {
    /// Counting in this process.
    #[cfg(test)]
    pub fn new(limits: Limits) -> Limiter {
        Limiter::with_shared(limits, None)
    }

    /// Counting in `shared` when given.
    pub fn with_shared(limits: Limits, shared: Option<Arc<dyn SharedCounters>>) -> Limiter {
        Limiter {
            limits,
            shared,
            gateway: DashMap::new(),
            app_budget: DashMap::new(),
            method_budget: DashMap::new(),
        }
    }

    fn minute_full(&self, minute: i64, now_ms: i64) -> Throttled {
        Throttled {
            limit: self.limits.per_minute,
            reset_secs: secs_until((minute + 1) * 60_000, now_ms),
        }
    }

    fn second_full(&self, second: i64, now_ms: i64) -> Throttled {
        Throttled {
            limit: self.limits.per_second,
            reset_secs: secs_until((second + 1) * 1000, now_ms),
        }
    }

    /// Step 4: admits and counts the request, or says which window is full.
    pub async fn gateway(
        &self,
        method: impl Into<Quota>,
        app_id: &str,
        tenant_key: &str,
        now_ms: i64,
    ) -> StoreResult<Result<(), Throttled>> {
        if !self.limits.enabled {
            return Ok(Ok(()));
        }
        let Some(shared) = &self.shared else {
            return Ok(self.gateway_local(method, app_id, tenant_key, now_ms));
        };
        // Boxed, so that only servers that count elsewhere carry this wait in their
        // requests' futures.
        Box::pin(self.gateway_shared(&**shared, method.into(), app_id, tenant_key, now_ms)).await
    }

    async fn gateway_shared(
        &self,
        shared: &dyn SharedCounters,
        method: Quota,
        app_id: &str,
        tenant_key: &str,
        now_ms: i64,
    ) -> StoreResult<Result<(), Throttled>> {
        let (s, m) = (now_ms.div_euclid(1000), now_ms.div_euclid(60_000));
        let what = match method {
            Quota::Binding(b) => part(b.http_method()),
            Quota::Route(r) => part(r),
        };
        let key = format!("gw:{what}{}{}", part(app_id), part(tenant_key));
        // The minute first: when both are full, it is the one reported.
        let windows = [
            Window {
                key: format!("{key}:m{m}"),
                limit: self.limits.per_minute,
                ends_at: (m + 1) * 60_000,
            },
            Window {
                key: format!("{key}:s{s}"),
                limit: self.limits.per_second,
                ends_at: (s + 1) * 1000,
            },
        ];
        Ok(match shared.take(&windows, now_ms).await? {
            None => Ok(()),
            Some(0) => Err(self.minute_full(m, now_ms)),
            Some(_) => Err(self.second_full(s, now_ms)),
        })
    }

    fn gateway_local(
        &self,
        method: impl Into<Quota>,
        app_id: &str,
        tenant_key: &str,
        now_ms: i64,
    ) -> Result<(), Throttled> {
        let mut w = self
            .gateway
            .entry((method.into(), app_id.to_string(), tenant_key.to_string()))
            .or_default();
        w.roll(now_ms);
        // When both windows are full the minute is reported: it is the longer wait.
        if w.in_minute >= self.limits.per_minute {
            return Err(self.minute_full(w.minute, now_ms));
        }
        if w.in_second >= self.limits.per_second {
            return Err(self.second_full(w.second, now_ms));
        }
        w.in_second += 1;
        w.in_minute += 1;
        Ok(())
    }

    /// Step 9: the app's calendar budget, then the method's budget over all servers.
    pub async fn budgets(
        &self,
        method: BindingMethod,
        app_id: &str,
        tenant_key: &str,
        now_ms: i64,
    ) -> StoreResult<Result<(), Budget>> {
        if !self.limits.enabled {
            return Ok(Ok(()));
        }
        let Some(shared) = &self.shared else {
            return Ok(self.budgets_local(method, app_id, tenant_key, now_ms));
        };
        Box::pin(self.budgets_shared(&**shared, method, app_id, tenant_key, now_ms)).await
    }

    async fn budgets_shared(
        &self,
        shared: &dyn SharedCounters,
        method: BindingMethod,
        app_id: &str,
        tenant_key: &str,
        now_ms: i64,
    ) -> StoreResult<Result<(), Budget>> {
        let s = now_ms.div_euclid(1000);
        let windows = [
            Window {
                key: format!("app:{}{}:s{s}", part(app_id), part(tenant_key)),
                limit: self.limits.app_budget_per_second,
                ends_at: (s + 1) * 1000,
            },
            Window {
                key: format!("method:{}:s{s}", method.http_method()),
                limit: self.limits.method_budget_per_second,
                ends_at: (s + 1) * 1000,
            },
        ];
        Ok(match shared.take(&windows, now_ms).await? {
            None => Ok(()),
            Some(0) => Err(Budget::App),
            Some(_) => Err(Budget::Method),
        })
    }

    fn budgets_local(
        &self,
        method: BindingMethod,
        app_id: &str,
        tenant_key: &str,
        now_ms: i64,
    ) -> Result<(), Budget> {
        let mut app = self
            .app_budget
            .entry((app_id.to_string(), tenant_key.to_string()))
            .or_default();
        app.roll(now_ms);
        if app.in_second >= self.limits.app_budget_per_second {
            return Err(Budget::App);
        }
        let mut m = self.method_budget.entry(method).or_default();
        m.roll(now_ms);
        if m.in_second >= self.limits.method_budget_per_second {
            return Err(Budget::Method);
        }
        app.in_second += 1;
        m.in_second += 1;
        Ok(())
    }

    /// Forgets every counter.
    pub async fn clear(&self) -> StoreResult<()> {
        self.gateway.clear();
        self.app_budget.clear();
        self.method_budget.clear();
        match &self.shared {
            Some(s) => s.clear().await,
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use BindingMethod::*;

    fn limiter(per_second: u32, per_minute: u32) -> Limiter {
        Limiter::new(Limits {
            enabled: true,
            per_second,
            per_minute,
            app_budget_per_second: 3,
            method_budget_per_second: 5,
        })
    }

    #[test]
    fn second_window_is_clock_aligned() {
        let l = limiter(50, 1000);
        let t0 = 1_000_000_000_500; // half-way through a second
        for _ in 0..50 {
            l.gateway_local(Get, "a", "t", t0).unwrap();
        }
        assert_eq!(
            l.gateway_local(Get, "a", "t", t0 + 499),
            Err(Throttled {
                limit: 50,
                reset_secs: 1
            })
        );
        // Other keys are separate.
        l.gateway_local(Delete, "a", "t", t0).unwrap();
        l.gateway_local(Get, "b", "t", t0).unwrap();
        // The next second starts afresh.
        l.gateway_local(Get, "a", "t", t0 + 500).unwrap();
    }

    #[test]
    fn minute_window_wins_when_both_are_full() {
        let l = limiter(2, 4);
        let t0 = 6_000_000_000_000; // a minute boundary
        for s in 0..2 {
            for _ in 0..2 {
                l.gateway_local(Get, "a", "t", t0 + s * 1000).unwrap();
            }
        }
        let r = l.gateway_local(Get, "a", "t", t0 + 1500).unwrap_err();
        assert_eq!(
            r,
            Throttled {
                limit: 4,
                reset_secs: 59
            }
        );
        assert_eq!(
            l.gateway_local(Get, "a", "t", t0 + 59_999)
                .unwrap_err()
                .reset_secs,
            1
        );
        l.gateway_local(Get, "a", "t", t0 + 60_000).unwrap();
    }

    #[test]
    fn budgets_and_rejections_count_nothing() {
        let l = limiter(100, 1000);
        let t = 7_000_000_000_000;
        for _ in 0..3 {
            l.budgets_local(Get, "a", "t", t).unwrap();
        }
        assert_eq!(l.budgets_local(Create, "a", "t", t), Err(Budget::App));
        l.budgets_local(Get, "b", "t", t).unwrap();
        l.budgets_local(Get, "c", "t", t).unwrap();
        assert_eq!(l.budgets_local(Get, "d", "t", t), Err(Budget::Method));
        // The rejected calls above were not counted: one more second, all fresh.
        l.budgets_local(Get, "a", "t", t + 1000).unwrap();
    }

    #[tokio::test]
    async fn off_admits_everything() {
        let l = Limiter::new(Limits {
            enabled: false,
            per_second: 0,
            per_minute: 0,
            app_budget_per_second: 0,
            method_budget_per_second: 0,
        });
        assert_eq!(l.gateway(Get, "a", "t", 0).await.unwrap(), Ok(()));
        assert_eq!(l.budgets(Get, "a", "t", 0).await.unwrap(), Ok(()));
    }
}
