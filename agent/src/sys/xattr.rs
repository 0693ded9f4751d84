//! Extended attributes of an open file (`flistxattr`/`fgetxattr`), which neither the standard
//! library nor `nix` wrap.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;

/// Upper bound on the name list and on each value (the kernel's own limit is 64 KiB).
const MAX: usize = 64 << 10;

/// One extended attribute: (name, value).
pub type Xattr = (Vec<u8>, Vec<u8>);

/// The extended attributes of `fd`, as (name, value) pairs sorted by name. Filesystems without
/// xattr support give an empty list.
pub fn list(fd: BorrowedFd<'_>) -> Result<Vec<Xattr>, Errno> {
    let names = match names(fd) {
        Ok(n) => n,
        Err(Errno::ENOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let Ok(cname) = CString::new(name) else {
            continue;
        };
        match value(fd, &cname) {
            Ok(v) => out.push((name.to_vec(), v)),
            // Removed between the two calls, or not readable by us: skip that one.
            Err(Errno::ENODATA | Errno::EACCES | Errno::EPERM) => {}
            Err(e) => return Err(e),
        }
    }
    out.sort();
    Ok(out)
}

fn names(fd: BorrowedFd<'_>) -> Result<Vec<u8>, Errno> {
    grow(1024, |buf| {
        // SAFETY: `buf` is a live, writable allocation of `buf.len()` bytes for the whole
        // call; the kernel writes at most that many bytes.
        unsafe { nix::libc::flistxattr(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) }
    })
}

fn value(fd: BorrowedFd<'_>, name: &CString) -> Result<Vec<u8>, Errno> {
    grow(256, |buf| {
        // SAFETY: `name` is a NUL-terminated string and `buf` a live, writable allocation of
        // `buf.len()` bytes, both valid for the whole call.
        unsafe {
            nix::libc::fgetxattr(
                fd.as_raw_fd(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        }
    })
}

/// Calls `call` with a buffer, growing it (up to [`MAX`]) while the kernel answers `ERANGE`.
fn grow(start: usize, mut call: impl FnMut(&mut [u8]) -> isize) -> Result<Vec<u8>, Errno> {
    let mut buf = vec![0u8; start];
    loop {
        let n = call(&mut buf);
        if n >= 0 {
            let n = usize::try_from(n).map_err(|_| Errno::EOVERFLOW)?;
            buf.truncate(n.min(buf.len()));
            return Ok(buf);
        }
        match Errno::last() {
            Errno::ERANGE if buf.len() < MAX => buf.resize(buf.len() * 4, 0),
            e => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    #[test]
    fn reads_what_setfattr_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"x").unwrap();
        let f = std::fs::File::open(&p).unwrap();
        let before = super::list(f.as_fd()).unwrap();
        assert!(
            before
                .iter()
                .all(|(n, _)| !n.starts_with(b"user.nodedrift"))
        );
        let ok = std::process::Command::new("python3")
            .args([
                "-c",
                "import os,sys; os.setxattr(sys.argv[1], 'user.nodedrift', b'v1')",
            ])
            .arg(&p)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            eprintln!("this filesystem has no user xattrs; only the empty case was tested");
            return;
        }
        let after = super::list(f.as_fd()).unwrap();
        assert!(after.contains(&(b"user.nodedrift".to_vec(), b"v1".to_vec())));
    }
}
