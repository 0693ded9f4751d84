//! Change attribution against the real kernel: child processes change files in marked
//! temporary directories and the attributor must name them.
//!
//! Every test that needs fanotify fails when `Attributor::start` fails, printing why, unless
//! `NODEDRIFT_TEST_ALLOW_NO_FANOTIFY=1` is set (then it prints that it could not run and
//! returns): these tests never pass without having run.
//!
//! The test process itself never changes a watched file (its own events are ignored by
//! design); children do. Children that must still be alive when their event is read wait on
//! stdin (`read _`) until the test has seen the event, so nothing depends on timing; every wait
//! is bounded by [`WAIT`].

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use super::*;
use crate::attrib::event::tests::{event, fid};
use crate::attrib::sessions::tests::utmp;

/// Upper bound for any single wait in these tests.
const WAIT: Duration = Duration::from_secs(20);

/// The attributor with `host` as host root, or `None` (printed) when fanotify is unavailable
/// and that is explicitly allowed.
fn start(host: &Path) -> Option<Attributor> {
    let root = Arc::new(HostRoot::new(host).unwrap());
    match Attributor::start(root) {
        Ok(a) => Some(a),
        Err(e) => {
            if std::env::var("NODEDRIFT_TEST_ALLOW_NO_FANOTIFY").as_deref() == Ok("1") {
                eprintln!(
                    "SKIPPED: change attribution could not start ({e}); allowed by NODEDRIFT_TEST_ALLOW_NO_FANOTIFY=1"
                );
                None
            } else {
                panic!(
                    "change attribution could not start: {e}\n(these tests need fanotify with CAP_SYS_ADMIN; set NODEDRIFT_TEST_ALLOW_NO_FANOTIFY=1 to let them skip)"
                );
            }
        }
    }
}

/// Starts an attributor watching a fresh temporary directory (host root `/`).
fn watching() -> Option<(Attributor, tempfile::TempDir)> {
    let a = start(Path::new("/"))?;
    let dir = tempfile::tempdir().unwrap();
    let errors = a.set_dirs(&BTreeSet::from([dir.path().to_path_buf()]));
    assert!(errors.is_empty(), "{errors:?}");
    Some((a, dir))
}

/// A child process, killed and reaped if the test ends early.
struct Proc(Child);

impl Proc {
    /// `sh -c SCRIPT sh ARGS...` with stdin piped, so a script ending in `read _` stays alive
    /// until [`Proc::release`].
    fn sh(script: &str, args: &[&Path]) -> Self {
        Self::spawn(
            Command::new("sh")
                .arg("-c")
                .arg(script)
                .arg("sh")
                .args(args),
        )
    }

    fn spawn(cmd: &mut Command) -> Self {
        Self(
            cmd.stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }

    fn pid(&self) -> i32 {
        self.0.id() as i32
    }

    /// Closes stdin and waits (bounded) for a successful exit.
    fn release(mut self) {
        drop(self.0.stdin.take());
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(st) = self.0.try_wait().unwrap() {
                assert!(st.success(), "{st}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "child {} did not exit",
                self.pid()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Waits until `lookup(path)` gives an actor that satisfies `ok`.
fn wait_actor(
    a: &Attributor,
    path: &Path,
    since: SystemTime,
    ok: impl Fn(&Actor) -> bool,
) -> Actor {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(actor) = a.lookup(path, since)
            && ok(&actor)
        {
            return actor;
        }
        assert!(
            Instant::now() < deadline,
            "no matching actor for {}: last {:?}; stats {:?}",
            path.display(),
            a.lookup(path, since),
            a.stats()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn me() -> i32 {
    std::process::id() as i32
}

fn canonical(program: &str) -> String {
    let path = std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|d| d.join(program))
        .find(|p| p.exists())
        .unwrap();
    std::fs::canonicalize(path)
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn append_by_a_shell_names_the_process() {
    let Some((a, dir)) = watching() else { return };
    let file = dir.path().join("kubelet.conf");
    std::fs::write(&file, "a\n").unwrap(); // by the test itself: ignored
    let since = SystemTime::now();
    let child = Proc::sh(r#"echo x >> "$1"; read _ || true"#, &[&file]);
    let actor = wait_actor(&a, &file, since, |x| x.pid == child.pid());
    assert_eq!(actor.comm, "sh");
    assert_eq!(actor.exe.as_deref(), Some(canonical("sh").as_str()));
    assert_eq!(
        actor.cmdline,
        vec![
            "sh".to_owned(),
            "-c".into(),
            r#"echo x >> "$1"; read _ || true"#.into(),
            "sh".into(),
            file.to_string_lossy().into_owned(),
        ]
    );
    assert_eq!(actor.uid, Some(nix::unistd::geteuid().as_raw()));
    assert_eq!(actor.event, "modify");
    assert!(!actor.gone);
    assert_eq!(actor.parents.first().map(|p| p.pid), Some(me()));
    assert_eq!(
        actor.parents.first().and_then(|p| p.exe.clone()),
        std::env::current_exe()
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
    );
    assert!(actor.parents.len() <= procinfo::MAX_DEPTH);
    // `at` is an RFC 3339 time no earlier than the change.
    assert!(actor.at.ends_with('Z') && actor.at >= crate::clock::rfc3339(since));
    // The test's own write was not recorded as someone else's, and was counted.
    assert!(a.stats().own >= 1, "{:?}", a.stats());
    assert!(matches!(
        a.attribute(&file, since),
        Attribution::Attributed { .. }
    ));
    // Nothing recorded before `since` is returned for a later window.
    assert_eq!(
        a.lookup(&file, SystemTime::now() + Duration::from_secs(1)),
        None
    );
    child.release();
}

#[test]
fn python_write_names_the_interpreter() {
    let Some((a, dir)) = watching() else { return };
    let file = dir.path().join("config.yaml");
    let since = SystemTime::now();
    let child = Proc::spawn(Command::new("python3").args([
        "-c",
        "import sys; open(sys.argv[1], 'w').write('readOnlyPort: 10255\\n'); sys.stdout.flush(); sys.stdin.read()",
        file.to_str().unwrap(),
    ]));
    let actor = wait_actor(&a, &file, since, |x| x.pid == child.pid());
    assert!(actor.comm.starts_with("python3"), "{actor:?}");
    assert!(
        actor.exe.as_deref().is_some_and(|e| e.contains("python3")),
        "{actor:?}"
    );
    assert_eq!(actor.cmdline.get(1).map(String::as_str), Some("-c"));
    // Created by this process, then written: reported as the creation.
    assert_eq!(actor.event, "create");
    child.release();
}

/// Runs a short command directly (no shell) and does not reap it until its event was seen,
/// so even if it exits first it stays a zombie whose name and parent are readable.
fn run_unreaped(a: &Attributor, path: &Path, since: SystemTime, argv: &[&str]) -> Actor {
    let child = Proc::spawn(Command::new(argv[0]).args(&argv[1..]));
    let actor = wait_actor(a, path, since, |x| x.pid == child.pid());
    assert_eq!(actor.comm, argv[0], "{actor:?}");
    assert_eq!(
        actor.parents.first().map(|p| p.pid),
        Some(me()),
        "{actor:?}"
    );
    child.release();
    actor
}

#[test]
fn atomic_replace_chmod_delete_and_create_kinds() {
    let Some((a, dir)) = watching() else { return };
    let file = dir.path().join("config.toml");
    let tmp = dir.path().join(".config.toml.tmp");
    std::fs::write(&file, "old").unwrap();
    std::fs::write(&tmp, "new").unwrap();

    let since = SystemTime::now();
    let mv = run_unreaped(
        &a,
        &file,
        since,
        &["mv", tmp.to_str().unwrap(), file.to_str().unwrap()],
    );
    assert_eq!(mv.event, "rename");
    // The old name is recorded too.
    assert_eq!(
        a.lookup(&tmp, since).map(|x| x.event),
        Some("rename".to_owned())
    );

    let since = SystemTime::now();
    let chmod = run_unreaped(&a, &file, since, &["chmod", "600", file.to_str().unwrap()]);
    assert_eq!(chmod.event, "attrib");

    let fresh = dir.path().join("10-new.conf");
    let since = SystemTime::now();
    let touch = run_unreaped(&a, &fresh, since, &["touch", fresh.to_str().unwrap()]);
    assert_eq!(touch.event, "create");

    let since = SystemTime::now();
    let rm = run_unreaped(&a, &file, since, &["rm", file.to_str().unwrap()]);
    assert_eq!(rm.event, "delete");

    // A subdirectory made in a marked directory (FAN_ONDIR).
    let sub = dir.path().join("conf.d");
    let since = SystemTime::now();
    let mkdir = run_unreaped(&a, &sub, since, &["mkdir", sub.to_str().unwrap()]);
    assert_eq!(mkdir.event, "create");
}

#[test]
fn secrets_in_the_command_line_are_redacted() {
    let Some((a, dir)) = watching() else { return };
    let file = dir.path().join("token.csv");
    let since = SystemTime::now();
    let child = Proc::spawn(Command::new("sh").args([
        "-c",
        r#"echo x >> "$1"; read _ || true"#,
        "sh",
        file.to_str().unwrap(),
        "--password",
        "hunter2",
        "--token=abc123",
        "AWS_SECRET_ACCESS_KEY=s3cr3t",
    ]));
    let actor = wait_actor(&a, &file, since, |x| x.pid == child.pid());
    let tail: Vec<&str> = actor.cmdline.iter().skip(4).map(String::as_str).collect();
    assert_eq!(
        tail,
        vec![
            file.to_str().unwrap(),
            "--password",
            "<redacted: password>",
            "--token=<redacted: token>",
            "AWS_SECRET_ACCESS_KEY=<redacted: secret>"
        ]
    );
    let json = serde_json::to_string(&actor).unwrap();
    for secret in ["hunter2", "abc123", "s3cr3t"] {
        assert!(!json.contains(secret), "{json}");
    }
    child.release();
}

#[test]
fn ssh_session_of_an_ancestor_is_linked_with_wtmp() {
    // The host root holds a wtmp with alice's login on pts/7.
    let host = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(host.path().join("var/log")).unwrap();
    let mut wtmp = utmp(2, 0, "~", "reboot", "6.18.0", 1_795_300_000);
    wtmp.extend(utmp(
        7,
        31337,
        "pts/7",
        "alice",
        "203.0.113.9",
        1_795_315_371,
    ));
    std::fs::write(host.path().join("var/log/wtmp"), wtmp).unwrap();
    let Some(a) = start(host.path()) else { return };
    let dir = tempfile::tempdir().unwrap();
    assert!(
        a.set_dirs(&BTreeSet::from([dir.path().to_path_buf()]))
            .is_empty()
    );

    let file = dir.path().join("sshd_config");
    let script = dir.path().join("edit.sh");
    std::fs::write(
        &script,
        "echo PermitRootLogin yes >> \"$1\"\nread _ || true\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    // A real process titled like sshd's session process, running a shell that runs `sh edit.sh`
    // as its child (`; true` keeps bash from exec'ing it).
    let since = SystemTime::now();
    let sshd = Proc::spawn(Command::new("bash").args([
        "-c",
        r#"exec -a "sshd: alice@pts/7" bash -c 'sh "$0" "$1"; true' "$1" "$2""#,
        "bash",
        script.to_str().unwrap(),
        file.to_str().unwrap(),
    ]));
    let actor = wait_actor(&a, &file, since, |x| x.session.is_some());
    assert_ne!(actor.pid, sshd.pid());
    assert_eq!(actor.parents.first().map(|p| p.pid), Some(sshd.pid()));
    assert_eq!(
        actor.session,
        Some(SshSession {
            user: "alice".into(),
            tty: Some("pts/7".into()),
            from: Some("203.0.113.9".into()),
            login_at: Some("2026-11-22T02:42:51Z".into()),
            sshd_pid: sshd.pid(),
        })
    );

    // The same process is listed as an open session of the live host.
    let live = ssh_sessions(&HostRoot::new("/").unwrap());
    let s = live.iter().find(|s| s.sshd_pid == sshd.pid()).unwrap();
    assert_eq!(
        (s.user.as_str(), s.tty.as_deref()),
        ("alice", Some("pts/7"))
    );
    sshd.release();
}

#[test]
fn a_removed_marked_directory_does_not_stop_the_others() {
    let Some(a) = start(Path::new("/")) else {
        return;
    };
    let base = tempfile::tempdir().unwrap();
    let gone = base.path().join("gone");
    let kept = base.path().join("kept");
    std::fs::create_dir(&gone).unwrap();
    std::fs::create_dir(&kept).unwrap();
    std::fs::write(gone.join("f"), "x").unwrap();
    let dirs = BTreeSet::from([gone.clone(), kept.clone()]);
    assert!(a.set_dirs(&dirs).is_empty());

    let since = SystemTime::now();
    let rm = run_unreaped(
        &a,
        &gone.join("f"),
        since,
        &["rm", "-r", gone.to_str().unwrap()],
    );
    assert_eq!(rm.event, "delete");
    // The directory itself: its own deletion (DELETE_SELF) is recorded under its path.
    wait_actor(&a, &gone, since, |x| x.pid == rm.pid && x.event == "delete");

    // Re-applying the same set reports the missing one and keeps the other.
    let errors = a.set_dirs(&dirs);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].0, gone);
    assert!(errors[0].1.contains("ENOENT"), "{errors:?}");
    assert_eq!(a.dirs(), BTreeSet::from([kept.clone()]));
    match a.attribute(&gone.join("g"), since) {
        Attribution::Unattributed { reason } => {
            assert!(
                reason.contains("could not be watched") && reason.contains("ENOENT"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }

    let file = kept.join("still.conf");
    let since = SystemTime::now();
    let child = Proc::sh(r#"echo x > "$1"; read _ || true"#, &[&file]);
    wait_actor(&a, &file, since, |x| x.pid == child.pid());
    child.release();
    assert_eq!(a.stats().reader_error, None);
}

#[test]
fn set_dirs_replaces_the_set_and_reports_each_failure() {
    let Some(a) = start(Path::new("/")) else {
        return;
    };
    let base = tempfile::tempdir().unwrap();
    let one = base.path().join("one");
    let two = base.path().join("two");
    std::fs::create_dir(&one).unwrap();
    std::fs::create_dir(&two).unwrap();
    let file = base.path().join("plain-file");
    std::fs::write(&file, "").unwrap();

    let errors = a.set_dirs(&BTreeSet::from([
        one.clone(),
        base.path().join("missing"),
        PathBuf::from("relative/dir"),
        file.clone(),
    ]));
    let errors: BTreeMap<PathBuf, String> = errors.into_iter().collect();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(
        errors[Path::new("relative/dir")].contains("absolute"),
        "{errors:?}"
    );
    assert!(
        errors[&base.path().join("missing")].contains("ENOENT"),
        "{errors:?}"
    );
    assert!(errors[&file].contains("ENOTDIR"), "{errors:?}");
    assert_eq!(a.dirs(), BTreeSet::from([one.clone()]));

    // Switch to `two`: changes in `one` are no longer recorded. The change in `one` is made
    // first, so once the one in `two` is seen the other would have been read too.
    assert!(a.set_dirs(&BTreeSet::from([two.clone()])).is_empty());
    let since = SystemTime::now();
    let child = Proc::sh(
        r#"echo x > "$1"; echo y > "$2"; read _ || true"#,
        &[&one.join("a"), &two.join("b")],
    );
    wait_actor(&a, &two.join("b"), since, |x| x.pid == child.pid());
    assert_eq!(a.lookup(&one.join("a"), since), None);
    match a.attribute(&one.join("a"), since) {
        Attribution::Unattributed { reason } => {
            assert!(reason.contains("is not watched"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    child.release();

    // A directory replaced by a new one at the same path is re-marked by set_dirs.
    std::fs::remove_dir_all(&two).unwrap();
    std::fs::create_dir(&two).unwrap();
    assert!(a.set_dirs(&BTreeSet::from([two.clone()])).is_empty());
    let since = SystemTime::now();
    let child = Proc::sh(r#"echo z > "$1"; read _ || true"#, &[&two.join("c")]);
    wait_actor(&a, &two.join("c"), since, |x| x.pid == child.pid());
    child.release();
}

#[test]
fn crafted_buffers_overflow_no_pid_and_garbage() {
    let Some((a, dir)) = watching() else { return };
    let (fsid, handle) = {
        let f = std::fs::File::open(dir.path()).unwrap();
        (
            handle::fsid(f.as_fd()).unwrap(),
            handle::handle_of(f.as_fd()).unwrap(),
        )
    };
    let rec = |name: &[u8]| {
        fid(
            libc::FAN_EVENT_INFO_TYPE_DFID_NAME,
            fsid,
            handle.handle_type,
            &handle.bytes,
            Some(name),
        )
    };
    let since = SystemTime::now();
    let mut buf = event(libc::FAN_MODIFY, 0, &[rec(b"hidden.conf")]);
    buf.extend(event(
        libc::FAN_MODIFY,
        12345,
        &[fid(
            libc::FAN_EVENT_INFO_TYPE_DFID_NAME,
            fsid,
            1,
            &[0xEE; 8],
            Some(b"x"),
        )],
    ));
    buf.extend(event(libc::FAN_Q_OVERFLOW, 0, &[]));
    buf.extend([0xAB; 30]);
    a.inner.handle(&buf);

    let st = a.stats();
    assert_eq!(st.no_pid, 1, "{st:?}");
    assert_eq!(st.unmatched, 1, "{st:?}");
    assert_eq!(st.overflows, 1, "{st:?}");
    assert_eq!(st.malformed, 1, "{st:?}");
    let hidden = dir.path().join("hidden.conf");
    assert_eq!(a.lookup(&hidden, since), None);
    assert_eq!(
        a.attribute(&hidden, since),
        Attribution::Unattributed {
            reason: NO_PID_REASON.to_owned()
        }
    );
    // No event for this one, but an overflow after `since`: that is the reason given.
    match a.attribute(&dir.path().join("other.conf"), since) {
        Attribution::Unattributed { reason } => assert!(reason.contains("overflowed"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // For a window starting after the overflow: the plain reason.
    let later = SystemTime::now() + Duration::from_secs(1);
    assert_eq!(
        a.attribute(&dir.path().join("other.conf"), later),
        Attribution::no_event()
    );

    // A pid that does not exist: recorded with the pid, gone.
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id() as i32;
    child.wait().unwrap();
    a.inner
        .handle(&event(libc::FAN_ATTRIB, dead, &[rec(b"late.conf")]));
    let late = a.lookup(&dir.path().join("late.conf"), since).unwrap();
    if late.gone {
        assert_eq!(
            (late.pid, late.comm.as_str(), late.event.as_str()),
            (dead, "", "attrib")
        );
        assert!(late.cmdline.is_empty() && late.parents.is_empty());
        assert!(a.stats().processes_gone >= 1);
    }
}

#[test]
fn dropping_stops_the_reader_promptly() {
    let Some((a, _dir)) = watching() else { return };
    // The reader thread is joined: a reader that did not stop would hang here.
    drop(a);
}

#[test]
fn attributor_is_shareable() {
    fn shareable<T: Send + Sync + std::fmt::Debug>() {}
    shareable::<Attributor>();
    let Some((a, dir)) = watching() else { return };
    let a = Arc::new(a);
    let file = dir.path().join("shared");
    let since = SystemTime::now();
    let child = Proc::sh(r#"echo x > "$1"; read _ || true"#, &[&file]);
    let pid = child.pid();
    let found = std::thread::scope(|s| {
        let h: Vec<_> = (0..4)
            .map(|_| {
                let a = Arc::clone(&a);
                let file = file.clone();
                s.spawn(move || wait_actor(&a, &file, since, |x| x.pid == pid).pid)
            })
            .collect();
        h.into_iter().map(|h| h.join().unwrap()).collect::<Vec<_>>()
    });
    assert_eq!(found, vec![pid; 4]);
    assert!(format!("{a:?}").contains("Attributor"));
    child.release();
}

#[test]
fn attribution_json_shape() {
    let actor = Actor {
        pid: 4242,
        comm: "vi".into(),
        exe: Some("/usr/bin/vim.basic".into()),
        cmdline: vec!["vi".into(), "/etc/kubernetes/kubelet.conf".into()],
        uid: Some(0),
        login_uid: Some(1000),
        parents: vec![Ancestor {
            pid: 4200,
            comm: "bash".into(),
            exe: Some("/usr/bin/bash".into()),
        }],
        container_id: None,
        pod_uid: None,
        session: Some(SshSession {
            user: "alice".into(),
            tty: Some("pts/0".into()),
            from: Some("203.0.113.9".into()),
            login_at: Some("2026-11-22T02:40:00Z".into()),
            sshd_pid: 4100,
        }),
        at: "2026-11-22T02:42:51Z".into(),
        event: "modify".into(),
        gone: false,
    };
    let v = serde_json::to_value(Attribution::from_lookup(Some(actor.clone()))).unwrap();
    assert_eq!(v["status"], "attributed");
    assert_eq!(v["actor"]["pid"], 4242);
    assert_eq!(v["actor"]["loginUid"], 1000);
    assert_eq!(v["actor"]["session"]["sshdPid"], 4100);
    assert_eq!(v["actor"]["session"]["loginAt"], "2026-11-22T02:40:00Z");
    assert_eq!(v["actor"]["containerId"], serde_json::Value::Null);
    let back: Attribution = serde_json::from_value(v).unwrap();
    assert_eq!(back, Attribution::from_lookup(Some(actor)));

    let v = serde_json::to_value(Attribution::from_lookup(None)).unwrap();
    assert_eq!(v["status"], "unattributed");
    assert_eq!(v["reason"], NO_EVENT_REASON);
    let why = Unavailable {
        reason: "fanotify_init: EPERM (needs CAP_SYS_ADMIN)".into(),
    };
    assert_eq!(
        Attribution::unavailable(&why),
        Attribution::Unattributed {
            reason: "change attribution unavailable: fanotify_init: EPERM (needs CAP_SYS_ADMIN)"
                .into()
        }
    );
}

#[test]
fn start_without_cap_sys_admin_is_refused_with_a_reason() {
    // A procfs stand-in whose self/status lacks CAP_SYS_ADMIN.
    let proc = tempfile::tempdir().unwrap();
    std::fs::create_dir(proc.path().join("self")).unwrap();
    let mut f = std::fs::File::create(proc.path().join("self/status")).unwrap();
    writeln!(f, "Name:\tnodedrift\nCapEff:\t00000000a80425fb").unwrap();
    let host = Arc::new(HostRoot::new("/").unwrap());
    let e = Attributor::start_with_proc(host, proc.path()).unwrap_err();
    assert!(e.reason.contains("CAP_SYS_ADMIN"), "{e}");
    assert_eq!(has_capability(proc.path(), CAP_SYS_ADMIN), Some(false));
    assert_eq!(has_capability(proc.path(), 0), Some(true));
    assert_eq!(
        has_capability(Path::new("/nonexistent"), CAP_SYS_ADMIN),
        None
    );
}

#[test]
fn kinds_from_masks_and_merging() {
    use Kind::*;
    assert_eq!(
        Kind::from_mask(libc::FAN_MODIFY | libc::FAN_CLOSE_WRITE),
        Some(Modify)
    );
    assert_eq!(Kind::from_mask(libc::FAN_CLOSE_WRITE), Some(CloseWrite));
    assert_eq!(
        Kind::from_mask(libc::FAN_CREATE | libc::FAN_ONDIR),
        Some(Create)
    );
    assert_eq!(Kind::from_mask(libc::FAN_MOVED_TO), Some(Rename));
    assert_eq!(Kind::from_mask(libc::FAN_DELETE_SELF), Some(Delete));
    assert_eq!(Kind::from_mask(libc::FAN_ATTRIB), Some(Attrib));
    assert_eq!(Kind::from_mask(libc::FAN_ONDIR), None);
    assert_eq!(CloseWrite.as_str(), "modify");
    // touch new: create, attrib, close-write.
    assert_eq!(Create.then(Attrib).then(CloseWrite), Create);
    // touch existing: attrib, close-write.
    assert_eq!(Attrib.then(CloseWrite), Attrib);
    assert_eq!(Attrib.then(Modify), Modify);
    assert_eq!(Modify.then(Delete), Delete);
    assert_eq!(Delete.then(Create), Create);
    assert_eq!(Rename.then(Modify), Rename);
}

fn recorded(pid: i32) -> Arc<Recorded> {
    Arc::new(Recorded::Actor(Box::new(Actor {
        pid,
        comm: format!("p{pid}"),
        exe: None,
        cmdline: Vec::new(),
        uid: None,
        login_uid: None,
        parents: Vec::new(),
        container_id: None,
        pod_uid: None,
        session: None,
        at: String::new(),
        event: String::new(),
        gone: false,
    })))
}

fn pid_of(h: &History, path: &str, since: SystemTime, now: SystemTime) -> Option<(i32, String)> {
    match h.get(Path::new(path), since, now)? {
        (_, Recorded::Actor(a)) => Some((a.pid, a.event)),
        _ => None,
    }
}

#[test]
fn history_is_bounded_in_size_and_age() {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_315_371);
    let mut h = History::new(3, Duration::from_secs(600));
    for (i, p) in ["/a", "/b", "/c", "/d"].iter().enumerate() {
        h.record(
            PathBuf::from(p),
            t0 + Duration::from_secs(i as u64),
            10 + i as i32,
            Kind::Modify,
            recorded(10 + i as i32),
        );
    }
    assert_eq!(h.map.len(), 3);
    assert_eq!(pid_of(&h, "/a", t0, t0), None, "the oldest was evicted");
    assert_eq!(
        pid_of(&h, "/d", t0, t0 + Duration::from_secs(3)),
        Some((13, "modify".into()))
    );
    // `since` after the record: not returned.
    assert_eq!(pid_of(&h, "/b", t0 + Duration::from_secs(2), t0), None);
    // Older than the ttl: not returned, and evicted by the next record.
    let late = t0 + Duration::from_secs(700);
    assert_eq!(pid_of(&h, "/d", t0, late), None);
    h.record(PathBuf::from("/e"), late, 20, Kind::Attrib, recorded(20));
    assert_eq!(h.map.len(), 1);

    // Rewriting one path many times keeps the order queue bounded.
    for i in 0..100u64 {
        h.record(
            PathBuf::from("/e"),
            late + Duration::from_millis(i),
            20,
            Kind::Modify,
            recorded(20),
        );
    }
    assert!(h.order.len() <= 2 * 3 + 1, "{}", h.order.len());
    assert_eq!(pid_of(&h, "/e", late, late), Some((20, "modify".into())));
    // Another process takes over the path: its own kind, not merged.
    h.record(PathBuf::from("/e"), late, 21, Kind::Attrib, recorded(21));
    assert_eq!(pid_of(&h, "/e", late, late), Some((21, "attrib".into())));
}

#[test]
fn long_command_lines_are_bounded() {
    let short = vec!["a".to_owned(), "b".to_owned()];
    assert_eq!(bounded_cmdline(short.clone()), short);
    let long: Vec<String> = (0..100)
        .map(|i| format!("--flag-{i:03}={}", "x".repeat(40)))
        .collect();
    let total: usize = long.iter().map(String::len).sum();
    let kept = bounded_cmdline(long.clone());
    let body: usize = kept[..kept.len() - 1].iter().map(String::len).sum();
    assert_eq!(body, CMDLINE_KEPT);
    assert_eq!(kept[..kept.len() - 2], long[..kept.len() - 2]);
    assert_eq!(
        kept.last().unwrap(),
        &format!("<truncated: {} more bytes>", total - CMDLINE_KEPT)
    );
    // A cut never splits a character.
    let wide = vec!["é".repeat(CMDLINE_KEPT)];
    let kept = bounded_cmdline(wide);
    assert_eq!(kept[0].len(), CMDLINE_KEPT);
    assert!(kept[1].starts_with("<truncated: "));
}

#[test]
fn identical_snapshots_share_one_record() {
    let mut i = Interner::default();
    let a = i.intern(7, Recorded::Unattributable("x".into()));
    let b = i.intern(7, Recorded::Unattributable("x".into()));
    assert!(Arc::ptr_eq(&a, &b));
    let c = i.intern(7, Recorded::Unattributable("y".into()));
    assert!(!Arc::ptr_eq(&a, &c));
    for pid in 0..(Interner::LIMIT as i32 + 10) {
        i.intern(pid, Recorded::Unattributable("z".into()));
    }
    assert!(i.last.len() <= Interner::LIMIT);
}

#[test]
fn the_writers_own_uid_is_reported() {
    let Some((a, dir)) = watching() else { return };
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let file = dir.path().join("dropped-privileges");
    let since = SystemTime::now();
    // Drops to nobody (65534) in place, then writes: same pid, other uid.
    let child = Proc::spawn(Command::new("python3").args([
        "-c",
        "import os, sys; os.setgid(65534); os.setuid(65534); open(sys.argv[1], 'w').write('x'); sys.stdin.read()",
        file.to_str().unwrap(),
    ]));
    let actor = wait_actor(&a, &file, since, |x| x.pid == child.pid());
    assert_eq!(actor.uid, Some(65534), "{actor:?}");
    assert_eq!(actor.parents.first().map(|p| p.pid), Some(me()));
    child.release();
}
