//! File integrity end to end: `baseline capture`, `check --watch` and `baseline accept` through
//! the real binary on real trees built at run time (modes, owners, FIFOs, sockets, devices,
//! loops, non-UTF-8 names cannot live in git). Every run is bounded: a hang is a failure.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{nodedrift, run_bounded, watch_fifo};

/// Seconds any one command may take.
const BOUND: u64 = 60;

/// A host root with a watched tree at `/data` and a state directory beside it.
struct Fim {
    tmp: tempfile::TempDir,
    host: PathBuf,
    state: PathBuf,
    /// `--watch` paths (host paths).
    watch: Vec<String>,
    /// `--attributes`, when not the default preset.
    attrs: Option<String>,
}

impl Fim {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let host = tmp.path().join("host");
        fs::create_dir_all(host.join("data")).unwrap();
        let state = tmp.path().join("state");
        Self {
            tmp,
            host,
            state,
            watch: vec!["/data".into()],
            attrs: None,
        }
    }

    fn with_attrs(mut self, attrs: &str) -> Self {
        self.attrs = Some(attrs.into());
        self
    }

    /// The real path of the host path `/data/<rel>`.
    fn data(&self, rel: &str) -> PathBuf {
        self.host.join("data").join(rel)
    }

    fn write(&self, rel: &str, bytes: &[u8]) -> PathBuf {
        let p = self.data(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, bytes).unwrap();
        p
    }

    /// `nodedrift <sub> --host-root H --state-dir S --watch ... [--attributes ...]`.
    fn cmd(&self, sub: &[&str]) -> Command {
        let mut c = nodedrift();
        self.args(&mut c, sub);
        c
    }

    fn args(&self, c: &mut Command, sub: &[&str]) {
        c.args(sub)
            .arg("--host-root")
            .arg(&self.host)
            .arg("--state-dir")
            .arg(&self.state);
        for w in &self.watch {
            c.args(["--watch", w]);
        }
        if let Some(a) = &self.attrs {
            c.args(["--attributes", a]);
        }
    }

    /// `baseline capture --json`: (exit code, summary, output).
    fn capture(&self, extra: &[&str]) -> (i32, Value, Output) {
        let out = run_bounded(
            self.cmd(&["baseline", "capture", "--json"]).args(extra),
            BOUND,
        );
        let code = out.status.code().expect("exit code");
        let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (code, v, out)
    }

    /// A capture that must succeed completely.
    fn capture_ok(&self) -> Value {
        let (code, v, out) = self.capture(&[]);
        assert_eq!(code, 0, "capture: {v:#}\n{}", stderr(&out));
        v
    }

    /// `check --format json`: (exit code, report).
    fn check(&self) -> (i32, Value) {
        let out = run_bounded(&mut self.cmd(&["check", "--format", "json"]), BOUND);
        parse_check(&out)
    }

    /// `baseline accept PATH... [--reason R]`.
    fn accept(&self, paths: &[&OsStr], reason: Option<&str>) -> Output {
        let mut c = self.cmd(&["baseline", "accept"]);
        c.args(paths);
        if let Some(r) = reason {
            c.args(["--reason", r]);
        }
        run_bounded(&mut c, BOUND)
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn parse_check(out: &Output) -> (i32, Value) {
    let code = out.status.code().expect("exit code");
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "check printed no JSON ({e}); exit {code}\nstderr: {}",
            stderr(out)
        )
    });
    assert!(!stderr(out).contains("panicked"), "{}", stderr(out));
    (code, v)
}

fn files_findings(report: &Value) -> Vec<&Value> {
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["component"] == "files")
        .collect()
}

/// `path → (change, sorted attribute names)` of every `files.watch` fail.
fn changes(report: &Value) -> BTreeMap<String, (String, Vec<String>)> {
    let mut out = BTreeMap::new();
    for f in files_findings(report) {
        if f["status"] != "fail" || f["rule"] != "files.watch" {
            continue;
        }
        let d = &f["detail"];
        let mut attrs: Vec<String> = d["attributes"]
            .as_array()
            .expect("attributes")
            .iter()
            .map(|a| a["attribute"].as_str().unwrap().to_owned())
            .collect();
        attrs.sort();
        let path = f["path"].as_str().unwrap().to_owned();
        let prev = out.insert(
            path.clone(),
            (d["change"].as_str().unwrap().to_owned(), attrs),
        );
        assert!(prev.is_none(), "{path} reported twice: {report:#}");
    }
    out
}

/// `(path, reason)` of every `files` unknown.
fn unknowns(report: &Value) -> Vec<(String, String)> {
    files_findings(report)
        .into_iter()
        .filter(|f| f["status"] == "unknown")
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_owned(),
                f["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// The finding of `path`.
fn finding<'a>(report: &'a Value, path: &str) -> &'a Value {
    files_findings(report)
        .into_iter()
        .find(|f| f["path"] == path && f["status"] == "fail")
        .unwrap_or_else(|| panic!("no fail for {path}: {report:#}"))
}

/// A clean check: exit 0, exactly one finding, a pass.
fn assert_clean(report: &Value, code: i32) {
    let all = files_findings(report);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(all.len(), 1, "{report:#}");
    assert_eq!(all[0]["status"], "pass");
    assert_eq!(all[0]["rule"], "files.watch");
    assert_eq!(report["fileIntegrity"]["state"], "verified", "{report:#}");
}

fn m(change: &str, attrs: &[&str]) -> (String, Vec<String>) {
    let mut a: Vec<String> = attrs.iter().map(|s| (*s).to_owned()).collect();
    a.sort();
    (change.to_owned(), a)
}

fn expect(pairs: &[(&str, (String, Vec<String>))]) -> BTreeMap<String, (String, Vec<String>)> {
    pairs
        .iter()
        .map(|(p, c)| ((*p).to_owned(), c.clone()))
        .collect()
}

/// Writes `bytes` to a temporary file beside `path` and renames it over `path`.
fn replace_by_rename(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp-new");
    fs::write(&tmp, bytes).unwrap();
    fs::rename(&tmp, path).unwrap();
}

#[test]
fn capture_check_then_every_kind_of_change_is_reported_exactly() {
    let f = Fim::new();
    f.write("same-size.conf", b"alpha\n");
    f.write("append.conf", b"line 1\n");
    f.write("chmod.conf", b"mode\n");
    f.write("chown.conf", b"owner\n");
    f.write("truncate.conf", b"will be emptied\n");
    f.write("delete.conf", b"gone soon\n");
    f.write("to-dir.conf", b"becomes a directory\n");
    f.write("renamed.conf", b"version 1\n");
    f.write("renamed-same.conf", b"same bytes\n");
    f.write("untouched.conf", b"never changes\n");
    f.write("sub/untouched.conf", b"never changes either\n");
    f.write("sub/deeper/untouched.bin", &[0u8, 1, 2, 255]);
    symlink("target-a", f.data("link")).unwrap();
    let summary = f.capture_ok();
    assert_eq!(summary["errors"], serde_json::json!([]), "{summary:#}");
    // /data, its 10 files, sub/ with a file and deeper/ with one, the link.
    assert_eq!(summary["entries"], 16, "{summary:#}");

    let (code, report) = f.check();
    assert_clean(&report, code);

    fs::write(f.data("same-size.conf"), b"bravo\n").unwrap();
    fs::OpenOptions::new()
        .append(true)
        .open(f.data("append.conf"))
        .unwrap()
        .write_all(b"line 2\n")
        .unwrap();
    fs::set_permissions(f.data("chmod.conf"), fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(f.data("chown.conf"), Some(1234), Some(5678)).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(f.data("truncate.conf"))
        .unwrap()
        .set_len(0)
        .unwrap();
    fs::remove_file(f.data("delete.conf")).unwrap();
    f.write("added.conf", b"new file\n");
    fs::remove_file(f.data("link")).unwrap();
    symlink("target-b", f.data("link")).unwrap();
    fs::remove_file(f.data("to-dir.conf")).unwrap();
    fs::create_dir(f.data("to-dir.conf")).unwrap();
    replace_by_rename(&f.data("renamed.conf"), b"version 2\n");
    // Same bytes, new inode: not a change under the `config` preset.
    replace_by_rename(&f.data("renamed-same.conf"), b"same bytes\n");

    let (code, report) = f.check();
    assert_eq!(code, 1, "{report:#}");
    let got = changes(&report);
    assert_eq!(
        got,
        expect(&[
            ("/data/added.conf", m("added", &[])),
            ("/data/append.conf", m("modified", &["size", "sha256"])),
            ("/data/chmod.conf", m("modified", &["mode"])),
            ("/data/chown.conf", m("modified", &["uid", "gid"])),
            ("/data/delete.conf", m("removed", &[])),
            ("/data/link", m("modified", &["target"])),
            ("/data/renamed.conf", m("modified", &["sha256"])),
            ("/data/same-size.conf", m("modified", &["sha256"])),
            // A directory always has other permission bits than the file had.
            ("/data/to-dir.conf", m("modified", &["type", "mode"])),
            ("/data/truncate.conf", m("modified", &["size", "sha256"])),
        ]),
        "{report:#}"
    );
    assert!(unknowns(&report).is_empty(), "{report:#}");
    assert_eq!(report["fileIntegrity"]["changed"], 10, "{report:#}");

    // The details a reviewer needs: before/after values, a diff of text, attribution.
    let same = finding(&report, "/data/same-size.conf");
    let diff = same["detail"]["diff"].as_str().unwrap_or_default();
    assert!(
        diff.contains("-alpha") && diff.contains("+bravo"),
        "{same:#}"
    );
    assert_eq!(same["detail"]["attribution"]["status"], "unattributed");
    let chown = finding(&report, "/data/chown.conf");
    let uid = chown["detail"]["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["attribute"] == "uid")
        .unwrap();
    assert_eq!(
        (uid["before"].clone(), uid["after"].clone()),
        (0.into(), 1234.into())
    );
    let link = finding(&report, "/data/link");
    assert_eq!(link["detail"]["attributes"][0]["before"], "target-a");
    assert_eq!(link["detail"]["attributes"][0]["after"], "target-b");
    let removed = finding(&report, "/data/delete.conf");
    assert_eq!(removed["expected"]["type"], "file");
    assert_eq!(removed["actual"], Value::Null);

    // Nothing was re-baselined by the check: the same changes again.
    let (code, again) = f.check();
    assert_eq!(code, 1);
    assert_eq!(changes(&again), got);
}

#[test]
fn touch_is_a_change_only_when_mtime_is_tracked() {
    for (attrs, reported) in [
        (None, false),
        (Some("type,mode,uid,gid,size,sha256,mtime"), true),
    ] {
        let mut f = Fim::new();
        if let Some(a) = attrs {
            f = f.with_attrs(a);
        }
        let p = f.write("touched.conf", b"content\n");
        f.write("other.conf", b"other\n");
        // An old mtime, so that `touch` surely moves it.
        let old = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
        fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(old)
            .unwrap();
        f.capture_ok();
        let st = Command::new("touch").arg(&p).status().unwrap();
        assert!(st.success());
        let (code, report) = f.check();
        if reported {
            assert_eq!(code, 1, "{report:#}");
            assert_eq!(
                changes(&report),
                expect(&[("/data/touched.conf", m("modified", &["mtime"]))]),
                "{report:#}"
            );
        } else {
            assert_clean(&report, code);
            // Stat-first: the changed timestamps made the check re-hash the file.
            assert_eq!(report["fileIntegrity"]["hashed"], 1, "{report:#}");
        }
    }
}

#[test]
fn content_change_with_a_restored_mtime_is_still_caught() {
    let f = Fim::new();
    let p = f.write("forged.conf", b"original content\n");
    f.capture_ok();
    let before = fs::symlink_metadata(&p).unwrap();
    let mtime = before.modified().unwrap();
    // Make sure the ctime can move (coarse timestamps).
    std::thread::sleep(Duration::from_millis(20));
    fs::write(&p, b"tampered content\n").unwrap();
    let st = Command::new("touch")
        .arg("-d")
        .arg(format!("@{}.{:09}", before.mtime(), before.mtime_nsec()))
        .arg(&p)
        .status()
        .unwrap();
    assert!(st.success());
    let after = fs::symlink_metadata(&p).unwrap();
    assert_eq!(after.modified().unwrap(), mtime, "mtime restored");
    assert_eq!(after.len(), before.len(), "same size");
    assert_ne!(
        (after.ctime(), after.ctime_nsec()),
        (before.ctime(), before.ctime_nsec()),
        "the kernel moved ctime"
    );
    let (code, report) = f.check();
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(
        changes(&report),
        expect(&[("/data/forged.conf", m("modified", &["sha256"]))]),
        "{report:#}"
    );
}

#[test]
fn accept_rebaselines_changes_and_refuses_bad_requests() {
    let f = Fim::new();
    f.write("a.conf", b"one\n");
    f.write("b.conf", b"two\n");
    f.write("dir/c.conf", b"three\n");
    f.capture_ok();
    fs::write(f.data("a.conf"), b"one, approved\n").unwrap();
    fs::remove_file(f.data("b.conf")).unwrap();
    fs::write(f.data("dir/c.conf"), b"three, approved\n").unwrap();
    f.write("dir/new.conf", b"new\n");

    // No --reason: a usage error, nothing accepted.
    let out = f.accept(&[OsStr::new("/data/a.conf")], None);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(stderr(&out).contains("--reason"), "{}", stderr(&out));
    let out = f.accept(&[OsStr::new("/data/a.conf")], Some("   "));
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    // Outside every watch set.
    let out = f.accept(&[OsStr::new("/elsewhere/x.conf")], Some("approved"));
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("/elsewhere/x.conf"),
        "{}",
        stderr(&out)
    );
    let (code, report) = f.check();
    assert_eq!(code, 1);
    assert_eq!(changes(&report).len(), 4, "{report:#}");

    // One file, then the removal, then a directory with everything below it.
    let out = f.accept(&[OsStr::new("/data/a.conf")], Some("approved"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("accepted: /data/a.conf"));
    let (_, report) = f.check();
    assert!(!changes(&report).contains_key("/data/a.conf"), "{report:#}");
    assert_eq!(changes(&report).len(), 3, "{report:#}");

    let out = f.accept(&[OsStr::new("/data/b.conf")], Some("approved"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("accepted removal: /data/b.conf"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = f.accept(&[OsStr::new("/data/dir")], Some("approved"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (code, report) = f.check();
    assert_clean(&report, code);
    assert_eq!(report["fileIntegrity"]["changed"], 0);

    // Who accepted what, and why, is on record.
    let records = nodedrift::files::Store::open(&f.state)
        .unwrap()
        .accepts()
        .unwrap();
    let paths: Vec<&str> = records.iter().map(|r| r.paths[0].as_str()).collect();
    assert_eq!(paths, ["/data/a.conf", "/data/b.conf", "/data/dir"]);
    assert!(records.iter().all(|r| r.reason == "approved" && r.uid == 0));

    // The removal left the baseline: recreating the file is an addition.
    f.write("b.conf", b"two\n");
    let (code, report) = f.check();
    assert_eq!(code, 1);
    assert_eq!(
        changes(&report),
        expect(&[("/data/b.conf", m("added", &[]))]),
        "{report:#}"
    );
}

#[test]
fn check_with_watch_and_no_store_is_a_usage_error_naming_the_store() {
    let f = Fim::new();
    f.write("a.conf", b"x\n");
    let out = run_bounded(&mut f.cmd(&["check", "--format", "json"]), BOUND);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    let store = f.state.join("files.redb");
    assert!(
        stderr(&out).contains(&*store.to_string_lossy()),
        "{}",
        stderr(&out)
    );
    assert!(!store.exists(), "a check never creates the store");
}

#[test]
fn without_watch_the_profile_watch_sets_are_checked_for_the_captured_host_only() {
    let tmp = tempfile::tempdir().unwrap();
    let host = tmp.path().join("host");
    let state = tmp.path().join("state");
    let put = |rel: &str, bytes: &[u8]| {
        let p = host.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, bytes).unwrap();
    };
    put("etc/kubernetes/kubelet.conf", b"server: https://a\n");
    put("etc/containerd/config.toml", b"version = 2\n");
    put(
        "var/lib/kubelet/pki/kubelet-client-2024-01-01.pem",
        b"old\n",
    );
    symlink(
        "kubelet-client-2024-01-01.pem",
        host.join("var/lib/kubelet/pki/kubelet-client-current.pem"),
    )
    .unwrap();
    let with_roots = |c: &mut Command, root: &Path| {
        c.args(["--profile", "generic", "--host-root"])
            .arg(root)
            .arg("--state-dir")
            .arg(&state);
    };
    let mut c = nodedrift();
    c.args(["baseline", "capture", "--json"]);
    with_roots(&mut c, &host);
    let out = run_bounded(&mut c, BOUND);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // A change, and a certificate rotation the profile ignores (the link is tracked).
    put("etc/kubernetes/kubelet.conf", b"server: https://b\n");
    put(
        "var/lib/kubelet/pki/kubelet-client-2025-01-01.pem",
        b"new\n",
    );
    let link = host.join("var/lib/kubelet/pki/kubelet-client-current.pem");
    fs::remove_file(&link).unwrap();
    symlink("kubelet-client-2025-01-01.pem", &link).unwrap();
    let mut c = nodedrift();
    c.args(["check", "--format", "json"]);
    with_roots(&mut c, &host);
    let (_, report) = parse_check(&run_bounded(&mut c, BOUND));
    assert_eq!(report["fileIntegrity"]["state"], "verified", "{report:#}");
    let mut fails: Vec<(String, String)> = files_findings(&report)
        .iter()
        .filter(|f| f["status"] == "fail")
        .map(|f| {
            (
                f["rule"].as_str().unwrap().to_owned(),
                f["path"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    fails.sort();
    assert_eq!(
        fails,
        [
            (
                "files.kubelet-state".to_owned(),
                "/var/lib/kubelet/pki/kubelet-client-current.pem".to_owned()
            ),
            (
                "files.kubernetes-config".to_owned(),
                "/etc/kubernetes/kubelet.conf".to_owned()
            ),
        ],
        "{report:#}"
    );

    // The same state directory, another host root: not compared.
    let other = tmp.path().join("other");
    fs::create_dir_all(other.join("etc/kubernetes")).unwrap();
    let mut c = nodedrift();
    c.args(["check", "--format", "json"]);
    with_roots(&mut c, &other);
    let (_, report) = parse_check(&run_bounded(&mut c, BOUND));
    assert_eq!(report["fileIntegrity"]["state"], "other-host", "{report:#}");
    assert!(files_findings(&report).is_empty(), "{report:#}");
}

// ---- the store's own integrity ----

/// Rewrites the stored entry of the host path `path` with `edit`, directly through redb.
fn rewrite_entry(state: &Path, path: &str, edit: impl FnOnce(&mut nodedrift::files::entry::Entry)) {
    use nodedrift::files::entry::{Entry, key};
    use redb::{ReadableDatabase as _, TableDefinition};
    const ENTRIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("entries");
    let db = redb::Database::open(state.join("files.redb")).unwrap();
    let k = key(Path::new(path));
    let mut e = {
        let tx = db.begin_read().unwrap();
        let t = tx.open_table(ENTRIES).unwrap();
        let v = t.get(k.as_slice()).unwrap().expect("stored entry");
        Entry::decode(PathBuf::from(path), v.value()).unwrap()
    };
    edit(&mut e);
    let tx = db.begin_write().unwrap();
    {
        let mut t = tx.open_table(ENTRIES).unwrap();
        t.insert(k.as_slice(), e.encode().as_slice()).unwrap();
    }
    tx.commit().unwrap();
}

/// The recorded digest and the stored value of `path`, read without writing to the store.
fn stored_state(file: &Path, path: &str) -> (Vec<u8>, Vec<u8>) {
    use redb::{ReadableDatabase as _, TableDefinition};
    const ENTRIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("entries");
    const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
    let db = redb::ReadOnlyDatabase::open(file).unwrap();
    let tx = db.begin_read().unwrap();
    let meta = tx.open_table(META).unwrap();
    let digest = meta.get("digest").unwrap().unwrap().value().to_vec();
    let entries = tx.open_table(ENTRIES).unwrap();
    let k = nodedrift::files::entry::key(Path::new(path));
    let value = entries.get(k.as_slice()).unwrap().unwrap().value().to_vec();
    (digest, value)
}

fn assert_store_integrity_fail(report: &Value, code: i32) {
    assert_eq!(code, 1, "{report:#}");
    let all = files_findings(report);
    assert_eq!(all.len(), 1, "only the store finding: {report:#}");
    let f = all[0];
    assert_eq!(f["rule"], "files.store-integrity", "{report:#}");
    assert_eq!(f["status"], "fail");
    assert_eq!(f["severity"], "critical");
    assert!(f["path"].as_str().unwrap().ends_with("files.redb"), "{f:#}");
    assert_eq!(report["fileIntegrity"]["state"], "damaged", "{report:#}");
}

/// SHA-256 of a file, hex (compared instead of the bytes, which a failure would print).
fn sha256_of(p: &Path) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, &fs::read(p).unwrap());
    nodedrift::files::entry::hex(d.as_ref())
}

fn damaged_aside(state: &Path) -> Vec<PathBuf> {
    fs::read_dir(state)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("files.redb.damaged-")
        })
        .collect()
}

#[test]
fn a_store_rewritten_to_hide_a_change_is_a_critical_finding() {
    let f = Fim::new();
    let p = f.write("kubelet.conf", b"readOnlyPort: 0\n");
    f.write("other.conf", b"x\n");
    f.capture_ok();
    // The attack: change the file, then make its stored entry describe the new state.
    fs::write(&p, b"readOnlyPort: 1\n").unwrap();
    let st = nix::sys::stat::lstat(&p).unwrap();
    let digest = ring::digest::digest(&ring::digest::SHA256, b"readOnlyPort: 1\n");
    rewrite_entry(&f.state, "/data/kubelet.conf", |e| {
        e.meta = nodedrift::files::entry::Meta::from_stat(&st);
        e.digest = nodedrift::files::entry::Digest::Sha256(digest.as_ref().try_into().unwrap());
    });
    let tampered = stored_state(&f.state.join("files.redb"), "/data/kubelet.conf");
    for _ in 0..2 {
        let (code, report) = f.check();
        assert_store_integrity_fail(&report, code);
        let reason = files_findings(&report)[0]["reason"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(reason.contains("modified outside nodedrift"), "{reason}");
    }
    // Never re-captured: the forged entry and the recorded digest are as the attacker left
    // them. (The file's bytes are not: redb rewrites its header and allocator pages whenever
    // a process opens it read-write.)
    assert!(
        stored_state(&f.state.join("files.redb"), "/data/kubelet.conf") == tampered,
        "a check changed what the tampered store holds"
    );
    force_recapture_keeps_evidence(&f, |aside| {
        stored_state(aside, "/data/kubelet.conf") == tampered
    });
}

/// Capture without --force refuses a damaged store; with --force it keeps the old file
/// aside (`evidence` checks it is as it was) and the new baseline checks clean.
fn force_recapture_keeps_evidence(f: &Fim, evidence: impl Fn(&Path) -> bool) {
    let (code, _, out) = f.capture(&[]);
    assert_eq!(code, 64, "refuses without --force: {}", stderr(&out));
    assert!(stderr(&out).contains("files.redb"), "{}", stderr(&out));
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    assert!(damaged_aside(&f.state).is_empty());
    let (code, _, out) = f.capture(&["--force"]);
    assert_eq!(code, 0, "{}", stderr(&out));
    let aside = damaged_aside(&f.state);
    assert_eq!(aside.len(), 1, "{}", stderr(&out));
    assert!(evidence(&aside[0]), "evidence kept as it was");
    let (code, report) = f.check();
    assert_clean(&report, code);
}

#[test]
fn a_truncated_store_is_a_critical_finding_and_force_keeps_it_aside() {
    let f = Fim::new();
    for i in 0..200 {
        f.write(&format!("f{i:03}.conf"), format!("file {i}\n").as_bytes());
    }
    f.capture_ok();
    let file = f.state.join("files.redb");
    let len = fs::metadata(&file).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let truncated = sha256_of(&file);
    for _ in 0..2 {
        let (code, report) = f.check();
        assert_store_integrity_fail(&report, code);
    }
    assert!(sha256_of(&file) == truncated, "left as evidence");

    force_recapture_keeps_evidence(&f, |aside| sha256_of(aside) == truncated);
}

#[test]
fn a_store_with_flipped_bytes_is_never_trusted_silently() {
    let f = Fim::new();
    for i in 0..50 {
        f.write(&format!("f{i:02}.conf"), format!("file {i}\n").as_bytes());
    }
    f.capture_ok();
    let file = f.state.join("files.redb");
    // Flip one byte in every 4 KiB page, the header page included.
    let mut bytes = fs::read(&file).unwrap();
    for i in (100..bytes.len()).step_by(4096) {
        bytes[i] ^= 0x5a;
    }
    fs::write(&file, &bytes).unwrap();
    let (code, report) = f.check();
    assert_store_integrity_fail(&report, code);
}

// ---- bad input inside a watched tree ----

#[test]
fn fifos_sockets_and_devices_are_recorded_by_type_and_never_opened() {
    use nix::sys::stat::{Mode, SFlag, makedev, mknod};
    let f = Fim::new();
    f.write("plain.conf", b"plain\n");
    let fifo = f.data("special/fifo");
    fs::create_dir_all(fifo.parent().unwrap()).unwrap();
    nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o644)).unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(f.data("special/socket")).unwrap();
    let mut kinds = vec![
        ("/data/special/fifo", "fifo"),
        ("/data/special/socket", "socket"),
    ];
    let dev = f.data("special/null");
    match mknod(
        &dev,
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o666),
        makedev(1, 3),
    ) {
        Ok(()) => kinds.push(("/data/special/null", "char-device")),
        Err(e) => panic!("mknod of a character device (run the tests as root): {e}"),
    }
    let blk = f.data("special/loop");
    match mknod(
        &blk,
        SFlag::S_IFBLK,
        Mode::from_bits_truncate(0o600),
        makedev(7, 0),
    ) {
        Ok(()) => kinds.push(("/data/special/loop", "block-device")),
        Err(e) => panic!("mknod of a block device (run the tests as root): {e}"),
    }

    let ((code, summary, out), opened) = watch_fifo(&fifo, || f.capture(&[]));
    assert_eq!(code, 0, "{summary:#}\n{}", stderr(&out));
    assert!(!opened, "capture opened the FIFO");
    assert_eq!(
        summary["hashed"], 1,
        "only the regular file is read: {summary:#}"
    );
    let ((code, report), opened) = watch_fifo(&fifo, || f.check());
    assert_clean(&report, code);
    assert!(!opened, "check opened the FIFO");

    // What the baseline recorded for each: its type, shown once it is gone.
    for (p, _) in &kinds {
        fs::remove_file(f.host.join(p.trim_start_matches('/'))).unwrap();
    }
    let (code, report) = f.check();
    assert_eq!(code, 1, "{report:#}");
    for (p, kind) in &kinds {
        let r = finding(&report, p);
        assert_eq!(r["detail"]["change"], "removed");
        assert_eq!(r["expected"]["type"], *kind, "{r:#}");
        assert!(r["expected"].get("sha256").is_none(), "{r:#}");
    }
    assert_eq!(changes(&report).len(), kinds.len(), "{report:#}");
}

#[test]
fn a_fifo_replacing_a_file_is_a_type_change_and_is_not_opened() {
    let f = Fim::new();
    let p = f.write("config.toml", b"version = 2\n");
    f.capture_ok();
    fs::remove_file(&p).unwrap();
    nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let ((code, report), opened) = watch_fifo(&p, || f.check());
    assert!(!opened, "check opened the FIFO");
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(
        changes(&report),
        expect(&[("/data/config.toml", m("modified", &["type"]))]),
        "{report:#}"
    );
    let r = finding(&report, "/data/config.toml");
    assert_eq!(r["actual"]["type"], "fifo", "{r:#}");
}

#[test]
fn symlinks_are_recorded_never_followed() {
    let f = Fim::new();
    f.write("plain.conf", b"plain\n");
    symlink("loop-b", f.data("loop-a")).unwrap();
    symlink("loop-a", f.data("loop-b")).unwrap();
    symlink("self", f.data("self")).unwrap();
    symlink("/etc/passwd", f.data("passwd")).unwrap();
    symlink("/etc", f.data("etc-dir")).unwrap();
    symlink("../../..", f.data("up")).unwrap();
    // A watch root that is itself a link out of the root.
    symlink("/etc", f.host.join("escape")).unwrap();
    let mut f = f;
    f.watch.push("/escape".into());

    let summary = f.capture_ok();
    // The links themselves and the plain file; nothing of /etc.
    assert_eq!(summary["hashed"], 1, "{summary:#}");
    assert_eq!(summary["entries"], 9, "{summary:#}");
    let (code, report) = f.check();
    assert_eq!(code, 0, "{report:#}");
    assert!(changes(&report).is_empty() && unknowns(&report).is_empty());
    let text = report.to_string();
    assert!(!text.contains("root:x:0:0"), "read /etc/passwd: {text}");

    for l in ["loop-a", "self", "passwd", "etc-dir", "up"] {
        fs::remove_file(f.data(l)).unwrap();
    }
    fs::remove_file(f.host.join("escape")).unwrap();
    let (code, report) = f.check();
    assert_eq!(code, 1, "{report:#}");
    for (p, target) in [
        ("/data/loop-a", "loop-b"),
        ("/data/self", "self"),
        ("/data/passwd", "/etc/passwd"),
        ("/data/etc-dir", "/etc"),
        ("/data/up", "../../.."),
        ("/escape", "/etc"),
    ] {
        let r = finding(&report, p);
        assert_eq!(r["expected"]["type"], "symlink", "{r:#}");
        assert_eq!(r["expected"]["target"], target, "{r:#}");
    }
    assert_eq!(changes(&report).len(), 6, "{report:#}");
    assert!(!report.to_string().contains("root:x:0:0"));
}

/// `setpriv` running the binary as nobody, with the environment `util::nodedrift` sets.
fn as_nobody() -> Option<Command> {
    let ok = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        return None;
    }
    let base = nodedrift();
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_nodedrift"));
    for (k, v) in base.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    Some(c)
}

fn chown_tree(p: &Path, uid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(uid)).unwrap();
    if fs::symlink_metadata(p).unwrap().is_dir() {
        for e in fs::read_dir(p).unwrap() {
            chown_tree(&e.unwrap().path(), uid);
        }
    }
}

#[test]
fn a_subtree_the_checker_cannot_read_is_unknown_and_its_children_are_not_removed() {
    let mut nobody = as_nobody().expect("setpriv dropping to uid 65534 (run the tests as root)");
    let f = Fim::new();
    for p in [f.tmp.path(), &f.host, &f.data("")] {
        fs::set_permissions(p, fs::Permissions::from_mode(0o755)).unwrap();
    }
    f.write("open.conf", b"readable\n");
    f.write("locked/a.conf", b"a\n");
    f.write("locked/inner/b.conf", b"b\n");
    let secret = f.write("secret.key", b"root only\n");
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(f.data("locked"), fs::Permissions::from_mode(0o000)).unwrap();
    // Root (bypassing permissions) captures everything.
    let summary = f.capture_ok();
    assert_eq!(summary["entries"], 7, "{summary:#}");
    chown_tree(&f.state, 65534);

    // Stat-first: an unchanged file the checker may not read keeps its stored digest.
    f.args(&mut nobody, &["check", "--format", "json"]);
    let (code, report) = parse_check(&run_bounded(&mut nobody, BOUND));
    assert_eq!(code, 3, "unknowns, no fail: {report:#}");
    assert!(changes(&report).is_empty(), "children reported: {report:#}");
    let u = unknowns(&report);
    assert_eq!(u.len(), 1, "{u:?}");
    assert_eq!(u[0].0, "/data/locked");
    assert!(u[0].1.contains("permission denied"), "{u:?}");

    // A touched file it may not read: its content is unknown, not changed.
    let st = Command::new("touch").arg(&secret).status().unwrap();
    assert!(st.success());
    let mut nobody = as_nobody().unwrap();
    f.args(&mut nobody, &["check", "--format", "json"]);
    let (code, report) = parse_check(&run_bounded(&mut nobody, BOUND));
    assert!(
        changes(&report).is_empty(),
        "a guess reported as a change: {report:#}"
    );
    assert_eq!(code, 3, "{report:#}");
    let mut u = unknowns(&report);
    u.sort();
    assert_eq!(u.len(), 2, "{u:?}");
    assert_eq!(u[1].0, "/data/secret.key");
    assert!(u[1].1.to_lowercase().contains("permission denied"), "{u:?}");
    fs::set_permissions(f.data("locked"), fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn hard_links_are_both_tracked() {
    let f = Fim::new();
    let a = f.write("a.conf", b"shared inode!\n");
    fs::hard_link(&a, f.data("b.conf")).unwrap();
    let summary = f.capture_ok();
    assert_eq!(summary["hashed"], 2, "{summary:#}");
    fs::write(&a, b"changed inode\n").unwrap();
    let (code, report) = f.check();
    assert_eq!(code, 1);
    assert_eq!(
        changes(&report),
        expect(&[
            ("/data/a.conf", m("modified", &["sha256"])),
            ("/data/b.conf", m("modified", &["sha256"])),
        ]),
        "{report:#}"
    );
    // One name removed: only that one.
    assert_eq!(f.capture(&["--force"]).0, 0);
    fs::remove_file(f.data("b.conf")).unwrap();
    let (_, report) = f.check();
    assert_eq!(
        changes(&report),
        expect(&[("/data/b.conf", m("removed", &[]))]),
        "{report:#}"
    );
}

#[test]
fn non_utf8_names_are_tracked_and_accepted_byte_for_byte() {
    let f = Fim::new();
    let dir = f.data("").join(OsStr::from_bytes(b"d\xff"));
    fs::create_dir(&dir).unwrap();
    let a = dir.join(OsStr::from_bytes(b"caf\xe9.conf"));
    fs::write(&a, b"a\n").unwrap();
    // Two names that display the same once made valid UTF-8.
    let b1 = f.data("").join(OsStr::from_bytes(b"x\xfe"));
    let b2 = f.data("").join(OsStr::from_bytes(b"x\xfd"));
    fs::write(&b1, b"b1\n").unwrap();
    fs::write(&b2, b"b2\n").unwrap();
    f.capture_ok();
    let (code, report) = f.check();
    assert_clean(&report, code);
    for p in [&a, &b1, &b2] {
        fs::write(p, b"changed\n").unwrap();
    }
    let (code, report) = f.check();
    assert_eq!(code, 1, "{report:#}");
    let fails: Vec<String> = files_findings(&report)
        .iter()
        .filter(|x| x["status"] == "fail")
        .map(|x| x["path"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(fails.len(), 3, "{fails:?}");
    assert!(
        fails.contains(&"/data/d\u{fffd}/caf\u{fffd}.conf".to_owned()),
        "{fails:?}"
    );
    assert_eq!(
        fails.iter().filter(|p| *p == "/data/x\u{fffd}").count(),
        2,
        "{fails:?}"
    );
    // Accepting by the raw bytes re-baselines exactly that file.
    let host_path = |p: &Path| -> PathBuf { Path::new("/").join(p.strip_prefix(&f.host).unwrap()) };
    let out = f.accept(
        &[host_path(&a).as_os_str(), host_path(&b1).as_os_str()],
        Some("approved"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (_, report) = f.check();
    let left: Vec<&Value> = files_findings(&report)
        .into_iter()
        .filter(|x| x["status"] == "fail")
        .collect();
    assert_eq!(left.len(), 1, "{report:#}");
    assert_eq!(left[0]["path"], "/data/x\u{fffd}");
    assert_eq!(left[0]["actual"]["size"], 8);
}

/// Creates the directory chain `names` below `base` with `mkdirat` (the full path may exceed
/// PATH_MAX) and a file `file` at its end; returns the host path of the file.
fn deep_tree(base: &Path, host_base: &str, names: &[String], file: &str, bytes: &[u8]) -> String {
    use nix::fcntl::{OFlag, openat};
    use nix::sys::stat::{Mode, mkdirat};
    use std::os::fd::AsFd;
    let mut fd =
        nix::fcntl::open(base, OFlag::O_DIRECTORY | OFlag::O_RDONLY, Mode::empty()).unwrap();
    let mut host = host_base.to_owned();
    for n in names {
        match mkdirat(fd.as_fd(), n.as_str(), Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => panic!("mkdirat: {e}"),
        }
        fd = openat(
            fd.as_fd(),
            n.as_str(),
            OFlag::O_DIRECTORY | OFlag::O_RDONLY,
            Mode::empty(),
        )
        .unwrap();
        host.push('/');
        host.push_str(n);
    }
    let ffd = openat(
        fd.as_fd(),
        file,
        OFlag::O_CREAT | OFlag::O_WRONLY,
        Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    let mut w = fs::File::from(ffd);
    w.write_all(bytes).unwrap();
    host.push('/');
    host.push_str(file);
    host
}

/// Overwrites the file at the end of `names` (opened with `openat`, whatever the path length).
fn deep_rewrite(base: &Path, names: &[String], file: &str, bytes: &[u8]) {
    use nix::fcntl::{OFlag, openat};
    use nix::sys::stat::Mode;
    use std::os::fd::AsFd;
    let mut fd =
        nix::fcntl::open(base, OFlag::O_DIRECTORY | OFlag::O_RDONLY, Mode::empty()).unwrap();
    for n in names {
        fd = openat(
            fd.as_fd(),
            n.as_str(),
            OFlag::O_DIRECTORY | OFlag::O_RDONLY,
            Mode::empty(),
        )
        .unwrap();
    }
    let ffd = openat(
        fd.as_fd(),
        file,
        OFlag::O_WRONLY | OFlag::O_TRUNC,
        Mode::empty(),
    )
    .unwrap();
    fs::File::from(ffd).write_all(bytes).unwrap();
}

#[test]
fn long_paths_and_255_byte_names() {
    let f = Fim::new();
    let name255 = |c: char| c.to_string().repeat(255);
    // Host path just under PATH_MAX: /data + 14 × 256 + one 150-byte directory + a 255-byte name.
    let mut names: Vec<String> = (0..14).map(|i| name255(char::from(b'a' + i))).collect();
    names.push("m".repeat(150));
    let file = name255('z');
    let near = deep_tree(&f.data(""), "/data", &names, &file, b"deep\n");
    assert!(near.len() > 3900 && near.len() < 4096, "{}", near.len());
    // One beyond PATH_MAX: reachable only component by component.
    let mut far_names = names.clone();
    far_names.push(name255('y'));
    far_names[14] = "n".repeat(150);
    let far = deep_tree(&f.data(""), "/data", &far_names, &file, b"far\n");
    assert!(far.len() > 4096, "{}", far.len());

    let (code, summary, out) = f.capture(&[]);
    // The file beyond PATH_MAX is walked to (component by component) but cannot be opened by
    // its path: not captured, and said so.
    assert_eq!(code, 3, "{}", stderr(&out));
    let errors = summary["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{} errors", errors.len());
    let e = errors[0].as_str().unwrap();
    assert!(e.starts_with(&format!("{far}: ")), "not the far path");
    assert!(e.to_lowercase().contains("too long"), "{}", &e[far.len()..]);
    assert_eq!(summary["hashed"], 2);

    deep_rewrite(&f.data(""), &names, &file, b"DEEP\n");
    let (code, report) = f.check();
    assert_eq!(code, 1);
    let got = changes(&report);
    assert_eq!(got.len(), 1, "{:?}", got.values());
    assert_eq!(got.get(&near), Some(&m("modified", &["sha256"])));
    let u = unknowns(&report);
    assert_eq!(u.len(), 1);
    assert_eq!(u[0].0, far);
    assert!(u[0].1.to_lowercase().contains("too long"));
}

#[test]
fn a_directory_with_200000_entries_completes() {
    const N: usize = 200_000;
    let f = Fim::new();
    let dir = f.data("big");
    fs::create_dir(&dir).unwrap();
    let t = Instant::now();
    for i in 0..N {
        fs::File::create(dir.join(format!("{i:06}"))).unwrap();
    }
    eprintln!("created {N} files in {:.1?}", t.elapsed());
    let t = Instant::now();
    let (code, summary, out) = f.capture(&[]);
    eprintln!("captured in {:.1?}", t.elapsed());
    assert_eq!(code, 0, "{}", stderr(&out));
    assert_eq!(summary["entries"], N as u64 + 2, "{summary:#}");
    fs::write(dir.join("100000"), b"x").unwrap();
    fs::remove_file(dir.join("150000")).unwrap();
    let t = Instant::now();
    let (code, report) = f.check();
    eprintln!("checked in {:.1?}", t.elapsed());
    assert_eq!(code, 1);
    assert_eq!(
        changes(&report),
        expect(&[
            ("/data/big/100000", m("modified", &["size", "sha256"])),
            ("/data/big/150000", m("removed", &[])),
        ])
    );
    // Stat-first: only the modified file was read again.
    assert_eq!(
        report["fileIntegrity"]["hashed"], 1,
        "{}",
        report["fileIntegrity"]
    );
}

#[test]
fn a_watched_path_that_appears_later_is_added() {
    let mut f = Fim::new();
    f.write("present.conf", b"here\n");
    f.watch.push("/later".into());
    let summary = f.capture_ok();
    assert_eq!(
        summary["missingRoots"],
        serde_json::json!(["/later"]),
        "{summary:#}"
    );
    let (code, report) = f.check();
    assert_clean(&report, code);
    fs::create_dir(f.host.join("later")).unwrap();
    fs::write(f.host.join("later/x.conf"), b"new\n").unwrap();
    let (code, report) = f.check();
    assert_eq!(code, 1);
    assert_eq!(
        changes(&report),
        expect(&[
            ("/later", m("added", &[])),
            ("/later/x.conf", m("added", &[])),
        ]),
        "{report:#}"
    );
}

#[test]
fn a_file_growing_while_it_is_hashed_neither_hangs_nor_panics() {
    // Flat out (the reader never catches up with the end: the hashing cap stops it), then a
    // trickle (every read reaches an end that has moved by the time it is checked).
    for (name, pause) in [
        ("flat out", None),
        ("trickle", Some(Duration::from_millis(1))),
    ] {
        const CAP: u64 = 400 << 20;
        let f = Fim::new();
        f.write("steady.conf", b"steady\n");
        let p = f.write("growing.log", &vec![b'x'; 16 << 20]);
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (stop, p) = (stop.clone(), p.clone());
            std::thread::spawn(move || {
                let mut w = fs::OpenOptions::new().append(true).open(&p).unwrap();
                let chunk = vec![b'y'; if pause.is_some() { 4 << 10 } else { 64 << 10 }];
                let mut n = 16u64 << 20;
                while !stop.load(Ordering::Relaxed) && n < CAP {
                    w.write_all(&chunk).unwrap();
                    n += chunk.len() as u64;
                    if let Some(d) = pause {
                        std::thread::sleep(d);
                    }
                }
                n
            })
        };
        std::thread::sleep(Duration::from_millis(20));
        let (code, summary, out) = f.capture(&[]);
        stop.store(true, Ordering::Relaxed);
        let written = writer.join().unwrap();
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
        assert!(code == 0 || code == 3, "{summary:#}\n{}", stderr(&out));
        assert_eq!(summary["entries"], 3, "{summary:#}");
        let errors = summary["errors"].as_array().unwrap();
        let metadata_only = summary["metadataOnly"].as_array().unwrap();
        eprintln!(
            "{name}: the writer reached {} MiB; capture errors {errors:?}, metadata only {metadata_only:?}",
            written >> 20
        );
        // Hashed, or tracked by metadata only, or not captured with the reason: never a
        // digest of bytes that were never the file's.
        if code == 3 {
            assert_eq!(errors.len(), 1, "{summary:#}");
            let e = errors[0].as_str().unwrap();
            assert!(e.starts_with("/data/growing.log: "), "{e}");
            assert!(e.contains("changed while being hashed"), "{e}");
        } else {
            assert!(errors.is_empty());
        }
        // Once it holds still, a check has an answer about it and nothing else.
        let (code, report) = f.check();
        assert!(matches!(code, 0 | 1 | 3), "{report:#}");
        let got = changes(&report);
        assert!(got.keys().all(|p| p == "/data/growing.log"), "{report:#}");
        assert!(
            unknowns(&report)
                .iter()
                .all(|(p, _)| p == "/data/growing.log"),
            "{report:#}"
        );
    }
}

// ---- the benchmark's tamper semantics, on a small corpus ----

/// The benchmark corpus's layout at a smaller scale: `dNN/sNN/fNNNNN.{conf,bin,log,so}`, 50
/// files per subdirectory, incompressible content with the benchmark's size mix (80 % under
/// 16 KiB, 19 % under 64 KiB, 0.9 % under 2 MiB, 0.1 % of 4 to 12 MiB), one file in 7 mode
/// 0600, every mtime 2024-01-01. Set `NODEDRIFT_CORPUS_GEN` to a generator taking
/// `ROOT NFILES SEED` to use that one instead.
fn corpus(root: &Path, files: usize) {
    if let Some(cmd) = std::env::var_os("NODEDRIFT_CORPUS_GEN") {
        let st = Command::new("sh")
            .arg("-c")
            .arg(format!("{} \"$0\" {files} 42", cmd.to_string_lossy()))
            .arg(root)
            .status()
            .unwrap();
        assert!(st.success(), "{cmd:?}");
        return;
    }
    const EXTS: [&str; 4] = [".conf", ".bin", ".log", ".so"];
    let fixed = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_704_067_200);
    let mut rng = fastrand::Rng::with_seed(42);
    let mut buf = Vec::new();
    for i in 0..files {
        let dir = root.join(format!("d{:02}/s{:02}", (i / 1000) % 50, (i / 50) % 20));
        if i % 50 == 0 {
            fs::create_dir_all(&dir).unwrap();
        }
        let r = rng.f64();
        let size = if r < 0.80 {
            rng.usize(0..16 << 10)
        } else if r < 0.99 {
            rng.usize(16 << 10..64 << 10)
        } else if r < 0.999 {
            rng.usize(64 << 10..2 << 20)
        } else {
            rng.usize(4 << 20..12 << 20)
        };
        buf.resize(size, 0);
        rng.fill(&mut buf);
        let p = dir.join(format!("f{i:05}{}", EXTS[i % 4]));
        fs::write(&p, &buf).unwrap();
        let mode = if i % 7 == 0 { 0o600 } else { 0o644 };
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(fixed)
            .unwrap();
    }
}

#[test]
fn the_benchmark_tamper_set_is_reported_exactly() {
    const FILES: usize = 2000;
    const EXTS: [&str; 4] = [".conf", ".bin", ".log", ".so"];
    let f = Fim::new().with_attrs("sha256,mode,uid,gid,size,mtime");
    let corpus_root = f.data("");
    let t = Instant::now();
    corpus(&corpus_root, FILES);
    eprintln!("generated {FILES} files in {:.1?}", t.elapsed());
    f.capture_ok();

    // The benchmark's tamper script on FILES files: every FILES/100-th file (it picks every
    // 500th of 50 000), with the same four operations.
    let step = FILES / 100;
    let mut tampered = BTreeMap::new();
    for k in 0..100 {
        let i = k * step;
        let rel = format!(
            "d{:02}/s{:02}/f{:05}{}",
            (i / 1000) % 50,
            (i / 50) % 20,
            i,
            EXTS[i % 4]
        );
        let p = corpus_root.join(&rel);
        let size = fs::metadata(&p).unwrap().len();
        let tag = format!("TAMPERED-{k:06}\n");
        let expected = if k < 60 {
            let mut w = fs::OpenOptions::new().write(true).open(&p).unwrap();
            w.seek(SeekFrom::Start(0)).unwrap();
            w.write_all(tag.as_bytes()).unwrap();
            if size >= 16 {
                m("modified", &["sha256", "mtime"])
            } else {
                m("modified", &["sha256", "size", "mtime"])
            }
        } else if k < 80 {
            let mut w = fs::OpenOptions::new().append(true).open(&p).unwrap();
            w.write_all(tag.as_bytes()).unwrap();
            m("modified", &["sha256", "size", "mtime"])
        } else if k < 90 {
            fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
            m("modified", &["mode"])
        } else {
            assert!(size > 0, "{rel} is empty already: pick another corpus seed");
            fs::OpenOptions::new()
                .write(true)
                .open(&p)
                .unwrap()
                .set_len(0)
                .unwrap();
            m("modified", &["sha256", "size", "mtime"])
        };
        tampered.insert(format!("/data/{rel}"), expected);
    }
    let t = Instant::now();
    let (code, report) = f.check();
    eprintln!("checked in {:.1?}", t.elapsed());
    assert_eq!(code, 1);
    assert_eq!(changes(&report), tampered);
    assert!(unknowns(&report).is_empty(), "{report:#}");
}

// ---- library level: what the binary cannot show deterministically ----

fn spec_for(path: &str) -> nodedrift::files::WatchSpec {
    let set = nodedrift::files::WatchSet::ad_hoc(&[PathBuf::from(path)], None).unwrap();
    nodedrift::files::WatchSpec::new(vec![set])
}

#[test]
fn the_walk_stops_at_max_entries_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    fs::create_dir(&d).unwrap();
    for i in 0..50 {
        fs::write(d.join(format!("{i:02}")), b"x").unwrap();
    }
    let host = nodedrift::host::HostRoot::new(tmp.path()).unwrap();
    let mut spec = spec_for("/d");
    spec.limits.max_entries = 10;
    let w = nodedrift::files::scan::walk(&host, &spec, None);
    assert!(w.truncated);
    assert_eq!(w.entries.len(), 10);
    spec.limits.max_entries = 51;
    let w = nodedrift::files::scan::walk(&host, &spec, None);
    assert!(!w.truncated);
    assert_eq!(w.entries.len(), 51);
}

#[test]
fn files_vanishing_during_the_walk_are_skipped_not_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    fs::create_dir(&d).unwrap();
    for i in 0..2000 {
        fs::write(d.join(format!("{i:04}")), b"x").unwrap();
    }
    let host = nodedrift::host::HostRoot::new(tmp.path()).unwrap();
    let spec = spec_for("/d");
    let stop = Arc::new(AtomicBool::new(false));
    let churn = {
        let (stop, d) = (stop.clone(), d.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for i in 0..2000 {
                    let p = d.join(format!("{i:04}"));
                    if n % 2 == 0 {
                        let _ = fs::remove_file(&p);
                    } else {
                        let _ = fs::write(&p, b"x");
                    }
                }
                n += 1;
            }
            n
        })
    };
    let started = Instant::now();
    let mut walks = 0;
    let mut vanished_before_hash = 0;
    while started.elapsed() < Duration::from_secs(2) {
        let mut w = nodedrift::files::scan::walk(&host, &spec, None);
        assert!(w.errors.is_empty(), "walk {walks}: {:?}", w.errors);
        // A file listed by the walk and gone before it is hashed: named with a reason.
        let which: Vec<usize> = (0..w.entries.len())
            .filter(|i| w.entries[*i].meta.kind == nodedrift::host::FileKind::File)
            .collect();
        nodedrift::files::scan::hash(
            &host,
            &mut w.entries,
            &which,
            nodedrift::files::scan::HashOptions {
                threads: 2,
                max_bytes: 1 << 20,
                want_xattrs: false,
                keep_text_below: 0,
            },
            None,
            None,
        );
        for e in &w.entries {
            if let nodedrift::files::entry::Digest::Unread(r) = &e.digest {
                assert!(!r.is_empty());
                vanished_before_hash += 1;
            }
        }
        walks += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let rounds = churn.join().unwrap();
    eprintln!(
        "{walks} walks against {rounds} churn rounds; {vanished_before_hash} files gone before hashing"
    );
    assert!(walks > 1 && rounds > 1);
}
