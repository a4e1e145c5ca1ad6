//! [`NatsUrl`]: where the NATS server(s) are, a secret because it may carry a password.

use std::fmt;

use secrecy::{ExposeSecret as _, SecretString};

/// The NATS server address(es), comma-separated (`nats://host:4222,nats://other:4222`). An
/// address may carry the user and password of the connection
/// (`nats://filiera-relay:PASSWORD@host:4222`), so the URL is kept like the database URL: it is
/// never shown whole, `Debug` and `Display` mask every password, and it is not logged.
#[derive(Clone)]
pub struct NatsUrl(SecretString);

impl NatsUrl {
    /// `url` as given.
    pub fn new(url: impl Into<String>) -> Self {
        Self(SecretString::from(url.into()))
    }

    /// The URL with its passwords, for the client only.
    pub(crate) fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// Each address of the comma-separated list, for the client. async-nats parses a string as
    /// one address (`"nats://a:4222,nats://b:4222"` is an invalid port), so the list is split
    /// here and handed over whole: the client then tries every server at start-up and on
    /// reconnection, not only those a server tells it about.
    pub(crate) fn addresses(&self) -> std::io::Result<Vec<async_nats::ServerAddr>> {
        self.expose()
            .split(',')
            .map(str::trim)
            .filter(|server| !server.is_empty())
            .map(str::parse)
            .collect()
    }

    /// The user and password of the first address that has a user, percent-decoded
    /// (async-nats does not read them from the URL by itself).
    pub(crate) fn credentials(&self) -> Option<(String, String)> {
        self.expose().split(',').find_map(|server| {
            let address: async_nats::ServerAddr = server.trim().parse().ok()?;
            let user = percent_decode(address.username()?);
            let password = percent_decode(address.password().unwrap_or_default());
            Some((user, password))
        })
    }

    /// The addresses with every password replaced by `***`.
    pub fn redacted(&self) -> String {
        self.expose()
            .split(',')
            .map(|server| {
                let server = server.trim();
                let Some((scheme, rest)) = server.split_once("://") else {
                    return server.to_owned();
                };
                match rest.rsplit_once('@') {
                    Some((userinfo, host)) => {
                        let user = userinfo.split(':').next().unwrap_or_default();
                        format!("{scheme}://{user}:***@{host}")
                    }
                    None => server.to_owned(),
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl fmt::Debug for NatsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("NatsUrl").field(&self.redacted()).finish()
    }
}

impl fmt::Display for NatsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl From<&str> for NatsUrl {
    fn from(url: &str) -> Self {
        Self::new(url)
    }
}

impl From<&String> for NatsUrl {
    fn from(url: &String) -> Self {
        Self::new(url.as_str())
    }
}

impl From<String> for NatsUrl {
    fn from(url: String) -> Self {
        Self::new(url)
    }
}

impl From<SecretString> for NatsUrl {
    fn from(url: SecretString) -> Self {
        Self(url)
    }
}

/// Decodes `%XX` escapes (URL user information); anything malformed is kept as it is.
fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::NatsUrl;

    #[test]
    fn credentials_come_from_the_url() {
        assert_eq!(NatsUrl::from("nats://127.0.0.1:4222").credentials(), None);
        assert_eq!(
            NatsUrl::from("nats://filiera-relay:p0a1@127.0.0.1:4222").credentials(),
            Some(("filiera-relay".to_owned(), "p0a1".to_owned()))
        );
        assert_eq!(
            NatsUrl::from("nats://10.0.0.1:4222, nats://relay:a%40b%3Ac@10.0.0.2:4222")
                .credentials(),
            Some(("relay".to_owned(), "a@b:c".to_owned()))
        );
    }

    #[test]
    fn every_address_of_a_list_is_a_server() {
        let url = NatsUrl::from("nats://10.0.0.1:4222, nats://relay:p@10.0.0.2:4223,10.0.0.3");
        let servers: Vec<(String, u16)> = url
            .addresses()
            .unwrap()
            .iter()
            .map(|a| (a.host().to_owned(), a.port()))
            .collect();
        assert_eq!(
            servers,
            [
                ("10.0.0.1".to_owned(), 4222),
                ("10.0.0.2".to_owned(), 4223),
                ("10.0.0.3".to_owned(), 4222)
            ]
        );
        // What the client would make of the list by itself: one malformed address.
        assert!(
            "nats://10.0.0.1:4222,nats://10.0.0.2:4222"
                .parse::<async_nats::ServerAddr>()
                .is_err()
        );
        assert_eq!(NatsUrl::from("nats://a:1,").addresses().unwrap().len(), 1);
        assert!(NatsUrl::from("nats://a:1,http://b").addresses().is_err());
    }

    #[test]
    fn the_password_is_never_shown() {
        let url = NatsUrl::from("nats://filiera-relay:p0a1b2@10.0.0.1:4222,nats://10.0.0.2:4222");
        let masked = "nats://filiera-relay:***@10.0.0.1:4222,nats://10.0.0.2:4222";
        assert_eq!(url.redacted(), masked);
        assert_eq!(url.to_string(), masked);
        assert_eq!(format!("{url:?}"), format!("NatsUrl({masked:?})"));
        assert_eq!(
            NatsUrl::from("nats://127.0.0.1:4222").redacted(),
            "nats://127.0.0.1:4222"
        );
    }
}
