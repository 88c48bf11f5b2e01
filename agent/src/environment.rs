//! Reading a batou environment (`environments/ENV/environment.cfg`) for
//! `devhost deploy`: which containers it provisions with the devhost method,
//! from which channel, with which aliases. Pure: text in, plan out.
//!
//! The file is INI as batou reads it (Python's configparser): `[section]`,
//! `key = value`, indented continuation lines, `#`/`;` comments. Used here:
//! `[provisioner:P]` (`method`, `host`, `channel`) and `[host:H]`
//! (`provisioner`, default `default`; `provision-aliases`;
//! `provision-dynamic-hostname`).

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct EnvError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

pub type Sections = BTreeMap<String, BTreeMap<String, String>>;

/// Parse configparser-style INI; keys lower-cased, continuation lines joined with newlines.
pub fn parse_ini(file: &str, text: &str) -> Result<Sections, EnvError> {
    let mut out: Sections = BTreeMap::new();
    let mut section: Option<String> = None;
    let mut last_key: Option<String> = None;
    for (i, raw) in text.lines().enumerate() {
        let err = |message: String| EnvError {
            file: file.to_string(),
            line: i + 1,
            message,
        };
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if raw.starts_with([' ', '\t']) {
            let (Some(s), Some(k)) = (&section, &last_key) else {
                return Err(err("an indented line continues nothing".into()));
            };
            let v = out
                .get_mut(s)
                .and_then(|m| m.get_mut(k))
                .expect("key exists");
            if !v.is_empty() {
                v.push('\n');
            }
            v.push_str(trimmed);
            continue;
        }
        if let Some(name) = trimmed.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            let name = name.trim().to_string();
            out.entry(name.clone()).or_default();
            section = Some(name);
            last_key = None;
            continue;
        }
        let Some(s) = &section else {
            return Err(err("a key outside of any [section]".into()));
        };
        let (k, v) = trimmed
            .split_once('=')
            .or_else(|| trimmed.split_once(':'))
            .ok_or_else(|| err(format!("expected `key = value`, not {trimmed:?}")))?;
        let k = k.trim().to_lowercase();
        out.get_mut(s)
            .expect("section exists")
            .insert(k.clone(), v.trim().to_string());
        last_key = Some(k);
    }
    Ok(out)
}

/// One container the environment wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// The `[host:H]` name.
    pub host: String,
    /// Name chosen by the devhost (from hostmap.json or new) instead of `host`.
    pub dynamic: bool,
    pub channel: String,
    /// The devhost, as batou exports it in PROVISION_HOST.
    pub devhost: String,
    pub aliases: Vec<String>,
}

fn truthy(v: &str) -> bool {
    matches!(
        v.trim().to_lowercase().as_str(),
        "1" | "yes" | "true" | "on"
    )
}

/// The containers to provision with `method = fc-nixos-dev-container`.
pub fn wanted(file: &str, s: &Sections) -> Result<Vec<Wanted>, EnvError> {
    let err = |message: String| EnvError {
        file: file.to_string(),
        line: 0,
        message,
    };
    let mut out = Vec::new();
    for (section, keys) in s {
        let Some(host) = section.strip_prefix("host:") else {
            continue;
        };
        let p_name = keys
            .get("provisioner")
            .map(String::as_str)
            .unwrap_or("default");
        let Some(p) = s.get(&format!("provisioner:{p_name}")) else {
            if keys.contains_key("provisioner") {
                return Err(err(format!("[{section}] names provisioner {p_name:?}, but there is no [provisioner:{p_name}]")));
            }
            continue; // not provisioned: an ordinary host
        };
        let method = p.get("method").map(String::as_str).unwrap_or("");
        if method != "fc-nixos-dev-container" {
            return Err(err(format!(
                "[provisioner:{p_name}] has method {method:?}; devhost deploy runs `fc-nixos-dev-container` environments"
            )));
        }
        let channel = p
            .get("channel")
            .cloned()
            .ok_or_else(|| err(format!("[provisioner:{p_name}] has no channel")))?;
        out.push(Wanted {
            host: host.to_string(),
            dynamic: keys
                .get("provision-dynamic-hostname")
                .is_some_and(|v| truthy(v)),
            channel,
            devhost: p.get("host").cloned().unwrap_or_default(),
            aliases: keys
                .get("provision-aliases")
                .map(|a| a.split_whitespace().map(String::from).collect())
                .unwrap_or_default(),
        });
    }
    if out.is_empty() {
        return Err(err(
            "no [host:…] section is provisioned with method = fc-nixos-dev-container".into(),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = "[environment]\nservice_user = s-dev\nplatform = nixos\n\n[provisioner:default]\nmethod = fc-nixos-dev-container\nhost = devhost.example.com\n# pinned\nchannel = https://hydra.example/build/1/download/1/nixexprs.tar.xz\n\n[host:container]\nprovision-dynamic-hostname = True\nprovision-aliases =\n\twww\n    api\ncomponents =\n\tapp\n\n[host:db]\ncomponents = postgres\nprovisioner = default\n\n[component:app]\nport = 8080\n";

    #[test]
    fn reads_batou_environments() {
        let s = parse_ini("environment.cfg", CFG).unwrap();
        assert_eq!(s["host:container"]["provision-aliases"], "www\napi");
        assert_eq!(s["environment"]["service_user"], "s-dev");
        assert_eq!(
            wanted("environment.cfg", &s).unwrap(),
            vec![
                Wanted {
                    host: "container".into(),
                    dynamic: true,
                    channel: "https://hydra.example/build/1/download/1/nixexprs.tar.xz".into(),
                    devhost: "devhost.example.com".into(),
                    aliases: vec!["www".into(), "api".into()],
                },
                Wanted {
                    host: "db".into(),
                    dynamic: false,
                    channel: "https://hydra.example/build/1/download/1/nixexprs.tar.xz".into(),
                    devhost: "devhost.example.com".into(),
                    aliases: vec![],
                },
            ]
        );
    }

    #[test]
    fn errors() {
        assert_eq!(
            parse_ini("e.cfg", "key = v\n").unwrap_err().to_string(),
            "e.cfg:1: a key outside of any [section]"
        );
        assert_eq!(
            parse_ini("e.cfg", "[a]\n  cont\n").unwrap_err().to_string(),
            "e.cfg:2: an indented line continues nothing"
        );
        assert_eq!(
            parse_ini("e.cfg", "[a]\njunk\n").unwrap_err().to_string(),
            "e.cfg:2: expected `key = value`, not \"junk\""
        );
        let vm = parse_ini(
            "e.cfg",
            "[provisioner:default]\nmethod = fc-nixos-dev-vm\n[host:x]\n",
        )
        .unwrap();
        assert!(wanted("e.cfg", &vm)
            .unwrap_err()
            .to_string()
            .contains("has method \"fc-nixos-dev-vm\""));
        let none = parse_ini("e.cfg", "[host:x]\ncomponents = a\n").unwrap();
        assert!(wanted("e.cfg", &none)
            .unwrap_err()
            .to_string()
            .contains("no [host:…] section is provisioned"));
        let missing = parse_ini("e.cfg", "[host:x]\nprovisioner = p\n").unwrap();
        assert!(wanted("e.cfg", &missing)
            .unwrap_err()
            .to_string()
            .contains("there is no [provisioner:p]"));
    }
}
