//! Redacted unified diffs of small text files.
//!
//! Both sides are redacted first ([`crate::redact`]: values of secret-looking keys, PEM private
//! keys, kubeconfig credentials, tokens), so a diff never shows a secret, old or new. The common prefix and suffix are
//! trimmed, and the rest is aligned with a longest-common-subsequence table only when it is
//! small (at most [`MAX_CELLS`] cells); a larger middle is shown as one removed and one added
//! block, which is still a correct (if not minimal) diff.

use crate::redact::lines as redact;

const CONTEXT: usize = 3;
const MAX_CELLS: usize = 250_000;
/// Lines of diff kept at most.
const MAX_LINES: usize = 400;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Keep,
    Del,
    Add,
}

/// A unified diff of `old` → `new` (redacted), `None` when the redacted texts are equal.
pub fn unified(old: &str, new: &str, name: &str) -> Option<String> {
    let a = redact(old);
    let b = redact(new);
    if a == b {
        return None;
    }
    let pre = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let suf = a[pre..]
        .iter()
        .rev()
        .zip(b[pre..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (ma, mb) = (&a[pre..a.len() - suf], &b[pre..b.len() - suf]);
    let mut ops: Vec<(Op, usize, usize)> = (0..pre).map(|i| (Op::Keep, i, i)).collect();
    for (op, i, j) in align(ma, mb) {
        ops.push((op, i + pre, j + pre));
    }
    let (ea, eb) = (a.len() - suf, b.len() - suf);
    for k in 0..suf {
        ops.push((Op::Keep, ea + k, eb + k));
    }
    Some(render(&ops, &a, &b, name))
}

/// LCS alignment of the middle parts.
fn align(a: &[String], b: &[String]) -> Vec<(Op, usize, usize)> {
    let (n, m) = (a.len(), b.len());
    if n == 0 || m == 0 || n.saturating_mul(m) > MAX_CELLS {
        let mut v: Vec<_> = (0..n).map(|i| (Op::Del, i, 0)).collect();
        v.extend((0..m).map(|j| (Op::Add, n, j)));
        return v;
    }
    // lcs[i][j] = LCS length of a[i..] and b[j..].
    let w = m + 1;
    let mut lcs = vec![0u32; (n + 1) * w];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i * w + j] = if a[i] == b[j] {
                lcs[(i + 1) * w + j + 1] + 1
            } else {
                lcs[(i + 1) * w + j].max(lcs[i * w + j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            out.push((Op::Keep, i, j));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[(i + 1) * w + j] >= lcs[i * w + j + 1]) {
            out.push((Op::Del, i, j));
            i += 1;
        } else {
            out.push((Op::Add, i, j));
            j += 1;
        }
    }
    out
}

fn render(ops: &[(Op, usize, usize)], a: &[String], b: &[String], name: &str) -> String {
    let mut out = format!("--- {name} (baseline)\n+++ {name} (now)\n");
    let changed: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, o)| o.0 != Op::Keep)
        .map(|(k, _)| k)
        .collect();
    let mut lines = 0;
    let mut k = 0;
    while k < changed.len() {
        let start = changed[k].saturating_sub(CONTEXT);
        let mut end = changed[k];
        while k < changed.len() && changed[k] <= end + 2 * CONTEXT {
            end = changed[k];
            k += 1;
        }
        let end = (end + CONTEXT + 1).min(ops.len());
        let hunk = &ops[start..end];
        let a_start = hunk.first().map(|o| o.1).unwrap_or(0);
        let b_start = hunk.first().map(|o| o.2).unwrap_or(0);
        let a_len = hunk.iter().filter(|o| o.0 != Op::Add).count();
        let b_len = hunk.iter().filter(|o| o.0 != Op::Del).count();
        out.push_str(&format!(
            "@@ -{},{a_len} +{},{b_len} @@\n",
            a_start + 1,
            b_start + 1
        ));
        for (op, i, j) in hunk {
            let line = match op {
                Op::Keep => format!(" {}", a[*i]),
                Op::Del => format!("-{}", a[*i]),
                Op::Add => format!("+{}", b[*j]),
            };
            out.push_str(&line);
            out.push('\n');
            lines += 1;
            if lines >= MAX_LINES {
                out.push_str("… (diff truncated)\n");
                return out;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_change_gives_a_hunk_with_context() {
        let old = "a\nb\nc\nd\ne\nf\ng\n";
        let new = "a\nb\nc\nD\ne\nf\ng\n";
        let d = unified(old, new, "/etc/x").unwrap();
        assert!(d.contains("@@ -1,7 +1,7 @@"), "{d}");
        assert!(d.contains("-d\n+D\n"), "{d}");
        assert_eq!(unified(old, old, "/etc/x"), None);
    }

    #[test]
    fn secrets_never_appear_on_either_side() {
        let old = "user: admin\npassword: hunter2\ntoken=abc123\n";
        let new = "user: root\npassword: s3cr3t\ntoken=def456\n-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----\n";
        let d = unified(old, new, "/etc/x").unwrap();
        for s in ["hunter2", "s3cr3t", "abc123", "def456", "MIIEow"] {
            assert!(!d.contains(s), "{s} leaked: {d}");
        }
        assert!(d.contains("+user: root"));
        // Only a secret changed: nothing to show.
        assert_eq!(unified("password: a\n", "password: b\n", "/x"), None);
    }

    #[test]
    fn insertions_and_large_middles() {
        let old: String = (0..1000).map(|i| format!("l{i}\n")).collect();
        let new: String = (0..1000).map(|i| format!("m{i}\n")).collect();
        let d = unified(&old, &new, "/x").unwrap();
        assert!(d.contains("diff truncated"));
        let d = unified("a\nb\n", "a\nx\nb\n", "/x").unwrap();
        assert!(d.contains(" a\n+x\n b\n"), "{d}");
    }
}
