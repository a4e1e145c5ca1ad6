//! `filiera`: the service and its operator CLI (SPEC 4.4). This file only parses arguments
//! and configuration and hands over to the subcommand; wiring lives in [`startup`].
//!
//! # Layout
//! - [`settings`]: the typed configuration (file, then `FILIERA_*` environment).
//! - [`startup`]: builds the store and the HTTP app from settings; runs `serve`.
//! - [`telemetry`]: the tracing subscriber.

mod settings;
mod startup;
mod telemetry;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::settings::Settings;

/// filiera: the event-sourced record of labour-inclusion pathways.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// TOML configuration file; `FILIERA_*` environment variables override it.
    #[arg(long, global = true, env = "FILIERA_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP API (embedded SQLite under ./filiera-data unless FILIERA_DATABASE_URL is set).
    Serve,
    /// Apply the database schema and exit.
    Migrate,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load(cli.config.as_deref())?;
    telemetry::init(&settings.log)?;
    match cli.command {
        Command::Serve => startup::serve(settings).await,
        Command::Migrate => startup::migrate(settings).await,
    }
}
