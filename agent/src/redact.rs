//! Secret redaction: the one place that decides what counts as a secret in text, command
//! lines and JSON, and what replaces it.
//!
//! Every secret is replaced by a marker naming what was removed (`<redacted: password>`,
//! `<redacted: private key>`, ...), so a reader knows something was there and of what kind.
//! Text is redacted **line by line as it is read** ([`Redactor::line`]): a caller streaming a
//! file keeps only redacted lines, never a second copy of the raw text. What is covered:
//!
//! * PEM private keys (`-----BEGIN ... PRIVATE KEY-----` to `-----END ...-----`, any type,
//!   also encrypted and OpenSSH ones): the whole block, on one line or many; certificates are
//!   public and kept;
//! * `key: value`, `key=value`, `"key": "value"` and `--key=value` / `--key value` where the
//!   key names a secret (password, passwd, passphrase, secret, token, api key, access key,
//!   account key, private key, client-key-data, credential, auth, authorization, sig,
//!   SharedAccessKey, SharedAccessSignature), unless it names a reference to one (`tokenFile`,
//!   `passwordPath`, `secretName`, ...). This covers kubeconfig credentials (`token`,
//!   `client-key-data`, `password`; `client-certificate-data` is public and kept), env files
//!   (`KEY=VALUE`, `export KEY=VALUE`, systemd `Environment=`), Azure's `azure.json`
//!   (`aadClientSecret`, `aadClientCertPassword`; `userAssignedIdentityID` is an identifier,
//!   not a secret), storage connection strings (`AccountKey=`, `SharedAccessSignature=`) and
//!   SAS URLs (`sig=`), YAML block scalars under such a key;
//! * `Bearer <token>` and `Basic <credentials>`, JWT-shaped strings, AWS access key ids and
//!   GitHub tokens anywhere;
//! * the password of URL credentials (`scheme://user:password@host`);
//! * the password hash of `shadow`-style files ([`Redactor::for_path`]);
//! * in command lines ([`argv`]): the value after a secret flag given as its own argument
//!   (`--password x`), `-p` passwords of the MySQL clients and `sshpass` (the only programs
//!   where `-p` unambiguously means a password), `curl -u user:password`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

/// What kind of secret a marker stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    PrivateKey,
    Password,
    PasswordHash,
    Token,
    Secret,
    Key,
    Credential,
    Signature,
}

impl Kind {
    const ALL: [Kind; 8] = [
        Kind::PrivateKey,
        Kind::Password,
        Kind::PasswordHash,
        Kind::Token,
        Kind::Secret,
        Kind::Key,
        Kind::Credential,
        Kind::Signature,
    ];

    /// The text that replaces a secret of this kind.
    pub fn marker(self) -> &'static str {
        match self {
            Kind::PrivateKey => "<redacted: private key>",
            Kind::Password => "<redacted: password>",
            Kind::PasswordHash => "<redacted: password hash>",
            Kind::Token => "<redacted: token>",
            Kind::Secret => "<redacted: secret>",
            Kind::Key => "<redacted: key>",
            Kind::Credential => "<redacted: credential>",
            Kind::Signature => "<redacted: signature>",
        }
    }

    /// The name used in counts (`private key`, `password`, ...).
    pub fn name(self) -> &'static str {
        let m = self.marker();
        &m["<redacted: ".len()..m.len() - 1]
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Every marker starts with this.
pub const MARKER_PREFIX: &str = "<redacted";

/// Cheap test: a line without any of these cannot hold a secret the rules below find.
static TRIGGER: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"(?i)pass|pwd|secret|token|key|cred|auth|bearer|basic|sig|eyJ|://|AKIA|gh[pousr]_|-----BEGIN",
    )
    .ok()
});

static PEM_BEGIN: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----").ok());
static PEM_END: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"-----END [A-Z0-9 ]*-----").ok());
static JWT: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*").ok());
static BEARER: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"(?i)\b(bearer|basic)(\s+)([A-Za-z0-9._~+/=-]{6,})").ok());
static KNOWN_TOKENS: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"\b(?:AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,})\b")
        .ok()
});
static URL_USERINFO: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"([A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*):([^@\s/]+)@").ok());
/// `key:` / `key=` (optionally quoted key).
static KEY_SEP: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r#"(["']?)([A-Za-z0-9_][A-Za-z0-9_.\-]*)["']?[ \t]*([:=])"#).ok());
/// `--flag value` (the value as a separate word).
static FLAG_SPACE: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"(--[A-Za-z0-9_.\-]+)([ \t]+)([^\s\-<][^\s]*)").ok());

/// Key suffixes that name a reference to a secret, not the secret: `tokenFile`,
/// `passwordPath`, `secretName`, `SecretRef`, `tokenTTL`, `AccessKeyId`, ...
const REFERENCE_SUFFIXES: &[&str] = &[
    "file",
    "files",
    "path",
    "paths",
    "dir",
    "name",
    "names",
    "ref",
    "url",
    "uri",
    "type",
    "ttl",
    "mode",
    "id",
    "length",
    "expiry",
    "expires",
    "expiration",
    "expirationseconds",
    "audience",
    "audiences",
    "hash",
    "enabled",
    "source",
    "namespace",
];

/// The kind of secret a key names, `None` when it names none (or names a reference to one).
pub fn secret_kind(key: &str) -> Option<Kind> {
    let k: String = key
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    match k.as_str() {
        "auth" | "authorization" | "proxyauthorization" => return Some(Kind::Credential),
        "sig" => return Some(Kind::Signature),
        _ => {}
    }
    if k.contains("certificatedata") || k.contains("cadata") {
        return None;
    }
    let kind = if k.contains("password") || k.contains("passwd") || k.contains("passphrase") {
        Kind::Password
    } else if k.contains("clientkeydata") || k.contains("privatekey") {
        Kind::PrivateKey
    } else if k.contains("sharedaccesssignature") {
        Kind::Signature
    } else if k.contains("token") {
        Kind::Token
    } else if k.contains("secret") {
        Kind::Secret
    } else if [
        "apikey",
        "accesskey",
        "accountkey",
        "sharedaccesskey",
        "storagekey",
    ]
    .iter()
    .any(|w| k.contains(w))
    {
        Kind::Key
    } else if k.contains("credential") {
        Kind::Credential
    } else {
        return None;
    };
    if REFERENCE_SUFFIXES.iter().any(|s| k.ends_with(s)) {
        return None;
    }
    Some(kind)
}

/// A line-by-line redactor: keeps the state that spans lines (inside a PEM private key, inside
/// a YAML block scalar under a secret key) and counts what it replaced.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    pem: bool,
    /// Indentation of a key whose block scalar (`key: |`) is being dropped.
    block: Option<usize>,
    /// `shadow`-style file: the second `:` field is a password hash.
    shadow: bool,
    counts: [u64; Kind::ALL.len()],
}

impl Redactor {
    pub fn new() -> Self {
        Self::default()
    }

    /// A redactor for the file at `path`: `shadow`, `gshadow` (and their `-` backups) and
    /// `passwd` also have their password-hash field removed.
    pub fn for_path(path: &Path) -> Self {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let shadow = matches!(
            name.trim_end_matches('-'),
            "shadow" | "gshadow" | "passwd" | "opasswd"
        );
        Self {
            shadow,
            ..Self::default()
        }
    }

    /// How many secrets of each kind were replaced so far.
    pub fn counts(&self) -> BTreeMap<&'static str, u64> {
        Kind::ALL
            .iter()
            .filter(|k| self.counts[k.index()] > 0)
            .map(|k| (k.name(), self.counts[k.index()]))
            .collect()
    }

    /// Secrets replaced so far.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    fn hit(&mut self, kind: Kind) {
        self.counts[kind.index()] += 1;
    }

    /// Redacts one line (without its line ending). `None`: the line is part of a secret
    /// (the body of a private key, a secret block scalar) and is dropped; the marker was
    /// emitted on the line that opened it.
    pub fn line<'a>(&mut self, line: &'a str) -> Option<Cow<'a, str>> {
        if self.pem {
            if let Some(m) = PEM_END.as_ref().and_then(|r| r.find(line)) {
                self.pem = false;
                let rest = &line[m.end()..];
                if rest.trim().is_empty() {
                    return None;
                }
                return Some(Cow::Owned(self.line(rest)?.into_owned()));
            }
            if is_pem_body(line) {
                return None;
            }
            // Not key material: the block ended without its END line.
            self.pem = false;
        }
        if let Some(indent) = self.block {
            if line.trim().is_empty() || indentation(line) > indent {
                return None;
            }
            self.block = None;
        }
        if !self.shadow && !TRIGGER.as_ref().is_none_or(|r| r.is_match(line)) {
            return Some(Cow::Borrowed(line));
        }
        let mut s = Cow::Borrowed(line);
        if self.shadow {
            s = self.shadow_line(s);
        }
        if let Some(cut) = self.pem_in_line(&mut s) {
            // A private key starts here and goes on below: nothing after BEGIN is kept.
            let mut out = s[..cut].to_owned();
            out.push_str(Kind::PrivateKey.marker());
            self.pem = true;
            return Some(Cow::Owned(out));
        }
        s = self.replace_all(s, JWT.as_ref(), Kind::Token, |_| String::new());
        s = self.replace_bearer(s);
        s = self.replace_all(s, KNOWN_TOKENS.as_ref(), Kind::Key, |_| String::new());
        s = self.url_userinfo(s);
        s = self.flag_values(s);
        s = self.key_values(s);
        Some(s)
    }

    /// Replaces whole private-key blocks within the line; returns where an unterminated one
    /// begins.
    fn pem_in_line(&mut self, s: &mut Cow<'_, str>) -> Option<usize> {
        let (begin, end) = (PEM_BEGIN.as_ref()?, PEM_END.as_ref()?);
        let mut from = 0;
        while let Some(b) = begin.find_at(s, from) {
            let Some(e) = end.find_at(s, b.end()) else {
                self.hit(Kind::PrivateKey);
                return Some(b.start());
            };
            self.hit(Kind::PrivateKey);
            let mut out = String::with_capacity(s.len());
            out.push_str(&s[..b.start()]);
            out.push_str(Kind::PrivateKey.marker());
            from = out.len();
            out.push_str(&s[e.end()..]);
            *s = Cow::Owned(out);
        }
        None
    }

    fn replace_all<'a>(
        &mut self,
        s: Cow<'a, str>,
        re: Option<&Regex>,
        kind: Kind,
        keep: impl Fn(&regex::Captures<'_>) -> String,
    ) -> Cow<'a, str> {
        let Some(re) = re else { return s };
        if !re.is_match(&s) {
            return s;
        }
        let mut n = 0;
        let out = re
            .replace_all(&s, |c: &regex::Captures<'_>| {
                n += 1;
                format!("{}{}", keep(c), kind.marker())
            })
            .into_owned();
        self.counts[kind.index()] += n;
        Cow::Owned(out)
    }

    fn replace_bearer<'a>(&mut self, s: Cow<'a, str>) -> Cow<'a, str> {
        let Some(re) = BEARER.as_ref() else { return s };
        if !re.is_match(&s) {
            return s;
        }
        let (mut tokens, mut creds) = (0, 0);
        let out = re
            .replace_all(&s, |c: &regex::Captures<'_>| {
                let scheme = c.get(1).map_or("", |m| m.as_str());
                let kind = if scheme.eq_ignore_ascii_case("bearer") {
                    tokens += 1;
                    Kind::Token
                } else {
                    creds += 1;
                    Kind::Credential
                };
                format!(
                    "{scheme}{}{}",
                    c.get(2).map_or("", |m| m.as_str()),
                    kind.marker()
                )
            })
            .into_owned();
        self.counts[Kind::Token.index()] += tokens;
        self.counts[Kind::Credential.index()] += creds;
        Cow::Owned(out)
    }

    fn url_userinfo<'a>(&mut self, s: Cow<'a, str>) -> Cow<'a, str> {
        let Some(re) = URL_USERINFO.as_ref() else {
            return s;
        };
        if !re.is_match(&s) {
            return s;
        }
        let mut n = 0;
        let out = re
            .replace_all(&s, |c: &regex::Captures<'_>| {
                let pw = c.get(2).map_or("", |m| m.as_str());
                let user = c.get(1).map_or("", |m| m.as_str());
                if pw.starts_with(MARKER_PREFIX) {
                    return format!("{user}:{pw}@");
                }
                n += 1;
                format!("{user}:{}@", Kind::Password.marker())
            })
            .into_owned();
        self.counts[Kind::Password.index()] += n;
        Cow::Owned(out)
    }

    /// `--password value`: the value of a secret flag given as the next word.
    fn flag_values<'a>(&mut self, s: Cow<'a, str>) -> Cow<'a, str> {
        let Some(re) = FLAG_SPACE.as_ref() else {
            return s;
        };
        let mut out: Option<String> = None;
        let mut last = 0;
        for c in re.captures_iter(&s) {
            let (Some(flag), Some(value)) = (c.get(1), c.get(3)) else {
                continue;
            };
            let Some(kind) = secret_kind(flag.as_str().trim_start_matches('-')) else {
                continue;
            };
            let o = out.get_or_insert_with(|| String::with_capacity(s.len()));
            o.push_str(&s[last..value.start()]);
            o.push_str(kind.marker());
            last = value.end();
            self.hit(kind);
        }
        match out {
            Some(mut o) => {
                o.push_str(&s[last..]);
                Cow::Owned(o)
            }
            None => s,
        }
    }

    /// `key: value`, `key=value`, `"key": "value"` with a secret key.
    fn key_values<'a>(&mut self, s: Cow<'a, str>) -> Cow<'a, str> {
        let Some(re) = KEY_SEP.as_ref() else { return s };
        let line: &str = &s;
        let mut out: Option<String> = None;
        let mut last = 0;
        let mut from = 0;
        while let Some(c) = re.captures_at(line, from) {
            let (Some(whole), Some(key), Some(sep)) = (c.get(0), c.get(2), c.get(3)) else {
                break;
            };
            from = whole.end();
            let Some(kind) = secret_kind(key.as_str()) else {
                continue;
            };
            let at_line_start = {
                let before = line[..whole.start()].trim();
                before.is_empty() || before == "export" || before == "-"
            };
            let Some((start, end, block)) =
                value_span(line, whole.end(), sep.as_str() == ":", at_line_start)
            else {
                continue;
            };
            if block {
                self.block = Some(indentation(line));
            }
            let o = out.get_or_insert_with(|| String::with_capacity(line.len()));
            o.push_str(&line[last..start]);
            o.push_str(kind.marker());
            last = end;
            from = end.max(from);
            self.hit(kind);
        }
        match out {
            Some(mut o) => {
                o.push_str(&line[last..]);
                Cow::Owned(o)
            }
            None => s,
        }
    }

    /// `name:HASH:...` → the hash replaced (locked, empty and `x` placeholders are kept).
    fn shadow_line<'a>(&mut self, s: Cow<'a, str>) -> Cow<'a, str> {
        let mut parts = s.splitn(3, ':');
        let (Some(name), Some(hash)) = (parts.next(), parts.next()) else {
            return s;
        };
        let bare = hash.trim_start_matches('!');
        if bare.is_empty() || matches!(bare, "*" | "x") || bare.starts_with(MARKER_PREFIX) {
            return s;
        }
        let lock = &hash[..hash.len() - bare.len()];
        let rest = parts.next().map(|r| format!(":{r}")).unwrap_or_default();
        self.hit(Kind::PasswordHash);
        Cow::Owned(format!(
            "{name}:{lock}{}{rest}",
            Kind::PasswordHash.marker()
        ))
    }
}

/// The span (`start..end`) of the value after a separator ending at `pos`, and whether it is a
/// YAML block scalar (`|`, `>`) whose lines follow. `None`: nothing to redact (empty,
/// structured, already redacted, or a boolean/null).
fn value_span(
    line: &str,
    pos: usize,
    colon: bool,
    at_line_start: bool,
) -> Option<(usize, usize, bool)> {
    let rest = &line[pos..];
    let trimmed = rest.trim_start_matches([' ', '\t']);
    let start = pos + (rest.len() - trimmed.len());
    let first = trimmed.chars().next()?;
    if colon && first == '/' && trimmed.starts_with("//") {
        return None; // a URL scheme, not a key
    }
    match first {
        '{' | '[' => None,
        '"' | '\'' => {
            let body = &trimmed[1..];
            let mut end = body.len();
            let mut escaped = false;
            for (i, ch) in body.char_indices() {
                if escaped {
                    escaped = false;
                } else if ch == '\\' {
                    escaped = true;
                } else if ch == first {
                    end = i;
                    break;
                }
            }
            let value = &body[..end];
            if value.is_empty() || value.contains(MARKER_PREFIX) {
                return None;
            }
            Some((start + 1, start + 1 + end, false))
        }
        '|' | '>'
            if colon
                && trimmed[1..]
                    .trim()
                    .chars()
                    .all(|c| "+-0123456789".contains(c)) =>
        {
            Some((start, line.len(), true))
        }
        _ => {
            let end = if colon || at_line_start {
                start + trimmed.trim_end().len()
            } else {
                start
                    + trimmed
                        .find(|c: char| {
                            c.is_whitespace() || matches!(c, '&' | ';' | ',' | '"' | '\'' | ')')
                        })
                        .unwrap_or(trimmed.len())
            };
            let value = &line[start..end];
            let v = value.trim_end_matches(',');
            if v.is_empty()
                || v.contains(MARKER_PREFIX)
                || ["true", "false", "null", "~", "none", "yes", "no"]
                    .iter()
                    .any(|w| v.eq_ignore_ascii_case(w))
            {
                return None;
            }
            // A trailing comma of a JSON line stays.
            Some((start, start + v.len(), false))
        }
    }
}

fn indentation(line: &str) -> usize {
    line.len() - line.trim_start_matches([' ', '\t']).len()
}

/// A line of a PEM body: base64, or an RFC 1421 header (`Proc-Type:`, `DEK-Info:`).
fn is_pem_body(line: &str) -> bool {
    let t = line.trim();
    t.is_empty()
        || t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
        || t.starts_with("Proc-Type:")
        || t.starts_with("DEK-Info:")
}

/// Redacts a whole text, line by line, keeping its line endings.
pub fn text(s: &str) -> String {
    let mut r = Redactor::new();
    let mut out = String::with_capacity(s.len());
    for piece in s.split_inclusive('\n') {
        let body = piece.strip_suffix('\n').unwrap_or(piece);
        let body = body.strip_suffix('\r').unwrap_or(body);
        let nl = &piece[body.len()..];
        if let Some(l) = r.line(body) {
            out.push_str(&l);
            out.push_str(nl);
        }
    }
    out
}

/// The redacted lines of a text (the form diffs compare).
pub fn lines(s: &str) -> Vec<String> {
    let mut r = Redactor::new();
    s.lines()
        .filter_map(|l| r.line(l).map(Cow::into_owned))
        .collect()
}

/// Redacts every string of a JSON value in place: the value of a secret key (see
/// [`secret_kind`]) is replaced whole; other strings are redacted as text; string arrays
/// under `argv`, `cmdline`, `args` or `command` as command lines.
pub fn json(v: &mut Value) -> u64 {
    let mut n = 0;
    walk_json(v, &mut n);
    n
}

fn walk_json(v: &mut Value, n: &mut u64) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if let Some(kind) = secret_kind(k) {
                    redact_secret_value(x, kind, n);
                    continue;
                }
                let is_argv = matches!(k.as_str(), "argv" | "cmdline" | "args" | "command");
                match x {
                    Value::Array(a) if is_argv && a.iter().all(Value::is_string) => {
                        let args: Vec<String> = a
                            .iter()
                            .filter_map(|s| s.as_str().map(str::to_owned))
                            .collect();
                        let red = argv(&args);
                        *n += red.iter().zip(&args).filter(|(a, b)| a != b).count() as u64;
                        *a = red.into_iter().map(Value::String).collect();
                    }
                    _ => walk_json(x, n),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| walk_json(x, n)),
        Value::String(s) if TRIGGER.as_ref().is_none_or(|r| r.is_match(s)) => {
            let mut r = Redactor::new();
            let red = if s.contains('\n') {
                text(s)
            } else {
                r.line(s).map(Cow::into_owned).unwrap_or_default()
            };
            if red != *s {
                *n += r.total().max(1);
                *s = red;
            }
        }
        _ => {}
    }
}

/// The value under a secret key: scalars replaced, containers searched.
fn redact_secret_value(x: &mut Value, kind: Kind, n: &mut u64) {
    match x {
        Value::String(s) if !s.is_empty() && !s.starts_with(MARKER_PREFIX) => {
            *s = kind.marker().to_owned();
            *n += 1;
        }
        Value::Number(_) => {
            *x = Value::String(kind.marker().to_owned());
            *n += 1;
        }
        Value::Array(a) => a.iter_mut().for_each(|e| redact_secret_value(e, kind, n)),
        Value::Object(_) => walk_json(x, n),
        _ => {}
    }
}

/// Programs whose `-p` (attached `-pVALUE`, or for `sshpass` also `-p VALUE`) is a password.
const DASH_P_PASSWORD: &[&str] = &[
    "mysql",
    "mysqldump",
    "mysqladmin",
    "mysqlimport",
    "mysqlshow",
    "mysqlcheck",
    "mariadb",
    "mariadb-dump",
    "mariadb-admin",
    "sshpass",
];

/// Redacts a command line:
/// * the value of a flag naming a secret (`--password=x`, `--token x`, `--bootstrap-token=x`,
///   `--client-secret x`), and `<word>=value` anywhere in an argument (`PGPASSWORD=x`,
///   `https://h/?token=x`);
/// * everything after `Authorization:` (a header given to `curl -H`), bearer tokens, JWTs,
///   private keys;
/// * the password of URL credentials and of `curl -u user:x`;
/// * `-p` passwords of the MySQL clients (`-px`) and `sshpass` (`-p x`).
///
/// Everything else is kept: the command line is the evidence of what was done.
pub fn argv(argv: &[String]) -> Vec<String> {
    let program = argv
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_owned())
        .unwrap_or_default();
    let dash_p = DASH_P_PASSWORD.contains(&program.as_str());
    let curl = program == "curl";
    let pw = Kind::Password.marker();
    let mut out: Vec<String> = Vec::with_capacity(argv.len());
    let mut rest = argv.iter();
    while let Some(arg) = rest.next() {
        let body = arg.trim_start_matches('-');
        if out.is_empty() || !arg.starts_with('-') || body.is_empty() {
            out.push(arg_text(arg));
            continue;
        }
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        // `--name` of `--name=value`, as written.
        let flag = arg
            .get(..arg.len() - body.len() + name.len())
            .unwrap_or(arg);
        let single_dash = arg.len() - body.len() == 1;
        if dash_p && single_dash && name.starts_with('p') {
            if arg.len() > 2 {
                out.push(format!("-p{pw}"));
            } else {
                out.push(arg.clone());
                if program == "sshpass" && rest.next().is_some() {
                    out.push(pw.to_owned());
                }
            }
        } else if let Some(kind) = secret_kind(name) {
            out.push(match value {
                Some(_) => format!("{flag}={}", kind.marker()),
                None => arg.clone(),
            });
            if value.is_none() && rest.next().is_some() {
                out.push(kind.marker().to_owned());
            }
        } else if curl && matches!(name, "u" | "user" | "U" | "proxy-user") {
            let userpass = |v: &str| match v.split_once(':') {
                Some((user, _)) => format!("{user}:{pw}"),
                None => v.to_owned(),
            };
            match value {
                Some(v) => out.push(format!("{flag}={}", userpass(v))),
                None => {
                    out.push(arg.clone());
                    if let Some(next) = rest.next() {
                        out.push(userpass(next));
                    }
                }
            }
        } else {
            out.push(arg_text(arg));
        }
    }
    out
}

/// One argument: an `Authorization:` header value whole, then the text rules.
fn arg_text(arg: &str) -> String {
    let lower = arg.to_ascii_lowercase();
    if let Some(i) = lower.find("authorization:") {
        let end = i + "authorization:".len();
        if arg.is_char_boundary(end) && !arg[end..].trim().is_empty() {
            return format!("{}{}", &arg[..end], Kind::Credential.marker());
        }
    }
    let mut r = Redactor::new();
    r.line(arg).map(Cow::into_owned).unwrap_or_default()
}

#[cfg(test)]
mod tests;
