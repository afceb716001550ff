//! `syncledger bench pages`: dashboard page latency on a large store. The store holds a
//! log shaped like `bench rebuild`'s (one workspace, four integrations), by default at the
//! scale the dashboard is held to: 100,000 imported records, 10,000 sync runs (the four
//! imports, then incremental runs of 5 contacts), conflicts, and an audit entry per event
//! (over 100,000); its projections caught up. Then `serve` runs in this process and one
//! signed-in browser session requests each page `--requests` times in turn. One JSON line
//! per page: p50/p95/max milliseconds from request to the last byte over loopback (so the
//! server's time plus a loopback round trip), and the store's size.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use serde_json::json;
use syncledger_domain::Role;
use syncledger_store::{Metadata, Store};
use tokio::sync::watch;

use super::rebuild::{Log, Shape};
use super::round2;
use crate::app::Application;
use crate::config::Settings;

#[derive(clap::Args, Debug, Clone)]
pub struct PagesBenchArgs {
    /// Records imported (over four integrations).
    #[arg(long, default_value_t = 100_000)]
    pub records: usize,
    /// Sync runs: a full import per integration, then incremental runs.
    #[arg(long, default_value_t = 10_000)]
    pub runs: usize,
    /// Contacts each incremental run changes (about two events each).
    #[arg(long, default_value_t = 5)]
    pub run_records: usize,
    /// Requests per page.
    #[arg(long, default_value_t = 50)]
    pub requests: usize,
    /// A PostgreSQL server: a fresh database is created on it for the run and dropped
    /// after. Without it, a fresh SQLite file.
    #[arg(long, env = "SYNCLEDGER_BENCH_DATABASE_URL")]
    pub database_url: Option<String>,
}

pub async fn run(base: &Settings, args: PagesBenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.requests >= 1, "--requests must be at least 1");
    let base = Settings {
        addr: "127.0.0.1:0".parse()?,
        rate_limit_per_minute: u32::MAX,
        ..base.clone()
    };
    let url = args.database_url.clone();
    super::on_scratch(base, url.as_deref(), |settings| async move {
        bench(settings, &args).await
    })
    .await
}

async fn bench(settings: Settings, args: &PagesBenchArgs) -> anyhow::Result<()> {
    let store = Store::open(&settings.store_config()).await?;
    let started = Instant::now();
    // Room for every run in full: the runs, not the events, end the log.
    let events = args.records + 100 + args.runs.saturating_mul(2 * args.run_records + 8);
    let shape = Shape {
        events,
        records: args.records,
        runs: args.runs,
        run_records: args.run_records,
    };
    let mut log = Log::new(&store, shape);
    log.write().await?;
    for p in syncledger_projections::all() {
        syncledger_projections::rebuild::rebuild(&store, p.as_ref(), 2000, &|_| {}).await?;
    }
    let (workspace, integrations) = (log.workspace.clone(), log.integrations.clone());
    store.close().await;
    eprintln!(
        "store written and projected in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let app = Application::build(settings).await?;
    let base = format!("http://{}", app.addr());
    let state = app.state();
    let (stop, stopped) = watch::channel(false);
    let server = tokio::spawn(app.run(stopped));
    let result = measure(&state, &base, &workspace, &integrations, args).await;
    let _ = stop.send(true);
    server.await.context("the API task")??;
    state.store.close().await;
    result
}

async fn measure(
    state: &crate::state::AppState,
    base: &str,
    workspace: &str,
    integrations: &[(String, i64)],
    args: &PagesBenchArgs,
) -> anyhow::Result<()> {
    let backend = if state.store.is_postgres() {
        "postgres"
    } else {
        "sqlite"
    };
    let meta = Metadata::new("bench", workspace, uuid::Uuid::now_v7().to_string());
    let link = state
        .engine
        .sign_in()
        .issue_link(&meta, workspace, Role::Admin)
        .await?;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let signed = client
        .post(format!("{base}/sign-in/link"))
        .form(&[("code", link.code.as_str())])
        .send()
        .await?;
    let cookie = signed
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|c| c.split(';').next())
        .context("a session cookie")?
        .to_string();

    // What the pages show: the first integration, its latest run, a record, its history.
    let integration = &integrations.first().context("an integration")?.0;
    let runs = state
        .engine
        .sync_runs()
        .list(workspace, integration, None, None, 1)
        .await?;
    let run_id = runs.first().and_then(|r| r.id.clone()).context("a run")?;
    let records = state
        .engine
        .records()
        .list(workspace, &Default::default(), ("", ""), 1)
        .await?;
    let record = &records.first().context("a record")?.id;
    let history = state.engine.records().history(workspace, record).await?;
    let instant = history
        .first()
        .and_then(|e| e.at.clone())
        .context("a history entry")?;
    let as_of = form_urlencoded::Serializer::new(String::new())
        .append_pair("as_of", &instant)
        .finish();
    // A page far into the list: after the record in the middle of the workspace.
    let middle = state
        .engine
        .records()
        .list(workspace, &Default::default(), ("", ""), 50_000)
        .await?;
    let later = middle.last().map(|r| r.cursor.clone()).context("records")?;
    let later = form_urlencoded::Serializer::new(String::new())
        .append_pair("cursor", &later)
        .finish();
    drop(middle);
    let events = state.store.feed().count().await?;
    let sizes = syncledger_projections::plans::sizes(&state.store.any, workspace).await?;
    eprintln!("{}", json!({"events": events, "sizes": sizes}));

    let pages = [
        ("overview", "/".to_string()),
        ("integration", format!("/integrations/{integration}")),
        ("runs", format!("/integrations/{integration}/runs")),
        ("run", format!("/runs/{run_id}")),
        ("records", "/records".to_string()),
        ("records_later_page", format!("/records?{later}")),
        ("records_contacts", "/records?entity=contacts".to_string()),
        (
            "records_integration",
            format!("/records?integration={integration}"),
        ),
        ("records_search", "/records?q=contact4".to_string()),
        ("conflicts", "/conflicts".to_string()),
        ("record", format!("/records/{record}")),
        ("record_as_of", format!("/records/{record}?{as_of}")),
        ("audit", "/audit".to_string()),
        ("audit_filtered", "/audit?action=RemoteMerged".to_string()),
        ("tokens", "/tokens".to_string()),
    ];
    for (name, path) in pages {
        let mut ms = Vec::with_capacity(args.requests);
        for _ in 0..args.requests {
            let started = Instant::now();
            let resp = client
                .get(format!("{base}{path}"))
                .header(reqwest::header::COOKIE, &cookie)
                .send()
                .await?;
            let status = resp.status();
            let body = resp.bytes().await?;
            ms.push(started.elapsed().as_secs_f64() * 1000.0);
            anyhow::ensure!(
                status.is_success(),
                "{path}: {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| ms[((ms.len() as f64 * q).ceil() as usize).clamp(1, ms.len()) - 1];
        println!(
            "{}",
            json!({"bench": "pages", "store": backend, "page": name, "requests": ms.len(),
                   "p50_ms": round2(at(0.50)), "p95_ms": round2(at(0.95)),
                   "max_ms": round2(at(1.0)), "events": events, "records": sizes.records,
                   "runs": sizes.runs, "audit_entries": sizes.audit_entries})
        );
    }
    Ok(())
}
