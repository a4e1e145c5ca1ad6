//! The access log: who read or erased whose identity, and when (SPEC 5.2), and how it is paged.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The principal asking to read an identity, as the access log records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reader {
    /// The token's `sub`.
    pub subject: String,
    /// The token's `role` (e.g. `operator`).
    pub role: String,
}

/// What was done to an identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AccessAction {
    /// It was decrypted and handed to the subject.
    Read,
    /// It was erased by the subject.
    Erase,
}

impl AccessAction {
    /// The stored and serialised name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Erase => "erase",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text {
            "read" => Some(Self::Read),
            "erase" => Some(Self::Erase),
            _ => None,
        }
    }
}

/// One row of the access log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccessEntry {
    /// Increasing with time; the paging cursor.
    pub id: i64,
    /// When (the server's clock).
    pub at: DateTime<Utc>,
    /// Who.
    pub subject: String,
    /// In which role (`None` for erasures, which only administrators may do).
    pub role: Option<String>,
    /// Whose identity.
    pub beneficiary_id: Uuid,
    /// What was done.
    pub action: AccessAction,
}

/// Which page of the access log to read: newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::IntoParams),
    into_params(parameter_in = Query)
)]
#[serde(deny_unknown_fields)]
pub struct AccessLogQuery {
    /// Only entries older than this id (the previous page's `next_before`); the newest if
    /// `None`.
    #[serde(default)]
    pub before: Option<i64>,
    /// At most this many entries (1 to [`AccessLogQuery::MAX_LIMIT`]; `None` for
    /// [`AccessLogQuery::DEFAULT_LIMIT`]; larger values are capped).
    #[serde(default)]
    // Any 32-bit unsigned number is accepted (and capped), so the document says that range
    // rather than the signed one utoipa gives `u32`.
    #[cfg_attr(
        feature = "openapi",
        param(value_type = Option<i64>, minimum = 0, maximum = 4294967295.0)
    )]
    pub limit: Option<u32>,
    /// Only entries about this beneficiary.
    #[serde(default)]
    pub beneficiary: Option<Uuid>,
}

impl AccessLogQuery {
    /// Entries per page when no limit is given.
    pub const DEFAULT_LIMIT: u32 = 100;
    /// The most entries one page holds.
    pub const MAX_LIMIT: u32 = 1000;

    pub(crate) fn limit(&self) -> u32 {
        self.limit
            .unwrap_or(Self::DEFAULT_LIMIT)
            .clamp(1, Self::MAX_LIMIT)
    }
}

/// A page of the access log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccessLogPage {
    /// Newest first.
    pub entries: Vec<AccessEntry>,
    /// The `before` of the next (older) page; `None` on the last page.
    pub next_before: Option<i64>,
}
