//! The NixOS module and the flake, checked with the real Nix: every `.nix`
//! file parses; the module's rendering of its options (defaults and every
//! option set, plus `settings`) is parsed by the agent's own config loader,
//! so module and agent cannot drift apart; and, when a nixpkgs `lib` is
//! given in `NIXPKGS_LIB`, the whole module is evaluated with
//! `lib.evalModules` (service, timer, sysctls, firewall, sudo, assertions,
//! every option typed and described).

mod common;

use devhost::config::Config;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn have_nix(test: &str) -> bool {
    common::prerequisites_and(test, &["nix-instantiate"]).is_some()
}

/// `nix-instantiate --eval --strict --json -E EXPR` in the module's directory.
fn eval_json(expr: &str) -> Result<serde_json::Value, String> {
    let out = Command::new("nix-instantiate")
        .args(["--eval", "--strict", "--json", "-E", expr])
        .current_dir(repo().join("nixos-module"))
        .output()
        .expect("nix-instantiate runs");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&out.stdout).expect("JSON from nix-instantiate"))
}

/// The agent's config as the module renders it, through TOML into the loader.
fn load(rendered: &serde_json::Value) -> Config {
    let text = toml::to_string(rendered).expect("renders as TOML");
    Config::from_toml(&text)
        .unwrap_or_else(|e| panic!("agent refuses the module's config: {e}\n{text}"))
}

fn nix_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if p.is_dir() && name != "target" && !name.starts_with('.') {
            nix_files(&p, out);
        } else if name.ends_with(".nix") {
            out.push(p);
        }
    }
}

#[test]
fn every_nix_file_parses() {
    if !have_nix("every_nix_file_parses") {
        return;
    }
    let mut files = Vec::new();
    nix_files(&repo(), &mut files);
    let names: Vec<String> = files
        .iter()
        .map(|f| f.strip_prefix(repo()).unwrap().display().to_string())
        .collect();
    for want in [
        "flake.nix",
        "nixos-module/default.nix",
        "nixos-module/settings.nix",
        "nixos-module/package.nix",
        "nixos-module/test-vm.nix",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
    }
    for f in &files {
        let out = Command::new("nix-instantiate")
            .arg("--parse")
            .arg(f)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            f.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Every option of the role set away from its default, as a Nix attrset.
const ALL_SET: &str = r#"(import ./defaults.nix) // {
  enableAliasProxy = false;
  publicAddress = "dev.example.org";
  acme = { mode = "dns-01"; email = "ops@example.org"; directory = "https://acme.example.org/dir"; };
  dns = { enable = true; addresses = [ "192.0.2.10" "2001:db8::10" ]; };
  addressPool = "10.50.0.0/16";
  natInterface = "ethsrv";
  containerBaseImports = [ "<fc/nixos>" "/etc/devhost/base.nix" ];
  containerExtraConfig = "services.openssh.enable = true;";
  defaultLimits = { memoryMax = 2147483648; cpuPercent = 200; tasksMax = 4096; ioWeight = 50; };
  disableAfter = 10;
  deleteAfter = 40;
  countActivity = true;
  metrics = { listen = "[::]:9500"; perContainer = true; openFirewall = true; };
  sleepAfter = "2h";
  adminGroup = "admins";
  userGroup = "developers";
  settings = { edge = { workers = 3; }; certs = { max_new_per_week = 20; }; paths = { hosts_file = "/run/devhost/hosts"; }; admission = { max_parallel_boots = 6; }; };
}"#;

#[test]
fn module_settings_are_the_agents_config() {
    if !have_nix("module_settings_are_the_agents_config") {
        return;
    }
    // Defaults: what the agent would run without a file, but for what the
    // role decides on NixOS (the hosts file, the old role's public domain).
    let c = load(&eval_json("(import ./settings.nix) (import ./defaults.nix)").unwrap());
    let mut want = Config::defaults();
    want.paths.hosts_file = "/var/lib/devhost/hosts".into();
    want.edge.domain = "example.com".into();
    assert_eq!(c.paths, want.paths);
    assert_eq!(c.access, want.access);
    assert_eq!(c.network, want.network);
    assert_eq!(c.nix, want.nix);
    assert_eq!(c.cleanup, want.cleanup);
    assert_eq!(c.default_limits, want.default_limits);
    assert_eq!(c.admission, want.admission);
    assert_eq!(c.sleep, want.sleep);
    assert_eq!(c.edge.domain, "example.com");
    assert!(c.edge.enable);
    // The role serves /metrics on loopback (the agent alone does not).
    assert_eq!(c.metrics.listen, Some("127.0.0.1:9469".parse().unwrap()));
    assert!(!c.metrics.per_container);
    assert_eq!(want.metrics.listen, None);

    // Every option set: each reaches its key.
    let c = load(&eval_json(&format!("(import ./settings.nix) ({ALL_SET})")).unwrap());
    assert!(!c.edge.enable);
    assert_eq!(c.edge.domain, "dev.example.org");
    assert_eq!(
        format!("{:?}", c.edge.certs.issuer),
        "Acme(Dns01)",
        "acme.mode"
    );
    assert_eq!(c.edge.certs.acme.contact, vec!["mailto:ops@example.org"]);
    assert_eq!(c.edge.certs.acme.directory, "https://acme.example.org/dir");
    let dns = c.edge.dns.as_ref().expect("dns.enable");
    assert_eq!(
        dns.zone.v4,
        vec!["192.0.2.10".parse::<std::net::Ipv4Addr>().unwrap()]
    );
    assert_eq!(c.network.pool.to_string(), "10.50.0.0/16");
    assert_eq!(c.network.nat_interface, "ethsrv");
    assert_eq!(
        c.nix.base_imports,
        vec!["<fc/nixos>", "/etc/devhost/base.nix"]
    );
    assert_eq!(c.nix.extra_config, "services.openssh.enable = true;");
    assert_eq!(c.default_limits.memory_max, Some(2 << 30));
    assert_eq!(c.default_limits.cpu_percent, Some(200));
    assert_eq!(c.default_limits.tasks_max, Some(4096));
    assert_eq!(c.default_limits.io_weight, Some(50));
    assert_eq!(
        c.cleanup.policy,
        devhost::cleanup::Policy::days(10, 40, true)
    );
    assert!(c.cleanup.policy.count_activity);
    assert_eq!(
        c.sleep.after,
        devhost::sleep::SleepAfter::After(std::time::Duration::from_secs(7_200))
    );
    assert_eq!(c.access.admin_group, "admins");
    assert_eq!(c.access.user_group, "developers");
    assert_eq!(c.metrics.listen, Some("[::]:9500".parse().unwrap()));
    assert!(c.metrics.per_container);
    // `settings` adds keys and overrides rendered ones, section by section.
    assert_eq!(c.edge.workers, 3);
    assert_eq!(c.edge.certs.acme.limits.new_per_week, 20);
    assert_eq!(c.admission.max_parallel_boots, 6);
    assert_eq!(c.paths.hosts_file, PathBuf::from("/run/devhost/hosts"));
    assert_eq!(c.paths.state_dir, PathBuf::from("/var/lib/devhost"));

    // A key the agent does not know, given through `settings`, is refused
    // by the agent with its name (the module does not hide typos).
    let bad = eval_json(
        "(import ./settings.nix) ((import ./defaults.nix) // { settings.edge.wokers = 3; })",
    )
    .unwrap();
    let text = toml::to_string(&bad).unwrap();
    let e = Config::from_toml(&text).unwrap_err().to_string();
    assert!(e.contains("unknown field `wokers`"), "{e}");
}

#[test]
fn module_evaluates_with_nixpkgs_lib() {
    const TEST: &str = "module_evaluates_with_nixpkgs_lib";
    if !have_nix(TEST) {
        return;
    }
    let Some(lib) = std::env::var_os("NIXPKGS_LIB").filter(|v| !v.is_empty()) else {
        common::not_run(
            TEST,
            "set NIXPKGS_LIB to a nixpkgs lib directory (e.g. a checkout's lib/) to evaluate the module with lib.evalModules; this machine has no nixpkgs and cannot fetch one",
        );
        return;
    };
    let lib = Path::new(&lib).canonicalize().expect("NIXPKGS_LIB exists");
    let eval = |role: &str| {
        eval_json(&format!(
            "import ./eval-test.nix {{ lib = import {}; role = {role}; }}",
            lib.display()
        ))
    };

    // Disabled: the role sets nothing at all.
    let off = eval("{ }").unwrap();
    assert_eq!(off["service"], serde_json::Value::Null, "{off}");
    assert_eq!(off["cleanupTimer"], serde_json::Value::Null);
    assert_eq!(off["tcpPorts"], serde_json::json!([]));
    assert_eq!(
        off["undocumented"],
        serde_json::json!([]),
        "every option typed and described"
    );

    let on = eval("{ enable = true; }").unwrap();
    assert_eq!(on["failedAssertions"], serde_json::json!([]), "{on}");
    let s = &on["service"];
    assert_eq!(s["Type"], "notify");
    assert_eq!(s["Restart"], "on-failure");
    assert_eq!(s["KillMode"], "process", "restarts never stop containers");
    assert!(
        s["ExecStart"]
            .as_str()
            .unwrap()
            .ends_with("/bin/devhost agent --config /etc/devhost/agent.toml"),
        "{s}"
    );
    assert_eq!(on["cleanupTimer"]["OnCalendar"], "*-*-* 03:00:00");
    assert_eq!(on["cleanupTimer"]["Persistent"], true);
    assert!(on["cleanupService"]
        .as_str()
        .unwrap()
        .ends_with("/bin/devhost cleanup"));
    assert_eq!(on["sysctl"]["net.ipv4.ip_forward"], 1);
    // What the preflight's messages say the role sets, and room for many
    // containers at the [admission] estimates.
    use devhost::admission::verdict as v;
    use devhost::config::admission as a;
    assert_eq!(
        on["sysctl"]["fs.inotify.max_user_instances"],
        v::ROLE_INOTIFY_INSTANCES
    );
    assert_eq!(
        on["sysctl"]["fs.inotify.max_user_watches"],
        v::ROLE_INOTIFY_WATCHES
    );
    // kernel.pid_max is NixOS's own (its systemd module: 4194304 on 64-bit).
    assert!(on["sysctl"].get("kernel.pid_max").is_none());
    const {
        assert!(v::ROLE_INOTIFY_INSTANCES / a::INOTIFY_INSTANCES_PER_CONTAINER >= 500);
        assert!(v::ROLE_INOTIFY_WATCHES / a::INOTIFY_WATCHES_PER_CONTAINER >= 500);
        assert!(v::PID_MAX_LIMIT / a::THREADS_PER_CONTAINER >= 500);
    }
    assert_eq!(on["tcpPorts"], serde_json::json!([80, 443]));
    assert_eq!(on["udpPorts"], serde_json::json!([]));
    assert_eq!(on["enableContainers"], false);
    assert_eq!(on["systemPackages"], serde_json::json!(["devhost"]));
    assert_eq!(
        on["sudo"][0]["groups"],
        serde_json::json!(["service", "users"])
    );
    assert!(on["sudo"][0]["commands"][0]["command"]
        .as_str()
        .unwrap()
        .ends_with("/bin/fc-build-dev-container"));
    assert!(on["sudo"][0]["commands"][2]["command"]
        .as_str()
        .unwrap()
        .ends_with("/bin/fc-devhost"));
    assert_eq!(
        on["sudo"][0]["commands"][0]["options"],
        serde_json::json!(["NOPASSWD"])
    );
    // What the service is configured with is what the agent loads.
    let c = load(&on["agentConfig"]);
    assert_eq!(c.edge.domain, "example.com");

    // DNS opens 53; cleanupContainers = false removes the timer; testing
    // turns the proxy off by default and adds the self-test.
    let dns = eval(
        "{ enable = true; dns.enable = true; dns.addresses = [ \"192.0.2.1\" ]; cleanupContainers = false; }",
    )
    .unwrap();
    assert_eq!(dns["tcpPorts"], serde_json::json!([80, 443, 53]));
    assert_eq!(dns["udpPorts"], serde_json::json!([53]));
    assert_eq!(dns["cleanupTimer"], serde_json::Value::Null);
    load(&dns["agentConfig"]);
    // A remote Prometheus: the metrics port opened (an IPv6 address too).
    let scraped =
        eval("{ enable = true; metrics.listen = \"[::]:9500\"; metrics.openFirewall = true; }")
            .unwrap();
    assert_eq!(scraped["tcpPorts"], serde_json::json!([80, 443, 9500]));
    let testing = eval("{ enable = true; testing = true; testingChannelURL = \"https://example.org/nixexprs.tar.xz\"; }").unwrap();
    assert_eq!(testing["selftestTimer"], true);
    assert_eq!(
        testing["tcpPorts"],
        serde_json::json!([]),
        "no alias proxy in testing mode"
    );
    assert!(!load(&testing["agentConfig"]).edge.enable);

    // Contradictions are refused with the option's name.
    let bad = eval(
        "{ enable = true; virtualisationType = \"vm\"; disableAfter = 30; deleteAfter = 7; dns.enable = true; testing = true; metrics.listen = \"\"; metrics.openFirewall = true; }",
    )
    .unwrap();
    let msgs: Vec<&str> = bad["failedAssertions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    for want in [
        "virtualisationType = \"vm\" is not supported",
        "deleteAfter (7) must be more than disableAfter (30)",
        "dns.addresses must name",
        "testingChannelURL is required",
        "metrics.openFirewall needs metrics.listen",
    ] {
        assert!(msgs.iter().any(|m| m.contains(want)), "{want}: {msgs:?}");
    }
    // A value of the wrong type is an evaluation error naming the option.
    let e = eval("{ enable = true; disableAfter = \"seven\"; }").unwrap_err();
    assert!(e.contains("disableAfter"), "{e}");
}
