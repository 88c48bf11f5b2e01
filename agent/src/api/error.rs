//! The one place where what went wrong becomes what the API answers: the
//! supervisor's errors (and through them the builder's, the network's,
//! nspawn's, provisioning's) map to an [`ErrorKind`] — hence the HTTP
//! status — and a message, as Firecracker's `convert_to_response` does.

use super::types::{ApiError, ErrorKind};
use crate::supervisor::SupervisorError;

/// Who has to act on `e`, as the API says it.
pub fn kind_of(e: &SupervisorError) -> ErrorKind {
    use SupervisorError::*;
    match e {
        NoSuchContainer(_) => ErrorKind::NotFound,
        NotOwner { .. } | MayNotCreate { .. } | BuildsAsRoot { .. } | MayNotSweep(_) => {
            ErrorKind::Forbidden
        }
        Name(_) | BadMoment { .. } | ExtendDays { .. } => ErrorKind::BadRequest,
        QueueFull { .. } => ErrorKind::Busy,
        Disabled { .. }
        | NotRunning(_)
        | Asleep(_)
        | NotAsleep(_)
        | NotIsolated(_)
        | Addresses(_) => ErrorKind::Failed,
        // The host's limits: an admin raises them (or frees disk).
        Admission(crate::admission::AdmissionError::Refused { .. }) => ErrorKind::Conflict,
        Admission(crate::admission::AdmissionError::Stopped { .. }) => ErrorKind::Failed,
        Build { .. } | Step(_) | Limits { .. } | Provision(_) | ProvisionSetup { .. } => {
            ErrorKind::Failed
        }
        Io { .. } | Fs(_) | Record { .. } | Store(_) | Derived(_) | ShuttingDown => {
            ErrorKind::Internal
        }
        NotUndone { source, .. } => kind_of(source),
        Quarantined { .. } | RootExists { .. } | AddressTaken { .. } => ErrorKind::Conflict,
        NotQuarantined(_) => ErrorKind::NotFound,
        AdminOnly { .. } => ErrorKind::Forbidden,
    }
}

impl From<SupervisorError> for ApiError {
    fn from(e: SupervisorError) -> ApiError {
        ApiError::new(kind_of(&e), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::ContainerName;

    fn name() -> ContainerName {
        "web01".parse().unwrap()
    }

    #[test]
    fn refusals_say_who_has_to_act() {
        let cases = [
            (
                SupervisorError::NoSuchContainer(name()),
                ErrorKind::NotFound,
                404,
            ),
            (
                SupervisorError::NotOwner {
                    name: name(),
                    owner: 1000,
                    verb: "stop",
                },
                ErrorKind::Forbidden,
                403,
            ),
            (
                SupervisorError::ExtendDays { days: 0, max: 90 },
                ErrorKind::BadRequest,
                400,
            ),
            (
                SupervisorError::QueueFull {
                    name: name(),
                    max: 8,
                },
                ErrorKind::Busy,
                503,
            ),
            (SupervisorError::NotRunning(name()), ErrorKind::Failed, 500),
            (
                SupervisorError::Quarantined {
                    name: name(),
                    file: "/state/quarantine/web01.json".into(),
                    why: "not a record: EOF".into(),
                },
                ErrorKind::Conflict,
                409,
            ),
            (SupervisorError::ShuttingDown, ErrorKind::Internal, 500),
        ];
        for (e, kind, status) in cases {
            let text = e.to_string();
            let a = ApiError::from(e);
            assert_eq!((a.kind, a.kind.http_status()), (kind, status), "{text}");
            assert_eq!(a.message, text);
        }
    }

    #[test]
    fn a_creation_not_undone_keeps_the_kind_and_says_both() {
        let e = SupervisorError::NotUndone {
            source: Box::new(SupervisorError::NotRunning(name())),
            undo: Box::new(SupervisorError::ShuttingDown),
            record_only: false,
        };
        let a = ApiError::from(e);
        assert_eq!(a.kind, ErrorKind::Failed);
        assert_eq!(
            a.message,
            "container web01 is not running; start it first\n(cleanup also failed: the agent is shutting down; the agent will retry at its next start)"
        );
    }
}
