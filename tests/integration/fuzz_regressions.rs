//! Replays every committed fuzz input through the entry point its target fuzzes: the seed
//! corpora (`fuzz/corpus/<target>/`) and the inputs that once crashed, hung or ran out of
//! memory (`fuzz/regressions/<target>/`, named after what they found). A target's entry point
//! panics when an input breaks it, failing the test that names the target.

use std::path::Path;

use nodedrift::fuzzing;

fn replay(target: &str, entry: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut n = 0;
    for dir in ["corpus", "regressions"] {
        let Ok(rd) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        let mut files: Vec<_> = rd.map(|e| e.unwrap().path()).collect();
        files.sort();
        for f in files {
            let data = std::fs::read(&f).unwrap();
            eprintln!("{}", f.display());
            entry(&data);
            n += 1;
        }
    }
    assert!(n > 0, "no inputs for fuzz target {target}");
}

macro_rules! targets {
    ($($t:ident),* $(,)?) => {$(
        #[test]
        fn $t() {
            replay(stringify!($t), fuzzing::$t);
        }
    )*};
}

targets!(
    kubelet_flags,
    kubelet_config,
    kube_proxy_config,
    mountinfo,
    containerd_config,
    sysctl_conf,
    os_release,
    proc_files,
    baseline,
    config,
    ledger_records,
    redact,
    cni,
    fanotify_events,
    utmp,
    values,
    journal,
);

/// The journal seeds are real files (systemd-journal-remote's, zero runs encoded): they must
/// decode to journals the reader accepts, or the target would fuzz only the header checks.
#[test]
fn journal_seeds_decode_to_readable_journals() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/journal");
    for name in ["compact", "regular"] {
        let data = std::fs::read(dir.join(name)).unwrap();
        let (pieces, len) = fuzzing::journal_runs(&data);
        let mut file = vec![0u8; usize::try_from(len).unwrap()];
        for (at, bytes) in pieces {
            let at = usize::try_from(at).unwrap();
            file[at..at + bytes.len()].copy_from_slice(&bytes);
        }
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp
            .path()
            .join("var/log/journal/0123456789abcdef0123456789abcdef/system.journal");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, &file).unwrap();
        let host = nodedrift::host::HostRoot::new(tmp.path()).unwrap();
        let j = nodedrift::journal::Journal::open(&host);
        let mut n = 0;
        j.tail(
            "_SYSTEMD_UNIT=kubelet.service",
            10,
            0,
            &|| false,
            &mut |_| n += 1,
        );
        assert_eq!(n, 2, "{name}: {:?}", j.files());
    }
}
