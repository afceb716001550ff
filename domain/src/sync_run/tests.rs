use super::*;
use crate::aggregate::testing::{given, given_nothing};
use chrono::TimeZone;
use proptest::prelude::*;
use serde_json::json;

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, 0)
        .single()
        .unwrap_or_default()
}

fn queued() -> SyncRunEvent {
    SyncRunEvent::RunQueued {
        run_id: "run1".into(),
        integration_id: "int1".into(),
        workspace_id: "ws1".into(),
        kind: RunKind::Full,
        trigger: Trigger::Manual,
        retry_of: None,
        rollback_of: None,
        options: Default::default(),
        at: t(0),
    }
}

fn started(worker: &str) -> SyncRunEvent {
    SyncRunEvent::RunStarted {
        worker: worker.into(),
        at: t(1),
    }
}

fn stats(processed: u64, failed: u64) -> RunStats {
    RunStats {
        processed,
        created: processed - failed,
        failed,
        api_calls: 1,
        ..RunStats::default()
    }
}

fn page(cursor: Option<serde_json::Value>, done: bool, s: RunStats) -> SyncRunCommand {
    SyncRunCommand::CommitPage {
        entity: Entity::Contacts,
        phase: Phase::Pull,
        cursor,
        done,
        stats: s,
        failures: vec![],
        total: None,
        at: t(2),
    }
}

fn apply_all(events: &[SyncRunEvent]) -> SyncRun {
    let mut run = SyncRun::default();
    for e in events {
        run.apply(e);
    }
    run
}

/// Decides `command` on `history` and appends what it emits.
fn run(history: &mut Vec<SyncRunEvent>, command: SyncRunCommand) -> Result<(), SyncRunError> {
    let events = given::<SyncRun>(history.clone()).when(command)?;
    history.extend(events);
    Ok(())
}

#[test]
fn a_run_is_queued_once() {
    let queue = SyncRunCommand::Queue {
        run_id: "run1".into(),
        integration_id: "int1".into(),
        workspace_id: "ws1".into(),
        kind: RunKind::Full,
        trigger: Trigger::Manual,
        retry_of: None,
        rollback_of: None,
        options: Default::default(),
        at: t(0),
    };
    assert_eq!(
        given_nothing::<SyncRun>().when(queue.clone()),
        Ok(vec![queued()])
    );
    assert_eq!(
        given::<SyncRun>([queued()]).when(queue),
        Err(SyncRunError::AlreadyExists)
    );
    assert_eq!(
        given_nothing::<SyncRun>().when(SyncRunCommand::Finish { at: t(1) }),
        Err(SyncRunError::NotFound)
    );
}

#[test]
fn pages_accumulate_stats_and_keep_the_resume_cursor() -> Result<(), SyncRunError> {
    let mut h = vec![queued(), started("w1")];
    run(
        &mut h,
        page(Some(json!({"after": "100"})), false, stats(100, 0)),
    )?;
    run(
        &mut h,
        page(Some(json!({"after": "200"})), false, stats(100, 2)),
    )?;
    let state = apply_all(&h);
    assert_eq!(state.stats.processed, 200);
    assert_eq!(state.stats.failed, 2);
    assert_eq!(state.stats.api_calls, 2);
    let pass = state
        .pass(Entity::Contacts, Phase::Pull)
        .cloned()
        .unwrap_or_default();
    assert_eq!(pass.cursor, Some(json!({"after": "200"})));
    assert_eq!((pass.pages, pass.done), (2, false));
    // A worker that takes over resumes from the same cursor.
    run(
        &mut h,
        SyncRunCommand::Start {
            worker: "w2".into(),
            at: t(3),
        },
    )?;
    let state = apply_all(&h);
    assert_eq!(state.worker.as_deref(), Some("w2"));
    assert_eq!(
        state.started_at,
        Some(t(1)),
        "the first start counts for the duration"
    );
    assert_eq!(
        state
            .pass(Entity::Contacts, Phase::Pull)
            .and_then(|p| p.cursor.clone()),
        Some(json!({"after": "200"}))
    );
    Ok(())
}

#[test]
fn an_ended_pass_takes_no_more_pages() -> Result<(), SyncRunError> {
    let mut h = vec![queued(), started("w1")];
    run(&mut h, page(None, true, stats(10, 0)))?;
    assert_eq!(
        run(&mut h, page(None, true, stats(10, 0))),
        Err(SyncRunError::PassEnded {
            entity: "contacts",
            phase: "pull"
        })
    );
    Ok(())
}

#[test]
fn finishing_is_completed_or_partial_by_failed_records() -> Result<(), SyncRunError> {
    let mut clean = vec![queued(), started("w1")];
    run(&mut clean, page(None, true, stats(10, 0)))?;
    run(&mut clean, SyncRunCommand::Finish { at: t(9) })?;
    let state = apply_all(&clean);
    assert_eq!(state.status, RunStatus::Completed);
    assert_eq!(state.duration(t(100)), Some(chrono::Duration::seconds(8)));

    let mut partial = vec![queued(), started("w1")];
    run(&mut partial, page(None, true, stats(10, 3)))?;
    run(&mut partial, SyncRunCommand::Finish { at: t(9) })?;
    assert_eq!(apply_all(&partial).status, RunStatus::Partial);
    Ok(())
}

#[test]
fn quota_exhaustion_failure_and_cancellation_end_an_active_run() -> Result<(), SyncRunError> {
    let endings = [
        (
            SyncRunCommand::ExhaustQuota {
                detail: "REQUEST_LIMIT_EXCEEDED".into(),
                at: t(5),
            },
            RunStatus::QuotaExhausted,
        ),
        (
            SyncRunCommand::Fail {
                reason: "token refused".into(),
                at: t(5),
            },
            RunStatus::Failed,
        ),
        (
            SyncRunCommand::Cancel {
                by: "token:abc".into(),
                at: t(5),
            },
            RunStatus::Cancelled,
        ),
    ];
    for (command, status) in endings {
        for history in [vec![queued()], vec![queued(), started("w1")]] {
            let mut h = history;
            run(&mut h, command.clone())?;
            let state = apply_all(&h);
            assert_eq!(state.status, status);
            assert!(state.reason.is_some());
            assert!(!state.status.is_active());
        }
    }
    Ok(())
}

#[test]
fn an_ended_run_accepts_nothing() -> Result<(), SyncRunError> {
    let mut h = vec![queued(), started("w1")];
    run(&mut h, SyncRunCommand::Finish { at: t(3) })?;
    for command in [
        SyncRunCommand::Start {
            worker: "w2".into(),
            at: t(4),
        },
        page(None, false, stats(1, 0)),
        SyncRunCommand::Finish { at: t(4) },
        SyncRunCommand::Fail {
            reason: "x".into(),
            at: t(4),
        },
        SyncRunCommand::ExhaustQuota {
            detail: "x".into(),
            at: t(4),
        },
        SyncRunCommand::Cancel {
            by: "x".into(),
            at: t(4),
        },
    ] {
        let result = given::<SyncRun>(h.clone()).when(command.clone());
        assert!(
            matches!(
                result,
                Err(SyncRunError::InvalidTransition {
                    status: RunStatus::Completed,
                    ..
                })
            ),
            "{command:?}: {result:?}"
        );
    }
    // Queued runs cannot take pages or finish before a worker starts them.
    let queued_only = given::<SyncRun>([queued()]);
    assert!(queued_only.when(page(None, false, stats(1, 0))).is_err());
    Ok(())
}

#[test]
fn summaries_name_what_happened() {
    assert_eq!(queued().summary(), "full sync run queued (manual trigger)");
    let ended = SyncRunEvent::RunEnded {
        status: RunStatus::QuotaExhausted,
        reason: Some("daily limit".into()),
        at: t(1),
    };
    assert_eq!(ended.summary(), "sync run quota_exhausted: daily limit");
}

#[test]
fn a_reapply_run_is_named_reapply() {
    let event = SyncRunEvent::RunQueued {
        run_id: "run1".into(),
        integration_id: "int1".into(),
        workspace_id: "ws1".into(),
        kind: RunKind::Reapply,
        trigger: Trigger::Manual,
        retry_of: None,
        rollback_of: None,
        options: Default::default(),
        at: t(0),
    };
    assert_eq!(event.summary(), "reapply sync run queued (manual trigger)");
    assert_eq!(
        serde_json::to_value(RunKind::Reapply).ok(),
        Some(json!("reapply"))
    );
    let state = apply_all(&[event, started("w1")]);
    assert_eq!(state.kind, Some(RunKind::Reapply));
}

proptest! {
    /// The run's stats are exactly the sum of its committed pages, whatever their order.
    #[test]
    fn run_stats_are_the_sum_of_page_stats(pages in prop::collection::vec((0u64..1000, 0u64..50), 0..20)) {
        let mut h = vec![queued(), started("w1")];
        let mut expected = RunStats::default();
        for (processed, failed) in &pages {
            let s = RunStats { processed: *processed, failed: *failed, api_calls: 1, rate_limited: processed % 3, ..RunStats::default() };
            expected = expected.plus(s);
            let committed = run(&mut h, page(Some(json!(processed)), false, s));
            prop_assert!(committed.is_ok());
        }
        let finished = run(&mut h, SyncRunCommand::Finish { at: t(9) });
        prop_assert!(finished.is_ok());
        let state = apply_all(&h);
        prop_assert_eq!(state.stats, expected);
        let want = if expected.failed > 0 { RunStatus::Partial } else { RunStatus::Completed };
        prop_assert_eq!(state.status, want);
        prop_assert_eq!(state.pass(Entity::Contacts, Phase::Pull).map(|p| p.pages).unwrap_or(0), pages.len() as u64);
        // One pass: its own counters are the run's.
        prop_assert_eq!(state.pass(Entity::Contacts, Phase::Pull).map(|p| p.stats).unwrap_or_default(), expected);
    }
}

fn config(direction: Direction, entities: Vec<Entity>) -> SyncConfig {
    SyncConfig {
        direction,
        entities,
        ..SyncConfig::default()
    }
}

fn any_direction() -> impl Strategy<Value = Direction> {
    prop_oneof![
        Just(Direction::Pull),
        Just(Direction::Push),
        Just(Direction::Bidirectional)
    ]
}

fn any_entities() -> impl Strategy<Value = Vec<Entity>> {
    proptest::sample::subsequence(vec![Entity::Contacts, Entity::Companies], 0..=2)
}

proptest! {
    /// Options are accepted exactly when their entities are a non-empty subset of the
    /// integration's and their direction is the integration's or it is two-way; the run
    /// then covers those entities in that direction.
    #[test]
    fn run_options_never_widen_the_integration(
        own in any_direction(),
        own_entities in any_entities(),
        asked in proptest::option::of(any_direction()),
        asked_entities in proptest::option::of(any_entities()),
    ) {
        let config = config(own, own_entities.clone());
        let options = RunOptions {
            entities: asked_entities.clone(),
            direction: asked,
            import_historical: true,
        };
        let entities_ok = asked_entities
            .as_ref()
            .is_none_or(|e| !e.is_empty() && e.iter().all(|x| own_entities.contains(x)));
        let direction_ok = asked.is_none_or(|d| d == own || own == Direction::Bidirectional);
        prop_assert_eq!(options.validate(&config).is_ok(), entities_ok && direction_ok);
        if entities_ok && direction_ok {
            let covered = options.entities_of(&config);
            prop_assert!(covered.iter().all(|e| own_entities.contains(e)));
            prop_assert_eq!(covered.len(), asked_entities.map_or(own_entities.len(), |e| e.len()));
            prop_assert_eq!(options.direction_of(&config), asked.unwrap_or(own));
        }
    }
}

#[test]
fn runs_queued_before_options_existed_read_as_default_options() {
    let old = json!({"type": "run_queued", "run_id": "r1", "integration_id": "i1",
        "workspace_id": "w1", "kind": "full", "trigger": "manual", "at": t(0)});
    let event: SyncRunEvent = serde_json::from_value(old).unwrap_or_else(|e| panic!("{e}"));
    let SyncRunEvent::RunQueued { options, .. } = &event else {
        panic!("{event:?}");
    };
    assert!(options.is_default() && options.import_historical);
    // Default options are not written, so such events stay as they were.
    let written = serde_json::to_value(&event).unwrap_or_default();
    assert!(written.get("options").is_none(), "{written}");
}

/// Progress is known only when the provider told how many records each pull pass
/// lists; it counts processed records against that, capped at 100.
#[test]
fn progress_follows_the_providers_total() {
    let mut run = apply_all(&[]);
    let queued = SyncRunEvent::RunQueued {
        run_id: "r".into(),
        integration_id: "i".into(),
        workspace_id: "w".into(),
        kind: RunKind::Full,
        trigger: Trigger::Manual,
        retry_of: None,
        rollback_of: None,
        options: Default::default(),
        at: t(0),
    };
    run.apply(&queued);
    run.apply(&SyncRunEvent::RunStarted {
        worker: "w".into(),
        at: t(1),
    });
    assert_eq!((run.records_total(), run.progress_percent()), (None, None));
    let page = |entity, processed, total| SyncRunEvent::PageCommitted {
        entity,
        phase: Phase::Pull,
        cursor: None,
        done: false,
        stats: stats(processed, 0),
        failures: vec![],
        total,
        at: t(2),
    };
    run.apply(&page(Entity::Contacts, 100, Some(400)));
    assert_eq!(
        (run.records_total(), run.progress_percent()),
        (Some(400), Some(25))
    );
    // A later page without the total keeps the pass's.
    run.apply(&page(Entity::Contacts, 100, None));
    assert_eq!(run.progress_percent(), Some(50));
    // A pass whose provider gave no total makes the run's unknown.
    run.apply(&page(Entity::Companies, 10, None));
    assert_eq!((run.records_total(), run.progress_percent()), (None, None));
    // More than the total (records added meanwhile): never past 100.
    let mut over = apply_all(&[queued]);
    over.apply(&page(Entity::Contacts, 30, Some(20)));
    assert_eq!(over.progress_percent(), Some(100));
}

/// Run counters written before 429 waits were counted (no `rate_limited`) still read,
/// as zero waits; a pass state written before passes had counters reads with zeros.
#[test]
fn stats_and_passes_from_older_events_still_read() {
    let stats: RunStats = serde_json::from_value(json!({"processed": 4, "created": 4,
        "updated": 0, "unchanged": 0, "skipped": 0, "failed": 0, "conflicts_detected": 0,
        "conflicts_resolved": 0, "api_calls": 2}))
    .expect("older stats read");
    assert_eq!(
        (stats.processed, stats.api_calls, stats.rate_limited),
        (4, 2, 0)
    );
    let pass: PassState =
        serde_json::from_value(json!({"cursor": null, "pages": 3, "done": true, "processed": 7}))
            .expect("an older pass reads");
    assert_eq!((pass.pages, pass.stats), (3, RunStats::default()));
}

#[test]
fn an_entity_the_provider_lacks_is_partial_but_holds_back_no_deletions() -> Result<(), SyncRunError>
{
    let mut history = vec![queued(), started("w1")];
    run(&mut history, page(None, true, stats(3, 0)))?;
    let missing = RecordFailure::unavailable(Entity::Companies, "Chatwoot answered 403".into());
    assert!(missing.is_unavailable());
    run(
        &mut history,
        SyncRunCommand::CommitPage {
            entity: Entity::Companies,
            phase: Phase::Pull,
            cursor: None,
            done: true,
            stats: stats(0, 0).plus(RunStats {
                failed: 1,
                ..RunStats::default()
            }),
            failures: vec![missing],
            total: None,
            at: t(2),
        },
    )?;
    let state = apply_all(&history);
    assert!(state.unavailable(Entity::Companies) && !state.unavailable(Entity::Contacts));
    assert_eq!((state.stats.failed, state.records_failed()), (1, 0));
    run(&mut history, SyncRunCommand::Finish { at: t(3) })?;
    assert_eq!(apply_all(&history).status, RunStatus::Partial);
    Ok(())
}

#[test]
fn a_failed_record_is_never_taken_for_a_missing_entity() {
    let record = RecordFailure {
        entity: Entity::Companies,
        phase: Phase::Pull,
        record_id: None,
        remote_id: Some("17".into()),
        error: "no id".into(),
        fetched: None,
    };
    assert!(!record.is_unavailable());
    let pushed = RecordFailure {
        phase: Phase::Push,
        remote_id: None,
        record_id: Some("r1".into()),
        ..record
    };
    assert!(!pushed.is_unavailable());
}
