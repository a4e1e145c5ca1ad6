//! The stage catalogue (SPEC 2.1): which stages exist and how they rank.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// Longest stage code, in characters (the OpenAPI pattern of [`StageCode`] repeats it).
pub const MAX_STAGE_CODE_LEN: usize = 64;

/// A stage code such as `internship`: `[a-z0-9_]+`, at most [`MAX_STAGE_CODE_LEN`] characters.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(
    feature = "openapi",
    schema(value_type = String, pattern = "^[a-z0-9_]{1,64}$", example = "internship")
)]
#[serde(transparent)]
pub struct StageCode(String);

impl StageCode {
    /// Validates the syntax of a stage code; whether it exists is the catalogue's business.
    pub fn parse(code: &str) -> Option<Self> {
        let valid = !code.is_empty()
            && code.len() <= MAX_STAGE_CODE_LEN
            && code
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        valid.then(|| Self(code.to_owned()))
    }

    /// The code as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StageCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One stage of the chain, with the level that orders it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Stage {
    /// Stable code used in commands, events and metrics.
    pub code: StageCode,
    /// Human label (Italian, as operators use it).
    pub label: String,
    /// Rank on the way to work: higher is closer to a job. Two stages may share a level.
    pub level: i32,
}

/// The configured stages, in configuration order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StageCatalogue {
    stages: Vec<Stage>,
    #[serde(skip)]
    index: BTreeMap<StageCode, usize>,
}

impl StageCatalogue {
    /// Builds a catalogue, refusing empty catalogues and duplicate codes.
    pub fn new(stages: Vec<Stage>) -> Result<Self, ConfigError> {
        if stages.is_empty() {
            return Err(ConfigError::EmptyCatalogue);
        }
        let mut index = BTreeMap::new();
        for (i, stage) in stages.iter().enumerate() {
            if index.insert(stage.code.clone(), i).is_some() {
                return Err(ConfigError::DuplicateStage(stage.code.to_string()));
            }
        }
        Ok(Self { stages, index })
    }

    /// The default catalogue of SPEC 2.1.
    pub fn default_catalogue() -> Self {
        let stage = |code: &str, label: &str, level| Stage {
            code: StageCode::parse(code).expect("built-in stage codes are valid"),
            label: label.to_owned(),
            level,
        };
        Self::new(vec![
            stage("socio_occupational", "Socio-occupazionale", 1),
            stage("internship", "Tirocinio", 2),
            stage("job_placement", "Inserimento lavorativo", 3),
        ])
        .expect("the built-in catalogue is valid")
    }

    /// The stage with this code, if configured.
    pub fn get(&self, code: &str) -> Option<&Stage> {
        let code = StageCode::parse(code)?;
        self.index.get(&code).map(|&i| &self.stages[i])
    }

    /// The level of a stage, if configured.
    pub fn level(&self, code: &StageCode) -> Option<i32> {
        self.index.get(code).map(|&i| self.stages[i].level)
    }

    /// Every stage, in configuration order.
    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// The codes, comma separated, for error messages.
    pub fn codes_hint(&self) -> String {
        self.stages
            .iter()
            .map(|s| s.code.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Default for StageCatalogue {
    fn default() -> Self {
        Self::default_catalogue()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_codes_are_lowercase_snake() {
        assert!(StageCode::parse("job_placement").is_some());
        assert!(StageCode::parse("level2").is_some());
        assert!(StageCode::parse("").is_none());
        assert!(StageCode::parse("Internship").is_none());
        assert!(StageCode::parse("intern-ship").is_none());
        assert!(StageCode::parse(&"a".repeat(65)).is_none());
    }

    #[test]
    fn default_catalogue_has_three_levels() {
        let catalogue = StageCatalogue::default_catalogue();
        let levels: Vec<_> = catalogue.stages().iter().map(|s| s.level).collect();
        assert_eq!(levels, vec![1, 2, 3]);
        assert_eq!(catalogue.get("internship").map(|s| s.level), Some(2));
        assert!(catalogue.get("training").is_none());
    }

    #[test]
    fn duplicate_codes_are_refused() {
        let stage = Stage {
            code: StageCode::parse("training").unwrap(),
            label: "Formazione".into(),
            level: 1,
        };
        let err = StageCatalogue::new(vec![stage.clone(), stage]).unwrap_err();
        assert_eq!(err, ConfigError::DuplicateStage("training".into()));
        assert_eq!(
            StageCatalogue::new(vec![]).unwrap_err(),
            ConfigError::EmptyCatalogue
        );
    }
}
