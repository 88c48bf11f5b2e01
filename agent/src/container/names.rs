//! Validated newtypes for everything a user names: container names, aliases
//! and channel URLs. Every entry point (CLI, API, config) parses into these,
//! so code behind them never sees a path, an option or a shell word where a
//! name was meant.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Why a user-supplied name or URL was refused. Each message names the value
/// and the rule it broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("invalid container name {0:?}: {1}")]
    ContainerName(String, &'static str),
    #[error("invalid alias {0:?}: {1}")]
    Alias(String, &'static str),
    #[error("invalid channel URL {0:?}: {1}")]
    ChannelUrl(String, &'static str),
    #[error("container name {name:?} is taken: it differs from the existing container {existing:?} only in case, and host names, DNS and the proxy ignore case")]
    CaseClash { name: String, existing: String },
}

/// Longest container name: `ve-NAME` must fit the kernel's 15-byte interface
/// names, as in nixos-container.
pub const MAX_NAME_LEN: usize = 11;

/// A container name: 1–11 characters of `[a-zA-Z0-9_-]`, not starting with
/// `-` (never an option) and never `.`/`..` or containing `/` (never a path).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ContainerName(String);

impl ContainerName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// May a *new* container take this name, next to `existing` ones? New
    /// names are lower case: the hosts file, DNS and the proxy ignore case,
    /// so `PA1C` and `pa1c` would be one host name for two containers.
    /// (Upper-case names that already exist keep working; none may be
    /// created beside them with a name that differs only in case.)
    pub fn check_new<'a>(
        &self,
        existing: impl IntoIterator<Item = &'a ContainerName>,
    ) -> Result<(), NameError> {
        if self.0.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(NameError::ContainerName(
                self.0.clone(),
                "new container names are lower case (host names, DNS and the proxy ignore case)",
            ));
        }
        match existing
            .into_iter()
            .find(|e| e.0 != self.0 && e.0.eq_ignore_ascii_case(&self.0))
        {
            Some(e) => Err(NameError::CaseClash {
                name: self.0.clone(),
                existing: e.0.clone(),
            }),
            None => Ok(()),
        }
    }
}

impl FromStr for ContainerName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        let err = |why| Err(NameError::ContainerName(s.to_string(), why));
        if s.is_empty() {
            return err("must not be empty");
        }
        if s.len() > MAX_NAME_LEN {
            return err(
                "must be at most 11 characters (the host interface ve-NAME must fit 15 bytes)",
            );
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return err("only letters, digits, '_' and '-' are allowed");
        }
        if s.starts_with('-') {
            return err("must not start with '-'");
        }
        Ok(ContainerName(s.to_string()))
    }
}

impl TryFrom<String> for ContainerName {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, NameError> {
        s.parse()
    }
}

impl From<ContainerName> for String {
    fn from(n: ContainerName) -> String {
        n.0
    }
}

impl fmt::Display for ContainerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An alias: one DNS label (RFC 1123: 1–63 of `[a-z0-9-]`, not starting or
/// ending with `-`), served as `ALIAS.CONTAINER.PUBLIC_DOMAIN`. Upper case is
/// folded to lower case, as DNS does.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Alias(String);

impl Alias {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parse the compat form: aliases separated by white space in one
    /// argument (`'www api'`), tolerating the literal single quotes that
    /// arrive when a remote shell does not strip them. Duplicates collapse;
    /// order is kept.
    pub fn parse_list(s: &str) -> Result<Vec<Alias>, NameError> {
        let trimmed = s.trim();
        let unquoted = trimmed
            .strip_prefix('\'')
            .and_then(|t| t.strip_suffix('\''))
            .unwrap_or(trimmed);
        let mut out: Vec<Alias> = Vec::new();
        for word in unquoted.split_whitespace() {
            let a: Alias = word.parse()?;
            if !out.contains(&a) {
                out.push(a);
            }
        }
        Ok(out)
    }
}

impl FromStr for Alias {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        let err = |why| Err(NameError::Alias(s.to_string(), why));
        if s.is_empty() {
            return err("must not be empty");
        }
        if s.len() > 63 {
            return err("a DNS label has at most 63 characters");
        }
        let lower = s.to_ascii_lowercase();
        if !lower
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return err("a DNS label has only letters, digits and '-'");
        }
        if lower.starts_with('-') || lower.ends_with('-') {
            return err("a DNS label must not start or end with '-'");
        }
        Ok(Alias(lower))
    }
}

impl TryFrom<String> for Alias {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, NameError> {
        s.parse()
    }
}

impl From<Alias> for String {
    fn from(a: Alias) -> String {
        a.0
    }
}

impl fmt::Display for Alias {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A pinned channel: an `http(s)://` tarball URL, or a local path given as
/// `file:///abs/path` or `/abs/path`. Kept as the user wrote it (it is
/// recorded and written to `enc.json`); [`ChannelUrl::search_path_entry`]
/// gives what Nix gets.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ChannelUrl(String);

impl ChannelUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `-I` entry for Nix: URLs as they are, `file://` stripped.
    pub fn search_path_entry(&self) -> &str {
        self.0.strip_prefix("file://").unwrap_or(&self.0)
    }
}

impl FromStr for ChannelUrl {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        let err = |why| Err(NameError::ChannelUrl(s.to_string(), why));
        if s.is_empty() {
            return err("must not be empty");
        }
        if s.len() > 2048 {
            return err("longer than 2048 characters");
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return err("must not contain white space or control characters");
        }
        // `=` would turn a Nix search-path entry into a `prefix=path` pair.
        if s.contains('=') && !(s.starts_with("http://") || s.starts_with("https://")) {
            return err("a local path must not contain '='");
        }
        if let Some(rest) = s
            .strip_prefix("https://")
            .or_else(|| s.strip_prefix("http://"))
        {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            if host.is_empty() {
                return err("the URL has no host");
            }
            return Ok(ChannelUrl(s.to_string()));
        }
        let path = s.strip_prefix("file://").unwrap_or(s);
        if !path.starts_with('/') {
            return err("use an http(s):// URL, file:///absolute/path or /absolute/path");
        }
        if path.split('/').any(|c| c == "..") {
            return err("a local path must not contain '..'");
        }
        Ok(ChannelUrl(s.to_string()))
    }
}

impl TryFrom<String> for ChannelUrl {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, NameError> {
        s.parse()
    }
}

impl From<ChannelUrl> for String {
    fn from(c: ChannelUrl) -> String {
        c.0
    }
}

impl fmt::Display for ChannelUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_names() {
        for ok in ["web01", "a", "a1b2c3d4e5f", "my_env-2", "X"] {
            assert_eq!(ok.parse::<ContainerName>().unwrap().as_str(), ok);
        }
        let cases = [
            ("", "must not be empty"),
            ("abcdefghijkl", "at most 11"),
            ("../etc", "only letters"),
            ("a/b", "only letters"),
            ("-rf", "must not start with '-'"),
            ("web 01", "only letters"),
            ("wéb", "only letters"),
            ("a.b", "only letters"),
        ];
        for (bad, why) in cases {
            let e = bad.parse::<ContainerName>().unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
            assert!(
                e.contains(&format!("{bad:?}")),
                "error names the value: {e}"
            );
        }
    }

    #[test]
    fn new_names_are_lower_case_and_unique_ignoring_case() {
        let n = |s: &str| s.parse::<ContainerName>().unwrap();
        let legacy = [n("PA1C"), n("web01")];
        assert_eq!(n("pa2c").check_new(&legacy), Ok(()));
        assert_eq!(n("web01").check_new(&legacy), Ok(()), "itself is no clash");
        assert_eq!(
            n("pa1c").check_new(&legacy).unwrap_err().to_string(),
            "container name \"pa1c\" is taken: it differs from the existing container \"PA1C\" only in case, and host names, DNS and the proxy ignore case"
        );
        assert_eq!(
            n("Web02").check_new(&legacy).unwrap_err().to_string(),
            "invalid container name \"Web02\": new container names are lower case (host names, DNS and the proxy ignore case)"
        );
    }

    #[test]
    fn aliases() {
        assert_eq!(
            Alias::parse_list("www api").unwrap(),
            vec!["www".parse::<Alias>().unwrap(), "api".parse().unwrap()]
        );
        assert_eq!(Alias::parse_list("'www  API www'").unwrap().len(), 2);
        assert_eq!(Alias::parse_list("").unwrap(), vec![]);
        assert_eq!(Alias::parse_list("''").unwrap(), vec![]);
        assert_eq!("API".parse::<Alias>().unwrap().as_str(), "api");
        for bad in ["-a", "a-", "a.b", "a_b", &"x".repeat(64), "*"] {
            assert!(bad.parse::<Alias>().is_err(), "{bad}");
        }
        let e = Alias::parse_list("www b@d").unwrap_err().to_string();
        assert_eq!(
            e,
            "invalid alias \"b@d\": a DNS label has only letters, digits and '-'"
        );
    }

    #[test]
    fn channel_urls() {
        let u: ChannelUrl = "https://hydra.example/build/1/download/1/nixexprs.tar.xz"
            .parse()
            .unwrap();
        assert_eq!(u.search_path_entry(), u.as_str());
        let f: ChannelUrl = "file:///srv/channel".parse().unwrap();
        assert_eq!(f.search_path_entry(), "/srv/channel");
        assert_eq!(f.as_str(), "file:///srv/channel");
        let p: ChannelUrl = "/srv/channel".parse().unwrap();
        assert_eq!(p.search_path_entry(), "/srv/channel");
        for bad in [
            "",
            "ftp://x/y",
            "relative/path",
            "https://",
            "/a/../b",
            "nixpkgs=/x",
            "/x y",
            "--option",
        ] {
            assert!(bad.parse::<ChannelUrl>().is_err(), "{bad}");
        }
    }
}
