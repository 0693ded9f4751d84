//! systemd integration: `sd_notify` readiness, status and watchdog for `Type=notify` units.
//!
//! The protocol is one datagram to the socket named by `$NOTIFY_SOCKET` (a path, or an
//! abstract socket when it starts with `@`). Outside systemd the variable is unset and every
//! call is a no-op.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Sends `state` (e.g. `READY=1`, `STATUS=...`, `WATCHDOG=1`, `STOPPING=1`). Returns whether a
/// notification socket was configured.
pub fn notify(state: &str) -> std::io::Result<bool> {
    match std::env::var_os("NOTIFY_SOCKET") {
        Some(socket) => notify_to(&socket, state).map(|()| true),
        None => Ok(false),
    }
}

/// Sends `state` to the notification socket named `socket` (`$NOTIFY_SOCKET`'s syntax).
pub fn notify_to(socket: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    let path = socket;
    let sock = UnixDatagram::unbound()?;
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path);
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name)?,
        None => SocketAddr::from_pathname(path)?,
    };
    sock.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

/// Half the watchdog timeout systemd asked for (`$WATCHDOG_USEC`, for this pid if
/// `$WATCHDOG_PID` is set): the interval at which to send `WATCHDOG=1`.
pub fn watchdog_interval() -> Option<Duration> {
    if let Some(pid) = std::env::var_os("WATCHDOG_PID")
        && pid.to_str().and_then(|p| p.parse::<u32>().ok()) != Some(std::process::id())
    {
        return None;
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recv(server: &UnixDatagram) -> Vec<u8> {
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).unwrap();
        buf[..n].to_vec()
    }

    #[test]
    fn sends_to_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        notify_to(path.as_os_str(), "READY=1").unwrap();
        assert_eq!(recv(&server), b"READY=1");
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        let name = format!("nodedrift-test-{}", std::process::id());
        let server =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(&name).unwrap()).unwrap();
        notify_to(std::ffi::OsStr::new(&format!("@{name}")), "WATCHDOG=1").unwrap();
        assert_eq!(recv(&server), b"WATCHDOG=1");
    }

    #[test]
    fn missing_socket_is_an_error_not_a_panic() {
        assert!(notify_to(std::ffi::OsStr::new("/nonexistent/notify.sock"), "READY=1").is_err());
    }
}
