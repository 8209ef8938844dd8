//! Snapshots of the shared market state, so that a replica starting up applies the market
//! stream from the last snapshot instead of from its start (the stream is kept for good).
//!
//! An asset's state depends on that asset's updates only, so it is snapshotted per asset: the
//! state after applying every stream message up to a stream sequence (`through`), on subject
//! `foresight.market-snapshot.asset.<ASSET>` of the stream `FORESIGHT_MARKET_SNAPSHOTS`, which
//! keeps the last message of each subject. A manifest, written after all of a round's assets,
//! names the assets the state held. Every replica writes a round at the same stream sequences
//! (multiples of `market_snapshot_every`) under the same message ids, so JetStream stores one.
//! Restoring reads the manifest and each asset it names, and replays from the oldest `through`
//! among them; messages of an asset at or before its own snapshot are skipped. A round that a
//! slower replica overwrites with an older one only makes the replay longer, never wrong.

use std::collections::BTreeMap;

use async_nats::jetstream::{self, stream};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::nats::{DUPLICATE_WINDOW, NatsError, NatsOptions, Retention, publish_acknowledged, shared_error};

const STREAM: &str = "FORESIGHT_MARKET_SNAPSHOTS";
const SUBJECT: &str = "foresight.market-snapshot";

/// One asset's snapshot: its state after applying the stream through `through`.
#[derive(Serialize, Deserialize)]
struct AssetSnapshot<T> {
    through: u64,
    state: T,
}

/// The manifest of a round: the assets the state held after applying the stream through
/// `through`, written after their snapshots.
#[derive(Serialize, Deserialize)]
struct Manifest {
    through: u64,
    /// When the market stream the round was taken from was created: a snapshot of a stream
    /// since deleted and created again says nothing about the new one.
    stream_created: String,
    assets: Vec<String>,
}

/// The market state as the last snapshot holds it.
pub struct Restored<T> {
    /// The first stream sequence to apply.
    pub start: u64,
    /// Per asset, the stream sequence its state covers and the state.
    pub assets: BTreeMap<String, (u64, T)>,
}

/// Where the snapshots are kept.
#[derive(Clone)]
pub struct Snapshots {
    jetstream: jetstream::Context,
    stream: stream::Stream,
    /// The market stream's identity (its creation time), recorded in every manifest.
    stream_created: String,
}

impl Snapshots {
    /// The snapshot stream (created if missing), for the market stream created at
    /// `stream_created`.
    pub async fn open(jetstream: &jetstream::Context, options: &NatsOptions, stream_created: String) -> Result<Self, NatsError> {
        let retention = Retention { per_subject: 1, ..Retention::forever(DUPLICATE_WINDOW) };
        let stream = crate::nats::stream(jetstream, STREAM, &format!("{SUBJECT}.>"), options.replicas, retention).await?;
        Ok(Self { jetstream: jetstream.clone(), stream, stream_created })
    }

    /// The last snapshot of this market stream; `None`, and the whole stream is replayed, when
    /// there is none, when it is of another stream, or when an asset it names is missing or
    /// cannot be read (a snapshot only ever saves time).
    pub async fn latest<T: DeserializeOwned>(&self) -> Result<Option<Restored<T>>, NatsError> {
        let manifest = match self.last::<Manifest>(&format!("{SUBJECT}.manifest")).await {
            Ok(Some(manifest)) if manifest.stream_created == self.stream_created => manifest,
            Ok(Some(_)) => {
                tracing::warn!(stream = STREAM, "the market snapshot is of an earlier market stream: replaying the whole stream");
                return Ok(None);
            }
            Ok(None) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut assets = BTreeMap::new();
        for asset in manifest.assets {
            let snapshot = match self.last::<AssetSnapshot<T>>(&format!("{SUBJECT}.asset.{asset}")).await {
                Ok(Some(snapshot)) => snapshot,
                Ok(None) => {
                    tracing::warn!(stream = STREAM, asset, "the market snapshot names an asset it holds no state of: replaying the whole stream");
                    return Ok(None);
                }
                Err(e) => {
                    tracing::warn!(stream = STREAM, asset, "the market snapshot of this asset cannot be read, replaying the whole stream: {e}");
                    return Ok(None);
                }
            };
            assets.insert(asset, (snapshot.through, snapshot.state));
        }
        let oldest = assets.values().map(|(through, _)| *through).min().unwrap_or(manifest.through);
        Ok(Some(Restored { start: oldest.min(manifest.through) + 1, assets }))
    }

    async fn last<T: DeserializeOwned>(&self, subject: &str) -> Result<Option<T>, NatsError> {
        use async_nats::jetstream::stream::LastRawMessageErrorKind;
        match self.stream.get_last_raw_message_by_subject(subject).await {
            Ok(message) => serde_json::from_slice(&message.payload).map(Some).map_err(|e| shared_error(subject, e)),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(shared_error(subject, e)),
        }
    }

    /// Stores a round: each asset's state after applying the stream through `through`, then the
    /// manifest naming them. An asset too large for one NATS message ends the round before its
    /// manifest (the previous round stays the one restored).
    pub async fn write<T: Serialize>(&self, through: u64, assets: &BTreeMap<String, T>) -> Result<(), NatsError> {
        let max_payload = self.jetstream.client().server_info().max_payload;
        for (asset, state) in assets {
            let payload = serde_json::to_vec(&AssetSnapshot { through, state }).map_err(|e| shared_error("a market snapshot", e))?;
            if max_payload > 0 && payload.len() + 1024 > max_payload {
                return Err(shared_error(format!("the market snapshot of {asset}"), format!("{} bytes, more than NATS takes in one message ({max_payload})", payload.len())));
            }
            let subject = format!("{SUBJECT}.asset.{asset}");
            publish_acknowledged(&self.jetstream, STREAM, &subject, &format!("asset:{asset}:{through}"), &payload, None).await?;
        }
        let manifest = Manifest { through, stream_created: self.stream_created.clone(), assets: assets.keys().cloned().collect() };
        let payload = serde_json::to_vec(&manifest).map_err(|e| shared_error("a market snapshot", e))?;
        publish_acknowledged(&self.jetstream, STREAM, &format!("{SUBJECT}.manifest"), &format!("manifest:{through}"), &payload, None).await?;
        Ok(())
    }
}
