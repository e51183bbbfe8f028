//! Prints the SHA-256 digest of an API key, for a consumer's `key_sha256`:
//!
//! ```text
//! cargo run -p msp-gateway --example hash_api_key -- 's3cret-key'
//! ```
//!
//! With no argument the key is read from the first line of stdin, so it
//! stays out of the shell history: `printf %s "$KEY" | cargo run … --example hash_api_key`.

use std::io::BufRead;

fn main() {
    let key = match std::env::args().nth(1) {
        Some(k) => k,
        None => {
            let mut line = String::new();
            if std::io::stdin().lock().read_line(&mut line).is_err() {
                eprintln!("usage: hash_api_key KEY (or the key on stdin)");
                std::process::exit(2);
            }
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    if key.is_empty() {
        eprintln!("usage: hash_api_key KEY (or the key on stdin)");
        std::process::exit(2);
    }
    println!("{}", msp_gateway::auth::hash_api_key(&key));
}
