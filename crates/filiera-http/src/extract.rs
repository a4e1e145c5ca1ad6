//! Extractors that turn every malformed request into a problem document naming the field.

use std::cell::Cell;
use std::fmt;

use axum::body::Bytes;
use axum::extract::path::ErrorKind;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::{DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use uuid::Uuid;

use crate::problem::ApiError;

/// A JSON body, parsed strictly: 415 without a JSON content type, 413 over the size limit,
/// 408 when it does not arrive in time, 400 for malformed JSON, 422 naming the field for a
/// missing, unknown, repeated or invalid member. Keeps the raw bytes so that idempotent
/// requests can be fingerprinted.
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
                other if timed_out(&other) => ApiError::problem(
                    StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    "Request timeout",
                    "the request body did not arrive in time; send it whole, at once",
                    None,
                ),
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

/// Whether reading the body failed because it did not arrive before the server's body
/// deadline (`ServeSettings::body_timeout`).
fn timed_out(rejection: &BytesRejection) -> bool {
    let mut source = std::error::Error::source(rejection);
    while let Some(err) = source {
        if err.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// Parses a JSON document into `T`, separating syntax errors (400) from shape errors (422).
/// A key repeated in an object, at any depth, is a shape error naming its path: serde_json
/// would keep the last value, so two readers of the same body could see different requests.
pub fn parse_json<T: DeserializeOwned>(raw: &[u8]) -> Result<T, ApiError> {
    let value = parse_unique_keys(raw)?;
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

/// The JSON document in `raw` as a [`Value`], refusing repeated keys.
fn parse_unique_keys(raw: &[u8]) -> Result<Value, ApiError> {
    let repeated = Cell::new(None);
    let mut de = serde_json::Deserializer::from_slice(raw);
    let value = UniqueKeys {
        path: String::new(),
        repeated: &repeated,
    }
    .deserialize(&mut de)
    .and_then(|value| de.end().map(|()| value));
    value.map_err(|err| match repeated.take() {
        Some(field) => {
            let detail = format!("`{field}` is given more than once");
            ApiError::invalid(field, detail)
        }
        None => ApiError::malformed(format!("the body is not valid JSON: {err}")),
    })
}

/// Reads a JSON value like `Value`'s own `Deserialize`, except that an object repeating a key
/// fails, the key's path left in `repeated`, written as `serde_path_to_error` writes paths
/// (`person.given_name`, `items[2].code`).
struct UniqueKeys<'r> {
    /// Where the value being read sits in the document; empty at the top.
    path: String,
    repeated: &'r Cell<Option<String>>,
}

impl<'r> UniqueKeys<'r> {
    fn member(&self, key: &str) -> Self {
        let path = if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        };
        Self {
            path,
            repeated: self.repeated,
        }
    }

    fn element(&self, index: usize) -> Self {
        Self {
            path: format!("{}[{index}]", self.path),
            repeated: self.repeated,
        }
    }
}

impl<'de> DeserializeSeed<'de> for UniqueKeys<'_> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<Value, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UniqueKeys<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self.element(items.len()))? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let member = self.member(&key);
            if members.contains_key(&key) {
                let message = format!("duplicate field `{}`", member.path);
                self.repeated.set(Some(member.path));
                return Err(serde::de::Error::custom(message));
            }
            let value = map.next_value_seed(member)?;
            members.insert(key, value);
        }
        Ok(Value::Object(members))
    }
}

/// A path segment (`{id}`, `{name}`), percent-decoded; one that does not decode to UTF-8 (e.g.
/// `%FF`) is answered 400 `malformed_path` naming the parameter, not axum's plain-text 400.
#[derive(Debug, Clone)]
pub struct PathSegment(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathSegment {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(segment)) => Ok(Self(segment)),
            Err(PathRejection::FailedToDeserializePathParams(err)) => match err.kind() {
                ErrorKind::InvalidUtf8InPathParam { key } => Err(ApiError::problem(
                    StatusCode::BAD_REQUEST,
                    "malformed_path",
                    "Malformed path",
                    format!("the `{key}` segment of the path is not UTF-8 once percent-decoded"),
                    Some(key.clone()),
                )),
                _ => Err(ApiError::Internal(format!(
                    "path parameters unreadable: {}",
                    err.body_text()
                ))),
            },
            Err(other) => Err(ApiError::Internal(format!(
                "path parameters unavailable: {}",
                other.body_text()
            ))),
        }
    }
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

/// Parses the beneficiary id of the path (`{id}`): a malformed one is answered 400
/// `malformed_path` naming `id` and the expected form, so that a client can tell a typo from a
/// beneficiary that does not exist (404, for a well-formed id).
pub fn beneficiary_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| {
        ApiError::problem(
            StatusCode::BAD_REQUEST,
            "malformed_path",
            "Malformed path",
            "the `id` segment of the path must be a UUID, such as \
             `0191f2a4-6c1e-7d3a-9b2f-5e8c4d7a1b20` (the `id` answered at enrolment)",
            Some("id".into()),
        )
    })
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
        Some(filiera_store::IdempotencyKey::for_request(
            key,
            &[method.as_bytes(), path.as_bytes(), canonical.as_bytes()],
        ))
    }
}

/// Who is calling: the principal of the request's bearer token, authenticated and allowed
/// on the route by [`crate::access::authorise`] before the handler runs. Handlers check
/// territory scopes with the helpers of [`crate::access`].
#[derive(Debug, Clone)]
pub struct Caller {
    /// The principal recorded in event metadata (the token's `sub`).
    pub subject: String,
    /// Role and territories.
    pub principal: filiera_auth::Principal,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let principal = parts
            .extensions
            .get::<filiera_auth::Principal>()
            .cloned()
            .ok_or_else(|| {
                ApiError::Internal(
                    "a handler needs a caller on a route whose access rule is open".into(),
                )
            })?;
        Ok(Self {
            subject: principal.subject.clone(),
            principal,
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
    fn repeated_keys_are_refused_at_any_depth() {
        assert_eq!(
            field_of(r#"{"on": "2024-01-01", "stage": "x", "on": "2024-02-01"}"#).as_deref(),
            Some("on")
        );
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Nested {
            person: serde_json::Value,
        }
        let nested = br#"{"person": {"given_name": "a", "items": [{"c": 1, "c": 2}]}}"#;
        match parse_json::<Nested>(nested) {
            Err(ApiError::Problem {
                status,
                field,
                detail,
                ..
            }) => {
                assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
                assert_eq!(field.as_deref(), Some("person.items[0].c"));
                assert_eq!(detail, "`person.items[0].c` is given more than once");
            }
            other => panic!("{other:?}"),
        }
        let twice = br#"{"person": {"given_name": "a", "given_name": "b"}}"#;
        match parse_json::<Nested>(twice) {
            Err(ApiError::Problem { field, .. }) => {
                assert_eq!(field.as_deref(), Some("person.given_name"));
            }
            other => panic!("{other:?}"),
        }
        // The same key in sibling objects is no repeat; values come through untouched.
        let siblings = br#"{"person": [{"a": 1.5, "b": null}, {"a": -2, "b": [true, "x"]}]}"#;
        let parsed = parse_json::<Nested>(siblings).unwrap();
        assert_eq!(
            parsed.person,
            serde_json::json!([{"a": 1.5, "b": null}, {"a": -2, "b": [true, "x"]}])
        );
    }

    #[test]
    fn syntax_errors_are_bad_requests() {
        for raw in [
            &b"{\"on\": "[..],
            b"{\"on\": 1} trailing",
            b"{\"on\" 1, \"on\": 2}",
        ] {
            match parse_json::<Body>(raw) {
                Err(ApiError::Problem { status, code, .. }) => {
                    assert_eq!((status, code), (StatusCode::BAD_REQUEST, "malformed_json"));
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
