//! The territory registry (SPEC 2.2): a tree of region → province/district → ambito.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// Longest territory code, in characters (the OpenAPI pattern of [`TerritoryCode`] repeats
/// it).
pub const MAX_TERRITORY_CODE_LEN: usize = 64;

/// A territory code: `[A-Za-z0-9_-]{1,64}` ([`MAX_TERRITORY_CODE_LEN`]), safe to use as a NATS
/// subject token.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(
    feature = "openapi",
    schema(value_type = String, pattern = "^[A-Za-z0-9_-]{1,64}$", example = "LOM-BG")
)]
#[serde(transparent)]
pub struct TerritoryCode(String);

impl TerritoryCode {
    /// Validates the syntax of a territory code; whether it exists is the registry's business.
    pub fn parse(code: &str) -> Option<Self> {
        let valid = !code.is_empty()
            && code.len() <= MAX_TERRITORY_CODE_LEN
            && code
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        valid.then(|| Self(code.to_owned()))
    }

    /// The code as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TerritoryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One entry of the registry as configured.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerritoryDef {
    /// The code used in commands, events, metrics and NATS subjects.
    pub code: String,
    /// Human name, e.g. "Ambito di Bergamo".
    pub name: String,
    /// The enclosing territory; `None` for a root (a region).
    #[serde(default)]
    pub parent: Option<String>,
}

/// A node of the registry tree, as served by `GET /v1/territories`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TerritoryNode {
    pub code: TerritoryCode,
    pub name: String,
    /// The territories directly below this one, in configuration order.
    #[cfg_attr(feature = "openapi", schema(no_recursion))]
    pub children: Vec<TerritoryNode>,
}

/// The validated registry: every code unique, every parent known, no cycles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TerritoryRegistry {
    defs: Vec<TerritoryDef>,
    parent: BTreeMap<TerritoryCode, Option<TerritoryCode>>,
    children: BTreeMap<TerritoryCode, Vec<TerritoryCode>>,
    names: BTreeMap<TerritoryCode, String>,
}

impl TerritoryRegistry {
    /// Validates and indexes a list of territories.
    pub fn new(defs: Vec<TerritoryDef>) -> Result<Self, ConfigError> {
        if defs.is_empty() {
            return Err(ConfigError::EmptyRegistry);
        }
        let mut parent = BTreeMap::new();
        let mut names = BTreeMap::new();
        for def in &defs {
            let code = TerritoryCode::parse(&def.code)
                .ok_or_else(|| ConfigError::InvalidTerritoryCode(def.code.clone()))?;
            let up = match &def.parent {
                Some(p) => Some(
                    TerritoryCode::parse(p)
                        .ok_or_else(|| ConfigError::InvalidTerritoryCode(p.clone()))?,
                ),
                None => None,
            };
            if parent.insert(code.clone(), up).is_some() {
                return Err(ConfigError::DuplicateTerritory(def.code.clone()));
            }
            names.insert(code, def.name.clone());
        }
        let mut children: BTreeMap<TerritoryCode, Vec<TerritoryCode>> = BTreeMap::new();
        for (code, up) in &parent {
            if let Some(up) = up {
                if !parent.contains_key(up) {
                    return Err(ConfigError::UnknownParent {
                        territory: code.to_string(),
                        parent: up.to_string(),
                    });
                }
                children.entry(up.clone()).or_default().push(code.clone());
            }
        }
        // A cycle shows up as a walk to the root longer than the registry.
        for code in parent.keys() {
            let mut cursor = Some(code.clone());
            let mut steps = 0;
            while let Some(c) = cursor {
                steps += 1;
                if steps > parent.len() {
                    return Err(ConfigError::TerritoryCycle(code.to_string()));
                }
                cursor = parent[&c].clone();
            }
        }
        // Children in configuration order, so the tree reads as written.
        let order: BTreeMap<&str, usize> = defs
            .iter()
            .enumerate()
            .map(|(i, d)| (d.code.as_str(), i))
            .collect();
        for list in children.values_mut() {
            list.sort_by_key(|c| order[c.as_str()]);
        }
        Ok(Self {
            defs,
            parent,
            children,
            names,
        })
    }

    /// A sample registry of Italian regions with a few provinces and ambiti of Lombardia,
    /// used when no territories are configured.
    pub fn sample() -> Self {
        let mut defs: Vec<TerritoryDef> = SAMPLE_REGIONS
            .iter()
            .map(|(code, name)| TerritoryDef {
                code: (*code).into(),
                name: (*name).into(),
                parent: None,
            })
            .collect();
        defs.extend(
            SAMPLE_LOCAL
                .iter()
                .map(|(code, name, parent)| TerritoryDef {
                    code: (*code).into(),
                    name: (*name).into(),
                    parent: Some((*parent).into()),
                }),
        );
        Self::new(defs).expect("the sample registry is valid")
    }

    /// The territory with this code, if registered.
    pub fn get(&self, code: &str) -> Option<TerritoryCode> {
        let code = TerritoryCode::parse(code)?;
        self.parent.contains_key(&code).then_some(code)
    }

    /// Whether `code` is registered.
    pub fn contains(&self, code: &TerritoryCode) -> bool {
        self.parent.contains_key(code)
    }

    /// The name of a registered territory.
    pub fn name(&self, code: &TerritoryCode) -> Option<&str> {
        self.names.get(code).map(String::as_str)
    }

    /// The parent of a registered territory.
    pub fn parent(&self, code: &TerritoryCode) -> Option<&TerritoryCode> {
        self.parent.get(code).and_then(Option::as_ref)
    }

    /// `code` itself and everything below it.
    pub fn descendants_or_self(&self, code: &TerritoryCode) -> BTreeSet<TerritoryCode> {
        let mut out = BTreeSet::new();
        let mut stack = vec![code.clone()];
        while let Some(c) = stack.pop() {
            if let Some(kids) = self.children.get(&c) {
                stack.extend(kids.iter().cloned());
            }
            out.insert(c);
        }
        out
    }

    /// The territories directly below `code` in configuration order; the roots when `None`.
    pub fn children(&self, code: Option<&TerritoryCode>) -> Vec<TerritoryCode> {
        match code {
            Some(code) => self.children.get(code).cloned().unwrap_or_default(),
            None => self
                .defs
                .iter()
                .filter(|d| d.parent.is_none())
                .map(|d| TerritoryCode(d.code.clone()))
                .collect(),
        }
    }

    /// Whether `code` is `ancestor` or lies below it.
    pub fn is_within(&self, code: &TerritoryCode, ancestor: &TerritoryCode) -> bool {
        let mut cursor = Some(code);
        while let Some(c) = cursor {
            if c == ancestor {
                return true;
            }
            cursor = self.parent(c);
        }
        false
    }

    /// The registry as a forest, roots in configuration order.
    pub fn tree(&self) -> Vec<TerritoryNode> {
        self.defs
            .iter()
            .filter(|d| d.parent.is_none())
            .map(|d| self.node(&TerritoryCode(d.code.clone())))
            .collect()
    }

    fn node(&self, code: &TerritoryCode) -> TerritoryNode {
        TerritoryNode {
            code: code.clone(),
            name: self.names[code].clone(),
            children: self
                .children
                .get(code)
                .map(|kids| kids.iter().map(|k| self.node(k)).collect())
                .unwrap_or_default(),
        }
    }

    /// Every registered territory, as configured.
    pub fn definitions(&self) -> &[TerritoryDef] {
        &self.defs
    }
}

impl Default for TerritoryRegistry {
    fn default() -> Self {
        Self::sample()
    }
}

/// Italian regions (autonomous provinces of Trentino-Alto Adige listed as the region).
const SAMPLE_REGIONS: &[(&str, &str)] = &[
    ("PIE", "Piemonte"),
    ("VDA", "Valle d'Aosta"),
    ("LOM", "Lombardia"),
    ("TAA", "Trentino-Alto Adige"),
    ("VEN", "Veneto"),
    ("FVG", "Friuli-Venezia Giulia"),
    ("LIG", "Liguria"),
    ("EMR", "Emilia-Romagna"),
    ("TOS", "Toscana"),
    ("UMB", "Umbria"),
    ("MAR", "Marche"),
    ("LAZ", "Lazio"),
    ("ABR", "Abruzzo"),
    ("MOL", "Molise"),
    ("CAM", "Campania"),
    ("PUG", "Puglia"),
    ("BAS", "Basilicata"),
    ("CAL", "Calabria"),
    ("SIC", "Sicilia"),
    ("SAR", "Sardegna"),
];

/// Provinces and ambiti territoriali sociali of the sample: (code, name, parent).
const SAMPLE_LOCAL: &[(&str, &str, &str)] = &[
    ("LOM-BG", "Provincia di Bergamo", "LOM"),
    ("LOM-BG-BERGAMO", "Ambito di Bergamo", "LOM-BG"),
    ("LOM-BG-VALLE-BREMBANA", "Ambito Valle Brembana", "LOM-BG"),
    (
        "LOM-BG-VALLE-IMAGNA",
        "Ambito Valle Imagna e Villa d'Almè",
        "LOM-BG",
    ),
    ("LOM-LC", "Provincia di Lecco", "LOM"),
    ("LOM-LC-LECCO", "Ambito di Lecco", "LOM-LC"),
    ("LOM-MI", "Città metropolitana di Milano", "LOM"),
    ("LOM-MI-MILANO", "Ambito di Milano Città", "LOM-MI"),
    ("PIE-TO", "Città metropolitana di Torino", "PIE"),
    ("PIE-TO-TORINO", "Ambito di Torino", "PIE-TO"),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn def(code: &str, parent: Option<&str>) -> TerritoryDef {
        TerritoryDef {
            code: code.into(),
            name: code.into(),
            parent: parent.map(Into::into),
        }
    }

    #[test]
    fn codes_are_subject_safe() {
        assert!(TerritoryCode::parse("LOM-BG_01").is_some());
        assert!(TerritoryCode::parse("").is_none());
        assert!(TerritoryCode::parse("LOM.BG").is_none());
        assert!(TerritoryCode::parse("LOM BG").is_none());
        assert!(TerritoryCode::parse("LOM>").is_none());
        assert!(TerritoryCode::parse(&"A".repeat(65)).is_none());
    }

    #[test]
    fn descendants_roll_up_the_tree() {
        let registry = TerritoryRegistry::sample();
        let lom = registry.get("LOM").unwrap();
        let below = registry.descendants_or_self(&lom);
        assert!(below.contains(&registry.get("LOM-BG-VALLE-BREMBANA").unwrap()));
        assert!(below.contains(&lom));
        assert!(!below.contains(&registry.get("PIE-TO-TORINO").unwrap()));
        assert!(registry.is_within(&registry.get("LOM-LC-LECCO").unwrap(), &lom));
        assert!(!registry.is_within(&lom, &registry.get("LOM-LC").unwrap()));
    }

    #[test]
    fn tree_lists_roots_with_children() {
        let registry = TerritoryRegistry::sample();
        let tree = registry.tree();
        assert_eq!(tree.len(), 20);
        let lom = tree.iter().find(|n| n.code.as_str() == "LOM").unwrap();
        let codes: Vec<_> = lom.children.iter().map(|c| c.code.as_str()).collect();
        assert_eq!(codes, vec!["LOM-BG", "LOM-LC", "LOM-MI"]);
    }

    #[test]
    fn invalid_registries_are_refused() {
        assert_eq!(
            TerritoryRegistry::new(vec![def("A", Some("B"))]).unwrap_err(),
            ConfigError::UnknownParent {
                territory: "A".into(),
                parent: "B".into()
            }
        );
        assert_eq!(
            TerritoryRegistry::new(vec![def("A", Some("B")), def("B", Some("A"))]).unwrap_err(),
            ConfigError::TerritoryCycle("A".into())
        );
        assert_eq!(
            TerritoryRegistry::new(vec![def("A", None), def("A", None)]).unwrap_err(),
            ConfigError::DuplicateTerritory("A".into())
        );
        assert_eq!(
            TerritoryRegistry::new(vec![def("A.B", None)]).unwrap_err(),
            ConfigError::InvalidTerritoryCode("A.B".into())
        );
    }
}
