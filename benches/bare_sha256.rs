//! A bare parallel SHA-256 pass over a directory tree with `ring::digest` (the implementation
//! nodedrift hashes with): the floor that `nodedrift baseline capture` is compared with in
//! `benches/fim-vs-aide.sh`. No metadata, no state, no output per file.
//!
//! One thread walks the tree (symlinks are not followed; the type comes from the directory
//! entry, so there is no stat), then THREADS threads (default 2) take paths from a shared index
//! and hash each regular file, reading 64 KiB at a time. It prints the number of files, the
//! bytes hashed and an XOR of all digests, so that nothing is optimised away.
//!
//! Run: `cargo bench --bench bare_sha256 -- DIR [THREADS]`, or the built executable directly
//! (`cargo bench --no-run` prints its path), as the FIM benchmark does.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use ring::digest::{Context, SHA256};

const BUF: usize = 64 * 1024;

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let ty = entry.file_type()?;
        if ty.is_dir() {
            walk(&entry.path(), out)?;
        } else if ty.is_file() {
            out.push(entry.path());
        }
    }
    Ok(())
}

/// Hashes one file; returns its size and digest.
fn hash(path: &Path, buf: &mut [u8]) -> io::Result<(u64, [u8; 32])> {
    let mut f = File::open(path)?;
    let mut ctx = Context::new(&SHA256);
    let mut n = 0u64;
    loop {
        let r = match f.read(buf) {
            Ok(0) => break,
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        ctx.update(&buf[..r]);
        n += r as u64;
    }
    let mut d = [0u8; 32];
    d.copy_from_slice(ctx.finish().as_ref());
    Ok((n, d))
}

fn main() -> io::Result<()> {
    // `cargo bench` appends `--bench` to a harness-less target's arguments.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let Some(root) = args.first() else {
        eprintln!("usage: bare_sha256 DIR [THREADS]");
        std::process::exit(64);
    };
    let threads: usize = match args.get(1) {
        Some(t) => t
            .parse()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?,
        None => 2,
    };
    let start = Instant::now();
    let mut paths = Vec::new();
    walk(Path::new(root), &mut paths)?;
    let next = AtomicUsize::new(0);
    let results = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| {
                s.spawn(|| -> io::Result<(u64, [u8; 32])> {
                    let mut buf = vec![0u8; BUF];
                    let (mut bytes, mut acc) = (0u64, [0u8; 32]);
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(p) = paths.get(i) else { break };
                        let (n, d) = hash(p, &mut buf)?;
                        bytes += n;
                        acc.iter_mut().zip(d).for_each(|(a, b)| *a ^= b);
                    }
                    Ok((bytes, acc))
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("hash worker panicked"))
            .collect::<io::Result<Vec<_>>>()
    })?;
    let (mut bytes, mut acc) = (0u64, [0u8; 32]);
    for (n, d) in results {
        bytes += n;
        acc.iter_mut().zip(d).for_each(|(a, b)| *a ^= b);
    }
    let hex: String = acc.iter().map(|b| format!("{b:02x}")).collect();
    println!(
        "files={} bytes={} threads={} xor={} elapsed_ms={:.1}",
        paths.len(),
        bytes,
        threads,
        hex,
        start.elapsed().as_secs_f64() * 1000.0
    );
    Ok(())
}
