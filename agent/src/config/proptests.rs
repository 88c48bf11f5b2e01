//! Property tests of loading the configuration (run through `props::check`,
//! so `FUZZ_SECS` runs them for long): any text, and TOML documents made of
//! the real sections and keys with good, bad and ill-typed values. Nothing
//! panics; a refusal is a `ConfigError` naming a section; whatever is
//! accepted keeps the rules the sections check.

use super::*;
use proptest::prelude::*;

#[derive(Debug, Clone, Copy)]
enum Kind {
    Str,
    Int,
    Float,
    Bool,
    List,
}
use Kind::*;

/// Every section and key a generated document may set, with the type the
/// file should give it. (`certs.acme_roots` is left out: it names files
/// that are read.)
const KEYS: &[(&str, &[(&str, Kind)])] = &[
    (
        "paths",
        &[
            ("state_dir", Str),
            ("run_dir", Str),
            ("socket", Str),
            ("containers_dir", Str),
            ("profiles_dir", Str),
            ("gcroots_dir", Str),
            ("hosts_file", Str),
            ("compat_dir", Str),
        ],
    ),
    (
        "access",
        &[
            ("admin_group", Str),
            ("user_group", Str),
            ("socket_mode", Int),
            ("max_connections_per_uid", Int),
            ("header_timeout_secs", Int),
            ("body_timeout_secs", Int),
        ],
    ),
    (
        "network",
        &[
            ("pool", Str),
            ("nat_interface", Str),
            ("nft_table", Str),
            ("netns_prefix", Str),
        ],
    ),
    (
        "nix",
        &[
            ("nix_build", Str),
            ("extra_args", List),
            ("base_imports", List),
            ("extra_config", Str),
            ("build_timeout_secs", Int),
            ("reuse_secs", Int),
            ("gcroots_auto_dir", Str),
            ("allowed_paths", List),
            ("allowed_uris", List),
            ("max_local_channel_bytes", Int),
        ],
    ),
    (
        "nspawn",
        &[
            ("backend", Str),
            ("program", Str),
            ("readiness", Str),
            ("ready_tcp_port", Int),
            ("ready_delay_ms", Int),
            ("ready_timeout_secs", Int),
            ("stop_timeout_secs", Int),
            ("optional_ro_binds", List),
            ("extra_args", List),
            ("boot_concurrency", Int),
        ],
    ),
    (
        "edge",
        &[
            ("enable", Bool),
            ("public_domain", Str),
            ("http_listen", List),
            ("https_listen", List),
            ("upstream", Str),
            ("max_connections", Int),
            ("workers", Int),
            ("header_read_timeout_secs", Int),
            ("handshake_timeout_secs", Int),
            ("idle_timeout_secs", Int),
            ("max_header_bytes", Int),
            ("dashboard", Bool),
            ("dashboard_allow", List),
        ],
    ),
    (
        "certs",
        &[
            ("mode", Str),
            ("renew_after_fraction", Float),
            ("local_ca_days", Int),
            ("acme_directory", Str),
            ("acme_contact", List),
            ("retry_min_secs", Int),
            ("retry_max_secs", Int),
            ("max_new_per_week", Int),
            ("max_same_names_per_week", Int),
            ("max_orders_per_3h", Int),
            ("max_parallel_orders", Int),
            ("check_dns", Bool),
            ("expect_addresses", List),
            ("resolvers", List),
        ],
    ),
    (
        "dns",
        &[
            ("enable", Bool),
            ("listen", List),
            ("addresses", List),
            ("nameservers", List),
            ("hostmaster", Str),
            ("ttl", Int),
        ],
    ),
    (
        "cleanup",
        &[
            ("disable_after_days", Int),
            ("delete_after_days", Int),
            ("count_activity", Bool),
            ("max_extend_days", Int),
        ],
    ),
    (
        "limits",
        &[
            ("memory_max", Int),
            ("cpu_percent", Int),
            ("tasks_max", Int),
            ("io_weight", Int),
        ],
    ),
    ("fc_devhost", &[("hydra_channel_url", Str)]),
    (
        "admission",
        &[
            ("max_parallel_boots", Int),
            ("inotify_instances_per_container", Int),
            ("inotify_watches_per_container", Int),
            ("threads_per_container", Int),
            ("min_free_disk_mib", Int),
        ],
    ),
];

/// Strings that are good for some key and bad for others.
const STRINGS: &[&str] = &[
    "",
    "/abs/path",
    "relative",
    "/x y",
    "wheel",
    "a b",
    "-x",
    "eth0",
    "devhost-",
    "10.99.0.0/24",
    "10.0.0.1/16",
    "10.0.0.0/30",
    "nope",
    "<nixpkgs>",
    "<a b>",
    "<>",
    "<",
    "http:8080",
    "https:443",
    "http:0",
    "dev.test",
    "Dev.Test",
    "dev.test.",
    ".",
    "a..b",
    "0.0.0.0:443",
    "[::]:53",
    "192.0.2.1",
    "2001:db8::1",
    "ops@example.org",
    "mailto:x@y.z",
    "https://acme.test/dir",
    "http://acme.test/dir",
    "auto",
    "direct",
    "systemd",
    "notify",
    "tcp",
    "delay",
    "local-ca",
    "dns-01",
    "http-01",
    "tls-alpn-01",
    "hostmaster@dev.test",
    "https://hydra.test/{eval}/x",
    "nix-build",
];

fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(STRINGS).prop_map(String::from),
        1 => props::any_text(),
    ]
}

fn value(kind: Kind) -> BoxedStrategy<toml::Value> {
    let int = prop_oneof![
        prop::sample::select(vec![
            0i64, 1, 2, 7, 30, 60, 511, 0o777, 8192, 65535, 65536, -1
        ]),
        any::<i64>(),
    ]
    .prop_map(toml::Value::Integer);
    let float = prop_oneof![
        prop::sample::select(vec![0.0, 0.5, 1.0, -0.5, f64::NAN, f64::INFINITY]),
        any::<f64>(),
    ]
    .prop_map(toml::Value::Float);
    let typed = match kind {
        Str => string().prop_map(toml::Value::String).boxed(),
        Int => int.boxed(),
        Float => float.boxed(),
        Bool => any::<bool>().prop_map(toml::Value::Boolean).boxed(),
        List => prop::collection::vec(string().prop_map(toml::Value::String), 0..3)
            .prop_map(toml::Value::Array)
            .boxed(),
    };
    // Now and then a value of the wrong type.
    let wrong = prop_oneof![
        string().prop_map(toml::Value::String),
        any::<i64>().prop_map(toml::Value::Integer),
        any::<bool>().prop_map(toml::Value::Boolean),
    ];
    prop_oneof![30 => typed, 1 => wrong].boxed()
}

/// A document setting some keys of some sections (or an unknown one).
fn document() -> impl Strategy<Value = String> {
    let setting = prop::sample::select(KEYS).prop_flat_map(|(section, keys)| {
        prop::sample::select(keys).prop_flat_map(move |(key, kind)| {
            let key = prop_oneof![30 => Just(key.to_string()), 1 => Just(format!("{key}x"))];
            (Just(section), key, value(kind))
        })
    });
    prop::collection::vec(setting, 0..12).prop_map(|settings| {
        let mut doc = toml::Table::new();
        for (section, key, v) in settings {
            doc.entry(section)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .unwrap()
                .insert(key, v);
        }
        toml::to_string(&doc).unwrap()
    })
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => document(),
        1 => props::any_text(),
        // A document with a line of noise spliced in.
        1 => (document(), props::any_text(), any::<prop::sample::Index>()).prop_map(
            |(doc, noise, at)| {
                let mut lines: Vec<&str> = doc.lines().collect();
                let i = at.index(lines.len() + 1);
                lines.insert(i, &noise);
                lines.join("\n")
            }
        ),
    ]
}

/// The rules the sections check, on a configuration they accepted.
fn keeps_the_rules(c: &Config) -> Result<(), TestCaseError> {
    let p = &c.paths;
    for path in [
        &p.state_dir,
        &p.run_dir,
        &p.socket,
        &p.containers_dir,
        &p.profiles_dir,
        &p.gcroots_dir,
        &p.hosts_file,
        &p.compat_dir,
    ] {
        prop_assert!(path.is_absolute(), "{}", path.display());
    }
    prop_assert!(c.access.socket_mode <= 0o777);
    prop_assert!(c.access.max_connections_per_uid >= 1);
    prop_assert!(!c.access.header_timeout.is_zero() && !c.access.body_timeout.is_zero());
    prop_assert!(c.network.pool.prefix_len() <= 29);
    prop_assert_eq!(c.network.pool.network(), c.network.pool.addr());
    prop_assert!(c.nspawn.boot_concurrency >= 1);
    prop_assert!(!c.nspawn.ready_timeout.is_zero() && !c.nspawn.stop_timeout.is_zero());
    let e = &c.edge;
    prop_assert!(edge::valid_domain(&e.domain), "{}", e.domain);
    prop_assert!(e.upstream.port > 0);
    prop_assert!((1..=1024).contains(&e.workers) || e.workers == num_cpus());
    prop_assert!(e.max_connections >= 1);
    prop_assert!((8192..=1024 * 1024).contains(&e.max_header_bytes));
    if let Some(d) = &e.dashboard {
        prop_assert!(!d.allow.is_empty());
    }
    let f = e.certs.renew_after_fraction;
    prop_assert!(f > 0.0 && f < 1.0, "{}", f);
    prop_assert!(e.certs.local_ca_days >= 1);
    let a = &e.certs.acme;
    prop_assert!(!a.retry_min.is_zero() && a.retry_min <= a.retry_max);
    prop_assert!(a.parallel >= 1);
    prop_assert!(a.contact.iter().all(|m| m.starts_with("mailto:")));
    if let Some(dns) = &e.dns {
        prop_assert_eq!(&dns.zone.domain, &e.domain);
        prop_assert!(!(dns.zone.v4.is_empty() && dns.zone.v6.is_empty()));
        prop_assert!(dns.zone.nameservers.iter().all(|n| edge::valid_domain(n)));
        prop_assert!(edge::valid_domain(&dns.zone.hostmaster));
    }
    let policy = &c.cleanup.policy;
    prop_assert!(policy.disable_after < policy.delete_after);
    prop_assert!((1..=3650).contains(&c.cleanup.max_extend_days));
    prop_assert!(c.default_limits.validate().is_ok());
    let a = &c.admission;
    prop_assert!((1..=1024).contains(&a.max_parallel_boots));
    prop_assert!(a.needs.threads <= crate::container::limits::TASKS_MAX);
    prop_assert!(a.needs.min_free_disk <= 1 << 50);
    Ok(())
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[test]
fn any_text_loads_or_is_refused_with_a_config_error() {
    props::check(
        "any_text_loads_or_is_refused_with_a_config_error",
        1000,
        text(),
        |text| {
            match Config::from_toml(&text) {
                Ok(c) => {
                    keeps_the_rules(&c)?;
                    prop_assert_eq!(Config::from_toml(&text).ok(), Some(c));
                }
                Err(ConfigError::Parse(path, _)) => prop_assert_eq!(path, PathBuf::new()),
                Err(ConfigError::Invalid { key, .. }) => {
                    let section = key.split('.').next().unwrap_or_default();
                    prop_assert!(
                        KEYS.iter().any(|(s, _)| *s == section),
                        "{key} names no section"
                    );
                }
                Err(e @ ConfigError::Read(..)) => {
                    prop_assert!(false, "{e}: nothing was read")
                }
            }
            Ok(())
        },
    );
}
