//! `nixos-container`, the subset batou and operators use on a devhost.
//! Arguments that are not UTF-8 are refused (exit 2), see `cli::args`.

fn main() {
    let rest = match devhost::cli::args::from_env() {
        Ok(rest) => rest,
        Err(code) => std::process::exit(code),
    };
    std::process::exit(devhost::cli::compat::nixos_container::main(&rest));
}
