//! `filiera`: the service and its operator CLI (SPEC 4.4). This file only parses arguments
//! and configuration and hands over to the subcommand; wiring lives in [`startup`].
//!
//! # Layout
//! - [`backup`]: `backup`, a consistent copy of the embedded store as a data folder.
//! - [`settings`]: the typed configuration (file, then `FILIERA_*` environment).
//! - [`check`]: `check-config`, validating a configuration and printing it, secrets redacted.
//! - [`startup`]: builds the store and the HTTP app from settings; runs `serve`.
//! - [`tail`]: `tail`, following the feed over HTTP (with a bearer token) or NATS.
//! - [`telemetry`]: the tracing subscriber.
//! - [`transfer`]: `import` of legacy NDJSON commands and `export` of NDJSON events.
//! - [`mining`]: `export --format ocel2|xes`, the process-mining event logs.

mod backup;
mod check;
mod mining;
mod settings;
mod startup;
mod tail;
mod telemetry;
mod transfer;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::settings::Settings;

/// The command line: `about` and `long_about` are what `filiera --help` opens with.
#[derive(Debug, Parser)]
#[command(version, about = ABOUT, long_about = LONG_ABOUT)]
struct Cli {
    /// TOML configuration file; FILIERA_* environment variables override it.
    #[arg(long, global = true, env = "FILIERA_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// The one-line summary of `filiera -h`.
const ABOUT: &str = "Record labour-inclusion pathways as events and report on them by territory";

/// `filiera --help`: what the tool is and the commands of a first day with it.
const LONG_ABOUT: &str = "\
Record labour-inclusion pathways as events and report on them by territory.

filiera keeps every step of a beneficiary's pathway (enrolment, stages, exits, closure) as an
immutable event, and answers metrics for any territory and period, as known at any moment.

Everyday commands:
  filiera serve                          run the HTTP API (embedded store in ./filiera-data)
  filiera token issue --role evaluator   print a bearer token for the API
  filiera report --territory LOM         print a territory's metrics (JSON or CSV), offline
  filiera import FILE                    load legacy history (NDJSON commands)
  filiera export --format xes            export the events for process-mining tools
  filiera backup DEST                    copy the embedded store (and its keys) while it runs
  filiera check-config                   validate the configuration, print it (secrets hidden)

Run 'filiera help COMMAND' for the options of a command.";

/// The scope of an offline report or event log: the query of `GET /v1/metrics`.
#[derive(Debug, clap::Args)]
struct Scope {
    /// Territory code (descendants included); omitted: everything.
    #[arg(long)]
    territory: Option<String>,
    /// First day of the period, YYYY-MM-DD (default 2000-01-01).
    #[arg(long)]
    from: Option<String>,
    /// Last day of the period, YYYY-MM-DD (default today, UTC).
    #[arg(long)]
    to: Option<String>,
    /// As known at this RFC 3339 instant, or the end of this UTC day (default now).
    #[arg(long)]
    known_at: Option<String>,
}

impl Scope {
    /// The query of `GET /v1/reports/regional` over this scope.
    fn regional(
        self,
        lang: filiera_contract::ReportLang,
    ) -> filiera_contract::RegionalReportParams {
        let Self {
            territory,
            from,
            to,
            known_at,
        } = self;
        filiera_contract::RegionalReportParams {
            territory,
            from,
            to,
            known_at,
            lang: Some(lang),
        }
    }

    /// The query of `GET /v1/metrics/series` over this scope.
    fn series(self, interval: String) -> filiera_contract::SeriesParams {
        let Self {
            territory,
            from,
            to,
            known_at,
        } = self;
        filiera_contract::SeriesParams {
            territory,
            from,
            to,
            known_at,
            interval: Some(interval),
        }
    }
}

impl From<Scope> for filiera_contract::MetricsParams {
    fn from(scope: Scope) -> Self {
        let Scope {
            territory,
            from,
            to,
            known_at,
        } = scope;
        Self {
            territory,
            from,
            to,
            known_at,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP API.
    ///
    /// The store is embedded SQLite under ./filiera-data unless FILIERA_DATABASE_URL is set
    /// (a missing PostgreSQL database is created when the role may). Every API call but the health checks needs a bearer token: see `filiera token issue`.
    Serve,
    /// Apply the database schema and exit.
    Migrate,
    /// Copy the embedded store, while it runs, into a new data folder.
    ///
    /// Local administrator tool. DEST (a new or empty folder) receives a consistent copy of
    /// `filiera.db` (events, vault, read model, checkpoints, as of one moment) and the data
    /// folder's `master.key` and `auth-secret`, all owner-only. Prints the feed position the
    /// copy holds. To restore, stop `serve` and point FILIERA_DATA_DIR at the backup folder
    /// (or a copy of it). PostgreSQL stores are backed up with pg_dump or a base backup.
    Backup {
        /// The backup folder to create.
        dest: PathBuf,
    },
    /// Validate the configuration and show it, secrets hidden.
    ///
    /// Reads the --config file and the FILIERA_* environment exactly as `serve` does, checks
    /// every value (addresses, durations, the stage catalogue, the territory and provider
    /// registries, the token secret's length, the master key, the database and NATS URLs, the
    /// log filter) and prints what `serve` would run with: every setting, the store, and
    /// whether the NATS relay runs; the database and NATS passwords, the token secret and the
    /// master key are never shown. Exits non-zero naming the setting at fault, or naming any
    /// FILIERA_* variable that filiera does not read (a typo such as FILIERA_DATABSE_URL, which
    /// `serve` ignores with a warning). Connects to nothing and writes nothing.
    CheckConfig {
        /// Print the report as one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Import legacy history (NDJSON commands) into the store.
    ///
    /// Local administrator tool (works on the store directly, without the API's tokens and
    /// roles: run it only where an administrator may). Import legacy history: NDJSON, one
    /// command per line,
    /// `{"beneficiary": REF, "command": "enrol"|"stage"|"exit"|"territory"|"close"|"reopen"|"assess"|"undo", ...API body}`.
    /// Re-running the same file (same batch) writes nothing new.
    Import {
        /// The NDJSON file, or `-` for standard input.
        file: PathBuf,
        /// Name of this import; keys its idempotency (default: the file name).
        #[arg(long)]
        batch: Option<String>,
        /// Report refused lines and go on, instead of stopping at the first one.
        #[arg(long)]
        keep_going: bool,
    },
    /// Print a territory's metrics (JSON or CSV), replayed offline from the store.
    ///
    /// Local administrator tool (reads the store directly, without the API's tokens and roles).
    /// Offline regional report: replay the store directly (no server needed) and print the
    /// metrics document of `GET /v1/metrics` for the same options.
    Report {
        #[command(flatten)]
        scope: Scope,
        /// `json` (the API document), `csv` (one `metric,value` row per figure; with
        /// `--series`, `from,to,metric,value`; with `--breakdown`, `territory,metric,value`;
        /// with `--providers`, `provider,metric,value`) or `html`: the printable regional
        /// report of `GET /v1/reports/regional` (figures, children, monthly series, audit
        /// summary, methods; one self-contained page to print to PDF).
        #[arg(long, value_enum, default_value_t = ReportFormat::Json)]
        format: ReportFormat,
        /// The language of `--format html`: `it` (the default) or `en`.
        #[arg(long, default_value = "it")]
        lang: filiera_contract::ReportLang,
        /// The document of `GET /v1/metrics/series` instead: one point per calendar month
        /// (`month`, the only interval) of the period, at most 120.
        #[arg(long, value_name = "INTERVAL", conflicts_with_all = ["breakdown", "providers"])]
        series: Option<String>,
        /// The document of `GET /v1/metrics/breakdown` instead: one item per direct child of
        /// `--territory` (of the roots when omitted).
        #[arg(long, conflicts_with = "providers")]
        breakdown: bool,
        /// The document of `GET /v1/providers/scorecard` instead: one item per provider with
        /// an episode in scope.
        #[arg(long)]
        providers: bool,
        /// Output file (default: standard output).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Rebuild a projection and swap it in.
    ///
    /// Local administrator tool (works on the store directly, without the API's tokens and
    /// roles). Rebuild a projection into a new generation and swap it in; queries of running
    /// servers keep answering from the current one meanwhile.
    Rebuild {
        /// The projection (default: territory_metrics).
        #[arg(default_value = "territory_metrics")]
        projection: String,
    },
    /// Follow the events as they are stored, one JSON line each.
    ///
    /// Over HTTP from a running
    /// server (server-sent events; territory includes descendants), or with `--nats` from
    /// the JetStream stream (CloudEvents; exact territory code).
    Tail {
        /// Read from NATS JetStream instead of the HTTP feed.
        #[arg(long)]
        nats: bool,
        /// Server base URL (default: http://FILIERA_LISTEN) or, with --nats, the NATS URL
        /// (default: FILIERA_NATS_URL).
        #[arg(long)]
        url: Option<String>,
        /// Only this territory's events.
        #[arg(long)]
        territory: Option<String>,
        /// Only this event type (StageEntered or stage_entered).
        #[arg(long = "type")]
        event_type: Option<String>,
        /// HTTP: start after this global position (default: from the beginning).
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// NATS: a durable consumer name, to resume where the last tail with it stopped.
        #[arg(long)]
        durable: Option<String>,
        /// HTTP: the bearer token (a subscriber's or an administrator's, from
        /// `filiera token issue`); sent as `Authorization: Bearer`.
        #[arg(long, env = "FILIERA_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Issue bearer tokens for the API.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Rotate the personal-data vault's master key.
    ///
    /// The personal-data vault's master key (a local administrator tool: stop `serve` first).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Measure the read model and the binary's throughput on real stores.
    ///
    /// Measure the read model: region-wide metrics over generated histories, the naive
    /// replay baseline, the runner's catch-up and the cache load on real stores. Prints a
    /// Markdown report (see docs/performance.md). With --json: runs this binary's import,
    /// report, rebuild and serve (HTTP queries and writes) on one store — PostgreSQL with
    /// --postgres-admin-url, else SQLite — and prints one JSON document, every throughput beside
    /// a raw baseline of the same run.
    Bench {
        /// Events generated for the in-memory measurements.
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
        /// Runs per measurement (the median is reported).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Events written through each real store for the runner figures (0: skip).
        #[arg(long, default_value_t = 50_000)]
        store_events: usize,
        /// Also measure PostgreSQL: a scratch database is created through this admin URL.
        #[arg(long)]
        postgres_admin_url: Option<String>,
        /// Skip the full cache load measurement.
        #[arg(long)]
        no_cache_load: bool,
        /// Seed of the history generator.
        #[arg(long, default_value_t = 20_250_630)]
        seed: u64,
        /// Commands written through the store for the write-path figures (0: skip).
        #[arg(long, default_value_t = 4_000)]
        write_commands: usize,
        /// Print the scenarios (ingest, import, replay, rebuild, query, memory) as one JSON
        /// document instead.
        #[arg(long)]
        json: bool,
        /// With --json: concurrent HTTP clients of the ingest scenario.
        #[arg(long, default_value_t = 32)]
        clients: usize,
        /// With --json: commands sent by the ingest scenario.
        #[arg(long, default_value_t = 9_600)]
        ingest_commands: usize,
        /// With --json: timed runs of each query.
        #[arg(long, default_value_t = 100)]
        query_runs: usize,
        /// With --json: run the system with `[database] group_commit = false`, every command
        /// its own transaction (the alternative ADR 0011 measures).
        #[arg(long)]
        no_group_commit: bool,
    },
    /// Export the events: NDJSON, or OCEL 2.0 and XES for process mining.
    ///
    /// Local administrator tool (reads the store directly, without the API's tokens and roles:
    /// the export holds every beneficiary's history). Export every event as NDJSON (the
    /// `GET /v1/events` item shape), in feed order; or, with `--format ocel2` or `xes`, the
    /// event log of a report's scope for process-mining tools (docs/process-mining.md).
    Export {
        /// `ndjson` (every stored event), `ocel2` (OCEL 2.0 JSON) or `xes` (IEEE 1849 XES).
        #[arg(long, value_enum, default_value_t = mining::ExportFormat::Ndjson)]
        format: mining::ExportFormat,
        /// NDJSON: only events after this global position.
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// OCEL 2.0 and XES only: the scope of the event log, as for `report`.
        #[command(flatten)]
        scope: Scope,
        /// Output file (default: standard output).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Generate realistic histories as an import file.
    ///
    /// The file is NDJSON, the format `import` reads:
    /// enrolments in the configured territories (those without children), moves through the
    /// configured stages with progressions, reiterations and regressions, assessments,
    /// transfers, closures, reopenings and undos, each command decided by the pathway rules.
    /// The same seed gives the same file. Reads no database.
    Generate {
        /// About this many events (whole histories: a little over).
        #[arg(long, default_value_t = 100_000)]
        events: usize,
        /// Seed of the generator.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output file (default: standard output).
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Enrol in the benchmark's territories (the sample registry's, mostly Lombardia, and
        /// a synthetic region `SYN` of 600 ambiti) rather than the configured ones; the
        /// configuration must hold them (`filiera bench --json` writes one that does).
        #[arg(long, hide = true)]
        bench_territories: bool,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Print one token, signed with the secret `serve` uses (FILIERA_AUTH_SECRET, or the data
    /// folder's `auth-secret`). Roles: operator and subscriber need --territory; an evaluator
    /// without --territory reads every territory's aggregates; an administrator covers all.
    Issue {
        /// operator, evaluator, subscriber or administrator.
        #[arg(long)]
        role: filiera_auth::Role,
        /// A territory code of the registry (covers the territories below it); repeatable.
        #[arg(long = "territory")]
        territories: Vec<String>,
        /// Who holds the token, recorded with every command it sends (default: the role).
        #[arg(long)]
        subject: Option<String>,
        /// How long the token is valid, e.g. `8h` (a working day, the default, for people),
        /// `30d` for a service (then issue the next one before it expires).
        #[arg(long, default_value = "8h", value_parser = humantime::parse_duration)]
        ttl: std::time::Duration,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Re-wrap every data key (and the blind-index key) with a new master key, in one
    /// transaction; events and ciphertexts are untouched. Embedded (no FILIERA_MASTER_KEY): a
    /// new key is generated into the data folder's `master.key`. With FILIERA_MASTER_KEY (the
    /// key in force): give the new one with --new-key-file, then restart every replica with it.
    Rotate {
        /// A file holding the new master key, 32 bytes in standard base64.
        #[arg(long)]
        new_key_file: Option<std::path::PathBuf>,
    },
}

/// Output formats of `filiera report`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Json,
    Csv,
    /// The printable regional report.
    Html,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::CheckConfig { json } = cli.command {
        return check::run(cli.config.as_deref(), json);
    }
    let settings = Settings::load(cli.config.as_deref())?;
    let _telemetry = telemetry::init(&settings.log, settings.otlp_endpoint.as_deref())?;
    for unknown in settings::unknown_environment() {
        tracing::warn!("{unknown}: ignored (see `filiera check-config`)");
    }
    match cli.command {
        Command::CheckConfig { .. } => unreachable!("handled before the settings are loaded"),
        Command::Serve => startup::serve(settings, cli.config.as_deref()).await,
        Command::Token {
            command:
                TokenCommand::Issue {
                    role,
                    territories,
                    subject,
                    ttl,
                },
        } => startup::issue_token(&settings, role, &territories, subject, ttl),
        Command::Migrate => startup::migrate(settings).await,
        Command::Backup { dest } => backup::backup(settings, &dest).await,
        Command::Keys {
            command: KeysCommand::Rotate { new_key_file },
        } => startup::rotate_master_key(settings, new_key_file.as_deref()).await,
        Command::Import {
            file,
            batch,
            keep_going,
        } => startup::import(settings, &file, batch, keep_going).await,
        Command::Export {
            format,
            after,
            scope,
            output,
        } => startup::export(settings, format, after, scope.into(), output).await,
        Command::Generate {
            events,
            seed,
            output,
            bench_territories,
        } => startup::generate(settings, events, seed, output, bench_territories).await,
        Command::Report {
            scope,
            format,
            lang,
            output,
            series,
            breakdown,
            providers,
        } => {
            let kind = if format == ReportFormat::Html {
                if series.is_some() || breakdown || providers {
                    anyhow::bail!(
                        "--format html prints the regional report, which holds the series \
                         and the breakdown: leave out --series, --breakdown and --providers"
                    );
                }
                startup::ReportKind::Regional(scope.regional(lang))
            } else if let Some(interval) = series {
                startup::ReportKind::Series(scope.series(interval))
            } else {
                let params = filiera_contract::MetricsParams::from(scope);
                if breakdown {
                    startup::ReportKind::Breakdown(params)
                } else if providers {
                    startup::ReportKind::Providers(params)
                } else {
                    startup::ReportKind::Metrics(params)
                }
            };
            startup::report(settings, kind, format, output).await
        }
        Command::Rebuild { projection } => startup::rebuild(settings, &projection).await,
        Command::Bench {
            events,
            postgres_admin_url,
            seed,
            json: true,
            clients,
            ingest_commands,
            query_runs,
            no_group_commit,
            ..
        } => {
            let options = filiera_bench::scenarios::ScenarioOptions {
                exe: std::env::current_exe()?,
                events,
                seed,
                postgres_admin_url,
                clients,
                ingest_commands,
                query_runs,
                group_commit: !no_group_commit,
            };
            let report = filiera_bench::scenarios::scenarios(&options, |line| {
                tracing::info!("{line}");
            })
            .await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
        Command::Bench {
            events,
            runs,
            store_events,
            postgres_admin_url,
            no_cache_load,
            seed,
            write_commands,
            ..
        } => {
            let options = filiera_bench::BenchOptions {
                events,
                runs,
                store_events,
                sqlite: true,
                postgres_admin_url,
                cache_load: !no_cache_load,
                seed,
                write_commands,
            };
            let report = filiera_bench::bench(&options, |line| {
                tracing::info!("{line}");
            })
            .await?;
            println!("{report}");
            Ok(())
        }
        Command::Tail {
            nats,
            url,
            territory,
            event_type,
            after,
            durable,
            token,
        } => {
            let url = match (url, nats) {
                (Some(url), _) => url,
                (None, true) => settings
                    .nats_url
                    .as_ref()
                    .map(|url| secrecy::ExposeSecret::expose_secret(url).to_owned())
                    .ok_or_else(|| anyhow::anyhow!("give --url or set FILIERA_NATS_URL"))?,
                (None, false) => format!("http://{}", settings.listen),
            };
            tail::tail(tail::TailArgs {
                url,
                nats,
                territory,
                event_type,
                after,
                durable,
                token,
            })
            .await
        }
    }
}
