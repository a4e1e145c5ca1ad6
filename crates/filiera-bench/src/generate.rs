//! The generated histories: random but realistic, written by the real aggregate, and the same
//! for the same seed.

use std::sync::Arc;

use chrono::{Days, NaiveDate, TimeDelta};
use cqrs_es::Aggregate as _;
use cqrs_es::event_sink::EventSink;
use filiera_domain::{
    AssessmentKind, CloseOutcome, ExitOutcome, FixedClock, Occupability, Pathway, PathwayCommand,
    PathwayServices, PathwayStatus, RecordedEvent, Referral, StageCatalogue, TeamMember,
    TerritoryDef, TerritoryRegistry,
};
use uuid::Uuid;

use crate::date;

/// One generated beneficiary.
pub(crate) struct History {
    pub(crate) id: String,
    pub(crate) events: Vec<RecordedEvent>,
}

/// Where beneficiaries are enrolled: the sample registry's ambiti (most of them in Lombardia),
/// a few regions without ambiti in the sample, and [`SYNTHETIC`], a region of
/// [`SYNTHETIC_AMBITI`] ambiti (for breakdowns as wide as a real region's).
const TERRITORIES: &[(&str, u32)] = &[
    ("LOM-BG-BERGAMO", 14),
    ("LOM-BG-VALLE-BREMBANA", 6),
    ("LOM-BG-VALLE-IMAGNA", 5),
    ("LOM-LC-LECCO", 10),
    ("LOM-MI-MILANO", 25),
    ("PIE-TO-TORINO", 12),
    ("VEN", 4),
    ("EMR", 4),
    (SYNTHETIC, 20),
];

/// The synthetic region of the benchmark registry.
pub const SYNTHETIC: &str = "SYN";

/// How many ambiti [`SYNTHETIC`] has, all direct children: `SYN-A001`…
pub const SYNTHETIC_AMBITI: usize = 600;

/// The providers stage entries name (one entry in five names none).
const PROVIDERS: usize = 40;

const STAGES: [&str; 3] = ["socio_occupational", "internship", "job_placement"];

/// The default catalogue, the sample registry with the synthetic region, and the clock of the
/// generated histories.
pub(crate) fn bench_services() -> PathwayServices {
    let mut defs = TerritoryRegistry::sample().definitions().to_vec();
    defs.push(TerritoryDef {
        code: SYNTHETIC.into(),
        name: "Regione sintetica".into(),
        parent: None,
    });
    defs.extend((1..=SYNTHETIC_AMBITI).map(|i| TerritoryDef {
        code: ambito(i),
        name: format!("Ambito sintetico {i}"),
        parent: Some(SYNTHETIC.into()),
    }));
    let registry = TerritoryRegistry::new(defs).expect("the benchmark registry is valid");
    PathwayServices {
        clock: Arc::new(FixedClock(date("2025-06-30"))),
        ..PathwayServices::new(
            Arc::new(StageCatalogue::default_catalogue()),
            Arc::new(registry),
        )
    }
}

/// The code of the synthetic region's ambito `i` (from 1).
fn ambito(i: usize) -> String {
    format!("{SYNTHETIC}-A{i:03}")
}

/// Generates histories through the real aggregate until about `events` events.
pub(crate) async fn generate(events: usize, seed: u64, services: &PathwayServices) -> Vec<History> {
    let mut rng = SplitMix(seed);
    let mut histories = Vec::with_capacity(events / 5 + 1);
    let mut total = 0;
    while total < events {
        let history = generate_one(&mut rng, services).await;
        total += history.events.len();
        histories.push(history);
    }
    histories
}

async fn generate_one(rng: &mut SplitMix, services: &PathwayServices) -> History {
    let id = Uuid::from_u64_pair(rng.next(), rng.next()).to_string();
    let last_day = date("2025-06-30");
    let mut day = date("2021-01-04") + Days::new(rng.below(1_600));
    let mut at = day.and_hms_opt(8, 0, 0).expect("a time").and_utc();
    let mut pathway = Pathway::default();
    let mut events: Vec<RecordedEvent> = Vec::new();
    let target = 2 + rng.below(7) as usize;
    let territory = pick_territory(rng);
    let mut command = PathwayCommand::Enrol {
        territory,
        on: day,
        referral: Referral::SocialServices,
        support_band: None,
    };
    for _ in 0..40 {
        let before = pathway.version();
        let sink = EventSink::default();
        let accepted = pathway.handle(command, services, &sink).await.is_ok();
        let written = sink.collect().await;
        if accepted {
            at = at.max(day.and_hms_opt(9, 0, 0).expect("a time").and_utc())
                + TimeDelta::minutes(rng.below(480) as i64 + 1);
            for (sequence, event) in (before + 1..).zip(written) {
                events.push(RecordedEvent {
                    sequence,
                    recorded_at: at,
                    event,
                });
            }
        }
        if events.len() >= target {
            break;
        }
        day = day + Days::new(rng.below(60) + 1);
        if day > last_day {
            break;
        }
        let Some(next) = next_command(rng, &pathway, day) else {
            break;
        };
        command = next;
    }
    History { id, events }
}

/// A plausible next command for the pathway's state.
fn next_command(rng: &mut SplitMix, pathway: &Pathway, on: NaiveDate) -> Option<PathwayCommand> {
    let state = pathway.state();
    match state.status {
        PathwayStatus::Closed => {
            (rng.below(100) < 30).then_some(PathwayCommand::ReopenPathway { on })
        }
        PathwayStatus::Open => {
            let roll = rng.below(100);
            Some(match roll {
                0..=54 => {
                    // Mostly forward, sometimes the same level again, sometimes back.
                    let current = state
                        .last_stage
                        .as_ref()
                        .and_then(|s| STAGES.iter().position(|c| *c == s.as_str()));
                    let stage = match (current, rng.below(100)) {
                        (None, _) => rng.below(2) as usize,
                        (Some(i), 0..=49) => (i + 1).min(2),
                        (Some(i), 50..=79) => i,
                        (Some(_), _) => rng.below(3) as usize,
                    };
                    PathwayCommand::EnterStage {
                        stage: STAGES[stage].to_owned(),
                        on,
                        provider: pick_provider(rng),
                    }
                }
                55..=64 if state.current_stage.is_some() => PathwayCommand::ExitStage {
                    on,
                    outcome: if rng.below(2) == 0 {
                        ExitOutcome::Completed
                    } else {
                        ExitOutcome::Interrupted
                    },
                },
                65..=72 => PathwayCommand::ChangeTerritory {
                    territory: pick_territory(rng),
                    on,
                },
                73..=86 => PathwayCommand::ClosePathway {
                    on,
                    outcome: CloseOutcome::ALL[rng.below(5) as usize],
                },
                87..=92 => PathwayCommand::Undo {
                    reason: "corrected by the operator".to_owned(),
                },
                93..=96 => {
                    let kind = AssessmentKind::ALL[rng.below(3) as usize];
                    let team = match kind {
                        AssessmentKind::Multidisciplinary => {
                            vec![TeamMember::SocialServices, TeamMember::EmploymentCentre]
                        }
                        _ => vec![TeamMember::EmploymentCentre],
                    };
                    PathwayCommand::AssessNeeds {
                        on,
                        kind,
                        occupability: Occupability::ALL[rng.below(3) as usize],
                        team,
                    }
                }
                _ => PathwayCommand::EnterStage {
                    stage: STAGES[rng.below(3) as usize].to_owned(),
                    on,
                    provider: pick_provider(rng),
                },
            })
        }
        PathwayStatus::NotEnrolled | PathwayStatus::Voided => None,
    }
}

fn pick_territory(rng: &mut SplitMix) -> String {
    let total: u32 = TERRITORIES.iter().map(|(_, w)| w).sum();
    let mut roll = rng.below(u64::from(total)) as u32;
    for &(code, weight) in TERRITORIES {
        if roll < weight {
            return match code {
                SYNTHETIC => ambito(rng.below(SYNTHETIC_AMBITI as u64) as usize + 1),
                code => code.to_owned(),
            };
        }
        roll -= weight;
    }
    TERRITORIES[0].0.to_owned()
}

fn pick_provider(rng: &mut SplitMix) -> Option<String> {
    let pick = rng.below(PROVIDERS as u64 * 5 / 4) as usize;
    (pick < PROVIDERS).then(|| format!("provider-{pick:02}"))
}

/// SplitMix64: small, fast, reproducible; no dependency for a benchmark.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0), bias negligible for small `n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The generator writes valid, varied histories, the same for the same seed.
    #[tokio::test]
    async fn generated_histories_are_varied_and_reproducible() {
        let services = bench_services();
        let a = generate(5_000, 7, &services).await;
        let b = generate(5_000, 7, &services).await;
        assert_eq!(a.len(), b.len());
        assert!(
            a.iter()
                .zip(&b)
                .all(|(x, y)| x.id == y.id && x.events == y.events)
        );
        let names: std::collections::BTreeSet<_> = a
            .iter()
            .flat_map(|h| h.events.iter().map(|e| e.event.name()))
            .collect();
        // Every type but the erasure, which only an administrator's request writes.
        assert_eq!(
            names.len(),
            filiera_domain::PathwayEvent::TYPES.len() - 1,
            "every event type appears: {names:?}"
        );
        for history in &a {
            let sequences: Vec<u64> = history.events.iter().map(|e| e.sequence).collect();
            assert_eq!(
                sequences,
                (1..=history.events.len() as u64).collect::<Vec<_>>()
            );
            assert!(
                history
                    .events
                    .windows(2)
                    .all(|w| w[0].recorded_at <= w[1].recorded_at)
            );
        }
    }
}
