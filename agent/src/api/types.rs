//! Request bodies (unknown fields refused), responses, streamed events and
//! the typed error every failure comes back as.

use crate::cleanup::Action;
use crate::clock::stamp;
use crate::container::{Limits, Phase, Record};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnsureBody {
    /// The channel URL; empty when `hydra_eval` names it.
    #[serde(default)]
    pub channel: String,
    /// A Hydra evaluation whose channel the agent's `[fc_devhost]
    /// hydra_channel_url` names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hydra_eval: Option<String>,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Create on behalf of this uid (honoured for root and admins only).
    #[serde(default)]
    pub owner_uid: Option<u32>,
    /// Limits to set (fields given replace the recorded ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    /// Where the proxy sends requests: `""` (the container) or an alias →
    /// `SCHEME:PORT`. Replaces the recorded ones when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstreams: Option<std::collections::BTreeMap<String, String>>,
    /// Disk size asked for, bytes (recorded; see docs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_size: Option<u64>,
    /// VM image URL (a container needs none; recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    /// Whether an existing container moves to `channel` (default) or keeps
    /// its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_channel: Option<bool>,
    /// Put to sleep after this long idle: `off`, `default` (the host's) or
    /// a period like `2h`; recorded when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sleep_after: Option<String>,
}

/// A provisioning run: the steps the CLI parsed and expanded (ECHO content
/// is evaluated on the caller's side), and the files COPY needs, read from
/// the environment directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisionBody {
    pub steps: Vec<ProvisionStep>,
    #[serde(default)]
    pub files: Vec<ProvisionFile>,
    /// The container user that owns what COPY creates (batou copies as the
    /// environment's service user); absent: root.
    #[serde(default)]
    pub copy_as: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisionStep {
    pub file: String,
    pub line: usize,
    pub action: ProvisionAction,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ProvisionAction {
    Copy { local: String, remote: String },
    Run { command: String },
    Echo { content: String, remote: String },
}

/// A file or directory below the environment directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisionFile {
    /// Relative, normalized (`a/b`), never leaving the directory.
    pub path: String,
    /// Permission bits (0o7777 at most).
    pub mode: u32,
    /// Base64 content; `None` for a directory.
    #[serde(default)]
    pub data: Option<String>,
}

/// What a container is doing: its phase, except that a container recorded
/// as running without a process is `dead` (and one recorded as stopped
/// that runs is `running`), and a stopped one that was put to sleep is
/// `sleeping`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Creating,
    Building,
    Networking,
    Starting,
    Running,
    Stopping,
    Stopped,
    Destroying,
    Dead,
    Sleeping,
}

impl State {
    /// From the recorded phase, whether a process runs, and whether it was
    /// put to sleep.
    pub fn of(phase: Phase, running: bool, asleep: bool) -> State {
        match (phase, running) {
            (Phase::Running | Phase::Stopped, true) => State::Running,
            (Phase::Running, false) => State::Dead,
            (Phase::Stopped, false) if asleep => State::Sleeping,
            (Phase::Stopped, false) => State::Stopped,
            (Phase::Creating, _) => State::Creating,
            (Phase::Building, _) => State::Building,
            (Phase::Networking, _) => State::Networking,
            (Phase::Starting, _) => State::Starting,
            (Phase::Stopping, _) => State::Stopping,
            (Phase::Destroying, _) => State::Destroying,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::Dead => "dead",
            State::Sleeping => "sleeping",
            State::Creating => Phase::Creating.as_str(),
            State::Building => Phase::Building.as_str(),
            State::Networking => Phase::Networking.as_str(),
            State::Starting => Phase::Starting.as_str(),
            State::Running => Phase::Running.as_str(),
            State::Stopping => Phase::Stopping.as_str(),
            State::Stopped => Phase::Stopped.as_str(),
            State::Destroying => Phase::Destroying.as_str(),
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`: tables give it a width.
        f.pad(self.as_str())
    }
}

/// What a user sees of a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerInfo {
    pub name: String,
    /// The recorded phase.
    pub phase: Phase,
    pub state: State,
    pub running: bool,
    pub pid: Option<u32>,
    pub owner_uid: u32,
    pub channel: String,
    pub aliases: Vec<String>,
    pub address: String,
    pub host_address: String,
    pub system_path: Option<String>,
    pub created: String,
    pub last_deploy: String,
    pub enabled: bool,
    pub limits: Limits,
    /// Upstreams set for the container (`""`) or its aliases, `SCHEME:PORT`.
    #[serde(default)]
    pub upstreams: std::collections::BTreeMap<String, String>,
    /// The proxy's certificate for it (none when the edge is off or the
    /// container is not served).
    #[serde(default)]
    pub certificate: Option<crate::certs::CertInfo>,
    /// Never disabled or deleted by cleanup.
    #[serde(default)]
    pub pinned: bool,
    /// Not disabled before this moment (`devhost extend`).
    #[serde(default)]
    pub keep_until: Option<String>,
    /// Last proxied request or provisioning run recorded (when counted).
    #[serde(default)]
    pub last_activity: Option<String>,
    /// What cleanup will do and when, in words.
    #[serde(default)]
    pub cleanup: Option<String>,
    /// Whether the running container has a user namespace of its own
    /// (false: started before devhost isolated containers; a restart
    /// isolates it). Unknown when it does not run.
    #[serde(default)]
    pub user_namespace: Option<bool>,
    /// Disk size asked for (bytes; `fc-devhost ensure --disk-size`).
    #[serde(default)]
    pub disk_size: Option<u64>,
    /// How the disk size is enforced (`btrfs quota group`); `None`: it is
    /// not (the container roots are not on btrfs with quotas enabled).
    #[serde(default)]
    pub disk_quota: Option<String>,
    /// Bytes the container's root uses, where a project quota counts them.
    #[serde(default)]
    pub disk_used: Option<u64>,
    /// VM image URL asked for (recorded; a container needs none).
    #[serde(default)]
    pub image_url: Option<String>,
    /// What the operation on it waits for, while it waits (a build another
    /// container started, a build slot, a boot slot).
    #[serde(default)]
    pub waiting: Option<String>,
    /// Its own sleep setting: `default` (the host's), `off` or a period.
    #[serde(default)]
    pub sleep_after: String,
    /// Asleep since then (RFC 3339): stopped for want of use; the next
    /// request through the proxy wakes it.
    #[serde(default)]
    pub asleep_since: Option<String>,
    /// The idle period that applies and where it stands, in words.
    #[serde(default)]
    pub sleep: Option<String>,
}

impl ContainerInfo {
    pub fn new(r: &Record, pid: Option<u32>) -> ContainerInfo {
        let running = pid.is_some();
        let state = State::of(r.phase, running, r.asleep_since.is_some());
        ContainerInfo {
            name: r.name.to_string(),
            phase: r.phase,
            state,
            running,
            pid,
            owner_uid: r.owner_uid,
            channel: r.channel.to_string(),
            aliases: r.aliases.iter().map(|a| a.to_string()).collect(),
            address: r.addresses.local.to_string(),
            host_address: r.addresses.host.to_string(),
            system_path: r.system_path.clone(),
            created: stamp(r.created),
            last_deploy: stamp(r.last_deploy),
            enabled: r.enabled,
            limits: r.limits.clone(),
            upstreams: r.upstreams.shown(),
            certificate: None,
            pinned: r.pinned,
            keep_until: r.keep_until.map(stamp),
            last_activity: r.last_activity.map(stamp),
            cleanup: None,
            user_namespace: None,
            disk_size: r.disk_size,
            disk_quota: None,
            disk_used: None,
            waiting: None,
            image_url: r.image_url.clone(),
            sleep_after: r.sleep_after.to_string(),
            asleep_since: r.asleep_since.map(stamp),
            sleep: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListResponse {
    pub containers: Vec<ContainerInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInfo {
    pub version: String,
    pub backend: String,
    /// What the last reconcile found and did.
    pub findings: Vec<String>,
    /// Host and Nix settings that are unsafe or too low (also logged at start).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Records kept aside: their names are held until an admin adopts or
    /// forgets them.
    #[serde(default)]
    pub quarantined: Vec<QuarantineInfo>,
}

/// A record file the agent does not trust, kept aside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuarantineInfo {
    /// The container it holds ("" for a file named for no container).
    pub name: String,
    pub file: String,
    pub why: String,
}

/// One line of a streamed answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Log {
        line: String,
    },
    Phase {
        phase: Phase,
    },
    Done {
        message: String,
        container: Option<Box<ContainerInfo>>,
    },
    Error {
        error: ApiError,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request is malformed or a value is invalid.
    BadRequest,
    /// The caller may not do this.
    Forbidden,
    NotFound,
    /// The operation was tried and failed (build, boot, network).
    Failed,
    /// A bug or an unexpected host condition.
    Internal,
    /// The request body is larger than the route takes.
    TooLarge,
    /// Too much at once (connections, uploads): try again later.
    Busy,
    /// What is on the host stands in the way (a quarantined record, a root
    /// without a record): an admin has to resolve it.
    Conflict,
}

impl ErrorKind {
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::BadRequest => 400,
            ErrorKind::Forbidden => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::Failed => 500,
            ErrorKind::Internal => 500,
            ErrorKind::TooLarge => 413,
            ErrorKind::Busy => 503,
            ErrorKind::Conflict => 409,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ApiError {
        ApiError {
            kind,
            message: message.into(),
        }
    }
    pub fn bad_request(m: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::BadRequest, m)
    }
    pub fn forbidden(m: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::Forbidden, m)
    }
    pub fn not_found(m: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::NotFound, m)
    }
    pub fn failed(m: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::Failed, m)
    }
    pub fn internal(m: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::Internal, m)
    }
}

impl From<crate::container::NameError> for ApiError {
    fn from(e: crate::container::NameError) -> ApiError {
        ApiError::bad_request(e.to_string())
    }
}

/// `POST /v1/cleanup`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CleanupBody {
    /// Decide and report, change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Decide as of this moment (RFC 3339) instead of the agent's clock:
    /// "what would happen on that date", and the tests' clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub now: Option<String>,
}

/// `POST /v1/containers/NAME/extend`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtendBody {
    pub days: u32,
}

/// What the sweep did with one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanupEntry {
    pub name: String,
    pub action: Action,
    pub reason: String,
    /// Whole days unused (what the log and the table show).
    pub unused_days: i64,
    pub result: SweepResult,
}

/// What came of the sweep's decision on one container; serialized as
/// `` (kept), `done`, `dry run`, `failed: WHY`, or what the operation said
/// when it found nothing to do (the container was destroyed meanwhile).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub enum SweepResult {
    Kept,
    Done,
    DryRun,
    Failed(String),
    Nothing(String),
}

impl From<SweepResult> for String {
    fn from(r: SweepResult) -> String {
        match r {
            SweepResult::Kept => String::new(),
            SweepResult::Done => "done".into(),
            SweepResult::DryRun => "dry run".into(),
            SweepResult::Failed(why) => format!("failed: {why}"),
            SweepResult::Nothing(what) => what,
        }
    }
}

impl From<String> for SweepResult {
    fn from(s: String) -> SweepResult {
        match s.as_str() {
            "" => SweepResult::Kept,
            "done" => SweepResult::Done,
            "dry run" => SweepResult::DryRun,
            _ => match s.strip_prefix("failed: ") {
                Some(why) => SweepResult::Failed(why.to_string()),
                None => SweepResult::Nothing(s),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanupReport {
    /// The moment decided against (RFC 3339).
    pub now: String,
    pub dry_run: bool,
    pub disable_after_days: u32,
    pub delete_after_days: u32,
    pub containers: Vec<CleanupEntry>,
}

impl CleanupReport {
    /// Containers the sweep tried to change and could not.
    pub fn failures(&self) -> usize {
        self.containers
            .iter()
            .filter(|c| matches!(c.result, SweepResult::Failed(_)))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ensure_body_refuses_unknown_fields() {
        let e =
            serde_json::from_str::<EnsureBody>(r#"{"channel":"/x","alias":["a"]}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `alias`"), "{e}");
        let b: EnsureBody = serde_json::from_str(r#"{"channel":"/x"}"#).unwrap();
        assert_eq!(b.aliases, Vec::<String>::new());
    }

    #[test]
    fn states_serialize_as_phase_names_and_dead() {
        let phases = Phase::ALL;
        for p in phases {
            let s = State::of(p, p != Phase::Running, false);
            let expected = match p {
                Phase::Running => "dead",
                Phase::Stopped => "running",
                _ => p.as_str(),
            };
            assert_eq!(serde_json::to_value(s).unwrap(), expected);
            assert_eq!(s.to_string(), expected);
            assert_eq!(format!("{s:<11}|"), format!("{expected:<11}|"));
        }
        assert_eq!(State::of(Phase::Stopped, false, false), State::Stopped);
        assert_eq!(State::of(Phase::Running, true, false), State::Running);
    }

    #[test]
    fn a_stopped_container_put_to_sleep_is_sleeping() {
        assert_eq!(State::of(Phase::Stopped, false, true), State::Sleeping);
        assert_eq!(serde_json::to_value(State::Sleeping).unwrap(), "sleeping");
        // Running again (or on its way) it is what its phase says.
        assert_eq!(State::of(Phase::Stopped, true, true), State::Running);
        assert_eq!(State::of(Phase::Starting, false, true), State::Starting);
        assert_eq!(State::of(Phase::Stopping, true, true), State::Stopping);
    }

    #[test]
    fn sweep_results_serialize_as_before() {
        for (r, s) in [
            (SweepResult::Kept, ""),
            (SweepResult::Done, "done"),
            (SweepResult::DryRun, "dry run"),
            (SweepResult::Failed("boom".into()), "failed: boom"),
            (
                SweepResult::Nothing("container x no longer exists".into()),
                "container x no longer exists",
            ),
        ] {
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(json, serde_json::to_string(s).unwrap());
            assert_eq!(serde_json::from_str::<SweepResult>(&json).unwrap(), r);
        }
    }

    #[test]
    fn events_are_tagged() {
        let e = Event::Log { line: "x".into() };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"event":"log","line":"x"}"#
        );
        let e = Event::Error {
            error: ApiError::forbidden("no"),
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"event":"error","error":{"kind":"forbidden","message":"no"}}"#
        );
    }
}
