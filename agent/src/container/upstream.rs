//! Where the proxy sends a container's requests: a scheme and a port, for
//! the container's own name and per alias. `SCHEME:PORT` is parsed and
//! shown here and nowhere else (config, API, CLI and status all use it).

use super::Alias;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// Where requests go inside a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upstream {
    pub scheme: Scheme,
    pub port: u16,
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.scheme.as_str(), self.port)
    }
}

impl std::str::FromStr for Upstream {
    type Err = String;

    /// `SCHEME:PORT` as the config and the CLI write it (`https:443`,
    /// `http:8080`).
    fn from_str(s: &str) -> Result<Upstream, String> {
        let (scheme, port) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?} is not SCHEME:PORT (e.g. https:443, http:8080)"))?;
        let scheme = match scheme {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            other => return Err(format!("scheme {other:?} is not http or https")),
        };
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("port {port:?} is not a port number"))?;
        Ok(Upstream { scheme, port })
    }
}

/// A container's own upstreams: for its name and per alias; what is not
/// set falls back (an alias to the container's, the container's to the
/// agent's `edge.upstream`). Kept on disk and shown as one map whose key
/// `""` is the container's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    try_from = "BTreeMap<String, Upstream>",
    into = "BTreeMap<String, Upstream>"
)]
pub struct Upstreams {
    pub container: Option<Upstream>,
    pub aliases: BTreeMap<Alias, Upstream>,
}

impl Upstreams {
    pub fn is_empty(&self) -> bool {
        self.container.is_none() && self.aliases.is_empty()
    }

    /// Where requests for the container's own name go.
    pub fn for_container(&self, default: Upstream) -> Upstream {
        self.container.unwrap_or(default)
    }

    /// Where requests for `alias` go.
    pub fn for_alias(&self, alias: &Alias, default: Upstream) -> Upstream {
        self.aliases
            .get(alias)
            .copied()
            .unwrap_or(self.for_container(default))
    }

    /// From an ensure's map (`""` or an alias → `SCHEME:PORT`); every alias
    /// named must be one of `aliases`.
    pub fn parse(map: &BTreeMap<String, String>, aliases: &[Alias]) -> Result<Upstreams, String> {
        let mut out = Upstreams::default();
        for (key, value) in map {
            let up: Upstream = value
                .parse()
                .map_err(|e| format!("upstream for {key:?}: {e}"))?;
            if key.is_empty() {
                out.container = Some(up);
                continue;
            }
            let alias = aliases.iter().find(|a| a.as_str() == key).ok_or_else(|| {
                format!("upstream for {key:?}: not one of the container's aliases")
            })?;
            out.aliases.insert(alias.clone(), up);
        }
        Ok(out)
    }

    /// As the API shows them: `""` or an alias → `SCHEME:PORT`.
    pub fn shown(&self) -> BTreeMap<String, String> {
        BTreeMap::from(self.clone())
            .into_iter()
            .map(|(k, v)| (k, v.to_string()))
            .collect()
    }
}

impl From<Upstreams> for BTreeMap<String, Upstream> {
    fn from(u: Upstreams) -> Self {
        let mut m: BTreeMap<String, Upstream> = u
            .aliases
            .into_iter()
            .map(|(a, up)| (a.as_str().to_string(), up))
            .collect();
        if let Some(c) = u.container {
            m.insert(String::new(), c);
        }
        m
    }
}

impl TryFrom<BTreeMap<String, Upstream>> for Upstreams {
    type Error = String;

    fn try_from(m: BTreeMap<String, Upstream>) -> Result<Upstreams, String> {
        let mut out = Upstreams::default();
        for (key, up) in m {
            if key.is_empty() {
                out.container = Some(up);
            } else {
                let alias: Alias = key.parse().map_err(|e| format!("upstreams: {e}"))?;
                out.aliases.insert(alias, up);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HTTPS: Upstream = Upstream {
        scheme: Scheme::Https,
        port: 443,
    };
    const HTTP8080: Upstream = Upstream {
        scheme: Scheme::Http,
        port: 8080,
    };

    #[test]
    fn upstreams_parse_and_show_as_scheme_and_port() {
        assert_eq!("https:443".parse(), Ok(HTTPS));
        assert_eq!("http:8080".parse(), Ok(HTTP8080));
        assert_eq!(HTTP8080.to_string(), "http:8080");
        let bad = |s: &str| s.parse::<Upstream>().unwrap_err();
        assert_eq!(bad("ftp:21"), "scheme \"ftp\" is not http or https");
        assert_eq!(bad("http:0"), "port \"0\" is not a port number");
        assert_eq!(
            bad("8080"),
            "\"8080\" is not SCHEME:PORT (e.g. https:443, http:8080)"
        );
    }

    #[test]
    fn aliases_fall_back_to_the_container_and_then_the_default() {
        let api: Alias = "api".parse().unwrap();
        let www: Alias = "www".parse().unwrap();
        let mut u = Upstreams::default();
        assert_eq!(u.for_alias(&www, HTTPS), HTTPS);
        u.container = Some(HTTP8080);
        u.aliases.insert(api.clone(), HTTPS);
        assert_eq!(u.for_container(HTTPS), HTTP8080);
        assert_eq!(u.for_alias(&www, HTTPS), HTTP8080);
        assert_eq!(u.for_alias(&api, HTTP8080), HTTPS);
    }

    #[test]
    fn an_ensure_names_only_its_own_aliases() {
        let aliases: Vec<Alias> = vec!["www".parse().unwrap()];
        let map = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        let u = Upstreams::parse(&map("www", "http:8080"), &aliases).unwrap();
        assert_eq!(u.aliases.len(), 1);
        assert_eq!(
            Upstreams::parse(&map("db", "http:8080"), &aliases).unwrap_err(),
            "upstream for \"db\": not one of the container's aliases"
        );
        assert_eq!(
            Upstreams::parse(&map("", "smtp:25"), &aliases).unwrap_err(),
            "upstream for \"\": scheme \"smtp\" is not http or https"
        );
    }

    #[test]
    fn records_keep_the_map_they_had() {
        let json = r#"{"":{"scheme":"http","port":8080},"www":{"scheme":"https","port":443}}"#;
        let u: Upstreams = serde_json::from_str(json).unwrap();
        assert_eq!(u.container, Some(HTTP8080));
        assert_eq!(serde_json::to_string(&u).unwrap(), json);
        assert_eq!(
            u.shown(),
            BTreeMap::from([
                (String::new(), "http:8080".to_string()),
                ("www".to_string(), "https:443".to_string())
            ])
        );
    }
}
