//! `foresight-serve --config foresight.toml`: every setting of the service in one file, each
//! optional (the documented defaults fill in); command-line flags and `FORESIGHT_SERVE_*`
//! environment variables override the file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use foresight_core::margin::{GuardRails, InputLimits, ScenarioConfig};
use serde::Deserialize;

use crate::engine::{CollateralConfig, EngineConfig, Split};
use crate::error::{ServeError, invalid};
use crate::journal::Durability;
use crate::nats::{NatsOptions, is_nats_url};
use crate::server::ServerOptions;
use crate::serving::ServingConfig;

/// The file's contents.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeFile {
    /// The registry: a folder (default `models`) or `s3://bucket/prefix`.
    pub registry: Option<PathBuf>,
    /// Address to listen on (default `127.0.0.1:50051`).
    pub listen: Option<SocketAddr>,
    /// Address of the plain-HTTP `GET /metrics` endpoint (Prometheus); unset: none.
    pub metrics_listen: Option<SocketAddr>,
    /// Folder of the market state, audit log and split; unset: inline history only, no audit.
    pub state_dir: Option<PathBuf>,
    /// Where market state, audit log and split live: a folder (as `state_dir`) or
    /// `nats://HOST:PORT` (JetStream, shared by replicas; `state_dir` is then not used).
    pub state: Option<String>,
    /// NATS options when `state` is a NATS URL.
    #[serde(default)]
    pub nats: NatsFile,
    /// `group-commit` (default), `fsync-each` or `buffered`.
    pub durability: Option<Durability>,
    /// Seconds between checks of the registry for a new champion; 0 turns hot reload off
    /// (default 5).
    pub reload_interval_secs: Option<u64>,
    /// Calibration calls in progress at once before RESOURCE_EXHAUSTED (default 64).
    pub max_in_flight: Option<usize>,
    /// Most accounts per CalibrateBatch (default 10000).
    pub max_batch: Option<usize>,
    /// Largest gRPC message in bytes (default 16 MiB).
    pub max_message_bytes: Option<usize>,
    /// Longest a call may run, seconds (default 30; a caller's shorter deadline wins).
    pub request_timeout_secs: Option<f64>,
    /// PEM certificate chain: with `tls_key`, TLS on.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// File of accepted bearer tokens, one per line (`#` comments); unset: no authentication.
    pub auth_tokens_file: Option<PathBuf>,
    /// One-sided confidence of margin rates (default 0.99).
    pub confidence: Option<f64>,
    /// The reactive arm (default `ewma`).
    pub reactive_arm: Option<String>,
    /// The A/B split (default: every account on `model:champion`).
    pub split: Option<Split>,
    /// Scenario grid and add-ons.
    #[serde(default)]
    pub scenario: ScenarioConfig,
    /// Guard rails.
    #[serde(default)]
    pub rails: GuardRails,
    /// Fallback limits.
    #[serde(default)]
    pub limits: InputLimits,
    /// Collateral valuation.
    #[serde(default)]
    pub collateral: CollateralConfig,
}

/// `[nats]`: how to reach NATS when `state = "nats://..."`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsFile {
    /// A `.creds` file (user JWT and NKey seed).
    pub credentials: Option<PathBuf>,
    /// PEM root certificate(s) of the NATS servers (TLS on).
    pub ca: Option<PathBuf>,
    /// Copies of each stream JetStream keeps (default 1; 3 on a three-node cluster).
    pub replicas: Option<usize>,
    /// Days the audit stream keeps a calibration (default: for good).
    pub audit_max_age_days: Option<f64>,
    /// Snapshot the market state every this many market messages (default 10,000; 0: never).
    pub market_snapshot_every: Option<u64>,
}

/// The settings the binary runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Shared-state settings (engine included).
    pub serving: ServingConfig,
    /// Listen address.
    pub listen: SocketAddr,
    /// Hot-reload period in seconds (0: off).
    pub reload_interval_secs: u64,
    /// The metrics endpoint's address.
    pub metrics_listen: Option<SocketAddr>,
    /// Transport, limits and security.
    pub server: ServerOptions,
}

impl ServeFile {
    /// Reads and checks `path`; errors name the file and the key.
    pub fn read(path: &Path) -> Result<Self, ServeError> {
        let text = std::fs::read_to_string(path).map_err(|e| ServeError::setup(path.display().to_string(), e))?;
        toml::from_str(&text).map_err(|e| ServeError::setup(path.display().to_string(), e))
    }

    /// The settings, with the defaults where the file is silent.
    pub fn settings(self) -> Result<Settings, ServeError> {
        let mut engine = EngineConfig::new(self.registry.unwrap_or_else(|| PathBuf::from("models")));
        if let Some(c) = self.confidence {
            if !(c > 0.5 && c < 1.0) {
                return Err(invalid("confidence", format!("must be in (0.5, 1), got {c}")));
            }
            engine.confidence = c;
        }
        if let Some(arm) = self.reactive_arm {
            engine.reactive_arm = arm;
        }
        if let Some(split) = self.split {
            engine.split = split;
        }
        engine.scenario = self.scenario;
        engine.rails = self.rails;
        engine.limits = self.limits;
        if !(self.collateral.mpor_days > 0.0 && (0.0..=1.0).contains(&self.collateral.cap)) {
            return Err(invalid("collateral", "mpor_days must be > 0 and cap in [0, 1]"));
        }
        engine.collateral = self.collateral;
        let mut serving = ServingConfig::new(engine);
        serving.state_dir = self.state_dir;
        let nats = match &self.state {
            Some(state) => is_nats_url(state).map_err(|message| invalid("state", message))?,
            None => false,
        };
        match self.state {
            Some(url) if nats => {
                let url = url.trim().to_string();
                let replicas = self.nats.replicas.unwrap_or(1);
                if !(1..=5).contains(&replicas) {
                    return Err(invalid("nats.replicas", format!("JetStream keeps 1 to 5 copies, got {replicas}")));
                }
                let audit_max_age = match self.nats.audit_max_age_days {
                    None => std::time::Duration::ZERO,
                    Some(days) => std::time::Duration::try_from_secs_f64(days * 86_400.0)
                        .ok()
                        .filter(|d| !d.is_zero())
                        .ok_or_else(|| invalid("nats.audit_max_age_days", format!("must be > 0 (leave it out to keep everything), got {days}")))?,
                };
                let market_snapshot_every = self.nats.market_snapshot_every.unwrap_or(crate::nats::DEFAULT_SNAPSHOT_EVERY);
                serving.nats = Some(NatsOptions { url, credentials: self.nats.credentials, ca: self.nats.ca, replicas, audit_max_age, market_snapshot_every });
            }
            Some(folder) => {
                if serving.state_dir.as_ref().is_some_and(|d| *d != Path::new(&folder)) {
                    return Err(invalid("state", "a folder here and another in state_dir: give one"));
                }
                serving.state_dir = Some(PathBuf::from(folder));
            }
            None => {}
        }
        serving.durability = self.durability.unwrap_or_default();
        if let Some(n) = self.max_in_flight {
            serving.max_in_flight = n.max(1);
        }
        if let Some(n) = self.max_batch {
            serving.max_batch = n.max(1);
        }
        let mut server = ServerOptions::default();
        if let Some(n) = self.max_message_bytes {
            server.max_message_bytes = n;
        }
        if let Some(t) = self.request_timeout_secs {
            server.request_timeout = std::time::Duration::try_from_secs_f64(t)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| invalid("request_timeout_secs", format!("must be > 0, got {t}")))?;
        }
        server.tls = match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => return Err(invalid("tls_cert and tls_key", "give both or neither")),
        };
        if let Some(path) = &self.auth_tokens_file {
            server.tokens = read_tokens(path)?;
        }
        Ok(Settings {
            serving,
            listen: self.listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 50051))),
            reload_interval_secs: self.reload_interval_secs.unwrap_or(5),
            metrics_listen: self.metrics_listen,
            server,
        })
    }
}

/// The tokens of a token file: one per line, blank lines and `#` comments skipped.
fn read_tokens(path: &Path) -> Result<Vec<String>, ServeError> {
    let text = std::fs::read_to_string(path).map_err(|e| ServeError::setup(format!("auth_tokens_file: {}", path.display()), e))?;
    let tokens: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string).collect();
    if tokens.is_empty() {
        return Err(invalid("auth_tokens_file", format!("{} holds no token", path.display())));
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_config_and_names_unknown_keys() {
        let file: ServeFile = toml::from_str(
            r#"
            registry = "models"
            state_dir = "/tmp/x"
            durability = "fsync-each"
            [split]
            shadow = true
            arms = [{ arm = "model:champion", weight = 0.5 }, { arm = "ewma", weight = 0.5 }]
            [rails]
            cap = 2.5
            "#,
        )
        .unwrap();
        let s = file.settings().unwrap();
        assert_eq!(s.serving.durability, Durability::FsyncEach);
        assert_eq!(s.serving.engine.rails.cap, 2.5);
        assert_eq!(s.serving.engine.rails.reactive_floor, GuardRails::default().reactive_floor, "defaults fill in");
        assert!(s.serving.engine.split.shadow && s.serving.engine.split.arms.len() == 2);
        let e = toml::from_str::<ServeFile>("[rails]\ncaps = 2").unwrap_err().to_string();
        assert!(e.contains("caps"), "{e}");
        let e = toml::from_str::<ServeFile>("confidence = 1.5").unwrap().settings().unwrap_err().to_string();
        assert!(e.starts_with("confidence"), "{e}");
    }

    #[test]
    fn state_is_a_folder_or_nats() {
        let s = toml::from_str::<ServeFile>("state = \"/tmp/s\"").unwrap().settings().unwrap();
        assert_eq!((s.serving.state_dir.as_deref(), s.serving.nats), (Some(Path::new("/tmp/s")), None));
        let s = toml::from_str::<ServeFile>("state = \"nats://127.0.0.1:4222\"\nstate_dir = \"/tmp/a\"\n[nats]\nreplicas = 3").unwrap().settings().unwrap();
        assert_eq!(s.serving.nats.as_ref().map(|n| (n.url.as_str(), n.replicas)), Some(("nats://127.0.0.1:4222", 3)));
        assert_eq!(s.serving.nats.as_ref().map(|n| n.market_snapshot_every), Some(crate::nats::DEFAULT_SNAPSHOT_EVERY));
        let s = toml::from_str::<ServeFile>("state = \"nats://x:4222\"\n[nats]\nmarket_snapshot_every = 0").unwrap().settings().unwrap();
        assert_eq!(s.serving.nats.map(|n| n.market_snapshot_every), Some(0));
        let e = toml::from_str::<ServeFile>("state = \"nats://x:4222\"\n[nats]\nreplicas = 7").unwrap().settings().unwrap_err().to_string();
        assert!(e.starts_with("nats.replicas"), "{e}");
        let e = toml::from_str::<ServeFile>("state = \"/a\"\nstate_dir = \"/b\"").unwrap().settings().unwrap_err().to_string();
        assert!(e.starts_with("state"), "{e}");
    }
}
