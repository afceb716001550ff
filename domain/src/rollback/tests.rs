use super::*;
use crate::aggregate::Aggregate;
use crate::record::Source;
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

proptest! {
    /// With nothing changed since, a rollback brings the record back to `before`, and
    /// rolling the rollback back brings back the run's result.
    #[test]
    fn a_rollback_restores_before_and_its_rollback_restores_after(before in record(), after in record()) {
        let none = BTreeMap::new();
        let p = plan(&before, &after, &after, &none);
        prop_assert!(p.conflicts.is_empty());
        prop_assert!(p.links_changed_since.is_empty());
        let rolled = compensate(&p, &before, &after);
        prop_assert!(same(&rolled, &before), "rolled {:?}\nbefore {:?}", rolled, before);
        let again = plan(&after, &rolled, &rolled, &none);
        let restored = compensate(&again, &after, &rolled);
        prop_assert!(same(&restored, &after));
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
        let p = plan(&before, &after, &now, &BTreeMap::new());
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

    /// A part of a CRM link changed since the run keeps its later value; the parts the
    /// run changed and nothing touched since go back.
    #[test]
    fn a_link_part_changed_since_is_kept(before in record(), after in record(), field in prop_oneof![Just("a"), Just("b")]) {
        prop_assume!(after.links.contains_key("i1") && before.links.contains_key("i1"));
        let mut now = after.clone();
        let later = Some("later".to_string());
        if let Some(l) = now.links.get_mut("i1") {
            l.pending_push.insert(field.to_string(), later.clone());
        }
        let p = plan(&before, &after, &now, &BTreeMap::new());
        let rolled = compensate(&p, &before, &now);
        let link = &rolled.links["i1"];
        prop_assert_eq!(link.pending_push.get(field), Some(&later));
        let (b, a) = (&before.links["i1"], &after.links["i1"]);
        for (k, v) in &b.base {
            if a.base.get(k) != Some(v) && now.links["i1"].base.get(k) == a.base.get(k) {
                prop_assert_eq!(link.base.get(k), Some(v));
            }
        }
    }

    /// A record the run created is archived with its values kept; rolling that back shows
    /// it again.
    #[test]
    fn a_created_record_is_archived_and_comes_back(after in record()) {
        let mut after = after;
        after.archived = false;
        let before = Record::default();
        let p = plan(&before, &after, &after, &BTreeMap::new());
        prop_assert!(p.created);
        prop_assert_eq!(p.archive, Some(true));
        prop_assert!(p.restore.is_empty() && p.links.is_empty());
        let rolled = compensate(&p, &before, &after);
        prop_assert!(rolled.archived);
        prop_assert_eq!(rolled.values(), after.values());
        let again = plan(&after, &rolled, &rolled, &BTreeMap::new());
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
    let pushed = [("i1".to_string(), BTreeSet::from(["lastname".to_string()]))].into();
    let p = plan(&before, &after, &after, &pushed);
    assert_eq!(
        p.crm,
        vec![CrmRestore {
            integration_id: "i1".into(),
            remote_id: "c-1".into(),
            properties: [("lastname".to_string(), Some("Smith".to_string()))].into(),
            now: [("lastname".to_string(), Some("SMITH!".to_string()))].into(),
        }]
    );
    // A link the run's push created (a new CRM record) is kept, and nothing is written back.
    let mut unlinked = before.clone();
    unlinked.links.clear();
    let p = plan(&unlinked, &after, &after, &pushed);
    assert_eq!(
        p.remote_created,
        vec![("i1".to_string(), "c-1".to_string())]
    );
    assert!(p.links.is_empty() && p.crm.is_empty());
}
