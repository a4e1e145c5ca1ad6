//! Wiring: settings in, running service out (zero2prod's `startup.rs`).

use std::sync::Arc;

use anyhow::Context;
use filiera_http::AppState;
use filiera_projections::{ProjectionSettings, Projections};
use filiera_relay::{NatsRelay, RelaySettings};
use filiera_store::Store;

use crate::settings::Settings;

/// Opens the configured store with its schema up to date: every subcommand starts here.
/// The store creates the embedded data folder itself.
pub async fn open(settings: &Settings) -> anyhow::Result<Store> {
    let store = Store::connect_with(
        &settings.store_url(),
        settings.services()?,
        settings.database.store_options()?,
    )
    .await
    .context("cannot open the event store")?;
    store.migrate().await.context("migration failed")?;
    Ok(store)
}

/// The projection settings of this configuration.
pub fn projection_settings(settings: &Settings, store: &Store) -> ProjectionSettings {
    ProjectionSettings::from_services(store.services(), settings.audit.reiteration_threshold)
}

/// Starts the projection runner (it leads or waits to lead) and the query cache.
pub async fn start_projections(settings: &Settings, store: &Store) -> anyhow::Result<Projections> {
    Projections::start(store.clone(), projection_settings(settings, store))
        .await
        .context("cannot start the projections")
}

/// `filiera migrate`
pub async fn migrate(settings: Settings) -> anyhow::Result<()> {
    let store = open(&settings).await?;
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
    let store = open(&settings).await?;
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
    let store = open(&settings).await?;
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

/// `filiera report`
pub async fn report(
    settings: Settings,
    params: filiera_http::reports::MetricsParams,
    format: crate::ReportFormat,
    output: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let store = open(&settings).await?;
    let query = params
        .into_query(
            &store.services().territories,
            settings.audit.reiteration_threshold,
            chrono::Utc::now(),
        )
        .map_err(|problem| anyhow::anyhow!(problem.detail().to_owned()))?;
    let metrics = filiera_projections::replay_report(&store, &query).await?;
    let text = match format {
        crate::ReportFormat::Json => serde_json::to_string_pretty(&metrics)? + "\n",
        crate::ReportFormat::Csv => filiera_domain::metrics::metrics_to_csv(&metrics),
    };
    match output {
        Some(path) => std::fs::write(&path, text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => {
            use std::io::Write;
            std::io::stdout().write_all(text.as_bytes())?;
        }
    }
    Ok(())
}

/// `filiera rebuild`
pub async fn rebuild(settings: Settings, projection: &str) -> anyhow::Result<()> {
    let store = open(&settings).await?;
    let outcome = filiera_projections::rebuild_until_swapped(
        &store,
        &projection_settings(&settings, &store),
        projection,
        |progress| {
            tracing::info!(
                projection = %progress.name,
                generation = progress.generation,
                position = progress.position,
                head = progress.head,
                "rebuilding"
            );
        },
    )
    .await?;
    println!("{}", serde_json::to_string(&outcome)?);
    Ok(())
}

/// `filiera serve`
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let addr = settings.listen_addr()?;
    let serve_settings = settings.http.serve_settings()?;
    let store = open(&settings).await?;
    let projections = start_projections(&settings, &store).await?;
    let mut state = AppState::new(Arc::new(store.clone()), projections.clone());
    let relay = match &settings.nats_url {
        Some(url) => {
            let relay = NatsRelay::start(store.clone(), RelaySettings::new(url), &state.registry)
                .await
                .context("cannot start the NATS relay")?;
            tracing::info!(nats = %url, "NATS relay started");
            state = state.with_relay(relay.clone());
            Some(relay)
        }
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!(
        address = %listener.local_addr()?,
        store = state.store.backend_name(),
        "filiera is listening"
    );
    filiera_http::serve_with(listener, state, serve_settings, shutdown_signal()).await?;
    if let Some(relay) = relay {
        relay.shutdown().await;
    }
    projections.shutdown().await;
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
