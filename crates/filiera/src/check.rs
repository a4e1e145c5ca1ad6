//! `filiera check-config`: validates a configuration exactly as `serve` reads it (the
//! `--config` file, then the `FILIERA_*` environment) and prints what `serve` would run with,
//! every secret redacted. It connects to nothing and writes nothing (not even the data folder),
//! so it can run in a deployment pipeline or an init container before anything is up.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use crate::settings::{Settings, UnknownVariable, applied_variables, unknown_environment};

/// What replaces a password, a token or a secret in the output.
pub const REDACTED: &str = "***";

/// Everything `serve` would run with, secrets redacted.
#[derive(Debug, Serialize)]
pub struct ConfigReport {
    /// The configuration file read, if any.
    pub config_file: Option<String>,
    /// The `FILIERA_*` variables that set a top-level setting (they override the file).
    pub environment: Vec<String>,
    pub listen: String,
    pub store: StoreReport,
    pub data_dir: String,
    pub log: String,
    /// Where the token secret comes from; never the secret.
    pub auth_secret: String,
    /// Where the vault's master key comes from; never the key.
    pub master_key: String,
    pub nats_relay: RelayReport,
    /// Where spans are exported (`otlp_endpoint`, password redacted), or that they are not.
    pub traces: String,
    pub reiteration_threshold: u32,
    pub database: PoolReport,
    pub http: HttpReport,
    /// The stage catalogue as `code (level)`.
    pub stages: Vec<String>,
    pub territories: RegistryReport,
    pub providers: RegistryReport,
    /// `FILIERA_*` variables nothing reads (each makes `check-config` fail).
    pub unknown_variables: Vec<UnknownVariable>,
}

/// The event store `serve` would open.
#[derive(Debug, Serialize)]
pub struct StoreReport {
    /// `sqlite` or `postgres`.
    pub kind: &'static str,
    /// Whether it is the embedded SQLite file of the data folder (no `database_url`).
    pub embedded: bool,
    /// The URL with its password redacted.
    pub url: String,
}

/// The NATS JetStream relay.
#[derive(Debug, Serialize)]
pub struct RelayReport {
    /// Whether `serve` would run the relay (`nats_url` set).
    pub enabled: bool,
    /// The server address(es) with passwords and tokens redacted.
    pub url: Option<String>,
}

/// `[database]`, durations in humantime form.
#[derive(Debug, Serialize)]
pub struct PoolReport {
    pub acquire_timeout: String,
    pub query_timeout: String,
    pub max_connections: u32,
    pub group_commit: bool,
}

/// `[http]`, durations in humantime form.
#[derive(Debug, Serialize)]
pub struct HttpReport {
    pub header_read_timeout: String,
    pub body_timeout: String,
    pub keep_alive_timeout: String,
    pub write_timeout: String,
    pub drain_delay: String,
    pub max_connections: usize,
}

/// A registry's size and where it comes from.
#[derive(Debug, Serialize)]
pub struct RegistryReport {
    pub count: usize,
    /// `configured`, or what applies without a configured list.
    pub source: &'static str,
}

/// `filiera check-config`: prints the report (text, or JSON with `json`), then fails if the
/// environment holds `FILIERA_*` variables that nothing reads. An invalid file or value fails
/// before anything is printed, with a message naming the setting.
pub fn run(config_file: Option<&Path>, json: bool) -> anyhow::Result<()> {
    let settings = Settings::load(config_file)?;
    let report = ConfigReport::new(
        &settings,
        config_file,
        applied_variables(),
        unknown_environment(),
    )?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    if !report.unknown_variables.is_empty() {
        let lines: Vec<String> = report
            .unknown_variables
            .iter()
            .map(ToString::to_string)
            .collect();
        bail!(
            "unknown environment variable(s), which serve would ignore:\n  {}",
            lines.join("\n  ")
        );
    }
    Ok(())
}

impl ConfigReport {
    /// Validates what `Settings::load` leaves to start-up (registries, secrets' shapes, the log
    /// filter, the URLs) and describes the result.
    pub fn new(
        settings: &Settings,
        config_file: Option<&Path>,
        environment: Vec<String>,
        unknown_variables: Vec<UnknownVariable>,
    ) -> anyhow::Result<Self> {
        let services = settings.services()?;
        tracing_subscriber::EnvFilter::try_new(&settings.log).with_context(|| {
            format!(
                "log (FILIERA_LOG): `{}` is not a valid tracing filter",
                settings.log
            )
        })?;
        let data_dir = settings.data_dir.display().to_string();
        let auth_secret = match &settings.auth_secret {
            Some(secret) => {
                let secret = filiera_auth::AuthSecret::new(secret.clone());
                filiera_auth::TokenKeys::new(&secret)
                    .map_err(|err| anyhow::anyhow!("auth_secret (FILIERA_AUTH_SECRET): {err}"))?;
                format!("configured ({REDACTED})")
            }
            None => format!(
                "the file {}/{} (generated on first start if missing)",
                data_dir,
                filiera_auth::SECRET_FILE
            ),
        };
        let master_key = match &settings.master_key {
            Some(key) => {
                filiera_vault::MasterKey::from_base64(key.expose_secret()).context(
                    "master_key (FILIERA_MASTER_KEY) must be 32 bytes in standard base64",
                )?;
                format!("configured ({REDACTED})")
            }
            None => format!("the file {data_dir}/master.key (generated on first start if missing)"),
        };
        let store = match &settings.database_url {
            Some(url) => StoreReport::configured(url)?,
            None => StoreReport {
                kind: "sqlite",
                embedded: true,
                url: settings.store_url(),
            },
        };
        let nats_relay = match &settings.nats_url {
            Some(url) => RelayReport {
                enabled: true,
                url: Some(redact_nats_url(url)?),
            },
            None => RelayReport {
                enabled: false,
                url: None,
            },
        };
        let traces = match &settings.otlp_endpoint {
            Some(endpoint) => {
                let url = crate::telemetry::traces_url(endpoint)
                    .map_err(|err| anyhow::anyhow!("otlp_endpoint ({err:#})"))?;
                format!("OTLP/HTTP to {}", redact_url(url, false))
            }
            None => "not exported (no otlp_endpoint); trace ids in logs and problem documents"
                .to_owned(),
        };
        let http = settings.http.serve_settings()?;
        let pool = settings.database.store_options()?;
        Ok(Self {
            config_file: config_file.map(|path| path.display().to_string()),
            environment,
            listen: settings.listen_addr()?.to_string(),
            store,
            data_dir,
            log: settings.log.clone(),
            auth_secret,
            master_key,
            nats_relay,
            traces,
            reiteration_threshold: settings.audit.reiteration_threshold,
            database: PoolReport {
                acquire_timeout: human(pool.acquire_timeout),
                query_timeout: human(pool.query_timeout),
                max_connections: pool.max_connections,
                group_commit: pool.group_commit,
            },
            http: HttpReport {
                header_read_timeout: human(http.header_read_timeout),
                body_timeout: human(http.body_timeout),
                keep_alive_timeout: human(http.keep_alive_timeout),
                write_timeout: human(http.write_timeout),
                drain_delay: human(http.drain_delay),
                max_connections: http.max_connections,
            },
            stages: services
                .catalogue
                .stages()
                .iter()
                .map(|stage| format!("{} ({})", stage.code, stage.level))
                .collect(),
            territories: RegistryReport {
                count: services.territories.definitions().len(),
                source: if settings.territories.is_empty() {
                    "built-in sample"
                } else {
                    "configured"
                },
            },
            providers: RegistryReport {
                count: services.providers.providers().count(),
                source: if settings.providers.is_empty() {
                    "none: any provider text is accepted"
                } else {
                    "configured"
                },
            },
            unknown_variables,
        })
    }
}

impl StoreReport {
    /// A configured `database_url`: its scheme checked, its password redacted.
    fn configured(url: &SecretString) -> anyhow::Result<Self> {
        let text = url.expose_secret();
        let scheme = text.split_once(':').map_or("", |(scheme, _)| scheme);
        match scheme {
            "sqlite" => Ok(Self {
                kind: "sqlite",
                embedded: false,
                url: text.to_owned(),
            }),
            "postgres" | "postgresql" => {
                let parsed = url::Url::parse(text).map_err(|err| {
                    anyhow::anyhow!("database_url (FILIERA_DATABASE_URL) is not a URL: {err}")
                })?;
                Ok(Self {
                    kind: "postgres",
                    embedded: false,
                    url: redact_url(parsed, false),
                })
            }
            _ => bail!(
                "database_url (FILIERA_DATABASE_URL) must start with postgres://, postgresql:// \
                 or sqlite:// (unset: the embedded store in data_dir)"
            ),
        }
    }
}

/// The NATS address(es), comma-separated, each checked and redacted.
fn redact_nats_url(url: &SecretString) -> anyhow::Result<String> {
    let servers = url
        .expose_secret()
        .split(',')
        .map(|server| {
            let server = server.trim();
            let with_scheme = if server.contains("://") {
                server.to_owned()
            } else {
                format!("nats://{server}")
            };
            let parsed = url::Url::parse(&with_scheme).map_err(|err| {
                anyhow::anyhow!("nats_url (FILIERA_NATS_URL): an address is not a URL: {err}")
            })?;
            if !matches!(parsed.scheme(), "nats" | "tls" | "ws" | "wss") {
                bail!("nats_url (FILIERA_NATS_URL): addresses start with nats://, tls://, ws:// or wss://");
            }
            if parsed.host_str().is_none_or(str::is_empty) {
                bail!("nats_url (FILIERA_NATS_URL): an address has no host");
            }
            Ok(redact_url(parsed, true))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(servers.join(","))
}

/// `url` with its password replaced by [`REDACTED`], and its user too when `user_is_token`
/// and it has no password (NATS reads `nats://TOKEN@host` as token authentication); the
/// query parameters `password` and `sslpassword` (libpq's) are redacted as well.
fn redact_url(mut url: url::Url, user_is_token: bool) -> String {
    if url.password().is_some() {
        let _ = url.set_password(Some(REDACTED));
    } else if user_is_token && !url.username().is_empty() {
        let _ = url.set_username(REDACTED);
    }
    let secret_query = url
        .query_pairs()
        .any(|(key, _)| matches!(key.as_ref(), "password" | "sslpassword"));
    if secret_query {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(key, value)| {
                let value = match key.as_ref() {
                    "password" | "sslpassword" => REDACTED.to_owned(),
                    _ => value.into_owned(),
                };
                (key.into_owned(), value)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

fn human(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

impl fmt::Display for ConfigReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let row = |f: &mut fmt::Formatter<'_>, key: &str, value: &dyn fmt::Display| {
            writeln!(f, "{key:<30} {value}")
        };
        writeln!(
            f,
            "The configuration is valid. filiera serve would run with:"
        )?;
        writeln!(f)?;
        row(
            f,
            "configuration file",
            &self.config_file.as_deref().unwrap_or("none (defaults)"),
        )?;
        let environment = match self.environment.is_empty() {
            true => "none".to_owned(),
            false => self.environment.join(", "),
        };
        row(f, "environment overrides", &environment)?;
        row(f, "listen", &self.listen)?;
        let store = match self.store.embedded {
            true => format!("{} (embedded) {}", self.store.kind, self.store.url),
            false => format!("{} {}", self.store.kind, self.store.url),
        };
        row(f, "store", &store)?;
        row(f, "data_dir", &self.data_dir)?;
        row(f, "log", &self.log)?;
        row(f, "auth_secret", &self.auth_secret)?;
        row(f, "master_key", &self.master_key)?;
        let relay = match &self.nats_relay.url {
            Some(url) => format!("on, {url}"),
            None => "off (no nats_url)".to_owned(),
        };
        row(f, "nats relay", &relay)?;
        row(f, "traces", &self.traces)?;
        row(
            f,
            "audit.reiteration_threshold",
            &self.reiteration_threshold,
        )?;
        row(
            f,
            "database.acquire_timeout",
            &self.database.acquire_timeout,
        )?;
        row(f, "database.query_timeout", &self.database.query_timeout)?;
        row(
            f,
            "database.max_connections",
            &self.database.max_connections,
        )?;
        row(f, "database.group_commit", &self.database.group_commit)?;
        row(
            f,
            "http.header_read_timeout",
            &self.http.header_read_timeout,
        )?;
        row(f, "http.body_timeout", &self.http.body_timeout)?;
        row(f, "http.keep_alive_timeout", &self.http.keep_alive_timeout)?;
        row(f, "http.write_timeout", &self.http.write_timeout)?;
        row(f, "http.drain_delay", &self.http.drain_delay)?;
        row(f, "http.max_connections", &self.http.max_connections)?;
        row(
            f,
            "stages",
            &format!("{}: {}", self.stages.len(), self.stages.join(", ")),
        )?;
        row(
            f,
            "territories",
            &format!("{} ({})", self.territories.count, self.territories.source),
        )?;
        row(
            f,
            "providers",
            &format!("{} ({})", self.providers.count, self.providers.source),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(text: &str) -> SecretString {
        SecretString::from(text.to_owned())
    }

    #[test]
    fn database_passwords_are_redacted() {
        let report =
            StoreReport::configured(&secret("postgres://filiera:s3cr%40t@db:5432/filiera"))
                .unwrap();
        assert_eq!(report.url, "postgres://filiera:***@db:5432/filiera");
        assert_eq!(report.kind, "postgres");
        let report = StoreReport::configured(&secret(
            "postgresql://db/filiera?user=filiera&password=hunter2&sslmode=require",
        ))
        .unwrap();
        assert!(!report.url.contains("hunter2"), "{}", report.url);
        assert!(report.url.contains("password=***"), "{}", report.url);
        assert!(report.url.contains("sslmode=require"), "{}", report.url);
        let err = StoreReport::configured(&secret("mysql://root:pw@db/x")).unwrap_err();
        assert!(err.to_string().contains("database_url"), "{err}");
        assert!(!err.to_string().contains("pw"), "{err}");
    }

    #[test]
    fn nats_passwords_and_tokens_are_redacted() {
        let url =
            secret("nats://filiera-relay:pw1@nats-1:4222, nats://filiera-relay:pw1@nats-2:4222");
        assert_eq!(
            redact_nats_url(&url).unwrap(),
            "nats://filiera-relay:***@nats-1:4222,nats://filiera-relay:***@nats-2:4222"
        );
        assert_eq!(
            redact_nats_url(&secret("nats://s3cr3t-token@127.0.0.1:4222")).unwrap(),
            "nats://***@127.0.0.1:4222"
        );
        assert_eq!(
            redact_nats_url(&secret("127.0.0.1:4222")).unwrap(),
            "nats://127.0.0.1:4222"
        );
        let err = redact_nats_url(&secret("http://user:pw@nats:4222")).unwrap_err();
        assert!(err.to_string().contains("nats_url"), "{err}");
    }
}
