//! [`TimelineIndex`]: timelines kept for many folds (the query cache), with the codes each one
//! names resolved once, when it is inserted, to ids shared by every timeline, and what a fold
//! reads of them kept in arrays in the order it reads them.
//!
//! A timeline names its territories and stages by codes local to it ([`LocalId`]s into its own
//! tables). A fold must resolve them against the query (which territories are in scope, which
//! catalogue stage a code is); resolving them by hashing and comparing their text, each a heap
//! allocation of its own, was a cost paid for every timeline of a region at every query. Here
//! each timeline carries its codes as small integers into one table per kind, so a fold
//! resolves a query once per code of those tables and then reads an array per timeline.
//! docs/performance.md ("Region queries") has the profile and the figures.
//!
//! [`LocalId`]: super::LocalId

use std::hash::Hash;

use foldhash::HashMap;

use crate::catalogue::{StageCatalogue, StageCode};
use crate::territory::{TerritoryCode, TerritoryRegistry};

use super::fold::{MetricsQuery, TerritoryMetrics, fold_resolved};
use super::timeline::{Timeline, TimelineEntry, TimelineView};

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
    pub(crate) fn resolve_all(&mut self, timelines: &[TimelineView<'_>]) -> (Vec<u32>, Vec<usize>) {
        let mut ids = Vec::new();
        let mut starts = Vec::with_capacity(timelines.len() + 1);
        for view in timelines {
            starts.push(ids.len());
            self.resolve(view.timeline, &mut ids);
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

/// What a fold reads of one timeline: its codes' shared ids and its entries (the timeline's
/// own, or those an index keeps for it).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Resolved<'t> {
    /// The tables, read only for what is rare (a stage outside the catalogue).
    pub(crate) timeline: &'t Timeline,
    /// The shared ids of the timeline's territories, indexed by [`LocalId`](super::LocalId).
    pub(crate) territories: &'t [u32],
    /// The shared ids of the timeline's stages, indexed by [`LocalId`](super::LocalId).
    pub(crate) stages: &'t [u32],
    pub(crate) entries: &'t [TimelineEntry],
}

impl<'t> Resolved<'t> {
    /// `view` with `ids`, its territories' shared ids then its stages'.
    pub(crate) fn new(view: TimelineView<'t>, ids: &'t [u32]) -> Self {
        let (territories, stages) = ids.split_at(view.timeline.territories().len());
        Self {
            timeline: view.timeline,
            territories,
            stages,
            entries: view.entries,
        }
    }
}

/// Timelines by key (the beneficiary), each stored with its codes' shared ids. Inserting a
/// timeline under a key it already holds replaces it (the cache merging a changed row).
///
/// What a fold reads of each timeline (its shared ids, its entries) is kept in arrays of their
/// own, one timeline after the other in the order the fold reads them: the fold then reads
/// memory in sequence, which the processor fetches ahead, instead of a few allocations per
/// timeline (a cache miss each, which was most of a region query's time once the codes were
/// resolved). The entries are moved there, not copied (a million entries are 48 MB), so the
/// timelines held are only their tables: they are handed out as [`TimelineView`]s.
#[derive(Debug, Default)]
pub struct TimelineIndex {
    codes: Codes,
    /// The timelines' tables; their entries are in `entries`.
    timelines: Vec<Timeline>,
    /// Where each timeline's shared ids and entries are in `ids` and `entries`.
    spans: Vec<Span>,
    by_key: HashMap<String, usize>,
    ids: Vec<u32>,
    entries: Vec<TimelineEntry>,
    /// How many of `entries` belong to replaced timelines; the arrays are written again,
    /// without them, when they outnumber the others.
    stale: usize,
}

/// Where one timeline's shared ids and entries are: `territories` then `stages` ids from
/// `ids`, `len` entries from `entries`.
#[derive(Clone, Copy, Debug)]
struct Span {
    ids: u32,
    territories: u32,
    stages: u32,
    entries: u32,
    len: u32,
}

impl TimelineIndex {
    /// Inserts `timeline` under `key`, replacing the one it held.
    pub fn insert(&mut self, key: String, mut timeline: Timeline) {
        let span = Span {
            ids: offset(self.ids.len()),
            territories: offset(timeline.territories().len()),
            stages: offset(timeline.stages().len()),
            entries: offset(self.entries.len()),
            len: offset(timeline.entries().len()),
        };
        self.codes.resolve(&timeline, &mut self.ids);
        self.entries.append(&mut timeline.take_entries());
        match self.by_key.get(&key) {
            Some(&i) => {
                self.stale += self.spans[i].len as usize;
                self.timelines[i] = timeline;
                self.spans[i] = span;
                if self.stale > self.entries.len() / 2 {
                    self.compact();
                }
            }
            None => {
                self.by_key.insert(key, self.timelines.len());
                self.timelines.push(timeline);
                self.spans.push(span);
            }
        }
    }

    /// Writes the arrays again, every timeline's ids and entries in order, without those of
    /// replaced timelines.
    fn compact(&mut self) {
        let mut ids = Vec::with_capacity(self.ids.len());
        let mut entries = Vec::with_capacity(self.entries.len() - self.stale);
        for span in &mut self.spans {
            let old = *span;
            let id_count = (old.territories + old.stages) as usize;
            span.ids = offset(ids.len());
            ids.extend_from_slice(&self.ids[old.ids as usize..][..id_count]);
            span.entries = offset(entries.len());
            entries.extend_from_slice(&self.entries[old.entries as usize..][..old.len as usize]);
        }
        self.ids = ids;
        self.entries = entries;
        self.stale = 0;
    }

    /// What a fold reads of the `i`-th timeline.
    #[inline]
    fn resolved(&self, i: usize) -> Resolved<'_> {
        let span = self.spans[i];
        let ids = &self.ids[span.ids as usize..];
        let (territories, ids) = ids.split_at(span.territories as usize);
        Resolved {
            timeline: &self.timelines[i],
            territories,
            stages: &ids[..span.stages as usize],
            entries: &self.entries[span.entries as usize..][..span.len as usize],
        }
    }

    /// How many timelines it holds.
    pub fn len(&self) -> usize {
        self.timelines.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.timelines.is_empty()
    }

    /// Every timeline, in no particular order, for the folds that take timelines one by one
    /// (the audit, the scorecard).
    pub fn views(&self) -> impl Iterator<Item = TimelineView<'_>> + Clone {
        (0..self.len()).map(|i| self.view(i))
    }

    fn view(&self, i: usize) -> TimelineView<'_> {
        let resolved = self.resolved(i);
        TimelineView {
            timeline: resolved.timeline,
            entries: resolved.entries,
        }
    }

    /// [`territory_metrics_many`](super::territory_metrics_many) over the timelines held: the
    /// same documents, without resolving any timeline's codes again.
    pub fn territory_metrics_many(
        &self,
        queries: &[MetricsQuery],
        catalogue: &StageCatalogue,
        registry: &TerritoryRegistry,
    ) -> Vec<TerritoryMetrics> {
        let resolved = |i| self.resolved(i);
        let timelines = self.len();
        fold_resolved(
            &self.codes,
            timelines,
            resolved,
            None,
            queries,
            catalogue,
            registry,
        )
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

/// An index into the arrays, which hold fewer than 2^32 items (`u32` keeps [`Span`] small).
fn offset(n: usize) -> u32 {
    u32::try_from(n).expect("fewer than 2^32 entries in memory")
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
        let a = index.view(index.by_key["a"]);
        assert_eq!(a.timeline.territories()[0].as_str(), "PIE");
        assert_eq!(a.entries, timeline("a", "PIE").entries());
        // Two territories seen, each interned once whatever the number of timelines.
        assert_eq!(index.codes.territories.codes().len(), 2);
        let ids: Vec<&[u32]> = (0..2).map(|i| index.resolved(i).territories).collect();
        assert_eq!(ids, [&[1_u32][..], &[0][..]]);
    }

    /// Replacing timelines leaves their old entries behind until they outnumber the live
    /// ones; every slot's copy stays its timeline's entries.
    #[test]
    fn replaced_entries_are_dropped_and_copies_stay_exact() {
        let mut index = TimelineIndex::default();
        for round in 0..10 {
            for key in ["a", "b", "c"] {
                let territory = if round % 2 == 0 { "LOM-BG" } else { "PIE" };
                index.insert(key.into(), timeline(key, territory));
            }
            assert!(
                index.entries.len() <= 2 * 3,
                "{} entries",
                index.entries.len()
            );
            for (i, key) in ["a", "b", "c"].into_iter().enumerate() {
                let territory = if round % 2 == 0 { "LOM-BG" } else { "PIE" };
                let resolved = index.resolved(i);
                assert_eq!(resolved.entries, timeline(key, territory).entries());
                let codes = index.codes.territories.codes();
                let named: Vec<_> = resolved
                    .territories
                    .iter()
                    .map(|&id| &codes[id as usize])
                    .collect();
                assert_eq!(
                    named,
                    index.timelines[i].territories().iter().collect::<Vec<_>>()
                );
            }
        }
        assert_eq!(index.len(), 3);
    }
}
