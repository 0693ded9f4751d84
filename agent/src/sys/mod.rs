//! The one module allowed to use `unsafe`: thin, safe wrappers over kernel calls that neither
//! the standard library nor `nix` provide.
//!
//! Rules for everything in here:
//! - each `unsafe` block calls exactly one libc function, with a `// SAFETY:` comment saying
//!   why the pointers and lengths passed are valid for the duration of the call;
//! - buffers are owned Rust values sized before the call; lengths the kernel returns are
//!   checked against the buffer before any slice is taken;
//! - the wrappers return `nix::Result`/`std::io::Result` and never panic.
//!
//! Everything else in the crate stays `#![forbid]`-clean: the crate-level lint is `deny`, and
//! only this module opts out.
#![allow(unsafe_code)]

pub mod handle;
pub mod xattr;
