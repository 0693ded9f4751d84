//! The `nodedrift` command: parse the command line, set up logging, run, map the outcome to an
//! exit code (0 pass, 1 drift, 3 unknowns only, 64 bad usage or baseline, 70 internal error).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use nodedrift::baseline::{self, Baseline, profiles};
use nodedrift::check::{self, CheckError, CheckOptions};
use nodedrift::config::Config;
use nodedrift::host::HostRoot;
use nodedrift::inspect;
use nodedrift::report::{self, Format, console};
use nodedrift::run;

/// Bad command line, bad baseline or bad configuration (sysexits EX_USAGE).
const EXIT_USAGE: u8 = 64;
/// Anything else that stopped the run (sysexits EX_SOFTWARE).
const EXIT_INTERNAL: u8 = 70;

#[derive(Debug, Parser)]
#[command(
    name = "nodedrift",
    version,
    about = "Detects drift of a Kubernetes node from its supported baseline",
    after_help = "Exit codes: 0 all pass, 1 at least one fail, 3 no fail but unknowns, 64 bad usage or baseline, 70 internal error."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Args)]
struct HostArgs {
    /// Directory the host's filesystem is mounted at (`/host` in the DaemonSet).
    #[arg(long, env = "NODEDRIFT_HOST_ROOT", default_value = "/")]
    host_root: PathBuf,
}

#[derive(Debug, clap::Args)]
struct ProbeArgs {
    /// Probe the components' health endpoints (and, for check, the baseline's required
    /// egress endpoints) even though the host root is not the live host. By default probes
    /// run only on the live host: `/`, or the NODEDRIFT_HOST_ROOT of the pod. They go out of
    /// this process's network namespace.
    #[arg(long, conflicts_with = "no_probe")]
    probe: bool,
    /// Contact nothing: no health probe, no egress probe.
    #[arg(long)]
    no_probe: bool,
    /// Upper bound of each health probe (connect, request, response).
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = nodedrift::config::parse_duration)]
    health_timeout: std::time::Duration,
}

impl ProbeArgs {
    /// Whether to probe when inspecting `root`.
    fn probing(&self, root: &std::path::Path) -> bool {
        let live = check::is_live_host(root, std::env::var_os("NODEDRIFT_HOST_ROOT").as_deref());
        !self.no_probe && (self.probe || live)
    }
}

#[derive(Debug, clap::Args)]
struct BaselineArgs {
    /// Use this embedded profile instead of detecting one from the host.
    #[arg(long, env = "NODEDRIFT_PROFILE", value_parser = clap::builder::PossibleValuesParser::new(profiles::NAMES))]
    profile: Option<String>,
    /// Baseline file layered over the profile (repeatable; later files win).
    #[arg(long = "baseline", value_name = "FILE")]
    baselines: Vec<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct StateArgs {
    /// Where the stores live (the file baseline is `files.redb` there).
    #[arg(
        long,
        env = "NODEDRIFT_STATE_DIR",
        value_name = "DIR",
        default_value = "/var/lib/nodedrift"
    )]
    state_dir: PathBuf,
}

#[derive(Debug, clap::Args)]
struct WatchArgs {
    /// Track this host path and everything below it instead of the baseline's watch sets
    /// (repeatable). File integrity only: no other component is checked.
    #[arg(long = "watch", value_name = "PATH")]
    watch: Vec<PathBuf>,
    /// Attributes tracked for `--watch` paths, comma-separated (default: the `config` preset:
    /// type,mode,uid,gid,size,sha256,target,xattrs). Known: type, mode, uid, gid, size,
    /// sha256, target, xattrs, mtime, ctime, inode.
    #[arg(long, value_name = "LIST", value_parser = parse_attrs, requires = "watch")]
    attributes: Option<nodedrift::files::AttrSet>,
}

fn parse_attrs(s: &str) -> Result<nodedrift::files::AttrSet, String> {
    nodedrift::files::AttrSet::parse_list(s)
}

/// What the file-integrity commands work on.
#[derive(Debug, clap::Args)]
struct FimArgs {
    #[command(flatten)]
    host: HostArgs,
    #[command(flatten)]
    baseline: BaselineArgs,
    #[command(flatten)]
    state: StateArgs,
    #[command(flatten)]
    watch: WatchArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check the node once against its baseline and exit with a code that says pass or drift.
    Check {
        #[command(flatten)]
        host: HostArgs,
        #[command(flatten)]
        baseline: BaselineArgs,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// List passing rules too (table format).
        #[arg(long)]
        show_pass: bool,
        /// Colour the table: auto (on a terminal, unless NO_COLOR is set), always, never.
        #[arg(long, value_enum, default_value_t = Color::Auto)]
        color: Color,
        #[command(flatten)]
        state: StateArgs,
        #[command(flatten)]
        watch: WatchArgs,
        #[command(flatten)]
        probe: ProbeArgs,
        /// Probe the egress endpoints (DNS, TCP, verified TLS) whatever the host root:
        /// `--probe` for egress only.
        #[arg(long, conflicts_with = "no_probe")]
        egress: bool,
        /// Upper bound of each egress probe stage.
        #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = nodedrift::config::parse_duration)]
        egress_timeout: std::time::Duration,
    },
    /// Run continuously: re-check on every change and report it (central endpoint, Node
    /// object, metrics). Settings: the config file, then NODEDRIFT_*/NODE_NAME environment
    /// variables, then these flags.
    Run {
        /// The YAML config file (every key documented in the README).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Directory the host's filesystem is mounted at.
        #[arg(long, value_name = "DIR")]
        host_root: Option<PathBuf>,
        /// Where the state store lives.
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        /// Metrics and health listen address.
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
        /// Use this embedded profile instead of detecting one from the host.
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(profiles::NAMES))]
        profile: Option<String>,
        /// Baseline file layered over the profile (repeatable; replaces the config's list).
        #[arg(long = "baseline", value_name = "FILE")]
        baselines: Vec<PathBuf>,
    },
    /// Validate a `nodedrift run` config file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print the facts the inspectors gather, as JSON.
    Inspect {
        /// Only this component.
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(inspect::names().collect::<Vec<_>>()))]
        component: Option<String>,
        #[command(flatten)]
        host: HostArgs,
        #[command(flatten)]
        probe: ProbeArgs,
    },
    /// Validate or show baselines.
    #[command(subcommand)]
    Baseline(BaselineCommand),
    /// Exit 0 when the node needs a reboot, 1 when it does not (kured's
    /// `--reboot-sentinel-command` convention), 3 when it cannot tell; prints the reasons.
    #[command(
        after_help = "Exit codes: 0 reboot required, 1 not required, 3 cannot tell (treated as \"not required\" by kured), 64 bad usage, 70 internal error."
    )]
    RebootRequired {
        #[command(flatten)]
        host: HostArgs,
        /// Print the reboot facts as JSON instead of a sentence.
        #[arg(long)]
        json: bool,
        /// Print nothing; only the exit code answers.
        #[arg(long, short = 'q')]
        quiet: bool,
    },
    /// Take a forensic snapshot: one tar.gz with the facts, findings and their history, the
    /// file-integrity manifest, redacted configs, processes, sockets, mounts, kernel modules,
    /// sysctls and recent logs, with a manifest of SHA-256 sums. `snapshot verify FILE`
    /// checks one.
    #[command(
        args_conflicts_with_subcommands = true,
        after_help = "Exit codes: 0 written (or verified intact), 1 verification failed, 64 bad usage (an invalid id), 70 the bundle could not be written (nothing is left behind)."
    )]
    Snapshot {
        #[command(subcommand)]
        action: Option<SnapshotCommand>,
        #[command(flatten)]
        args: SnapshotArgs,
    },
}

#[derive(Debug, clap::Args)]
struct SnapshotArgs {
    /// Write the bundle to FILE (`-`: stream it to stdout). Default:
    /// `<state dir>/snapshots/<time>-<id>.tar.gz`, keeping the newest `--keep`.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Directory the host's filesystem is mounted at (default: the config's, else `/`).
    #[arg(long, value_name = "DIR")]
    host_root: Option<PathBuf>,
    /// Where the ledger and file baseline are (read-only; default: the config's, else
    /// `/var/lib/nodedrift`).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// The agent's config file (its settings are recorded in the bundle).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Request id, part of the file name: 1 to 63 of `A-Z a-z 0-9 . _ -`.
    #[arg(long, default_value = "manual")]
    id: String,
    /// Bundles kept in the default directory (the oldest are removed).
    #[arg(long, default_value_t = nodedrift::snapshot::DEFAULT_KEEP)]
    keep: usize,
    /// Largest bundle, in MiB (the logs are cut first, keeping their newest lines).
    #[arg(long, value_name = "MIB", default_value_t = nodedrift::snapshot::DEFAULT_MAX_BUNDLE_BYTES >> 20)]
    max_mib: u64,
    /// Print the outcome as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum SnapshotCommand {
    /// Check a bundle: every entry against the manifest (missing, extra, size, SHA-256), the
    /// compressed stream, and the `.sha256` sidecar when present. Exit 0 intact, 1 not.
    Verify {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Check a config file: syntax, unknown keys, values. Errors name file:line:column: key.
    Validate {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum BaselineCommand {
    /// Check baseline files: syntax, unknown keys, paths, expectations. Errors name file:line:column.
    Validate {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Validate as a layer over this profile (default: any profile it fits).
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(profiles::NAMES))]
        profile: Option<String>,
    },
    /// Print the effective rule set as a baseline document (or the policy coverage).
    Show {
        #[command(flatten)]
        host: HostArgs,
        #[command(flatten)]
        baseline: BaselineArgs,
        /// Print which support-policy clause each rule protects, as a table.
        #[arg(long)]
        policy: bool,
    },
    /// Record the file-integrity baseline: walk the watch sets (or `--watch` paths), hash
    /// every file and store the result in the state directory.
    Capture {
        #[command(flatten)]
        fim: FimArgs,
        /// Replace an existing baseline (a damaged one is kept aside as evidence).
        #[arg(long)]
        force: bool,
        /// Print the capture summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Re-baseline approved changes: record the current state of PATHs (files, or directories
    /// with everything below them) and who accepted them and why.
    Accept {
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// Why the change is approved (recorded with the user who ran the command).
        #[arg(long, required = true)]
        reason: String,
        #[command(flatten)]
        fim: FimArgs,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let usage = e
                .downcast_ref::<CheckError>()
                .is_some_and(CheckError::is_usage)
                || e.downcast_ref::<baseline::BaselineError>().is_some()
                || e.downcast_ref::<nodedrift::host::HostError>()
                    .is_some_and(|h| matches!(h, nodedrift::host::HostError::Root { .. }));
            let message = format!("nodedrift: error: {e:#}");
            eprintln!("{message}");
            termination_log(&message);
            ExitCode::from(if usage { EXIT_USAGE } else { EXIT_INTERNAL })
        }
    }
}

/// In a pod, the last error also goes to the termination log so `kubectl describe pod` shows it.
fn termination_log(message: &str) {
    let path = std::path::Path::new("/dev/termination-log");
    if path.exists()
        && let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(path)
    {
        let _ = writeln!(f, "{message}");
    }
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Check {
            host,
            baseline,
            format,
            show_pass,
            color,
            state,
            watch,
            probe,
            egress,
            egress_timeout,
        } => {
            let probing = probe.probing(&host.host_root);
            let opts = CheckOptions {
                host_root: host.host_root,
                profile: baseline.profile,
                baselines: baseline.baselines,
                inspect: inspect::Options {
                    egress_probe: probing || egress,
                    egress_timeout,
                    health_probe: probing,
                    health_timeout: probe.health_timeout,
                    ..inspect::Options::default()
                },
                files: check::FilesOptions {
                    state_dir: Some(state.state_dir),
                    watch: watch.watch,
                    attributes: watch.attributes,
                },
            };
            let report = check::run(&opts)?;
            let color = match color {
                Color::Always => true,
                Color::Never => false,
                Color::Auto => {
                    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
                }
            };
            let text = report::render(&report, format, &console::Options { color, show_pass });
            print_out(&text)?;
            Ok(check::exit_code(&report.summary))
        }
        Command::Run {
            config,
            host_root,
            state_dir,
            listen,
            profile,
            baselines,
        } => {
            let mut cfg = match Config::load(config.as_deref(), &nodedrift::config::process_env) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("nodedrift: error: {e}");
                    termination_log(&format!("nodedrift: error: {e}"));
                    return Ok(EXIT_USAGE);
                }
            };
            if let Some(v) = host_root {
                cfg.host_root = v;
            }
            if let Some(v) = state_dir {
                cfg.state_dir = v;
            }
            if let Some(v) = listen {
                cfg.listen = v;
            }
            if profile.is_some() {
                cfg.profile = profile;
            }
            if !baselines.is_empty() {
                cfg.baselines = baselines;
            }
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let cancel = tokio_util::sync::CancellationToken::new();
            let result = runtime.block_on(run::run(cfg, cancel));
            // Everything has stopped; do not let an idle blocking thread delay the exit.
            runtime.shutdown_timeout(std::time::Duration::from_millis(100));
            match result {
                Ok(()) => Ok(0),
                Err(e) if e.is_usage() => {
                    eprintln!("nodedrift: error: {e}");
                    termination_log(&format!("nodedrift: error: {e}"));
                    Ok(EXIT_USAGE)
                }
                Err(e) => Err(e.into()),
            }
        }
        Command::Config(ConfigCommand::Validate { file }) => {
            match Config::load(Some(&file), &nodedrift::config::process_env) {
                Ok(_) => {
                    println!("{}: valid", file.display());
                    Ok(0)
                }
                Err(e) => {
                    eprintln!("nodedrift: error: {e}");
                    Ok(EXIT_USAGE)
                }
            }
        }
        Command::Inspect {
            component,
            host,
            probe,
        } => {
            let mut opts = inspect::Options {
                health_probe: probe.probing(&host.host_root),
                health_timeout: probe.health_timeout,
                ..inspect::Options::default()
            };
            let host = HostRoot::new(&host.host_root)?;
            // Read every sysctl any embedded profile names, so the output is profile-independent.
            for p in profiles::NAMES {
                opts.sysctl_keys.extend(Baseline::profile(p)?.sysctl_keys());
            }
            let only: Vec<&str> = component.iter().map(String::as_str).collect();
            let facts = inspect::inspect(&host, &opts, &only);
            print_out(&(serde_json::to_string_pretty(&facts.components)? + "\n"))?;
            Ok(0)
        }
        Command::RebootRequired { host, json, quiet } => reboot_required(host, json, quiet),
        Command::Snapshot {
            action: Some(SnapshotCommand::Verify { file }),
            ..
        } => snapshot_verify(&file),
        Command::Snapshot { action: None, args } => snapshot(args),
        Command::Baseline(BaselineCommand::Capture { fim, force, json }) => {
            capture(fim, force, json)
        }
        Command::Baseline(BaselineCommand::Accept { paths, reason, fim }) => {
            accept(paths, &reason, fim)
        }
        Command::Baseline(BaselineCommand::Validate { files, profile }) => {
            validate(&files, profile.as_deref())
        }
        Command::Baseline(BaselineCommand::Show {
            host,
            baseline,
            policy,
        }) => {
            let name = match baseline.profile {
                Some(p) => p,
                None => {
                    let host = HostRoot::new(&host.host_root)?;
                    let facts =
                        inspect::inspect(&host, &inspect::Options::default(), &[inspect::os::NAME]);
                    check::choose_profile(None, &facts).name
                }
            };
            let b = check::load_baseline(&name, &baseline.baselines)?;
            let text = if policy {
                policy_table(&name, &b)
            } else {
                serde_norway::to_string(&b.to_document(&name)).context("rendering the baseline")?
            };
            print_out(&text)?;
            Ok(0)
        }
    }
}

/// The watch spec for the file-integrity commands: `--watch` paths, or the baseline's sets.
fn files_spec(
    host: &HostRoot,
    baseline: BaselineArgs,
    watch: WatchArgs,
) -> anyhow::Result<nodedrift::files::WatchSpec> {
    let name = match (&baseline.profile, watch.watch.is_empty()) {
        (_, false) => "none".to_owned(),
        (Some(p), true) => p.clone(),
        (None, true) => {
            let facts = inspect::inspect(host, &inspect::Options::default(), &[inspect::os::NAME]);
            check::choose_profile(None, &facts).name
        }
    };
    let b = check::load_baseline(&name, &baseline.baselines)?;
    let files = check::FilesOptions {
        state_dir: None,
        watch: watch.watch,
        attributes: watch.attributes,
    };
    let spec = files.spec(&b)?;
    if spec.is_empty() {
        anyhow::bail!(CheckError::Usage(format!(
            "profile {name} watches no files; give --watch PATH or a baseline with `files:` sets"
        )));
    }
    Ok(spec)
}

/// `nodedrift reboot-required`: the reboot inspector's judgement as an exit code.
fn reboot_required(host: HostArgs, json: bool, quiet: bool) -> anyhow::Result<u8> {
    let host = HostRoot::new(&host.host_root)?;
    let facts = inspect::inspect(&host, &inspect::Options::default(), &["reboot"]);
    let summary = inspect::reboot::RebootSummary::of(&facts).unwrap_or_default();
    let code = match summary.required {
        Some(true) => 0,
        Some(false) => 1,
        None => 3,
    };
    if quiet {
        return Ok(code);
    }
    if json {
        let v = facts
            .components
            .get("reboot")
            .map(|c| serde_json::to_value(c).unwrap_or_default())
            .unwrap_or_default();
        print_out(&(serde_json::to_string_pretty(&v)? + "\n"))?;
        return Ok(code);
    }
    print_out(&(summary.lines().join("\n") + "\n"))?;
    Ok(code)
}

/// `nodedrift snapshot`: one bundle, to a file (atomically, with its sidecar) or stdout.
fn snapshot(args: SnapshotArgs) -> anyhow::Result<u8> {
    use nodedrift::snapshot::{self, SnapshotError, SnapshotRequest};
    // Checked before anything is read or written.
    if let Err(e) = snapshot::validate_id(&args.id) {
        eprintln!("nodedrift: error: {e}");
        return Ok(EXIT_USAGE);
    }
    let mut cfg = match Config::load(args.config.as_deref(), &nodedrift::config::process_env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("nodedrift: error: {e}");
            return Ok(EXIT_USAGE);
        }
    };
    if let Some(v) = args.host_root {
        cfg.host_root = v;
    }
    if let Some(v) = args.state_dir {
        cfg.state_dir = v;
    }
    let host = HostRoot::new(&cfg.host_root)?;
    let profile = check::profile_for(&host, cfg.profile.as_deref());
    let baseline = check::load_baseline(&profile.name, &cfg.baselines)?;
    let mut req = SnapshotRequest::new(&host, &args.id, profile, &baseline);
    req.node_name = cfg.kubernetes.node_name.as_deref();
    req.config = cfg.to_json();
    req.state_dir = Some(&cfg.state_dir);
    req.limits.max_bundle_bytes = args.max_mib.saturating_mul(1 << 20);
    let (result, default_dir) = match args.out.as_deref() {
        Some(p) if p == std::path::Path::new("-") => {
            let stdout = std::io::stdout();
            let mut w = std::io::BufWriter::new(stdout.lock());
            let r = snapshot::take(&req, &mut w).and_then(|o| {
                w.flush().map_err(SnapshotError::Write)?;
                Ok(o)
            });
            (r, None)
        }
        Some(p) => (snapshot::take_to_file(&req, p), None),
        None => {
            let dir = snapshot::snapshot_dir(&cfg.state_dir);
            let name = snapshot::default_file_name(&args.id, std::time::SystemTime::now());
            (snapshot::take_to_file(&req, &dir.join(name)), Some(dir))
        }
    };
    let outcome = match result {
        Ok(o) => o,
        Err(e @ (SnapshotError::InvalidId { .. } | SnapshotError::Limits(_))) => {
            eprintln!("nodedrift: error: {e}");
            return Ok(EXIT_USAGE);
        }
        Err(e) => {
            eprintln!("nodedrift: error: {e}");
            return Ok(EXIT_INTERNAL);
        }
    };
    if let Some(dir) = default_dir {
        match snapshot::retain(&dir, args.keep.max(1)) {
            Ok(removed) => {
                for p in removed {
                    eprintln!("removed old snapshot {}", p.display());
                }
            }
            Err(e) => eprintln!("nodedrift: warning: retention: {e}"),
        }
    }
    let text = if args.json {
        serde_json::to_string_pretty(&outcome)? + "\n"
    } else {
        let mut t = String::new();
        if let Some(p) = &outcome.path {
            t.push_str(&format!("snapshot {}\n", p.display()));
        }
        t.push_str(&format!(
            "size {} bytes, {} entries\nsha256 {}\n",
            outcome.size, outcome.entries, outcome.sha256
        ));
        if outcome.errors > 0 || !outcome.trimmed.is_empty() {
            t.push_str(&format!(
                "{} collector errors (errors.json), {} trimmed (manifest.json)\n",
                outcome.errors,
                outcome.trimmed.len()
            ));
        }
        t
    };
    if outcome.path.is_some() {
        print_out(&text)?;
    } else {
        // The bundle went to stdout.
        eprint!("{text}");
    }
    Ok(0)
}

/// `nodedrift snapshot verify FILE`.
fn snapshot_verify(file: &std::path::Path) -> anyhow::Result<u8> {
    use nodedrift::snapshot::{self, SidecarCheck};
    let v = match snapshot::verify(file) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("nodedrift: error: {e}");
            return Ok(1);
        }
    };
    let mut text = String::new();
    for p in &v.problems {
        text.push_str(&format!("{}: {p}\n", file.display()));
    }
    match &v.sidecar {
        SidecarCheck::Absent => {}
        SidecarCheck::Matches => {
            text.push_str(&format!("{}: matches its .sha256\n", file.display()))
        }
        SidecarCheck::Mismatch { recorded } => text.push_str(&format!(
            "{}: SHA-256 {} but its .sha256 says {recorded}\n",
            file.display(),
            v.sha256
        )),
        SidecarCheck::Unreadable { error } => text.push_str(&format!("{error}\n")),
    }
    if v.ok() {
        text.push_str(&format!(
            "{}: OK ({} entries, id {}, sha256 {})\n",
            file.display(),
            v.entries,
            v.id.as_deref().unwrap_or("?"),
            v.sha256
        ));
        print_out(&text)?;
        Ok(0)
    } else {
        text.push_str(&format!("{}: FAILED verification\n", file.display()));
        eprint!("{text}");
        Ok(1)
    }
}

/// The host, watch spec and state directory of a file-integrity command.
fn open_fim(fim: FimArgs) -> anyhow::Result<(HostRoot, nodedrift::files::WatchSpec, StateArgs)> {
    let host = HostRoot::new(&fim.host.host_root)?;
    let spec = files_spec(&host, fim.baseline, fim.watch)?;
    Ok((host, spec, fim.state))
}

fn capture(fim: FimArgs, force: bool, json: bool) -> anyhow::Result<u8> {
    use nodedrift::files::{self, Store, StoreError};
    let (host, spec, state) = open_fim(fim)?;
    let file = Store::file(&state.state_dir);
    let store = match Store::open(&state.state_dir) {
        Ok(s) if s.is_captured()? && !force => {
            let info = s.info()?;
            eprintln!(
                "nodedrift: error: {}: a file baseline is already captured ({} entries at {}, digest {}); \
                 accept approved changes with `nodedrift baseline accept`, or replace it with --force",
                info.path, info.entries, info.captured_at, info.digest
            );
            return Ok(EXIT_USAGE);
        }
        // A store that opens but whose entries no longer match its digest was modified
        // outside nodedrift: evidence too, kept aside like a damaged one.
        Ok(s) => match s.scan(|_| {}) {
            Ok(_) => s,
            Err(e) if e.is_integrity() => {
                drop(s);
                keep_aside(&file)?;
                Store::create(&state.state_dir)?
            }
            Err(e) => return Err(e.into()),
        },
        Err(StoreError::NotCaptured { .. }) => Store::create(&state.state_dir)?,
        Err(e) if e.is_integrity() && force => {
            keep_aside(&file)?;
            Store::create(&state.state_dir)?
        }
        Err(e) if e.is_integrity() => {
            eprintln!(
                "nodedrift: error: {e}\n(--force keeps it aside as evidence and captures anew)"
            );
            return Ok(EXIT_USAGE);
        }
        Err(e) => return Err(e.into()),
    };
    let tty = std::io::stderr().is_terminal();
    let show = |done: usize, total: usize, bytes: u64| {
        if total == 0 {
            eprint!("\rhashing: {done} files, {} MiB   ", bytes >> 20);
        } else {
            eprint!("\rhashing: {done}/{total} files, {} MiB   ", bytes >> 20);
        }
    };
    let progress: Option<files::ProgressFn<'_>> = if tty && !json { Some(&show) } else { None };
    let report = files::capture(&host, &spec, &store, progress)?;
    if progress.is_some() {
        eprintln!();
    }
    if json {
        print_out(&(serde_json::to_string_pretty(&report)? + "\n"))?;
    } else {
        let mut text = format!(
            "captured {} entries ({} files hashed, {} MiB) in {:.2?} into {}\ndigest {}\n",
            report.entries,
            report.hashed,
            report.hashed_bytes >> 20,
            report.duration,
            report.store.path,
            report.store.digest
        );
        for p in &report.metadata_only {
            text.push_str(&format!(
                "metadata only (larger than the hashing cap): {p}\n"
            ));
        }
        for p in &report.missing_roots {
            text.push_str(&format!("not present (watched when it appears): {p}\n"));
        }
        for e in &report.errors {
            text.push_str(&format!("not captured: {e}\n"));
        }
        if report.truncated {
            text.push_str("warning: the entry limit stopped the walk; the baseline is partial\n");
        }
        print_out(&text)?;
    }
    Ok(if report.errors.is_empty() && !report.truncated {
        0
    } else {
        3
    })
}

/// Moves a store that cannot be trusted out of the way, keeping it as evidence.
fn keep_aside(file: &std::path::Path) -> anyhow::Result<()> {
    let aside = file.with_extension(format!("redb.damaged-{}", nodedrift::clock::unix_now()));
    std::fs::rename(file, &aside).with_context(|| format!("moving {} aside", file.display()))?;
    eprintln!("nodedrift: kept the damaged store as {}", aside.display());
    Ok(())
}

fn accept(paths: Vec<PathBuf>, reason: &str, fim: FimArgs) -> anyhow::Result<u8> {
    use nodedrift::files::{self, AcceptError, Store};
    let (host, spec, state) = open_fim(fim)?;
    let store = Store::open(&state.state_dir)?;
    let uid = nix::unistd::getuid().as_raw();
    let by = std::env::var("SUDO_USER")
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
                .ok()
                .flatten()
                .map(|u| u.name)
        })
        .unwrap_or_else(|| format!("uid {uid}"));
    match files::accept(&host, &spec, &store, &paths, reason, (by, uid)) {
        Ok(r) => {
            let mut text = String::new();
            for p in &r.updated {
                text.push_str(&format!("accepted: {p}\n"));
            }
            for p in &r.removed {
                text.push_str(&format!("accepted removal: {p}\n"));
            }
            if r.updated.is_empty() && r.removed.is_empty() {
                text.push_str(
                    "nothing differed from the baseline; recorded the acceptance anyway\n",
                );
            }
            text.push_str(&format!(
                "by {} at {}: {}\ndigest {}\n",
                r.record.by, r.record.at, r.record.reason, r.store.digest
            ));
            print_out(&text)?;
            Ok(0)
        }
        Err(
            e @ (AcceptError::NoReason | AcceptError::NotWatched(_) | AcceptError::Unreadable(_)),
        ) => {
            eprintln!("nodedrift: error: {e}");
            Ok(EXIT_USAGE)
        }
        Err(AcceptError::Store(e)) => Err(e.into()),
    }
}

/// Validates each file as a layer over a profile: over `profile` if given, else over any
/// profile it fits (a file may patch rules only the AKS profiles have).
fn validate(files: &[PathBuf], profile: Option<&str>) -> anyhow::Result<u8> {
    let candidates: Vec<&str> = match profile {
        Some(p) => vec![p],
        None => profiles::NAMES.to_vec(),
    };
    let mut code = 0;
    for file in files {
        let mut fits = Vec::new();
        let mut last_err = None;
        let mut warnings = Vec::new();
        for p in &candidates {
            let mut b = Baseline::profile(p)?;
            let before = b.warnings.len();
            match b.apply_file(file) {
                Ok(()) => {
                    fits.push(*p);
                    warnings = b.warnings.split_off(before);
                }
                Err(e) => last_err = Some(e),
            }
        }
        match (fits.is_empty(), last_err) {
            (false, _) => {
                println!(
                    "{}: valid (layers over {})",
                    file.display(),
                    fits.join(", ")
                );
                for w in warnings {
                    println!("warning: {w}");
                }
            }
            (true, Some(e)) => {
                eprintln!("nodedrift: error: {e}");
                code = EXIT_USAGE;
            }
            (true, None) => {}
        }
    }
    Ok(code)
}

fn policy_table(name: &str, b: &Baseline) -> String {
    use std::fmt::Write as _;
    let mut out = format!(
        "# Policy coverage of profile {name}\n\n| clause | summary | rules |\n|---|---|---|\n"
    );
    let by = b.by_policy();
    for c in baseline::policy::clauses() {
        let rules: Vec<String> = by
            .get(c.id.as_str())
            .into_iter()
            .flatten()
            .map(|r| format!("`{}`", r.id))
            .chain(
                b.files
                    .iter()
                    .filter(|s| s.policy == c.id)
                    .map(|s| format!("`{}` (file integrity)", s.rule_id())),
            )
            .chain(
                nodedrift::report::kube::API_RULES
                    .iter()
                    .filter(|(_, policy)| *policy == c.id)
                    .map(|(id, _)| format!("`{id}` (run, from the API server)")),
            )
            .collect();
        let rules = if rules.is_empty() {
            "— (no rule in this profile)".to_owned()
        } else {
            rules.join(", ")
        };
        let _ = writeln!(out, "| {} | {} | {} |", c.id, c.summary, rules);
    }
    out
}

/// Writes to stdout, treating a closed pipe (`| head`) as success.
fn print_out(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to stdout"),
    }
}
