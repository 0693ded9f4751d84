use super::*;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::symlink;

/// A root with a secret *outside* it that every escape attempt aims at.
struct Fixture {
    _outer: tempfile::TempDir,
    root: PathBuf,
}

fn fixture() -> Fixture {
    let outer = tempfile::tempdir().unwrap();
    let root = outer.path().join("root");
    std::fs::create_dir_all(root.join("etc/kubernetes")).unwrap();
    std::fs::write(outer.path().join("secret"), "outside").unwrap();
    std::fs::write(root.join("secret"), "inside").unwrap();
    std::fs::write(root.join("etc/kubernetes/kubelet.conf"), "apiVersion: v1\n").unwrap();
    Fixture {
        root,
        _outer: outer,
    }
}

fn both(root: &Path) -> [HostRoot; 2] {
    [
        HostRoot::with_resolver(root, Resolver::Openat2).unwrap(),
        HostRoot::with_resolver(root, Resolver::Walk).unwrap(),
    ]
}

#[test]
fn reads_a_plain_file() {
    let f = fixture();
    for h in both(&f.root) {
        let s = h
            .read_string(Path::new("/etc/kubernetes/kubelet.conf"), 1024)
            .unwrap();
        assert_eq!(s, "apiVersion: v1\n", "{:?}", h.resolver());
    }
}

#[test]
fn absolute_symlink_resolves_inside_the_root() {
    let f = fixture();
    symlink("/secret", f.root.join("etc/abs")).unwrap();
    symlink("../../../../../../secret", f.root.join("etc/rel")).unwrap();
    for h in both(&f.root) {
        assert_eq!(h.read_string(Path::new("/etc/abs"), 64).unwrap(), "inside");
        assert_eq!(h.read_string(Path::new("/etc/rel"), 64).unwrap(), "inside");
        assert_eq!(
            h.read_string(Path::new("/../../secret"), 64).unwrap(),
            "inside"
        );
    }
}

#[test]
fn symlink_pointing_outside_with_no_twin_inside_is_not_found() {
    let f = fixture();
    std::fs::remove_file(f.root.join("secret")).unwrap();
    symlink(
        f.root.parent().unwrap().join("secret"),
        f.root.join("etc/escape"),
    )
    .unwrap();
    for h in both(&f.root) {
        let e = h.read(Path::new("/etc/escape"), 64).unwrap_err();
        assert!(e.is_not_found(), "{e}");
    }
}

#[test]
fn symlink_loop_is_an_error_naming_the_path() {
    let f = fixture();
    symlink("b", f.root.join("etc/a")).unwrap();
    symlink("a", f.root.join("etc/b")).unwrap();
    for h in both(&f.root) {
        let e = h.read(Path::new("/etc/a"), 64).unwrap_err();
        assert!(matches!(e, HostError::SymlinkLoop { .. }), "{e}");
        assert!(e.to_string().contains("/etc/a"), "{e}");
    }
}

#[test]
fn fifo_is_never_opened_for_reading() {
    let f = fixture();
    nix::unistd::mkfifo(
        &f.root.join("etc/config.yaml"),
        Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    for h in both(&f.root) {
        // A blocking open of a FIFO with no writer would hang this test forever.
        let e = h.read(Path::new("/etc/config.yaml"), 64).unwrap_err();
        assert!(
            matches!(
                e,
                HostError::NotRegular {
                    kind: FileKind::Fifo,
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(
            h.stat(Path::new("/etc/config.yaml")).unwrap().kind,
            FileKind::Fifo
        );
    }
}

#[test]
fn socket_and_directory_are_not_read() {
    let f = fixture();
    let _l = std::os::unix::net::UnixListener::bind(f.root.join("etc/sock")).unwrap();
    for h in both(&f.root) {
        let e = h.read(Path::new("/etc/sock"), 64).unwrap_err();
        assert!(
            matches!(
                e,
                HostError::NotRegular {
                    kind: FileKind::Socket,
                    ..
                }
            ),
            "{e}"
        );
        let e = h.read(Path::new("/etc/kubernetes"), 64).unwrap_err();
        assert!(
            matches!(
                e,
                HostError::NotRegular {
                    kind: FileKind::Directory,
                    ..
                }
            ),
            "{e}"
        );
    }
}

#[test]
fn huge_file_is_refused_without_reading_it() {
    let f = fixture();
    let file = std::fs::File::create(f.root.join("etc/big.yaml")).unwrap();
    file.set_len(2 << 30).unwrap(); // 2 GiB, sparse
    for h in both(&f.root) {
        let e = h
            .read(Path::new("/etc/big.yaml"), DEFAULT_READ_LIMIT)
            .unwrap_err();
        assert!(matches!(e, HostError::TooLarge { .. }), "{e}");
    }
}

#[test]
fn limit_applies_even_when_size_is_not_reported() {
    // procfs reports st_size 0; the read itself must stop at the limit.
    for h in both(Path::new("/")) {
        let e = h.read(Path::new("/proc/self/maps"), 16).unwrap_err();
        assert!(matches!(e, HostError::TooLarge { .. }), "{e}");
    }
}

#[test]
fn non_utf8_names_are_listed_and_read() {
    let f = fixture();
    let name = OsString::from_vec(b"caf\xe9.conf".to_vec());
    std::fs::write(f.root.join("etc").join(&name), "x").unwrap();
    for h in both(&f.root) {
        let entries = h.read_dir(Path::new("/etc"), 100).unwrap();
        assert!(entries.iter().any(|e| e.name == name));
        let p = Path::new("/etc").join(&name);
        assert_eq!(h.read(&p, 8).unwrap(), b"x");
    }
}

#[test]
fn read_dir_is_bounded() {
    let f = fixture();
    for i in 0..10 {
        std::fs::write(f.root.join(format!("etc/f{i}")), "").unwrap();
    }
    let h = HostRoot::new(&f.root).unwrap();
    let e = h.read_dir(Path::new("/etc"), 5).unwrap_err();
    assert!(
        matches!(e, HostError::TooManyEntries { limit: 5, .. }),
        "{e}"
    );
}

#[test]
fn lstat_describes_the_link_and_stat_its_target() {
    let f = fixture();
    symlink("/etc/kubernetes/kubelet.conf", f.root.join("etc/link")).unwrap();
    for h in both(&f.root) {
        assert_eq!(
            h.lstat(Path::new("/etc/link")).unwrap().kind,
            FileKind::Symlink
        );
        assert_eq!(h.stat(Path::new("/etc/link")).unwrap().kind, FileKind::File);
        assert_eq!(
            h.read_link(Path::new("/etc/link")).unwrap(),
            PathBuf::from("/etc/kubernetes/kubelet.conf")
        );
    }
}

#[test]
fn magic_proc_links_are_read_as_text_not_traversed() {
    let h = HostRoot::new("/").unwrap();
    let cwd = h.read_link(Path::new("/proc/self/cwd")).unwrap();
    assert_eq!(cwd, std::env::current_dir().unwrap());
}

#[test]
fn missing_root_is_a_clear_error() {
    let e = HostRoot::new("/nonexistent/host/root").unwrap_err();
    assert!(e.to_string().contains("/nonexistent/host/root"), "{e}");
}

#[test]
fn permission_bits_and_owner_are_reported() {
    use std::os::unix::fs::PermissionsExt;
    let f = fixture();
    let p = f.root.join("etc/kubernetes/kubelet.conf");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
    let h = HostRoot::new(&f.root).unwrap();
    let m = h.stat(Path::new("/etc/kubernetes/kubelet.conf")).unwrap();
    assert_eq!(m.mode_octal(), "0640");
    assert_eq!(m.uid, nix::unistd::getuid().as_raw());
}

#[test]
fn read_tail_returns_the_end_of_a_large_file_and_its_offset() {
    let f = fixture();
    let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(f.root.join("var.log"), &data).unwrap();
    std::os::unix::fs::symlink("/../../var.log", f.root.join("link")).unwrap();
    for resolver in [Resolver::Openat2, Resolver::Walk] {
        let h = HostRoot::with_resolver(&f.root, resolver).unwrap();
        let (off, tail) = h.read_tail(Path::new("/var.log"), 1000).unwrap();
        assert_eq!(off, 9000);
        assert_eq!(tail, &data[9000..]);
        let (off, all) = h.read_tail(Path::new("/link"), 1 << 20).unwrap();
        assert_eq!((off, all.len()), (0, data.len()));
        assert!(matches!(
            h.read_tail(Path::new("/etc"), 10),
            Err(HostError::NotRegular { .. })
        ));
        assert!(h.read_tail(Path::new("/../../secret"), 100).unwrap().1 == b"inside");
    }
}
