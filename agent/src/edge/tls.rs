//! TLS for the proxy: the server side picks a container's certificate by
//! SNI (a name under the public domain → its container → its certificate;
//! the apex → its own when the dashboard serves it; anything else gets no
//! certificate, so no name is ever served with another's); ALPN offers HTTP/2 and HTTP/1.1, and `acme-tls/1` to ACME
//! validators, who get the pending tls-alpn-01 certificate only. One
//! crypto provider (ring) for the whole tree.

use super::routes::HostName;
use super::Edge;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::sync::Arc;

#[derive(Debug)]
struct BySni(Arc<Edge>);

/// The protocol ACME's tls-alpn-01 validation asks for (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let host = HostName::parse(hello.server_name()?)?;
        let mut alpn = hello.alpn().into_iter().flatten();
        if let (Some(ACME_TLS_ALPN), None) = (alpn.next(), alpn.next()) {
            // A validator: only the pending challenge's certificate.
            return self.0.responder.alpn_cert(host.as_str());
        }
        let table = self.0.routes();
        let container = table.certificate_of(&host)?;
        self.0.certs.key_for(container)
    }
}

pub fn server_config(edge: Arc<Edge>) -> Arc<rustls::ServerConfig> {
    let mut c = rustls::ServerConfig::builder_with_provider(crate::certs::crypto_provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(BySni(edge)));
    c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec(), ACME_TLS_ALPN.to_vec()];
    Arc::new(c)
}
