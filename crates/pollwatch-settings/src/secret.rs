//! URLs that carry credentials and must never be printed or logged as they are.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use url::Url;

/// Query parameters whose values are treated as secrets (matched as substrings, lower-case).
const SECRET_QUERY_KEYS: [&str; 4] = ["pass", "secret", "token", "key"];

/// Shown instead of a secret.
const REDACTED: &str = "***";

/// A URL whose password (and secret-looking query parameters) are redacted whenever it is
/// displayed, debug-printed or serialised. Only [`SecretUrl::expose`] gives the real value.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL with its credentials, for connecting. Never log the result.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with secrets replaced by `***`; safe to print.
    pub fn redacted(&self) -> String {
        let Ok(mut url) = Url::parse(&self.0) else {
            // Without a parse we cannot tell where a password would be, so show only the scheme.
            return match self.0.split_once("://") {
                Some((scheme, _)) => format!("{scheme}://{REDACTED} (unparseable URL)"),
                None => format!("{REDACTED} (unparseable URL)"),
            };
        };
        if url.password().is_some() {
            // Setting a password fails only for URLs that cannot have one, which is not this case.
            let _ = url.set_password(Some(REDACTED));
        }
        let has_secret_query = url.query_pairs().any(|(k, _)| is_secret_key(&k));
        if has_secret_query {
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(k, v)| {
                    let v = if is_secret_key(&k) { REDACTED.into() } else { v.into_owned() };
                    (k.into_owned(), v)
                })
                .collect();
            url.query_pairs_mut().clear().extend_pairs(pairs);
        }
        url.to_string()
    }

    /// The scheme, if the URL parses.
    pub fn scheme(&self) -> Option<String> {
        Url::parse(&self.0).ok().map(|u| u.scheme().to_owned())
    }

    /// Errs with a message (free of secrets) unless the URL parses and has one of `schemes`.
    pub(crate) fn check_scheme(&self, schemes: &[&str]) -> Result<(), String> {
        match self.scheme() {
            Some(scheme) if schemes.contains(&scheme.as_str()) => Ok(()),
            Some(scheme) => Err(format!(
                "scheme `{scheme}` is not supported; use one of {}",
                schemes.iter().map(|s| format!("`{s}://`")).collect::<Vec<_>>().join(", ")
            )),
            None => Err(format!("`{}` is not a valid URL", self.redacted())),
        }
    }
}

fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_QUERY_KEYS.iter().any(|s| key.contains(s))
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({:?})", self.redacted())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for SecretUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.redacted())
    }
}

impl<'de> Deserialize<'de> for SecretUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_in_user_info_is_redacted_everywhere() {
        let url = SecretUrl::new("amqp://observer:s3cr3t@broker.example:5672/%2f");
        for shown in [url.to_string(), format!("{url:?}"), url.redacted()] {
            assert!(!shown.contains("s3cr3t"), "{shown}");
            assert!(shown.contains("observer:***@broker.example"), "{shown}");
        }
        assert_eq!(url.expose(), "amqp://observer:s3cr3t@broker.example:5672/%2f");
    }

    #[test]
    fn secret_query_parameters_are_redacted() {
        let url = SecretUrl::new("postgres://db.example/pollwatch?sslmode=require&password=hunter2");
        let shown = url.redacted();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("sslmode=require"), "{shown}");
    }

    #[test]
    fn url_without_credentials_is_shown_unchanged() {
        assert_eq!(SecretUrl::new("sqlite://data/pollwatch.db").redacted(), "sqlite://data/pollwatch.db");
    }

    #[test]
    fn unparseable_url_shows_nothing_after_the_scheme() {
        let shown = SecretUrl::new("amqp://user:pw@[bad").redacted();
        assert!(!shown.contains("pw"), "{shown}");
        assert!(shown.starts_with("amqp://"), "{shown}");
    }

    #[test]
    fn serialising_redacts() {
        #[derive(Serialize)]
        struct Holder {
            url: SecretUrl,
        }
        let text = toml::to_string(&Holder { url: SecretUrl::new("amqp://u:secret@h/") }).unwrap();
        assert!(!text.contains("secret"), "{text}");
    }
}
