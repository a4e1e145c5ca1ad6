//! The one place where errors become HTTP answers: RFC 9457 problem documents.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use filiera_contract::{QueryError, refusal_detail};
use filiera_domain::{PathwayError, Refusal};
use filiera_projections::ProjectionError;
pub use filiera_store::error_chain;
use filiera_store::{Outage, StoreError};
use problem_details::ProblemDetails;
use serde::Serialize;
use utoipa::ToSchema;

/// Members added to every problem document.
#[derive(Debug, Serialize)]
struct Extensions {
    /// Stable machine-readable code; `type` is `/problems/<code>`.
    code: &'static str,
    /// The request field (body member, query parameter or header) at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
    /// Why the store cannot serve (`disk_full`, `storage_failure`, `database_unavailable`),
    /// on 503 and 507 answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    /// The W3C trace id of the request, as in the server's logs and traces.
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_id: Option<String>,
}

/// Seconds a client is told to wait (`Retry-After`) before retrying after an outage.
pub const RETRY_AFTER_SECONDS: u64 = 5;

/// An error answered to the client. Storage failures are logged and answered as a bare 500.
#[derive(Debug)]
pub enum ApiError {
    /// A client error with a stable code and, where it applies, the field at fault.
    Problem {
        status: StatusCode,
        code: &'static str,
        title: &'static str,
        detail: String,
        field: Option<String>,
    },
    /// The store is out of space or out of reach for now (a full disk, a database that does
    /// not answer): 507 or 503 with `Retry-After`. Nothing was written; the cause is logged.
    Unavailable(Outage),
    /// A write whose outcome the store cannot tell (the connection died while it committed),
    /// or that was stored but could not be read back (`stored`): 503 with `Retry-After`;
    /// retrying with the same `Idempotency-Key` answers the first outcome.
    OutcomeUnknown {
        /// Whether the write is known to be stored.
        stored: bool,
    },
    /// `/readyz`: the store cannot commit now: 503 with `Retry-After` and the reason.
    NotReady(filiera_store::NotReady),
    /// A query on a read model that an upgrade is rebuilding: 503 with `Retry-After`.
    Upgrading(String),
    /// `/readyz` once a shutdown was asked for: 503 `shutting_down` with `Retry-After`, so
    /// that a proxy sends new requests to another replica while this one drains.
    ShuttingDown,
    /// Something failed on our side; the cause is logged, never shown.
    Internal(String),
}

impl ApiError {
    /// 400: the body is not JSON at all.
    pub fn malformed(detail: impl Into<String>) -> Self {
        Self::problem(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "Malformed JSON",
            detail,
            None,
        )
    }

    /// 422: a field is missing, unknown or invalid.
    pub fn invalid(field: impl Into<String>, detail: impl Into<String>) -> Self {
        let field = field.into();
        Self::problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "Invalid field",
            detail,
            (!field.is_empty()).then_some(field),
        )
    }

    /// 404: no such beneficiary.
    pub fn beneficiary_not_found() -> Self {
        Self::problem(
            StatusCode::NOT_FOUND,
            "beneficiary_not_found",
            "Beneficiary not found",
            "no beneficiary has this id",
            None,
        )
    }

    /// 422: a query names a territory the registry does not have; the same problem as a
    /// command naming one.
    pub fn unknown_territory(code: &str) -> Self {
        PathwayError::UnknownTerritory {
            territory: code.to_owned(),
        }
        .into()
    }

    /// 409: a concurrent write on the same beneficiary won.
    pub fn concurrent_write() -> Self {
        Self::problem(
            StatusCode::CONFLICT,
            "concurrent_write",
            "Concurrent write",
            "another command on this beneficiary was stored first; read the state and retry",
            None,
        )
    }

    /// 422: an idempotency key was reused for a different request.
    pub fn idempotency_key_reused() -> Self {
        Self::problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "Idempotency key reused",
            "this Idempotency-Key was already used for a different request",
            Some("Idempotency-Key".into()),
        )
    }

    /// Any client error.
    pub fn problem(
        status: StatusCode,
        code: &'static str,
        title: &'static str,
        detail: impl Into<String>,
        field: Option<String>,
    ) -> Self {
        Self::Problem {
            status,
            code,
            title,
            detail: detail.into(),
            field,
        }
    }
}

impl From<PathwayError> for ApiError {
    fn from(err: PathwayError) -> Self {
        let (status, title) = match err.refusal() {
            Refusal::Invalid => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid request"),
            Refusal::Conflict => (StatusCode::CONFLICT, "Command conflicts with the pathway"),
            Refusal::NotFound => (StatusCode::NOT_FOUND, "Beneficiary not found"),
            Refusal::Gone => (StatusCode::GONE, "Erased"),
        };
        Self::problem(
            status,
            err.code(),
            title,
            refusal_detail(&err),
            err.field().map(str::to_owned),
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        if let StoreError::OutcomeUnknown { stored, .. } = &err {
            tracing::warn!(error = %error_chain(&err), "write outcome unknown");
            return Self::OutcomeUnknown { stored: *stored };
        }
        match err.outage() {
            Some(outage) => {
                tracing::warn!(
                    outage = outage.as_str(),
                    error = %error_chain(&err),
                    "request not served: store outage"
                );
                Self::Unavailable(outage)
            }
            None => Self::Internal(error_chain(&err)),
        }
    }
}

impl From<ProjectionError> for ApiError {
    fn from(err: ProjectionError) -> Self {
        match &err {
            ProjectionError::UnknownProjection { .. } => ApiError::problem(
                StatusCode::NOT_FOUND,
                "unknown_projection",
                "Unknown projection",
                err.to_string(),
                None,
            ),
            ProjectionError::AlreadyRebuilding { .. } => ApiError::problem(
                StatusCode::CONFLICT,
                "already_rebuilding",
                "Already rebuilding",
                err.to_string(),
                None,
            ),
            ProjectionError::Outdated { .. } => ApiError::Upgrading(err.to_string()),
            _ => match err {
                ProjectionError::Store(err) => err.into(),
                ProjectionError::Database(err) => filiera_store::StoreError::Database(err).into(),
                err => ApiError::Internal(error_chain(&err)),
            },
        }
    }
}

impl From<QueryError> for ApiError {
    fn from(err: QueryError) -> Self {
        match err {
            QueryError::Invalid { field, detail } => ApiError::invalid(field, detail),
            QueryError::Refused(err) => err.into(),
        }
    }
}

impl From<filiera_vault::VaultError> for ApiError {
    fn from(err: filiera_vault::VaultError) -> Self {
        use filiera_vault::VaultError as V;
        match err {
            V::InvalidPerson(problem) => {
                let field = format!("person.{}", problem.field());
                Self::invalid(field.clone(), format!("`{field}`: {problem}"))
            }
            V::AlreadyStored => Self::problem(
                StatusCode::CONFLICT,
                "person_already_stored",
                "Personal data already stored",
                err.to_string(),
                None,
            ),
            V::FiscalCodeTaken => Self::problem(
                StatusCode::CONFLICT,
                "fiscal_code_taken",
                "Fiscal code taken",
                "another beneficiary has this fiscal code: look it up with \
                 `GET /v1/beneficiaries?fiscal_code=`",
                Some("person.fiscal_code".into()),
            ),
            V::Erased { .. } => Self::problem(
                StatusCode::GONE,
                "personal_data_erased",
                "Erased",
                "this beneficiary's personal data was erased",
                None,
            ),
            V::NotFound => Self::problem(
                StatusCode::NOT_FOUND,
                "person_not_found",
                "No personal data",
                "no personal data is stored for this beneficiary",
                None,
            ),
            V::Database(store) => store.into(),
            other => Self::Internal(error_chain(&other)),
        }
    }
}

/// How an outage is answered: what happened and what the operator must do, since the client
/// can only wait.
#[derive(Debug, Clone, Copy)]
pub struct OutageAnswer {
    /// 507 for a full disk, 503 otherwise.
    pub status: StatusCode,
    /// The problem's stable code.
    pub code: &'static str,
    /// The problem's title.
    pub title: &'static str,
    /// What is wrong, in a few words.
    pub cause: &'static str,
    /// What the operator must do.
    pub remedy: &'static str,
}

impl OutageAnswer {
    /// The answer to `outage`.
    pub fn of(outage: Outage) -> Self {
        match outage {
            Outage::DiskFull => Self {
                status: StatusCode::INSUFFICIENT_STORAGE,
                code: "storage_full",
                title: "Storage full",
                cause: "the disk holding the database is full",
                remedy: "the operator must free space on it (the data folder's volume when \
                         embedded); writes resume by themselves",
            },
            Outage::StorageFailure => Self {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "storage_failure",
                title: "Storage failure",
                cause: "the database's storage refuses writes (read-only, failing or exhausted)",
                remedy: "the operator must check the database's volume and logs; writes resume \
                         by themselves once it accepts them",
            },
            Outage::Unreachable => Self {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "database_unavailable",
                title: "Database unavailable",
                cause: "the database does not answer (down, unreachable or overloaded)",
                remedy: "the operator must check the database server; requests succeed again \
                         by themselves once it answers",
            },
        }
    }

    /// The detail of a refused request.
    fn detail(&self) -> String {
        format!(
            "{}: {}. A write refused this way stored nothing: retry it later with the same \
             Idempotency-Key",
            self.cause, self.remedy
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::Problem {
                status,
                code,
                title,
                detail,
                field,
            } => {
                let problem_type = format!("/problems/{code}").parse::<axum::http::Uri>().ok();
                let mut problem = ProblemDetails::from_status_code(status)
                    .with_title(title)
                    .with_detail(detail);
                problem.r#type = problem_type.map(Into::into);
                problem
                    .with_extensions(Extensions {
                        code,
                        field,
                        reason: None,
                        trace_id: crate::trace::current_trace_id(),
                    })
                    .into_response()
            }
            Self::Unavailable(outage) => {
                let answer = OutageAnswer::of(outage);
                unavailable(
                    answer.status,
                    answer.code,
                    answer.title,
                    answer.detail(),
                    Some(outage),
                )
            }
            Self::OutcomeUnknown { stored } => unavailable(
                StatusCode::SERVICE_UNAVAILABLE,
                "outcome_unknown",
                "Outcome unknown",
                if stored {
                    "the write was stored, but its result could not be read back from the \
                     database. Retry with the same Idempotency-Key to get the answer; without \
                     one, read the beneficiary's history before writing again"
                } else {
                    "the connection to the database failed while the write was committing, so \
                     it may or may not have been stored. Retry with the same Idempotency-Key to \
                     get the first outcome; without one, read the beneficiary's history before \
                     writing again"
                },
                None,
            ),
            Self::NotReady(not_ready) => {
                let answer = OutageAnswer::of(not_ready.outage);
                unavailable(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not_ready",
                    "Not ready",
                    format!(
                        "the event store cannot commit: {} ({}); {}",
                        answer.cause, not_ready.detail, answer.remedy
                    ),
                    Some(not_ready.outage),
                )
            }
            Self::ShuttingDown => unavailable(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "Shutting down",
                "this process is shutting down: it serves the requests it gets for its drain \
                 delay and then stops; send requests to another replica",
                None,
            ),
            Self::Upgrading(detail) => unavailable(
                StatusCode::SERVICE_UNAVAILABLE,
                "projection_upgrading",
                "Read model rebuilding after an upgrade",
                detail,
                None,
            ),
            Self::Internal(cause) => {
                let trace_id = crate::trace::current_trace_id();
                // The trace id is named here too: at FILIERA_LOG=warn the line has no span.
                tracing::error!(error = %cause, trace_id = trace_id.as_deref().map(tracing::field::display), "request failed");
                let mut problem =
                    ProblemDetails::from_status_code(StatusCode::INTERNAL_SERVER_ERROR);
                problem.r#type = "/problems/internal_error"
                    .parse::<axum::http::Uri>()
                    .ok()
                    .map(Into::into);
                problem
                    .with_title("Internal error")
                    .with_detail("the request could not be completed; it has been logged")
                    .with_extensions(Extensions {
                        code: "internal_error",
                        field: None,
                        reason: None,
                        trace_id,
                    })
                    .into_response()
            }
        }
    }
}

/// A 503/507 problem document with `Retry-After` and the outage's `reason`, if known.
fn unavailable(
    status: StatusCode,
    code: &'static str,
    title: &'static str,
    detail: impl Into<String>,
    outage: Option<Outage>,
) -> Response {
    let mut problem = ProblemDetails::from_status_code(status)
        .with_title(title)
        .with_detail(detail.into());
    problem.r#type = format!("/problems/{code}")
        .parse::<axum::http::Uri>()
        .ok()
        .map(Into::into);
    let mut response = problem
        .with_extensions(Extensions {
            code,
            field: None,
            reason: outage.map(Outage::as_str),
            trace_id: crate::trace::current_trace_id(),
        })
        .into_response();
    response.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from(RETRY_AFTER_SECONDS),
    );
    response
}

// The schema of what `ApiError::into_response` writes, for the OpenAPI document only; a test
// checks that real problem documents conform to it.
/// An RFC 9457 problem document: every error of the API, with a stable `code`.
#[derive(Debug, ToSchema)]
#[schema(example = json!({
    "type": "/problems/invalid_field",
    "title": "Invalid field",
    "status": 422,
    "detail": "`on`: premature end of input",
    "code": "invalid_field",
    "field": "on"
}))]
pub struct Problem {
    /// `/problems/<code>`, relative to the API's address.
    #[schema(format = "uri-reference")]
    pub r#type: String,
    /// Short summary of the kind of problem; the same for every occurrence of a `code`.
    pub title: String,
    /// The HTTP status code of the answer.
    #[schema(minimum = 400, maximum = 599)]
    pub status: u16,
    /// What went wrong this time, for a human.
    pub detail: String,
    /// Stable machine-readable code, e.g. `invalid_field`, `beneficiary_not_found`,
    /// `pathway_closed`, `concurrent_write`.
    pub code: String,
    /// The request field (body member, query parameter or header) at fault, when there is one.
    #[schema(value_type = String, required = false)]
    pub field: Option<String>,
    /// On 503 and 507: why the store cannot serve (`disk_full`, `storage_failure`,
    /// `database_unavailable`).
    #[schema(value_type = String, required = false)]
    pub reason: Option<String>,
    /// The W3C trace id of the request (32 lowercase hex digits): the caller's, when it sent a
    /// `traceparent` header, or a new one. The server's log lines and exported traces of the
    /// request carry the same id: quote it when reporting a problem.
    #[schema(value_type = String, required = false, pattern = "^[0-9a-f]{32}$")]
    pub trace_id: Option<String>,
}

/// Reusable problem answers for the OpenAPI document, one per status; each describes the codes
/// that can occur with it.
pub mod responses {
    use utoipa::ToResponse;

    use super::Problem;

    /// 400: the body is not JSON (`malformed_json`), a path segment is not decodable or, for
    /// `{id}`, not a UUID (`malformed_path`, `field` names the parameter), or the request head
    /// is malformed (`malformed_request`).
    #[derive(ToResponse)]
    #[response(content_type = "application/problem+json")]
    pub struct BadRequest(#[allow(dead_code)] Problem);

    /// 404: no beneficiary has this id, or none in the caller's scope
    /// (`beneficiary_not_found`), or no projection has this name (`unknown_projection`).
    #[derive(ToResponse)]
    #[response(content_type = "application/problem+json")]
    pub struct NotFound(#[allow(dead_code)] Problem);

    /// 409: the command conflicts with the pathway (e.g. `pathway_closed`, `pathway_open`,
    /// `no_open_stage`, `nothing_to_undo`, `already_enrolled`), another write on the same
    /// beneficiary was stored first (`concurrent_write`: read the state and retry), or a
    /// rebuild is already running (`already_rebuilding`).
    #[derive(ToResponse)]
    #[response(content_type = "application/problem+json")]
    pub struct Conflict(#[allow(dead_code)] Problem);

    /// 410 `personal_data_erased`: the beneficiary's personal data was erased for good.
    #[derive(ToResponse)]
    #[response(content_type = "application/problem+json")]
    pub struct Gone(#[allow(dead_code)] Problem);

    /// 413 `payload_too_large`: the body is over 64 KiB.
    #[derive(ToResponse)]
    #[response(content_type = "application/problem+json")]
    pub struct PayloadTooLarge(#[allow(dead_code)] Problem);

    /// 415 `unsupported_media_type`: the body is not sent as `application/json`.
    #[derive(ToResponse)]
    #[response(content_type = "application/problem+json")]
    pub struct UnsupportedMediaType(#[allow(dead_code)] Problem);

    /// 422: a field, query parameter or header is missing, unknown or invalid; `field` names it
    /// (`invalid_field`, `unknown_stage`, `unknown_territory`, `unknown_provider`, `out_of_order`,
    /// `date_in_future`, `date_too_early`, `automatic_outcome`, `same_territory`, `empty_team`,
    /// `duplicate_team_member`, `team_too_small`, `idempotency_key_reused`).
    #[derive(ToResponse)]
    #[response(content_type = "application/problem+json")]
    pub struct UnprocessableEntity(#[allow(dead_code)] Problem);

    /// 500 `internal_error`: something failed on the service's side; the cause is logged, never
    /// shown.
    #[derive(ToResponse)]
    #[response(content_type = "application/problem+json")]
    pub struct InternalError(#[allow(dead_code)] Problem);

    /// 503 with `Retry-After`: the database does not answer (`database_unavailable`), its
    /// storage refuses writes (`storage_failure`), or, from `/readyz`, the store cannot commit
    /// (`not_ready`, with `reason`); a write refused so stored nothing. `outcome_unknown`: the
    /// connection failed while a write committed; retry with the same `Idempotency-Key`.
    /// `projection_upgrading`: a report while the read model is rebuilt after an upgrade.
    /// `shutting_down`: from `/readyz`, the process is draining before it stops.
    #[derive(ToResponse)]
    #[response(
        content_type = "application/problem+json",
        headers(("Retry-After" = u64, description = "Seconds to wait before retrying."))
    )]
    pub struct ServiceUnavailable(#[allow(dead_code)] Problem);

    /// 507 `storage_full` with `Retry-After`: the disk holding the database is full; nothing was
    /// written, and writes resume by themselves once the operator frees space.
    #[derive(ToResponse)]
    #[response(
        content_type = "application/problem+json",
        headers(("Retry-After" = u64, description = "Seconds to wait before retrying."))
    )]
    pub struct InsufficientStorage(#[allow(dead_code)] Problem);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The domain names no route; the client-visible detail still says where codes are listed.
    #[test]
    fn an_unknown_territory_points_to_the_registry_route() {
        let ApiError::Problem {
            status,
            code,
            detail,
            field,
            ..
        } = ApiError::unknown_territory("ATLANTIS")
        else {
            panic!("a problem document");
        };
        assert_eq!(
            (status, code, detail.as_str(), field.as_deref()),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_territory",
                "unknown territory `ATLANTIS`; list valid codes with GET /v1/territories",
                Some("territory")
            )
        );
    }

    #[test]
    fn an_unknown_provider_points_to_the_provider_route() {
        let ApiError::Problem {
            status,
            code,
            detail,
            field,
            ..
        } = PathwayError::UnknownProvider {
            provider: "coop.omega".into(),
        }
        .into()
        else {
            panic!("a problem document");
        };
        assert_eq!(
            (status, code, detail.as_str(), field.as_deref()),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_provider",
                "unknown provider `coop.omega`: not in the configured provider registry; \
                 list them with GET /v1/providers",
                Some("provider")
            )
        );
    }
}
