//! Authorisation in one place (SPEC 5.1, ADR 0006).
//!
//! - [`RULES`] is the access table: one line per `(method, route template)` of the API, naming
//!   the roles that may call it or saying it is open. [`authorise`] applies it to every routed
//!   request before the handler runs, from axum's [`MatchedPath`]: it authenticates the bearer
//!   token (401), checks the role (403) and leaves the [`Principal`] for the handler's
//!   [`Caller`]. A route without a line is refused (500, logged): a new route cannot open
//!   silently, and a unit test fails until its line is written.
//! - The scope checks that need data, a beneficiary's current territory or a query's
//!   territory, are the helpers below, called by the handlers: a beneficiary outside the
//!   caller's territories is answered 404 like an unknown one, so that its existence does not
//!   leak; a territory outside them is 403 `territory_out_of_scope`.
//! - Browsers' `EventSource` cannot send headers: `GET /v1/events/stream` (and only it) also
//!   takes the token as `?access_token=`. Request spans record the path, never the query, so it
//!   is not logged by the service (a reverse proxy's access log is another matter:
//!   `docs/security.md`).
//! - [`describe`] writes the table into the OpenAPI document: the bearer scheme, each
//!   operation's `security`, its 401 and 403 answers and the roles in its description.

use std::collections::BTreeSet;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use filiera_auth::{AuthError, Principal, Role, Scope};
use filiera_domain::{Pathway, TerritoryCode, TerritoryRegistry};
use filiera_store::WriteScope;
use uuid::Uuid;

use crate::AppState;
use crate::extract::Caller;
use crate::problem::ApiError;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without a token.
    Open,
    /// A valid token of one of these roles; scopes are then checked by the handler.
    Roles(&'static [Role]),
}

const ADMINISTRATOR: Access = Access::Roles(&[Role::Administrator]);
/// Beneficiaries: operators in scope, administrators.
const OPERATOR: Access = Access::Roles(&[Role::Operator, Role::Administrator]);
/// Aggregates and registries: operators and evaluators (their territories), administrators.
const READER: Access = Access::Roles(&[Role::Operator, Role::Evaluator, Role::Administrator]);
/// The feed: subscribers (their territories), administrators.
const SUBSCRIBER: Access = Access::Roles(&[Role::Subscriber, Role::Administrator]);

/// The route that also accepts `?access_token=`, for browsers' `EventSource`.
pub const STREAM_ROUTE: &str = "/v1/events/stream";

/// The access table: `(method, route template, who)`. `HEAD` follows `GET`.
pub const RULES: &[(&str, &str, Access)] = &[
    ("POST", "/v1/beneficiaries", OPERATOR),
    ("GET", "/v1/beneficiaries/{id}", OPERATOR),
    ("GET", "/v1/beneficiaries/{id}/history", OPERATOR),
    ("POST", "/v1/beneficiaries/{id}/stage", OPERATOR),
    ("POST", "/v1/beneficiaries/{id}/stage/exit", OPERATOR),
    ("POST", "/v1/beneficiaries/{id}/territory", OPERATOR),
    ("POST", "/v1/beneficiaries/{id}/close", OPERATOR),
    ("POST", "/v1/beneficiaries/{id}/reopen", OPERATOR),
    ("POST", "/v1/beneficiaries/{id}/undo", OPERATOR),
    ("POST", "/v1/beneficiaries/{id}/assessment", OPERATOR),
    ("GET", "/v1/beneficiaries", OPERATOR),
    ("GET", "/v1/beneficiaries/{id}/person", OPERATOR),
    ("DELETE", "/v1/beneficiaries/{id}/person", ADMINISTRATOR),
    ("GET", "/v1/access-log", ADMINISTRATOR),
    ("GET", "/v1/territories", READER),
    ("GET", "/v1/stages", READER),
    ("GET", "/v1/providers", READER),
    ("GET", "/v1/metrics", READER),
    ("GET", "/v1/metrics/series", READER),
    ("GET", "/v1/metrics/breakdown", READER),
    ("GET", "/v1/providers/scorecard", READER),
    ("GET", "/v1/audit/reiterations", READER),
    ("GET", "/v1/reports/regional", READER),
    ("GET", "/v1/events", SUBSCRIBER),
    ("GET", STREAM_ROUTE, SUBSCRIBER),
    ("GET", "/v1/projections", ADMINISTRATOR),
    ("POST", "/v1/projections/{name}/rebuild", ADMINISTRATOR),
    ("GET", "/healthz", Access::Open),
    ("GET", "/readyz", Access::Open),
    // Aggregate figures only (request counts by route template, feed head, projection and
    // relay instruments): open like the health checks, for scrapers (docs/security.md).
    ("GET", "/metrics", Access::Open),
    ("GET", "/openapi.json", Access::Open),
    // The web dashboard's page and assets (crate::dashboard): static files without data; the
    // page then calls the routes above with the signed-in user's token.
    ("GET", crate::dashboard::INDEX_ROUTE, Access::Open),
    ("GET", crate::dashboard::ASSET_ROUTE, Access::Open),
];

/// The rule of `method` on `template`, if the table has one.
pub fn rule(method: &Method, template: &str) -> Option<Access> {
    let method = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    RULES
        .iter()
        .find(|(m, t, _)| *m == method && *t == template)
        .map(|(_, _, access)| *access)
}

/// The middleware applying [`RULES`] to every routed request (installed with
/// `Router::route_layer`, so it sees the matched route template).
pub async fn authorise(
    State(app): State<AppState>,
    matched: Option<MatchedPath>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(template) = matched.map(|m| m.as_str().to_owned()) else {
        return ApiError::Internal("a routed request without a matched path".into())
            .into_response();
    };
    let access = match rule(request.method(), &template) {
        Some(access) => access,
        // Another method of a known route: the router answers 405.
        None if RULES.iter().any(|(_, t, _)| *t == template) => return next.run(request).await,
        None => {
            return ApiError::Internal(format!(
                "route {} {template} has no access rule (crate::access::RULES); refused",
                request.method()
            ))
            .into_response();
        }
    };
    let roles = match access {
        Access::Open => return next.run(request).await,
        Access::Roles(roles) => roles,
    };
    let principal = match credentials(&request, &template) {
        Credentials::None => return unauthenticated(Unauthenticated::Missing),
        Credentials::NotBearer => return unauthenticated(Unauthenticated::NotBearer),
        Credentials::Token(token) => match app.keys.verify(&token, &app.territories) {
            Ok(principal) => principal,
            Err(err) => {
                tracing::info!(reason = %err, "request refused: token not accepted");
                return unauthenticated(Unauthenticated::Refused(err));
            }
        },
    };
    if !roles.contains(&principal.role) {
        return forbidden_role(&principal, roles).into_response();
    }
    request.extensions_mut().insert(principal);
    next.run(request).await
}

enum Credentials {
    None,
    NotBearer,
    Token(String),
}

/// The bearer token of the request: the `Authorization` header, or on [`STREAM_ROUTE`] only,
/// the `access_token` query parameter.
fn credentials(request: &Request, template: &str) -> Credentials {
    if let Some(value) = request.headers().get(header::AUTHORIZATION) {
        let Some((scheme, token)) = value.to_str().ok().and_then(|v| v.trim().split_once(' '))
        else {
            return Credentials::NotBearer;
        };
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Credentials::NotBearer;
        }
        return Credentials::Token(token.trim().to_owned());
    }
    if template == STREAM_ROUTE {
        let query = request.uri().query().unwrap_or("");
        if let Some((_, token)) =
            form_urlencoded::parse(query.as_bytes()).find(|(key, _)| key == "access_token")
        {
            return Credentials::Token(token.into_owned());
        }
    }
    Credentials::None
}

/// Why a request is not authenticated.
enum Unauthenticated {
    Missing,
    NotBearer,
    Refused(AuthError),
}

/// 401 `unauthenticated` with `WWW-Authenticate: Bearer` (RFC 6750); the detail says why,
/// never quoting the token.
fn unauthenticated(why: Unauthenticated) -> Response {
    let (detail, challenge) = match why {
        Unauthenticated::Missing => (
            "this endpoint needs a bearer token: send `Authorization: Bearer <token>` (issue one \
             with `filiera token issue`)"
                .to_owned(),
            r#"Bearer realm="filiera""#,
        ),
        Unauthenticated::NotBearer => (
            "the Authorization header must be `Bearer <token>`".to_owned(),
            r#"Bearer realm="filiera", error="invalid_request""#,
        ),
        Unauthenticated::Refused(err) if err.is_expired() => (
            "the bearer token has expired; issue a new one".to_owned(),
            r#"Bearer realm="filiera", error="invalid_token", error_description="expired""#,
        ),
        Unauthenticated::Refused(err) => (
            format!("the bearer token is invalid: {err}"),
            r#"Bearer realm="filiera", error="invalid_token""#,
        ),
    };
    let mut response = ApiError::problem(
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "Unauthenticated",
        detail,
        None,
    )
    .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    response
}

/// 403 `forbidden`: the role may not call this route.
fn forbidden_role(principal: &Principal, roles: &[Role]) -> ApiError {
    ApiError::problem(
        StatusCode::FORBIDDEN,
        "forbidden",
        "Forbidden",
        format!(
            "the role `{}` may not do this; it is for: {}",
            principal.role,
            roles
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None,
    )
}

/// 403 `territory_out_of_scope`, naming the `territory` field.
pub fn territory_out_of_scope(principal: &Principal, detail: impl Into<String>) -> ApiError {
    ApiError::problem(
        StatusCode::FORBIDDEN,
        "territory_out_of_scope",
        "Territory out of scope",
        format!(
            "{}; your token covers {} and the territories below",
            detail.into(),
            principal.territory_list()
        ),
        Some("territory".into()),
    )
}

/// Refuses (403) a territory the caller does not cover: enrolment in it, a query about it.
pub fn require_territory(
    caller: &Caller,
    registry: &TerritoryRegistry,
    territory: &TerritoryCode,
) -> Result<(), ApiError> {
    if caller.principal.covers(registry, territory) {
        Ok(())
    } else {
        Err(territory_out_of_scope(
            &caller.principal,
            format!("territory `{territory}` is outside your scope"),
        ))
    }
}

/// The territory a metrics or audit query may cover for this caller: the requested one if in
/// scope (403 otherwise); with none requested, everything for unscoped callers, and a 403
/// asking for one for scoped callers (a query covers one territory's subtree, and a scoped
/// caller's scope may not be one subtree).
pub fn query_territory(
    caller: &Caller,
    registry: &TerritoryRegistry,
    requested: Option<TerritoryCode>,
) -> Result<Option<TerritoryCode>, ApiError> {
    match requested {
        Some(territory) => {
            require_territory(caller, registry, &territory)?;
            Ok(Some(territory))
        }
        None if caller.principal.is_unscoped() => Ok(None),
        None => Err(territory_out_of_scope(
            &caller.principal,
            "name the territory to report on with `territory=`",
        )),
    }
}

/// Whether the caller may see this beneficiary: its current territory is in scope. Anything
/// else reads as an unknown beneficiary (404), so that existence does not leak.
pub fn require_visible(
    caller: &Caller,
    registry: &TerritoryRegistry,
    pathway: &Pathway,
) -> Result<(), ApiError> {
    if caller.principal.is_unscoped() {
        return Ok(());
    }
    if covers(&caller.principal, registry, pathway) {
        Ok(())
    } else {
        Err(ApiError::beneficiary_not_found())
    }
}

/// Whether `principal`'s territories hold the beneficiary's current territory.
fn covers(principal: &Principal, registry: &TerritoryRegistry, pathway: &Pathway) -> bool {
    pathway
        .state()
        .territory
        .as_ref()
        .is_some_and(|territory| principal.covers(registry, territory))
}

/// The streams a scoped caller may write to: those whose territory it covers (`None` for an
/// unscoped caller). The store judges it on the stream a command is decided on, which answers
/// the same 404 as [`load_visible`] without reading the stream a second time.
pub fn write_scope(app: &AppState, caller: &Caller) -> Option<WriteScope> {
    if caller.principal.is_unscoped() {
        return None;
    }
    let (principal, registry) = (caller.principal.clone(), app.territories.clone());
    Some(WriteScope::new(move |pathway: &Pathway| {
        covers(&principal, &registry, pathway)
    }))
}

/// Loads the beneficiary if the caller may see it (404 otherwise, unknown or out of scope);
/// unscoped callers are not checked and nothing is loaded (`None`).
pub async fn load_visible(
    app: &AppState,
    caller: &Caller,
    beneficiary: Uuid,
) -> Result<Option<Pathway>, ApiError> {
    if caller.principal.is_unscoped() {
        return Ok(None);
    }
    let pathway = app
        .store
        .load(beneficiary)
        .await?
        .ok_or_else(ApiError::beneficiary_not_found)?;
    require_visible(caller, &app.territories, &pathway)?;
    Ok(Some(pathway))
}

/// The territories whose feed items the caller may read (items whose territory, after the
/// event, is in it).
pub fn feed_scope(caller: &Caller, registry: &TerritoryRegistry) -> Scope {
    caller.principal.scope(registry)
}

/// Writes [`RULES`] into the OpenAPI document: the `bearer` security scheme; on each
/// restricted operation its `security`, the 401 and 403 answers and the roles allowed.
pub fn describe(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::ToResponse;
    use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement};

    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        utoipa::openapi::security::SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some(
                    "An HS256 token from `filiera token issue` (docs/security.md). \
                     `GET /v1/events/stream` also takes it as `?access_token=`.",
                ))
                .build(),
        ),
    );
    let (unauthorised, unauthorised_response) = responses::Unauthorized::response();
    let (forbidden, forbidden_response) = responses::Forbidden::response();
    components
        .responses
        .insert(unauthorised.to_owned(), unauthorised_response);
    components
        .responses
        .insert(forbidden.to_owned(), forbidden_response);
    let reference =
        |name: &str| utoipa::openapi::RefOr::Ref(utoipa::openapi::Ref::from_response_name(name));

    for (path, item) in doc.paths.paths.iter_mut() {
        let operations = [
            (Method::GET, &mut item.get),
            (Method::POST, &mut item.post),
            (Method::PUT, &mut item.put),
            (Method::DELETE, &mut item.delete),
            (Method::PATCH, &mut item.patch),
        ];
        for (method, operation) in operations {
            let Some(operation) = operation else { continue };
            let Some(Access::Roles(roles)) = rule(&method, path) else {
                continue;
            };
            operation.security = Some(vec![SecurityRequirement::new(
                "bearer",
                Vec::<String>::new(),
            )]);
            operation
                .responses
                .responses
                .insert("401".into(), reference(unauthorised));
            operation
                .responses
                .responses
                .entry("403".into())
                .or_insert_with(|| reference(forbidden));
            let who = roles
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            let note = format!("Access: {who} (bearer token; docs/security.md).");
            operation.description = Some(match operation.description.take() {
                Some(text) if !text.is_empty() => format!("{text}\n\n{note}"),
                _ => note,
            });
        }
    }
}

/// The problem answers of authentication and authorisation, for the OpenAPI document.
pub mod responses {
    use utoipa::ToResponse;

    use crate::problem::Problem;

    /// 401 `unauthenticated`, with `WWW-Authenticate: Bearer`: no bearer token, or one that is
    /// malformed, expired, wrongly signed or not HS256; `detail` says which.
    #[derive(ToResponse)]
    #[response(
        content_type = "application/problem+json",
        headers((
            "WWW-Authenticate" = String,
            description = "`Bearer realm=\"filiera\"`, with `error=\"invalid_token\"` when a \
                token was sent and refused."
        ))
    )]
    pub struct Unauthorized(#[allow(dead_code)] Problem);

    /// 403: the token's role may not call this route (`forbidden`), or the territory asked
    /// for is outside the token's territories (`territory_out_of_scope`, `field` =
    /// `territory`). A beneficiary outside them is answered 404 instead.
    #[derive(ToResponse)]
    #[response(content_type = "application/problem+json")]
    pub struct Forbidden(#[allow(dead_code)] Problem);
}

/// Every `(method, template)` of the table, for tests.
pub fn table() -> BTreeSet<(&'static str, &'static str)> {
    RULES.iter().map(|(m, t, _)| (*m, *t)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every operation of the OpenAPI document (so every route: `crate::api` registers them
    /// only with their description).
    fn documented() -> BTreeSet<(String, String)> {
        let doc = serde_json::to_value(crate::openapi()).unwrap();
        let mut out = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                out.insert((method.to_ascii_uppercase(), path.clone()));
            }
        }
        out
    }

    #[test]
    fn every_route_has_exactly_one_access_rule() {
        let documented = documented();
        for (method, path) in &documented {
            let method: Method = method.parse().unwrap();
            assert!(
                rule(&method, path).is_some(),
                "{method} {path} has no line in access::RULES: add one"
            );
        }
        let rules: BTreeSet<(String, String)> = table()
            .into_iter()
            .map(|(m, t)| (m.to_owned(), t.to_owned()))
            .collect();
        assert_eq!(rules.len(), RULES.len(), "a route is listed twice in RULES");
        // The dashboard's routes are open static files, outside the API's document.
        let documented: BTreeSet<(String, String)> = documented
            .into_iter()
            .chain(
                crate::dashboard::ROUTES
                    .iter()
                    .map(|t| ("GET".to_owned(), (*t).to_owned())),
            )
            .collect();
        assert_eq!(
            rules, documented,
            "RULES lists a route the API does not have"
        );
    }

    /// A route the table does not list is refused (fail closed), even to an administrator.
    #[tokio::test]
    async fn a_route_without_a_rule_is_refused() {
        use std::sync::Arc;

        use axum::body::Body;
        use filiera_auth::{AuthSecret, TokenKeys};
        use filiera_domain::{PathwayServices, StageCatalogue};
        use filiera_projections::{ProjectionSettings, Projections};
        use tower::ServiceExt;

        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("filiera.db").display());
        let services = PathwayServices::new(
            Arc::new(StageCatalogue::default_catalogue()),
            Arc::new(TerritoryRegistry::sample()),
        );
        let store = filiera_store::Store::connect(&url, services).await.unwrap();
        store.migrate().await.unwrap();
        filiera_projections::migrate(&store.database())
            .await
            .unwrap();
        let store = Arc::new(store);
        let settings = ProjectionSettings::from_services(store.services(), 2);
        let projections = Projections::start((*store).clone(), settings)
            .await
            .unwrap();
        let keys = TokenKeys::new(&AuthSecret::new(
            "the fail-closed test's secret, long enough".into(),
        ))
        .unwrap();
        let token = keys
            .issue(
                "root",
                Role::Administrator,
                &[],
                std::time::Duration::from_secs(60),
            )
            .unwrap();
        let state = AppState::new(store, projections.clone(), keys);
        let app = axum::Router::new()
            .route("/v1/unlisted", axum::routing::get(|| async { "reached" }))
            .route_layer(axum::middleware::from_fn_with_state(
                state.clone(),
                authorise,
            ))
            .with_state(state);
        let request = axum::http::Request::get("/v1/unlisted")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        projections.shutdown().await;
    }

    #[test]
    fn open_routes_are_the_operational_ones() {
        let open: BTreeSet<&str> = RULES
            .iter()
            .filter(|(_, _, a)| *a == Access::Open)
            .map(|(_, t, _)| *t)
            .collect();
        assert_eq!(
            open,
            [
                "/healthz",
                "/readyz",
                "/metrics",
                "/openapi.json",
                crate::dashboard::INDEX_ROUTE,
                crate::dashboard::ASSET_ROUTE,
            ]
            .into()
        );
        // Everything under /v1 needs a token, and the administrator may call all of it.
        for (method, template, access) in RULES {
            if template.starts_with("/v1/") {
                let Access::Roles(roles) = access else {
                    panic!("{method} {template} is open")
                };
                assert!(roles.contains(&Role::Administrator), "{template}");
            }
        }
    }

    #[test]
    fn the_document_shows_the_table() {
        let doc = serde_json::to_value(crate::openapi()).unwrap();
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        let history = &doc["paths"]["/v1/beneficiaries/{id}/history"]["get"];
        assert_eq!(history["security"], serde_json::json!([{"bearer": []}]));
        assert!(history["responses"]["401"].is_object());
        assert!(history["responses"]["403"].is_object());
        assert!(
            history["description"]
                .as_str()
                .unwrap()
                .contains("Access: operator, administrator")
        );
        let health = &doc["paths"]["/healthz"]["get"];
        assert!(health.get("security").is_none());
        assert!(health["responses"].get("401").is_none());
    }
}
