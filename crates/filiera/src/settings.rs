//! One typed configuration (SPEC 4.5), parsed once: built-in defaults, then the optional TOML
//! file (`--config FILE` or `FILIERA_CONFIG`), then `FILIERA_*` environment variables.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use filiera_domain::{
    PathwayServices, ProviderDef, ProviderRegistry, Stage, StageCatalogue, StageCode, TerritoryDef,
    TerritoryRegistry,
};
use filiera_http::ServeSettings;
use filiera_store::StoreOptions;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// Environment variables read as top-level settings (`FILIERA_LISTEN` → `listen`, …).
const ENV_KEYS: [&str; 8] = [
    "listen",
    "database_url",
    "nats_url",
    "data_dir",
    "log",
    "auth_secret",
    "master_key",
    "otlp_endpoint",
];

/// The `FILIERA_*` settings of the process environment, as strings (never type-guessed:
/// `FILIERA_DATA_DIR=2024` is a folder name). An empty variable counts as unset, as in
/// compose files and unit files that blank a setting.
fn environment() -> BTreeMap<&'static str, String> {
    ENV_KEYS
        .iter()
        .filter_map(|key| {
            let value = std::env::var(format!("FILIERA_{}", key.to_ascii_uppercase())).ok()?;
            (!value.trim().is_empty()).then_some((*key, value))
        })
        .collect()
}

/// `FILIERA_*` variables read outside [`Settings`]: the configuration file's path (`--config`)
/// and `tail`'s bearer token (`--token`).
const OTHER_VARIABLES: [&str; 2] = ["FILIERA_CONFIG", "FILIERA_TOKEN"];

/// The prefix of variables the test suite reads (never the binary): not reported as unknown.
const TEST_PREFIX: &str = "FILIERA_TEST_";

/// Every `FILIERA_*` environment variable the binary reads.
pub fn known_variables() -> Vec<String> {
    ENV_KEYS
        .iter()
        .map(|key| format!("FILIERA_{}", key.to_ascii_uppercase()))
        .chain(OTHER_VARIABLES.iter().map(|name| (*name).to_owned()))
        .collect()
}

/// A `FILIERA_*` environment variable that nothing reads: a typo (`FILIERA_DATABSE_URL`) or a
/// setting that exists only in the file (`FILIERA_HTTP_MAX_CONNECTIONS`). Left alone, it would
/// be silently ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnknownVariable {
    /// The variable's name.
    pub name: String,
    /// The known variable it is closest to, if any is close.
    pub did_you_mean: Option<String>,
}

impl std::fmt::Display for UnknownVariable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is not a filiera setting", self.name)?;
        match &self.did_you_mean {
            Some(known) => write!(f, " (did you mean {known}?)"),
            None => write!(
                f,
                " (the environment sets only {}; other settings go in the --config file)",
                known_variables().join(", ")
            ),
        }
    }
}

/// The `FILIERA_*` variables among `names` that the binary does not read (`FILIERA_TEST_*`, the
/// test suite's, excepted), sorted, each with the closest known name when one is close.
pub fn unknown_variables<I, S>(names: I) -> Vec<UnknownVariable>
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let known = known_variables();
    let mut unknown: Vec<UnknownVariable> = names
        .into_iter()
        .filter_map(|name| {
            let name = name.as_ref().to_string_lossy().into_owned();
            let ours = name.starts_with("FILIERA_") && !name.starts_with(TEST_PREFIX);
            (ours && !known.contains(&name)).then(|| {
                let did_you_mean = known
                    .iter()
                    .map(|candidate| (strsim::levenshtein(&name, candidate), candidate))
                    .filter(|(distance, _)| *distance <= 3)
                    .min()
                    .map(|(_, candidate)| candidate.clone());
                UnknownVariable { name, did_you_mean }
            })
        })
        .collect();
    unknown.sort_by(|a, b| a.name.cmp(&b.name));
    unknown.dedup();
    unknown
}

/// The unknown `FILIERA_*` variables of the process environment.
pub fn unknown_environment() -> Vec<UnknownVariable> {
    unknown_variables(std::env::vars_os().map(|(name, _)| name))
}

/// The `FILIERA_*` variables of the process environment that set a top-level setting.
pub fn applied_variables() -> Vec<String> {
    environment()
        .keys()
        .map(|key| format!("FILIERA_{}", key.to_ascii_uppercase()))
        .collect()
}

/// Everything the binary needs to wire the service.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address and port the HTTP API listens on.
    pub listen: String,
    /// `postgres://…` for PostgreSQL, `sqlite://…` for an explicit SQLite file; unset means
    /// the embedded SQLite store under `data_dir`.
    #[serde(default)]
    pub database_url: Option<SecretString>,
    /// NATS server URL; set to turn the JetStream relay on. A secret: it may carry the relay
    /// user's password (`nats://filiera-relay:PASSWORD@host:4222`).
    #[serde(default)]
    pub nats_url: Option<SecretString>,
    /// Folder of the embedded store and generated secrets.
    pub data_dir: PathBuf,
    /// `tracing` filter, e.g. `info` or `filiera=debug,sqlx=warn`.
    pub log: String,
    /// Base URL of an OpenTelemetry collector's OTLP/HTTP receiver, e.g.
    /// `http://otel-collector:4318`; set to export the spans (to `…/v1/traces`). Unset: no
    /// export, though logs and problem documents still carry trace ids.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// The secret signing the API's bearer tokens (at least 32 bytes); unset means the
    /// `auth-secret` file of `data_dir`, generated owner-only on first use. Every replica and
    /// `filiera token issue` must see the same one.
    #[serde(default)]
    pub auth_secret: Option<SecretString>,
    /// The personal-data vault's master key, 32 bytes in standard base64; unset means the
    /// `master.key` file of `data_dir`, generated owner-only on first use. Every replica must
    /// see the same one.
    #[serde(default)]
    pub master_key: Option<SecretString>,
    #[serde(default)]
    pub audit: AuditSettings,
    #[serde(default)]
    pub database: DatabaseSettings,
    #[serde(default)]
    pub http: HttpSettings,
    /// The stage catalogue; empty means the built-in one.
    #[serde(default)]
    pub stages: Vec<StageSettings>,
    /// The territory registry; empty means the built-in sample.
    #[serde(default)]
    pub territories: Vec<TerritoryDef>,
    /// The provider registry (`[[providers]]`, SPEC 2.5); empty means stage entries may name
    /// any provider.
    #[serde(default)]
    pub providers: Vec<ProviderDef>,
}

/// `[audit]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSettings {
    /// Stalled reiterations from which a beneficiary is flagged (SPEC 2.4).
    #[serde(default = "default_threshold")]
    pub reiteration_threshold: u32,
}

fn default_threshold() -> u32 {
    2
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            reiteration_threshold: default_threshold(),
        }
    }
}

/// `[http]`: how the server treats slow, idle and numerous clients (SPEC 5.3).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// Time a client has to send a request head, e.g. `"10s"`, and how long a client that
    /// sends nothing holds a connection. Also started between requests: the idle time allowed
    /// there is the smaller of this and `keep_alive_timeout`.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Time a client has to send a whole request body once its head is read, e.g. `"30s"`;
    /// answered 408 `request_timeout` past it.
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// Time a connection may stay idle after a complete response, e.g. `"5s"`; the idle time
    /// allowed is the smaller of this and `header_read_timeout`. A live stream waiting for
    /// events is not idle.
    #[serde(with = "humantime_serde")]
    pub keep_alive_timeout: Duration,
    /// Time a client may take no byte of a response, e.g. `"60s"`, before its connection is
    /// dropped: a client that stops reading a large page or the live stream.
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,
    /// Connections served at once; more wait in the kernel's backlog. Each takes a file
    /// descriptor: keep `LimitNOFILE` well above it.
    pub max_connections: usize,
    /// How long the server goes on serving after SIGTERM before it stops accepting, e.g.
    /// `"5s"`: `/readyz` answers 503 meanwhile so that a proxy or an orchestrator moves traffic
    /// to other replicas. `"0s"` stops accepting at once (one process, nothing in front).
    #[serde(with = "humantime_serde")]
    pub drain_delay: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        let defaults = ServeSettings::default();
        Self {
            header_read_timeout: defaults.header_read_timeout,
            body_timeout: defaults.body_timeout,
            keep_alive_timeout: defaults.keep_alive_timeout,
            write_timeout: defaults.write_timeout,
            max_connections: defaults.max_connections,
            drain_delay: defaults.drain_delay,
        }
    }
}

impl HttpSettings {
    /// The server's settings, validated: every figure must be above zero, except the drain
    /// delay.
    pub fn serve_settings(&self) -> anyhow::Result<ServeSettings> {
        for (key, timeout) in [
            ("header_read_timeout", self.header_read_timeout),
            ("body_timeout", self.body_timeout),
            ("keep_alive_timeout", self.keep_alive_timeout),
            ("write_timeout", self.write_timeout),
        ] {
            if timeout.is_zero() {
                bail!("http.{key} must be above zero");
            }
        }
        if self.max_connections == 0 {
            bail!("http.max_connections must be at least 1");
        }
        Ok(ServeSettings {
            header_read_timeout: self.header_read_timeout,
            body_timeout: self.body_timeout,
            keep_alive_timeout: self.keep_alive_timeout,
            write_timeout: self.write_timeout,
            max_connections: self.max_connections,
            drain_delay: self.drain_delay,
        })
    }
}

/// `[database]`: how long requests wait for the database, and how many connections it gets.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// How long a request waits for a database connection, e.g. `"5s"`: while the database is
    /// down or every connection is busy, requests are answered 503 after this long.
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
    /// The longest one database call may take once it has its connection, e.g. `"10s"`: past
    /// it a request is answered 503, so a frozen or partitioned database cannot hold it.
    #[serde(with = "humantime_serde")]
    pub query_timeout: Duration,
    /// Connections per process (PostgreSQL), or readers (SQLite, which always writes
    /// through one connection).
    pub max_connections: u32,
    /// Whether commands arriving together share one transaction (group commit): on by
    /// default; off, each command commits alone (docs/operations.md).
    pub group_commit: bool,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        let defaults = StoreOptions::default();
        Self {
            acquire_timeout: defaults.acquire_timeout,
            query_timeout: defaults.query_timeout,
            max_connections: defaults.max_connections,
            group_commit: defaults.group_commit,
        }
    }
}

impl DatabaseSettings {
    /// The store's pool options, validated.
    pub fn store_options(&self) -> anyhow::Result<StoreOptions> {
        if self.acquire_timeout.is_zero() || self.query_timeout.is_zero() {
            bail!("database.acquire_timeout and database.query_timeout must be above zero");
        }
        if self.max_connections == 0 {
            bail!("database.max_connections must be at least 1");
        }
        Ok(StoreOptions {
            acquire_timeout: self.acquire_timeout,
            query_timeout: self.query_timeout,
            max_connections: self.max_connections,
            group_commit: self.group_commit,
        })
    }
}

/// `[[stages]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageSettings {
    pub code: String,
    pub label: String,
    pub level: i32,
}

#[derive(Serialize)]
struct Defaults {
    listen: &'static str,
    data_dir: &'static str,
    log: &'static str,
}

impl Settings {
    /// Loads the settings from an optional file and the process environment.
    pub fn load(config_file: Option<&Path>) -> anyhow::Result<Self> {
        Self::load_from(config_file, environment())
    }

    fn load_from(
        config_file: Option<&Path>,
        env: BTreeMap<&'static str, String>,
    ) -> anyhow::Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(Defaults {
            listen: "127.0.0.1:8080",
            data_dir: "./filiera-data",
            log: "info,sqlx=warn",
        }));
        if let Some(path) = config_file {
            if !path.is_file() {
                bail!("configuration file {} does not exist", path.display());
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        let settings: Self = figment
            .merge(Serialized::defaults(env))
            .extract()
            .context("invalid configuration")?;
        settings.listen_addr()?;
        if settings.audit.reiteration_threshold == 0 {
            bail!("audit.reiteration_threshold must be at least 1");
        }
        settings.http.serve_settings()?;
        settings.database.store_options()?;
        Ok(settings)
    }

    /// The parsed listen address.
    pub fn listen_addr(&self) -> anyhow::Result<SocketAddr> {
        self.listen
            .parse()
            .with_context(|| format!("listen address `{}` is not address:port", self.listen))
    }

    /// The vault's master key: `master_key` if set, otherwise the data folder's key file
    /// (generated owner-only on first use).
    pub fn master_key(&self) -> anyhow::Result<filiera_vault::MasterKey> {
        match &self.master_key {
            Some(key) => filiera_vault::MasterKey::from_base64(key.expose_secret())
                .context("FILIERA_MASTER_KEY must be 32 bytes in standard base64"),
            None => {
                self.create_data_dir()?;
                Ok(filiera_vault::MasterKey::load_or_generate(
                    &self.data_dir.join("master.key"),
                )?)
            }
        }
    }

    /// Creates the data folder if it is missing, readable by its owner only (0700): it holds
    /// the embedded database, whose pathways are sensitive even without identities, and the
    /// generated secrets. An existing folder is left as the operator made it.
    pub fn create_data_dir(&self) -> anyhow::Result<()> {
        if self.data_dir.is_dir() {
            return Ok(());
        }
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.data_dir)
            .with_context(|| format!("cannot create the data folder {}", self.data_dir.display()))
    }

    /// The store URL: the configured one, or the embedded SQLite file under `data_dir`.
    pub fn store_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.expose_secret().to_owned(),
            None => format!("sqlite://{}", self.data_dir.join("filiera.db").display()),
        }
    }

    /// The stage catalogue, validated.
    pub fn catalogue(&self) -> anyhow::Result<StageCatalogue> {
        if self.stages.is_empty() {
            return Ok(StageCatalogue::default_catalogue());
        }
        let stages = self
            .stages
            .iter()
            .map(|s| {
                let code = StageCode::parse(&s.code)
                    .ok_or_else(|| filiera_domain::ConfigError::InvalidStageCode(s.code.clone()))?;
                Ok(Stage {
                    code,
                    label: s.label.clone(),
                    level: s.level,
                })
            })
            .collect::<Result<Vec<_>, filiera_domain::ConfigError>>()?;
        Ok(StageCatalogue::new(stages)?)
    }

    /// The territory registry, validated.
    pub fn registry(&self) -> anyhow::Result<TerritoryRegistry> {
        if self.territories.is_empty() {
            return Ok(TerritoryRegistry::sample());
        }
        Ok(TerritoryRegistry::new(self.territories.clone())?)
    }

    /// The provider registry, validated against the territory registry; empty when no
    /// `[[providers]]` are configured.
    pub fn providers(&self) -> anyhow::Result<ProviderRegistry> {
        let registry = self.registry()?;
        ProviderRegistry::new(self.providers.clone(), &registry)
            .context("invalid [[providers]] configuration")
    }

    /// The domain services over this configuration and the system clock.
    pub fn services(&self) -> anyhow::Result<PathwayServices> {
        Ok(
            PathwayServices::new(Arc::new(self.catalogue()?), Arc::new(self.registry()?))
                .with_providers(Arc::new(self.providers()?)),
        )
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail closures return figment::Error
mod tests {
    use super::*;

    /// No environment, so tests do not see the real one.
    fn no_env() -> BTreeMap<&'static str, String> {
        BTreeMap::new()
    }

    #[test]
    fn defaults_are_embedded() {
        let settings = Settings::load_from(None, no_env()).unwrap();
        assert_eq!(settings.listen, "127.0.0.1:8080");
        assert_eq!(settings.store_url(), "sqlite://./filiera-data/filiera.db");
        assert_eq!(settings.audit.reiteration_threshold, 2);
        assert_eq!(settings.catalogue().unwrap().stages().len(), 3);
        assert!(settings.registry().unwrap().get("LOM-BG").is_some());
    }

    #[test]
    fn file_then_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "filiera.toml",
                r#"
                listen = "127.0.0.1:9000"
                [audit]
                reiteration_threshold = 3
                [[stages]]
                code = "training"
                label = "Formazione"
                level = 1
                [[stages]]
                code = "internship"
                label = "Tirocinio"
                level = 2
                [[territories]]
                code = "LOM"
                name = "Lombardia"
                [[territories]]
                code = "LOM-BG"
                name = "Ambito di Bergamo"
                parent = "LOM"
                "#,
            )?;
            jail.set_env("FILIERA_LISTEN", "0.0.0.0:8181");
            jail.set_env("FILIERA_DATABASE_URL", "postgres://db/filiera");
            let settings = Settings::load_from(Some(Path::new("filiera.toml")), environment())
                .map_err(|e| e.to_string())?;
            assert_eq!(settings.listen, "0.0.0.0:8181");
            assert_eq!(settings.store_url(), "postgres://db/filiera");
            assert_eq!(settings.audit.reiteration_threshold, 3);
            let catalogue = settings.catalogue().map_err(|e| e.to_string())?;
            assert_eq!(
                catalogue.level(&StageCode::parse("training").unwrap()),
                Some(1)
            );
            let registry = settings.registry().map_err(|e| e.to_string())?;
            assert!(registry.get("LOM-BG").is_some());
            assert!(registry.get("PIE").is_none());
            Ok(())
        });
    }

    #[test]
    fn environment_values_are_strings_and_blank_means_unset() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("FILIERA_DATA_DIR", "2024");
            jail.set_env("FILIERA_LOG", "true");
            jail.set_env("FILIERA_DATABASE_URL", "");
            jail.set_env("FILIERA_NATS_URL", "  ");
            let settings = Settings::load_from(None, environment()).map_err(|e| e.to_string())?;
            assert_eq!(settings.data_dir, Path::new("2024"));
            assert_eq!(settings.log, "true");
            assert!(settings.database_url.is_none());
            assert!(settings.nats_url.is_none());
            assert_eq!(settings.store_url(), "sqlite://2024/filiera.db");
            jail.set_env("FILIERA_LISTEN", "8080");
            let err = Settings::load_from(None, environment()).unwrap_err();
            assert!(
                err.to_string().contains("`8080` is not address:port"),
                "{err}"
            );
            Ok(())
        });
    }

    #[test]
    fn the_auth_secret_is_read_from_the_environment_and_never_printed() {
        figment::Jail::expect_with(|jail| {
            let settings = Settings::load_from(None, environment()).map_err(|e| e.to_string())?;
            assert!(settings.auth_secret.is_none());
            jail.set_env(
                "FILIERA_AUTH_SECRET",
                "a secret from the environment, long enough to sign",
            );
            let settings = Settings::load_from(None, environment()).map_err(|e| e.to_string())?;
            assert_eq!(
                settings.auth_secret.as_ref().map(|s| s.expose_secret()),
                Some("a secret from the environment, long enough to sign")
            );
            assert!(!format!("{settings:?}").contains("from the environment"));
            jail.set_env("FILIERA_AUTH_SECRET", " ");
            let settings = Settings::load_from(None, environment()).map_err(|e| e.to_string())?;
            assert!(settings.auth_secret.is_none());
            Ok(())
        });
    }

    #[test]
    fn http_limits_read_human_durations() {
        let settings = Settings::load_from(None, no_env()).unwrap();
        assert_eq!(
            settings.http.serve_settings().unwrap(),
            ServeSettings::default()
        );
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "filiera.toml",
                "[http]\nheader_read_timeout = \"2s 500ms\"\nbody_timeout = \"1m\"\n\
                 keep_alive_timeout = \"750ms\"\nwrite_timeout = \"2m\"\nmax_connections = 64\n\
                 drain_delay = \"0s\"\n",
            )?;
            let settings = Settings::load_from(Some(Path::new("filiera.toml")), no_env())
                .map_err(|e| e.to_string())?;
            let serve = settings.http.serve_settings().map_err(|e| e.to_string())?;
            assert_eq!(serve.header_read_timeout, Duration::from_millis(2500));
            assert_eq!(serve.body_timeout, Duration::from_secs(60));
            assert_eq!(serve.keep_alive_timeout, Duration::from_millis(750));
            assert_eq!(serve.write_timeout, Duration::from_secs(120));
            assert_eq!(serve.max_connections, 64);
            assert_eq!(serve.drain_delay, Duration::ZERO);
            jail.create_file("partial.toml", "[http]\nmax_connections = 8\n")?;
            let settings = Settings::load_from(Some(Path::new("partial.toml")), no_env())
                .map_err(|e| e.to_string())?;
            assert_eq!(settings.http.max_connections, 8);
            assert_eq!(
                settings.http.body_timeout,
                ServeSettings::default().body_timeout
            );
            assert_eq!(settings.http.drain_delay, Duration::from_secs(5));
            for (line, complaint) in [
                ("body_timeout = 30", "body_timeout"),
                ("max_connection = 8", "max_connection"),
                ("max_connections = 0", "at least 1"),
                ("header_read_timeout = \"0s\"", "header_read_timeout must"),
                ("keep_alive_timeout = \"0s\"", "keep_alive_timeout must"),
                ("write_timeout = \"0ms\"", "write_timeout must"),
                ("write_timeout = 60", "write_timeout"),
                ("drain_delay = 5", "drain_delay"),
            ] {
                jail.create_file("bad.toml", &format!("[http]\n{line}\n"))?;
                let err = Settings::load_from(Some(Path::new("bad.toml")), no_env()).unwrap_err();
                assert!(format!("{err:#}").contains(complaint), "{line}: {err:#}");
            }
            Ok(())
        });
    }

    #[test]
    fn database_waits_are_configurable() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "db.toml",
                "[database]\nacquire_timeout = \"2s 500ms\"\nquery_timeout = \"1m\"\nmax_connections = 4\n",
            )?;
            let settings = Settings::load_from(Some(Path::new("db.toml")), no_env())
                .map_err(|e| e.to_string())?;
            let options = settings
                .database
                .store_options()
                .map_err(|e| e.to_string())?;
            assert_eq!(options.acquire_timeout, Duration::from_millis(2500));
            assert_eq!(options.max_connections, 4);
            assert_eq!(options.query_timeout, Duration::from_secs(60));
            jail.create_file("zero.toml", "[database]\nacquire_timeout = \"0s\"\n")?;
            let err = Settings::load_from(Some(Path::new("zero.toml")), no_env()).unwrap_err();
            assert!(err.to_string().contains("acquire_timeout"), "{err}");
            Ok(())
        });
        let defaults = Settings::load_from(None, no_env()).unwrap();
        assert_eq!(defaults.database.acquire_timeout, Duration::from_secs(5));
    }

    #[test]
    fn providers_are_optional_and_validated() {
        let settings = Settings::load_from(None, no_env()).unwrap();
        assert!(settings.providers().unwrap().is_empty());
        assert!(settings.services().unwrap().providers.is_empty());
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "filiera.toml",
                r#"
                [[territories]]
                code = "LOM"
                name = "Lombardia"
                [[territories]]
                code = "LOM-BG"
                name = "Ambito di Bergamo"
                parent = "LOM"
                [[providers]]
                code = "coop.alfa"
                name = "Cooperativa Alfa"
                territories = ["LOM-BG"]
                [[providers]]
                code = "ENTE-2"
                name = "Ente di formazione"
                "#,
            )?;
            let settings = Settings::load_from(Some(Path::new("filiera.toml")), no_env())
                .map_err(|e| e.to_string())?;
            let services = settings.services().map_err(|e| e.to_string())?;
            let codes: Vec<_> = services
                .providers
                .providers()
                .map(|p| p.code.as_str())
                .collect();
            assert_eq!(codes, ["ENTE-2", "coop.alfa"]);
            assert_eq!(
                services.providers.get("coop.alfa").unwrap().territories,
                [services.territories.get("LOM-BG").unwrap()]
            );
            assert!(
                services
                    .providers
                    .get("ENTE-2")
                    .unwrap()
                    .territories
                    .is_empty()
            );
            for (providers, complaint) in [
                (
                    "[[providers]]\ncode = \"a b\"\nname = \"A\"\n",
                    "provider code `a b` must match [A-Za-z0-9_.-]{1,64}",
                ),
                (
                    "[[providers]]\ncode = \"a\"\nname = \"A\"\n\
                     [[providers]]\ncode = \"a\"\nname = \"B\"\n",
                    "provider `a` is configured twice",
                ),
                (
                    "[[providers]]\ncode = \"a\"\nname = \"A\"\nterritories = [\"ATLANTIS\"]\n",
                    "provider `a` names territory `ATLANTIS`",
                ),
                ("[[providers]]\ncode = \"a\"\n", "missing field `name`"),
                (
                    "[[providers]]\ncode = \"a\"\nname = \"A\"\nterritory = [\"LOM\"]\n",
                    "territory",
                ),
            ] {
                jail.create_file("bad.toml", providers)?;
                let err = Settings::load_from(Some(Path::new("bad.toml")), no_env())
                    .and_then(|s| s.services().map(|_| ()))
                    .unwrap_err();
                assert!(
                    format!("{err:#}").contains(complaint),
                    "{providers}: {err:#}"
                );
            }
            Ok(())
        });
    }

    #[test]
    fn unknown_variables_are_named_with_the_closest_setting() {
        let unknown = unknown_variables([
            "FILIERA_DATABSE_URL",
            "FILIERA_LISTEN",
            "FILIERA_CONFIG",
            "FILIERA_TOKEN",
            "FILIERA_HTTP_MAX_CONNECTIONS",
            "FILIERA_TEST_PG_URL",
            "PATH",
            "FILIERA_DATABSE_URL",
        ]);
        assert_eq!(
            unknown,
            [
                UnknownVariable {
                    name: "FILIERA_DATABSE_URL".to_owned(),
                    did_you_mean: Some("FILIERA_DATABASE_URL".to_owned()),
                },
                UnknownVariable {
                    name: "FILIERA_HTTP_MAX_CONNECTIONS".to_owned(),
                    did_you_mean: None,
                },
            ]
        );
        let known = known_variables();
        for key in ENV_KEYS {
            assert!(known.contains(&format!("FILIERA_{}", key.to_ascii_uppercase())));
        }
        assert!(unknown[1].to_string().contains("FILIERA_MASTER_KEY"));
    }

    #[test]
    fn bad_configuration_is_explained() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("bad.toml", "listen = \"nowhere\"\n")?;
            let err = Settings::load_from(Some(Path::new("bad.toml")), no_env()).unwrap_err();
            assert!(err.to_string().contains("nowhere"), "{err}");
            jail.create_file("typo.toml", "[audit]\nreiteration_treshold = 3\n")?;
            let err = Settings::load_from(Some(Path::new("typo.toml")), no_env()).unwrap_err();
            assert!(
                format!("{err:#}").contains("reiteration_treshold"),
                "{err:#}"
            );
            Ok(())
        });
        let err =
            Settings::load_from(Some(Path::new("/definitely/missing.toml")), no_env()).unwrap_err();
        assert!(err.to_string().contains("does not exist"));
    }
}
