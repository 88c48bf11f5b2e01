//! The edge against real clients: curl over HTTPS (HTTP/1.1 and HTTP/2)
//! with the local CA's root, through the agent's proxy on loopback, to a
//! container's aliases (the fixture's busybox httpd, and a test server in
//! the container's namespace that shows what it received, speaks TLS and
//! echoes websockets); the redirect from HTTP; unknown names, a name for
//! another container, a stopped and a destroyed container; and clients that
//! stall or send too much, cut off while others are served.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn root_ca(agent: &TestAgent) -> String {
    agent
        .dir
        .join("state/certs/local-ca/root.pem")
        .display()
        .to_string()
}

/// curl to `https://HOST:PORT/PATH` on the agent, trusting its local CA.
fn curl_https(agent: &TestAgent, host: &str, path: &str, extra: &[&str]) -> Output {
    curl_https_on(
        agent.https_port,
        std::path::Path::new(&root_ca(agent)),
        host,
        path,
        extra,
    )
}

fn https(agent: &TestAgent, host: &str, path: &str, extra: &[&str]) -> Answer {
    answer(&curl_https(agent, host, path, extra), host, path)
}

#[test]
fn edge_serves_aliases_over_https() {
    let Some(()) = prerequisites("edge_serves_aliases_over_https") else {
        return;
    };
    let agent = TestAgent::start(Options::default());
    let name = agent.name("edge");
    let out = agent.devhost(&[
        "ensure",
        &name,
        &channel().url,
        "web",
        "secure",
        "--upstream",
        "http:8080",
        "--upstream",
        "web=http:80",
        "--upstream",
        "secure=https:8443",
    ]);
    assert_ok(&out, "ensure with upstreams");
    let s = agent.status_json(&name).unwrap();
    assert_eq!(
        s["upstreams"],
        serde_json::json!({"": "http:8080", "web": "http:80", "secure": "https:8443"})
    );
    for (bad, says) in [
        (
            "nope=http:80",
            "upstream for \"nope\": not one of the container's aliases",
        ),
        ("web=gopher:70", "scheme \"gopher\" is not http or https"),
    ] {
        let out = agent.devhost(&[
            "ensure",
            &name,
            &channel().url,
            "web",
            "secure",
            "--upstream",
            bad,
        ]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains(says), "{}", text(&out));
    }
    assert_eq!(
        agent.status_json(&name).unwrap()["upstreams"],
        s["upstreams"],
        "bad input changes nothing"
    );
    upstream::start_in_netns(&format!("{}{name}", agent.netns_prefix));
    let web = format!("web.{name}.dev.test");
    let base = format!("{name}.dev.test");

    // An alias to the container's own httpd, over HTTP/1.1 and HTTP/2.
    let a = https(&agent, &web, "/", &["--http1.1"]);
    assert_eq!((a.status, a.version.as_str()), (200, "1.1"));
    assert_eq!(a.body.trim(), format!("hello from fc {name}"));
    let a = https(&agent, &web, "/", &["--http2"]);
    assert_eq!((a.status, a.version.as_str()), (200, "2"), "{}", a.body);
    assert_eq!(a.body.trim(), format!("hello from fc {name}"));

    // What the container receives: Host kept, forwarding headers set,
    // hop-by-hop headers gone.
    let a = https(
        &agent,
        &base,
        "/headers?x=1&y=2",
        &[
            "--http1.1",
            "-H",
            "X-Forwarded-For: 192.0.2.1",
            "-H",
            "Connection: keep-alive, X-Hop",
            "-H",
            "X-Hop: secret",
        ],
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let got: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    let h = &got["headers"];
    assert_eq!(got["path"], "/headers?x=1&y=2");
    assert_eq!(h["host"], format!("{base}:{}", agent.https_port));
    assert_eq!(h["x-forwarded-for"], "192.0.2.1, 127.0.0.1");
    assert_eq!(h["x-real-ip"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(
        h["x-forwarded-host"],
        format!("{base}:{}", agent.https_port)
    );
    assert_eq!(h["x-forwarded-server"], base.as_str());
    assert!(h.get("x-hop").is_none(), "hop-by-hop header removed: {h}");
    // Over HTTP/2 the container gets HTTP/1.1 with a Host header.
    let a = https(&agent, &base, "/headers", &["--http2"]);
    let got: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(got["version"], "HTTP/1.1");
    assert_eq!(
        got["headers"]["host"],
        format!("{base}:{}", agent.https_port)
    );

    // An alias whose upstream is TLS with a self-signed certificate.
    let a = https(&agent, &format!("secure.{name}.dev.test"), "/headers", &[]);
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(
        a.body.contains("\"x-forwarded-proto\":\"https\""),
        "{}",
        a.body
    );

    // Port 80 redirects, path and query kept.
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-o", "/dev/null"])
        .args(["-w", "%{http_code} %{redirect_url}"])
        .arg("--resolve")
        .arg(format!("{web}:{}:127.0.0.1", agent.http_port))
        .arg(format!("http://{web}:{}/a/b?c=1", agent.http_port))
        .output()
        .unwrap();
    assert_eq!(
        text(&out),
        format!("301 https://{web}:{}/a/b?c=1", agent.https_port)
    );

    // A websocket through the proxy.
    let echoed = upstream::websocket_echo(
        std::path::Path::new(&root_ca(&agent)),
        agent.https_port,
        &base,
        "ping over the proxy",
    );
    assert_eq!(echoed, "ping over the proxy");

    // Names nobody serves.
    let a = https(&agent, &format!("nope.{name}.dev.test"), "/", &[]);
    assert_eq!(a.status, 404);
    assert!(a.body.contains("No container answers to"), "{}", a.body);
    let out = curl_https(&agent, "ghost.dev.test", "/", &[]);
    assert!(
        !out.status.success(),
        "no certificate for a container that does not exist: {}",
        text(&out)
    );
    let a = https(&agent, &web, "/", &["-H", "Host: ghost.dev.test"]);
    assert_eq!(a.status, 421, "SNI and Host name other containers");

    // Stopped: a clear answer; started again: served again, same certificate.
    assert_ok(&agent.devhost(&["stop", &name]), "stop");
    let a = https(&agent, &web, "/", &[]);
    assert_eq!(a.status, 503);
    assert!(a.body.contains("is not running"), "{}", a.body);
    assert_ok(&agent.devhost(&["start", &name]), "start");
    assert_eq!(https(&agent, &web, "/", &[]).status, 200);

    // Destroyed: route and certificate gone.
    let live = agent.dir.join("state/certs/live").join(&name);
    assert!(live.join("key.pem").exists());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(live.join("key.pem"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600,
        "private keys 0600"
    );
    assert_ok(&agent.devhost(&["destroy", &name]), "destroy");
    assert!(!live.exists(), "certificate removed with the container");
    let out = curl_https(&agent, &web, "/", &[]);
    assert!(!out.status.success(), "{}", text(&out));
}

/// Read until EOF or error; how long it took.
fn until_closed(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return None
            }
            Err(_) => return Some(start.elapsed()),
        }
    }
}

#[test]
fn edge_cuts_off_bad_clients() {
    let Some(()) = prerequisites("edge_cuts_off_bad_clients") else {
        return;
    };
    let agent = TestAgent::start(Options {
        extra_toml: String::new(),
        edge_toml: "header_read_timeout_secs = 1\nhandshake_timeout_secs = 1\nidle_timeout_secs = 3\nmax_connections = 6\nmax_header_bytes = 8192\n".into(),
        ..Options::default()
    });
    let name = agent.name("lim");
    assert_ok(
        &agent.devhost(&[
            "ensure",
            &name,
            &channel().url,
            "web",
            "--upstream",
            "http:80",
        ]),
        "ensure",
    );
    let web = format!("web.{name}.dev.test");
    let limit = Duration::from_secs(8);

    // A client that never finishes its TLS handshake.
    let mut silent = TcpStream::connect(("127.0.0.1", agent.https_port)).unwrap();
    // A client that sends half a request header on port 80, then stalls.
    let mut slow = TcpStream::connect(("127.0.0.1", agent.http_port)).unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    // Others are served meanwhile.
    assert_eq!(https(&agent, &web, "/", &[]).status, 200);
    let t = until_closed(&mut silent, limit).expect("handshake timeout closes it");
    assert!(t < Duration::from_secs(4), "{t:?}");
    let t = until_closed(&mut slow, limit).expect("header timeout closes it");
    assert!(t < Duration::from_secs(4), "{t:?}");

    // Too large a header: refused, the next client is fine.
    let big = format!("X-Big: {}", "a".repeat(20_000));
    let out = curl_https(&agent, &web, "/", &["--http1.1", "-H", &big]);
    let t = text(&out);
    assert!(
        t.contains("431") || !out.status.success(),
        "oversized header refused: {t}"
    );
    assert_eq!(https(&agent, &web, "/", &[]).status, 200);

    // Connections beyond the limit are closed at once; slots come back.
    let mut held: Vec<TcpStream> = (0..6)
        .map(|_| TcpStream::connect(("127.0.0.1", agent.http_port)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut extra = TcpStream::connect(("127.0.0.1", agent.http_port)).unwrap();
    let t = until_closed(&mut extra, limit).expect("over the limit: closed");
    assert!(t < Duration::from_secs(1), "{t:?}");
    held.clear();
    // Slots come back as the proxy sees those connections close.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = curl_https(&agent, &web, "/", &[]);
        if out.status.success() {
            assert!(
                text(&out).ends_with("200 1.1") || text(&out).ends_with("200 2"),
                "{}",
                text(&out)
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "slots not released: {}",
            text(&out)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn dig(agent: &TestAgent, args: &[&str]) -> String {
    dig_at(agent.dns_port, args)
}

#[test]
fn edge_answers_dns_for_the_zone() {
    let Some(()) = prerequisites_and("edge_answers_dns_for_the_zone", &["dig"]) else {
        return;
    };
    let agent = TestAgent::start(Options {
        extra_toml: "[dns]\nenable = true\nlisten = [\"127.0.0.1:@DNS_PORT@\"]\naddresses = [\"192.0.2.10\", \"2001:db8::10\"]\n[certs]\nmode = \"local-ca\"\n".into(),
        ..Options::default()
    });
    let short = |args: &[&str]| {
        let mut a = vec!["+short"];
        a.extend_from_slice(args);
        dig(&agent, &a).trim().to_string()
    };
    let name = agent.name("dns");
    let (base, www) = (format!("{name}.dev.test"), format!("www.{name}.dev.test"));
    let status = |q: &str| {
        let full = dig(&agent, &[q, "A"]);
        full.split("status: ")
            .nth(1)
            .and_then(|r| r.split(',').next())
            .unwrap_or(&full)
            .to_string()
    };
    assert_eq!(status(&www), "NXDOMAIN", "no container, no name");
    assert_ok(
        &agent.devhost(&["ensure", &name, &channel().url, "www"]),
        "ensure",
    );
    assert_eq!(short(&[&www, "A"]), "192.0.2.10");
    assert_eq!(short(&[&www.to_uppercase(), "AAAA"]), "2001:db8::10");
    assert_eq!(short(&[&base, "A"]), "192.0.2.10");
    assert_eq!(short(&["dev.test", "A"]), "192.0.2.10");
    let soa = short(&["dev.test", "SOA"]);
    assert!(
        soa.starts_with("ns.dev.test. hostmaster.dev.test. ")
            && soa.ends_with(" 3600 600 604800 60"),
        "{soa}"
    );
    assert_eq!(short(&["dev.test", "NS"]), "ns.dev.test.");
    assert_eq!(short(&["ns.dev.test", "A"]), "192.0.2.10", "glue");
    assert_eq!(
        short(&["+tcp", &format!("api.{base}"), "A"]),
        "192.0.2.10",
        "over TCP too"
    );
    let full = dig(&agent, &[&format!("_acme-challenge.{base}"), "TXT"]);
    assert!(full.contains("status: NOERROR"), "{full}");
    assert!(full.contains("flags: qr aa"), "authoritative: {full}");
    assert!(full.contains("ANSWER: 0"), "no challenge pending: {full}");
    let other = dig(&agent, &["example.org", "A"]);
    assert!(other.contains("status: REFUSED"), "{other}");

    // Destroyed: its names are gone, with a new serial for secondaries.
    assert_ok(&agent.devhost(&["destroy", &name]), "destroy");
    assert_eq!(status(&www), "NXDOMAIN");
    let serial = |s: &str| s.split(' ').nth(2).unwrap().parse::<u32>().unwrap();
    assert!(serial(&short(&["dev.test", "SOA"])) > serial(&soa));
}
