//! Prometheus metrics: per arm, how many margins were computed (posted or shadow), the
//! distribution of their multipliers and their fallbacks to the reactive arm; per call type,
//! latency; calls shed, market updates by outcome, champions refused at reloads, the engine
//! generation. Served as text on `GET /metrics` of a separate plain-HTTP port
//! (`metrics_listen`), for a scraper inside the deployment's network.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::engine::{ArmMargin, Calibration};
use crate::market::{Ack, AckStatus};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ArmLabels {
    arm: String,
    posted: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FallbackLabels {
    arm: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SlotLabels {
    slot: String,
}

fn multiplier_histogram() -> Histogram {
    // 0.25 .. 4 in factors of √2: the rails cap at 3× by default, the floor at 0.8×.
    Histogram::new(exponential_buckets(0.25, std::f64::consts::SQRT_2, 9))
}

fn latency_histogram() -> Histogram {
    // 50 µs .. 1.6 s in doublings.
    Histogram::new(exponential_buckets(50e-6, 2.0, 16))
}

/// The service's metrics.
pub struct Metrics {
    registry: Registry,
    calibrations: Family<ArmLabels, Counter>,
    multiplier: Family<ArmLabels, Histogram, fn() -> Histogram>,
    fallbacks: Family<FallbackLabels, Counter>,
    latency: Family<MethodLabels, Histogram, fn() -> Histogram>,
    shed: Counter,
    market_updates: Family<StatusLabels, Counter>,
    reload_refusals: Family<SlotLabels, Counter>,
    generation: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("foresight");
        let calibrations = Family::<ArmLabels, Counter>::default();
        let multiplier = Family::<ArmLabels, Histogram, fn() -> Histogram>::new_with_constructor(multiplier_histogram as fn() -> Histogram);
        let fallbacks = Family::<FallbackLabels, Counter>::default();
        let latency = Family::<MethodLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        let shed = Counter::default();
        let market_updates = Family::<StatusLabels, Counter>::default();
        let reload_refusals = Family::<SlotLabels, Counter>::default();
        let generation = Gauge::default();
        registry.register("calibrations", "Margins computed, by arm and whether they were posted (or shadow)", calibrations.clone());
        registry.register("multiplier", "Posted initial margin over the reactive arm's, by arm", multiplier.clone());
        registry.register("fallbacks", "Underlyings that fell back to the reactive rate, by arm and reason", fallbacks.clone());
        registry.register("request_seconds", "Time to serve a call, by method", latency.clone());
        registry.register("shed", "Calls refused with RESOURCE_EXHAUSTED", shed.clone());
        registry.register("market_updates", "Published market updates, by acknowledgement", market_updates.clone());
        registry.register(
            "reload_refusals",
            "Champions refused at a reload (the last good model kept serving), by slot: once per distinct refusal, not per reload",
            reload_refusals.clone(),
        );
        registry.register("engine_generation", "Engine generation being served (rises when what is served changes: a reload or a split change)", generation.clone());
        Self { registry, calibrations, multiplier, fallbacks, latency, shed, market_updates, reload_refusals, generation }
    }
}

impl Metrics {
    fn record_arm(&self, arm: &ArmMargin, posted: bool) {
        let labels = ArmLabels { arm: arm.arm.clone(), posted: posted.to_string() };
        self.calibrations.get_or_create(&labels).inc();
        self.multiplier.get_or_create(&labels).observe(arm.margin.posted.multiplier);
        for fallback in arm.margin.fallbacks.values() {
            self.fallbacks.get_or_create(&FallbackLabels { arm: arm.arm.clone(), reason: fallback.reason().to_string() }).inc();
        }
    }

    /// Counts one calibration: the posted arm and every shadow arm.
    pub fn record(&self, calibration: &Calibration) {
        self.record_arm(&calibration.posted, true);
        for s in &calibration.shadow {
            self.record_arm(s, false);
        }
    }

    /// Records the time a call of `method` took.
    pub fn observe_latency(&self, method: &str, seconds: f64) {
        self.latency.get_or_create(&MethodLabels { method: method.to_string() }).observe(seconds);
    }

    /// Counts a refused champion of `slot`.
    pub fn reload_refused(&self, slot: &str) {
        self.reload_refusals.get_or_create(&SlotLabels { slot: slot.to_string() }).inc();
    }

    /// Counts a shed call.
    pub fn shed(&self) {
        self.shed.inc();
    }

    /// Counts market-update acknowledgements.
    pub fn market_acks(&self, acks: &[Ack]) {
        for ack in acks {
            let status = match ack.status {
                AckStatus::Stored => "stored",
                AckStatus::Duplicate => "duplicate",
                AckStatus::Rejected => "rejected",
            };
            self.market_updates.get_or_create(&StatusLabels { status: status.to_string() }).inc();
        }
    }

    /// The Prometheus text exposition, with the engine generation served at `generation` (read
    /// at scrape time: right after start and after every reload, not only once a call came).
    pub fn encode(&self, generation: u64) -> String {
        self.generation.set(generation as i64);
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

