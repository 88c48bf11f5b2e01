//! batou 2.7.1, unmodified, deploying a real project through the agent with
//! the protocol of batou ≥ 2.6 (`method = fc-nixos-dev-vm`, compat-contract
//! §4: `sudo fc-devhost …`, then `cat /etc/devhost/vm-configs/NAME.json`).
//! The devhost side is the one of the 2.5.4 test (common/batou.rs); the
//! environment names a `release` URL that batou fetches on the workstation
//! and again inside the container: it is served on an address the test
//! adds to this host's loopback interface, which both reach (the container
//! through its default route to the host).

mod common;

use common::batou::*;
use common::*;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::process::Command;

/// `release.json` on an address of this host that containers reach too.
struct Release {
    /// `ADDRESS/32` on `lo`, while it serves.
    address: String,
    url: String,
}

impl Release {
    fn serve(agent: &TestAgent, channel_url: &str) -> Release {
        let addr = Ipv4Addr::new(10, 232, agent.subnet, 1);
        let address = format!("{addr}/32");
        let st = Command::new("ip")
            .args(["addr", "add", &address, "dev", "lo"])
            .status()
            .unwrap();
        assert!(st.success(), "ip addr add {address} dev lo");
        // Removed again when dropped, also if what follows fails.
        let mut me = Release {
            url: String::new(),
            address,
        };
        let listener = TcpListener::bind((addr, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let body = serde_json::json!({
            "channel_url": channel_url,
            "devhost_image_url": "https://hydra.example/image/nixos.qcow2.gz",
        })
        .to_string();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut s = stream;
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                let _ = s.write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                );
            }
        });
        me.url = format!("http://{addr}:{port}/release.json");
        me
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["addr", "del", &self.address, "dev", "lo"])
            .status();
    }
}

#[test]
fn batou_2_7_1_deploys_end_to_end() {
    let Some(()) = prerequisites_and("batou_2_7_1_deploys_end_to_end", &["curl"]) else {
        return;
    };
    let (tree, _) = full_system_tree();
    let agent = TestAgent::start(Options {
        kind: Kind::Systemd,
        nix_extra_config: format!("devhost.fixture.fullSystem = \"{tree}\";"),
        nix_allowed_paths: vec![tree.to_string()],
        ready_timeout_secs: 120,
        hosts_file: Some("/etc/hosts".into()),
        // The environment's web server (started by provision.sh).
        edge_toml: "upstream = \"http:8080\"\n".into(),
        ..Options::default()
    });
    let release = Release::serve(&agent, &channel().url);
    let si = agent.standin.as_ref().unwrap();
    let name = agent.name("vm");
    let (project, alice) = set_up(&agent, "project-vm", &name, &release.url);

    // The first deployment: ensure through fc-devhost, provisioned, deployed.
    let log = batou(&agent, &project, &["deploy", "dev"]);
    assert!(
        log.contains(&format!("https://www.{name}.devhost/")),
        "batou names the aliases:\n{log}"
    );
    let root = agent.dir.join("containers").join(&name);
    assert_eq!(
        read(&root, "home/s-dev/deployment/work/hello/hello.txt"),
        "Hello from the dev environment\n",
        "the component's file"
    );
    let fixture = fixture_dir("project-vm/environments/dev");
    let nix = "etc/local/nixos/provision-container.nix";
    assert_eq!(
        read(&root, nix),
        std::fs::read_to_string(fixture.join("provision.nix")).unwrap()
    );
    let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(root.join(nix)).unwrap());
    assert_eq!(
        owner,
        uid_of(&root, "s-dev"),
        "COPY writes as the service user"
    );
    assert_eq!(
        read(&root, "etc/local/nixos/motd"),
        std::fs::read_to_string(fixture.join("motd")).unwrap()
    );
    assert!(root.join("srv/provisioned/by-run").exists(), "RUN");
    assert_eq!(
        read(&root, "home/developer/secret.txt"),
        "correct horse battery staple\n",
        "ECHO of a secret with spaces"
    );
    assert_eq!(
        read(&root, "var/log/fc-manage.log"),
        "fc-manage -c\n",
        "the script ran to its end"
    );

    // The container batou asked for: owner, aliases, limits (enforced by
    // the systemd backend), and the record batou read its address from.
    let status = agent.status_json(&name).expect("the container is known");
    assert_eq!(status["owner_uid"], alice, "owned by the sudo caller");
    assert_eq!(status["aliases"], serde_json::json!(["www", "api"]));
    assert_eq!(status["limits"]["memory_max"], 768u64 << 20);
    assert_eq!(status["limits"]["cpu_percent"], 100);
    let unit = format!("devhost-{name}.service");
    assert_eq!(
        si.unit_property(&unit, "MemoryMax"),
        (768u64 << 20).to_string()
    );
    assert_eq!(si.unit_property(&unit, "CPUQuotaPerSecUSec"), "1s");
    let vm: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(agent.dir.join(format!("compat/vm-configs/{name}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(vm["srv-ip"], status["address"]);
    assert_eq!(vm["memory"], 768);

    // Its aliases answer through the proxy.
    let ca = agent.dir.join("state/certs/local-ca/root.pem");
    for alias in ["www", "api"] {
        let host = format!("{alias}.{name}.dev.test");
        let out = curl_https_on(agent.https_port, &ca, &host, "/", &[]);
        assert_ok(&out, &format!("GET https://{host}/"));
        assert!(
            text(&out).starts_with("<h1>site</h1>"),
            "{host}: {}",
            text(&out)
        );
    }

    // Deploying again: the same container, untouched, everything in place.
    std::fs::write(root.join("home/developer/kept"), "x").unwrap();
    batou(&agent, &project, &["deploy", "dev"]);
    let again = agent.status_json(&name).unwrap();
    assert_eq!(again["created"], status["created"], "not recreated");
    assert_eq!(again["address"], status["address"]);
    assert!(root.join("home/developer/kept").exists());
    assert_eq!(
        read(&root, "var/log/fc-manage.log"),
        "fc-manage -c\nfc-manage -c\n"
    );

    // A rebuild: destroyed and created again, provisioned from scratch.
    batou(&agent, &project, &["deploy", "--provision-rebuild", "dev"]);
    assert!(
        !root.join("home/developer/kept").exists(),
        "--provision-rebuild starts from a new container"
    );
    assert_eq!(
        read(&root, "home/developer/secret.txt"),
        "correct horse battery staple\n"
    );
    assert_eq!(
        read(&root, "home/s-dev/deployment/work/hello/hello.txt"),
        "Hello from the dev environment\n"
    );

    // A dynamic host name: batou asks `sudo fc-devhost list` and picks one.
    batou(&agent, &project, &["deploy", "dyn"]);
    let hostmap: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(project.join("environments/dyn/hostmap.json")).unwrap(),
    )
    .unwrap();
    let dynamic = hostmap["dynamic"].as_str().expect("hostmap names the host");
    assert!(
        dynamic != name && dynamic.len() <= 11 && dynamic.chars().all(|c| c.is_ascii_hexdigit()),
        "{dynamic}"
    );
    let droot = agent.dir.join("containers").join(dynamic);
    assert_eq!(
        read(&droot, "home/s-dev/deployment/work/hello/hello.txt"),
        "Hello\n"
    );
    assert_eq!(
        agent.status_json(dynamic).unwrap()["limits"]["memory_max"],
        512u64 << 20
    );
}
