//! Prometheus metrics: requests by route, status and code; latency; quota rejections;
//! bindings by status (read from the store at scrape time).

use std::time::Duration;

use exbind_api::BindingStatus;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
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

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabel, Histogram>,
    quota: Family<KindLabel, Counter>,
    bindings: Family<StatusLabel, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("exbind");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
        });
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
        Metrics {
            registry,
            requests,
            latency,
            quota,
            bindings,
        }
    }
}

impl Metrics {
    pub fn observe(&self, route: &'static str, status: u16, code: i64, latency: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                route,
                status,
                code,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabel { route })
            .observe(latency.as_secs_f64());
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
