//! The parsers of the patches inspector: pure functions over bytes, so that hostile input
//! (garbage lines, truncation, non-UTF-8, huge lines) is tested without a host tree.

use std::io::BufRead;

use crate::clock::unix_of;

/// Reads `r` line by line (without the `\n`), handing each line to `f`; a line longer than
/// `max_line` bytes or more than `max_total` bytes in all is an error (so a hostile file costs
/// at most that much memory and time). A last line without `\n` is still handed over.
pub fn each_line<R: BufRead>(
    mut r: R,
    max_line: usize,
    max_total: u64,
    mut f: impl FnMut(&[u8]),
) -> Result<(), String> {
    let mut line: Vec<u8> = Vec::new();
    let mut total: u64 = 0;
    let mut n: usize = 0;
    loop {
        let buf = r.fill_buf().map_err(|e| e.to_string())?;
        if buf.is_empty() {
            if !line.is_empty() {
                f(&line);
            }
            return Ok(());
        }
        let newline = buf.iter().position(|&c| c == b'\n');
        let chunk = &buf[..newline.unwrap_or(buf.len())];
        if line.len() + chunk.len() > max_line {
            return Err(format!(
                "line {} is longer than {max_line} bytes; not parsed",
                n + 1
            ));
        }
        line.extend_from_slice(chunk);
        let used = chunk.len() + usize::from(newline.is_some());
        r.consume(used);
        total += used as u64;
        if total > max_total {
            return Err(format!("larger than {max_total} bytes; not parsed"));
        }
        if newline.is_some() {
            n += 1;
            f(&line);
            line.clear();
        }
    }
}

/// The fields of a deb822 stanza (dpkg status, apt Packages lists) this inspector needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stanza {
    pub package: Option<String>,
    pub version: Option<String>,
    pub architecture: Option<String>,
    pub status: Option<String>,
}

impl Stanza {
    /// Installed according to dpkg's `Status:` (`<want> ok installed`).
    pub fn installed(&self) -> bool {
        self.status.as_deref().is_some_and(|s| {
            let w: Vec<&str> = s.split_whitespace().collect();
            w.len() == 3 && w[1] == "ok" && w[2] == "installed"
        })
    }
}

/// Feeds lines of a deb822 file and yields complete stanzas.
#[derive(Debug, Default)]
pub struct StanzaReader {
    cur: Stanza,
    started: bool,
}

impl StanzaReader {
    /// One line; returns the stanza a blank line completes.
    pub fn line(&mut self, line: &[u8]) -> Option<Stanza> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            return self.finish();
        }
        if line[0] == b' ' || line[0] == b'\t' {
            return None; // continuation of a multi-line field
        }
        self.started = true;
        let colon = line.iter().position(|&c| c == b':')?;
        let value = || {
            Some(
                String::from_utf8_lossy(&line[colon + 1..])
                    .trim()
                    .to_owned(),
            )
        };
        let slot = match &line[..colon] {
            b"Package" => &mut self.cur.package,
            b"Version" => &mut self.cur.version,
            b"Architecture" => &mut self.cur.architecture,
            b"Status" => &mut self.cur.status,
            _ => return None,
        };
        if slot.is_none() {
            *slot = value();
        }
        None
    }

    /// The stanza in progress, at the end of the file.
    pub fn finish(&mut self) -> Option<Stanza> {
        if !self.started {
            return None;
        }
        self.started = false;
        Some(std::mem::take(&mut self.cur))
    }
}

/// `YYYY-MM-DD` → Unix seconds of its midnight (UTC).
pub fn parse_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y: i64 = digits(&s[..4])?;
    let m: u32 = digits(&s[5..7])?;
    let d: u32 = digits(&s[8..10])?;
    valid_date(y, m, d).then(|| unix_of(y, m, d, 0, 0, 0))
}

/// `HH:MM:SS` → seconds since midnight.
fn parse_time(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    let (h, m, sec): (i64, i64, i64) = (digits(&s[..2])?, digits(&s[3..5])?, digits(&s[6..8])?);
    (h < 24 && m < 60 && sec < 61).then_some(h * 3600 + m * 60 + sec)
}

fn digits<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn valid_date(y: i64, m: u32, d: u32) -> bool {
    (1970..=9999).contains(&y) && (1..=12).contains(&m) && (1..=31).contains(&d)
}

/// `2024-01-10` and `06:25:12` → Unix seconds (the time is taken as UTC: dpkg and apt log
/// local time, which is UTC on cloud node images).
fn date_time(date: &str, time: &str) -> Option<i64> {
    Some(parse_date(date)? + parse_time(time)?)
}

/// The newest trustworthy time among a log's entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogScan {
    /// The newest entry not in the future.
    pub newest: Option<i64>,
    /// Entries recognised.
    pub entries: usize,
    /// Entries dated after `now` (plus the tolerance): the clock was wrong when they were
    /// written, or is wrong now; ignored.
    pub future: usize,
    /// Lines that are not entries.
    pub junk: usize,
}

impl LogScan {
    fn add(&mut self, t: Option<i64>, now: i64) {
        match t {
            Some(t) if t > now + FUTURE_TOLERANCE => {
                self.entries += 1;
                self.future += 1;
            }
            Some(t) => {
                self.entries += 1;
                self.newest = Some(self.newest.map_or(t, |n| n.max(t)));
            }
            None => self.junk += 1,
        }
    }
}

/// How far ahead of now a time may be before it is not trusted: logs are in local time, and
/// a day covers every time zone.
pub const FUTURE_TOLERANCE: i64 = 86_400;

/// The text of a log tail: when the tail starts inside the file, its first (partial) line is
/// dropped.
fn tail_lines(bytes: &[u8], start: u64) -> impl Iterator<Item = &[u8]> {
    let body = if start > 0 {
        match bytes.iter().position(|&c| c == b'\n') {
            Some(p) => &bytes[p + 1..],
            None => &[][..],
        }
    } else {
        bytes
    };
    body.split(|&c| c == b'\n').filter(|l| !l.is_empty())
}

/// dpkg.log: `2024-01-10 06:25:12 <action> ...`; package actions and state changes count as
/// transactions (`startup` lines also appear for runs that change nothing).
pub fn scan_dpkg_log(bytes: &[u8], start: u64, now: i64) -> LogScan {
    const ACTIONS: [&str; 7] = [
        "install",
        "upgrade",
        "remove",
        "purge",
        "configure",
        "trigproc",
        "status",
    ];
    let mut scan = LogScan::default();
    for line in tail_lines(bytes, start) {
        let text = String::from_utf8_lossy(line);
        let mut w = text.split_whitespace();
        let (date, time, action) = (w.next(), w.next(), w.next());
        match (date, time, action) {
            (Some(d), Some(t), Some("startup" | "conffile")) if date_time(d, t).is_some() => {}
            (Some(d), Some(t), Some(a)) if ACTIONS.contains(&a) => scan.add(date_time(d, t), now),
            _ => scan.add(None, now),
        }
    }
    scan
}

/// apt's history.log: `End-Date: 2024-01-10  06:25:12` closes each transaction.
pub fn scan_apt_history(bytes: &[u8], start: u64, now: i64) -> LogScan {
    let mut scan = LogScan::default();
    for line in tail_lines(bytes, start) {
        let text = String::from_utf8_lossy(line);
        if let Some(rest) = text.strip_prefix("End-Date:") {
            let mut w = rest.split_whitespace();
            let t = match (w.next(), w.next()) {
                (Some(d), Some(t)) => date_time(d, t),
                _ => None,
            };
            scan.add(t, now);
        }
    }
    scan
}

/// dnf's dnf.rpm.log: `2024-01-10T06:25:12+0000 SUBDEBUG Upgrade: pkg` (one line per package
/// of a transaction; other levels are dnf's own messages, written even when nothing changes).
pub fn scan_dnf_rpm_log(bytes: &[u8], start: u64, now: i64) -> LogScan {
    let mut scan = LogScan::default();
    for line in tail_lines(bytes, start) {
        let text = String::from_utf8_lossy(line);
        let mut w = text.split_whitespace();
        match (w.next(), w.next()) {
            (Some(stamp), Some("SUBDEBUG")) => scan.add(iso_time(stamp), now),
            (Some(stamp), Some(_)) if iso_time(stamp).is_some() => {}
            _ => scan.add(None, now),
        }
    }
    scan
}

/// `2024-01-10T06:25:12+0000`, `…Z`, `…+01:00`, `…-0500` → Unix seconds.
fn iso_time(s: &str) -> Option<i64> {
    if s.len() < 19 || !s.is_char_boundary(19) || s.as_bytes()[10] != b'T' {
        return None;
    }
    let t = date_time(&s[..10], &s[11..19])?;
    let zone = &s[19..];
    let offset = match zone {
        "" | "Z" => 0,
        z => {
            let sign = match z.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let hm: String = z[1..].chars().filter(|c| *c != ':').collect();
            if hm.len() != 4 {
                return None;
            }
            let h: i64 = digits(&hm[..2])?;
            let m: i64 = digits(&hm[2..])?;
            sign * (h * 3600 + m * 60)
        }
    };
    Some(t - offset)
}

/// A Release file's `Date: Thu, 21 Nov 2024 10:33:07 UTC` → Unix seconds.
pub fn release_date(text: &str) -> Option<i64> {
    let value = text.lines().find_map(|l| l.strip_prefix("Date:"))?.trim();
    let value = value.split_once(',').map_or(value, |(_, rest)| rest).trim();
    let w: Vec<&str> = value.split_whitespace().collect();
    if w.len() < 4 {
        return None;
    }
    let d: u32 = digits(w[0])?;
    let m = month(w[1])?;
    let y: i64 = digits(w[2])?;
    if !valid_date(y, m, d) {
        return None;
    }
    let secs = parse_time(w[3])?;
    let offset = match w.get(4).copied() {
        None | Some("UTC" | "GMT" | "Z" | "+0000" | "-0000") => 0,
        Some(z) if z.len() == 5 && (z.starts_with('+') || z.starts_with('-')) => {
            let h: i64 = digits(&z[1..3])?;
            let mi: i64 = digits(&z[3..5])?;
            let o = h * 3600 + mi * 60;
            if z.starts_with('-') { -o } else { o }
        }
        Some(_) => return None,
    };
    Some(unix_of(y, m, d, 0, 0, 0) + secs - offset)
}

/// The first plausible `YYYYMMDD` run of exactly eight digits in `s` (`20240110.1`,
/// `3.0.20240824`), as `YYYY-MM-DD`.
pub fn embedded_date(s: &str) -> Option<String> {
    s.split(|c: char| !c.is_ascii_digit())
        .filter(|run| run.len() == 8)
        .find_map(|run| {
            let date = format!("{}-{}-{}", &run[..4], &run[4..6], &run[6..]);
            parse_date(&date)
                .filter(|_| run.starts_with("20"))
                .map(|_| date)
        })
}

/// The AKS VHD build log `/opt/azure/vhd-install.complete`: the build's date (AgentBaker's
/// `Install completed successfully on <date>`, else the older `Starting build on <date>`, in
/// `date`'s default format, UTC) and its `VSTS Build NUMBER:`.
pub fn vhd_install_log(text: &str) -> (Option<String>, Option<String>) {
    let after = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .map(str::trim)
    };
    let date = after("Install completed successfully on")
        .and_then(date_output)
        .or_else(|| after("Starting build on").and_then(date_output));
    let number = after("VSTS Build NUMBER:")
        .filter(|n| !n.is_empty())
        .map(str::to_owned);
    (number, date)
}

/// `date`'s default output in UTC, `Fri May  3 00:12:45 UTC 2024` → `2024-05-03`.
fn date_output(s: &str) -> Option<String> {
    let w: Vec<&str> = s.split_whitespace().collect();
    let [_, mon, day, time, zone, year] = w.as_slice() else {
        return None;
    };
    if !matches!(*zone, "UTC" | "GMT") || parse_time(time).is_none() {
        return None;
    }
    let m = month(mon)?;
    let d: u32 = digits(day)?;
    let y: i64 = digits(year)?;
    valid_date(y, m, d).then(|| format!("{y:04}-{m:02}-{d:02}"))
}

fn month(name: &str) -> Option<u32> {
    [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|n| *n == name)
    .and_then(|i| u32::try_from(i + 1).ok())
}

/// `/etc/cloud/build.info` (Ubuntu cloud images): `build_name: server`, `serial: 20240110.1`.
pub fn build_info(text: &str) -> (Option<String>, Option<String>) {
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(k))
            .and_then(|r| r.trim_start().strip_prefix(':'))
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    (field("build_name"), field("serial"))
}

/// The security suite of an apt lists file name
/// (`<host>_<path>_dists_<suite>_<component>_binary-<arch>_Packages`): the suite and the file
/// name prefix its Release files share (`<host>_<path>_dists_<suite>_`). None for files that
/// are not Packages files of a security suite.
pub fn security_packages_file(name: &str) -> Option<(String, String)> {
    if !name.ends_with("_Packages") {
        return None;
    }
    let at = name.find("_dists_")? + "_dists_".len();
    let suite_len = name[at..].find('_')?;
    let suite = &name[at..at + suite_len];
    let security = suite.ends_with("-security")
        || suite.ends_with("/updates")
        || name[..at].contains("debian-security");
    security.then(|| (suite.to_owned(), name[..at + suite_len + 1].to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_315_371; // 2026-11-22T02:42:51Z

    #[test]
    fn lines_are_bounded() {
        let mut got = Vec::new();
        each_line(&b"a\nbb\r\nccc"[..], 8, 100, |l| got.push(l.to_vec())).unwrap();
        assert_eq!(got, vec![b"a".to_vec(), b"bb\r".to_vec(), b"ccc".to_vec()]);
        let long = vec![b'x'; 1 << 20];
        let err = each_line(&long[..], 64 << 10, u64::MAX, |_| {}).unwrap_err();
        assert!(err.contains("line 1 is longer than 65536 bytes"), "{err}");
        let err = each_line(&b"a\nb\nc\n"[..], 8, 3, |_| {}).unwrap_err();
        assert!(err.contains("larger than 3 bytes"), "{err}");
    }

    #[test]
    fn stanzas_from_status() {
        let text = b"Package: libc6\nStatus: install ok installed\nArchitecture: amd64\n\
            Version: 2.35-0ubuntu3.6\nDescription: GNU C Library\n more text\n\n\
            Package: removed\nStatus: deinstall ok config-files\nVersion: 1.0\n\n\
            Package: trunc\nStatus: install ok insta";
        let mut r = StanzaReader::default();
        let mut out = Vec::new();
        for l in text.split(|&c| c == b'\n') {
            out.extend(r.line(l));
        }
        out.extend(r.finish());
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].package.as_deref(), Some("libc6"));
        assert_eq!(out[0].version.as_deref(), Some("2.35-0ubuntu3.6"));
        assert_eq!(out[0].architecture.as_deref(), Some("amd64"));
        assert!(out[0].installed());
        assert!(!out[1].installed());
        // Truncated mid-field: not "installed", and no version.
        assert!(!out[2].installed());
        assert_eq!(out[2].version, None);
    }

    #[test]
    fn dpkg_log_newest_and_hostile_lines() {
        let log = b"2026-11-01 06:25:12 startup archives unpack\n\
            2026-11-01 06:25:13 upgrade libc6:amd64 2.35-0ubuntu3.6 2.35-0ubuntu3.8\n\
            2026-11-01 06:25:14 status installed libc6:amd64 2.35-0ubuntu3.8\n\
            garbage \xff\xfe line\n\
            2026-13-01 06:25:14 status installed bad-month 1\n\
            2026-11-02 25:00:00 status installed bad-hour 1\n\
            2027-06-01 00:00:00 status installed from-the-future 1\n";
        let s = scan_dpkg_log(log, 0, NOW);
        assert_eq!(s.newest, Some(unix_of(2026, 11, 1, 6, 25, 14)));
        assert_eq!(s.entries, 3);
        assert_eq!(s.future, 1);
        assert_eq!(s.junk, 3);
        // A tail that starts mid-line drops the partial first line.
        let s = scan_dpkg_log(b"2026-11-21 00:00:00 status installed x 1\n", 5, NOW);
        assert_eq!(s.newest, None);
        assert_eq!(scan_dpkg_log(b"", 0, NOW), LogScan::default());
    }

    #[test]
    fn apt_history_end_dates() {
        let log = b"Start-Date: 2026-11-20  06:25:01\nCommandline: apt-get -y upgrade\n\
            Upgrade: libc6:amd64 (2.35-0ubuntu3.6, 2.35-0ubuntu3.8)\n\
            End-Date: 2026-11-20  06:25:12\n\nEnd-Date: nonsense\n";
        let s = scan_apt_history(log, 0, NOW);
        assert_eq!(s.newest, Some(unix_of(2026, 11, 20, 6, 25, 12)));
        assert_eq!((s.entries, s.junk), (1, 1));
    }

    #[test]
    fn dnf_rpm_log() {
        let log = b"2026-11-20T06:25:12+0000 INFO --- logging initialized ---\n\
            2026-11-20T06:25:13+0100 SUBDEBUG Upgrade: openssl-3.3.2-1.azl3.x86_64\n\
            2026-11-21T00:00:00Z INFO --- logging initialized ---\n";
        let s = scan_dnf_rpm_log(log, 0, NOW);
        assert_eq!(s.newest, Some(unix_of(2026, 11, 20, 5, 25, 13)));
        assert_eq!((s.entries, s.junk), (1, 0));
    }

    #[test]
    fn release_dates() {
        let t = "Origin: Ubuntu\nSuite: jammy-security\nDate: Thu, 21 Nov 2024 10:33:07 UTC\n";
        assert_eq!(release_date(t), Some(unix_of(2024, 11, 21, 10, 33, 7)));
        assert_eq!(
            release_date("Date: Sat, 09 Nov 2024 10:00:00 +0100\n"),
            Some(unix_of(2024, 11, 9, 9, 0, 0))
        );
        assert_eq!(release_date("Date: Thu, 41 Nov 2024 10:33:07 UTC\n"), None);
        assert_eq!(release_date("Suite: x\n"), None);
    }

    #[test]
    fn dates_in_versions() {
        assert_eq!(embedded_date("20240110.1").as_deref(), Some("2024-01-10"));
        assert_eq!(embedded_date("3.0.20240824").as_deref(), Some("2024-08-24"));
        assert_eq!(embedded_date("5.15.0-1061"), None);
        assert_eq!(embedded_date("20241399"), None);
        let (name, serial) = build_info("build_name: server\nserial: 20240110.1\n");
        assert_eq!(name.as_deref(), Some("server"));
        assert_eq!(serial.as_deref(), Some("20240110.1"));
    }

    #[test]
    fn vhd_build_log() {
        let (n, d) = vhd_install_log(
            "Starting build on  Fri May  3 00:12:45 UTC 2024\nComponents downloaded ...\n",
        );
        assert_eq!((n, d.as_deref()), (None, Some("2024-05-03")));
        let (n, d) = vhd_install_log(
            "Starting build on  Fri May  3 00:12:45 UTC 2024\n\
             Install completed successfully on  Sat May  4 01:00:00 UTC 2024\n\
             VSTS Build NUMBER: 20240504.1_master_91234567\n",
        );
        assert_eq!(n.as_deref(), Some("20240504.1_master_91234567"));
        assert_eq!(d.as_deref(), Some("2024-05-04"));
        assert_eq!(
            vhd_install_log("Starting build on  Fri May  3 00:12:45 CEST 2024\n").1,
            None
        );
        assert_eq!(vhd_install_log("Starting build on garbage\n"), (None, None));
    }

    #[test]
    fn security_lists() {
        assert_eq!(
            security_packages_file(
                "azure.archive.ubuntu.com_ubuntu_dists_jammy-security_main_binary-amd64_Packages"
            ),
            Some((
                "jammy-security".to_owned(),
                "azure.archive.ubuntu.com_ubuntu_dists_jammy-security_".to_owned()
            ))
        );
        assert!(
            security_packages_file(
                "deb.debian.org_debian-security_dists_bookworm-security_main_binary-amd64_Packages"
            )
            .is_some()
        );
        for other in [
            "azure.archive.ubuntu.com_ubuntu_dists_jammy-updates_main_binary-amd64_Packages",
            "azure.archive.ubuntu.com_ubuntu_dists_jammy-security_InRelease",
            "azure.archive.ubuntu.com_ubuntu_dists_jammy-security_main_binary-amd64_Packages.lz4",
            "lock",
        ] {
            assert_eq!(security_packages_file(other), None, "{other}");
        }
    }
}
