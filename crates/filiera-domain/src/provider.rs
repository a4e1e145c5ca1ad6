//! The provider registry (SPEC 2.5): the accredited operators that run stage episodes.
//!
//! Optional: an empty registry (nothing configured) lets a stage entry name any provider, as
//! before registries existed. A non-empty one is what [`PathwayEvent::StageEntered`]'s
//! `provider` must be one of when the entry is decided; stored events are never re-checked.
//! A provider's `territories` say where it usually works; they never refuse an entry elsewhere.
//!
//! [`PathwayEvent::StageEntered`]: crate::PathwayEvent::StageEntered

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::territory::{TerritoryCode, TerritoryRegistry};

/// Longest provider code, in characters (the OpenAPI pattern of [`ProviderCode`] repeats it).
pub const MAX_PROVIDER_CODE_LEN: usize = 64;

/// A provider code: `[A-Za-z0-9_.-]{1,64}` ([`MAX_PROVIDER_CODE_LEN`]).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(
    feature = "openapi",
    schema(value_type = String, pattern = "^[A-Za-z0-9_.-]{1,64}$", example = "coop-alfa")
)]
#[serde(transparent)]
pub struct ProviderCode(String);

impl ProviderCode {
    /// Validates the syntax of a provider code; whether it exists is the registry's business.
    pub fn parse(code: &str) -> Option<Self> {
        let valid = !code.is_empty()
            && code.len() <= MAX_PROVIDER_CODE_LEN
            && code
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        valid.then(|| Self(code.to_owned()))
    }

    /// The code as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProviderCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One provider as configured (`[[providers]]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderDef {
    /// The code stage entries name in `provider`.
    pub code: String,
    /// Human name, e.g. "Cooperativa Alfa".
    pub name: String,
    /// Territory codes of the registry where the provider usually works (each covers the
    /// territories below it); empty means anywhere.
    #[serde(default)]
    pub territories: Vec<String>,
}

/// A provider of the registry, as served by `GET /v1/providers`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Provider {
    /// The code stage entries name in `provider`.
    pub code: ProviderCode,
    /// Human name.
    pub name: String,
    /// Where the provider usually works, each territory with those below it; empty means
    /// anywhere. Informative only: an entry elsewhere is never refused.
    pub territories: Vec<TerritoryCode>,
}

/// The validated registry: codes unique and well formed, territories known.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProviderRegistry {
    /// By code, so listing is sorted by code.
    providers: BTreeMap<ProviderCode, Provider>,
}

impl ProviderRegistry {
    /// No registry: stage entries may name any provider.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Validates a list of providers against the territory registry.
    pub fn new(defs: Vec<ProviderDef>, registry: &TerritoryRegistry) -> Result<Self, ConfigError> {
        let mut providers = BTreeMap::new();
        for def in defs {
            let code = ProviderCode::parse(&def.code)
                .ok_or_else(|| ConfigError::InvalidProviderCode(def.code.clone()))?;
            let mut seen = BTreeSet::new();
            let mut territories = Vec::with_capacity(def.territories.len());
            for territory in &def.territories {
                let known = registry.get(territory).ok_or_else(|| {
                    ConfigError::UnknownProviderTerritory {
                        provider: def.code.clone(),
                        territory: territory.clone(),
                    }
                })?;
                if seen.insert(known.clone()) {
                    territories.push(known);
                }
            }
            let provider = Provider {
                code: code.clone(),
                name: def.name,
                territories,
            };
            if providers.insert(code, provider).is_some() {
                return Err(ConfigError::DuplicateProvider(def.code));
            }
        }
        Ok(Self { providers })
    }

    /// Whether no provider is configured (then any provider text is accepted).
    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }

    /// The provider with this code, if registered.
    pub fn get(&self, code: &str) -> Option<&Provider> {
        self.providers.get(&ProviderCode::parse(code)?)
    }

    /// Every provider, sorted by code.
    pub fn providers(&self) -> impl Iterator<Item = &Provider> {
        self.providers.values()
    }

    /// The providers that usually work in `territory`, sorted by code: those listing no
    /// territory, and those listing `territory` or one of its ancestors in `registry` (a
    /// provider of `LOM-BG` covers `LOM-BG-BERGAMO`, not `LOM`).
    pub fn covering<'a>(
        &'a self,
        territory: &'a TerritoryCode,
        registry: &'a TerritoryRegistry,
    ) -> impl Iterator<Item = &'a Provider> + 'a {
        self.providers.values().filter(move |p| {
            p.territories.is_empty()
                || p.territories
                    .iter()
                    .any(|listed| registry.is_within(territory, listed))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(code: &str, territories: &[&str]) -> ProviderDef {
        ProviderDef {
            code: code.into(),
            name: format!("Provider {code}"),
            territories: territories.iter().map(|t| (*t).to_owned()).collect(),
        }
    }

    fn codes<'a>(providers: impl Iterator<Item = &'a Provider>) -> Vec<&'a str> {
        providers.map(|p| p.code.as_str()).collect()
    }

    #[test]
    fn codes_allow_dots_and_dashes() {
        assert!(ProviderCode::parse("coop.alfa-01_B").is_some());
        assert!(ProviderCode::parse(&"a".repeat(64)).is_some());
        assert!(ProviderCode::parse("").is_none());
        assert!(ProviderCode::parse("coop alfa").is_none());
        assert!(ProviderCode::parse("coop/alfa").is_none());
        assert!(ProviderCode::parse("coopè").is_none());
        assert!(ProviderCode::parse(&"a".repeat(65)).is_none());
    }

    #[test]
    fn the_registry_is_sorted_by_code_and_filters_by_coverage() {
        let territories = TerritoryRegistry::sample();
        let registry = ProviderRegistry::new(
            vec![
                def("zeta", &[]),
                def("bg", &["LOM-BG"]),
                def("town", &["LOM-BG-BERGAMO", "PIE-TO"]),
                def("mi", &["LOM-MI"]),
            ],
            &territories,
        )
        .unwrap();
        assert!(!registry.is_empty());
        assert_eq!(codes(registry.providers()), ["bg", "mi", "town", "zeta"]);
        let at = |code: &str| territories.get(code).unwrap();
        let bergamo = at("LOM-BG-BERGAMO");
        assert_eq!(
            codes(registry.covering(&bergamo, &territories)),
            ["bg", "town", "zeta"]
        );
        let province = at("LOM-BG");
        assert_eq!(
            codes(registry.covering(&province, &territories)),
            ["bg", "zeta"]
        );
        let region = at("LOM");
        assert_eq!(codes(registry.covering(&region, &territories)), ["zeta"]);
        assert_eq!(registry.get("town").unwrap().name, "Provider town");
        assert!(registry.get("Town").is_none());
        assert!(ProviderRegistry::empty().is_empty());
    }

    #[test]
    fn invalid_registries_are_refused() {
        let territories = TerritoryRegistry::sample();
        assert_eq!(
            ProviderRegistry::new(vec![def("a", &[]), def("a", &["LOM"])], &territories)
                .unwrap_err(),
            ConfigError::DuplicateProvider("a".into())
        );
        assert_eq!(
            ProviderRegistry::new(vec![def("a b", &[])], &territories).unwrap_err(),
            ConfigError::InvalidProviderCode("a b".into())
        );
        assert_eq!(
            ProviderRegistry::new(vec![def("a", &["ATLANTIS"])], &territories).unwrap_err(),
            ConfigError::UnknownProviderTerritory {
                provider: "a".into(),
                territory: "ATLANTIS".into()
            }
        );
    }
}
