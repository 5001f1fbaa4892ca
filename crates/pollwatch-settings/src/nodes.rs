//! `amqp.url`: one broker node's URL, or several for a cluster, tried in order.

use std::fmt;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::SecretUrl;

/// The most nodes `amqp.url` may list: a RabbitMQ cluster has three, five or seven.
pub const MAX_NODES: usize = 16;

/// The broker's nodes: a TOML list of URLs, or one string with the URLs separated by commas (as
/// an environment variable gives it; a comma inside a password is written `%2C`). Each URL keeps
/// its credentials secret, as [`SecretUrl`] does; they print redacted, separated by `, `.
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerUrls(Vec<SecretUrl>);

impl BrokerUrls {
    /// `urls` in the order to try them. Panics on an empty list: settings refuse one.
    pub fn new(urls: Vec<SecretUrl>) -> Self {
        assert!(!urls.is_empty(), "a broker has one node at least");
        Self(urls)
    }

    pub fn nodes(&self) -> &[SecretUrl] {
        &self.0
    }

    /// The first node's URL: its user is the one every node is connected as.
    pub fn first(&self) -> &SecretUrl {
        &self.0[0]
    }

    /// Every URL with its credentials, for connecting. Never log the result.
    pub fn expose(&self) -> Vec<String> {
        self.0.iter().map(|u| u.expose().to_owned()).collect()
    }

    /// Errs with a message free of secrets, naming the node, unless every URL is an
    /// `amqp://` or `amqps://` one and they are few enough.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.0.len() > MAX_NODES {
            return Err(format!("lists {} nodes; at most {MAX_NODES}", self.0.len()));
        }
        for (i, url) in self.0.iter().enumerate() {
            url.check_scheme(&["amqp", "amqps"]).map_err(|message| match self.0.len() {
                1 => message,
                _ => format!("node {} of {}: {message}", i + 1, self.0.len()),
            })?;
        }
        Ok(())
    }

    fn parse_list(text: &str) -> Result<Self, String> {
        let urls: Vec<SecretUrl> =
            text.split(',').map(str::trim).filter(|u| !u.is_empty()).map(SecretUrl::new).collect();
        if urls.is_empty() {
            return Err("gives no broker URL".to_owned());
        }
        Ok(Self(urls))
    }
}

impl From<SecretUrl> for BrokerUrls {
    fn from(url: SecretUrl) -> Self {
        Self(vec![url])
    }
}

impl fmt::Debug for BrokerUrls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.0).finish()
    }
}

impl fmt::Display for BrokerUrls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: Vec<String> = self.0.iter().map(SecretUrl::redacted).collect();
        f.write_str(&shown.join(", "))
    }
}

impl Serialize for BrokerUrls {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => one.serialize(serializer),
            many => many.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for BrokerUrls {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Urls;
        impl<'de> Visitor<'de> for Urls {
            type Value = BrokerUrls;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a broker URL, URLs separated by commas, or a list of URLs")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<BrokerUrls, E> {
                BrokerUrls::parse_list(text).map_err(E::custom)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<BrokerUrls, A::Error> {
                let mut urls = Vec::new();
                while let Some(url) = seq.next_element::<String>()? {
                    // Bounded here already: a list is never read past what settings accept.
                    if urls.len() > MAX_NODES {
                        return Err(de::Error::custom(format!("lists more than {MAX_NODES} nodes")));
                    }
                    urls.push(SecretUrl::new(url.trim()));
                }
                if urls.is_empty() {
                    return Err(de::Error::custom("gives no broker URL"));
                }
                Ok(BrokerUrls(urls))
            }
        }
        deserializer.deserialize_any(Urls)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(toml: &str) -> Result<BrokerUrls, String> {
        #[derive(Deserialize)]
        struct Holder {
            url: BrokerUrls,
        }
        toml::from_str::<Holder>(toml).map(|h| h.url).map_err(|e| e.message().to_owned())
    }

    #[test]
    fn one_url_several_separated_by_commas_or_a_list() {
        let one = read(r#"url = "amqp://w:pw@a:5672/%2f""#).expect("one");
        assert_eq!(one.expose(), ["amqp://w:pw@a:5672/%2f"]);
        let joined =
            read(r#"url = "amqp://w:pw@a/%2f, amqp://w:pw@b/%2f,amqp://w:pw@c/%2f""#).expect("three");
        let listed =
            read(r#"url = ["amqp://w:pw@a/%2f", "amqp://w:pw@b/%2f", "amqp://w:pw@c/%2f"]"#).expect("three");
        assert_eq!(joined, listed);
        assert_eq!(listed.expose(), ["amqp://w:pw@a/%2f", "amqp://w:pw@b/%2f", "amqp://w:pw@c/%2f"]);
        assert_eq!(listed.first().expose(), "amqp://w:pw@a/%2f");
        assert_eq!(read(r#"url = " , ""#), Err("gives no broker URL".to_owned()));
        assert_eq!(read("url = []"), Err("gives no broker URL".to_owned()));
        assert!(read("url = 5").is_err());
    }

    #[test]
    fn every_node_prints_redacted_and_is_checked_by_name() {
        let urls = read(r#"url = ["amqp://w:s3cr3t@a/%2f", "amqp://w:s3cr3t@b/%2f"]"#).expect("two");
        for shown in [urls.to_string(), format!("{urls:?}")] {
            assert!(!shown.contains("s3cr3t"), "{shown}");
            assert!(shown.contains("w:***@a") && shown.contains("w:***@b"), "{shown}");
        }
        assert_eq!(urls.to_string(), "amqp://w:***@a/%2f, amqp://w:***@b/%2f");
        assert_eq!(urls.check(), Ok(()));
        let bad = read(r#"url = "amqp://w:s3cr3t@a/%2f,http://w:s3cr3t@b/""#).expect("two");
        let message = bad.check().expect_err("http is not a broker's");
        assert!(message.starts_with("node 2 of 2: scheme `http`"), "{message}");
        assert!(!message.contains("s3cr3t"), "{message}");
        let many = vec!["amqp://h/"; MAX_NODES + 1].join(",");
        assert!(read(&format!("url = {many:?}")).expect("read").check().is_err());
        let listed: Vec<String> = vec!["amqp://h/".to_owned(); MAX_NODES + 2];
        assert!(read(&format!("url = {listed:?}")).is_err(), "a list is bounded as it is read");
    }
}
