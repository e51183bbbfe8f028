//! A parsed JWK set: the verification keys of one provider, only those of
//! its pinned algorithm family.

use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use std::str::FromStr;

/// One verification key.
pub(crate) struct KeyEntry {
    pub(crate) kid: Option<String>,
    /// The key's own `alg`, when the JWK names one: the token must match.
    pub(crate) alg: Option<Algorithm>,
    pub(crate) key: DecodingKey,
}

/// The usable keys of a JWK set.
pub(crate) struct KeySet {
    keys: Vec<KeyEntry>,
}

#[derive(serde::Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

impl KeySet {
    /// The keys of `json` (a JWK set) usable with `algorithms` (all of
    /// `family`): encryption keys, keys of another family (an `oct` key in
    /// an RS256 provider) and keys whose `alg` is not pinned are left out.
    /// No usable key is an error: the previous set stays.
    pub(crate) fn parse(json: &[u8], algorithms: &[Algorithm]) -> Result<KeySet, String> {
        let raw: RawSet =
            serde_json::from_slice(json).map_err(|e| format!("not a JWK set: {e}"))?;
        let mut keys = Vec::new();
        for value in raw.keys {
            let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
                continue;
            };
            if matches!(
                jwk.common.public_key_use,
                Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
            ) {
                continue;
            }
            let alg = match &jwk.common.key_algorithm {
                None => None,
                Some(a) => match Algorithm::from_str(&a.to_string()) {
                    Ok(a) if algorithms.contains(&a) => Some(a),
                    _ => continue,
                },
            };
            let Ok(key) = DecodingKey::from_jwk(&jwk) else {
                continue;
            };
            if !algorithms.iter().any(|a| a.family() == key.family()) {
                continue;
            }
            keys.push(KeyEntry {
                kid: jwk.common.key_id.clone(),
                alg,
                key,
            });
        }
        if keys.is_empty() {
            return Err(format!(
                "the JWK set has no signing key for {}",
                algorithms
                    .iter()
                    .map(|a| format!("{a:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Ok(KeySet { keys })
    }

    /// A set of one key (an HMAC secret).
    pub(crate) fn single(key: DecodingKey) -> KeySet {
        KeySet {
            keys: vec![KeyEntry {
                kid: None,
                alg: None,
                key,
            }],
        }
    }

    /// The keys that may have signed a token with `kid` and `alg`: the
    /// keys with that `kid` (any key when the token names none), whose own
    /// `alg`, if any, is `alg`.
    pub(crate) fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> impl Iterator<Item = &'a KeyEntry> + 'a {
        self.keys.iter().filter(move |k| {
            let kid_ok = match kid {
                Some(kid) => k.kid.as_deref() == Some(kid),
                None => true,
            };
            kid_ok && k.alg.is_none_or(|a| a == alg)
        })
    }

    /// Whether a key has this `kid`.
    pub(crate) fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// The key ids (keys without one left out).
    pub(crate) fn kids(&self) -> Vec<String> {
        self.keys.iter().filter_map(|k| k.kid.clone()).collect()
    }
}
