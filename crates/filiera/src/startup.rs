//! Wiring: settings in, running service out (zero2prod's `startup.rs`).

use std::sync::Arc;

use anyhow::{Context, bail};
use filiera_auth::{Role, SecretSource, TokenKeys};
use filiera_http::AppState;
use filiera_projections::{ProjectionSettings, Projections};
use filiera_relay::{NatsRelay, NatsUrl, RelaySettings};
use filiera_store::Store;

use crate::settings::Settings;

/// Opens the configured store with its schema up to date: every subcommand starts here.
/// The store creates the embedded data folder itself.
pub async fn open(settings: &Settings) -> anyhow::Result<Store> {
    if settings.database_url.is_none() {
        settings.create_data_dir()?;
    }
    let store = connect(settings).await?;
    migrate_all(&store).await?;
    Ok(store)
}

/// Connects to the configured store as it is, without bringing its schema up to date.
pub async fn connect(settings: &Settings) -> anyhow::Result<Store> {
    Store::connect_with(
        &settings.store_url(),
        settings.services()?,
        settings.database.store_options()?,
    )
    .await
    .context("cannot open the event store")
}

/// Applies every crate's pending migrations: the store's, then those of the crates owning
/// tables of their own in its database.
async fn migrate_all(store: &Store) -> anyhow::Result<()> {
    store.migrate().await.context("migration failed")?;
    let database = store.database();
    filiera_vault::Vault::migrate(&database)
        .await
        .context("migration of the personal-data vault failed")?;
    filiera_projections::migrate(&database)
        .await
        .context("migration of the projections' read model failed")?;
    filiera_relay::migrate(&database)
        .await
        .context("migration of the relay's checkpoints failed")?;
    Ok(())
}

/// Opens the personal-data vault with the configured master key.
pub async fn open_vault(
    settings: &Settings,
    store: &Store,
) -> anyhow::Result<filiera_vault::Vault> {
    let key = settings.master_key()?;
    filiera_vault::Vault::open(store.database(), key)
        .await
        .context("cannot open the personal-data vault")
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

/// The keys of the API's bearer tokens: over `auth_secret` if set, otherwise over the data
/// folder's `auth-secret` file, generated owner-only on first use. The secret is never logged.
pub fn token_keys(settings: &Settings) -> anyhow::Result<(TokenKeys, SecretSource)> {
    if settings.auth_secret.is_none() {
        settings.create_data_dir()?;
    }
    let (secret, source) =
        filiera_auth::load_or_generate(settings.auth_secret.as_ref(), &settings.data_dir)
            .context("cannot read or create the token secret")?;
    let keys = TokenKeys::new(&secret).map_err(|err| match source {
        SecretSource::Configured => anyhow::anyhow!("FILIERA_AUTH_SECRET: {err}"),
        _ => anyhow::anyhow!("the data folder's token secret: {err}"),
    })?;
    Ok((keys, source))
}

/// The command that issues an administrator token with this configuration, as a newcomer
/// would type it.
fn admin_token_command(settings: &Settings, config: Option<&std::path::Path>) -> String {
    let mut command = String::new();
    if settings.data_dir != std::path::Path::new("./filiera-data") && config.is_none() {
        command.push_str(&format!(
            "FILIERA_DATA_DIR={} ",
            settings.data_dir.display()
        ));
    }
    command.push_str("filiera");
    if let Some(config) = config {
        command.push_str(&format!(" --config {}", config.display()));
    }
    command.push_str(" token issue --role administrator --subject \"$USER\"");
    command
}

/// `filiera token issue`: prints one token, signed with the same secret as `serve`.
pub fn issue_token(
    settings: &Settings,
    role: Role,
    territories: &[String],
    subject: Option<String>,
    ttl: std::time::Duration,
) -> anyhow::Result<()> {
    let registry = settings.registry()?;
    let territories = territories
        .iter()
        .map(|code| {
            registry.get(code).with_context(|| {
                format!(
                    "unknown territory `{code}`: the registry of this configuration has no such \
                     code (list them with `GET /v1/territories`)"
                )
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if role == Role::Administrator && !territories.is_empty() {
        bail!("an administrator covers every territory: drop --territory");
    }
    if role.needs_territories() && territories.is_empty() {
        bail!(
            "a {role} token needs at least one --territory CODE (it covers the territories below it too)"
        );
    }
    if ttl.is_zero() {
        bail!("--ttl must be above zero");
    }
    let subject = subject.unwrap_or_else(|| role.as_str().to_owned());
    if subject.trim().is_empty() || subject.chars().any(char::is_control) {
        bail!("--subject must be a visible name");
    }
    let (keys, source) = token_keys(settings)?;
    if let SecretSource::Generated(path) = &source {
        eprintln!(
            "filiera: generated a new token secret in {}",
            path.display()
        );
    }
    let token = keys
        .issue(&subject, role, &territories, ttl)
        .context("cannot sign the token")?;
    println!("{token}");
    Ok(())
}

/// `filiera keys rotate`
pub async fn rotate_master_key(
    settings: Settings,
    new_key_file: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let store = open(&settings).await?;
    let database = store.database();
    let rotation = match (&settings.master_key, new_key_file) {
        (Some(_), Some(file)) => {
            let old = settings.master_key()?;
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let new = filiera_vault::MasterKey::from_base64(text.trim())
                .context("the new key must be 32 bytes in standard base64")?;
            filiera_vault::Vault::rotate(&database, &old, &new).await?
        }
        (Some(_), None) => {
            bail!("FILIERA_MASTER_KEY is set: give the new key with --new-key-file FILE")
        }
        (None, Some(_)) => bail!(
            "--new-key-file is for a configured FILIERA_MASTER_KEY; the embedded key file is \
             rotated by generating a new key"
        ),
        (None, None) => {
            let path = settings.data_dir.join("master.key");
            filiera_vault::Vault::rotate_key_file(&database, &path).await?
        }
    };
    println!(
        "{}",
        serde_json::json!({"version": rotation.version, "data_keys": rotation.data_keys})
    );
    Ok(())
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

/// `filiera generate`
pub async fn generate(
    settings: Settings,
    events: usize,
    seed: u64,
    output: Option<std::path::PathBuf>,
    bench_territories: bool,
) -> anyhow::Result<()> {
    use filiera_bench::generate::{Territories, generate};
    let services = settings.services()?;
    let territories = if bench_territories {
        Territories::Bench
    } else {
        Territories::leaves_of(&services.territories)
    };
    let histories = generate(events, seed, &services, &territories).await;
    let lines = match output {
        Some(path) => {
            let file = std::fs::File::create(&path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            crate::transfer::write_generated(&histories, std::io::BufWriter::new(file))?
        }
        None => crate::transfer::write_generated(&histories, std::io::stdout().lock())?,
    };
    let generated: usize = histories.iter().map(|h| h.events.len()).sum();
    tracing::info!(
        lines,
        events = generated,
        beneficiaries = histories.len(),
        seed,
        "generated"
    );
    Ok(())
}

/// `filiera export`
pub async fn export(
    settings: Settings,
    format: crate::mining::ExportFormat,
    after: i64,
    scope: filiera_contract::MetricsParams,
    output: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    use crate::mining::{self, ExportFormat};
    let scoped = scope.territory.is_some()
        || scope.from.is_some()
        || scope.to.is_some()
        || scope.known_at.is_some();
    match format {
        ExportFormat::Ndjson if scoped => anyhow::bail!(
            "--territory, --from, --to and --known-at choose the events of `--format ocel2` \
             or `--format xes`; the NDJSON export holds every stored event"
        ),
        ExportFormat::Ocel2 | ExportFormat::Xes if after != 0 => anyhow::bail!(
            "--after applies to the NDJSON export; OCEL 2.0 and XES take a report's scope \
             (--territory, --from, --to, --known-at)"
        ),
        _ => {}
    }
    let store = open(&settings).await?;
    let services = store.services();
    // The scope is checked before the output file is created.
    let query = match format {
        ExportFormat::Ndjson => None,
        ExportFormat::Ocel2 | ExportFormat::Xes => {
            let threshold = settings.audit.reiteration_threshold;
            let query = scope
                .into_query(&services.territories, threshold, chrono::Utc::now())
                .map_err(|refused| anyhow::anyhow!(refused.to_string()))?;
            Some(query)
        }
    };
    let out: Box<dyn std::io::Write> = match output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(&path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    let written = match query {
        None => crate::transfer::export(&store, after, out).await?,
        Some(query) => {
            let log_scope = filiera_domain::metrics::LogScope::new(
                query.territory.as_ref(),
                &services.territories,
            );
            let streams = mining::Streams::load(&store).await?;
            let written = if format == ExportFormat::Ocel2 {
                let context = mining::ExportContext {
                    catalogue: &services.catalogue,
                    providers: &services.providers,
                };
                mining::write_ocel2(&streams, &query, &log_scope, &context, out)?
            } else {
                mining::write_xes(&streams, &query, &log_scope, out)?
            };
            written as u64
        }
    };
    tracing::info!(events = written, "export finished");
    Ok(())
}

/// What `filiera report` prints: the document of `GET /v1/metrics`, `…/series`,
/// `…/breakdown` or `GET /v1/providers/scorecard` for the same options.
pub enum ReportKind {
    Metrics(filiera_contract::MetricsParams),
    Series(filiera_contract::SeriesParams),
    Breakdown(filiera_contract::BreakdownParams),
    Providers(filiera_contract::MetricsParams),
    /// The printable regional report (HTML).
    Regional(filiera_contract::RegionalReportParams),
}

/// `filiera report`
pub async fn report(
    settings: Settings,
    kind: ReportKind,
    format: crate::ReportFormat,
    output: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    use filiera_domain::metrics;
    let store = open(&settings).await?;
    let services = store.services();
    let registry = &services.territories;
    let threshold = settings.audit.reiteration_threshold;
    let now = chrono::Utc::now();
    let refused = |refused: filiera_contract::QueryError| anyhow::anyhow!(refused.to_string());
    let json = crate::ReportFormat::Json == format;
    let text = match kind {
        ReportKind::Metrics(params) => {
            let query = params
                .into_query(registry, threshold, now)
                .map_err(refused)?;
            let metrics = filiera_projections::replay_report(&store, &query).await?;
            match json {
                true => serde_json::to_string_pretty(&metrics)? + "\n",
                false => metrics::metrics_to_csv(&metrics),
            }
        }
        ReportKind::Series(params) => {
            let query = params
                .into_query(registry, threshold, now)
                .map_err(refused)?;
            let series = filiera_projections::replay_series(&store, &query).await?;
            match json {
                true => serde_json::to_string_pretty(&series)? + "\n",
                false => metrics::series_to_csv(&series),
            }
        }
        ReportKind::Breakdown(params) => {
            let query = params
                .into_query(registry, threshold, now)
                .map_err(refused)?;
            let breakdown = filiera_projections::replay_breakdown(&store, &query).await?;
            match json {
                true => serde_json::to_string_pretty(&breakdown)? + "\n",
                false => metrics::breakdown_to_csv(&breakdown),
            }
        }
        ReportKind::Providers(params) => {
            let query = params
                .into_query(registry, threshold, now)
                .map_err(refused)?;
            let scorecard = filiera_projections::replay_scorecard(&store, &query).await?;
            match json {
                true => {
                    serde_json::to_string_pretty(&scorecard)?
                        + "
"
                }
                false => metrics::scorecard_to_csv(&scorecard),
            }
        }
        ReportKind::Regional(params) => {
            let (query, lang) = params
                .into_query(registry, threshold, now)
                .map_err(refused)?;
            let snapshot = filiera_projections::replay_regional(&store, &query).await?;
            filiera_report::render_regional(&filiera_report::RegionalReport {
                documents: &snapshot.documents,
                data_as_of: filiera_report::DataAsOf {
                    position: snapshot.position,
                    recorded_at: snapshot.recorded_at,
                },
                catalogue: &services.catalogue,
                registry,
                lang,
            })
        }
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
pub async fn serve(settings: Settings, config: Option<&std::path::Path>) -> anyhow::Result<()> {
    let addr = settings.listen_addr()?;
    let serve_settings = settings.http.serve_settings()?;
    let (keys, source) = token_keys(&settings)?;
    match &source {
        SecretSource::Generated(path) => {
            tracing::info!(file = %path.display(), "generated the token secret (owner-only)");
            // Not a log line: the first thing a newcomer needs, whatever FILIERA_LOG says.
            eprintln!(
                "\nfiliera: every API call needs a bearer token. Issue an administrator's \
                 token with:\n\n    {}\n\nthen send it as `Authorization: Bearer <token>` \
                 (docs/security.md).\n",
                admin_token_command(&settings, config)
            );
        }
        SecretSource::File(_) | SecretSource::Configured => {}
    }
    if settings.database_url.is_some() && source != SecretSource::Configured {
        tracing::warn!(
            "FILIERA_AUTH_SECRET is not set: tokens are signed with this data folder's secret; \
             replicas sharing the database must share the secret (set FILIERA_AUTH_SECRET)"
        );
    }
    let store = open(&settings).await?;
    let projections = start_projections(&settings, &store).await?;
    let vault = open_vault(&settings, &store).await?;
    let mut state =
        AppState::new(Arc::new(store.clone()), projections.clone(), keys).with_vault(vault);
    let relay = match &settings.nats_url {
        Some(url) => {
            let settings = RelaySettings::new(NatsUrl::from(url.clone()));
            let relay = NatsRelay::start(store.clone(), settings, &state.registry)
                .await
                .context("cannot start the NATS relay")?;
            // Like the database URL, the NATS URL is not logged: it may carry a password.
            tracing::info!("NATS relay started");
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
