//! The packaging, checked without Docker (this suite's machines cannot pull base images):
//! the `syncledger` service of `deploy/compose.yaml`, over the Dockerfile's `ENV`, run by the
//! binary this suite built, against the local PostgreSQL and NATS. Only what must differ on
//! this machine is changed: the database and NATS hosts (127.0.0.1 and the test servers'
//! ports), the database (a fresh one), the NATS stream and subject prefix (the test's own),
//! the data directory (a temporary one) and the listen address (a free loopback port).
//! `config check` must accept the settings and `serve` must become ready with them; the
//! image's health check must pass against it. And the Dockerfile must build what the suite
//! tests: the same toolchain, `--locked`, the default features.

use serde_norway::Value;
use std::collections::BTreeMap;
use syncledger_bus::{JobQueue, JobQueueConfig, NatsBus, NatsConfig};
use syncledger_testkit::binary::{describe, poll_until, random_hex, stdout, TestEnv};
use syncledger_testkit::db::PgTestDb;
use syncledger_testkit::nats::require_nats;
use url::Url;

const COMPOSE: &str = include_str!("../../../deploy/compose.yaml");
const DOCKERFILE: &str = include_str!("../../../Dockerfile");
const TEST_SCRIPT: &str = include_str!("../../../scripts/test.sh");
const MANIFEST: &str = include_str!("../../../Cargo.toml");

/// The Dockerfile's instructions, continuation lines joined: (instruction, arguments).
fn dockerfile() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in DOCKERFILE.lines() {
        let line = line.trim();
        if current.is_empty() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(line);
                let (instruction, args) = current.split_once(' ').expect("an instruction");
                out.push((instruction.to_uppercase(), args.trim().to_string()));
                current.clear();
            }
        }
    }
    out
}

fn instructions(name: &str) -> Vec<String> {
    dockerfile()
        .into_iter()
        .filter(|(i, _)| i == name)
        .map(|(_, args)| args)
        .collect()
}

/// An exec-form argument list (`["a", "b"]`).
fn exec_form(args: &str) -> Vec<String> {
    serde_json::from_str(args).unwrap_or_else(|e| panic!("not an exec form: {args}: {e}"))
}

/// The runtime image's `ENV KEY=VALUE` settings (unquoted values only).
fn dockerfile_env() -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for args in instructions("ENV") {
        for pair in args.split_whitespace() {
            let (key, value) = pair
                .split_once('=')
                .unwrap_or_else(|| panic!("ENV {args}: use KEY=VALUE"));
            assert!(!value.contains(['"', '\'']), "ENV {args}: no quotes here");
            env.insert(key.to_string(), value.to_string());
        }
    }
    env
}

fn compose() -> Value {
    serde_norway::from_str(COMPOSE).expect("deploy/compose.yaml is YAML")
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("an environment value that is not a scalar: {other:?}"),
    }
}

/// A service's `environment`, which must be a map of KEY: value.
fn service_env(service: &str) -> BTreeMap<String, String> {
    let doc = compose();
    let env = doc["services"][service]["environment"]
        .as_mapping()
        .unwrap_or_else(|| panic!("services.{service}.environment: a map of KEY: value"));
    env.iter()
        .map(|(k, v)| (k.as_str().expect("a variable name").to_string(), scalar(v)))
        .collect()
}

/// Compose's interpolation in the forms the file uses: `${NAME}`, `${NAME:?message}` (a
/// variable the operator must set: the test gives each of them), `${NAME:-default}`, `$$`.
fn interpolate(value: &str, given: &BTreeMap<&str, String>) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        let inner = rest
            .strip_prefix('{')
            .and_then(|r| r.split_once('}'))
            .unwrap_or_else(|| panic!("{value}: write variables as ${{NAME…}}"));
        let (expr, after) = inner;
        let (name, modifier) = match expr.find([':', '-', '?']) {
            Some(i) => (&expr[..i], &expr[i..]),
            None => (expr, ""),
        };
        let found = given.get(name).cloned();
        let substituted = if let Some(default) = modifier.strip_prefix(":-") {
            found.unwrap_or_else(|| default.to_string())
        } else if modifier.starts_with(":?") || modifier.is_empty() {
            found.unwrap_or_else(|| panic!("{value}: the test gives no value for {name}"))
        } else {
            panic!("{value}: an interpolation this test does not know: {expr}")
        };
        out.push_str(&substituted);
        rest = after;
    }
    out.push_str(rest);
    out
}

/// `url` with the host and port of `server` (a URL of the same scheme).
fn on_server(url: &str, server: &str) -> Url {
    let mut url = Url::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
    let server = Url::parse(server).unwrap_or_else(|e| panic!("{server}: {e}"));
    url.set_host(server.host_str()).expect("set the host");
    url.set_port(server.port()).expect("set the port");
    url
}

/// The name of the `${NAME…}` variable a value is made of, if it is exactly one.
fn variable_in(value: &str) -> Option<&str> {
    let start = value.find("${")? + 2;
    let rest = &value[start..];
    let end = rest.find([':', '}'])?;
    Some(&rest[..end])
}

#[test]
fn the_dockerfile_builds_what_the_suite_tests() {
    let rust_version = MANIFEST
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .expect("rust-version in Cargo.toml")
        .trim_matches('"');
    let from = instructions("FROM");
    let builder = from.first().expect("a FROM");
    assert!(
        builder.starts_with(&format!("rust:{rust_version}-")),
        "the builder image is Rust {rust_version} (rust-version): FROM {builder}"
    );
    let builds: Vec<String> = instructions("RUN")
        .into_iter()
        .filter(|r| r.contains("cargo build"))
        .collect();
    assert_eq!(builds.len(), 1, "one cargo build: {builds:?}");
    let build = &builds[0];
    for flag in ["--release", "--locked", "-p syncledger-api"] {
        assert!(build.contains(flag), "{flag} in: {build}");
    }
    for flag in ["--features", "--no-default-features", "--all-features"] {
        assert!(
            !build.contains(flag),
            "the default features, as tested: {build}"
        );
    }
    // The suite's own cargo commands take the same lock file as it is.
    let cargo_lines: Vec<&str> = TEST_SCRIPT
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with("log "))
        .filter(|l| {
            ["cargo build", "cargo test", "cargo clippy"]
                .iter()
                .any(|c| l.contains(c))
        })
        .collect();
    assert!(!cargo_lines.is_empty(), "scripts/test.sh runs cargo");
    for line in cargo_lines {
        assert!(
            line.contains("--locked"),
            "--locked in scripts/test.sh: {line}"
        );
    }

    assert_eq!(
        instructions("ENTRYPOINT"),
        vec![r#"["syncledger"]"#.to_string()]
    );
    let user = instructions("USER");
    assert!(
        user.last()
            .is_some_and(|u| !u.starts_with("root") && !u.starts_with('0')),
        "the image runs as a user of its own: {user:?}"
    );
    let env = dockerfile_env();
    assert_eq!(env["SYNCLEDGER_ADDR"], "0.0.0.0:8080");
    assert!(instructions("EXPOSE").contains(&"8080".to_string()));
    assert!(instructions("VOLUME").contains(&env["SYNCLEDGER_DATA_DIR"]));
}

#[test]
fn the_compose_file_wires_the_services_together() {
    let doc = compose();
    let app = &doc["services"]["syncledger"];
    for dependency in ["postgres", "nats"] {
        assert_eq!(
            app["depends_on"][dependency]["condition"].as_str(),
            Some("service_healthy"),
            "syncledger waits for {dependency}"
        );
    }
    let nats_args: Vec<&str> = doc["services"]["nats"]["command"]
        .as_sequence()
        .expect("nats command as a list")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(nats_args.contains(&"-js"), "JetStream: {nats_args:?}");

    // The URL's credentials and database are the postgres service's.
    let postgres = service_env("postgres");
    let env = service_env("syncledger");
    let database_url = &env["SYNCLEDGER_DATABASE_URL"];
    let given = BTreeMap::from([("POSTGRES_PASSWORD", "pw".to_string())]);
    let url = Url::parse(&interpolate(database_url, &given)).expect("a URL");
    let user = postgres
        .get("POSTGRES_USER")
        .map_or("postgres", String::as_str);
    assert_eq!(url.username(), user, "{database_url}");
    assert_eq!(url.host_str(), Some("postgres"), "{database_url}");
    assert_eq!(
        url.path().trim_start_matches('/'),
        postgres.get("POSTGRES_DB").map_or(user, String::as_str),
        "{database_url}"
    );
    assert_eq!(
        variable_in(&postgres["POSTGRES_PASSWORD"]),
        Some("POSTGRES_PASSWORD")
    );
    assert_eq!(url.password(), Some("pw"), "{database_url}");
    assert_eq!(
        Url::parse(&env["SYNCLEDGER_NATS_URL"])
            .expect("a URL")
            .host_str(),
        Some("nats")
    );
    assert_eq!(env["SYNCLEDGER_ENVIRONMENT"], "production");
}

#[tokio::test]
async fn the_compose_settings_serve_against_the_local_postgres_and_nats() {
    let Some(nats_url) = require_nats().await else {
        return;
    };
    let Some(pg) = PgTestDb::create().await else {
        return;
    };
    let env = TestEnv::sqlite();

    let master_key = {
        use base64::Engine as _;
        use rand::RngCore as _;
        let mut key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        base64::engine::general_purpose::STANDARD.encode(key)
    };
    let given = BTreeMap::from([
        ("POSTGRES_PASSWORD", random_hex()),
        ("SYNCLEDGER_MASTER_KEY", master_key),
    ]);
    let mut settings = dockerfile_env();
    for (key, value) in service_env("syncledger") {
        settings.insert(key, interpolate(&value, &given));
    }
    let hex = random_hex();
    let nats = NatsConfig {
        url: on_server(&settings["SYNCLEDGER_NATS_URL"], &nats_url).to_string(),
        stream: format!("SLTEST_DEPLOY_{hex}"),
        subject_prefix: format!("sltest.{hex}.events"),
    };
    let mut database = on_server(&settings["SYNCLEDGER_DATABASE_URL"], &pg.url);
    database.set_path(&pg.name);
    let changes = [
        ("SYNCLEDGER_DATABASE_URL", database.to_string()),
        ("SYNCLEDGER_NATS_URL", nats.url.clone()),
        ("SYNCLEDGER_DATA_DIR", env.data_dir().display().to_string()),
        ("SYNCLEDGER_ADDR", "127.0.0.1:0".to_string()),
    ];
    for (key, value) in changes {
        let old = settings.insert(key.to_string(), value);
        assert!(
            old.is_some(),
            "{key} is set by the Dockerfile or compose.yaml"
        );
    }
    settings.insert("SYNCLEDGER_NATS_STREAM".into(), nats.stream.clone());
    settings.insert(
        "SYNCLEDGER_NATS_SUBJECT_PREFIX".into(),
        nats.subject_prefix.clone(),
    );
    let command = |args: &[&str]| {
        let mut cmd = env.command(args);
        // Only these settings: not the development default the test environment sets.
        cmd.env_remove("SYNCLEDGER_ENVIRONMENT").envs(&settings);
        cmd
    };

    let out = command(&["config", "check"])
        .output()
        .await
        .expect("run syncledger");
    assert!(out.status.success(), "config check: {}", describe(&out));
    let shown: serde_json::Value =
        serde_json::from_str(&stdout(&out)).expect("config check prints JSON");
    assert_eq!(shown["environment"], "production", "{shown}");
    assert_eq!(shown["master_key"], "<set, not shown>", "{shown}");
    assert_eq!(shown["nats_url"], nats.url.as_str(), "{shown}");

    let cmd_args = exec_form(instructions("CMD").last().expect("a CMD"));
    let cmd_args: Vec<&str> = cmd_args.iter().map(String::as_str).collect();
    let server = syncledger_testkit::binary::Server::start(command(&cmd_args)).await;
    let client = reqwest::Client::new();
    let ready_url = format!("{}/v1/ready", server.url);
    poll_until("GET /v1/ready answers 200", || async {
        match client.get(&ready_url).send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!(
                "{}: {}",
                r.status(),
                r.text().await.unwrap_or_default()
            )),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;

    // The image's HEALTHCHECK, as the image runs it (bash is there too).
    let healthcheck = instructions("HEALTHCHECK");
    let probe = healthcheck
        .last()
        .and_then(|h| h.split_once("CMD "))
        .map(|(_, cmd)| exec_form(cmd))
        .expect("HEALTHCHECK … CMD [exec form]");
    let addr = server.url.trim_start_matches("http://").to_string();
    let probed = tokio::process::Command::new(&probe[0])
        .args(&probe[1..])
        .env("SYNCLEDGER_ADDR", addr)
        .output()
        .await
        .expect("run the health check");
    assert!(
        probed.status.success(),
        "HEALTHCHECK: {}",
        describe(&probed)
    );

    server.stop_ok().await;
    let bus = NatsBus::connect_with(nats).await.expect("NATS");
    let jobs = JobQueue::open(&bus, JobQueueConfig::for_events(bus.config()))
        .await
        .expect("the job queue");
    jobs.delete().await.expect("delete the job stream");
    bus.delete_stream().await.expect("delete the event stream");
    pg.cleanup().await;
}
