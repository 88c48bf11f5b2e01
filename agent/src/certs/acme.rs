//! Certificates from an ACME CA (Let's Encrypt, its staging, Pebble) with
//! instant-acme: the account is made once per directory and kept below
//! `STATE/certs/acme/` (mode 0600); an order proves every name by the
//! configured challenge (answers published through the [`Responder`] for
//! as long as the order needs them), then is finalized with a CSR for a
//! fresh key made here. The HTTP client trusts the system's roots plus
//! the configured ones, with the tree's one crypto provider (ring).

use super::precheck::Precheck;
use super::responder::{Answer, Published, Responder};
use super::Cause;
use super::{CertError, Issued};
use crate::config::certs::{AcmeConfig, Challenge};
use crate::sys::fs::atomic_write;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, ChallengeType, Identifier,
    NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use rcgen::{CertificateParams, DistinguishedName, KeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub struct Acme {
    account: Account,
    pub directory: String,
    challenge: Challenge,
    responder: Arc<Responder>,
    precheck: Option<Precheck>,
}

fn issue_err(names: &[String], source: impl Into<Cause>) -> CertError {
    CertError::Issue {
        names: names.join(", "),
        source: source.into(),
    }
}

fn acme_err(what: &str) -> impl Fn(instant_acme::Error) -> CertError + '_ {
    move |e| CertError::Io {
        what: what.to_string(),
        source: e.into(),
    }
}

/// The account file for a directory: one account per CA (named after its
/// URL), so switching between staging and production keeps both.
pub fn account_path(dir: &Path, directory: &str) -> PathBuf {
    let url = directory.strip_prefix("https://").unwrap_or(directory);
    let name: String = url
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' => c,
            _ => '_',
        })
        .collect();
    dir.join("acme").join(format!("account-{name}.json"))
}

fn http_client(roots: &[PathBuf]) -> Result<Box<dyn instant_acme::HttpClient>, CertError> {
    let mut store = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for c in native.certs {
        // A system root rustls cannot use is skipped, as every client does.
        let _ = store.add(c);
    }
    for p in roots {
        let certs = CertificateDer::pem_file_iter(p)
            .and_then(|i| i.collect::<Result<Vec<_>, _>>())
            .map_err(|e| CertError::Io {
                what: p.display().to_string(),
                source: e.into(),
            })?;
        for c in certs {
            store.add(c).map_err(|e| CertError::Io {
                what: p.display().to_string(),
                source: e.into(),
            })?;
        }
    }
    if store.is_empty() {
        return Err(CertError::Io {
            what: "ACME client".into(),
            source: "no trusted roots (install ca-certificates or set certs.acme_roots)".into(),
        });
    }
    let tls = rustls::ClientConfig::builder_with_provider(super::crypto_provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_root_certificates(store)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .enable_http2()
        .build();
    let client: hyper_util::client::legacy::Client<_, BodyWrapper<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(connector);
    Ok(Box::new(client))
}

impl Acme {
    /// The account for `cfg.directory`, made and stored the first time.
    pub async fn open(
        cfg: &AcmeConfig,
        challenge: Challenge,
        certs_dir: &Path,
        responder: Arc<Responder>,
    ) -> Result<Acme, CertError> {
        let path = account_path(certs_dir, &cfg.directory);
        let builder = instant_acme::Account::builder_with_http(http_client(&cfg.roots)?);
        let account = match std::fs::read(&path) {
            Ok(raw) => {
                let creds: AccountCredentials =
                    serde_json::from_slice(&raw).map_err(|e| CertError::Io {
                        what: path.display().to_string(),
                        source: e.into(),
                    })?;
                builder
                    .from_credentials(creds)
                    .await
                    .map_err(acme_err("restoring the ACME account"))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let contact: Vec<&str> = cfg.contact.iter().map(|s| s.as_str()).collect();
                let (account, creds) = builder
                    .create(
                        &NewAccount {
                            contact: &contact,
                            terms_of_service_agreed: true,
                            only_return_existing: false,
                        },
                        cfg.directory.clone(),
                        None,
                    )
                    .await
                    .map_err(acme_err(&format!(
                        "creating an account at {}",
                        cfg.directory
                    )))?;
                let body = serde_json::to_vec(&creds).expect("serializes");
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| CertError::Io {
                        what: parent.display().to_string(),
                        source: e.into(),
                    })?;
                }
                atomic_write(&path, &body, 0o600).map_err(|e| CertError::Io {
                    what: path.display().to_string(),
                    source: e.into(),
                })?;
                tracing::info!("ACME account {} made at {}", account.id(), cfg.directory);
                account
            }
            Err(e) => {
                return Err(CertError::Io {
                    what: path.display().to_string(),
                    source: e.into(),
                })
            }
        };
        let precheck = match challenge {
            Challenge::Dns01 => None,
            _ if !cfg.check_dns => None,
            _ => Some(Precheck::new(&cfg.resolvers, &cfg.expect)?),
        };
        Ok(Acme {
            account,
            directory: cfg.directory.clone(),
            challenge,
            responder,
            precheck,
        })
    }

    /// Whether the names resolve to this host (when the challenge needs it).
    pub async fn precheck(&self, names: &[String]) -> Result<(), CertError> {
        match &self.precheck {
            Some(p) => p
                .check(names)
                .await
                .map_err(|why| issue_err(names, format!("{why}; no order placed"))),
            None => Ok(()),
        }
    }

    /// A certificate for `names` (`*.x` for a wildcard), or why not.
    pub async fn issue(&self, names: &[String]) -> Result<Issued, CertError> {
        let ids: Vec<Identifier> = names.iter().map(|n| Identifier::Dns(n.clone())).collect();
        let mut order = self
            .account
            .new_order(&NewOrder::new(&ids))
            .await
            .map_err(|e| issue_err(names, format!("new order: {e}")))?;
        let kind = match self.challenge {
            Challenge::Dns01 => ChallengeType::Dns01,
            Challenge::Http01 => ChallengeType::Http01,
            Challenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
        };
        let mut published: Vec<Published> = Vec::new();
        {
            let mut authzs = order.authorizations();
            while let Some(authz) = authzs.next().await {
                let mut authz = authz.map_err(|e| issue_err(names, e))?;
                match authz.status {
                    AuthorizationStatus::Valid => continue,
                    AuthorizationStatus::Pending => {}
                    other => {
                        return Err(issue_err(
                            names,
                            format!("authorization for {} is {other:?}", authz.identifier()),
                        ))
                    }
                }
                let id = authz.identifier();
                let domain = match id.identifier {
                    Identifier::Dns(d) => d.clone(),
                    other => {
                        return Err(issue_err(names, format!("unexpected identifier {other:?}")))
                    }
                };
                let mut ch = authz.challenge(kind.clone()).ok_or_else(|| {
                    issue_err(
                        names,
                        format!(
                            "the CA offers no {} challenge for {domain}",
                            self.challenge.as_str()
                        ),
                    )
                })?;
                let ka = ch.key_authorization();
                let answer = match self.challenge {
                    Challenge::Dns01 => Answer::Dns {
                        domain,
                        value: ka.dns_value(),
                    },
                    Challenge::Http01 => Answer::Http {
                        token: ch.token.clone(),
                        key_auth: ka.as_str().to_string(),
                    },
                    Challenge::TlsAlpn01 => Answer::Alpn {
                        domain,
                        digest: ka.digest().as_ref().to_vec(),
                    },
                };
                published.push(self.responder.publish(answer)?);
                ch.set_ready().await.map_err(|e| issue_err(names, e))?;
            }
        }
        let retry = RetryPolicy::default().timeout(Duration::from_secs(120));
        let status = order
            .poll_ready(&retry)
            .await
            .map_err(|e| issue_err(names, e))?;
        if status != OrderStatus::Ready {
            return Err(issue_err(names, self.failure(&mut order).await));
        }
        drop(published);
        let key = KeyPair::generate().map_err(|e| issue_err(names, e))?;
        let mut params = CertificateParams::new(names.to_vec()).map_err(|e| issue_err(names, e))?;
        params.distinguished_name = DistinguishedName::new();
        let csr = params
            .serialize_request(&key)
            .map_err(|e| issue_err(names, e))?;
        order
            .finalize_csr(csr.der())
            .await
            .map_err(|e| issue_err(names, format!("finalize: {e}")))?;
        let chain_pem = order
            .poll_certificate(&retry)
            .await
            .map_err(|e| issue_err(names, format!("certificate: {e}")))?;
        Ok(Issued {
            chain_pem,
            key_pem: key.serialize_pem(),
        })
    }

    /// What the CA said about the challenges of an order that went invalid.
    async fn failure(&self, order: &mut instant_acme::Order) -> String {
        let mut why = Vec::new();
        let mut authzs = order.authorizations();
        while let Some(Ok(mut a)) = authzs.next().await {
            if a.refresh().await.is_err() {
                continue;
            }
            let id = a.identifier().to_string();
            for c in &a.challenges {
                if let Some(p) = &c.error {
                    why.push(format!(
                        "{id}: {} {}",
                        self.challenge.as_str(),
                        p.detail.as_deref().unwrap_or("failed")
                    ));
                }
            }
        }
        if why.is_empty() {
            "the order became invalid".into()
        } else {
            why.join("; ")
        }
    }
}
