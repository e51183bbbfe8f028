//! Service names, instance ids and instances.
//!
//! These are the types a registry stores, a balancer picks from and a
//! discovery client resolves to. All of them validate their input: an empty
//! name, a weight of zero or an unparsable address is a typed
//! [`InvalidInstance`] error, both when built in code and when deserialized
//! from JSON or YAML (a registry entry written by another process is input
//! like any other).
//!
//! # Example
//!
//! ```
//! use msp_core::instance::{Instance, InstanceId, ServiceName, InvalidInstance};
//!
//! let svc = ServiceName::new("payment-service")?;
//! let inst = Instance::builder(svc.clone(), "10.0.0.7:9000".parse()?)
//!     .id(InstanceId::new("payment-1")?)
//!     .metadata("version", "1.4.2")
//!     .weight(3)
//!     .zone("zone-a")
//!     .build()?;
//!
//! // Round-trips through JSON, as registries store it.
//! let json = serde_json::to_string(&inst)?;
//! let back: Instance = serde_json::from_str(&json)?;
//! assert_eq!(back, inst);
//!
//! // Bad input is a typed error, never a panic.
//! assert!(matches!(ServiceName::new(""), Err(InvalidInstance::EmptyServiceName)));
//! let bad = r#"{"id":"x","service":"s","addr":"not-an-addr","weight":1}"#;
//! assert!(serde_json::from_str::<Instance>(bad).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;

/// Why a service name, instance id or instance was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidInstance {
    /// The service name was empty.
    #[error("service name is empty")]
    EmptyServiceName,
    /// The service name contained a character outside `[A-Za-z0-9._-]`.
    #[error(
        "service name {name:?} contains {ch:?}; allowed are ASCII letters, digits, '.', '_' and '-'"
    )]
    BadServiceName {
        /// The rejected name.
        name: String,
        /// The first character that is not allowed.
        ch: char,
    },
    /// The service name was longer than [`ServiceName::MAX_LEN`] bytes.
    #[error("service name is {len} bytes long, the limit is {max}")]
    ServiceNameTooLong {
        /// The length of the rejected name.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The instance id was empty.
    #[error("instance id is empty")]
    EmptyInstanceId,
    /// The instance id contained a control character or `/` (ids become
    /// parts of registry keys).
    #[error("instance id {0:?} contains a control character or '/'")]
    BadInstanceId(String),
    /// The weight was zero; an instance that should get no traffic must be
    /// deregistered or marked unhealthy instead.
    #[error("instance weight must be at least 1, got 0")]
    ZeroWeight,
    /// The address did not parse as `ip:port`.
    #[error("instance address {addr:?} is not a socket address (ip:port): {reason}")]
    BadAddress {
        /// The rejected address.
        addr: String,
        /// The parser's message.
        reason: String,
    },
}

/// The logical name of a service, such as `order-service`.
///
/// Names are 1 to [`ServiceName::MAX_LEN`] bytes of ASCII letters, digits,
/// `.`, `_` and `-`, so they are safe as registry keys, DNS labels, metric
/// labels and URI authorities. Cloning is cheap (a reference count).
///
/// ```
/// use msp_core::ServiceName;
/// let name: ServiceName = "inventory".parse()?;
/// assert_eq!(name.to_string(), "inventory");
/// assert!("bad name".parse::<ServiceName>().is_err());
/// # Ok::<(), msp_core::instance::InvalidInstance>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ServiceName(Arc<str>);

impl ServiceName {
    /// The longest accepted name, in bytes (a DNS name's limit).
    pub const MAX_LEN: usize = 253;

    /// Validates and wraps a service name.
    pub fn new(name: impl AsRef<str>) -> Result<Self, InvalidInstance> {
        let name = name.as_ref();
        if name.is_empty() {
            return Err(InvalidInstance::EmptyServiceName);
        }
        if name.len() > Self::MAX_LEN {
            return Err(InvalidInstance::ServiceNameTooLong {
                len: name.len(),
                max: Self::MAX_LEN,
            });
        }
        if let Some(ch) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(InvalidInstance::BadServiceName {
                name: name.to_owned(),
                ch,
            });
        }
        Ok(Self(Arc::from(name)))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ServiceName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for ServiceName {
    type Err = InvalidInstance;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for ServiceName {
    type Error = InvalidInstance;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl TryFrom<&str> for ServiceName {
    type Error = InvalidInstance;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl From<ServiceName> for String {
    fn from(s: ServiceName) -> Self {
        s.0.to_string()
    }
}

/// The unique id of one instance of a service, such as `order-1` or a UUID.
///
/// Any non-empty string without control characters or `/` (ids become the
/// last segment of registry keys).
///
/// ```
/// use msp_core::InstanceId;
/// let id = InstanceId::new("order-1")?;
/// assert_eq!(id.as_str(), "order-1");
/// assert!(InstanceId::new("a/b").is_err());
/// assert_ne!(InstanceId::random(), InstanceId::random());
/// # Ok::<(), msp_core::instance::InvalidInstance>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InstanceId(Arc<str>);

impl InstanceId {
    /// Validates and wraps an instance id.
    pub fn new(id: impl AsRef<str>) -> Result<Self, InvalidInstance> {
        let id = id.as_ref();
        if id.is_empty() {
            return Err(InvalidInstance::EmptyInstanceId);
        }
        if id.chars().any(|c| c.is_control() || c == '/') {
            return Err(InvalidInstance::BadInstanceId(id.to_owned()));
        }
        Ok(Self(Arc::from(id)))
    }

    /// A fresh random id (128 random bits, hex encoded).
    pub fn random() -> Self {
        let bits: u128 = rand::random();
        Self(Arc::from(format!("{bits:032x}")))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for InstanceId {
    type Err = InvalidInstance;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for InstanceId {
    type Error = InvalidInstance;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl From<InstanceId> for String {
    fn from(s: InstanceId) -> Self {
        s.0.to_string()
    }
}

/// One running copy of a service: where it listens and how to pick it.
///
/// Serializes to (and validates when deserialized from) JSON such as
/// `{"id":"order-1","service":"order","addr":"10.0.0.1:8080","weight":1,"zone":"a","metadata":{}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawInstance", into = "RawInstance")]
pub struct Instance {
    id: InstanceId,
    service: ServiceName,
    addr: SocketAddr,
    metadata: BTreeMap<String, String>,
    weight: u32,
    zone: Option<String>,
}

impl Instance {
    /// Starts building an instance of `service` listening on `addr`.
    ///
    /// The id defaults to `{service}-{addr}`, the weight to 1, no zone.
    pub fn builder(service: ServiceName, addr: SocketAddr) -> InstanceBuilder {
        InstanceBuilder {
            id: None,
            service,
            addr,
            metadata: BTreeMap::new(),
            weight: 1,
            zone: None,
        }
    }

    /// Builds an instance from raw strings, validating each part.
    ///
    /// ```
    /// use msp_core::Instance;
    /// let i = Instance::parse("user", "127.0.0.1:3000")?;
    /// assert_eq!(i.addr().port(), 3000);
    /// assert!(Instance::parse("user", "localhost").is_err());
    /// # Ok::<(), msp_core::instance::InvalidInstance>(())
    /// ```
    pub fn parse(service: &str, addr: &str) -> Result<Self, InvalidInstance> {
        let service = ServiceName::new(service)?;
        let addr = parse_addr(addr)?;
        Instance::builder(service, addr).build()
    }

    /// The instance id.
    pub fn id(&self) -> &InstanceId {
        &self.id
    }

    /// The service this is an instance of.
    pub fn service(&self) -> &ServiceName {
        &self.service
    }

    /// The address the instance listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Free-form metadata (version, protocol, tags…).
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// The relative weight used by weighted balancing, at least 1.
    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// The zone (availability zone, rack…) used by zone-preferring balancing.
    pub fn zone(&self) -> Option<&str> {
        self.zone.as_deref()
    }
}

/// Builder for [`Instance`], from [`Instance::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct InstanceBuilder {
    id: Option<InstanceId>,
    service: ServiceName,
    addr: SocketAddr,
    metadata: BTreeMap<String, String>,
    weight: u32,
    zone: Option<String>,
}

impl InstanceBuilder {
    /// Sets the instance id (default `{service}-{addr}`).
    pub fn id(mut self, id: InstanceId) -> Self {
        self.id = Some(id);
        self
    }

    /// Adds one metadata entry.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Sets the weight; 0 is rejected by [`build`](Self::build).
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// Sets the zone.
    pub fn zone(mut self, zone: impl Into<String>) -> Self {
        self.zone = Some(zone.into());
        self
    }

    /// Validates and builds the instance.
    pub fn build(self) -> Result<Instance, InvalidInstance> {
        if self.weight == 0 {
            return Err(InvalidInstance::ZeroWeight);
        }
        let id = match self.id {
            Some(id) => id,
            None => InstanceId::new(format!("{}-{}", self.service, self.addr))?,
        };
        Ok(Instance {
            id,
            service: self.service,
            addr: self.addr,
            metadata: self.metadata,
            weight: self.weight,
            zone: self.zone,
        })
    }
}

fn parse_addr(addr: &str) -> Result<SocketAddr, InvalidInstance> {
    addr.parse()
        .map_err(|e: std::net::AddrParseError| InvalidInstance::BadAddress {
            addr: addr.to_owned(),
            reason: e.to_string(),
        })
}

/// The wire form of [`Instance`]; validated by `TryFrom`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInstance {
    id: String,
    service: String,
    addr: String,
    #[serde(default = "one")]
    weight: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    zone: Option<String>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
}

fn one() -> u32 {
    1
}

impl TryFrom<RawInstance> for Instance {
    type Error = InvalidInstance;
    fn try_from(raw: RawInstance) -> Result<Self, Self::Error> {
        let service = ServiceName::new(&raw.service)?;
        let addr = parse_addr(&raw.addr)?;
        let mut b = Instance::builder(service, addr)
            .id(InstanceId::new(&raw.id)?)
            .weight(raw.weight);
        b.metadata = raw.metadata;
        b.zone = raw.zone;
        b.build()
    }
}

impl From<Instance> for RawInstance {
    fn from(i: Instance) -> Self {
        RawInstance {
            id: i.id.into(),
            service: i.service.into(),
            addr: i.addr.to_string(),
            weight: i.weight,
            zone: i.zone,
            metadata: i.metadata,
        }
    }
}
