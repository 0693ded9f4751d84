//! Debian's version comparison (dpkg's `verrevcmp`), to tell whether an installed package is
//! older than the one a security suite offers.
//!
//! A version is `[epoch:]upstream[-revision]`: the epoch compares numerically first (absent is
//! 0), then the upstream part, then the revision (split at the *last* hyphen; absent is
//! empty, which sorts like `0`). Parts compare by alternating runs: a non-digit run
//! character by character, where `~` sorts before everything, even the end of the string
//! (`1.0~rc1 < 1.0`), letters sort before the other characters; then a digit run
//! numerically (leading zeros ignored; an absent run counts as 0).

use std::cmp::Ordering;

/// Compares two Debian versions. Malformed epochs (not a number) compare as 0, as dpkg's
/// relaxed parsing does not apply here: they are not produced by real packages.
pub fn debvercmp(a: &str, b: &str) -> Ordering {
    let (ea, ua, ra) = split(a);
    let (eb, ub, rb) = split(b);
    ea.cmp(&eb)
        .then_with(|| verrevcmp(ua.as_bytes(), ub.as_bytes()))
        .then_with(|| verrevcmp(ra.as_bytes(), rb.as_bytes()))
}

/// `(epoch, upstream, revision)`.
fn split(v: &str) -> (u64, &str, &str) {
    let v = v.trim();
    let (epoch, rest) = match v.split_once(':') {
        Some((e, rest)) if !e.is_empty() && e.bytes().all(|c| c.is_ascii_digit()) => {
            (e.parse().unwrap_or(u64::MAX), rest)
        }
        _ => (0, v),
    };
    match rest.rsplit_once('-') {
        Some((up, rev)) => (epoch, up, rev),
        None => (epoch, rest, ""),
    }
}

/// The sort weight of a non-digit character (0 stands for "end of run").
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(b'~') => -1,
        Some(c) => i32::from(c) + 256,
    }
}

fn verrevcmp(a: &[u8], b: &[u8]) -> Ordering {
    let (mut i, mut j) = (0, 0);
    let digit = |s: &[u8], k: usize| s.get(k).is_some_and(u8::is_ascii_digit);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !digit(a, i)) || (j < b.len() && !digit(b, j)) {
            let (ac, bc) = (order(a.get(i).copied()), order(b.get(j).copied()));
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while digit(a, i) && digit(b, j) {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if digit(a, i) {
            return Ordering::Greater;
        }
        if digit(b, j) {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::{Equal, Greater, Less};

    #[test]
    fn known_pairs() {
        // Cases from dpkg's own test suite (t-version.c) and Debian policy §5.6.12.
        for (a, b, want) in [
            ("0", "0", Equal),
            ("0", "00", Equal),
            ("1", "2", Less),
            ("1.0", "1.0-0", Equal),
            ("1.0", "1.0-1", Less),
            ("1:0", "0:9", Greater),
            ("0:1.0", "1.0", Equal),
            ("1.0~rc1", "1.0", Less),
            ("1.0~rc1", "1.0~rc2", Less),
            ("1.0~~", "1.0~", Less),
            ("1.0~~a", "1.0~", Less),
            ("1.0~", "1.0", Less),
            ("1.0", "1.0+b1", Less),
            ("1.0a", "1.0", Greater),
            ("1.0a", "1.0.", Less),
            ("1.0+", "1.0.", Less),
            ("1.2.3", "1.2.3.0", Less),
            ("1.10", "1.9", Greater),
            ("2.30-0ubuntu1", "2.30-0ubuntu1.1", Less),
            ("2.35-0ubuntu3.6", "2.35-0ubuntu3.8", Less),
            (
                "1:9.18.18-0ubuntu0.22.04.2",
                "1:9.18.24-0ubuntu0.22.04.1",
                Less,
            ),
            ("3.0.2-0ubuntu1.15", "3.0.2-0ubuntu1.10", Greater),
            ("5.15.0-1061.70", "5.15.0-1061.70~20.04.1", Greater),
            ("1.2-3-4", "1.2-3-5", Less),
            ("1.2-4", "1.2-3-4", Less),
            ("7.81.0-1ubuntu1.16", "7.81.0-1ubuntu1.16", Equal),
            ("2:8.2.3995-1ubuntu2.17", "1:9.0", Greater),
            ("a", "b", Less),
            ("", "0", Equal),
        ] {
            assert_eq!(debvercmp(a, b), want, "{a} vs {b}");
            assert_eq!(debvercmp(b, a), want.reverse(), "{b} vs {a}");
        }
    }
}
