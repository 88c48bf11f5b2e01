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

use common::*;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

/// The devhost side: login user, sudo rule, CLI links, sshd on `port`.
const SETUP_DEVHOST: &str = r#"
set -eu
kit=$1 config=$2 dir=$3 port=$4
useradd -m -s /bin/bash -G users alice
# Not '!'-locked: sshd without PAM refuses locked accounts even with a key.
usermod -p '*' alice
install -d -m 700 -o alice -g alice /home/alice/.ssh
runuser -u alice -- ssh-keygen -q -t ed25519 -N '' -C alice -f /home/alice/.ssh/id_ed25519
install -m 600 -o alice -g alice /home/alice/.ssh/id_ed25519.pub /home/alice/.ssh/authorized_keys
# The devhost's port under its own Host entry: a global Port would also
# apply to batou's hop into the container.
cat > /home/alice/.ssh/config <<EOF
Host devhost
    HostName 127.0.0.1
    Port $port
    StrictHostKeyChecking no
    UserKnownHostsFile ~/.ssh/known_hosts_devhost
EOF
chown alice:alice /home/alice/.ssh/config && chmod 600 /home/alice/.ssh/config
for b in devhost fc-build-dev-container nixos-container; do ln -s "/opt/devhost-bin/$b" "/usr/local/bin/$b"; done
install -m 755 "$kit/uv" /usr/local/bin/uv
mkdir -p /etc/devhost && ln -s "$config" /etc/devhost/agent.toml
echo '%users ALL=(root) NOPASSWD: /usr/local/bin/fc-build-dev-container' > /etc/sudoers.d/devhost
chmod 440 /etc/sudoers.d/devhost
mkdir -p /run/sshd "$dir/sshd"
ssh-keygen -q -t ed25519 -N '' -f "$dir/sshd/host_key"
cat > "$dir/sshd/config" <<EOF
ListenAddress 127.0.0.1:$port
HostKey $dir/sshd/host_key
PidFile $dir/sshd/pid
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowUsers alice
LogLevel VERBOSE
EOF
systemd-run --quiet --unit=devhost-test-sshd /usr/sbin/sshd -D -f "$dir/sshd/config" -E "$dir/sshd/log"
"#;

/// alice's copy of the project: placeholders filled, appenv as ./batou, the
/// wheels, the secrets encrypted to her own new GPG key.
const SETUP_PROJECT: &str = r#"
set -eu
kit=$1 project=$2 name=$3 channel=$4
cd "$project"
for env in dev dyn; do
  sed -i -e "s|@NAME@|$name|g" -e "s|@CHANNEL@|$channel|g" "environments/$env/environment.cfg"
done
cp "$kit/appenv" appenv && ln -s appenv batou
cp -r "$kit/wheels" wheels
gpg --batch --quiet --passphrase '' --quick-gen-key alice@devhost.test default default never
gpg --batch --quiet --yes --trust-model always -r alice@devhost.test \
  -o environments/dev/secrets.cfg.gpg -e environments/dev/secrets.cfg.plain
rm environments/dev/secrets.cfg.plain
"#;

/// Run `script` as alice in the stand-in, with a clean environment.
fn as_alice(agent: &TestAgent, script: &str, args: &[&str]) -> Output {
    let si = agent.standin.as_ref().unwrap();
    let mut argv = vec![
        "runuser",
        "-u",
        "alice",
        "--",
        "env",
        "-i",
        "HOME=/home/alice",
        "USER=alice",
        "LOGNAME=alice",
        "PATH=/usr/local/bin:/usr/bin:/bin",
        "LANG=C.UTF-8",
        "sh",
        "-c",
        script,
        "sh",
    ];
    argv.extend_from_slice(args);
    si.exec(&argv)
}

fn batou(agent: &TestAgent, project: &Path, args: &[&str]) -> String {
    let mut a = vec![project.to_str().unwrap()];
    a.extend_from_slice(args);
    let out = as_alice(agent, "cd \"$1\" && shift && exec ./batou \"$@\"", &a);
    let t = text(&out);
    assert!(
        out.status.success() && t.contains("DEPLOYMENT FINISHED"),
        "./batou {}:\n{t}\nagent journal:\n{}",
        args.join(" "),
        text(&agent.standin.as_ref().unwrap().exec(&[
            "journalctl",
            "-u",
            "devhost",
            "-n",
            "40",
            "--no-pager"
        ]))
    );
    assert!(
        !t.contains("Errors detected during provisioning"),
        "provisioning reported errors:\n{t}"
    );
    t
}

/// What provision.sh copies: (in the container, in environments/dev).
const COPIED: [(&str, &str); 3] = [
    ("etc/local/nixos/motd", "motd"),
    ("etc/local/nixos/site/index.html", "site/index.html"),
    (
        "etc/local/nixos/site/static/style.css",
        "site/static/style.css",
    ),
];

fn read(root: &Path, path: &str) -> String {
    std::fs::read_to_string(root.join(path))
        .unwrap_or_else(|e| panic!("{path} in the container: {e}"))
}

fn uid_of(root: &Path, user: &str) -> u32 {
    read(root, "etc/passwd")
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f[0] == user).then(|| f[2].parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no {user} in the container"))
}

fn gid_of(root: &Path, group: &str) -> u32 {
    read(root, "etc/group")
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f[0] == group).then(|| f[2].parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no group {group} in the container"))
}

#[test]
fn batou_2_5_4_deploys_end_to_end() {
    let Some(()) = prerequisites("batou_2_5_4_deploys_end_to_end") else {
        return;
    };
    let (tree, _) = full_system_tree();
    let cached_kit = batou_kit();
    let agent = TestAgent::start(Options {
        kind: Kind::Systemd,
        nix_extra_config: format!("devhost.fixture.fullSystem = \"{tree}\";"),
        nix_allowed_paths: vec![tree.to_string()],
        ready_timeout_secs: 120,
        hosts_file: Some("/etc/hosts".into()),
        ..Options::default()
    });
    let si = agent.standin.as_ref().unwrap();
    let port = (22200 + agent.subnet as u16).to_string();
    let dir = agent.dir.display().to_string();
    // Where the stand-in sees it (only the test dir is bound into it).
    let kit = agent.dir.join("kit");
    copy_tree(cached_kit, &kit);
    let out = si.exec(&[
        "sh",
        "-c",
        SETUP_DEVHOST,
        "sh",
        kit.to_str().unwrap(),
        agent.config.to_str().unwrap(),
        &dir,
        &port,
    ]);
    assert_ok(&out, "set up the devhost side");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())).is_err() {
        assert!(Instant::now() < deadline, "sshd did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }

    let name = agent.name("bt");
    let project = agent.dir.join("project");
    copy_tree(
        Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/batou/project"
        )),
        &project,
    );
    let id = |flag: &str| -> u32 {
        text(&si.exec(&["id", flag, "alice"]))
            .trim()
            .parse()
            .unwrap()
    };
    let (alice, alice_gid) = (id("-u"), id("-g"));
    chown_tree(&project, alice, alice_gid);
    let out = as_alice(
        &agent,
        SETUP_PROJECT,
        &[
            kit.to_str().unwrap(),
            project.to_str().unwrap(),
            &name,
            &channel().url,
        ],
    );
    assert_ok(&out, "set up alice's project");

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

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target: PathBuf = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    if path.is_dir() {
        for e in std::fs::read_dir(path).unwrap().flatten() {
            chown_tree(&e.path(), uid, gid);
        }
    }
}
