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

/// `filiera serve`
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let addr = settings.listen_addr()?;
    if let Some(nats) = &settings.nats_url {
        tracing::warn!(nats = %nats, "FILIERA_NATS_URL is set but this build has no relay yet");
    }
    let store = connect(&settings).await?;
    store.migrate().await.context("migration failed")?;
    let state = AppState {
        store: Arc::new(store),
    };
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
