//! Fault injection: rules that make matching requests answer a chosen documented error, or
//! wait first. A rule matches a method and route template, optionally an app and a tenant; it
//! applies to its next `times` matches, or to a `fraction` of them, until it expires.
//!
//! One server keeps its rules in memory; servers sharing a store keep them there, each firing
//! counted by one atomic update (in Redis when it is given, else in PostgreSQL), so
//! `times: 5` means five matches over all servers.

use std::sync::Arc;

use async_trait::async_trait;
use exbind_api::ErrorCode;
use parking_lot::Mutex;
use rand::Rng;
use serde::Serialize;

use crate::store::StoreResult;

#[derive(Debug, Clone, Serialize)]
pub struct FaultRule {
    pub id: String,
    pub method: String,
    pub route: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_key: Option<String>,
    /// Matches still to answer; `None` = every match (or a fraction of them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub times: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fraction: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "code_only")]
    pub error: Option<ErrorCode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// Milliseconds since the epoch; `None` = never.
    #[serde(skip)]
    pub expires_at: Option<i64>,
    /// How often the rule has fired.
    pub hits: u64,
}

fn code_only<S: serde::Serializer>(e: &Option<ErrorCode>, s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct E {
        code: i64,
        status: u16,
        msg: &'static str,
    }
    let c = e.expect("skipped when none");
    E {
        code: c.code(),
        status: c.http_status(),
        msg: c.msg(),
    }
    .serialize(s)
}

/// What a matching rule does to a request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fault {
    pub error: Option<ErrorCode>,
    pub latency_ms: u64,
}

/// Rules kept where several servers see them.
#[async_trait]
pub trait FaultStore: Send + Sync {
    /// Keeps `rule` under a new id, which it returns.
    async fn add(&self, rule: &FaultRule) -> StoreResult<String>;
    /// The rules of `route` to match a request against, oldest first, live or not; their
    /// `times` and `hits` may be stale (`fire` is what counts).
    async fn rules_of(&self, route: &str) -> StoreResult<Vec<FaultRule>>;
    /// Every rule as it now is, oldest first, live or not.
    async fn rules(&self) -> StoreResult<Vec<FaultRule>>;
    async fn remove(&self, id: &str) -> StoreResult<bool>;
    async fn clear(&self) -> StoreResult<()>;
    /// Counts one firing of the rule, taking one of its `times`; false when none was left
    /// (another server took the last).
    async fn fire(&self, rule: &FaultRule) -> StoreResult<bool>;
}

pub enum Faults {
    Local(LocalFaults),
    Shared(Arc<dyn FaultStore>),
}

impl Default for Faults {
    fn default() -> Self {
        Faults::Local(LocalFaults::default())
    }
}

impl Faults {
    pub async fn add(&self, rule: FaultRule) -> StoreResult<FaultRule> {
        match self {
            Faults::Local(l) => Ok(l.add(rule)),
            Faults::Shared(s) => {
                let id = s.add(&rule).await?;
                Ok(FaultRule { id, ..rule })
            }
        }
    }

    pub async fn list(&self, now: i64) -> StoreResult<Vec<FaultRule>> {
        match self {
            Faults::Local(l) => Ok(l.list(now)),
            Faults::Shared(s) => Ok(s
                .rules()
                .await?
                .into_iter()
                .filter(|r| live(r, now))
                .collect()),
        }
    }

    pub async fn remove(&self, id: &str) -> StoreResult<bool> {
        match self {
            Faults::Local(l) => Ok(l.remove(id)),
            Faults::Shared(s) => s.remove(id).await,
        }
    }

    pub async fn clear(&self) -> StoreResult<()> {
        match self {
            Faults::Local(l) => {
                l.clear();
                Ok(())
            }
            Faults::Shared(s) => s.clear().await,
        }
    }

    /// The first live rule matching this request fires, if its dice say so.
    pub async fn check(
        &self,
        method: &str,
        route: &str,
        app_id: Option<&str>,
        tenant_key: Option<&str>,
        now: i64,
    ) -> StoreResult<Option<Fault>> {
        match self {
            Faults::Local(l) => Ok(l.check(method, route, app_id, tenant_key, now)),
            // Boxed, so that a server keeping its rules in memory does not carry this wait in
            // every request's future.
            Faults::Shared(s) => {
                Box::pin(check_shared(&**s, method, route, app_id, tenant_key, now)).await
            }
        }
    }
}

async fn check_shared(
    shared: &dyn FaultStore,
    method: &str,
    route: &str,
    app_id: Option<&str>,
    tenant_key: Option<&str>,
    now: i64,
) -> StoreResult<Option<Fault>> {
    let rules = shared.rules_of(route).await?;
    let matching = rules
        .iter()
        .filter(|r| live(r, now) && matches(r, method, route, app_id, tenant_key));
    // A rule whose last firing another server took (since the read) is spent: the next
    // matching one applies.
    for rule in matching {
        if !dice(rule) {
            return Ok(None);
        }
        if shared.fire(rule).await? {
            return Ok(Some(rule.fault()));
        }
    }
    Ok(None)
}

impl FaultRule {
    fn fault(&self) -> Fault {
        Fault {
            error: self.error,
            latency_ms: self.latency_ms.unwrap_or(0),
        }
    }
}

fn matches(
    r: &FaultRule,
    method: &str,
    route: &str,
    app_id: Option<&str>,
    tenant_key: Option<&str>,
) -> bool {
    r.method.eq_ignore_ascii_case(method)
        && r.route == route
        && r.app_id.as_deref().is_none_or(|a| Some(a) == app_id)
        && r.tenant_key
            .as_deref()
            .is_none_or(|t| Some(t) == tenant_key)
}

/// Whether a rule with a `fraction` fires this time.
fn dice(r: &FaultRule) -> bool {
    r.fraction.is_none_or(|f| rand::rng().random::<f64>() < f)
}

/// One server's rules, in memory.
#[derive(Default)]
pub struct LocalFaults {
    rules: Mutex<Vec<FaultRule>>,
    next_id: std::sync::atomic::AtomicU64,
}

impl LocalFaults {
    fn add(&self, mut rule: FaultRule) -> FaultRule {
        let n = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        rule.id = format!("fault-{n}");
        self.rules.lock().push(rule.clone());
        rule
    }

    fn list(&self, now: i64) -> Vec<FaultRule> {
        let mut rules = self.rules.lock();
        rules.retain(|r| live(r, now));
        rules.clone()
    }

    fn remove(&self, id: &str) -> bool {
        let mut rules = self.rules.lock();
        let before = rules.len();
        rules.retain(|r| r.id != id);
        rules.len() != before
    }

    fn clear(&self) {
        self.rules.lock().clear();
    }

    fn check(
        &self,
        method: &str,
        route: &str,
        app_id: Option<&str>,
        tenant_key: Option<&str>,
        now: i64,
    ) -> Option<Fault> {
        let mut rules = self.rules.lock();
        if rules.is_empty() {
            return None;
        }
        rules.retain(|r| live(r, now));
        let rule = rules
            .iter_mut()
            .find(|r| matches(r, method, route, app_id, tenant_key))?;
        if !dice(rule) {
            return None;
        }
        if let Some(t) = rule.times.as_mut() {
            *t -= 1;
        }
        rule.hits += 1;
        Some(rule.fault())
    }
}

fn live(r: &FaultRule, now: i64) -> bool {
    r.times != Some(0) && r.expires_at.is_none_or(|e| now < e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(times: Option<u64>, fraction: Option<f64>) -> FaultRule {
        FaultRule {
            id: String::new(),
            method: "GET".into(),
            route: "/r".into(),
            app_id: Some("a".into()),
            tenant_key: None,
            times,
            fraction,
            error: Some(ErrorCode::InternalError),
            latency_ms: None,
            expires_at: Some(100),
            hits: 0,
        }
    }

    #[test]
    fn times_filters_and_expiry() {
        let f = LocalFaults::default();
        let r = f.add(rule(Some(2), None));
        assert_eq!(r.id, "fault-1");
        assert!(f.check("GET", "/r", Some("b"), None, 0).is_none());
        assert!(f.check("POST", "/r", Some("a"), None, 0).is_none());
        assert!(f.check("get", "/r", Some("a"), Some("t"), 0).is_some());
        assert!(f.check("GET", "/r", Some("a"), None, 0).is_some());
        assert!(f.check("GET", "/r", Some("a"), None, 0).is_none());
        assert!(f.list(0).is_empty());
        f.add(rule(None, None));
        assert!(f.check("GET", "/r", Some("a"), None, 99).is_some());
        assert!(f.check("GET", "/r", Some("a"), None, 100).is_none());
    }

    #[test]
    fn fraction_fires_about_that_often() {
        let f = LocalFaults::default();
        f.add(rule(None, Some(0.25)));
        let fired = (0..4000)
            .filter(|_| f.check("GET", "/r", Some("a"), None, 0).is_some())
            .count();
        assert!((700..1300).contains(&fired), "{fired}");
        assert!(f.remove("fault-1"));
        assert!(!f.remove("fault-1"));
    }
}
