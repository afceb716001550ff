//! The configuration as an operator meets it: a typo in `syncledger.toml` or in a
//! `SYNCLEDGER_*` variable stops every command at start, naming it, instead of leaving a
//! default in force; `config check` prints what is in force without a secret.

use serde_json::Value;
use syncledger_testkit::binary::{describe, stderr, stdout, TestEnv};

#[tokio::test]
async fn a_typo_in_the_file_or_the_environment_is_refused_by_name() {
    let env = TestEnv::sqlite();
    let file = env.data_dir().join("typo.toml");
    std::fs::write(&file, "workers = 0\nwrokers = 4\n").expect("write the file");
    let path = file.display().to_string();
    for args in [
        vec!["--config", path.as_str(), "config", "check"],
        vec!["--config", path.as_str(), "serve"],
    ] {
        let out = env.run(&args).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", describe(&out));
        assert!(stderr(&out).contains("wrokers"), "{}", describe(&out));
    }

    let out = env
        .command(&["config", "check"])
        .env("SYNCLEDGER_SCHEDULER_INTERVAL_SEC", "5")
        .output()
        .await
        .expect("run syncledger");
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        stderr(&out).contains("SYNCLEDGER_SCHEDULER_INTERVAL_SEC"),
        "{}",
        describe(&out)
    );

    // The test suite's own variables never stop the binary.
    let out = env
        .command(&["config", "check"])
        .env("SYNCLEDGER_TEST_PG_URL", "postgres://127.0.0.1/x")
        .output()
        .await
        .expect("run syncledger");
    assert!(out.status.success(), "{}", describe(&out));
}

#[tokio::test]
async fn config_check_prints_what_is_in_force_without_secrets() {
    let env = TestEnv::sqlite();
    let file = env.data_dir().join("syncledger.toml");
    std::fs::write(
        &file,
        "workers = 7\nhubspot_client_id = \"hs-app\"\nhubspot_client_secret = \"hs-secret-93b1\"\n",
    )
    .expect("write the file");
    let out = env
        .command(&["config", "check"])
        .env(
            "SYNCLEDGER_MASTER_KEY",
            "bWFzdGVyLWtleS1vZi10aGlydHktdHdvLWJ5dGVzISE=",
        )
        .env(
            "SYNCLEDGER_DATABASE_URL",
            "postgres://ops:pw-7c1d@db.internal/sync",
        )
        .env("SYNCLEDGER_READY_MAX_LAG_SECS", "15")
        .output()
        .await
        .expect("run syncledger");
    assert!(out.status.success(), "{}", describe(&out));
    let text = stdout(&out);
    let shown: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(shown["workers"], 7, "from the file: {text}");
    assert_eq!(
        shown["ready_max_lag_secs"], 15,
        "from the environment: {text}"
    );
    assert_eq!(shown["hubspot_client_id"], "hs-app");
    assert_eq!(shown["hubspot_client_secret"], "<set, not shown>");
    assert_eq!(shown["database_url"], "postgres://ops:***@db.internal/sync");
    for secret in ["hs-secret-93b1", "pw-7c1d", "bWFzdGVy"] {
        assert!(
            !text.contains(secret) && !stderr(&out).contains(secret),
            "{secret}"
        );
    }
}

/// Run from another directory, a command that works on an existing store says there is
/// none and exits non-zero; it never makes an empty database or a new master key there.
#[tokio::test]
async fn commands_do_not_make_a_store_where_there_is_none() {
    let env = TestEnv::sqlite();
    let empty = env.data_dir().join("elsewhere");
    let dir = empty.display().to_string();
    for args in [
        vec!["tokens", "create", "--workspace", "w", "--role", "admin"],
        vec!["dashboard", "link", "--workspace", "w"],
        vec!["audit", "verify"],
        vec!["keys", "rotate-master"],
        vec!["replay"],
    ] {
        let out = env
            .command(&args)
            .env("SYNCLEDGER_DATA_DIR", &dir)
            .output()
            .await
            .expect("run syncledger");
        assert!(!out.status.success(), "{args:?}: {}", describe(&out));
        assert!(
            stderr(&out).contains("no database at"),
            "{args:?}: {}",
            describe(&out)
        );
        let made: Vec<_> = std::fs::read_dir(&empty)
            .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(made.is_empty(), "{args:?} made {made:?} in {dir}");
    }
    // Where a store is, the same commands work; `workspace create` makes one.
    let ws = env.create_workspace("Acme").await;
    let out = env.run(&["audit", "verify", "--workspace", &ws.id]).await;
    assert!(out.status.success(), "{}", describe(&out));
    let out = env
        .run(&["audit", "verify", "--workspace", "no-such-ws"])
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        stderr(&out).contains("no workspace no-such-ws"),
        "{}",
        describe(&out)
    );
}
