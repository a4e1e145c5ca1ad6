//! Roles, principals and their territory scopes.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use filiera_domain::{TerritoryCode, TerritoryRegistry};
use serde::{Deserialize, Serialize};

/// What a principal may do (SPEC 5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Records and reads the pathways of beneficiaries of its territories; reads their metrics.
    Operator,
    /// Reads metrics, audit lists and the registries; never a history, never personal data.
    Evaluator,
    /// Reads the event feed of its territories.
    Subscriber,
    /// Everything.
    Administrator,
}

impl Role {
    /// Every role, in the order of SPEC 5.1.
    pub const ALL: [Role; 4] = [
        Role::Operator,
        Role::Evaluator,
        Role::Subscriber,
        Role::Administrator,
    ];

    /// The name used in tokens and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Evaluator => "evaluator",
            Role::Subscriber => "subscriber",
            Role::Administrator => "administrator",
        }
    }

    /// Whether a token of this role must name at least one territory. Operators and
    /// subscribers work on territories; an evaluator without territories reads every
    /// territory's aggregates (a regional evaluator); an administrator's territories are
    /// ignored.
    pub fn needs_territories(self) -> bool {
        matches!(self, Role::Operator | Role::Subscriber)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown role `{s}`; one of {}",
                    Role::ALL.map(Role::as_str).join(", ")
                )
            })
    }
}

/// Which territories a principal reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every territory (administrators, unscoped evaluators).
    All,
    /// These territories and everything below them, expanded through the registry.
    Within(BTreeSet<TerritoryCode>),
}

impl Scope {
    /// Whether `territory` is in the scope.
    pub fn contains(&self, territory: &TerritoryCode) -> bool {
        match self {
            Scope::All => true,
            Scope::Within(set) => set.contains(territory),
        }
    }
}

/// An authenticated caller: a verified token's subject, role and territories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Who: recorded as the acting principal of every command (`sub` of the token).
    pub subject: String,
    pub role: Role,
    /// The territories named by the token, each registered; each covers its descendants.
    pub territories: Vec<TerritoryCode>,
}

impl Principal {
    /// Whether the principal reaches every territory.
    pub fn is_unscoped(&self) -> bool {
        self.role == Role::Administrator
            || (self.role == Role::Evaluator && self.territories.is_empty())
    }

    /// Whether `territory` is one of the principal's territories or lies below one of them.
    pub fn covers(&self, registry: &TerritoryRegistry, territory: &TerritoryCode) -> bool {
        self.is_unscoped()
            || self
                .territories
                .iter()
                .any(|scope| registry.is_within(territory, scope))
    }

    /// Every territory the principal reaches, expanded to descendants.
    pub fn scope(&self, registry: &TerritoryRegistry) -> Scope {
        if self.is_unscoped() {
            return Scope::All;
        }
        Scope::Within(
            self.territories
                .iter()
                .flat_map(|t| registry.descendants_or_self(t))
                .collect(),
        )
    }

    /// The principal's territories as written, for messages (`LOM-BG, PIE`).
    pub fn territory_list(&self) -> String {
        self.territories
            .iter()
            .map(TerritoryCode::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(role: Role, territories: &[&str]) -> Principal {
        Principal {
            subject: "tester".into(),
            role,
            territories: territories
                .iter()
                .map(|t| TerritoryCode::parse(t).unwrap())
                .collect(),
        }
    }

    fn code(c: &str) -> TerritoryCode {
        TerritoryCode::parse(c).unwrap()
    }

    #[test]
    fn roles_read_and_write_in_snake_case() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
            assert_eq!(
                serde_json::to_value(role).unwrap(),
                serde_json::json!(role.as_str())
            );
        }
        let err = "root".parse::<Role>().unwrap_err();
        assert!(err.contains("operator, evaluator, subscriber, administrator"));
        assert!(serde_json::from_str::<Role>("\"Administrator\"").is_err());
    }

    #[test]
    fn scope_covers_descendants_not_ancestors_or_siblings() {
        let registry = TerritoryRegistry::sample();
        let operator = principal(Role::Operator, &["LOM-BG"]);
        assert!(operator.covers(&registry, &code("LOM-BG")));
        assert!(operator.covers(&registry, &code("LOM-BG-BERGAMO")));
        assert!(!operator.covers(&registry, &code("LOM")));
        assert!(!operator.covers(&registry, &code("LOM-MI-MILANO")));
        assert!(!operator.covers(&registry, &code("PIE")));
        let Scope::Within(set) = operator.scope(&registry) else {
            panic!("an operator is scoped")
        };
        assert!(set.contains(&code("LOM-BG-BERGAMO")));
        assert!(!set.contains(&code("LOM")));
        assert_eq!(set, registry.descendants_or_self(&code("LOM-BG")));
    }

    #[test]
    fn several_territories_add_up() {
        let registry = TerritoryRegistry::sample();
        let subscriber = principal(Role::Subscriber, &["LOM-BG", "PIE"]);
        assert!(subscriber.covers(&registry, &code("PIE-TO-TORINO")));
        assert!(subscriber.covers(&registry, &code("LOM-BG-BERGAMO")));
        assert!(!subscriber.covers(&registry, &code("LOM-LC-LECCO")));
        assert_eq!(subscriber.territory_list(), "LOM-BG, PIE");
    }

    #[test]
    fn administrator_covers_all() {
        let registry = TerritoryRegistry::sample();
        for admin in [
            principal(Role::Administrator, &[]),
            principal(Role::Administrator, &["PIE"]),
        ] {
            assert!(admin.covers(&registry, &code("LOM-BG-BERGAMO")));
            assert_eq!(admin.scope(&registry), Scope::All);
        }
        // An evaluator without territories reads every territory; with some, only those.
        assert_eq!(principal(Role::Evaluator, &[]).scope(&registry), Scope::All);
        assert!(!principal(Role::Evaluator, &["PIE"]).covers(&registry, &code("LOM")));
        // An operator without territories covers nothing (tokens refuse it anyway).
        assert!(!principal(Role::Operator, &[]).covers(&registry, &code("LOM")));
    }
}
