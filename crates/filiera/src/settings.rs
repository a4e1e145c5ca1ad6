//! One typed configuration (SPEC 4.5), parsed once: built-in defaults, then the optional TOML
//! file (`--config FILE` or `FILIERA_CONFIG`), then `FILIERA_*` environment variables.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use filiera_domain::{
    PathwayServices, Stage, StageCatalogue, StageCode, TerritoryDef, TerritoryRegistry,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// Environment variables read as top-level settings (`FILIERA_LISTEN` → `listen`, …).
const ENV_KEYS: [&str; 5] = ["listen", "database_url", "nats_url", "data_dir", "log"];

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
    /// NATS server URL; set to turn the JetStream relay on.
    #[serde(default)]
    pub nats_url: Option<String>,
    /// Folder of the embedded store and generated secrets.
    pub data_dir: PathBuf,
    /// `tracing` filter, e.g. `info` or `filiera=debug,sqlx=warn`.
    pub log: String,
    #[serde(default)]
    pub audit: AuditSettings,
    /// The stage catalogue; empty means the built-in one.
    #[serde(default)]
    pub stages: Vec<StageSettings>,
    /// The territory registry; empty means the built-in sample.
    #[serde(default)]
    pub territories: Vec<TerritoryDef>,
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
        Ok(settings)
    }

    /// The parsed listen address.
    pub fn listen_addr(&self) -> anyhow::Result<SocketAddr> {
        self.listen
            .parse()
            .with_context(|| format!("listen address `{}` is not address:port", self.listen))
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

    /// The domain services over this configuration and the system clock.
    pub fn services(&self) -> anyhow::Result<PathwayServices> {
        Ok(PathwayServices::new(
            Arc::new(self.catalogue()?),
            Arc::new(self.registry()?),
        ))
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
