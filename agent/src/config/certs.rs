//! The `[certs]` section: who issues the proxy's certificates (the local CA
//! or an ACME CA, and by which challenge), when they are renewed, and the
//! limits that keep an ACME account under the CA's rate limits. Raw serde
//! struct (unknown keys refused) checked into [`CertsConfig`].

use super::error::{invalid, ConfigError};
use crate::certs::budget::RateLimits;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CertMode {
    /// `dns-01` when the agent serves the zone (`[dns] enable`), else
    /// `local-ca`.
    Auto,
    /// An embedded certificate authority (offline use, the demo); its root
    /// is `STATE/certs/local-ca/root.pem`.
    LocalCa,
    /// ACME, answered from the agent's own zone: `NAME` + `*.NAME`.
    #[serde(rename = "dns-01")]
    Dns01,
    /// ACME, answered on port 80: `NAME` + every `ALIAS.NAME`.
    #[serde(rename = "http-01")]
    Http01,
    /// ACME, answered in the TLS handshake on 443: as `http-01`.
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Certs {
    pub mode: CertMode,
    /// Renew when this fraction of a certificate's lifetime has passed.
    pub renew_after_fraction: f64,
    /// Days the local CA's certificates are valid.
    pub local_ca_days: u32,
    /// The ACME directory (Let's Encrypt; its staging, Pebble, …).
    pub acme_directory: String,
    /// Contacts for the ACME account (`ops@example.org`).
    pub acme_contact: Vec<String>,
    /// PEM files of roots trusted for the ACME directory, besides the
    /// system's (Pebble, an internal CA).
    pub acme_roots: Vec<String>,
    /// After a failed order, wait this long, doubling up to `retry_max_secs`.
    pub retry_min_secs: u64,
    pub retry_max_secs: u64,
    /// New certificates (not renewals) per 7 days (Let's Encrypt: 50 per
    /// registered domain, shared with every other issuer in that domain).
    pub max_new_per_week: u32,
    /// Certificates for one exact set of names per 7 days (Let's Encrypt: 5).
    pub max_same_names_per_week: u32,
    /// Orders per 3 hours (Let's Encrypt: 300 per account).
    pub max_orders_per_3h: u32,
    /// Orders under way at once.
    pub max_parallel_orders: usize,
    /// `http-01`/`tls-alpn-01`: order only when every name resolves to this
    /// host (a broken DNS setup would otherwise burn the CA's limits).
    pub check_dns: bool,
    /// What "this host" is for that check; default `[dns] addresses`, else
    /// the host's own interface addresses.
    pub expect_addresses: Vec<String>,
    /// Name servers for that check (`ADDRESS` or `ADDRESS:PORT`); default
    /// the system's (`/etc/resolv.conf`).
    pub resolvers: Vec<String>,
}

impl Default for Certs {
    fn default() -> Self {
        Certs {
            mode: CertMode::Auto,
            renew_after_fraction: 2.0 / 3.0,
            local_ca_days: 90,
            acme_directory: LETS_ENCRYPT.into(),
            acme_contact: Vec::new(),
            acme_roots: Vec::new(),
            retry_min_secs: 300,
            retry_max_secs: 6 * 3600,
            max_new_per_week: 50,
            max_same_names_per_week: 5,
            max_orders_per_3h: 300,
            max_parallel_orders: 4,
            check_dns: true,
            expect_addresses: Vec::new(),
            resolvers: Vec::new(),
        }
    }
}

/// How ACME proves control of a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    Dns01,
    Http01,
    TlsAlpn01,
}

impl Challenge {
    pub fn as_str(self) -> &'static str {
        match self {
            Challenge::Dns01 => "dns-01",
            Challenge::Http01 => "http-01",
            Challenge::TlsAlpn01 => "tls-alpn-01",
        }
    }
}

/// Who issues the certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Issuer {
    LocalCa,
    Acme(Challenge),
}

impl Issuer {
    /// Whether a container's certificate is `NAME` + `*.NAME` (one for all
    /// aliases) rather than `NAME` + each `ALIAS.NAME`.
    pub fn wildcard(self) -> bool {
        matches!(self, Issuer::LocalCa | Issuer::Acme(Challenge::Dns01))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AcmeConfig {
    pub directory: String,
    /// `mailto:` URIs.
    pub contact: Vec<String>,
    pub roots: Vec<PathBuf>,
    pub retry_min: Duration,
    pub retry_max: Duration,
    pub limits: RateLimits,
    pub parallel: usize,
    pub check_dns: bool,
    /// Empty: the host's own addresses, found when checking.
    pub expect: Vec<IpAddr>,
    /// Empty: the system's resolvers.
    pub resolvers: Vec<SocketAddr>,
}

/// The validated `[certs]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct CertsConfig {
    pub issuer: Issuer,
    pub renew_after_fraction: f64,
    pub local_ca_days: u32,
    /// Certificates, the local CA and ACME state (below the state dir).
    pub dir: PathBuf,
    pub acme: AcmeConfig,
}

fn contact(c: &str) -> Result<String, ConfigError> {
    let mail = c.strip_prefix("mailto:").unwrap_or(c);
    let ok = mail.split_once('@').is_some_and(|(u, d)| {
        !u.is_empty() && d.contains('.') && !d.starts_with('.') && !d.ends_with('.')
    }) && !mail
        .chars()
        .any(|ch| ch.is_whitespace() || ch.is_control() || ",;<>\"".contains(ch));
    if ok {
        Ok(format!("mailto:{mail}"))
    } else {
        Err(invalid(
            "certs.acme_contact",
            format!("{c:?} is not an e-mail address"),
        ))
    }
}

fn resolver(r: &str) -> Result<SocketAddr, ConfigError> {
    if let Ok(ip) = r.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    r.parse().map_err(|_| {
        invalid(
            "certs.resolvers",
            format!("{r:?} is not ADDRESS or ADDRESS:PORT"),
        )
    })
}

fn root(p: &str) -> Result<PathBuf, ConfigError> {
    use rustls_pki_types::pem::PemObject;
    let path = PathBuf::from(p);
    let pem = std::fs::read(&path).map_err(|e| invalid("certs.acme_roots", format!("{p}: {e}")))?;
    let n = rustls_pki_types::CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid("certs.acme_roots", format!("{p}: {e}")))?
        .len();
    if n == 0 {
        return Err(invalid(
            "certs.acme_roots",
            format!("{p}: no PEM certificate in it"),
        ));
    }
    Ok(path)
}

/// Check `[certs]`; `dns` is the validated `[dns]` zone's addresses when
/// the agent serves the zone.
pub fn validate(
    c: Certs,
    dns: Option<Vec<IpAddr>>,
    state_dir: &Path,
) -> Result<CertsConfig, ConfigError> {
    let issuer = match c.mode {
        CertMode::Auto if dns.is_some() => Issuer::Acme(Challenge::Dns01),
        CertMode::Auto | CertMode::LocalCa => Issuer::LocalCa,
        CertMode::Dns01 if dns.is_none() => {
            return Err(invalid(
                "certs.mode",
                "dns-01 needs the agent to serve the zone ([dns] enable = true)",
            ))
        }
        CertMode::Dns01 => Issuer::Acme(Challenge::Dns01),
        CertMode::Http01 => Issuer::Acme(Challenge::Http01),
        CertMode::TlsAlpn01 => Issuer::Acme(Challenge::TlsAlpn01),
    };
    if !(c.renew_after_fraction > 0.0 && c.renew_after_fraction < 1.0) {
        return Err(invalid(
            "certs.renew_after_fraction",
            "must be between 0 and 1 (exclusive)",
        ));
    }
    if c.local_ca_days == 0 {
        return Err(invalid("certs.local_ca_days", "must be at least 1"));
    }
    let dir_ok = c
        .acme_directory
        .parse::<hyper::Uri>()
        .ok()
        .is_some_and(|u| u.scheme_str() == Some("https") && u.host().is_some());
    if !dir_ok {
        return Err(invalid(
            "certs.acme_directory",
            format!("{:?} is not an https:// URL", c.acme_directory),
        ));
    }
    if c.retry_min_secs == 0 || c.retry_max_secs < c.retry_min_secs {
        return Err(invalid(
            "certs.retry_min_secs",
            "must be at least 1 and at most retry_max_secs",
        ));
    }
    for (key, v) in [
        ("certs.max_new_per_week", c.max_new_per_week),
        ("certs.max_same_names_per_week", c.max_same_names_per_week),
        ("certs.max_orders_per_3h", c.max_orders_per_3h),
    ] {
        if v == 0 {
            return Err(invalid(key, "must be at least 1"));
        }
    }
    if c.max_parallel_orders == 0 {
        return Err(invalid("certs.max_parallel_orders", "must be at least 1"));
    }
    let mut expect = Vec::new();
    for a in &c.expect_addresses {
        expect.push(a.parse::<IpAddr>().map_err(|_| {
            invalid(
                "certs.expect_addresses",
                format!("{a:?} is not an IP address"),
            )
        })?);
    }
    if expect.is_empty() {
        expect = dns.unwrap_or_default();
    }
    Ok(CertsConfig {
        issuer,
        renew_after_fraction: c.renew_after_fraction,
        local_ca_days: c.local_ca_days,
        dir: state_dir.join("certs"),
        acme: AcmeConfig {
            directory: c.acme_directory,
            contact: c
                .acme_contact
                .iter()
                .map(|s| contact(s))
                .collect::<Result<_, _>>()?,
            roots: c
                .acme_roots
                .iter()
                .map(|s| root(s))
                .collect::<Result<_, _>>()?,
            retry_min: Duration::from_secs(c.retry_min_secs),
            retry_max: Duration::from_secs(c.retry_max_secs),
            limits: RateLimits {
                new_per_week: c.max_new_per_week,
                same_names_per_week: c.max_same_names_per_week,
                orders_per_3h: c.max_orders_per_3h,
            },
            parallel: c.max_parallel_orders,
            check_dns: c.check_dns,
            expect,
            resolvers: c
                .resolvers
                .iter()
                .map(|s| resolver(s))
                .collect::<Result<_, _>>()?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(c: Certs, dns: Option<Vec<IpAddr>>) -> Result<CertsConfig, String> {
        validate(c, dns, Path::new("/state")).map_err(|e| e.to_string())
    }

    #[test]
    fn modes() {
        let auto = Certs::default();
        assert_eq!(check(auto.clone(), None).unwrap().issuer, Issuer::LocalCa);
        let with_dns = check(auto, Some(vec!["192.0.2.1".parse().unwrap()])).unwrap();
        assert_eq!(with_dns.issuer, Issuer::Acme(Challenge::Dns01));
        assert_eq!(
            with_dns.acme.expect,
            vec!["192.0.2.1".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(with_dns.dir, PathBuf::from("/state/certs"));
        let dns01 = Certs {
            mode: CertMode::Dns01,
            ..Default::default()
        };
        assert!(check(dns01, None)
            .unwrap_err()
            .contains("[dns] enable = true"));
        let http = Certs {
            mode: CertMode::Http01,
            ..Default::default()
        };
        let h = check(http, None).unwrap();
        assert_eq!(h.issuer, Issuer::Acme(Challenge::Http01));
        assert!(!h.issuer.wildcard());
        let modes: Certs = toml::from_str("mode = \"tls-alpn-01\"").unwrap();
        assert_eq!(modes.mode, CertMode::TlsAlpn01);
    }

    #[test]
    fn bad_values_are_named() {
        let cases = [
            (
                "acme_directory = \"http://ca.test/dir\"",
                "not an https:// URL",
            ),
            (
                "acme_contact = [\"ops at example\"]",
                "not an e-mail address",
            ),
            (
                "acme_roots = [\"/nonexistent/root.pem\"]",
                "/nonexistent/root.pem",
            ),
            ("resolvers = [\"ns1\"]", "not ADDRESS or ADDRESS:PORT"),
            ("expect_addresses = [\"host\"]", "not an IP address"),
            ("max_new_per_week = 0", "certs.max_new_per_week"),
            (
                "retry_min_secs = 10\nretry_max_secs = 5",
                "certs.retry_min_secs",
            ),
        ];
        for (toml_src, want) in cases {
            let c: Certs = toml::from_str(toml_src).unwrap();
            let e = check(c, None).unwrap_err();
            assert!(e.contains(want), "{toml_src}: {e}");
        }
        let c: Certs =
            toml::from_str("acme_contact = [\"ops@example.org\", \"mailto:b@x.io\"]\nresolvers = [\"127.0.0.1:5353\", \"::1\"]").unwrap();
        let a = check(c, None).unwrap().acme;
        assert_eq!(a.contact, ["mailto:ops@example.org", "mailto:b@x.io"]);
        assert_eq!(
            a.resolvers,
            vec![
                "127.0.0.1:5353".parse::<SocketAddr>().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
    }
}
