//! Logs: `tracing` to standard error, filtered by `FILIERA_LOG`.

use anyhow::Context;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber with the given filter (e.g. `info,sqlx=warn`).
pub fn init(filter: &str) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(filter)
        .with_context(|| format!("FILIERA_LOG `{filter}` is not a valid tracing filter"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    Ok(())
}
