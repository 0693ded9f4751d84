use serde_json::json;

use super::*;

fn v(s: &[&str]) -> Vec<String> {
    s.iter().map(|a| (*a).to_owned()).collect()
}

fn one(line: &str) -> String {
    Redactor::new()
        .line(line)
        .map(Cow::into_owned)
        .unwrap_or_default()
}

#[test]
fn command_lines() {
    let pw = Kind::Password.marker();
    let tok = Kind::Token.marker();
    let cases: &[(&[&str], &[&str])] = &[
        (
            &[
                "kubeadm",
                "join",
                "--token",
                "abcdef.0123456789abcdef",
                "--discovery-token-ca-cert-hash=sha256:00",
            ],
            &[
                "kubeadm",
                "join",
                "--token",
                tok,
                "--discovery-token-ca-cert-hash=sha256:00",
            ],
        ),
        (
            &["app", "--password=hunter2", "--db-password", "x", "-v"],
            &[
                "app",
                "--password=<redacted: password>",
                "--db-password",
                pw,
                "-v",
            ],
        ),
        (
            &["env", "PGPASSWORD=hunter2", "API_TOKEN=tok", "psql"],
            &[
                "env",
                "PGPASSWORD=<redacted: password>",
                "API_TOKEN=<redacted: token>",
                "psql",
            ],
        ),
        (
            &[
                "curl",
                "-H",
                "Authorization: Bearer abcdefgh",
                "https://alice:pw@example.test/x?token=t",
                "-u",
                "bob:pw2",
            ],
            &[
                "curl",
                "-H",
                "Authorization:<redacted: credential>",
                "https://alice:<redacted: password>@example.test/x?token=<redacted: token>",
                "-u",
                "bob:<redacted: password>",
            ],
        ),
        (
            &["mysql", "-uroot", "-phunter2", "db"],
            &["mysql", "-uroot", "-p<redacted: password>", "db"],
        ),
        (
            &["sshpass", "-p", "hunter2", "ssh", "h"],
            &["sshpass", "-p", pw, "ssh", "h"],
        ),
        // -p of other programs is not a password; plain arguments and references stay.
        (
            &["mkdir", "-p", "/etc/kubernetes"],
            &["mkdir", "-p", "/etc/kubernetes"],
        ),
        (
            &[
                "kubelet",
                "--tls-private-key-file=/var/lib/kubelet/pki/kubelet.key",
                "--token-ttl",
                "1h",
            ],
            &[
                "kubelet",
                "--tls-private-key-file=/var/lib/kubelet/pki/kubelet.key",
                "--token-ttl",
                "1h",
            ],
        ),
        (&["app", "--token"], &["app", "--token"]),
        (
            &["é", "token=ü", "Ünïcode"],
            &["é", "token=<redacted: token>", "Ünïcode"],
        ),
    ];
    for (input, want) in cases {
        assert_eq!(argv(&v(input)), v(want), "{input:?}");
    }
    assert!(argv(&[]).is_empty());
}

#[test]
fn private_keys_whole_block_on_many_lines_or_one() {
    let t = "a\n-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\nabc+/=\n-----END RSA PRIVATE KEY-----\nb\n\
             -----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n";
    let r = text(t);
    assert_eq!(
        r,
        "a\n<redacted: private key>\nb\n-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n"
    );
    let j = r#"{"key": "-----BEGIN PRIVATE KEY-----\nMIIEv\n-----END PRIVATE KEY-----\n", "x": 1}"#;
    let r = one(j);
    assert!(!r.contains("MIIEv"), "{r}");
    assert!(r.contains("<redacted: private key>"), "{r}");
    // An OpenSSH key whose END line is missing ends at the first non-base64 line.
    let r = text("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaA==\nnot: base64 line\n");
    assert_eq!(r, "<redacted: private key>\nnot: base64 line\n");
}

#[test]
fn key_values_in_yaml_json_env_ini_and_flags() {
    let cases = [
        ("password: hunter2", "password: <redacted: password>"),
        ("  token: abc.def", "  token: <redacted: token>"),
        (
            "    client-key-data: LS0tLS1CRUdJTg==",
            "    client-key-data: <redacted: private key>",
        ),
        (
            "    client-certificate-data: LS0tLS1DRVJU",
            "    client-certificate-data: LS0tLS1DRVJU",
        ),
        (
            r#"  "aadClientSecret": "s3cr3t-value","#,
            r#"  "aadClientSecret": "<redacted: secret>","#,
        ),
        (
            r#"  "aadClientCertPassword": "pw","#,
            r#"  "aadClientCertPassword": "<redacted: password>","#,
        ),
        (
            r#"  "userAssignedIdentityID": "0000-1111","#,
            r#"  "userAssignedIdentityID": "0000-1111","#,
        ),
        (
            "export AZURE_CLIENT_SECRET=abc def",
            "export AZURE_CLIENT_SECRET=<redacted: secret>",
        ),
        ("DB_PASSWORD=a;b", "DB_PASSWORD=<redacted: password>"),
        (
            r#"Environment="BOOTSTRAP_TOKEN=abc" "X=1""#,
            r#"Environment="BOOTSTRAP_TOKEN=<redacted: token>" "X=1""#,
        ),
        (
            "ExecStart=/usr/bin/kubelet --token=abc --v=2 --password hunter2",
            "ExecStart=/usr/bin/kubelet --token=<redacted: token> --v=2 --password <redacted: password>",
        ),
        (
            "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5==;EndpointSuffix=core.windows.net",
            "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=<redacted: key>;EndpointSuffix=core.windows.net",
        ),
        (
            "url=https://acct.blob.core.windows.net/c?sv=2020&sr=b&sig=abc%2F&se=1",
            "url=https://acct.blob.core.windows.net/c?sv=2020&sr=b&sig=<redacted: signature>&se=1",
        ),
        (
            "net.ipv6.conf.all.stable_secret = fe80::1",
            "net.ipv6.conf.all.stable_secret = <redacted: secret>",
        ),
        ("tokenFile: /var/run/token", "tokenFile: /var/run/token"),
        ("secretName: azure-secret", "secretName: azure-secret"),
        ("rotateToken: true", "rotateToken: true"),
        ("authorization:", "authorization:"),
        (
            r#"{"authorization": {"mode": "Webhook"}}"#,
            r#"{"authorization": {"mode": "Webhook"}}"#,
        ),
        (
            "Authorization: Bearer abcdefgh123",
            "Authorization: Bearer <redacted: token>",
        ),
        (
            "Authorization: SharedKey acct:c2ln",
            "Authorization: <redacted: credential>",
        ),
        (
            "msg=\"request\" header=\"Bearer abcdefgh123\"",
            "msg=\"request\" header=\"Bearer <redacted: token>\"",
        ),
        (
            "proxy=http://user:p4ss@proxy:3128 next",
            "proxy=http://user:<redacted: password>@proxy:3128 next",
        ),
        (
            "jwt eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl end",
            "jwt <redacted: token> end",
        ),
        ("plain line with nothing", "plain line with nothing"),
        (
            "Failed password for root from 10.0.0.1",
            "Failed password for root from 10.0.0.1",
        ),
    ];
    for (input, want) in cases {
        assert_eq!(one(input), want, "{input}");
    }
}

#[test]
fn yaml_block_scalars_under_secret_keys_are_dropped() {
    let t = "data:\n  token: |\n    line1\n    line2\n  other: 1\n";
    assert_eq!(text(t), "data:\n  token: <redacted: token>\n  other: 1\n");
}

#[test]
fn shadow_files_lose_their_hashes_only() {
    let mut r = Redactor::for_path(Path::new("/etc/shadow"));
    let l = |r: &mut Redactor, s: &str| r.line(s).map(Cow::into_owned).unwrap_or_default();
    assert_eq!(
        l(&mut r, "root:$6$salt$hash:19000:0:99999:7:::"),
        "root:<redacted: password hash>:19000:0:99999:7:::"
    );
    assert_eq!(l(&mut r, "daemon:*:19000::::::"), "daemon:*:19000::::::");
    assert_eq!(
        l(&mut r, "alice:!$6$x$y:1::::::"),
        "alice:!<redacted: password hash>:1::::::"
    );
    let mut p = Redactor::for_path(Path::new("/etc/passwd"));
    assert_eq!(
        l(&mut p, "root:x:0:0:root:/root:/bin/bash"),
        "root:x:0:0:root:/root:/bin/bash"
    );
    assert_eq!(r.counts().get("password hash"), Some(&2));
}

#[test]
fn json_values_under_secret_keys_and_argv_arrays() {
    let mut v = json!({
        "endpoint": {"url": "https://u:pw@e.test/", "tokenFile": "/t"},
        "kubeconfig": {"users": [{"user": {"token": "abc", "client-key-data": "LS0t"}}]},
        "process": {"argv": ["/bin/x", "--password", "hunter2"]},
        "port": 10250,
        "apiKey": 12345,
        "note": "password: inline"
    });
    let n = json(&mut v);
    let s = v.to_string();
    for secret in ["pw@", "abc", "LS0t", "hunter2", "12345", "inline"] {
        assert!(!s.contains(secret), "{secret} in {s}");
    }
    assert_eq!(v["endpoint"]["tokenFile"], "/t");
    assert_eq!(v["port"], 10250);
    assert!(n >= 6, "{n}");
}

#[test]
fn diffs_compare_redacted_lines() {
    assert_eq!(
        lines("user: a\npassword: b\n"),
        vec!["user: a", "password: <redacted: password>"]
    );
    assert_eq!(text("a\r\nb"), "a\r\nb");
}
