//! File handles and filesystem ids: how fanotify names a directory.
//!
//! A fanotify group created with `FAN_REPORT_DIR_FID` does not hand out file descriptors or
//! paths: each event carries the *filesystem id* (`statfs(2)`'s `f_fsid`) and the *file handle*
//! (`name_to_handle_at(2)`) of the directory the event happened in, plus the entry's name. To
//! turn that back into a path, the attribution code takes the handle and fsid of every
//! directory it marks (with the two calls below, on the same descriptor it marks) and looks
//! events up by them.

use std::mem::{offset_of, size_of};
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;
use nix::libc;

/// The largest handle the kernel encodes (`MAX_HANDLE_SZ` in `include/linux/exportfs.h`).
pub const MAX_HANDLE_SZ: usize = 128;

/// An opaque file handle: what `name_to_handle_at(2)` returns and what fanotify reports.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileHandle {
    /// `handle_type`: the filesystem's encoding (e.g. `FILEID_INO32_GEN` = 1 on ext4).
    pub handle_type: i32,
    /// `f_handle[..handle_bytes]`.
    pub bytes: Vec<u8>,
}

/// `struct file_handle` followed by room for the largest handle.
#[repr(C)]
struct RawHandle {
    handle_bytes: u32,
    handle_type: i32,
    f_handle: [u8; MAX_HANDLE_SZ],
}

/// The handle of the file `fd` refers to (any kind of descriptor, `O_PATH` included).
///
/// Filesystems that cannot export handles for NFS (overlayfs without `nfs_export`, for one)
/// still give fanotify a handle that identifies the inode; where the plain call fails with
/// `EOPNOTSUPP` this retries with `AT_HANDLE_FID` (Linux 6.5), which asks for exactly that
/// encoding. Errors are the call's errno.
pub fn handle_of(fd: BorrowedFd<'_>) -> nix::Result<FileHandle> {
    match name_to_handle(fd, 0) {
        Err(Errno::EOPNOTSUPP) => name_to_handle(fd, libc::AT_HANDLE_FID),
        other => other,
    }
}

fn name_to_handle(fd: BorrowedFd<'_>, flags: libc::c_int) -> nix::Result<FileHandle> {
    let mut raw = RawHandle {
        handle_bytes: MAX_HANDLE_SZ as u32,
        handle_type: 0,
        f_handle: [0; MAX_HANDLE_SZ],
    };
    let mut mount_id: libc::c_int = 0;
    // SAFETY: `fd` is a live descriptor for the duration of the call (borrowed); the path is a
    // NUL-terminated empty string with `AT_EMPTY_PATH`, so the call describes `fd` itself;
    // `raw` is a `#[repr(C)]` `struct file_handle` whose `handle_bytes` says how much room
    // follows the header (`MAX_HANDLE_SZ`, the most the kernel writes); `mount_id` is a valid
    // `int` to write to. Both outlive the call.
    let rc = unsafe {
        libc::name_to_handle_at(
            fd.as_raw_fd(),
            c"".as_ptr(),
            (&raw mut raw).cast::<libc::file_handle>(),
            &mut mount_id,
            libc::AT_EMPTY_PATH | flags,
        )
    };
    Errno::result(rc)?;
    let len = usize::try_from(raw.handle_bytes).map_err(|_| Errno::EOVERFLOW)?;
    let bytes = raw.f_handle.get(..len).ok_or(Errno::EOVERFLOW)?.to_vec();
    Ok(FileHandle {
        handle_type: raw.handle_type,
        bytes,
    })
}

/// Room for one `struct statfs`, aligned like it (the libc type's `f_fsid` is opaque, so the
/// kernel writes into bytes and the two words are read back at `f_fsid`'s offset).
#[repr(C, align(8))]
struct StatfsBuf([u8; size_of::<libc::statfs>()]);

const _: () = assert!(std::mem::align_of::<libc::statfs>() <= 8);
const _: () = assert!(offset_of!(libc::statfs, f_fsid) + 8 <= size_of::<libc::statfs>());

/// The filesystem id (`f_fsid` of `fstatfs(2)`) of the filesystem holding `fd`: the `fsid`
/// fanotify reports with every file handle.
pub fn fsid(fd: BorrowedFd<'_>) -> nix::Result<[i32; 2]> {
    let mut buf = StatfsBuf([0; size_of::<libc::statfs>()]);
    // SAFETY: `fd` is a live descriptor (borrowed); `buf` is exactly `size_of::<statfs>()`
    // bytes with at least `statfs`'s alignment (checked at compile time above), owned by this
    // frame, so the kernel's write of one `struct statfs` stays inside it.
    let rc = unsafe { libc::fstatfs(fd.as_raw_fd(), buf.0.as_mut_ptr().cast::<libc::statfs>()) };
    Errno::result(rc)?;
    let off = offset_of!(libc::statfs, f_fsid);
    let word = |at: usize| -> nix::Result<i32> {
        let b: [u8; 4] = buf
            .0
            .get(at..at + 4)
            .and_then(|s| s.try_into().ok())
            .ok_or(Errno::EOVERFLOW)?;
        Ok(i32::from_ne_bytes(b))
    };
    Ok([word(off)?, word(off + 4)?])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn same_directory_same_handle_and_fsid() {
        let dir = tempfile::tempdir().unwrap();
        let a = std::fs::File::open(dir.path()).unwrap();
        let b = std::fs::File::open(dir.path()).unwrap();
        let ha = handle_of(a.as_fd()).unwrap();
        assert!(!ha.bytes.is_empty() && ha.bytes.len() <= MAX_HANDLE_SZ);
        assert_eq!(ha, handle_of(b.as_fd()).unwrap());
        assert_eq!(fsid(a.as_fd()).unwrap(), fsid(b.as_fd()).unwrap());

        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let c = std::fs::File::open(dir.path().join("sub")).unwrap();
        assert_ne!(ha, handle_of(c.as_fd()).unwrap());
        assert_eq!(fsid(a.as_fd()).unwrap(), fsid(c.as_fd()).unwrap());
    }

    #[test]
    fn procfs_and_the_root_filesystem_differ() {
        let root = std::fs::File::open("/").unwrap();
        let proc = std::fs::File::open("/proc").unwrap();
        assert_ne!(fsid(root.as_fd()).unwrap(), fsid(proc.as_fd()).unwrap());
    }
}
