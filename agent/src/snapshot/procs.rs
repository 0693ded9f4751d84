//! Processes and sockets, read from the host's `/proc` through [`crate::host::HostRoot`].
//!
//! A process that exits while it is being read is skipped (or kept with what was read): the
//! table is a moment's picture, never an error. Sockets come from pid 1's network namespace
//! (`/proc/1/net/*`, the node's own with `hostNetwork`), falling back to `/proc/net/*`, and
//! are mapped to their processes through `/proc/<pid>/fd` within the collector's budget.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::SnapshotRequest;
use super::collect::{Ctx, JsonList, Shared};
use crate::host::{HostError, HostRoot};
use crate::inspect::process::split_cmdline;

/// Clock ticks per second in `/proc/<pid>/stat`: Linux reports times in USER_HZ, 100 on every
/// architecture nodes run on.
const USER_HZ: u64 = 100;
const CMDLINE_LIMIT: u64 = 256 << 10;
const SMALL: u64 = 64 << 10;
/// Upper bound on `/proc` entries listed.
const PROC_LIMIT: usize = 1 << 22;
/// Parents listed per process at most.
const MAX_PARENTS: usize = 32;
/// Longest cgroup path kept.
const CGROUP_MAX: usize = 1024;
/// File descriptors examined in all, to map sockets to processes.
const MAX_FDS: usize = 500_000;
/// Lines of one `/proc/net` table read at most.
const NET_LIMIT: u64 = 64 << 20;

/// One process.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Proc {
    pid: u32,
    ppid: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
    comm: String,
    state: Option<String>,
    threads: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exe: Option<String>,
    cmdline: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    start_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    start_unix: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cgroup: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    container_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pod_uid: Option<String>,
    /// Parent, grandparent, ... up to pid 1 (pids).
    parents: Vec<u32>,
    /// It exited while being read: what was read is kept.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    gone: bool,
}

/// Boot time (Unix seconds) from `/proc/stat`.
fn btime(host: &HostRoot) -> Option<i64> {
    let text = host.read_string(Path::new("/proc/stat"), 1 << 20).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// The fields of `/proc/<pid>/stat` after the command name: (state, ppid, threads,
/// starttime in ticks).
pub(crate) fn parse_stat(text: &str) -> Option<(String, u32, Option<u64>, Option<u64>)> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some((
        (*f.first()?).to_owned(),
        f.get(1)?.parse().ok()?,
        f.get(17).and_then(|v| v.parse().ok()),
        f.get(19).and_then(|v| v.parse().ok()),
    ))
}

pub(crate) fn parse_status(text: &str) -> (Option<u32>, Option<u32>, Option<u32>) {
    let (mut uid, mut gid, mut ppid) = (None, None, None);
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let second = || v.split_whitespace().nth(1).and_then(|x| x.parse().ok());
        match k {
            "Uid" => uid = second(),
            "Gid" => gid = second(),
            "PPid" => ppid = v.trim().parse().ok(),
            _ => {}
        }
    }
    (uid, gid, ppid)
}

fn read_proc(host: &HostRoot, pid: u32, btime: Option<i64>, shared: &mut Shared) -> Option<Proc> {
    let base = PathBuf::from(format!("/proc/{pid}"));
    let read = |name: &str, limit: u64| -> Result<Vec<u8>, HostError> {
        host.read(&base.join(name), limit)
    };
    let mut gone = false;
    let stat = match read("stat", SMALL) {
        Ok(b) => Some(String::from_utf8_lossy(&b).into_owned()),
        Err(e) if e.is_not_found() => {
            // Exited between the listing and now (or a fixture without stat): keep it only
            // when something else can still be read.
            gone = true;
            None
        }
        Err(_) => None,
    };
    let mut cmdline = match read("cmdline", CMDLINE_LIMIT) {
        Ok(mut raw) => {
            let argv = split_cmdline(&raw);
            raw.fill(0);
            let red = crate::redact::argv(&argv);
            let n = red.iter().zip(&argv).filter(|(a, b)| a != b).count() as u64;
            if n > 0 {
                *shared.redactions.entry("command line".into()).or_default() += n;
            }
            red
        }
        Err(e) if e.is_not_found() && gone => return None,
        Err(_) => Vec::new(),
    };
    cmdline.shrink_to_fit();
    let comm = read("comm", 256)
        .map(|b| String::from_utf8_lossy(&b).trim_end().to_owned())
        .unwrap_or_default();
    let (uid, gid, status_ppid) = read("status", SMALL)
        .map(|b| parse_status(&String::from_utf8_lossy(&b)))
        .unwrap_or_default();
    let parsed = stat.as_deref().and_then(parse_stat);
    let cgroup_text = read("cgroup", SMALL)
        .ok()
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    let (unit, ids) = match &cgroup_text {
        Some(t) => (
            crate::inspect::reboot::cgroup_unit(t),
            crate::attrib::cgroup_ids(t),
        ),
        None => (None, Default::default()),
    };
    let cgroup = cgroup_text.as_deref().and_then(|t| {
        let line = t
            .lines()
            .find(|l| l.starts_with("0::"))
            .or_else(|| t.lines().next())?;
        let mut s = line.to_owned();
        if s.len() > CGROUP_MAX {
            let mut cut = CGROUP_MAX;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
        }
        Some(s)
    });
    let exe = host
        .read_link(&base.join("exe"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned());
    let start_unix = match (&parsed, btime) {
        (Some((_, _, _, Some(ticks))), Some(bt)) => {
            Some(bt + i64::try_from(ticks / USER_HZ).unwrap_or(0))
        }
        _ => None,
    };
    Some(Proc {
        pid,
        ppid: parsed.as_ref().map(|p| p.1).or(status_ppid),
        uid,
        gid,
        comm,
        state: parsed.as_ref().map(|p| p.0.clone()),
        threads: parsed.as_ref().and_then(|p| p.2),
        exe,
        cmdline,
        start_time: start_unix.map(crate::clock::rfc3339_secs),
        start_unix,
        cgroup,
        unit,
        container_id: ids.container_id,
        pod_uid: ids.pod_uid,
        parents: Vec::new(),
        gone,
    })
}

/// Every process: pid, parent chain, owner, name, redacted command line, cgroup and what it
/// maps to (systemd unit, container, pod), start time.
pub(super) fn processes(
    ctx: &mut Ctx<'_, '_>,
    shared: &mut Shared,
    req: &SnapshotRequest<'_>,
) -> io::Result<()> {
    const ENTRY: &str = "processes.json";
    let pids: Vec<u32> = match req.host.read_dir(Path::new("/proc"), PROC_LIMIT) {
        Ok(entries) => entries
            .iter()
            .filter_map(|e| e.name.to_str()?.parse().ok())
            .collect(),
        Err(e) => {
            ctx.error(Some(ENTRY), e.to_string());
            return Ok(());
        }
    };
    let bt = btime(req.host);
    let mut procs = Vec::with_capacity(pids.len());
    let mut not_read = 0;
    for (i, pid) in pids.iter().enumerate() {
        if ctx.expired() {
            not_read = pids.len() - i;
            break;
        }
        if let Some(p) = read_proc(req.host, *pid, bt, shared) {
            procs.push(p);
        }
    }
    procs.sort_by_key(|p| p.pid);
    let parent: HashMap<u32, u32> = procs
        .iter()
        .filter_map(|p| Some((p.pid, p.ppid?)))
        .collect();
    for p in &mut procs {
        let mut seen = HashSet::from([p.pid]);
        let mut next = p.ppid;
        while let Some(pp) = next {
            if pp == 0 || p.parents.len() >= MAX_PARENTS || !seen.insert(pp) {
                break;
            }
            p.parents.push(pp);
            next = parent.get(&pp).copied();
        }
    }
    shared.pids = procs.iter().map(|p| (p.pid, p.comm.clone())).collect();
    let mut head = Map::new();
    head.insert("bootTimeUnix".into(), json!(bt));
    head.insert("count".into(), json!(procs.len()));
    let mut list = JsonList::new(ctx.room(ENTRY), &head, "processes");
    for p in &procs {
        let mut v = serde_json::to_value(p).unwrap_or(Value::Null);
        shared.redact_json(&mut v);
        list.push(&v);
    }
    if not_read > 0 {
        ctx.out_of_time(ENTRY, json!({ "items": not_read }));
    }
    if list.dropped > 0 {
        let reason = ctx.limit_reason(ENTRY);
        ctx.trim(ENTRY, reason, json!({ "items": list.dropped }));
    }
    let bytes = list.finish(&Map::new());
    ctx.add(ENTRY, &bytes)?;
    Ok(())
}

/// One socket.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Socket {
    proto: &'static str,
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    local: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    remote: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<u32>,
    inode: u64,
    processes: Vec<Value>,
}

fn tcp_state(code: &str) -> Option<&'static str> {
    Some(match code {
        "01" => "ESTABLISHED",
        "0A" => "LISTEN",
        _ => return None,
    })
}

fn udp_state(code: &str) -> Option<&'static str> {
    Some(match code {
        "01" => "ESTABLISHED",
        "07" => "UNCONN",
        _ => return None,
    })
}

/// `0100007F:0016` → `127.0.0.1:22`; `[::1]:22` for IPv6. The kernel prints each 32-bit word
/// of the address in host byte order.
fn addr(s: &str, v6: bool) -> Option<String> {
    let (a, p) = s.split_once(':')?;
    let port = u16::from_str_radix(p, 16).ok()?;
    if v6 {
        if a.len() != 32 {
            return None;
        }
        let mut bytes = [0u8; 16];
        for i in 0..4 {
            let w = u32::from_str_radix(a.get(i * 8..i * 8 + 8)?, 16).ok()?;
            bytes[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
        }
        Some(format!("[{}]:{port}", Ipv6Addr::from(bytes)))
    } else {
        let w = u32::from_str_radix(a, 16).ok()?;
        Some(format!("{}:{port}", Ipv4Addr::from(w.to_ne_bytes())))
    }
}

/// Parses `/proc/net/{tcp,tcp6,udp,udp6}`: the listening/unconnected and established ones.
pub(crate) fn parse_inet(text: &str, proto: &'static str) -> Vec<Socket> {
    let v6 = proto.ends_with('6');
    let state_of = if proto.starts_with("tcp") {
        tcp_state
    } else {
        udp_state
    };
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let state = state_of(f.get(3)?)?;
            Some(Socket {
                proto,
                state,
                local: addr(f.get(1)?, v6),
                remote: addr(f.get(2)?, v6).filter(|_| state == "ESTABLISHED"),
                path: None,
                kind: None,
                uid: f.get(7).and_then(|v| v.parse().ok()),
                inode: f.get(9)?.parse().ok()?,
                processes: Vec::new(),
            })
        })
        .collect()
}

/// Parses `/proc/net/unix`: listening sockets, and connected ones bound to a path.
pub(crate) fn parse_unix(text: &str) -> Vec<Socket> {
    const ACCEPTCON: u32 = 0x10000;
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let flags = u32::from_str_radix(f.get(3)?, 16).ok()?;
            let kind = match *f.get(4)? {
                "0001" => "stream",
                "0002" => "dgram",
                "0005" => "seqpacket",
                _ => "other",
            };
            let st = *f.get(5)?;
            let path = f.get(7).map(|p| (*p).to_owned());
            let state = if flags & ACCEPTCON != 0 {
                "LISTEN"
            } else if st == "03" && path.is_some() {
                "CONNECTED"
            } else {
                return None;
            };
            Some(Socket {
                proto: "unix",
                state,
                local: None,
                remote: None,
                path,
                kind: Some(kind),
                uid: None,
                inode: f.get(6)?.parse().ok()?,
                processes: Vec::new(),
            })
        })
        .collect()
}

/// Listening and established sockets with the processes holding them.
pub(super) fn sockets(
    ctx: &mut Ctx<'_, '_>,
    shared: &mut Shared,
    req: &SnapshotRequest<'_>,
) -> io::Result<()> {
    const ENTRY: &str = "sockets.json";
    let mut socks = Vec::new();
    let mut sources = BTreeMap::new();
    for proto in ["tcp", "tcp6", "udp", "udp6", "unix"] {
        let mut errs = Vec::new();
        let mut found = false;
        for base in ["/proc/1/net", "/proc/net"] {
            let p = format!("{base}/{proto}");
            match req.host.read(Path::new(&p), NET_LIMIT) {
                Ok(b) => {
                    let text = String::from_utf8_lossy(&b);
                    let mut s = if proto == "unix" {
                        parse_unix(&text)
                    } else {
                        parse_inet(&text, proto)
                    };
                    sources.insert(proto, p);
                    socks.append(&mut s);
                    found = true;
                    break;
                }
                Err(e) => errs.push(e.to_string()),
            }
        }
        if !found {
            ctx.error(Some(ENTRY), errs.join("; "));
        }
    }
    // Map socket inodes to processes through their file descriptors.
    let wanted: HashSet<u64> = socks.iter().map(|s| s.inode).filter(|i| *i != 0).collect();
    let mut owners: HashMap<u64, Vec<(u32, String)>> = HashMap::new();
    let mut fds_seen = 0usize;
    let mut not_scanned = 0usize;
    let pids = if shared.pids.is_empty() {
        req.host
            .read_dir(Path::new("/proc"), PROC_LIMIT)
            .map(|es| {
                es.iter()
                    .filter_map(|e| Some((e.name.to_str()?.parse().ok()?, String::new())))
                    .collect()
            })
            .unwrap_or_default()
    } else {
        shared.pids.clone()
    };
    for (i, (pid, comm)) in pids.iter().enumerate() {
        if wanted.is_empty() {
            break;
        }
        if ctx.expired() || fds_seen >= MAX_FDS {
            not_scanned = pids.len() - i;
            break;
        }
        let Ok(links) = req
            .host
            .read_links(Path::new(&format!("/proc/{pid}/fd")), MAX_FDS - fds_seen)
        else {
            continue;
        };
        fds_seen += links.len();
        for (_, target) in links {
            let t = target.to_string_lossy();
            let Some(inode) = t
                .strip_prefix("socket:[")
                .and_then(|r| r.strip_suffix(']'))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            if wanted.contains(&inode) {
                let o = owners.entry(inode).or_default();
                if !o.iter().any(|(p, _)| p == pid) {
                    o.push((*pid, comm.clone()));
                }
            }
        }
    }
    for s in &mut socks {
        if let Some(o) = owners.get(&s.inode) {
            s.processes = o
                .iter()
                .map(|(pid, comm)| json!({"pid": pid, "comm": comm}))
                .collect();
        }
    }
    let mut head = Map::new();
    head.insert("sources".into(), json!(sources));
    head.insert("fileDescriptorsExamined".into(), json!(fds_seen));
    let mut list = JsonList::new(ctx.room(ENTRY), &head, "sockets");
    for s in &socks {
        list.push(s);
    }
    if not_scanned > 0 {
        ctx.out_of_time(
            ENTRY,
            json!({ "processesNotScannedForOwners": not_scanned }),
        );
    }
    if list.dropped > 0 {
        let reason = ctx.limit_reason(ENTRY);
        ctx.trim(ENTRY, reason, json!({ "items": list.dropped }));
    }
    let mut tail = Map::new();
    tail.insert("count".into(), json!(list.items() + list.dropped));
    let bytes = list.finish(&tail);
    ctx.add(ENTRY, &bytes)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_a_command_name_with_spaces_and_parens() {
        let s = "42 (a (b) c) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 3 0 12345 0 0";
        let (state, ppid, threads, start) = parse_stat(s).unwrap();
        assert_eq!(
            (state.as_str(), ppid, threads, start),
            ("S", 1, Some(3), Some(12345))
        );
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn inet_and_unix_tables() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:0CEA 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0 100 0 0 10 0\n\
   1: 0100007F:0CEA 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000  1000        0 12346 1 0 100 0 0 10 0\n\
   2: 0100007F:0CEB 0100007F:D2F1 06 00000000:00000000 00:00000000 00000000     0        0 0 1\n";
        let s = parse_inet(tcp, "tcp");
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].local.as_deref(), Some("127.0.0.1:3306"));
        assert_eq!(s[0].state, "LISTEN");
        assert!(s[0].remote.is_none());
        assert_eq!(s[1].remote.as_deref(), Some("127.0.0.1:54000"));
        assert_eq!(s[1].uid, Some(1000));
        let tcp6 = "h\n   0: 00000000000000000000000001000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1\n";
        let s = parse_inet(tcp6, "tcp6");
        assert_eq!(s[0].local.as_deref(), Some("[::1]:22"));
        let unix = "Num       RefCount Protocol Flags    Type St Inode Path\n\
0000000000000000: 00000002 00000000 00010000 0001 01 2001 /run/containerd/containerd.sock\n\
0000000000000000: 00000003 00000000 00000000 0001 03 2002 /run/systemd/journal/stdout\n\
0000000000000000: 00000003 00000000 00000000 0001 03 2003\n";
        let s = parse_unix(unix);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].state, "LISTEN");
        assert_eq!(s[1].state, "CONNECTED");
    }
}
