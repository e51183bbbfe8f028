//! JSON field paths and what is done with them: per-backend `allow` /
//! `deny` / `rename`, the merge of backend results, `?fields=`
//! projection, thumbnails and null removal.
//!
//! A filter path is dotted (`customer.address.city`); arrays on the way
//! are traversed implicitly (`items.price` is every item's price).

use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The most segments a field path may have: the trees built from paths
/// are walked recursively, so their depth is bounded (a client's
/// `?fields=a.a.a…` must not exhaust the stack).
pub(crate) const MAX_PATH_SEGMENTS: usize = 32;

/// The most paths one `?fields=` may list.
pub(crate) const MAX_FIELDS: usize = 64;

/// A dotted filter path, checked: non-empty segments, no brackets, at
/// most [`MAX_PATH_SEGMENTS`] segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldPath(Vec<String>);

impl FieldPath {
    pub(crate) fn parse(s: &str) -> Result<FieldPath, String> {
        if s.is_empty() {
            return Err("an empty field path".into());
        }
        if s.split('.').nth(MAX_PATH_SEGMENTS).is_some() {
            let head: String = s.chars().take(40).collect();
            return Err(format!(
                "{head:?}…: a field path has at most {MAX_PATH_SEGMENTS} segments"
            ));
        }
        let mut segs = Vec::new();
        for seg in s.split('.') {
            if seg.is_empty() {
                return Err(format!("{s:?} has an empty segment"));
            }
            if seg.contains(['[', ']', '{', '}', ',']) {
                return Err(format!(
                    "{s:?}: field paths are dotted names (arrays are traversed implicitly)"
                ));
            }
            segs.push(seg.to_owned());
        }
        Ok(FieldPath(segs))
    }

    pub(crate) fn segments(&self) -> &[String] {
        &self.0
    }
}

/// The fields to keep: a tree of names; a leaf keeps everything below it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AllowTree {
    children: BTreeMap<String, AllowTree>,
    leaf: bool,
}

impl AllowTree {
    pub(crate) fn new<'a>(paths: impl IntoIterator<Item = &'a FieldPath>) -> AllowTree {
        let mut root = AllowTree::default();
        for path in paths {
            root.insert(path.segments());
        }
        root
    }

    fn insert(&mut self, segs: &[String]) {
        match segs.split_first() {
            None => {
                self.leaf = true;
                self.children.clear();
            }
            Some((first, rest)) => {
                if self.leaf {
                    return;
                }
                self.children.entry(first.clone()).or_default().insert(rest);
            }
        }
    }

    /// Keeps a field at the root whatever the tree says (`_partial`).
    pub(crate) fn keep(&mut self, key: &str) {
        self.children.entry(key.to_owned()).or_default().insert(&[]);
    }

    /// Keeps only the allowed fields of `value`.
    pub(crate) fn apply(&self, value: Value) -> Value {
        if self.leaf {
            return value;
        }
        match value {
            Value::Object(map) => {
                let mut out = Map::new();
                for (k, v) in map {
                    if let Some(child) = self.children.get(&k) {
                        match (child.leaf, v) {
                            (true, v) => {
                                out.insert(k, v);
                            }
                            (false, v @ (Value::Object(_) | Value::Array(_))) => {
                                out.insert(k, child.apply(v));
                            }
                            // A path going below a scalar keeps nothing.
                            (false, _) => {}
                        }
                    }
                }
                Value::Object(out)
            }
            Value::Array(items) => Value::Array(items.into_iter().map(|v| self.apply(v)).collect()),
            _ => Value::Null,
        }
    }
}

/// Removes the field at `path` (in every element of arrays on the way).
pub(crate) fn deny(value: &mut Value, path: &[String]) {
    match value {
        Value::Array(items) => items.iter_mut().for_each(|v| deny(v, path)),
        Value::Object(map) => match path {
            [] => {}
            [last] => {
                map.remove(last);
            }
            [first, rest @ ..] => {
                if let Some(v) = map.get_mut(first) {
                    deny(v, rest);
                }
            }
        },
        _ => {}
    }
}

/// Moves the field at `path` to the sibling key `to`.
pub(crate) fn rename(value: &mut Value, path: &[String], to: &str) {
    match value {
        Value::Array(items) => items.iter_mut().for_each(|v| rename(v, path, to)),
        Value::Object(map) => match path {
            [] => {}
            [last] => {
                if let Some(v) = map.remove(last) {
                    map.insert(to.to_owned(), v);
                }
            }
            [first, rest @ ..] => {
                if let Some(v) = map.get_mut(first) {
                    rename(v, rest, to);
                }
            }
        },
        _ => {}
    }
}

/// Applies `f` to every string at `path`.
pub(crate) fn map_strings(value: &mut Value, path: &[String], f: &dyn Fn(&str) -> Option<String>) {
    match (value, path) {
        (Value::Array(items), _) => items.iter_mut().for_each(|v| map_strings(v, path, f)),
        (Value::String(s), []) => {
            if let Some(new) = f(s) {
                *s = new;
            }
        }
        (Value::Object(map), [first, rest @ ..]) => {
            if let Some(v) = map.get_mut(first) {
                map_strings(v, rest, f);
            }
        }
        _ => {}
    }
}

/// Removes every `null` field, recursively.
pub(crate) fn omit_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(omit_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(omit_nulls),
        _ => {}
    }
}

/// Merges one backend's (filtered) result into the response: under
/// `group` when set; else an object's fields at the root (a later backend's
/// field replaces an earlier one's); anything else under the backend name.
pub(crate) fn merge(root: &mut Map<String, Value>, value: Value, group: Option<&str>, name: &str) {
    match (group, value) {
        (Some(group), value) => {
            root.insert(group.to_owned(), value);
        }
        (None, Value::Object(fields)) => root.extend(fields),
        (None, value) => {
            root.insert(name.to_owned(), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn path(s: &str) -> FieldPath {
        FieldPath::parse(s).expect("test value")
    }

    #[test]
    fn allow_keeps_nested_fields_through_arrays() {
        let tree = AllowTree::new(&[path("id"), path("items.sku"), path("customer")]);
        let v = json!({"id": 1, "x": 2, "items": [{"sku": "a", "p": 1}, {"sku": "b"}],
            "customer": {"n": 1}, "id2": {"sku": 3}});
        assert_eq!(
            tree.apply(v),
            json!({"id": 1, "items": [{"sku": "a"}, {"sku": "b"}], "customer": {"n": 1}})
        );
    }

    #[test]
    fn deny_rename_and_thumbnails() {
        let mut v = json!({"a": {"b": 1, "c": 2}, "items": [{"img": "/i/1.png", "s": 1}]});
        deny(&mut v, path("a.b").segments());
        rename(&mut v, path("items.s").segments(), "stock");
        map_strings(&mut v, path("items.img").segments(), &|s| {
            Some(s.replacen("/i/", "/t/", 1))
        });
        assert_eq!(
            v,
            json!({"a": {"c": 2}, "items": [{"img": "/t/1.png", "stock": 1}]})
        );
    }

    #[test]
    fn bad_paths_are_refused() {
        assert!(FieldPath::parse("").is_err());
        assert!(FieldPath::parse("a..b").is_err());
        assert!(FieldPath::parse("a[0]").is_err());
    }

    #[test]
    fn merge_root_group_and_non_objects() {
        let mut root = Map::new();
        merge(&mut root, json!({"a": 1}), None, "x");
        merge(&mut root, json!([1, 2]), None, "list");
        merge(&mut root, json!({"b": 1}), Some("g"), "y");
        assert_eq!(
            Value::Object(root),
            json!({"a": 1, "list": [1, 2], "g": {"b": 1}})
        );
    }
}
