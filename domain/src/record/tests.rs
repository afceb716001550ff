use super::*;
use crate::aggregate::testing::given;
use crate::merge::Side;
use crate::sync_config::ConflictStrategy;
use chrono::TimeZone;
use proptest::prelude::*;

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, 0)
        .single()
        .unwrap_or_default()
}

fn fields(pairs: &[(&str, &str)]) -> Fields {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Some(v.to_string())))
        .collect()
}

fn policy(strategy: ConflictStrategy) -> MergePolicy {
    MergePolicy {
        strategy,
        always: BTreeMap::new(),
    }
}

fn ingest(values: Fields, remote_at: i64, strategy: ConflictStrategy) -> RecordCommand {
    RecordCommand::Ingest {
        record_id: "rec1".into(),
        workspace_id: "ws1".into(),
        entity: Entity::Contacts,
        integration_id: "hs".into(),
        remote_id: "101".into(),
        remote_updated_at: t(remote_at),
        remote: values.clone(),
        fields: values,
        policy: policy(strategy),
        run_id: "run1".into(),
        at: t(remote_at),
    }
}

fn edit(values: Fields, at: i64) -> RecordCommand {
    RecordCommand::Edit {
        fields: values,
        actor: "token:app".into(),
        at: t(at),
    }
}

/// Decides each command in turn on the growing history; returns it.
fn play(commands: Vec<RecordCommand>) -> Result<Vec<RecordEvent>, RecordError> {
    let mut history = Vec::new();
    for command in commands {
        let events = given::<Record>(history.clone()).when(command)?;
        history.extend(events);
    }
    Ok(history)
}

fn state(history: &[RecordEvent]) -> Record {
    let mut record = Record::default();
    for e in history {
        record.apply(e);
    }
    record
}

#[test]
fn a_first_fetch_creates_links_and_fills_the_record() -> Result<(), RecordError> {
    let crm = fields(&[("email", "ada@x.io"), ("name", "Ada")]);
    let h = play(vec![ingest(
        crm.clone(),
        1,
        ConflictStrategy::LastWriteWins,
    )])?;
    let types: Vec<&str> = h.iter().map(DomainEvent::event_type).collect();
    // One event: the bulk path writes one row per new record.
    assert_eq!(types, ["RecordImported"]);
    let r = state(&h);
    assert_eq!(r.values(), crm);
    assert_eq!(r.links["hs"].remote_id, "101");
    assert_eq!(r.links["hs"].base, crm);
    assert!(r.links["hs"].pending_push.is_empty());
    assert_eq!(
        r.fields["email"].source,
        Source::Crm {
            integration_id: "hs".into()
        }
    );
    Ok(())
}

#[test]
fn refetching_an_unchanged_record_writes_no_event() -> Result<(), RecordError> {
    let crm = fields(&[("email", "ada@x.io")]);
    let h = play(vec![ingest(
        crm.clone(),
        1,
        ConflictStrategy::LastWriteWins,
    )])?;
    let again = given::<Record>(h).when(ingest(crm, 1, ConflictStrategy::LastWriteWins))?;
    assert!(again.is_empty(), "{again:?}");
    Ok(())
}

#[test]
fn app_edits_are_owed_to_the_crm_until_pushed() -> Result<(), RecordError> {
    let h = play(vec![
        ingest(fields(&[("phone", "1")]), 1, ConflictStrategy::CrmWins),
        edit(fields(&[("phone", "2")]), 2),
    ])?;
    let r = state(&h);
    assert_eq!(r.links["hs"].pending_push, fields(&[("phone", "2")]));
    assert_eq!(r.app_modified_at, Some(t(2)));
    // The push lands: the base moves, nothing is owed any more.
    let pushed = RecordCommand::ConfirmPush {
        integration_id: "hs".into(),
        remote_id: "101".into(),
        fields: fields(&[("phone", "2")]),
        run_id: "run2".into(),
        at: t(3),
    };
    let mut h2 = h.clone();
    h2.extend(given::<Record>(h).when(pushed)?);
    let r = state(&h2);
    assert!(r.links["hs"].pending_push.is_empty());
    assert_eq!(r.links["hs"].base, fields(&[("phone", "2")]));
    // Fetching back our own push is not a change (no echo).
    let echo = given::<Record>(h2).when(ingest(
        fields(&[("phone", "2")]),
        3,
        ConflictStrategy::CrmWins,
    ))?;
    assert!(
        echo.iter()
            .all(|e| !matches!(e, RecordEvent::FieldsChanged { .. })),
        "{echo:?}"
    );
    Ok(())
}

#[test]
fn a_conflict_follows_the_strategy_or_waits_for_review() -> Result<(), RecordError> {
    let start = vec![
        ingest(
            fields(&[("email", "a@x.io")]),
            1,
            ConflictStrategy::ManualReview,
        ),
        edit(fields(&[("email", "app@x.io")]), 5),
    ];
    for (strategy, crm_at, expect_app) in [
        (ConflictStrategy::CrmWins, 3, "crm@x.io"),
        (ConflictStrategy::AppWins, 9, "app@x.io"),
        (ConflictStrategy::LastWriteWins, 9, "crm@x.io"),
        (ConflictStrategy::LastWriteWins, 3, "app@x.io"),
        (ConflictStrategy::ManualReview, 9, "app@x.io"),
    ] {
        let mut commands = start.clone();
        commands.push(ingest(fields(&[("email", "crm@x.io")]), crm_at, strategy));
        let h = play(commands)?;
        let r = state(&h);
        assert_eq!(
            r.values().get("email").cloned().flatten().as_deref(),
            Some(expect_app),
            "{strategy:?} at {crm_at}"
        );
        let merged = h.iter().rev().find_map(|e| match e {
            RecordEvent::RemoteMerged { conflicts, .. } => Some(conflicts.clone()),
            _ => None,
        });
        let conflicts = merged.unwrap_or_default();
        assert_eq!(conflicts.len(), 1, "{strategy:?}");
        let expected_winner = match strategy {
            ConflictStrategy::ManualReview => None,
            _ if expect_app == "app@x.io" => Some(Side::App),
            _ => Some(Side::Crm),
        };
        assert_eq!(conflicts[0].winner, expected_winner, "{strategy:?}");
    }
    Ok(())
}

#[test]
fn remote_deletion_unlinks_and_refuses_unknown_links() -> Result<(), RecordError> {
    let h = play(vec![ingest(
        fields(&[("email", "a@x.io")]),
        1,
        ConflictStrategy::CrmWins,
    )])?;
    let delete = |integration: &str| RecordCommand::RemoteDelete {
        integration_id: integration.into(),
        run_id: "run2".into(),
        at: t(4),
    };
    assert_eq!(
        given::<Record>(h.clone()).when(delete("sf")),
        Err(RecordError::NotLinked("sf".into()))
    );
    let mut h2 = h.clone();
    h2.extend(given::<Record>(h).when(delete("hs"))?);
    let r = state(&h2);
    assert!(r.links.is_empty());
    assert_eq!(
        r.values(),
        fields(&[("email", "a@x.io")]),
        "the app keeps its data"
    );
    Ok(())
}

#[test]
fn commands_on_missing_records_and_entity_mismatches_are_refused() -> Result<(), RecordError> {
    assert_eq!(
        given::<Record>(Vec::new()).when(edit(fields(&[("a", "b")]), 1)),
        Err(RecordError::NotFound)
    );
    let h = play(vec![ingest(
        fields(&[("email", "a@x.io")]),
        1,
        ConflictStrategy::CrmWins,
    )])?;
    let mut company = ingest(fields(&[("name", "Acme")]), 2, ConflictStrategy::CrmWins);
    if let RecordCommand::Ingest { entity, .. } = &mut company {
        *entity = Entity::Companies;
    }
    assert_eq!(
        given::<Record>(h).when(company),
        Err(RecordError::WrongEntity("contacts"))
    );
    Ok(())
}

proptest! {
    /// Whatever sequence of fetches and edits: the record's values replayed from its
    /// events equal the values of the last FieldsChanged per field, and a repeat of the
    /// last fetch changes nothing.
    #[test]
    fn provenance_and_replay_agree(
        steps in prop::collection::vec((any::<bool>(), 0usize..3, 0usize..3), 1..12)
    ) {
        let names = ["email", "phone", "name"];
        let values = ["a", "b", "c"];
        let mut commands = Vec::new();
        for (i, (is_edit, n, v)) in steps.iter().enumerate() {
            let f = fields(&[(names[*n], values[*v])]);
            let at = i as i64 + 1;
            commands.push(if *is_edit { edit(f, at) } else { ingest(f, at, ConflictStrategy::LastWriteWins) });
        }
        if !matches!(commands.first(), Some(RecordCommand::Ingest { .. })) {
            commands.insert(0, ingest(Fields::new(), 0, ConflictStrategy::LastWriteWins));
        }
        let h = play(commands.clone());
        prop_assert!(h.is_ok());
        let h = h.unwrap_or_default();
        let r = state(&h);
        let mut expected = Fields::new();
        for e in &h {
            if let RecordEvent::FieldsChanged { fields, .. } | RecordEvent::RecordImported { fields, .. } = e {
                expected.extend(fields.clone());
            }
        }
        prop_assert_eq!(r.values(), expected);
        prop_assert_eq!(r.version, h.len() as u64);
        if let Some(last @ RecordCommand::Ingest { .. }) = commands.last() {
            let again = given::<Record>(h.clone()).when(last.clone());
            prop_assert_eq!(again, Ok(vec![]));
        }
    }
}

#[test]
fn a_queued_conflict_is_not_pushed_until_resolved() -> Result<(), RecordError> {
    let first = fields(&[("email", "a@x.io"), ("phone", "1")]);
    let mut h = play(vec![
        ingest(first, 1, ConflictStrategy::ManualReview),
        edit(fields(&[("phone", "2")]), 2),
    ])?;
    assert_eq!(
        state(&h).links["hs"].pending_push,
        fields(&[("phone", "2")])
    );
    let theirs = ingest(
        fields(&[("email", "a@x.io"), ("phone", "3")]),
        3,
        ConflictStrategy::ManualReview,
    );
    h.extend(given::<Record>(h.clone()).when(theirs)?);
    let r = state(&h);
    assert!(r.links["hs"].pending_push.is_empty(), "{:?}", r.links["hs"]);
    assert_eq!(
        r.values()["phone"],
        Some("2".into()),
        "the app keeps its value"
    );
    Ok(())
}

#[test]
fn a_conflict_the_crm_wins_drops_the_app_value_owed_to_it() -> Result<(), RecordError> {
    let first = fields(&[("email", "a@x.io"), ("phone", "1")]);
    let mut h = play(vec![
        ingest(first, 1, ConflictStrategy::CrmWins),
        edit(fields(&[("phone", "2")]), 2),
    ])?;
    let theirs = ingest(
        fields(&[("email", "a@x.io"), ("phone", "3")]),
        3,
        ConflictStrategy::CrmWins,
    );
    h.extend(given::<Record>(h.clone()).when(theirs)?);
    let r = state(&h);
    assert!(r.links["hs"].pending_push.is_empty());
    assert_eq!(r.values()["phone"], Some("3".into()));
    Ok(())
}
