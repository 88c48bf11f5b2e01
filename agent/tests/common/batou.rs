//! What the batou end-to-end tests share: the devhost side in the stand-in
//! (login user `alice`, sudo rules for the front-ends, an sshd on a port of
//! the test's), alice's copy of a project, running `./batou` as her, and
//! reading what landed in a container.

use super::*;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

/// The devhost side: login user, sudo rule, CLI links, sshd on `port`.
pub const SETUP_DEVHOST: &str = r#"
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
for b in devhost fc-build-dev-container fc-devhost nixos-container; do ln -s "/opt/devhost-bin/$b" "/usr/local/bin/$b"; done
install -m 755 "$kit/uv" /usr/local/bin/uv
# What batou reads lives where the agent keeps its compatibility records.
mkdir -p /etc/devhost && ln -s "$config" /etc/devhost/agent.toml
ln -s "$dir/compat/vm-configs" /etc/devhost/vm-configs
# The role's rule: the front-ends batou calls, without a password.
printf '%%users ALL=(root) NOPASSWD: %s, %s\n' /usr/local/bin/fc-build-dev-container /usr/local/bin/fc-devhost > /etc/sudoers.d/devhost
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

/// alice's GPG key, what her projects' secrets are encrypted to.
pub const SETUP_KEY: &str = r#"
set -eu
gpg --batch --quiet --passphrase '' --quick-gen-key alice@devhost.test default default never
"#;

/// alice's copy of the project: placeholders filled, appenv as ./batou, the
/// wheels, the secrets encrypted to her GPG key.
pub const SETUP_PROJECT: &str = r#"
set -eu
kit=$1 project=$2 name=$3 channel=$4 release=$5
cd "$project"
for env in dev dyn; do
  sed -i -e "s|@NAME@|$name|g" -e "s|@CHANNEL@|$channel|g" -e "s|@RELEASE@|$release|g" "environments/$env/environment.cfg"
done
cp "$kit/appenv" appenv && ln -s appenv batou
cp -r "$kit/wheels" wheels
gpg --batch --quiet --yes --trust-model always -r alice@devhost.test \
  -o environments/dev/secrets.cfg.gpg -e environments/dev/secrets.cfg.plain
rm environments/dev/secrets.cfg.plain
"#;

/// Set up the devhost side in the agent's stand-in and alice's copy of the
/// fixture project `fixture` (below tests/fixtures/batou) for container
/// `name` (release URL `release`, if its environments name one). Returns
/// the project's path and alice's uid.
pub fn set_up(agent: &TestAgent, fixture: &str, name: &str, release: &str) -> (PathBuf, u32) {
    let alice = set_up_devhost(agent);
    let project = set_up_project(agent, fixture, "project", name, release);
    (project, alice)
}

/// The devhost side in the agent's stand-in ([`SETUP_DEVHOST`], alice's
/// GPG key); returns alice's uid.
pub fn set_up_devhost(agent: &TestAgent) -> u32 {
    let si = agent.standin.as_ref().expect("a stand-in");
    let port: u16 = 22200 + agent.subnet as u16;
    let dir = agent.dir.display().to_string();
    // Where the stand-in sees it (only the test dir is bound into it).
    let kit = agent.dir.join("kit");
    copy_tree(batou_kit(), &kit);
    let out = si.exec(&[
        "sh",
        "-c",
        SETUP_DEVHOST,
        "sh",
        kit.to_str().unwrap(),
        agent.config.to_str().unwrap(),
        &dir,
        &port.to_string(),
    ]);
    assert_ok(&out, "set up the devhost side");
    wait_until(Duration::from_secs(20), "sshd listens", || {
        std::net::TcpStream::connect(("127.0.0.1", port))
    });
    assert_ok(&as_alice(agent, SETUP_KEY, &[]), "alice's GPG key");
    alice_id(agent, "-u")
}

/// `id FLAG alice` in the stand-in.
fn alice_id(agent: &TestAgent, flag: &str) -> u32 {
    let si = agent.standin.as_ref().expect("a stand-in");
    text(&si.exec(&["id", flag, "alice"]))
        .trim()
        .parse()
        .unwrap()
}

/// alice's copy of the fixture project `fixture` (below
/// tests/fixtures/batou) in the test dir's `dir`, for container `name`
/// (release URL `release`, if its environments name one), after
/// [`set_up_devhost`]: its path.
pub fn set_up_project(
    agent: &TestAgent,
    fixture: &str,
    dir: &str,
    name: &str,
    release: &str,
) -> PathBuf {
    let kit = agent.dir.join("kit");
    let project = agent.dir.join(dir);
    copy_tree(&fixture_dir(fixture), &project);
    chown_tree(&project, alice_id(agent, "-u"), alice_id(agent, "-g"));
    let out = as_alice(
        agent,
        SETUP_PROJECT,
        &[
            kit.to_str().unwrap(),
            project.to_str().unwrap(),
            name,
            &channel().url,
            release,
        ],
    );
    assert_ok(&out, "set up alice's project");
    project
}

/// A fixture below tests/fixtures/batou.
pub fn fixture_dir(rel: &str) -> PathBuf {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/batou"
    ))
    .join(rel)
}

/// Run `script` as alice in the stand-in, with a clean environment.
pub fn as_alice(agent: &TestAgent, script: &str, args: &[&str]) -> Output {
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

pub fn batou(agent: &TestAgent, project: &Path, args: &[&str]) -> String {
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

pub fn read(root: &Path, path: &str) -> String {
    std::fs::read_to_string(root.join(path))
        .unwrap_or_else(|e| panic!("{path} in the container: {e}"))
}

pub fn uid_of(root: &Path, user: &str) -> u32 {
    read(root, "etc/passwd")
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f[0] == user).then(|| f[2].parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no {user} in the container"))
}

pub fn gid_of(root: &Path, group: &str) -> u32 {
    read(root, "etc/group")
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f[0] == group).then(|| f[2].parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no group {group} in the container"))
}

pub fn copy_tree(from: &Path, to: &Path) {
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

pub fn chown_tree(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    if path.is_dir() {
        for e in std::fs::read_dir(path).unwrap().flatten() {
            chown_tree(&e.path(), uid, gid);
        }
    }
}
