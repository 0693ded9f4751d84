//! The `nodedrift` command: parse the command line, set up logging, run, map the outcome to an
//! exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use nodedrift::host::HostRoot;
use nodedrift::inspect;

#[derive(Debug, Parser)]
#[command(name = "nodedrift", version, about = "Detects drift of a Kubernetes node from its supported baseline")]
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

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the facts the inspectors gather, as JSON.
    Inspect {
        /// Only this component.
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(inspect::names().collect::<Vec<_>>()))]
        component: Option<String>,
        #[command(flatten)]
        host: HostArgs,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("nodedrift: error: {e:#}");
            ExitCode::from(70)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Inspect { component, host } => {
            let host = HostRoot::new(&host.host_root)?;
            let only: Vec<&str> = component.iter().map(String::as_str).collect();
            let facts = inspect::inspect(&host, &inspect::Options::default(), &only);
            println!("{}", serde_json::to_string_pretty(&facts.components)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}
