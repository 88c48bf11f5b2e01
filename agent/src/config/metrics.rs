//! The `[metrics]` section: where the agent serves `/metrics` in the
//! Prometheus text format, if at all (off while `listen` is empty; the
//! NixOS role sets it), whether the proxy's series carry the container
//! (cardinality: one series per container and status class), and the
//! listener's bounds.

use super::error::{invalid, ConfigError};
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

/// `[metrics]` as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Metrics {
    /// `ADDRESS:PORT` of the `/metrics` endpoint; empty: not served.
    pub listen: String,
    /// Also count proxied requests and their latency per container.
    pub per_container: bool,
    /// Open connections to the endpoint at most; more are closed at once.
    pub max_connections: usize,
    /// A request's header (and an idle connection's next one) must arrive
    /// within this.
    pub header_timeout_secs: u64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            listen: String::new(),
            per_container: false,
            max_connections: 16,
            header_timeout_secs: 10,
        }
    }
}

/// The validated section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Where `/metrics` is served; `None`: nowhere.
    pub listen: Option<SocketAddr>,
    pub per_container: bool,
    pub max_connections: usize,
    pub header_timeout: Duration,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Metrics::default()
            .validate()
            .expect("the defaults are valid")
    }
}

impl Metrics {
    pub fn validate(self) -> Result<MetricsConfig, ConfigError> {
        let listen = match self.listen.trim() {
            "" => None,
            a => {
                let addr: SocketAddr = a.parse().map_err(|_| {
                    invalid(
                        "metrics.listen",
                        format!(
                            "{a:?} is not ADDRESS:PORT (127.0.0.1:9469, [::1]:9469 for IPv6; empty: not served)"
                        ),
                    )
                })?;
                if addr.port() == 0 {
                    return Err(invalid(
                        "metrics.listen",
                        format!("{a:?} has port 0: Prometheus needs a port it knows"),
                    ));
                }
                Some(addr)
            }
        };
        if !(1..=1024).contains(&self.max_connections) {
            return Err(invalid("metrics.max_connections", "must be 1 to 1024"));
        }
        if !(1..=300).contains(&self.header_timeout_secs) {
            return Err(invalid(
                "metrics.header_timeout_secs",
                "must be 1 to 300 seconds",
            ));
        }
        Ok(MetricsConfig {
            listen,
            per_container: self.per_container,
            max_connections: self.max_connections,
            header_timeout: Duration::from_secs(self.header_timeout_secs),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_unless_listen_is_given() {
        let c = Metrics::default().validate().unwrap();
        assert_eq!(
            c,
            MetricsConfig {
                listen: None,
                per_container: false,
                max_connections: 16,
                header_timeout: Duration::from_secs(10),
            }
        );
    }

    #[test]
    fn an_address_is_served() {
        let c = Metrics {
            listen: "127.0.0.1:9469".into(),
            per_container: true,
            ..Default::default()
        }
        .validate()
        .unwrap();
        assert_eq!(c.listen, Some("127.0.0.1:9469".parse().unwrap()));
        assert!(c.per_container);
        let c = Metrics {
            listen: "[::1]:9469".into(),
            ..Default::default()
        }
        .validate()
        .unwrap();
        assert_eq!(c.listen, Some("[::1]:9469".parse().unwrap()));
    }

    #[test]
    fn bad_values_name_the_key() {
        let cases = [
            (
                Metrics {
                    listen: "localhost:9469".into(),
                    ..Default::default()
                },
                "config key metrics.listen: \"localhost:9469\" is not ADDRESS:PORT (127.0.0.1:9469, [::1]:9469 for IPv6; empty: not served)",
            ),
            (
                Metrics {
                    listen: "127.0.0.1".into(),
                    ..Default::default()
                },
                "config key metrics.listen: \"127.0.0.1\" is not ADDRESS:PORT (127.0.0.1:9469, [::1]:9469 for IPv6; empty: not served)",
            ),
            (
                Metrics {
                    listen: "127.0.0.1:0".into(),
                    ..Default::default()
                },
                "config key metrics.listen: \"127.0.0.1:0\" has port 0: Prometheus needs a port it knows",
            ),
            (
                Metrics {
                    max_connections: 0,
                    ..Default::default()
                },
                "config key metrics.max_connections: must be 1 to 1024",
            ),
            (
                Metrics {
                    header_timeout_secs: 0,
                    ..Default::default()
                },
                "config key metrics.header_timeout_secs: must be 1 to 300 seconds",
            ),
        ];
        for (m, want) in cases {
            assert_eq!(m.validate().unwrap_err().to_string(), want);
        }
    }
}
