//! A minimal HTTP/1.1 GET for the health endpoints of node components, over a plain
//! [`TcpStream`].
//!
//! The servers are local daemons, but a daemon that is wedged, or something else listening on
//! its port, must not hang or crash the inspector: the whole exchange (connect, write, read)
//! has one deadline, the response is read up to [`HEAD_LIMIT`] bytes of status line and
//! headers plus [`BODY_LIMIT`] bytes of body, and anything that is not a well-formed
//! HTTP/1.x response is an error that says what was wrong. A server that trickles bytes
//! (slow-loris) runs into the deadline, not into a per-read timeout it keeps resetting.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Upper bound on the status line and headers.
pub const HEAD_LIMIT: usize = 16 << 10;
/// Upper bound on the body kept; a longer body is cut and said to be.
pub const BODY_LIMIT: usize = 64 << 10;

/// A response as far as the probes need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// The body, lossily decoded where not UTF-8.
    pub body: String,
    /// The body was longer than [`BODY_LIMIT`] (or than what arrived before the deadline).
    pub cut: bool,
}

/// Why a probe got no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The connection was refused or could not be made.
    Connect(String),
    /// The deadline passed (connecting, or waiting for the response).
    Timeout(String),
    /// Something answered, but not with an HTTP/1.x response.
    Protocol(String),
}

impl Failure {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Connect(_) => "connect",
            Self::Timeout(_) => "timeout",
            Self::Protocol(_) => "protocol",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Self::Connect(m) | Self::Timeout(m) | Self::Protocol(m) => m,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind(), self.message())
    }
}

/// `GET path` on `addr`, the whole exchange bounded by `timeout`.
pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<Response, Failure> {
    let deadline = Instant::now() + timeout;
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| {
        if is_timeout(&e) {
            Failure::Timeout(format!("connecting to {addr} took longer than {timeout:?}"))
        } else {
            Failure::Connect(format!("connecting to {addr}: {e}"))
        }
    })?;
    let late = || Failure::Timeout(format!("{addr} did not answer within {timeout:?}"));
    let host = match addr.ip() {
        IpAddr::V6(ip) => format!("[{ip}]:{}", addr.port()),
        IpAddr::V4(ip) => format!("{ip}:{}", addr.port()),
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: nodedrift\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(late());
    }
    stream
        .set_write_timeout(Some(left))
        .map_err(|e| Failure::Connect(e.to_string()))?;
    stream.write_all(request.as_bytes()).map_err(|e| {
        if is_timeout(&e) {
            late()
        } else {
            Failure::Connect(format!("sending the request to {addr}: {e}"))
        }
    })?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let cap = HEAD_LIMIT + BODY_LIMIT;
    let mut eof = false;
    loop {
        if let Some(done) = complete(&buf)
            && done
        {
            break;
        }
        if buf.len() >= cap {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return partial(&buf, late);
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| Failure::Connect(e.to_string()))?;
        match stream.read(&mut chunk) {
            Ok(0) => {
                eof = true;
                break;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n.min(cap - buf.len())]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => return partial(&buf, late),
            Err(e) => {
                if buf.is_empty() {
                    return Err(Failure::Connect(format!("reading from {addr}: {e}")));
                }
                eof = true;
                break;
            }
        }
    }
    parse(&buf, eof)
}

/// A response whose head arrived before the deadline is kept (its body cut); one without a
/// complete head is a timeout.
fn partial(buf: &[u8], late: impl Fn() -> Failure) -> Result<Response, Failure> {
    match head_end(buf) {
        Some(_) => parse(buf, false).map(|mut r| {
            r.cut = true;
            r
        }),
        None => Err(late()),
    }
}

/// Whether `buf` holds a whole response: `Some(true)` when the head says how long the body is
/// and it has all arrived, `None`/`Some(false)` while more is needed (read to EOF).
fn complete(buf: &[u8]) -> Option<bool> {
    let end = head_end(buf)?;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let len = header(head, "content-length")?.parse::<usize>().ok()?;
    Some(buf.len() >= end + 4 + len)
}

fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n")
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

/// Parses a response read into `buf`; `eof` says the server closed the connection (so a
/// body shorter than its Content-Length is truncated, not cut by our limit).
pub fn parse(buf: &[u8], eof: bool) -> Result<Response, Failure> {
    let proto = Failure::Protocol;
    let Some(end) = head_end(buf) else {
        if buf.is_empty() {
            return Err(proto(
                "the server closed the connection without answering".into(),
            ));
        }
        if buf.len() >= HEAD_LIMIT {
            return Err(proto(format!(
                "the status line and headers exceed {HEAD_LIMIT} bytes"
            )));
        }
        let first = String::from_utf8_lossy(&buf[..buf.len().min(64)]).into_owned();
        return Err(proto(format!(
            "not an HTTP response, or one cut before the end of its headers: {first:?}"
        )));
    };
    if end > HEAD_LIMIT {
        return Err(proto(format!(
            "the status line and headers exceed {HEAD_LIMIT} bytes"
        )));
    }
    let head = std::str::from_utf8(&buf[..end])
        .map_err(|_| proto("the status line or headers are not text".into()))?;
    let line = head.split("\r\n").next().unwrap_or("");
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let code = parts.next().unwrap_or("");
    if !matches!(version, "HTTP/1.0" | "HTTP/1.1") {
        return Err(proto(format!(
            "not an HTTP/1.x status line: {:?}",
            cut_str(line, 64)
        )));
    }
    let status = code
        .parse::<u16>()
        .ok()
        .filter(|c| (100..=599).contains(c) && code.len() == 3)
        .ok_or_else(|| proto(format!("invalid status code {:?}", cut_str(code, 16))))?;
    let raw = &buf[end + 4..];
    let chunked = header(head, "transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let (body, mut cut) = if chunked {
        dechunk(raw)?
    } else {
        match header(head, "content-length") {
            Some(v) => {
                let len = v
                    .parse::<usize>()
                    .map_err(|_| proto(format!("invalid Content-Length {:?}", cut_str(v, 32))))?;
                if raw.len() < len && eof {
                    return Err(proto(format!(
                        "the body was cut: {} of {len} bytes before the server closed",
                        raw.len()
                    )));
                }
                (raw[..raw.len().min(len)].to_vec(), raw.len() < len)
            }
            None => (raw.to_vec(), !eof),
        }
    };
    let mut body = body;
    if body.len() > BODY_LIMIT {
        body.truncate(BODY_LIMIT);
        cut = true;
    }
    Ok(Response {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
        cut,
    })
}

/// Decodes a chunked body; what is missing at the end (cut by our limit or the deadline) is
/// reported as cut, a malformed chunk header as an error.
fn dechunk(mut raw: &[u8]) -> Result<(Vec<u8>, bool), Failure> {
    let mut out = Vec::new();
    loop {
        let Some(nl) = raw.windows(2).position(|w| w == b"\r\n") else {
            return Ok((out, true));
        };
        let size_line = std::str::from_utf8(&raw[..nl])
            .map_err(|_| Failure::Protocol("a chunk size is not text".into()))?;
        let size_hex = size_line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| {
            Failure::Protocol(format!("invalid chunk size {:?}", cut_str(size_hex, 16)))
        })?;
        raw = &raw[nl + 2..];
        if size == 0 {
            return Ok((out, false));
        }
        if raw.len() < size {
            out.extend_from_slice(raw);
            return Ok((out, true));
        }
        out.extend_from_slice(&raw[..size]);
        raw = raw.get(size + 2..).unwrap_or(&[]);
    }
}

fn cut_str(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}

/// The address to probe for a bind address as a component's configuration gives it
/// (`host:port`, `[v6]:port`, or a bare host with `default_port`): an unspecified address
/// (0.0.0.0, ::) is probed on the loopback of its family; a name other than `localhost` is
/// refused (resolving it could hang, and a component binds to addresses, not names).
pub fn target(bind: &str, default_port: Option<u16>) -> Result<SocketAddr, String> {
    let bind = bind.trim();
    if let Ok(a) = bind.parse::<SocketAddr>() {
        return Ok(loopback_if_unspecified(a));
    }
    let (host, port) = match bind.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.starts_with('[') => {
            let port = p
                .parse::<u16>()
                .map_err(|_| format!("{bind:?}: the port is not a number"))?;
            (h.trim_start_matches('[').trim_end_matches(']'), port)
        }
        _ => (
            bind.trim_start_matches('[').trim_end_matches(']'),
            default_port.ok_or_else(|| format!("{bind:?}: no port"))?,
        ),
    };
    let ip = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else if host.is_empty() {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        host.parse::<IpAddr>()
            .map_err(|_| format!("{bind:?}: {host:?} is not an IP address"))?
    };
    Ok(loopback_if_unspecified(SocketAddr::new(ip, port)))
}

fn loopback_if_unspecified(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), a.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), a.port())
        }
        _ => a,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn parses_a_plain_response() {
        let r = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, "ok");
        assert!(!r.cut);
    }

    #[test]
    fn parses_a_body_read_to_eof_and_a_chunked_body() {
        let r = parse(b"HTTP/1.0 503 Service Unavailable\r\n\r\n{\"a\":1}", true).unwrap();
        assert_eq!((r.status, r.body.as_str()), (503, "{\"a\":1}"));
        let r = parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nipvs\r\n0\r\n\r\n",
            true,
        )
        .unwrap();
        assert_eq!(r.body, "ipvs");
        assert!(!r.cut);
    }

    #[test]
    fn garbage_is_a_protocol_error() {
        for raw in [
            &b"SSH-2.0-OpenSSH_9.6\r\n"[..],
            b"\x00\x01\x02\x03",
            b"HTTP/2 200\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 abc OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"",
        ] {
            let e = parse(raw, true).unwrap_err();
            assert_eq!(e.kind(), "protocol", "{raw:?}: {e}");
        }
    }

    #[test]
    fn a_truncated_body_is_an_error_and_a_cut_one_is_marked() {
        let e = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok", true).unwrap_err();
        assert!(e.message().contains("2 of 10"), "{e}");
        let r = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok", false).unwrap();
        assert!(r.cut);
    }

    #[test]
    fn oversized_heads_and_bodies_are_bounded() {
        let mut raw = b"HTTP/1.1 200 OK\r\n".to_vec();
        while raw.len() <= HEAD_LIMIT {
            raw.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        let e = parse(&raw, false).unwrap_err();
        assert!(e.message().contains("exceed"), "{e}");
        raw.extend_from_slice(b"\r\n");
        assert!(parse(&raw, true).is_err());

        let mut big = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        big.extend(std::iter::repeat_n(b'a', BODY_LIMIT + 10));
        let r = parse(&big, true).unwrap();
        assert_eq!(r.body.len(), BODY_LIMIT);
        assert!(r.cut);
    }

    #[test]
    fn a_non_utf8_body_is_decoded_lossily() {
        let r = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\no\xffk", true).unwrap();
        assert_eq!(r.body, "o\u{fffd}k");
        let e = parse(b"HTTP/1.1 200 \xff\xfe\r\n\r\n", true).unwrap_err();
        assert_eq!(e.kind(), "protocol");
    }

    #[test]
    fn targets_of_bind_addresses() {
        assert_eq!(
            target("0.0.0.0:10256", None).unwrap(),
            "127.0.0.1:10256".parse().unwrap()
        );
        assert_eq!(
            target("[::]:10256", None).unwrap(),
            "[::1]:10256".parse().unwrap()
        );
        assert_eq!(
            target("127.0.0.1", Some(10248)).unwrap(),
            "127.0.0.1:10248".parse().unwrap()
        );
        assert_eq!(
            target("::", Some(10248)).unwrap(),
            "[::1]:10248".parse().unwrap()
        );
        assert_eq!(
            target("localhost:10249", None).unwrap(),
            "127.0.0.1:10249".parse().unwrap()
        );
        assert_eq!(
            target("10.0.0.4:10249", None).unwrap(),
            "10.0.0.4:10249".parse().unwrap()
        );
        assert!(target("node.example:10249", None).is_err());
        assert!(target("127.0.0.1:http", None).is_err());
        assert!(target("127.0.0.1", None).is_err());
    }

    /// A loopback server that accepts one connection, reads the request and hands the
    /// stream to `answer`.
    fn serve(answer: impl FnOnce(&mut std::net::TcpStream) + Send + 'static) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = l.accept() {
                let mut req = [0u8; 1024];
                let _ = s.read(&mut req);
                answer(&mut s);
            }
        });
        a
    }

    /// A server that sends `raw` and closes, once.
    fn serve_once(raw: &'static [u8]) -> SocketAddr {
        serve(move |s| {
            let _ = s.write_all(raw);
        })
    }

    #[test]
    fn gets_over_loopback() {
        let a = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        let r = get(a, "/healthz", Duration::from_secs(10)).unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "ok"));
    }

    #[test]
    fn a_refused_connection_is_a_connect_failure() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let e = get(
            SocketAddr::from(([127, 0, 0, 1], port)),
            "/healthz",
            Duration::from_secs(10),
        )
        .unwrap_err();
        assert_eq!(e.kind(), "connect", "{e}");
    }

    #[test]
    fn a_server_that_never_answers_is_a_timeout() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        let e = get(a, "/healthz", Duration::from_millis(300)).unwrap_err();
        assert_eq!(e.kind(), "timeout", "{e}");
        drop(l);
    }

    #[test]
    fn a_slow_loris_server_runs_into_the_deadline() {
        let a = serve(|s| {
            for _ in 0..200 {
                if s.write_all(b"X").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let e = get(a, "/healthz", Duration::from_millis(400)).unwrap_err();
        assert_eq!(e.kind(), "timeout", "{e}");
    }
}
