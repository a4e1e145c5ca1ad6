//! Timing (medians of several runs), the machine the figures come from, and the Markdown
//! report.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use filiera_domain::{TerritoryCode, Timeline};

use crate::{BenchLine, BenchReport, Machine};

/// Durations of several runs of one measurement.
pub(crate) struct Timing {
    pub(crate) median: Duration,
    min: Duration,
    max: Duration,
    runs: usize,
}

impl Timing {
    pub(crate) fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        let n = samples.len().max(1);
        let median = if samples.is_empty() {
            Duration::ZERO
        } else if n % 2 == 1 {
            samples[n / 2]
        } else {
            (samples[n / 2 - 1] + samples[n / 2]) / 2
        };
        Self {
            median,
            min: samples.first().copied().unwrap_or_default(),
            max: samples.last().copied().unwrap_or_default(),
            runs: samples.len(),
        }
    }

    pub(crate) fn line(&self, name: &str, note: String) -> BenchLine {
        let ms = |d: Duration| (d.as_secs_f64() * 1e5).round() / 100.0;
        BenchLine {
            name: name.to_owned(),
            median_ms: ms(self.median),
            min_ms: ms(self.min),
            max_ms: ms(self.max),
            runs: self.runs,
            note,
        }
    }
}

/// Runs `f` `runs` times; returns the timing and the last result.
pub(crate) fn measure<T>(runs: usize, mut f: impl FnMut() -> T) -> (Timing, T) {
    let mut samples = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        let result = std::hint::black_box(f());
        samples.push(started.elapsed());
        last = Some(result);
    }
    (Timing::of(samples), last.expect("at least one run"))
}

pub(crate) fn per_second(count: usize, elapsed: Duration) -> String {
    let rate = count as f64 / elapsed.as_secs_f64().max(1e-9);
    format!("{} events/s", group_thousands(rate.round() as u64))
}

fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The heap a map of timelines takes, roughly (allocator overhead not counted).
pub(crate) fn approx_heap_bytes(timelines: &HashMap<String, Timeline>) -> usize {
    use std::mem::size_of;
    let codes = |n: usize, len: usize| n * (size_of::<TerritoryCode>() + len);
    let per_entry = size_of::<(String, Timeline)>() + 1; // the map's slot and control byte
    timelines
        .iter()
        .map(|(id, t)| {
            per_entry
                + 2 * id.len()
                + codes(t.territories().len(), 16)
                + codes(t.stages().len(), 16)
                + std::mem::size_of_val(t.entries())
        })
        .sum()
}

impl Machine {
    /// What this machine is, from `/proc` where available.
    pub(crate) fn probe() -> Self {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, name)| name.trim().to_owned())
            .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
        let memory = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0))
            .unwrap_or_default();
        let os = read("/proc/version")
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        Self {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory,
            os: if os.is_empty() {
                std::env::consts::OS.to_owned()
            } else {
                os
            },
            sqlite: None,
            postgres: None,
            profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
        }
    }
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.machine;
        writeln!(
            f,
            "Machine: {} ({} cores available), {} RAM, {}; build profile: {}",
            m.cpu, m.cores, m.memory, m.os, m.profile
        )?;
        if let Some(v) = &m.sqlite {
            writeln!(f, "SQLite {v}")?;
        }
        if let Some(v) = &m.postgres {
            writeln!(f, "PostgreSQL {v}")?;
        }
        writeln!(
            f,
            "Generated: {} events, {} beneficiaries\n",
            self.events, self.beneficiaries
        )?;
        writeln!(f, "| measurement | median | min | max | runs | note |")?;
        writeln!(f, "|---|---:|---:|---:|---:|---|")?;
        for line in &self.lines {
            writeln!(
                f,
                "| {} | {} ms | {} ms | {} ms | {} | {} |",
                line.name, line.median_ms, line.min_ms, line.max_ms, line.runs, line.note
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_thousands() {
        let ms = Duration::from_millis;
        assert_eq!(Timing::of(vec![ms(3), ms(1), ms(2)]).median, ms(2));
        assert_eq!(
            Timing::of(vec![ms(4), ms(1), ms(2), ms(3)]).median,
            ms(2) + ms(1) / 2
        );
        assert_eq!(group_thousands(1_234_567), "1,234,567");
        assert_eq!(group_thousands(999), "999");
    }
}
