//! Given/when/then tests of every pathway rule (SPEC 2.3) and of the classification (SPEC 2.4).

use std::sync::Arc;

use chrono::NaiveDate;
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use cqrs_es::test::TestFramework;

use crate::*;

const TODAY: &str = "2024-06-15";

fn d(s: &str) -> NaiveDate {
    s.parse().expect("test dates are valid")
}

fn services() -> PathwayServices {
    services_with(StageCatalogue::default_catalogue())
}

/// A catalogue where `training` shares level 1 with `socio_occupational`.
fn services_with_training() -> PathwayServices {
    let stage = |code: &str, level| Stage {
        code: StageCode::parse(code).unwrap(),
        label: code.to_owned(),
        level,
    };
    services_with(
        StageCatalogue::new(vec![
            stage("socio_occupational", 1),
            stage("training", 1),
            stage("internship", 2),
            stage("job_placement", 3),
        ])
        .unwrap(),
    )
}

fn services_with(catalogue: StageCatalogue) -> PathwayServices {
    PathwayServices {
        catalogue: Arc::new(catalogue),
        territories: Arc::new(TerritoryRegistry::sample()),
        providers: Arc::new(ProviderRegistry::empty()),
        clock: Arc::new(FixedClock(d(TODAY))),
    }
}

fn given(events: Vec<PathwayEvent>) -> cqrs_es::test::AggregateTestExecutor<Pathway> {
    TestFramework::<Pathway>::with(services()).given(events)
}

fn territory(code: &str) -> TerritoryCode {
    TerritoryCode::parse(code).unwrap()
}

fn stage(code: &str) -> StageCode {
    StageCode::parse(code).unwrap()
}

fn enrolled(on: &str) -> PathwayEvent {
    PathwayEvent::Enrolled {
        territory: territory("LOM-BG-BERGAMO"),
        on: d(on),
        referral: Referral::SocialServices,
        support_band: Some(SupportBand::Medium),
    }
}

fn entered(code: &str, on: &str, from: Option<&str>, transition: Transition) -> PathwayEvent {
    PathwayEvent::StageEntered {
        stage: stage(code),
        on: d(on),
        from_stage: from.map(stage),
        transition,
        provider: None,
    }
}

fn exited(code: &str, on: &str, outcome: ExitOutcome) -> PathwayEvent {
    PathwayEvent::StageExited {
        stage: stage(code),
        on: d(on),
        outcome,
    }
}

fn closed(on: &str, outcome: CloseOutcome) -> PathwayEvent {
    PathwayEvent::PathwayClosed { on: d(on), outcome }
}

fn enter(code: &str, on: &str) -> PathwayCommand {
    PathwayCommand::EnterStage {
        stage: code.into(),
        on: d(on),
        provider: None,
    }
}

fn undo() -> PathwayCommand {
    PathwayCommand::Undo {
        reason: "recorded on the wrong beneficiary".into(),
    }
}

fn undone(sequences: Vec<u64>) -> PathwayEvent {
    PathwayEvent::CommandUndone {
        on: d(TODAY),
        undone_sequences: sequences,
        reason: "recorded on the wrong beneficiary".into(),
    }
}

/// Runs commands one after the other against the real aggregate, as the store would.
async fn run(services: &PathwayServices, commands: Vec<PathwayCommand>) -> Pathway {
    let mut pathway = Pathway::default();
    for command in commands {
        let sink = EventSink::default();
        pathway
            .handle(command.clone(), services, &sink)
            .await
            .unwrap_or_else(|e| panic!("{command:?} refused: {e}"));
    }
    pathway
}

fn enrol(on: &str) -> PathwayCommand {
    PathwayCommand::Enrol {
        territory: "LOM-BG-BERGAMO".into(),
        on: d(on),
        referral: Referral::SocialServices,
        support_band: Some(SupportBand::Medium),
    }
}

// ---------------------------------------------------------------- enrolment

#[test]
fn enrolment_starts_a_spell() {
    TestFramework::<Pathway>::with(services())
        .given_no_previous_events()
        .when(enrol("2024-01-10"))
        .then_expect_events(vec![enrolled("2024-01-10")]);
}

#[test]
fn enrolment_in_an_unknown_territory_is_refused() {
    TestFramework::<Pathway>::with(services())
        .given_no_previous_events()
        .when(PathwayCommand::Enrol {
            territory: "ATLANTIS".into(),
            on: d("2024-01-10"),
            referral: Referral::SelfReferral,
            support_band: None,
        })
        .then_expect_error(PathwayError::UnknownTerritory {
            territory: "ATLANTIS".into(),
        });
}

#[test]
fn enrolling_twice_is_refused() {
    given(vec![enrolled("2024-01-10")])
        .when(enrol("2024-01-11"))
        .then_expect_error(PathwayError::AlreadyEnrolled);
}

#[test]
fn commands_before_enrolment_find_no_beneficiary() {
    TestFramework::<Pathway>::with(services())
        .given_no_previous_events()
        .when(enter("internship", "2024-01-10"))
        .then_expect_error(PathwayError::NotEnrolled);
}

// ---------------------------------------------------------------- dates

#[test]
fn dates_before_2000_are_refused() {
    TestFramework::<Pathway>::with(services())
        .given_no_previous_events()
        .when(enrol("1999-12-31"))
        .then_expect_error(PathwayError::DateTooEarly {
            on: d("1999-12-31"),
        });
}

#[test]
fn tomorrow_is_accepted_but_not_the_day_after() {
    TestFramework::<Pathway>::with(services())
        .given_no_previous_events()
        .when(enrol("2024-06-16"))
        .then_expect_events(vec![enrolled("2024-06-16")]);
    TestFramework::<Pathway>::with(services())
        .given_no_previous_events()
        .when(enrol("2024-06-17"))
        .then_expect_error(PathwayError::DateInFuture {
            on: d("2024-06-17"),
            today: d(TODAY),
        });
}

#[test]
fn a_date_before_the_latest_effective_date_is_out_of_order() {
    given(vec![
        enrolled("2024-01-10"),
        entered("internship", "2024-03-01", None, Transition::Entry),
    ])
    .when(enter("job_placement", "2024-02-28"))
    .then_expect_error(PathwayError::OutOfOrder {
        on: d("2024-02-28"),
        latest: d("2024-03-01"),
    });
}

#[test]
fn the_same_date_as_the_latest_is_in_order() {
    given(vec![
        enrolled("2024-01-10"),
        entered("internship", "2024-03-01", None, Transition::Entry),
    ])
    .when(enter("job_placement", "2024-03-01"))
    .then_expect_events(vec![
        exited("internship", "2024-03-01", ExitOutcome::MovedOn),
        entered(
            "job_placement",
            "2024-03-01",
            Some("internship"),
            Transition::Progression,
        ),
    ]);
}

#[test]
fn voided_events_do_not_count_for_ordering() {
    // The stage entry of 2024-05-01 was undone, so 2024-04-01 is in order again.
    given(vec![
        enrolled("2024-01-10"),
        entered("internship", "2024-05-01", None, Transition::Entry),
        undone(vec![2]),
    ])
    .when(enter("internship", "2024-04-01"))
    .then_expect_events(vec![entered(
        "internship",
        "2024-04-01",
        None,
        Transition::Entry,
    )]);
}

#[test]
fn each_command_checks_its_date() {
    let base = vec![
        enrolled("2024-01-10"),
        entered("internship", "2024-03-01", None, Transition::Entry),
    ];
    let early = d("2024-02-01");
    let out_of_order = PathwayError::OutOfOrder {
        on: early,
        latest: d("2024-03-01"),
    };
    for command in [
        PathwayCommand::ExitStage {
            on: early,
            outcome: ExitOutcome::Completed,
        },
        PathwayCommand::ChangeTerritory {
            territory: "LOM-LC-LECCO".into(),
            on: early,
        },
        PathwayCommand::ClosePathway {
            on: early,
            outcome: CloseOutcome::Employed,
        },
    ] {
        given(base.clone())
            .when(command)
            .then_expect_error(out_of_order.clone());
    }
    given(vec![
        enrolled("2024-01-10"),
        closed("2024-03-01", CloseOutcome::DroppedOut),
    ])
    .when(PathwayCommand::ReopenPathway { on: early })
    .then_expect_error(out_of_order);
}

// ---------------------------------------------------------------- stages

#[test]
fn the_first_stage_is_an_entry() {
    given(vec![enrolled("2024-01-10")])
        .when(PathwayCommand::EnterStage {
            stage: "socio_occupational".into(),
            on: d("2024-01-15"),
            provider: Some("Cooperativa Il Sentiero".into()),
        })
        .then_expect_events(vec![PathwayEvent::StageEntered {
            stage: stage("socio_occupational"),
            on: d("2024-01-15"),
            from_stage: None,
            transition: Transition::Entry,
            provider: Some("Cooperativa Il Sentiero".into()),
        }]);
}

#[test]
fn an_unknown_stage_is_refused_with_the_valid_codes() {
    let result = given(vec![enrolled("2024-01-10")])
        .when(enter("apprenticeship", "2024-01-15"))
        .inspect_result();
    let err = result.unwrap_err();
    assert_eq!(err.field(), Some("stage"));
    assert_eq!(err.code(), "unknown_stage");
    assert!(
        err.to_string()
            .contains("socio_occupational, internship, job_placement"),
        "{err}"
    );
}

#[test]
fn entering_over_an_open_episode_first_exits_it_as_moved_on() {
    given(vec![
        enrolled("2024-01-10"),
        entered("socio_occupational", "2024-01-15", None, Transition::Entry),
    ])
    .when(enter("internship", "2024-04-01"))
    .then_expect_events(vec![
        exited("socio_occupational", "2024-04-01", ExitOutcome::MovedOn),
        entered(
            "internship",
            "2024-04-01",
            Some("socio_occupational"),
            Transition::Progression,
        ),
    ]);
}

#[test]
fn a_lower_level_is_a_regression() {
    given(vec![
        enrolled("2024-01-10"),
        entered("internship", "2024-01-15", None, Transition::Entry),
        exited("internship", "2024-03-01", ExitOutcome::Interrupted),
    ])
    .when(enter("socio_occupational", "2024-03-05"))
    .then_expect_events(vec![entered(
        "socio_occupational",
        "2024-03-05",
        Some("internship"),
        Transition::Regression,
    )]);
}

#[test]
fn the_same_level_is_a_reiteration() {
    given(vec![
        enrolled("2024-01-10"),
        entered("internship", "2024-01-15", None, Transition::Entry),
        exited("internship", "2024-03-01", ExitOutcome::Completed),
    ])
    .when(enter("internship", "2024-03-05"))
    .then_expect_events(vec![entered(
        "internship",
        "2024-03-05",
        Some("internship"),
        Transition::Reiteration,
    )]);
}

#[test]
fn two_stages_sharing_a_level_reiterate() {
    TestFramework::<Pathway>::with(services_with_training())
        .given(vec![
            enrolled("2024-01-10"),
            entered("socio_occupational", "2024-01-15", None, Transition::Entry),
        ])
        .when(enter("training", "2024-02-01"))
        .then_expect_events(vec![
            exited("socio_occupational", "2024-02-01", ExitOutcome::MovedOn),
            entered(
                "training",
                "2024-02-01",
                Some("socio_occupational"),
                Transition::Reiteration,
            ),
        ]);
}

#[test]
fn classification_looks_across_spells() {
    // An internship in a closed spell makes a new internship in the next spell a reiteration.
    given(vec![
        enrolled("2024-01-10"),
        entered("internship", "2024-01-15", None, Transition::Entry),
        exited("internship", "2024-02-01", ExitOutcome::PathwayClosed),
        closed("2024-02-01", CloseOutcome::DroppedOut),
        PathwayEvent::PathwayReopened {
            on: d("2024-03-01"),
        },
    ])
    .when(enter("internship", "2024-03-02"))
    .then_expect_events(vec![entered(
        "internship",
        "2024-03-02",
        Some("internship"),
        Transition::Reiteration,
    )]);
}

#[test]
fn classification_ignores_voided_entries() {
    // The job placement was undone: the reference is the internship again.
    given(vec![
        enrolled("2024-01-10"),
        entered("internship", "2024-01-15", None, Transition::Entry),
        exited("internship", "2024-02-01", ExitOutcome::MovedOn),
        entered(
            "job_placement",
            "2024-02-01",
            Some("internship"),
            Transition::Progression,
        ),
        undone(vec![3, 4]),
    ])
    .when(enter("internship", "2024-02-01"))
    .then_expect_events(vec![
        exited("internship", "2024-02-01", ExitOutcome::MovedOn),
        entered(
            "internship",
            "2024-02-01",
            Some("internship"),
            Transition::Reiteration,
        ),
    ]);
}

#[tokio::test]
async fn stalled_reiterations_count_since_the_last_progression() {
    let services = services();
    let pathway = run(
        &services,
        vec![
            enrol("2024-01-01"),
            enter("internship", "2024-01-02"),    // entry
            enter("internship", "2024-01-03"),    // reiteration (1)
            enter("job_placement", "2024-01-04"), // progression: stalled back to 0
            enter("internship", "2024-01-05"),    // regression
            enter("internship", "2024-01-06"),    // reiteration (1)
            enter("internship", "2024-01-07"),    // reiteration (2)
        ],
    )
    .await;
    let state = pathway.state();
    assert_eq!(state.stalled_reiterations, 2);
    assert_eq!(state.counts.reiterations, 3);
    assert_eq!(state.counts.progressions, 1);
    assert_eq!(state.counts.regressions, 1);
    assert_eq!(state.counts.entries, 1);
    assert_eq!(state.counts.stage_entries, 6);
}

#[test]
fn exit_needs_an_open_episode() {
    given(vec![enrolled("2024-01-10")])
        .when(PathwayCommand::ExitStage {
            on: d("2024-01-11"),
            outcome: ExitOutcome::Completed,
        })
        .then_expect_error(PathwayError::NoOpenEpisode);
}

#[test]
fn exit_records_the_outcome() {
    given(vec![
        enrolled("2024-01-10"),
        entered("internship", "2024-01-15", None, Transition::Entry),
    ])
    .when(PathwayCommand::ExitStage {
        on: d("2024-04-15"),
        outcome: ExitOutcome::Completed,
    })
    .then_expect_events(vec![exited(
        "internship",
        "2024-04-15",
        ExitOutcome::Completed,
    )]);
}

#[test]
fn automatic_outcomes_cannot_be_given_by_hand() {
    for outcome in [ExitOutcome::MovedOn, ExitOutcome::PathwayClosed] {
        let err = given(vec![
            enrolled("2024-01-10"),
            entered("internship", "2024-01-15", None, Transition::Entry),
        ])
        .when(PathwayCommand::ExitStage {
            on: d("2024-04-15"),
            outcome,
        })
        .inspect_result()
        .unwrap_err();
        assert_eq!(err.code(), "automatic_outcome");
        assert_eq!(err.field(), Some("outcome"));
    }
}

// ---------------------------------------------------------------- open spell required

#[test]
fn stage_exit_territory_and_close_need_an_open_spell() {
    let closed_pathway = vec![
        enrolled("2024-01-10"),
        closed("2024-02-01", CloseOutcome::MovedAway),
    ];
    for command in [
        enter("internship", "2024-03-01"),
        PathwayCommand::ExitStage {
            on: d("2024-03-01"),
            outcome: ExitOutcome::Completed,
        },
        PathwayCommand::ChangeTerritory {
            territory: "LOM-LC-LECCO".into(),
            on: d("2024-03-01"),
        },
        PathwayCommand::ClosePathway {
            on: d("2024-03-01"),
            outcome: CloseOutcome::Other,
        },
    ] {
        given(closed_pathway.clone())
            .when(command)
            .then_expect_error(PathwayError::PathwayClosed);
    }
}

// ---------------------------------------------------------------- territory

#[test]
fn territory_change_records_from_and_to() {
    given(vec![enrolled("2024-01-10")])
        .when(PathwayCommand::ChangeTerritory {
            territory: "LOM-LC-LECCO".into(),
            on: d("2024-02-01"),
        })
        .then_expect_events(vec![PathwayEvent::TerritoryChanged {
            from: territory("LOM-BG-BERGAMO"),
            to: territory("LOM-LC-LECCO"),
            on: d("2024-02-01"),
        }]);
}

#[test]
fn territory_change_must_name_another_known_territory() {
    given(vec![enrolled("2024-01-10")])
        .when(PathwayCommand::ChangeTerritory {
            territory: "LOM-BG-BERGAMO".into(),
            on: d("2024-02-01"),
        })
        .then_expect_error(PathwayError::SameTerritory {
            territory: "LOM-BG-BERGAMO".into(),
        });
    given(vec![enrolled("2024-01-10")])
        .when(PathwayCommand::ChangeTerritory {
            territory: "lom bg".into(),
            on: d("2024-02-01"),
        })
        .then_expect_error(PathwayError::UnknownTerritory {
            territory: "lom bg".into(),
        });
}

// ---------------------------------------------------------------- close and reopen

#[test]
fn closing_over_an_open_episode_first_exits_it() {
    given(vec![
        enrolled("2024-01-10"),
        entered("internship", "2024-01-15", None, Transition::Entry),
    ])
    .when(PathwayCommand::ClosePathway {
        on: d("2024-05-01"),
        outcome: CloseOutcome::Employed,
    })
    .then_expect_events(vec![
        exited("internship", "2024-05-01", ExitOutcome::PathwayClosed),
        closed("2024-05-01", CloseOutcome::Employed),
    ]);
}

#[test]
fn closing_without_an_episode_writes_only_the_closure() {
    given(vec![enrolled("2024-01-10")])
        .when(PathwayCommand::ClosePathway {
            on: d("2024-05-01"),
            outcome: CloseOutcome::Deceased,
        })
        .then_expect_events(vec![closed("2024-05-01", CloseOutcome::Deceased)]);
}

#[test]
fn reopening_needs_a_closed_spell() {
    given(vec![enrolled("2024-01-10")])
        .when(PathwayCommand::ReopenPathway {
            on: d("2024-02-01"),
        })
        .then_expect_error(PathwayError::PathwayOpen);
    given(vec![
        enrolled("2024-01-10"),
        closed("2024-02-01", CloseOutcome::DroppedOut),
    ])
    .when(PathwayCommand::ReopenPathway {
        on: d("2024-02-01"),
    })
    .then_expect_events(vec![PathwayEvent::PathwayReopened {
        on: d("2024-02-01"),
    }]);
}

// ---------------------------------------------------------------- undo

#[test]
fn undo_voids_the_latest_command() {
    given(vec![
        enrolled("2024-01-10"),
        entered("internship", "2024-01-15", None, Transition::Entry),
    ])
    .when(undo())
    .then_expect_events(vec![undone(vec![2])]);
}

#[test]
fn undo_voids_both_events_of_a_two_event_command() {
    given(vec![
        enrolled("2024-01-10"),
        entered("socio_occupational", "2024-01-15", None, Transition::Entry),
        exited("socio_occupational", "2024-04-01", ExitOutcome::MovedOn),
        entered(
            "internship",
            "2024-04-01",
            Some("socio_occupational"),
            Transition::Progression,
        ),
    ])
    .when(undo())
    .then_expect_events(vec![undone(vec![3, 4])]);
}

#[test]
fn several_undos_walk_back_command_by_command() {
    given(vec![
        enrolled("2024-01-10"),
        entered("internship", "2024-01-15", None, Transition::Entry),
        exited("internship", "2024-05-01", ExitOutcome::PathwayClosed),
        closed("2024-05-01", CloseOutcome::Employed),
        undone(vec![3, 4]),
    ])
    .when(undo())
    .then_expect_events(vec![undone(vec![2])]);
}

#[test]
fn an_undo_is_not_undoable_and_new_commands_are_undone_first() {
    // enrol(1), stage(2), undo(3 voids 2), stage(4): the next undo voids 4, then 1.
    given(vec![
        enrolled("2024-01-10"),
        entered("internship", "2024-01-15", None, Transition::Entry),
        undone(vec![2]),
        entered("socio_occupational", "2024-01-16", None, Transition::Entry),
    ])
    .when(undo())
    .then_expect_events(vec![undone(vec![4])]);
    given(vec![
        enrolled("2024-01-10"),
        entered("internship", "2024-01-15", None, Transition::Entry),
        undone(vec![2]),
        entered("socio_occupational", "2024-01-16", None, Transition::Entry),
        undone(vec![4]),
    ])
    .when(undo())
    .then_expect_events(vec![undone(vec![1])]);
}

#[test]
fn undoing_the_enrolment_voids_the_beneficiary() {
    let pathway = Pathway::from_events(&[enrolled("2024-01-10"), undone(vec![1])]);
    assert_eq!(pathway.state().status, PathwayStatus::Voided);
    assert_eq!(pathway.state().territory, None);
    assert!(pathway.is_voided(1));
    for command in [
        undo(),
        enter("internship", "2024-02-01"),
        enrol("2024-02-01"),
    ] {
        given(vec![enrolled("2024-01-10"), undone(vec![1])])
            .when(command)
            .then_expect_error(PathwayError::Voided);
    }
}

#[test]
fn undo_on_an_empty_stream_finds_no_beneficiary() {
    let err = TestFramework::<Pathway>::with(services())
        .given_no_previous_events()
        .when(undo())
        .inspect_result()
        .unwrap_err();
    assert_eq!(err, PathwayError::NotEnrolled);
    assert_eq!(PathwayError::NothingToUndo.refusal(), Refusal::Conflict);
}

#[test]
fn undo_needs_a_reason() {
    given(vec![enrolled("2024-01-10")])
        .when(PathwayCommand::Undo {
            reason: "   ".into(),
        })
        .then_expect_error(PathwayError::InvalidText {
            field: "reason",
            problem: "must not be empty",
        });
}

#[test]
fn undo_restores_the_state_before_the_command() {
    let before = Pathway::from_events(&[
        enrolled("2024-01-10"),
        entered("internship", "2024-01-15", None, Transition::Entry),
    ]);
    let after = Pathway::from_events(&[
        enrolled("2024-01-10"),
        entered("internship", "2024-01-15", None, Transition::Entry),
        PathwayEvent::TerritoryChanged {
            from: territory("LOM-BG-BERGAMO"),
            to: territory("LOM-LC-LECCO"),
            on: d("2024-02-01"),
        },
        exited("internship", "2024-03-01", ExitOutcome::PathwayClosed),
        closed("2024-03-01", CloseOutcome::Employed),
        undone(vec![4, 5]),
        undone(vec![3]),
    ]);
    let mut expected = before.state().clone();
    expected.counts.corrections = 2;
    assert_eq!(after.state(), &expected);
    assert_eq!(after.version(), 7);
    assert!((3..=5).all(|s| after.is_voided(s)));
    assert!(!after.is_voided(2));
}

#[test]
fn refusals_name_their_field_and_kind() {
    let err = PathwayError::OutOfOrder {
        on: d("2024-01-01"),
        latest: d("2024-02-01"),
    };
    assert_eq!(
        (err.code(), err.field(), err.refusal()),
        ("out_of_order", Some("on"), Refusal::Invalid)
    );
    assert_eq!(PathwayError::PathwayClosed.refusal(), Refusal::Conflict);
    assert_eq!(PathwayError::NotEnrolled.refusal(), Refusal::NotFound);
}

#[test]
fn provider_text_is_checked() {
    given(vec![enrolled("2024-01-10")])
        .when(PathwayCommand::EnterStage {
            stage: "internship".into(),
            on: d("2024-01-15"),
            provider: Some("x".repeat(MAX + 1)),
        })
        .then_expect_error(PathwayError::InvalidText {
            field: "provider",
            problem: "must be at most 500 characters",
        });
}

const MAX: usize = crate::aggregate::MAX_TEXT_CHARS;

// ---------------------------------------------------------------- provider registry (SPEC 2.5)

/// The default services with two providers: `coop.alfa` of `LOM-BG` and `beta` of anywhere.
fn services_with_providers() -> PathwayServices {
    let territories = TerritoryRegistry::sample();
    let def = |code: &str, territories: &[&str]| ProviderDef {
        code: code.into(),
        name: code.into(),
        territories: territories.iter().map(|t| (*t).to_owned()).collect(),
    };
    let providers = ProviderRegistry::new(
        vec![def("coop.alfa", &["LOM-BG"]), def("beta", &[])],
        &territories,
    )
    .unwrap();
    services().with_providers(Arc::new(providers))
}

fn enter_with(provider: &str) -> PathwayCommand {
    PathwayCommand::EnterStage {
        stage: "internship".into(),
        on: d("2024-01-15"),
        provider: Some(provider.into()),
    }
}

fn entered_with(provider: &str) -> PathwayEvent {
    PathwayEvent::StageEntered {
        stage: stage("internship"),
        on: d("2024-01-15"),
        from_stage: None,
        transition: Transition::Entry,
        provider: Some(provider.into()),
    }
}

#[test]
fn a_registered_provider_is_accepted() {
    TestFramework::<Pathway>::with(services_with_providers())
        .given(vec![enrolled("2024-01-10")])
        .when(enter_with("coop.alfa"))
        .then_expect_events(vec![entered_with("coop.alfa")]);
}

#[test]
fn an_unregistered_provider_is_refused_when_a_registry_is_configured() {
    let err = TestFramework::<Pathway>::with(services_with_providers())
        .given(vec![enrolled("2024-01-10")])
        .when(enter_with("Cooperativa Il Sentiero"))
        .inspect_result()
        .unwrap_err();
    assert_eq!(
        err,
        PathwayError::UnknownProvider {
            provider: "Cooperativa Il Sentiero".into()
        }
    );
    assert_eq!(
        (err.code(), err.field(), err.refusal()),
        ("unknown_provider", Some("provider"), Refusal::Invalid)
    );
    // Codes are matched as written.
    TestFramework::<Pathway>::with(services_with_providers())
        .given(vec![enrolled("2024-01-10")])
        .when(enter_with("COOP.ALFA"))
        .then_expect_error(PathwayError::UnknownProvider {
            provider: "COOP.ALFA".into(),
        });
    // Without a provider, an entry needs no registry entry.
    TestFramework::<Pathway>::with(services_with_providers())
        .given(vec![enrolled("2024-01-10")])
        .when(enter("internship", "2024-01-15"))
        .then_expect_events(vec![entered(
            "internship",
            "2024-01-15",
            None,
            Transition::Entry,
        )]);
}

#[test]
fn without_a_registry_any_provider_text_is_accepted_and_empty_text_is_not() {
    given(vec![enrolled("2024-01-10")])
        .when(enter_with("  Cooperativa Il Sentiero "))
        .then_expect_events(vec![entered_with("Cooperativa Il Sentiero")]);
    for services in [services(), services_with_providers()] {
        TestFramework::<Pathway>::with(services)
            .given(vec![enrolled("2024-01-10")])
            .when(enter_with("  "))
            .then_expect_error(PathwayError::InvalidText {
                field: "provider",
                problem: "must not be empty",
            });
    }
}

#[test]
fn a_providers_territories_never_refuse_an_entry_elsewhere() {
    // `coop.alfa` works in LOM-BG; this beneficiary is in Milano.
    let in_milano = PathwayEvent::Enrolled {
        territory: territory("LOM-MI-MILANO"),
        on: d("2024-01-10"),
        referral: Referral::SocialServices,
        support_band: None,
    };
    TestFramework::<Pathway>::with(services_with_providers())
        .given(vec![in_milano])
        .when(enter_with("coop.alfa"))
        .then_expect_events(vec![entered_with("coop.alfa")]);
}

#[test]
fn a_stored_entry_naming_a_provider_outside_the_registry_still_folds() {
    // Recorded before the registry existed: loading and deciding on the stream still work.
    TestFramework::<Pathway>::with(services_with_providers())
        .given(vec![
            enrolled("2024-01-10"),
            entered_with("Cooperativa Il Sentiero"),
        ])
        .when(enter("job_placement", "2024-03-01"))
        .then_expect_events(vec![
            exited("internship", "2024-03-01", ExitOutcome::MovedOn),
            entered(
                "job_placement",
                "2024-03-01",
                Some("internship"),
                Transition::Progression,
            ),
        ]);
    let pathway = Pathway::from_events(&[
        enrolled("2024-01-10"),
        entered_with("Cooperativa Il Sentiero"),
    ]);
    assert_eq!(pathway.version(), 2);
    assert_eq!(
        pathway
            .state()
            .current_stage
            .as_ref()
            .map(StageCode::as_str),
        Some("internship")
    );
}

// ---------------------------------------------------------------- erasure of personal data

fn erased() -> PathwayEvent {
    PathwayEvent::PersonalDataErased { on: d(TODAY) }
}

#[test]
fn erasure_is_recorded_whatever_the_status() {
    for history in [
        vec![enrolled("2024-01-10")],
        vec![
            enrolled("2024-01-10"),
            closed("2024-05-01", CloseOutcome::Employed),
        ],
        vec![enrolled("2024-01-10"), undone(vec![1])],
    ] {
        given(history)
            .when(PathwayCommand::RecordErasure)
            .then_expect_events(vec![erased()]);
    }
    let err = TestFramework::<Pathway>::with(services())
        .given_no_previous_events()
        .when(PathwayCommand::RecordErasure)
        .inspect_result()
        .unwrap_err();
    assert_eq!(err, PathwayError::NotEnrolled);
}

#[test]
fn erasure_happens_once() {
    given(vec![enrolled("2024-01-10"), erased()])
        .when(PathwayCommand::RecordErasure)
        .then_expect_error(PathwayError::AlreadyErased);
    assert_eq!(PathwayError::AlreadyErased.refusal(), Refusal::Gone);
}

#[test]
fn undo_passes_over_an_erasure() {
    given(vec![
        enrolled("2024-01-10"),
        entered("internship", "2024-01-15", None, Transition::Entry),
        erased(),
    ])
    .when(undo())
    .then_expect_events(vec![undone(vec![2])]);
    given(vec![enrolled("2024-01-10"), erased(), undone(vec![1])])
        .when(undo())
        .then_expect_error(PathwayError::Voided);
}

#[test]
fn erasure_changes_no_state_and_no_date_rule() {
    let before = Pathway::from_events(&[
        enrolled("2024-01-10"),
        entered("internship", "2024-01-15", None, Transition::Entry),
    ]);
    let after = Pathway::from_events(&[
        enrolled("2024-01-10"),
        entered("internship", "2024-01-15", None, Transition::Entry),
        erased(),
    ]);
    assert_eq!(before.state(), after.state());
    assert!(after.personal_data_erased());
    assert!(!before.personal_data_erased());
    // Its date (today) is not an effective date: earlier pathway dates are still accepted.
    given(vec![
        enrolled("2024-01-10"),
        entered("internship", "2024-01-15", None, Transition::Entry),
        erased(),
    ])
    .when(enter("job_placement", "2024-02-01"))
    .then_expect_events(vec![
        exited("internship", "2024-02-01", ExitOutcome::MovedOn),
        entered(
            "job_placement",
            "2024-02-01",
            Some("internship"),
            Transition::Progression,
        ),
    ]);
}

#[test]
fn refusals_state_the_limits_the_rules_apply() {
    assert_eq!(
        crate::aggregate::TEXT_TOO_LONG,
        format!("must be at most {MAX} characters")
    );
    assert_eq!(
        PathwayError::DateTooEarly {
            on: d("1999-12-31")
        }
        .to_string(),
        "`on` 1999-12-31 is before 2000-01-01"
    );
    assert_eq!(
        crate::aggregate::MAX_DAYS_AHEAD,
        chrono::Days::new(1),
        "the refusal says \"one day\""
    );
    assert_eq!(
        crate::ConfigError::InvalidStageCode("X".into()).to_string(),
        "stage code `X` must match [a-z0-9_]+ (at most 64 characters)"
    );
    assert_eq!(
        crate::ConfigError::InvalidTerritoryCode("A.B".into()).to_string(),
        "territory code `A.B` must match [A-Za-z0-9_-]{1,64}"
    );
}

// ---------------------------------------------------------------- needs assessment (SPEC 2.5)

use TeamMember::{EmploymentCentre, HealthService, SocialServices};

fn assess(
    on: &str,
    kind: AssessmentKind,
    occupability: Occupability,
    team: &[TeamMember],
) -> PathwayCommand {
    PathwayCommand::AssessNeeds {
        on: d(on),
        kind,
        occupability,
        team: team.to_vec(),
    }
}

fn assessed(
    on: &str,
    kind: AssessmentKind,
    occupability: Occupability,
    team: &[TeamMember],
) -> PathwayEvent {
    PathwayEvent::NeedsAssessed {
        on: d(on),
        kind,
        occupability,
        team: team.to_vec(),
    }
}

#[test]
fn an_assessment_records_kind_occupability_and_team() {
    given(vec![enrolled("2024-01-10")])
        .when(assess(
            "2024-01-12",
            AssessmentKind::Multidisciplinary,
            Occupability::Low,
            &[SocialServices, EmploymentCentre, HealthService],
        ))
        .then_expect_events(vec![assessed(
            "2024-01-12",
            AssessmentKind::Multidisciplinary,
            Occupability::Low,
            &[SocialServices, EmploymentCentre, HealthService],
        )]);
    given(vec![enrolled("2024-01-10")])
        .when(assess(
            "2024-01-10",
            AssessmentKind::Initial,
            Occupability::High,
            &[EmploymentCentre],
        ))
        .then_expect_events(vec![assessed(
            "2024-01-10",
            AssessmentKind::Initial,
            Occupability::High,
            &[EmploymentCentre],
        )]);
}

#[test]
fn an_assessment_needs_an_enrolled_beneficiary_with_an_open_spell() {
    let command = || {
        assess(
            "2024-03-01",
            AssessmentKind::Review,
            Occupability::Medium,
            &[SocialServices],
        )
    };
    TestFramework::<Pathway>::with(services())
        .given_no_previous_events()
        .when(command())
        .then_expect_error(PathwayError::NotEnrolled);
    given(vec![enrolled("2024-01-10"), undone(vec![1])])
        .when(command())
        .then_expect_error(PathwayError::Voided);
    given(vec![
        enrolled("2024-01-10"),
        closed("2024-02-01", CloseOutcome::MovedAway),
    ])
    .when(command())
    .then_expect_error(PathwayError::PathwayClosed);
}

#[test]
fn an_assessment_follows_the_date_rules() {
    let base = vec![
        enrolled("2024-01-10"),
        entered("internship", "2024-03-01", None, Transition::Entry),
    ];
    let at = |on| {
        assess(
            on,
            AssessmentKind::Review,
            Occupability::Medium,
            &[SocialServices],
        )
    };
    given(base.clone())
        .when(at("2024-02-01"))
        .then_expect_error(PathwayError::OutOfOrder {
            on: d("2024-02-01"),
            latest: d("2024-03-01"),
        });
    given(base.clone())
        .when(at("2024-06-17"))
        .then_expect_error(PathwayError::DateInFuture {
            on: d("2024-06-17"),
            today: d(TODAY),
        });
    given(base.clone())
        .when(at("1999-12-31"))
        .then_expect_error(PathwayError::DateTooEarly {
            on: d("1999-12-31"),
        });
    given(base)
        .when(at("2024-06-16"))
        .then_expect_events(vec![assessed(
            "2024-06-16",
            AssessmentKind::Review,
            Occupability::Medium,
            &[SocialServices],
        )]);
    // Its date is an effective date: nothing earlier may follow it.
    given(vec![
        enrolled("2024-01-10"),
        assessed(
            "2024-04-01",
            AssessmentKind::Initial,
            Occupability::Low,
            &[SocialServices],
        ),
    ])
    .when(enter("internship", "2024-03-01"))
    .then_expect_error(PathwayError::OutOfOrder {
        on: d("2024-03-01"),
        latest: d("2024-04-01"),
    });
}

#[test]
fn an_empty_team_is_refused() {
    for kind in AssessmentKind::ALL {
        given(vec![enrolled("2024-01-10")])
            .when(assess("2024-01-12", kind, Occupability::Medium, &[]))
            .then_expect_error(PathwayError::EmptyTeam);
    }
}

#[test]
fn a_team_member_named_twice_is_refused() {
    given(vec![enrolled("2024-01-10")])
        .when(assess(
            "2024-01-12",
            AssessmentKind::Multidisciplinary,
            Occupability::Medium,
            &[SocialServices, EmploymentCentre, SocialServices],
        ))
        .then_expect_error(PathwayError::DuplicateTeamMember {
            member: "social_services",
        });
    // Two mentions of one service are not two services.
    given(vec![enrolled("2024-01-10")])
        .when(assess(
            "2024-01-12",
            AssessmentKind::Review,
            Occupability::Medium,
            &[HealthService, HealthService],
        ))
        .then_expect_error(PathwayError::DuplicateTeamMember {
            member: "health_service",
        });
}

#[test]
fn a_multidisciplinary_assessment_needs_two_services() {
    given(vec![enrolled("2024-01-10")])
        .when(assess(
            "2024-01-12",
            AssessmentKind::Multidisciplinary,
            Occupability::Medium,
            &[SocialServices],
        ))
        .then_expect_error(PathwayError::TeamTooSmall);
}

#[test]
fn team_refusals_name_the_team_field() {
    for (err, code) in [
        (PathwayError::EmptyTeam, "empty_team"),
        (
            PathwayError::DuplicateTeamMember {
                member: "third_sector",
            },
            "duplicate_team_member",
        ),
        (PathwayError::TeamTooSmall, "team_too_small"),
    ] {
        assert_eq!(
            (err.code(), err.field(), err.refusal()),
            (code, Some("team"), Refusal::Invalid)
        );
        assert!(err.to_string().contains("`team`"), "{err}");
    }
}

#[test]
fn the_latest_assessment_sets_the_occupability() {
    let never = Pathway::from_events(&[enrolled("2024-01-10")]);
    assert_eq!(never.state().occupability, None);
    let pathway = Pathway::from_events(&assessed_twice());
    assert_eq!(pathway.state().occupability, Some(Occupability::High));
}

/// Enrolled, assessed `low`, in an internship, then reviewed `high`.
fn assessed_twice() -> Vec<PathwayEvent> {
    vec![
        enrolled("2024-01-10"),
        assessed(
            "2024-01-12",
            AssessmentKind::Initial,
            Occupability::Low,
            &[SocialServices],
        ),
        entered("internship", "2024-02-01", None, Transition::Entry),
        assessed(
            "2024-03-01",
            AssessmentKind::Review,
            Occupability::High,
            &[EmploymentCentre],
        ),
    ]
}

#[test]
fn undo_voids_an_assessment_and_the_occupability_goes_back() {
    let history = assessed_twice();
    // It is its own undo group.
    given(history.clone())
        .when(undo())
        .then_expect_events(vec![undone(vec![4])]);
    let mut events = history;
    events.push(undone(vec![4]));
    let once = Pathway::from_events(&events);
    assert_eq!(once.state().occupability, Some(Occupability::Low));
    assert!(once.is_voided(4));
    // Its date no longer counts for ordering.
    assert_eq!(once.state().latest_on, Some(d("2024-02-01")));
    events.push(undone(vec![3]));
    events.push(undone(vec![2]));
    let all = Pathway::from_events(&events);
    assert_eq!(all.state().occupability, None);
    assert_eq!(all.state().current_stage, None);
    assert_eq!(all.state().counts.corrections, 3);
}

#[test]
fn an_assessment_changes_no_classification() {
    let without = Pathway::from_events(&[
        enrolled("2024-01-10"),
        entered("internship", "2024-02-01", None, Transition::Entry),
    ]);
    let with = Pathway::from_events(&[
        enrolled("2024-01-10"),
        entered("internship", "2024-02-01", None, Transition::Entry),
        assessed(
            "2024-02-10",
            AssessmentKind::Multidisciplinary,
            Occupability::Medium,
            &[SocialServices, EmploymentCentre],
        ),
    ]);
    let mut expected = without.state().clone();
    expected.occupability = Some(Occupability::Medium);
    expected.latest_on = Some(d("2024-02-10"));
    assert_eq!(with.state(), &expected);
    // The open episode stays open, and the next entry is classified against its stage.
    given(vec![
        enrolled("2024-01-10"),
        entered("internship", "2024-02-01", None, Transition::Entry),
        assessed(
            "2024-02-10",
            AssessmentKind::Review,
            Occupability::Medium,
            &[SocialServices],
        ),
    ])
    .when(enter("internship", "2024-02-11"))
    .then_expect_events(vec![
        exited("internship", "2024-02-11", ExitOutcome::MovedOn),
        entered(
            "internship",
            "2024-02-11",
            Some("internship"),
            Transition::Reiteration,
        ),
    ]);
}
