//! `fc-build-dev-container`, the CLI batou ≤ 2.5.4 calls on a devhost.

fn main() {
    let rest: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(devhost::cli::compat::fc_build_dev_container::main(&rest));
}
