//! Extractors that turn every malformed request into a problem document naming the field.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::problem::ApiError;

/// A JSON body, parsed strictly: 415 without a JSON content type, 413 over the size limit,
/// 400 for malformed JSON, 422 naming the field for a missing, unknown or invalid member.
/// Keeps the raw bytes so that idempotent requests can be fingerprinted.
pub struct JsonBody<T> {
    pub value: T,
    pub raw: Bytes,
}

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json" || mime.ends_with("+json")
            })
            .unwrap_or(false);
        if !json_type {
            return Err(ApiError::problem(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Unsupported media type",
                "send the body as JSON with `Content-Type: application/json`",
                Some("Content-Type".into()),
            ));
        }
        let raw = Bytes::from_request(req, state)
            .await
            .map_err(|rejection| match rejection {
                BytesRejection::FailedToBufferBody(_)
                    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE =>
                {
                    too_large()
                }
                other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => too_large(),
                other => ApiError::malformed(other.body_text()),
            })?;
        let value = parse_json(&raw)?;
        Ok(Self { value, raw })
    }
}

fn too_large() -> ApiError {
    ApiError::problem(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "Payload too large",
        format!("request bodies are limited to {} bytes", crate::BODY_LIMIT),
        None,
    )
}

/// Parses a JSON document into `T`, separating syntax errors (400) from shape errors (422).
pub fn parse_json<T: DeserializeOwned>(raw: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(raw)
        .map_err(|e| ApiError::malformed(format!("the body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::invalid("", "the body must be a JSON object"));
    }
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner().to_string();
        let field = field_name(&path, &inner);
        let detail = if field.is_empty() {
            inner
        } else {
            format!("`{field}`: {inner}")
        };
        ApiError::invalid(field, detail)
    })
}

/// Parses a query string into `T` (which should deny unknown fields), naming the parameter.
pub fn parse_query<T: DeserializeOwned>(raw: Option<&str>) -> Result<T, ApiError> {
    let raw = raw.unwrap_or("");
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(raw.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner().to_string();
        let field = field_name(&path, &inner);
        ApiError::invalid(field, format!("query parameter: {inner}"))
    })
}

/// The field a serde error is about: the path when it points inside the document, otherwise
/// the name quoted in "missing field `x`" / "unknown field `x`".
fn field_name(path: &str, message: &str) -> String {
    if path != "." && !path.is_empty() {
        return path.to_owned();
    }
    for marker in ["missing field `", "unknown field `", "duplicate field `"] {
        if let Some(name) = message
            .split(marker)
            .nth(1)
            .and_then(|rest| rest.split('`').next())
        {
            return name.to_owned();
        }
    }
    String::new()
}

/// Parses a beneficiary id from the path; anything that is not a UUID names no beneficiary.
pub fn beneficiary_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::beneficiary_not_found())
}

/// The `Idempotency-Key` header, if sent.
#[derive(Debug, Clone)]
pub struct IdempotencyHeader(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyHeader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get("idempotency-key") else {
            return Ok(Self(None));
        };
        let key = value
            .to_str()
            .ok()
            .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| {
                ApiError::invalid(
                    "Idempotency-Key",
                    "the Idempotency-Key header must be 1 to 255 visible ASCII characters",
                )
            })?;
        Ok(Self(Some(key.to_owned())))
    }
}

impl IdempotencyHeader {
    /// The key and a fingerprint of the request it was first used with.
    pub fn with_request(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Option<filiera_store::IdempotencyKey> {
        let key = self.0.clone()?;
        let canonical = serde_json::from_slice::<serde_json::Value>(body)
            .map(|v| v.to_string())
            .unwrap_or_default();
        let mut hasher = Sha256::new();
        hasher.update(method.as_bytes());
        hasher.update([0]);
        hasher.update(path.as_bytes());
        hasher.update([0]);
        hasher.update(canonical.as_bytes());
        Some(filiera_store::IdempotencyKey {
            key,
            request_hash: hex::encode(hasher.finalize()),
        })
    }
}

/// Who is calling. Until authentication exists (SPEC 5) every caller is `anonymous`; handlers
/// already take it so that authorisation can be added as one layer.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The principal recorded in event metadata.
    pub subject: String,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(_: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self {
            subject: "anonymous".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        on: chrono::NaiveDate,
        stage: String,
    }

    fn field_of(raw: &str) -> Option<String> {
        match parse_json::<Body>(raw.as_bytes()) {
            Err(ApiError::Problem { field, status, .. }) => {
                assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{raw}");
                field
            }
            other => panic!("{raw}: {other:?}"),
        }
    }

    #[test]
    fn shape_errors_name_the_field() {
        assert_eq!(field_of(r#"{"stage": "x"}"#).as_deref(), Some("on"));
        assert_eq!(
            field_of(r#"{"on": "2024-13-01", "stage": "x"}"#).as_deref(),
            Some("on")
        );
        assert_eq!(
            field_of(r#"{"on": "2024-01-01", "stage": 3}"#).as_deref(),
            Some("stage")
        );
        assert_eq!(
            field_of(r#"{"on": "2024-01-01", "stage": "x", "extra": 1}"#).as_deref(),
            Some("extra")
        );
    }

    #[test]
    fn syntax_errors_are_bad_requests() {
        match parse_json::<Body>(b"{\"on\": ") {
            Err(ApiError::Problem { status, code, .. }) => {
                assert_eq!((status, code), (StatusCode::BAD_REQUEST, "malformed_json"));
            }
            other => panic!("{other:?}"),
        }
    }
}
