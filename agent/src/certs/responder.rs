//! Where the ACME CA finds the answers to pending challenges: TXT values in
//! the agent's own zone (`dns-01`), key authorizations under
//! `/.well-known/acme-challenge/` on port 80 (`http-01`), certificates for
//! the `acme-tls/1` protocol in the TLS handshake on 443 (`tls-alpn-01`).
//! An answer is published for exactly as long as its [`Published`] guard
//! lives, so every way out of an order (success, error, a dropped task)
//! withdraws it.

use super::CertError;
use crate::dns::Zone;
use crate::shared::Shared;
use rcgen::{CertificateParams, CustomExtension, KeyPair};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::collections::HashMap;
use std::sync::Arc;

/// One challenge's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// TXT `value` at `_acme-challenge.DOMAIN` (a wildcard's base name).
    Dns { domain: String, value: String },
    /// `key_auth` at `/.well-known/acme-challenge/TOKEN`.
    Http { token: String, key_auth: String },
    /// A certificate for `domain` carrying `digest` (SHA-256 of the key
    /// authorization), shown to clients asking for `acme-tls/1` only.
    Alpn { domain: String, digest: Vec<u8> },
}

#[derive(Default)]
pub struct Responder {
    http: Shared<HashMap<String, String>>,
    alpn: Shared<HashMap<String, Arc<CertifiedKey>>>,
    zone: Option<Arc<Shared<Zone>>>,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder").finish_non_exhaustive()
    }
}

/// Keeps an answer published; dropping it withdraws the answer.
#[must_use]
pub struct Published {
    responder: Arc<Responder>,
    answer: Answer,
}

impl Drop for Published {
    fn drop(&mut self) {
        self.responder.withdraw(&self.answer);
    }
}

pub fn txt_name(domain: &str) -> String {
    format!("_acme-challenge.{domain}")
}

/// The self-signed certificate RFC 8737 asks for: the name as its only
/// SAN, the digest in the critical acmeIdentifier extension.
fn alpn_cert(domain: &str, digest: &[u8]) -> Result<CertifiedKey, String> {
    let key = KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params = CertificateParams::new(vec![domain.to_string()]).map_err(|e| e.to_string())?;
    params.custom_extensions = vec![CustomExtension::new_acme_identifier(digest)];
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing =
        rustls::crypto::ring::sign::any_supported_type(&der).map_err(|e| e.to_string())?;
    Ok(CertifiedKey::new(
        vec![CertificateDer::from(cert.der().to_vec())],
        signing,
    ))
}

impl Responder {
    pub fn new(zone: Option<Arc<Shared<Zone>>>) -> Responder {
        Responder {
            zone,
            ..Default::default()
        }
    }

    /// The key authorization for an `http-01` token, while pending.
    pub fn http_answer(&self, token: &str) -> Option<String> {
        self.http.read().get(token).cloned()
    }

    /// The `acme-tls/1` certificate for `domain`, while pending.
    pub fn alpn_cert(&self, domain: &str) -> Option<Arc<CertifiedKey>> {
        self.alpn.read().get(domain).cloned()
    }

    pub fn publish(self: &Arc<Self>, answer: Answer) -> Result<Published, CertError> {
        match &answer {
            Answer::Dns { domain, value } => {
                let zone = self.zone.as_ref().ok_or_else(|| CertError::Issue {
                    names: domain.clone(),
                    source: "dns-01 needs the agent's own zone ([dns] enable = true)".into(),
                })?;
                let mut z = zone.write();
                z.challenges
                    .entry(txt_name(domain))
                    .or_default()
                    .push(value.clone());
                z.bump_serial();
            }
            Answer::Http { token, key_auth } => {
                self.http.write().insert(token.clone(), key_auth.clone());
            }
            Answer::Alpn { domain, digest } => {
                let cert = alpn_cert(domain, digest).map_err(|why| CertError::Issue {
                    names: domain.clone(),
                    source: format!("tls-alpn-01 certificate: {why}").into(),
                })?;
                self.alpn.write().insert(domain.clone(), Arc::new(cert));
            }
        }
        Ok(Published {
            responder: self.clone(),
            answer,
        })
    }

    fn withdraw(&self, answer: &Answer) {
        match answer {
            Answer::Dns { domain, value } => {
                let Some(zone) = &self.zone else { return };
                let mut z = zone.write();
                let name = txt_name(domain);
                if let Some(values) = z.challenges.get_mut(&name) {
                    if let Some(i) = values.iter().position(|v| v == value) {
                        values.remove(i);
                    }
                    if values.is_empty() {
                        z.challenges.remove(&name);
                    }
                }
                z.bump_serial();
            }
            Answer::Http { token, .. } => {
                self.http.write().remove(token);
            }
            Answer::Alpn { domain, .. } => {
                self.alpn.write().remove(domain);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::ZoneSpec;

    fn zone() -> Arc<Shared<Zone>> {
        Arc::new(Shared::new(Zone::new(ZoneSpec {
            domain: "dev.test".into(),
            v4: vec![],
            v6: vec![],
            nameservers: vec!["ns.dev.test".into()],
            hostmaster: "hostmaster.dev.test".into(),
            ttl: 60,
        })))
    }

    #[test]
    fn answers_live_as_long_as_their_guard() {
        let z = zone();
        let r = Arc::new(Responder::new(Some(z.clone())));
        let dns = |v: &str| Answer::Dns {
            domain: "c1.dev.test".into(),
            value: v.into(),
        };
        let base = r.publish(dns("base")).unwrap();
        let wild = r.publish(dns("wild")).unwrap();
        let serial = z.read().serial;
        assert_eq!(
            z.read().challenges["_acme-challenge.c1.dev.test"],
            vec!["base".to_string(), "wild".to_string()]
        );
        drop(base);
        assert_eq!(
            z.read().challenges["_acme-challenge.c1.dev.test"],
            vec!["wild".to_string()]
        );
        assert!(z.read().serial > serial, "the serial moves on");
        drop(wild);
        assert!(z.read().challenges.is_empty());

        let h = r
            .publish(Answer::Http {
                token: "tok".into(),
                key_auth: "tok.thumb".into(),
            })
            .unwrap();
        assert_eq!(r.http_answer("tok").as_deref(), Some("tok.thumb"));
        drop(h);
        assert_eq!(r.http_answer("tok"), None);

        let a = r
            .publish(Answer::Alpn {
                domain: "c1.dev.test".into(),
                digest: vec![7; 32],
            })
            .unwrap();
        let cert = r.alpn_cert("c1.dev.test").expect("published");
        let (_, x509) = x509_parser::parse_x509_certificate(&cert.cert[0]).unwrap();
        let ext = x509
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .expect("acmeIdentifier");
        assert!(ext.critical);
        assert!(ext.value.ends_with(&[7; 32]));
        drop(a);
        assert!(r.alpn_cert("c1.dev.test").is_none());
    }

    #[test]
    fn dns_without_a_zone_is_an_error() {
        let r = Arc::new(Responder::new(None));
        let e = r
            .publish(Answer::Dns {
                domain: "c1.dev.test".into(),
                value: "v".into(),
            })
            .err()
            .unwrap();
        assert!(e.to_string().contains("[dns] enable = true"));
    }
}
