//! Migrations run at every start and are idempotent.

use syncledger_testkit::binary::{describe, TestEnv};

async fn migrations_run_twice(env: &TestEnv) {
    let first = env.create_workspace("First").await;
    let key = std::fs::read(env.key_file()).expect("key file");
    let second = env.create_workspace("Second").await;
    assert_ne!(first.id, second.id);
    assert_eq!(std::fs::read(env.key_file()).expect("key file"), key);
    let ok = env.settle().await;
    assert!(ok.contains("in 2 workspace(s)"), "{ok}");
}

#[tokio::test]
async fn migrations_are_idempotent_on_sqlite() {
    migrations_run_twice(&TestEnv::sqlite()).await;
}

#[tokio::test]
async fn migrations_are_idempotent_on_postgres() {
    if let Some(env) = TestEnv::postgres().await {
        migrations_run_twice(&env).await;
    }
}

#[tokio::test]
async fn concurrent_first_runs_on_sqlite_all_succeed() {
    let env = TestEnv::sqlite();
    let runs = (0..4).map(|i| {
        let name = format!("W{i}");
        let env = &env;
        async move { env.run(&["workspace", "create", &name]).await }
    });
    for out in futures::future::join_all(runs).await {
        assert!(out.status.success(), "{}", describe(&out));
    }
}
