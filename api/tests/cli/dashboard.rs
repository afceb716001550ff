//! `dashboard link`: a one-time sign-in URL under the public URL, honoured once by `serve`.

use reqwest::StatusCode;
use syncledger_testkit::binary::{describe, stderr, stdout, TestEnv};

#[tokio::test]
async fn dashboard_link_prints_a_one_time_url_that_serve_honours_once() {
    let env = TestEnv::sqlite();
    let ws = env.create_workspace("Studio").await;
    let mut cmd = env.command(&[
        "dashboard",
        "link",
        "--workspace",
        &ws.id,
        "--role",
        "viewer",
    ]);
    cmd.env("SYNCLEDGER_PUBLIC_URL", "https://sync.example.com/");
    let output = cmd.output().await.expect("run dashboard link");
    assert!(output.status.success(), "{}", describe(&output));
    let out = stdout(&output);
    assert_eq!(out.lines().count(), 1, "{out:?}");
    let url = out.trim_end();
    let prefix = "https://sync.example.com/sign-in/link?code=";
    assert!(url.starts_with(prefix), "{url}");
    let code = &url[prefix.len()..];
    assert!(
        code.starts_with("sil_") && !code.contains(&ws.token),
        "{url}"
    );

    let server = env.serve().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client");
    let redeem = || async {
        client
            .post(format!("{}/sign-in/link", server.url))
            .form(&[("code", code)])
            .send()
            .await
            .expect("an answer")
    };
    let first = redeem().await;
    assert_eq!(first.status(), StatusCode::SEE_OTHER);
    assert!(first.headers().get("set-cookie").is_some());
    assert_eq!(redeem().await.status(), StatusCode::UNAUTHORIZED);
    server.stop().await;
}

#[tokio::test]
async fn dashboard_link_for_an_unknown_workspace_prints_nothing_and_fails() {
    let env = TestEnv::sqlite();
    env.create_workspace("Real").await;
    let out = env
        .run(&["dashboard", "link", "--workspace", "no-such-workspace"])
        .await;
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(stdout(&out).is_empty(), "{}", describe(&out));
    assert!(!stderr(&out).is_empty());
    let bad_role = env
        .run(&["dashboard", "link", "--workspace", "x", "--role", "owner"])
        .await;
    assert!(
        stderr(&bad_role).contains("unknown role"),
        "{}",
        describe(&bad_role)
    );
}
