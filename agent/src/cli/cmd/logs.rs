//! `devhost logs NAME [--build | --provision] [--lines N]`.

use std::path::Path;

pub fn run(sock: Option<&Path>, json: bool, name: &str, kind: &str, lines: usize) -> i32 {
    let name = match super::name_or_exit(name) {
        Ok(n) => n,
        Err(code) => return code,
    };
    let client = crate::cli::client(sock);
    match crate::cli::block_on(client.get_text(&format!(
        "/v1/containers/{name}/logs?kind={kind}&lines={lines}"
    ))) {
        Ok(text) if json => {
            let lines: Vec<&str> = text.lines().collect();
            let v = serde_json::json!({ "name": name.as_str(), "kind": kind, "lines": lines });
            println!("{v}");
            0
        }
        Ok(text) => {
            if !text.is_empty() {
                println!("{text}");
            }
            0
        }
        Err(e) => crate::cli::fail(&e, json),
    }
}
