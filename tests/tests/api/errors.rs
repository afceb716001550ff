//! Rejected requests: the right status, code and field, and nothing changed.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use syncledger_testkit::app::{
    integration_body, on_both_backends, send, sync_config, Backend, TestApp,
};

on_both_backends!(
    invalid_bodies_are_refused_and_change_nothing,
    invalid_queries_are_refused,
    missing_bad_and_revoked_tokens_get_401,
    roles_are_enforced,
    roles_are_checked_before_the_body,
    unknown_ids_get_404,
    unknown_query_parameters_are_refused_everywhere
);

/// One request expected to fail.
struct Case {
    what: &'static str,
    method: Method,
    path: String,
    body: Body,
    status: StatusCode,
    code: &'static str,
    /// Text the error message must contain (usually the offending field).
    needle: &'static str,
}

enum Body {
    Json(Value),
    Raw(&'static str),
}

fn with_config(field: &str, value: Value) -> Value {
    let mut body = integration_body("Validated");
    body["sync_config"][field] = value;
    body
}

fn create(what: &'static str, body: Value, needle: &'static str) -> Case {
    Case {
        what,
        method: Method::POST,
        path: "/v1/integrations".into(),
        body: Body::Json(body),
        status: StatusCode::BAD_REQUEST,
        code: "validation_failed",
        needle,
    }
}

fn cases(id: &str) -> Vec<Case> {
    let mut unknown_field = integration_body("Validated");
    unknown_field["colour"] = json!("red");
    let mut no_interval = integration_body("Validated");
    if let Some(c) = no_interval["sync_config"].as_object_mut() {
        c.remove("interval_minutes");
    }
    let mut unknown_provider = integration_body("Validated");
    unknown_provider["provider"] = json!("myspace");
    let mut http_url = integration_body("Validated");
    http_url["base_url"] = json!("http://example.com");
    let mut userinfo_url = integration_body("Validated");
    userinfo_url["base_url"] = json!("https://user:pw@api.example.com");
    let mut blank_name = integration_body("Validated");
    blank_name["name"] = json!("   ");
    let mut long_name = integration_body("Validated");
    long_name["name"] = json!("n".repeat(201));
    let mut no_provider = integration_body("Validated");
    if let Some(b) = no_provider.as_object_mut() {
        b.remove("provider");
    }
    // `realtime` where nothing would ever trigger a run.
    let mut realtime_without_webhooks = integration_body("Validated");
    realtime_without_webhooks["provider"] = json!("pipedrive");
    realtime_without_webhooks["sync_config"]["frequency"] = json!("realtime");
    if let Some(c) = realtime_without_webhooks["sync_config"].as_object_mut() {
        c.remove("interval_minutes");
    }
    let creds = format!("/v1/integrations/{id}/credentials");
    let patch = format!("/v1/integrations/{id}");
    vec![
        Case {
            what: "malformed JSON",
            method: Method::POST,
            path: "/v1/integrations".into(),
            body: Body::Raw(r#"{"provider": "hubspot", "name": "#),
            status: StatusCode::BAD_REQUEST,
            code: "malformed_json",
            needle: "",
        },
        Case {
            what: "malformed JSON on PATCH",
            method: Method::PATCH,
            path: patch.clone(),
            body: Body::Raw("{not json"),
            status: StatusCode::BAD_REQUEST,
            code: "malformed_json",
            needle: "",
        },
        create("unknown top-level field", unknown_field, "colour"),
        create(
            "unknown sync_config field",
            with_config("colour", json!("red")),
            "sync_config",
        ),
        create(
            "interval below 15 minutes",
            with_config("interval_minutes", json!(14)),
            "sync_config.interval_minutes",
        ),
        create(
            "interval above a day",
            with_config("interval_minutes", json!(1441)),
            "sync_config.interval_minutes",
        ),
        create(
            "interval frequency without minutes",
            no_interval,
            "sync_config.interval_minutes",
        ),
        create(
            "minutes with a daily frequency",
            with_config("frequency", json!("daily")),
            "sync_config.interval_minutes",
        ),
        create(
            "no entities",
            with_config("entities", json!([])),
            "sync_config.entities",
        ),
        create(
            "repeated entity",
            with_config("entities", json!(["contacts", "contacts"])),
            "sync_config.entities",
        ),
        create(
            "unknown entity",
            with_config("entities", json!(["deals"])),
            "sync_config.entities",
        ),
        create(
            "unknown direction",
            with_config("direction", json!("sideways")),
            "sync_config.direction",
        ),
        create(
            "unknown conflict strategy",
            with_config("conflict_strategy", json!("coin_flip")),
            "sync_config.conflict_strategy",
        ),
        create("unknown provider", unknown_provider, "provider"),
        create("missing provider", no_provider, "provider"),
        create("plain http base_url", http_url, "base_url"),
        create("base_url with credentials", userinfo_url, "base_url"),
        create("blank name", blank_name, "name"),
        create("name over 200 characters", long_name, "name"),
        Case {
            what: "invalid sync config on PATCH",
            method: Method::PATCH,
            path: patch.clone(),
            body: Body::Json(json!({"sync_config": {
                "direction": "pull", "frequency": "interval", "interval_minutes": 14,
                "entities": ["contacts"], "conflict_strategy": "manual_review"}})),
            status: StatusCode::BAD_REQUEST,
            code: "validation_failed",
            needle: "sync_config.interval_minutes",
        },
        Case {
            what: "unknown field on PATCH",
            method: Method::PATCH,
            path: patch,
            // The provider of an integration is not something a PATCH changes.
            body: Body::Json(json!({"sync_config": sync_config(), "provider": "salesforce"})),
            status: StatusCode::BAD_REQUEST,
            code: "validation_failed",
            needle: "provider",
        },
        Case {
            what: "empty API key",
            method: Method::POST,
            path: creds.clone(),
            body: Body::Json(json!({"type": "api_key", "api_key": "  "})),
            status: StatusCode::BAD_REQUEST,
            code: "validation_failed",
            needle: "api_key",
        },
        Case {
            what: "unknown credential type",
            method: Method::POST,
            path: creds.clone(),
            body: Body::Json(json!({"type": "telepathy", "api_key": "k"})),
            status: StatusCode::BAD_REQUEST,
            code: "validation_failed",
            needle: "telepathy",
        },
        Case {
            what: "basic without a username",
            method: Method::POST,
            path: creds,
            body: Body::Json(json!({"type": "basic", "username": "", "password": "pw"})),
            status: StatusCode::BAD_REQUEST,
            code: "validation_failed",
            needle: "username",
        },
        Case {
            what: "realtime for a provider without webhooks",
            method: Method::POST,
            path: "/v1/integrations".into(),
            body: Body::Json(realtime_without_webhooks),
            status: StatusCode::BAD_REQUEST,
            code: "validation_failed",
            needle: "realtime",
        },
        // Arrays where objects are required: serde would read them as the struct's
        // fields in order.
        Case {
            what: "an array to start a run",
            method: Method::POST,
            path: format!("/v1/integrations/{id}/sync-runs"),
            body: Body::Raw("[]"),
            status: StatusCode::BAD_REQUEST,
            code: "validation_failed",
            needle: "JSON object",
        },
        Case {
            what: "an array to update an integration",
            method: Method::PATCH,
            path: format!("/v1/integrations/{id}"),
            body: Body::Raw(" [\"Renamed\"]"),
            status: StatusCode::BAD_REQUEST,
            code: "validation_failed",
            needle: "JSON object",
        },
        Case {
            what: "an array to issue a token",
            method: Method::POST,
            path: "/v1/tokens".into(),
            body: Body::Raw(r#"["viewer", "x"]"#),
            status: StatusCode::BAD_REQUEST,
            code: "validation_failed",
            needle: "JSON object",
        },
        Case {
            what: "unknown token role",
            method: Method::POST,
            path: "/v1/tokens".into(),
            body: Body::Json(json!({"role": "superuser", "label": "x"})),
            status: StatusCode::BAD_REQUEST,
            code: "validation_failed",
            needle: "role",
        },
        Case {
            what: "token label over 200 characters",
            method: Method::POST,
            path: "/v1/tokens".into(),
            body: Body::Json(json!({"role": "viewer", "label": "l".repeat(201)})),
            status: StatusCode::BAD_REQUEST,
            code: "validation_failed",
            needle: "label",
        },
    ]
}

async fn invalid_bodies_are_refused_and_change_nothing(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let id = app.create_integration(&app.admin, "Existing").await?;
    let before = app.snapshot().await?;
    for case in cases(&id) {
        let rb = app.request(case.method.clone(), &case.path, &app.admin);
        let rb = match case.body {
            Body::Json(v) => rb.json(&v),
            Body::Raw(s) => rb.header("content-type", "application/json").body(s),
        };
        let resp = send(rb).await?;
        assert_eq!(resp.status, case.status, "{}: {}", case.what, resp.text);
        assert_eq!(
            resp.body["error"]["code"], case.code,
            "{}: {}",
            case.what, resp.text
        );
        let message = resp.body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(case.needle),
            "{}: message {message:?} should name {:?}",
            case.what,
            case.needle
        );
        assert_eq!(
            app.snapshot().await?,
            before,
            "{} changed something",
            case.what
        );
    }
    // A body that is not declared JSON.
    let text = app
        .request(Method::POST, "/v1/integrations", &app.admin)
        .header("content-type", "text/plain")
        .body(integration_body("As text").to_string());
    let resp = send(text).await?;
    resp.expect_error(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "",
    );
    assert_eq!(app.snapshot().await?, before);
    app.finish().await
}

async fn invalid_queries_are_refused(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    for (path, needle) in [
        ("/v1/integrations?limit=0", "limit"),
        ("/v1/integrations?limit=501", "limit"),
        ("/v1/integrations?limit=-1", "limit"),
        ("/v1/integrations?limit=ten", "limit"),
        ("/v1/integrations?cursor=%%%", "cursor"),
        ("/v1/tokens?limit=0", "limit"),
        ("/v1/audit?limit=0", "limit"),
        ("/v1/audit?cursor=bm90LWEtbnVtYmVy", "cursor"),
        ("/v1/audit?from=yesterday", "from"),
        ("/v1/audit?to=2024-13-45", "to"),
    ] {
        let resp = app.get(path, &app.admin).await?;
        resp.expect_error(StatusCode::BAD_REQUEST, "validation_failed", needle);
    }
    app.finish().await
}

async fn missing_bad_and_revoked_tokens_get_401(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let (viewer_id, viewer) = app.issue_token("viewer").await?;
    let (_, secret) = viewer.rsplit_once('_').unwrap_or_default();
    let wrong_secret = viewer.replace(secret, &"0".repeat(secret.len()));
    let before = app.snapshot().await?;
    let headers = [
        None,
        Some("Bearer".to_string()),
        Some("Bearer garbage".to_string()),
        Some("Bearer slk_abc_def".to_string()),
        Some(format!("Bearer {wrong_secret}")),
        Some(format!("Basic {viewer}")),
        Some(format!("bearer{viewer}")),
    ];
    for header in &headers {
        for (method, path) in [
            (Method::GET, "/v1/integrations"),
            (Method::POST, "/v1/integrations"),
            (Method::GET, "/v1/audit"),
            (Method::GET, "/v1/tokens"),
            (Method::GET, "/v1/events/stream"),
        ] {
            let mut rb = app
                .client
                .request(method.clone(), app.url(path))
                .json(&integration_body("Unauthorized"));
            if let Some(h) = header {
                rb = rb.header("authorization", h);
            }
            let resp = send(rb).await?;
            assert_eq!(
                resp.status,
                StatusCode::UNAUTHORIZED,
                "{header:?} {method} {path}"
            );
            assert_eq!(resp.body["error"]["code"], "unauthorized");
        }
    }
    assert_eq!(
        app.snapshot().await?,
        before,
        "unauthorized requests changed something"
    );

    app.get("/v1/integrations", &viewer)
        .await?
        .expect(StatusCode::OK);
    let revoke = app
        .delete(&format!("/v1/tokens/{viewer_id}"), &app.admin)
        .await?;
    revoke.expect(StatusCode::NO_CONTENT);
    let revoked = app.get("/v1/integrations", &viewer).await?;
    revoked.expect_error(StatusCode::UNAUTHORIZED, "unauthorized", "");
    app.finish().await
}

async fn roles_are_enforced(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let (_, viewer) = app.issue_token("viewer").await?;
    let (_, operator) = app.issue_token("operator").await?;
    let (auditor_id, auditor) = app.issue_token("auditor").await?;
    let id = app.create_integration(&operator, "Operated").await?;
    app.set_api_key(&operator, &id, "sk_live_operated").await?;
    let one = format!("/v1/integrations/{id}");
    let forbidden: Vec<(&str, Method, String, Option<Value>)> = vec![
        (
            "viewer",
            Method::POST,
            "/v1/integrations".into(),
            Some(integration_body("V")),
        ),
        (
            "viewer",
            Method::PATCH,
            one.clone(),
            Some(json!({"sync_config": sync_config()})),
        ),
        ("viewer", Method::POST, format!("{one}/pause"), None),
        ("viewer", Method::DELETE, one.clone(), None),
        (
            "viewer",
            Method::POST,
            format!("{one}/credentials"),
            Some(json!({"type": "api_key", "api_key": "k"})),
        ),
        ("viewer", Method::GET, "/v1/audit".into(), None),
        ("viewer", Method::GET, "/v1/audit/verify".into(), None),
        ("viewer", Method::GET, "/v1/tokens".into(), None),
        (
            "operator",
            Method::POST,
            "/v1/tokens".into(),
            Some(json!({"role": "admin"})),
        ),
        ("operator", Method::GET, "/v1/tokens".into(), None),
        (
            "operator",
            Method::DELETE,
            format!("/v1/tokens/{auditor_id}"),
            None,
        ),
        ("operator", Method::GET, "/v1/audit".into(), None),
        ("auditor", Method::GET, "/v1/integrations".into(), None),
        ("auditor", Method::GET, one.clone(), None),
        (
            "auditor",
            Method::POST,
            "/v1/integrations".into(),
            Some(integration_body("A")),
        ),
        ("auditor", Method::POST, format!("{one}/pause"), None),
        ("auditor", Method::GET, "/v1/tokens".into(), None),
        ("auditor", Method::GET, "/v1/events/stream".into(), None),
    ];
    let token_of = |role: &str| match role {
        "viewer" => viewer.clone(),
        "operator" => operator.clone(),
        _ => auditor.clone(),
    };
    let before = app.snapshot().await?;
    for (role, method, path, body) in forbidden {
        let mut rb = app.request(method.clone(), &path, &token_of(role));
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let resp = send(rb).await?;
        assert_eq!(
            resp.status,
            StatusCode::FORBIDDEN,
            "{role} {method} {path}: {}",
            resp.text
        );
        assert_eq!(resp.body["error"]["code"], "forbidden");
        assert_eq!(
            app.snapshot().await?,
            before,
            "{role} {method} {path} changed something"
        );
    }
    // And what each role may do.
    app.get("/v1/integrations", &viewer)
        .await?
        .expect(StatusCode::OK);
    app.get(&one, &viewer).await?.expect(StatusCode::OK);
    app.get("/v1/providers", &viewer)
        .await?
        .expect(StatusCode::OK);
    app.post_empty(&format!("{one}/pause"), &operator)
        .await?
        .expect(StatusCode::OK);
    app.get("/v1/audit", &auditor).await?.expect(StatusCode::OK);
    app.get("/v1/audit/verify", &auditor)
        .await?
        .expect(StatusCode::OK);
    app.finish().await
}

async fn unknown_ids_get_404(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    app.create_integration(&app.admin, "Known").await?;
    let before = app.snapshot().await?;
    for id in ["0190c4e2-9f5e-7a4b-8c1d-2e3f4a5b6c7d", "not-an-id"] {
        let one = format!("/v1/integrations/{id}");
        let requests: Vec<(Method, String, Option<Value>)> = vec![
            (Method::GET, one.clone(), None),
            (
                Method::PATCH,
                one.clone(),
                Some(json!({"sync_config": sync_config()})),
            ),
            (Method::DELETE, one.clone(), None),
            (Method::POST, format!("{one}/pause"), None),
            (Method::POST, format!("{one}/resume"), None),
            (
                Method::POST,
                format!("{one}/credentials"),
                Some(json!({"type": "api_key", "api_key": "k"})),
            ),
            (Method::DELETE, format!("/v1/tokens/{id}"), None),
        ];
        for (method, path, body) in requests {
            let mut rb = app.request(method.clone(), &path, &app.admin);
            if let Some(b) = body {
                rb = rb.json(&b);
            }
            let resp = send(rb).await?;
            resp.expect_error(StatusCode::NOT_FOUND, "not_found", "");
            assert_eq!(
                app.snapshot().await?,
                before,
                "{method} {path} changed something"
            );
        }
    }
    app.finish().await
}

/// POSTs `body` over a plain connection and reads the answer, whether or not the server
/// took the whole body: a server that refuses a body too large answers and closes while
/// the client may still be writing, which an HTTP client reports as a broken pipe instead
/// of the answer. Returns the status and the answer's body (unchunked when chunked).
async fn post_raw(app: &TestApp, path: &str, body: &str) -> anyhow::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        app.admin,
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    // The server may stop reading part way: its answer is what the test is about.
    let _ = stream.write_all(body.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no status line in {answer:?}"))?;
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    // A chunked body: the JSON lies between the size line and the last chunk.
    let body = match (body.find('{'), body.rfind('}')) {
        (Some(start), Some(end)) if start <= end => body[start..=end].to_owned(),
        _ => body.to_owned(),
    };
    Ok((status, body))
}

/// Errors raised outside the handlers (body limit, method routing) speak the same format.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transport_errors_use_the_error_format() -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await? else {
        return Ok(());
    };
    let before = app.snapshot().await?;
    let huge = integration_body(&"x".repeat(2 * 1024 * 1024)).to_string();
    let (status, body) = post_raw(&app, "/v1/integrations", &huge).await?;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE.as_u16(), "{body}");
    let body: Value = serde_json::from_str(&body).unwrap_or_default();
    assert!(body["error"]["code"].is_string(), "413 body: {body}");
    for (method, path) in [
        (Method::PUT, "/v1/integrations"),
        (Method::POST, "/v1/health"),
        (Method::GET, "/v1/integrations/x/pause"),
    ] {
        let resp = send(app.request(method.clone(), path, &app.admin)).await?;
        assert_eq!(
            resp.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert!(
            resp.body["error"]["code"].is_string(),
            "{method} {path} body: {:?}",
            resp.text
        );
    }
    assert_eq!(app.snapshot().await?, before);
    app.finish().await
}

/// A caller without the role gets 403 on every write route whatever body it sends: the
/// role is checked before the body is read, so a viewer never learns how a body is
/// validated and a malformed body is not a way around the 403.
async fn roles_are_checked_before_the_body(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let id = app.create_integration(&app.admin, "Existing").await?;
    let (_, viewer) = app.issue_token("viewer").await?;
    let (_, operator) = app.issue_token("operator").await?;
    let unknown = "00000000-0000-0000-0000-000000000000";
    let writes = [
        (Method::POST, "/v1/integrations".to_owned()),
        (Method::PATCH, format!("/v1/integrations/{id}")),
        (Method::POST, format!("/v1/integrations/{id}/credentials")),
        (
            Method::PUT,
            format!("/v1/integrations/{id}/mappings/contacts"),
        ),
        (Method::POST, format!("/v1/integrations/{id}/sync-runs")),
        (
            Method::PUT,
            format!("/v1/integrations/{id}/conflict-rules/email"),
        ),
        (Method::POST, format!("/v1/conflicts/{unknown}/resolve")),
        (Method::POST, "/v1/records".to_owned()),
        (Method::PATCH, format!("/v1/records/{unknown}")),
        (Method::POST, "/v1/tokens".to_owned()),
    ];
    let before = app.snapshot().await?;
    for (method, path) in &writes {
        for body in ["{not json", "[]", r#"{"unknown": 1}"#] {
            let resp = send(
                app.request(method.clone(), path, &viewer)
                    .header("content-type", "application/json")
                    .body(body),
            )
            .await?;
            assert_eq!(
                resp.status,
                StatusCode::FORBIDDEN,
                "viewer {method} {path} with {body}: {}",
                resp.text
            );
        }
    }
    // Issuing tokens is for admins: an operator is refused before its body too.
    let resp = send(
        app.request(Method::POST, "/v1/tokens", &operator)
            .header("content-type", "application/json")
            .body("{not json"),
    )
    .await?;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.text);
    assert_eq!(
        app.snapshot().await?,
        before,
        "a refused write changed something"
    );
    app.finish().await
}

/// Every operation that takes a token refuses a query parameter it does not know, with 400
/// `validation_failed` naming it, before doing anything (a typo such as `?integraton=`
/// used to be ignored, so a filter silently matched everything, and a POST went through).
/// The OAuth callback, reached by providers that add parameters of their own, is not
/// checked.
async fn unknown_query_parameters_are_refused_everywhere(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let created = app
        .post("/v1/integrations", &app.admin, integration_body("Strict"))
        .await?;
    let id = created.expect(StatusCode::CREATED)["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let before = app.snapshot().await?;
    let cases: Vec<(Method, String)> = vec![
        (Method::GET, "/v1/records?integraton=x".into()),
        (Method::GET, "/v1/audit?integration=x".into()),
        (Method::GET, "/v1/integrations?limit=5&status=active".into()),
        (
            Method::GET,
            format!("/v1/integrations/{id}?asof=2026-01-01T00:00:00Z"),
        ),
        (
            Method::POST,
            format!("/v1/integrations/{id}/pause?force=true"),
        ),
        (Method::GET, "/v1/conflicts?integration=x".into()),
        (Method::GET, "/v1/tokens?role=admin".into()),
        (Method::DELETE, format!("/v1/integrations/{id}?hard=1")),
    ];
    for (method, path) in &cases {
        let resp = send(app.request(method.clone(), path, &app.admin)).await?;
        let name = path
            .rsplit(['?', '&'])
            .next()
            .and_then(|p| p.split('=').next())
            .unwrap_or_default();
        assert_eq!(
            resp.status,
            StatusCode::BAD_REQUEST,
            "{method} {path}: {}",
            resp.text
        );
        assert_eq!(
            resp.body["error"]["code"], "validation_failed",
            "{method} {path}"
        );
        assert_eq!(
            resp.body["error"]["field"], name,
            "{method} {path}: {}",
            resp.text
        );
    }
    assert_eq!(
        app.snapshot().await?,
        before,
        "a refused request changed something"
    );
    // The documented names still work.
    app.get("/v1/records?integration_id=x&limit=5", &app.admin)
        .await?
        .expect(StatusCode::OK);
    app.get("/v1/audit?integration_id=x", &app.admin)
        .await?
        .expect(StatusCode::OK);
    app.finish().await
}
