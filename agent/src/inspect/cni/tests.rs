use super::*;
use crate::inspect::Options;

const AZURE: &str = r#"{"cniVersion":"0.3.0","name":"azure","plugins":[
  {"type":"azure-vnet","mode":"transparent","ipam":{"type":"azure-vnet-ipam"}},
  {"type":"portmap","capabilities":{"portMappings":true},"snat":true}]}"#;

use crate::inspect::test_root::TestRoot as Root;

trait Inspect {
    fn inspect(&self) -> ComponentFacts;
}

impl Inspect for Root {
    fn inspect(&self) -> ComponentFacts {
        self.run(inspect, false, &Options::default())
    }
}

#[test]
fn a_conflist_gives_its_chain() {
    let c = parse(AZURE.as_bytes(), true).unwrap();
    assert_eq!(c.name.as_deref(), Some("azure"));
    assert_eq!(c.cni_version.as_deref(), Some("0.3.0"));
    assert_eq!(c.plugins, ["azure-vnet", "portmap"]);
}

#[test]
fn a_conf_is_one_plugin() {
    let c = parse(
        br#"{"cniVersion":"1.0.0","name":"lo","type":"loopback"}"#,
        false,
    )
    .unwrap();
    assert_eq!(c.plugins, ["loopback"]);
    // The name is optional for a single configuration.
    assert_eq!(parse(br#"{"type":"bridge"}"#, false).unwrap().name, None);
}

#[test]
fn invalid_configurations_say_why() {
    for (text, list, why) in [
        ("{", true, "invalid JSON"),
        ("[]", true, "not a JSON object"),
        (r#"{"name":"x"}"#, true, "no 'plugins'"),
        (r#"{"name":"x","plugins":{}}"#, true, "not an array"),
        (r#"{"name":"x","plugins":[]}"#, true, "empty"),
        (r#"{"plugins":[{"type":"bridge"}]}"#, true, "needs a 'name'"),
        (
            r#"{"name":"x","plugins":[{"type":""}]}"#,
            true,
            "plugins[0]: missing 'type'",
        ),
        (
            r#"{"name":"x","plugins":[{"type":1}]}"#,
            true,
            "not a string",
        ),
        (
            r#"{"name":7,"plugins":[{"type":"a"}]}"#,
            true,
            "'name' is not a string",
        ),
        // A list saved as `.conf` has no `type` of its own, as the runtime also finds.
        (AZURE, false, "missing 'type'"),
    ] {
        let e = parse(text.as_bytes(), list).unwrap_err();
        assert!(e.contains(why), "{text}: {e}");
    }
}

#[test]
fn first_valid_file_in_byte_order_wins() {
    let r = Root::new();
    r.write("/etc/cni/net.d/10-azure.conflist", AZURE)
        .write("/etc/cni/net.d/05-broken.conf", "{ not json")
        .write(
            "/etc/cni/net.d/99-loopback.conf",
            r#"{"name":"lo","type":"loopback"}"#,
        )
        .write(
            "/etc/cni/net.d/00-notes.txt",
            "ignored: not a CNI extension",
        )
        .write("/opt/cni/bin/azure-vnet", "");
    let cf = r.inspect();
    assert_eq!(cf.get(&["primaryPlugin"]), Some(&json!("azure-vnet")));
    assert_eq!(
        cf.get(&["winning", "file"]),
        Some(&json!("/etc/cni/net.d/10-azure.conflist"))
    );
    assert_eq!(
        cf.get(&["winning", "plugins"]),
        Some(&json!([
            {"type": "azure-vnet", "binaryPresent": true},
            {"type": "portmap", "binaryPresent": false},
        ]))
    );
    let files: Vec<&str> = cf
        .get(&["files"])
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["file"].as_str().unwrap())
        .collect();
    assert_eq!(
        files,
        [
            "/etc/cni/net.d/05-broken.conf",
            "/etc/cni/net.d/10-azure.conflist",
            "/etc/cni/net.d/99-loopback.conf"
        ]
    );
    let errors = cf.get(&["errors"]).unwrap().as_array().unwrap();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["file"], json!("/etc/cni/net.d/05-broken.conf"));
    assert_eq!(
        cf.evidence["winning"].file.as_deref(),
        Some("/etc/cni/net.d/10-azure.conflist")
    );
}

#[test]
fn no_configuration_directory_is_a_fact_and_the_plugin_unknown() {
    let r = Root::new();
    let cf = r.inspect();
    assert_eq!(cf.get(&["confDirPresent"]), Some(&json!(false)));
    assert_eq!(cf.get(&["files"]), Some(&json!([])));
    assert_eq!(cf.get(&["binaries"]), Some(&json!([])));
    assert!(crate::facts::unknown_reason(cf.get(&["winning"]).unwrap()).is_some());
    let reason = crate::facts::unknown_reason(cf.get(&["primaryPlugin"]).unwrap()).unwrap();
    assert!(reason.contains("not installed"), "{reason}");
}

#[test]
fn only_invalid_files_leave_the_plugin_unknown() {
    let r = Root::new();
    r.write("/etc/cni/net.d/10-x.json", "null");
    let cf = r.inspect();
    assert_eq!(cf.get(&["confDirPresent"]), Some(&json!(true)));
    let reason = crate::facts::unknown_reason(cf.get(&["primaryPlugin"]).unwrap()).unwrap();
    assert!(reason.contains("no valid"), "{reason}");
}

#[test]
fn too_many_files_are_listed_not_read() {
    let r = Root::new();
    for i in 0..CONF_FILES_LIMIT + 2 {
        r.write(&format!("/etc/cni/net.d/{i:03}.conf"), "{}");
    }
    let cf = r.inspect();
    let errors = cf.get(&["errors"]).unwrap().as_array().unwrap();
    assert_eq!(errors.len(), CONF_FILES_LIMIT + 2);
    assert!(
        errors.last().unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("not read")
    );
    assert_eq!(
        cf.get(&["files"]).unwrap().as_array().unwrap().len(),
        CONF_FILES_LIMIT
    );
}

#[test]
fn an_unreadable_configuration_directory_is_unknown_with_its_path() {
    let r = Root::new();
    // A file where the directory should be: listing it fails, as a permission error would.
    r.write("/etc/cni/net.d", "").write("/opt/cni/bin", "");
    let cf = r.inspect();
    for key in [
        "confDirPresent",
        "files",
        "errors",
        "winning",
        "primaryPlugin",
        "binaries",
    ] {
        let reason = crate::facts::unknown_reason(cf.get(&[key]).unwrap())
            .unwrap_or_else(|| panic!("{key}: {:?}", cf.get(&[key])));
        assert!(
            reason.starts_with("/etc/cni/net.d: ") || reason.starts_with("/opt/cni/bin: "),
            "{key}: {reason}"
        );
    }
}

#[test]
fn directories_named_by_containerd_are_read_instead_of_the_defaults() {
    let r = Root::new();
    r.write(
        "/etc/containerd/config.toml",
        "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".cni]\nconf_dir = \"/etc/cni/custom.d\"\nbin_dir = \"/usr/libexec/cni\"\n",
    )
    .write("/etc/cni/custom.d/10-azure.conflist", AZURE)
    .write("/etc/cni/net.d/00-flannel.conf", r#"{"name":"f","type":"flannel"}"#)
    .write("/usr/libexec/cni/azure-vnet", "")
    .write("/usr/libexec/cni/portmap", "");
    let cf = r.inspect();
    assert_eq!(cf.get(&["confDir"]), Some(&json!("/etc/cni/custom.d")));
    assert_eq!(cf.get(&["binDir"]), Some(&json!("/usr/libexec/cni")));
    assert_eq!(cf.evidence["confDir"].source.as_deref(), Some("containerd"));
    assert_eq!(cf.get(&["primaryPlugin"]), Some(&json!("azure-vnet")));
    assert_eq!(
        cf.get(&["winning", "file"]),
        Some(&json!("/etc/cni/custom.d/10-azure.conflist"))
    );
    let plugins = cf.get(&["winning", "plugins"]).unwrap();
    assert!(
        plugins
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["binaryPresent"] == json!(true))
    );
}

#[test]
fn without_containerd_configuration_the_defaults_are_read() {
    let r = Root::new();
    r.write("/etc/cni/net.d/10-azure.conflist", AZURE);
    let cf = r.inspect();
    assert_eq!(cf.get(&["confDir"]), Some(&json!(CONF_DIR)));
    assert_eq!(cf.evidence["confDir"].source.as_deref(), Some("default"));
}
