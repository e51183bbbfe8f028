//! The layered loader: precedence, profiles, env nesting, error messages,
//! interpolation and `{cipher}` values.

mod common;

use std::collections::HashMap;

use common::{Fixed, env};
use msp_config::secret::{Cipher, CipherKey};
use msp_config::{ConfigError, Layer, Loader, Origin, Secret};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
struct Six {
    k1: String,
    k2: String,
    k3: String,
    k4: String,
    k5: String,
    k6: String,
}

fn six_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        dir.path().join("six.yaml"),
        "k2: file\nk3: file\nk4: file\nk5: file\nk6: file\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        dir.path().join("six-prod.toml"),
        "k3 = 'profile'\nk4 = 'profile'\nk5 = 'profile'\nk6 = 'profile'\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    dir
}

fn six_loader(dir: &std::path::Path) -> Loader {
    let d = |s: &str| s.to_owned();
    Loader::new("six")
        .dir(dir)
        .defaults(&Six {
            k1: d("defaults"),
            k2: d("defaults"),
            k3: d("defaults"),
            k4: d("defaults"),
            k5: d("defaults"),
            k6: d("defaults"),
        })
        .env_map(env(&[
            ("SIX_PROFILE", "prod"),
            ("SIX__K5", "env"),
            ("SIX__K6", "env"),
        ]))
        .remote(msp_config::remote::Remote::new(Fixed(vec![
            ("k4", "remote".into()),
            ("k5", "remote".into()),
            ("k6", "remote".into()),
        ])))
        .set("k6", "cli")
}

#[tokio::test]
async fn every_layer_beats_the_one_below() {
    let dir = six_dir();
    let got: Six = six_loader(dir.path())
        .load()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        got,
        Six {
            k1: "defaults".into(),
            k2: "file".into(),
            k3: "profile".into(),
            k4: "remote".into(),
            k5: "env".into(),
            k6: "cli".into(),
        }
    );
}

#[tokio::test]
async fn precedence_can_be_reordered() {
    let dir = six_dir();
    // Viper-like: remote below files; command line below env.
    let got: Six = six_loader(dir.path())
        .precedence([
            Layer::Defaults,
            Layer::Remote,
            Layer::Files,
            Layer::ProfileFiles,
            Layer::CommandLine,
            Layer::Env,
        ])
        .load()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got.k4, "profile");
    assert_eq!(got.k6, "env");
    // Leaving a layer out drops it.
    let got: Six = six_loader(dir.path())
        .precedence([Layer::Defaults, Layer::Files])
        .load()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got.k6, "file");
    assert_eq!(got.k1, "defaults");
}

#[derive(Debug, Deserialize, PartialEq)]
struct Pool {
    max_size: u32,
    min_idle: u32,
}
#[derive(Debug, Deserialize, PartialEq)]
struct Db {
    url: String,
    pool: Pool,
}
#[derive(Debug, Deserialize, PartialEq)]
struct App {
    name: String,
    db: Db,
}

fn write(dir: &std::path::Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn profile_files_merge_deeply_over_the_base() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    write(
        dir.path(),
        "app.yaml",
        "name: base\ndb:\n  url: pg://base\n  pool:\n    max_size: 5\n    min_idle: 1\n",
    );
    write(
        dir.path(),
        "app-prod.yaml",
        "db:\n  pool:\n    max_size: 50\n",
    );
    write(dir.path(), "app-eu.json", r#"{"db": {"url": "pg://eu"}}"#);

    // Profile from the env var, several profiles, later wins.
    let got: App = Loader::new("app")
        .dir(dir.path())
        .env_map(env(&[("APP_PROFILE", "prod,eu")]))
        .load_sync()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got.name, "base");
    assert_eq!(got.db.url, "pg://eu");
    assert_eq!(
        got.db.pool,
        Pool {
            max_size: 50,
            min_idle: 1
        }
    );

    // No profile: the base only.
    let base: App = Loader::new("app")
        .dir(dir.path())
        .env_map(HashMap::new())
        .load_sync()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(base.db.pool.max_size, 5);
    assert_eq!(base.db.url, "pg://base");

    // By argument: wins over the env var.
    let loader = Loader::new("app")
        .dir(dir.path())
        .env_map(env(&[("APP_PROFILE", "eu")]))
        .args(["serve", "--profile", "prod", "--verbose"])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loader.active_profiles(), ["prod"]);
    let got: App = loader.load_sync().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got.db.pool.max_size, 50);
    assert_eq!(got.db.url, "pg://base");
}

#[test]
fn env_nesting_keeps_single_underscores_inside_keys() {
    let e = env(&[
        ("SHOP_CART__NAME", "n"),
        ("SHOP_CART__DB__URL", "pg://env"),
        ("SHOP_CART__DB__POOL__MAX_SIZE", "20"),
        ("SHOP_CART__DB__POOL__MIN_IDLE", "3"),
        // Not ours: single underscore after the prefix, other prefixes.
        ("SHOP_CART_PROFILE", ""),
        ("SHOP__DB__URL", "wrong"),
        ("SHOP_CARTX__NAME", "wrong"),
    ]);
    let got: App = Loader::new("shop-cart")
        .no_files()
        .env_map(e)
        .load_sync()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        got,
        App {
            name: "n".into(),
            db: Db {
                url: "pg://env".into(),
                pool: Pool {
                    max_size: 20,
                    min_idle: 3
                }
            }
        }
    );
}

#[test]
fn cli_set_overrides_env_and_rejects_malformed() {
    let got: App = Loader::new("app")
        .no_files()
        .env_map(env(&[
            ("APP__NAME", "env"),
            ("APP__DB__URL", "u"),
            ("APP__DB__POOL__MAX_SIZE", "1"),
            ("APP__DB__POOL__MIN_IDLE", "1"),
        ]))
        .args(["--set", "db.pool.max_size=20", "--set=name=cli"])
        .unwrap_or_else(|e| panic!("{e}"))
        .load_sync()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got.db.pool.max_size, 20);
    assert_eq!(got.name, "cli");
    assert!(matches!(
        Loader::new("app").args(["--set", "novalue"]),
        Err(ConfigError::Argument(_))
    ));
    assert!(matches!(
        Loader::new("app").args(["--set"]),
        Err(ConfigError::Argument(_))
    ));
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct Typed {
    db: TypedDb,
}
#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct TypedDb {
    url: String,
    pool: TypedPool,
}
#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct TypedPool {
    max_size: u32,
}

#[test]
fn wrong_type_error_names_key_type_file_and_line() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    for (file, text, line) in [
        (
            "bad.yaml",
            "# pool settings\ndb:\n  url: x\n  pool:\n    max_size: lots\n",
            5,
        ),
        (
            "bad.toml",
            "[db]\nurl = 'x'\n\n[db.pool]\nmax_size = 'lots'\n",
            5,
        ),
        (
            "bad.json",
            "{\n  \"db\": {\n    \"url\": \"x\",\n    \"pool\": {\"max_size\": \"lots\"}\n  }\n}\n",
            4,
        ),
    ] {
        let sub = dir.path().join(file.replace('.', "_"));
        std::fs::create_dir_all(&sub).unwrap_or_else(|e| panic!("{e}"));
        write(&sub, file, text);
        let err = Loader::new("bad")
            .dir(&sub)
            .env_map(HashMap::new())
            .load_sync::<Typed>()
            .expect_err("must fail");
        let path = sub.join(file);
        match &err {
            ConfigError::InvalidValue {
                key,
                expected,
                found,
                origin,
            } => {
                assert_eq!(key, "db.pool.max_size");
                assert_eq!(expected, "an integer");
                assert_eq!(found, "string \"lots\"");
                assert_eq!(
                    origin,
                    &Origin::File {
                        path: path.clone(),
                        line: Some(line)
                    }
                );
            }
            other => panic!("{file}: unexpected error {other:?}"),
        }
        assert_eq!(
            err.to_string(),
            format!(
                "invalid value for `db.pool.max_size`: expected an integer, found string \"lots\" (from {}:{line})",
                path.display()
            )
        );
    }
}

#[test]
fn wrong_type_error_names_env_var_and_cli_flag() {
    let err = Loader::new("app")
        .no_files()
        .env_map(env(&[
            ("APP__DB__URL", "x"),
            ("APP__DB__POOL__MAX_SIZE", "-"),
        ]))
        .load_sync::<Typed>()
        .expect_err("must fail");
    assert!(
        matches!(&err, ConfigError::InvalidValue { key, origin: Origin::Env { var }, .. } if key == "db.pool.max_size" && var == "APP__DB__POOL__MAX_SIZE"),
        "{err:?}"
    );
    let err = Loader::new("app")
        .no_files()
        .env_map(env(&[("APP__DB__URL", "x")]))
        .set("db.pool.max_size", "big")
        .load_sync::<Typed>()
        .expect_err("must fail");
    assert_eq!(
        err.to_string(),
        "invalid value for `db.pool.max_size`: expected an integer, found string \"big\" (from command line --set db.pool.max_size)"
    );
}

#[tokio::test]
async fn wrong_type_error_names_remote_key() {
    let err = Loader::new("app")
        .no_files()
        .env_map(env(&[("APP__DB__URL", "x")]))
        .remote(msp_config::remote::Remote::new(Fixed(vec![(
            "db.pool.max_size",
            "many".into(),
        )])))
        .load::<Typed>()
        .await
        .expect_err("must fail");
    assert!(
        matches!(&err, ConfigError::InvalidValue { origin: Origin::Remote { source, key }, .. } if source == "fixed" && key == "/fixed/db.pool.max_size"),
        "{err:?}"
    );
}

#[test]
fn missing_field_error_names_the_key() {
    let err = Loader::new("app")
        .no_files()
        .env_map(env(&[("APP__DB__URL", "x")]))
        .load_sync::<Typed>()
        .expect_err("must fail");
    assert!(
        matches!(&err, ConfigError::Invalid { key, .. } if key == "db.pool"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "invalid configuration at `db.pool`: required key is missing (no layer sets it)"
    );
}

#[derive(Debug, Deserialize)]
struct WithSecrets {
    db: SecretDb,
    api_token: Secret<String>,
}
#[derive(Debug, Deserialize)]
struct SecretDb {
    url: String,
    password: Secret<String>,
    port: u16,
}

#[test]
fn interpolation_and_cipher_round_trip() {
    let key = Cipher::generate_key();
    let cipher = Cipher::from_text(&key).unwrap_or_else(|e| panic!("{e}"));
    let sealed = cipher.encrypt("pa55-w0rd");
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    write(
        dir.path(),
        "sec.yaml",
        &format!(
            "db:\n  url: pg://${{DB_USER}}@${{DB_HOST:-localhost}}:${{DB_PORT:-5432}}/x\n  password: \"{sealed}\"\n  port: ${{DB_PORT:-5432}}\napi_token: ${{TOKEN}}\n"
        ),
    );
    let e = env(&[
        ("DB_USER", "app"),
        ("DB_PORT", "6543"),
        ("TOKEN", "tok-123"),
        ("SEC_CONFIG_KEY", &key),
    ]);
    let got: WithSecrets = Loader::new("sec")
        .dir(dir.path())
        .env_map(e.clone())
        .load_sync()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got.db.url, "pg://app@localhost:6543/x");
    assert_eq!(got.db.port, 6543);
    assert_eq!(got.db.password.expose(), "pa55-w0rd");
    assert_eq!(got.api_token.expose(), "tok-123");
    let debug = format!("{got:?}");
    assert!(
        !debug.contains("pa55-w0rd") && !debug.contains("tok-123"),
        "{debug}"
    );

    // Key from a file works too.
    let key_file = dir.path().join("key.txt");
    std::fs::write(&key_file, format!("{key}\n")).unwrap_or_else(|e| panic!("{e}"));
    let got: WithSecrets = Loader::new("sec")
        .dir(dir.path())
        .env_map(e.clone())
        .cipher_key(CipherKey::File(key_file))
        .load_sync()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got.db.password.expose(), "pa55-w0rd");

    // A wrong key: a clear error naming the key path, no secret in it.
    let mut wrong = e.clone();
    wrong.insert("SEC_CONFIG_KEY".into(), Cipher::generate_key());
    let err = Loader::new("sec")
        .dir(dir.path())
        .env_map(wrong)
        .load_sync::<WithSecrets>()
        .expect_err("must fail");
    assert_eq!(
        err.to_string(),
        "`db.password`: cannot decrypt {cipher} value: authentication failed: wrong key or corrupted value"
    );
    // No key at all.
    let mut none = e.clone();
    none.remove("SEC_CONFIG_KEY");
    let err = Loader::new("sec")
        .dir(dir.path())
        .env_map(none)
        .load_sync::<WithSecrets>()
        .expect_err("must fail");
    assert!(
        matches!(&err, ConfigError::Decrypt { key, reason } if key == "db.password" && reason.contains("SEC_CONFIG_KEY")),
        "{err}"
    );
    // An unset variable without default names key and variable.
    let mut no_token = e;
    no_token.remove("TOKEN");
    let err = Loader::new("sec")
        .dir(dir.path())
        .env_map(no_token)
        .load_sync::<WithSecrets>()
        .expect_err("must fail");
    assert!(
        matches!(&err, ConfigError::UnsetVariable { key, var } if key == "api_token" && var == "TOKEN"),
        "{err}"
    );
}

#[test]
fn secret_values_never_appear_in_type_errors() {
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Strict {
        password: u32,
    }
    let key = Cipher::generate_key();
    let sealed = Cipher::from_text(&key)
        .unwrap_or_else(|e| panic!("{e}"))
        .encrypt("top-secret-value");
    let err = Loader::new("s")
        .no_files()
        .env_map(env(&[("S__PASSWORD", "hunter2-plain")]))
        .load_sync::<Strict>()
        .expect_err("must fail");
    let text = err.to_string();
    assert!(!text.contains("hunter2-plain"), "{text}");
    assert!(
        text.contains("[REDACTED]") && text.contains("S__PASSWORD"),
        "{text}"
    );

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Strict2 {
        note: u32,
    }
    // A decrypted value under an innocuous key is redacted too.
    let err = Loader::new("s")
        .no_files()
        .env_map(env(&[("S__NOTE", &sealed), ("S_CONFIG_KEY", &key)]))
        .load_sync::<Strict2>()
        .expect_err("must fail");
    let text = format!("{err} {err:?}");
    assert!(!text.contains("top-secret-value"), "{text}");
    assert!(text.contains("[REDACTED]"), "{text}");
}

#[test]
fn a_bad_file_is_a_parse_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    write(dir.path(), "p.yaml", "a: [1, 2\nb: c\n");
    let err = Loader::new("p")
        .dir(dir.path())
        .env_map(HashMap::new())
        .load_sync::<HashMap<String, String>>()
        .expect_err("must fail");
    assert!(
        matches!(&err, ConfigError::Parse { path, .. } if path.ends_with("p.yaml")),
        "{err:?}"
    );
}

#[test]
fn loader_debug_shows_no_secret_values() {
    let key = Cipher::generate_key();
    let loader = Loader::new("dbg")
        .no_files()
        .env_map(env(&[
            ("DBG_CONFIG_KEY", &key),
            ("DBG__DB__PASSWORD", "env-pw-value"),
        ]))
        .set("db.password", "cli-pw-value")
        .set("db.pool_size", "7")
        .defaults(&HashMap::from([("api_token", "default-token-value")]));
    let debug = format!("{loader:?}");
    for secret in [
        key.as_str(),
        "env-pw-value",
        "cli-pw-value",
        "default-token-value",
    ] {
        assert!(!debug.contains(secret), "{secret} leaked: {debug}");
    }
    // Still useful: names and non-secret overrides are shown.
    assert!(debug.contains("DBG__DB__PASSWORD"), "{debug}");
    assert!(debug.contains("db.pool_size=7"), "{debug}");
}

#[test]
fn parse_errors_do_not_echo_the_offending_line() {
    // The TOML parser quotes the bad line; a secret on it must not reach
    // the error (which is logged and sent on the change stream).
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    write(
        dir.path(),
        "tp.toml",
        "[db]\npassword = \"hunter2-unterminated\nurl = 'x'\n",
    );
    let err = Loader::new("tp")
        .dir(dir.path())
        .env_map(HashMap::new())
        .load_sync::<HashMap<String, String>>()
        .expect_err("must fail");
    let text = format!("{err} {err:?}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(
        matches!(&err, ConfigError::Parse { path, message } if path.ends_with("tp.toml") && message.contains("line 2")),
        "{text}"
    );
}
