//! The `leasehold` binary: `leasehold serve` runs the license server (HTTP on embedded
//! defaults, state in a data directory), `leasehold admin` manages a running one through its
//! admin API. The command line is declared here; what each command does is in `cli/`.

mod cli;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Leasehold: a license server and lease engine compatible with the 10Duke licensing APIs.
#[derive(Debug, Parser)]
#[command(name = "leasehold", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the license server until SIGTERM or Ctrl-C.
    Serve(cli::serve::ServeArgs),
    /// Manage a running server through its admin API: licensees, consumers, products, licenses.
    Admin(cli::admin::AdminArgs),
    /// Load-test a Leasehold server and measure the baselines its numbers are compared with.
    #[cfg(feature = "bench")]
    Bench(cli::bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_logging();
    let result = match cli.command {
        Command::Serve(args) => cli::serve::run(args).map_err(|e| e.to_string()),
        // Its own exit codes: 1 when the server refuses, 2 on a usage error (as clap's).
        Command::Admin(args) => return cli::admin::run(args),
        #[cfg(feature = "bench")]
        Command::Bench(args) => cli::bench::run(args).map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("leasehold: {e}");
            ExitCode::FAILURE
        }
    }
}
