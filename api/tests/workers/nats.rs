//! `syncledger worker` processes on the NATS JetStream job queue: two of them sharing the
//! runs of several integrations, and a job delivered again after its worker died.
//! Against the real server at `NATS_URL` (default nats://127.0.0.1:4222; skipped when
//! unreachable unless `CI=true`) and PostgreSQL.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::Row;
use std::collections::{BTreeMap, BTreeSet};
use syncledger_bus::{JobQueue, JobQueueConfig, NatsBus, NatsConfig};
use syncledger_sandbox::{Sandbox, SandboxConfig};
use syncledger_testkit::binary::{
    connect_hubspot, is_active, records, remote_id, run_view, runs_ended, sandbox_records,
    start_run, wait_run, Worker, QUIET, RUN_TIMEOUT,
};
use syncledger_testkit::binary::{random_hex, Api, TestEnv};
use syncledger_testkit::nats::require_nats;
use syncledger_testkit::sandbox;

const INTEGRATIONS: usize = 6;
/// Seeded records per object type: two pages.
const SEEDED: usize = 150;
const READY: &str = "waiting for sync runs from the job queue";

/// One tenant: a workspace with its own sandbox and integration.
struct Tenant {
    api: Api,
    sandbox: Sandbox,
    integration: String,
}

#[tokio::test]
async fn two_workers_share_the_runs_one_run_per_integration_at_a_time() {
    let Some(url) = require_nats().await else {
        return;
    };
    let Some(env) = TestEnv::postgres().await else {
        return;
    };
    let nats_config = test_streams(&url);
    let vars = process_vars(&nats_config, &[]);

    let mut tenants = Vec::new();
    let tokens: Vec<String> = {
        let mut t = Vec::new();
        for i in 0..INTEGRATIONS {
            t.push(env.create_workspace(&format!("Tenant {i}")).await.token);
        }
        t
    };
    let server = env.serve_with(&[], &vars).await;
    for (i, token) in tokens.iter().enumerate() {
        let api = server.api(token);
        let sandbox = sandbox::hubspot_with(SandboxConfig {
            records: SEEDED,
            seed: 100 + i as u64,
            ..SandboxConfig::default()
        })
        .await;
        let integration = connect_hubspot(&api, &sandbox).await;
        tenants.push(Tenant {
            api,
            sandbox,
            integration,
        });
    }
    let one = Worker::start(&env, &["--concurrency", "2"], &vars);
    let two = Worker::start(&env, &["--concurrency", "2"], &vars);
    one.wait_log(READY).await;
    two.wait_log(READY).await;

    // Three rounds of a run per integration, all started at once; a second run started
    // while one is active is refused.
    let mut run_ids = Vec::new();
    for kind in ["full", "incremental", "full"] {
        let started = futures::future::join_all(
            tenants
                .iter()
                .map(|t| start_run(&t.api, &t.integration, kind)),
        )
        .await;
        let mut round: Vec<(&Tenant, String)> = tenants.iter().zip(started).collect();
        for (t, run_id) in round.clone() {
            let path = format!("/v1/integrations/{}/sync-runs", t.integration);
            let (status, body) = t
                .api
                .send(Method::POST, &path, Some(&json!({"kind": kind})))
                .await
                .expect("start a second run");
            match status {
                StatusCode::CONFLICT => assert!(body.contains(run_id.as_str()), "{body}"),
                // The first had already ended.
                StatusCode::CREATED => {
                    let second: Value = serde_json::from_str(&body).expect("run JSON");
                    round.push((t, second["id"].as_str().expect("id").to_string()));
                }
                other => panic!("a second run answered {other}: {body}"),
            }
        }
        for (t, run_id) in round {
            let run = wait_run(&t.api, &run_id).await;
            assert_eq!(run["status"], "completed", "{run}");
            run_ids.push(run_id);
        }
    }

    env.settle().await;
    for t in &tenants {
        assert_each_crm_record_once(t, SEEDED).await;
    }
    let pids = (one.pid, two.pid);
    let (logs_one, logs_two) = (one.stop().await, two.stop().await);
    assert_runs_shared(&env, &run_ids, pids, &logs_one, &logs_two).await;
    assert_one_run_at_a_time(&env, tenants.len()).await;

    server.stop_ok().await;
    for t in tenants {
        t.sandbox.shutdown().await;
    }
    assert_eq!(
        remove_streams(nats_config).await,
        0,
        "jobs left unacknowledged"
    );
}

/// A job whose worker died is delivered to another worker once the ack wait passes, and
/// that worker resumes the run after its last committed page.
#[tokio::test]
async fn a_dead_workers_job_is_delivered_again_and_its_run_resumed() {
    let Some(url) = require_nats().await else {
        return;
    };
    let Some(env) = TestEnv::postgres().await else {
        return;
    };
    let nats_config = test_streams(&url);
    let vars = process_vars(&nats_config, &[("SYNCLEDGER_NATS_JOB_ACK_WAIT_SECS", "2")]);
    let ws = env.create_workspace("Acme").await;
    let server = env.serve_with(&[], &vars).await;
    let api = server.api(&ws.token);
    let sandbox = sandbox::hubspot(250).await;
    let integration = connect_hubspot(&api, &sandbox).await;
    let run_id = start_run(&api, &integration, "full").await;

    let mut crashing_vars = vars.clone();
    crashing_vars.push(("SYNCLEDGER_CRASH_AT", "pull:committed:2"));
    let crashing = Worker::start(&env, &[], &crashing_vars);
    let (status, logs) = crashing.wait_exit(RUN_TIMEOUT).await;
    assert!(!status.success(), "{status}; logs:\n{logs}");
    assert!(is_active(&run_view(&api, &run_id).await));

    let next = Worker::start(&env, &[], &vars);
    let run = wait_run(&api, &run_id).await;
    assert_eq!(run["status"], "completed", "{run}");
    let pages = |pass: &str| {
        run["passes"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["pass"] == pass))
            .map(|p| p["pages"].clone())
    };
    // Two pages committed before the crash, the third after it: none twice.
    assert_eq!(pages("contacts/pull"), Some(json!(3)), "{run}");
    assert_eq!(run["stats"]["created"], 500, "{run}");
    let logs = next.stop().await;
    assert!(logs.contains("delivered again: resuming it"), "{logs}");
    assert!(runs_ended(&logs).contains(&run_id), "{logs}");

    env.settle().await;
    let tenant = Tenant {
        api,
        sandbox,
        integration,
    };
    assert_each_crm_record_once(&tenant, 250).await;
    server.stop_ok().await;
    tenant.sandbox.shutdown().await;
    assert_eq!(
        remove_streams(nats_config).await,
        0,
        "jobs left unacknowledged"
    );
}

/// `serve` killed mid-run (`SYNCLEDGER_CRASH_AT` aborts it, as `kill -9` would) with
/// NATS, then started again under the same instance name: it resumes the run at once.
/// The job queue's ack wait is ten minutes here, so only the restart can explain the
/// resumption (it used to wait for the dead delivery's ack wait: the job sent again at
/// start was dropped as a duplicate of the one the dead process held).
#[tokio::test]
async fn a_killed_serve_resumes_its_runs_at_once_when_started_again() {
    let Some(url) = require_nats().await else {
        return;
    };
    let Some(env) = TestEnv::postgres().await else {
        return;
    };
    let nats_config = test_streams(&url);
    let instance = format!("sync-{}", random_hex());
    let vars = process_vars(
        &nats_config,
        &[
            ("SYNCLEDGER_NATS_JOB_ACK_WAIT_SECS", "600"),
            ("SYNCLEDGER_INSTANCE_NAME", instance.as_str()),
            // `serve` executes the runs itself here (QUIET leaves them to workers).
            ("SYNCLEDGER_WORKERS", "2"),
        ],
    );
    let ws = env.create_workspace("Acme").await;
    let mut crashing_vars = vars.clone();
    crashing_vars.push(("SYNCLEDGER_CRASH_AT", "pull:committed:2"));
    let crashing = env.serve_with(&[], &crashing_vars).await;
    let sandbox = sandbox::hubspot(250).await;
    let integration = connect_hubspot(&crashing.api(&ws.token), &sandbox).await;
    let run_id = start_run(&crashing.api(&ws.token), &integration, "full").await;
    let died = crashing.exited().await;
    assert!(
        !died.status.success(),
        "{}; logs:\n{}",
        died.status,
        died.stderr
    );

    let server = env.serve_with(&[], &vars).await;
    let api = server.api(&ws.token);
    let run = wait_run(&api, &run_id).await;
    assert_eq!(run["status"], "completed", "{run}");
    let pages = run["passes"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["pass"] == "contacts/pull"))
        .map(|p| p["pages"].clone());
    // Two pages committed before the crash, the third after it: none twice.
    assert_eq!(pages, Some(json!(3)), "{run}");
    assert_eq!(run["stats"]["created"], 500, "{run}");
    env.settle().await;
    let tenant = Tenant {
        api,
        sandbox,
        integration,
    };
    assert_each_crm_record_once(&tenant, 250).await;
    let logs = server.stop_ok().await.stderr;
    assert!(
        logs.contains("resuming a sync run this instance held when it stopped"),
        "{logs}"
    );
    tenant.sandbox.shutdown().await;
    // The dead process's delivery of the first job stays in the queue until its ack wait
    // passes (then the ended run acknowledges it); the job sent at restart was acknowledged.
    assert_eq!(
        remove_streams(nats_config).await,
        1,
        "jobs left in the queue"
    );
}

/// A stream and subjects of the test's own.
fn test_streams(url: &str) -> NatsConfig {
    let hex = random_hex();
    NatsConfig {
        url: url.to_string(),
        stream: format!("SLTEST_WORKERS_{hex}"),
        subject_prefix: format!("sltest.{hex}.events"),
    }
}

/// What the test's processes are given: NATS with the test's streams, and `extra`.
fn process_vars<'a>(nats: &'a NatsConfig, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    QUIET
        .iter()
        .copied()
        .chain([
            ("SYNCLEDGER_NATS_URL", nats.url.as_str()),
            ("SYNCLEDGER_NATS_STREAM", nats.stream.as_str()),
            (
                "SYNCLEDGER_NATS_SUBJECT_PREFIX",
                nats.subject_prefix.as_str(),
            ),
        ])
        .chain(extra.iter().copied())
        .collect()
}

/// Deletes the test's streams; how many jobs were left in the job stream.
async fn remove_streams(config: NatsConfig) -> u64 {
    let nats = NatsBus::connect_with(config).await.expect("NATS");
    let queue = JobQueueConfig::for_events(nats.config());
    let mut jobs = nats
        .jetstream()
        .get_stream(&queue.stream)
        .await
        .expect("the job stream");
    let left = jobs.info().await.expect("job stream info").state.messages;
    JobQueue::open(&nats, queue)
        .await
        .expect("job queue")
        .delete()
        .await
        .expect("delete the job stream");
    nats.delete_stream().await.expect("delete the event stream");
    left
}

/// The integration's records: one per CRM contact and company, none twice.
async fn assert_each_crm_record_once(t: &Tenant, seeded: usize) {
    for ty in ["contacts", "companies"] {
        let app: Vec<String> = records(&t.api, &t.integration, ty)
            .await
            .iter()
            .map(|r| remote_id(r, &t.integration))
            .collect();
        let unique: BTreeSet<&String> = app.iter().collect();
        assert_eq!(unique.len(), app.len(), "{ty}: a CRM record linked twice");
        let crm: BTreeSet<String> = sandbox_records(&t.sandbox, ty, "email")
            .await
            .iter()
            .filter_map(|r| r["id"].as_str().map(str::to_string))
            .collect();
        assert_eq!(crm.len(), seeded);
        assert_eq!(unique, crm.iter().collect(), "{ty}");
    }
}

/// Both workers executed runs; each run was ended by one of them, as their logs and the
/// runs' `RunStarted` events say.
async fn assert_runs_shared(
    env: &TestEnv,
    run_ids: &[String],
    (one, two): (u32, u32),
    logs_one: &str,
    logs_two: &str,
) {
    let (ended_one, ended_two) = (runs_ended(logs_one), runs_ended(logs_two));
    assert!(
        !ended_one.is_empty(),
        "worker {one} ended no run:\n{logs_one}"
    );
    assert!(
        !ended_two.is_empty(),
        "worker {two} ended no run:\n{logs_two}"
    );
    for run_id in run_ids {
        assert!(
            ended_one.contains(run_id) || ended_two.contains(run_id),
            "no worker logged the end of {run_id}"
        );
    }
    let store = env.store().await;
    let rows = sqlx::query(
        "SELECT aggregate_id, CAST(payload AS TEXT) AS payload FROM events
          WHERE aggregate_type = 'sync_run' AND event_type = 'RunStarted'",
    )
    .fetch_all(&store.any)
    .await
    .expect("read RunStarted events");
    store.close().await;
    let mut starters: BTreeSet<String> = BTreeSet::new();
    for row in rows {
        let payload: Value =
            serde_json::from_str(&row.get::<String, _>("payload")).expect("payload");
        let worker =
            find_string(&payload, "worker").unwrap_or_else(|| panic!("a worker name in {payload}"));
        starters.insert(worker.split('#').next().unwrap_or(&worker).to_string());
    }
    let expected: BTreeSet<String> = [one, two].iter().map(|p| format!("worker:{p}")).collect();
    assert_eq!(starters, expected, "who started the runs");
}

/// Per integration, in the events' global order, each run's events are one block that
/// ends with `RunEnded` before the next run is queued.
async fn assert_one_run_at_a_time(env: &TestEnv, integrations: usize) {
    let store = env.store().await;
    let rows = sqlx::query(
        "SELECT aggregate_id, event_type, CAST(payload AS TEXT) AS payload FROM events
          WHERE aggregate_type = 'sync_run' ORDER BY global_position",
    )
    .fetch_all(&store.any)
    .await
    .expect("read the sync-run events");
    store.close().await;
    let mut integration_of: BTreeMap<String, String> = BTreeMap::new();
    // integration → (the run holding it, whether that run has ended)
    let mut current: BTreeMap<String, (String, bool)> = BTreeMap::new();
    for row in rows {
        let run: String = row.get("aggregate_id");
        let kind: String = row.get("event_type");
        if kind == "RunQueued" {
            let payload: Value =
                serde_json::from_str(&row.get::<String, _>("payload")).expect("payload");
            let integration = find_string(&payload, "integration_id").expect("integration_id");
            integration_of.insert(run.clone(), integration);
        }
        let integration = integration_of
            .get(&run)
            .unwrap_or_else(|| panic!("{kind} of {run} before its RunQueued"))
            .clone();
        match current.get(&integration) {
            Some((holder, ended)) if holder != &run => {
                assert!(
                    ended,
                    "{integration}: {kind} of {run} while {holder} was active"
                );
            }
            Some((_, true)) => panic!("{integration}: {kind} of {run} after it ended"),
            _ => {}
        }
        current.insert(integration, (run, kind == "RunEnded"));
    }
    assert_eq!(current.len(), integrations);
    assert!(current.values().all(|(_, ended)| *ended), "{current:?}");
}

/// The first string under `key` anywhere in `v`.
fn find_string(v: &Value, key: &str) -> Option<String> {
    match v {
        Value::Object(map) => map
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| map.values().find_map(|v| find_string(v, key))),
        Value::Array(items) => items.iter().find_map(|v| find_string(v, key)),
        _ => None,
    }
}
