//! `GET /v1/events`: the global feed (SPEC 4.2) a page at a time.

use axum::Json;
use axum::extract::{RawQuery, State};
use filiera_store::StoredEvent;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, PartialSchema, ToSchema};

use crate::AppState;
use crate::access;
use crate::extract::{Caller, parse_query};
use crate::problem::ApiError;
use crate::problem::responses::{InternalError, ServiceUnavailable, UnprocessableEntity};
pub use filiera_contract::FeedItem;

/// The OpenAPI tag of these routes.
pub const TAG: &str = "feed";

/// Default and maximum page sizes of the feed.
pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 1000;

/// A page of the feed.
#[derive(Debug, Serialize, ToSchema)]
pub struct FeedPage {
    pub events: Vec<FeedItem>,
    /// Pass this as `after` to get the next page (equal to `after` when the page is empty).
    pub next_after: i64,
    /// The last position of the feed when the page was read (0 if it is empty): a reader that
    /// wants only what comes next, or only the last few events (the dashboard's live view),
    /// starts from here rather than replaying the whole feed.
    pub head: i64,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct FeedQuery {
    /// The global position to read after: 0 (the default) for the start, or the previous
    /// page's `next_after`.
    #[param(minimum = 0)]
    after: Option<i64>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// Reads a page of the global feed.
///
/// Events in feed order (docs/events.md): a reader that passes `next_after` back as `after` never
/// skips an event, even one committed later with a lower position. A subscriber reads only
/// the items whose territory (after the event) is one of its territories or below; its page
/// may then hold fewer than `limit` items, even none, while `next_after` moves on: the end of
/// the feed is when `next_after` stops moving.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = TAG,
    operation_id = "read_feed",
    params(FeedQuery),
    responses(
        (status = 200, description = "A page of the feed, in feed order.", body = FeedPage),
        (status = 422, response = UnprocessableEntity),
        (status = 500, response = InternalError),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn page(
    State(app): State<AppState>,
    RawQuery(query): RawQuery,
    caller: Caller,
) -> Result<Json<FeedPage>, ApiError> {
    let query: FeedQuery = parse_query(query.as_deref())?;
    let after = query.after.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::invalid("after", "`after` must be 0 or more"));
    }
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("`limit` must be between 1 and {MAX_LIMIT}"),
        ));
    }
    let (events, next_after) = match access::feed_scope(&caller, &app.territories) {
        filiera_auth::Scope::All => {
            let events = app.store.read_feed(after, limit).await?;
            let next_after = events.last().map_or(after, |e| e.position);
            (events, next_after)
        }
        filiera_auth::Scope::Within(scope) => scoped_page(&app, after, limit, &scope).await?,
    };
    let head = app.store.head().await?;
    Ok(Json(FeedPage {
        events: events.iter().map(FeedItem::from_stored).collect(),
        next_after,
        head: head.max(next_after),
    }))
}

/// Feed events a scoped page reads at most before answering what it found.
const SCOPED_SCAN: usize = 10_000;

/// Up to `limit` events after `after` whose territory is in `scope`, reading at most
/// [`SCOPED_SCAN`] events of the feed; and the position to continue after.
async fn scoped_page(
    app: &AppState,
    after: i64,
    limit: u32,
    scope: &std::collections::BTreeSet<filiera_domain::TerritoryCode>,
) -> Result<(Vec<StoredEvent>, i64), ApiError> {
    let mut found = Vec::new();
    let mut cursor = after;
    let mut scanned = 0;
    while scanned < SCOPED_SCAN {
        let batch = app.store.read_feed(cursor, MAX_LIMIT).await?;
        if batch.is_empty() {
            break;
        }
        scanned += batch.len();
        for event in batch {
            cursor = event.position;
            if event.territory.as_deref().is_some_and(|t| {
                filiera_domain::TerritoryCode::parse(t).is_some_and(|t| scope.contains(&t))
            }) {
                found.push(event);
                if found.len() == limit as usize {
                    return Ok((found, cursor));
                }
            }
        }
    }
    Ok((found, cursor))
}

/// How many events the live stream reads from the store at a time.
const STREAM_BATCH: u32 = 500;
/// How often the live stream polls the feed when no wake-up arrives.
const STREAM_POLL: std::time::Duration = std::time::Duration::from_millis(500);

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct StreamQuery {
    /// The global position to stream after (default 0); `Last-Event-ID` takes precedence.
    #[param(minimum = 0)]
    after: Option<i64>,
    /// Only events whose territory (after the event) is this one or below it.
    #[param(value_type = Option<filiera_contract::schema::RegisteredTerritory>)]
    territory: Option<String>,
    /// Only events of this type (`StageEntered` or `stage_entered`).
    #[serde(rename = "type")]
    #[param(value_type = Option<EventTypeFilter>)]
    event_type: Option<String>,
    /// The bearer token, for clients that cannot send an `Authorization` header (browsers'
    /// `EventSource`); accepted on this route only, never logged by the service. Prefer the
    /// header when you can (docs/security.md).
    #[allow(dead_code)]
    access_token: Option<String>,
}

/// The `Last-Event-ID` header of the live stream, for the OpenAPI document.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
struct LastEventIdParam {
    /// The SSE `id` (a feed position) of the last event received; the stream resumes right
    /// after it. Sent by browsers' `EventSource` when they reconnect.
    #[param(rename = "Last-Event-ID", value_type = i64, required = false, minimum = 0)]
    last_event_id: Option<i64>,
}

/// The `type` filter of the live stream: an event name (docs/domain.md) as written, or in
/// snake_case, for the OpenAPI document.
pub struct EventTypeFilter;

impl utoipa::PartialSchema for EventTypeFilter {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let types = filiera_domain::PathwayEvent::TYPES;
        let names = types
            .iter()
            .map(|t| (*t).to_owned())
            .chain(types.iter().map(|t| filiera_domain::snake_case(t)));
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::String)
            .description(Some(
                "The name of a pathway event (docs/domain.md), as written or in snake_case.",
            ))
            .enum_values(Some(names))
            .into()
    }
}

impl ToSchema for EventTypeFilter {}

/// One server-sent event of the live stream, for the OpenAPI document: `id` is the feed
/// position, `data` a [`FeedItem`] as JSON. OpenAPI 3.1 has a `text/event-stream` response's
/// schema describe each event (3.2 calls it `itemSchema`), as Schemathesis reads it: an object
/// of the event's fields, `data` a string whose `contentMediaType`/`contentSchema` say what it
/// holds. utoipa has no `contentSchema`, so it is written as an extension member of the
/// `data` schema (members of a schema object are plain JSON Schema keywords in 3.1).
pub struct FeedEvent;

impl utoipa::PartialSchema for FeedEvent {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::extensions::Extensions;
        use utoipa::openapi::{ObjectBuilder, Ref, Type};

        let item = serde_json::to_value(Ref::from_schema_name(FeedItem::name()))
            .expect("a reference serialises");
        let data = ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some("The event as a `FeedItem`, in JSON."))
            .content_media_type("application/json")
            .extensions(Some(Extensions::from_iter([("contentSchema", item)])));
        let id = ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^[0-9]+$"))
            .description(Some(
                "The event's global position: send it back as `Last-Event-ID` to resume.",
            ));
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "One server-sent event: `id: <position>` and `data: <FeedItem JSON>`.",
            ))
            .property("id", id)
            .property("data", data)
            .required("id")
            .required("data")
            .into()
    }
}

impl ToSchema for FeedEvent {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        schemas.push((FeedItem::name().into_owned(), FeedItem::schema()));
        FeedItem::schemas(schemas);
    }
}

/// Which events a subscriber wants.
#[derive(Debug, Clone, Default)]
pub struct FeedFilter {
    /// Territory codes in scope (a territory and its descendants); `None` = all.
    pub territories: Option<std::collections::BTreeSet<String>>,
    /// The event name wanted (`StageEntered`); `None` = all.
    pub event_type: Option<&'static str>,
}

impl FeedFilter {
    /// Whether `event` passes the filter.
    pub fn matches(&self, event: &StoredEvent) -> bool {
        let territory_ok = match (&self.territories, &event.territory) {
            (None, _) => true,
            (Some(scope), Some(t)) => scope.contains(t),
            (Some(_), None) => false,
        };
        territory_ok && self.event_type.is_none_or(|t| t == event.event.name())
    }
}

/// Follows the global feed live, as server-sent events.
///
/// A subscriber receives the items of its territories only; `territory` narrows that to one
/// of them (403 `territory_out_of_scope` outside). Browsers, whose `EventSource` cannot send
/// headers, pass the token as `access_token`. Each SSE event has `id` = the event's feed position and `data` = a `FeedItem` as JSON; a
/// client that reconnects with `Last-Event-ID` (or `after`) resumes exactly after the last
/// event it received. Comments keep the connection alive.
#[utoipa::path(
    get,
    path = "/v1/events/stream",
    tag = TAG,
    operation_id = "stream_feed",
    params(StreamQuery, LastEventIdParam),
    responses(
        (
            status = 200,
            description = "An endless `text/event-stream`: `id: <position>` and \
                `data: <FeedItem JSON>` per event; the schema describes one event.",
            content_type = "text/event-stream",
            body = FeedEvent
        ),
        (status = 422, response = UnprocessableEntity),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn stream(
    State(app): State<AppState>,
    RawQuery(query): RawQuery,
    headers: axum::http::HeaderMap,
    caller: Caller,
) -> Result<
    axum::response::sse::Sse<
        impl futures::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>,
    >,
    ApiError,
> {
    use axum::response::sse::{Event, KeepAlive, Sse};

    let query: StreamQuery = parse_query(query.as_deref())?;
    let last_event_id = match headers.get("last-event-id") {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<i64>().ok())
                .filter(|p| *p >= 0)
                .ok_or_else(|| {
                    ApiError::invalid("Last-Event-ID", "Last-Event-ID must be a feed position")
                })?,
        ),
    };
    // `after` is checked even when `Last-Event-ID` takes precedence: a malformed request is
    // refused whatever else it carries.
    if query.after.is_some_and(|after| after < 0) {
        return Err(ApiError::invalid("after", "`after` must be 0 or more"));
    }
    let after = last_event_id.or(query.after).unwrap_or(0);
    let mut filter = FeedFilter::default();
    let registry = &app.territories;
    if let Some(code) = &query.territory {
        let territory = registry
            .get(code)
            .ok_or_else(|| ApiError::unknown_territory(code))?;
        access::require_territory(&caller, registry, &territory)?;
        filter.territories = Some(
            registry
                .descendants_or_self(&territory)
                .into_iter()
                .map(|t| t.to_string())
                .collect(),
        );
    } else if let filiera_auth::Scope::Within(scope) = access::feed_scope(&caller, registry) {
        filter.territories = Some(scope.into_iter().map(|t| t.to_string()).collect());
    }
    if let Some(name) = &query.event_type {
        filter.event_type = Some(filiera_domain::PathwayEvent::type_named(name).ok_or_else(
            || {
                ApiError::invalid(
                    "type",
                    format!(
                        "unknown event type `{name}`; one of {}",
                        filiera_domain::PathwayEvent::TYPES.join(", ")
                    ),
                )
            },
        )?);
    }

    struct Cursor {
        store: std::sync::Arc<filiera_store::Store>,
        after: i64,
        pending: std::collections::VecDeque<StoredEvent>,
        wakeups: tokio::sync::watch::Receiver<i64>,
        /// The server is shutting down: end the stream so the shutdown can complete.
        stopping: tokio::sync::watch::Receiver<bool>,
        filter: FeedFilter,
    }
    let cursor = Cursor {
        wakeups: app.store.wakeups(),
        stopping: app.stopping.clone(),
        store: app.store.clone(),
        after,
        pending: Default::default(),
        filter,
    };
    let events = futures::stream::unfold(cursor, |mut cursor| async move {
        loop {
            if *cursor.stopping.borrow() {
                return None;
            }
            if let Some(event) = cursor.pending.pop_front() {
                let item = FeedItem::from_stored(&event);
                let sse = Event::default()
                    .id(event.position.to_string())
                    .json_data(&item)
                    .unwrap_or_else(|_| Event::default().comment("unserialisable event"));
                return Some((Ok(sse), cursor));
            }
            match cursor.store.read_feed(cursor.after, STREAM_BATCH).await {
                Ok(batch) if !batch.is_empty() => {
                    cursor.after = batch.last().map_or(cursor.after, |e| e.position);
                    cursor
                        .pending
                        .extend(batch.into_iter().filter(|e| cursor.filter.matches(e)));
                }
                Ok(_) => {
                    let wakeups = &mut cursor.wakeups;
                    let stopping = &mut cursor.stopping;
                    tokio::select! {
                        woken = tokio::time::timeout(STREAM_POLL, wakeups.changed()) => {
                            if matches!(woken, Ok(Err(_))) {
                                // No more wake-ups (the store is closing): keep polling.
                                tokio::time::sleep(STREAM_POLL).await;
                            }
                        }
                        _ = stopping.changed() => {}
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %crate::problem::error_chain(&err), "feed stream read failed");
                    tokio::time::sleep(STREAM_POLL).await;
                }
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
