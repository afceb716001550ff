//! Every list page and overview count is served by an index, on both backends: the
//! statements the pages run (`projections::plans`, and the lists whose SQL lives outside
//! the read models: API tokens, webhook deliveries, a record's history) are planned by
//! the database, and no plan sorts a table or counts from its rows. A page that sorts
//! a workspace's records costs more as the workspace grows; with its index it is a seek
//! and one page's walk.

use anyhow::Context;
use serde_json::Value;
use syncledger_domain::record::Record;
use syncledger_domain::Aggregate;
use syncledger_engine::delivery::deliveries_statement;
use syncledger_engine::workspaces::list_tokens_statement;
use syncledger_projections::plans::{self, Plan};
use syncledger_projections::statement::Statement;
use syncledger_store::feed::{EVENTS_OF_PG, EVENTS_OF_SQLITE};
use syncledger_store::Store;
use syncledger_testkit::{with_postgres, with_sqlite};

const WS: &str = "0190a000-0000-7000-8000-000000000001";
const INTEGRATION: &str = "0190a000-0000-7000-8000-000000000002";
const ENDPOINT: &str = "0190a000-0000-7000-8000-000000000004";

/// Lists whose page must start with a seek on its order's column (the keyset or the
/// search's range), not a walk from the workspace's first row.
const SEEKS: &[(&str, &str)] = &[
    ("records, later page", "updated_at"),
    ("records with archived ones", "updated_at"),
    ("records updated since", "updated_at"),
    ("records of one entity", "updated_at"),
    ("records linked to an integration", "updated_at"),
    ("records by match key", "match_key"),
    ("records by match key, later page", "match_key"),
    ("sync runs", "id"),
    ("conflicts", "detected_at"),
    ("open conflicts", "detected_at"),
    ("conflicts of one integration", "detected_at"),
    ("open conflicts of one integration", "detected_at"),
    ("conflicts of one record", "detected_at"),
    ("audit trail", "chain_seq"),
    ("audit trail of one integration", "chain_seq"),
    ("audit trail of one actor", "chain_seq"),
    ("audit trail of one action", "chain_seq"),
    ("webhook deliveries, later page", "attempted_at"),
];

/// Lists whose rows (or the rows they look up in another table) must come through a
/// particular index.
const LOOKUPS: &[(&str, &str)] = &[
    ("records linked to an integration", "record_links_record"),
    ("audit trail of one integration", "audit_log_integration"),
    ("audit trail of one actor", "audit_log_actor"),
    ("audit trail of one action", "audit_log_action"),
    (
        "conflicts of one integration",
        "conflicts_integration_listed",
    ),
    ("conflicts of one record", "conflicts_record_listed"),
    ("webhook deliveries", "webhook_deliveries_listed"),
    (
        "webhook deliveries, later page",
        "webhook_deliveries_listed",
    ),
];

/// Whether the plan reads through the index named `index`.
fn uses(plan: &Plan, index: &str) -> bool {
    match plan {
        Plan::Sqlite(lines) => lines.iter().any(|l| l.contains(&format!("INDEX {index} "))),
        Plan::Postgres(plan) => {
            let mut nodes = Vec::new();
            pg_nodes(&plan[0]["Plan"], &mut nodes);
            nodes.iter().any(|n| n["Index Name"] == index)
        }
    }
}

/// Whether the plan's first index condition bounds `column` (`column>?`, `column >= …`).
fn seeks(plan: &Plan, column: &str) -> bool {
    let bounds = |cond: &str| {
        [">", "<"].iter().any(|op| {
            cond.contains(&format!("{column}{op}")) || cond.contains(&format!("({column} {op}"))
        })
    };
    match plan {
        Plan::Sqlite(lines) => lines.first().is_some_and(|l| bounds(l)),
        Plan::Postgres(plan) => {
            let mut nodes = Vec::new();
            pg_nodes(&plan[0]["Plan"], &mut nodes);
            nodes
                .iter()
                .find_map(|n| n["Index Cond"].as_str())
                .is_some_and(bounds)
        }
    }
}

/// Whether a SQLite plan reads the table through an index, in the index's order.
fn sqlite_problems(lines: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    if lines.iter().any(|l| l.contains("TEMP B-TREE")) {
        problems.push("sorts in a temporary b-tree".to_owned());
    }
    // `SCAN t` walks a whole table; `SEARCH t USING …` seeks in an index.
    let first = lines.first().map(String::as_str).unwrap_or_default();
    if !first.starts_with("SEARCH") || !first.contains("INDEX") && !first.contains("PRIMARY KEY") {
        problems.push(format!("the table is not read through an index: {first}"));
    }
    problems
}

fn pg_nodes<'a>(node: &'a Value, out: &mut Vec<&'a Value>) {
    out.push(node);
    for child in node["Plans"].as_array().into_iter().flatten() {
        pg_nodes(child, out);
    }
}

/// Whether a PostgreSQL plan reads the table through an index with no sort.
fn pg_problems(plan: &Value) -> Vec<String> {
    let mut nodes = Vec::new();
    pg_nodes(&plan[0]["Plan"], &mut nodes);
    let kinds: Vec<&str> = nodes
        .iter()
        .filter_map(|n| n["Node Type"].as_str())
        .collect();
    let mut problems = Vec::new();
    if kinds.iter().any(|k| k.contains("Sort")) {
        problems.push(format!("sorts: {kinds:?}"));
    }
    if !kinds.iter().any(|k| k.starts_with("Index")) {
        problems.push(format!("no index scan: {kinds:?}"));
    }
    problems
}

/// Whether a count is answered from an index alone (never from the table's rows).
fn count_problems(plan: &Plan) -> Vec<String> {
    let ok = match plan {
        Plan::Sqlite(lines) => lines.iter().any(|l| l.contains("COVERING INDEX")),
        Plan::Postgres(plan) => {
            let mut nodes = Vec::new();
            pg_nodes(&plan[0]["Plan"], &mut nodes);
            nodes.iter().any(|n| n["Node Type"] == "Index Only Scan")
        }
    };
    if ok {
        Vec::new()
    } else {
        vec!["not counted from an index alone".to_owned()]
    }
}

async fn problems_of(
    store: &Store,
    statements: Vec<(&'static str, Statement)>,
    check: impl Fn(&Plan) -> Vec<String>,
) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for (name, statement) in statements {
        let plan = plans::explain(store, &statement).await?;
        eprintln!("== {name}: {plan:?}");
        for problem in check(&plan) {
            out.push(format!(
                "{name}: {problem}\n  {}\n  {plan:?}",
                statement.sql
            ));
        }
    }
    Ok(out)
}

/// The lists whose SQL lives outside the read models: API tokens and webhook deliveries
/// (the engine's own tables) and a record's history (the event store).
fn other_lists(store: &Store) -> Vec<(&'static str, Statement)> {
    let later = (1_767_000_000_000, "msg_0190".to_owned(), 2);
    let mut history = Statement::new(if store.is_postgres() {
        EVENTS_OF_PG
    } else {
        EVENTS_OF_SQLITE
    });
    history.arg(Record::TYPE);
    history.arg("0190a000-0000-7000-8000-000000000003");
    vec![
        ("API tokens", list_tokens_statement(WS, "", 51)),
        (
            "webhook deliveries",
            deliveries_statement(ENDPOINT, None, 51),
        ),
        (
            "webhook deliveries, later page",
            deliveries_statement(ENDPOINT, Some(later), 51),
        ),
        ("record history", history),
    ]
}

async fn every_list_and_count_is_served_by_an_index(store: Store) -> anyhow::Result<()> {
    let mut lists = plans::lists(WS, INTEGRATION);
    lists.extend(other_lists(&store));
    let mut problems = Vec::new();
    for (name, column) in SEEKS {
        let (_, statement) = lists
            .iter()
            .find(|(n, _)| n == name)
            .with_context(|| format!("a list named {name}"))?;
        let plan = plans::explain(&store, statement).await?;
        if !seeks(&plan, column) {
            problems.push(format!(
                "{name}: no seek on {column}\n  {}\n  {plan:?}",
                statement.sql
            ));
        }
    }
    for (name, index) in LOOKUPS {
        let (_, statement) = lists
            .iter()
            .find(|(n, _)| n == name)
            .with_context(|| format!("a list named {name}"))?;
        let plan = plans::explain(&store, statement).await?;
        if !uses(&plan, index) {
            problems.push(format!(
                "{name}: does not use {index}\n  {}\n  {plan:?}",
                statement.sql
            ));
        }
    }
    let page = |plan: &Plan| match plan {
        Plan::Sqlite(lines) => sqlite_problems(lines),
        Plan::Postgres(plan) => pg_problems(plan),
    };
    problems.extend(problems_of(&store, lists, page).await?);
    problems.extend(problems_of(&store, plans::counts(WS, INTEGRATION), count_problems).await?);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    Ok(())
}

#[tokio::test]
async fn sqlite_every_list_and_count_is_served_by_an_index() -> anyhow::Result<()> {
    with_sqlite(every_list_and_count_is_served_by_an_index).await
}

#[tokio::test]
async fn postgres_every_list_and_count_is_served_by_an_index() -> anyhow::Result<()> {
    with_postgres(every_list_and_count_is_served_by_an_index).await
}
