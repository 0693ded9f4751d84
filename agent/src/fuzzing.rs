//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz / libFuzzer) and for the
//! regression tests that replay the inputs they found. Not a stable API.
//!
//! Every function takes the raw bytes an attacker on the node could put in the file (or
//! buffer) the parser reads, runs the same code the agent runs on it, and panics only when an
//! invariant that must hold for every input does not (the fuzzer reports the panic). Parsers
//! that read through [`HostRoot`] get the input written into a scratch host tree, created once
//! per process under the temp directory, and run the inspector directly (not through
//! [`inspect::inspect`](crate::inspect::inspect), which turns an inspector's panic into an
//! unknown fact and so would hide it).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, UNIX_EPOCH};

use crate::baseline::{self, Baseline};
use crate::config::{self, Config};
use crate::facts::{ComponentFacts, FactPath, Facts};
use crate::host::HostRoot;
use crate::inspect::containerd::config as ctrd;
use crate::inspect::kubelet::support;
use crate::inspect::process::{parse_flags, split_cmdline};
use crate::inspect::{self, Context, Options, Process, ProcessTable};
use crate::ledger::{OpenFinding, RebootDetail};
use crate::report::cloudevents::CloudEvent;

/// The pid the scratch trees give the daemon under test.
const PID: u32 = 4242;

/// Upper bound on how much longer redacted text may be than its input, per input byte: a
/// marker replaces at least one byte and no marker is this long.
const MARKER_BOUND: usize = 64;

/// A scratch host tree: a directory under the temp dir and the [`HostRoot`] over it. The
/// mutex serialises the write-then-inspect of one input (tests may call from several threads).
#[derive(Debug)]
pub struct Scratch {
    root: PathBuf,
    host: HostRoot,
    lock: Mutex<()>,
}

impl Scratch {
    fn create(name: &str) -> Option<Self> {
        let root = std::env::temp_dir().join(format!(
            "nodedrift-fuzz-{name}-{}-{}",
            std::process::id(),
            UNIX_EPOCH
                .elapsed()
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        ));
        std::fs::create_dir_all(&root).ok()?;
        let host = HostRoot::new(&root).ok()?;
        Some(Self {
            root,
            host,
            lock: Mutex::new(()),
        })
    }

    /// Writes `data` at host path `path` (parents created).
    fn put(&self, path: &str, data: &[u8]) {
        let p = self.root.join(path.trim_start_matches('/'));
        if let Some(parent) = p.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let _ = std::fs::write(p, data);
    }

    /// Makes host path `path` a symlink to `target` (left alone when it exists).
    fn link(&self, path: &str, target: &str) {
        let p = self.root.join(path.trim_start_matches('/'));
        if let Some(parent) = p.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let _ = std::os::unix::fs::symlink(target, p);
    }

    /// Runs `inspector` with a process table holding the one process `argv` (pid [`PID`]).
    fn inspect(
        &self,
        argv: Vec<String>,
        options: &Options,
        inspector: fn(&Context<'_>) -> ComponentFacts,
    ) -> ComponentFacts {
        let comm = argv
            .first()
            .map(|a| a.rsplit('/').next().unwrap_or(a).to_owned())
            .unwrap_or_default();
        let procs = ProcessTable {
            processes: vec![Process {
                pid: PID,
                argv,
                comm,
            }],
            error: None,
        };
        let ctx = Context {
            host: &self.host,
            procs: &procs,
            options,
        };
        inspector(&ctx)
    }
}

/// The scratch tree held in `cell`, created on first use (`None` if the temp dir is unusable).
fn scratch<'a>(cell: &'a OnceLock<Option<Scratch>>, name: &str) -> Option<&'a Scratch> {
    cell.get_or_init(|| Scratch::create(name)).as_ref()
}

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_owned()).collect()
}

/// Checks the facts serialise (what the agent does with them next).
fn settle(cf: &ComponentFacts) {
    let mut facts = Facts::default();
    facts.insert(cf.clone());
    std::hint::black_box(serde_json::to_vec(&facts).ok());
}

/// Go durations: what `format_go_duration` writes parses back to the same value.
fn go_duration_round_trip(s: &str) {
    if let Some(ns) = support::parse_go_duration(s) {
        let text = support::format_go_duration(ns);
        assert_eq!(
            support::parse_go_duration(&text),
            Some(ns),
            "{s:?} parsed to {ns} ns, formatted as {text:?}, which does not parse back"
        );
    }
}

/// The kubelet command line (NUL-separated, as `/proc/<pid>/cmdline`): flag parsing, value
/// conversion (feature gates, taints, maps, durations, quantities) and the merge with the
/// defaults, through the kubelet inspector.
pub fn kubelet_flags(data: &[u8]) {
    static S: OnceLock<Option<Scratch>> = OnceLock::new();
    let Some(s) = scratch(&S, "kubelet-flags") else {
        return;
    };
    let mut args = argv(&["/usr/bin/kubelet"]);
    args.extend(split_cmdline(data));
    for a in &args {
        if let Some((_, v)) = a.split_once('=') {
            go_duration_round_trip(v);
            std::hint::black_box(support::shell_words(v));
        }
    }
    std::hint::black_box(parse_flags(&args, |n| n.len() % 2 == 0));
    let _g = s.lock.lock();
    let cf = s.inspect(args, &Options::default(), inspect::kubelet::inspect);
    settle(&cf);
}

/// A `KubeletConfiguration` file (YAML or JSON) given with `--config`, merged with the
/// defaults and a few flags, through the kubelet inspector.
pub fn kubelet_config(data: &[u8]) {
    static S: OnceLock<Option<Scratch>> = OnceLock::new();
    let Some(s) = scratch(&S, "kubelet-config") else {
        return;
    };
    let _g = s.lock.lock();
    s.put("/var/lib/kubelet/config.yaml", data);
    let args = argv(&[
        "/usr/bin/kubelet",
        "--config=/var/lib/kubelet/config.yaml",
        "--feature-gates=RotateKubeletServerCertificate=true",
        "--node-labels=a=b",
        "--v=2",
    ]);
    let cf = s.inspect(args, &Options::default(), inspect::kubelet::inspect);
    settle(&cf);
}

/// A `KubeProxyConfiguration` file given with `--config`, through the kube-proxy inspector.
pub fn kube_proxy_config(data: &[u8]) {
    static S: OnceLock<Option<Scratch>> = OnceLock::new();
    let Some(s) = scratch(&S, "kube-proxy-config") else {
        return;
    };
    let _g = s.lock.lock();
    s.put("/var/lib/kube-proxy/config.conf", data);
    let args = argv(&[
        "/usr/local/bin/kube-proxy",
        "--config=/var/lib/kube-proxy/config.conf",
        "--hostname-override=node-1",
    ]);
    let cf = s.inspect(args, &Options::default(), inspect::kube_proxy::inspect);
    settle(&cf);
}

/// `/proc/<pid>/mountinfo` of a containerised kube-proxy (its own mount namespace) and of pid
/// 1, split at the first NUL (the same text for both when there is none): the translation of
/// its `--config` path to a host path.
pub fn mountinfo(data: &[u8]) {
    static S: OnceLock<Option<Scratch>> = OnceLock::new();
    let Some(s) = scratch(&S, "mountinfo") else {
        return;
    };
    let (own, init) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, data),
    };
    let _g = s.lock.lock();
    s.link(&format!("/proc/{PID}/ns/mnt"), "mnt:[4026532301]");
    s.link("/proc/1/ns/mnt", "mnt:[4026531841]");
    s.put(&format!("/proc/{PID}/mountinfo"), own);
    s.put("/proc/1/mountinfo", init);
    s.put(
        "/var/lib/kube-proxy/config.conf",
        b"apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n",
    );
    let args = argv(&[
        "/usr/local/bin/kube-proxy",
        "--config=/var/lib/kube-proxy/config.conf",
    ]);
    let cf = s.inspect(args, &Options::default(), inspect::kube_proxy::inspect);
    settle(&cf);
}

/// `/etc/containerd/config.toml` (its imports may name itself or globs in the tree): loading
/// with both merge strategies, the normalised CRI settings, the redacted view, the address.
pub fn containerd_config(data: &[u8]) {
    static S: OnceLock<Option<Scratch>> = OnceLock::new();
    let Some(s) = scratch(&S, "containerd-config") else {
        return;
    };
    let _g = s.lock.lock();
    s.put(ctrd::DEFAULT_CONFIG_PATH, data);
    for strategy in [ctrd::Strategy::ReplacePlugins, ctrd::Strategy::MergePlugins] {
        let Ok(l) = ctrd::load(
            &s.host,
            Path::new(ctrd::DEFAULT_CONFIG_PATH),
            true,
            Path::new("/"),
            strategy,
        ) else {
            continue;
        };
        std::hint::black_box(ctrd::normalize(&l));
        std::hint::black_box(ctrd::redacted_json(&l.merged));
        std::hint::black_box(ctrd::table_to_json(&l.merged));
        std::hint::black_box(ctrd::grpc_address(&l));
        for p in ctrd::CRI_PATHS {
            std::hint::black_box(ctrd::lookup(&l.merged, p));
        }
    }
}

/// A `sysctl.d` file, through the sysctl inspector (which also reads `/etc/sysctl.conf`, here
/// absent), and the name/value helpers on each of its lines.
pub fn sysctl_conf(data: &[u8]) {
    static S: OnceLock<Option<Scratch>> = OnceLock::new();
    let Some(s) = scratch(&S, "sysctl") else {
        return;
    };
    let text = String::from_utf8_lossy(data);
    let mut options = Options::default();
    for line in text.lines() {
        let key = line.split_once('=').map_or(line, |(k, _)| k).trim();
        let key = key.strip_prefix('-').unwrap_or(key);
        if let Ok(n) = inspect::sysctl::SysctlName::parse(key) {
            std::hint::black_box(n.proc_path());
            if options.sysctl_keys.len() < 8 {
                options.sysctl_keys.insert(n.dotted.clone());
            }
        }
        std::hint::black_box(inspect::sysctl::normalize_value(line));
        std::hint::black_box(inspect::sysctl::glob_match(
            key,
            "net.ipv4.conf.all.rp_filter",
        ));
    }
    let _g = s.lock.lock();
    s.put("/etc/sysctl.d/99-fuzz.conf", data);
    let cf = s.inspect(Vec::new(), &options, inspect::sysctl::inspect);
    settle(&cf);
}

/// `/etc/os-release`: the parser, and the os inspector over it.
pub fn os_release(data: &[u8]) {
    static S: OnceLock<Option<Scratch>> = OnceLock::new();
    let text = String::from_utf8_lossy(data);
    let (fields, problems) = inspect::os::parse_os_release(&text);
    assert!(
        fields.len() + problems.len() <= text.lines().count(),
        "more fields and problems than lines"
    );
    let Some(s) = scratch(&S, "os-release") else {
        return;
    };
    let _g = s.lock.lock();
    s.put("/etc/os-release", data);
    let cf = s.inspect(Vec::new(), &Options::default(), inspect::os::inspect);
    settle(&cf);
}

/// The `/proc/<pid>` files other than `mountinfo`; the first byte chooses which: `cmdline`
/// (split, flag parsing, argv redaction), `status` (both readers), `stat`, `maps` (deleted
/// libraries), `cgroup` (container and pod ids, systemd unit), `net/{tcp,tcp6,udp,unix}`.
pub fn proc_files(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    match which % 6 {
        0 => {
            let args = split_cmdline(rest);
            std::hint::black_box(parse_flags(&args, |n| n == "v"));
            let redacted = crate::redact::argv(&args);
            assert_eq!(
                redacted.len(),
                args.len(),
                "argv redaction changed the count"
            );
        }
        1 => {
            std::hint::black_box(crate::attrib::procinfo::parse_status(&text));
            std::hint::black_box(crate::snapshot::procs::parse_status(&text));
        }
        2 => {
            std::hint::black_box(crate::snapshot::procs::parse_stat(&text));
        }
        3 => {
            let (libs, junk) = crate::inspect::reboot::maps_deleted_libraries(&text);
            assert!(libs.len() + junk <= text.lines().count());
        }
        4 => {
            std::hint::black_box(crate::attrib::cgroup_ids(&text));
            std::hint::black_box(crate::inspect::reboot::cgroup_unit(&text));
        }
        _ => {
            for proto in ["tcp", "tcp6", "udp", "udp6"] {
                std::hint::black_box(crate::snapshot::procs::parse_inet(&text, proto));
            }
            std::hint::black_box(crate::snapshot::procs::parse_unix(&text));
        }
    }
}

/// A baseline document layered over the empty baseline; when it loads, what it gives is
/// written back as a document, which must load again, and is evaluated against no facts.
pub fn baseline(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut b = Baseline::default();
    if b.apply_text("fuzz.yaml", text).is_err() {
        return;
    }
    std::hint::black_box(b.watch_spec());
    std::hint::black_box(b.sysctl_keys());
    std::hint::black_box(baseline::evaluate(&b, &Facts::default()));
    let doc = b.to_document("fuzz");
    let Ok(again) = serde_norway::to_string(&doc) else {
        return;
    };
    let mut b2 = Baseline::default();
    if let Err(e) = b2.apply_text("again.yaml", &again) {
        panic!("a loaded baseline written back does not load: {e}\n{again}");
    }
}

/// The agent's configuration file (no environment overrides), and its JSON view.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = Config::from_text("fuzz.yaml", text, &|_| None) {
        std::hint::black_box(c.to_json());
    }
}

/// What the ledger stores (JSON records in its redb tables): open findings, queued
/// CloudEvents, reboot details. Whatever decodes must encode and decode again.
pub fn ledger_records(data: &[u8]) {
    fn again<T: serde::Serialize + serde::de::DeserializeOwned>(v: &T, what: &str) {
        let Ok(bytes) = serde_json::to_vec(v) else {
            panic!("a decoded {what} does not encode");
        };
        if let Err(e) = serde_json::from_slice::<T>(&bytes) {
            panic!("a re-encoded {what} does not decode: {e}");
        }
    }
    if let Ok(v) = serde_json::from_slice::<OpenFinding>(data) {
        again(&v, "open finding");
    }
    if let Ok(v) = serde_json::from_slice::<crate::ledger::outbox::Queued>(data) {
        again(&v, "queued event");
    }
    if let Ok(v) = serde_json::from_slice::<CloudEvent>(data) {
        again(&v, "CloudEvent");
    }
    if let Ok(v) = serde_json::from_slice::<Vec<CloudEvent>>(data) {
        again(&v, "CloudEvent batch");
    }
    if let Ok(v) = serde_json::from_slice::<RebootDetail>(data) {
        again(&v, "reboot detail");
    }
}

/// A private key every redaction must remove, whatever text comes before it.
const PLANTED_KEY: &str = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7plantedXYZ";

/// Snapshot redaction: text, lines, `/etc/shadow`-style files, JSON documents, command lines.
/// The output is bounded by the input, and a PEM private key after fuzz-chosen text never
/// survives.
pub fn redact(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let bound = |n: usize| MARKER_BOUND.saturating_mul(n.saturating_add(1));
    let out = crate::redact::text(&text);
    assert!(
        out.len() <= bound(text.len()),
        "redacted text grew unboundedly"
    );
    let lines = crate::redact::lines(&text);
    assert!(lines.len() <= text.lines().count());
    let mut shadow = crate::redact::Redactor::for_path(Path::new("/etc/shadow"));
    for l in text.lines() {
        if let Some(r) = shadow.line(l) {
            assert!(r.len() <= bound(l.len()));
        }
    }
    std::hint::black_box(shadow.counts());
    let args: Vec<String> = text.split('\0').map(str::to_owned).collect();
    std::hint::black_box(crate::redact::argv(&args));
    if let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(data) {
        std::hint::black_box(crate::redact::json(&mut v));
    }
    // Any one line of context, then a private key.
    let context = text.lines().next().unwrap_or("");
    let planted = format!(
        "{context}\n-----BEGIN PRIVATE KEY-----\n{PLANTED_KEY}\n-----END PRIVATE KEY-----\n"
    );
    let out = crate::redact::text(&planted);
    // The context may hold the key's text itself (not as a key): that copy may stay.
    assert!(
        out.matches(PLANTED_KEY).count() <= context.matches(PLANTED_KEY).count(),
        "the private key survived redaction after {context:?}: {out:?}"
    );
}

/// A CNI network configuration, as a `.conflist` and as a `.conf`.
pub fn cni(data: &[u8]) {
    std::hint::black_box(inspect::cni::parse(data, true).ok());
    std::hint::black_box(inspect::cni::parse(data, false).ok());
}

/// A fanotify read buffer: events with their information records.
pub fn fanotify_events(data: &[u8]) {
    let (events, problems) = crate::attrib::event::parse(data);
    std::hint::black_box((events.len(), problems.len()));
}

/// `utmp` records, and sshd process titles (each line of the input as one).
pub fn utmp(data: &[u8]) {
    std::hint::black_box(crate::attrib::sessions::parse_utmp(data));
    for line in String::from_utf8_lossy(data).lines() {
        std::hint::black_box(crate::attrib::sessions::parse_title(line));
    }
}

/// Small value parsers; the first byte chooses: the agent's durations (which must format and
/// parse back), `Retry-After`, Go durations, version constraints, file modes, node labels, fact
/// paths, watched attribute lists, and `rpmvercmp` (whose order must be antisymmetric; the two
/// versions are split at the first NUL).
pub fn values(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let s = text.as_ref();
    match which % 9 {
        0 => {
            if let Ok(d) = config::parse_duration(s) {
                let f = config::format_duration(d);
                assert_eq!(
                    config::parse_duration(&f),
                    Ok(d),
                    "{s:?} parsed to {d:?}, formatted as {f:?}"
                );
            }
        }
        1 => {
            let now = UNIX_EPOCH + Duration::from_secs(1_750_000_000);
            if let Some(d) = crate::report::http::parse_retry_after(s, now) {
                assert!(
                    d <= crate::report::http::RETRY_AFTER_MAX,
                    "{s:?} gave {d:?}"
                );
            }
        }
        2 => {
            go_duration_round_trip(s);
            std::hint::black_box(support::parse_go_bool(s));
            std::hint::black_box(support::canonical_duration(s));
        }
        3 => {
            std::hint::black_box(baseline::expect::parse_constraints(s).ok());
        }
        4 => {
            std::hint::black_box(baseline::expect::parse_mode(s));
        }
        5 => {
            std::hint::black_box(crate::run::publish::parse_labels(s));
        }
        6 => {
            if let Ok(p) = FactPath::parse(s) {
                std::hint::black_box((p.component().len(), p.has_wildcard()));
            }
        }
        7 => {
            std::hint::black_box(crate::files::AttrSet::parse_list(s).ok());
        }
        _ => {
            let (a, b) = s.split_once('\0').unwrap_or((s, ""));
            let ab = crate::inspect::reboot::rpmvercmp(a, b);
            let ba = crate::inspect::reboot::rpmvercmp(b, a);
            assert_eq!(
                ab,
                ba.reverse(),
                "rpmvercmp({a:?}, {b:?}) is not antisymmetric"
            );
        }
    }
}

/// Largest journal file the [`journal`] target expands its input to.
const JOURNAL_MAX: u64 = 16 << 20;

/// Decodes the [`journal`] target's input: bytes are literal, except `0xFF 0x00` followed by a
/// little-endian `u32` n, which stands for n zero bytes (journal files are mostly zero-filled
/// hash tables: the seeds stay small and mutations land on structure). Returns the literal
/// pieces with their offsets, and the file's length.
pub fn journal_runs(data: &[u8]) -> (Vec<(u64, Vec<u8>)>, u64) {
    let mut pieces: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut cur: Vec<u8> = Vec::new();
    let mut len: u64 = 0;
    let mut i = 0;
    while i < data.len() && len < JOURNAL_MAX {
        if data[i] == 0xFF && data.get(i + 1) == Some(&0) {
            let mut n = [0u8; 4];
            for (k, b) in n.iter_mut().enumerate() {
                *b = data.get(i + 2 + k).copied().unwrap_or(0);
            }
            let run = u64::from(u32::from_le_bytes(n)).min(JOURNAL_MAX - len);
            if !cur.is_empty() {
                pieces.push((len - cur.len() as u64, std::mem::take(&mut cur)));
            }
            len += run;
            i += 6;
        } else {
            cur.push(data[i]);
            len += 1;
            i += 1;
        }
    }
    if !cur.is_empty() {
        pieces.push((len - cur.len() as u64, cur));
    }
    (pieces, len)
}

/// A journal file under `/var/log/journal/<machine>/` (input encoded as [`journal_runs`]
/// reads it, written sparse): the header and object checks, and the tail walk for the
/// kubelet's entries.
pub fn journal(data: &[u8]) {
    use std::os::unix::fs::FileExt;
    static S: OnceLock<Option<Scratch>> = OnceLock::new();
    let Some(s) = scratch(&S, "journal") else {
        return;
    };
    let (pieces, len) = journal_runs(data);
    let _g = s.lock.lock();
    let path = "/var/log/journal/0123456789abcdef0123456789abcdef/system.journal";
    s.put(path, b"");
    let Ok(f) = std::fs::OpenOptions::new()
        .write(true)
        .open(s.root.join(path.trim_start_matches('/')))
    else {
        return;
    };
    if f.set_len(len).is_err() {
        return;
    }
    for (at, bytes) in &pieces {
        if f.write_all_at(bytes, *at).is_err() {
            return;
        }
    }
    drop(f);
    let j = crate::journal::Journal::open(&s.host);
    std::hint::black_box(j.files());
    let mut n = 0usize;
    let rep = j.tail(
        "_SYSTEMD_UNIT=kubelet.service",
        64,
        0,
        &|| false,
        &mut |e| {
            n += 1;
            std::hint::black_box(e.lines());
        },
    );
    assert!(n <= 64, "more entries than asked for");
    std::hint::black_box(rep);
}
