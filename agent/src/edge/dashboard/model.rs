//! The dashboard's page model, built purely: the records as the edge last
//! applied them, and what else is known of each container at one moment
//! (its owner's name, its certificate, its last request) → one row per
//! enabled container with every value already in words. Tested by
//! equality; the template only lays it out (and escapes it).

use super::super::headers::https_location;
use crate::certs::{CertInfo, CertState};
use crate::cleanup::policy::human;
use crate::cleanup::{deadlines, Policy};
use crate::container::{Phase, Record};
use chrono::{DateTime, TimeDelta, Utc};
use std::collections::BTreeMap;

/// What the page needs besides the records.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// PUBLIC, without a trailing dot.
    pub domain: &'a str,
    /// The first HTTPS listener's port (links name it when it is not 443).
    pub https_port: u16,
    pub now: DateTime<Utc>,
    pub policy: &'a Policy,
    /// User names by uid, for the owners the user database knows.
    pub owners: &'a BTreeMap<u32, String>,
    /// Each container's certificate (absent: none held, none wanted).
    pub certs: &'a BTreeMap<String, CertInfo>,
    /// Each container's last proxied request since the agent started.
    pub activity: &'a BTreeMap<String, DateTime<Utc>>,
}

/// How a value reads at a glance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Good,
    /// Worth a look: not running as it should, a certificate in trouble,
    /// cleanup close.
    Warn,
    /// Neither: stopped, nothing yet.
    Quiet,
}

impl Tone {
    /// The CSS class the template gives it.
    pub fn class(self) -> &'static str {
        match self {
            Tone::Good => "good",
            Tone::Warn => "warn",
            Tone::Quiet => "quiet",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub text: String,
    pub href: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The container's name, linking to `https://NAME.PUBLIC/`.
    pub name: Link,
    /// The owner's user name, or `uid N` when the user database has none.
    pub owner: String,
    /// Its phase (`running`, `stopped`, `building`, …).
    pub state: String,
    pub state_tone: Tone,
    /// `https://ALIAS.NAME.PUBLIC/` for each alias, in the record's order.
    pub aliases: Vec<Link>,
    /// `valid`, `expired`, `ordering`, `failed`, `held-back` or `none`.
    pub certificate: String,
    /// Until when, and why it failed or is held back.
    pub certificate_detail: String,
    pub certificate_tone: Tone,
    pub last_deploy: String,
    /// When cleanup disables it.
    pub cleanup: String,
    pub cleanup_tone: Tone,
    pub channel: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub domain: String,
    /// The moment the page shows (it is drawn anew on every request).
    pub as_of: String,
    /// `3 enabled containers, 2 running`.
    pub summary: String,
    pub rows: Vec<Row>,
}

/// A certificate this close to its end is worth a look (renewal failing).
const CERT_WARN: TimeDelta = TimeDelta::days(7);
/// Cleanup this close is worth a look (deploy or extend).
const CLEANUP_WARN: TimeDelta = TimeDelta::days(1);

/// `2026-01-08 00:00 UTC`: a moment for people (minutes are enough).
pub fn moment(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// `2026-01-08 00:00 UTC (in 6 days 23 hours)` or `(3 hours ago)`.
fn moment_from(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let d = t - now;
    let rel = if d.num_seconds().abs() < 60 {
        "just now".to_string()
    } else if d > TimeDelta::zero() {
        format!("in {}", human(d))
    } else {
        format!("{} ago", human(-d))
    };
    format!("{} ({rel})", moment(t))
}

fn plural(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// Since when it sleeps (stopped for want of use; the next request wakes
/// it).
fn asleep(r: &Record) -> Option<DateTime<Utc>> {
    r.asleep_since.filter(|_| r.phase == Phase::Stopped)
}

fn state_tone(r: &Record) -> Tone {
    if asleep(r).is_some() {
        return Tone::Quiet;
    }
    match (r.phase, r.want_running) {
        (Phase::Running, _) => Tone::Good,
        (Phase::Stopped, false) => Tone::Quiet,
        _ => Tone::Warn,
    }
}

/// The certificate's state, its detail and tone.
fn certificate(info: Option<&CertInfo>, now: DateTime<Utc>) -> (String, String, Tone) {
    let Some(c) = info else {
        return ("none".into(), String::new(), Tone::Quiet);
    };
    let parse = |s: &Option<String>| {
        s.as_deref()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    let until = parse(&c.valid_until);
    let mut detail = Vec::new();
    if let Some(t) = until {
        let word = if t > now { "until" } else { "expired" };
        detail.push(format!("{word} {}", moment_from(t, now)));
    }
    if let Some(why) = &c.detail {
        detail.push(why.clone());
    }
    if let Some(t) = parse(&c.next_try) {
        detail.push(format!("next try {}", moment_from(t, now)));
    }
    let tone = match c.state {
        CertState::Valid if until.is_some_and(|t| t - now < CERT_WARN) => Tone::Warn,
        CertState::Valid => Tone::Good,
        CertState::Ordering | CertState::None => Tone::Quiet,
        CertState::Expired | CertState::Failed | CertState::HeldBack => Tone::Warn,
    };
    (c.state.as_str().to_string(), detail.join("; "), tone)
}

/// When cleanup disables the container, from its record and (when the
/// policy counts it) its latest request.
fn cleanup(r: &Record, f: &Facts) -> (String, Tone) {
    let mut usage = r.usage(r.phase == Phase::Running);
    if f.policy.count_activity {
        if let Some(&seen) = f.activity.get(r.name.as_str()) {
            usage.last_activity = Some(usage.last_activity.map_or(seen, |a| a.max(seen)));
        }
    }
    match deadlines(&usage, f.policy) {
        None => ("never (pinned)".into(), Tone::Good),
        Some(d) if d.disable_at <= f.now => (
            format!(
                "at the next cleanup (due since {})",
                moment_from(d.disable_at, f.now)
            ),
            Tone::Warn,
        ),
        Some(d) => (
            moment_from(d.disable_at, f.now),
            if d.disable_at - f.now < CLEANUP_WARN {
                Tone::Warn
            } else {
                Tone::Good
            },
        ),
    }
}

fn row(r: &Record, f: &Facts) -> Row {
    let link = |host: String| Link {
        href: https_location(&host, f.https_port, "/"),
        text: host,
    };
    let (certificate, certificate_detail, certificate_tone) =
        certificate(f.certs.get(r.name.as_str()), f.now);
    let (cleanup, cleanup_tone) = cleanup(r, f);
    Row {
        name: Link {
            text: r.name.to_string(),
            href: https_location(&format!("{}.{}", r.name, f.domain), f.https_port, "/"),
        },
        owner: f
            .owners
            .get(&r.owner_uid)
            .cloned()
            .unwrap_or_else(|| format!("uid {}", r.owner_uid)),
        state: match asleep(r) {
            Some(t) => format!("sleeping (since {})", moment(t)),
            None => r.phase.as_str().to_string(),
        },
        state_tone: state_tone(r),
        aliases: r
            .aliases
            .iter()
            .map(|a| link(format!("{a}.{}.{}", r.name, f.domain)))
            .collect(),
        certificate,
        certificate_detail,
        certificate_tone,
        last_deploy: moment_from(r.last_deploy, f.now),
        cleanup,
        cleanup_tone,
        channel: r.channel.to_string(),
    }
}

/// The page: every enabled container, by name.
pub fn page(records: &[Record], f: &Facts) -> Page {
    let mut enabled: Vec<&Record> = records.iter().filter(|r| r.enabled).collect();
    enabled.sort_by(|a, b| a.name.cmp(&b.name));
    let running = enabled.iter().filter(|r| r.phase == Phase::Running).count();
    let sleeping = match enabled.iter().filter(|r| asleep(r).is_some()).count() {
        0 => String::new(),
        n => format!(", {n} sleeping"),
    };
    Page {
        domain: f.domain.to_string(),
        as_of: moment(f.now),
        summary: format!(
            "{}, {running} running{sleeping}",
            plural(enabled.len(), "enabled container")
        ),
        rows: enabled.into_iter().map(|r| row(r, f)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::record::tests::record;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    const NOW: &str = "2026-01-05T12:00:00Z";

    /// What a test knows besides the records.
    struct Known {
        owners: BTreeMap<u32, String>,
        certs: BTreeMap<String, CertInfo>,
        activity: BTreeMap<String, DateTime<Utc>>,
        policy: Policy,
    }

    impl Known {
        fn new() -> Known {
            Known {
                owners: BTreeMap::new(),
                certs: BTreeMap::new(),
                activity: BTreeMap::new(),
                policy: Policy::days(7, 30, false),
            }
        }

        fn facts(&self) -> Facts<'_> {
            Facts {
                domain: "dev.test",
                https_port: 443,
                now: t(NOW),
                policy: &self.policy,
                owners: &self.owners,
                certs: &self.certs,
                activity: &self.activity,
            }
        }
    }

    fn cert(state: CertState, until: Option<&str>) -> CertInfo {
        CertInfo {
            state,
            names: vec![],
            issuer: Some("local-ca".into()),
            valid_until: until.map(String::from),
            detail: None,
            next_try: None,
        }
    }

    fn web01() -> Record {
        let mut r = record("web01", "10.233.0.6", &["www", "api"]);
        r.owner_uid = 1000;
        r.last_deploy = t("2026-01-05T09:00:00Z");
        r
    }

    #[test]
    fn a_running_container_is_one_row_with_everything_in_words() {
        let known = Known {
            owners: BTreeMap::from([(1000, "alice".to_string())]),
            certs: BTreeMap::from([(
                "web01".to_string(),
                cert(CertState::Valid, Some("2026-04-05T12:00:00+00:00")),
            )]),
            ..Known::new()
        };
        let p = page(&[web01()], &known.facts());
        let link = |h: &str| Link {
            text: h.into(),
            href: format!("https://{h}/"),
        };
        assert_eq!(
            p,
            Page {
                domain: "dev.test".into(),
                as_of: "2026-01-05 12:00 UTC".into(),
                summary: "1 enabled container, 1 running".into(),
                rows: vec![Row {
                    name: Link {
                        text: "web01".into(),
                        href: "https://web01.dev.test/".into()
                    },
                    owner: "alice".into(),
                    state: "running".into(),
                    state_tone: Tone::Good,
                    aliases: vec![link("www.web01.dev.test"), link("api.web01.dev.test")],
                    certificate: "valid".into(),
                    certificate_detail: "until 2026-04-05 12:00 UTC (in 90 days)".into(),
                    certificate_tone: Tone::Good,
                    last_deploy: "2026-01-05 09:00 UTC (3 hours ago)".into(),
                    cleanup: "2026-01-12 09:00 UTC (in 6 days 21 hours)".into(),
                    cleanup_tone: Tone::Good,
                    channel: "https://example.org/nixexprs.tar.xz".into(),
                }],
            }
        );
    }

    #[test]
    fn only_enabled_containers_by_name_and_links_name_a_port_other_than_443() {
        let mut off = record("aaa", "10.233.0.10", &[]);
        off.enabled = false;
        let mut stopped = record("db", "10.233.0.14", &[]);
        stopped.phase = Phase::Stopped;
        stopped.want_running = false;
        let mut asleep = record("idle", "10.233.0.22", &[]);
        asleep.phase = Phase::Stopped;
        asleep.asleep_since = Some("2026-01-01T09:30:00Z".parse().unwrap());
        let mut building = record("new", "10.233.0.18", &["x"]);
        building.phase = Phase::Building;
        building.established = false;
        let known = Known::new();
        let f = Facts {
            https_port: 8443,
            ..known.facts()
        };
        let p = page(&[web01(), off, building, stopped, asleep], &f);
        let names: Vec<(&str, &str, Tone)> = p
            .rows
            .iter()
            .map(|r| (r.name.text.as_str(), r.state.as_str(), r.state_tone))
            .collect();
        assert_eq!(
            names,
            vec![
                ("db", "stopped", Tone::Quiet),
                ("idle", "sleeping (since 2026-01-01 09:30 UTC)", Tone::Quiet),
                ("new", "building", Tone::Warn),
                ("web01", "running", Tone::Good)
            ]
        );
        assert_eq!(p.summary, "4 enabled containers, 1 running, 1 sleeping");
        assert_eq!(p.rows[2].name.href, "https://new.dev.test:8443/");
        assert_eq!(p.rows[2].aliases[0].href, "https://x.new.dev.test:8443/");
        assert_eq!(p.rows[3].owner, "uid 1000", "no user name known");
        assert_eq!(
            (p.rows[0].certificate.as_str(), p.rows[0].certificate_tone),
            ("none", Tone::Quiet)
        );
    }

    #[test]
    fn certificates_in_trouble_say_why_and_when_next() {
        let now = t(NOW);
        let failed = CertInfo {
            detail: Some("DNS says 192.0.2.9".into()),
            next_try: Some("2026-01-05T12:30:00+00:00".into()),
            ..cert(CertState::Failed, Some("2026-01-08T12:00:00+00:00"))
        };
        assert_eq!(
            certificate(Some(&failed), now),
            (
                "failed".into(),
                "until 2026-01-08 12:00 UTC (in 3 days); DNS says 192.0.2.9; next try 2026-01-05 12:30 UTC (in 30 minutes)".into(),
                Tone::Warn
            )
        );
        let expired = cert(CertState::Expired, Some("2026-01-01T12:00:00+00:00"));
        assert_eq!(
            certificate(Some(&expired), now),
            (
                "expired".into(),
                "expired 2026-01-01 12:00 UTC (4 days ago)".into(),
                Tone::Warn
            )
        );
        let soon = cert(CertState::Valid, Some("2026-01-10T12:00:00+00:00"));
        assert_eq!(certificate(Some(&soon), now).2, Tone::Warn, "5 days left");
        let ordering = cert(CertState::Ordering, None);
        assert_eq!(
            certificate(Some(&ordering), now),
            ("ordering".into(), String::new(), Tone::Quiet)
        );
    }

    #[test]
    fn cleanup_says_when_it_disables_a_container() {
        let known = Known {
            activity: BTreeMap::from([("web01".to_string(), t("2026-01-05T11:00:00Z"))]),
            ..Known::new()
        };
        let f = known.facts();
        let mut r = web01();
        r.pinned = true;
        assert_eq!(cleanup(&r, &f), ("never (pinned)".to_string(), Tone::Good));
        r.pinned = false;
        r.last_deploy = t("2025-12-29T12:30:00Z");
        assert_eq!(
            cleanup(&r, &f),
            (
                "2026-01-05 12:30 UTC (in 30 minutes)".to_string(),
                Tone::Warn
            )
        );
        r.last_deploy = t("2025-12-01T00:00:00Z");
        assert_eq!(
            cleanup(&r, &f),
            (
                "at the next cleanup (due since 2025-12-08 00:00 UTC (28 days 12 hours ago))"
                    .to_string(),
                Tone::Warn
            )
        );
        r.keep_until = Some(t("2026-02-01T00:00:00Z"));
        assert_eq!(
            cleanup(&r, &f).0,
            "2026-02-01 00:00 UTC (in 26 days 12 hours)",
            "an extension moves it"
        );
        // Counted, the request an hour ago moves it.
        r.keep_until = None;
        let counted = Policy::days(7, 30, true);
        let f = Facts {
            policy: &counted,
            ..f
        };
        assert_eq!(
            cleanup(&r, &f),
            (
                "2026-01-12 11:00 UTC (in 6 days 23 hours)".to_string(),
                Tone::Good
            )
        );
    }
}
