//! The edge against real clients: curl over HTTPS (HTTP/1.1 and HTTP/2)
//! with the local CA's root, through the agent's proxy on loopback, to a
//! container's aliases (the fixture's busybox httpd, and a test server in
//! the container's namespace that shows what it received, speaks TLS and
//! echoes websockets); the redirect from HTTP (for routed names only);
//! unknown names, a name for another container, a stopped and a destroyed
//! container; clients that stall or send too much, cut off while others
//! are served; and the agent's DNS zone. Each test has an agent of its own (containers take
//! about a second).

mod common;

use common::*;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// An agent serving container `name` with aliases `web` (the container's
/// httpd on port 80) and `secure` (the test server's TLS on 8443); the
/// container itself is the test server's plain HTTP on 8080.
struct Served {
    agent: TestAgent,
    name: String,
    /// The local CA's root: the only one curl trusts.
    ca: PathBuf,
    /// `NAME.dev.test`
    base: String,
    /// `web.NAME.dev.test`
    web: String,
}

const UPSTREAMS: [&str; 3] = ["http:8080", "web=http:80", "secure=https:8443"];

/// [`Served`], once `test`'s prerequisites are there.
fn served(test: &str) -> Option<Served> {
    prerequisites(test)?;
    let agent = TestAgent::start(Options::default());
    let name = agent.name("edge");
    let mut args = vec!["ensure", &name, &channel().url, "web", "secure"];
    for u in UPSTREAMS {
        args.extend_from_slice(&["--upstream", u]);
    }
    assert_ok(&agent.devhost(&args), "ensure with upstreams");
    upstream::start_in_netns(&format!("{}{name}", agent.netns_prefix));
    Some(Served {
        ca: agent.local_ca(),
        base: format!("{name}.dev.test"),
        web: format!("web.{name}.dev.test"),
        agent,
        name,
    })
}

impl Served {
    #[track_caller]
    fn https(&self, host: &str, path: &str, extra: &[&str]) -> Answer {
        self.agent.https(&self.ca, host, path, extra)
    }

    /// What the test server got for `https://NAME.dev.test/PATH`.
    #[track_caller]
    fn received(&self, path: &str, extra: &[&str]) -> serde_json::Value {
        let a = self.https(&self.base, path, extra);
        assert_eq!(a.status, 200, "{}", a.body);
        serde_json::from_str(&a.body).unwrap()
    }

    fn host_header(&self) -> String {
        format!("{}:{}", self.base, self.agent.https_port)
    }
}

#[test]
fn upstreams_are_recorded_per_alias() {
    let Some(s) = served("upstreams_are_recorded_per_alias") else {
        return;
    };
    let want: BTreeMap<String, String> = [
        ("", "http:8080"),
        ("web", "http:80"),
        ("secure", "https:8443"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(s.agent.status(&s.name).upstreams, want);
}

#[test]
fn bad_upstreams_are_refused_and_change_nothing() {
    let Some(s) = served("bad_upstreams_are_refused_and_change_nothing") else {
        return;
    };
    let before = s.agent.status(&s.name).upstreams;
    for (bad, says) in [
        (
            "nope=http:80",
            "upstream for \"nope\": not one of the container's aliases",
        ),
        ("web=gopher:70", "scheme \"gopher\" is not http or https"),
    ] {
        let out = s.agent.devhost(&[
            "ensure",
            &s.name,
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
        s.agent.status(&s.name).upstreams,
        before,
        "bad input changes nothing"
    );
}

#[test]
fn an_alias_is_served_over_http1_and_http2() {
    let Some(s) = served("an_alias_is_served_over_http1_and_http2") else {
        return;
    };
    let a = s.https(&s.web, "/", &["--http1.1"]);
    assert_eq!((a.status, a.version.as_str()), (200, "1.1"));
    assert_eq!(a.body.trim(), format!("hello from fc {}", s.name));
    let a = s.https(&s.web, "/", &["--http2"]);
    assert_eq!((a.status, a.version.as_str()), (200, "2"), "{}", a.body);
    assert_eq!(a.body.trim(), format!("hello from fc {}", s.name));
}

#[test]
fn the_container_gets_the_host_and_forwarding_headers_but_no_hop_by_hop_ones() {
    let Some(s) =
        served("the_container_gets_the_host_and_forwarding_headers_but_no_hop_by_hop_ones")
    else {
        return;
    };
    let got = s.received(
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
    let h = &got["headers"];
    assert_eq!(got["path"], "/headers?x=1&y=2");
    assert_eq!(h["host"], s.host_header());
    assert_eq!(h["x-forwarded-for"], "192.0.2.1, 127.0.0.1");
    assert_eq!(h["x-real-ip"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(h["x-forwarded-host"], s.host_header());
    assert_eq!(h["x-forwarded-server"], s.base.as_str());
    assert!(h.get("x-hop").is_none(), "hop-by-hop header removed: {h}");
}

#[test]
fn over_http2_the_container_gets_http1_with_a_host_header() {
    let Some(s) = served("over_http2_the_container_gets_http1_with_a_host_header") else {
        return;
    };
    let got = s.received("/headers", &["--http2"]);
    assert_eq!(got["version"], "HTTP/1.1");
    assert_eq!(got["headers"]["host"], s.host_header());
}

#[test]
fn an_alias_with_a_tls_upstream_is_served() {
    let Some(s) = served("an_alias_with_a_tls_upstream_is_served") else {
        return;
    };
    // The test server's certificate is self-signed.
    let a = s.https(&format!("secure.{}", s.base), "/headers", &[]);
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(
        a.body.contains("\"x-forwarded-proto\":\"https\""),
        "{}",
        a.body
    );
}

#[test]
fn port_80_redirects_to_https_keeping_path_and_query() {
    let Some(s) = served("port_80_redirects_to_https_keeping_path_and_query") else {
        return;
    };
    assert_eq!(
        s.agent.http(&s.web, "/a/b?c=1"),
        (
            301,
            format!("https://{}:{}/a/b?c=1", s.web, s.agent.https_port)
        )
    );
}

#[test]
fn port_80_redirects_no_name_outside_the_public_domain() {
    let Some(s) = served("port_80_redirects_no_name_outside_the_public_domain") else {
        return;
    };
    let (status, location, page) = s.agent.http_page("evil.example.com", "/login?next=1");
    assert_eq!(
        (status, location.as_str()),
        (421, ""),
        "no redirect to another site: {page}"
    );
    assert!(
        page.contains("evil.example.com is not served here."),
        "the proxy's page: {page}"
    );
}

#[test]
fn port_80_answers_a_name_no_container_answers_to_with_404() {
    let Some(s) = served("port_80_answers_a_name_no_container_answers_to_with_404") else {
        return;
    };
    let nope = format!("nope.{}", s.base);
    let (status, location, page) = s.agent.http_page(&nope, "/");
    assert_eq!((status, location.as_str()), (404, ""), "{page}");
    assert!(
        page.contains(&format!("No container answers to {nope}.")),
        "the proxy's page: {page}"
    );
}

#[test]
fn a_websocket_passes_through_the_proxy() {
    let Some(s) = served("a_websocket_passes_through_the_proxy") else {
        return;
    };
    let echoed =
        upstream::websocket_echo(&s.ca, s.agent.https_port, &s.base, "ping over the proxy");
    assert_eq!(echoed, "ping over the proxy");
}

#[test]
fn an_alias_nobody_serves_gets_404() {
    let Some(s) = served("an_alias_nobody_serves_gets_404") else {
        return;
    };
    let a = s.https(&format!("nope.{}", s.base), "/", &[]);
    assert_eq!(a.status, 404);
    assert!(a.body.contains("No container answers to"), "{}", a.body);
}

#[test]
fn no_certificate_is_offered_for_a_container_that_does_not_exist() {
    let Some(s) = served("no_certificate_is_offered_for_a_container_that_does_not_exist") else {
        return;
    };
    let e = s.agent.https_fails(&s.ca, "ghost.dev.test", "/", &[]);
    assert_eq!(e.code, CurlFailure::TLS_HANDSHAKE, "handshake refused: {e}");
}

#[test]
fn a_host_header_naming_another_container_gets_421() {
    let Some(s) = served("a_host_header_naming_another_container_gets_421") else {
        return;
    };
    let a = s.https(&s.web, "/", &["-H", "Host: ghost.dev.test"]);
    assert_eq!(a.status, 421, "SNI and Host name other containers");
}

#[test]
fn a_stopped_container_gets_503_until_it_is_started() {
    let Some(s) = served("a_stopped_container_gets_503_until_it_is_started") else {
        return;
    };
    assert_ok(&s.agent.devhost(&["stop", &s.name]), "stop");
    let a = s.https(&s.web, "/", &[]);
    assert_eq!(a.status, 503);
    assert!(a.body.contains("is not running"), "{}", a.body);
    assert_ok(&s.agent.devhost(&["start", &s.name]), "start");
    assert_eq!(s.https(&s.web, "/", &[]).status, 200);
}

#[test]
fn certificate_keys_are_0600() {
    let Some(s) = served("certificate_keys_are_0600") else {
        return;
    };
    use std::os::unix::fs::PermissionsExt;
    let key = s
        .agent
        .dir
        .join("state/certs/live")
        .join(&s.name)
        .join("key.pem");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600,
        "private keys 0600"
    );
}

#[test]
fn a_destroyed_containers_certificate_and_route_are_gone() {
    let Some(s) = served("a_destroyed_containers_certificate_and_route_are_gone") else {
        return;
    };
    let live = s.agent.dir.join("state/certs/live").join(&s.name);
    assert!(live.join("key.pem").exists());
    assert_ok(&s.agent.devhost(&["destroy", &s.name]), "destroy");
    assert!(!live.exists(), "certificate removed with the container");
    let e = s.agent.https_fails(&s.ca, &s.web, "/", &[]);
    assert_eq!(e.code, CurlFailure::TLS_HANDSHAKE, "handshake refused: {e}");
}

/// An agent with limits for clients serving `web.NAME.dev.test`.
struct Limited {
    agent: TestAgent,
    ca: PathBuf,
    web: String,
}

/// [`Limited`] with tight limits (header and handshake 1 s, idle 3 s, 6
/// connections, 8 KiB of header).
fn limited(test: &str) -> Option<Limited> {
    limited_with(
        test,
        "header_read_timeout_secs = 1\nhandshake_timeout_secs = 1\nidle_timeout_secs = 3\nmax_connections = 6\nmax_header_bytes = 8192\n",
    )
}

/// [`Limited`] whose clients may hold 4 connections in all and 3 from one
/// source (timeouts as by default: none frees a slot during a test).
fn per_source(test: &str) -> Option<Limited> {
    limited_with(
        test,
        "max_connections = 4\nmax_connections_per_source = 3\n",
    )
}

fn limited_with(test: &str, edge_toml: &str) -> Option<Limited> {
    prerequisites(test)?;
    let agent = TestAgent::start(Options {
        edge_toml: edge_toml.into(),
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
    Some(Limited {
        ca: agent.local_ca(),
        web: format!("web.{name}.dev.test"),
        agent,
    })
}

impl Limited {
    /// `https://web.NAME.dev.test/`: its status.
    fn get(&self) -> u16 {
        self.agent.https(&self.ca, &self.web, "/", &[]).status
    }

    /// A connection to port 80 that the proxy has taken: it answered a
    /// request on it (and keeps it open).
    fn held_connection(&self) -> TcpStream {
        self.try_to_hold_a_connection()
            .expect("an answer on a held connection")
    }

    /// [`Limited::held_connection`], or `None` when the proxy closed the
    /// connection instead of answering.
    fn try_to_hold_a_connection(&self) -> Option<TcpStream> {
        let mut s = TcpStream::connect(("127.0.0.1", self.agent.http_port)).unwrap();
        s.write_all(format!("GET / HTTP/1.1\r\nHost: {}\r\n\r\n", self.web).as_bytes())
            .ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 12];
        s.read_exact(&mut buf).ok()?;
        assert_eq!(&buf, b"HTTP/1.1 301", "{}", String::from_utf8_lossy(&buf));
        Some(s)
    }
}

/// How long the peer took to close `s`, reading whatever it sends; `None`
/// if it did not within `limit`.
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
fn a_client_that_never_finishes_its_tls_handshake_is_cut_off() {
    let Some(l) = limited("a_client_that_never_finishes_its_tls_handshake_is_cut_off") else {
        return;
    };
    let mut silent = TcpStream::connect(("127.0.0.1", l.agent.https_port)).unwrap();
    assert_eq!(l.get(), 200, "others are served meanwhile");
    let t = until_closed(&mut silent, Duration::from_secs(8)).expect("handshake timeout closes it");
    assert!(t < Duration::from_secs(4), "{t:?}");
}

#[test]
fn a_client_that_stalls_in_its_request_header_is_cut_off() {
    let Some(l) = limited("a_client_that_stalls_in_its_request_header_is_cut_off") else {
        return;
    };
    // Half a request header on port 80, then nothing.
    let mut slow = TcpStream::connect(("127.0.0.1", l.agent.http_port)).unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    assert_eq!(l.get(), 200, "others are served meanwhile");
    let t = until_closed(&mut slow, Duration::from_secs(8)).expect("header timeout closes it");
    assert!(t < Duration::from_secs(4), "{t:?}");
}

#[test]
fn an_oversized_request_header_is_refused_with_431() {
    let Some(l) = limited("an_oversized_request_header_is_refused_with_431") else {
        return;
    };
    let big = format!("X-Big: {}", "a".repeat(20_000));
    let a = l
        .agent
        .https(&l.ca, &l.web, "/", &["--http1.1", "-H", &big]);
    assert_eq!(a.status, 431, "oversized header refused: {}", a.body);
    assert_eq!(l.get(), 200, "the next client is served");
}

#[test]
fn connections_beyond_the_limit_are_closed_at_once() {
    let Some(l) = limited("connections_beyond_the_limit_are_closed_at_once") else {
        return;
    };
    let _held: Vec<TcpStream> = (0..6).map(|_| l.held_connection()).collect();
    let mut extra = TcpStream::connect(("127.0.0.1", l.agent.http_port)).unwrap();
    let t = until_closed(&mut extra, Duration::from_secs(8)).expect("over the limit: closed");
    assert!(t < Duration::from_secs(1), "{t:?}");
}

#[test]
fn connections_from_one_source_beyond_its_bound_are_closed_at_once() {
    let Some(l) = per_source("connections_from_one_source_beyond_its_bound_are_closed_at_once")
    else {
        return;
    };
    let _held: Vec<TcpStream> = (0..3).map(|_| l.held_connection()).collect();
    let mut extra = TcpStream::connect(("127.0.0.1", l.agent.http_port)).unwrap();
    let t =
        until_closed(&mut extra, Duration::from_secs(8)).expect("over the source's bound: closed");
    assert!(t < Duration::from_secs(1), "{t:?}");
}

#[test]
fn another_source_is_served_while_one_holds_all_it_can() {
    let Some(l) = per_source("another_source_is_served_while_one_holds_all_it_can") else {
        return;
    };
    // 127.0.0.1 tries for every slot there is.
    let held: Vec<TcpStream> = (0..4)
        .filter_map(|_| l.try_to_hold_a_connection())
        .collect();
    let a = l
        .agent
        .https(&l.ca, &l.web, "/", &["--interface", "127.0.0.2"]);
    assert_eq!(a.status, 200, "127.0.0.2 is served: {}", a.body);
    assert_eq!(held.len(), 3, "127.0.0.1 holds its bound, no more");
}

#[test]
fn closed_connections_give_their_slots_back() {
    let Some(l) = limited("closed_connections_give_their_slots_back") else {
        return;
    };
    let held: Vec<TcpStream> = (0..6).map(|_| l.held_connection()).collect();
    drop(held);
    // The proxy sees those connections close a moment later.
    wait_until(Duration::from_secs(5), "a slot is free again", || {
        let out = l.agent.curl_https(&l.ca, &l.web, "/", &[]);
        let t = text(&out);
        if out.status.success() && (t.ends_with("200 1.1") || t.ends_with("200 2")) {
            Ok(())
        } else {
            Err(t)
        }
    });
}

/// An agent with its DNS zone on, saying the edge is at 192.0.2.10 and
/// 2001:db8::10.
fn zone(test: &str) -> Option<TestAgent> {
    prerequisites_and(test, &["dig"])?;
    Some(TestAgent::start(Options {
        extra_toml: "[dns]\nenable = true\nlisten = [\"127.0.0.1:@DNS_PORT@\"]\naddresses = [\"192.0.2.10\", \"2001:db8::10\"]\n[certs]\nmode = \"local-ca\"\n".into(),
        ..Options::default()
    }))
}

/// [`zone`] with container `dns` (alias `www`): the agent and the name.
fn zone_with_container(test: &str) -> Option<(TestAgent, String)> {
    let agent = zone(test)?;
    let name = agent.name("dns");
    assert_ok(
        &agent.devhost(&["ensure", &name, &channel().url, "www"]),
        "ensure",
    );
    Some((agent, name))
}

#[test]
fn a_name_without_a_container_is_nxdomain() {
    let Some(agent) = zone("a_name_without_a_container_is_nxdomain") else {
        return;
    };
    let www = format!("www.{}.dev.test", agent.name("dns"));
    assert_eq!(agent.dig_status(&www), "NXDOMAIN", "no container, no name");
}

#[test]
fn a_containers_names_resolve_to_the_edge() {
    let Some((agent, name)) = zone_with_container("a_containers_names_resolve_to_the_edge") else {
        return;
    };
    let (base, www) = (format!("{name}.dev.test"), format!("www.{name}.dev.test"));
    assert_eq!(agent.dig_short(&[&www, "A"]), "192.0.2.10");
    assert_eq!(
        agent.dig_short(&[&www.to_uppercase(), "AAAA"]),
        "2001:db8::10"
    );
    assert_eq!(agent.dig_short(&[&base, "A"]), "192.0.2.10");
    assert_eq!(agent.dig_short(&["dev.test", "A"]), "192.0.2.10");
}

#[test]
fn the_zone_has_its_soa_ns_and_glue() {
    let Some(agent) = zone("the_zone_has_its_soa_ns_and_glue") else {
        return;
    };
    let soa = agent.dig_short(&["dev.test", "SOA"]);
    assert!(
        soa.starts_with("ns.dev.test. hostmaster.dev.test. ")
            && soa.ends_with(" 3600 600 604800 60"),
        "{soa}"
    );
    assert_eq!(agent.dig_short(&["dev.test", "NS"]), "ns.dev.test.");
    assert_eq!(agent.dig_short(&["ns.dev.test", "A"]), "192.0.2.10", "glue");
}

#[test]
fn names_resolve_over_tcp_too() {
    let Some((agent, name)) = zone_with_container("names_resolve_over_tcp_too") else {
        return;
    };
    assert_eq!(
        agent.dig_short(&["+tcp", &format!("api.{name}.dev.test"), "A"]),
        "192.0.2.10",
        "over TCP too"
    );
}

#[test]
fn the_zone_answers_authoritatively_with_no_challenge_pending() {
    let Some((agent, name)) =
        zone_with_container("the_zone_answers_authoritatively_with_no_challenge_pending")
    else {
        return;
    };
    let full = agent.dig(&[&format!("_acme-challenge.{name}.dev.test"), "TXT"]);
    assert!(full.contains("status: NOERROR"), "{full}");
    assert!(full.contains("flags: qr aa"), "authoritative: {full}");
    assert!(full.contains("ANSWER: 0"), "no challenge pending: {full}");
}

#[test]
fn names_outside_the_zone_are_refused() {
    let Some(agent) = zone("names_outside_the_zone_are_refused") else {
        return;
    };
    assert_eq!(agent.dig_status("example.org"), "REFUSED");
}

#[test]
fn a_destroyed_containers_names_are_gone_with_a_new_serial() {
    let Some((agent, name)) =
        zone_with_container("a_destroyed_containers_names_are_gone_with_a_new_serial")
    else {
        return;
    };
    let www = format!("www.{name}.dev.test");
    assert_eq!(agent.dig_status(&www), "NOERROR");
    let soa = agent.dig_short(&["dev.test", "SOA"]);
    assert_ok(&agent.devhost(&["destroy", &name]), "destroy");
    assert_eq!(agent.dig_status(&www), "NXDOMAIN");
    let serial = |s: &str| s.split(' ').nth(2).unwrap().parse::<u32>().unwrap();
    assert!(
        serial(&agent.dig_short(&["dev.test", "SOA"])) > serial(&soa),
        "a new serial for secondaries"
    );
}
