//! RPM's version comparison (`rpmvercmp`), used to find the newest installed kernel.
//!
//! Kernel release strings from every distribution compare correctly with it:
//! `6.6.47.1-1.azl3 < 6.6.57.1-2.azl3`, `5.15.0-1057-azure < 5.15.0-1061-azure`,
//! `5.14.0-427.13.1.el9_4.x86_64 < 5.14.0-503.11.1.el9_5.x86_64`. The algorithm: split both
//! strings into runs of digits and runs of letters (anything else only separates); compare run
//! by run, numerically for digits (leading zeros ignored) and byte-wise for letters; a numeric
//! run is newer than an alphabetic one; `~` sorts before everything (even the end: `1.0~rc1 <
//! 1.0`), `^` after the end but before any further run (`1.0 < 1.0^git1 < 1.0.1`); otherwise
//! the string with runs left over is newer.

use std::cmp::Ordering;

/// Compares two version strings the way `rpmvercmp` does.
pub fn rpmvercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    let separator = |c: u8| !c.is_ascii_alphanumeric() && c != b'~' && c != b'^';
    loop {
        while i < a.len() && separator(a[i]) {
            i += 1;
        }
        while j < b.len() && separator(b[j]) {
            j += 1;
        }
        let (ca, cb) = (a.get(i).copied(), b.get(j).copied());
        if ca == Some(b'~') || cb == Some(b'~') {
            if ca != Some(b'~') {
                return Ordering::Greater;
            }
            if cb != Some(b'~') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        if ca == Some(b'^') || cb == Some(b'^') {
            return match (ca, cb) {
                (None, _) => Ordering::Less,
                (_, None) => Ordering::Greater,
                (Some(x), _) if x != b'^' => Ordering::Greater,
                (_, Some(y)) if y != b'^' => Ordering::Less,
                _ => {
                    i += 1;
                    j += 1;
                    continue;
                }
            };
        }
        let (Some(ca), Some(_)) = (ca, cb) else { break };
        let numeric = ca.is_ascii_digit();
        let same_class = |c: &u8| {
            if numeric {
                c.is_ascii_digit()
            } else {
                c.is_ascii_alphabetic()
            }
        };
        let (si, sj) = (i, j);
        while i < a.len() && same_class(&a[i]) {
            i += 1;
        }
        while j < b.len() && same_class(&b[j]) {
            j += 1;
        }
        if sj == j {
            // Different classes: a number is newer than letters.
            return if numeric {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        let (mut x, mut y) = (&a[si..i], &b[sj..j]);
        let ord = if numeric {
            while x.len() > 1 && x[0] == b'0' {
                x = &x[1..];
            }
            while y.len() > 1 && y[0] == b'0' {
                y = &y[1..];
            }
            x.len().cmp(&y.len()).then_with(|| x.cmp(y))
        } else {
            x.cmp(y)
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    match (i >= a.len(), j >= b.len()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        _ => Ordering::Greater,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::{Equal, Greater, Less};

    #[test]
    fn kernel_releases() {
        for (a, b) in [
            ("6.6.47.1-1.azl3", "6.6.57.1-2.azl3"),
            ("6.6.57.1-1.azl3", "6.6.57.1-2.azl3"),
            ("5.15.0-1057-azure", "5.15.0-1061-azure"),
            ("5.15.0-99-generic", "5.15.0-113-generic"),
            (
                "5.14.0-427.13.1.el9_4.x86_64",
                "5.14.0-503.11.1.el9_5.x86_64",
            ),
            ("5.15.153.1-2.cm2", "5.15.160.1-1.cm2"),
            ("6.1.0-9-amd64", "6.1.0-25-amd64"),
        ] {
            assert_eq!(rpmvercmp(a, b), Less, "{a} < {b}");
            assert_eq!(rpmvercmp(b, a), Greater, "{b} > {a}");
        }
    }

    #[test]
    fn rpm_test_suite_cases() {
        // A selection of rpm's own tests/rpmvercmp.at.
        for (a, b, want) in [
            ("1.0", "1.0", Equal),
            ("1.0", "2.0", Less),
            ("2.0.1", "2.0.1", Equal),
            ("2.0", "2.0.1", Less),
            ("2.0.1a", "2.0.1", Greater),
            ("5.5p1", "5.5p2", Less),
            ("5.5p10", "5.5p1", Greater),
            ("10xyz", "10.1xyz", Less),
            ("xyz10", "xyz10.1", Less),
            ("xyz.4", "8", Less),
            ("5.5p1", "5.5.p1", Equal),
            ("10.0001", "10.1", Equal),
            ("10.0001", "10.0039", Less),
            ("4.999.9", "5.0", Less),
            ("20101121", "20101122", Less),
            ("2_0", "2_0", Equal),
            ("2.0", "2_0", Equal),
            ("a", "a", Equal),
            ("a+", "a_", Equal),
            ("+a", "_a", Equal),
            ("+", "_", Equal),
            ("1.0~rc1", "1.0", Less),
            ("1.0~rc1", "1.0~rc2", Less),
            ("1.0~rc1~git123", "1.0~rc1", Less),
            ("1.0^", "1.0", Greater),
            ("1.0^git1", "1.0", Greater),
            ("1.0^git1", "1.01", Less),
            ("1.0^git1", "1.0^git2", Less),
            ("1.0^git1~pre", "1.0^git1", Less),
            ("1.0^", "1.0~", Greater),
            ("1.0a", "1.0.1", Less),
            ("", "0", Less),
        ] {
            assert_eq!(rpmvercmp(a, b), want, "{a} vs {b}");
        }
    }
}
