//! The projections against real databases: every test body runs on SQLite and on PostgreSQL
//! (a fresh database per test), plus a property test on both.

mod common;
mod exactly_once;
mod leadership;
mod live;
mod properties;
mod rebuild;
mod replay;
mod upgrade;
mod worked_example;

use exactly_once::{
    a_generation_larger_than_a_catch_up_batch_is_built_once,
    applies_every_event_once_across_a_restart, competing_runners_never_apply_a_batch_twice,
    crashes_at_any_point_lose_and_repeat_nothing,
};
use leadership::one_leader_and_a_takeover_when_it_dies;
use live::new_events_reach_the_projection;
use rebuild::{
    a_fresh_generation_stores_rows_exactly_as_given, rebuild_from_another_process,
    rebuild_swaps_in_without_downtime,
};
use replay::projection_equals_replay_for_hand_written_histories;
use upgrade::{
    an_older_release_rebuild_is_started_again,
    an_outdated_read_model_is_rebuilt_and_refused_meanwhile,
};
use worked_example::worked_example_of_the_metrics_doc;

filiera_testkit::on_both_backends!(
    harness = crate::common::Harness::on;
    applies_every_event_once_across_a_restart,
    crashes_at_any_point_lose_and_repeat_nothing,
    competing_runners_never_apply_a_batch_twice,
    a_generation_larger_than_a_catch_up_batch_is_built_once,
    projection_equals_replay_for_hand_written_histories,
    worked_example_of_the_metrics_doc,
    rebuild_swaps_in_without_downtime,
    rebuild_from_another_process,
    a_fresh_generation_stores_rows_exactly_as_given,
    one_leader_and_a_takeover_when_it_dies,
    new_events_reach_the_projection,
    an_outdated_read_model_is_rebuilt_and_refused_meanwhile,
    an_older_release_rebuild_is_started_again,
);
