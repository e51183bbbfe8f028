//! [`HeaderRules`]: a [`HeaderTransformConfig`] compiled to header names
//! and values, applied remove → rename → set → add.

use super::config::HeaderTransformConfig;
use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};

/// One direction's header edits, ready to apply.
#[derive(Debug, Default)]
pub(crate) struct HeaderRules {
    remove: Vec<HeaderName>,
    rename: Vec<(HeaderName, HeaderName)>,
    set: Vec<(HeaderName, HeaderValue)>,
    add: Vec<(HeaderName, HeaderValue)>,
}

fn name(s: &str) -> Option<HeaderName> {
    HeaderName::from_bytes(s.as_bytes()).ok()
}

fn pair((k, v): (&String, &String)) -> Option<(HeaderName, HeaderValue)> {
    Some((name(k)?, HeaderValue::from_str(v).ok()?))
}

impl HeaderRules {
    /// `None` when there is nothing to do. Entries that do not parse are
    /// skipped: the config's load-time checks refuse them first.
    pub(crate) fn compile(c: &HeaderTransformConfig) -> Option<HeaderRules> {
        if c.is_empty() {
            return None;
        }
        Some(HeaderRules {
            remove: c.remove.iter().filter_map(|s| name(s)).collect(),
            rename: c
                .rename
                .iter()
                .filter_map(|(from, to)| Some((name(from)?, name(to)?)))
                .collect(),
            set: c.set.iter().filter_map(pair).collect(),
            add: c.add.iter().filter_map(pair).collect(),
        })
    }

    /// Edits `headers` in place.
    pub(crate) fn apply(&self, headers: &mut HeaderMap) {
        for n in &self.remove {
            headers.remove(n);
        }
        for (from, to) in &self.rename {
            let values: Vec<HeaderValue> = headers.get_all(from).iter().cloned().collect();
            if values.is_empty() || from == to {
                continue;
            }
            headers.remove(from);
            headers.remove(to);
            for v in values {
                headers.append(to.clone(), v);
            }
        }
        for (n, v) in &self.set {
            headers.insert(n.clone(), v.clone());
        }
        for (n, v) in &self.add {
            headers.append(n.clone(), v.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_remove_rename_set_add() {
        let c = HeaderTransformConfig::new()
            .remove("x-a")
            .rename("x-old", "x-new")
            .set("x-new", "set")
            .add("x-new", "added")
            .add("x-a", "back");
        let rules = HeaderRules::compile(&c).expect("not empty");
        let mut h = HeaderMap::new();
        h.append("x-a", HeaderValue::from_static("1"));
        h.append("x-old", HeaderValue::from_static("o1"));
        h.append("x-old", HeaderValue::from_static("o2"));
        rules.apply(&mut h);
        let all = |n: &str| -> Vec<&str> {
            h.get_all(n)
                .iter()
                .map(|v| v.to_str().expect("ascii"))
                .collect()
        };
        assert_eq!(all("x-a"), ["back"]);
        assert!(!h.contains_key("x-old"));
        assert_eq!(all("x-new"), ["set", "added"]);
    }

    #[test]
    fn rename_moves_every_value() {
        let rules = HeaderRules::compile(&HeaderTransformConfig::new().rename("x-old", "x-new"))
            .expect("not empty");
        let mut h = HeaderMap::new();
        h.append("x-old", HeaderValue::from_static("1"));
        h.append("x-old", HeaderValue::from_static("2"));
        h.append("x-new", HeaderValue::from_static("stale"));
        rules.apply(&mut h);
        let got: Vec<_> = h.get_all("x-new").iter().collect();
        assert_eq!(got, ["1", "2"]);
        assert!(HeaderRules::compile(&HeaderTransformConfig::new()).is_none());
    }
}
