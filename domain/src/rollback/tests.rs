use super::*;
use crate::aggregate::Aggregate;
use crate::record::{FieldValue, Source};
use crate::Entity;
use proptest::prelude::*;

fn at() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default()
}

fn value() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some("x".to_string())),
        Just(Some("y".to_string())),
        Just(Some("z".to_string()))
    ]
}

fn fields() -> impl Strategy<Value = Fields> {
    proptest::collection::btree_map(prop_oneof![Just("a"), Just("b"), Just("c")], value(), 0..3)
        .prop_map(|m| m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

fn field_values() -> impl Strategy<Value = BTreeMap<String, FieldValue>> {
    (fields(), any::<bool>()).prop_map(|(f, from_app)| {
        f.into_iter()
            .map(|(k, v)| {
                let source = if from_app {
                    Source::App { actor: "t".into() }
                } else {
                    Source::Crm {
                        integration_id: "i1".into(),
                        decided_by: None,
                    }
                };
                (
                    k,
                    FieldValue {
                        value: v,
                        source,
                        at: at(),
                    },
                )
            })
            .collect()
    })
}

fn link() -> impl Strategy<Value = Option<Link>> {
    proptest::option::of(
        (fields(), fields(), fields()).prop_map(|(base, pending, remote)| Link {
            remote_id: "remote-1".into(),
            base,
            pending_push: pending,
            remote,
            ..Link::default()
        }),
    )
}

fn record() -> impl Strategy<Value = Record> {
    (field_values(), link(), link(), any::<bool>()).prop_map(|(fields, l1, l2, archived)| {
        let mut links = BTreeMap::new();
        if let Some(l) = l1 {
            links.insert("i1".to_string(), l);
        }
        if let Some(l) = l2 {
            links.insert("i2".to_string(), l);
        }
        Record {
            id: Some("r1".into()),
            workspace_id: "w".into(),
            entity: Some(Entity::Contacts),
            fields,
            links,
            app_modified_at: None,
            archived,
            app_archived: false,
            version: 3,
        }
    })
}

fn compensate(plan: &RecordPlan, before: &Record, now: &Record) -> Record {
    let mut state = now.clone();
    let c = plan.compensation(before, "rb", "r", vec![1, 2], at());
    if let Some(e) = c.into_event() {
        state.apply(&e);
    }
    state
}

fn same(a: &Record, b: &Record) -> bool {
    a.values() == b.values() && a.links == b.links && a.archived == b.archived
}

fn nothing_pushed() -> BTreeMap<String, Pushed> {
    BTreeMap::new()
}

fn plan_of(before: &Record, after: &Record, now: &Record) -> RecordPlan {
    plan(before, after, now, &nothing_pushed(), CrmAccess::Writable)
}

/// The fields of `link` a rollback must not leave owed to the CRM: those whose pending
/// value the run changed, or whose base it moved.
fn run_touched(before: &Link, after: &Link) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (b, a) in [
        (&before.base, &after.base),
        (&before.pending_push, &after.pending_push),
    ] {
        for k in b.keys().chain(a.keys()) {
            if b.get(k) != a.get(k) {
                out.insert(k.clone());
            }
        }
    }
    out
}

proptest! {
    /// With nothing changed since, a rollback brings the app's values back to `before`;
    /// every link keeps what it knows of the CRM; no field the run touched is left owed to
    /// the CRM (agreed, in a conflict, or diverged); and rolling the rollback back brings
    /// back the run's values.
    #[test]
    fn a_rollback_restores_the_app_and_owes_nothing_it_touched(before in record(), after in record()) {
        let p = plan_of(&before, &after, &after);
        prop_assert!(p.conflicts.is_empty());
        prop_assert!(p.links_changed_since.is_empty());
        let rolled = compensate(&p, &before, &after);
        prop_assert_eq!(rolled.values(), before.values());
        prop_assert_eq!(rolled.archived, before.archived);
        for (id, link) in &rolled.links {
            let (Some(b), Some(a)) = (before.links.get(id), after.links.get(id)) else { continue };
            prop_assert_eq!(&link.remote, &a.remote, "what the CRM holds is not rolled back");
            prop_assert_eq!(&link.base, &a.base, "nothing was written back");
            for field in run_touched(b, a) {
                prop_assert!(
                    !link.pending_push.contains_key(&field) || link.conflicts.contains_key(&field),
                    "{field} is owed after the rollback: {link:?}"
                );
                let app = rolled.fields.get(&field).and_then(|f| f.value.clone());
                let crm = link.base.get(&field).cloned().flatten();
                if let Some(d) = link.diverged.get(&field) {
                    prop_assert_ne!(&app, &crm);
                    prop_assert_eq!((&d.app, &d.crm, d.rollback_run_id.as_str()), (&app, &crm, "rb"));
                }
            }
        }
        let again = plan_of(&after, &rolled, &rolled);
        let restored = compensate(&again, &after, &rolled);
        prop_assert_eq!(restored.values(), after.values());
    }

    /// A field changed again after the run is reported, never overwritten; every other
    /// field the run changed still goes back.
    #[test]
    fn a_field_changed_since_is_a_conflict_not_an_overwrite(
        before in record(), after in record(), edit in value(), field in prop_oneof![Just("a"), Just("b")],
    ) {
        let mut now = after.clone();
        let held = |r: &Record| r.fields.get(field).map(|f| f.value.clone());
        let changed = held(&after) != Some(edit.clone());
        now.fields.insert(field.to_string(), FieldValue { value: edit.clone(), source: Source::App { actor: "later".into() }, at: at() });
        let p = plan_of(&before, &after, &now);
        let rolled = compensate(&p, &before, &now);
        if changed {
            prop_assert_eq!(rolled.fields.get(field).and_then(|f| f.value.clone()), edit);
            prop_assert!(p.restore.iter().all(|r| r.field != field));
            let run_changed = held(&before) != held(&after);
            prop_assert_eq!(p.conflicts.iter().any(|c| c.field == field), run_changed);
        }
        for r in &p.restore {
            prop_assert_eq!(rolled.fields.get(&r.field).and_then(|f| f.value.clone()), r.before.clone());
        }
    }

    /// An app edit made after the run (its value and its pending push) is kept as it is,
    /// still owed: the rollback neither restores an older pending value over it nor turns
    /// it into a divergence.
    #[test]
    fn an_edit_since_keeps_its_pending_push(before in record(), after in record(), field in prop_oneof![Just("a"), Just("b")]) {
        prop_assume!(after.links.contains_key("i1") && before.links.contains_key("i1"));
        let mut now = after.clone();
        let later = Some("later".to_string());
        now.fields.insert(field.to_string(), FieldValue { value: later.clone(), source: Source::App { actor: "later".into() }, at: at() });
        if let Some(l) = now.links.get_mut("i1") {
            l.pending_push.insert(field.to_string(), later.clone());
        }
        let p = plan_of(&before, &after, &now);
        let rolled = compensate(&p, &before, &now);
        let link = &rolled.links["i1"];
        prop_assert_eq!(link.pending_push.get(field), Some(&later));
        prop_assert!(!link.diverged.contains_key(field));
        prop_assert_eq!(&link.base, &now.links["i1"].base);
    }

    /// A record the run created is archived with its values kept; rolling that back shows
    /// it again.
    #[test]
    fn a_created_record_is_archived_and_comes_back(after in record()) {
        let mut after = after;
        after.archived = false;
        let before = Record::default();
        let p = plan_of(&before, &after, &after);
        prop_assert!(p.created);
        prop_assert_eq!(p.archive, Some(true));
        prop_assert!(p.restore.is_empty() && p.links.is_empty());
        let rolled = compensate(&p, &before, &after);
        prop_assert!(rolled.archived);
        prop_assert_eq!(rolled.values(), after.values());
        let again = plan_of(&after, &rolled, &rolled);
        prop_assert_eq!(again.archive, Some(false));
        prop_assert!(same(&compensate(&again, &after, &rolled), &after));
    }
}

#[test]
fn pushed_properties_go_back_to_what_the_crm_held_before() {
    let base = |v: &str| Link {
        remote_id: "c-1".into(),
        remote: [("lastname".to_string(), Some(v.to_string()))].into(),
        ..Link::default()
    };
    let mut before = Record {
        id: Some("r1".into()),
        ..Record::default()
    };
    before.links.insert("i1".into(), base("Smith"));
    let mut after = before.clone();
    after.links.insert("i1".into(), base("SMITH!"));
    let pushed = [(
        "i1".to_string(),
        Pushed {
            properties: BTreeSet::from(["lastname".to_string()]),
            fields: BTreeSet::new(),
        },
    )]
    .into();
    let p = plan(&before, &after, &after, &pushed, CrmAccess::Writable);
    assert_eq!(
        p.crm,
        vec![CrmRestore {
            integration_id: "i1".into(),
            remote_id: "c-1".into(),
            properties: [("lastname".to_string(), Some("Smith".to_string()))].into(),
            now: [("lastname".to_string(), Some("SMITH!".to_string()))].into(),
            fields: Fields::new(),
        }]
    );
    assert!(!p.crm_owed);
    // Disconnected: the same write-back is listed, and owed.
    let owed = plan(&before, &after, &after, &pushed, CrmAccess::Owed);
    assert_eq!((owed.crm.clone(), owed.crm_owed), (p.crm.clone(), true));
    // A link the run's push created (a new CRM record) is kept, and nothing is written back.
    let mut unlinked = before.clone();
    unlinked.links.clear();
    let p = plan(&unlinked, &after, &after, &pushed, CrmAccess::Writable);
    assert_eq!(
        p.remote_created,
        vec![("i1".to_string(), "c-1".to_string())]
    );
    assert!(p.links.is_empty() && p.crm.is_empty());
}

/// Directed scenarios on real record histories: what the next runs do after a rollback.
mod after_a_rollback {
    use super::*;
    use crate::merge::{MergePolicy, Side};
    use crate::record::{RecordCommand, RecordError};
    use crate::sync_config::ConflictStrategy;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap_or_default()
    }

    fn name(v: &str) -> Fields {
        [("name".to_string(), Some(v.to_string()))].into()
    }

    fn ingest(v: &str, at: i64, strategy: ConflictStrategy, run: &str) -> RecordCommand {
        RecordCommand::Ingest {
            record_id: "rec1".into(),
            workspace_id: "ws1".into(),
            entity: Entity::Contacts,
            integration_id: "hs".into(),
            remote_id: "101".into(),
            remote_updated_at: t(at),
            remote: [("firstname".to_string(), Some(v.to_string()))].into(),
            fields: name(v),
            policy: MergePolicy {
                strategy,
                always: BTreeMap::new(),
            },
            run_id: run.into(),
            at: t(at),
        }
    }

    fn run(state: &mut Record, command: RecordCommand) -> Result<(), RecordError> {
        for e in state.decide(command)? {
            state.apply(&e);
        }
        Ok(())
    }

    fn held(r: &Record) -> Option<String> {
        r.fields.get("name").and_then(|f| f.value.clone())
    }

    /// A CRM edit a run pulled, rolled back: the app has its old value again, the CRM
    /// keeps the new one, and the field is diverged; the same CRM version fetched again
    /// (the next full run) leaves it alone, and only an admin's choice settles it.
    #[test]
    fn a_rolled_back_pull_is_diverged_until_an_admin_chooses() -> Result<(), RecordError> {
        let crm_wins = ConflictStrategy::CrmWins;
        let mut before = Record::default();
        run(&mut before, ingest("Ada", 1, crm_wins, "import"))?;
        let mut after = before.clone();
        run(&mut after, ingest("Ada L", 2, crm_wins, "bad"))?;
        assert_eq!(held(&after).as_deref(), Some("Ada L"));

        let p = plan_of(&before, &after, &after);
        assert_eq!(
            p.diverged,
            vec![Diverging {
                integration_id: "hs".into(),
                field: "name".into(),
                app: Some("Ada".into()),
                crm: Some("Ada L".into()),
            }]
        );
        let rolled = compensate(&p, &before, &after);
        assert_eq!(held(&rolled).as_deref(), Some("Ada"));
        let link = &rolled.links["hs"];
        assert!(link.pending_push.is_empty(), "nothing is owed: {link:?}");
        assert_eq!(
            link.remote, after.links["hs"].remote,
            "the CRM still holds it"
        );

        // The next full run fetches the same CRM version: nothing changes.
        let mut next = rolled.clone();
        run(&mut next, ingest("Ada L", 2, crm_wins, "next"))?;
        assert_eq!(held(&next).as_deref(), Some("Ada"));
        assert!(next.links["hs"].diverged.contains_key("name"));
        assert!(next.links["hs"].pending_push.is_empty());

        // Keeping the CRM's value: the app takes it, from the CRM, nothing owed.
        let mut crm = next.clone();
        run(
            &mut crm,
            RecordCommand::SettleDivergence {
                integration_id: "hs".into(),
                fields: None,
                keep: Side::Crm,
                actor: "token:admin".into(),
                at: t(5),
            },
        )?;
        assert_eq!(held(&crm).as_deref(), Some("Ada L"));
        assert_eq!(
            crm.fields["name"].source,
            Source::Crm {
                integration_id: "hs".into(),
                decided_by: Some("token:admin".into()),
            }
        );
        assert!(crm.links["hs"].diverged.is_empty() && crm.links["hs"].pending_push.is_empty());
        // Keeping the app's: it is owed to the CRM.
        let mut app = next.clone();
        run(
            &mut app,
            RecordCommand::SettleDivergence {
                integration_id: "hs".into(),
                fields: Some(vec!["name".into()]),
                keep: Side::App,
                actor: "token:admin".into(),
                at: t(5),
            },
        )?;
        assert_eq!(held(&app).as_deref(), Some("Ada"));
        assert_eq!(app.links["hs"].pending_push, name("Ada"));
        assert!(app.links["hs"].diverged.is_empty());
        // Nothing left to settle, or a field that never diverged: refused.
        let again = app.decide(RecordCommand::SettleDivergence {
            integration_id: "hs".into(),
            fields: None,
            keep: Side::App,
            actor: "token:admin".into(),
            at: t(6),
        });
        assert!(matches!(again, Err(RecordError::NotDiverged { .. })));
        let unknown = next.decide(RecordCommand::SettleDivergence {
            integration_id: "hs".into(),
            fields: Some(vec!["email".into()]),
            keep: Side::App,
            actor: "token:admin".into(),
            at: t(6),
        });
        assert!(matches!(
            unknown,
            Err(RecordError::NotDiverged { field: Some(_), .. })
        ));
        // An app edit of the field is a new decision: owed as usual.
        let mut edited = next;
        run(
            &mut edited,
            RecordCommand::Edit {
                fields: name("Ada Lovelace"),
                actor: "token:app".into(),
                at: t(7),
            },
        )?;
        assert!(edited.links["hs"].diverged.is_empty());
        assert_eq!(edited.links["hs"].pending_push, name("Ada Lovelace"));
        Ok(())
    }

    /// A conflict the run queued stays open through its rollback, and the app value it
    /// held back is not owed again: the next run cannot push it over the CRM's.
    #[test]
    fn a_conflict_the_run_opened_stays_open() -> Result<(), RecordError> {
        let review = ConflictStrategy::ManualReview;
        let mut before = Record::default();
        run(&mut before, ingest("Ada", 1, review, "import"))?;
        run(
            &mut before,
            RecordCommand::Edit {
                fields: name("Ada (app)"),
                actor: "token:app".into(),
                at: t(2),
            },
        )?;
        assert_eq!(before.links["hs"].pending_push, name("Ada (app)"));
        let mut after = before.clone();
        run(&mut after, ingest("Ada (crm)", 3, review, "bad"))?;
        assert!(after.links["hs"].conflicts.contains_key("name"));
        let p = plan_of(&before, &after, &after);
        let rolled = compensate(&p, &before, &after);
        let link = &rolled.links["hs"];
        assert!(link.conflicts.contains_key("name"), "{link:?}");
        assert!(link.pending_push.is_empty(), "{link:?}");
        assert_eq!(held(&rolled).as_deref(), Some("Ada (app)"));
        Ok(())
    }
}
