//! Provisioning a real container with `devhost provision`: COPY of files and
//! trees (modes kept), RUN inside the container, ECHO of a caller-side value,
//! the implicit provision.nix copy, a transcript, failures that stop the
//! script at the failing line, and a hostile container's symlinks.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn write(p: &Path, body: &str, mode: u32) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, body).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn provision(kind: Kind) {
    let Some(()) = prerequisites("provision") else {
        return;
    };
    let agent = TestAgent::start(Options {
        kind,
        ..Options::default()
    });
    let name = agent.name("prov");
    assert_ok(
        &agent.devhost(&["ensure", &name, &channel().url, "www"]),
        "ensure",
    );
    let envdir = agent.dir.join("environments/dev");
    write(&envdir.join("app/index.html"), "<h1>app</h1>\n", 0o644);
    write(&envdir.join("app/conf/app.ini"), "[app]\n", 0o600);
    write(&envdir.join("bin/tool"), "#!/bin/sh\necho tool\n", 0o755);
    write(&envdir.join("provision.nix"), "{ ... }: { }\n", 0o644);
    std::os::unix::fs::symlink("/etc/shadow", envdir.join("app/leak")).unwrap();
    write(
        &envdir.join("provision.sh"),
        "# provisioning for $PROVISION_CONTAINER\n\
         COPY app/ /srv/app/\n\
         COPY bin/tool /usr/local/bin/\n\
         RUN \"mkdir -p /srv/data && echo '$GREETING from $PROVISION_CONTAINER ($PROVISION_ALIASES)' > /srv/data/greeting\"\n\
         ECHO \"$SECRET\" /etc/app/secret\n\
         RUN test -f /etc/local/nixos/provision-container.nix\n\
         RUN 'cat /proc/self/cgroup > /srv/data/cgroup-run && cat /proc/1/cgroup > /srv/data/cgroup-init'\n",
        0o644,
    );
    let envfile = agent.dir.join("vars.env");
    write(&envfile, "# component attributes\nGREETING=hello\n", 0o600);
    let out = agent.devhost(&[
        "provision",
        &name,
        envdir.to_str().unwrap(),
        "--env-file",
        envfile.to_str().unwrap(),
        "--var",
        "SECRET=pass word with spaces",
    ]);
    assert_ok(&out, "provision");
    let t = text(&out);
    assert!(
        t.contains("environments/dev/provision.sh:4 RUN mkdir -p /srv/data"),
        "steps stream with file:line:\n{t}"
    );
    assert!(
        !t.contains("pass word"),
        "the ECHO content (a secret) is not shown:\n{t}"
    );

    let root = agent.dir.join("containers").join(&name);
    assert_eq!(
        std::fs::read_to_string(root.join("srv/app/index.html")).unwrap(),
        "<h1>app</h1>\n"
    );
    assert_eq!(
        mode(&root.join("srv/app/conf/app.ini")),
        0o600,
        "modes kept"
    );
    assert!(
        !root.join("srv/app/leak").exists(),
        "symlinks are not copied (rsync --no-l)"
    );
    assert_eq!(mode(&root.join("usr/local/bin/tool")), 0o755);
    assert_eq!(
        std::fs::read_to_string(root.join("srv/data/greeting")).unwrap(),
        format!("hello from {name} (www)\n"),
        "RUN ran inside the container with the caller's variables"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/app/secret")).unwrap(),
        "pass word with spaces\n"
    );
    assert!(root
        .join("etc/local/nixos/provision-container.nix")
        .is_file());
    let cg = |f: &str| std::fs::read_to_string(root.join("srv/data").join(f)).unwrap();
    assert_eq!(
        cg("cgroup-run"),
        cg("cgroup-init"),
        "RUN runs in the container's cgroups (its limits apply)"
    );
    let transcript = text(&agent.devhost(&["logs", "--provision", &name]));
    assert!(
        transcript.contains("=== provisioning finished: 7 steps"),
        "{transcript}"
    );

    // A failing step stops the script there and says where.
    write(
        &envdir.join("provision.sh"),
        "RUN true\nRUN 'echo before; exit 7'\nECHO after /srv/after\n",
        0o644,
    );
    let out = agent.devhost(&["provision", &name, envdir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("provision.sh:2: RUN echo before; exit 7 failed: exit status 7"),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("before"),
        "output of the failing step is shown"
    );
    assert!(
        !root.join("srv/after").exists(),
        "nothing after the failing step ran"
    );

    // A bad script is refused before anything runs, pointing at the line.
    write(&envdir.join("provision.sh"), "RUN true\nrm -rf /\n", 0o644);
    let out = agent.devhost(&["provision", &name, envdir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("provision.sh:2:1: \"rm\" is not allowed here"),
        "{}",
        text(&out)
    );
    write(
        &envdir.join("provision.sh"),
        "ECHO $UNDEFINED_THING /x\n",
        0o644,
    );
    let out = agent.devhost(&["provision", &name, envdir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("$UNDEFINED_THING is not defined"),
        "{}",
        text(&out)
    );

    // A hostile container points a directory at the host: writes refuse to follow.
    let outside = agent.dir.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("srv/evil")).unwrap();
    write(
        &envdir.join("provision.sh"),
        "ECHO pwned /srv/evil/file\n",
        0o644,
    );
    let out = agent.devhost(&["provision", &name, envdir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("refusing to follow it"),
        "{}",
        text(&out)
    );
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "nothing written outside the container"
    );
}

#[test]
fn provision_direct() {
    provision(Kind::Direct);
}

#[test]
fn provision_systemd() {
    provision(Kind::Systemd);
}

#[test]
fn deploy_a_batou_environment_without_batou() {
    let Some(()) = prerequisites("deploy_a_batou_environment_without_batou") else {
        return;
    };
    let agent = TestAgent::start(Options::default());
    let envdir = agent.dir.join("environments/dev");
    write(
        &envdir.join("environment.cfg"),
        &format!(
            "[environment]\nservice_user = s-dev\n\n[provisioner:default]\nmethod = fc-nixos-dev-container\nhost = devhost.example\nchannel = {}\n\n[host:container]\nprovision-dynamic-hostname = True\nprovision-aliases =\n\twww\n\tapi\ncomponents =\n\tapp\n",
            channel().url
        ),
        0o644,
    );
    write(
        &envdir.join("provision.sh"),
        "ECHO \"$PROVISION_HOST $PROVISION_ALIASES $PROVISION_CONTAINER\" /etc/deployed\n",
        0o644,
    );
    let out = agent.devhost(&["deploy", envdir.to_str().unwrap()]);
    assert_ok(&out, "deploy");
    let map: serde_json::Value =
        serde_json::from_slice(&std::fs::read(envdir.join("hostmap.json")).unwrap()).unwrap();
    let name = map["container"]
        .as_str()
        .expect("dynamic name recorded")
        .to_string();
    assert!(
        name.len() == 11 && name.chars().all(|c| c.is_ascii_hexdigit()),
        "{name}"
    );
    let s = agent.status_json(&name).unwrap();
    assert_eq!(s["state"], "running");
    assert_eq!(s["aliases"], serde_json::json!(["www", "api"]));
    let root = agent.dir.join("containers").join(&name);
    assert_eq!(
        std::fs::read_to_string(root.join("etc/deployed")).unwrap(),
        format!("devhost.example www api {name}\n")
    );

    // Deploying again reuses the recorded name.
    assert_ok(
        &agent.devhost(&["deploy", envdir.to_str().unwrap()]),
        "second deploy",
    );
    let list: serde_json::Value =
        serde_json::from_slice(&agent.devhost(&["--json", "list"]).stdout).unwrap();
    assert_eq!(list["containers"].as_array().unwrap().len(), 1, "{list}");

    write(
        &envdir.join("environment.cfg"),
        "[provisioner:default]\nmethod = fc-nixos-dev-vm\n[host:x]\n",
        0o644,
    );
    let out = agent.devhost(&["deploy", envdir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("devhost deploy runs `fc-nixos-dev-container` environments"),
        "{}",
        text(&out)
    );
}
