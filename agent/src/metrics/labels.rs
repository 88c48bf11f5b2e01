//! The labels of the agent's metrics, as types: every label value the agent
//! can emit is a variant here (so no caller spells a label string, and the
//! cardinality of each family is visible), encoded by prometheus-client.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use std::fmt::Write;

/// Label values written as fixed strings.
macro_rules! label_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl EncodeLabelValue for $name {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
                encoder.write_str(self.as_str())
            }
        }
    };
}

label_enum!(
    /// What a container's job did, timed as a whole.
    Operation {
        Ensure => "ensure",
        Build => "build",
        Boot => "boot",
        Provision => "provision",
    }
);

label_enum!(
    /// How a timed operation ended.
    Outcome {
        Success => "success",
        Failure => "failure",
    }
);

impl Outcome {
    pub fn of<T, E>(r: &Result<T, E>) -> Outcome {
        match r {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        }
    }
}

label_enum!(
    /// How one nix-build of a system ended.
    BuildOutcome {
        Success => "success",
        Failure => "failure",
        /// Nobody waited for it any more (clients gone, containers destroyed).
        Stopped => "stopped",
    }
);

label_enum!(
    /// Where a request reached the proxy.
    Scheme {
        Http => "http",
        Https => "https",
    }
);

label_enum!(
    /// The class of a response's status.
    StatusClass {
        Informational => "1xx",
        Success => "2xx",
        Redirection => "3xx",
        ClientError => "4xx",
        ServerError => "5xx",
        /// 600–999, which HTTP allows a server to send.
        Other => "other",
    }
);

impl StatusClass {
    pub fn of(status: u16) -> StatusClass {
        match status / 100 {
            1 => StatusClass::Informational,
            2 => StatusClass::Success,
            3 => StatusClass::Redirection,
            4 => StatusClass::ClientError,
            5 => StatusClass::ServerError,
            _ => StatusClass::Other,
        }
    }

    /// The position in [`StatusClass::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

label_enum!(
    /// Why a request to a container failed before its answer.
    UpstreamError {
        /// No connection (refused, unreachable, timed out connecting).
        Connect => "connect",
        /// The connection broke or the answer was not HTTP.
        Other => "other",
    }
);

label_enum!(
    /// Which bound a refused client connection was over.
    Refusal {
        Total => "max_connections",
        PerSource => "max_connections_per_source",
    }
);

label_enum!(
    /// How an ACME order ended.
    OrderResult {
        Issued => "issued",
        Failed => "failed",
    }
);

label_enum!(
    /// What the cleanup sweep did to a container.
    CleanupAction {
        Disable => "disable",
        Delete => "delete",
    }
);

label_enum!(
    /// Whether a cleanup action was carried out.
    CleanupResult {
        Done => "done",
        Failed => "failed",
    }
);

label_enum!(
    /// A share of the address pool.
    PoolState {
        Used => "used",
        Free => "free",
    }
);

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub operation: Operation,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub outcome: BuildOutcome,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub scheme: Scheme,
    pub class: StatusClass,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamErrorLabels {
    pub kind: UpstreamError,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    pub reason: Refusal,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OrderLabels {
    pub result: OrderResult,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CleanupLabels {
    pub action: CleanupAction,
    pub result: CleanupResult,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildInfoLabels {
    pub version: &'static str,
}

/// Containers by the phase their record is in, on the agent's backend.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ContainerStateLabels {
    pub state: &'static str,
    pub backend: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub state: PoolState,
}

/// A series of one container (certificates; the proxy's behind
/// `metrics.per_container`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ContainerLabels {
    pub container: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ContainerClassLabels {
    pub container: String,
    pub class: StatusClass,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_fall_into_their_class() {
        let got: Vec<&str> = [100, 101, 200, 204, 301, 404, 421, 502, 599, 600, 999]
            .into_iter()
            .map(|s| StatusClass::of(s).as_str())
            .collect();
        assert_eq!(
            got,
            ["1xx", "1xx", "2xx", "2xx", "3xx", "4xx", "4xx", "5xx", "5xx", "other", "other"]
        );
        for (i, c) in StatusClass::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
        }
    }
}
