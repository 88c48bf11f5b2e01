//! The transient unit a container runs in under the systemd backend: its
//! name and properties, as NixOS's `container@.service` and systemd's own
//! `systemd-nspawn@.service` set them, plus the container's limits. Pure: a
//! typed property list, turned into D-Bus values only in `systemd.rs`.

use crate::container::{ContainerName, Limits};

/// `devhost-NAME.service`: predictable, and clear of NixOS's `container@`.
pub fn unit_name(name: &ContainerName) -> String {
    format!("devhost-{name}.service")
}

/// The description marks a unit as one of our containers.
pub fn unit_description(name: &ContainerName) -> String {
    format!("devhost container {name}")
}

/// A unit property value, in the D-Bus types systemd expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prop {
    Str(String),
    Bool(bool),
    /// `t`
    U64(u64),
    /// `ExecStart`: `a(sasb)` with one entry (path, argv, ignore failure).
    Exec(String, Vec<String>),
    /// `a(ss)`
    Pairs(Vec<(String, String)>),
    /// `RestartForceExitStatus`: `(aiai)` exit statuses and signals.
    ExitStatus(Vec<i32>, Vec<i32>),
}

pub struct UnitSpec<'a> {
    pub name: &'a ContainerName,
    /// The full nspawn argv; `argv[0]` must be an absolute path.
    pub argv: &'a [String],
    /// systemd starts nspawn in this network namespace.
    pub netns_path: &'a std::path::Path,
    pub start_timeout_secs: u64,
    pub stop_timeout_secs: u64,
    pub limits: &'a Limits,
}

pub fn unit_properties(s: &UnitSpec) -> Vec<(String, Prop)> {
    let p = |k: &str, v: Prop| (k.to_string(), v);
    let mut v = vec![
        p(
            "Description",
            Prop::Str(format!("devhost container {}", s.name)),
        ),
        p("ExecStart", Prop::Exec(s.argv[0].clone(), s.argv.to_vec())),
        p("Type", Prop::Str("notify".into())),
        p(
            "NetworkNamespacePath",
            Prop::Str(s.netns_path.display().to_string()),
        ),
        p("Slice", Prop::Str("machine.slice".into())),
        p("Delegate", Prop::Bool(true)),
        // SIGTERM to nspawn makes it send its --kill-signal (poweroff) to
        // the init; `mixed` kills the rest only after that.
        p("KillMode", Prop::Str("mixed".into())),
        p("DevicePolicy", Prop::Str("closed".into())),
        p(
            "DeviceAllow",
            Prop::Pairs(vec![
                ("/dev/net/tun".into(), "rwm".into()),
                ("char-pts".into(), "rw".into()),
            ]),
        ),
        // 133: the container asked to be rebooted.
        p(
            "RestartForceExitStatus",
            Prop::ExitStatus(vec![133], vec![]),
        ),
        p(
            "TimeoutStartUSec",
            Prop::U64(s.start_timeout_secs * 1_000_000),
        ),
        p(
            "TimeoutStopUSec",
            Prop::U64(s.stop_timeout_secs * 1_000_000),
        ),
        // A stopped or failed container's unit goes away, so the name is free again.
        p("CollectMode", Prop::Str("inactive-or-failed".into())),
    ];
    v.extend(limit_properties(s.limits));
    v
}

/// The limit properties (also what `SetUnitProperties` applies live).
pub fn limit_properties(l: &Limits) -> Vec<(String, Prop)> {
    let mut v = Vec::new();
    if let Some(m) = l.memory_max {
        v.push(("MemoryMax".to_string(), Prop::U64(m)));
    }
    if let Some(c) = l.cpu_percent {
        // One CPU is 1 s of CPU time per second.
        v.push((
            "CPUQuotaPerSecUSec".to_string(),
            Prop::U64(c as u64 * 10_000),
        ));
    }
    if let Some(t) = l.tasks_max {
        v.push(("TasksMax".to_string(), Prop::U64(t)));
    }
    if let Some(w) = l.io_weight {
        v.push(("IOWeight".to_string(), Prop::U64(w)));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_like_nixos_containers() {
        let name: ContainerName = "web01".parse().unwrap();
        let argv: Vec<String> = ["/usr/bin/systemd-nspawn", "--keep-unit", "-M", "web01"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let limits = Limits {
            memory_max: Some(2 << 30),
            cpu_percent: Some(150),
            tasks_max: Some(4096),
            io_weight: Some(50),
        };
        let props = unit_properties(&UnitSpec {
            name: &name,
            argv: &argv,
            netns_path: std::path::Path::new("/run/netns/devhost-web01"),
            start_timeout_secs: 120,
            stop_timeout_secs: 30,
            limits: &limits,
        });
        let s = |x: &str| Prop::Str(x.to_string());
        let expected: Vec<(String, Prop)> = vec![
            ("Description", s("devhost container web01")),
            (
                "ExecStart",
                Prop::Exec("/usr/bin/systemd-nspawn".into(), argv.clone()),
            ),
            ("Type", s("notify")),
            ("NetworkNamespacePath", s("/run/netns/devhost-web01")),
            ("Slice", s("machine.slice")),
            ("Delegate", Prop::Bool(true)),
            ("KillMode", s("mixed")),
            ("DevicePolicy", s("closed")),
            (
                "DeviceAllow",
                Prop::Pairs(vec![
                    ("/dev/net/tun".into(), "rwm".into()),
                    ("char-pts".into(), "rw".into()),
                ]),
            ),
            (
                "RestartForceExitStatus",
                Prop::ExitStatus(vec![133], vec![]),
            ),
            ("TimeoutStartUSec", Prop::U64(120_000_000)),
            ("TimeoutStopUSec", Prop::U64(30_000_000)),
            ("CollectMode", s("inactive-or-failed")),
            ("MemoryMax", Prop::U64(2 << 30)),
            ("CPUQuotaPerSecUSec", Prop::U64(1_500_000)),
            ("TasksMax", Prop::U64(4096)),
            ("IOWeight", Prop::U64(50)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert_eq!(props, expected);
        assert_eq!(unit_name(&name), "devhost-web01.service");
        assert!(limit_properties(&Limits::default()).is_empty());
    }
}
