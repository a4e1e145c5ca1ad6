//! The printable regional report's inputs: its documents
//! ([`filiera_domain::regional_documents`]) and the feed position they reflect, online
//! ([`crate::Projections::regional`]) or replayed ([`replay_regional`]).

use chrono::{DateTime, Utc};
use filiera_domain::{MetricsQuery, RegionalDocuments};
use filiera_store::Store;

use crate::{ProjectionError, Replay};

/// The documents of the regional report and the data they were folded from.
#[derive(Clone, Debug, PartialEq)]
pub struct RegionalSnapshot {
    pub documents: RegionalDocuments,
    /// The feed position of the last event folded in (the read model's checkpoint online, the
    /// feed head offline); 0 for an empty feed.
    pub position: i64,
    /// When that event was stored; `None` for an empty feed.
    pub recorded_at: Option<DateTime<Utc>>,
}

impl RegionalSnapshot {
    /// The snapshot of `documents` folded up to feed position `position` of `store`.
    pub(crate) async fn at(
        store: &Store,
        documents: RegionalDocuments,
        position: i64,
    ) -> Result<Self, ProjectionError> {
        Ok(Self {
            documents,
            position,
            recorded_at: recorded_at(store, position).await?,
        })
    }
}

/// When the event at feed position `position` was stored (`None` for 0 or no such event).
async fn recorded_at(
    store: &Store,
    position: i64,
) -> Result<Option<DateTime<Utc>>, ProjectionError> {
    if position <= 0 {
        return Ok(None);
    }
    let page = store.read_feed(position - 1, 1).await?;
    Ok(page
        .first()
        .filter(|event| event.position == position)
        .map(|event| event.recorded_at))
}

/// The regional report's documents for `query`, replayed from the store's feed: what
/// `filiera report --format html` renders.
pub async fn replay_regional(
    store: &Store,
    query: &MetricsQuery,
) -> Result<RegionalSnapshot, ProjectionError> {
    let replay = Replay::load(store).await?;
    let services = store.services();
    let documents = filiera_domain::regional_documents(
        replay.timelines().values(),
        query,
        &services.catalogue,
        &services.territories,
    );
    RegionalSnapshot::at(store, documents, replay.position()).await
}
