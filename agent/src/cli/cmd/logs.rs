//! `devhost logs NAME [--build | --provision] [--lines N] [--since TIME]
//! [--follow]` and `devhost logs --agent …`: a container's console (its
//! unit's journal under the systemd backend), build or provisioning log,
//! or the agent's own log (root and the admin group). `--since` is parsed
//! here ([`crate::logs::since`]) and sent as a moment; `--follow` prints
//! what is added as it comes, until interrupted.

use crate::cli::args::whole;
use crate::logs::since::Since;
use std::io::Write;
use std::path::Path;

#[derive(clap::Args, Debug)]
pub struct LogsArgs {
    /// The container (none with --agent).
    #[arg(required_unless_present = "agent")]
    pub name: Option<String>,
    /// The build log instead of the console.
    #[arg(long, conflicts_with = "agent")]
    pub build: bool,
    /// The provisioning transcript instead of the console.
    #[arg(long, conflicts_with_all = ["build", "agent"])]
    pub provision: bool,
    /// The agent's own log (root or the admin group).
    #[arg(long, conflicts_with = "name")]
    pub agent: bool,
    /// Keep printing what is added, until interrupted.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Only what was logged since TIME: RFC 3339 (2026-12-01T10:00:00Z)
    /// or an age (30s, 10m, 2h, 1d, 1w). The journal and the agent's log
    /// have times; the direct backend's console, the build and the
    /// provisioning log do not.
    #[arg(long, value_name = "TIME", value_parser = parse_since)]
    pub since: Option<Since>,
    /// The last N lines [default: 200; with --since all of them].
    #[arg(long, allow_negative_numbers = true,
          value_parser = whole::<usize>(0, u32::MAX as u64))]
    pub lines: Option<usize>,
}

fn parse_since(s: &str) -> Result<Since, String> {
    s.parse::<Since>().map_err(|e| e.to_string())
}

impl LogsArgs {
    /// Which log, as the agent's path names it.
    fn kind(&self) -> &'static str {
        if self.provision {
            "provision"
        } else if self.build {
            "build"
        } else {
            "console"
        }
    }

    /// The query, with `--since` as seconds since the epoch as of `now`.
    pub fn query(&self, now: chrono::DateTime<chrono::Utc>) -> String {
        let lines = self.lines.unwrap_or(if self.since.is_some() {
            u32::MAX as usize
        } else {
            200
        });
        let mut q = if self.agent {
            format!("lines={lines}")
        } else {
            format!("kind={}&lines={lines}", self.kind())
        };
        if self.follow {
            q.push_str("&follow=1");
        }
        if let Some(s) = self.since {
            q.push_str(&format!("&since={}", s.resolve(now).timestamp()));
        }
        q
    }
}

pub fn run(sock: Option<&Path>, json: bool, args: &LogsArgs) -> i32 {
    let (path, label) = match (&args.name, args.agent) {
        (Some(name), false) => {
            let name = match super::name_or_exit(name) {
                Ok(n) => n,
                Err(code) => return code,
            };
            (format!("/v1/containers/{name}/logs"), name.to_string())
        }
        _ => ("/v1/agent/logs".to_string(), String::new()),
    };
    let kind = if args.agent { "agent" } else { args.kind() };
    let path = format!("{path}?{}", args.query(chrono::Utc::now()));
    let client = crate::cli::client(sock);
    if !args.follow {
        return match crate::cli::block_on(client.get_text(&path)) {
            Ok(text) if json => {
                let lines: Vec<&str> = text.lines().collect();
                let v = if args.agent {
                    serde_json::json!({ "kind": kind, "lines": lines })
                } else {
                    serde_json::json!({ "name": label, "kind": kind, "lines": lines })
                };
                println!("{v}");
                0
            }
            Ok(text) => {
                print!("{text}");
                0
            }
            Err(e) => crate::cli::fail(&e, json),
        };
    }
    // Following: as it comes; with --json one object per line.
    let mut out = std::io::stdout();
    let mut partial: Vec<u8> = Vec::new();
    let result = crate::cli::block_on(client.get_stream(&path, |chunk| {
        if !json {
            return out.write_all(chunk).and_then(|_| out.flush()).is_ok();
        }
        partial.extend_from_slice(chunk);
        while let Some(p) = partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = partial.drain(..=p).collect();
            let line = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            let v = if args.agent {
                serde_json::json!({ "kind": kind, "line": line })
            } else {
                serde_json::json!({ "name": label, "kind": kind, "line": line })
            };
            if writeln!(out, "{v}").and_then(|_| out.flush()).is_err() {
                return false;
            }
        }
        true
    }));
    match result {
        Ok(()) => 0,
        Err(e) => crate::cli::fail(&e, json),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: LogsArgs,
    }

    fn parse(args: &[&str]) -> Result<LogsArgs, clap::Error> {
        T::try_parse_from(std::iter::once("logs").chain(args.iter().copied())).map(|t| t.a)
    }

    #[test]
    fn the_query_names_what_is_asked() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-01T12:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(
            parse(&["web01"]).unwrap().query(now),
            "kind=console&lines=200"
        );
        assert_eq!(
            parse(&["web01", "--build", "--lines", "5", "-f"])
                .unwrap()
                .query(now),
            "kind=build&lines=5&follow=1"
        );
        assert_eq!(
            parse(&["web01", "--since", "2h"]).unwrap().query(now),
            "kind=console&lines=4294967295&since=1796119200"
        );
        assert_eq!(
            parse(&["--agent", "--since", "2026-12-01T10:00:00Z", "--lines", "3"])
                .unwrap()
                .query(now),
            "lines=3&since=1796119200"
        );
    }

    #[test]
    fn bad_combinations_and_times_are_usage_errors() {
        for bad in [
            &["web01", "--since", "yesterday"][..],
            &[],
            &["web01", "--agent"],
            &["--agent", "--build"],
            &["web01", "--build", "--provision"],
            &["web01", "--lines", "-1"],
        ] {
            let e = parse(bad).err().unwrap_or_else(|| panic!("{bad:?} parsed"));
            assert!(e.use_stderr(), "{bad:?}: exit 2");
        }
        let e = parse(&["web01", "--since", "yesterday"]).err().unwrap();
        assert!(e.to_string().contains("an age like 30s, 10m"), "{e}");
    }
}
