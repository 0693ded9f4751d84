//! Positions in YAML text for error messages: which line, column and key an error is about.
//!
//! serde keeps no spans for values it accepted, and serde_norway's errors give a line and column
//! but only the path of the enclosing mapping (`intervals`, not `intervals.procPoll`) when a
//! value's own `Deserialize` rejects it. These helpers recover the full key from the text, and
//! place semantic errors (found after parsing) on the key they concern. They understand block
//! mappings (`key: value` nested by indentation), which is what configuration files use.

/// Where a YAML error is, and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// 1-based.
    pub line: usize,
    /// 1-based.
    pub column: usize,
    /// The dotted key path (`endpoint.url`, `baselines[1]`), when one is known.
    pub key: Option<String>,
    /// The message, without serde_norway's path prefix and ` at line L column C` suffix.
    pub message: String,
}

/// Describes a serde_norway error on `text`: line and column (1:1 when it has none), the full
/// key path, and the bare message.
pub fn describe(text: &str, e: &serde_norway::Error) -> Located {
    let (line, column) = e
        .location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((1, 1));
    let full = e.to_string();
    let mut message = match full.rfind(" at line ") {
        Some(i) if full[i..].contains(" column ") => full[..i].to_owned(),
        _ => full,
    };
    // serde_norway prefixes the path of the value being deserialized: `intervals: ...`.
    let mut path = None;
    if let Some(i) = message.find(": ") {
        let p = &message[..i];
        if !p.is_empty() && !p.contains(char::is_whitespace) && !p.contains('`') {
            path = Some(p.to_owned());
            message = message[i + 2..].to_owned();
        }
    }
    // Errors about a key name it (`unknown field `x``); errors about a value raised by the
    // value's own `Deserialize` carry only the enclosing mapping's path, so the key written at
    // the error position completes it.
    let key = match (path, named_field(&message)) {
        (Some(p), Some(f)) => Some(format!("{p}.{f}")),
        (None, Some(f)) => Some(f),
        (Some(p), None) => match key_at(text, line, column) {
            Some(k) if p.rsplit(['.', ']']).next() != Some(k) => Some(format!("{p}.{k}")),
            _ => Some(p),
        },
        (None, None) => key_at(text, line, column).map(str::to_owned),
    };
    Located {
        line,
        column,
        key,
        message,
    }
}

/// The mapping key written at `line`:`column` (1-based), if the text there is `key:`.
pub fn key_at(text: &str, line: usize, column: usize) -> Option<&str> {
    let l = text.lines().nth(line.checked_sub(1)?)?;
    let rest = l.get(column.checked_sub(1)?..)?;
    let end = rest.find(':')?;
    let key = rest[..end].trim_end().trim_matches(['"', '\'']);
    let after = &rest[end + 1..];
    let is_key = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
        && (after.is_empty() || after.starts_with([' ', '\t']));
    is_key.then_some(key)
}

/// Line and column (1-based) of the key at `path` (`["endpoint", "url"]`) in block-mapping
/// YAML, or of the deepest ancestor found (1:1 when none is).
pub fn locate(text: &str, path: &[&str]) -> (usize, usize) {
    let mut found = (1, 1);
    // Search each segment below the line of its parent, among lines indented more than it.
    let mut start = 0;
    let mut parent_indent: Option<usize> = None;
    let lines: Vec<&str> = text.lines().collect();
    'segments: for seg in path {
        for (i, l) in lines.iter().enumerate().skip(start) {
            let body = l.trim_start();
            if body.is_empty() || body.starts_with('#') {
                continue;
            }
            let indent = l.len() - body.len();
            if i > start && parent_indent.is_some_and(|p| indent <= p) {
                break 'segments;
            }
            if key_at(text, i + 1, indent + 1) == Some(seg) {
                found = (i + 1, indent + 1);
                start = i + 1;
                parent_indent = Some(indent);
                continue 'segments;
            }
        }
        break;
    }
    found
}

/// The field named by serde's "unknown field `x`" / "missing field `x`" messages.
fn named_field(msg: &str) -> Option<String> {
    let start = msg.find(" field `")? + " field `".len();
    let len = msg[start..].find('`')?;
    Some(msg[start..start + len].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# comment
hostRoot: /host
intervals:
  procPoll: 2s
  rescan: 5m
endpoint:
  url: https://x
  tls:
    url: nested
kubernetes:
  enabled: true
";

    #[test]
    fn locate_finds_nested_keys() {
        assert_eq!(locate(TEXT, &["hostRoot"]), (2, 1));
        assert_eq!(locate(TEXT, &["intervals", "rescan"]), (5, 3));
        assert_eq!(locate(TEXT, &["endpoint", "url"]), (7, 3));
        assert_eq!(locate(TEXT, &["endpoint", "tls", "url"]), (9, 5));
        assert_eq!(locate(TEXT, &["kubernetes", "enabled"]), (11, 3));
        // Not under its parent: the parent is the closest place.
        assert_eq!(locate(TEXT, &["intervals", "url"]), (3, 1));
        assert_eq!(locate(TEXT, &["nothing"]), (1, 1));
    }

    #[test]
    fn key_at_reads_the_key_at_a_position() {
        assert_eq!(key_at(TEXT, 4, 3), Some("procPoll"));
        assert_eq!(key_at(TEXT, 7, 8), None, "a value, not a key");
        assert_eq!(key_at("- name: x", 1, 3), Some("name"));
        assert_eq!(
            key_at("- name: x", 1, 1),
            None,
            "a sequence item, not a key"
        );
        assert_eq!(key_at("url: https://x", 1, 6), None);
        assert_eq!(key_at("", 3, 1), None);
        assert_eq!(
            key_at("a: [x, {y: 1}]", 1, 8),
            None,
            "a flow mapping is a value"
        );
    }

    #[test]
    fn describe_names_the_full_key() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Inner {
            a: Option<u32>,
        }
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Outer {
            inner: Option<Inner>,
        }
        let cases = [
            ("inner:\n  b: 1\n", 2, 3, "inner.b"),
            ("inner:\n  a: x\n", 2, 6, "inner.a"),
            ("bogus: 1\n", 1, 1, "bogus"),
        ];
        for (text, line, column, key) in cases {
            let e = serde_norway::from_str::<Outer>(text).unwrap_err();
            let d = describe(text, &e);
            assert_eq!(
                (d.line, d.column, d.key.as_deref()),
                (line, column, Some(key)),
                "{text:?}: {d:?}"
            );
            assert!(!d.message.contains(" at line "), "{d:?}");
        }
    }
}
