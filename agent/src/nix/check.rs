//! What the host's Nix settings mean for the code in a channel. The agent
//! evaluates every channel restricted, but the derivations a channel
//! declares are built by Nix's builders: as the unprivileged build users
//! (`build-users-group`), in Nix's sandbox, unless the host's Nix is set up
//! otherwise. The agent reads the effective settings once at start
//! (`nix show-config --json`), says what is unsafe, and refuses builds for
//! ordinary users where builders would run as root.

use serde_json::Value;

/// The verdict on the host's Nix settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NixSafety {
    /// Builders run as root (no build users): only root and admins may
    /// build, since a channel's builder could do anything on the host.
    pub builders_as_root: bool,
    /// What is unsafe or broken, in words, for the log and `devhost info`.
    pub warnings: Vec<String>,
}

/// The group named by `build-users-group`, as the user database has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildGroup {
    Missing,
    /// Its member user names.
    Members(Vec<String>),
}

fn setting<'a>(settings: &'a Value, key: &str) -> Option<&'a Value> {
    settings.get(key).and_then(|s| s.get("value"))
}

/// The name in `build-users-group` ("" when builders run as the caller).
pub fn build_users_group(settings: &Value) -> String {
    setting(settings, "build-users-group")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// Judge `nix show-config --json` output (`None`: it could not be read)
/// with what the user database says of the build users group.
pub fn judge(settings: Option<&Value>, group: &BuildGroup) -> NixSafety {
    let Some(settings) = settings else {
        return NixSafety {
            builders_as_root: true,
            warnings: vec!["cannot read Nix's settings (`nix show-config`): assuming builders run as root, so only root and the admin group may build".into()],
        };
    };
    let mut out = NixSafety::default();
    let name = build_users_group(settings);
    if name.is_empty() {
        out.builders_as_root = true;
        out.warnings.push("Nix's build-users-group is empty: builders run as root, so a channel's builder could change anything on the host; only root and the admin group may build until build users exist (create the group nixbld with users nixbld1…N and set build-users-group = nixbld; scripts/install-deps does)".into());
    } else {
        match group {
            BuildGroup::Missing => out.warnings.push(format!(
                "Nix's build-users-group is {name:?}, but that group does not exist: every build fails (create it with users {name}1…N, as scripts/install-deps does)"
            )),
            BuildGroup::Members(m) if m.is_empty() => out.warnings.push(format!(
                "the group {name:?} (Nix's build-users-group) has no members: every build fails (add build users {name}1…N)"
            )),
            BuildGroup::Members(_) => {}
        }
    }
    match setting(settings, "sandbox") {
        Some(Value::Bool(true)) => {}
        Some(Value::String(s)) if s == "true" => {}
        Some(Value::String(s)) if s == "relaxed" => out.warnings.push("Nix's sandbox is relaxed: fixed-output derivations of a channel run outside it, with the network and the host's world-readable files".into()),
        _ => out.warnings.push("Nix's sandbox is off: a channel's builders (as build users) see the host's world-readable files, may write to world-writable directories and reach the network; set sandbox = true where the kernel allows it".into()),
    }
    out
}

/// Read the settings with `nix` and judge them.
pub async fn check(nix: &str) -> NixSafety {
    let out = tokio::process::Command::new(nix)
        .args([
            "--extra-experimental-features",
            "nix-command",
            "show-config",
            "--json",
        ])
        .env("NIX_PATH", "")
        .stdin(std::process::Stdio::null())
        .output()
        .await;
    let settings: Option<Value> = out
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| serde_json::from_slice(&o.stdout).ok());
    let group = match settings.as_ref().map(build_users_group) {
        Some(name) if !name.is_empty() => match nix::unistd::Group::from_name(&name) {
            Ok(Some(g)) => BuildGroup::Members(g.mem),
            _ => BuildGroup::Missing,
        },
        _ => BuildGroup::Members(vec![]),
    };
    judge(settings.as_ref(), &group)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings(group: &str, sandbox: Value) -> Value {
        json!({
            "build-users-group": {"value": group, "defaultValue": ""},
            "sandbox": {"value": sandbox},
        })
    }

    #[test]
    fn build_users_in_a_sandbox_are_safe() {
        let members = BuildGroup::Members(vec!["nixbld1".into()]);
        assert_eq!(
            judge(Some(&settings("nixbld", json!(true))), &members),
            NixSafety::default()
        );
    }

    #[test]
    fn no_build_users_means_builders_as_root() {
        let v = judge(
            Some(&settings("", json!(true))),
            &BuildGroup::Members(vec![]),
        );
        assert!(v.builders_as_root);
        assert_eq!(v.warnings.len(), 1);
        assert!(v.warnings[0].starts_with("Nix's build-users-group is empty: builders run as root"));
        let unreadable = judge(None, &BuildGroup::Missing);
        assert!(unreadable.builders_as_root);
    }

    #[test]
    fn a_missing_or_empty_group_and_no_sandbox_are_reported() {
        let v = judge(
            Some(&settings("nixbld", json!(false))),
            &BuildGroup::Missing,
        );
        assert!(!v.builders_as_root);
        assert_eq!(v.warnings.len(), 2);
        assert!(v.warnings[0].contains("\"nixbld\", but that group does not exist"));
        assert!(v.warnings[1].starts_with("Nix's sandbox is off"));
        let empty = judge(
            Some(&settings("nixbld", json!("relaxed"))),
            &BuildGroup::Members(vec![]),
        );
        assert!(empty.warnings[0].contains("has no members"));
        assert!(empty.warnings[1].starts_with("Nix's sandbox is relaxed"));
    }
}
