//! The statements behind every list page and overview count, and the database's plan for
//! each, so a test can hold each one to an index: a page or a count that sorts or scans a
//! whole workspace gets slower as the workspace grows.

use syncledger_domain::sync_run::RunStatus;
use syncledger_domain::Entity;
use syncledger_store::{EventPool, Store};

use crate::statement::{Arg, Statement};
use crate::{
    audit, conflicts, destinations, integration_status, records, sync_runs, webhook_endpoints,
    ProjectionError,
};

/// Rows per page in the statements below, as a page asks (one more than it shows).
const PAGE: i64 = 51;

/// A keyset far into a list: the page after it must start with a seek, not a walk.
const LATER: (&str, &str) = ("2026-01-01T00:00:00.000000Z", "0190");

/// Each list's statement, named: its default order (first and later pages), and the
/// filtered variants the pages offer. The search by match key comes with a prefix that
/// holds both of LIKE's wildcards, which it must take literally.
pub fn lists(workspace_id: &str, integration_id: &str) -> Vec<(&'static str, Statement)> {
    let ws = workspace_id;
    let search = |prefix: &str| records::Filter {
        match_prefix: Some(prefix.to_owned()),
        ..Default::default()
    };
    let records =
        |filter: records::Filter, after| records::list_statement(ws, &filter, after, PAGE);
    let conflicts =
        |filter: conflicts::Filter| conflicts::list_statement(ws, &filter, ("", ""), PAGE);
    let audit = |filter: audit::query::Filter| {
        let filter = audit::query::Filter {
            workspace_id: ws.to_owned(),
            ..filter
        };
        audit::query::page_statement(&filter, 1000, i64::MAX, PAGE)
    };
    vec![
        ("records", records(Default::default(), ("", ""))),
        ("records, later page", records(Default::default(), LATER)),
        (
            "records with archived ones",
            records(
                records::Filter {
                    include_archived: true,
                    ..Default::default()
                },
                LATER,
            ),
        ),
        (
            "records updated since",
            records(
                records::Filter {
                    updated_since: Some(LATER.0.to_owned()),
                    ..Default::default()
                },
                ("", ""),
            ),
        ),
        (
            "records of one entity",
            records(
                records::Filter {
                    entity: Some(Entity::Contacts),
                    ..Default::default()
                },
                LATER,
            ),
        ),
        (
            "records linked to an integration",
            records(
                records::Filter {
                    integration: Some(integration_id.to_owned()),
                    ..Default::default()
                },
                LATER,
            ),
        ),
        (
            "records of one entity, first page",
            records(
                records::Filter {
                    entity: Some(Entity::Contacts),
                    ..Default::default()
                },
                ("", ""),
            ),
        ),
        (
            "records of one entity updated since",
            records(
                records::Filter {
                    entity: Some(Entity::Contacts),
                    updated_since: Some(LATER.0.to_owned()),
                    ..Default::default()
                },
                ("", ""),
            ),
        ),
        ("records by match key", records(search("ada%_"), ("", ""))),
        (
            "records by match key, later page",
            records(search("ada"), ("ada@example.com", "0190")),
        ),
        (
            "sync runs",
            sync_runs::list_statement(ws, integration_id, None, "~", PAGE),
        ),
        (
            "sync runs of one status",
            sync_runs::list_statement(ws, integration_id, Some(RunStatus::Failed), "0190", PAGE),
        ),
        ("conflicts", conflicts(Default::default())),
        (
            "open conflicts",
            conflicts(conflicts::Filter {
                status: Some("open".into()),
                ..Default::default()
            }),
        ),
        (
            "conflicts of one integration",
            conflicts(conflicts::Filter {
                integration_id: Some(integration_id.to_owned()),
                ..Default::default()
            }),
        ),
        (
            "open conflicts of one integration",
            conflicts(conflicts::Filter {
                integration_id: Some(integration_id.to_owned()),
                status: Some("open".into()),
                ..Default::default()
            }),
        ),
        (
            "conflicts of one record",
            conflicts(conflicts::Filter {
                record_id: Some("0190a000-0000-7000-8000-000000000003".into()),
                ..Default::default()
            }),
        ),
        (
            "integrations",
            integration_status::list_statement(ws, "", PAGE),
        ),
        (
            "webhook endpoints",
            webhook_endpoints::list_statement(ws, "", PAGE),
        ),
        ("destinations", destinations::list_statement(ws, "", PAGE)),
        ("audit trail", audit(Default::default())),
        (
            "audit trail of one integration",
            audit(audit::query::Filter {
                integration: Some(integration_id.to_owned()),
                ..Default::default()
            }),
        ),
        (
            "audit trail of one actor",
            audit(audit::query::Filter {
                actor: Some("token:0190".into()),
                ..Default::default()
            }),
        ),
        (
            "audit trail of one action",
            audit(audit::query::Filter {
                action: Some("TokenIssued".into()),
                ..Default::default()
            }),
        ),
    ]
}

/// The overview card's counts for an integration, named.
pub fn counts(workspace_id: &str, integration_id: &str) -> Vec<(&'static str, Statement)> {
    let [conflicts, links] =
        integration_status::card_count_statements(workspace_id, integration_id);
    vec![
        ("open conflicts of an integration", conflicts),
        ("records linked to an integration", links),
    ]
}

/// A statement's plan as the database chose it.
#[derive(Debug, Clone)]
pub enum Plan {
    /// SQLite's `EXPLAIN QUERY PLAN`: one line per step (its `detail`).
    Sqlite(Vec<String>),
    /// PostgreSQL's `EXPLAIN (FORMAT JSON)`, planned with sequential scans disabled so that
    /// a small table still shows the plan a large one gets.
    Postgres(serde_json::Value),
}

/// The plan of `statement` with its arguments (a custom plan on PostgreSQL). Runs inside
/// a transaction that is rolled back, so the planner setting ends with it.
pub async fn explain(store: &Store, statement: &Statement) -> Result<Plan, ProjectionError> {
    match &store.events {
        EventPool::Sqlite(_) => {
            let sql = format!("EXPLAIN QUERY PLAN {}", statement.sql);
            let rows = statement.bind_to(&sql).fetch_all(&store.any).await?;
            let lines = rows
                .iter()
                .map(|r| sqlx::Row::try_get::<String, _>(r, "detail"))
                .collect::<Result<_, _>>()?;
            Ok(Plan::Sqlite(lines))
        }
        // The Any driver has no JSON type: the plan is read through the native pool.
        EventPool::Postgres(pg) => {
            let mut tx = pg.begin().await?;
            sqlx::query("SET LOCAL enable_seqscan = off")
                .execute(&mut *tx)
                .await?;
            let sql = format!("EXPLAIN (FORMAT JSON) {}", statement.sql);
            let query = statement
                .args
                .iter()
                .fold(sqlx::query_scalar(&sql), |q, arg| match arg {
                    Arg::Text(s) => q.bind(s.as_str()),
                    Arg::MaybeText(s) => q.bind(s.as_deref()),
                    Arg::Int(n) => q.bind(*n),
                });
            let plan: serde_json::Value = query.fetch_one(&mut *tx).await?;
            tx.rollback().await?;
            Ok(Plan::Postgres(plan))
        }
    }
}

/// How much a workspace holds in the lists above: what a page bench reports its figures
/// against.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Sizes {
    pub records: i64,
    pub runs: i64,
    pub conflicts: i64,
    pub audit_entries: i64,
}

pub async fn sizes(pool: &sqlx::AnyPool, workspace_id: &str) -> Result<Sizes, ProjectionError> {
    let count = |table: &'static str| async move {
        let sql = format!("SELECT COUNT(*) FROM {table} WHERE workspace_id = $1");
        let n: i64 = sqlx::query_scalar(&sql)
            .bind(workspace_id)
            .fetch_one(pool)
            .await?;
        Ok::<i64, ProjectionError>(n)
    };
    Ok(Sizes {
        records: count(records::TABLE).await?,
        runs: count(sync_runs::TABLE).await?,
        conflicts: count(conflicts::TABLE).await?,
        audit_entries: count(audit::TABLE).await?,
    })
}
