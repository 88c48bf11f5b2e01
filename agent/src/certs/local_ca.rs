//! The embedded certificate authority, for hosts without a public CA (the
//! demo, offline development): a root made once (`STATE/certs/local-ca/`,
//! key mode 0600) that signs per-container certificates. Clients trust it
//! with `root.pem` (curl `--cacert`, or the system store).

use super::Cause;
use super::{CertError, Issued};
use crate::sys::fs::atomic_write;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

pub struct LocalCa {
    issuer: Issuer<'static, KeyPair>,
    pub root_path: PathBuf,
}

fn err(names: &[String], source: impl Into<Cause>) -> CertError {
    CertError::Issue {
        names: names.join(", "),
        source: source.into(),
    }
}

fn io_err(what: &Path, source: impl Into<Cause>) -> CertError {
    CertError::Io {
        what: what.display().to_string(),
        source: source.into(),
    }
}

impl LocalCa {
    /// The CA in `dir`, created there the first time.
    pub fn load_or_create(dir: &Path, label: &str) -> Result<LocalCa, CertError> {
        let root_path = dir.join("root.pem");
        let key_path = dir.join("root-key.pem");
        if root_path.exists() && key_path.exists() {
            let pem = std::fs::read_to_string(&root_path).map_err(|e| io_err(&root_path, e))?;
            let key_pem = std::fs::read_to_string(&key_path).map_err(|e| io_err(&key_path, e))?;
            let key = KeyPair::from_pem(&key_pem).map_err(|e| io_err(&key_path, e))?;
            let issuer = Issuer::from_ca_cert_pem(&pem, key).map_err(|e| io_err(&root_path, e))?;
            return Ok(LocalCa { issuer, root_path });
        }
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let key = KeyPair::generate().map_err(|e| io_err(&key_path, e))?;
        let mut params =
            CertificateParams::new(Vec::<String>::new()).map_err(|e| io_err(dir, e))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("devhost local CA ({label})"));
        dn.push(DnType::OrganizationName, "devhost");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(3650);
        let cert = params.self_signed(&key).map_err(|e| io_err(dir, e))?;
        // The key first: a root.pem never exists without its key.
        atomic_write(&key_path, key.serialize_pem().as_bytes(), 0o600)
            .map_err(|e| io_err(&key_path, e))?;
        atomic_write(&root_path, cert.pem().as_bytes(), 0o644)
            .map_err(|e| io_err(&root_path, e))?;
        Ok(LocalCa {
            issuer: Issuer::new(params, key),
            root_path,
        })
    }

    /// A certificate for `names` (the first is the subject), valid `days`.
    pub fn issue(&self, names: &[String], days: u32) -> Result<Issued, CertError> {
        let key = KeyPair::generate().map_err(|e| err(names, e))?;
        let mut params = CertificateParams::new(names.to_vec()).map_err(|e| err(names, e))?;
        let mut dn = DistinguishedName::new();
        if let Some(first) = names.first() {
            dn.push(DnType::CommonName, first.clone());
        }
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(days.into());
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| err(names, e))?;
        Ok(Issued {
            chain_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_certificates_that_load_and_survive_a_restart() {
        let d = tempfile::tempdir().unwrap();
        let ca = LocalCa::load_or_create(d.path(), "test").unwrap();
        let names = vec!["c1.dev.test".to_string(), "*.c1.dev.test".to_string()];
        let issued = ca.issue(&names, 30).unwrap();
        let loaded = super::super::load("c1", &issued, "local-ca", &names).unwrap();
        let life = loaded.meta.not_after - loaded.meta.not_before;
        assert!((30 * 86400..=30 * 86400 + 3600).contains(&life), "{life}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.path().join("root-key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let root = std::fs::read_to_string(d.path().join("root.pem")).unwrap();
        // Loaded again, the same root signs.
        let again = LocalCa::load_or_create(d.path(), "test").unwrap();
        again.issue(&names, 30).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("root.pem")).unwrap(),
            root
        );
    }
}
