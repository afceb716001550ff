//! Signing in (by link, by token), the session cookie, form tokens, signing out, and the
//! roles as pages enforce them.

use crate::people::{link_code, Person};
use reqwest::StatusCode;
use syncledger_domain::Role;
use syncledger_testkit::app::{on_both_backends, Backend, TestApp};

on_both_backends!(
    a_link_signs_in_once_and_sign_out_ends_the_session,
    tokens_sign_in_and_posts_need_the_form_token,
    viewers_and_auditors_see_and_do_only_what_their_role_allows
);

async fn status_of(app: &TestApp, id: &str) -> anyhow::Result<String> {
    let resp = app
        .get(&format!("/v1/integrations/{id}"), &app.admin)
        .await?;
    resp.str("status")
}

async fn a_link_signs_in_once_and_sign_out_ends_the_session(
    backend: Backend,
) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let name = "Studio contacts";
    app.create_integration(&app.admin, name).await?;
    let mut person = Person::new(&app)?;

    // Without a session a page sends the person to sign in, and back afterwards.
    let page = person.get("/records").await?;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location.as_deref(), Some("/sign-in?next=%2Frecords"));

    let code = link_code(&app, Role::Admin).await?;
    // Opening the link only shows a button: a link scanner fetching it uses nothing up.
    let url = syncledger_api::dashboard::link_url(&app.base, &code);
    let shown = person.get(url.trim_start_matches(&app.base)).await?;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.body);
    assert!(shown.body.contains(r#"id="sign-in-link""#));
    assert!(person.cookie.is_none());

    let page = person.post_raw("/sign-in/link", &[("code", &code)]).await?;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let cookie = &page.set_cookie[0];
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain http: {cookie}");
    let session = person.cookie.clone().expect("a session cookie");
    assert!(!session.contains(&code) && !session.contains(&app.admin));

    let overview = person.get("/").await?;
    assert_eq!(overview.status, StatusCode::OK, "{}", overview.body);
    assert!(overview.body.contains(name), "{}", overview.body);
    for secret in [app.admin.as_str(), code.as_str()] {
        assert!(!overview.body.contains(secret), "a secret in the page");
    }
    assert!(!person.csrf.is_empty(), "the page carries a form token");

    // The same link again, from another browser: refused.
    let mut other = Person::new(&app)?;
    let again = other.post_raw("/sign-in/link", &[("code", &code)]).await?;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED, "{}", again.body);
    assert!(again.body.contains("cannot be used"));
    assert!(other.cookie.is_none());

    // A sign-out without the form token is refused and ends nothing.
    let forged = person.post_raw("/sign-out", &[]).await?;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(person.get("/").await?.status, StatusCode::OK);

    let out = person.post("/sign-out", &[]).await?;
    assert_eq!(out.status, StatusCode::SEE_OTHER, "{}", out.body);
    assert_eq!(out.location.as_deref(), Some("/sign-in"));
    // The old cookie is worth nothing now, even if the browser kept it.
    person.cookie = Some(session);
    let after = person.get("/").await?;
    assert_eq!(after.status, StatusCode::SEE_OTHER);
    assert!(after.location.unwrap_or_default().starts_with("/sign-in"));
    app.finish().await
}

async fn tokens_sign_in_and_posts_need_the_form_token(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let id = app.create_integration(&app.admin, "Pipeline").await?;
    app.set_api_key(&app.admin, &id, "key-for-the-test").await?;

    let mut stranger = Person::new(&app)?;
    let wrong = stranger
        .post_raw("/sign-in", &[("token", "slk_nothing_here")])
        .await?;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("not valid") && stranger.cookie.is_none());
    // A sign-in form posted from another site is refused (login CSRF).
    let cross = stranger
        .client
        .post(format!("{}/sign-in", app.base))
        .header("Origin", "http://evil.example")
        .form(&[("token", app.admin.as_str())])
        .send()
        .await?;
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    assert!(cross.headers().get("set-cookie").is_none());

    let mut person = Person::new(&app)?;
    let page = person
        .post_raw(
            "/sign-in",
            &[("token", &app.admin), ("next", "//evil.example/x")],
        )
        .await?;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(
        page.location.as_deref(),
        Some("/?done=signed-in"),
        "no open redirect"
    );
    let shown = person.get(&format!("/integrations/{id}")).await?;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.body);
    assert!(!shown.body.contains(&app.admin));
    assert_eq!(
        shown.content_type.split(';').next().unwrap_or_default(),
        "text/html"
    );

    // Without the form token, with a wrong one, or as JSON: refused, nothing changes.
    let before = status_of(&app, &id).await?;
    let pause = format!("/integrations/{id}/pause");
    for fields in [vec![], vec![("_csrf", "0123456789abcdef")]] {
        let refused = person.post_raw(&pause, &fields).await?;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
        assert!(refused.body.contains("did not come from this dashboard"));
    }
    let json = person
        .client
        .post(format!("{}{pause}", app.base))
        .header("Cookie", person.cookie.clone().unwrap_or_default())
        .json(&serde_json::json!({"_csrf": person.csrf}))
        .send()
        .await?;
    assert_eq!(json.status(), StatusCode::FORBIDDEN);
    assert_eq!(status_of(&app, &id).await?, before);

    let done = person.post(&pause, &[]).await?;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(
        done.location.as_deref(),
        Some(format!("/integrations/{id}?done=paused").as_str())
    );
    assert_eq!(status_of(&app, &id).await?, "paused");
    let page = person
        .get(&format!("/integrations/{id}?done=paused"))
        .await?;
    assert!(page.body.contains("The integration is paused"));
    app.finish().await
}

async fn viewers_and_auditors_see_and_do_only_what_their_role_allows(
    backend: Backend,
) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let id = app.create_integration(&app.admin, "Read only").await?;
    let page_path = format!("/integrations/{id}");

    let mut viewer = Person::sign_in(&app, Role::Viewer).await?;
    let page = viewer.get(&page_path).await?;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    for control in ["/pause\"", "/sync\"", "/disconnect\"", "href=\"/connect\""] {
        assert!(!page.body.contains(control), "a viewer sees {control}");
    }
    // The same post an admin's page would make, with the viewer's own form token.
    let before = status_of(&app, &id).await?;
    let forged = viewer.post(&format!("{page_path}/pause"), &[]).await?;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.body);
    assert_eq!(status_of(&app, &id).await?, before);
    assert_eq!(viewer.get("/tokens").await?.status, StatusCode::FORBIDDEN);
    assert_eq!(viewer.get("/audit").await?.status, StatusCode::FORBIDDEN);

    let mut admin = Person::sign_in(&app, Role::Admin).await?;
    let page = admin.get(&page_path).await?;
    for control in ["/pause\"", "/sync\"", "/disconnect\""] {
        assert!(page.body.contains(control), "an admin sees {control}");
    }

    let mut auditor = Person::sign_in(&app, Role::Auditor).await?;
    let home = auditor.get("/").await?;
    assert_eq!(home.status, StatusCode::SEE_OTHER);
    assert_eq!(home.location.as_deref(), Some("/audit"));
    for path in ["/records", page_path.as_str(), "/tokens", "/runs"] {
        let page = auditor.get(path).await?;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{path}");
        assert!(!page.body.contains(r#"name="_csrf""#), "{path}");
    }
    let trail = auditor.get("/audit").await?;
    assert_eq!(trail.status, StatusCode::OK, "{}", trail.body);
    assert!(
        !trail.body.contains("href=\"/records\""),
        "an auditor's navigation"
    );
    let refused = auditor.post(&format!("{page_path}/pause"), &[]).await?;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert_eq!(status_of(&app, &id).await?, before);
    app.finish().await
}
