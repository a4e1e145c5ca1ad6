//! The reiteration audit list (`GET /v1/audit/reiterations`): who is flagged, and why.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::catalogue::{StageCatalogue, StageCode};
use crate::event::{Occupability, Transition};
use crate::territory::{TerritoryCode, TerritoryRegistry};

use super::fold::{LocalMaps, MetricsQuery, Scope};
use super::timeline::TimelineView;
use super::walk::{Fact, Horizon, walk};

/// What the audit list is asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditQuery {
    /// The territory whose subtree is in scope; `None` for everything.
    pub territory: Option<TerritoryCode>,
    /// The day the flags are evaluated at.
    pub to: NaiveDate,
    /// Only what was recorded (and undone) by this instant counts.
    pub known_at: DateTime<Utc>,
    /// `stalled_reiterations >= threshold` flags a beneficiary.
    pub threshold: u32,
}

impl From<&MetricsQuery> for AuditQuery {
    fn from(query: &MetricsQuery) -> Self {
        Self {
            territory: query.territory.clone(),
            to: query.to,
            known_at: query.known_at,
            threshold: query.threshold,
        }
    }
}

/// The query echoed at the top of the audit list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditQueryEcho {
    pub territory: Option<TerritoryCode>,
    pub to: NaiveDate,
    /// RFC 3339, UTC.
    pub known_at: DateTime<Utc>,
}

/// One stage entry in a flagged beneficiary's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditTransition {
    pub stage: StageCode,
    pub on: NaiveDate,
    /// The classification recorded with the entry.
    pub classification: Transition,
    /// The provider the entry named, if any.
    pub provider: Option<String>,
}

/// A flagged beneficiary. The id is the service's pseudonymous UUID, never personal data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    pub beneficiary_id: String,
    /// The territory at `to`.
    pub territory: TerritoryCode,
    /// Reiterations since the most recent progression (or the first entry), up to `to`.
    pub stalled_reiterations: u32,
    /// Reiterations up to `to`, in every spell.
    pub total_reiterations: u32,
    /// The stage of the episode open at `to`, if any.
    pub current_stage: Option<StageCode>,
    /// The occupability of the latest assessment with `on <= to`, if any: continuity of
    /// support for people far from work is a legitimate reason to reiterate.
    pub occupability: Option<Occupability>,
    /// Every visible stage entry with `on <= to`, in order.
    pub transitions: Vec<AuditTransition>,
}

/// The audit document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditList {
    pub query: AuditQueryEcho,
    pub threshold: u32,
    /// Sorted by beneficiary id.
    pub beneficiaries: Vec<AuditEntry>,
}

/// The beneficiaries flagged at `query.to` as known at `query.known_at`: those whose territory
/// at `to` is in scope, who entered a stage by `to`, and whose stalled reiterations are
/// `>= threshold` — exactly the ones `reiteration.flagged` counts in [`super::territory_metrics`]
/// for the same `territory`, `to`, `known_at` and `threshold`. The catalogue is not needed to
/// list codes; it is taken so both entry points read alike.
pub fn reiteration_audit<'a, T: Into<TimelineView<'a>>>(
    timelines: impl IntoIterator<Item = T>,
    query: &AuditQuery,
    _catalogue: &StageCatalogue,
    registry: &TerritoryRegistry,
) -> AuditList {
    let scope = Scope::new(query.territory.as_ref(), registry);
    let horizon = Horizon {
        known_at: query.known_at,
        to: query.to,
    };
    let mut local = LocalMaps::default();
    let mut entered = Vec::new();
    let mut beneficiaries = Vec::new();
    for view in timelines {
        let TimelineView { timeline, entries } = view.into();
        if !local.prepare(timeline, &scope, None) {
            continue;
        }
        entered.clear();
        let end = walk(entries, horizon, |fact| {
            if let Fact::StageEntered {
                stage,
                on,
                transition,
                provider,
                ..
            } = fact
            {
                entered.push((stage, on, transition, provider));
            }
        });
        let Some(end) = end else { continue };
        let flagged = end.entered_any
            && end.stalled_reiterations >= query.threshold
            && local.in_scope(end.territory);
        let Some(territory) = timeline.territory(end.territory).filter(|_| flagged) else {
            continue;
        };
        let transitions = entered
            .iter()
            .filter_map(|&(stage, on, classification, provider)| {
                let stage = timeline.stage(stage)?.clone();
                Some(AuditTransition {
                    stage,
                    on,
                    classification,
                    provider: provider
                        .and_then(|p| timeline.provider(p))
                        .map(str::to_owned),
                })
            })
            .collect();
        beneficiaries.push(AuditEntry {
            beneficiary_id: timeline.beneficiary_id().to_owned(),
            territory: territory.clone(),
            stalled_reiterations: end.stalled_reiterations,
            total_reiterations: end.total_reiterations,
            current_stage: end
                .episode
                .and_then(|(stage, _)| timeline.stage(stage).cloned()),
            occupability: end.occupability,
            transitions,
        });
    }
    beneficiaries.sort_by(|a, b| a.beneficiary_id.cmp(&b.beneficiary_id));
    AuditList {
        query: AuditQueryEcho {
            territory: query.territory.clone(),
            to: query.to,
            known_at: query.known_at,
        },
        threshold: query.threshold,
        beneficiaries,
    }
}
