//! Feature flags as typed configuration, with stable percentage rollout.
//!
//! A [`FeatureFlag`] is `enabled`, a `rollout_percent` and per-key
//! `overrides`. For a key (a user id, a tenant), the decision is:
//!
//! 1. an override for the key wins;
//! 2. otherwise a disabled flag is off;
//! 3. otherwise the key is in the rollout when its bucket — FNV-1a (64-bit)
//!    of `"{salt}:{key}"` modulo 10 000 — is below `rollout_percent × 100`.
//!
//! The hash is fixed (not `std`'s randomly seeded one), so every process and
//! every restart puts a key in the same bucket, and raising the percentage
//! only adds keys. [`FeatureFlags`] salts each flag with its name so the
//! same 10 % of users do not get every experiment.
//!
//! Flags live in your configuration struct and are read through
//! [`Watched`](crate::Watched), so they change live with the file.
//!
//! # Example
//!
//! ```
//! use msp_config::{FeatureFlags, Loader};
//!
//! #[derive(serde::Deserialize)]
//! struct Cfg { flags: FeatureFlags }
//!
//! let dir = tempfile::tempdir()?;
//! std::fs::write(dir.path().join("shop.yaml"), "
//! flags:
//!   new-checkout:
//!     enabled: true
//!     rollout_percent: 25
//!     overrides:
//!       alice: true
//!       bob: false
//! ")?;
//! let cfg: Cfg = Loader::new("shop").dir(dir.path()).load_sync()?;
//! assert!(cfg.flags.is_enabled("new-checkout", "alice"));
//! assert!(!cfg.flags.is_enabled("new-checkout", "bob"));
//! assert!(!cfg.flags.is_enabled("unknown-flag", "alice"));
//! let on = (0..10_000).filter(|i| cfg.flags.is_enabled("new-checkout", &i.to_string())).count();
//! assert!((2_000..3_000).contains(&on), "{on}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// One feature flag. Missing fields take their defaults: off, 100 %
/// rollout once enabled, no overrides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeatureFlag {
    /// Whether the flag is on at all (overrides apply either way).
    pub enabled: bool,
    /// The share of keys the flag is on for, 0–100 (fractions allowed).
    pub rollout_percent: f64,
    /// Per-key decisions that win over everything else.
    pub overrides: HashMap<String, bool>,
    /// Salt for the rollout hash; [`FeatureFlags`] uses the flag's name
    /// when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub salt: Option<String>,
}

impl Default for FeatureFlag {
    fn default() -> Self {
        FeatureFlag {
            enabled: false,
            rollout_percent: 100.0,
            overrides: HashMap::new(),
            salt: None,
        }
    }
}

impl FeatureFlag {
    /// A flag on for everyone.
    pub fn on() -> Self {
        FeatureFlag {
            enabled: true,
            ..FeatureFlag::default()
        }
    }

    /// A flag on for `percent` % of keys.
    pub fn rollout(percent: f64) -> Self {
        FeatureFlag {
            enabled: true,
            rollout_percent: percent,
            ..FeatureFlag::default()
        }
    }

    /// Whether the flag is on for `key`, salted with `self.salt` (or
    /// nothing).
    pub fn is_enabled_for(&self, key: &str) -> bool {
        self.evaluate(self.salt.as_deref().unwrap_or(""), key)
    }

    fn evaluate(&self, salt: &str, key: &str) -> bool {
        if let Some(&forced) = self.overrides.get(key) {
            return forced;
        }
        if !self.enabled {
            return false;
        }
        if self.rollout_percent >= 100.0 {
            return true;
        }
        if self.rollout_percent.is_nan() || self.rollout_percent <= 0.0 {
            return false;
        }
        f64::from(bucket(salt, key)) < self.rollout_percent * 100.0
    }
}

/// Flags by name (`#[serde(transparent)]` over a map).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FeatureFlags(pub HashMap<String, FeatureFlag>);

impl FeatureFlags {
    /// Whether flag `name` is on for `key`; an unknown flag is off. The
    /// rollout is salted with the flag's name unless the flag sets a salt.
    pub fn is_enabled(&self, name: &str, key: &str) -> bool {
        self.0
            .get(name)
            .is_some_and(|f| f.evaluate(f.salt.as_deref().unwrap_or(name), key))
    }

    /// The flag named `name`.
    pub fn get(&self, name: &str) -> Option<&FeatureFlag> {
        self.0.get(name)
    }
}

/// The rollout bucket of `key`, in `0..10_000`: FNV-1a 64 of
/// `"{salt}:{key}"` modulo 10 000. Stable across processes and platforms.
pub fn bucket(salt: &str, key: &str) -> u32 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for b in salt.bytes().chain(std::iter::once(b':')).chain(key.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(PRIME);
    }
    (h % 10_000) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_fixed() {
        // FNV-1a 64 of ":" (computed independently) pins the algorithm.
        assert_eq!(bucket("", ""), (0xaf63_b74c_8601_adad_u64 % 10_000) as u32);
        assert_eq!(bucket("f", "user-1"), bucket("f", "user-1"));
        assert_ne!(bucket("f", "user-1"), bucket("g", "user-1"));
    }

    #[test]
    fn rollout_grows_monotonically() {
        let small = FeatureFlag::rollout(10.0);
        let big = FeatureFlag::rollout(50.0);
        for i in 0..2_000 {
            let k = format!("user-{i}");
            if small.is_enabled_for(&k) {
                assert!(big.is_enabled_for(&k));
            }
        }
        let on = (0..10_000)
            .filter(|i| small.is_enabled_for(&i.to_string()))
            .count();
        assert!((800..1_200).contains(&on), "{on}");
    }

    #[test]
    fn overrides_and_disabled() {
        let mut f = FeatureFlag::default();
        f.overrides.insert("vip".into(), true);
        assert!(f.is_enabled_for("vip"));
        assert!(!f.is_enabled_for("other"));
        f.enabled = true;
        f.overrides.insert("blocked".into(), false);
        assert!(!f.is_enabled_for("blocked"));
        assert!(f.is_enabled_for("other"));
        f.rollout_percent = 0.0;
        assert!(!f.is_enabled_for("other"));
    }
}
