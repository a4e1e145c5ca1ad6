//! The projections against real databases: every test body runs on SQLite and on PostgreSQL
//! (a fresh database per test), plus a property test on both.

mod common;
mod exactly_once;
mod leadership;
mod live;
mod properties;
mod rebuild;
mod replay;
mod worked_example;

/// Generates, for each test body `module::name`, one `#[tokio::test]` per backend.
macro_rules! on_both_backends {
    ($($module:ident :: $name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> anyhow::Result<()> {
                    let harness = crate::common::Harness::sqlite().await?;
                    crate::$module::$name(&harness).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> anyhow::Result<()> {
                    let harness = crate::common::Harness::postgres().await?;
                    crate::$module::$name(&harness).await
                }
            )*
        }
    };
}

on_both_backends!(
    exactly_once::applies_every_event_once_across_a_restart,
    exactly_once::crashes_at_any_point_lose_and_repeat_nothing,
    exactly_once::competing_runners_never_apply_a_batch_twice,
    replay::projection_equals_replay_for_hand_written_histories,
    worked_example::worked_example_of_the_metrics_doc,
    rebuild::rebuild_swaps_in_without_downtime,
    rebuild::rebuild_from_another_process,
    leadership::one_leader_and_a_takeover_when_it_dies,
    live::new_events_reach_the_projection,
);
