//! Prometheus metrics: requests by route, status and code; latency; quota rejections;
//! bindings by status (read from the store at scrape time).

use foldhash::HashMap;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use exbind_api::BindingStatus;
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::exponential_buckets;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    status: u16,
    code: i64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

/// A latency histogram whose observation is three atomic adds: prometheus-client's own takes
/// a write lock per observation, which every request would contend on.
#[derive(Clone, Debug)]
struct Latency(Arc<LatencyInner>);

#[derive(Debug)]
struct LatencyInner {
    /// Upper bounds in seconds, the last one +Inf.
    bounds: Vec<f64>,
    /// Observations per bucket (not cumulative).
    counts: Vec<AtomicU64>,
    sum_ns: AtomicU64,
}

impl Default for Latency {
    fn default() -> Self {
        let bounds: Vec<f64> = exponential_buckets(0.000_05, 2.0, 16)
            .chain(std::iter::once(f64::MAX))
            .collect();
        Latency(Arc::new(LatencyInner {
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            bounds,
            sum_ns: AtomicU64::new(0),
        }))
    }
}

impl Latency {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = self.0.bounds.partition_point(|b| *b < secs);
        self.0.counts[i.min(self.0.counts.len() - 1)].fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.0.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }
}

impl TypedMetric for Latency {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Latency {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let buckets: Vec<(f64, u64)> = (self.0.bounds.iter().copied())
            .zip(self.0.counts.iter().map(|c| c.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = self.0.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// The connection layer's own: open connections, and those closed for taking too long.
#[derive(Clone, Default)]
pub struct ConnectionMetrics {
    pub open: Gauge,
    pub header_timeouts: Counter,
    pub idle_timeouts: Counter,
}

pub struct Metrics {
    /// Tells this registry's entries apart in the per-thread handle caches.
    id: usize,
    registry: Registry,
    pub connections: ConnectionMetrics,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabel, Latency>,
    quota: Family<KindLabel, Counter>,
    bindings: Family<StatusLabel, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("exbind");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabel, Latency>::default();
        let quota = Family::<KindLabel, Counter>::default();
        let bindings = Family::<StatusLabel, Gauge>::default();
        registry.register(
            "requests",
            "Requests by route, HTTP status and code",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Request latency",
            latency.clone(),
        );
        registry.register(
            "quota_rejections",
            "Requests rejected by a quota or budget",
            quota.clone(),
        );
        registry.register("bindings", "Bindings by sync status", bindings.clone());
        let connections = ConnectionMetrics::default();
        registry.register(
            "connections_open",
            "Connections open now",
            connections.open.clone(),
        );
        registry.register(
            "connections_header_timeouts",
            "Connections closed because a request head did not arrive in time",
            connections.header_timeouts.clone(),
        );
        registry.register(
            "connections_idle_timeouts",
            "Kept-alive connections closed after waiting too long for a request",
            connections.idle_timeouts.clone(),
        );
        static NEXT_ID: AtomicUsize = AtomicUsize::new(0);
        Metrics {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            registry,
            requests,
            latency,
            quota,
            bindings,
            connections,
        }
    }
}

impl Metrics {
    pub fn observe(&self, route: &'static str, status: u16, code: i64, latency: Duration) {
        type Key = (usize, &'static str, u16, i64);
        thread_local! {
            /// The handles this thread used: the families' shared maps are looked up (under
            /// a lock every request would take) once per label set and thread.
            static HANDLES: RefCell<HashMap<Key, (Counter, Latency)>> =
                RefCell::new(HashMap::default());
        }
        HANDLES.with_borrow_mut(|handles| {
            if handles.len() >= 4096 {
                handles.clear();
            }
            let (requests, latencies) = handles
                .entry((self.id, route, status, code))
                .or_insert_with(|| {
                    let labels = RequestLabels {
                        route,
                        status,
                        code,
                    };
                    (
                        self.requests.get_or_create(&labels).clone(),
                        self.latency.get_or_create(&RouteLabel { route }).clone(),
                    )
                });
            requests.inc();
            latencies.observe(latency);
        });
    }

    pub fn quota_rejection(&self, kind: &str) {
        self.quota
            .get_or_create(&KindLabel {
                kind: kind.to_string(),
            })
            .inc();
    }

    pub fn render(&self, binding_counts: &[(BindingStatus, u64)]) -> String {
        for status in BindingStatus::ALL {
            let n = binding_counts
                .iter()
                .find(|(s, _)| *s == status)
                .map_or(0, |(_, n)| *n);
            self.bindings
                .get_or_create(&StatusLabel {
                    status: status.as_str().to_string(),
                })
                .set(n as i64);
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_histogram_is_cumulative_with_sum_and_count() {
        let m = Metrics::default();
        let route = "/r";
        for us in [10, 70, 70, 2_000_000] {
            m.observe(route, 200, 0, Duration::from_micros(us));
        }
        m.observe(route, 404, 195103, Duration::from_micros(10));
        let text = m.render(&[]);
        let line = |prefix: &str| {
            text.lines()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
                .rsplit(' ')
                .next()
                .unwrap()
                .to_string()
        };
        let h = "exbind_request_duration_seconds";
        assert_eq!(line(&format!("{h}_count{{route=\"/r\"}}")), "5");
        let sum: f64 = line(&format!("{h}_sum{{route=\"/r\"}}")).parse().unwrap();
        assert!((sum - 2.00016).abs() < 1e-9, "{sum}");
        // 50 µs holds the two 10 µs answers; 100 µs also the two 70 µs ones.
        assert_eq!(
            line(&format!("{h}_bucket{{le=\"0.00005\",route=\"/r\"}}")),
            "2"
        );
        assert_eq!(
            line(&format!("{h}_bucket{{le=\"0.0001\",route=\"/r\"}}")),
            "4"
        );
        assert_eq!(
            line(&format!("{h}_bucket{{le=\"+Inf\",route=\"/r\"}}")),
            "5"
        );
        assert_eq!(
            line("exbind_requests_total{route=\"/r\",status=\"404\",code=\"195103\"}"),
            "1"
        );
    }
}
