//! SSH sessions on the node: which ones are open, and which one a process belongs to.
//!
//! Two sources, joined:
//!
//! * **sshd's session processes.** OpenSSH retitles its per-connection processes: the
//!   privileged monitor is `sshd: USER [priv]`, the process that runs the user's shell or
//!   command is `sshd: USER@pts/N` (a terminal) or `sshd: USER@notty` (`ssh host cmd`, scp,
//!   sftp). OpenSSH 9.8 and later run these as a separate binary, `sshd-session`, titled
//!   `sshd-session: USER@pts/N`. A process whose parent chain reaches one of these belongs to
//!   that session. An untitled process named `sshd-session`, or an `sshd` whose parent is an
//!   `sshd` too (a per-connection child, not the listener), also marks a session; its user
//!   then comes from wtmp or the uid.
//! * **wtmp** (`/var/log/wtmp`, glibc `struct utmp`): sshd records a `USER_PROCESS` for every
//!   login on a terminal, with the remote host, and a `DEAD_PROCESS` at logout. Only the last
//!   [`WTMP_TAIL`] bytes are read. A session is linked to its login by terminal line (and user);
//!   that fills [`SshSession::from`] and [`SshSession::login_at`]. Distributions that dropped
//!   wtmp (for wtmpdb) simply leave those two fields empty.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::procinfo::Chain;
use crate::host::{HostError, HostRoot};
use crate::inspect::process::ProcessTable;

/// How much of the end of wtmp is read: the most recent ~2700 records.
pub const WTMP_TAIL: u64 = 1 << 20;

/// Where wtmp lives on the host.
pub const WTMP_PATH: &str = "/var/log/wtmp";

/// Size of one glibc `struct utmp` on x86_64 and aarch64 (32-bit `tv_sec`).
pub(crate) const UTMP_SIZE: usize = 384;

/// `ut_type` values used here.
const RUN_LVL: i16 = 1;
const BOOT_TIME: i16 = 2;
const USER_PROCESS: i16 = 7;
const DEAD_PROCESS: i16 = 8;

/// An SSH session on the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SshSession {
    /// The login name (from sshd's process title, else wtmp, else `uid <n>`).
    pub user: String,
    /// `pts/N` for an interactive session; `None` for `ssh host command`, scp and sftp.
    pub tty: Option<String>,
    /// The remote host or address recorded in wtmp, when a login record matched.
    pub from: Option<String>,
    /// When the login was recorded in wtmp (RFC 3339), when a login record matched.
    pub login_at: Option<String>,
    /// The sshd process of the session (`sshd: USER@pts/N`, or its `[priv]` monitor).
    pub sshd_pid: i32,
}

impl SshSession {
    /// True for a session with a terminal (someone typing).
    pub fn is_interactive(&self) -> bool {
        self.tty.is_some()
    }
}

/// What sshd's process title says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Title {
    /// `sshd: USER@pts/N` or `sshd: USER@notty`.
    Session { user: String, tty: Option<String> },
    /// `sshd: USER [priv]`.
    Monitor { user: String },
}

/// Parses `argv[0]` of an sshd process. The listener (`sshd: /usr/sbin/sshd -D [listener] ...`)
/// and connections not yet authenticated (`[preauth]`, `[net]`, `[accepted]`) are not sessions.
pub(crate) fn parse_title(argv0: &str) -> Option<Title> {
    let t = argv0.trim_end_matches(['\0', ' ']);
    let rest = t
        .strip_prefix("sshd: ")
        .or_else(|| t.strip_prefix("sshd-session: "))?
        .trim();
    let valid_user =
        |u: &str| !u.is_empty() && !u.starts_with('/') && !u.contains(char::is_whitespace);
    if let Some(user) = rest.strip_suffix(" [priv]") {
        return valid_user(user).then(|| Title::Monitor {
            user: user.to_owned(),
        });
    }
    let (user, tty) = rest.rsplit_once('@')?;
    if !valid_user(user) || tty.is_empty() || tty.contains(char::is_whitespace) {
        return None;
    }
    Some(Title::Session {
        user: user.to_owned(),
        tty: (tty != "notty").then(|| tty.to_owned()),
    })
}

/// A session process found, before it is joined with wtmp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Found {
    pub user: Option<String>,
    pub uid: Option<u32>,
    pub tty: Option<String>,
    pub sshd_pid: i32,
}

/// Whether a process is an sshd session process: `Some(Some(title))` when titled,
/// `Some(None)` for an untitled `sshd-session`, or an `sshd` child of an sshd (a
/// per-connection process whose title is not readable); `None` for everything else, the
/// listener and unauthenticated connections (`[preauth]`, `[net]`) included.
pub(crate) fn session_mark(
    argv0: &str,
    comm: &str,
    parent_comm: Option<&str>,
) -> Option<Option<Title>> {
    if let Some(t) = parse_title(argv0) {
        return Some(Some(t));
    }
    if argv0.starts_with("sshd: ") || argv0.starts_with("sshd-session: ") {
        return None;
    }
    let sshd_parent = matches!(parent_comm, Some("sshd" | "sshd-session"));
    (comm == "sshd-session" || (comm == "sshd" && sshd_parent)).then_some(None)
}

/// The SSH session the acting process of `chain` belongs to: the nearest session process in
/// the chain (the process itself included). Reaching any other sshd process first (the
/// listener) means no session.
pub(crate) fn session_in_chain(chain: &Chain) -> Option<Found> {
    let procs: Vec<_> = chain.all().collect();
    for (i, p) in procs.iter().enumerate() {
        let argv0 = p.argv.first().map(String::as_str).unwrap_or("");
        let parent_comm = procs.get(i + 1).map(|q| q.comm.as_str());
        if let Some(mark) = session_mark(argv0, &p.comm, parent_comm) {
            let (user, tty) = match mark {
                Some(Title::Session { user, tty }) => (Some(user), tty),
                Some(Title::Monitor { user }) => (Some(user), None),
                None => (None, None),
            };
            return Some(Found {
                user,
                uid: p.uid,
                tty,
                sshd_pid: p.pid,
            });
        }
        if p.comm == "sshd" || p.comm == "sshd-session" {
            return None;
        }
    }
    None
}

/// One wtmp record (the fields used).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UtmpRecord {
    pub ut_type: i16,
    pub pid: i32,
    pub line: String,
    pub user: String,
    pub host: String,
    pub tv_sec: i32,
    pub addr_v6: [u8; 16],
}

/// Parses whole 384-byte records; a trailing partial record and records whose type is not a
/// utmp type (0..=9: garbage) are skipped.
pub(crate) fn parse_utmp(bytes: &[u8]) -> Vec<UtmpRecord> {
    bytes
        .chunks_exact(UTMP_SIZE)
        .filter_map(parse_record)
        .collect()
}

fn parse_record(r: &[u8]) -> Option<UtmpRecord> {
    let i16_at = |at: usize| Some(i16::from_ne_bytes(r.get(at..at + 2)?.try_into().ok()?));
    let i32_at = |at: usize| Some(i32::from_ne_bytes(r.get(at..at + 4)?.try_into().ok()?));
    let text = |at: usize, len: usize| -> Option<String> {
        let f = r.get(at..at + len)?;
        let end = f.iter().position(|b| *b == 0).unwrap_or(f.len());
        Some(String::from_utf8_lossy(f.get(..end)?).trim().to_owned())
    };
    let ut_type = i16_at(0)?;
    if !(0..=9).contains(&ut_type) {
        return None;
    }
    Some(UtmpRecord {
        ut_type,
        pid: i32_at(4)?,
        line: text(8, 32)?,
        user: text(44, 32)?,
        host: text(76, 256)?,
        tv_sec: i32_at(340)?,
        addr_v6: r.get(348..364)?.try_into().ok()?,
    })
}

/// A login still open at the end of the records read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    /// The terminal line, e.g. `pts/0`.
    pub line: String,
    pub user: String,
    /// The remote host name, or the address when no name was recorded.
    pub from: Option<String>,
    /// The pid sshd recorded (the session's shell).
    pub pid: i32,
    /// Seconds since the Unix epoch.
    pub at: i64,
}

/// Replays records in order: `USER_PROCESS` opens a login on its line, `DEAD_PROCESS` on the
/// same line closes it, a boot or shutdown record closes all. Oldest first.
pub(crate) fn open_logins(records: &[UtmpRecord]) -> Vec<Login> {
    let mut open: BTreeMap<String, (usize, Login)> = BTreeMap::new();
    for (n, r) in records.iter().enumerate() {
        match r.ut_type {
            USER_PROCESS if !r.line.is_empty() && !r.user.is_empty() => {
                let login = Login {
                    line: r.line.clone(),
                    user: r.user.clone(),
                    from: remote(r),
                    pid: r.pid,
                    at: i64::from(r.tv_sec),
                };
                open.insert(r.line.clone(), (n, login));
            }
            DEAD_PROCESS => {
                if r.line.is_empty() {
                    open.retain(|_, (_, l)| l.pid != r.pid);
                } else {
                    open.remove(&r.line);
                }
            }
            BOOT_TIME => open.clear(),
            RUN_LVL if r.user == "shutdown" => open.clear(),
            _ => {}
        }
    }
    let mut v: Vec<(usize, Login)> = open.into_values().collect();
    v.sort_by_key(|(n, _)| *n);
    v.into_iter().map(|(_, l)| l).collect()
}

fn remote(r: &UtmpRecord) -> Option<String> {
    if !r.host.is_empty() {
        return Some(r.host.clone());
    }
    let a = r.addr_v6;
    if a.iter().all(|b| *b == 0) {
        return None;
    }
    if a.get(4..).is_some_and(|rest| rest.iter().all(|b| *b == 0)) {
        let v4: [u8; 4] = a.get(..4)?.try_into().ok()?;
        return Some(Ipv4Addr::from(v4).to_string());
    }
    Some(Ipv6Addr::from(a).to_string())
}

/// The logins open according to the end of the host's wtmp.
pub fn read_logins(host: &HostRoot) -> Result<Vec<Login>, HostError> {
    let (offset, bytes) = host.read_tail(Path::new(WTMP_PATH), WTMP_TAIL)?;
    // Realign to a record boundary of the file (offset 0 is one).
    let skip = usize::try_from((UTMP_SIZE as u64 - offset % UTMP_SIZE as u64) % UTMP_SIZE as u64)
        .unwrap_or(0);
    Ok(open_logins(&parse_utmp(bytes.get(skip..).unwrap_or(&[]))))
}

/// Re-reads wtmp (and `/etc/passwd`) only when they changed.
#[derive(Debug, Default)]
pub(crate) struct LoginCache {
    wtmp_key: Option<(u64, u64, i64, i64)>,
    logins: Vec<Login>,
    passwd_key: Option<(u64, u64, i64, i64)>,
    users: BTreeMap<u32, String>,
}

impl LoginCache {
    /// Open logins (empty when wtmp is missing or unreadable).
    pub fn logins(&mut self, host: &HostRoot) -> &[Login] {
        let key = host.stat(Path::new(WTMP_PATH)).ok().map(|m| {
            (
                m.dev,
                m.ino,
                i64::try_from(m.size).unwrap_or(i64::MAX),
                m.mtime,
            )
        });
        if key != self.wtmp_key || key.is_none() {
            self.logins = read_logins(host).unwrap_or_default();
            self.wtmp_key = key;
        }
        &self.logins
    }

    /// The login name of `uid` from the host's `/etc/passwd`.
    pub fn user_name(&mut self, host: &HostRoot, uid: u32) -> Option<String> {
        let key = host.stat(Path::new("/etc/passwd")).ok().map(|m| {
            (
                m.dev,
                m.ino,
                i64::try_from(m.size).unwrap_or(i64::MAX),
                m.mtime,
            )
        });
        if key != self.passwd_key {
            self.users = host
                .read_string(Path::new("/etc/passwd"), 4 << 20)
                .map(|t| parse_passwd(&t))
                .unwrap_or_default();
            self.passwd_key = key;
        }
        self.users.get(&uid).cloned()
    }
}

fn parse_passwd(text: &str) -> BTreeMap<u32, String> {
    let mut users = BTreeMap::new();
    for line in text.lines() {
        let mut f = line.split(':');
        if let (Some(name), Some(_), Some(uid)) = (f.next(), f.next(), f.next())
            && let Ok(uid) = uid.parse::<u32>()
            && !name.is_empty()
        {
            users.entry(uid).or_insert_with(|| name.to_owned());
        }
    }
    users
}

/// Completes a found session: the wtmp login on the same terminal (by the same user, the most
/// recent one), else one whose recorded pid is in `pids`; then the user name from wtmp or
/// `/etc/passwd` when the title did not give it.
pub(crate) fn finish(
    found: Found,
    pids: &BTreeSet<i32>,
    cache: &mut LoginCache,
    host: &HostRoot,
) -> SshSession {
    let login = {
        let logins = cache.logins(host);
        let by_tty = found.tty.as_ref().and_then(|tty| {
            logins
                .iter()
                .rev()
                .find(|l| &l.line == tty && found.user.as_ref().is_none_or(|u| *u == l.user))
        });
        by_tty
            .or_else(|| logins.iter().rev().find(|l| pids.contains(&l.pid)))
            .cloned()
    };
    let user = found
        .user
        .or_else(|| login.as_ref().map(|l| l.user.clone()))
        .or_else(|| found.uid.and_then(|u| cache.user_name(host, u)))
        .or_else(|| found.uid.map(|u| format!("uid {u}")))
        .unwrap_or_else(|| "unknown".to_owned());
    SshSession {
        user,
        tty: found.tty,
        from: login.as_ref().and_then(|l| l.from.clone()),
        login_at: login.as_ref().map(|l| crate::clock::rfc3339_secs(l.at)),
        sshd_pid: found.sshd_pid,
    }
}

/// The SSH sessions open on the host, and what could not be read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionScan {
    pub sessions: Vec<SshSession>,
    /// Why `/proc` could not be listed (then `sessions` is not the whole truth).
    pub proc_error: Option<String>,
    /// Why wtmp could not be read (sessions then lack `from` and `loginAt`).
    pub wtmp_error: Option<String>,
}

/// The SSH sessions open on the host (see [`scan_ssh_sessions`] for the errors).
pub fn ssh_sessions(host: &HostRoot) -> Vec<SshSession> {
    scan_ssh_sessions(host).sessions
}

/// Lists the host's sshd session processes (`/proc` through `host`), one per session (the
/// `USER@tty` process, or the `[priv]` monitor when it has no such child), joined with the
/// logins open in wtmp. Sorted by sshd pid.
pub fn scan_ssh_sessions(host: &HostRoot) -> SessionScan {
    ssh_sessions_in(host, &ProcessTable::scan(host))
}

/// [`scan_ssh_sessions`] over a process table already scanned (a check scans `/proc` once).
pub fn ssh_sessions_in(host: &HostRoot, table: &ProcessTable) -> SessionScan {
    let mut scan = SessionScan {
        proc_error: table.error.clone(),
        ..Default::default()
    };

    #[derive(Debug)]
    struct Cand {
        argv0: String,
        comm: String,
        ppid: Option<i32>,
        uid: Option<u32>,
    }
    let mut cands: BTreeMap<i32, Cand> = BTreeMap::new();
    for p in &table.processes {
        let argv0 = p.argv.first().cloned().unwrap_or_default();
        let maybe = parse_title(&argv0).is_some() || p.comm == "sshd" || p.comm == "sshd-session";
        let Ok(pid) = i32::try_from(p.pid) else {
            continue;
        };
        if !maybe {
            continue;
        }
        let (ppid, uid) = host
            .read_string(&p.proc_path("status"), 16 << 10)
            .map(|s| status_ppid_uid(&s))
            .unwrap_or((None, None));
        cands.insert(
            pid,
            Cand {
                argv0,
                comm: p.comm.clone(),
                ppid,
                uid,
            },
        );
    }
    let marks: BTreeMap<i32, Option<Title>> = cands
        .iter()
        .filter_map(|(pid, c)| {
            let parent_comm = c
                .ppid
                .and_then(|pp| cands.get(&pp))
                .map(|q| q.comm.as_str());
            session_mark(&c.argv0, &c.comm, parent_comm).map(|m| (*pid, m))
        })
        .collect();
    // One per session: drop a process whose child is itself a session process.
    let parents_of_sessions: BTreeSet<i32> = marks
        .keys()
        .filter_map(|pid| cands.get(pid).and_then(|c| c.ppid))
        .collect();

    let mut cache = LoginCache::default();
    if let Err(e) = read_logins(host) {
        scan.wtmp_error = Some(e.to_string());
    }
    for (pid, mark) in marks
        .iter()
        .filter(|(p, _)| !parents_of_sessions.contains(p))
    {
        let Some(c) = cands.get(pid) else { continue };
        let (user, tty) = match mark {
            Some(Title::Session { user, tty }) => (Some(user.clone()), tty.clone()),
            Some(Title::Monitor { user }) => (Some(user.clone()), None),
            None => (None, None),
        };
        let found = Found {
            user,
            uid: c.uid,
            tty,
            sshd_pid: *pid,
        };
        scan.sessions
            .push(finish(found, &BTreeSet::from([*pid]), &mut cache, host));
    }
    scan
}

fn status_ppid_uid(status: &str) -> (Option<i32>, Option<u32>) {
    let mut ppid = None;
    let mut uid = None;
    for line in status.lines() {
        if let Some(v) = line.strip_prefix("PPid:") {
            ppid = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("Uid:") {
            uid = v.split_whitespace().nth(1).and_then(|u| u.parse().ok());
        }
    }
    (ppid, uid)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::attrib::procinfo::ProcSnapshot;

    /// One glibc `struct utmp` record, as sshd writes it.
    pub(crate) fn utmp(
        ut_type: i16,
        pid: i32,
        line: &str,
        user: &str,
        host: &str,
        sec: i32,
    ) -> Vec<u8> {
        let mut r = vec![0u8; UTMP_SIZE];
        r[0..2].copy_from_slice(&ut_type.to_ne_bytes());
        r[4..8].copy_from_slice(&pid.to_ne_bytes());
        r[8..8 + line.len()].copy_from_slice(line.as_bytes());
        let id = line.trim_start_matches("pts/");
        r[40..40 + id.len().min(4)].copy_from_slice(&id.as_bytes()[..id.len().min(4)]);
        r[44..44 + user.len()].copy_from_slice(user.as_bytes());
        r[76..76 + host.len()].copy_from_slice(host.as_bytes());
        r[336..340].copy_from_slice(&pid.to_ne_bytes());
        r[340..344].copy_from_slice(&sec.to_ne_bytes());
        r
    }

    #[test]
    fn titles() {
        let s = |u: &str, t: Option<&str>| {
            Some(Title::Session {
                user: u.into(),
                tty: t.map(Into::into),
            })
        };
        assert_eq!(parse_title("sshd: alice@pts/7"), s("alice", Some("pts/7")));
        assert_eq!(
            parse_title("sshd-session: bob@pts/0"),
            s("bob", Some("pts/0"))
        );
        assert_eq!(parse_title("sshd: carol@notty"), s("carol", None));
        assert_eq!(
            parse_title("sshd: alice@pts/7\0\0  "),
            s("alice", Some("pts/7"))
        );
        assert_eq!(
            parse_title("sshd: alice [priv]"),
            Some(Title::Monitor {
                user: "alice".into()
            })
        );
        assert_eq!(
            parse_title("sshd-session: alice [priv]"),
            Some(Title::Monitor {
                user: "alice".into()
            })
        );
        for not in [
            "sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups",
            "sshd: alice [preauth]",
            "sshd: unknown [net]",
            "/usr/sbin/sshd",
            "sshd",
            "sshd: ",
            "sshd: @pts/1",
            "sshd: alice@",
            "bash",
            "",
        ] {
            assert_eq!(parse_title(not), None, "{not}");
        }
    }

    fn snap(pid: i32, comm: &str, argv0: &str) -> ProcSnapshot {
        ProcSnapshot {
            pid,
            comm: comm.into(),
            argv: vec![argv0.into()],
            uid: Some(1000),
            ..Default::default()
        }
    }

    #[test]
    fn nearest_session_in_the_chain() {
        let chain = Chain {
            actor: snap(900, "vi", "vi"),
            parents: vec![
                snap(800, "sudo", "sudo"),
                snap(700, "bash", "-bash"),
                snap(600, "sshd", "sshd: alice@pts/3"),
                snap(500, "sshd", "sshd: alice [priv]"),
                snap(
                    400,
                    "sshd",
                    "sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups",
                ),
                snap(1, "systemd", "/sbin/init"),
            ],
        };
        let f = session_in_chain(&chain).unwrap();
        assert_eq!(f.user.as_deref(), Some("alice"));
        assert_eq!(f.tty.as_deref(), Some("pts/3"));
        assert_eq!(f.sshd_pid, 600);

        // sshd-session (OpenSSH >= 9.8) without a readable title.
        let chain = Chain {
            actor: snap(900, "cp", "cp"),
            parents: vec![
                snap(600, "sshd-session", ""),
                snap(1, "systemd", "/sbin/init"),
            ],
        };
        let f = session_in_chain(&chain).unwrap();
        assert_eq!((f.user, f.sshd_pid, f.uid), (None, 600, Some(1000)));

        // Started by the listener itself, or no sshd at all: no session.
        for parents in [
            vec![
                snap(400, "sshd", "/usr/sbin/sshd -D"),
                snap(1, "systemd", "/sbin/init"),
            ],
            vec![
                snap(300, "containerd-shim", "shim"),
                snap(1, "systemd", "/sbin/init"),
            ],
            vec![],
        ] {
            let chain = Chain {
                actor: snap(900, "sh", "sh"),
                parents,
            };
            assert_eq!(session_in_chain(&chain), None);
        }
    }

    #[test]
    fn wtmp_open_logins() {
        let mut b = Vec::new();
        b.extend(utmp(BOOT_TIME, 0, "~", "reboot", "6.1.0", 1_700_000_000));
        b.extend(utmp(
            USER_PROCESS,
            1201,
            "pts/0",
            "alice",
            "203.0.113.9",
            1_700_000_100,
        ));
        b.extend(utmp(USER_PROCESS, 1301, "pts/1", "bob", "", 1_700_000_200));
        b.extend(utmp(DEAD_PROCESS, 1201, "pts/0", "", "", 1_700_000_300));
        b.extend(utmp(
            USER_PROCESS,
            1401,
            "pts/0",
            "carol",
            "bastion.example.test",
            1_700_000_400,
        ));
        let logins = open_logins(&parse_utmp(&b));
        assert_eq!(logins.len(), 2);
        assert_eq!(logins[0].user, "bob");
        assert_eq!(logins[0].from, None);
        assert_eq!(logins[1].user, "carol");
        assert_eq!(logins[1].line, "pts/0");
        assert_eq!(logins[1].from.as_deref(), Some("bastion.example.test"));
        assert_eq!(logins[1].pid, 1401);
        assert_eq!(logins[1].at, 1_700_000_400);

        // A reboot closes everything before it.
        b.extend(utmp(BOOT_TIME, 0, "~", "reboot", "6.1.0", 1_700_000_500));
        assert!(open_logins(&parse_utmp(&b)).is_empty());
    }

    #[test]
    fn wtmp_address_without_a_host_name() {
        let mut r = utmp(USER_PROCESS, 5, "pts/2", "dave", "", 1);
        r[348..352].copy_from_slice(&[192, 0, 2, 10]);
        assert_eq!(
            open_logins(&parse_utmp(&r))[0].from.as_deref(),
            Some("192.0.2.10")
        );
        let mut r = utmp(USER_PROCESS, 5, "pts/2", "dave", "", 1);
        let v6: Ipv6Addr = "2001:db8::7".parse().unwrap();
        r[348..364].copy_from_slice(&v6.octets());
        assert_eq!(
            open_logins(&parse_utmp(&r))[0].from.as_deref(),
            Some("2001:db8::7")
        );
    }

    #[test]
    fn wtmp_garbage_and_truncation() {
        let good = utmp(USER_PROCESS, 7, "pts/4", "erin", "h", 1);
        // Truncated record: skipped.
        assert!(parse_utmp(&good[..383]).is_empty());
        // A whole record followed by half of one.
        let mut b = good.clone();
        b.extend(&good[..100]);
        assert_eq!(parse_utmp(&b).len(), 1);
        // Garbage type; unterminated, non-UTF-8 strings; all 0xff.
        let mut bad = good.clone();
        bad[0..2].copy_from_slice(&77i16.to_ne_bytes());
        assert!(parse_utmp(&bad).is_empty());
        assert!(parse_utmp(&[0xff; UTMP_SIZE * 3]).is_empty());
        let mut odd = good.clone();
        odd[44..76].copy_from_slice(&[0xe9; 32]);
        odd[8..40].copy_from_slice(&[b'x'; 32]);
        let r = parse_utmp(&odd);
        assert_eq!(r[0].line, "x".repeat(32));
        assert_eq!(r[0].user.chars().count(), 32);
        // Records with an empty line or user open nothing.
        let r = utmp(USER_PROCESS, 7, "", "erin", "h", 1);
        assert!(open_logins(&parse_utmp(&r)).is_empty());
    }

    #[test]
    fn wtmp_tail_realigns_to_records() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("var/log")).unwrap();
        // More than WTMP_TAIL bytes: the first records are not read, the last are.
        let n = (WTMP_TAIL as usize / UTMP_SIZE) + 10;
        let mut b = Vec::with_capacity(n * UTMP_SIZE);
        for i in 0..n {
            let line = format!("pts/{}", i % 50);
            b.extend(utmp(USER_PROCESS, i as i32, &line, "user", "h", i as i32));
        }
        std::fs::write(dir.path().join("var/log/wtmp"), &b).unwrap();
        let host = HostRoot::new(dir.path()).unwrap();
        let logins = read_logins(&host).unwrap();
        assert_eq!(logins.len(), 50);
        assert_eq!(logins.last().unwrap().pid, (n - 1) as i32);
        assert!(
            logins
                .iter()
                .all(|l| l.user == "user" && l.from.as_deref() == Some("h"))
        );
        // Missing: an error naming the path.
        let empty = tempfile::tempdir().unwrap();
        let e = read_logins(&HostRoot::new(empty.path()).unwrap()).unwrap_err();
        assert!(e.to_string().contains("/var/log/wtmp"), "{e}");
    }

    #[test]
    fn joined_with_wtmp_by_tty_then_pid() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("var/log")).unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        let mut b = utmp(
            USER_PROCESS,
            4242,
            "pts/7",
            "alice",
            "198.51.100.4",
            1_795_315_371,
        );
        b.extend(utmp(
            USER_PROCESS,
            4343,
            "pts/8",
            "mallory",
            "x",
            1_795_315_000,
        ));
        std::fs::write(dir.path().join("var/log/wtmp"), &b).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nfrank:x:1005:1005::/home/frank:/bin/sh\n",
        )
        .unwrap();
        let host = HostRoot::new(dir.path()).unwrap();
        let mut cache = LoginCache::default();
        let s = finish(
            Found {
                user: Some("alice".into()),
                uid: Some(1000),
                tty: Some("pts/7".into()),
                sshd_pid: 4240,
            },
            &BTreeSet::new(),
            &mut cache,
            &host,
        );
        assert_eq!(s.from.as_deref(), Some("198.51.100.4"));
        assert_eq!(s.login_at.as_deref(), Some("2026-11-22T02:42:51Z"));
        // Same tty, other user: no match.
        let s = finish(
            Found {
                user: Some("bob".into()),
                uid: None,
                tty: Some("pts/7".into()),
                sshd_pid: 1,
            },
            &BTreeSet::new(),
            &mut cache,
            &host,
        );
        assert_eq!((s.from, s.login_at), (None, None));
        // Untitled: by pid, and the user comes from wtmp.
        let s = finish(
            Found {
                user: None,
                uid: Some(1001),
                tty: None,
                sshd_pid: 4340,
            },
            &BTreeSet::from([4343]),
            &mut cache,
            &host,
        );
        assert_eq!(s.user, "mallory");
        // No login at all: the name from /etc/passwd, else the uid.
        let s = finish(
            Found {
                user: None,
                uid: Some(1005),
                tty: None,
                sshd_pid: 1,
            },
            &BTreeSet::new(),
            &mut cache,
            &host,
        );
        assert_eq!(s.user, "frank");
        let s = finish(
            Found {
                user: None,
                uid: Some(77),
                tty: None,
                sshd_pid: 1,
            },
            &BTreeSet::new(),
            &mut cache,
            &host,
        );
        assert_eq!(s.user, "uid 77");
    }

    #[test]
    fn sessions_from_a_fixture_proc_tree() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let proc = |pid: i32, ppid: i32, uid: u32, comm: &str, argv: &[&str]| {
            let d = root.join(format!("proc/{pid}"));
            std::fs::create_dir_all(&d).unwrap();
            let mut cmdline = argv.join("\0").into_bytes();
            cmdline.push(0);
            std::fs::write(d.join("cmdline"), cmdline).unwrap();
            std::fs::write(d.join("comm"), format!("{comm}\n")).unwrap();
            std::fs::write(
                d.join("status"),
                format!("Name:\t{comm}\nState:\tS (sleeping)\nPPid:\t{ppid}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n"),
            )
            .unwrap();
        };
        proc(1, 0, 0, "systemd", &["/sbin/init"]);
        proc(
            400,
            1,
            0,
            "sshd",
            &["sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups"],
        );
        // alice, interactive: monitor + session child + shell.
        proc(500, 400, 0, "sshd", &["sshd: alice [priv]"]);
        proc(501, 500, 1000, "sshd", &["sshd: alice@pts/7"]);
        proc(502, 501, 1000, "bash", &["-bash"]);
        // bob, scp (notty), OpenSSH 9.8 binary names.
        proc(600, 400, 0, "sshd-session", &["sshd-session: bob [priv]"]);
        proc(601, 600, 1001, "sshd-session", &["sshd-session: bob@notty"]);
        // carol: only the monitor is left.
        proc(700, 400, 0, "sshd", &["sshd: carol [priv]"]);
        // Not sessions: preauth connection, an unrelated process.
        proc(800, 400, 0, "sshd", &["sshd: unknown [preauth]"]);
        proc(900, 1, 0, "containerd", &["/usr/bin/containerd"]);
        std::fs::create_dir_all(root.join("var/log")).unwrap();
        std::fs::write(
            root.join("var/log/wtmp"),
            utmp(
                USER_PROCESS,
                502,
                "pts/7",
                "alice",
                "203.0.113.9",
                1_795_315_371,
            ),
        )
        .unwrap();

        let host = HostRoot::new(root).unwrap();
        let scan = scan_ssh_sessions(&host);
        assert_eq!(scan.proc_error, None);
        assert_eq!(scan.wtmp_error, None);
        let got: Vec<(i32, &str, Option<&str>)> = scan
            .sessions
            .iter()
            .map(|s| (s.sshd_pid, s.user.as_str(), s.tty.as_deref()))
            .collect();
        assert_eq!(
            got,
            vec![
                (501, "alice", Some("pts/7")),
                (601, "bob", None),
                (700, "carol", None),
            ]
        );
        let alice = &scan.sessions[0];
        assert_eq!(alice.from.as_deref(), Some("203.0.113.9"));
        assert_eq!(alice.login_at.as_deref(), Some("2026-11-22T02:42:51Z"));
        assert!(alice.is_interactive());

        // No wtmp: sessions still listed, the error says why from/loginAt are missing.
        std::fs::remove_file(root.join("var/log/wtmp")).unwrap();
        let scan = scan_ssh_sessions(&host);
        assert_eq!(scan.sessions.len(), 3);
        assert!(scan.wtmp_error.unwrap().contains("/var/log/wtmp"));
    }
}
