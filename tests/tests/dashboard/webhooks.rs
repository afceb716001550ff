//! The webhooks pages (admin): the workspace's endpoints with their state, and an
//! endpoint's delivery attempts, the signing secret never on a page.

use crate::people::Person;
use reqwest::StatusCode;
use serde_json::json;
use syncledger_domain::Role;
use syncledger_testkit::app::{on_both_backends, Backend, TestApp};
use syncledger_testkit::wait::poll_every;

on_both_backends!(endpoints_and_their_attempts_are_listed_for_admins);

async fn endpoints_and_their_attempts_are_listed_for_admins(
    backend: Backend,
) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let mut admin = Person::sign_in(&app, Role::Admin).await?;
    let empty = admin.get("/webhooks").await?;
    assert_eq!(empty.status, StatusCode::OK, "{}", empty.body);
    assert!(
        empty.body.contains("No webhook endpoints"),
        "{}",
        empty.body
    );

    // Nobody listens on this port: every attempt fails and is retried.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let url = format!("http://{closed}/hook");
    let created = app
        .post(
            "/v1/webhook-endpoints",
            &app.admin,
            json!({"url": url, "event_types": ["record.created"], "description": "CRM inbox"}),
        )
        .await?;
    let body = created.expect(StatusCode::CREATED).clone();
    let id = body["id"].as_str().unwrap_or_default().to_owned();
    let secret = body["secret"].as_str().unwrap_or_default().to_owned();
    app.post(
        "/v1/records",
        &app.admin,
        json!({"entity": "contacts", "fields": {"email": "ada@example.com"}}),
    )
    .await?
    .expect(StatusCode::CREATED);

    let list = admin.get("/webhooks").await?;
    assert!(list.body.contains(&url), "{}", list.body);
    assert!(
        list.body.contains(&format!("href=\"/webhooks/{id}\"")),
        "{}",
        list.body
    );
    let page = poll_every(
        std::time::Duration::from_millis(200),
        std::time::Duration::from_secs(30),
        "an attempt on the endpoint's page",
        || {
            let (base, cookie) = (admin.base.clone(), admin.cookie.clone());
            let client = admin.client.clone();
            let id = id.clone();
            async move {
                let mut req = client.get(format!("{base}/webhooks/{id}"));
                if let Some(c) = cookie {
                    req = req.header(reqwest::header::COOKIE, c);
                }
                let text = req
                    .send()
                    .await
                    .map_err(|e| e.to_string())?
                    .text()
                    .await
                    .map_err(|e| e.to_string())?;
                if text.contains("could not be reached") {
                    Ok(text)
                } else {
                    Err(text)
                }
            }
        },
    )
    .await;
    assert!(page.contains("CRM inbox"), "{page}");
    assert!(page.contains("record.created"), "{page}");
    for p in [&list.body, &page] {
        assert!(!p.contains(&secret), "the signing secret on a page");
    }

    // Not for other roles, and not in their navigation.
    let mut operator = Person::sign_in(&app, Role::Operator).await?;
    assert_eq!(
        operator.get("/webhooks").await?.status,
        StatusCode::FORBIDDEN
    );
    let home = operator.get("/").await?;
    assert!(!home.body.contains("href=\"/webhooks\""), "{}", home.body);
    let missing = admin.get("/webhooks/no-such-endpoint").await?;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    app.finish().await
}
