//! The one place where errors become HTTP answers: RFC 9457 problem documents.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use filiera_domain::{PathwayError, Refusal};
use filiera_store::StoreError;
use problem_details::ProblemDetails;
use serde::Serialize;

/// Members added to every problem document.
#[derive(Debug, Serialize)]
struct Extensions {
    /// Stable machine-readable code; `type` is `/problems/<code>`.
    code: &'static str,
    /// The request field (body member, query parameter or header) at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
}

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

impl ApiError {
    /// The human-readable explanation, for command-line callers of the same validation.
    pub fn detail(&self) -> &str {
        match self {
            Self::Problem { detail, .. } => detail,
            Self::Internal(_) => "internal error",
        }
    }
}

impl From<PathwayError> for ApiError {
    fn from(err: PathwayError) -> Self {
        let (status, title) = match err.refusal() {
            Refusal::Invalid => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid command"),
            Refusal::Conflict => (StatusCode::CONFLICT, "Command conflicts with the pathway"),
            Refusal::NotFound => (StatusCode::NOT_FOUND, "Beneficiary not found"),
        };
        Self::problem(
            status,
            err.code(),
            title,
            err.to_string(),
            err.field().map(str::to_owned),
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        Self::Internal(error_chain(&err))
    }
}

/// The error and its sources, for the log.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
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
                    .with_extensions(Extensions { code, field })
                    .into_response()
            }
            Self::Internal(cause) => {
                tracing::error!(error = %cause, "request failed");
                ProblemDetails::from_status_code(StatusCode::INTERNAL_SERVER_ERROR)
                    .with_title("Internal error")
                    .with_detail("the request could not be completed; it has been logged")
                    .with_extensions(Extensions {
                        code: "internal_error",
                        field: None,
                    })
                    .into_response()
            }
        }
    }
}
