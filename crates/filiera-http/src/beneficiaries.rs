//! `/v1/beneficiaries`: enrolment, the write endpoints of SPEC 4.1, state and history.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use filiera_domain::{
    CloseOutcome, ExitOutcome, Pathway, PathwayCommand, PathwayEvent, PathwayState, Referral,
    SupportBand,
};
use filiera_store::{CommandContext, Executed, Rejection};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::AppState;
use crate::extract::{Caller, IdempotencyHeader, JsonBody, beneficiary_id};
use crate::feed::FeedItem;
use crate::problem::ApiError;

/// `POST /v1/beneficiaries`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrolBody {
    territory: String,
    on: NaiveDate,
    referral: Referral,
    #[serde(default)]
    support_band: Option<SupportBand>,
}

/// `POST /v1/beneficiaries/{id}/stage`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageBody {
    stage: String,
    on: NaiveDate,
    #[serde(default)]
    provider: Option<String>,
}

/// `POST /v1/beneficiaries/{id}/stage/exit`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExitBody {
    on: NaiveDate,
    outcome: ExitOutcome,
}

/// `POST /v1/beneficiaries/{id}/territory`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerritoryBody {
    territory: String,
    on: NaiveDate,
}

/// `POST /v1/beneficiaries/{id}/close`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloseBody {
    on: NaiveDate,
    outcome: CloseOutcome,
}

/// `POST /v1/beneficiaries/{id}/reopen`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReopenBody {
    on: NaiveDate,
}

/// `POST /v1/beneficiaries/{id}/undo`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UndoBody {
    reason: String,
}

/// A beneficiary's state as answered by the API: no personal data, only the pathway.
#[derive(Debug, Serialize)]
pub struct BeneficiaryView {
    pub id: Uuid,
    /// Sequence of the latest event of the stream.
    pub version: u64,
    #[serde(flatten)]
    pub state: PathwayState,
}

impl BeneficiaryView {
    fn new(id: Uuid, pathway: &Pathway) -> Self {
        Self {
            id,
            version: pathway.version(),
            state: pathway.state().clone(),
        }
    }
}

/// The answer to a stage entry: its classification and the state after it.
#[derive(Debug, Serialize)]
pub struct StageAnswer {
    pub transition: Option<filiera_domain::Transition>,
    pub from_stage: Option<filiera_domain::StageCode>,
    pub state: BeneficiaryView,
}

/// `POST /v1/beneficiaries`
#[tracing::instrument(skip_all, fields(beneficiary_id))]
pub async fn enrol(
    State(app): State<AppState>,
    caller: Caller,
    idempotency: IdempotencyHeader,
    body: JsonBody<EnrolBody>,
) -> Result<Response, ApiError> {
    let JsonBody { value, raw } = body;
    let command = PathwayCommand::Enrol {
        territory: value.territory,
        on: value.on,
        referral: value.referral,
        support_band: value.support_band,
    };
    let id = Uuid::new_v4();
    let executed = execute(
        &app,
        id,
        command,
        caller,
        &idempotency,
        "/v1/beneficiaries",
        &raw,
    )
    .await?;
    let view = BeneficiaryView::new(executed.beneficiary, &executed.pathway);
    let mut headers = replay_headers(&executed);
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/beneficiaries/{}", view.id)) {
        headers.insert(header::LOCATION, location);
    }
    Ok((StatusCode::CREATED, headers, Json(view)).into_response())
}

/// `POST /v1/beneficiaries/{id}/stage`
#[tracing::instrument(skip_all, fields(beneficiary_id = %id))]
pub async fn enter_stage(
    State(app): State<AppState>,
    Path(id): Path<String>,
    caller: Caller,
    idempotency: IdempotencyHeader,
    body: JsonBody<StageBody>,
) -> Result<Response, ApiError> {
    let beneficiary = beneficiary_id(&id)?;
    let JsonBody { value, raw } = body;
    let command = PathwayCommand::EnterStage {
        stage: value.stage,
        on: value.on,
        provider: value.provider,
    };
    let path = format!("/v1/beneficiaries/{beneficiary}/stage");
    let executed = execute(
        &app,
        beneficiary,
        command,
        caller,
        &idempotency,
        &path,
        &raw,
    )
    .await?;
    let (transition, from_stage) = executed
        .events
        .iter()
        .find_map(|e| match &e.event {
            PathwayEvent::StageEntered {
                transition,
                from_stage,
                ..
            } => Some((Some(*transition), from_stage.clone())),
            _ => None,
        })
        .unwrap_or((None, None));
    let answer = StageAnswer {
        transition,
        from_stage,
        state: BeneficiaryView::new(executed.beneficiary, &executed.pathway),
    };
    Ok((replay_headers(&executed), Json(answer)).into_response())
}

macro_rules! simple_command {
    ($(#[$doc:meta])* $name:ident, $body:ty, $suffix:literal, |$value:ident| $command:expr) => {
        $(#[$doc])*
        #[tracing::instrument(skip_all, fields(beneficiary_id = %id))]
        pub async fn $name(
            State(app): State<AppState>,
            Path(id): Path<String>,
            caller: Caller,
            idempotency: IdempotencyHeader,
            body: JsonBody<$body>,
        ) -> Result<Response, ApiError> {
            let beneficiary = beneficiary_id(&id)?;
            let JsonBody { value: $value, raw } = body;
            let path = format!("/v1/beneficiaries/{beneficiary}{}", $suffix);
            let executed =
                execute(&app, beneficiary, $command, caller, &idempotency, &path, &raw).await?;
            let view = BeneficiaryView::new(executed.beneficiary, &executed.pathway);
            Ok((replay_headers(&executed), Json(view)).into_response())
        }
    };
}

simple_command!(
    /// `POST /v1/beneficiaries/{id}/stage/exit`
    exit_stage, ExitBody, "/stage/exit",
    |value| PathwayCommand::ExitStage { on: value.on, outcome: value.outcome }
);
simple_command!(
    /// `POST /v1/beneficiaries/{id}/territory`
    change_territory, TerritoryBody, "/territory",
    |value| PathwayCommand::ChangeTerritory { territory: value.territory, on: value.on }
);
simple_command!(
    /// `POST /v1/beneficiaries/{id}/close`
    close, CloseBody, "/close",
    |value| PathwayCommand::ClosePathway { on: value.on, outcome: value.outcome }
);
simple_command!(
    /// `POST /v1/beneficiaries/{id}/reopen`
    reopen, ReopenBody, "/reopen",
    |value| PathwayCommand::ReopenPathway { on: value.on }
);
simple_command!(
    /// `POST /v1/beneficiaries/{id}/undo`
    undo, UndoBody, "/undo",
    |value| PathwayCommand::Undo { reason: value.reason }
);

/// `GET /v1/beneficiaries/{id}`
#[tracing::instrument(skip_all, fields(beneficiary_id = %id))]
pub async fn get_state(
    State(app): State<AppState>,
    Path(id): Path<String>,
    _caller: Caller,
) -> Result<Json<BeneficiaryView>, ApiError> {
    let beneficiary = beneficiary_id(&id)?;
    let pathway = app
        .store
        .load(beneficiary)
        .await?
        .ok_or_else(ApiError::beneficiary_not_found)?;
    Ok(Json(BeneficiaryView::new(beneficiary, &pathway)))
}

/// The history of one beneficiary: every event, voided ones flagged.
#[derive(Debug, Serialize)]
pub struct HistoryPage {
    pub beneficiary_id: Uuid,
    pub events: Vec<FeedItem>,
}

/// `GET /v1/beneficiaries/{id}/history`
#[tracing::instrument(skip_all, fields(beneficiary_id = %id))]
pub async fn history(
    State(app): State<AppState>,
    Path(id): Path<String>,
    _caller: Caller,
) -> Result<Json<HistoryPage>, ApiError> {
    let beneficiary = beneficiary_id(&id)?;
    let events = app
        .store
        .history(beneficiary)
        .await?
        .ok_or_else(ApiError::beneficiary_not_found)?;
    Ok(Json(HistoryPage {
        beneficiary_id: beneficiary,
        events: events.iter().map(FeedItem::with_voided).collect(),
    }))
}

async fn execute(
    app: &AppState,
    beneficiary: Uuid,
    command: PathwayCommand,
    caller: Caller,
    idempotency: &IdempotencyHeader,
    path: &str,
    raw: &[u8],
) -> Result<Executed, ApiError> {
    let ctx = CommandContext {
        principal: caller.subject,
        idempotency: idempotency.with_request("POST", path, raw),
    };
    match app.store.execute(beneficiary, command, ctx).await? {
        Ok(executed) => Ok(executed),
        Err(Rejection::Refused(err)) => Err(err.into()),
        Err(Rejection::Conflict) => Err(ApiError::concurrent_write()),
        Err(Rejection::IdempotencyKeyReused) => Err(ApiError::idempotency_key_reused()),
    }
}

fn replay_headers(executed: &Executed) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if executed.replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    headers
}
