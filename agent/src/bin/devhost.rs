//! `devhost`: the agent and the native CLI. Installed under the compatible
//! names (`fc-build-dev-container`, `fc-devhost`, `nixos-container`) it
//! behaves as those. Arguments that are not UTF-8 are refused (exit 2)
//! before anything else happens.

fn main() {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let called = std::path::Path::new(&argv0)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("")
        .to_string();
    let rest = match devhost::cli::args::from_env() {
        Ok(rest) => rest,
        Err(code) => std::process::exit(code),
    };
    // The agent's own helper for entering containers (see devhost::enter).
    if rest.first().map(String::as_str) == Some(devhost::enter::HELPER_ARG) {
        std::process::exit(devhost::enter::helper::main(&rest[1..]));
    }
    let code = match called.as_str() {
        "fc-build-dev-container" => devhost::cli::compat::fc_build_dev_container::main(&rest),
        "nixos-container" => devhost::cli::compat::nixos_container::main(&rest),
        "fc-devhost" => devhost::cli::compat::fc_devhost::main(&rest),
        _ => devhost::cli::devhost::main(&rest),
    };
    std::process::exit(code);
}
