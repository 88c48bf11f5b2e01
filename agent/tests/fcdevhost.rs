//! `fc-devhost`, the front-end batou ≥ 2.6 calls under sudo: ensure with
//! batou's arguments (limits, aliases with literal quotes, disk size, image,
//! channel or Hydra evaluation, keeping or moving the channel), the
//! `vm-configs/NAME.json` batou reads, list, destroy, and a root shell in a
//! container (`login`, `devhost shell`) for its owner only.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

fn vm_config(agent: &TestAgent, name: &str) -> Option<serde_json::Value> {
    let p = agent.dir.join(format!("compat/vm-configs/{name}.json"));
    let text = std::fs::read_to_string(&p).ok()?;
    let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644, "world-readable: batou reads it without sudo");
    Some(serde_json::from_str(&text).expect("vm-config is JSON"))
}

#[test]
fn batous_ensure_list_and_destroy() {
    let Some(()) = prerequisites("batous_ensure_list_and_destroy") else {
        return;
    };
    let agent = TestAgent::start(Options::default());
    let ch = channel();
    let name = agent.name("vm");
    let ensure = |extra: &[&str], channel: &str| -> Output {
        let mut args = vec![
            "ensure",
            "--memory",
            "512",
            "--cpu",
            "1.5",
            "--aliases",
            "'www api'",
            "--disk-size",
            "5",
            "--image-url",
            "https://hydra.example/image.qcow2.gz",
            "--channel-url",
            channel,
        ];
        args.extend_from_slice(extra);
        args.push(&name);
        agent.fc_devhost_sudo(ALICE, users_gid(), &args)
    };
    assert_ok(&ensure(&["--update-channel"], &ch.url), "fc-devhost ensure");

    let s = agent.status_json(&name).unwrap();
    assert_eq!(s["owner_uid"], ALICE, "the sudo caller's");
    assert_eq!(s["state"], "running");
    assert_eq!(s["aliases"], serde_json::json!(["www", "api"]));
    assert_eq!(s["limits"]["memory_max"], 512u64 << 20);
    assert_eq!(s["limits"]["cpu_percent"], 150);
    assert_eq!(s["disk_size"], 5u64 << 30);
    assert_eq!(s["disk_quota"], serde_json::Value::Null);
    let shown = text(&agent.devhost(&["status", &name]));
    assert!(
        shown.contains("disk size:   5.0 GiB asked for; not enforced"),
        "status says so: {shown}"
    );
    assert_eq!(s["image_url"], "https://hydra.example/image.qcow2.gz");
    let v = vm_config(&agent, &name).expect("vm-configs/NAME.json");
    assert_eq!(v["srv-ip"], s["address"], "what batou reads");
    assert_eq!(v["name"], name.as_str());
    assert_eq!(v["aliases"], serde_json::json!(["www", "api"]));
    assert_eq!(
        (v["memory"].clone(), v["cores"].clone()),
        (512.into(), 1.5.into())
    );
    assert_eq!(v["disk-size"], 5.0);
    assert_eq!(v["owner-uid"], ALICE);
    assert_eq!(v["channel-url"], ch.url.as_str());
    let created = v["creation-date"].as_str().unwrap().to_string();
    let deployed = v["last_deploy_date"].as_str().unwrap().to_string();
    assert!(
        created.ends_with('Z') && deployed.ends_with('Z'),
        "UTC ISO: {v}"
    );

    // A re-ensure that keeps its channel, then one that moves it.
    let other = format!("file://{}", ch.unpacked.display());
    assert_ok(
        &ensure(&["--no-update-channel"], &other),
        "keep the channel",
    );
    assert_eq!(agent.status(&name).channel, ch.url.as_str());
    assert_ok(&ensure(&[], &other), "move to the channel (default)");
    assert_eq!(agent.status(&name).channel, other.as_str());
    let enc = std::fs::read_to_string(
        agent
            .dir
            .join("containers")
            .join(&name)
            .join("etc/nixos/enc.json"),
    )
    .unwrap();
    assert!(
        enc.contains(&other),
        "fc-manage sees the new channel: {enc}"
    );
    let v2 = vm_config(&agent, &name).unwrap();
    assert_eq!(v2["creation-date"], created.as_str());
    assert!(v2["last_deploy_date"].as_str().unwrap() >= deployed.as_str());

    // list: every name, or the caller's own; -l one line each.
    let list = agent.fc_devhost_sudo(BOB, users_gid(), &["list"]);
    assert_ok(&list, "list");
    assert_eq!(text(&list).trim(), name);
    let mine = agent.fc_devhost_sudo(BOB, users_gid(), &["list", "--user"]);
    assert_eq!(text(&mine).trim(), "", "bob has none");
    let long = agent.fc_devhost_sudo(ALICE, users_gid(), &["list", "-l", "--user"]);
    let line = text(&long);
    assert!(
        line.starts_with(&name) && line.contains("running") && line.contains("512M"),
        "{line}"
    );

    // cleanup is the agent's: root's (or an admin's), not a user's.
    let out = agent.fc_devhost_sudo(ALICE, users_gid(), &["cleanup"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("may not run the cleanup"),
        "{}",
        text(&out)
    );
    let out = Command::new(FC_DEVHOST)
        .arg("cleanup")
        .env("DEVHOST_SOCKET", &agent.socket)
        .env_remove("SUDO_UID")
        .output()
        .unwrap();
    assert_ok(&out, "root's cleanup");
    assert!(
        text(&out).contains(&name),
        "the report names it: {}",
        text(&out)
    );

    // Another user's sudo cannot destroy it; its owner can, twice.
    let out = agent.fc_devhost_sudo(BOB, users_gid(), &["destroy", &name]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_ok(
        &agent.fc_devhost_sudo(ALICE, users_gid(), &["destroy", &name]),
        "destroy",
    );
    assert!(vm_config(&agent, &name).is_none(), "removed with it");
    assert_ok(
        &agent.fc_devhost_sudo(ALICE, users_gid(), &["destroy", &name]),
        "destroy of nothing",
    );
}

#[test]
fn a_hydra_evaluation_needs_the_agents_template() {
    let Some(()) = prerequisites("a_hydra_evaluation_needs_the_agents_template") else {
        return;
    };
    let ch = channel();
    // The fixture channel is served at /c/HASH/nixexprs.tar.xz: HASH plays
    // the evaluation.
    let (base, eval) = ch.url.rsplit_once("/c/").unwrap();
    let eval = eval.trim_end_matches("/nixexprs.tar.xz").to_string();
    let plain = TestAgent::start(Options::default());
    let name = plain.name("hy");
    let from_eval = |agent: &TestAgent, name: &str| {
        agent.fc_devhost_sudo(
            ALICE,
            users_gid(),
            &[
                "ensure",
                "--memory",
                "512",
                "--cpu",
                "1",
                "--aliases",
                "''",
                "--hydra-eval",
                &eval,
                name,
            ],
        )
    };
    let out = from_eval(&plain, &name);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("this devhost cannot resolve Hydra evaluations"),
        "{}",
        text(&out)
    );
    assert!(plain.try_status(&name).is_none(), "nothing was created");
    drop(plain);

    let agent = TestAgent::start(Options {
        extra_toml: format!(
            "[fc_devhost]\nhydra_channel_url = \"{base}/c/{{eval}}/nixexprs.tar.xz\"\n"
        ),
        ..Options::default()
    });
    let name = agent.name("hy");
    assert_ok(&from_eval(&agent, &name), "ensure from a Hydra evaluation");
    assert_eq!(agent.status(&name).channel, ch.url.as_str());
}

#[test]
fn a_failed_first_ensure_leaves_nothing() {
    let Some(()) = prerequisites("a_failed_first_ensure_leaves_nothing") else {
        return;
    };
    let agent = TestAgent::start(Options::default());
    let name = agent.name("fail");
    let out = agent.fc_devhost_sudo(
        ALICE,
        users_gid(),
        &[
            "ensure",
            "--memory",
            "512",
            "--cpu",
            "1",
            "--aliases",
            "'www'",
            "--channel-url",
            "file:///nonexistent/devhost-channel",
            &name,
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let first = format!("10.231.{}.2", agent.subnet).parse().unwrap();
    assert_eq!(agent.traces_of(&name, first), Vec::<String>::new());
    assert!(vm_config(&agent, &name).is_none());
    // Bad values are named before anything is sent.
    let out = agent.fc_devhost_sudo(
        ALICE,
        users_gid(),
        &[
            "ensure",
            "--memory",
            "lots",
            "--cpu",
            "1",
            "--channel-url",
            &channel().url,
            &name,
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("invalid memory \"lots\""),
        "{}",
        text(&out)
    );
}

#[test]
fn the_owner_gets_a_root_shell_in_the_container() {
    let Some(()) = prerequisites_and("the_owner_gets_a_root_shell_in_the_container", &["script"])
    else {
        return;
    };
    let agent = TestAgent::start(Options::default());
    let name = agent.name("sh");
    assert_ok(
        &agent.devhost_as(ALICE, users_gid(), &["ensure", &name, &channel().url]),
        "ensure",
    );
    let typed = "echo SHELL-$((6 * 7)) $(id -u) $(hostname); exit\n";
    for (program, args) in [
        (DEVHOST, vec!["shell", name.as_str()]),
        (FC_DEVHOST, vec!["login", name.as_str()]),
        (NIXOS_CONTAINER, vec!["root-login", name.as_str()]),
    ] {
        let out = on_a_terminal(&agent, ALICE, program, &args, typed);
        assert!(
            text(&out).contains(&format!("SHELL-42 0 {name}")),
            "{program}: a root shell in the container:\n{}",
            text(&out)
        );
    }
    // A job left behind holding the terminal does not keep the shell open.
    let out = on_a_terminal(
        &agent,
        ALICE,
        DEVHOST,
        &["shell", &name],
        "sleep 600 & echo LEFT-BEHIND; exit\n",
    );
    assert!(text(&out).contains("LEFT-BEHIND"), "{}", text(&out));
    assert_eq!(
        out.status.code(),
        Some(0),
        "the shell ended by itself, not by the watchdog: {}",
        text(&out)
    );
    let out = on_a_terminal(&agent, BOB, DEVHOST, &["shell", &name], typed);
    assert!(
        !text(&out).contains("SHELL-42") && text(&out).contains(&format!("belongs to uid {ALICE}")),
        "{}",
        text(&out)
    );
}

/// A btrfs filesystem with quotas enabled for the test's container roots
/// (a sparse image on a loop device); unmounted and removed on drop.
struct BtrfsWithQuotas {
    dir: std::path::PathBuf,
}

impl BtrfsWithQuotas {
    fn new(tag: &str) -> BtrfsWithQuotas {
        let dir = std::path::PathBuf::from(format!("/var/lib/devhost-test-btrfs-{tag}"));
        std::fs::create_dir_all(dir.join("mnt")).unwrap();
        let me = BtrfsWithQuotas { dir };
        let image = me.dir.join("image");
        let f = std::fs::File::create(&image).unwrap();
        f.set_len(512 << 20).unwrap();
        let mnt = me.mnt();
        for (program, args) in [
            ("mkfs.btrfs", vec!["-q", "-f", image.to_str().unwrap()]),
            (
                "mount",
                vec!["-o", "loop", image.to_str().unwrap(), mnt.to_str().unwrap()],
            ),
            ("btrfs", vec!["quota", "enable", mnt.to_str().unwrap()]),
        ] {
            let out = Command::new(program).args(&args).output().unwrap();
            assert!(out.status.success(), "{program}: {}", text(&out));
        }
        me
    }

    fn mnt(&self) -> std::path::PathBuf {
        self.dir.join("mnt")
    }
}

impl Drop for BtrfsWithQuotas {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.mnt()).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn a_disk_size_is_enforced_by_a_btrfs_quota_group() {
    let Some(()) = prerequisites_and(
        "a_disk_size_is_enforced_by_a_btrfs_quota_group",
        &["mkfs.btrfs", "btrfs"],
    ) else {
        return;
    };
    let fs = BtrfsWithQuotas::new(&common::random_hex(6));
    let agent = TestAgent::start(Options {
        containers_dir: Some(fs.mnt().join("containers")),
        // The test's file system is small (512 MiB): roots need far less.
        extra_toml: "[admission]\nmin_free_disk_mib = 64\n".into(),
        ..Options::default()
    });
    let name = agent.name("dq");
    let ensure = |size: &str| {
        agent.fc_devhost_sudo(
            ALICE,
            users_gid(),
            &[
                "ensure",
                "--memory",
                "512",
                "--cpu",
                "1",
                "--aliases",
                "''",
                "--disk-size",
                size,
                "--channel-url",
                &channel().url,
                &name,
            ],
        )
    };
    assert_ok(&ensure("64M"), "ensure with a disk size");
    let s = agent.status_json(&name).unwrap();
    assert_eq!(s["disk_quota"], "btrfs quota group");
    assert!(s["disk_used"].as_u64().is_some_and(|u| u > 0), "{s}");
    let status = text(&agent.devhost(&["status", &name]));
    assert!(
        status.contains("disk size:   0.1 GiB, enforced (btrfs quota group)"),
        "{status}"
    );
    let envdir = agent.dir.join("env-dq");
    std::fs::create_dir_all(&envdir).unwrap();
    std::fs::write(
        envdir.join("provision.sh"),
        "RUN 'dd if=/dev/zero of=/fill bs=1M count=100 2>&1; rm -f /fill'\n",
    )
    .unwrap();
    let fill = || agent.devhost(&["provision", &name, envdir.to_str().unwrap()]);
    let out = fill();
    assert!(
        text(&out).contains("Disk quota exceeded"),
        "100 MiB into a 64 MiB container:\n{}",
        text(&out)
    );
    // A larger size applies at once, to the running container.
    assert_ok(&ensure("256M"), "a larger disk size");
    let out = fill();
    assert!(
        !text(&out).contains("Disk quota exceeded") && text(&out).contains("100+0 records out"),
        "{}",
        text(&out)
    );
    // Destroy removes the root subvolume with everything in it, also a
    // subvolume made inside it (as systemd in a container makes some).
    let nested = agent.containers_dir.join(&name).join("var-lib-machines");
    let out = Command::new("btrfs")
        .args(["subvolume", "create"])
        .arg(&nested)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    std::fs::write(nested.join("data"), "x").unwrap();
    let out = Command::new("btrfs")
        .args(["property", "set", "-ts"])
        .arg(&nested)
        .args(["ro", "true"])
        .output()
        .unwrap();
    assert!(out.status.success(), "read-only: {}", text(&out));
    assert_ok(&agent.devhost(&["destroy", &name]), "destroy");
    assert!(!agent.containers_dir.join(&name).exists());
    drop(agent);
}
