//! Finding the line of a key in a configuration file's text, for error
//! messages (config-rs reports the file but not the line of a value).

use config::FileFormat;

/// The 1-based line where `key` (a dotted path, `[n]` indices ignored) is
/// defined in `text`, if it can be found.
pub(crate) fn locate(text: &str, format: FileFormat, key: &str) -> Option<usize> {
    let segments: Vec<&str> = key
        .split('.')
        .map(|s| s.split('[').next().unwrap_or(s))
        .filter(|s| !s.is_empty())
        .collect();
    if segments.is_empty() {
        return None;
    }
    match format {
        FileFormat::Toml => toml(text, &segments),
        FileFormat::Json => json(text, &segments),
        _ => yaml(text, &segments),
    }
}

fn unquote(s: &str) -> &str {
    s.trim_matches(|c| c == '"' || c == '\'')
}

/// YAML: each segment is a `seg:` line at its block's indentation, inside
/// its parent's block.
fn yaml(text: &str, segments: &[&str]) -> Option<usize> {
    let mut seg = 0;
    let mut parent_indent: Option<usize> = None;
    // The indentation of keys at the current level, learnt from the first
    // key line of the block.
    let mut level: Option<usize> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('#') || trimmed.is_empty() || trimmed.starts_with("---") {
            continue;
        }
        let mut indent = line.len() - trimmed.len();
        if parent_indent.is_some_and(|p| indent <= p) {
            // Left the parent's block without finding the child.
            return None;
        }
        let mut content = trimmed;
        while let Some(rest) = content.strip_prefix("- ") {
            indent += 2;
            content = rest.trim_start();
        }
        let lvl = *level.get_or_insert(indent);
        if indent != lvl {
            continue;
        }
        if let Some((k, _)) = content.split_once(':')
            && unquote(k.trim()) == segments[seg]
        {
            seg += 1;
            if seg == segments.len() {
                return Some(i + 1);
            }
            parent_indent = Some(indent);
            level = None;
        }
    }
    None
}

/// JSON: each segment is a `"seg":` after the previous one.
fn json(text: &str, segments: &[&str]) -> Option<usize> {
    let mut pos = 0;
    for seg in segments {
        let needle = format!("\"{seg}\"");
        let mut from = pos;
        loop {
            let at = from + text[from..].find(&needle)?;
            let after = text[at + needle.len()..].trim_start();
            if after.starts_with(':') {
                pos = at + needle.len();
                break;
            }
            from = at + needle.len();
        }
    }
    Some(text[..pos].matches('\n').count() + 1)
}

/// TOML: a `[table]` header for a prefix of the path, then `rest = …`
/// (dotted keys allowed).
fn toml(text: &str, segments: &[&str]) -> Option<usize> {
    let mut table: Vec<String> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('#') || t.is_empty() {
            continue;
        }
        if let Some(h) = t.strip_prefix('[') {
            let h = h.trim_start_matches('[');
            let h = h.split(']').next().unwrap_or("");
            table = h.split('.').map(|s| unquote(s.trim()).to_owned()).collect();
            continue;
        }
        if let Some((k, _)) = t.split_once('=') {
            let mut full: Vec<&str> = table.iter().map(String::as_str).collect();
            full.extend(k.split('.').map(|s| unquote(s.trim())));
            if full == segments {
                return Some(i + 1);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_nested() {
        let t = "a: 1\ndb:\n  # c\n  url: x\n  pool:\n    max_size: 5\nmax_size: 9\n";
        assert_eq!(locate(t, FileFormat::Yaml, "db.pool.max_size"), Some(6));
        assert_eq!(locate(t, FileFormat::Yaml, "max_size"), Some(7));
        assert_eq!(locate(t, FileFormat::Yaml, "db.nope"), None);
    }

    #[test]
    fn json_nested() {
        let t = "{\n  \"db\": {\n    \"pool\": {\n      \"max_size\": \"x\"\n    }\n  }\n}\n";
        assert_eq!(locate(t, FileFormat::Json, "db.pool.max_size"), Some(4));
    }

    #[test]
    fn toml_tables_and_dotted() {
        let t = "port = 1\n[db]\nurl = 'x'\n[db.pool]\nmax_size = 3\n[other]\npool.max_size = 4\n";
        assert_eq!(locate(t, FileFormat::Toml, "db.pool.max_size"), Some(5));
        assert_eq!(locate(t, FileFormat::Toml, "other.pool.max_size"), Some(7));
        assert_eq!(locate(t, FileFormat::Toml, "port"), Some(1));
    }
}
