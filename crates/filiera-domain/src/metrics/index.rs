//! [`TimelineIndex`]: timelines kept for many folds (the query cache), with the codes each one
//! names resolved once, when it is inserted, to ids shared by every timeline.
//!
//! A timeline names its territories and stages by codes local to it ([`LocalId`]s into its own
//! tables). A fold must resolve them against the query (which territories are in scope, which
//! catalogue stage a code is), and resolving codes by hashing and comparing their text, for
//! every timeline of a region at every query, was most of a region query's time: the text of
//! each code is a heap allocation of its own, read once per timeline. Here each timeline
//! carries its codes as small integers into one table per kind ([`Codes`]), so a fold resolves
//! a query once per code of the table and then reads an array per timeline.
//!
//! [`LocalId`]: super::LocalId

use std::hash::Hash;

use foldhash::HashMap;

use crate::catalogue::{StageCatalogue, StageCode};
use crate::territory::{TerritoryCode, TerritoryRegistry};

use super::fold::{MetricsQuery, TerritoryMetrics, fold_resolved};
use super::timeline::Timeline;

/// Codes interned as ids shared by every timeline of a fold.
#[derive(Debug, Default)]
pub(crate) struct Codes {
    pub(crate) territories: Interner<TerritoryCode>,
    pub(crate) stages: Interner<StageCode>,
}

impl Codes {
    /// Appends to `ids` the shared id of each of `timeline`'s territories, then of each of its
    /// stages, in the order of its own tables (so a [`LocalId`](super::LocalId) indexes them).
    pub(crate) fn resolve(&mut self, timeline: &Timeline, ids: &mut Vec<u32>) {
        ids.extend(
            timeline
                .territories()
                .iter()
                .map(|c| self.territories.id(c)),
        );
        ids.extend(timeline.stages().iter().map(|c| self.stages.id(c)));
    }

    /// Interns the codes of `timelines`, in order: their ids, and where each timeline's start.
    pub(crate) fn resolve_all(&mut self, timelines: &[&Timeline]) -> (Vec<u32>, Vec<usize>) {
        let mut ids = Vec::new();
        let mut starts = Vec::with_capacity(timelines.len() + 1);
        for timeline in timelines {
            starts.push(ids.len());
            self.resolve(timeline, &mut ids);
        }
        starts.push(ids.len());
        (ids, starts)
    }
}

/// A table of codes, each given the next id the first time it is seen.
#[derive(Debug)]
pub(crate) struct Interner<T> {
    codes: Vec<T>,
    ids: HashMap<T, u32>,
}

impl<T> Default for Interner<T> {
    fn default() -> Self {
        Self {
            codes: Vec::new(),
            ids: HashMap::default(),
        }
    }
}

impl<T: Hash + Eq + Clone> Interner<T> {
    fn id(&mut self, code: &T) -> u32 {
        if let Some(&id) = self.ids.get(code) {
            return id;
        }
        let id = u32::try_from(self.codes.len()).expect("fewer than 2^32 distinct codes");
        self.codes.push(code.clone());
        self.ids.insert(code.clone(), id);
        id
    }

    /// The id of `code`, if it was seen.
    pub(crate) fn get(&self, code: &T) -> Option<u32> {
        self.ids.get(code).copied()
    }

    /// Every code, indexed by its id.
    pub(crate) fn codes(&self) -> &[T] {
        &self.codes
    }
}

/// A timeline with its codes' shared ids: its territories' then its stages'.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Resolved<'t> {
    pub(crate) timeline: &'t Timeline,
    pub(crate) ids: &'t [u32],
}

impl<'t> Resolved<'t> {
    /// The shared ids of the timeline's territories, indexed by their [`LocalId`](super::LocalId).
    #[inline]
    pub(crate) fn territories(&self) -> &'t [u32] {
        &self.ids[..self.timeline.territories().len()]
    }

    /// The shared ids of the timeline's stages, indexed by their [`LocalId`](super::LocalId).
    #[inline]
    pub(crate) fn stages(&self) -> &'t [u32] {
        &self.ids[self.timeline.territories().len()..]
    }
}

/// Timelines by key (the beneficiary), each stored with its codes' shared ids. Inserting a
/// timeline under a key it already holds replaces it (the cache merging a changed row).
#[derive(Debug, Default)]
pub struct TimelineIndex {
    codes: Codes,
    slots: Vec<Slot>,
    by_key: HashMap<String, usize>,
}

#[derive(Debug)]
struct Slot {
    timeline: Timeline,
    ids: Box<[u32]>,
}

impl TimelineIndex {
    /// Inserts `timeline` under `key`, replacing the one it held.
    pub fn insert(&mut self, key: String, timeline: Timeline) {
        let mut ids = Vec::with_capacity(timeline.territories().len() + timeline.stages().len());
        self.codes.resolve(&timeline, &mut ids);
        let slot = Slot {
            timeline,
            ids: ids.into_boxed_slice(),
        };
        match self.by_key.get(&key) {
            Some(&i) => self.slots[i] = slot,
            None => {
                self.by_key.insert(key, self.slots.len());
                self.slots.push(slot);
            }
        }
    }

    /// How many timelines it holds.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The timeline under `key`, if any.
    pub fn get(&self, key: &str) -> Option<&Timeline> {
        self.by_key.get(key).map(|&i| &self.slots[i].timeline)
    }

    /// Every timeline, in no particular order, for the folds that take plain timelines.
    pub fn timelines(&self) -> impl Iterator<Item = &Timeline> + Clone {
        self.slots.iter().map(|slot| &slot.timeline)
    }

    /// [`territory_metrics_many`](super::territory_metrics_many) over the timelines held: the
    /// same documents, without resolving any timeline's codes again.
    pub fn territory_metrics_many(
        &self,
        queries: &[MetricsQuery],
        catalogue: &StageCatalogue,
        registry: &TerritoryRegistry,
    ) -> Vec<TerritoryMetrics> {
        let resolved: Vec<Resolved<'_>> = self
            .slots
            .iter()
            .map(|slot| Resolved {
                timeline: &slot.timeline,
                ids: &slot.ids,
            })
            .collect();
        fold_resolved(&self.codes, &resolved, None, queries, catalogue, registry)
    }

    /// [`territory_metrics`](super::territory_metrics) over the timelines held.
    pub fn territory_metrics(
        &self,
        query: &MetricsQuery,
        catalogue: &StageCatalogue,
        registry: &TerritoryRegistry,
    ) -> TerritoryMetrics {
        let mut documents =
            self.territory_metrics_many(std::slice::from_ref(query), catalogue, registry);
        documents.pop().expect("one document per query")
    }
}

impl FromIterator<(String, Timeline)> for TimelineIndex {
    fn from_iter<I: IntoIterator<Item = (String, Timeline)>>(iter: I) -> Self {
        let mut index = Self::default();
        index.extend(iter);
        index
    }
}

impl Extend<(String, Timeline)> for TimelineIndex {
    fn extend<I: IntoIterator<Item = (String, Timeline)>>(&mut self, iter: I) {
        for (key, timeline) in iter {
            self.insert(key, timeline);
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, TimeZone, Utc};

    use super::*;
    use crate::event::{PathwayEvent, Referral};
    use crate::metrics::RecordedEvent;

    fn timeline(id: &str, territory: &str) -> Timeline {
        let event = RecordedEvent {
            sequence: 1,
            recorded_at: Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap(),
            event: PathwayEvent::Enrolled {
                territory: TerritoryCode::parse(territory).expect("a valid code"),
                on: NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
                referral: Referral::SocialServices,
                support_band: None,
            },
        };
        Timeline::from_events(id, [&event])
    }

    #[test]
    fn a_key_holds_its_latest_timeline_and_shares_codes() {
        let mut index = TimelineIndex::default();
        index.insert("a".into(), timeline("a", "LOM-BG"));
        index.insert("b".into(), timeline("b", "LOM-BG"));
        index.insert("a".into(), timeline("a", "PIE"));
        assert_eq!(index.len(), 2);
        let a = index.get("a").expect("a is held");
        assert_eq!(a.territories()[0].as_str(), "PIE");
        // Two territories seen, each interned once whatever the number of timelines.
        assert_eq!(index.codes.territories.codes().len(), 2);
        let ids: Vec<&[u32]> = index.slots.iter().map(|s| &*s.ids).collect();
        assert_eq!(ids, [&[1_u32][..], &[0][..]]);
    }
}
