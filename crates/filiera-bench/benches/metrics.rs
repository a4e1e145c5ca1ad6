//! `cargo bench -p filiera-bench`: the metrics benchmark (see the `filiera_bench` crate), with
//! plain `Instant` timings — no harness.
//!
//! Environment: `FILIERA_BENCH_EVENTS` (default 1,000,000), `FILIERA_BENCH_RUNS` (5),
//! `FILIERA_BENCH_STORE_EVENTS` (50,000), `FILIERA_BENCH_CACHE_LOAD` (`1`; `0` skips the full
//! cache load), `FILIERA_BENCH_PG_URL` (an admin URL to measure PostgreSQL too; defaults to
//! `FILIERA_TEST_PG_URL`; `none` skips PostgreSQL).

use filiera_bench::{BenchOptions, bench};

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let defaults = BenchOptions::default();
    let postgres = std::env::var("FILIERA_BENCH_PG_URL")
        .or_else(|_| std::env::var("FILIERA_TEST_PG_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let options = BenchOptions {
        events: env("FILIERA_BENCH_EVENTS", defaults.events),
        runs: env("FILIERA_BENCH_RUNS", defaults.runs),
        store_events: env("FILIERA_BENCH_STORE_EVENTS", defaults.store_events),
        cache_load: env("FILIERA_BENCH_CACHE_LOAD", 1u8) == 1,
        postgres_admin_url: (postgres != "none").then_some(postgres),
        ..defaults
    };
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let report = runtime
        .block_on(bench(&options, |line| eprintln!("bench: {line}")))
        .unwrap_or_else(|error| panic!("benchmark failed: {error:?}"));
    println!("{report}");
}
