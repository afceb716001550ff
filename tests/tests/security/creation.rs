//! Creating integrations concurrently: 30 creates at once in one workspace each get a real
//! answer (created, plan limit, duplicate name), never `version_conflict`, and the
//! workspace's slots end up held by exactly the integrations that exist. (The crash between
//! reservation and creation is replayed on the real binary: `api/tests/cli/creation.rs`.)

use futures::future::join_all;
use reqwest::StatusCode;
use std::collections::BTreeSet;
use syncledger_domain::{Plan, Workspace};
use syncledger_testkit::app::{integration_body, on_both_backends, Backend, Options, TestApp};

on_both_backends!(
    thirty_concurrent_creates_all_succeed,
    thirty_concurrent_creates_fail_only_for_real_reasons,
);

const CONCURRENT: usize = 30;

/// `names` created all at once with `token`: each answer's status and error code.
async fn create_all(
    app: &TestApp,
    token: &str,
    names: &[String],
) -> anyhow::Result<Vec<(String, StatusCode, String)>> {
    let answers = join_all(
        names
            .iter()
            .map(|name| app.post("/v1/integrations", token, integration_body(name))),
    )
    .await;
    names
        .iter()
        .zip(answers)
        .map(|(name, answer)| {
            let answer = answer?;
            let code = answer.body["error"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            Ok((name.clone(), answer.status, code))
        })
        .collect()
}

/// The names of the workspace's integrations as listed, and as its slots hold them.
async fn held(
    app: &TestApp,
    token: &str,
    workspace: &str,
) -> anyhow::Result<[BTreeSet<String>; 2]> {
    app.caught_up().await;
    let listed = app.list_all("/v1/integrations", token, &[], 100).await?;
    let listed = listed
        .iter()
        .filter_map(|i| i["name"].as_str().map(str::to_string))
        .collect();
    let slots = app.state.store.cqrs::<Workspace>().load(workspace).await?;
    Ok([listed, slots.integrations.into_values().collect()])
}

async fn thirty_concurrent_creates_all_succeed(backend: Backend) -> anyhow::Result<()> {
    let opts = Options {
        rate_limit_per_minute: 10_000,
        ..Options::default()
    };
    let Some(app) = TestApp::spawn_with(backend, opts).await? else {
        return Ok(());
    };
    let names: Vec<String> = (0..CONCURRENT).map(|i| format!("CRM {i}")).collect();
    for (name, status, code) in create_all(&app, &app.admin, &names).await? {
        assert_eq!(status, StatusCode::CREATED, "{name}: {code}");
    }
    let [listed, slots] = held(&app, &app.admin, &app.workspace_id).await?;
    let wanted: BTreeSet<String> = names.into_iter().collect();
    assert_eq!(listed, wanted);
    assert_eq!(slots, wanted);
    app.finish().await
}

async fn thirty_concurrent_creates_fail_only_for_real_reasons(
    backend: Backend,
) -> anyhow::Result<()> {
    let opts = Options {
        rate_limit_per_minute: 10_000,
        ..Options::default()
    };
    let Some(app) = TestApp::spawn_with(backend, opts).await? else {
        return Ok(());
    };
    // The scale plan allows 5; 10 names, each asked for three times.
    let tenant = app.new_workspace("Scaled", Plan::Scale).await?;
    let names: Vec<String> = (0..CONCURRENT).map(|i| format!("CRM {}", i % 10)).collect();
    let answers = create_all(&app, &tenant.admin, &names).await?;
    let mut created = BTreeSet::new();
    for (name, status, code) in answers {
        match (status, code.as_str()) {
            (StatusCode::CREATED, _) => assert!(created.insert(name.clone()), "{name} twice"),
            (StatusCode::PAYMENT_REQUIRED, "plan_limit") => {}
            (StatusCode::CONFLICT, "duplicate_name") => {}
            other => panic!("{name}: {other:?}"),
        }
    }
    assert_eq!(created.len(), 5, "{created:?}");
    let [listed, slots] = held(&app, &tenant.admin, &tenant.id).await?;
    assert_eq!(listed, created);
    assert_eq!(slots, created);
    app.finish().await
}
