//! batou 2.5.4, unmodified, deploying a real project through the agent the
//! way its users run it (`method = fc-nixos-dev-container`, compat-contract
//! §3). The stand-in plays the devhost: the agent as a systemd service
//! keeping the stand-in's own /etc/hosts, an sshd on a loopback port of this
//! test, the login user `alice` (group `users`) allowed `sudo
//! fc-build-dev-container` without a password. alice is also the
//! workstation: she runs `./batou` (appenv + uv, offline wheels) under a
//! clean environment. Containers come from the full-system fixture (systemd,
//! sshd, python3, rsync, sudo, `developer` with batou's insecure key, `s-dev`).

mod common;

use common::batou::*;
use common::*;
use std::path::Path;

/// What provision.sh copies: (in the container, in environments/dev).
const COPIED: [(&str, &str); 3] = [
    ("etc/local/nixos/motd", "motd"),
    ("etc/local/nixos/site/index.html", "site/index.html"),
    (
        "etc/local/nixos/site/static/style.css",
        "site/static/style.css",
    ),
];

#[test]
fn batou_2_5_4_deploys_end_to_end() {
    let Some(()) = prerequisites("batou_2_5_4_deploys_end_to_end") else {
        return;
    };
    let (tree, _) = full_system_tree();
    let agent = TestAgent::start(Options {
        kind: Kind::Systemd,
        nix_extra_config: format!("devhost.fixture.fullSystem = \"{tree}\";"),
        nix_allowed_paths: vec![tree.to_string()],
        ready_timeout_secs: 120,
        hosts_file: Some("/etc/hosts".into()),
        ..Options::default()
    });
    let si = agent.standin.as_ref().unwrap();
    let name = agent.name("bt");
    let (project, alice) = set_up(&agent, "project", &name, "");
    // The first deployment: container built, provisioned, deployed.
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
    let fixture = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/batou/project/environments/dev"
    ));
    let nix = "etc/local/nixos/provision-container.nix";
    assert_eq!(
        read(&root, nix),
        std::fs::read_to_string(fixture.join("provision.nix")).unwrap()
    );
    let s_dev = uid_of(&root, "s-dev");
    let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(root.join(nix)).unwrap());
    assert_eq!(owner, s_dev, "batou's COPY writes as the service user");
    for (copied, original) in COPIED {
        assert_eq!(
            read(&root, copied),
            std::fs::read_to_string(fixture.join(original)).unwrap(),
            "COPY {original}"
        );
    }
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
    let status = agent.status_json(&name).expect("the container is known");
    assert_eq!(status["aliases"], serde_json::json!(["www", "api"]));
    assert_eq!(status["owner_uid"], alice, "owned by the sudo caller");
    let hosts = text(&si.exec(&["cat", "/etc/hosts"]));
    let addr = agent.address(&name);
    assert!(
        hosts.contains(&format!("{addr} {name}\n")),
        "the devhost resolves the container (for ProxyJump):\n{hosts}"
    );

    // A rebuild: destroyed and built again, provisioned from scratch.
    std::fs::write(root.join("home/developer/left-over"), "x").unwrap();
    batou(&agent, &project, &["deploy", "--provision-rebuild", "dev"]);
    assert!(
        !root.join("home/developer/left-over").exists(),
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

    // The same environment without batou: alice runs `devhost deploy` on the
    // devhost and gets the same files, COPY writing as the service user.
    for f in [
        nix,
        "etc/local/nixos/motd",
        "home/developer/secret.txt",
        "srv/provisioned/by-run",
    ] {
        std::fs::remove_file(root.join(f)).unwrap();
    }
    std::fs::remove_dir_all(root.join("etc/local/nixos/site")).unwrap();
    let out = as_alice(
        &agent,
        "exec devhost deploy \"$1\" --var \"COMPONENT_HELLO_SECRET=$2\"",
        &[
            project.join("environments/dev").to_str().unwrap(),
            "correct horse battery staple",
        ],
    );
    assert_ok(&out, "devhost deploy of the batou environment");
    let service = gid_of(&root, "service");
    for (copied, original) in std::iter::once((nix, "provision.nix")).chain(COPIED) {
        assert_eq!(
            read(&root, copied),
            std::fs::read_to_string(fixture.join(original)).unwrap(),
            "devhost COPY {original}"
        );
        let m = std::fs::metadata(root.join(copied)).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            (m.uid(), m.gid()),
            (s_dev, service),
            "{copied}: the service user's, in the set-group-ID directory's group"
        );
    }
    assert!(root.join("srv/provisioned/by-run").exists(), "devhost RUN");
    assert_eq!(
        read(&root, "home/developer/secret.txt"),
        "correct horse battery staple\n",
        "devhost ECHO"
    );

    // A dynamic host name: batou asks `nixos-container list` and picks one.
    batou(&agent, &project, &["deploy", "dyn"]);
    let hostmap: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(project.join("environments/dyn/hostmap.json")).unwrap(),
    )
    .unwrap();
    let dynamic = hostmap["dynamic"].as_str().expect("hostmap names the host");
    assert_ne!(dynamic, name);
    let list = text(&agent.devhost(&["list"]));
    assert!(list.contains(dynamic), "{list}");
    let droot = agent.dir.join("containers").join(dynamic);
    assert_eq!(
        read(&droot, "home/s-dev/deployment/work/hello/hello.txt"),
        "Hello\n"
    );
    assert_eq!(
        read(&droot, nix),
        std::fs::read_to_string(project.join("environments/dyn/provision.nix")).unwrap()
    );
}
