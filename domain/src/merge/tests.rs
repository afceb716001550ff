use super::*;
use chrono::TimeZone;
use proptest::prelude::*;
use std::collections::BTreeSet;

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, 0)
        .single()
        .unwrap_or_default()
}

fn fields(pairs: &[(&str, Option<&str>)]) -> Fields {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
        .collect()
}

fn policy(strategy: ConflictStrategy) -> MergePolicy {
    MergePolicy {
        strategy,
        always: BTreeMap::new(),
    }
}

fn run(
    base: &Fields,
    app: &Fields,
    crm: &Fields,
    app_at: i64,
    crm_at: i64,
    policy: &MergePolicy,
) -> MergeOutcome {
    merge(
        base,
        Version {
            fields: app,
            modified_at: at(app_at),
        },
        Version {
            fields: crm,
            modified_at: at(crm_at),
        },
        policy,
    )
}

#[test]
fn one_sided_changes_flow_to_the_other_side() {
    let base = fields(&[("email", Some("a@x.io")), ("phone", Some("1"))]);
    let app = fields(&[("email", Some("a@x.io")), ("phone", Some("2"))]);
    let crm = fields(&[("email", Some("b@x.io")), ("phone", Some("1"))]);
    let out = run(
        &base,
        &app,
        &crm,
        0,
        0,
        &policy(ConflictStrategy::ManualReview),
    );
    assert_eq!(out.to_crm, fields(&[("phone", Some("2"))]));
    assert_eq!(out.to_app, fields(&[("email", Some("b@x.io"))]));
    assert!(out.conflicts.is_empty());
    assert_eq!(
        out.base,
        fields(&[("email", Some("b@x.io")), ("phone", Some("2"))])
    );
}

#[test]
fn the_same_change_on_both_sides_is_no_conflict() {
    let base = fields(&[("email", Some("a@x.io"))]);
    let both = fields(&[("email", Some("c@x.io"))]);
    let out = run(
        &base,
        &both,
        &both,
        0,
        5,
        &policy(ConflictStrategy::ManualReview),
    );
    assert!(out.conflicts.is_empty() && out.to_app.is_empty() && out.to_crm.is_empty());
    assert_eq!(out.base, both);
}

#[test]
fn each_strategy_settles_a_conflict_as_named() {
    let base = fields(&[("email", Some("a@x.io"))]);
    let app = fields(&[("email", Some("app@x.io"))]);
    let crm = fields(&[("email", Some("crm@x.io"))]);
    let crm_wins = run(&base, &app, &crm, 10, 0, &policy(ConflictStrategy::CrmWins));
    assert_eq!(crm_wins.to_app, crm);
    assert_eq!(crm_wins.conflicts[0].winner, Some(Side::Crm));
    let app_wins = run(&base, &app, &crm, 0, 10, &policy(ConflictStrategy::AppWins));
    assert_eq!(app_wins.to_crm, app);
    assert_eq!(app_wins.conflicts[0].winner, Some(Side::App));
    let later_app = run(
        &base,
        &app,
        &crm,
        10,
        0,
        &policy(ConflictStrategy::LastWriteWins),
    );
    assert_eq!(later_app.to_crm, app);
    let later_crm = run(
        &base,
        &app,
        &crm,
        0,
        10,
        &policy(ConflictStrategy::LastWriteWins),
    );
    assert_eq!(later_crm.to_app, crm);
    let tie = run(
        &base,
        &app,
        &crm,
        5,
        5,
        &policy(ConflictStrategy::LastWriteWins),
    );
    assert_eq!(
        tie.conflicts[0].winner,
        Some(Side::Crm),
        "the CRM wins ties"
    );
    let review = run(
        &base,
        &app,
        &crm,
        0,
        10,
        &policy(ConflictStrategy::ManualReview),
    );
    assert!(review.to_app.is_empty() && review.to_crm.is_empty());
    assert_eq!(review.queued().count(), 1);
    assert_eq!(review.base, base, "a queued conflict keeps its base");
    let c = &review.conflicts[0];
    assert_eq!(
        (c.base.as_deref(), c.app.as_deref(), c.crm.as_deref()),
        (Some("a@x.io"), Some("app@x.io"), Some("crm@x.io"))
    );
}

#[test]
fn an_always_use_rule_overrides_the_strategy_for_its_field_only() {
    let base = fields(&[("email", Some("a")), ("phone", Some("1"))]);
    let app = fields(&[("email", Some("app")), ("phone", Some("app"))]);
    let crm = fields(&[("email", Some("crm")), ("phone", Some("crm"))]);
    let mut p = policy(ConflictStrategy::ManualReview);
    p.always.insert("email".into(), Side::App);
    let out = run(&base, &app, &crm, 0, 0, &p);
    assert_eq!(out.to_crm, fields(&[("email", Some("app"))]));
    assert_eq!(
        out.queued().map(|c| c.field.as_str()).collect::<Vec<_>>(),
        ["phone"]
    );
}

#[test]
fn nulls_are_values_and_unmentioned_fields_are_unchanged() {
    let base = fields(&[("phone", Some("1")), ("title", Some("CEO"))]);
    // The app cleared the phone; the CRM does not report the title at all.
    let app = fields(&[("phone", None), ("title", Some("CEO"))]);
    let crm = fields(&[("phone", Some("1"))]);
    let out = run(&base, &app, &crm, 0, 0, &policy(ConflictStrategy::CrmWins));
    assert_eq!(out.to_crm, fields(&[("phone", None)]));
    assert!(out.to_app.is_empty());
    assert_eq!(out.base, fields(&[("phone", None), ("title", Some("CEO"))]));
}

// ---- properties ----

const NAMES: [&str; 4] = ["email", "phone", "name", "title"];

fn value() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop::sample::select(vec!["a", "b", "c"]).prop_map(str::to_string))
}

fn side_fields() -> impl Strategy<Value = Fields> {
    prop::collection::btree_map(
        prop::sample::select(NAMES.to_vec()).prop_map(str::to_string),
        value(),
        0..=4,
    )
}

fn strategy() -> impl Strategy<Value = ConflictStrategy> {
    prop::sample::select(vec![
        ConflictStrategy::LastWriteWins,
        ConflictStrategy::CrmWins,
        ConflictStrategy::AppWins,
        ConflictStrategy::ManualReview,
    ])
}

fn rules() -> impl Strategy<Value = BTreeMap<String, Side>> {
    prop::collection::btree_map(
        prop::sample::select(NAMES.to_vec()).prop_map(str::to_string),
        prop::sample::select(vec![Side::App, Side::Crm]),
        0..=2,
    )
}

/// What each side holds for a field: its own value if it mentions it, else the base.
fn holds(side: &Fields, base: &Fields, name: &str) -> Option<String> {
    side.get(name)
        .cloned()
        .unwrap_or_else(|| base.get(name).cloned().flatten())
}

fn apply(side: &Fields, base: &Fields, changes: &Fields) -> Fields {
    NAMES
        .iter()
        .map(|n| {
            let v = changes
                .get(*n)
                .cloned()
                .unwrap_or_else(|| holds(side, base, n));
            (n.to_string(), v)
        })
        .collect()
}

proptest! {
    #[test]
    fn a_one_sided_change_is_never_lost(
        base in side_fields(), app in side_fields(), crm in side_fields(),
        app_at in 0i64..3, crm_at in 0i64..3, strategy in strategy(), always in rules(),
    ) {
        let p = MergePolicy { strategy, always };
        let out = run(&base, &app, &crm, app_at, crm_at, &p);
        for name in NAMES {
            let was = base.get(name).cloned().flatten();
            let (a, c) = (holds(&app, &base, name), holds(&crm, &base, name));
            if a != was && c == was {
                prop_assert_eq!(out.to_crm.get(name), Some(&a));
                prop_assert_eq!(out.base.get(name), Some(&a));
            }
            if c != was && a == was {
                prop_assert_eq!(out.to_app.get(name), Some(&c));
                prop_assert_eq!(out.base.get(name), Some(&c));
            }
        }
    }

    #[test]
    fn strategies_are_applied_exactly_as_named(
        base in side_fields(), app in side_fields(), crm in side_fields(),
        app_at in 0i64..3, crm_at in 0i64..3, strategy in strategy(), always in rules(),
    ) {
        let p = MergePolicy { strategy, always: always.clone() };
        let out = run(&base, &app, &crm, app_at, crm_at, &p);
        for c in &out.conflicts {
            prop_assert!(c.app != c.crm && c.app != c.base && c.crm != c.base);
            let expected = match (always.get(&c.field), strategy) {
                (Some(side), _) => Some(*side),
                (None, ConflictStrategy::CrmWins) => Some(Side::Crm),
                (None, ConflictStrategy::AppWins) => Some(Side::App),
                (None, ConflictStrategy::LastWriteWins) => {
                    Some(if app_at > crm_at { Side::App } else { Side::Crm })
                }
                (None, ConflictStrategy::ManualReview) => None,
            };
            prop_assert_eq!(c.winner, expected);
            let kept = match c.winner {
                Some(Side::App) => Some(&c.app),
                Some(Side::Crm) => Some(&c.crm),
                None => None,
            };
            prop_assert_eq!(out.base.get(&c.field).filter(|_| kept.is_some()), kept);
        }
    }

    #[test]
    fn both_sides_converge_except_queued_fields_and_a_second_merge_changes_nothing(
        base in side_fields(), app in side_fields(), crm in side_fields(),
        app_at in 0i64..3, crm_at in 0i64..3, strategy in strategy(), always in rules(),
    ) {
        let p = MergePolicy { strategy, always };
        let out = run(&base, &app, &crm, app_at, crm_at, &p);
        let new_app = apply(&app, &base, &out.to_app);
        let new_crm = apply(&crm, &base, &out.to_crm);
        let queued: BTreeSet<&str> = out.queued().map(|c| c.field.as_str()).collect();
        for name in NAMES {
            if !queued.contains(name) {
                prop_assert_eq!(new_app.get(name), new_crm.get(name), "field {}", name);
                prop_assert_eq!(new_app.get(name).cloned().flatten(), out.base.get(name).cloned().flatten());
            }
        }
        if queued.is_empty() {
            let again = run(&out.base, &new_app, &new_crm, app_at, crm_at, &p);
            prop_assert!(again.to_app.is_empty() && again.to_crm.is_empty() && again.conflicts.is_empty());
        }
    }
}

#[test]
fn an_empty_text_and_a_null_are_the_same_value() {
    let all = [
        ConflictStrategy::ManualReview,
        ConflictStrategy::CrmWins,
        ConflictStrategy::AppWins,
        ConflictStrategy::LastWriteWins,
    ];
    for strategy in all {
        // The app cleared the phone (pushed as null); the CRM stores it as "".
        let base = fields(&[("phone", None)]);
        let echo = fields(&[("phone", Some(""))]);
        let out = run(&base, &base, &echo, 0, 5, &policy(strategy));
        assert_eq!(
            out,
            MergeOutcome {
                base: base.clone(),
                ..MergeOutcome::default()
            },
            "{strategy:?}"
        );
        // The app edits it again: a one-sided change, never a conflict nor lost.
        let app = fields(&[("phone", Some("2"))]);
        let out = run(&base, &app, &echo, 9, 5, &policy(strategy));
        assert!(out.conflicts.is_empty(), "{strategy:?}: {out:?}");
        assert_eq!(out.to_crm, app, "{strategy:?}");
        // A CRM that clears a value the app still holds: the app takes null, not "".
        let base = fields(&[("phone", Some("1"))]);
        let out = run(&base, &base, &echo, 0, 5, &policy(strategy));
        assert_eq!(out.to_app, fields(&[("phone", None)]), "{strategy:?}");
    }
}

proptest! {
    /// Reading any empty text as null on either side (or in the base) changes nothing
    /// the merge decides.
    #[test]
    fn empties_merge_as_nulls(
        cells in prop::collection::vec((0usize..3, 0usize..3, 0usize..3), 1..6),
    ) {
        let values = [None, Some(""), Some("x")];
        let (mut base, mut app, mut crm) = (Fields::new(), Fields::new(), Fields::new());
        let (mut base_n, mut app_n, mut crm_n) = (Fields::new(), Fields::new(), Fields::new());
        for (i, (b, a, c)) in cells.iter().enumerate() {
            let name = format!("f{i}");
            for (set, norm, v) in [(&mut base, &mut base_n, b), (&mut app, &mut app_n, a), (&mut crm, &mut crm_n, c)] {
                set.insert(name.clone(), values[*v].map(str::to_string));
                norm.insert(name.clone(), empty_as_none(values[*v].map(str::to_string)));
            }
        }
        let p = policy(ConflictStrategy::ManualReview);
        let raw = run(&base, &app, &crm, 1, 2, &p);
        let clean = run(&base_n, &app_n, &crm_n, 1, 2, &p);
        prop_assert_eq!(raw.to_app, clean.to_app);
        prop_assert_eq!(raw.to_crm, clean.to_crm);
        prop_assert_eq!(raw.conflicts, clean.conflicts);
        prop_assert_eq!(normalized(&raw.base), clean.base);
    }
}
