//! batou 2.5.4, unmodified, deploying a real project through the agent the
//! way its users run it (`method = fc-nixos-dev-container`, compat-contract
//! §3). The stand-in plays the devhost: the agent as a systemd service
//! keeping the stand-in's own /etc/hosts, an sshd on a loopback port of this
//! test, the login user `alice` (group `users`) allowed `sudo
//! fc-build-dev-container` without a password. alice is also the
//! workstation: she runs `./batou` (appenv + uv, offline wheels) under a
//! clean environment. Containers come from the full-system fixture (systemd,
//! sshd, python3, rsync, sudo, `developer` with batou's insecure key, `s-dev`).
//!
//! The stand-in is set up once for all tests, and so is a first deployment
//! that the tests of its outcome read; a test that deploys again has a
//! container (and a copy of the project) of its own.

mod common;

use common::batou::*;
use common::*;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What provision.sh copies: (in the container, in environments/dev).
const COPIED: [(&str, &str); 3] = [
    ("etc/local/nixos/motd", "motd"),
    ("etc/local/nixos/site/index.html", "site/index.html"),
    (
        "etc/local/nixos/site/static/style.css",
        "site/static/style.css",
    ),
];

/// What batou's provisioning writes from the environment's provision.nix.
const NIX: &str = "etc/local/nixos/provision-container.nix";

const SECRET: &str = "correct horse battery staple\n";

/// The fixture's environments/dev.
fn fixture_dev() -> PathBuf {
    fixture_dir("project/environments/dev")
}

fn fixture_file(name: &str) -> String {
    std::fs::read_to_string(fixture_dev().join(name)).unwrap()
}

/// The stand-in with the agent as its service, alice and her sshd.
struct Devhost {
    agent: TestAgent,
    alice: u32,
}

static DEVHOST: Shared<Devhost> = Shared::new();

fn devhost() -> Arc<Devhost> {
    DEVHOST.get(|| {
        let (tree, _) = full_system_tree();
        let agent = TestAgent::start(Options {
            kind: Kind::Systemd,
            nix_extra_config: format!("devhost.fixture.fullSystem = \"{tree}\";"),
            nix_allowed_paths: vec![tree.to_string()],
            ready_timeout_secs: 120,
            hosts_file: Some("/etc/hosts".into()),
            ..Options::default()
        });
        let alice = set_up_devhost(&agent);
        Devhost { agent, alice }
    })
}

impl Devhost {
    /// alice's copy of the project for container `t…SUFFIX`: its path and
    /// the container's name.
    fn project(&self, suffix: &str) -> (PathBuf, String) {
        let name = self.agent.name(suffix);
        let project = set_up_project(
            &self.agent,
            "project",
            &format!("project-{name}"),
            &name,
            "",
        );
        (project, name)
    }

    fn root(&self, name: &str) -> PathBuf {
        self.agent.dir.join("containers").join(name)
    }
}

/// `./batou deploy dev` of a new project: what it printed, in a container
/// that no test changes.
struct Deployed {
    devhost: Arc<Devhost>,
    name: String,
    root: PathBuf,
    log: String,
}

static DEPLOYED: Shared<Deployed> = Shared::new();

fn deployed(test: &str) -> Option<Arc<Deployed>> {
    prerequisites(test)?;
    Some(DEPLOYED.get(|| {
        let devhost = devhost();
        let (project, name) = devhost.project("bt");
        let log = batou(&devhost.agent, &project, &["deploy", "dev"]);
        Deployed {
            root: devhost.root(&name),
            devhost,
            name,
            log,
        }
    }))
}

fn owner(path: &Path) -> (u32, u32) {
    let m = std::fs::metadata(path).unwrap();
    (m.uid(), m.gid())
}

#[test]
fn batou_names_the_containers_aliases() {
    let Some(d) = deployed("batou_names_the_containers_aliases") else {
        return;
    };
    assert!(
        d.log.contains(&format!("https://www.{}.devhost/", d.name)),
        "batou names the aliases:\n{}",
        d.log
    );
}

#[test]
fn batou_deploys_its_component_into_the_container() {
    let Some(d) = deployed("batou_deploys_its_component_into_the_container") else {
        return;
    };
    assert_eq!(
        read(&d.root, "home/s-dev/deployment/work/hello/hello.txt"),
        "Hello from the dev environment\n",
        "the component's file"
    );
}

#[test]
fn batou_writes_the_provision_nix_as_the_service_user() {
    let Some(d) = deployed("batou_writes_the_provision_nix_as_the_service_user") else {
        return;
    };
    assert_eq!(read(&d.root, NIX), fixture_file("provision.nix"));
    assert_eq!(
        owner(&d.root.join(NIX)).0,
        uid_of(&d.root, "s-dev"),
        "batou's COPY writes as the service user"
    );
}

#[test]
fn provisioning_copies_the_environments_files() {
    let Some(d) = deployed("provisioning_copies_the_environments_files") else {
        return;
    };
    for (copied, original) in COPIED {
        assert_eq!(
            read(&d.root, copied),
            fixture_file(original),
            "COPY {original}"
        );
    }
}

#[test]
fn provisioning_runs_commands_in_the_container() {
    let Some(d) = deployed("provisioning_runs_commands_in_the_container") else {
        return;
    };
    assert!(d.root.join("srv/provisioned/by-run").exists(), "RUN");
}

#[test]
fn provisioning_echoes_a_secret_with_spaces() {
    let Some(d) = deployed("provisioning_echoes_a_secret_with_spaces") else {
        return;
    };
    assert_eq!(
        read(&d.root, "home/developer/secret.txt"),
        SECRET,
        "ECHO of a secret with spaces"
    );
}

#[test]
fn the_provisioning_script_runs_to_its_end() {
    let Some(d) = deployed("the_provisioning_script_runs_to_its_end") else {
        return;
    };
    assert_eq!(
        read(&d.root, "var/log/fc-manage.log"),
        "fc-manage -c\n",
        "the script ran to its end"
    );
}

#[test]
fn the_container_has_the_environments_aliases() {
    let Some(d) = deployed("the_container_has_the_environments_aliases") else {
        return;
    };
    assert_eq!(d.devhost.agent.status(&d.name).aliases, ["www", "api"]);
}

#[test]
fn the_container_belongs_to_the_user_who_ran_batou() {
    let Some(d) = deployed("the_container_belongs_to_the_user_who_ran_batou") else {
        return;
    };
    assert_eq!(
        d.devhost.agent.status(&d.name).owner_uid,
        d.devhost.alice,
        "owned by the sudo caller"
    );
}

#[test]
fn the_devhost_resolves_the_container_by_name() {
    let Some(d) = deployed("the_devhost_resolves_the_container_by_name") else {
        return;
    };
    let agent = &d.devhost.agent;
    let hosts = text(&agent.standin.as_ref().unwrap().exec(&["cat", "/etc/hosts"]));
    let addr = agent.address(&d.name);
    assert!(
        hosts.contains(&format!("{addr} {}\n", d.name)),
        "the devhost resolves the container (for ProxyJump):\n{hosts}"
    );
}

#[test]
fn provision_rebuild_starts_from_a_new_container() {
    let Some(()) = prerequisites("provision_rebuild_starts_from_a_new_container") else {
        return;
    };
    let devhost = devhost();
    let (project, name) = devhost.project("rb");
    let root = devhost.root(&name);
    batou(&devhost.agent, &project, &["deploy", "dev"]);
    std::fs::write(root.join("home/developer/left-over"), "x").unwrap();
    batou(
        &devhost.agent,
        &project,
        &["deploy", "--provision-rebuild", "dev"],
    );
    assert!(
        !root.join("home/developer/left-over").exists(),
        "--provision-rebuild starts from a new container"
    );
    assert_eq!(read(&root, "home/developer/secret.txt"), SECRET);
    assert_eq!(
        read(&root, "home/s-dev/deployment/work/hello/hello.txt"),
        "Hello from the dev environment\n"
    );
}

#[test]
fn devhost_deploy_provisions_a_batou_environment_as_batou_does() {
    let Some(()) = prerequisites("devhost_deploy_provisions_a_batou_environment_as_batou_does")
    else {
        return;
    };
    // alice runs `devhost deploy` on the devhost, without batou.
    let devhost = devhost();
    let (project, name) = devhost.project("dd");
    let out = as_alice(
        &devhost.agent,
        "exec devhost deploy \"$1\" --var \"COMPONENT_HELLO_SECRET=$2\"",
        &[
            project.join("environments/dev").to_str().unwrap(),
            "correct horse battery staple",
        ],
    );
    assert_ok(&out, "devhost deploy of the batou environment");
    let root = devhost.root(&name);
    let (s_dev, service) = (uid_of(&root, "s-dev"), gid_of(&root, "service"));
    for (copied, original) in std::iter::once((NIX, "provision.nix")).chain(COPIED) {
        assert_eq!(
            read(&root, copied),
            fixture_file(original),
            "devhost COPY {original}"
        );
        assert_eq!(
            owner(&root.join(copied)),
            (s_dev, service),
            "{copied}: the service user's, in the set-group-ID directory's group"
        );
    }
    assert!(root.join("srv/provisioned/by-run").exists(), "devhost RUN");
    assert_eq!(
        read(&root, "home/developer/secret.txt"),
        SECRET,
        "devhost ECHO"
    );
}

#[test]
fn batou_picks_a_dynamic_host_name_from_nixos_container_list() {
    let Some(()) = prerequisites("batou_picks_a_dynamic_host_name_from_nixos_container_list")
    else {
        return;
    };
    let devhost = devhost();
    let (project, name) = devhost.project("dy");
    batou(&devhost.agent, &project, &["deploy", "dyn"]);
    let hostmap: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(project.join("environments/dyn/hostmap.json")).unwrap(),
    )
    .unwrap();
    let dynamic = hostmap["dynamic"].as_str().expect("hostmap names the host");
    assert_ne!(dynamic, name);
    let list = text(&devhost.agent.devhost(&["list"]));
    assert!(list.contains(dynamic), "{list}");
    let droot = devhost.root(dynamic);
    assert_eq!(
        read(&droot, "home/s-dev/deployment/work/hello/hello.txt"),
        "Hello\n"
    );
    assert_eq!(
        read(&droot, NIX),
        std::fs::read_to_string(project.join("environments/dyn/provision.nix")).unwrap()
    );
}
