//! Login sessions: what a refresh token stands for. In memory by default;
//! in Redis when the system is given a URL (feature `redis`, on by
//! default), shared by every user-service process using the same prefix.
//!
//! A session has an id (`sid`, also in its access tokens) and the account
//! it belongs to, and lives for the store's TTL, renewed by each refresh.
//! Its refresh token is `{sid}.{secret}`: the store keeps only the
//! secret's SHA-256. A refresh **rotates** the secret (the token just used
//! stops working); ending the session — logout — makes every refresh fail.
//! Access tokens already issued stay valid until they expire (they are
//! checked by the gateway without calling user-service): keep their TTL
//! short.
//!
//! In Redis a session is the hash `{prefix}session:{sid}` (`sub`,
//! `secret`) with the TTL as the key's expiry; rotation and logout are Lua
//! scripts, so two refreshes with the same token cannot both succeed.
//!
//! # Example
//!
//! ```
//! # #[tokio::main]
//! # async fn main() -> Result<(), msp_core::BoxError> {
//! use ecommerce::services::user::sessions::SessionStore;
//! let sessions = SessionStore::memory(std::time::Duration::from_secs(3600));
//! let (session, token) = sessions.create("ada@example.com").await?;
//! let (again, rotated) = sessions.refresh(&token).await?.ok_or("a live session")?;
//! assert_eq!((again.sid.as_str(), again.sub.as_str()), (session.sid.as_str(), "ada@example.com"));
//! assert!(sessions.refresh(&token).await?.is_none(), "the old token was rotated away");
//! assert!(sessions.end(&rotated).await?);
//! assert!(sessions.refresh(&rotated).await?.is_none(), "logged out");
//! # Ok(())
//! # }
//! ```

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use msp_core::BoxError;
use msp_gateway::auth::hash_api_key;
use rand::RngCore;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::time::Instant;

/// A live session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Its id (the access tokens' `sid`).
    pub sid: String,
    /// The account (the tokens' `sub`).
    pub sub: String,
}

/// Where sessions live.
#[derive(Debug, Clone)]
pub enum SessionStore {
    /// In this process (lost on restart).
    Memory(MemorySessions),
    /// In Redis.
    #[cfg(feature = "redis")]
    Redis(RedisSessions),
}

/// A refresh token split into the session id and the secret's digest;
/// `None` when it does not have the `{sid}.{secret}` shape.
fn parse(token: &str) -> Option<(&str, String)> {
    let (sid, secret) = token.split_once('.')?;
    let ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    (ok(sid) && ok(secret)).then(|| (sid, hash_api_key(secret)))
}

/// 32 random bytes, URL-safe base64.
fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn same(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl SessionStore {
    /// Sessions in this process, each living `ttl` after its last use.
    pub fn memory(ttl: Duration) -> Self {
        SessionStore::Memory(MemorySessions {
            ttl,
            sessions: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// Sessions in the Redis at `url` under keys starting with `prefix`,
    /// each living `ttl` after its last use. Connects lazily: a Redis that
    /// is down fails the logins, not the start.
    #[cfg(feature = "redis")]
    pub fn redis(url: &str, prefix: &str, ttl: Duration) -> Result<Self, BoxError> {
        use redis::aio::{ConnectionManager, ConnectionManagerConfig};
        let client = redis::Client::open(url).map_err(|e| format!("redis url {url:?}: {e}"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(SessionStore::Redis(RedisSessions {
            conn,
            prefix: prefix.to_owned(),
            ttl,
        }))
    }

    /// How long a session lives after its last use.
    pub fn ttl(&self) -> Duration {
        match self {
            SessionStore::Memory(m) => m.ttl,
            #[cfg(feature = "redis")]
            SessionStore::Redis(r) => r.ttl,
        }
    }

    /// Starts a session for `sub`: the session and its refresh token.
    pub async fn create(&self, sub: &str) -> Result<(Session, String), BoxError> {
        let session = Session {
            sid: uuid::Uuid::new_v4().simple().to_string(),
            sub: sub.to_owned(),
        };
        let secret = new_secret();
        let digest = hash_api_key(&secret);
        match self {
            SessionStore::Memory(m) => m.insert(&session, digest),
            #[cfg(feature = "redis")]
            SessionStore::Redis(r) => r.insert(&session, &digest).await?,
        }
        let token = format!("{}.{secret}", session.sid);
        Ok((session, token))
    }

    /// The session of a live refresh token and its next refresh token (the
    /// one given stops working); `None` for an unknown, rotated, ended or
    /// expired token.
    pub async fn refresh(&self, token: &str) -> Result<Option<(Session, String)>, BoxError> {
        let Some((sid, digest)) = parse(token) else {
            return Ok(None);
        };
        let secret = new_secret();
        let next = hash_api_key(&secret);
        let sub = match self {
            SessionStore::Memory(m) => m.rotate(sid, &digest, next),
            #[cfg(feature = "redis")]
            SessionStore::Redis(r) => r.rotate(sid, &digest, &next).await?,
        };
        Ok(sub.map(|sub| {
            let session = Session {
                sid: sid.to_owned(),
                sub,
            };
            (session, format!("{sid}.{secret}"))
        }))
    }

    /// Ends the session of a live refresh token (logout); whether it was
    /// live.
    pub async fn end(&self, token: &str) -> Result<bool, BoxError> {
        let Some((sid, digest)) = parse(token) else {
            return Ok(false);
        };
        match self {
            SessionStore::Memory(m) => Ok(m.remove(sid, &digest)),
            #[cfg(feature = "redis")]
            SessionStore::Redis(r) => r.remove(sid, &digest).await,
        }
    }

    /// The live session `sid`, if any.
    pub async fn get(&self, sid: &str) -> Result<Option<Session>, BoxError> {
        let sub = match self {
            SessionStore::Memory(m) => m.sub(sid),
            #[cfg(feature = "redis")]
            SessionStore::Redis(r) => r.sub(sid).await?,
        };
        Ok(sub.map(|sub| Session {
            sid: sid.to_owned(),
            sub,
        }))
    }
}

#[derive(Debug)]
struct Entry {
    sub: String,
    secret_sha256: String,
    expires: Instant,
}

/// Sessions in a map in this process; expired ones are dropped as they
/// are met and on each new session.
#[derive(Debug, Clone)]
pub struct MemorySessions {
    ttl: Duration,
    sessions: Arc<Mutex<HashMap<String, Entry>>>,
}

impl MemorySessions {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // A panic elsewhere while holding the lock leaves a usable map.
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn insert(&self, session: &Session, secret_sha256: String) {
        let now = Instant::now();
        let mut map = self.map();
        map.retain(|_, e| e.expires > now);
        map.insert(
            session.sid.clone(),
            Entry {
                sub: session.sub.clone(),
                secret_sha256,
                expires: now + self.ttl,
            },
        );
    }

    /// The live entry `sid` whose secret digest is `digest`.
    fn live<'a>(
        map: &'a mut HashMap<String, Entry>,
        sid: &str,
        digest: &str,
    ) -> Option<&'a mut Entry> {
        let now = Instant::now();
        if map.get(sid).is_some_and(|e| e.expires <= now) {
            map.remove(sid);
        }
        map.get_mut(sid).filter(|e| same(&e.secret_sha256, digest))
    }

    fn rotate(&self, sid: &str, digest: &str, next: String) -> Option<String> {
        let mut map = self.map();
        let entry = Self::live(&mut map, sid, digest)?;
        entry.secret_sha256 = next;
        entry.expires = Instant::now() + self.ttl;
        Some(entry.sub.clone())
    }

    fn remove(&self, sid: &str, digest: &str) -> bool {
        let mut map = self.map();
        let live = Self::live(&mut map, sid, digest).is_some();
        if live {
            map.remove(sid);
        }
        live
    }

    fn sub(&self, sid: &str) -> Option<String> {
        let map = self.map();
        map.get(sid)
            .filter(|e| e.expires > Instant::now())
            .map(|e| e.sub.clone())
    }
}

/// Sessions in Redis (see [the module docs](self)).
#[cfg(feature = "redis")]
#[derive(Clone)]
pub struct RedisSessions {
    conn: redis::aio::ConnectionManager,
    prefix: String,
    ttl: Duration,
}

#[cfg(feature = "redis")]
impl std::fmt::Debug for RedisSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSessions")
            .field("prefix", &self.prefix)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// Rotates the secret of a live session: KEYS[1] the session, ARGV the
/// current digest, the next one and the TTL in ms; the `sub`, or nil.
#[cfg(feature = "redis")]
const ROTATE: &str = r"
local current = redis.call('HGET', KEYS[1], 'secret')
if not current or current ~= ARGV[1] then return false end
redis.call('HSET', KEYS[1], 'secret', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return redis.call('HGET', KEYS[1], 'sub')
";

/// Deletes a live session if the digest matches: 1, else 0.
#[cfg(feature = "redis")]
const END: &str = r"
local current = redis.call('HGET', KEYS[1], 'secret')
if not current or current ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
";

#[cfg(feature = "redis")]
impl RedisSessions {
    /// The key of session `sid`.
    pub fn key(&self, sid: &str) -> String {
        format!("{}session:{sid}", self.prefix)
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    async fn insert(&self, session: &Session, digest: &str) -> Result<(), BoxError> {
        let key = self.key(&session.sid);
        let mut conn = self.conn.clone();
        redis::pipe()
            .atomic()
            .hset_multiple(&key, &[("sub", session.sub.as_str()), ("secret", digest)])
            .ignore()
            .pexpire(&key, i64::try_from(self.ttl_ms()).unwrap_or(i64::MAX))
            .ignore()
            .exec_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn rotate(
        &self,
        sid: &str,
        digest: &str,
        next: &str,
    ) -> Result<Option<String>, BoxError> {
        let mut conn = self.conn.clone();
        Ok(redis::Script::new(ROTATE)
            .key(self.key(sid))
            .arg(digest)
            .arg(next)
            .arg(self.ttl_ms())
            .invoke_async(&mut conn)
            .await?)
    }

    async fn remove(&self, sid: &str, digest: &str) -> Result<bool, BoxError> {
        let mut conn = self.conn.clone();
        let removed: i64 = redis::Script::new(END)
            .key(self.key(sid))
            .arg(digest)
            .invoke_async(&mut conn)
            .await?;
        Ok(removed == 1)
    }

    async fn sub(&self, sid: &str) -> Result<Option<String>, BoxError> {
        let mut conn = self.conn.clone();
        Ok(redis::cmd("HGET")
            .arg(self.key(sid))
            .arg("sub")
            .query_async(&mut conn)
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::SessionStore;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_session_lives_its_ttl_after_its_last_refresh() {
        let sessions = SessionStore::memory(Duration::from_secs(60));
        let (session, token) = sessions.create("ada@example.com").await.expect("created");
        tokio::time::advance(Duration::from_secs(59)).await;
        let (_, token) = sessions
            .refresh(&token)
            .await
            .expect("store")
            .expect("live");
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(
            sessions.get(&session.sid).await.expect("store").is_some(),
            "renewed at 59 s"
        );
        let (_, token) = sessions
            .refresh(&token)
            .await
            .expect("store")
            .expect("live");
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(sessions.get(&session.sid).await.expect("store").is_none());
        assert!(
            sessions.refresh(&token).await.expect("store").is_none(),
            "expired"
        );
        assert!(!sessions.end(&token).await.expect("store"));
    }

    #[tokio::test]
    async fn malformed_tokens_are_refused_not_errors() {
        let sessions = SessionStore::memory(Duration::from_secs(60));
        for token in ["", ".", "abc", "a.b.c", "a b.c", &"x".repeat(200)] {
            assert!(
                sessions.refresh(token).await.expect("no error").is_none(),
                "{token:?}"
            );
            assert!(!sessions.end(token).await.expect("no error"), "{token:?}");
        }
    }
}
