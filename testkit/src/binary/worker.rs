//! What the worker tests share: `syncledger worker` children with their logs, HubSpot
//! integrations connected through a sandbox, runs waited for, and the records read model.

use super::poll_until;
use super::{strip_ansi, Api, TestEnv};
use crate::sandbox::{approve, Sandbox};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};

/// How long a test run may take.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(90);
const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Variables every process of a test gets: no scheduler, no workers inside `serve`, no
/// pacing against the sandbox.
pub const QUIET: [(&str, &str); 3] = [
    ("SYNCLEDGER_WORKERS", "0"),
    ("SYNCLEDGER_SCHEDULER_INTERVAL_SECS", "0"),
    ("SYNCLEDGER_PROVIDER_PACING", "false"),
];

/// A running `syncledger worker`, logging JSON to a buffer the test reads.
pub struct Worker {
    child: Child,
    pub pid: u32,
    logs: Arc<Mutex<String>>,
    /// Woken each time a log line arrives.
    logged: Arc<Notify>,
    reader: JoinHandle<()>,
}

impl Worker {
    pub fn start(env: &TestEnv, args: &[&str], vars: &[(&str, &str)]) -> Worker {
        let mut all = vec!["--log-format", "json", "worker"];
        all.extend(args);
        let mut cmd = env.command(&all);
        cmd.envs(QUIET.iter().copied())
            .envs(vars.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn syncledger worker");
        let pid = child.id().expect("the worker's pid");
        let logs = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let (sink, logged) = (logs.clone(), Arc::new(Notify::new()));
        let wake = logged.clone();
        let reader = tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                {
                    let mut logs = sink.lock().unwrap_or_else(|e| e.into_inner());
                    logs.push_str(&strip_ansi(&line));
                    logs.push('\n');
                }
                wake.notify_waiters();
            }
        });
        Worker {
            child,
            pid,
            logs,
            logged,
            reader,
        }
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits until a log line contains `needle`: woken by each new line, not by a clock.
    pub async fn wait_log(&self, needle: &str) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            // Registered before the check, so a line logged in between still wakes us.
            let next_line = self.logged.notified();
            tokio::pin!(next_line);
            next_line.as_mut().enable();
            if self.logs().contains(needle) {
                return;
            }
            if tokio::time::timeout_at(deadline, next_line).await.is_err() {
                panic!(
                    "worker {} never logged {needle:?}; logs:\n{}",
                    self.pid,
                    self.logs()
                );
            }
        }
    }

    /// Waits for the process to exit on its own; its status and logs.
    pub async fn wait_exit(mut self, within: Duration) -> (ExitStatus, String) {
        let status = match timeout(within, self.child.wait()).await {
            Ok(status) => status.expect("wait for the worker"),
            Err(_) => {
                let _ = self.child.start_kill();
                panic!(
                    "worker did not exit within {within:?}; logs:\n{}",
                    self.logs()
                );
            }
        };
        let _ = timeout(STOP_TIMEOUT, &mut self.reader).await;
        (status, self.logs())
    }

    /// SIGTERM; the worker must exit 0. Its logs.
    pub async fn stop(self) -> String {
        let pid = Pid::from_raw(i32::try_from(self.pid).expect("pid fits in i32"));
        kill(pid, Signal::SIGTERM).expect("send SIGTERM to the worker");
        let (status, logs) = self.wait_exit(STOP_TIMEOUT).await;
        assert!(
            status.success(),
            "worker exited with {status}; logs:\n{logs}"
        );
        logs
    }
}

/// The run ids a worker's JSON logs say it ended.
pub fn runs_ended(logs: &str) -> Vec<String> {
    logs.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "sync run ended")
        .filter_map(|v| v["run_id"].as_str().map(str::to_string))
        .collect()
}

/// A request (with a JSON body unless `Value::Null`) that must answer `expected`; the
/// answer's body.
pub async fn call(
    api: &Api,
    method: Method,
    path: &str,
    body: Value,
    expected: StatusCode,
) -> Value {
    let body = (!body.is_null()).then_some(body);
    let text = api.expect(method, path, body.as_ref(), expected).await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"))
}

/// A two-way HubSpot integration (contacts and companies) against `sandbox`, connected
/// through its OAuth flow; its id.
pub async fn connect_hubspot(api: &Api, sandbox: &Sandbox) -> String {
    let body = json!({"provider": "hubspot", "name": "HubSpot", "base_url": sandbox.base_url(),
        "sync_config": {"direction": "bidirectional", "frequency": "manual",
                        "entities": ["contacts", "companies"], "conflict_strategy": "manual_review"}});
    let created = call(
        api,
        Method::POST,
        "/v1/integrations",
        body,
        StatusCode::CREATED,
    )
    .await;
    let id = created["id"].as_str().expect("integration id").to_string();
    let path = format!("/v1/integrations/{id}/connect");
    let started = call(api, Method::POST, &path, Value::Null, StatusCode::OK).await;
    let authorize = started["authorization_url"]
        .as_str()
        .expect("authorization_url");
    let callback = approve(authorize).await.expect("the sandbox approves");
    let http = reqwest::Client::new();
    let done = http.get(&callback).send().await.expect("callback");
    let status = done.status();
    let body: Value = done.json().await.expect("callback JSON");
    assert_eq!(
        (status, &body["status"]),
        (StatusCode::OK, &json!("connected")),
        "{body}"
    );
    id
}

/// Starts a run of `kind`; its id.
pub async fn start_run(api: &Api, integration: &str, kind: &str) -> String {
    let path = format!("/v1/integrations/{integration}/sync-runs");
    let run = call(
        api,
        Method::POST,
        &path,
        json!({"kind": kind}),
        StatusCode::CREATED,
    )
    .await;
    run["id"].as_str().expect("run id").to_string()
}

pub async fn run_view(api: &Api, run_id: &str) -> Value {
    api.get_json(&format!("/v1/sync-runs/{run_id}")).await
}

pub fn is_active(run: &Value) -> bool {
    matches!(run["status"].as_str(), Some("queued" | "running"))
}

/// Waits until the run has ended; its view.
pub async fn wait_run(api: &Api, run_id: &str) -> Value {
    poll_until(&format!("run {run_id} ends"), || async {
        let run = run_view(api, run_id).await;
        if is_active(&run) {
            Err(run.to_string())
        } else {
            Ok(run)
        }
    })
    .await
}

/// Every record of `entity` linked to the integration, per the records read model.
pub async fn records(api: &Api, integration: &str, entity: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path =
            format!("/v1/records?entity={entity}&integration_id={integration}&limit=500");
        if let Some(c) = &cursor {
            let c: String = form_urlencoded::byte_serialize(c.as_bytes()).collect();
            path.push_str(&format!("&cursor={c}"));
        }
        let page = api.get_json(&path).await;
        all.extend(page["data"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return all,
        }
    }
}

/// The record's link to the integration: its remote id (panics without exactly one).
pub fn remote_id(record: &Value, integration: &str) -> String {
    let links: Vec<&Value> = record["links"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter(|l| l["integration_id"] == integration)
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(links.len(), 1, "one link to {integration}: {record}");
    links[0]["remote_id"]
        .as_str()
        .expect("remote_id")
        .to_string()
}
