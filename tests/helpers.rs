//! Spawns the real app on port 0 over a fresh store: a SQLite file in a temporary folder, or a
//! brand-new PostgreSQL database dropped when the test ends.

use std::sync::Arc;

use filiera_auth::{AuthSecret, Role, TokenKeys};
use filiera_domain::{PathwayServices, ProviderRegistry, StageCatalogue, TerritoryRegistry};
use filiera_http::{AppState, ServeSettings};
use filiera_projections::{ProjectionSettings, Projections};
use filiera_store::Store;
use filiera_testkit::TestDb;
use serde_json::Value;

/// The backends every API test runs on.
pub use filiera_testkit::Backend;

/// A database or folder that disappears with the test.
pub enum StoreGuard {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres(#[allow(dead_code)] TestDb),
}

/// A store URL over fresh, empty storage, and what keeps it alive.
pub async fn fresh_store_url(backend: Backend) -> (String, StoreGuard) {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("temporary folder");
            let url = format!("sqlite://{}", dir.path().join("filiera.db").display());
            (url, StoreGuard::Sqlite(dir))
        }
        Backend::Postgres => {
            let db = TestDb::create().await.expect("create test database");
            (db.url.clone(), StoreGuard::Postgres(db))
        }
    }
}

/// The running app and a client for it.
pub struct TestApp {
    pub address: String,
    /// Sends an administrator's token with every request ([`TestApp::token`]).
    pub client: reqwest::Client,
    /// Sends no token: for requests made as another principal ([`TestApp::get_as`]).
    pub anonymous: reqwest::Client,
    /// The administrator's token [`TestApp::client`] sends.
    pub token: String,
    pub store: Arc<Store>,
    pub projections: Projections,
    _guard: StoreGuard,
}

/// The domain services the tests use: built-in catalogue and sample registry.
pub fn services() -> PathwayServices {
    PathwayServices::new(
        Arc::new(StageCatalogue::default_catalogue()),
        Arc::new(TerritoryRegistry::sample()),
    )
}

/// Starts the app on an ephemeral port over fresh storage.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, ServeSettings::default()).await
}

/// Starts the app like [`spawn_app`], with stage entries checked against `providers` (the
/// `[[providers]]` of a configuration).
pub async fn spawn_app_with_providers(backend: Backend, providers: ProviderRegistry) -> TestApp {
    let services = services().with_providers(Arc::new(providers));
    spawn_app_over(
        backend,
        services,
        ServeSettings::default(),
        std::future::pending(),
    )
    .await
    .0
}

/// Starts the app on an ephemeral port over fresh storage, its connections handled with
/// `serve_settings` (short timeouts, few connections) instead of the defaults.
pub async fn spawn_app_with(backend: Backend, serve_settings: ServeSettings) -> TestApp {
    spawn_app_until(backend, serve_settings, std::future::pending())
        .await
        .0
}

/// Starts the app like [`spawn_app_with`], serving until `shutdown` resolves; the handle
/// gives what `serve_with` returned once it has shut down.
pub async fn spawn_app_until(
    backend: Backend,
    serve_settings: ServeSettings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> (TestApp, tokio::task::JoinHandle<std::io::Result<()>>) {
    spawn_app_over(backend, services(), serve_settings, shutdown).await
}

/// Starts the app over `services` (the configuration's catalogue and registries).
async fn spawn_app_over(
    backend: Backend,
    services: PathwayServices,
    serve_settings: ServeSettings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> (TestApp, tokio::task::JoinHandle<std::io::Result<()>>) {
    install_suite_log_capture();
    let (url, guard) = fresh_store_url(backend).await;
    let store = Store::connect(&url, services).await.expect("connect");
    store.migrate().await.expect("migrate");
    filiera_projections::migrate(&store.database())
        .await
        .expect("read model migrations");
    let store = Arc::new(store);
    let settings = ProjectionSettings::from_services(store.services(), 2);
    let projections = Projections::start((*store).clone(), settings)
        .await
        .expect("projections start");
    filiera_vault::Vault::migrate(&store.database())
        .await
        .expect("vault migrations");
    let vault = filiera_vault::Vault::open(store.database(), filiera_vault::MasterKey::generate())
        .await
        .expect("the vault opens");
    let state = AppState::new(store.clone(), projections.clone(), test_keys()).with_vault(vault);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = format!("http://{}", listener.local_addr().expect("address"));
    let served = tokio::spawn(filiera_http::serve_with(
        listener,
        state,
        serve_settings,
        shutdown,
    ));
    let app = TestApp {
        address,
        client: client_with(&admin_token()),
        anonymous: reqwest::Client::new(),
        token: admin_token(),
        store,
        projections,
        _guard: guard,
    };
    (app, served)
}

/// The secret of the test apps' tokens.
pub const TEST_SECRET: &str = "the API tests' token secret, long enough for HS256";

/// The keys of the test apps.
pub fn test_keys() -> TokenKeys {
    TokenKeys::new(&AuthSecret::new(TEST_SECRET.into())).expect("a long secret")
}

/// A token of `role` over `territories`, valid for an hour, as `filiera token issue` makes.
pub fn token(role: Role, territories: &[&str]) -> String {
    let territories: Vec<_> = territories
        .iter()
        .map(|t| filiera_domain::TerritoryCode::parse(t).expect("a territory code"))
        .collect();
    test_keys()
        .issue(
            &format!("test-{role}"),
            role,
            &territories,
            std::time::Duration::from_secs(3600),
        )
        .expect("a token")
}

/// The administrator's token the test apps' default client sends.
pub fn admin_token() -> String {
    token(Role::Administrator, &[])
}

/// A client sending `Authorization: Bearer <token>` with every request.
pub fn client_with(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let mut value =
        reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).expect("a header value");
    value.set_sensitive(true);
    headers.insert(reqwest::header::AUTHORIZATION, value);
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("a client")
}

/// A response read whole: status, headers and JSON body (Null when empty or not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    async fn read(response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("body");
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Self {
            status,
            headers,
            body,
        }
    }

    /// The content type, without parameters.
    pub fn content_type(&self) -> &str {
        self.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .unwrap_or("")
    }

    /// Asserts a problem document with this status and code, and returns it.
    #[track_caller]
    pub fn problem(&self, status: u16, code: &str) -> &Value {
        assert_eq!(self.status, status, "{:#}", self.body);
        assert_eq!(self.content_type(), "application/problem+json");
        assert_eq!(self.body["status"], status, "{:#}", self.body);
        assert_eq!(self.body["code"], code, "{:#}", self.body);
        assert_eq!(self.body["type"], format!("/problems/{code}"));
        assert!(self.body["detail"].is_string(), "{:#}", self.body);
        &self.body
    }
}

impl TestApp {
    /// Sends `method path` (with a JSON body if given) with `token` as the bearer token, or
    /// none: a request made as another principal than the administrator.
    pub async fn send_as(
        &self,
        token: Option<&str>,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Answer {
        let mut request = self
            .anonymous
            .request(method, format!("{}{path}", self.address));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        Answer::read(request.send().await.expect("request")).await
    }

    /// GET a path as the holder of `token`.
    pub async fn get_as(&self, token: &str, path: &str) -> Answer {
        self.send_as(Some(token), reqwest::Method::GET, path, None)
            .await
    }

    /// POST a JSON body as the holder of `token`.
    pub async fn post_as(&self, token: &str, path: &str, body: Value) -> Answer {
        self.send_as(Some(token), reqwest::Method::POST, path, Some(body))
            .await
    }

    /// Waits until the projections have applied everything written so far.
    pub async fn caught_up(&self) {
        self.projections
            .wait_until_caught_up(std::time::Duration::from_secs(20))
            .await
            .expect("projections catch up");
    }

    /// GET a path.
    pub async fn get(&self, path: &str) -> Answer {
        let response = self
            .client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("request");
        Answer::read(response).await
    }

    /// POST a JSON body.
    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.post_with(path, body, None).await
    }

    /// POST a JSON body with an optional Idempotency-Key.
    pub async fn post_with(&self, path: &str, body: Value, key: Option<&str>) -> Answer {
        let mut request = self
            .client
            .post(format!("{}{path}", self.address))
            .json(&body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        Answer::read(request.send().await.expect("request")).await
    }

    /// POST raw bytes with a content type.
    pub async fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> Answer {
        let response = self
            .client
            .post(format!("{}{path}", self.address))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request");
        Answer::read(response).await
    }

    /// Enrols a beneficiary in `territory` on `on` and returns its id.
    pub async fn enrol(&self, territory: &str, on: &str) -> String {
        let answer = self
            .post(
                "/v1/beneficiaries",
                serde_json::json!({"territory": territory, "on": on, "referral": "social_services"}),
            )
            .await;
        assert_eq!(answer.status, 201, "{:#}", answer.body);
        answer.body["id"].as_str().expect("id").to_owned()
    }

    /// Enrols a beneficiary with an identity of its own (a fresh fiscal code) and returns its
    /// id and fiscal code.
    pub async fn enrol_person(&self, territory: &str) -> (String, String) {
        let fiscal_code = fresh_fiscal_code();
        let answer = self
            .post(
                "/v1/beneficiaries",
                serde_json::json!({
                    "territory": territory, "on": "2024-01-10", "referral": "social_services",
                    "person": {"fiscal_code": fiscal_code, "given_name": "Maria",
                               "family_name": "Rossi", "birth_date": "1980-01-01"}
                }),
            )
            .await;
        assert_eq!(answer.status, 201, "{:#}", answer.body);
        (
            answer.body["id"].as_str().expect("id").to_owned(),
            fiscal_code,
        )
    }

    /// Enters a stage and returns the answer.
    pub async fn enter(&self, id: &str, stage: &str, on: &str) -> Answer {
        self.post(
            &format!("/v1/beneficiaries/{id}/stage"),
            serde_json::json!({"stage": stage, "on": on}),
        )
        .await
    }

    /// Every event of the feed.
    pub async fn whole_feed(&self) -> Vec<Value> {
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let page = self
                .get(&format!("/v1/events?after={after}&limit=1000"))
                .await;
            assert_eq!(page.status, 200, "{:#}", page.body);
            let events = page.body["events"].as_array().expect("events").clone();
            if events.is_empty() {
                return out;
            }
            after = page.body["next_after"].as_i64().expect("next_after");
            out.extend(events);
        }
    }
}

/// A fiscal code of the right shape no other call of this process returned; remembered, so
/// that [`assert_no_identity_logged`] can look for it.
pub fn fresh_fiscal_code() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let code = format!(
        "RSSMRA{:02}A{:02}H{:03}U",
        n % 100,
        (n / 100) % 100,
        (n / 10_000) % 1000
    );
    ISSUED_CODES.lock().unwrap().push(code.clone());
    code
}

static ISSUED_CODES: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Every log line (debug and above) written while this test binary ran, whatever test wrote
/// it: the whole API suite's logs, for the check that no identity is ever logged (SPEC 5.2).
static SUITE_LOGS: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

struct SuiteLogs;

impl std::io::Write for SuiteLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        SUITE_LOGS.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The most detailed level the suite's subscriber writes; raised by [`capture_trace_logs`].
static SUITE_LEVEL: std::sync::OnceLock<
    tracing_subscriber::reload::Handle<
        tracing_subscriber::filter::LevelFilter,
        tracing_subscriber::Registry,
    >,
> = std::sync::OnceLock::new();

/// Sends every log line of the process, whatever thread writes it, to [`SUITE_LOGS`], once.
/// One global subscriber and no thread-local ones: a span of a thread-local subscriber closed on
/// another thread (sqlx's SQLite worker) makes `tracing-subscriber` close its parent on that
/// thread's subscriber, which panics.
fn install_suite_log_capture() {
    use tracing_subscriber::layer::SubscriberExt;
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let (level, handle) =
            tracing_subscriber::reload::Layer::new(tracing_subscriber::filter::LevelFilter::DEBUG);
        let subscriber = tracing_subscriber::registry().with(level).with(
            tracing_subscriber::fmt::layer()
                .with_writer(|| SuiteLogs)
                .with_ansi(false),
        );
        if tracing::subscriber::set_global_default(subscriber).is_ok() {
            let _ = SUITE_LEVEL.set(handle);
        }
    });
}

/// While it lives, the suite's logs take every level down to `trace` (of every test running
/// meanwhile); [`TraceLogs::written`] gives what was logged since it began.
pub struct TraceLogs {
    from: usize,
}

static TRACE_CAPTURES: std::sync::Mutex<usize> = std::sync::Mutex::new(0);

pub fn capture_trace_logs() -> TraceLogs {
    install_suite_log_capture();
    let mut captures = TRACE_CAPTURES.lock().unwrap();
    *captures += 1;
    set_suite_level(tracing_subscriber::filter::LevelFilter::TRACE);
    TraceLogs {
        from: SUITE_LOGS.lock().unwrap().len(),
    }
}

fn set_suite_level(level: tracing_subscriber::filter::LevelFilter) {
    let handle = SUITE_LEVEL
        .get()
        .expect("the suite's subscriber is the global one");
    handle.modify(|filter| *filter = level).unwrap();
}

impl TraceLogs {
    pub fn written(&self) -> String {
        String::from_utf8_lossy(&SUITE_LOGS.lock().unwrap()[self.from..]).into_owned()
    }
}

impl Drop for TraceLogs {
    fn drop(&mut self) {
        let mut captures = TRACE_CAPTURES.lock().unwrap();
        *captures -= 1;
        if *captures == 0 {
            set_suite_level(tracing_subscriber::filter::LevelFilter::DEBUG);
        }
    }
}

/// Asserts that no fiscal code handed out by [`fresh_fiscal_code`], and none of the names the
/// tests give people, appears in any log line written so far.
pub fn assert_no_identity_logged() {
    let logs = String::from_utf8_lossy(&SUITE_LOGS.lock().unwrap()).into_owned();
    assert!(!logs.is_empty(), "the suite's logs are captured");
    for code in ISSUED_CODES.lock().unwrap().iter() {
        assert!(!logs.contains(code.as_str()), "{code} was logged");
    }
    for name in ["Bianchi", "Rossi", "Giulia"] {
        assert!(!logs.contains(name), "`{name}` was logged");
    }
}

/// Follows a local `$ref`.
pub fn resolve<'a>(doc: &'a Value, node: &'a Value) -> &'a Value {
    match node.get("$ref").and_then(Value::as_str) {
        Some(reference) => resolve(
            doc,
            doc.pointer(reference.trim_start_matches('#'))
                .unwrap_or_else(|| panic!("dangling {reference}")),
        ),
        None => node,
    }
}
