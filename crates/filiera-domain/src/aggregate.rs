//! The `Pathway` aggregate: one stream per beneficiary, enforcing SPEC 2.3 and classifying
//! stage entries as SPEC 2.4 says.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{Days, NaiveDate, Utc};
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use serde::{Deserialize, Serialize};

use crate::catalogue::StageCatalogue;
use crate::command::PathwayCommand;
use crate::error::PathwayError;
use crate::event::{ExitOutcome, PathwayEvent, Transition};
use crate::state::{PathwayState, PathwayStatus};
use crate::territory::{TerritoryCode, TerritoryRegistry};

/// The earliest effective date the service accepts.
pub const EARLIEST_DATE: NaiveDate = match NaiveDate::from_ymd_opt(2000, 1, 1) {
    Some(d) => d,
    None => panic!("2000-01-01 is a date"),
};

/// Longest free text (provider, undo reason) accepted, in characters.
pub const MAX_TEXT_CHARS: usize = 500;

/// Today's date, as the rules see it. A trait so tests can pin the day.
pub trait Clock: Send + Sync {
    /// Today's UTC date.
    fn today(&self) -> NaiveDate;
}

/// The real clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn today(&self) -> NaiveDate {
        Utc::now().date_naive()
    }
}

/// A clock stuck on one day, for tests.
#[derive(Clone, Copy, Debug)]
pub struct FixedClock(pub NaiveDate);

impl Clock for FixedClock {
    fn today(&self) -> NaiveDate {
        self.0
    }
}

/// What the aggregate needs to decide: the configuration and the date.
#[derive(Clone)]
pub struct PathwayServices {
    pub catalogue: Arc<StageCatalogue>,
    pub territories: Arc<TerritoryRegistry>,
    pub clock: Arc<dyn Clock>,
}

impl PathwayServices {
    /// Services over the given configuration and the system clock.
    pub fn new(catalogue: Arc<StageCatalogue>, territories: Arc<TerritoryRegistry>) -> Self {
        Self {
            catalogue,
            territories,
            clock: Arc::new(SystemClock),
        }
    }
}

/// The events one command wrote, so that undo can void them together.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct CommandGroup {
    sequences: Vec<u64>,
    undone: bool,
}

/// One beneficiary's stream. It keeps every event so that undo can refold the state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Pathway {
    /// Every event in sequence order: the event at index `i` has sequence `i + 1`.
    events: Vec<PathwayEvent>,
    /// Sequences voided by undos.
    voided: BTreeSet<u64>,
    /// Undoable commands in order. An automatic `StageExited` and the event after it are one.
    commands: Vec<CommandGroup>,
    /// Set after an automatic `StageExited`: the next event belongs to the same command.
    joining: bool,
    /// Whether the personal data was erased (`PersonalDataErased` recorded).
    #[serde(default)]
    erased: bool,
    state: PathwayState,
}

impl Pathway {
    /// The state folded from the non-voided events.
    pub fn state(&self) -> &PathwayState {
        &self.state
    }

    /// The sequence of the last event (0 for an empty stream).
    pub fn version(&self) -> u64 {
        self.events.len() as u64
    }

    /// Every event, voided or not, with its sequence.
    pub fn events(&self) -> impl Iterator<Item = (u64, &PathwayEvent)> {
        self.events.iter().zip(1..).map(|(e, s)| (s, e))
    }

    /// Whether `PersonalDataErased` was recorded.
    pub fn personal_data_erased(&self) -> bool {
        self.erased
    }

    /// Whether an undo voided the event with this sequence.
    pub fn is_voided(&self, sequence: u64) -> bool {
        self.voided.contains(&sequence)
    }

    /// Rebuilds a stream from its events in sequence order.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a PathwayEvent>) -> Self {
        let mut pathway = Self::default();
        for event in events {
            pathway.apply(event.clone());
        }
        pathway
    }

    fn refold(&mut self) {
        let mut state = PathwayState::default();
        for (event, sequence) in self.events.iter().zip(1u64..) {
            if !self.voided.contains(&sequence) {
                state.apply(event);
            }
        }
        if state.status == PathwayStatus::NotEnrolled && !self.events.is_empty() {
            state.status = PathwayStatus::Voided;
        }
        self.state = state;
    }

    fn decide(
        &self,
        command: PathwayCommand,
        services: &PathwayServices,
    ) -> Result<Vec<PathwayEvent>, PathwayError> {
        let state = &self.state;
        if let PathwayCommand::Enrol {
            territory,
            on,
            referral,
            support_band,
        } = command
        {
            match state.status {
                PathwayStatus::NotEnrolled => {}
                PathwayStatus::Voided => return Err(PathwayError::Voided),
                PathwayStatus::Open | PathwayStatus::Closed => {
                    return Err(PathwayError::AlreadyEnrolled);
                }
            }
            let territory = known_territory(&services.territories, &territory)?;
            self.check_date(on, services)?;
            return Ok(vec![PathwayEvent::Enrolled {
                territory,
                on,
                referral,
                support_band,
            }]);
        }
        if let PathwayCommand::RecordErasure = command {
            // Whatever the pathway's status, even voided: the vault may hold data for it.
            if self.events.is_empty() {
                return Err(PathwayError::NotEnrolled);
            }
            if self.erased {
                return Err(PathwayError::AlreadyErased);
            }
            return Ok(vec![PathwayEvent::PersonalDataErased {
                on: services.clock.today(),
            }]);
        }
        match state.status {
            PathwayStatus::NotEnrolled => return Err(PathwayError::NotEnrolled),
            PathwayStatus::Voided => return Err(PathwayError::Voided),
            PathwayStatus::Open | PathwayStatus::Closed => {}
        }
        match command {
            PathwayCommand::Enrol { .. } | PathwayCommand::RecordErasure => {
                unreachable!("handled above")
            }
            PathwayCommand::EnterStage {
                stage,
                on,
                provider,
            } => {
                let catalogue = &services.catalogue;
                let stage = catalogue
                    .get(&stage)
                    .ok_or_else(|| PathwayError::UnknownStage {
                        stage: stage.clone(),
                        valid: catalogue.codes_hint(),
                    })?;
                let provider = optional_text("provider", provider)?;
                self.check_date(on, services)?;
                self.require_open()?;
                let previous = match &state.last_stage {
                    None => None,
                    Some(p) => Some(catalogue.level(p).ok_or_else(|| {
                        PathwayError::PreviousStageUnknown {
                            stage: p.to_string(),
                        }
                    })?),
                };
                let mut events = Vec::with_capacity(2);
                if let Some(open) = &state.current_stage {
                    events.push(PathwayEvent::StageExited {
                        stage: open.clone(),
                        on,
                        outcome: ExitOutcome::MovedOn,
                    });
                }
                events.push(PathwayEvent::StageEntered {
                    stage: stage.code.clone(),
                    on,
                    from_stage: state.last_stage.clone(),
                    transition: Transition::classify(previous, stage.level),
                    provider,
                });
                Ok(events)
            }
            PathwayCommand::ExitStage { on, outcome } => {
                if outcome.is_automatic() {
                    let outcome = serde_json::to_value(outcome)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default();
                    return Err(PathwayError::AutomaticOutcome { outcome });
                }
                self.check_date(on, services)?;
                self.require_open()?;
                let stage = state
                    .current_stage
                    .clone()
                    .ok_or(PathwayError::NoOpenEpisode)?;
                Ok(vec![PathwayEvent::StageExited { stage, on, outcome }])
            }
            PathwayCommand::ChangeTerritory { territory, on } => {
                let to = known_territory(&services.territories, &territory)?;
                self.check_date(on, services)?;
                self.require_open()?;
                let from = state
                    .territory
                    .clone()
                    .expect("an open pathway has a territory");
                if from == to {
                    return Err(PathwayError::SameTerritory { territory });
                }
                Ok(vec![PathwayEvent::TerritoryChanged { from, to, on }])
            }
            PathwayCommand::ClosePathway { on, outcome } => {
                self.check_date(on, services)?;
                self.require_open()?;
                let mut events = Vec::with_capacity(2);
                if let Some(open) = &state.current_stage {
                    events.push(PathwayEvent::StageExited {
                        stage: open.clone(),
                        on,
                        outcome: ExitOutcome::PathwayClosed,
                    });
                }
                events.push(PathwayEvent::PathwayClosed { on, outcome });
                Ok(events)
            }
            PathwayCommand::ReopenPathway { on } => {
                self.check_date(on, services)?;
                if state.status != PathwayStatus::Closed {
                    return Err(PathwayError::PathwayOpen);
                }
                Ok(vec![PathwayEvent::PathwayReopened { on }])
            }
            PathwayCommand::Undo { reason } => {
                let reason = required_text("reason", reason)?;
                let group = self
                    .commands
                    .iter()
                    .rev()
                    .find(|c| !c.undone)
                    .ok_or(PathwayError::NothingToUndo)?;
                Ok(vec![PathwayEvent::CommandUndone {
                    on: services.clock.today(),
                    undone_sequences: group.sequences.clone(),
                    reason,
                }])
            }
        }
    }

    fn require_open(&self) -> Result<(), PathwayError> {
        match self.state.status {
            PathwayStatus::Open => Ok(()),
            _ => Err(PathwayError::PathwayClosed),
        }
    }

    fn check_date(&self, on: NaiveDate, services: &PathwayServices) -> Result<(), PathwayError> {
        if on < EARLIEST_DATE {
            return Err(PathwayError::DateTooEarly { on });
        }
        let today = services.clock.today();
        if on > today.checked_add_days(Days::new(1)).unwrap_or(today) {
            return Err(PathwayError::DateInFuture { on, today });
        }
        match self.state.latest_on {
            Some(latest) if on < latest => Err(PathwayError::OutOfOrder { on, latest }),
            _ => Ok(()),
        }
    }
}

fn known_territory(
    registry: &TerritoryRegistry,
    territory: &str,
) -> Result<TerritoryCode, PathwayError> {
    registry
        .get(territory)
        .ok_or_else(|| PathwayError::UnknownTerritory {
            territory: territory.to_owned(),
        })
}

fn optional_text(
    field: &'static str,
    text: Option<String>,
) -> Result<Option<String>, PathwayError> {
    text.map(|t| required_text(field, t)).transpose()
}

fn required_text(field: &'static str, text: String) -> Result<String, PathwayError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(PathwayError::InvalidText {
            field,
            problem: "must not be empty",
        });
    }
    if trimmed.chars().count() > MAX_TEXT_CHARS {
        return Err(PathwayError::InvalidText {
            field,
            problem: "must be at most 500 characters",
        });
    }
    if trimmed.chars().any(char::is_control) {
        return Err(PathwayError::InvalidText {
            field,
            problem: "must not contain control characters",
        });
    }
    Ok(trimmed.to_owned())
}

impl Aggregate for Pathway {
    const TYPE: &'static str = "pathway";
    type Command = PathwayCommand;
    type Event = PathwayEvent;
    type Error = PathwayError;
    type Services = PathwayServices;

    async fn handle(
        &mut self,
        command: Self::Command,
        services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command, services)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: PathwayEvent) {
        let sequence = self.events.len() as u64 + 1;
        match &event {
            // Not a pathway fact: no command group (undo passes over it), no state.
            PathwayEvent::PersonalDataErased { .. } => {
                self.erased = true;
                self.events.push(event);
                return;
            }
            PathwayEvent::CommandUndone {
                undone_sequences, ..
            } => {
                self.voided.extend(undone_sequences.iter().copied());
                if let Some(group) = self
                    .commands
                    .iter_mut()
                    .rev()
                    .find(|c| !c.undone && c.sequences == *undone_sequences)
                {
                    group.undone = true;
                }
                self.events.push(event);
                self.refold();
                return;
            }
            PathwayEvent::StageExited { outcome, .. } if outcome.is_automatic() => {
                self.commands.push(CommandGroup {
                    sequences: vec![sequence],
                    undone: false,
                });
                self.joining = true;
            }
            _ if self.joining => {
                if let Some(group) = self.commands.last_mut() {
                    group.sequences.push(sequence);
                }
                self.joining = false;
            }
            _ => self.commands.push(CommandGroup {
                sequences: vec![sequence],
                undone: false,
            }),
        }
        self.state.apply(&event);
        self.events.push(event);
    }
}
