//! Encrypts a value for a `{cipher}` configuration entry (AES-256-GCM).
//!
//! ```sh
//! cargo run -p msp-config --example encrypt -- --new-key            # print a fresh key
//! export SHOP_CONFIG_KEY=<the key>
//! cargo run -p msp-config --example encrypt -- --key-env SHOP_CONFIG_KEY 's3cr3t'
//! cargo run -p msp-config --example encrypt -- --key-file key.txt 's3cr3t'
//! cargo run -p msp-config --example encrypt -- --key-env SHOP_CONFIG_KEY --decrypt '{cipher}…'
//! ```
//!
//! Without `--key-env`/`--key-file` the key is read from `MSP_CONFIG_KEY`.
//! Paste the printed `{cipher}…` string into the YAML file (quoted); the
//! loader decrypts it with the key in `{APP}_CONFIG_KEY` (or the
//! `CipherKey` you configure).

use msp_config::secret::Cipher;

fn usage() -> ! {
    eprintln!(
        "usage: encrypt [--key-env VAR | --key-file PATH] [--decrypt] VALUE\n       encrypt --new-key"
    );
    std::process::exit(2)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut key_env = "MSP_CONFIG_KEY".to_owned();
    let mut key_file = None;
    let mut decrypt = false;
    let mut value = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--new-key" => {
                println!("{}", Cipher::generate_key());
                return;
            }
            "--key-env" => key_env = args.next().unwrap_or_else(|| usage()),
            "--key-file" => key_file = Some(args.next().unwrap_or_else(|| usage())),
            "--decrypt" => decrypt = true,
            "-h" | "--help" => usage(),
            _ if value.is_none() => value = Some(a),
            _ => usage(),
        }
    }
    let Some(value) = value else { usage() };
    let key_text = match &key_file {
        Some(path) => std::fs::read_to_string(path).unwrap_or_else(|e| {
            eprintln!("cannot read key file {path}: {e}");
            std::process::exit(1)
        }),
        None => std::env::var(&key_env).unwrap_or_else(|_| {
            eprintln!("set {key_env} to a key (create one with --new-key) or pass --key-file");
            std::process::exit(1)
        }),
    };
    let cipher = Cipher::from_text(&key_text).unwrap_or_else(|e| {
        eprintln!("bad key: {e}");
        std::process::exit(1)
    });
    if decrypt {
        match cipher.decrypt(&value) {
            Ok(plain) => println!("{plain}"),
            Err(e) => {
                eprintln!("cannot decrypt: {e}");
                std::process::exit(1)
            }
        }
    } else {
        println!("{}", cipher.encrypt(&value));
    }
}
