//! `nexa-agent` entry point: parse, set up logging, run on a single-threaded runtime.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use nexa_agent::cli::{Cli, run};
use nexa_agent::error::exit;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(run(cli)),
        Err(e) => {
            eprintln!("nexa-agent: cannot start the async runtime: {e}");
            ExitCode::from(exit::FAILURE)
        }
    }
}
