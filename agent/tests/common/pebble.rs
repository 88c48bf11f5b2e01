//! Pebble, Let's Encrypt's ACME test server, for one test agent: on the
//! agent's own loopback ports (`acme_port`, and the next for management),
//! resolving names through the agent's DNS server and validating on the
//! agent's HTTP and HTTPS ports. Its API certificate comes from a CA made
//! here (`api_root`, what the agent's `certs.acme_roots` trusts); what it
//! issues chains to its own root, fetched as `issuer_root()`. Killed on drop.

use super::{wait_until, TestAgent};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The CA for Pebble's API certificate, made before the agent starts.
pub struct ApiCa {
    pub dir: PathBuf,
    pub root: PathBuf,
}

impl ApiCa {
    pub fn make(dir: &Path) -> ApiCa {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        std::fs::create_dir_all(dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "devhost test: Pebble API CA");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().unwrap();
        let mut leaf =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        leaf.distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        let cert = leaf.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.join("api-root.pem"), ca_cert.pem()).unwrap();
        std::fs::write(dir.join("api-cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("api-key.pem"), key.serialize_pem()).unwrap();
        ApiCa {
            dir: dir.to_path_buf(),
            root: dir.join("api-root.pem"),
        }
    }
}

pub struct Pebble {
    child: Child,
    pub dir: PathBuf,
    pub api_root: PathBuf,
    pub port: u16,
    pub mgmt_port: u16,
}

/// The `[certs]` keys that point an agent at this test's Pebble.
pub fn certs_toml(mode: &str, ca: &ApiCa, extra: &str) -> String {
    format!(
        "[certs]\nmode = \"{mode}\"\nacme_directory = \"https://127.0.0.1:@ACME_PORT@/dir\"\nacme_roots = [\"{}\"]\nacme_contact = [\"ops@dev.test\"]\nretry_min_secs = 2\nretry_max_secs = 4\nresolvers = [\"127.0.0.1:@DNS_PORT@\"]\n{extra}\n",
        ca.root.display()
    )
}

impl Pebble {
    /// Start Pebble for `agent`; certificates valid `validity_secs` when given.
    pub fn start(agent: &TestAgent, ca: &ApiCa, validity_secs: Option<u64>) -> Pebble {
        let port = agent.acme_port;
        let mgmt_port = port + 1;
        let validity = validity_secs
            .map(|s| format!(",\n    \"certificateValidityPeriod\": {s}"))
            .unwrap_or_default();
        let config = format!(
            r#"{{
  "pebble": {{
    "listenAddress": "127.0.0.1:{port}",
    "managementListenAddress": "127.0.0.1:{mgmt_port}",
    "certificate": "{}",
    "privateKey": "{}",
    "httpPort": {},
    "tlsPort": {},
    "ocspResponderURL": "",
    "externalAccountBindingRequired": false{validity}
  }}
}}"#,
            ca.dir.join("api-cert.pem").display(),
            ca.dir.join("api-key.pem").display(),
            agent.http_port,
            agent.https_port,
        );
        let config_path = ca.dir.join("pebble.json");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(ca.dir.join("pebble.log")).unwrap();
        let child = Command::new("pebble")
            .arg("-config")
            .arg(&config_path)
            .args(["-dnsserver", &format!("127.0.0.1:{}", agent.dns_port)])
            .arg("-strict=false")
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("pebble (apt-get install pebble)");
        let p = Pebble {
            child,
            dir: ca.dir.clone(),
            api_root: ca.root.clone(),
            port,
            mgmt_port,
        };
        wait_until(Duration::from_secs(20), "pebble listens", || {
            std::net::TcpStream::connect(("127.0.0.1", mgmt_port))
                .map_err(|e| format!("{e}; pebble's log:\n{}", p.log()))
        });
        p
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pebble.log")).unwrap_or_default()
    }

    /// The root what Pebble issues chains to (new on every start), as a file.
    pub fn issuer_root(&self) -> PathBuf {
        let path = self.dir.join("issuer-root.pem");
        let out = Command::new("curl")
            .args(["-sSf", "--max-time", "10", "--cacert"])
            .arg(&self.api_root)
            .arg(format!("https://127.0.0.1:{}/roots/0", self.mgmt_port))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "fetching Pebble's root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(&path, &out.stdout).unwrap();
        path
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
