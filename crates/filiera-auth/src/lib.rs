//! Authentication and the vocabulary of authorisation (SPEC 5.1): who is calling, in which
//! role, over which territories, and the bearer tokens that say so. No HTTP and no database:
//! the HTTP layer asks this crate whether a token is valid and whether a principal covers a
//! territory; the binary asks it to issue tokens and to find the signing secret.
//!
//! # Layout
//! - [`principal`]: [`Role`], [`Principal`] and its territory [`Scope`] (a territory covers its
//!   descendants).
//! - [`token`]: [`Claims`], [`TokenKeys`] (HS256 issue and verify, `alg` pinned, `exp`
//!   required, 30 s leeway) and [`AuthError`].
//! - [`secret`]: the signing secret: [`AuthSecret`], and the owner-only `auth-secret` file
//!   generated in the embedded data folder.

pub mod principal;
pub mod secret;
pub mod token;

pub use principal::{Principal, Role, Scope};
pub use secret::{AuthSecret, SECRET_FILE, SecretSource, load_or_generate};
pub use token::{AuthError, Claims, LEEWAY_SECONDS, TokenKeys};
