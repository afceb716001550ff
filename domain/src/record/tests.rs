use super::*;
use crate::aggregate::testing::given;
use crate::merge::Side;
use crate::sync_config::ConflictStrategy;
use crate::sync_config::OnCrmDelete;
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
            integration_id: "hs".into(),
            decided_by: None,
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
        sent: Fields::new(),
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

fn delete(integration: &str, on_delete: OnCrmDelete) -> RecordCommand {
    RecordCommand::RemoteDelete {
        integration_id: integration.into(),
        run_id: "run2".into(),
        on_delete,
        at: t(4),
    }
}

#[test]
fn remote_deletion_refuses_unknown_links() -> Result<(), RecordError> {
    let h = play(vec![ingest(
        fields(&[("email", "a@x.io")]),
        1,
        ConflictStrategy::CrmWins,
    )])?;
    assert_eq!(
        given::<Record>(h).when(delete("sf", OnCrmDelete::ArchiveRecord)),
        Err(RecordError::NotLinked("sf".into()))
    );
    Ok(())
}

/// Imported, then edited by the app (a value owed), then deleted in the CRM.
fn deleted(on_delete: OnCrmDelete) -> Result<Vec<RecordEvent>, RecordError> {
    play(vec![
        ingest(fields(&[("email", "a@x.io")]), 1, ConflictStrategy::CrmWins),
        edit(fields(&[("phone", "2")]), 2),
        delete("hs", on_delete),
    ])
}

#[test]
fn a_crm_deletion_archives_the_record_and_its_link_is_never_pushed_again() -> Result<(), RecordError>
{
    let h = deleted(OnCrmDelete::ArchiveRecord)?;
    let r = state(&h);
    assert!(r.archived, "the record is archived");
    let link = &r.links["hs"];
    assert_eq!(link.state, LinkState::DeletedInCrm);
    assert_eq!(link.remote_id, "101", "the link is kept, marked deleted");
    assert!(link.owed().is_empty() && link.pending_push.is_empty());
    assert_eq!(
        r.values()["email"],
        Some("a@x.io".into()),
        "the app keeps its data"
    );
    // A later app edit is owed to nobody; the same deletion again writes nothing.
    let edited = then(&h, edit(fields(&[("phone", "3")]), 5))?;
    assert!(state(&edited).links["hs"].owed().is_empty());
    assert_eq!(
        given::<Record>(h).when(delete("hs", OnCrmDelete::ArchiveRecord)),
        Err(RecordError::NotLinked("hs".into())),
        "recorded once; the deletions pass counts it unchanged"
    );
    Ok(())
}

#[test]
fn unlink_keeps_the_record_app_only_and_recreate_drops_the_link() -> Result<(), RecordError> {
    let r = state(&deleted(OnCrmDelete::Unlink)?);
    assert!(!r.archived);
    assert_eq!(r.links["hs"].state, LinkState::Unlinked);
    assert!(r.links["hs"].owed().is_empty());
    // Only the explicit setting drops the link (and so lets the push create it again).
    let r = state(&deleted(OnCrmDelete::KeepAndRecreate)?);
    assert!(r.links.is_empty() && !r.archived);
    // A deletion recorded before the setting existed meant exactly that.
    let old: RecordEvent = serde_json::from_str(
        r#"{"type":"remote_deleted","integration_id":"hs","run_id":"r","at":"2025-01-01T00:00:00Z"}"#,
    )
    .map_err(|_| RecordError::NotFound)?;
    assert!(matches!(
        old,
        RecordEvent::RemoteDeleted {
            outcome: OnCrmDelete::KeepAndRecreate,
            ..
        }
    ));
    Ok(())
}

#[test]
fn a_deleted_crm_record_fetched_again_syncs_again() -> Result<(), RecordError> {
    let h = deleted(OnCrmDelete::Unlink)?;
    let back = then(
        &h,
        ingest(fields(&[("email", "a@x.io")]), 9, ConflictStrategy::CrmWins),
    )?;
    assert_eq!(state(&back).links["hs"].state, LinkState::Linked);
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

// ---------------------------------------------------------------------------
// The conflict queue: open conflicts, resolution, ignoring
// ---------------------------------------------------------------------------

fn email(value: &str) -> Fields {
    fields(&[("email", value)])
}

/// Imported with `a@x.io`, edited by the app to `app@x.io`, then the CRM's `crm@x.io`
/// arrives under manual review: one queued conflict on email.
fn conflicted() -> Result<Vec<RecordEvent>, RecordError> {
    play(vec![
        ingest(email("a@x.io"), 1, ConflictStrategy::ManualReview),
        edit(email("app@x.io"), 5),
        ingest(email("crm@x.io"), 9, ConflictStrategy::ManualReview),
    ])
}

fn resolve(resolution: Resolution, at: i64) -> RecordCommand {
    RecordCommand::ResolveConflict {
        integration_id: "hs".into(),
        field: "email".into(),
        resolution,
        actor: "token:reviewer".into(),
        at: t(at),
    }
}

fn ignore(at: i64) -> RecordCommand {
    RecordCommand::IgnoreConflict {
        integration_id: "hs".into(),
        field: "email".into(),
        actor: "token:reviewer".into(),
        at: t(at),
    }
}

/// `history` followed by the events `command` decides.
fn then(history: &[RecordEvent], command: RecordCommand) -> Result<Vec<RecordEvent>, RecordError> {
    let mut h = history.to_vec();
    h.extend(given::<Record>(history.to_vec()).when(command)?);
    Ok(h)
}

fn raised(events: &[RecordEvent]) -> Vec<FieldConflict> {
    events
        .iter()
        .flat_map(|e| match e {
            RecordEvent::RemoteMerged { conflicts, .. } => conflicts.clone(),
            _ => vec![],
        })
        .collect()
}

fn no_such_conflict(field: &str) -> RecordError {
    RecordError::NoSuchConflict {
        integration_id: "hs".into(),
        field: field.into(),
    }
}

#[test]
fn a_queued_conflict_stays_open_and_holds_both_sides() -> Result<(), RecordError> {
    let h = conflicted()?;
    let r = state(&h);
    let link = &r.links["hs"];
    assert_eq!(
        link.conflicts.get("email"),
        Some(&FieldConflict {
            field: "email".into(),
            base: Some("a@x.io".into()),
            app: Some("app@x.io".into()),
            crm: Some("crm@x.io".into()),
            winner: None,
        })
    );
    assert_eq!(r.value("email").as_deref(), Some("app@x.io"));
    assert_eq!(link.base, email("a@x.io"), "the field keeps its old base");
    assert!(
        link.pending_push.is_empty(),
        "the app's value is not pushed over the CRM's while a person decides"
    );
    // Fetching the same CRM version again is not news.
    let again =
        given::<Record>(h).when(ingest(email("crm@x.io"), 9, ConflictStrategy::ManualReview))?;
    assert!(again.is_empty(), "{again:?}");
    Ok(())
}

#[test]
fn later_merges_replace_or_settle_an_open_conflict() -> Result<(), RecordError> {
    let h = conflicted()?;
    // The CRM changes again: the conflict is replaced by one with the new value.
    let replaced = then(
        &h,
        ingest(email("crm2@x.io"), 12, ConflictStrategy::ManualReview),
    )?;
    let open = &state(&replaced).links["hs"].conflicts;
    assert_eq!(open.len(), 1);
    assert_eq!(open["email"].crm.as_deref(), Some("crm2@x.io"));
    // The app comes round to the CRM's value: converged, nothing is open any more.
    let settled = then(&h, edit(email("crm@x.io"), 10))?;
    let settled = then(
        &settled,
        ingest(email("crm@x.io"), 12, ConflictStrategy::ManualReview),
    )?;
    let link = &state(&settled).links["hs"];
    assert!(link.conflicts.is_empty(), "{:?}", link.conflicts);
    assert_eq!(link.base, email("crm@x.io"));
    // A policy that now settles the field closes it too.
    let crm_wins = then(&h, ingest(email("crm@x.io"), 12, ConflictStrategy::CrmWins))?;
    let r = state(&crm_wins);
    assert!(r.links["hs"].conflicts.is_empty());
    assert_eq!(r.value("email").as_deref(), Some("crm@x.io"));
    assert!(r.links["hs"].pending_push.is_empty());
    Ok(())
}

#[test]
fn resolving_takes_the_chosen_value_and_pushes_it_instead_of_raising_it_again(
) -> Result<(), RecordError> {
    let h = conflicted()?;
    for (resolution, kind, chosen) in [
        (Resolution::UseApp, ResolvedWith::UseApp, Some("app@x.io")),
        (Resolution::UseCrm, ResolvedWith::UseCrm, Some("crm@x.io")),
        (
            Resolution::Value(Some("ada@x.io".into())),
            ResolvedWith::Merged,
            Some("ada@x.io"),
        ),
        (Resolution::Value(None), ResolvedWith::Merged, None),
    ] {
        let chosen = chosen.map(str::to_string);
        let decided = given::<Record>(h.clone()).when(resolve(resolution.clone(), 20))?;
        assert_eq!(
            decided,
            [RecordEvent::ConflictResolved {
                integration_id: "hs".into(),
                field: "email".into(),
                value: chosen.clone(),
                crm_value: Some("crm@x.io".into()),
                resolution: kind,
                actor: "token:reviewer".into(),
                at: t(20),
            }]
        );
        let mut resolved = h.clone();
        resolved.extend(decided);
        let r = state(&resolved);
        assert_eq!(r.value("email"), chosen, "{resolution:?}");
        // The CRM's value keeps the CRM as its source, naming who decided; any other
        // choice is the reviewer's own edit.
        let source = if kind == ResolvedWith::UseCrm {
            Source::Crm {
                integration_id: "hs".into(),
                decided_by: Some("token:reviewer".into()),
            }
        } else {
            Source::App {
                actor: "token:reviewer".into(),
            }
        };
        assert_eq!(r.fields["email"].source, source, "{resolution:?}");
        assert_eq!(r.app_modified_at, Some(t(20)));
        let link = &r.links["hs"];
        assert!(link.conflicts.is_empty());
        assert_eq!(
            link.base,
            email("crm@x.io"),
            "the base is what the CRM holds"
        );
        let owed = (kind != ResolvedWith::UseCrm).then(|| [("email".to_string(), chosen.clone())]);
        assert_eq!(
            link.pending_push,
            owed.into_iter().flatten().collect::<Fields>(),
            "{resolution:?}"
        );
        // The next pull sees the same CRM version: no conflict, the choice still owed.
        let again = then(
            &resolved,
            ingest(email("crm@x.io"), 9, ConflictStrategy::ManualReview),
        )?;
        assert!(
            raised(&again[resolved.len()..]).is_empty(),
            "{resolution:?}"
        );
        let r2 = state(&again);
        assert_eq!(r2.value("email"), chosen);
        assert_eq!(r2.links["hs"].pending_push, link.pending_push);
        // Even under last-write-wins, where the CRM's newer version would have won.
        let lww = then(
            &resolved,
            ingest(email("crm@x.io"), 30, ConflictStrategy::LastWriteWins),
        )?;
        assert!(raised(&lww[resolved.len()..]).is_empty());
        assert_eq!(state(&lww).value("email"), chosen);
    }
    Ok(())
}

#[test]
fn a_resolved_value_reaches_the_other_crms_too() -> Result<(), RecordError> {
    let mut h = conflicted()?;
    let other = RecordCommand::ConfirmPush {
        sent: Fields::new(),
        integration_id: "sf".into(),
        remote_id: "sf-1".into(),
        fields: email("app@x.io"),
        run_id: "run2".into(),
        at: t(10),
    };
    h = then(&h, other)?;
    let use_app = then(&h, resolve(Resolution::UseApp, 20))?;
    assert!(
        state(&use_app).links["sf"].pending_push.is_empty(),
        "the app's value did not change, so the other CRM is owed nothing"
    );
    let use_crm = then(&h, resolve(Resolution::UseCrm, 20))?;
    assert_eq!(state(&use_crm).links["sf"].pending_push, email("crm@x.io"));
    Ok(())
}

#[test]
fn ignoring_leaves_both_sides_until_one_of_them_changes() -> Result<(), RecordError> {
    let h = conflicted()?;
    let ignored = then(&h, ignore(20))?;
    assert_eq!(
        ignored.last(),
        Some(&RecordEvent::ConflictIgnored {
            integration_id: "hs".into(),
            field: "email".into(),
            app_value: Some("app@x.io".into()),
            crm_value: Some("crm@x.io".into()),
            actor: "token:reviewer".into(),
            at: t(20),
        })
    );
    let r = state(&ignored);
    let link = &r.links["hs"];
    assert!(link.conflicts.is_empty());
    assert_eq!(r.value("email").as_deref(), Some("app@x.io"));
    assert_eq!(link.base, email("a@x.io"));
    assert!(link.pending_push.is_empty(), "nothing is pushed");
    // The same pair again, even in a newer CRM version, or not mentioned at all: nothing.
    for again in [
        ingest(email("crm@x.io"), 9, ConflictStrategy::ManualReview),
        ingest(email("crm@x.io"), 25, ConflictStrategy::ManualReview),
        ingest(
            fields(&[("phone", "1")]),
            25,
            ConflictStrategy::ManualReview,
        ),
    ] {
        let after = then(&ignored, again)?;
        assert!(raised(&after[ignored.len()..]).is_empty(), "{after:?}");
        let r = state(&after);
        assert_eq!(r.value("email").as_deref(), Some("app@x.io"));
        assert!(!r.links["hs"].pending_push.contains_key("email"));
    }
    // The CRM changes: raised again, and no longer ignored.
    let changed = then(
        &ignored,
        ingest(email("crm2@x.io"), 30, ConflictStrategy::ManualReview),
    )?;
    let conflicts = raised(&changed[ignored.len()..]);
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].crm.as_deref(), Some("crm2@x.io"));
    let link = &state(&changed).links["hs"];
    assert!(link.ignored.is_empty());
    assert!(link.conflicts.contains_key("email"));
    // The app changes: the ignore covered only the values it was made for, so the new
    // value is not pushed over the CRM's: the conflict opens again at once, with it.
    let edited = then(&ignored, edit(email("app2@x.io"), 30))?;
    let link = &state(&edited).links["hs"];
    assert!(link.ignored.is_empty());
    assert!(link.owed().is_empty(), "{link:?}");
    assert_eq!(
        link.conflicts
            .get("email")
            .map(|c| (c.app.as_deref(), c.crm.as_deref())),
        Some((Some("app2@x.io"), Some("crm@x.io")))
    );
    // The unchanged CRM version fetched again is not news.
    let again = given::<Record>(edited.clone()).when(ingest(
        email("crm@x.io"),
        9,
        ConflictStrategy::ManualReview,
    ))?;
    assert!(raised(&again).is_empty(), "{again:?}");
    Ok(())
}

#[test]
fn only_open_conflicts_can_be_resolved_or_ignored() -> Result<(), RecordError> {
    assert_eq!(
        given::<Record>(Vec::new()).when(resolve(Resolution::UseApp, 1)),
        Err(RecordError::NotFound)
    );
    assert_eq!(
        given::<Record>(Vec::new()).when(ignore(1)),
        Err(RecordError::NotFound)
    );
    let calm = play(vec![ingest(
        email("a@x.io"),
        1,
        ConflictStrategy::ManualReview,
    )])?;
    assert_eq!(
        given::<Record>(calm).when(resolve(Resolution::UseCrm, 2)),
        Err(no_such_conflict("email"))
    );
    let h = conflicted()?;
    let mut phone = resolve(Resolution::UseApp, 20);
    if let RecordCommand::ResolveConflict { field, .. } = &mut phone {
        *field = "phone".into();
    }
    assert_eq!(
        given::<Record>(h.clone()).when(phone),
        Err(no_such_conflict("phone"))
    );
    let mut elsewhere = ignore(20);
    if let RecordCommand::IgnoreConflict { integration_id, .. } = &mut elsewhere {
        *integration_id = "sf".into();
    }
    assert!(matches!(
        given::<Record>(h.clone()).when(elsewhere),
        Err(RecordError::NoSuchConflict { integration_id, .. }) if integration_id == "sf"
    ));
    // Once resolved or ignored, it is closed for both.
    for closed in [
        then(&h, resolve(Resolution::UseApp, 20))?,
        then(&h, ignore(20))?,
    ] {
        assert_eq!(
            given::<Record>(closed.clone()).when(resolve(Resolution::UseCrm, 21)),
            Err(no_such_conflict("email"))
        );
        assert_eq!(
            given::<Record>(closed).when(ignore(21)),
            Err(no_such_conflict("email"))
        );
    }
    Ok(())
}

#[test]
fn an_always_use_rule_settles_its_field_without_queueing() -> Result<(), RecordError> {
    let mut command = ingest(email("crm@x.io"), 9, ConflictStrategy::ManualReview);
    if let RecordCommand::Ingest { policy, .. } = &mut command {
        policy.always.insert("email".into(), Side::Crm);
    }
    let h = play(vec![
        ingest(email("a@x.io"), 1, ConflictStrategy::ManualReview),
        edit(email("app@x.io"), 5),
        command,
    ])?;
    let conflicts = raised(&h);
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].winner, Some(Side::Crm));
    let r = state(&h);
    assert!(r.links["hs"].conflicts.is_empty());
    assert_eq!(r.value("email").as_deref(), Some("crm@x.io"));
    assert!(
        r.links["hs"].pending_push.is_empty(),
        "the app's losing value is not pushed"
    );
    Ok(())
}

#[test]
fn conflict_summaries_name_the_field_the_actor_and_the_choice_but_no_value() {
    let resolved = |resolution| RecordEvent::ConflictResolved {
        integration_id: "hs".into(),
        field: "email".into(),
        value: Some("secret-ish@x.io".into()),
        crm_value: Some("crm@x.io".into()),
        resolution,
        actor: "token:x".into(),
        at: t(1),
    };
    assert_eq!(
        resolved(ResolvedWith::UseCrm).summary(),
        "conflict on email resolved by token:x: kept the CRM value"
    );
    assert_eq!(
        resolved(ResolvedWith::UseApp).summary(),
        "conflict on email resolved by token:x: kept the app value"
    );
    assert_eq!(
        resolved(ResolvedWith::Merged).summary(),
        "conflict on email resolved by token:x: set a merged value"
    );
    let ignored = RecordEvent::ConflictIgnored {
        integration_id: "hs".into(),
        field: "email".into(),
        app_value: Some("app@x.io".into()),
        crm_value: Some("crm@x.io".into()),
        actor: "token:x".into(),
        at: t(1),
    };
    assert_eq!(
        ignored.summary(),
        "conflict on email ignored by token:x: both values kept as they are"
    );
    assert!(!ignored.summary().contains("@x.io"));
    let conflict = |field: &str, winner| FieldConflict {
        field: field.into(),
        base: Some("base@x.io".into()),
        app: Some("app@x.io".into()),
        crm: Some("crm@x.io".into()),
        winner,
    };
    let merged = RecordEvent::RemoteMerged {
        integration_id: "hs".into(),
        run_id: "r1".into(),
        remote_updated_at: t(1),
        base: Fields::new(),
        pending_push: Fields::new(),
        conflicts: vec![conflict("email", None), conflict("phone", Some(Side::Crm))],
        remote: None,
        at: t(1),
    };
    assert_eq!(
        merged.summary(),
        "CRM version merged: 0 field(s) to push, 2 conflict(s); conflict on email: queued \
         for review; conflict on phone: kept the CRM value"
    );
    assert!(!merged.summary().contains("@x.io"));
}

/// A person's choice for every open conflict, by the last step's parameter.
fn choice(k: usize) -> Option<Resolution> {
    match k % 5 {
        0 => Some(Resolution::UseApp),
        1 => Some(Resolution::UseCrm),
        2 => Some(Resolution::Value(Some("m".into()))),
        3 => Some(Resolution::Value(None)),
        _ => None, // ignore
    }
}

proptest! {
    /// Whatever edits and CRM changes led to the open conflicts (the CRM sends its whole
    /// record each time): resolving each of them and fetching the same CRM version again
    /// raises none of them, leaves every chosen value in place and owed to the CRM unless
    /// the CRM already holds it; ignoring them all makes the same fetch write nothing.
    #[test]
    fn resolved_and_ignored_conflicts_are_not_raised_again(
        steps in prop::collection::vec((any::<bool>(), 0usize..3, 0usize..3), 1..14),
        pick in 0usize..5,
    ) {
        let names = ["email", "phone", "name"];
        let values = ["a", "b", "c"];
        let mut crm = Fields::new();
        let mut commands = vec![ingest(crm.clone(), 0, ConflictStrategy::ManualReview)];
        let mut crm_at = 0;
        for (i, (is_edit, n, v)) in steps.iter().enumerate() {
            let at = i as i64 + 1;
            let f = fields(&[(names[*n], values[*v])]);
            if *is_edit {
                commands.push(edit(f, at));
            } else {
                crm.extend(f);
                crm_at = at;
                commands.push(ingest(crm.clone(), at, ConflictStrategy::ManualReview));
            }
        }
        let last_at = steps.len() as i64;
        let h = play(commands);
        prop_assert!(h.is_ok(), "{h:?}");
        let h = h.unwrap_or_default();
        let open: Vec<FieldConflict> = state(&h)
            .links
            .get("hs")
            .map(|l| l.conflicts.values().cloned().collect())
            .unwrap_or_default();
        // Decide every open conflict the same way.
        let mut after = h.clone();
        for (k, c) in open.iter().enumerate() {
            let command = match choice(pick + k) {
                Some(resolution) => RecordCommand::ResolveConflict {
                    integration_id: "hs".into(),
                    field: c.field.clone(),
                    resolution,
                    actor: "token:p".into(),
                    at: t(last_at + 1),
                },
                None => RecordCommand::IgnoreConflict {
                    integration_id: "hs".into(),
                    field: c.field.clone(),
                    actor: "token:p".into(),
                    at: t(last_at + 1),
                },
            };
            let decided = then(&after, command);
            prop_assert!(decided.is_ok(), "{decided:?}");
            after = decided.unwrap_or_default();
        }
        let decided = state(&after);
        prop_assert!(decided.links.get("hs").is_none_or(|l| l.conflicts.is_empty()));
        let refetch = ingest(crm.clone(), crm_at, ConflictStrategy::ManualReview);
        if open.iter().enumerate().all(|(k, _)| choice(pick + k).is_none()) {
            let quiet = given::<Record>(after.clone()).when(refetch.clone());
            prop_assert_eq!(quiet, Ok(vec![]), "every conflict ignored");
        }
        let again = then(&after, refetch.clone());
        prop_assert!(again.is_ok());
        let again = again.unwrap_or_default();
        prop_assert!(raised(&again[after.len()..]).is_empty(), "{:?}", &again[after.len()..]);
        let r = state(&again);
        for c in &open {
            prop_assert_eq!(r.value(&c.field), decided.value(&c.field));
            let owed = r.links["hs"].pending_push.get(&c.field);
            let crm_holds = crm.get(&c.field).cloned().flatten();
            let ignored = decided.links["hs"].ignored.contains_key(&c.field);
            if ignored || r.value(&c.field) == crm_holds {
                prop_assert_eq!(owed, None, "{}", c.field);
            } else {
                prop_assert_eq!(owed, Some(&r.value(&c.field)), "{}", c.field);
            }
        }
        // And the fetch after that one changes nothing at all.
        let third = given::<Record>(again).when(refetch);
        prop_assert_eq!(third, Ok(vec![]));
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

#[test]
fn an_app_edit_of_a_field_in_open_conflict_is_held_not_pushed() -> Result<(), RecordError> {
    let h = conflicted()?;
    let edited = then(&h, edit(email("app2@x.io"), 12))?;
    let new = &edited[h.len()..];
    assert!(
        matches!(new.last(), Some(RecordEvent::ConflictRaised { conflict, .. })
            if conflict.app.as_deref() == Some("app2@x.io") && conflict.crm.as_deref() == Some("crm@x.io")),
        "{new:?}"
    );
    let link = &state(&edited).links["hs"];
    assert!(
        link.owed().is_empty(),
        "nothing owed while the conflict is open: {link:?}"
    );
    assert!(!link.pending_push.contains_key("email"));
    // Resolving with the app's value sends what the app wants now.
    let resolved = then(&edited, resolve(Resolution::UseApp, 20))?;
    assert_eq!(state(&resolved).links["hs"].owed(), email("app2@x.io"));
    // Another field edited meanwhile is still pushed.
    let other = then(&h, edit(fields(&[("phone", "7")]), 12))?;
    assert_eq!(state(&other).links["hs"].owed(), fields(&[("phone", "7")]));
    Ok(())
}

#[test]
fn a_cleared_field_echoed_back_as_empty_text_is_no_crm_edit() -> Result<(), RecordError> {
    for strategy in [ConflictStrategy::CrmWins, ConflictStrategy::ManualReview] {
        let cleared: Fields = [("phone".to_string(), None)].into();
        let h = play(vec![
            ingest(fields(&[("email", "a@x.io"), ("phone", "1")]), 1, strategy),
            edit(cleared.clone(), 2),
            RecordCommand::ConfirmPush {
                integration_id: "hs".into(),
                remote_id: "101".into(),
                fields: cleared,
                sent: fields(&[("phone", "")]),
                run_id: "run2".into(),
                at: t(3),
            },
            edit(fields(&[("phone", "2")]), 4),
        ])?;
        // HubSpot stores the clear as "": fetched back, it is the same empty value.
        let echo = then(
            &h,
            ingest(fields(&[("email", "a@x.io"), ("phone", "")]), 3, strategy),
        )?;
        let r = state(&echo);
        assert_eq!(
            r.values()["phone"],
            Some("2".into()),
            "{strategy:?}: the app edit holds"
        );
        assert_eq!(
            r.links["hs"].owed(),
            fields(&[("phone", "2")]),
            "{strategy:?}"
        );
        assert!(raised(&echo[h.len()..]).is_empty(), "{strategy:?}");
    }
    Ok(())
}

#[test]
fn a_push_error_goes_once_nothing_is_owed() -> Result<(), RecordError> {
    let fail = RecordCommand::FailPush {
        integration_id: "hs".into(),
        run_id: "run2".into(),
        error: "INVALID_EMAIL".into(),
        at: t(3),
    };
    let h = play(vec![
        ingest(fields(&[("email", "a@x.io")]), 1, ConflictStrategy::CrmWins),
        edit(email("bad"), 2),
        fail,
    ])?;
    assert_eq!(
        state(&h).links["hs"].push_error.as_deref(),
        Some("INVALID_EMAIL")
    );
    // The CRM's newer value overwrites the one owed: the error no longer applies.
    let overwritten = then(&h, ingest(email("b@x.io"), 9, ConflictStrategy::CrmWins))?;
    assert_eq!(state(&overwritten).links["hs"].push_error, None);
    // Pushed successfully at last: gone too.
    let pushed = then(
        &h,
        RecordCommand::ConfirmPush {
            integration_id: "hs".into(),
            remote_id: "101".into(),
            fields: email("bad"),
            sent: email("bad"),
            run_id: "run3".into(),
            at: t(5),
        },
    )?;
    assert_eq!(state(&pushed).links["hs"].push_error, None);
    Ok(())
}

#[test]
fn a_push_error_goes_when_the_value_owed_waits_for_review() -> Result<(), RecordError> {
    let phone = |v: &str| fields(&[("email", "a@x.io"), ("phone", v)]);
    let h = play(vec![
        ingest(phone("1"), 1, ConflictStrategy::ManualReview),
        edit(fields(&[("phone", "2")]), 2),
        RecordCommand::FailPush {
            integration_id: "hs".into(),
            run_id: "run2".into(),
            error: "INVALID_PHONE".into(),
            at: t(3),
        },
    ])?;
    assert_eq!(
        state(&h).links["hs"].push_error.as_deref(),
        Some("INVALID_PHONE")
    );
    let h = then(&h, ingest(phone("3"), 9, ConflictStrategy::ManualReview))?;
    let link = &state(&h).links["hs"];
    assert!(link.conflicts.contains_key("phone") && link.owed().is_empty());
    assert_eq!(link.push_error, None);
    Ok(())
}

#[test]
fn an_app_archive_is_recorded_and_a_crm_delete_of_it_marks_the_link() -> Result<(), RecordError> {
    let archive = RecordCommand::Archive {
        actor: "token:app".into(),
        at: t(3),
    };
    let h = play(vec![
        ingest(email("a@x.io"), 1, ConflictStrategy::CrmWins),
        edit(fields(&[("phone", "2")]), 2),
        archive.clone(),
    ])?;
    let r = state(&h);
    assert!(r.archived && r.app_archived);
    assert_eq!(given::<Record>(h.clone()).when(archive)?, vec![], "once");
    let confirm = |integration: &str| RecordCommand::ConfirmRemoteDelete {
        integration_id: integration.into(),
        run_id: "run3".into(),
        at: t(4),
    };
    assert_eq!(
        given::<Record>(h.clone()).when(confirm("sf")),
        Err(RecordError::NotLinked("sf".into()))
    );
    let deleted = then(&h, confirm("hs"))?;
    let link = &state(&deleted).links["hs"];
    assert_eq!(link.state, LinkState::DeletedInCrm);
    assert!(link.owed().is_empty());
    assert_eq!(
        given::<Record>(deleted).when(confirm("hs"))?,
        vec![],
        "once"
    );
    // A CRM deletion archives too, but not as the app's own archive.
    let r = state(&deleted_by_crm()?);
    assert!(r.archived && !r.app_archived);
    Ok(())
}

fn deleted_by_crm() -> Result<Vec<RecordEvent>, RecordError> {
    deleted(OnCrmDelete::ArchiveRecord)
}
