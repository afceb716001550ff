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

/// Every command that prints a result prints it as JSON with `--json`: one object per
/// line, with the same facts as the text.
#[tokio::test]
async fn results_print_as_json_with_the_flag() {
    let env = TestEnv::sqlite();
    let ws = env.create_workspace("Acme").await;
    let out_dir = env.data_dir().join("replayed");
    let out_dir = out_dir.display().to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["dashboard", "link", "--workspace", ws.id.as_str()],
            "sign_in_url",
        ),
        (
            vec!["audit", "verify", "--workspace", ws.id.as_str()],
            "checked",
        ),
        (vec!["replay", "--projection", "records"], "events"),
        (
            vec![
                "replay",
                "--projection",
                "records",
                "--into",
                out_dir.as_str(),
            ],
            "manifest",
        ),
        (vec!["keys", "rotate-master"], "rewrapped"),
        (vec!["config", "check"], "workers"),
    ];
    for (args, key) in cases {
        let mut with_flag = vec!["--json"];
        with_flag.extend(args.iter().copied());
        let out = env.run(&with_flag).await;
        assert!(out.status.success(), "{args:?}: {}", describe(&out));
        let text = stdout(&out);
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(!lines.is_empty(), "{args:?} printed nothing");
        let first: Value = serde_json::from_str(lines[0])
            .or_else(|_| serde_json::from_str(&text))
            .unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {text}"));
        assert!(first.get(key).is_some(), "{args:?}: {key} in {first}");
    }
    let out = env.run(&["--json", "audit", "verify"]).await;
    let report: Value = serde_json::from_str(stdout(&out).trim()).expect("JSON");
    assert_eq!(report["ok"], true, "{report}");
}

/// On PostgreSQL too: an empty database is not given a schema by a command that expects
/// a store; it says there is no event log and leaves the database as it was.
#[tokio::test]
async fn an_empty_postgres_database_is_not_migrated_by_a_command() {
    let Some(db) = syncledger_testkit::db::PgTestDb::create().await else {
        return;
    };
    let env = TestEnv::sqlite();
    let out = env
        .command(&["tokens", "create", "--workspace", "w", "--role", "admin"])
        .env("SYNCLEDGER_DATABASE_URL", &db.url)
        .env(
            "SYNCLEDGER_MASTER_KEY",
            "bWFzdGVyLWtleS1vZi10aGlydHktdHdvLWJ5dGVzISE=",
        )
        .output()
        .await
        .expect("run syncledger");
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        stderr(&out).contains("no syncledger event log"),
        "{}",
        describe(&out)
    );
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
        .await
        .expect("connect");
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_one(&mut conn)
    .await
    .expect("count tables");
    assert_eq!(tables, 0, "the database was left empty");
    drop(conn);
    db.cleanup().await;
}

/// Shell completions come from the command line's own definition, so they list every
/// command, `config check` among them.
#[tokio::test]
async fn completions_list_the_commands() {
    let env = TestEnv::sqlite();
    let bash = env.run(&["completions", "bash"]).await;
    assert!(bash.status.success(), "{}", describe(&bash));
    let script = stdout(&bash);
    for word in [
        "_syncledger",
        "serve",
        "workspace",
        "config",
        "rotate-master",
        "--json",
    ] {
        assert!(script.contains(word), "{word} in the bash completions");
    }
    let zsh = env.run(&["completions", "zsh"]).await;
    assert!(
        stdout(&zsh).starts_with("#compdef syncledger"),
        "{}",
        describe(&zsh)
    );
    let unknown = env.run(&["completions", "tcsh"]).await;
    assert_eq!(unknown.status.code(), Some(2), "{}", describe(&unknown));
}
