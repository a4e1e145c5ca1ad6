//! The personal-data vault over HTTP (SPEC 5.2): reading a beneficiary's identity (logged),
//! finding a beneficiary by fiscal code, erasing an identity, and the access log.
//!
//! Identities live only in the vault (`filiera-vault`), encrypted; nothing here logs them.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use filiera_domain::PathwayCommand;
use filiera_store::{CommandContext, Rejection};
use filiera_vault::{AccessLogPage, AccessLogQuery, Erasure, Person, Reader, VaultError};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::access;
use crate::extract::{Caller, PathSegment, beneficiary_id, parse_query};
use crate::problem::ApiError;
use crate::problem::responses::{
    BadRequest, Gone, InternalError, NotFound, ServiceUnavailable, UnprocessableEntity,
};

/// The OpenAPI tag of these routes.
pub const TAG: &str = "personal data";

/// The vault of this service.
pub(crate) fn vault(app: &AppState) -> Result<&filiera_vault::Vault, ApiError> {
    app.vault.as_ref().ok_or_else(|| {
        ApiError::Internal("the personal-data vault is not configured in this process".into())
    })
}

/// Reads a beneficiary's identity. Every read is written to the access log first.
#[utoipa::path(
    get,
    path = "/v1/beneficiaries/{id}/person",
    tag = TAG,
    operation_id = "read_person",
    params(crate::beneficiaries::BeneficiaryIdParam),
    responses(
        (status = 200, description = "The identity.", body = Person),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 410, response = Gone),
        (status = 500, response = InternalError),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[tracing::instrument(skip_all, fields(beneficiary_id = %id))]
pub async fn read_person(
    State(app): State<AppState>,
    PathSegment(id): PathSegment,
    caller: Caller,
) -> Result<Json<Person>, ApiError> {
    let beneficiary = beneficiary_id(&id)?;
    access::load_visible(&app, &caller, beneficiary).await?;
    let reader = Reader {
        subject: caller.subject.clone(),
        role: caller.principal.role.as_str().to_owned(),
    };
    match vault(&app)?.read_person(beneficiary, &reader).await? {
        Some(person) => Ok(Json(person)),
        None => Err(VaultError::NotFound.into()),
    }
}

/// Erases a beneficiary's identity for good (crypto-shredding) and records
/// `PersonalDataErased`; metrics do not change. Later reads answer 410.
#[utoipa::path(
    delete,
    path = "/v1/beneficiaries/{id}/person",
    tag = TAG,
    operation_id = "erase_person",
    params(crate::beneficiaries::BeneficiaryIdParam),
    responses(
        (status = 204, description = "Erased; `PersonalDataErased` is in the history."),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 410, response = Gone),
        (status = 500, response = InternalError),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[tracing::instrument(skip_all, fields(beneficiary_id = %id))]
pub async fn erase_person(
    State(app): State<AppState>,
    PathSegment(id): PathSegment,
    caller: Caller,
) -> Result<Response, ApiError> {
    let beneficiary = beneficiary_id(&id)?;
    let pathway = app
        .store
        .load(beneficiary)
        .await?
        .ok_or_else(ApiError::beneficiary_not_found)?;
    let erased_before = match vault(&app)?.erase(beneficiary, &caller.subject).await? {
        Erasure::Erased { .. } => false,
        Erasure::AlreadyErased { .. } => true,
    };
    // The event is recorded after the data key is gone; a retry after a failure in between
    // finds the vault erased and records the missing event.
    if erased_before && pathway.personal_data_erased() {
        return Err(filiera_domain::PathwayError::AlreadyErased.into());
    }
    let ctx = CommandContext::new(caller.subject.clone());
    match app
        .store
        .execute(beneficiary, PathwayCommand::RecordErasure, ctx)
        .await?
    {
        Ok(_) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(Rejection::Refused(filiera_domain::PathwayError::AlreadyErased)) => {
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Err(Rejection::Refused(error)) => Err(error.into()),
        Err(Rejection::Conflict) => Err(ApiError::concurrent_write()),
        Err(Rejection::IdempotencyKeyReused) => Err(ApiError::idempotency_key_reused()),
        Err(Rejection::OutOfScope) => Err(ApiError::beneficiary_not_found()),
    }
}

/// `GET /v1/beneficiaries?fiscal_code=…`
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FindParams {
    /// The fiscal code (codice fiscale), in any case, spaces ignored: 6 letters, 2 digits, a
    /// month letter, 2 digits, a letter, 3 digits, a letter (digits may be the letters
    /// `LMNPQRSTUV`).
    // `filiera_vault::person::FISCAL_CODE_PATTERN` (a test checks they agree).
    #[param(
        pattern = "^[A-Za-z]{6}[0-9LMNPQRSTUVlmnpqrstuv]{2}[ABCDEHLMPRSTabcdehlmprst][0-9LMNPQRSTUVlmnpqrstuv]{2}[A-Za-z][0-9LMNPQRSTUVlmnpqrstuv]{3}[A-Za-z]$"
    )]
    fiscal_code: String,
}

/// The beneficiaries found.
#[derive(Debug, Serialize, ToSchema)]
pub struct FoundPage {
    /// At most one id: a fiscal code belongs to one beneficiary.
    pub beneficiaries: Vec<Uuid>,
}

/// Finds a beneficiary by fiscal code through the keyed blind index; only beneficiaries in the
/// caller's scope are found.
#[utoipa::path(
    get,
    path = "/v1/beneficiaries",
    tag = TAG,
    operation_id = "find_beneficiary",
    params(FindParams),
    responses(
        (status = 200, description = "The beneficiary with this fiscal code, if any in scope.",
            body = FoundPage),
        (status = 422, response = UnprocessableEntity),
        (status = 500, response = InternalError),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub async fn find_beneficiary(
    State(app): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Json<FoundPage>, ApiError> {
    let params: FindParams = parse_query(query.as_deref())?;
    let found = vault(&app)?
        .find_by_fiscal_code(&params.fiscal_code)
        .await?;
    let mut beneficiaries = Vec::new();
    if let Some(id) = found {
        match access::load_visible(&app, &caller, id).await {
            Ok(_) => beneficiaries.push(id),
            // Out of scope reads as not found: existence does not leak.
            Err(ApiError::Problem { status, .. }) if status == StatusCode::NOT_FOUND => {}
            Err(other) => return Err(other),
        }
    }
    Ok(Json(FoundPage { beneficiaries }))
}

/// Who read or erased whose identity, newest first.
#[utoipa::path(
    get,
    path = "/v1/access-log",
    tag = TAG,
    operation_id = "access_log",
    params(AccessLogQuery),
    responses(
        (status = 200, description = "A page of the access log.", body = AccessLogPage),
        (status = 422, response = UnprocessableEntity),
        (status = 500, response = InternalError),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub async fn access_log(
    State(app): State<AppState>,
    _caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Json<AccessLogPage>, ApiError> {
    let query: AccessLogQuery = parse_query(query.as_deref())?;
    Ok(Json(vault(&app)?.access_log(&query).await?))
}
