//! [`GatewayConfigError`]: every problem found in a gateway configuration.

use std::fmt;

/// What kind of problem a [`ConfigProblem`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProblemKind {
    /// The file could not be read.
    Io,
    /// Not valid YAML, or a value of the wrong shape: an unknown field, a
    /// missing one, a bad quota or duration (the parser stops at the first).
    Parse,
    /// A route names a service that is not in `services` (and the registry
    /// cannot discover it).
    UnknownService,
    /// Two routes match the same requests (same path, host and predicates,
    /// overlapping methods).
    Conflict,
    /// Authentication is required or named but no such provider exists.
    Auth,
    /// Any other invalid value (a path pattern, a rewrite, a weight…).
    Invalid,
}

/// Which route a problem is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRef {
    index: usize,
    path: String,
    name: Option<String>,
}

impl RouteRef {
    pub(crate) fn new(index: usize, path: &str, name: Option<&str>) -> Self {
        RouteRef {
            index,
            path: path.to_owned(),
            name: name.map(str::to_owned),
        }
    }

    /// The route's position in `routes` (0-based).
    pub fn index(&self) -> usize {
        self.index
    }

    /// The route's path pattern.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The route's name, if it has one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

impl fmt::Display for RouteRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "route #{}", self.index)?;
        match &self.name {
            Some(name) => write!(f, " ({name}, {})", self.path),
            None if self.path.is_empty() => Ok(()),
            None => write!(f, " ({})", self.path),
        }
    }
}

/// One problem in a gateway configuration: the route (if any), the field,
/// the YAML line (when loaded from YAML) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub(crate) kind: ProblemKind,
    pub(crate) route: Option<RouteRef>,
    pub(crate) field: String,
    pub(crate) line: Option<u32>,
    pub(crate) message: String,
}

impl ConfigProblem {
    pub(crate) fn new(
        kind: ProblemKind,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ConfigProblem {
            kind,
            route: None,
            field: field.into(),
            line: None,
            message: message.into(),
        }
    }

    pub(crate) fn route(mut self, route: RouteRef) -> Self {
        self.route = Some(route);
        self
    }

    /// What kind of problem this is.
    pub fn kind(&self) -> ProblemKind {
        self.kind
    }

    /// The route the problem is about (`None` for top-level settings).
    pub fn route_ref(&self) -> Option<&RouteRef> {
        self.route.as_ref()
    }

    /// The field, as a dotted path within the route (`rate_limit`,
    /// `split[1].service`) or from the document root (`auth.default_provider`).
    pub fn field(&self) -> &str {
        &self.field
    }

    /// The 1-based YAML line, when the configuration came from YAML.
    pub fn line(&self) -> Option<u32> {
        self.line
    }

    /// What is wrong.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if let Some(route) = &self.route {
            write!(f, "{route}: ")?;
        }
        if !self.field.is_empty() {
            write!(f, "`{}`: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// Why a gateway configuration was rejected: every problem found, each
/// naming its route, field and (from YAML) line.
///
/// ```
/// use msp_gateway::config::{GatewayConfig, ProblemKind};
///
/// let yaml = "routes:\n  - path: /api/*\n    service: nowhere\n";
/// let err = GatewayConfig::from_yaml(yaml, "gateway.yaml").unwrap_err();
/// let problem = &err.problems()[0];
/// assert_eq!(problem.kind(), ProblemKind::UnknownService);
/// assert_eq!(problem.route_ref().map(|r| r.index()), Some(0));
/// assert_eq!(problem.field(), "service");
/// assert_eq!(problem.line(), Some(3));
/// assert!(err.to_string().starts_with("gateway.yaml:3:"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfigError {
    origin: String,
    problems: Vec<ConfigProblem>,
}

impl GatewayConfigError {
    pub(crate) fn new(origin: impl Into<String>, problems: Vec<ConfigProblem>) -> Self {
        GatewayConfigError {
            origin: origin.into(),
            problems,
        }
    }

    /// Where the configuration came from (a file name, `"builder"`…).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Every problem, in document order (never empty).
    pub fn problems(&self) -> &[ConfigProblem] {
        &self.problems
    }
}

impl fmt::Display for GatewayConfigError {
    /// One problem per line, `origin:line: route #i (path): `field`: message`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            f.write_str(&self.origin)?;
            if let Some(line) = p.line {
                write!(f, ":{line}")?;
            }
            f.write_str(": ")?;
            if let Some(route) = &p.route {
                write!(f, "{route}: ")?;
            }
            if !p.field.is_empty() {
                write!(f, "`{}`: ", p.field)?;
            }
            f.write_str(&p.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for GatewayConfigError {}
