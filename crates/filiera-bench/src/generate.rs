//! The generated histories behind `filiera generate` and the benchmark: random but realistic,
//! decided by the real aggregate (so every command is accepted), and the same for the same seed.
//!
//! A history is an enrolment in one of the [`Territories`], then mostly forward moves through
//! the catalogue's levels with reiterations and regressions, exits, transfers, needs
//! assessments, closures with every outcome, reopenings and undos, days to weeks apart, from
//! 2021 to mid-2025.

use std::sync::Arc;

use chrono::{Days, NaiveDate, TimeDelta};
use cqrs_es::Aggregate as _;
use cqrs_es::event_sink::EventSink;
use filiera_domain::{
    AssessmentKind, CloseOutcome, ExitOutcome, FixedClock, Occupability, Pathway, PathwayCommand,
    PathwayServices, PathwayStatus, RecordedEvent, Referral, StageCatalogue, TeamMember,
    TerritoryCode, TerritoryDef, TerritoryRegistry,
};
use uuid::Uuid;

use crate::date;

/// One generated beneficiary.
#[derive(Clone, Debug)]
pub struct History {
    /// Its id (a UUID, from the seed).
    pub id: String,
    /// The commands the aggregate accepted, in order.
    pub commands: Vec<PathwayCommand>,
    /// The events they wrote, stamped with recording times that follow the effective dates.
    pub events: Vec<RecordedEvent>,
}

/// Where generated beneficiaries enrol and move.
#[derive(Clone, Debug)]
pub enum Territories {
    /// The benchmark's mix: the sample registry's ambiti (most of them in Lombardia), a few
    /// regions, and the synthetic region of [`SYNTHETIC_AMBITI`] ambiti ([`bench_services`]).
    Bench,
    /// These codes, uniformly (a configuration's leaves).
    Uniform(Vec<String>),
}

impl Territories {
    /// The territories of `registry` that have no children, uniformly.
    pub fn leaves_of(registry: &TerritoryRegistry) -> Self {
        let leaves = registry
            .definitions()
            .iter()
            .filter(|def| {
                TerritoryCode::parse(&def.code)
                    .is_some_and(|code| registry.children(Some(&code)).is_empty())
            })
            .map(|def| def.code.clone())
            .collect();
        Self::Uniform(leaves)
    }

    fn pick(&self, rng: &mut SplitMix) -> String {
        match self {
            Self::Bench => pick_territory(rng),
            Self::Uniform(codes) if !codes.is_empty() => {
                codes[rng.below(codes.len() as u64) as usize].clone()
            }
            Self::Uniform(_) => TERRITORIES[0].0.to_owned(),
        }
    }
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

/// The providers stage entries name without a registry (one entry in five names none).
const PROVIDERS: usize = 40;

/// The default catalogue, the sample registry with the synthetic region, and the clock of the
/// generated histories.
pub fn bench_services() -> PathwayServices {
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

/// Generates histories through the real aggregate until about `events` events (whole
/// histories: the last may go a little over), deciding with `services` (their catalogue's
/// stages, their clock) and enrolling in `territories`.
pub async fn generate(
    events: usize,
    seed: u64,
    services: &PathwayServices,
    territories: &Territories,
) -> Vec<History> {
    let mut rng = SplitMix(seed);
    let ladder = Ladder::of(services);
    let mut histories = Vec::with_capacity(events / 5 + 1);
    let mut total = 0;
    while total < events {
        let history = generate_one(&mut rng, services, territories, &ladder).await;
        total += history.events.len();
        histories.push(history);
    }
    histories
}

/// What stage entries may name: the catalogue's stage codes ordered by level ("forward" is
/// further along), and the providers — the registry's codes when one is configured (entries
/// naming others would be refused), else [`PROVIDERS`] made-up names.
struct Ladder {
    stages: Vec<String>,
    providers: Vec<String>,
}

impl Ladder {
    fn of(services: &PathwayServices) -> Self {
        let mut stages = services.catalogue.stages().to_vec();
        stages.sort_by_key(|s| s.level);
        let mut providers: Vec<String> = services
            .providers
            .providers()
            .map(|p| p.code.as_str().to_owned())
            .collect();
        if providers.is_empty() {
            providers = (0..PROVIDERS).map(|i| format!("provider-{i:02}")).collect();
        }
        providers.sort();
        Self {
            stages: stages.into_iter().map(|s| s.code.to_string()).collect(),
            providers,
        }
    }

    /// A provider, or none one time in five.
    fn provider(&self, rng: &mut SplitMix) -> Option<String> {
        let count = self.providers.len() as u64;
        let pick = rng.below(count * 5 / 4 + 1) as usize;
        self.providers.get(pick).cloned()
    }
}

async fn generate_one(
    rng: &mut SplitMix,
    services: &PathwayServices,
    territories: &Territories,
    ladder: &Ladder,
) -> History {
    let id = Uuid::from_u64_pair(rng.next(), rng.next()).to_string();
    let last_day = date("2025-06-30");
    let mut day = date("2021-01-04") + Days::new(rng.below(1_600));
    let mut at = day.and_hms_opt(8, 0, 0).expect("a time").and_utc();
    let mut pathway = Pathway::default();
    let mut events: Vec<RecordedEvent> = Vec::new();
    let mut commands = Vec::new();
    let target = 2 + rng.below(7) as usize;
    let territory = territories.pick(rng);
    let mut command = PathwayCommand::Enrol {
        territory,
        on: day,
        referral: Referral::SocialServices,
        support_band: None,
    };
    for _ in 0..40 {
        let before = pathway.version();
        let sink = EventSink::default();
        let accepted = pathway
            .handle(command.clone(), services, &sink)
            .await
            .is_ok();
        let written = sink.collect().await;
        if accepted {
            commands.push(command);
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
        let Some(next) = next_command(rng, &pathway, day, territories, ladder) else {
            break;
        };
        command = next;
    }
    History {
        id,
        commands,
        events,
    }
}

/// A plausible next command for the pathway's state.
fn next_command(
    rng: &mut SplitMix,
    pathway: &Pathway,
    on: NaiveDate,
    territories: &Territories,
    ladder: &Ladder,
) -> Option<PathwayCommand> {
    let state = pathway.state();
    let stages = &ladder.stages;
    let top = stages.len().saturating_sub(1);
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
                        .and_then(|s| stages.iter().position(|c| c == s.as_str()));
                    let stage = match (current, rng.below(100)) {
                        (None, _) => (rng.below(2) as usize).min(top),
                        (Some(i), 0..=49) => (i + 1).min(top),
                        (Some(i), 50..=79) => i,
                        (Some(_), _) => rng.below(stages.len() as u64) as usize,
                    };
                    PathwayCommand::EnterStage {
                        stage: stages.get(stage)?.clone(),
                        on,
                        provider: ladder.provider(rng),
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
                    territory: territories.pick(rng),
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
                    stage: stages.get(rng.below(stages.len() as u64) as usize)?.clone(),
                    on,
                    provider: ladder.provider(rng),
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

    /// With a provider registry configured, stage entries name its codes (or none), so that
    /// none is refused as `unknown_provider` and dropped.
    #[tokio::test]
    async fn stage_entries_name_the_configured_providers() {
        let registry = TerritoryRegistry::sample();
        let def = |code: &str| filiera_domain::ProviderDef {
            code: code.into(),
            name: code.into(),
            territories: Vec::new(),
        };
        let providers =
            filiera_domain::ProviderRegistry::new(vec![def("coop.alfa"), def("enaip")], &registry)
                .unwrap();
        let services = PathwayServices {
            providers: Arc::new(providers),
            ..bench_services()
        };
        let histories = generate(3_000, 5, &services, &Territories::leaves_of(&registry)).await;
        let named: std::collections::BTreeSet<String> = histories
            .iter()
            .flat_map(|h| &h.events)
            .filter_map(|e| match &e.event {
                filiera_domain::PathwayEvent::StageEntered { provider, .. } => provider.clone(),
                _ => None,
            })
            .collect();
        assert_eq!(named, ["coop.alfa".to_owned(), "enaip".to_owned()].into());
    }

    /// The generator writes valid, varied histories, the same for the same seed.
    #[tokio::test]
    async fn generated_histories_are_varied_and_reproducible() {
        let services = bench_services();
        let a = generate(5_000, 7, &services, &Territories::Bench).await;
        let b = generate(5_000, 7, &services, &Territories::Bench).await;
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
