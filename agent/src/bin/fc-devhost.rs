//! `fc-devhost`, the CLI batou ≥ 2.6 calls on a devhost.

fn main() {
    let rest: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(devhost::cli::compat::fc_devhost::main(&rest));
}
