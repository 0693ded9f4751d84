//! Snapshots of a journald-only node: the component and kernel logs come from journal files
//! written by systemd's own `systemd-journal-remote` (Debian package `systemd-journal-remote`),
//! redacted, within the newest-lines and minutes rules; a damaged journal file and compressed
//! messages are reported in `errors.json`.

use std::io::Read;
use std::path::{Path, PathBuf};

use nodedrift::baseline::Baseline;
use nodedrift::check;
use nodedrift::host::HostRoot;
use nodedrift::snapshot::{self, SnapshotRequest};
use serde_json::Value;

use crate::snapshot::{entries, json_of};
use crate::util::nodedrift;

#[allow(dead_code)]
#[path = "../../agent/src/journal/testwriter.rs"]
pub(crate) mod testwriter;

use testwriter::{Entry as Rec, MACHINE, unit_entry as unit};

fn write_journal(root: &Path, name: &str, recs: &[Rec]) -> PathBuf {
    testwriter::write_journal(root, name, recs, &[])
}

const SECRETS: [&str; 3] = ["JournalTok-0001", "JournalPw-0002", "JournalKeyBody0003"];

/// A node whose only logs are the journal: a kubelet line every minute for two hours (each at
/// about half past the minute, `tick <minutes ago>`), containerd every ten minutes, kernel messages,
/// secrets (one private key printed line by line, as journald stores a stream), a message
/// large enough to be stored compressed; and a journal file of an unknown format.
fn journald_node(root: &Path) {
    let now = u64::try_from(nodedrift::clock::unix_now()).unwrap() * 1_000_000;
    let at = |minutes_ago: u64| now - minutes_ago * 60_000_000 - 29_750_000;
    let mut recs = Vec::new();
    for k in (0..120).rev() {
        recs.push(unit(at(k), "kubelet", 1201, format!("tick {k}")));
        if k % 10 == 0 {
            recs.push(unit(
                at(k),
                "containerd",
                99,
                format!("containerd tick {k}"),
            ));
        }
    }
    let t = at(3) + 1;
    recs.push(unit(
        t,
        "kubelet",
        1201,
        format!("Flag --token={} set", SECRETS[0]),
    ));
    recs.push(unit(
        t + 1,
        "kubelet",
        1201,
        format!("password={}", SECRETS[1]),
    ));
    for line in [
        "-----BEGIN RSA PRIVATE KEY-----",
        &format!("MIIEowIBAAKCAQEA{}", SECRETS[2]),
        "-----END RSA PRIVATE KEY-----",
    ] {
        recs.push(unit(t + 2, "kubelet", 1201, line));
    }
    recs.push(unit(t + 3, "kubelet", 1201, "y".repeat(4000)));
    recs.push(Rec {
        usec: t + 4,
        fields: vec![
            ("_TRANSPORT", b"kernel".to_vec()),
            ("SYSLOG_IDENTIFIER", b"kernel".to_vec()),
            ("MESSAGE", b"eth0: link up".to_vec()),
        ],
    });
    recs.sort_by_key(|r| r.usec);
    let good = write_journal(root, "system.journal", &recs);
    // A copy from a future systemd: an incompatible flag this reader does not know.
    let future = good.with_file_name("user-1000.journal");
    std::fs::copy(&good, &future).unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&future)
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &(1u32 << 7 | 1 << 4).to_le_bytes(), 12).unwrap();
}

fn ticks(log: &str) -> Vec<u64> {
    log.lines()
        .filter_map(|l| l.split_once(" kubelet[1201]: tick ")?.1.parse().ok())
        .collect()
}

#[test]
fn a_journald_only_node_has_its_logs_in_the_bundle_redacted() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    journald_node(&root);
    let out = tmp.path().join("b.tar.gz");
    let o = nodedrift()
        .args(["snapshot", "--host-root", root.to_str().unwrap()])
        .args(["--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let bundle = std::fs::read(&out).unwrap();
    let e = entries(&bundle);
    let mut all = Vec::new();
    flate2::read::GzDecoder::new(bundle.as_slice())
        .read_to_end(&mut all)
        .unwrap();
    let all = String::from_utf8_lossy(&all);
    for s in SECRETS {
        assert!(!all.contains(s), "{s} leaked");
    }

    let log = String::from_utf8_lossy(&e["logs/kubelet/journal.log"]).into_owned();
    // The last 60 minutes: every tick up to 50 minutes ago (the snapshot ran within minutes of
    // writing), none from more than 60 minutes ago; oldest first.
    let t = ticks(&log);
    assert!(t.windows(2).all(|w| w[0] > w[1]), "{t:?}");
    assert!((0..=50).all(|k| t.contains(&k)), "{t:?}");
    assert!(t.iter().all(|k| *k <= 59), "{t:?}");
    let line = log.lines().find(|l| l.ends_with(": tick 0")).unwrap();
    assert!(
        line.len() == "2026-11-22T08:01:02.250000Z kubelet[1201]: tick 0".len()
            && line.as_bytes()[10] == b'T'
            && line.contains(".250000Z kubelet[1201]: "),
        "{line}"
    );
    assert!(
        log.contains("kubelet[1201]: Flag --token=<redacted: token> set"),
        "{log}"
    );
    assert!(
        log.contains("kubelet[1201]: password=<redacted: password>"),
        "{log}"
    );
    assert!(
        log.contains("kubelet[1201]: <redacted: private key>"),
        "{log}"
    );
    assert!(
        log.contains("kubelet[1201]: <compressed message (zstd, "),
        "{log}"
    );
    let containerd = String::from_utf8_lossy(&e["logs/containerd/journal.log"]).into_owned();
    assert!(
        containerd.contains("containerd[99]: containerd tick 0"),
        "{containerd}"
    );
    let kernel = String::from_utf8_lossy(&e["logs/kernel/journal.log"]).into_owned();
    assert!(
        kernel.trim_end().ends_with(" kernel: eth0: link up"),
        "{kernel}"
    );

    let components = json_of(&e, "logs/components.json");
    let src = components["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == "journal: _SYSTEMD_UNIT=kubelet.service")
        .unwrap_or_else(|| panic!("{components:#}"));
    assert_eq!(src["entry"], "logs/kubelet/journal.log");
    assert_eq!(src["timeWindow"], "applied");
    assert_eq!(
        src["journalFiles"],
        serde_json::json!([format!("/var/log/journal/{MACHINE}/system.journal")])
    );

    let errors = json_of(&e, "errors.json").to_string();
    assert!(!errors.contains("not parsed"), "{errors}");
    assert!(
        errors.contains("journal: _SYSTEMD_UNIT=kubelet.service: 1 entries with a compressed MESSAGE (zstd), not read"),
        "{errors}"
    );
    assert!(
        errors.contains("user-1000.journal: journal format not supported: incompatible flags 0x90"),
        "{errors}"
    );
    for c in ["kubelet", "containerd"] {
        assert!(!errors.contains(&format!("no {c} log found")), "{errors}");
    }
}

#[test]
fn the_newest_lines_rule_holds_for_the_journal() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    journald_node(&root);
    let h = HostRoot::new(&root).unwrap();
    let baseline = Baseline::profile("generic").unwrap();
    let profile = check::choose_profile(Some("generic"), &Default::default());
    let mut req = SnapshotRequest::new(&h, "journal", profile, &baseline);
    req.limits.log_lines = 4;
    req.limits.log_minutes = 24 * 60;
    let mut bundle = Vec::new();
    snapshot::take(&req, &mut bundle).unwrap();
    let e = entries(&bundle);
    let log = String::from_utf8_lossy(&e["logs/kubelet/journal.log"]).into_owned();
    // The 4 newest, oldest first: the compressed message, then ticks 2, 1 and 0.
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 4, "{log}");
    assert_eq!(ticks(&log), [2, 1, 0], "{log}");
    let components: Value = json_of(&e, "logs/components.json");
    let src = components["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == "journal: _SYSTEMD_UNIT=kubelet.service")
        .unwrap();
    assert_eq!(src["linesKept"], 4);
}
