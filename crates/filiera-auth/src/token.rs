//! Bearer tokens: JWTs signed with HS256 and the service's secret (SPEC 5.1).
//!
//! Verification pins the algorithm (a token whose header says `none`, `HS512` or anything else
//! is refused before its signature is even looked at), requires `exp`, allows
//! [`LEEWAY_SECONDS`] of clock skew, and refuses a role or a territory code the service does
//! not know, so that a token can never name a scope the registry cannot expand.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use filiera_domain::{TerritoryCode, TerritoryRegistry};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretSlice};
use serde::{Deserialize, Serialize};

use crate::principal::{Principal, Role};
use crate::secret::AuthSecret;

/// Clock skew tolerated on `exp` (and `nbf`), in seconds.
pub const LEEWAY_SECONDS: u64 = 30;

/// The shortest accepted signing secret: HS256 wants a key of at least 256 bits.
pub const MIN_SECRET_BYTES: usize = 32;

/// The longest accepted `sub`: it is recorded with every command.
pub const MAX_SUBJECT_CHARS: usize = 200;

/// The claims of a filiera token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The principal's name, recorded as the acting principal of its commands.
    pub sub: String,
    pub role: Role,
    /// Territory codes; each covers its descendants. Ignored for administrators.
    #[serde(default)]
    pub territories: Vec<TerritoryCode>,
    /// Expiry, seconds since the Unix epoch. Required.
    pub exp: u64,
    /// Issue time, seconds since the Unix epoch.
    pub iat: u64,
}

/// The claims as they arrive, before the role and the territories are checked.
#[derive(Deserialize)]
struct ReceivedClaims {
    sub: String,
    role: String,
    #[serde(default)]
    territories: Vec<String>,
}

/// Why a token was refused. The messages never quote the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("the token has expired")]
    Expired,
    #[error("the token's signature does not match (signed with another secret, or altered)")]
    BadSignature,
    #[error("the token is not signed with HS256 (its header names another algorithm, or none)")]
    WrongAlgorithm,
    #[error("the token has no valid `{0}` claim")]
    MissingClaim(&'static str),
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error(
        "the token names an unknown role; one of operator, evaluator, subscriber, administrator"
    )]
    UnknownRole,
    #[error("the token names territory `{0}`, which the registry does not know")]
    UnknownTerritory(String),
    #[error("a token of role `{0}` must name at least one territory")]
    NoTerritories(Role),
    #[error("the signing secret is too short: it needs at least {MIN_SECRET_BYTES} bytes")]
    WeakSecret,
    #[error("the token could not be signed")]
    Signing,
}

impl AuthError {
    /// Whether the token was refused only because it expired (clients then fetch a new one).
    pub fn is_expired(&self) -> bool {
        matches!(self, Self::Expired)
    }
}

/// Issues and verifies tokens with the service's secret. The secret stays in a `secrecy` box
/// (wiped on drop) and is never printed: `Debug` shows nothing of it.
#[derive(Clone)]
pub struct TokenKeys {
    secret: std::sync::Arc<SecretSlice<u8>>,
}

impl fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenKeys { .. }")
    }
}

/// Seconds since the Unix epoch.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl TokenKeys {
    /// Keys over `secret`, which must hold at least [`MIN_SECRET_BYTES`] bytes.
    pub fn new(secret: &AuthSecret) -> Result<Self, AuthError> {
        let bytes = secret.expose_bytes();
        if bytes.len() < MIN_SECRET_BYTES {
            return Err(AuthError::WeakSecret);
        }
        Ok(Self {
            secret: std::sync::Arc::new(SecretSlice::from(bytes.to_vec())),
        })
    }

    /// A token for `subject` in `role` over `territories`, valid for `ttl` from now.
    pub fn issue(
        &self,
        subject: &str,
        role: Role,
        territories: &[TerritoryCode],
        ttl: Duration,
    ) -> Result<String, AuthError> {
        if role.needs_territories() && territories.is_empty() {
            return Err(AuthError::NoTerritories(role));
        }
        let iat = now();
        self.sign(&Claims {
            sub: subject.to_owned(),
            role,
            territories: territories.to_vec(),
            exp: iat.saturating_add(ttl.as_secs()),
            iat,
        })
    }

    /// Signs exactly these claims (HS256). [`TokenKeys::issue`] is the usual way; this one
    /// also makes tokens that are already expired, for tests.
    pub fn sign(&self, claims: &Claims) -> Result<String, AuthError> {
        let key = EncodingKey::from_secret(self.secret.expose_secret());
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key)
            .map_err(|_| AuthError::Signing)
    }

    /// Checks `token` and returns its principal. Every territory it names must be registered.
    pub fn verify(
        &self,
        token: &str,
        registry: &TerritoryRegistry,
    ) -> Result<Principal, AuthError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECONDS;
        validation.set_required_spec_claims(&["exp"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        let key = DecodingKey::from_secret(self.secret.expose_secret());
        let data =
            jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation).map_err(|err| {
                match err.kind() {
                    ErrorKind::ExpiredSignature => AuthError::Expired,
                    ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                    ErrorKind::InvalidSignature => AuthError::BadSignature,
                    ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                        AuthError::WrongAlgorithm
                    }
                    ErrorKind::MissingRequiredClaim(claim) if claim == "exp" => {
                        AuthError::MissingClaim("exp")
                    }
                    ErrorKind::InvalidClaimFormat(claim) if claim == "exp" => {
                        AuthError::MissingClaim("exp")
                    }
                    _ => AuthError::Malformed,
                }
            })?;
        // `decode` checks `exp` when it is a number; refuse any other shape outright.
        if !data
            .claims
            .get("exp")
            .is_some_and(serde_json::Value::is_u64)
        {
            return Err(AuthError::MissingClaim("exp"));
        }
        let received: ReceivedClaims =
            serde_json::from_value(data.claims).map_err(|_| AuthError::Malformed)?;
        let subject = received.sub;
        if subject.trim().is_empty()
            || subject.chars().count() > MAX_SUBJECT_CHARS
            || subject.chars().any(char::is_control)
        {
            return Err(AuthError::MissingClaim("sub"));
        }
        let role: Role = received.role.parse().map_err(|_| AuthError::UnknownRole)?;
        let territories = received
            .territories
            .iter()
            .map(|code| {
                registry
                    .get(code)
                    .ok_or_else(|| AuthError::UnknownTerritory(printable(code)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if role.needs_territories() && territories.is_empty() {
            return Err(AuthError::NoTerritories(role));
        }
        Ok(Principal {
            subject,
            role,
            territories,
        })
    }
}

/// A claim value fit for an error message: short, without control characters.
fn printable(value: &str) -> String {
    value.chars().filter(|c| !c.is_control()).take(64).collect()
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::json;

    use super::*;

    fn keys(secret: &str) -> TokenKeys {
        TokenKeys::new(&AuthSecret::new(secret.into())).unwrap()
    }

    fn main_keys() -> TokenKeys {
        keys("a test secret that is long enough for HS256 ....")
    }

    fn registry() -> TerritoryRegistry {
        TerritoryRegistry::sample()
    }

    fn code(c: &str) -> TerritoryCode {
        TerritoryCode::parse(c).unwrap()
    }

    /// A token of any claims and header, signed with `secret`.
    fn raw_token(alg: Algorithm, claims: serde_json::Value, secret: &[u8]) -> String {
        jsonwebtoken::encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    const SECRET: &[u8] = b"a test secret that is long enough for HS256 ....";

    #[test]
    fn issued_tokens_verify_into_their_principal() {
        let keys = main_keys();
        let token = keys
            .issue(
                "anna",
                Role::Operator,
                &[code("LOM-BG")],
                Duration::from_secs(3600),
            )
            .unwrap();
        let principal = keys.verify(&token, &registry()).unwrap();
        assert_eq!(principal.subject, "anna");
        assert_eq!(principal.role, Role::Operator);
        assert_eq!(principal.territories, vec![code("LOM-BG")]);
        let admin = keys
            .issue("root", Role::Administrator, &[], Duration::from_secs(60))
            .unwrap();
        assert_eq!(
            keys.verify(&admin, &registry()).unwrap().role,
            Role::Administrator
        );
    }

    #[test]
    fn expired_tokens_are_refused_after_the_leeway() {
        let keys = main_keys();
        let at = now();
        let claims = |exp| Claims {
            sub: "anna".into(),
            role: Role::Administrator,
            territories: vec![],
            exp,
            iat: at - 7200,
        };
        let expired = keys.sign(&claims(at - 3600)).unwrap();
        assert_eq!(
            keys.verify(&expired, &registry()).unwrap_err(),
            AuthError::Expired
        );
        assert!(AuthError::Expired.is_expired());
        // Within the leeway: accepted.
        let skewed = keys.sign(&claims(at - LEEWAY_SECONDS / 2)).unwrap();
        assert!(keys.verify(&skewed, &registry()).is_ok());
        let beyond = keys.sign(&claims(at - LEEWAY_SECONDS - 5)).unwrap();
        assert_eq!(
            keys.verify(&beyond, &registry()).unwrap_err(),
            AuthError::Expired
        );
    }

    #[test]
    fn a_wrong_signature_is_refused() {
        let other = keys("another secret, just as long as the first one!!");
        let token = other
            .issue("anna", Role::Administrator, &[], Duration::from_secs(60))
            .unwrap();
        assert_eq!(
            main_keys().verify(&token, &registry()).unwrap_err(),
            AuthError::BadSignature
        );
        // An altered payload breaks the signature too.
        let good = main_keys()
            .issue("anna", Role::Evaluator, &[], Duration::from_secs(60))
            .unwrap();
        let parts: Vec<&str> = good.split('.').collect();
        let forged_claims = json!({"sub": "anna", "role": "administrator", "exp": now() + 60});
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(forged_claims.to_string()),
            parts[2]
        );
        assert_eq!(
            main_keys().verify(&forged, &registry()).unwrap_err(),
            AuthError::BadSignature
        );
    }

    #[test]
    fn alg_none_is_refused() {
        let claims = json!({"sub": "mallory", "role": "administrator", "exp": now() + 600});
        for header in [
            json!({"alg": "none", "typ": "JWT"}),
            json!({"alg": "None"}),
            json!({"alg": "NONE"}),
        ] {
            let token = format!(
                "{}.{}.",
                URL_SAFE_NO_PAD.encode(header.to_string()),
                URL_SAFE_NO_PAD.encode(claims.to_string())
            );
            let err = main_keys().verify(&token, &registry()).unwrap_err();
            assert!(
                matches!(err, AuthError::WrongAlgorithm | AuthError::Malformed),
                "{header}: {err:?}"
            );
        }
    }

    #[test]
    fn other_algorithms_are_refused_even_with_the_right_secret() {
        let claims = json!({"sub": "anna", "role": "administrator", "exp": now() + 600});
        for alg in [Algorithm::HS512, Algorithm::HS384] {
            let token = raw_token(alg, claims.clone(), SECRET);
            assert_eq!(
                main_keys().verify(&token, &registry()).unwrap_err(),
                AuthError::WrongAlgorithm,
                "{alg:?}"
            );
        }
        // The same claims with HS256 pass: only the algorithm differed.
        let token = raw_token(Algorithm::HS256, claims, SECRET);
        assert!(main_keys().verify(&token, &registry()).is_ok());
    }

    #[test]
    fn garbage_is_refused() {
        for garbage in [
            "",
            "garbage",
            "a.b.c",
            "eyJhbGciOiJIUzI1NiJ9..",
            "....",
            "\u{1F600}.\u{1F600}.\u{1F600}",
        ] {
            let err = main_keys().verify(garbage, &registry()).unwrap_err();
            assert!(
                matches!(
                    err,
                    AuthError::Malformed | AuthError::BadSignature | AuthError::WrongAlgorithm
                ),
                "{garbage:?}: {err:?}"
            );
        }
    }

    #[test]
    fn exp_is_required_and_must_be_a_number() {
        let without = raw_token(
            Algorithm::HS256,
            json!({"sub": "anna", "role": "administrator"}),
            SECRET,
        );
        assert_eq!(
            main_keys().verify(&without, &registry()).unwrap_err(),
            AuthError::MissingClaim("exp")
        );
        for exp in [json!("never"), json!(null), json!(-5), json!(1.5e12)] {
            let token = raw_token(
                Algorithm::HS256,
                json!({"sub": "anna", "role": "administrator", "exp": exp}),
                SECRET,
            );
            let err = main_keys().verify(&token, &registry()).unwrap_err();
            assert!(
                matches!(
                    err,
                    AuthError::MissingClaim("exp") | AuthError::Malformed | AuthError::Expired
                ),
                "{exp}: {err:?}"
            );
        }
    }

    #[test]
    fn unknown_roles_and_territories_are_refused() {
        let keys = main_keys();
        let role = raw_token(
            Algorithm::HS256,
            json!({"sub": "anna", "role": "root", "exp": now() + 600}),
            SECRET,
        );
        assert_eq!(
            keys.verify(&role, &registry()).unwrap_err(),
            AuthError::UnknownRole
        );
        let territory = raw_token(
            Algorithm::HS256,
            json!({"sub": "anna", "role": "operator", "territories": ["ATLANTIS"], "exp": now() + 600}),
            SECRET,
        );
        assert_eq!(
            keys.verify(&territory, &registry()).unwrap_err(),
            AuthError::UnknownTerritory("ATLANTIS".into())
        );
        let unscoped = raw_token(
            Algorithm::HS256,
            json!({"sub": "anna", "role": "subscriber", "territories": [], "exp": now() + 600}),
            SECRET,
        );
        assert_eq!(
            keys.verify(&unscoped, &registry()).unwrap_err(),
            AuthError::NoTerritories(Role::Subscriber)
        );
        assert_eq!(
            keys.issue("anna", Role::Operator, &[], Duration::from_secs(60))
                .unwrap_err(),
            AuthError::NoTerritories(Role::Operator)
        );
        let nameless = raw_token(
            Algorithm::HS256,
            json!({"sub": " ", "role": "administrator", "exp": now() + 600}),
            SECRET,
        );
        assert_eq!(
            keys.verify(&nameless, &registry()).unwrap_err(),
            AuthError::MissingClaim("sub")
        );
    }

    #[test]
    fn short_secrets_are_refused_and_keys_never_print_them() {
        assert!(matches!(
            TokenKeys::new(&AuthSecret::new("short".into())),
            Err(AuthError::WeakSecret)
        ));
        let keys = main_keys();
        let printed = format!("{keys:?}");
        assert!(!printed.contains("test secret"), "{printed}");
        assert_eq!(printed, "TokenKeys { .. }");
    }

    #[test]
    fn error_messages_never_quote_the_token() {
        let token = main_keys()
            .issue("anna", Role::Administrator, &[], Duration::from_secs(60))
            .unwrap();
        let err = keys("another secret, just as long as the first one!!")
            .verify(&token, &registry())
            .unwrap_err();
        let message = err.to_string();
        for part in token.split('.') {
            assert!(!message.contains(part), "{message}");
        }
    }
}
