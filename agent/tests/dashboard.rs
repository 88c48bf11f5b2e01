//! The dashboard (`[edge] dashboard = true`) against a real agent, real
//! containers and a real browser: headless Chromium, trusting only the
//! agent's local CA (in an NSS database of its own), loads
//! `https://dev.test/` through the proxy on loopback, and the test reads
//! the page from the browser's DOM (`--dump-dom`) and takes screenshots
//! (phone and desktop). Also: a channel URL with markup is shown as text,
//! a source outside `dashboard_allow` gets 403 whatever its headers say,
//! the apex gets a certificate from ACME (Pebble) too, and with the
//! dashboard off the apex is as before (no certificate, 404 on port 80).
//! A bad network in the configuration stops the agent with exit 2.
//!
//! `cargo test -p devhost --test dashboard -- --ignored docs_screenshots`
//! writes docs/dashboard.png and docs/dashboard-phone.png from a real run.

mod common;

use common::pebble::{certs_toml, ApiCa, Pebble};
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

const CHROMIUM: &str = "/usr/bin/chromium";
/// What the browser tests need besides the agent's prerequisites.
const BROWSER: &[&str] = &[CHROMIUM, "certutil", "curl"];
const APEX: &str = "dev.test";
/// Markup a channel URL may carry (after `#`, which fetching ignores): on
/// the page it must be text, never an element.
const MARKUP: &str =
    r#"#"><script>document.title='owned'</script><img/src=x/onerror=document.title='owned'>"#;

/// A browser with a home of its own whose NSS database trusts one root
/// (the agent's local CA) or none added; a fresh profile per run.
struct Browser {
    home: tempfile::TempDir,
    https_port: u16,
}

impl Browser {
    fn trusting(root: Option<&Path>, https_port: u16) -> Browser {
        let home = tempfile::tempdir().unwrap();
        let db = home.path().join(".pki/nssdb");
        std::fs::create_dir_all(&db).unwrap();
        let db = format!("sql:{}", db.display());
        let run = |args: &[&str]| {
            let out = Command::new("certutil").args(args).output().unwrap();
            assert_ok(&out, &format!("certutil {}", args.join(" ")));
        };
        run(&["-d", &db, "-N", "--empty-password"]);
        let Some(root) = root else {
            return Browser { home, https_port };
        };
        let root = root.display().to_string();
        run(&[
            "-d",
            &db,
            "-A",
            "-t",
            "C,,",
            "-n",
            "devhost local CA",
            "-i",
            &root,
        ]);
        Browser { home, https_port }
    }

    /// `https://dev.test:PORT/`, the dashboard's address in the tests.
    fn url(&self) -> String {
        format!("https://{APEX}:{}/", self.https_port)
    }

    /// Headless Chromium on `url` with `args`; `dev.test` resolves to
    /// loopback. Ends within a minute.
    fn run(&self, args: &[&str]) -> Output {
        let profile = tempfile::tempdir().unwrap();
        let out = Command::new("timeout")
            .args(["--kill-after=5", "60", CHROMIUM])
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--force-device-scale-factor=1",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("--host-resolver-rules=MAP {APEX} 127.0.0.1"))
            .args(args)
            .arg(self.url())
            .env("HOME", self.home.path())
            .output()
            .unwrap();
        assert_ok(&out, "chromium");
        out
    }

    /// The page as the browser built it.
    fn dom(&self) -> String {
        String::from_utf8(self.run(&["--dump-dom"]).stdout).unwrap()
    }

    /// A screenshot at `width`x`height` into `path`.
    fn screenshot(&self, width: u32, height: u32, path: &Path) {
        let _ = std::fs::remove_file(path);
        self.run(&[
            &format!("--window-size={width},{height}"),
            &format!("--screenshot={}", path.display()),
        ]);
    }
}

/// A PNG's width and height (from its header), panicking if it is none.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(
        png.len() > 24 && png.starts_with(b"\x89PNG\r\n\x1a\n") && &png[12..16] == b"IHDR",
        "not a PNG"
    );
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&png[16..20]), be(&png[20..24]))
}

/// An agent with the dashboard on (`edge_toml`: more `[edge]` keys).
fn agent_with(edge_toml: &str) -> TestAgent {
    TestAgent::start(Options {
        edge_toml: format!("dashboard = true\n{edge_toml}"),
        ..Options::default()
    })
}

/// `devhost ensure NAME CHANNEL ALIASES…` (the channel URL given).
fn ensure(agent: &TestAgent, name: &str, url: &str, aliases: &[&str]) {
    let mut args = vec!["ensure", name, url];
    args.extend_from_slice(aliases);
    assert_ok(&agent.devhost(&args), &format!("ensure {name}"));
}

/// `2026-04-05 12:00 UTC`, as the page writes a moment given in RFC 3339.
fn moment(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .with_timezone(&chrono::Utc)
        .format("%Y-%m-%d %H:%M UTC")
        .to_string()
}

#[test]
fn the_dashboard_shows_every_enabled_container_in_a_browser() {
    let test = "the_dashboard_shows_every_enabled_container_in_a_browser";
    let Some(()) = prerequisites_and(test, BROWSER) else {
        return;
    };
    let agent = agent_with("");
    let name = agent.name("dash");
    let channel_url = format!("{}{MARKUP}", channel().url);
    ensure(&agent, &name, &channel_url, &["www", "api"]);
    let ca = agent.local_ca();
    // The apex's certificate chains to the local CA (curl checks the chain
    // the browser is asked to trust).
    let a = agent.https(&ca, APEX, "/", &["-D", "-"]);
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(
        a.body
            .to_ascii_lowercase()
            .contains("cache-control: no-store"),
        "{}",
        a.body
    );

    let stranger = Browser::trusting(None, agent.https_port).dom();
    assert!(
        !stranger.contains("enabled container"),
        "a browser that does not trust the local CA gets no page:\n{stranger}"
    );
    let browser = Browser::trusting(Some(&ca), agent.https_port);
    let dom = browser.dom();
    let status = agent.status(&name);
    let port = agent.https_port;
    let cert = status.certificate.expect("a certificate");
    let until = moment(cert.valid_until.as_deref().expect("valid until"));
    for want in [
        format!("<title>devhost · {APEX}</title>"),
        "1 enabled container, 1 running".to_string(),
        format!(r#"<a href="https://{name}.{APEX}:{port}/">{name}</a>"#),
        r#"<span class="badge good">running</span>"#.to_string(),
        "<dt>Owner</dt><dd>root</dd>".to_string(),
        format!(r#"<a href="https://www.{name}.{APEX}:{port}/">www.{name}.{APEX}</a>"#),
        format!(r#"<a href="https://api.{name}.{APEX}:{port}/">api.{name}.{APEX}</a>"#),
        r#"<span class="good">valid</span>"#.to_string(),
        format!("until {until} ("),
        format!("<dt>Last deploy</dt><dd>{} (", moment(&status.last_deploy)),
        "<dt>Disabled by cleanup</dt>".to_string(),
        // The channel, its markup as text.
        format!(
            "<code>{}#\"&gt;&lt;script&gt;document.title='owned'&lt;/script&gt;&lt;img/src=x/onerror=document.title='owned'&gt;</code>",
            channel().url
        ),
    ] {
        assert!(dom.contains(&want), "{want:?} not in the page:\n{dom}");
    }
    assert!(
        !dom.contains("<script") && !dom.contains("<img") && !dom.contains("owned</title>"),
        "markup from a record became elements:\n{dom}"
    );

    let shots = tempfile::tempdir().unwrap();
    for (w, h) in [(412, 915), (1280, 800)] {
        let path = shots.path().join(format!("{w}x{h}.png"));
        browser.screenshot(w, h, &path);
        let png = std::fs::read(&path).unwrap();
        assert_eq!(png_size(&png), (w, h), "{}", path.display());
        // A blank page of this size compresses to a few KiB; text does not.
        assert!(png.len() > 10_000, "{w}x{h}: only {} bytes", png.len());
    }
}

#[test]
fn a_source_outside_dashboard_allow_is_refused_whatever_its_headers_say() {
    let test = "a_source_outside_dashboard_allow_is_refused_whatever_its_headers_say";
    let Some(()) = prerequisites_and(test, &["curl"]) else {
        return;
    };
    let agent = agent_with("dashboard_allow = [\"127.0.0.1/32\"]\n");
    let ca = agent.local_ca();
    let from = |source: &str, extra: &[&str]| {
        let mut args = vec!["--interface", source];
        args.extend_from_slice(extra);
        agent.https(&ca, APEX, "/", &args)
    };
    let inside = from("127.0.0.1", &[]);
    assert_eq!(inside.status, 200, "{}", inside.body);
    assert!(
        inside.body.contains("No enabled containers."),
        "{}",
        inside.body
    );
    for extra in [
        &[][..],
        &[
            "-H",
            "X-Forwarded-For: 127.0.0.1",
            "-H",
            "X-Real-IP: 127.0.0.1",
        ][..],
    ] {
        let outside = from("127.0.0.2", extra);
        assert_eq!(outside.status, 403, "{extra:?}: {}", outside.body);
        assert!(
            outside
                .body
                .contains("The dashboard is not open to 127.0.0.2."),
            "{}",
            outside.body
        );
        assert!(
            !outside.body.contains("enabled container"),
            "{}",
            outside.body
        );
    }
}

#[test]
fn port_80_sends_the_apex_to_the_dashboard() {
    let Some(()) = prerequisites_and("port_80_sends_the_apex_to_the_dashboard", &["curl"]) else {
        return;
    };
    let agent = agent_with("");
    assert_eq!(
        agent.http(APEX, "/"),
        (301, format!("https://{APEX}:{}/", agent.https_port))
    );
}

#[test]
fn with_the_dashboard_off_the_apex_is_unchanged() {
    let Some(()) = prerequisites_and("with_the_dashboard_off_the_apex_is_unchanged", &["curl"])
    else {
        return;
    };
    let agent = TestAgent::start(Options::default());
    let name = agent.name("off");
    let url = &channel().url;
    let out = agent.devhost(&["ensure", &name, url, "www", "--upstream", "http:80"]);
    assert_ok(&out, "ensure");
    let ca = agent.local_ca();
    let a = agent.https(&ca, &format!("www.{name}.{APEX}"), "/", &[]);
    assert_eq!(a.status, 200, "the container is served: {}", a.body);
    let e = agent.https_fails(&ca, APEX, "/", &[]);
    assert_eq!(e.code, CurlFailure::TLS_HANDSHAKE, "no certificate: {e}");
    let (code, location, page) = agent.http_page(APEX, "/");
    assert_eq!((code, location.as_str()), (404, ""), "{page}");
    let live: Vec<String> = std::fs::read_dir(agent.dir.join("state/certs/live"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(live, vec![name], "the container's certificate only");
}

#[test]
fn the_apex_gets_its_certificate_from_acme() {
    let test = "the_apex_gets_its_certificate_from_acme";
    let Some(()) = prerequisites_and(test, &["pebble", "curl"]) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let api = ApiCa::make(tmp.path());
    let agent = TestAgent::start(Options {
        extra_toml: "[dns]\nenable = true\nlisten = [\"127.0.0.1:@DNS_PORT@\"]\naddresses = [\"127.0.0.1\"]\n".to_string()
            + &certs_toml("dns-01", &api, ""),
        edge_toml: "dashboard = true\n".into(),
        ..Options::default()
    });
    let pebble = Pebble::start(&agent, &api, None);
    let meta = agent.dir.join("state/certs/live/@apex/meta.json");
    let issued: serde_json::Value = wait_until(
        Duration::from_secs(60),
        "the apex's certificate from Pebble",
        || {
            std::fs::read(&meta)
                .map_err(|e| format!("{e}\n--- pebble ---\n{}", pebble.log()))
                .map(|b| serde_json::from_slice(&b).unwrap())
        },
    );
    assert_eq!(issued["names"], serde_json::json!([APEX]), "the apex alone");
    let root: PathBuf = pebble.issuer_root();
    let a = agent.https(&root, APEX, "/", &[]);
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains("No enabled containers."), "{}", a.body);
}

#[test]
fn a_bad_network_in_dashboard_allow_stops_the_agent_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        "[edge]\ndashboard = true\ndashboard_allow = [\"10.0.0.0/33\"]\n",
    )
    .unwrap();
    let out = Command::new(DEVHOST)
        .args(["agent", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains(
            "config key edge.dashboard_allow: \"10.0.0.0/33\" is not a network (10.0.0.0/8, fd00::/8) or an address"
        ),
        "{}",
        text(&out)
    );
}

/// Writes the screenshots in docs/ from a real run: three containers, one
/// stopped, one pinned, one of a user without a passwd entry.
#[test]
#[ignore = "writes docs/dashboard.png and docs/dashboard-phone.png; run by hand"]
fn docs_screenshots() {
    let Some(()) = prerequisites_and("docs_screenshots", BROWSER) else {
        return;
    };
    let agent = agent_with("");
    let url = &channel().url;
    let (web, shop, api) = (agent.name("web"), agent.name("shop"), agent.name("api"));
    ensure(&agent, &web, url, &["www", "admin"]);
    ensure(&agent, &shop, url, &["www"]);
    assert_ok(&agent.devhost(&["stop", &shop]), "stop");
    assert_ok(&agent.devhost(&["pin", &shop]), "pin");
    assert_ok(
        &agent.devhost_as(ALICE, users_gid(), &["ensure", &api, url, "v1"]),
        "ensure as alice",
    );
    let browser = Browser::trusting(Some(&agent.local_ca()), agent.https_port);
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
    browser.screenshot(1280, 720, &docs.join("dashboard.png"));
    browser.screenshot(412, 915, &docs.join("dashboard-phone.png"));
}
