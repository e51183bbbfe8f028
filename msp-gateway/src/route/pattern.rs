//! Route path patterns (`/api/users/*`, `/api/users/{id}`, `/files/{*rest}`)
//! and rewrite templates, parsed once and checked at load time.

use super::normalize::normalize_path;

/// One segment of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    Static(String),
    Param(String),
    /// `{*name}`, or `*` (named `*`) which also matches the bare prefix.
    CatchAll(String),
}

/// A parsed route path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    pub(crate) segments: Vec<Segment>,
    /// Written as a trailing `/*`: also matches the prefix itself.
    pub(crate) bare_wildcard: bool,
    /// Ends with `/` (`/api/`).
    pub(crate) trailing_slash: bool,
}

impl Pattern {
    /// Parses a route path; the error says what is wrong.
    pub(crate) fn parse(path: &str) -> Result<Pattern, String> {
        let Some(rest) = path.strip_prefix('/') else {
            return Err(format!("path {path:?} must start with `/`"));
        };
        let mut segments = Vec::new();
        let mut trailing_slash = false;
        let mut bare_wildcard = false;
        let parts: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('/').collect()
        };
        let last = parts.len().saturating_sub(1);
        for (i, part) in parts.iter().enumerate() {
            let is_last = i == last;
            let seg = if part.is_empty() {
                if is_last {
                    trailing_slash = true;
                    continue;
                }
                return Err(format!("path {path:?} has an empty segment (`//`)"));
            } else if *part == "*" {
                if !is_last {
                    return Err(format!("`*` must be the last segment of {path:?}"));
                }
                bare_wildcard = true;
                Segment::CatchAll("*".to_owned())
            } else if let Some(inner) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                if let Some(name) = inner.strip_prefix('*') {
                    if !is_last {
                        return Err(format!(
                            "`{{*{name}}}` must be the last segment of {path:?}"
                        ));
                    }
                    check_name(name, path)?;
                    Segment::CatchAll(name.to_owned())
                } else {
                    check_name(inner, path)?;
                    Segment::Param(inner.to_owned())
                }
            } else if part.contains(['{', '}', '*']) {
                return Err(format!(
                    "segment {part:?} of {path:?}: a parameter is a whole segment (`{{id}}`), a wildcard the whole last one (`*`)"
                ));
            } else {
                match normalize_path(&format!("/{part}")) {
                    Ok(n) if n == format!("/{part}") => Segment::Static((*part).to_owned()),
                    Ok(n) => {
                        return Err(format!(
                            "segment {part:?} of {path:?} is not in normal form, write {:?}",
                            &n[1..]
                        ));
                    }
                    Err(e) => return Err(format!("segment {part:?} of {path:?}: {e}")),
                }
            };
            segments.push(seg);
        }
        let p = Pattern {
            segments,
            bare_wildcard,
            trailing_slash,
        };
        let mut names: Vec<&str> = p.param_names().collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("parameter `{}` appears twice in {path:?}", w[0]));
        }
        Ok(p)
    }

    /// The names of the parameters, in order (`*` for a bare wildcard).
    pub(crate) fn param_names(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Param(n) | Segment::CatchAll(n) => Some(n.as_str()),
            Segment::Static(_) => None,
        })
    }

    /// The static segments before the first parameter, as a path without a
    /// trailing `/` (`""` for none).
    pub(crate) fn static_prefix(&self) -> String {
        let mut out = String::new();
        for s in &self.segments {
            match s {
                Segment::Static(text) => {
                    out.push('/');
                    out.push_str(text);
                }
                _ => break,
            }
        }
        if self.trailing_slash
            && self
                .segments
                .iter()
                .all(|s| matches!(s, Segment::Static(_)))
        {
            out.push('/');
        }
        out
    }

    /// The pattern in matchit's syntax, parameters named by position so two
    /// patterns of the same shape give the same string.
    pub(crate) fn matchit_path(&self) -> String {
        let mut out = String::new();
        for (i, s) in self.segments.iter().enumerate() {
            out.push('/');
            match s {
                Segment::Static(text) => out.push_str(text),
                Segment::Param(_) => {
                    out.push_str("{p");
                    out.push_str(&i.to_string());
                    out.push('}');
                }
                Segment::CatchAll(_) => out.push_str("{*c}"),
            }
        }
        if self.trailing_slash || out.is_empty() {
            out.push('/');
        }
        out
    }

    /// For a trailing `/*`: the matchit paths of the bare prefix it also
    /// matches (`/api/users` and `/api/users/` for `/api/users/*`, `/` for
    /// `/*`).
    pub(crate) fn bare_matchit_paths(&self) -> Vec<String> {
        if !self.bare_wildcard {
            return Vec::new();
        }
        let without = Pattern {
            segments: self.segments[..self.segments.len() - 1].to_vec(),
            bare_wildcard: false,
            trailing_slash: false,
        };
        let bare = without.matchit_path();
        if bare == "/" {
            return vec![bare];
        }
        let slash = format!("{bare}/");
        vec![bare, slash]
    }

    /// Whether the pattern ends with a catch-all.
    pub(crate) fn has_catch_all(&self) -> bool {
        matches!(self.segments.last(), Some(Segment::CatchAll(_)))
    }

    /// The matchit parameter key of each named parameter, in order.
    pub(crate) fn matchit_keys(&self) -> Vec<(String, String)> {
        self.segments
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                Segment::Param(n) => Some((format!("p{i}"), n.clone())),
                Segment::CatchAll(n) => Some(("c".to_owned(), n.clone())),
                Segment::Static(_) => None,
            })
            .collect()
    }
}

fn check_name(name: &str, path: &str) -> Result<(), String> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(format!(
            "parameter name {name:?} in {path:?} must be letters, digits and `_`"
        ));
    }
    Ok(())
}

/// A piece of a rewrite template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    Text(String),
    Param(String),
    /// The wildcard's remainder (`*` or `{*name}`), always last.
    Rest(String),
}

/// A parsed rewrite template: `/v2/users/{id}`, `/internal/*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    pub(crate) pieces: Vec<Piece>,
}

impl Template {
    /// Parses `template` for a route with `pattern`.
    pub(crate) fn parse(template: &str, pattern: &Pattern) -> Result<Template, String> {
        let Some(rest) = template.strip_prefix('/') else {
            return Err(format!("rewrite {template:?} must start with `/`"));
        };
        let names: Vec<&str> = pattern.param_names().collect();
        let mut pieces = Vec::new();
        let parts: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('/').collect()
        };
        let last = parts.len().saturating_sub(1);
        let mut text = String::new();
        for (i, part) in parts.iter().enumerate() {
            text.push('/');
            let wildcard = if *part == "*" {
                Some("*")
            } else {
                part.strip_prefix("{*").and_then(|p| p.strip_suffix('}'))
            };
            if let Some(name) = wildcard {
                if i != last {
                    return Err(format!("the wildcard must end rewrite {template:?}"));
                }
                if !pattern
                    .segments
                    .iter()
                    .any(|s| matches!(s, Segment::CatchAll(n) if n == name))
                {
                    return Err(format!(
                        "rewrite {template:?} uses a wildcard `{part}` the path does not have"
                    ));
                }
                text.pop();
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(Piece::Rest(name.to_owned()));
            } else if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                if !names.contains(&name) {
                    return Err(format!(
                        "rewrite {template:?} uses `{{{name}}}`, not a parameter of the path"
                    ));
                }
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(Piece::Param(name.to_owned()));
            } else if part.contains(['{', '}', '*']) {
                return Err(format!(
                    "segment {part:?} of rewrite {template:?}: a parameter is a whole segment"
                ));
            } else if *part == "." || *part == ".." {
                return Err(format!("rewrite {template:?} has a `{part}` segment"));
            } else {
                text.push_str(part);
            }
        }
        if !text.is_empty() || pieces.is_empty() {
            if text.is_empty() {
                text.push('/');
            }
            pieces.push(Piece::Text(text));
        }
        Ok(Template { pieces })
    }
}
