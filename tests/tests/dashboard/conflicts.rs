//! The conflict pages over HTTP: the queue and its filters, a conflict's three values,
//! resolving with an edited value, and refusals (no form token, a viewer's forged post,
//! an unknown conflict) that change nothing.

use crate::people::Person;
use reqwest::StatusCode;
use serde_json::{json, Value};
use syncledger_domain::{Entity, Role};
use syncledger_testkit::app::{on_both_backends, Backend, TestApp};
use syncledger_testkit::conflicts::{conflicted, APP, CRM, OLD};

on_both_backends!(
    the_queue_lists_filters_and_resolves_with_an_edited_value,
    refused_posts_change_nothing,
);

async fn conflict(app: &TestApp, id: &str) -> anyhow::Result<Value> {
    let resp = app.get(&format!("/v1/conflicts/{id}"), &app.admin).await?;
    Ok(resp.expect(StatusCode::OK).clone())
}

async fn email_of(app: &TestApp, record: &str) -> anyhow::Result<Value> {
    let resp = app
        .get(&format!("/v1/records/{record}"), &app.admin)
        .await?;
    Ok(resp.expect(StatusCode::OK)["fields"]["email"]["value"].clone())
}

async fn the_queue_lists_filters_and_resolves_with_an_edited_value(
    backend: Backend,
) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let main = app.create_integration(&app.admin, "Main").await?;
    let other = app.create_integration(&app.admin, "Other").await?;
    let (record, id) = conflicted(&app, &main, Entity::Contacts).await?;
    let (_, other_id) = conflicted(&app, &other, Entity::Companies).await?;
    let mut admin = Person::sign_in(&app, Role::Admin).await?;

    let queue = admin.get("/conflicts").await?;
    assert_eq!(queue.status, StatusCode::OK, "{}", queue.body);
    assert!(queue.body.contains(&format!(r#"href="/conflicts/{id}""#)));
    assert!(queue
        .body
        .contains(&format!(r#"href="/conflicts/{other_id}""#)));
    assert!(queue.body.contains(r#"<label for="status">"#));
    for query in [
        format!("integration_id={main}"),
        "entity=contacts".to_string(),
        format!("record_id={record}&status=open"),
    ] {
        let narrowed = admin.get(&format!("/conflicts?{query}")).await?;
        assert_eq!(
            narrowed.status,
            StatusCode::OK,
            "{query}: {}",
            narrowed.body
        );
        assert!(
            narrowed.body.contains(&format!("/conflicts/{id}")),
            "{query}"
        );
        assert!(!narrowed.body.contains(&other_id), "{query}");
    }
    let none = admin.get("/conflicts?status=resolved").await?;
    assert!(none.body.contains("No conflicts match"), "{}", none.body);
    let bad = admin.get("/conflicts?status=nonsense").await?;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    let shown = admin.get(&format!("/conflicts/{id}")).await?;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.body);
    for v in [OLD, APP, CRM] {
        assert!(shown.body.contains(v), "{v}: {}", shown.body);
    }
    assert!(shown.body.contains(r#"<label for="edited-value">"#));
    assert!(shown.body.contains(r#"name="_csrf""#));

    // A value with a kind that takes none is the API's 400, and changes nothing.
    let wrong = admin
        .post(
            &format!("/conflicts/{id}/resolve"),
            &[("resolution", "use_app"), ("value", "x@example.com")],
        )
        .await?;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST, "{}", wrong.body);
    assert!(wrong
        .body
        .contains("only allowed when resolution is merged"));
    assert_eq!(conflict(&app, &id).await?["status"], "open");

    let done = admin
        .post(
            &format!("/conflicts/{id}/resolve"),
            &[("resolution", "merged"), ("value", "ada@example.com")],
        )
        .await?;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(
        done.location.as_deref(),
        Some(format!("/conflicts/{id}?done=resolved").as_str())
    );
    assert_eq!(email_of(&app, &record).await?, "ada@example.com");
    let c = conflict(&app, &id).await?;
    assert_eq!(
        (&c["status"], &c["resolution"]),
        (&json!("resolved"), &json!("merged"))
    );
    let after = admin.get(&format!("/conflicts/{id}?done=resolved")).await?;
    assert!(after.body.contains("The conflict is resolved."));
    assert!(
        !after.body.contains(r#"id="use-edited""#),
        "decided once only"
    );

    // Ignore: both sides keep their values.
    let (kept, third) = conflicted(&app, &main, Entity::Contacts).await?;
    admin.get(&format!("/conflicts/{third}")).await?;
    let ignored = admin
        .post(&format!("/conflicts/{third}/ignore"), &[])
        .await?;
    assert_eq!(ignored.status, StatusCode::SEE_OTHER, "{}", ignored.body);
    assert_eq!(
        ignored.location.as_deref(),
        Some(format!("/conflicts/{third}?done=ignored").as_str())
    );
    assert_eq!(conflict(&app, &third).await?["status"], "ignored");
    assert_eq!(email_of(&app, &kept).await?, APP);

    // The always-use rule, which settles the other integration's conflict now.
    let ruled = admin
        .post(&format!("/conflicts/{other_id}/rule"), &[("use", "crm")])
        .await?;
    assert_eq!(ruled.status, StatusCode::SEE_OTHER, "{}", ruled.body);
    assert_eq!(
        ruled.location.as_deref(),
        Some(format!("/conflicts/{other_id}?done=rule-added").as_str())
    );
    app.caught_up().await;
    let ruled = conflict(&app, &other_id).await?;
    assert_ne!(ruled["status"], "open", "{ruled}");
    let rules = app
        .get(
            &format!("/v1/integrations/{other}/conflict-rules"),
            &app.admin,
        )
        .await?;
    assert_eq!(rules.expect(StatusCode::OK)["data"][0]["use"], "crm");
    Ok(())
}

async fn refused_posts_change_nothing(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let main = app.create_integration(&app.admin, "Main").await?;
    let (record, id) = conflicted(&app, &main, Entity::Contacts).await?;
    let mut admin = Person::sign_in(&app, Role::Admin).await?;
    admin.get(&format!("/conflicts/{id}")).await?;

    let no_token = admin
        .post_raw(
            &format!("/conflicts/{id}/resolve"),
            &[("resolution", "merged"), ("value", "evil@example.com")],
        )
        .await?;
    assert_eq!(no_token.status, StatusCode::FORBIDDEN, "{}", no_token.body);

    let mut viewer = Person::sign_in(&app, Role::Viewer).await?;
    let seen = viewer.get(&format!("/conflicts/{id}")).await?;
    assert_eq!(seen.status, StatusCode::OK, "{}", seen.body);
    assert!(seen.body.contains(APP) && seen.body.contains(CRM));
    let forms = seen.body.matches(r#"name="_csrf""#).count();
    assert_eq!(forms, 1, "only the sign-out form: {}", seen.body);
    assert!(!seen.body.contains("/resolve") && !seen.body.contains("/ignore"));
    assert!(!viewer.csrf.is_empty(), "the viewer's own form token");
    for (path, fields) in [
        (
            "resolve",
            vec![("resolution", "merged"), ("value", "evil@example.com")],
        ),
        ("ignore", vec![]),
        ("rule", vec![("use", "crm")]),
    ] {
        let forged = viewer
            .post(&format!("/conflicts/{id}/{path}"), &fields)
            .await?;
        assert_eq!(
            forged.status,
            StatusCode::FORBIDDEN,
            "{path}: {}",
            forged.body
        );
    }

    assert_eq!(conflict(&app, &id).await?["status"], "open");
    assert_eq!(email_of(&app, &record).await?, APP);
    let rules = app
        .get(
            &format!("/v1/integrations/{main}/conflict-rules"),
            &app.admin,
        )
        .await?;
    assert_eq!(rules.expect(StatusCode::OK)["data"], json!([]));

    let missing = admin.get("/conflicts/no-such-conflict").await?;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.body);
    let missing = admin
        .post(
            "/conflicts/no-such-conflict/resolve",
            &[("resolution", "use_app")],
        )
        .await?;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.body);
    Ok(())
}
