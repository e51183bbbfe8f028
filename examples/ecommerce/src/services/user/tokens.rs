//! Access tokens: user-service's Ed25519 signing key (created on first run,
//! kept in a file under the data dir), its JWK set, and EdDSA-signed JWTs.
//!
//! EdDSA because the gateway verifies it several times faster than RS256
//! with jsonwebtoken's RustCrypto backend (4–5× in one interleaved run;
//! BENCHMARKS.md, "user-service's access tokens"), and its keys are 32
//! random bytes, with no key generation library. The key is stored as its PKCS#8 v1 DER (48 bytes,
//! mode 0600); the JWK set publishes its public half, with the key's RFC
//! 7638 thumbprint as `kid`.
//!
//! # Example
//!
//! ```
//! # fn main() -> Result<(), msp_core::BoxError> {
//! use ecommerce::services::user::tokens::{TokenIssuer, TokenSettings};
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("jwt-ed25519.pk8");
//! let issuer = TokenIssuer::load_or_create(&path, TokenSettings::default())?;
//! let (token, claims) = issuer.issue("ada@example.com", "session-1")?;
//! assert_eq!(issuer.verify(&token)?, claims);
//! assert_eq!(issuer.jwks()["keys"][0]["kid"], issuer.kid());
//!
//! // The same file gives the same key on the next run.
//! let again = TokenIssuer::load_or_create(&path, TokenSettings::default())?;
//! assert_eq!(again.verify(&token)?.sub, "ada@example.com");
//! # Ok(())
//! # }
//! ```

use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use msp_core::BoxError;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The `alg` of the tokens (what the gateway's provider pins).
pub const ALGORITHM: &str = "EdDSA";

/// The PKCS#8 v1 header of an Ed25519 private key (RFC 8410): the key file
/// is these 16 bytes and the 32-byte seed.
const PKCS8_ED25519: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// What the tokens say about themselves and how long they live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSettings {
    /// The `iss` claim (default `user-service`).
    pub issuer: String,
    /// The `aud` claim (default `ecommerce`).
    pub audience: String,
    /// How long an access token is valid (default 15 min).
    pub access_ttl: Duration,
}

impl Default for TokenSettings {
    fn default() -> Self {
        TokenSettings {
            issuer: "user-service".to_owned(),
            audience: "ecommerce".to_owned(),
            access_ttl: Duration::from_secs(15 * 60),
        }
    }
}

/// An access token's claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The account (its email).
    pub sub: String,
    /// Who issued it ([`TokenSettings::issuer`]).
    pub iss: String,
    /// Who it is for ([`TokenSettings::audience`]).
    pub aud: String,
    /// Expiry (seconds since the Unix epoch).
    pub exp: u64,
    /// Issued at (seconds since the Unix epoch).
    pub iat: u64,
    /// The token's unique id.
    pub jti: String,
    /// The session it belongs to (see [`super::sessions`]).
    pub sid: String,
}

/// Signs access tokens with the service's key and publishes its JWK set.
pub struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    kid: String,
    jwks: serde_json::Value,
    settings: TokenSettings,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("kid", &self.kid)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Seconds since the Unix epoch.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl TokenIssuer {
    /// The key in the file at `path`, or a new one written there (mode
    /// 0600) when there is none. A file that is not an Ed25519 PKCS#8 key
    /// is an error, never replaced.
    pub fn load_or_create(path: &Path, settings: TokenSettings) -> Result<Self, BoxError> {
        let der = match std::fs::read(path) {
            Ok(der) => der,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_key_file(path)?,
            Err(e) => return Err(format!("reading {}: {e}", path.display()).into()),
        };
        if der.len() != 48 || der[..16] != PKCS8_ED25519 {
            return Err(format!(
                "{} is not an Ed25519 PKCS#8 key (48 bytes); move it away to get a new key",
                path.display()
            )
            .into());
        }
        Self::from_pkcs8(&der, settings)
    }

    fn from_pkcs8(der: &[u8], settings: TokenSettings) -> Result<Self, BoxError> {
        let encoding = EncodingKey::from_ed_der(der);
        let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::EdDSA)?;
        let kid = jwk.thumbprint(ThumbprintHash::SHA256)?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        jwk.common.key_algorithm = Some(KeyAlgorithm::EdDSA);
        let decoding = DecodingKey::from_jwk(&jwk)?;
        let jwks = serde_json::to_value(JwkSet { keys: vec![jwk] })?;
        Ok(TokenIssuer {
            encoding,
            decoding,
            kid,
            jwks,
            settings,
        })
    }

    /// The key's id (`kid`: its RFC 7638 SHA-256 thumbprint).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The JWK set served at `/.well-known/jwks.json`.
    pub fn jwks(&self) -> &serde_json::Value {
        &self.jwks
    }

    /// The settings.
    pub fn settings(&self) -> &TokenSettings {
        &self.settings
    }

    /// A new access token for `sub` in session `sid`, and its claims.
    pub fn issue(&self, sub: &str, sid: &str) -> Result<(String, Claims), BoxError> {
        let iat = unix_now();
        let claims = Claims {
            sub: sub.to_owned(),
            iss: self.settings.issuer.clone(),
            aud: self.settings.audience.clone(),
            exp: iat + self.settings.access_ttl.as_secs(),
            iat,
            jti: uuid::Uuid::new_v4().to_string(),
            sid: sid.to_owned(),
        };
        Ok((self.sign(&claims)?, claims))
    }

    /// Signs `claims` as they are (tests make expired tokens with it).
    pub fn sign(&self, claims: &Claims) -> Result<String, BoxError> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        Ok(jsonwebtoken::encode(&header, claims, &self.encoding)?)
    }

    /// Verifies a token of this issuer (signature, `exp`, `iss`, `aud`):
    /// what the gateway checks, for callers without a gateway in front.
    pub fn verify(&self, token: &str) -> Result<Claims, BoxError> {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        Ok(jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)?.claims)
    }
}

/// Writes a new key to `path` (created, never overwritten: if another
/// process won the race, its key is read instead).
fn create_key_file(path: &Path) -> Result<Vec<u8>, BoxError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    let mut der = PKCS8_ED25519.to_vec();
    der.extend_from_slice(&seed);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(&der)?;
            file.sync_all()?;
            tracing::info!(path = %path.display(), "user-service: new token signing key");
            Ok(der)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(std::fs::read(path)?),
        Err(e) => Err(format!("creating {}: {e}", path.display()).into()),
    }
}
