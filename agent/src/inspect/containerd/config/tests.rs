//! Loading, merging and normalizing containerd configurations, including hostile inputs.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use serde_json::json;

use super::*;

/// A temporary host root with files written below it.
struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn write(&self, host_path: &str, text: &str) -> &Self {
        let p = self.path(host_path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
        self
    }

    fn path(&self, host_path: &str) -> std::path::PathBuf {
        self.dir.path().join(host_path.trim_start_matches('/'))
    }

    fn host(&self) -> HostRoot {
        HostRoot::new(self.dir.path()).unwrap()
    }

    fn load(&self, strategy: Strategy) -> Result<Loaded, ConfigError> {
        load(
            &self.host(),
            Path::new(DEFAULT_CONFIG_PATH),
            false,
            Path::new("/"),
            strategy,
        )
    }
}

fn setting<'a>(s: &'a [Setting], path: &str) -> &'a Setting {
    s.iter()
        .find(|x| x.path.join(".") == path)
        .unwrap_or_else(|| panic!("no setting {path}"))
}

fn value(s: &[Setting], path: &str) -> Json {
    setting(s, path)
        .value
        .clone()
        .unwrap_or_else(|e| panic!("{path} unknown: {e}"))
}

const AKS_V2: &str = r#"
version = 2
oom_score = -999
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "mcr.microsoft.com/oss/kubernetes/pause:3.6"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      BinaryName = "/usr/bin/runc"
      SystemdCgroup = true
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "/etc/containerd/certs.d"
"#;

#[test]
fn version_2_settings_and_sources() {
    let t = Tree::new();
    t.write(DEFAULT_CONFIG_PATH, AKS_V2);
    let l = t.load(Strategy::MergePlugins).unwrap();
    assert_eq!(l.version, 2);
    assert_eq!(l.files.len(), 1);
    let s = normalize(&l);
    assert_eq!(value(&s, "cri.systemdCgroup"), json!(true));
    assert_eq!(
        setting(&s, "cri.systemdCgroup").source,
        Source::File(DEFAULT_CONFIG_PATH.into())
    );
    assert_eq!(
        value(&s, "cri.sandboxImage"),
        json!("mcr.microsoft.com/oss/kubernetes/pause:3.6")
    );
    assert_eq!(value(&s, "cri.snapshotter"), json!("overlayfs"));
    assert_eq!(setting(&s, "cri.snapshotter").source, Source::Default);
    assert_eq!(
        value(&s, "cri.registry.configPath"),
        json!("/etc/containerd/certs.d")
    );
    assert_eq!(value(&s, "cri.cni.binDir"), json!("/opt/cni/bin"));
    assert_eq!(value(&s, "cri.cni.confDir"), json!("/etc/cni/net.d"));
    assert_eq!(value(&s, "cri.runtimeType"), json!("io.containerd.runc.v2"));
    assert_eq!(value(&s, "cri.disabled"), json!(false));
}

#[test]
fn version_3_layout() {
    let t = Tree::new();
    t.write(
        DEFAULT_CONFIG_PATH,
        r#"
version = 3
[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "mcr.microsoft.com/oss/kubernetes/pause:3.6"
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = "/etc/containerd/certs.d"
[plugins."io.containerd.cri.v1.runtime".containerd]
  default_runtime_name = "runc"
  [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
      SystemdCgroup = true
[plugins."io.containerd.cri.v1.runtime".cni]
  bin_dirs = ["/opt/cni/bin", "/usr/libexec/cni"]
"#,
    );
    let s = normalize(&t.load(Strategy::MergePlugins).unwrap());
    assert_eq!(value(&s, "cri.systemdCgroup"), json!(true));
    assert_eq!(
        value(&s, "cri.sandboxImage"),
        json!("mcr.microsoft.com/oss/kubernetes/pause:3.6")
    );
    assert_eq!(
        value(&s, "cri.registry.configPath"),
        json!("/etc/containerd/certs.d")
    );
    assert_eq!(value(&s, "cri.cni.binDir"), json!("/opt/cni/bin"));
}

#[test]
fn version_1_short_names_are_migrated() {
    let t = Tree::new();
    t.write(
        DEFAULT_CONFIG_PATH,
        r#"
disabled_plugins = ["cri"]
[plugins.cri]
  sandbox_image = "k8s.gcr.io/pause:3.2"
  systemd_cgroup = true
  [plugins.cri.containerd]
    snapshotter = "native"
    [plugins.cri.containerd.default_runtime]
      runtime_type = "io.containerd.runtime.v1.linux"
  [plugins.cri.registry.mirrors."docker.io"]
    endpoint = ["https://mirror.example"]
"#,
    );
    for strategy in [Strategy::ReplacePlugins, Strategy::MergePlugins] {
        let l = t.load(strategy).unwrap();
        assert_eq!(l.version, 1);
        let s = normalize(&l);
        assert_eq!(value(&s, "cri.sandboxImage"), json!("k8s.gcr.io/pause:3.2"));
        assert_eq!(value(&s, "cri.snapshotter"), json!("native"));
        assert_eq!(value(&s, "cri.disabled"), json!(true));
        assert_eq!(
            value(&s, "disabledPlugins"),
            json!(["io.containerd.grpc.v1.cri"])
        );
        assert_eq!(
            value(&s, "cri.registry.mirrors"),
            json!({"docker.io": ["https://mirror.example"]})
        );
        // default_runtime_name defaults to runc, which the config does not define: the built-in.
        assert_eq!(value(&s, "cri.runtimeType"), json!("io.containerd.runc.v2"));
        assert_eq!(value(&s, "cri.systemdCgroup"), json!(false));
    }
}

#[test]
fn legacy_v1_linux_runtime_reads_plugin_wide_systemd_cgroup() {
    let t = Tree::new();
    t.write(
        DEFAULT_CONFIG_PATH,
        r#"
version = 2
[plugins."io.containerd.grpc.v1.cri"]
  systemd_cgroup = true
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runtime.v1.linux"
"#,
    );
    let s = normalize(&t.load(Strategy::ReplacePlugins).unwrap());
    assert_eq!(value(&s, "cri.systemdCgroup"), json!(true));
}

#[test]
fn missing_default_config_means_builtin_defaults() {
    let t = Tree::new();
    let l = t.load(Strategy::MergePlugins).unwrap();
    assert!(l.files.is_empty());
    let s = normalize(&l);
    assert_eq!(value(&s, "cri.systemdCgroup"), json!(false));
    assert_eq!(setting(&s, "cri.systemdCgroup").source, Source::Default);
    assert!(setting(&s, "cri.sandboxImage").value.is_err());
    // The registry config_path has no default: the fact is absent, not invented.
    assert_eq!(setting(&s, "cri.registry.configPath").value, Ok(Json::Null));
}

#[test]
fn missing_explicit_config_is_an_error() {
    let t = Tree::new();
    let err = load(
        &t.host(),
        Path::new("/etc/containerd/custom.toml"),
        true,
        Path::new("/"),
        Strategy::MergePlugins,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("/etc/containerd/custom.toml: not found"),
        "{err}"
    );
}

#[test]
fn malformed_toml_names_file_line_and_column() {
    let t = Tree::new();
    t.write(DEFAULT_CONFIG_PATH, "version = 2\n\n[plugins\nx = 1\n");
    let err = t.load(Strategy::MergePlugins).unwrap_err().to_string();
    assert!(
        err.starts_with("/etc/containerd/config.toml: invalid TOML at line 3"),
        "{err}"
    );
}

#[test]
fn malformed_import_is_named() {
    let t = Tree::new();
    t.write(
        DEFAULT_CONFIG_PATH,
        "version = 2\nimports = [\"conf.d/bad.toml\"]\n",
    );
    t.write("/etc/containerd/conf.d/bad.toml", "a = \"unterminated\n");
    let err = t.load(Strategy::MergePlugins).unwrap_err().to_string();
    assert!(
        err.starts_with("/etc/containerd/conf.d/bad.toml: invalid TOML at line 1"),
        "{err}"
    );
}

#[test]
fn too_deep_toml_is_an_error_not_a_crash() {
    let t = Tree::new();
    t.write(
        DEFAULT_CONFIG_PATH,
        &format!("x = {}1{}\n", "[".repeat(100_000), "]".repeat(100_000)),
    );
    let err = t.load(Strategy::MergePlugins).unwrap_err().to_string();
    assert!(
        err.starts_with("/etc/containerd/config.toml: invalid TOML"),
        "{err}"
    );
}

#[test]
fn config_that_is_a_directory() {
    let t = Tree::new();
    fs::create_dir_all(t.path(DEFAULT_CONFIG_PATH)).unwrap();
    let err = t.load(Strategy::MergePlugins).unwrap_err().to_string();
    assert!(
        err.contains("/etc/containerd/config.toml: is a directory"),
        "{err}"
    );
}

#[test]
fn fifo_named_config_toml_is_not_opened() {
    let t = Tree::new();
    fs::create_dir_all(t.path("/etc/containerd")).unwrap();
    nix::unistd::mkfifo(
        &t.path(DEFAULT_CONFIG_PATH),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    let err = t.load(Strategy::MergePlugins).unwrap_err().to_string();
    assert!(err.contains("is a FIFO"), "{err}");
}

#[test]
fn sparse_2gb_config_is_not_read() {
    let t = Tree::new();
    fs::create_dir_all(t.path("/etc/containerd")).unwrap();
    let f = fs::File::create(t.path(DEFAULT_CONFIG_PATH)).unwrap();
    f.set_len(2 << 30).unwrap();
    let err = t.load(Strategy::MergePlugins).unwrap_err().to_string();
    assert!(err.contains("larger than the"), "{err}");
}

#[test]
fn import_loop_loads_each_file_once() {
    // containerd follows imports transitively, skipping paths it has loaded: a → b → a stops.
    let t = Tree::new();
    t.write(
        DEFAULT_CONFIG_PATH,
        "version = 2\nimports = [\"b.toml\"]\n[grpc]\naddress = \"/run/a.sock\"\n",
    );
    t.write(
        "/etc/containerd/b.toml",
        "version = 2\nimports = [\"/etc/containerd/config.toml\", \"c.toml\"]\ndisabled_plugins = [\"io.containerd.internal.v1.opt\"]\n",
    );
    t.write(
        "/etc/containerd/c.toml",
        "version = 2\nimports = [\"./b.toml\"]\noom_score = -999\n",
    );
    for strategy in [Strategy::ReplacePlugins, Strategy::MergePlugins] {
        let l = t.load(strategy).unwrap();
        let paths: Vec<&str> = l.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/etc/containerd/config.toml",
                "/etc/containerd/b.toml",
                "/etc/containerd/c.toml"
            ]
        );
        assert_eq!(
            lookup(&l.merged, &["oom_score"]),
            Some(&Value::Integer(-999))
        );
        assert_eq!(grpc_address(&l).unwrap().0, "/run/a.sock");
        assert!(!l.merged.contains_key("imports"));
    }
}

#[test]
fn missing_import_is_an_error_naming_it() {
    let t = Tree::new();
    t.write(
        DEFAULT_CONFIG_PATH,
        "version = 2\nimports = [\"/etc/containerd/nope.toml\"]\n",
    );
    let err = t.load(Strategy::MergePlugins).unwrap_err().to_string();
    assert_eq!(err, "/etc/containerd/nope.toml: not found");
}

#[test]
fn import_symlink_out_of_root_stays_inside() {
    let t = Tree::new();
    let outside = tempfile::tempdir().unwrap();
    let evil = outside.path().join("evil.toml");
    fs::write(
        &evil,
        "[plugins.\"io.containerd.grpc.v1.cri\"]\nsandbox_image = \"evil.example/pause\"\n",
    )
    .unwrap();
    t.write(
        DEFAULT_CONFIG_PATH,
        "version = 2\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n",
    );
    fs::create_dir_all(t.path("/etc/containerd/conf.d")).unwrap();
    // An absolute link to the real path of a file outside the root: resolved inside the root,
    // where that path does not exist.
    symlink(&evil, t.path("/etc/containerd/conf.d/10-evil.toml")).unwrap();
    // A relative link climbing above the root is clamped at the root.
    let climb = format!("../../../../../../../..{}", evil.display());
    symlink(&climb, t.path("/etc/containerd/conf.d/20-climb.toml")).unwrap();
    let err = t.load(Strategy::MergePlugins).unwrap_err().to_string();
    assert_eq!(err, "/etc/containerd/conf.d/10-evil.toml: not found");
    // And with the outside file placed inside the root under the same path, that one is read.
    t.write(
        &evil.to_string_lossy(),
        "[plugins.\"io.containerd.grpc.v1.cri\"]\nsandbox_image = \"inside/pause\"\n",
    );
    let l = t.load(Strategy::MergePlugins).unwrap();
    assert_eq!(
        value(&normalize(&l), "cri.sandboxImage"),
        json!("inside/pause")
    );
}

#[test]
fn plugin_sections_replace_in_1x_and_merge_in_2x() {
    let t = Tree::new();
    t.write(
        DEFAULT_CONFIG_PATH,
        &format!("imports = [\"/etc/containerd/conf.d/*.toml\"]\n{AKS_V2}"),
    );
    t.write(
        "/etc/containerd/conf.d/50-registry.toml",
        "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\nconfig_path = \"/etc/containerd/other.d\"\n",
    );
    let replaced = normalize(&t.load(Strategy::ReplacePlugins).unwrap());
    assert_eq!(value(&replaced, "cri.systemdCgroup"), json!(false));
    assert_eq!(
        setting(&replaced, "cri.systemdCgroup").source,
        Source::Default
    );
    assert!(setting(&replaced, "cri.sandboxImage").value.is_err());
    let merged = normalize(&t.load(Strategy::MergePlugins).unwrap());
    assert_eq!(value(&merged, "cri.systemdCgroup"), json!(true));
    assert_eq!(
        setting(&merged, "cri.systemdCgroup").source,
        Source::File(DEFAULT_CONFIG_PATH.into())
    );
    for s in [&replaced, &merged] {
        assert_eq!(
            value(s, "cri.registry.configPath"),
            json!("/etc/containerd/other.d")
        );
        assert_eq!(
            setting(s, "cri.registry.configPath").source,
            Source::File("/etc/containerd/conf.d/50-registry.toml".into())
        );
    }
}

#[test]
fn top_level_merge_follows_mergo_override() {
    let t = Tree::new();
    t.write(
        DEFAULT_CONFIG_PATH,
        "version = 2\noom_score = -999\nimports = [\"d.toml\"]\ndisabled_plugins = [\"io.containerd.x.v1.a\", \"io.containerd.x.v1.b\"]\n[grpc]\naddress = \"/run/x.sock\"\nuid = 5\n",
    );
    t.write(
        "/etc/containerd/d.toml",
        "oom_score = 0\ndisabled_plugins = [\"io.containerd.x.v1.b\", \"io.containerd.x.v1.c\"]\n[grpc]\nuid = 0\ngid = 7\n[timeouts]\n\"io.containerd.timeout.shim.cleanup\" = \"5s\"\n",
    );
    for strategy in [Strategy::ReplacePlugins, Strategy::MergePlugins] {
        let l = t.load(strategy).unwrap();
        let j = table_to_json(&l.merged);
        assert_eq!(j["oom_score"], json!(-999), "zero does not override");
        assert_eq!(j["version"], json!(2));
        assert_eq!(
            j["grpc"],
            json!({"address": "/run/x.sock", "uid": 5, "gid": 7})
        );
        assert_eq!(
            j["timeouts"]["io.containerd.timeout.shim.cleanup"],
            json!("5s")
        );
        assert_eq!(
            j["disabled_plugins"],
            json!([
                "io.containerd.x.v1.a",
                "io.containerd.x.v1.b",
                "io.containerd.x.v1.c"
            ])
        );
    }
}

#[test]
fn relative_globs_differ_between_1x_and_2x() {
    let t = Tree::new();
    t.write(
        DEFAULT_CONFIG_PATH,
        "version = 2\nimports = [\"conf.d/*.toml\"]\n",
    );
    t.write("/etc/containerd/conf.d/b.toml", "oom_score = 2\n");
    t.write("/etc/containerd/conf.d/a.toml", "oom_score = 1\n");
    t.write("/etc/containerd/conf.d/.hidden.toml", "oom_score = 3\n");
    t.write("/etc/containerd/conf.d/c.conf", "oom_score = 4\n");
    let l = t.load(Strategy::MergePlugins).unwrap();
    let paths: Vec<&str> = l.files.iter().map(|f| f.path.as_str()).collect();
    // Go's Glob: sorted, and `*` matches a leading dot.
    assert_eq!(
        paths,
        [
            DEFAULT_CONFIG_PATH,
            "/etc/containerd/conf.d/.hidden.toml",
            "/etc/containerd/conf.d/a.toml",
            "/etc/containerd/conf.d/b.toml"
        ]
    );
    assert_eq!(table_to_json(&l.merged)["oom_score"], json!(2));
    // containerd 1.x globs relative to its working directory (here /).
    let l = t.load(Strategy::ReplacePlugins).unwrap();
    assert_eq!(l.files.len(), 1);
}

#[test]
fn malformed_glob_and_wrong_types_are_errors() {
    let t = Tree::new();
    t.write(
        DEFAULT_CONFIG_PATH,
        "version = 2\nimports = [\"/etc/containerd/[*.toml\"]\n",
    );
    let err = t.load(Strategy::MergePlugins).unwrap_err().to_string();
    assert!(err.contains("malformed"), "{err}");
    t.write(
        DEFAULT_CONFIG_PATH,
        "version = 2\nimports = \"/etc/containerd/x.toml\"\n",
    );
    let err = t.load(Strategy::MergePlugins).unwrap_err().to_string();
    assert!(
        err.contains("key `imports` must be an array of strings"),
        "{err}"
    );
    t.write(DEFAULT_CONFIG_PATH, "version = \"2\"\n");
    let err = t.load(Strategy::MergePlugins).unwrap_err().to_string();
    assert!(err.contains("key `version` must be an integer"), "{err}");
    t.write(
        DEFAULT_CONFIG_PATH,
        "version = 2\ndisabled_plugins = [\"cri\"]\n",
    );
    let err = t.load(Strategy::MergePlugins).unwrap_err().to_string();
    assert!(
        err.contains("disabled_plugins entry \"cri\" is not a plugin URI"),
        "{err}"
    );
    t.write(DEFAULT_CONFIG_PATH, "version = 9\n");
    let err = t.load(Strategy::MergePlugins).unwrap_err().to_string();
    assert!(err.contains("config version 9 is newer"), "{err}");
}

#[test]
fn wrong_typed_or_undefined_runtime_settings_are_unknown() {
    let t = Tree::new();
    t.write(
        DEFAULT_CONFIG_PATH,
        "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\nSystemdCgroup = \"true\"\n",
    );
    let s = normalize(&t.load(Strategy::MergePlugins).unwrap());
    let e = setting(&s, "cri.systemdCgroup").value.clone().unwrap_err();
    assert!(
        e.contains("SystemdCgroup is a string in /etc/containerd/config.toml"),
        "{e}"
    );

    t.write(
        DEFAULT_CONFIG_PATH,
        "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\ndefault_runtime_name = \"kata\"\n",
    );
    let s = normalize(&t.load(Strategy::MergePlugins).unwrap());
    let e = setting(&s, "cri.systemdCgroup").value.clone().unwrap_err();
    assert!(e.contains("default runtime \"kata\" is not defined"), "{e}");
}

#[test]
fn version_2_dropin_under_version_3_is_reported_unknown() {
    let t = Tree::new();
    t.write(
        DEFAULT_CONFIG_PATH,
        "version = 3\nimports = [\"old.toml\"]\n",
    );
    t.write(
        "/etc/containerd/old.toml",
        "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\nsandbox_image = \"x/pause\"\n",
    );
    let s = normalize(&t.load(Strategy::MergePlugins).unwrap());
    let e = setting(&s, "cri.sandboxImage").value.clone().unwrap_err();
    assert!(
        e.contains("/etc/containerd/old.toml: a version-2 file"),
        "{e}"
    );
}

#[test]
fn go_clean_and_match() {
    assert_eq!(
        clean("/etc/containerd/./conf.d/../x.toml"),
        "/etc/containerd/x.toml"
    );
    assert_eq!(clean("/../a//b/"), "/a/b");
    assert_eq!(clean("a/../../b"), "../b");
    assert_eq!(clean(""), ".");
    let m = |p: &str, s: &str| match_component(p, s).unwrap();
    assert!(m("*.toml", "a.toml"));
    assert!(m("*.toml", ".toml"));
    assert!(!m("*.toml", "a.conf"));
    assert!(m("1?-*.t[o-p]ml", "10-x.toml"));
    assert!(m("[^a]*", "b"));
    assert!(!m("[^a]*", "a"));
    assert!(m("a\\*", "a*"));
    assert!(!m("a\\*", "ab"));
    assert!(m("*a*b*", "xxaxxbxx"));
    assert!(validate_pattern("[").is_err());
    assert!(validate_pattern("[]").is_err());
    assert!(validate_pattern("[z-a]").is_err());
    assert!(validate_pattern("x\\").is_err());
    assert!(validate_pattern("[a-z]*").is_ok());
}

#[test]
fn line_and_column_are_character_based() {
    assert_eq!(line_column("a\nbé c", 6), (2, 4));
    assert_eq!(line_column("abc", 99), (1, 4));
}

#[test]
fn registry_credentials_are_redacted() {
    let t = Tree::new();
    t.write(
        DEFAULT_CONFIG_PATH,
        r#"version = 2
[plugins."io.containerd.grpc.v1.cri".registry.configs."registry.example".auth]
  username = "robot"
  password = "hunter2"
  auth = "cm9ib3Q6aHVudGVyMg=="
  identitytoken = ""
[plugins."io.containerd.grpc.v1.cri".registry.auths."legacy.example"]
  password = "s3cret"
"#,
    );
    let l = t.load(Strategy::MergePlugins).unwrap();
    let j = redacted_json(&l.merged);
    let text = j.to_string();
    assert!(
        !text.contains("hunter2") && !text.contains("cm9ib3Q6") && !text.contains("s3cret"),
        "{text}"
    );
    let auth = &j["plugins"]["io.containerd.grpc.v1.cri"]["registry"]["configs"]["registry.example"]
        ["auth"];
    assert_eq!(auth["username"], json!("robot"));
    assert_eq!(auth["password"], json!(REDACTED));
    assert_eq!(auth["identitytoken"], json!(""));
}
