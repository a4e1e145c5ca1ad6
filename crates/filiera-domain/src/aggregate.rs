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
use crate::event::{
    AssessmentKind, CloseOutcome, ExitOutcome, Occupability, PathwayEvent, Referral, SupportBand,
    TeamMember, Transition,
};
use crate::provider::ProviderRegistry;
use crate::state::{PathwayState, PathwayStatus};
use crate::territory::{TerritoryCode, TerritoryRegistry};

/// The earliest effective date the service accepts.
pub const EARLIEST_DATE: NaiveDate = match NaiveDate::from_ymd_opt(2000, 1, 1) {
    Some(d) => d,
    None => panic!("2000-01-01 is a date"),
};

/// How far after today's UTC date an effective date may be (SPEC 2.3). The refusal
/// ([`PathwayError::DateInFuture`]) says "one day".
pub const MAX_DAYS_AHEAD: Days = Days::new(1);

/// Longest free text (provider, undo reason) accepted, in characters.
pub const MAX_TEXT_CHARS: usize = 500;

/// A JSON Schema `pattern` (ECMA-262, Python `re` and Rust `regex` alike: `\u` escapes only)
/// matching exactly the texts the free-text rule accepts, length aside: not only white space
/// (Rust's `char::is_whitespace`), no control character (Unicode `Cc`). The OpenAPI document
/// puts it on every free text, with `maxLength` beside it.
pub const TEXT_PATTERN: &str = concat!(
    r"^[^\u0000-\u001f\u007f-\u009f]*",
    r"[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]",
    r"[^\u0000-\u001f\u007f-\u009f]*$"
);

/// What a refusal says of a text longer than [`MAX_TEXT_CHARS`] (a test checks they agree).
pub(crate) const TEXT_TOO_LONG: &str = "must be at most 500 characters";

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
    /// The providers a stage entry may name; empty means any (SPEC 2.5).
    pub providers: Arc<ProviderRegistry>,
    pub clock: Arc<dyn Clock>,
}

impl PathwayServices {
    /// Services over the given configuration and the system clock, without a provider
    /// registry.
    pub fn new(catalogue: Arc<StageCatalogue>, territories: Arc<TerritoryRegistry>) -> Self {
        Self {
            catalogue,
            territories,
            providers: Arc::new(ProviderRegistry::empty()),
            clock: Arc::new(SystemClock),
        }
    }

    /// The same services, with stage entries checked against `providers`.
    pub fn with_providers(self, providers: Arc<ProviderRegistry>) -> Self {
        Self { providers, ..self }
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

    /// The events `command` writes, or why it is refused. One function per command.
    fn decide(
        &self,
        command: PathwayCommand,
        services: &PathwayServices,
    ) -> Result<Vec<PathwayEvent>, PathwayError> {
        match command {
            PathwayCommand::Enrol {
                territory,
                on,
                referral,
                support_band,
            } => self.enrol(&territory, on, referral, support_band, services),
            PathwayCommand::EnterStage {
                stage,
                on,
                provider,
            } => self.enter_stage(&stage, on, provider, services),
            PathwayCommand::ExitStage { on, outcome } => self.exit_stage(on, outcome, services),
            PathwayCommand::ChangeTerritory { territory, on } => {
                self.change_territory(&territory, on, services)
            }
            PathwayCommand::ClosePathway { on, outcome } => self.close(on, outcome, services),
            PathwayCommand::ReopenPathway { on } => self.reopen(on, services),
            PathwayCommand::AssessNeeds {
                on,
                kind,
                occupability,
                team,
            } => self.assess_needs(on, kind, occupability, team, services),
            PathwayCommand::Undo { reason } => self.undo(reason, services),
            PathwayCommand::RecordErasure => self.record_erasure(services),
        }
    }

    fn enrol(
        &self,
        territory: &str,
        on: NaiveDate,
        referral: Referral,
        support_band: Option<SupportBand>,
        services: &PathwayServices,
    ) -> Result<Vec<PathwayEvent>, PathwayError> {
        match self.state.status {
            PathwayStatus::NotEnrolled => {}
            PathwayStatus::Voided => return Err(PathwayError::Voided),
            PathwayStatus::Open | PathwayStatus::Closed => {
                return Err(PathwayError::AlreadyEnrolled);
            }
        }
        let territory = known_territory(&services.territories, territory)?;
        self.check_date(on, services)?;
        Ok(vec![PathwayEvent::Enrolled {
            territory,
            on,
            referral,
            support_band,
        }])
    }

    fn enter_stage(
        &self,
        stage: &str,
        on: NaiveDate,
        provider: Option<String>,
        services: &PathwayServices,
    ) -> Result<Vec<PathwayEvent>, PathwayError> {
        self.require_enrolled()?;
        let catalogue = &services.catalogue;
        let stage = catalogue
            .get(stage)
            .ok_or_else(|| PathwayError::UnknownStage {
                stage: stage.to_owned(),
                valid: catalogue.codes_hint(),
            })?;
        let provider = optional_text("provider", provider)?;
        if let Some(provider) = &provider {
            known_provider(&services.providers, provider)?;
        }
        self.check_date(on, services)?;
        self.require_open()?;
        let state = &self.state;
        let previous = match &state.last_stage {
            None => None,
            Some(p) => {
                Some(
                    catalogue
                        .level(p)
                        .ok_or_else(|| PathwayError::PreviousStageUnknown {
                            stage: p.to_string(),
                        })?,
                )
            }
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

    fn exit_stage(
        &self,
        on: NaiveDate,
        outcome: ExitOutcome,
        services: &PathwayServices,
    ) -> Result<Vec<PathwayEvent>, PathwayError> {
        self.require_enrolled()?;
        if outcome.is_automatic() {
            return Err(PathwayError::AutomaticOutcome {
                outcome: outcome.as_str().to_owned(),
            });
        }
        self.check_date(on, services)?;
        self.require_open()?;
        let stage = self
            .state
            .current_stage
            .clone()
            .ok_or(PathwayError::NoOpenEpisode)?;
        Ok(vec![PathwayEvent::StageExited { stage, on, outcome }])
    }

    fn change_territory(
        &self,
        territory: &str,
        on: NaiveDate,
        services: &PathwayServices,
    ) -> Result<Vec<PathwayEvent>, PathwayError> {
        self.require_enrolled()?;
        let to = known_territory(&services.territories, territory)?;
        self.check_date(on, services)?;
        self.require_open()?;
        let from = self
            .state
            .territory
            .clone()
            .expect("an open pathway has a territory");
        if from == to {
            return Err(PathwayError::SameTerritory {
                territory: territory.to_owned(),
            });
        }
        Ok(vec![PathwayEvent::TerritoryChanged { from, to, on }])
    }

    fn close(
        &self,
        on: NaiveDate,
        outcome: CloseOutcome,
        services: &PathwayServices,
    ) -> Result<Vec<PathwayEvent>, PathwayError> {
        self.require_enrolled()?;
        self.check_date(on, services)?;
        self.require_open()?;
        let mut events = Vec::with_capacity(2);
        if let Some(open) = &self.state.current_stage {
            events.push(PathwayEvent::StageExited {
                stage: open.clone(),
                on,
                outcome: ExitOutcome::PathwayClosed,
            });
        }
        events.push(PathwayEvent::PathwayClosed { on, outcome });
        Ok(events)
    }

    fn reopen(
        &self,
        on: NaiveDate,
        services: &PathwayServices,
    ) -> Result<Vec<PathwayEvent>, PathwayError> {
        self.require_enrolled()?;
        self.check_date(on, services)?;
        if self.state.status != PathwayStatus::Closed {
            return Err(PathwayError::PathwayOpen);
        }
        Ok(vec![PathwayEvent::PathwayReopened { on }])
    }

    fn assess_needs(
        &self,
        on: NaiveDate,
        kind: AssessmentKind,
        occupability: Occupability,
        team: Vec<TeamMember>,
        services: &PathwayServices,
    ) -> Result<Vec<PathwayEvent>, PathwayError> {
        self.require_enrolled()?;
        check_team(kind, &team)?;
        self.check_date(on, services)?;
        self.require_open()?;
        Ok(vec![PathwayEvent::NeedsAssessed {
            on,
            kind,
            occupability,
            team,
        }])
    }

    fn undo(
        &self,
        reason: String,
        services: &PathwayServices,
    ) -> Result<Vec<PathwayEvent>, PathwayError> {
        self.require_enrolled()?;
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

    /// Whatever the pathway's status, even voided: the vault may hold data for it.
    fn record_erasure(
        &self,
        services: &PathwayServices,
    ) -> Result<Vec<PathwayEvent>, PathwayError> {
        if self.events.is_empty() {
            return Err(PathwayError::NotEnrolled);
        }
        if self.erased {
            return Err(PathwayError::AlreadyErased);
        }
        Ok(vec![PathwayEvent::PersonalDataErased {
            on: services.clock.today(),
        }])
    }

    /// Every command but an enrolment and an erasure needs an enrolment that was not undone.
    fn require_enrolled(&self) -> Result<(), PathwayError> {
        match self.state.status {
            PathwayStatus::NotEnrolled => Err(PathwayError::NotEnrolled),
            PathwayStatus::Voided => Err(PathwayError::Voided),
            PathwayStatus::Open | PathwayStatus::Closed => Ok(()),
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
        if on > today.checked_add_days(MAX_DAYS_AHEAD).unwrap_or(today) {
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

/// Any provider without a registry; one of its codes with one. Only decided entries are
/// checked: stored events naming a provider since removed still fold.
fn known_provider(registry: &ProviderRegistry, provider: &str) -> Result<(), PathwayError> {
    if registry.is_empty() || registry.get(provider).is_some() {
        return Ok(());
    }
    Err(PathwayError::UnknownProvider {
        provider: provider.to_owned(),
    })
}

/// A team names at least one service, none twice; a multidisciplinary one at least two.
fn check_team(kind: AssessmentKind, team: &[TeamMember]) -> Result<(), PathwayError> {
    if team.is_empty() {
        return Err(PathwayError::EmptyTeam);
    }
    let mut seen = BTreeSet::new();
    for member in team {
        if !seen.insert(*member) {
            return Err(PathwayError::DuplicateTeamMember {
                member: member.as_str(),
            });
        }
    }
    if kind == AssessmentKind::Multidisciplinary && seen.len() < 2 {
        return Err(PathwayError::TeamTooSmall);
    }
    Ok(())
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
            problem: TEXT_TOO_LONG,
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
