//! `devhost provision NAME ENVDIR [--var K=V]… [--env-file FILE] [--copy-as U]`: run an
//! environment's `provision.sh` in a container without batou. The script is
//! parsed and expanded here, on the caller's side (as batou evaluates ECHO
//! expressions), with the caller's environment, the variables batou exports
//! (`PROVISION_CONTAINER`, `PROVISION_HOST`, `PROVISION_CHANNEL`,
//! `PROVISION_ALIASES`), the env file and `--var`s (later ones win). As with
//! batou, `provision.nix` is first copied to
//! `/etc/local/nixos/provision-container.nix` unless the script mentions it.
//! What COPY creates belongs to the environment's `service_user` (from
//! ENVDIR/environment.cfg; `--copy-as` overrides), as batou's rsync makes it.

use crate::api::types::{
    ContainerInfo, ProvisionAction, ProvisionBody, ProvisionFile, ProvisionStep,
};
use crate::cli::{block_on, fail, EXIT_USAGE};
use base64::Engine;
use provision_dsl::{Action, Step};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// What `devhost provision` and `devhost deploy` take besides a name.
#[derive(Debug, clap::Args)]
pub struct ProvisionArgs {
    /// The environment directory (provision.sh, provision.nix, environment.cfg).
    pub envdir: PathBuf,
    /// A variable for the script, KEY=VALUE (repeatable).
    #[arg(long = "var")]
    pub vars: Vec<String>,
    /// A file of KEY=VALUE lines for the script.
    #[arg(long)]
    pub env_file: Option<PathBuf>,
    /// The container user that owns what COPY creates [default: the
    /// environment's service_user, else root].
    #[arg(long)]
    pub copy_as: Option<String>,
}

/// `[environment] service_user` of ENVDIR/environment.cfg, if it has one.
fn service_user(envdir: &Path) -> Result<Option<String>, String> {
    let path = envdir.join("environment.cfg");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let sections = crate::environment::parse_ini(&path.display().to_string(), &text)
        .map_err(|e| e.to_string())?;
    Ok(sections
        .get("environment")
        .and_then(|s| s.get("service_user"))
        .filter(|u| !u.is_empty())
        .cloned())
}

fn usage_error(msg: impl std::fmt::Display) -> i32 {
    eprintln!("error: {msg}");
    EXIT_USAGE
}

/// `KEY=VALUE` lines (blank lines and `#` comments skipped).
fn read_env_file(path: &Path) -> Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| format!("{}:{}: expected KEY=VALUE", path.display(), i + 1))?;
        out.push((k.trim().to_string(), v.to_string()));
    }
    Ok(out)
}

/// The files below `envdir` that COPY `local` needs; symlinks are skipped,
/// as batou's `rsync --no-l` does.
fn collect(
    envdir: &Path,
    local: &str,
    out: &mut BTreeMap<String, ProvisionFile>,
) -> Result<(), String> {
    let base = local.trim_end_matches('/');
    let start = if base == "." {
        envdir.to_path_buf()
    } else {
        envdir.join(base)
    };
    let meta = std::fs::symlink_metadata(&start)
        .map_err(|e| format!("COPY {local}: {}: {e}", start.display()))?;
    let mut stack = vec![(start, base.to_string(), meta)];
    while let Some((path, rel, meta)) = stack.pop() {
        let mode = meta.permissions().mode() & 0o7777;
        if meta.file_type().is_symlink() {
            continue;
        }
        if meta.is_dir() {
            if rel != "." {
                out.insert(
                    rel.clone(),
                    ProvisionFile {
                        path: rel.clone(),
                        mode,
                        data: None,
                    },
                );
            }
            for e in std::fs::read_dir(&path).map_err(|e| format!("{}: {e}", path.display()))? {
                let e = e.map_err(|e| e.to_string())?;
                let name = e.file_name().to_string_lossy().into_owned();
                let child_rel = if rel == "." {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                let m = std::fs::symlink_metadata(e.path()).map_err(|e| e.to_string())?;
                stack.push((e.path(), child_rel, m));
            }
        } else if meta.is_file() {
            let data = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let data = Some(base64::engine::general_purpose::STANDARD.encode(data));
            out.insert(
                rel.clone(),
                ProvisionFile {
                    path: rel,
                    mode,
                    data,
                },
            );
        }
    }
    Ok(())
}

/// `provision_host`: PROVISION_HOST as the environment names the devhost
/// (`devhost deploy`); this host's name otherwise.
pub fn run(
    sock: Option<&Path>,
    json: bool,
    name: &str,
    args: &ProvisionArgs,
    provision_host: Option<&str>,
) -> i32 {
    let envdir = args.envdir.as_path();
    let name = match super::name_or_exit(name) {
        Ok(n) => n,
        Err(code) => return code,
    };
    let script_path = envdir.join("provision.sh");
    let src = match std::fs::read_to_string(&script_path) {
        Ok(s) => s,
        Err(e) => return usage_error(format!("{}: {e}", script_path.display())),
    };
    let script = match provision_dsl::parse_file(&script_path.display().to_string(), &src) {
        Ok(s) => s,
        Err(e) => return usage_error(e),
    };
    let client = crate::cli::client(sock);
    let info: ContainerInfo = match block_on(client.get_json(&format!("/v1/containers/{name}"))) {
        Ok(i) => i,
        Err(e) => return fail(&e, json),
    };
    let mut env: BTreeMap<String, String> = std::env::vars().collect();
    let host = match provision_host {
        Some(h) => h.to_string(),
        None => nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    env.insert("PROVISION_CONTAINER".into(), name.to_string());
    env.insert("PROVISION_HOST".into(), host);
    env.insert("PROVISION_CHANNEL".into(), info.channel.clone());
    env.insert("PROVISION_ALIASES".into(), info.aliases.join(" "));
    if let Some(f) = &args.env_file {
        match read_env_file(f) {
            Ok(pairs) => env.extend(pairs),
            Err(e) => return usage_error(e),
        }
    }
    for v in &args.vars {
        match v.split_once('=') {
            Some((k, val)) if !k.is_empty() => {
                env.insert(k.to_string(), val.to_string());
            }
            _ => return usage_error(format!("--var {v:?}: expected KEY=VALUE")),
        }
    }
    let mut steps = match script.expand(&env) {
        Ok(s) => s,
        Err(e) => return usage_error(e),
    };
    if envdir.join("provision.nix").is_file() && !src.contains("provision.nix") {
        steps.insert(
            0,
            Step {
                file: "(implicit)".into(),
                line: 0,
                action: Action::Copy {
                    local: "provision.nix".into(),
                    remote: "/etc/local/nixos/provision-container.nix".into(),
                },
            },
        );
    }
    let mut files = BTreeMap::new();
    for s in &steps {
        if let Action::Copy { local, .. } = &s.action {
            if let Err(e) = collect(envdir, local, &mut files) {
                return usage_error(e);
            }
        }
    }
    let copy_as = match &args.copy_as {
        Some(u) => Some(u.clone()),
        None => match service_user(envdir) {
            Ok(u) => u,
            Err(e) => return usage_error(e),
        },
    };
    let body = ProvisionBody {
        steps: steps
            .into_iter()
            .map(|s| ProvisionStep {
                file: s.file,
                line: s.line,
                action: match s.action {
                    Action::Copy { local, remote } => ProvisionAction::Copy { local, remote },
                    Action::Run { command } => ProvisionAction::Run { command },
                    Action::Echo { content, remote } => ProvisionAction::Echo { content, remote },
                },
            })
            .collect(),
        files: files.into_values().collect(),
        copy_as,
    };
    let body = serde_json::to_vec(&body).expect("serializes");
    crate::cli::run_streamed(
        &client,
        hyper::Method::POST,
        &format!("/v1/containers/{name}/provision"),
        Some(body),
        json,
    )
}
