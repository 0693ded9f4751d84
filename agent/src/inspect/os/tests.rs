use super::*;
use crate::inspect::{Options, Process, ProcessTable};

use crate::inspect::test_root::TestRoot as Root;

trait Inspect {
    fn inspect_with(&self, procs: &ProcessTable) -> ComponentFacts;
    fn inspect(&self) -> ComponentFacts;
}

impl Inspect for Root {
    fn inspect_with(&self, procs: &ProcessTable) -> ComponentFacts {
        self.run_with(inspect, procs, &Options::default())
    }
    fn inspect(&self) -> ComponentFacts {
        self.run(inspect, false, &Options::default())
    }
}

fn reason(cf: &ComponentFacts, path: &[&str]) -> String {
    crate::facts::unknown_reason(cf.get(path).unwrap())
        .unwrap()
        .to_owned()
}

#[test]
fn os_release_quoting() {
    let text = r#"# comment
PRETTY_NAME="Ubuntu 22.04.4 LTS"
NAME=Ubuntu
ID=ubuntu
ID_LIKE=debian
VERSION="22.04.4 LTS (Jammy Jellyfish)"
SINGLE='it''s $literal'
ESCAPED="a \"quoted\" \$var \\ back\`tick\` \n"
UNQUOTED=a\ b  # trailing comment
EMPTY=
BAD LINE
1BAD=x
OPEN="never closed
SPACES=two words
"#;
    let (vars, errors) = parse_os_release(text);
    assert_eq!(vars["PRETTY_NAME"], "Ubuntu 22.04.4 LTS");
    assert_eq!(vars["ID"], "ubuntu");
    assert_eq!(vars["ID_LIKE"], "debian");
    assert_eq!(vars["SINGLE"], "its $literal");
    assert_eq!(vars["ESCAPED"], "a \"quoted\" $var \\ back`tick` \\n");
    assert_eq!(vars["UNQUOTED"], "a b");
    assert_eq!(vars["EMPTY"], "");
    let lines: Vec<usize> = errors.iter().map(|e| e.0).collect();
    assert_eq!(lines, vec![11, 12, 13, 14]);
}

#[test]
fn kernel_release_from_proc_version() {
    assert_eq!(
        release_from_proc_version(
            "Linux version 5.15.0-1061-azure (buildd@lcy02) (gcc 11) #70-Ubuntu SMP\n"
        ),
        Some("5.15.0-1061-azure".to_owned())
    );
    assert_eq!(release_from_proc_version("garbage"), None);
}

#[test]
fn node_image_from_kubelet_defaults_and_flags() {
    let text = "KUBELET_FLAGS=--node-ip=10.0.0.4 --max-pods=110\nKUBELET_REGISTER_SCHEDULABLE=true\n\
                KUBELET_NODE_LABELS=agentpool=np1,kubernetes.azure.com/node-image-version=AKSUbuntu-2204gen2containerd-202405.03.0,kubernetes.azure.com/role=agent\n";
    let r = Root::new();
    r.write("/etc/default/kubelet", text);
    let cf = r.inspect();
    assert_eq!(
        cf.get(&["nodeImage"]).unwrap(),
        &json!({"version": "AKSUbuntu-2204gen2containerd-202405.03.0", "label": NODE_IMAGE_LABEL, "buildDate": "2024-05-03"})
    );
    assert_eq!(
        cf.get(&["aks", "markers"]).unwrap(),
        &json!(["/etc/default/kubelet"])
    );

    // The running kubelet's flag wins over the file.
    let procs = ProcessTable {
        processes: vec![Process {
            pid: 1201,
            argv: vec![
                "/usr/local/bin/kubelet".into(),
                "--node-labels=kubernetes.azure.com/node-image-version=AKSAzureLinux-V3gen2-202501.12.0".into(),
            ],
            comm: "kubelet".into(),
        }],
        error: None,
    };
    let cf = r.inspect_with(&procs);
    assert_eq!(
        cf.get(&["nodeImage", "version"]).unwrap(),
        "AKSAzureLinux-V3gen2-202501.12.0"
    );
    assert_eq!(cf.evidence["nodeImage"].pid, Some(1201));
    assert_eq!(
        cf.get(&["aks", "markers"]).unwrap(),
        &json!(["/etc/default/kubelet", "/proc/1201/cmdline"])
    );
}

#[test]
fn empty_root_is_unknown_everywhere_with_reasons() {
    let r = Root::new();
    r.write("/proc/.keep", "");
    let cf = r.inspect();
    assert!(reason(&cf, &["release"]).contains("/usr/lib/os-release: not found"));
    assert!(reason(&cf, &["kernel", "release"]).contains("/proc/sys/kernel/osrelease: not found"));
    assert!(reason(&cf, &["bootId"]).contains("boot_id: not found"));
    assert!(reason(&cf, &["nodeImage"]).contains("/etc/default/kubelet: not found"));
    assert_eq!(cf.get(&["aks", "markers"]).unwrap(), &json!([]));
}

#[test]
fn garbage_proc_files_are_unknown_not_panics() {
    let r = Root::new();
    r.write("/proc/uptime", "garbage")
        .write("/proc/sys/kernel/random/boot_id", "")
        .write("/proc/stat", "cpu 1 2 3\nbtime notatime\n")
        .write("/proc/sys/kernel/osrelease", "\n")
        .write(
            "/proc/version",
            "Linux version 6.6.47.1-1.azl3 (root@x) #1 SMP",
        )
        .write(
            "/etc/os-release",
            b"ID=\"azure\xfflinux\nVERSION_ID=3.0\n".as_slice(),
        );
    let cf = r.inspect();
    assert!(reason(&cf, &["uptimeSeconds"]).contains("/proc/uptime: not a number"));
    assert_eq!(
        reason(&cf, &["bootId"]),
        "/proc/sys/kernel/random/boot_id: empty"
    );
    assert!(reason(&cf, &["bootTime"]).contains("btime is not a time"));
    // An empty osrelease falls back to /proc/version.
    assert_eq!(cf.get(&["kernel", "release"]).unwrap(), "6.6.47.1-1.azl3");
    assert_eq!(
        cf.evidence["kernel.release"].file.as_deref(),
        Some("/proc/version")
    );
    // A broken line is reported and the rest still parsed.
    assert_eq!(cf.get(&["release", "VERSION_ID"]).unwrap(), "3.0");
    assert_eq!(cf.get(&["parseErrors", "0", "line"]), None);
    let errs = cf.get(&["parseErrors"]).unwrap().as_array().unwrap();
    assert_eq!(errs[0]["line"], json!(1));

    let r = Root::new();
    r.write("/proc/sys/kernel/random/boot_id", "not-a-uuid\n");
    assert!(reason(&r.inspect(), &["bootId"]).contains("not a UUID"));
}

#[test]
fn os_release_falls_back_only_when_missing() {
    let r = Root::new();
    r.write("/usr/lib/os-release", "ID=debian\n");
    let cf = r.inspect();
    assert_eq!(cf.get(&["release", "ID"]).unwrap(), "debian");
    assert_eq!(
        cf.evidence["release"].file.as_deref(),
        Some("/usr/lib/os-release")
    );
    // A directory in its place is not a reason to guess from the fallback.
    std::fs::create_dir_all(r.dir().join("etc/os-release")).unwrap();
    let cf = r.inspect();
    assert!(reason(&cf, &["release"]).contains("/etc/os-release: is a directory"));
}

#[test]
fn live_host_matches_proc() {
    let host = HostRoot::new("/").unwrap();
    let procs = ProcessTable::scan(&host);
    let cf = inspect(&Context {
        host: &host,
        procs: &procs,
        options: &Options::default(),
    });
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    assert_eq!(cf.get(&["bootId"]).unwrap(), boot_id.trim());
    assert!(cf.get(&["uptimeSeconds"]).unwrap().as_f64().unwrap() > 0.0);
    assert!(
        cf.get(&["bootTime"])
            .unwrap()
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
}
