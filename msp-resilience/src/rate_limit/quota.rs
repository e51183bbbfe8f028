//! Quotas: how many requests per period, with a burst.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// How many requests a limiter admits: `limit` per `period`, spread evenly
/// (one every `period / limit`), with up to `burst` admitted at once.
///
/// Parse one from a string — `1000/hour`, `50/s`, `10/min`, `5/second`,
/// `100/30s`, with an optional burst: `50/s burst 100` — or deserialize it
/// from such a string or from `{limit, period, burst}`. Without a burst, the
/// whole `limit` may be used at once (the burst equals the limit).
///
/// ```
/// use msp_resilience::rate_limit::Quota;
/// use std::time::Duration;
///
/// let q: Quota = "1000/hour".parse()?;
/// assert_eq!(q.limit(), 1000);
/// assert_eq!(q.period(), Duration::from_secs(3600));
/// assert_eq!(q.burst(), 1000);
///
/// let q: Quota = "50/s burst 100".parse()?;
/// assert_eq!(q.emission_interval(), Duration::from_millis(20));
/// assert_eq!(q.burst(), 100);
///
/// assert!("50 per s".parse::<Quota>().is_err());
/// # Ok::<(), msp_resilience::rate_limit::InvalidQuota>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    limit: u32,
    period: Duration,
    burst: u32,
}

/// Why a quota was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidQuota {
    /// No `/` between count and period.
    #[error("quota {0:?} must look like `100/s`, `1000/hour` or `50/s burst 100`")]
    Syntax(String),
    /// The count is not a positive integer.
    #[error("quota count {0:?} is not a positive integer")]
    Count(String),
    /// The period is not a unit or a duration.
    #[error("quota period {0:?} is not a unit (s, min, hour, day) or a duration like `30s`")]
    Period(String),
    /// The burst is not a positive integer.
    #[error("quota burst {0:?} is not a positive integer")]
    Burst(String),
    /// The period divided by the count is under a nanosecond.
    #[error("quota of {limit} per {period:?} is finer than one request per nanosecond")]
    TooFine {
        /// The count.
        limit: u32,
        /// The period.
        period: Duration,
    },
}

impl Quota {
    /// `limit` requests per `period`, burst = `limit`.
    pub fn new(limit: u32, period: Duration) -> Result<Self, InvalidQuota> {
        Self::with_burst(limit, period, limit)
    }

    /// `limit` requests per `period`, up to `burst` at once.
    pub fn with_burst(limit: u32, period: Duration, burst: u32) -> Result<Self, InvalidQuota> {
        if limit == 0 {
            return Err(InvalidQuota::Count(limit.to_string()));
        }
        if burst == 0 {
            return Err(InvalidQuota::Burst(burst.to_string()));
        }
        let q = Quota {
            limit,
            period,
            burst,
        };
        if q.emission_nanos() == 0 || q.emission_nanos().checked_mul(u64::from(burst)).is_none() {
            return Err(InvalidQuota::TooFine { limit, period });
        }
        Ok(q)
    }

    /// `limit` per second.
    pub fn per_second(limit: u32) -> Result<Self, InvalidQuota> {
        Self::new(limit, Duration::from_secs(1))
    }

    /// `limit` per minute.
    pub fn per_minute(limit: u32) -> Result<Self, InvalidQuota> {
        Self::new(limit, Duration::from_secs(60))
    }

    /// `limit` per hour.
    pub fn per_hour(limit: u32) -> Result<Self, InvalidQuota> {
        Self::new(limit, Duration::from_secs(3600))
    }

    /// The same rate with another burst.
    pub fn burst_of(self, burst: u32) -> Result<Self, InvalidQuota> {
        Self::with_burst(self.limit, self.period, burst)
    }

    /// Requests per period.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Requests admitted at once.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// The time between two requests at the sustained rate.
    pub fn emission_interval(&self) -> Duration {
        Duration::from_nanos(self.emission_nanos())
    }

    pub(crate) fn emission_nanos(&self) -> u64 {
        let nanos = self.period.as_nanos() / u128::from(self.limit);
        u64::try_from(nanos).unwrap_or(u64::MAX)
    }
}

fn parse_period(s: &str) -> Result<Duration, InvalidQuota> {
    let unit = match s {
        "ns" => Some(Duration::from_nanos(1)),
        "ms" | "millisecond" | "milliseconds" => Some(Duration::from_millis(1)),
        "s" | "sec" | "secs" | "second" | "seconds" => Some(Duration::from_secs(1)),
        "m" | "min" | "mins" | "minute" | "minutes" => Some(Duration::from_secs(60)),
        "h" | "hr" | "hrs" | "hour" | "hours" => Some(Duration::from_secs(3600)),
        "d" | "day" | "days" => Some(Duration::from_secs(86_400)),
        _ => None,
    };
    match unit {
        Some(d) => Ok(d),
        None => match humantime::parse_duration(s) {
            Ok(d) if !d.is_zero() => Ok(d),
            _ => Err(InvalidQuota::Period(s.to_owned())),
        },
    }
}

fn parse_positive(s: &str) -> Option<u32> {
    s.parse::<u32>().ok().filter(|n| *n > 0)
}

impl FromStr for Quota {
    type Err = InvalidQuota;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let syntax = || InvalidQuota::Syntax(input.to_owned());
        let (count, rest) = input.split_once('/').ok_or_else(syntax)?;
        let count = count.trim();
        let limit = parse_positive(count).ok_or_else(|| InvalidQuota::Count(count.to_owned()))?;
        let mut words = rest.split_whitespace();
        let period = parse_period(words.next().ok_or_else(syntax)?)?;
        let burst = match (words.next(), words.next(), words.next()) {
            (None, _, _) => limit,
            (Some("burst"), Some(b), None) => {
                parse_positive(b).ok_or_else(|| InvalidQuota::Burst(b.to_owned()))?
            }
            _ => return Err(syntax()),
        };
        Quota::with_burst(limit, period, burst)
    }
}

impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}",
            self.limit,
            // "1h30m", not "1h 30m": the parser reads the period as one word.
            humantime::format_duration(self.period)
                .to_string()
                .replace(' ', "")
        )?;
        if self.burst != self.limit {
            write!(f, " burst {}", self.burst)?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum QuotaRepr {
    Text(String),
    Fields(QuotaFields),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QuotaFields {
    limit: u32,
    #[serde(with = "humantime_serde")]
    period: Duration,
    #[serde(default)]
    burst: Option<u32>,
}

impl<'de> Deserialize<'de> for Quota {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let q = match QuotaRepr::deserialize(d)? {
            QuotaRepr::Text(s) => s.parse(),
            QuotaRepr::Fields(f) => {
                Quota::with_burst(f.limit, f.period, f.burst.unwrap_or(f.limit))
            }
        };
        q.map_err(serde::de::Error::custom)
    }
}

impl Serialize for Quota {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_round_trips() {
        for s in ["1000/hour", "50/s burst 100", "7/30s", "3/day"] {
            let q: Quota = s.parse().expect("valid");
            let again: Quota = q.to_string().parse().expect("round trip");
            assert_eq!(q, again, "{s} -> {q}");
        }
    }
}
