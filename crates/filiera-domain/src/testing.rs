//! Random pathway histories for property tests, shared by every test suite (feature
//! `testing`; never in a production build).
//!
//! A [`RandomHistory`] is a seed for a beneficiary's commands, not the commands themselves:
//! [`RandomHistory::commands`] turns it into an enrolment followed by one command per step,
//! with effective dates that only move forward and recording instants that follow them, so
//! that most commands are accepted and the rest (a stage entry on a closed pathway, a second
//! reopening…) are refused by the aggregate like a client's mistakes. Whoever runs them —
//! the aggregate in memory, the store, the HTTP API — skips the refused ones.
//!
//! The territories and stages are those of [`TerritoryRegistry::sample`] and a catalogue with
//! `training` (see [`STAGES`]).
//!
//! [`TerritoryRegistry::sample`]: crate::TerritoryRegistry::sample

use chrono::{DateTime, Days, NaiveDate, NaiveTime, TimeDelta, Utc};
use proptest::prelude::*;

use crate::{
    AssessmentKind, CloseOutcome, ExitOutcome, Occupability, PathwayCommand, Referral, TeamMember,
};

/// Where random beneficiaries enrol and move: leaves of the sample registry in two regions,
/// and one province.
pub const TERRITORIES: [&str; 6] = [
    "LOM-BG-BERGAMO",
    "LOM-BG-VALLE-BREMBANA",
    "LOM-LC-LECCO",
    "LOM-MI-MILANO",
    "PIE-TO-TORINO",
    "LOM-BG",
];

/// The stages random beneficiaries enter: the default catalogue's, plus `training` (level 2).
pub const STAGES: [&str; 4] = [
    "socio_occupational",
    "training",
    "internship",
    "job_placement",
];

/// The providers random stage entries name; `None` for an entry that names none.
pub const PROVIDERS: [Option<&str>; 4] =
    [None, Some("coop-alfa"), Some("coop-beta"), Some("enaip")];

/// The first possible enrolment date; enrolments start up to 200 days later.
const FIRST_DAY: NaiveDate = NaiveDate::from_ymd_opt(2024, 1, 1).expect("a valid date");

/// One random command: what (`kind`), which option (`pick`), how many days after the previous
/// effective date, how many hours after the previous recording.
#[derive(Clone, Debug)]
pub struct RandomStep {
    pub kind: u8,
    pub pick: u8,
    pub advance_days: u8,
    pub lag_hours: u8,
}

/// A beneficiary: its enrolment territory, its start (days after 2024-01-01), its commands.
#[derive(Clone, Debug)]
pub struct RandomHistory {
    pub territory: u8,
    pub start: u16,
    pub steps: Vec<RandomStep>,
}

/// Histories of up to `max_steps` commands after the enrolment, each at most `max_advance_days`
/// after the one before.
pub fn history(max_steps: usize, max_advance_days: u8) -> impl Strategy<Value = RandomHistory> {
    let step = (0u8..19, any::<u8>(), 0..max_advance_days, 0u8..60).prop_map(
        |(kind, pick, advance_days, lag_hours)| RandomStep {
            kind,
            pick,
            advance_days,
            lag_hours,
        },
    );
    (
        any::<u8>(),
        0u16..200,
        prop::collection::vec(step, 0..max_steps),
    )
        .prop_map(|(territory, start, steps)| RandomHistory {
            territory,
            start,
            steps,
        })
}

impl RandomHistory {
    /// The enrolment and then one command per step, each with the instant it is recorded at:
    /// 08:00 on the enrolment day, then never before the command's effective date and always
    /// later than the command before.
    pub fn commands(&self) -> Vec<(DateTime<Utc>, PathwayCommand)> {
        let mut day = FIRST_DAY + Days::new(u64::from(self.start));
        let midnight = |day: NaiveDate| day.and_time(NaiveTime::MIN).and_utc();
        let mut now = midnight(day) + TimeDelta::hours(8);
        let mut commands = vec![(
            now,
            PathwayCommand::Enrol {
                territory: (*pick(&TERRITORIES, self.territory)).to_owned(),
                on: day,
                referral: Referral::ThirdSector,
                support_band: None,
            },
        )];
        for step in &self.steps {
            day = day + Days::new(u64::from(step.advance_days));
            now = now.max(midnight(day))
                + TimeDelta::hours(i64::from(step.lag_hours))
                + TimeDelta::minutes(1);
            commands.push((now, step.command(day)));
        }
        commands
    }
}

impl RandomStep {
    fn command(&self, on: NaiveDate) -> PathwayCommand {
        match self.kind {
            0..=7 => PathwayCommand::EnterStage {
                stage: (*pick(&STAGES, self.pick)).to_owned(),
                on,
                provider: pick(&PROVIDERS, self.pick / 4).map(str::to_owned),
            },
            8 | 9 => PathwayCommand::ExitStage {
                on,
                outcome: *pick(
                    &[ExitOutcome::Completed, ExitOutcome::Interrupted],
                    self.pick,
                ),
            },
            10 | 11 => PathwayCommand::ChangeTerritory {
                territory: (*pick(&TERRITORIES, self.pick)).to_owned(),
                on,
            },
            12 => PathwayCommand::ClosePathway {
                on,
                outcome: *pick(&CloseOutcome::ALL, self.pick),
            },
            13 => PathwayCommand::ReopenPathway { on },
            16..=18 => {
                let kind = *pick(&AssessmentKind::ALL, self.pick);
                let team = match kind {
                    AssessmentKind::Multidisciplinary => {
                        vec![TeamMember::SocialServices, TeamMember::EmploymentCentre]
                    }
                    _ => vec![*pick(&TeamMember::ALL, self.pick / 3)],
                };
                PathwayCommand::AssessNeeds {
                    on,
                    kind,
                    occupability: *pick(&Occupability::ALL, self.pick / 12),
                    team,
                }
            }
            _ => PathwayCommand::Undo {
                reason: "random correction".to_owned(),
            },
        }
    }
}

fn pick<T>(options: &[T], n: u8) -> &T {
    &options[usize::from(n) % options.len()]
}
