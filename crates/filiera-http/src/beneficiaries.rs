//! `/v1/beneficiaries`: enrolment, the write endpoints of SPEC 4.1, state and history.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use filiera_domain::{Pathway, PathwayCommand, PathwayEvent, PathwayState};
use filiera_store::{CommandContext, Executed, Rejection};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

pub use filiera_contract::commands::{
    AssessmentBody, CloseBody, EnrolBody, ExitBody, ReopenBody, StageBody, TerritoryBody, UndoBody,
};

use crate::AppState;
use crate::access;
use crate::extract::{Caller, IdempotencyHeader, JsonBody, PathSegment, beneficiary_id};
use crate::feed::FeedItem;
use crate::problem::ApiError;
use crate::problem::responses::{
    BadRequest, Conflict, InsufficientStorage, InternalError, NotFound, PayloadTooLarge,
    ServiceUnavailable, UnprocessableEntity, UnsupportedMediaType,
};

/// The OpenAPI tag of these routes.
pub const TAG: &str = "beneficiaries";

/// A beneficiary's state as answered by the API: no personal data, only the pathway.
#[derive(Debug, Serialize, ToSchema)]
pub struct BeneficiaryView {
    /// The beneficiary's pseudonymous id.
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
#[derive(Debug, Serialize, ToSchema)]
pub struct StageAnswer {
    /// How the entry was classified (docs/domain.md).
    pub transition: Option<filiera_domain::Transition>,
    /// The stage of the previous entry, `null` for the first one.
    pub from_stage: Option<filiera_domain::StageCode>,
    pub state: BeneficiaryView,
}

/// Enrols a new beneficiary.
///
/// An operator enrols only in its territories (403 `territory_out_of_scope` otherwise). The
/// service assigns the id; the answer is the state, with `Location` pointing at it. A retry
/// with the same `Idempotency-Key` answers the first result and writes nothing new.
#[utoipa::path(
    post,
    path = "/v1/beneficiaries",
    tag = TAG,
    operation_id = "enrol",
    params(IdempotencyParam),
    request_body = EnrolBody,
    responses(
        (
            status = 201,
            description = "Enrolled: the new beneficiary's state.",
            body = BeneficiaryView,
            headers(
                ("Location" = String, description = "`/v1/beneficiaries/{id}`"),
                (
                    "Idempotent-Replayed" = String,
                    description = "`true` when the answer replays the first one for this \
                        `Idempotency-Key`."
                ),
            )
        ),
        (status = 400, response = BadRequest),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = UnprocessableEntity),
        (status = 500, response = InternalError),
        (status = 503, response = ServiceUnavailable),
        (status = 507, response = InsufficientStorage),
    )
)]
#[tracing::instrument(skip_all, fields(beneficiary_id))]
pub async fn enrol(
    State(app): State<AppState>,
    caller: Caller,
    idempotency: IdempotencyHeader,
    body: JsonBody<EnrolBody>,
) -> Result<Response, ApiError> {
    let JsonBody { mut value, raw } = body;
    // An unknown territory is the domain's to refuse (422); a known one must be in scope.
    if let Some(territory) = app.territories.get(value.territory()) {
        access::require_territory(&caller, &app.territories, &territory)?;
    }
    let person = value
        .take_person()
        .map(filiera_vault::Person::validated)
        .transpose()
        .map_err(filiera_vault::VaultError::from)?;
    if let Some(person) = &person {
        let vault = crate::people::vault(&app)?;
        // A fiscal code already known refuses the enrolment before anything is written,
        // unless its idempotency key is already used: then the store writes nothing either,
        // answering the first execution (the retry of the request that stored the code) or
        // refusing the key's reuse for another request.
        if vault
            .find_by_fiscal_code(&person.fiscal_code)
            .await?
            .is_some()
        {
            let key_used = match &idempotency.0 {
                Some(key) => app.store.idempotency_key_used(key).await?,
                None => false,
            };
            if !key_used {
                return Err(filiera_vault::VaultError::FiscalCodeTaken.into());
            }
        }
    }
    let id = Uuid::new_v4();
    let subject = caller.subject.clone();
    let executed = execute(
        &app,
        id,
        value.into(),
        caller,
        &idempotency,
        "/v1/beneficiaries",
        &raw,
    )
    .await?;
    if let Some(person) = person
        && !executed.replayed
    {
        store_person(&app, executed.beneficiary, &person, subject).await?;
    }
    let view = BeneficiaryView::new(executed.beneficiary, &executed.pathway);
    tracing::Span::current().record("beneficiary_id", tracing::field::display(view.id));
    let mut headers = replay_headers(&executed);
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/beneficiaries/{}", view.id)) {
        headers.insert(header::LOCATION, location);
    }
    Ok((StatusCode::CREATED, headers, Json(view)).into_response())
}

/// Stores the identity of a beneficiary just enrolled. If the vault refuses it (a fiscal code
/// another enrolment stored meanwhile), the enrolment is undone, so that no beneficiary stays
/// enrolled without the identity it was enrolled with, and the refusal is answered.
async fn store_person(
    app: &AppState,
    beneficiary: Uuid,
    person: &filiera_vault::Person,
    subject: String,
) -> Result<(), ApiError> {
    let vault = crate::people::vault(app)?;
    let Err(error) = vault.store_person(beneficiary, person).await else {
        return Ok(());
    };
    let undo = PathwayCommand::Undo {
        reason: "identity refused by the personal-data vault".into(),
    };
    let ctx = CommandContext::new(subject);
    if let Err(undo_error) = app.store.execute(beneficiary, undo, ctx).await {
        tracing::error!(error = %crate::problem::error_chain(&undo_error), "could not undo an enrolment whose identity was refused");
    }
    Err(error.into())
}

/// Enters a stage.
///
/// An open episode is closed first as `moved_on`; the entry is classified against the previous
/// stage entry (docs/domain.md) and the classification is answered with the state.
#[utoipa::path(
    post,
    path = "/v1/beneficiaries/{id}/stage",
    tag = TAG,
    operation_id = "enter_stage",
    params(BeneficiaryIdParam, IdempotencyParam),
    request_body = StageBody,
    responses(
        (
            status = 200,
            description = "Entered: the classification and the state after it.",
            body = StageAnswer,
            headers((
                "Idempotent-Replayed" = String,
                description = "`true` when the answer replays the first one for this \
                    `Idempotency-Key`."
            ))
        ),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = UnprocessableEntity),
        (status = 500, response = InternalError),
        (status = 503, response = ServiceUnavailable),
        (status = 507, response = InsufficientStorage),
    )
)]
#[tracing::instrument(skip_all, fields(beneficiary_id = %id))]
pub async fn enter_stage(
    State(app): State<AppState>,
    PathSegment(id): PathSegment,
    caller: Caller,
    idempotency: IdempotencyHeader,
    body: JsonBody<StageBody>,
) -> Result<Response, ApiError> {
    let beneficiary = beneficiary_id(&id)?;
    let JsonBody { value, raw } = body;
    let path = format!("/v1/beneficiaries/{beneficiary}/stage");
    let executed = execute(
        &app,
        beneficiary,
        value.into(),
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

/// A write endpoint on `/v1/beneficiaries/{id}<suffix>` that answers the state, documented as
/// such in the OpenAPI document.
macro_rules! simple_command {
    (
        $(#[$doc:meta])*
        $name:ident, $body:ty, $path:literal
    ) => {
        $(#[$doc])*
        #[utoipa::path(
            post,
            path = $path,
            tag = TAG,
            operation_id = stringify!($name),
            params(BeneficiaryIdParam, IdempotencyParam),
            request_body = $body,
            responses(
                (
                    status = 200,
                    description = "Recorded: the state after the command.",
                    body = BeneficiaryView,
                    headers((
                        "Idempotent-Replayed" = String,
                        description = "`true` when the answer replays the first one for this \
                            `Idempotency-Key`."
                    ))
                ),
                (status = 400, response = BadRequest),
                (status = 404, response = NotFound),
                (status = 409, response = Conflict),
                (status = 413, response = PayloadTooLarge),
                (status = 415, response = UnsupportedMediaType),
                (status = 422, response = UnprocessableEntity),
                (status = 500, response = InternalError),
                (status = 503, response = ServiceUnavailable),
                (status = 507, response = InsufficientStorage),
            )
        )]
        #[tracing::instrument(skip_all, fields(beneficiary_id = %id))]
        pub async fn $name(
            State(app): State<AppState>,
            PathSegment(id): PathSegment,
            caller: Caller,
            idempotency: IdempotencyHeader,
            body: JsonBody<$body>,
        ) -> Result<Response, ApiError> {
            let beneficiary = beneficiary_id(&id)?;
            let JsonBody { value, raw } = body;
            let path = $path.replace("{id}", &beneficiary.to_string());
            let executed =
                execute(&app, beneficiary, value.into(), caller, &idempotency, &path, &raw)
                    .await?;
            let view = BeneficiaryView::new(executed.beneficiary, &executed.pathway);
            Ok((replay_headers(&executed), Json(view)).into_response())
        }
    };
}

simple_command!(
    /// Exits the open stage episode.
    exit_stage, ExitBody, "/v1/beneficiaries/{id}/stage/exit"
);
simple_command!(
    /// Moves the beneficiary to another territory.
    change_territory, TerritoryBody, "/v1/beneficiaries/{id}/territory"
);
simple_command!(
    /// Closes the pathway (the spell).
    ///
    /// An open episode is exited first as `pathway_closed`.
    close, CloseBody, "/v1/beneficiaries/{id}/close"
);
simple_command!(
    /// Reopens a closed pathway: a new spell starts.
    reopen, ReopenBody, "/v1/beneficiaries/{id}/reopen"
);
simple_command!(
    /// Records a needs assessment (docs/domain.md).
    ///
    /// Needs an open spell. `team` names each service that took part once; a
    /// `multidisciplinary` assessment needs at least two (422 `empty_team`,
    /// `duplicate_team_member`, `team_too_small`). The state shows the latest non-voided
    /// `occupability`; the assessment changes no classification and can be undone.
    assess_needs, AssessmentBody, "/v1/beneficiaries/{id}/assessment"
);
simple_command!(
    /// Undoes the latest command not already undone.
    ///
    /// Its events stay in the history, flagged `voided`, and stop counting everywhere.
    undo, UndoBody, "/v1/beneficiaries/{id}/undo"
);

/// The `{id}` path parameter of `/v1/beneficiaries/{id}…`, for the OpenAPI document.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct BeneficiaryIdParam {
    /// The beneficiary's id, a UUID. A malformed one is refused (400 `malformed_path`, `field`
    /// `id`); a well-formed one that names no beneficiary in the caller's scope is 404.
    pub id: Uuid,
}

/// The `Idempotency-Key` header of the write endpoints, for the OpenAPI document.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyParam {
    /// 1 to 255 visible ASCII characters. A retried write with the same key answers the first
    /// result and writes nothing new; the same key with a different request is refused (422
    /// `idempotency_key_reused`).
    #[param(
        rename = "Idempotency-Key",
        value_type = String,
        required = false,
        min_length = 1,
        max_length = 255,
        pattern = "^[!-~]+$"
    )]
    pub idempotency_key: Option<String>,
}

/// Reads a beneficiary's state.
#[utoipa::path(
    get,
    path = "/v1/beneficiaries/{id}",
    tag = TAG,
    operation_id = "get_beneficiary",
    params(BeneficiaryIdParam),
    responses(
        (status = 200, description = "The state.", body = BeneficiaryView),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 500, response = InternalError),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[tracing::instrument(skip_all, fields(beneficiary_id = %id))]
pub async fn get_state(
    State(app): State<AppState>,
    PathSegment(id): PathSegment,
    caller: Caller,
) -> Result<Json<BeneficiaryView>, ApiError> {
    let beneficiary = beneficiary_id(&id)?;
    let pathway = app
        .store
        .load(beneficiary)
        .await?
        .ok_or_else(ApiError::beneficiary_not_found)?;
    access::require_visible(&caller, &app.territories, &pathway)?;
    Ok(Json(BeneficiaryView::new(beneficiary, &pathway)))
}

/// The history of one beneficiary: every event, voided ones flagged.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryPage {
    pub beneficiary_id: Uuid,
    /// In sequence order, each with `voided`.
    pub events: Vec<FeedItem>,
}

/// Reads a beneficiary's history.
///
/// Every event of the stream in sequence order, including the voided ones (flagged).
#[utoipa::path(
    get,
    path = "/v1/beneficiaries/{id}/history",
    tag = TAG,
    operation_id = "get_history",
    params(BeneficiaryIdParam),
    responses(
        (status = 200, description = "Every event, with `voided`.", body = HistoryPage),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 500, response = InternalError),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[tracing::instrument(skip_all, fields(beneficiary_id = %id))]
pub async fn history(
    State(app): State<AppState>,
    PathSegment(id): PathSegment,
    caller: Caller,
) -> Result<Json<HistoryPage>, ApiError> {
    let beneficiary = beneficiary_id(&id)?;
    access::load_visible(&app, &caller, beneficiary).await?;
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
    // Commands on an existing beneficiary: only within the caller's territories (404 outside,
    // as for an unknown one), judged by the store on the stream it decides on. Enrolment
    // checks its territory itself.
    let scope = match command {
        PathwayCommand::Enrol { .. } => None,
        _ => access::write_scope(app, &caller),
    };
    let ctx = CommandContext {
        principal: caller.subject,
        idempotency: idempotency.with_request("POST", path, raw),
        scope,
    };
    match app.store.execute(beneficiary, command, ctx).await? {
        Ok(executed) => Ok(executed),
        Err(Rejection::Refused(err)) => Err(err.into()),
        Err(Rejection::Conflict) => Err(ApiError::concurrent_write()),
        Err(Rejection::IdempotencyKeyReused) => Err(ApiError::idempotency_key_reused()),
        Err(Rejection::OutOfScope) => Err(ApiError::beneficiary_not_found()),
    }
}

fn replay_headers(executed: &Executed) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if executed.replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    headers
}
