//! `fc-build-dev-container ensure NAME CHANNEL [ALIASES]` and `destroy NAME`,
//! as batou ≤ 2.5.4 calls them over `ssh HOST sudo …`: exactly these
//! arguments (aliases space-separated in one argument, possibly empty),
//! progress on stdout, the exit status is what counts. Unlike the old script,
//! an unknown action is an error.

use crate::cli::EXIT_USAGE;

const USAGE: &str = "usage: fc-build-dev-container ensure NAME CHANNEL_URL [ALIASES]\n       fc-build-dev-container destroy NAME";

pub fn main(args: &[String]) -> i32 {
    // batou calls it through sudo: act as the user who did.
    if let Err(code) = crate::cli::drop_sudo() {
        return code;
    }
    let json = false;
    match args {
        [action, name, channel] if action == "ensure" => ensure(name, channel, ""),
        [action, name, channel, aliases] if action == "ensure" => ensure(name, channel, aliases),
        [action, name] if action == "destroy" => crate::cli::cmd::destroy::run(None, json, name),
        [] => {
            eprintln!("{USAGE}");
            EXIT_USAGE
        }
        [action, ..] if action != "ensure" && action != "destroy" => {
            eprintln!("error: unknown action {action:?}\n{USAGE}");
            EXIT_USAGE
        }
        _ => {
            eprintln!("error: wrong number of arguments\n{USAGE}");
            EXIT_USAGE
        }
    }
}

fn ensure(name: &str, channel: &str, aliases: &str) -> i32 {
    let aliases = if aliases.trim().is_empty() {
        vec![]
    } else {
        vec![aliases.to_string()]
    };
    crate::cli::cmd::ensure::run(None, false, name, channel, &aliases, &Default::default())
}
