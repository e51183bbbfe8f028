//! Where each key of a YAML document is: a second, span-carrying parse of
//! the same text, so that checks made after deserializing can still name the
//! line of the route and field they are about.

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;
use std::fmt;

/// A YAML node with the line it starts on; maps keep the line of each key.
#[derive(Debug, Default)]
pub(crate) struct Node {
    line: u32,
    kind: Kind,
}

#[derive(Debug, Default)]
enum Kind {
    #[default]
    Scalar,
    Text(String),
    Map(Vec<(String, u32, Node)>),
    Seq(Vec<Node>),
}

/// A step of a path into the document.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

impl Node {
    /// Parses `src`; `None` when it is not valid YAML (the typed parse then
    /// reports the syntax error itself).
    pub(crate) fn parse(src: &str) -> Option<Node> {
        let spanned: Spanned<Node> = serde_saphyr::from_str(src).ok()?;
        let mut node = spanned.value;
        node.line = line_of(spanned.referenced.line());
        Some(node)
    }

    /// The line of the deepest node along `path` that exists: the key's line
    /// for a map entry, the item's line for a sequence element.
    pub(crate) fn line(&self, path: &[Step<'_>]) -> Option<u32> {
        let mut node = self;
        let mut line = (node.line > 0).then_some(node.line);
        for step in path {
            let next = match (&node.kind, step) {
                (Kind::Map(entries), Step::Key(k)) => entries
                    .iter()
                    .find(|(key, _, _)| key == k)
                    .map(|(_, l, n)| (*l, n)),
                (Kind::Seq(items), Step::Index(i)) => items.get(*i).map(|n| (n.line, n)),
                _ => None,
            };
            match next {
                Some((l, n)) => {
                    if l > 0 {
                        line = Some(l);
                    }
                    node = n;
                }
                None => break,
            }
        }
        line
    }

    /// The text of the string scalar at `path`.
    pub(crate) fn text(&self, path: &[Step<'_>]) -> Option<&str> {
        let mut node = self;
        for step in path {
            node = match (&node.kind, step) {
                (Kind::Map(entries), Step::Key(k)) => {
                    &entries.iter().find(|(key, _, _)| key == k)?.2
                }
                (Kind::Seq(items), Step::Index(i)) => items.get(*i)?,
                _ => return None,
            };
        }
        match &node.kind {
            Kind::Text(t) => Some(t),
            _ => None,
        }
    }

    /// The path of keys and indices leading to the last node starting on or
    /// before `line`: where a parse error on that line is.
    pub(crate) fn path_at(&self, line: u32) -> Vec<PathPart> {
        let mut out = Vec::new();
        let mut node = self;
        loop {
            let next = match &node.kind {
                Kind::Map(entries) => entries
                    .iter()
                    .rev()
                    .find(|(_, l, _)| *l > 0 && *l <= line)
                    .map(|(k, _, n)| (PathPart::Key(k.clone()), n)),
                Kind::Seq(items) => items
                    .iter()
                    .enumerate()
                    .rev()
                    .find(|(_, n)| n.line > 0 && n.line <= line)
                    .map(|(i, n)| (PathPart::Index(i), n)),
                _ => None,
            };
            match next {
                Some((part, n)) => {
                    out.push(part);
                    node = n;
                }
                None => return out,
            }
        }
    }
}

/// An owned step of a path, see [`Node::path_at`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PathPart {
    Key(String),
    Index(usize),
}

/// Splits a field path (`split[1].service`) into steps.
pub(crate) fn steps(field: &str) -> Vec<Step<'_>> {
    let mut out = Vec::new();
    for part in field.split('.').filter(|p| !p.is_empty()) {
        let mut rest = part;
        if let Some(open) = rest.find('[') {
            if open > 0 {
                out.push(Step::Key(&rest[..open]));
            }
            rest = &rest[open..];
            while let Some(r) = rest.strip_prefix('[') {
                let Some(close) = r.find(']') else { break };
                if let Ok(i) = r[..close].parse() {
                    out.push(Step::Index(i));
                }
                rest = &r[close + 1..];
            }
        } else {
            out.push(Step::Key(rest));
        }
    }
    out
}

/// Joins path parts into a field path (`split[1].service`).
pub(crate) fn join(parts: &[PathPart]) -> String {
    let mut out = String::new();
    for p in parts {
        match p {
            PathPart::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            PathPart::Index(i) => {
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
        }
    }
    out
}

fn line_of(line: u64) -> u32 {
    u32::try_from(line).unwrap_or(u32::MAX)
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

macro_rules! scalar {
    ($($name:ident: $ty:ty),*) => {$(
        fn $name<E: de::Error>(self, _: $ty) -> Result<Node, E> {
            Ok(Node::default())
        }
    )*};
}

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    scalar!(visit_bool: bool, visit_i64: i64, visit_u64: u64, visit_f64: f64,
        visit_i128: i128, visit_u128: u128, visit_bytes: &[u8]);

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Node, E> {
        Ok(Node {
            line: 0,
            kind: Kind::Text(s.to_owned()),
        })
    }

    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::default())
    }

    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::default())
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Node>>()? {
            let mut node = item.value;
            node.line = line_of(item.referenced.line());
            items.push(node);
        }
        Ok(Node {
            line: 0,
            kind: Kind::Seq(items),
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<KeyText>>()? {
            let value: Spanned<Node> = map.next_value()?;
            let mut node = value.value;
            node.line = line_of(value.referenced.line());
            entries.push((key.value.0, line_of(key.referenced.line()), node));
        }
        Ok(Node {
            line: 0,
            kind: Kind::Map(entries),
        })
    }
}

/// A map key as text (non-string keys become empty: no config key is one).
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = KeyText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map key")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<KeyText, E> {
                Ok(KeyText(s.to_owned()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<KeyText, E> {
                Ok(KeyText(n.to_string()))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<KeyText, E> {
                Ok(KeyText(n.to_string()))
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<KeyText, E> {
                Ok(KeyText(b.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}
