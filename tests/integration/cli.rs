//! The command line itself: exit codes, baseline validation errors, output formats.

use crate::util::{baseline_file, check_json, nodedrift, run, run_bounded, with_status};

const KUBELET_PORT_RULE: &str = "  - id: t.port\n    path: kubelet.config.readOnlyPort\n    expect: { equals: 0 }\n    severity: high\n    policy: cis/4.2\n    remediation: set it to 0\n";

#[test]
fn help_and_version_exit_zero() {
    assert_eq!(run(&["--help"]).status.code(), Some(0));
    assert_eq!(run(&["--version"]).status.code(), Some(0));
}

#[test]
fn bad_usage_exits_64() {
    assert_eq!(run(&["frobnicate"]).status.code(), Some(64));
    assert_eq!(run(&["check", "--format", "xml"]).status.code(), Some(64));
    assert_eq!(run(&["check", "--profile", "nope"]).status.code(), Some(64));
    let out = run(&["check", "--host-root", "/nonexistent/host"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/host"));
}

#[test]
fn exit_code_3_when_nothing_fails_but_something_is_unknown() {
    // An empty host: the kubelet is not running, so its config is unknown.
    let host = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let b = baseline_file(dir.path(), "b.yaml", KUBELET_PORT_RULE);
    let (code, report) = check_json(
        host.path(),
        &["--profile", "none", "--baseline", b.to_str().unwrap()],
    );
    assert_eq!(code, 3, "{report:#}");
    assert_eq!(report["summary"]["unknown"], 1);
    assert_eq!(report["summary"]["fail"], 0);
    let f = &with_status(&report, "unknown")[0];
    assert_eq!(f["rule"], "t.port");
    assert!(
        f["reason"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("kubelet"),
        "{f:#}"
    );
}

#[test]
fn exit_code_0_when_everything_passes_and_1_on_any_fail() {
    let host = tempfile::tempdir().unwrap();
    // A /proc with no process in it: "the kubelet is not running" is then a definite fact.
    std::fs::create_dir(host.path().join("proc")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A definite fact of an empty host: no kubelet runs.
    let pass = baseline_file(
        dir.path(),
        "pass.yaml",
        "  - id: t.stopped\n    path: kubelet.running\n    expect: { equals: false }\n    severity: low\n    policy: cis/4.1\n",
    );
    let (code, report) = check_json(
        host.path(),
        &["--profile", "none", "--baseline", pass.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{report:#}");
    let fail = baseline_file(
        dir.path(),
        "fail.yaml",
        "  - id: t.running\n    path: kubelet.running\n    expect: { equals: true }\n    severity: low\n    policy: cis/4.1\n",
    );
    let (code, report) = check_json(
        host.path(),
        &["--profile", "none", "--baseline", fail.to_str().unwrap()],
    );
    assert_eq!(code, 1, "{report:#}");
}

#[test]
fn validate_reports_file_line_column_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let bad = baseline_file(
        dir.path(),
        "bad.yaml",
        "  - id: t.port\n    path: kubelet.config.readOnlyPort\n    expct: { equals: 0 }\n",
    );
    let out = run(&["baseline", "validate", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:8:", bad.display())), "{err}");
    assert!(err.contains("expct"), "{err}");

    let good = baseline_file(dir.path(), "good.yaml", KUBELET_PORT_RULE);
    let out = run(&["baseline", "validate", good.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn malformed_and_unreadable_baselines_exit_64_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let host = tempfile::tempdir().unwrap();
    let malformed = dir.path().join("m.yaml");
    std::fs::write(
        &malformed,
        "apiVersion: nodedrift.dev/v1\nkind: Baseline\nrules: [\n",
    )
    .unwrap();
    let fifo = dir.path().join("fifo.yaml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    for (file, expect) in [
        (malformed.as_path(), "m.yaml:"),
        (fifo.as_path(), "not a regular file"),
        (dir.path(), "not a regular file"),
        (
            std::path::Path::new("/nonexistent.yaml"),
            "nonexistent.yaml",
        ),
    ] {
        let out = run_bounded(
            nodedrift()
                .args(["check", "--host-root"])
                .arg(host.path())
                .arg("--baseline")
                .arg(file),
            30,
        );
        assert_eq!(out.status.code(), Some(64), "{}", file.display());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expect), "{}: {err}", file.display());
    }
}

#[test]
fn baseline_show_prints_a_document_that_validates() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["baseline", "show", "--profile", "aks-ubuntu"]);
    assert_eq!(out.status.code(), Some(0));
    let shown = dir.path().join("shown.yaml");
    std::fs::write(&shown, &out.stdout).unwrap();
    let out = run(&[
        "baseline",
        "validate",
        "--profile",
        "none",
        shown.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = run(&["baseline", "show", "--profile", "aks-ubuntu", "--policy"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("| aks/alpha-features |"), "{table}");
}

#[test]
fn table_format_groups_by_component_and_summarises() {
    let host = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let b = baseline_file(dir.path(), "b.yaml", KUBELET_PORT_RULE);
    let out = run_bounded(
        nodedrift()
            .args(["check", "--profile", "none", "--host-root"])
            .arg(host.path())
            .arg("--baseline")
            .arg(&b),
        30,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("kubelet\n"), "{text}");
    assert!(text.contains("UNKNOWN"), "{text}");
    assert!(
        text.contains("summary: 0 pass, 0 fail, 1 unknown"),
        "{text}"
    );
    assert!(
        !text.contains('\x1b'),
        "no colour when not a terminal: {text}"
    );
}

#[test]
fn the_readme_coverage_table_is_what_baseline_show_policy_prints() {
    let out = run(&["baseline", "show", "--profile", "aks-ubuntu", "--policy"]);
    assert_eq!(out.status.code(), Some(0));
    let printed = String::from_utf8(out.stdout).unwrap();
    let table: String = printed
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(table.lines().count() > 10, "{printed}");
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    assert!(
        readme.contains(&table),
        "README.md's coverage table is out of date; paste the output of \
         `nodedrift baseline show --profile aks-ubuntu --policy`:\n{table}"
    );
}
