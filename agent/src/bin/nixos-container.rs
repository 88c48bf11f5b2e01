//! `nixos-container`, the subset batou and operators use on a devhost.

fn main() {
    let rest: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(devhost::cli::compat::nixos_container::main(&rest));
}
