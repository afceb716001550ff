//! A person in a browser, as far as HTTP goes: a session cookie and the form token of the
//! pages it was shown, no redirects followed (tests look at each one).

use anyhow::Context;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Client, StatusCode};
use syncledger_domain::Role;
use syncledger_store::Metadata;
use syncledger_testkit::app::TestApp;

pub struct Person {
    pub client: Client,
    pub base: String,
    pub cookie: Option<String>,
    pub csrf: String,
}

pub struct Page {
    pub status: StatusCode,
    pub location: Option<String>,
    pub set_cookie: Vec<String>,
    pub content_type: String,
    pub body: String,
}

/// The value of the first `name="_csrf"` field of a page.
pub fn csrf_of(body: &str) -> Option<String> {
    let at = body.find(r#"name="_csrf" value=""#)? + r#"name="_csrf" value=""#.len();
    let end = body[at..].find('"')?;
    Some(body[at..at + end].to_string())
}

/// A one-time sign-in code for the test app's workspace.
pub async fn link_code(app: &TestApp, role: Role) -> anyhow::Result<String> {
    let meta = Metadata::new(
        "system",
        &app.workspace_id,
        uuid::Uuid::now_v7().to_string(),
    );
    let link = app
        .state
        .engine
        .sign_in()
        .issue_link(&meta, &app.workspace_id, role)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(link.code)
}

impl Person {
    pub fn new(app: &TestApp) -> anyhow::Result<Person> {
        Ok(Person {
            client: Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            base: app.base.clone(),
            cookie: None,
            csrf: String::new(),
        })
    }

    async fn answer(&mut self, rb: reqwest::RequestBuilder) -> anyhow::Result<Page> {
        let rb = match &self.cookie {
            Some(c) => rb.header(COOKIE, c),
            None => rb,
        };
        let resp = rb.send().await?;
        let header = |name| {
            resp.headers()
                .get(name)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                .map(str::to_string)
        };
        let location = header(LOCATION);
        let content_type = header(reqwest::header::CONTENT_TYPE).unwrap_or_default();
        let set_cookie: Vec<String> = resp
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect();
        let status = resp.status();
        let body = resp.text().await?;
        if let Some(c) = set_cookie.first() {
            let pair = c.split(';').next().unwrap_or_default().to_string();
            self.cookie = (!pair.ends_with('=')).then_some(pair);
        }
        if let Some(token) = csrf_of(&body) {
            self.csrf = token;
        }
        Ok(Page {
            status,
            location,
            set_cookie,
            content_type,
            body,
        })
    }

    pub async fn get(&mut self, path: &str) -> anyhow::Result<Page> {
        let rb = self.client.get(format!("{}{path}", self.base));
        self.answer(rb).await
    }

    /// A form post with the person's form token added.
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> anyhow::Result<Page> {
        let csrf = self.csrf.clone();
        let mut all: Vec<(&str, &str)> = vec![("_csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        self.post_raw(path, &all).await
    }

    /// A form post exactly as given (no form token unless in `fields`).
    pub async fn post_raw(&mut self, path: &str, fields: &[(&str, &str)]) -> anyhow::Result<Page> {
        let rb = self
            .client
            .post(format!("{}{path}", self.base))
            .form(fields);
        self.answer(rb).await
    }

    /// Sign in with a fresh one-time link for `role`.
    pub async fn sign_in(app: &TestApp, role: Role) -> anyhow::Result<Person> {
        let mut person = Person::new(app)?;
        let code = link_code(app, role).await?;
        let page = person.post_raw("/sign-in/link", &[("code", &code)]).await?;
        anyhow::ensure!(
            page.status == StatusCode::SEE_OTHER,
            "signed in: {}",
            page.body
        );
        let landing = page.location.context("a redirect after signing in")?;
        let landed = person.get(&landing).await?;
        anyhow::ensure!(
            landed.status == StatusCode::OK,
            "{landing}: {}",
            landed.body
        );
        Ok(person)
    }
}
