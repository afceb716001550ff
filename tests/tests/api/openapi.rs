//! The OpenAPI document and the provider catalogue.
//!
//! The document is checked three ways: its own rules here (unique camelCase operation
//! ids, tags, error responses, every `/v1` route of the router documented), by an
//! independent validator (`openapi-spec-validator`), and by generating a Python client
//! from it (`openapi-python-client`) that calls the running server. The two tools are
//! installed by `scripts/test.sh` (pinned in `scripts/py-tools.txt`) and found through
//! `SYNCLEDGER_PY_TOOLS`; without them the second test skips, and fails under `CI=true`.

use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;
use syncledger_testkit::app::{Backend, TestApp};
use syncledger_testkit::db::require_ci_services;

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

/// Operations that answer no error of their own: liveness and this document.
const INFALLIBLE: [&str; 2] = ["getHealth", "getOpenApiDocument"];

#[tokio::test]
async fn openapi_document_describes_the_api() -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await? else {
        return Ok(());
    };
    let resp = app.get("/v1/openapi.json", "").await?;
    let doc = resp.expect(StatusCode::OK).clone();
    app.finish().await?;

    let version = doc["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3.1."), "openapi version {version:?}");
    assert_eq!(doc["info"]["title"], "syncledger");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(doc["info"]["license"]["identifier"], "Apache-2.0");
    let servers = doc["servers"].as_array().cloned().unwrap_or_default();
    assert!(
        servers.iter().any(|s| s["url"].is_string()),
        "servers: {servers:?}"
    );
    // The webhook catalogue is the domain's, each type described.
    let catalogue = &doc["components"]["schemas"]["WebhookEventType"];
    // Described variants come as `oneOf` of one-value enums, bare ones as one enum.
    let variants = catalogue["oneOf"].as_array().cloned().unwrap_or_default();
    let documented: Vec<String> = variants
        .iter()
        .chain(std::iter::once(catalogue))
        .flat_map(|v| v["enum"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| e.as_str().map(str::to_owned))
        .collect();
    let domain: Vec<String> = syncledger_domain::webhook::EventType::ALL
        .iter()
        .map(|t| t.as_str().to_owned())
        .collect();
    assert_eq!(documented, domain, "{catalogue}");
    let bearer = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(
        bearer["scheme"].as_str().map(str::to_lowercase),
        Some("bearer".into())
    );
    let declared_tags: BTreeSet<&str> = doc["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["name"].as_str())
        .collect();

    let mut ids: BTreeMap<String, String> = BTreeMap::new();
    for (path, method, op) in operations(&doc) {
        let at = format!("{} {path}", method.to_uppercase());
        let id = op["operationId"].as_str().unwrap_or_default().to_owned();
        assert!(
            is_camel_case(&id),
            "{at}: operationId {id:?} is not camelCase"
        );
        if let Some(other) = ids.insert(id.clone(), at.clone()) {
            panic!("operationId {id} is used by {other} and {at}");
        }
        let tags: Vec<&str> = op["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        assert!(!tags.is_empty(), "{at} has no tag");
        for t in &tags {
            assert!(declared_tags.contains(t), "{at}: tag {t:?} is not declared");
        }
        let responses = op["responses"].as_object().cloned().unwrap_or_default();
        let has = |status: &str| responses.contains_key(status);
        let errors = responses
            .keys()
            .filter(|s| s.starts_with(['4', '5']))
            .count();
        if !INFALLIBLE.contains(&id.as_str()) {
            assert!(errors > 0, "{at} documents no error response");
        }
        let authenticated = op["security"].as_array().is_some_and(|s| !s.is_empty());
        if authenticated {
            for status in ["401", "403", "429", "500"] {
                assert!(has(status), "{at} lacks {status}");
            }
        }
        let params: Vec<&Value> = op["parameters"].as_array().into_iter().flatten().collect();
        let acting_for = params
            .iter()
            .any(|p| p["in"] == "header" && p["name"] == "X-Acting-For");
        assert_eq!(
            acting_for, authenticated,
            "{at}: X-Acting-For is declared exactly where a token is taken"
        );
        let in_path = params.iter().any(|p| p["in"] == "path");
        if in_path && !SECRET_IN_PATH.contains(&id.as_str()) {
            assert!(has("404"), "{at} looks an id up but lacks 404");
        }
        let in_query = params.iter().any(|p| p["in"] == "query");
        if in_query || op["requestBody"].is_object() {
            assert!(has("400"), "{at} parses input but lacks 400");
        }
        for (status, response) in &responses {
            if response.get("$ref").is_some() {
                continue;
            }
            let described = response["description"]
                .as_str()
                .is_some_and(|d| !d.is_empty());
            assert!(described, "{at} {status} has no description");
            if status.starts_with(['4', '5']) {
                let body = &response["content"]["application/json"]["schema"]["$ref"];
                assert!(
                    body.as_str().is_some_and(|r| r.ends_with("/ErrorBody"))
                        || (id == "getReadiness" && status == "503"),
                    "{at} {status} is not an ErrorBody: {response}"
                );
            }
        }
    }
    for (name, response) in doc["components"]["responses"]
        .as_object()
        .into_iter()
        .flatten()
    {
        let schema = &response["content"]["application/json"]["schema"]["$ref"];
        assert_eq!(schema, "#/components/schemas/ErrorBody", "response {name}");
    }
    for id in [
        "listConflicts",
        "getConflict",
        "resolveConflict",
        "createIntegration",
    ] {
        assert!(ids.contains_key(id), "no operation {id}");
    }

    // Every `/v1` route of the router is documented, and nothing else is.
    let documented: BTreeSet<(String, String)> = operations(&doc)
        .map(|(path, method, _)| (path.to_owned(), method.to_owned()))
        .collect();
    let routed = router_routes()?;
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from the document: {undocumented:?}"
    );
    assert!(
        unrouted.is_empty(),
        "documented but not routed: {unrouted:?}"
    );
    Ok(())
}

/// Every (path, method, operation) of the document.
fn operations(doc: &Value) -> impl Iterator<Item = (&str, &'static str, &Value)> {
    doc["paths"]
        .as_object()
        .into_iter()
        .flatten()
        .flat_map(|(path, item)| {
            METHODS
                .iter()
                .filter_map(move |m| item.get(*m).map(|op| (path.as_str(), *m, op)))
        })
}

fn is_camel_case(id: &str) -> bool {
    id.starts_with(|c: char| c.is_ascii_lowercase())
        && id.chars().all(|c| c.is_ascii_alphanumeric())
}

/// The `/v1` routes of `syncledger_api::app::router`, read from its source: the `.route`
/// calls of the `v1` router and of the `routes()` of each module it merges. axum cannot
/// list a router's routes, so this reads the code that builds it, and refuses anything in
/// it this reader does not understand rather than miss routes.
fn router_routes() -> anyhow::Result<BTreeSet<(String, String)>> {
    let api = Path::new(env!("CARGO_MANIFEST_DIR")).join("../api/src");
    let app = std::fs::read_to_string(api.join("app.rs"))?;
    let start = app
        .find("let v1 = Router::new()")
        .expect("app.rs builds the v1 router as `let v1 = Router::new()`");
    let v1 = &app[start..start + app[start..].find(';').expect("the v1 statement ends")];
    let mut routes = BTreeSet::new();
    for (path, methods) in route_calls(v1) {
        for m in methods {
            routes.insert((format!("/v1{path}"), m));
        }
    }
    for merged in calls(v1, ".merge(") {
        let module = merged
            .strip_prefix("crate::routes::")
            .and_then(|m| m.strip_suffix("::routes()"))
            .unwrap_or_else(|| panic!("cannot read the merged router {merged:?}"));
        let src = std::fs::read_to_string(api.join("routes").join(format!("{module}.rs")))?;
        let body_start = src
            .find("pub fn routes()")
            .unwrap_or_else(|| panic!("routes/{module}.rs has no `pub fn routes()`"));
        let body = &src[body_start..body_start + src[body_start..].find("\n}").unwrap_or(0)];
        assert!(
            calls(body, ".merge(")
                .chain(calls(body, ".nest("))
                .next()
                .is_none(),
            "routes/{module}.rs merges or nests a router: teach this reader"
        );
        for (path, methods) in route_calls(body) {
            for m in methods {
                routes.insert((format!("/v1{path}"), m));
            }
        }
    }
    assert!(
        calls(v1, ".nest(").next().is_none(),
        "the v1 router nests a router: teach this reader"
    );
    // The routes whose bodies are files (a larger limit), with their full paths.
    let files = app
        .find("let files = Router::new()")
        .expect("app.rs builds the file routes as `let files = Router::new()`");
    let files = &app[files..files + app[files..].find(';').expect("the files statement ends")];
    for (path, methods) in route_calls(files) {
        assert!(path.starts_with("/v1/"), "a file route outside /v1: {path}");
        for m in methods {
            routes.insert((path.clone(), m));
        }
    }
    assert!(
        routes.len() >= 50 && routes.contains(&("/v1/conflicts".into(), "get".into())),
        "the router's routes were not read: {routes:?}"
    );
    Ok(routes)
}

/// The arguments of each `name…(…)` call in `src` (balanced parentheses).
fn calls<'a>(src: &'a str, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    src.match_indices(name).map(move |(at, _)| {
        let open = at + name.len();
        let mut depth = 1;
        let close = src[open..]
            .char_indices()
            .find(|(_, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                depth == 0
            })
            .map(|(i, _)| open + i)
            .expect("balanced parentheses");
        src[open..close].trim()
    })
}

/// Each `.route("path", get(…).post(…))` of `src`: its path and methods.
fn route_calls(src: &str) -> Vec<(String, Vec<String>)> {
    calls(src, ".route(")
        .map(|args| {
            let path = args
                .split('"')
                .nth(1)
                .unwrap_or_else(|| panic!("a route without a path literal: {args}"));
            let handlers = &args[args.find(',').expect("a route's handlers")..];
            let methods: Vec<String> = METHODS
                .iter()
                .filter(|m| {
                    handlers.match_indices(&format!("{m}(")).any(|(i, _)| {
                        !handlers[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_')
                    })
                })
                .map(|m| m.to_string())
                .collect();
            assert!(!methods.is_empty(), "no method read from route {args}");
            (path.to_owned(), methods)
        })
        .collect()
}

/// The directory of the Python tools' executables, or `None` (with a note) outside CI.
fn py_tools() -> Option<PathBuf> {
    let dir = std::env::var_os("SYNCLEDGER_PY_TOOLS").map(PathBuf::from);
    let found = dir.filter(|d| {
        ["python", "openapi-spec-validator", "openapi-python-client"]
            .iter()
            .all(|tool| d.join(tool).is_file())
    });
    if found.is_none() {
        let why = "SYNCLEDGER_PY_TOOLS does not name a directory with python, \
            openapi-spec-validator and openapi-python-client (scripts/test.sh installs them)";
        assert!(!require_ci_services(), "{why}");
        eprintln!("skipping: {why}");
    }
    found
}

/// Runs a tool to its end (at most two minutes), its output captured.
async fn run(program: &Path, args: &[&str], envs: &[(&str, &str)]) -> anyhow::Result<Output> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args).kill_on_drop(true);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let output = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .map_err(|_| anyhow::anyhow!("{} {args:?} ran over two minutes", program.display()))??;
    Ok(output)
}

fn printed(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_independent_validator_accepts_the_document_and_a_generated_client_calls_the_api(
) -> anyhow::Result<()> {
    let Some(tools) = py_tools() else {
        return Ok(());
    };
    let Some(app) = TestApp::spawn(Backend::Sqlite).await? else {
        return Ok(());
    };
    let doc = app
        .get("/v1/openapi.json", "")
        .await?
        .expect(StatusCode::OK)
        .clone();
    let dir = tempfile::tempdir()?;
    let spec = dir.path().join("openapi.json");
    std::fs::write(&spec, serde_json::to_vec_pretty(&doc)?)?;
    let spec_arg = spec.to_str().expect("a UTF-8 temporary path");

    let validator = tools.join("openapi-spec-validator");
    let out = run(&validator, &["--schema", "3.1", spec_arg], &[]).await?;
    assert!(
        out.status.success(),
        "the validator refused the document: {}",
        printed(&out)
    );

    // The validator is no rubber stamp: a copy with a duplicate operationId fails it.
    let mut broken = doc.clone();
    broken["paths"]["/v1/conflicts/{id}"]["get"]["operationId"] = json!("listConflicts");
    let broken_spec = dir.path().join("broken.json");
    std::fs::write(&broken_spec, serde_json::to_vec(&broken)?)?;
    let broken_arg = broken_spec.to_str().expect("a UTF-8 temporary path");
    let out = run(&validator, &["--schema", "3.1", broken_arg], &[]).await?;
    assert!(
        !out.status.success() && printed(&out).contains("listConflicts"),
        "the validator accepted a duplicate operationId: {}",
        printed(&out)
    );

    let package = dir.path().join("syncledger_client");
    let package_arg = package.to_str().expect("a UTF-8 temporary path");
    let generator = tools.join("openapi-python-client");
    // The generator takes only JSON, form and octet-stream bodies; its own setting maps
    // another content type onto one of those (a CSV import's body is the file's bytes).
    let config = dir.path().join("generator.json");
    std::fs::write(
        &config,
        r#"{"content_type_overrides": {"text/csv": "application/octet-stream"}}"#,
    )?;
    let config_arg = config.to_str().expect("a UTF-8 temporary path");
    let args = [
        "generate",
        "--path",
        spec_arg,
        "--config",
        config_arg,
        "--meta",
        "none",
        "--output-path",
        package_arg,
    ];
    // The generator formats its output with ruff, installed beside it.
    let path = std::env::join_paths(std::iter::once(tools.clone()).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))?;
    let path = path.to_str().expect("a UTF-8 PATH");
    let out = run(&generator, &args, &[("PATH", path)]).await?;
    assert!(
        out.status.success(),
        "the client generator failed: {}",
        printed(&out)
    );
    let warnings = printed(&out);
    assert!(
        !warnings.contains("Warning"),
        "the client generator warned about the document: {warnings}"
    );

    let name = "Generated client's CRM";
    app.create_integration(&app.admin, name).await?;
    let script = dir.path().join("call.py");
    std::fs::write(&script, include_str!("openapi_client.py"))?;
    let python = tools.join("python");
    let dir_arg = dir.path().to_str().expect("a UTF-8 temporary path");
    let envs = [
        ("PYTHONPATH", dir_arg),
        ("SYNCLEDGER_BASE_URL", app.base.as_str()),
        ("SYNCLEDGER_TOKEN", app.admin.as_str()),
    ];
    let script_arg = script.to_str().expect("a UTF-8 temporary path");
    let out = run(&python, &[script_arg], &envs).await?;
    assert!(
        out.status.success(),
        "the generated client failed: {}",
        printed(&out)
    );
    let answer: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(answer["list_status"], 200, "{answer}");
    assert_eq!(answer["names"], json!([name]), "{answer}");
    assert_eq!(answer["missing_status"], 404, "{answer}");
    assert_eq!(answer["missing_code"], "not_found", "{answer}");
    app.finish().await
}

/// Authenticated by a secret (or a signature made with one) rather than a token: an
/// unknown id is answered 401 like a wrong secret, so the answer tells nothing about
/// which ids exist.
const SECRET_IN_PATH: [&str; 4] = [
    "receiveInboundWebhook",
    "receiveInboundWebhookWithSecret",
    "receiveChatwootWebhook",
    "receiveTaveHook",
];

const PROVIDERS: [&str; 15] = [
    "salesforce",
    "hubspot",
    "pipedrive",
    "zoho",
    "chatwoot",
    "tave",
    "lightblue",
    "honeybook",
    "seventeen",
    "shootq",
    "pixieset",
    "iris_works",
    "dubsado",
    "studio_ninja",
    "custom",
];

#[tokio::test]
async fn providers_are_listed_with_their_fields() -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await? else {
        return Ok(());
    };
    let resp = app.get("/v1/providers", &app.admin).await?;
    let data = resp.expect(StatusCode::OK)["data"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for id in PROVIDERS {
        let p = data
            .iter()
            .find(|p| p["id"] == id)
            .unwrap_or_else(|| panic!("provider {id} is missing from {}", resp.text));
        assert_provider_fields(p);
    }
    for p in &data {
        assert_provider_fields(p);
    }
    let unauthenticated = app.get("/v1/providers", "").await?;
    unauthenticated.expect_error(StatusCode::UNAUTHORIZED, "unauthorized", "");
    app.finish().await
}

fn assert_provider_fields(p: &Value) {
    assert!(p["id"].is_string(), "{p}");
    assert!(p["name"].as_str().is_some_and(|n| !n.is_empty()), "{p}");
    let auth = p["auth_type"].as_str().unwrap_or_default();
    assert!(
        ["oauth2", "api_key", "basic", "configurable", "none"].contains(&auth),
        "auth_type of {p}"
    );
    assert!(p["scopes"].is_array(), "{p}");
    assert!(p["rate_limit"].is_object(), "{p}");
    assert!(
        p["rate_limit"]["requests"].as_u64().is_some_and(|n| n > 0),
        "{p}"
    );
    let entities = p["entities"].as_array().cloned().unwrap_or_default();
    assert!(!entities.is_empty(), "{p}");
    for e in entities {
        assert!(e == "contacts" || e == "companies", "entity {e} of {p}");
    }
    assert!(p["sync_supported"].is_boolean(), "{p}");
    let ways = p["ways_in"].as_array().cloned().unwrap_or_default();
    assert!(!ways.is_empty(), "{p}");
    for w in ways {
        assert!(
            ["api", "csv_import", "inbound_webhook", "leads_push"]
                .contains(&w.as_str().unwrap_or("")),
            "way in {w} of {p}"
        );
    }
    assert!(
        p["ways_in_reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{p}"
    );
}
