//! Wiring: settings in, running service out (zero2prod's `startup.rs`).

use std::sync::Arc;

use anyhow::Context;
use filiera_http::AppState;
use filiera_store::Store;

use crate::settings::Settings;

/// Connects to the configured store (creating the embedded data folder if needed).
pub async fn connect(settings: &Settings) -> anyhow::Result<Store> {
    if settings.database_url.is_none() {
        std::fs::create_dir_all(&settings.data_dir).with_context(|| {
            format!(
                "cannot create the data folder {}",
                settings.data_dir.display()
            )
        })?;
    }
    let store = Store::connect(&settings.store_url(), settings.services()?)
        .await
        .context("cannot open the event store")?;
    Ok(store)
}

/// `filiera migrate`
pub async fn migrate(settings: Settings) -> anyhow::Result<()> {
    let store = connect(&settings).await?;
    store.migrate().await.context("migration failed")?;
    tracing::info!(store = store.backend_name(), "schema is up to date");
    Ok(())
}

/// `filiera import FILE`
pub async fn import(
    settings: Settings,
    file: &std::path::Path,
    batch: Option<String>,
    keep_going: bool,
) -> anyhow::Result<()> {
    let store = connect(&settings).await?;
    store.migrate().await.context("migration failed")?;
    let batch = batch.unwrap_or_else(|| {
        file.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "stdin".into())
    });
    let input: Box<dyn std::io::BufRead> = if file.as_os_str() == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?,
        ))
    };
    let summary =
        crate::transfer::import(&store, input, &batch, keep_going, std::io::stderr()).await?;
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}

/// `filiera export`
pub async fn export(
    settings: Settings,
    after: i64,
    output: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let store = connect(&settings).await?;
    store.migrate().await.context("migration failed")?;
    let written = match output {
        Some(path) => {
            let file = std::fs::File::create(&path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            crate::transfer::export(&store, after, std::io::BufWriter::new(file)).await?
        }
        None => crate::transfer::export(&store, after, std::io::stdout().lock()).await?,
    };
    tracing::info!(events = written, "export finished");
    Ok(())
}

/// `filiera serve`
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let addr = settings.listen_addr()?;
    if let Some(nats) = &settings.nats_url {
        tracing::warn!(nats = %nats, "FILIERA_NATS_URL is set but this build has no relay yet");
    }
    let store = connect(&settings).await?;
    store.migrate().await.context("migration failed")?;
    let state = AppState::new(Arc::new(store));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!(
        address = %listener.local_addr()?,
        store = state.store.backend_name(),
        "filiera is listening"
    );
    filiera_http::serve(listener, filiera_http::router(state), shutdown_signal()).await?;
    tracing::info!("filiera stopped");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
