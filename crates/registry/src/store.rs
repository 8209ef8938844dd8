//! The registry: `<name>/v<version>/{model.onnx,card.json}`, the champion and challengers of
//! each slot (`<asset>/<task>`) in `registry.json` with a log of every promotion, rollback and
//! review, and shared artifacts (e.g. the cross-asset correlation). It lives in a folder (the
//! checkout's `models/`) or an object store ([`crate::storage`]); every change of
//! `registry.json` is a conditional write, so concurrent writers never undo one another.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::card::{CARD_FORMAT, ModelCard, ModelRef, named_slot, valid_name};
use crate::error::{RegistryError, Result};
use crate::promotion::{Incumbent, PromotionEvidence, PromotionRule};
use crate::runtime::LoadedModel;
use crate::storage::{Location, Storage, Version};
use crate::verify::{Verified, sha256_hex, verify};

/// Version tag of `registry.json`.
pub const INDEX_FORMAT: &str = "foresight-registry/1";
/// File name of the index inside the registry root.
pub const INDEX_FILE: &str = "registry.json";
/// Card file name inside a version folder.
pub const CARD_FILE: &str = "card.json";
/// Model file name inside a version folder.
pub const MODEL_FILE: &str = "model.onnx";

/// `registry.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegistryIndex {
    /// [`INDEX_FORMAT`].
    pub format: String,
    /// Champion and challengers per slot (`<asset>/<task>`).
    #[serde(default)]
    pub slots: BTreeMap<String, Slot>,
    /// Shared artifacts by name.
    #[serde(default)]
    pub artifacts: BTreeMap<String, Artifact>,
}

impl RegistryIndex {
    /// Entries in every slot's log: a number every reader of the same `registry.json` agrees
    /// on, which grows with each promotion, rollback and review.
    pub fn change_sequence(&self) -> u64 {
        self.slots.values().map(|s| s.log.len() as u64).sum()
    }
}

impl Default for RegistryIndex {
    fn default() -> Self {
        Self { format: INDEX_FORMAT.into(), slots: BTreeMap::new(), artifacts: BTreeMap::new() }
    }
}

/// The models competing for one asset and task.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Slot {
    /// The model the service serves.
    pub champion: Option<ModelRef>,
    /// Registered alternatives (shadow / traffic-split candidates).
    #[serde(default)]
    pub challengers: Vec<ModelRef>,
    /// Every change of champion, oldest first.
    #[serde(default)]
    pub log: Vec<LogEntry>,
}

impl Slot {
    /// Makes `model` the champion; the champion it replaces, if any, becomes a challenger.
    fn crown(&mut self, model: &ModelRef) {
        self.challengers.retain(|c| c != model);
        if let Some(previous) = self.champion.replace(model.clone())
            && !self.challengers.contains(&previous)
        {
            self.challengers.push(previous);
        }
    }
}

/// What changed a champion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// A model became champion.
    Promote,
    /// The champion before the last promotion came back.
    Rollback,
    /// The champion was compared again (with a challenger or the baseline, on the same days)
    /// and stays; the log keeps what the rule found.
    Review,
}

/// One change of champion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// When, RFC 3339 UTC.
    pub at: String,
    /// Promotion or rollback.
    pub action: Action,
    /// The new champion.
    pub model: ModelRef,
    /// The champion it replaced.
    pub previous: Option<ModelRef>,
    /// Whether the promotion rule was overridden.
    pub forced: bool,
    /// Why (required when forced or rolling back).
    pub reason: Option<String>,
    /// The comparison that decided it, in one line.
    pub evidence: String,
    /// What the promotion rule objected to: overridden by a forced promotion, found by a review.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objections: Vec<String>,
    /// The evidence itself: windows, scores per horizon, the test, both margin backtests
    /// (absent in entries written before promotions compared on the same days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<PromotionEvidence>,
}

/// A registered non-model artifact (JSON file under `artifacts/`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Artifact {
    /// Path relative to the registry root.
    pub path: String,
    /// Hex sha256 of the file.
    pub sha256: String,
    /// One-line description (window, method).
    pub description: String,
}

/// One row of [`Registry::list`].
#[derive(Debug, Clone, PartialEq)]
pub struct Listing {
    /// The model version's card.
    pub card: ModelCard,
    /// `champion`, `challenger` or empty.
    pub role: &'static str,
}

/// What [`Registry::copy_to`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// Model versions stored in the target.
    pub versions_copied: usize,
    /// Model versions the target already held, byte for byte.
    pub versions_present: usize,
    /// Artifacts stored.
    pub artifacts: usize,
}

/// What [`Registry::promote`] decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Promotion {
    /// The new champion.
    pub model: ModelRef,
    /// The champion it replaced.
    pub previous: Option<ModelRef>,
    /// Integrity checks passed.
    pub verified: Verified,
    /// The score comparison, in words.
    pub evidence: String,
    /// Whether the comparison was overridden.
    pub forced: bool,
    /// The rule's objections a forced promotion overrode.
    pub objections: Vec<String>,
}

/// The registry in a folder (the checkout's `models/`) or an object store.
#[derive(Debug, Clone)]
pub struct Registry {
    storage: Storage,
    index: RegistryIndex,
    /// The version of `registry.json` that `index` was read from (`None`: there was none): a
    /// change is stored only if it is still the latest.
    index_version: Option<Version>,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// How often a change of `registry.json` is re-applied when another writer got there first.
const CHANGE_ATTEMPTS: usize = 8;

/// A resolved version's folder inside the registry (`btc-log-har/v1`).
fn folder_of(resolved: &ModelRef) -> String {
    format!("{}/v{}", resolved.name, resolved.version.unwrap_or_default())
}

/// The version number of a model's `v<n>/card.json`, relative to the model's folder.
fn card_version(relative: &str) -> Option<u32> {
    relative.strip_suffix(&format!("/{CARD_FILE}"))?.strip_prefix('v')?.parse().ok()
}

impl Registry {
    /// Opens the registry at `location`, a folder or an object store URL (an empty or missing
    /// folder is an empty registry).
    pub fn open(location: impl Into<Location>) -> Result<Self> {
        Self::on(Storage::open(&location.into())?)
    }

    /// Opens the registry kept in `storage`.
    pub fn on(storage: Storage) -> Result<Self> {
        let mut registry = Self { storage, index: RegistryIndex::default(), index_version: None };
        registry.read_index()?;
        Ok(registry)
    }

    /// Reads `registry.json` again.
    fn read_index(&mut self) -> Result<()> {
        let stored = self.storage.get(INDEX_FILE)?;
        self.adopt_index(stored)
    }

    /// Takes `stored` (the bytes and version of `registry.json`, or none) as the index.
    fn adopt_index(&mut self, stored: Option<(Vec<u8>, Version)>) -> Result<()> {
        let (index, version): (RegistryIndex, _) = match stored {
            Some((bytes, version)) => (self.parse(INDEX_FILE, &bytes)?, Some(version)),
            None => (RegistryIndex::default(), None),
        };
        if index.format != INDEX_FORMAT {
            return Err(self.format_error(INDEX_FILE, format!("format `{}`, expected `{INDEX_FORMAT}`", index.format)));
        }
        (self.index, self.index_version) = (index, version);
        Ok(())
    }

    /// Where the registry is.
    pub fn location(&self) -> &Location {
        self.storage.location()
    }

    /// A path inside the registry (`btc-log-har/v1`, `registry.json`) as people should read it.
    pub fn describe(&self, relative: &str) -> String {
        self.storage.describe(relative)
    }

    /// The parsed `registry.json`.
    pub fn index(&self) -> &RegistryIndex {
        &self.index
    }

    fn format_error(&self, relative: &str, message: impl ToString) -> RegistryError {
        RegistryError::Format { file: self.describe(relative).into(), message: message.to_string() }
    }

    fn parse<T: serde::de::DeserializeOwned>(&self, relative: &str, bytes: &[u8]) -> Result<T> {
        serde_json::from_slice(bytes).map_err(|e| self.format_error(relative, e))
    }

    fn read(&self, relative: &str) -> Result<Vec<u8>> {
        let (bytes, _) = self.storage.get(relative)?.ok_or_else(|| RegistryError::NotFound(format!("{} is missing", self.describe(relative))))?;
        Ok(bytes)
    }

    /// Applies `edit` to the index and stores it, only if `registry.json` is still the version
    /// this registry read. When another writer changed it meanwhile, the index is read again
    /// and `edit` applied to it afresh (it checks its own preconditions against what is there
    /// now), a few times before giving up.
    fn change<T>(&mut self, mut edit: impl FnMut(&mut RegistryIndex) -> Result<T>) -> Result<T> {
        for _ in 0..CHANGE_ATTEMPTS {
            let mut next = self.index.clone();
            let outcome = edit(&mut next)?;
            let mut text = serde_json::to_string_pretty(&next).map_err(|e| self.format_error(INDEX_FILE, e))?;
            text.push('\n');
            let version = match self.storage.replace(INDEX_FILE, text.as_bytes(), self.index_version.as_ref())? {
                Some(version) => version,
                // Refused, but what is stored may be this very write: a store retrying a put
                // that had succeeded finds its own write in the way. Then it is done, not to be
                // applied a second time; otherwise what is stored is the index to edit afresh.
                None => match self.storage.get(INDEX_FILE)? {
                    Some((bytes, version)) if bytes == text.as_bytes() => version,
                    stored => {
                        self.adopt_index(stored)?;
                        continue;
                    }
                },
            };
            (self.index, self.index_version) = (next, Some(version));
            return Ok(outcome);
        }
        Err(RegistryError::Conflict(format!("{} kept changing under other writers ({CHANGE_ATTEMPTS} attempts): try again", self.describe(INDEX_FILE))))
    }

    /// Version numbers of model `name`, ascending (those whose card is stored).
    pub fn versions(&self, name: &str) -> Result<Vec<u32>> {
        if !valid_name(name) {
            return Ok(Vec::new());
        }
        let mut versions: Vec<u32> = self.storage.list(name)?.iter().filter_map(|p| card_version(p)).collect();
        versions.sort_unstable();
        Ok(versions)
    }

    /// Names of the registered models, sorted.
    pub fn model_names(&self) -> Result<Vec<String>> {
        let names: BTreeSet<String> = self
            .storage
            .list("")?
            .iter()
            .filter_map(|p| p.split_once('/'))
            .filter(|(name, rest)| valid_name(name) && card_version(rest).is_some())
            .map(|(name, _)| name.to_string())
            .collect();
        Ok(names.into_iter().collect())
    }

    /// `reference` with its version filled in (the latest when it names none).
    pub fn resolve(&self, reference: &ModelRef) -> Result<ModelRef> {
        let versions = self.versions(&reference.name)?;
        let version = match reference.version {
            Some(v) if versions.contains(&v) => v,
            Some(v) => {
                return Err(RegistryError::NotFound(format!(
                    "{}@v{v} is not registered (versions: {})",
                    reference.name,
                    if versions.is_empty() { "none".into() } else { versions.iter().map(|v| format!("v{v}")).collect::<Vec<_>>().join(", ") }
                )));
            }
            None => *versions.last().ok_or_else(|| {
                RegistryError::NotFound(format!("no model `{}` in {} (see `foresight models list`)", reference.name, self.location()))
            })?,
        };
        Ok(ModelRef { name: reference.name.clone(), version: Some(version) })
    }

    /// A resolved model version's folder inside the registry (`btc-log-har/v1`).
    pub fn model_folder(&self, reference: &ModelRef) -> Result<String> {
        Ok(folder_of(&self.resolve(reference)?))
    }

    /// The card of a model version.
    pub fn card(&self, reference: &ModelRef) -> Result<ModelCard> {
        self.card_of(&self.resolve(reference)?)
    }

    /// The card of a resolved version (one listing of the store per lookup, not one per step).
    fn card_of(&self, resolved: &ModelRef) -> Result<ModelCard> {
        let path = format!("{}/{CARD_FILE}", folder_of(resolved));
        self.parse_card(resolved, &self.read(&path)?)
    }

    /// `bytes` as the card of `resolved`, checked to be one and to name that version.
    fn parse_card(&self, resolved: &ModelRef, bytes: &[u8]) -> Result<ModelCard> {
        let path = format!("{}/{CARD_FILE}", folder_of(resolved));
        let card: ModelCard = self.parse(&path, bytes)?;
        if card.format != CARD_FORMAT {
            return Err(self.format_error(&path, format!("format `{}`, expected `{CARD_FORMAT}`", card.format)));
        }
        if card.name != resolved.name || Some(card.version) != resolved.version {
            return Err(self.format_error(&path, format!("the card says {}, its folder {resolved}", card.reference())));
        }
        Ok(card)
    }

    /// Loads a model version into ONNX Runtime after checking its sha256 and golden rows.
    pub fn load(&self, reference: &ModelRef) -> Result<(ModelCard, LoadedModel, Verified)> {
        let resolved = self.resolve(reference)?;
        let card = self.card_of(&resolved)?;
        let bytes = self.read(&format!("{}/{}", folder_of(&resolved), card.onnx.file))?;
        let (model, verified) = verify(&card, &bytes)?;
        Ok((card, model, verified))
    }

    /// Every model version with its role in its slot.
    pub fn list(&self) -> Result<Vec<Listing>> {
        let mut out = Vec::new();
        for name in self.model_names()? {
            for v in self.versions(&name)? {
                let reference = ModelRef { name: name.clone(), version: Some(v) };
                let card = self.card_of(&reference)?;
                let slot = self.index.slots.get(&card.slot());
                let role = match slot {
                    Some(s) if s.champion.as_ref() == Some(&reference) => "champion",
                    Some(s) if s.challengers.contains(&reference) => "challenger",
                    _ => "",
                };
                out.push(Listing { card, role });
            }
        }
        Ok(out)
    }

    /// Registers a new version of `card.name`: assigns the next version number and the ONNX
    /// file's sha256, checks the golden rows through ONNX Runtime, stores the version and enters
    /// it as a challenger of its slot. Returns the stored card.
    ///
    /// A version is claimed by creating its `model.onnx` (refused when present): a job that
    /// loses the race to another takes the next number, and neither overwrites the other. The
    /// card comes second, so a version is listed only once both files are stored.
    pub fn publish(&mut self, mut card: ModelCard, onnx: &[u8]) -> Result<ModelCard> {
        if !valid_name(&card.name) {
            return Err(RegistryError::Invalid(format!("model name `{}`: lowercase letters, digits and `-` only", card.name)));
        }
        card.format = CARD_FORMAT.into();
        card.onnx.file = MODEL_FILE.into();
        card.onnx.sha256 = sha256_hex(onnx);
        // Refuse to register what would fail its own check later.
        verify(&card, onnx)?;
        let mut version = self.versions(&card.name)?.last().map_or(1, |v| v + 1);
        while !self.storage.create(&format!("{}/v{version}/{MODEL_FILE}", card.name), onnx)? {
            version += 1;
        }
        card.version = version;
        let mut card_json = serde_json::to_string_pretty(&card).map_err(|e| self.format_error(CARD_FILE, e))?;
        card_json.push('\n');
        let card_path = format!("{}/v{version}/{CARD_FILE}", card.name);
        if !self.storage.create(&card_path, card_json.as_bytes())? {
            return Err(RegistryError::Conflict(format!("{} appeared while this version was being stored", self.describe(&card_path))));
        }
        let (slot, reference) = (card.slot(), card.reference());
        self.change(|index| {
            let challengers = &mut index.slots.entry(slot.clone()).or_default().challengers;
            if !challengers.contains(&reference) {
                challengers.push(reference.clone());
            }
            Ok(())
        })?;
        Ok(card)
    }

    /// The slot's current champion, if any.
    pub fn champion(&self, slot: &str) -> Option<&ModelRef> {
        self.index.slots.get(slot).and_then(|s| s.champion.as_ref())
    }

    /// Makes `reference` the champion of its slot on `evidence` (see [`crate::promotion`]).
    /// Refuses, always, a model whose file does not match its card's sha256 or whose golden rows
    /// fail, and evidence about another model or another incumbent than the slot's champion;
    /// and, unless `force` gives a reason, evidence that `rule` objects to. The log keeps the
    /// evidence, and for a forced promotion the reason and the objections it overrode.
    pub fn promote(&mut self, reference: &ModelRef, evidence: &PromotionEvidence, rule: &PromotionRule, force: Option<&str>) -> Result<Promotion> {
        let reason = force.map(str::trim).filter(|r| !r.is_empty());
        if force.is_some() && reason.is_none() {
            return Err(RegistryError::Invalid("--force needs a reason, which goes into the registry log".into()));
        }
        let reference = self.resolve(reference)?;
        let (card, _, verified) = self.load(&reference)?;
        // Evidence about something else never decides this promotion.
        if evidence.challenger != reference {
            return Err(RegistryError::Invalid(format!("the evidence is about {}, not {reference}", evidence.challenger)));
        }
        let objections = rule.objections(evidence);
        if !objections.is_empty() && reason.is_none() {
            return Err(RegistryError::Refused(format!(
                "{reference} does not replace {}: {}. Promote anyway only with --force \"<reason>\" (it is logged with this evidence)",
                evidence.incumbent,
                objections.join("; ")
            )));
        }
        let (slot_name, summary, forced) = (card.slot(), evidence.summary(), !objections.is_empty());
        // Checked against the index as stored now: a champion changed by another writer since
        // the evidence was computed makes the evidence stale.
        let previous = self.change(|index| {
            let slot = index.slots.entry(slot_name.clone()).or_default();
            let current = slot.champion.clone();
            if current.as_ref() == Some(&reference) {
                return Err(RegistryError::Refused(format!("{reference} is already the champion of {slot_name}")));
            }
            match (&evidence.incumbent, &current) {
                (Incumbent::Model(compared), Some(champion)) if compared == champion => {}
                (Incumbent::Baseline(_), None) => {}
                (compared, champion) => {
                    return Err(RegistryError::Invalid(format!(
                        "the evidence compares {reference} with {compared}, but the champion of {slot_name} is {}: compute it again",
                        champion.as_ref().map_or("nobody".to_string(), |c| c.to_string())
                    )));
                }
            }
            slot.crown(&reference);
            slot.log.push(LogEntry {
                at: now(),
                action: Action::Promote,
                model: reference.clone(),
                previous: current.clone(),
                forced,
                reason: reason.map(str::to_string),
                evidence: summary.clone(),
                objections: objections.clone(),
                details: Some(evidence.clone()),
            });
            Ok(current)
        })?;
        Ok(Promotion { model: reference, previous, verified, evidence: summary, forced, objections })
    }

    /// Records a review of `slot`'s champion: `evidence` scores it (as the challenger) against
    /// another model of the slot or the baseline on the days both are out of sample. Nothing
    /// changes but the log, which keeps the evidence and what `rule` objects to (returned: empty
    /// when the champion would win its place again today).
    pub fn review(&mut self, slot: &str, evidence: &PromotionEvidence, rule: &PromotionRule) -> Result<Vec<String>> {
        let slot_name = named_slot(slot);
        self.load(&evidence.challenger)?;
        let objections = rule.objections(evidence);
        self.change(|index| {
            let champion = index.slots.get(&slot_name).and_then(|s| s.champion.clone());
            let champion = champion.ok_or_else(|| RegistryError::Refused(format!("{slot_name} has no champion to review")))?;
            if evidence.challenger != champion {
                return Err(RegistryError::Invalid(format!("the evidence is about {}, the champion of {slot_name} is {champion}", evidence.challenger)));
            }
            index.slots.get_mut(&slot_name).expect("it has a champion").log.push(LogEntry {
                at: now(),
                action: Action::Review,
                model: champion,
                previous: None,
                forced: false,
                reason: None,
                evidence: evidence.summary(),
                objections: objections.clone(),
                details: Some(evidence.clone()),
            });
            Ok(())
        })?;
        Ok(objections)
    }

    /// Restores the champion that the current one replaced, in slot `slot` (`<asset>/<task>`,
    /// or just `<asset>` for its volatility slot). The restored model must still pass its checks.
    pub fn rollback(&mut self, slot: &str, reason: &str) -> Result<Promotion> {
        let slot_name = named_slot(slot);
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(RegistryError::Invalid("a rollback needs a reason, which goes into the registry log".into()));
        }
        let index_path = self.describe(INDEX_FILE);
        // (current champion, the one it replaced) in `index`.
        let targets = |index: &RegistryIndex| -> Result<(ModelRef, ModelRef)> {
            let entry = index.slots.get(&slot_name).ok_or_else(|| RegistryError::NotFound(format!("no slot `{slot_name}` in {index_path}")))?;
            let current = entry.champion.clone().ok_or_else(|| RegistryError::Refused(format!("{slot_name} has no champion")))?;
            let target = entry
                .log
                .iter()
                .rev()
                .find(|e| e.action == Action::Promote && e.model == current)
                .and_then(|e| e.previous.clone())
                .ok_or_else(|| RegistryError::Refused(format!("{slot_name}: {current} replaced no earlier champion; nothing to roll back to")))?;
            Ok((current, target))
        };
        let (current, target) = targets(&self.index)?;
        let (_, _, verified) = self.load(&target)?;
        let evidence = format!("rolled back from {current}");
        self.change(|index| {
            if targets(index)? != (current.clone(), target.clone()) {
                return Err(RegistryError::Conflict(format!("{slot_name} changed while rolling back (another writer): run the rollback again")));
            }
            let slot = index.slots.get_mut(&slot_name).expect("slot checked above");
            slot.crown(&target);
            slot.log.push(LogEntry {
                at: now(),
                action: Action::Rollback,
                model: target.clone(),
                previous: Some(current.clone()),
                forced: false,
                reason: Some(reason.to_string()),
                evidence: evidence.clone(),
                objections: Vec::new(),
                details: None,
            });
            Ok(())
        })?;
        Ok(Promotion { model: target, previous: Some(current), verified, evidence, forced: false, objections: Vec::new() })
    }

    /// Stores a JSON artifact under `artifacts/<name>.json` and records it.
    pub fn put_artifact(&mut self, name: &str, value: &serde_json::Value, description: &str) -> Result<Artifact> {
        if !valid_name(name) {
            return Err(RegistryError::Invalid(format!("artifact name `{name}`: lowercase letters, digits and `-` only")));
        }
        let relative = format!("artifacts/{name}.json");
        let mut text = serde_json::to_string_pretty(value).map_err(|e| self.format_error(&relative, e))?;
        text.push('\n');
        self.storage.put(&relative, text.as_bytes())?;
        let artifact = Artifact { path: relative, sha256: sha256_hex(text.as_bytes()), description: description.into() };
        self.change(|index| {
            index.artifacts.insert(name.into(), artifact.clone());
            Ok(())
        })?;
        Ok(artifact)
    }

    /// Copies this registry into `target` (another folder or object store, e.g. the bucket
    /// replicas read): every model version it lacks (each checked first: sha256 and golden
    /// rows), every artifact, then the index. A version the target holds with other bytes, or a
    /// target whose slots have log entries or challengers this registry lacks, is refused:
    /// copying never discards what the target recorded.
    pub fn copy_to(&self, target: &mut Registry) -> Result<CopyReport> {
        // Checked before anything is written, and again on the index the copy replaces.
        self.may_replace(&target.index)?;
        let mut report = CopyReport::default();
        for name in self.model_names()? {
            for v in self.versions(&name)? {
                let reference = ModelRef { name: name.clone(), version: Some(v) };
                let folder = folder_of(&reference);
                // Read once, checked (card, sha256, golden rows), then stored as read.
                let card_bytes = self.read(&format!("{folder}/{CARD_FILE}"))?;
                let card = self.parse_card(&reference, &card_bytes)?;
                let model_bytes = self.read(&format!("{folder}/{}", card.onnx.file))?;
                verify(&card, &model_bytes)?;
                let mut copied = false;
                for (file, bytes) in [(card.onnx.file.as_str(), &model_bytes), (CARD_FILE, &card_bytes)] {
                    let path = format!("{folder}/{file}");
                    if target.storage.create(&path, bytes)? {
                        copied = true;
                    } else if target.read(&path)? != *bytes {
                        return Err(RegistryError::Conflict(format!("{} differs from {}: versions are never overwritten", target.describe(&path), self.describe(&path))));
                    }
                }
                if copied { report.versions_copied += 1 } else { report.versions_present += 1 }
            }
        }
        for artifact in self.index.artifacts.values() {
            target.storage.put(&artifact.path, &self.artifact_bytes(artifact)?)?;
            report.artifacts += 1;
        }
        target.change(|index| {
            self.may_replace(index)?;
            *index = self.index.clone();
            Ok(())
        })?;
        Ok(report)
    }

    /// Whether this registry's index may replace `theirs` (another registry's) without losing
    /// anything recorded there: every slot's log a prefix of ours, its challengers and
    /// artifacts known here.
    fn may_replace(&self, theirs: &RegistryIndex) -> Result<()> {
        let origin = self.describe(INDEX_FILE);
        for (slot, their_slot) in &theirs.slots {
            let ours = self.index.slots.get(slot);
            let known = |m: &ModelRef| ours.is_some_and(|o| o.champion.as_ref() == Some(m) || o.challengers.contains(m));
            if !ours.map_or(&[][..], |o| o.log.as_slice()).starts_with(&their_slot.log) || !their_slot.challengers.iter().all(known) {
                return Err(RegistryError::Conflict(format!(
                    "the target's {slot} holds changes {origin} lacks (log entries or challengers): copy the other way, or start from an empty target"
                )));
            }
        }
        if let Some(name) = theirs.artifacts.keys().find(|name| !self.index.artifacts.contains_key(*name)) {
            return Err(RegistryError::Conflict(format!("the target holds artifact `{name}`, which {origin} lacks")));
        }
        Ok(())
    }

    /// An artifact's bytes, checked against its sha256.
    fn artifact_bytes(&self, entry: &Artifact) -> Result<Vec<u8>> {
        let bytes = self.read(&entry.path)?;
        let actual = sha256_hex(&bytes);
        if actual != entry.sha256 {
            return Err(RegistryError::HashMismatch { model: format!("artifact {}", entry.path), expected: entry.sha256.clone(), actual });
        }
        Ok(bytes)
    }

    /// Reads artifact `name`, checking its sha256.
    pub fn artifact(&self, name: &str) -> Result<serde_json::Value> {
        let entry = self.index.artifacts.get(name).ok_or_else(|| RegistryError::NotFound(format!("no artifact `{name}` in {}", self.describe(INDEX_FILE))))?;
        self.parse(&entry.path, &self.artifact_bytes(entry)?)
    }
}

/// Differences between two cards, as `(field, left, right)`.
pub fn diff(a: &ModelCard, b: &ModelCard) -> Vec<(String, String, String)> {
    let mut rows = Vec::new();
    let mut push = |field: &str, l: String, r: String| {
        if l != r {
            rows.push((field.to_string(), l, r));
        }
    };
    push("asset/task", a.slot(), b.slot());
    push("model_type", a.model_type.clone(), b.model_type.clone());
    push("feature_spec_version", a.feature_spec_version.clone(), b.feature_spec_version.clone());
    push("onnx.sha256", a.onnx.sha256.clone(), b.onnx.sha256.clone());
    push("onnx.input", format!("{} {:?}", a.onnx.input, a.onnx.input_columns), format!("{} {:?}", b.onnx.input, b.onnx.input_columns));
    push("onnx.outputs", a.onnx.outputs.join(","), b.onnx.outputs.join(","));
    let data = |c: &ModelCard| c.training.data.iter().map(|d| format!("{} ({})", d.path, &d.sha256[..d.sha256.len().min(12)])).collect::<Vec<_>>().join(", ");
    push("training.data", data(a), data(b));
    push("training.window", format!("{}..{}", a.training.start, a.training.end), format!("{}..{}", b.training.start, b.training.end));
    push("evaluation.window", format!("{}..{}", a.evaluation.start, a.evaluation.end), format!("{}..{}", b.evaluation.start, b.evaluation.end));
    push("evaluation.target", a.evaluation.target.clone(), b.evaluation.target.clone());
    push("evaluation.refit_every", format!("{:?}", a.evaluation.refit_every), format!("{:?}", b.evaluation.refit_every));
    let (pa, pb) = (flatten(&a.params), flatten(&b.params));
    let mut paths: Vec<&String> = pa.keys().chain(pb.keys()).collect();
    paths.sort();
    paths.dedup();
    for path in paths {
        let show = |m: &BTreeMap<String, String>| m.get(path).cloned().unwrap_or_else(|| "-".into());
        push(&format!("params{path}"), show(&pa), show(&pb));
    }
    let mut horizons: Vec<usize> = a.horizons.iter().chain(&b.horizons).copied().collect();
    horizons.sort_unstable();
    horizons.dedup();
    for h in horizons {
        let show = |c: &ModelCard| {
            c.evaluation.metrics.iter().find(|m| m.horizon == h).map_or("-".to_string(), |m| {
                format!("{} {:.4} ({} {:.4}, ratio {:.3})", m.score_name, m.score, m.baseline, m.baseline_score, m.relative())
            })
        };
        push(&format!("metrics.h{h}"), show(a), show(b));
    }
    push("created_at", a.created_at.clone(), b.created_at.clone());
    push("git_commit", a.git_commit.clone().unwrap_or_default(), b.git_commit.clone().unwrap_or_default());
    rows
}

/// Leaves of a JSON value by path (`.omega`, `.regressions[1].intercept`), numbers to 6
/// significant digits so that a diff shows what moved rather than float noise.
fn flatten(value: &serde_json::Value) -> BTreeMap<String, String> {
    fn walk(v: &serde_json::Value, path: String, out: &mut BTreeMap<String, String>) {
        match v {
            serde_json::Value::Object(map) => map.iter().for_each(|(k, v)| walk(v, format!("{path}.{k}"), out)),
            serde_json::Value::Array(items) => items.iter().enumerate().for_each(|(i, v)| walk(v, format!("{path}[{i}]"), out)),
            serde_json::Value::Number(n) if n.is_f64() => {
                out.insert(path, format!("{:.6e}", n.as_f64().unwrap_or(f64::NAN)));
            }
            other => {
                out.insert(path, other.to_string());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(value, String::new(), &mut out);
    out
}
