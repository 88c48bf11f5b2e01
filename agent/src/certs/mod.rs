//! Certificates the proxy serves, one per container (`NAME.PUBLIC` and
//! `*.NAME.PUBLIC`, or its name and each alias's): kept on disk below
//! `STATE/certs/live/NAME/` (`cert.pem` the chain, `key.pem` mode 0600,
//! `meta.json`), loaded into rustls form for the SNI resolver, and obtained
//! by an issuer (the local CA, or ACME by the worker). Writes are atomic,
//! so a crash leaves the old or the new certificate, never a mix.

pub mod acme;
pub mod authority;
pub mod budget;
mod files;
pub use files::CertFiles;
mod held;
pub mod local_ca;
pub mod manager;
pub mod precheck;
pub mod responder;
pub mod worker;

pub use held::Certificates;

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

use std::sync::Arc;

/// The one crypto provider (ring) for every TLS client and server here.
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Which names each routed container's certificate must cover.
pub type Wanted = std::collections::BTreeMap<String, Vec<String>>;

/// The cause of a certificate error: the library's error itself where
/// there is one (I/O, ACME, rcgen, the resolver), else what went wrong in
/// words.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{what}: {source}")]
    Io { what: String, source: Cause },
    #[error("certificate for {container}: {why}")]
    Invalid { container: String, why: String },
    #[error("issuing a certificate for {names}: {source}")]
    Issue { names: String, source: Cause },
}

fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> CertError {
    let what = what.to_string();
    move |e| CertError::Io {
        what,
        source: e.into(),
    }
}

/// A certificate and key as PEM, fresh from an issuer or from disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub chain_pem: String,
    pub key_pem: String,
}

/// What we know about a stored certificate without parsing it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub names: Vec<String>,
    /// Seconds since the epoch.
    pub not_before: i64,
    pub not_after: i64,
    /// Who issued it: `local-ca` or the ACME directory URL.
    pub issuer: String,
}

/// Issuance work for a container that is not (yet) done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {
    /// An order is under way (since, seconds since the epoch).
    Ordering { since: i64 },
    /// The last attempt failed; the next is at `retry_at`.
    Failed { why: String, retry_at: i64 },
    /// The rate budget holds the order back until `until`.
    HeldBack { why: String, until: i64 },
}

/// Where a container's certificate stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CertState {
    Valid,
    Expired,
    Ordering,
    Failed,
    HeldBack,
    /// Nothing held, nothing under way yet.
    None,
}

impl CertState {
    pub fn as_str(self) -> &'static str {
        match self {
            CertState::Valid => "valid",
            CertState::Expired => "expired",
            CertState::Ordering => "ordering",
            CertState::Failed => "failed",
            CertState::HeldBack => "held-back",
            CertState::None => "none",
        }
    }
}

/// A container's certificate as `devhost status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertInfo {
    pub state: CertState,
    /// Names the held certificate covers.
    pub names: Vec<String>,
    pub issuer: Option<String>,
    /// RFC 3339.
    pub valid_until: Option<String>,
    /// Why it failed or is held back.
    pub detail: Option<String>,
    /// When the next attempt is made (RFC 3339).
    pub next_try: Option<String>,
}

fn rfc3339(t: i64) -> Option<String> {
    chrono::DateTime::from_timestamp(t, 0).map(|d| d.to_rfc3339())
}

impl CertInfo {
    pub fn new(held: Option<&Meta>, work: Option<&Work>) -> CertInfo {
        let now = chrono::Utc::now().timestamp();
        let held_state = match held {
            Some(m) if m.not_after > now => CertState::Valid,
            Some(_) => CertState::Expired,
            None => CertState::None,
        };
        let (state, detail, next_try) = match work {
            None => (held_state, None, None),
            Some(Work::Ordering { .. }) => (CertState::Ordering, None, None),
            Some(Work::Failed { why, retry_at }) => {
                (CertState::Failed, Some(why.clone()), rfc3339(*retry_at))
            }
            Some(Work::HeldBack { why, until }) => {
                (CertState::HeldBack, Some(why.clone()), rfc3339(*until))
            }
        };
        CertInfo {
            state,
            names: held.map(|m| m.names.clone()).unwrap_or_default(),
            issuer: held.map(|m| m.issuer.clone()),
            valid_until: held.and_then(|m| rfc3339(m.not_after)),
            detail,
            next_try,
        }
    }
}

/// A certificate ready to serve.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub meta: Meta,
    pub key: Arc<CertifiedKey>,
}

/// Parse a PEM chain and key into what rustls serves, and read the leaf's
/// validity. Anything wrong is an error naming the container.
pub fn load(
    container: &str,
    issued: &Issued,
    issuer: &str,
    names: &[String],
) -> Result<Loaded, CertError> {
    let bad = |why: String| CertError::Invalid {
        container: container.to_string(),
        why,
    };
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(issued.chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| bad(format!("chain: {e}")))?;
    let leaf = chain
        .first()
        .ok_or_else(|| bad("no certificate in the chain".into()))?;
    let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes())
        .map_err(|e| bad(format!("key: {e}")))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| bad(format!("key: {e}")))?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(leaf).map_err(|e| bad(format!("leaf: {e}")))?;
    let validity = cert.validity();
    let meta = Meta {
        names: names.to_vec(),
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
        issuer: issuer.to_string(),
    };
    let key = CertifiedKey::new(chain, signing);
    key.keys_match()
        .map_err(|e| bad(format!("key does not match: {e}")))?;
    Ok(Loaded {
        meta,
        key: Arc::new(key),
    })
}

#[cfg(test)]
mod faults;
