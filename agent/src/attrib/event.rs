//! Parsing what `read(2)` returns from a fanotify group in `FAN_REPORT_DFID_NAME` mode.
//!
//! The buffer is a sequence of events, each a `struct fanotify_event_metadata` followed by
//! information records (`fanotify(7)`):
//!
//! ```text
//! fanotify_event_metadata (24 bytes): event_len u32, vers u8, reserved u8, metadata_len u16,
//!                                     mask u64, fd i32, pid i32
//! then, up to event_len, records:     info_type u8, pad u8, len u16,
//!   FID / DFID / DFID_NAME / OLD_ / NEW_DFID_NAME: fsid [i32; 2],
//!                                     handle_bytes u32, handle_type i32, f_handle[handle_bytes],
//!                                     (the *_NAME types:) the entry name, NUL-terminated, padded
//! ```
//!
//! Everything is read from bytes with bounds checks; no struct is cast over the buffer. A
//! length that does not fit stops the parse (the rest of the buffer cannot be framed) and is
//! reported as [`Malformed`]; a bad information record drops only its event.

use nix::libc;

/// Size of `struct fanotify_event_metadata`.
pub(crate) const METADATA_LEN: usize = 24;

/// Size of an information record's header plus `fsid` plus `struct file_handle`'s header.
const FID_FIXED_LEN: usize = 4 + 8 + 8;

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawEvent<'a> {
    /// `FAN_*` bits.
    pub mask: u64,
    /// The process that caused the event, in the reader's pid namespace; 0 when it is not
    /// visible there.
    pub pid: i32,
    /// Always `FAN_NOFD` (-1) in FID mode: the kernel opens no file for these groups.
    pub fd: i32,
    /// The object records, in order.
    pub fids: Vec<Fid<'a>>,
}

/// One file-identifier record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fid<'a> {
    /// `FAN_EVENT_INFO_TYPE_*`.
    pub info_type: u8,
    pub fsid: [i32; 2],
    pub handle_type: i32,
    pub handle: &'a [u8],
    /// The entry name for the `*_NAME` record types (without the NUL).
    pub name: Option<&'a [u8]>,
}

/// Why (part of) a buffer could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Malformed {
    /// Fewer than 24 bytes left where an event header should start.
    Truncated { offset: usize, left: usize },
    /// `event_len` shorter than the header, longer than what is left, or `metadata_len`
    /// outside `24..=event_len`.
    BadLength {
        offset: usize,
        event_len: usize,
        metadata_len: usize,
    },
    /// A metadata version this parser does not know.
    Version { offset: usize, vers: u8 },
    /// An information record that does not fit its event (its event is dropped).
    BadRecord { offset: usize },
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn i32_at(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Parses a whole read buffer. Returns the events that parsed and every problem met.
pub(crate) fn parse(buf: &[u8]) -> (Vec<RawEvent<'_>>, Vec<Malformed>) {
    let mut events = Vec::new();
    let mut problems = Vec::new();
    let mut off = 0;
    while off < buf.len() {
        let left = buf.len() - off;
        let Some(ev) = buf.get(off..).filter(|_| left >= METADATA_LEN) else {
            problems.push(Malformed::Truncated { offset: off, left });
            break;
        };
        // In range: `ev` has at least METADATA_LEN bytes.
        let event_len = u32_at(ev, 0).map_or(0, |v| v as usize);
        let vers = ev.get(4).copied().unwrap_or(0);
        let metadata_len = u16_at(ev, 6).map_or(0, usize::from);
        if vers != libc::FANOTIFY_METADATA_VERSION {
            problems.push(Malformed::Version { offset: off, vers });
            break;
        }
        if event_len < METADATA_LEN
            || event_len > left
            || metadata_len < METADATA_LEN
            || metadata_len > event_len
        {
            problems.push(Malformed::BadLength {
                offset: off,
                event_len,
                metadata_len,
            });
            break;
        }
        let (Some(mask), Some(fd), Some(pid)) = (u64_at(ev, 8), i32_at(ev, 16), i32_at(ev, 20))
        else {
            problems.push(Malformed::Truncated { offset: off, left });
            break;
        };
        let records = ev.get(metadata_len..event_len).unwrap_or(&[]);
        match parse_records(records) {
            Some(fids) => events.push(RawEvent {
                mask,
                pid,
                fd,
                fids,
            }),
            None => problems.push(Malformed::BadRecord { offset: off }),
        }
        off += event_len;
    }
    (events, problems)
}

/// The information records of one event; `None` if one does not fit.
fn parse_records(mut rest: &[u8]) -> Option<Vec<Fid<'_>>> {
    let mut fids = Vec::new();
    while !rest.is_empty() {
        let info_type = *rest.first()?;
        let len = usize::from(u16_at(rest, 2)?);
        if len < 4 || len > rest.len() {
            return None;
        }
        let record = rest.get(..len)?;
        match info_type {
            libc::FAN_EVENT_INFO_TYPE_FID
            | libc::FAN_EVENT_INFO_TYPE_DFID
            | libc::FAN_EVENT_INFO_TYPE_DFID_NAME
            | libc::FAN_EVENT_INFO_TYPE_OLD_DFID_NAME
            | libc::FAN_EVENT_INFO_TYPE_NEW_DFID_NAME => {
                fids.push(parse_fid(info_type, record)?);
            }
            // Other record types (pidfd, error) are not requested; skip them by length.
            _ => {}
        }
        rest = rest.get(len..)?;
    }
    Some(fids)
}

fn parse_fid(info_type: u8, record: &[u8]) -> Option<Fid<'_>> {
    if record.len() < FID_FIXED_LEN {
        return None;
    }
    let fsid = [i32_at(record, 4)?, i32_at(record, 8)?];
    let handle_bytes = usize::try_from(u32_at(record, 12)?).ok()?;
    let handle_type = i32_at(record, 16)?;
    let handle_end = FID_FIXED_LEN.checked_add(handle_bytes)?;
    let handle = record.get(FID_FIXED_LEN..handle_end)?;
    let has_name = matches!(
        info_type,
        libc::FAN_EVENT_INFO_TYPE_DFID_NAME
            | libc::FAN_EVENT_INFO_TYPE_OLD_DFID_NAME
            | libc::FAN_EVENT_INFO_TYPE_NEW_DFID_NAME
    );
    let name = if has_name {
        let tail = record.get(handle_end..)?;
        // NUL-terminated; the padding after it is NULs too. No NUL at all: malformed.
        let nul = tail.iter().position(|b| *b == 0)?;
        Some(tail.get(..nul)?)
    } else {
        None
    };
    Some(Fid {
        info_type,
        fsid,
        handle_type,
        handle,
        name,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds one event the way the kernel lays it out.
    pub(crate) fn event(mask: u64, pid: i32, records: &[Vec<u8>]) -> Vec<u8> {
        let body: Vec<u8> = records.concat();
        let len = METADATA_LEN + body.len();
        let mut b = Vec::new();
        b.extend((len as u32).to_ne_bytes());
        b.push(libc::FANOTIFY_METADATA_VERSION);
        b.push(0);
        b.extend((METADATA_LEN as u16).to_ne_bytes());
        b.extend(mask.to_ne_bytes());
        b.extend((-1i32).to_ne_bytes());
        b.extend(pid.to_ne_bytes());
        b.extend(body);
        b
    }

    /// One FID record; `name` adds the NUL and pads to 4 bytes like the kernel.
    pub(crate) fn fid(
        info_type: u8,
        fsid: [i32; 2],
        handle_type: i32,
        handle: &[u8],
        name: Option<&[u8]>,
    ) -> Vec<u8> {
        let mut tail = handle.to_vec();
        if let Some(n) = name {
            tail.extend(n);
            tail.push(0);
        }
        while (FID_FIXED_LEN + tail.len()) % 4 != 0 {
            tail.push(0);
        }
        let mut r = vec![info_type, 0];
        r.extend(((FID_FIXED_LEN + tail.len()) as u16).to_ne_bytes());
        r.extend(fsid[0].to_ne_bytes());
        r.extend(fsid[1].to_ne_bytes());
        r.extend((handle.len() as u32).to_ne_bytes());
        r.extend(handle_type.to_ne_bytes());
        r.extend(tail);
        r
    }

    const DFID_NAME: u8 = libc::FAN_EVENT_INFO_TYPE_DFID_NAME;

    #[test]
    fn two_events_with_names() {
        let mut buf = event(
            libc::FAN_MODIFY,
            42,
            &[fid(DFID_NAME, [1, 2], 1, &[9; 8], Some(b"kubelet.conf"))],
        );
        buf.extend(event(
            libc::FAN_MOVED_FROM,
            43,
            &[fid(DFID_NAME, [1, 2], 1, &[7; 12], Some(b"a"))],
        ));
        let (evs, bad) = parse(&buf);
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0].pid, 42);
        assert_eq!(evs[0].mask, libc::FAN_MODIFY);
        assert_eq!(evs[0].fd, -1);
        assert_eq!(evs[0].fids[0].fsid, [1, 2]);
        assert_eq!(evs[0].fids[0].handle, &[9; 8]);
        assert_eq!(evs[0].fids[0].name, Some(&b"kubelet.conf"[..]));
        assert_eq!(evs[1].fids[0].handle, &[7; 12]);
        assert_eq!(evs[1].fids[0].name, Some(&b"a"[..]));
    }

    #[test]
    fn overflow_event_has_no_records() {
        let buf = event(libc::FAN_Q_OVERFLOW, 0, &[]);
        let (evs, bad) = parse(&buf);
        assert!(bad.is_empty());
        assert_eq!(evs[0].mask, libc::FAN_Q_OVERFLOW);
        assert!(evs[0].fids.is_empty());
    }

    #[test]
    fn truncated_buffer_keeps_the_events_before_it() {
        let mut buf = event(
            libc::FAN_ATTRIB,
            1,
            &[fid(DFID_NAME, [0, 0], 1, &[1; 8], Some(b"x"))],
        );
        let whole = buf.len();
        buf.extend(&event(libc::FAN_ATTRIB, 2, &[])[..10]);
        let (evs, bad) = parse(&buf);
        assert_eq!(evs.len(), 1);
        assert_eq!(
            bad,
            vec![Malformed::Truncated {
                offset: whole,
                left: 10
            }]
        );
        // Nothing at all, or less than one header.
        assert_eq!(parse(&[]).0.len(), 0);
        assert_eq!(parse(&[1, 2, 3]).1.len(), 1);
    }

    #[test]
    fn event_len_beyond_the_buffer_or_below_the_header_stops_the_parse() {
        for bad_len in [0u32, 8, 23, 10_000, u32::MAX] {
            let mut buf = event(libc::FAN_MODIFY, 1, &[]);
            buf[..4].copy_from_slice(&bad_len.to_ne_bytes());
            let (evs, bad) = parse(&buf);
            assert!(evs.is_empty(), "{bad_len}");
            assert!(
                matches!(bad[..], [Malformed::BadLength { .. }]),
                "{bad_len}: {bad:?}"
            );
        }
        // metadata_len larger than event_len, or below the header size.
        for bad_meta in [0u16, 23, 25, 1000] {
            let mut buf = event(libc::FAN_MODIFY, 1, &[]);
            buf[6..8].copy_from_slice(&bad_meta.to_ne_bytes());
            let (evs, bad) = parse(&buf);
            assert!(evs.is_empty(), "{bad_meta}");
            assert!(matches!(bad[..], [Malformed::BadLength { .. }]));
        }
    }

    #[test]
    fn unknown_version_stops_the_parse() {
        let mut buf = event(libc::FAN_MODIFY, 1, &[]);
        buf[4] = 2;
        assert_eq!(
            parse(&buf).1,
            vec![Malformed::Version { offset: 0, vers: 2 }]
        );
    }

    #[test]
    fn bad_records_drop_only_their_event() {
        let good = event(
            libc::FAN_MODIFY,
            5,
            &[fid(DFID_NAME, [0, 0], 1, &[1; 8], Some(b"ok"))],
        );
        let cases: Vec<Vec<u8>> = vec![
            // record len larger than the event
            {
                let mut r = fid(DFID_NAME, [0, 0], 1, &[1; 8], Some(b"x"));
                r[2..4].copy_from_slice(&200u16.to_ne_bytes());
                r
            },
            // record len below its own header
            {
                let mut r = fid(DFID_NAME, [0, 0], 1, &[1; 8], Some(b"x"));
                r[2..4].copy_from_slice(&2u16.to_ne_bytes());
                r
            },
            // handle_bytes larger than the record
            {
                let mut r = fid(DFID_NAME, [0, 0], 1, &[1; 8], Some(b"x"));
                r[12..16].copy_from_slice(&u32::MAX.to_ne_bytes());
                r
            },
            // a name with no NUL
            {
                let mut r = vec![DFID_NAME, 0];
                r.extend(((FID_FIXED_LEN + 4) as u16).to_ne_bytes());
                r.extend([0u8; 8]);
                r.extend(0u32.to_ne_bytes());
                r.extend(1i32.to_ne_bytes());
                r.extend(b"abcd");
                r
            },
            // a FID record shorter than its fixed part
            vec![libc::FAN_EVENT_INFO_TYPE_FID, 0, 8, 0, 0, 0, 0, 0],
        ];
        for (i, rec) in cases.into_iter().enumerate() {
            let mut buf = event(libc::FAN_MODIFY, 1, &[rec]);
            buf.extend(&good);
            let (evs, bad) = parse(&buf);
            assert_eq!(evs.len(), 1, "case {i}: {bad:?}");
            assert_eq!(evs[0].pid, 5, "case {i}");
            assert_eq!(bad, vec![Malformed::BadRecord { offset: 0 }], "case {i}");
        }
    }

    #[test]
    fn unrequested_record_types_are_skipped_by_length() {
        let pidfd = vec![libc::FAN_EVENT_INFO_TYPE_PIDFD, 0, 8, 0, 3, 0, 0, 0];
        let buf = event(
            libc::FAN_CREATE,
            9,
            &[pidfd, fid(DFID_NAME, [3, 4], 2, &[5; 20], Some(b"new"))],
        );
        let (evs, bad) = parse(&buf);
        assert!(bad.is_empty());
        assert_eq!(evs[0].fids.len(), 1);
        assert_eq!(evs[0].fids[0].handle_type, 2);
        assert_eq!(evs[0].fids[0].name, Some(&b"new"[..]));
    }

    #[test]
    fn dfid_without_name() {
        let buf = event(
            libc::FAN_DELETE_SELF | libc::FAN_ONDIR,
            9,
            &[fid(
                libc::FAN_EVENT_INFO_TYPE_DFID,
                [3, 4],
                1,
                &[5; 8],
                None,
            )],
        );
        let (evs, bad) = parse(&buf);
        assert!(bad.is_empty());
        assert_eq!(evs[0].fids[0].name, None);
    }

    #[test]
    fn random_garbage_never_panics() {
        let mut state = 0x1234_5678_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..2000 {
            let len = (next() % 300) as usize;
            let mut buf: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if buf.len() > 8 && next() % 2 == 0 {
                // Mostly-valid headers reach the record parser.
                let l = buf.len() as u32;
                buf[..4].copy_from_slice(&l.to_ne_bytes());
                buf[4] = libc::FANOTIFY_METADATA_VERSION;
                buf[6..8].copy_from_slice(&24u16.to_ne_bytes());
            }
            let _ = parse(&buf);
        }
    }
}
