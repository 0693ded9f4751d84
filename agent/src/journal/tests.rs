//! The reader against real journal files, written by systemd's own `systemd-journal-remote`
//! (Debian package `systemd-journal-remote`) from the journal export format, in every format
//! variant systemd writes; and against hand-damaged copies of them.

use std::path::Path;

use super::*;

const UNIT: &str = "_SYSTEMD_UNIT=kubelet.service";

use super::testwriter::{Entry as Rec, MACHINE, write_journal};

/// An entry of `unit` (`kubelet.service`, ...), with its identifier and pid.
fn rec(unit: &'static str, usec: u64, message: impl Into<Vec<u8>>) -> Rec {
    let ident = unit.trim_end_matches(".service");
    let pid = if ident == "kubelet" { 1201 } else { 99 };
    let mut e = super::testwriter::unit_entry(usec, ident, pid, message);
    e.fields.push(("_HOSTNAME", b"node-1".to_vec()));
    e
}

fn never() -> bool {
    false
}

/// `tail` collecting the entries.
fn tail(j: &Journal, matching: &str, max: usize, since: u64) -> (Vec<Entry>, TailReport) {
    let mut got = Vec::new();
    let rep = j.tail(matching, max, since, &never, &mut |e| got.push(e));
    (got, rep)
}

fn text(e: &Entry) -> &str {
    match &e.message {
        Message::Text { text, .. } => text,
        other => panic!("not text: {other:?}"),
    }
}

/// 2026-11-22T08:00:00Z in microseconds.
const T0: u64 = 1_795_334_400_000_000;
const MIN: u64 = 60_000_000;

/// Kubelet and containerd interleaved, one entry a minute.
fn mixed(n: u64) -> Vec<Rec> {
    (0..n)
        .map(|i| {
            if i % 3 == 2 {
                rec(
                    "containerd.service",
                    T0 + i * MIN,
                    format!("containerd {i}"),
                )
            } else {
                rec("kubelet.service", T0 + i * MIN, format!("kubelet line {i}"))
            }
        })
        .collect()
}

fn kubelet_numbers(entries: &[Entry]) -> Vec<u64> {
    entries
        .iter()
        .map(|e| {
            text(e)
                .strip_prefix("kubelet line ")
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect()
}

#[test]
fn reads_a_units_entries_in_every_format_systemd_writes() {
    for (compact, keyed) in [("1", "1"), ("0", "1"), ("1", "0"), ("0", "0")] {
        let tmp = tempfile::tempdir().unwrap();
        let env = [
            ("SYSTEMD_JOURNAL_COMPACT", compact),
            ("SYSTEMD_JOURNAL_KEYED_HASH", keyed),
        ];
        write_journal(tmp.path(), "system.journal", &mixed(300), &env);
        let host = HostRoot::new(tmp.path()).unwrap();
        let j = Journal::open(&host);
        assert!(j.errors.is_empty(), "{:?}", j.errors);
        let files = j.files();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].compact, compact == "1", "{env:?}");
        assert_eq!(files[0].keyed_hash, keyed == "1", "{env:?}");
        let (got, rep) = tail(&j, UNIT, 10_000, 0);
        assert!(rep.errors.is_empty(), "{:?}", rep.errors);
        let want: Vec<u64> = (0..300).filter(|i| i % 3 != 2).collect();
        assert_eq!(kubelet_numbers(&got), want, "{env:?}");
        let first = &got[0];
        assert_eq!(first.identifier.as_deref(), Some("kubelet"));
        assert_eq!(first.pid.as_deref(), Some("1201"));
        assert_eq!(
            first.lines(),
            ["2026-11-22T08:00:00.000000Z kubelet[1201]: kubelet line 0"]
        );
        let (c, _) = tail(&j, "_SYSTEMD_UNIT=containerd.service", 10_000, 0);
        assert_eq!(c.len(), 100);
        assert_eq!(text(&c[99]), "containerd 299");
        let (none, rep) = tail(&j, "_SYSTEMD_UNIT=kube-proxy.service", 10_000, 0);
        assert!(none.is_empty() && rep.files_matched.is_empty());
    }
}

#[test]
fn keeps_the_newest_entries_within_the_window_oldest_first() {
    let tmp = tempfile::tempdir().unwrap();
    write_journal(tmp.path(), "system.journal", &mixed(300), &[]);
    let host = HostRoot::new(tmp.path()).unwrap();
    let j = Journal::open(&host);
    // The newest 5.
    let (got, _) = tail(&j, UNIT, 5, 0);
    assert_eq!(kubelet_numbers(&got), [292, 294, 295, 297, 298]);
    // The last 10 minutes before the newest entry (minute 299).
    let (got, _) = tail(&j, UNIT, 10_000, T0 + 289 * MIN);
    assert_eq!(kubelet_numbers(&got), [289, 291, 292, 294, 295, 297, 298]);
    // Both: the tighter one wins.
    let (got, _) = tail(&j, UNIT, 3, T0 + 289 * MIN);
    assert_eq!(kubelet_numbers(&got), [295, 297, 298]);
    // Nothing that recent.
    let (got, _) = tail(&j, UNIT, 10, T0 + 400 * MIN);
    assert!(got.is_empty());
}

#[test]
fn entries_of_several_files_are_merged_by_time() {
    let tmp = tempfile::tempdir().unwrap();
    let old: Vec<Rec> = (0..50)
        .map(|i| rec("kubelet.service", T0 + i * MIN, format!("kubelet line {i}")))
        .collect();
    let new: Vec<Rec> = (50..80)
        .map(|i| rec("kubelet.service", T0 + i * MIN, format!("kubelet line {i}")))
        .collect();
    write_journal(
        tmp.path(),
        "system@0123-0000000000000001-0000000000000001.journal",
        &old,
        &[],
    );
    write_journal(tmp.path(), "system.journal", &new, &[]);
    let host = HostRoot::new(tmp.path()).unwrap();
    let j = Journal::open(&host);
    assert_eq!(j.files().len(), 2);
    let (got, _) = tail(&j, UNIT, 40, 0);
    assert_eq!(kubelet_numbers(&got), (40..80).collect::<Vec<_>>());
    assert_eq!(tail(&j, UNIT, 1000, 0).0.len(), 80);
}

#[test]
fn multi_line_binary_and_compressed_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let big = "x".repeat(4000);
    let recs = vec![
        rec("kubelet.service", T0, "first\nsecond\n"),
        rec("kubelet.service", T0 + MIN, b"\x1b[31mred\x1b[0m".to_vec()),
        rec(
            "kubelet.service",
            T0 + 2 * MIN,
            vec![0xff, 0xfe, 0x00, 0x41],
        ),
        rec("kubelet.service", T0 + 3 * MIN, big.clone()),
        rec("kubelet.service", T0 + 4 * MIN, "after"),
    ];
    write_journal(tmp.path(), "system.journal", &recs, &[]);
    let host = HostRoot::new(tmp.path()).unwrap();
    let j = Journal::open(&host);
    let (got, rep) = tail(&j, UNIT, 100, 0);
    assert_eq!(got.len(), 5);
    assert_eq!(
        got[0].lines(),
        [
            "2026-11-22T08:00:00.000000Z kubelet[1201]: first",
            "                                           second",
        ]
    );
    assert_eq!(got[1].message, Message::Binary { bytes: 12 });
    assert_eq!(got[2].message, Message::Binary { bytes: 4 });
    let Message::Compressed { algorithm, bytes } = got[3].message else {
        panic!(
            "systemd compresses a 4000-byte MESSAGE: {:?}",
            got[3].message
        );
    };
    assert_eq!(algorithm, "zstd");
    assert!(bytes < 4000, "{bytes}");
    assert!(
        got[3].lines()[0].ends_with(&format!(
            "kubelet[1201]: <compressed message (zstd, {bytes} bytes stored): not read>"
        )),
        "{:?}",
        got[3].lines()
    );
    assert_eq!(text(&got[4]), "after");
    assert_eq!((rep.compressed, rep.binary), (1, 2));
    assert_eq!(rep.compression, ["zstd"]);
    // The compressed data object is really compressed: its text is not in the file.
    let raw = std::fs::read(
        tmp.path()
            .join(j.files[0].path().strip_prefix("/").unwrap()),
    )
    .unwrap();
    assert!(!raw.windows(100).any(|w| w == &big.as_bytes()[..100]));
}

/// Byte surgery on a copy of a good file.
fn patch(path: &Path, at: u64, bytes: &[u8]) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, at).unwrap();
}

/// A journal with a good file and a damaged copy of it: the damage is reported for the copy,
/// the good file is still read.
fn damaged(damage: impl FnOnce(&Path, &JournalFile)) -> (Vec<Entry>, Journal, TailReport) {
    let tmp = tempfile::tempdir().unwrap();
    let good = write_journal(tmp.path(), "system.journal", &mixed(300), &[]);
    let bad = good.with_file_name("user-1000.journal");
    std::fs::copy(&good, &bad).unwrap();
    {
        let host = HostRoot::new(tmp.path()).unwrap();
        let f = JournalFile::open(
            &host,
            Path::new(&format!("/var/log/journal/{MACHINE}/user-1000.journal")),
        )
        .unwrap();
        damage(&bad, &f);
    }
    let host = HostRoot::new(tmp.path()).unwrap();
    let j = Journal::open(&host);
    let (got, rep) = tail(&j, UNIT, 10_000, 0);
    (got, j, rep)
}

fn all_errors(j: &Journal, rep: &TailReport) -> String {
    j.errors
        .iter()
        .chain(&rep.errors)
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_cyclic_entry_array_chain_is_an_error_not_a_hang() {
    let (got, j, rep) = damaged(|path, f| {
        let data = f.find_data(UNIT.as_bytes()).unwrap().unwrap();
        let arrays = f.entry_arrays(&data, &mut Vec::new()).unwrap();
        assert!(arrays.len() >= 3, "{arrays:?}");
        // The third array's `next` points back at the first.
        patch(path, arrays[2].0 + 16, &arrays[0].0.to_le_bytes());
    });
    let errors = all_errors(&j, &rep);
    assert!(
        errors.contains("user-1000.journal: corrupt at offset")
            && errors.contains("entry-array chain goes back"),
        "{errors}"
    );
    // The good file's 200 entries, and none from the damaged one.
    assert_eq!(got.len(), 200);
}

#[test]
fn a_cyclic_hash_chain_is_an_error_not_a_hang() {
    let (_, j, rep) = damaged(|path, f| {
        let data = f.find_data(UNIT.as_bytes()).unwrap().unwrap();
        // The unit's DATA object chains to itself, and a lookup that misses in its bucket...
        patch(path, data.offset + 24, &data.offset.to_le_bytes());
        // ...is made by changing the object's hash.
        patch(path, data.offset + 16, &0u64.to_le_bytes());
    });
    let errors = all_errors(&j, &rep);
    assert!(errors.contains("data hash chain goes back"), "{errors}");
}

#[test]
fn a_truncated_file_is_read_as_far_as_it_goes_and_said_to_be() {
    let (got, j, rep) = damaged(|path, f| {
        // Cut half way through the objects after the hash tables.
        let at = |o: u64| {
            let mut b = [0u8; 8];
            f.read_at(o, &mut b).unwrap();
            u64::from_le_bytes(b)
        };
        let tail = at(136);
        let first = (at(104) + at(112)).max(at(120) + at(128));
        let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        file.set_len((first + tail) / 2 + 4).unwrap();
    });
    let errors = all_errors(&j, &rep);
    assert!(
        errors.contains("user-1000.journal") && errors.contains("truncated"),
        "{errors}"
    );
    // All of the good file, and the older part of the cut one.
    assert!(got.len() > 200 && got.len() < 400, "{}", got.len());
}

#[test]
fn garbage_headers_and_unknown_flags_are_refused() {
    // Unknown incompatible flag.
    let (got, j, _) = damaged(|path, _| patch(path, 12, &(1u32 << 5 | 1 << 4).to_le_bytes()));
    let errors = all_errors(&j, &TailReport::default());
    assert!(
        errors.contains("user-1000.journal: journal format not supported: incompatible flags 0x30 include unknown ones (0x20"),
        "{errors}"
    );
    assert_eq!(got.len(), 200);
    // Garbage after the signature.
    let (got, j, rep) = damaged(|path, _| {
        let junk: Vec<u8> = (0..400u32)
            .map(|i| (i * 7919 % 251) as u8 & !0xe0)
            .collect();
        patch(path, 88, &junk);
    });
    let errors = all_errors(&j, &rep);
    assert!(
        errors.contains("user-1000.journal: corrupt at offset 88: header size"),
        "{errors}"
    );
    assert_eq!(got.len(), 200);
    // Not a journal at all.
    let (got, j, _) = damaged(|path, _| patch(path, 0, b"NOTAJRNL"));
    let errors = all_errors(&j, &TailReport::default());
    assert!(
        errors.contains("user-1000.journal: not a journal file: no LPKSHHRH"),
        "{errors}"
    );
    assert_eq!(got.len(), 200);
    // Too short.
    let (_, j, _) = damaged(|path, _| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .unwrap()
            .set_len(100)
            .unwrap();
    });
    let errors = all_errors(&j, &TailReport::default());
    assert!(
        errors.contains("too short for a journal header"),
        "{errors}"
    );
}

#[test]
fn entry_offsets_outside_the_file_are_errors() {
    let (got, j, rep) = damaged(|path, f| {
        let data = f.find_data(UNIT.as_bytes()).unwrap().unwrap();
        let arrays = f.entry_arrays(&data, &mut Vec::new()).unwrap();
        // The newest items of the last array point far past the end.
        let (last, n) = *arrays.last().unwrap();
        let item = f.item_size();
        let far = if item == 4 {
            u64::from(u32::MAX / 8 * 8)
        } else {
            u64::MAX / 16 * 8
        };
        for k in n - 10..n {
            patch(
                path,
                last + ARRAY_HEAD + k * item,
                &far.to_le_bytes()[..item as usize],
            );
        }
    });
    let errors = all_errors(&j, &rep);
    assert!(
        errors.contains("entries not readable") && errors.contains("outside the file"),
        "{errors}"
    );
    assert!(got.len() > 200, "{}", got.len());
}

#[test]
fn symlinks_and_other_files_are_not_opened() {
    let tmp = tempfile::tempdir().unwrap();
    let good = write_journal(tmp.path(), "system.journal", &mixed(30), &[]);
    let dir = good.parent().unwrap();
    std::os::unix::fs::symlink(&good, dir.join("link.journal")).unwrap();
    std::fs::create_dir(dir.join("dir.journal")).unwrap();
    std::fs::write(dir.join("notes.txt"), "x").unwrap();
    let host = HostRoot::new(tmp.path()).unwrap();
    let j = Journal::open(&host);
    let files: Vec<String> = j.files().into_iter().map(|f| f.path).collect();
    assert_eq!(
        files,
        [format!("/var/log/journal/{MACHINE}/system.journal")]
    );
    assert!(j.errors.is_empty(), "{:?}", j.errors);
}

#[test]
fn random_damage_never_panics_or_hangs() {
    let tmp = tempfile::tempdir().unwrap();
    let path = write_journal(tmp.path(), "system.journal", &mixed(300), &[]);
    let host = HostRoot::new(tmp.path()).unwrap();
    let (first, end) = {
        let f = &Journal::open(&host).files[0];
        let h = &f.header;
        let mut b = [0u8; 8];
        f.read_at(136, &mut b).unwrap();
        let tail = u64::from_le_bytes(b);
        (
            h.data_hash_table_offset + h.data_hash_table_size,
            tail + 4096,
        )
    };
    let mut rng = fastrand::Rng::with_seed(0x006a_6f75_726e_616c);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    for round in 0..300 {
        // A few bytes changed in the header or among the objects, then put back.
        let mut saved = Vec::new();
        for _ in 0..rng.usize(1..12) {
            let at = if rng.u8(..) < 48 {
                rng.u64(0..272)
            } else {
                rng.u64(first..end)
            };
            let mut old = [0u8; 1];
            file.read_exact_at(&mut old, at).unwrap();
            saved.push((at, old[0]));
            file.write_all_at(&[rng.u8(..)], at).unwrap();
        }
        let j = Journal::open(&host);
        for unit in [UNIT, "_SYSTEMD_UNIT=containerd.service"] {
            let (got, _) = tail(&j, unit, 1000, 0);
            assert!(got.len() <= 1000, "round {round}");
        }
        for (at, b) in saved.into_iter().rev() {
            file.write_all_at(&[b], at).unwrap();
        }
    }
    let (got, rep) = tail(&Journal::open(&host), UNIT, 1000, 0);
    assert_eq!((got.len(), rep.errors.len()), (200, 0));
}
