//! A headless Chromium driven through chromedriver, for tests of the dashboard as a person
//! sees it: pages rendered by a real browser, cookies kept and sent by it, forms posted by
//! clicking their buttons (with the `Origin` header and `SameSite` rules a browser applies,
//! which an HTTP client would not).
//!
//! [`Browser::start`] runs chromedriver as a child process of this test on a free port and
//! opens one WebDriver session (one browser, one cookie jar) through `fantoccini`. Each
//! test starts its own, so tests share no cookies. Dropping a [`Browser`] ends its session
//! and kills its chromedriver (that child only, by its pid); [`Browser::close`] does the
//! same and reports errors.
//!
//! Where Chromium or chromedriver is not installed the browser tests skip, except under
//! `CI=true`, where they fail: CI must run them (`scripts/test.sh` installs both as root).

use crate::db::require_ci_services;
use crate::wait::poll_every;
use anyhow::{anyhow, bail, Context};
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Debian's Chromium (package `chromium`).
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Debian's chromedriver (package `chromium-driver`), matching [`CHROMIUM`]'s version.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long chromedriver may take to answer `/status`, and a page element to appear: a
/// cold Chromium on a busy CI machine takes seconds, never this long.
pub const BROWSER_TIMEOUT: Duration = Duration::from_secs(30);

/// How often [`Browser::wait_for`] and the start-up probe look again. Each look is a
/// WebDriver round trip, so not as often as [`crate::wait::poll_until`].
const LOOK_EVERY: Duration = Duration::from_millis(50);

/// The command-line switches of the headless Chromium. `--no-sandbox`: tests run as root
/// in containers, where Chromium's sandbox cannot start; `--disable-gpu`: there is none;
/// a fixed window size and language so screenshots, layouts and formatted times are the
/// same on every machine.
const CHROMIUM_ARGS: [&str; 5] = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--window-size=1280,900",
    "--lang=en-US",
];

/// A headless Chromium with one WebDriver session, and the chromedriver serving it.
pub struct Browser {
    client: Option<Client>,
    /// The session id, kept so `Drop` can end the session without a runtime.
    session: Option<String>,
    driver: Child,
    port: u16,
    /// Where Chromium saves downloads (a file the page offers as an attachment); removed
    /// with the browser.
    downloads: tempfile::TempDir,
}

impl Browser {
    /// A browser ready for [`Browser::goto`]. `Ok(None)` (and a line on stderr saying
    /// why) when Chromium or chromedriver is missing outside CI; an error under `CI=true`.
    pub async fn start() -> anyhow::Result<Option<Browser>> {
        Browser::start_in_zone(None).await
    }

    /// [`Browser::start`] with the browser's time zone set to `zone` (an IANA name such as
    /// `Asia/Tokyo`, through `TZ`), as a person elsewhere in the world has it.
    pub async fn start_in_zone(zone: Option<&str>) -> anyhow::Result<Option<Browser>> {
        let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
            .into_iter()
            .filter(|bin| !Path::new(bin).exists())
            .collect();
        if !missing.is_empty() {
            let missing = missing.join(" and ");
            if require_ci_services() {
                bail!(
                    "the browser tests need {missing} when CI=true (Debian packages \
                     `chromium chromium-driver`; scripts/test.sh installs them as root)"
                );
            }
            eprintln!(
                "skipping: {missing} not installed (apt-get install chromium chromium-driver)"
            );
            return Ok(None);
        }
        let port = free_port()?;
        let downloads = tempfile::tempdir().context("a download directory")?;
        let mut command = Command::new(CHROMEDRIVER);
        if let Some(zone) = zone {
            // Chromium, started by chromedriver, inherits it.
            command.env("TZ", zone);
        }
        let driver = command
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("start {CHROMEDRIVER}"))?;
        // From here on `Drop` kills chromedriver, also when a step below fails.
        let mut browser = Browser {
            client: None,
            session: None,
            driver,
            port,
            downloads,
        };
        browser.wait_until_ready().await?;
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities(browser.downloads.path()))
            .connect(&browser.driver_url())
            .await
            .context("open a WebDriver session in headless Chromium")?;
        browser.session = client.session_id().await?;
        browser.client = Some(client);
        Ok(Some(browser))
    }

    fn driver_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Polls chromedriver's `/status` until it says it is ready for a session. Fails at
    /// once if chromedriver exited (e.g. another process took the port first).
    async fn wait_until_ready(&mut self) -> anyhow::Result<()> {
        let status_url = format!("{}/status", self.driver_url());
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let port = self.port;
        let driver = &mut self.driver;
        // The shared polling loop; a chromedriver that exited ends the wait at once.
        let outcome: Result<(), String> = poll_every(
            LOOK_EVERY,
            BROWSER_TIMEOUT,
            &format!("chromedriver answers {status_url} as ready"),
            || {
                let exited = driver.try_wait();
                let (http, status_url) = (http.clone(), status_url.clone());
                async move {
                    match exited {
                        Ok(Some(exit)) => {
                            return Ok(Err(format!(
                                "chromedriver exited before it was ready ({exit}) on port {port}"
                            )))
                        }
                        Err(e) => return Ok(Err(format!("chromedriver: {e}"))),
                        Ok(None) => {}
                    }
                    let ready = match http.get(&status_url).send().await {
                        Ok(resp) => resp
                            .json::<serde_json::Value>()
                            .await
                            .is_ok_and(|v| v["value"]["ready"] == json!(true)),
                        Err(_) => false,
                    };
                    if ready {
                        Ok(Ok(()))
                    } else {
                        Err("not ready yet".to_string())
                    }
                }
            },
        )
        .await;
        outcome.map_err(|e| anyhow::anyhow!(e))
    }

    /// The WebDriver client, for what the helpers here do not cover.
    pub fn client(&self) -> &Client {
        self.client
            .as_ref()
            .expect("the WebDriver session is open until close or drop")
    }

    /// Opens `url` and returns once the page has loaded (WebDriver's navigation waits
    /// for the document's load event).
    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.client()
            .goto(url)
            .await
            .with_context(|| format!("open {url}"))
    }

    /// The address the browser shows now.
    pub async fn current_url(&self) -> anyhow::Result<url::Url> {
        Ok(self.client().current_url().await?)
    }

    /// The path of the address the browser shows now (e.g. `/sign-in`).
    pub async fn path(&self) -> anyhow::Result<String> {
        Ok(self.current_url().await?.path().to_string())
    }

    /// Waits until the page's address has the path `path` (a click's navigation may still
    /// be under way when `click` returns). Panics, naming the path, after the timeout.
    pub async fn wait_for_path(&self, path: &str) -> anyhow::Result<()> {
        poll_every(
            LOOK_EVERY,
            BROWSER_TIMEOUT,
            &format!("the browser at {path}"),
            || async {
                match self.path().await {
                    Ok(now) if now == path => Ok(()),
                    Ok(now) => Err(format!("at {now}")),
                    Err(e) => Err(format!("{e:#}")),
                }
            },
        )
        .await;
        Ok(())
    }

    /// Waits until an element matching `css` is on the page and returns it. Panics,
    /// naming the selector and the page's address, after the timeout.
    pub async fn wait_for(&self, css: &str) -> anyhow::Result<Element> {
        let what = format!("an element matching `{css}`");
        let element = poll_every(LOOK_EVERY, BROWSER_TIMEOUT, &what, || async {
            match self.client().find(Locator::Css(css)).await {
                Ok(element) => Ok(element),
                Err(e) => {
                    let at = self.current_url().await.map(|u| u.to_string());
                    Err(format!(
                        "at {}: {e}",
                        at.unwrap_or_else(|e| format!("{e:#}"))
                    ))
                }
            }
        })
        .await;
        Ok(element)
    }

    /// Clicks the element matching `css` (waiting for it to appear first).
    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        self.wait_for(css)
            .await?
            .click()
            .await
            .with_context(|| format!("click `{css}`"))
    }

    /// Replaces the value of the field matching `css` by `text`, typed as keys.
    pub async fn fill(&self, css: &str, text: &str) -> anyhow::Result<()> {
        let field = self.wait_for(css).await?;
        field
            .clear()
            .await
            .with_context(|| format!("clear `{css}`"))?;
        field
            .send_keys(text)
            .await
            .with_context(|| format!("type into `{css}`"))
    }

    /// The visible text of the element matching `css` (waiting for it to appear first).
    pub async fn text(&self, css: &str) -> anyhow::Result<String> {
        self.wait_for(css)
            .await?
            .text()
            .await
            .with_context(|| format!("read the text of `{css}`"))
    }

    /// Waits until the text of the element matching `css` satisfies `wanted` (e.g. a
    /// live region updated in place) and returns it. Panics, naming what was awaited and
    /// the text last seen, after the timeout.
    pub async fn wait_for_text(
        &self,
        css: &str,
        what: &str,
        wanted: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        let wanted = &wanted;
        let text = poll_every(
            LOOK_EVERY,
            BROWSER_TIMEOUT,
            &format!("`{css}` to show {what}"),
            || async move {
                match self.client().find(Locator::Css(css)).await {
                    Ok(element) => match element.text().await {
                        Ok(text) if wanted(&text) => Ok(text),
                        Ok(text) => Err(format!("it says {text:?}")),
                        Err(e) => Err(format!("{e}")),
                    },
                    Err(e) => Err(format!("{e}")),
                }
            },
        )
        .await;
        Ok(text)
    }

    /// Waits until Chromium has finished saving a download whose name ends with
    /// `suffix` (e.g. `.csv`) and returns its path. Panics after the timeout.
    pub async fn wait_for_download(&self, suffix: &str) -> anyhow::Result<PathBuf> {
        let dir = self.downloads.path().to_path_buf();
        let found = poll_every(
            LOOK_EVERY,
            BROWSER_TIMEOUT,
            &format!("a download ending in {suffix} in {}", dir.display()),
            || {
                let dir = dir.clone();
                async move {
                    let names: Vec<PathBuf> = std::fs::read_dir(&dir)
                        .map_err(|e| e.to_string())?
                        .filter_map(|entry| entry.ok().map(|e| e.path()))
                        .collect();
                    // Chromium writes `<name>.crdownload` (and may place an empty file
                    // under the final name) and renames it over the name when done.
                    let saving = names
                        .iter()
                        .any(|p| p.to_string_lossy().ends_with(".crdownload"));
                    names
                        .iter()
                        .find(|p| {
                            !saving
                                && p.to_string_lossy().ends_with(suffix)
                                && std::fs::metadata(p).is_ok_and(|m| m.len() > 0)
                        })
                        .cloned()
                        .ok_or_else(|| format!("the directory holds {names:?}"))
                }
            },
        )
        .await;
        Ok(found)
    }

    /// Runs `script` in the page (its `arguments` are `args`) and returns what it returns.
    pub async fn execute(
        &self,
        script: &str,
        args: Vec<serde_json::Value>,
    ) -> anyhow::Result<serde_json::Value> {
        self.client()
            .execute(script, args)
            .await
            .context("run a script in the page")
    }

    /// Sets the window's size (CSS pixels), e.g. a phone's 390 px width.
    pub async fn resize(&self, width: u32, height: u32) -> anyhow::Result<()> {
        self.client()
            .set_window_size(width, height)
            .await
            .with_context(|| format!("resize the window to {width}x{height}"))
    }

    /// The page's HTML as the browser has it now (after scripts ran).
    pub async fn page_source(&self) -> anyhow::Result<String> {
        Ok(self.client().source().await?)
    }

    /// Saves a PNG of the window as `name` (may contain `/` for a subdirectory) under
    /// [`screenshot_dir`], and returns its path. Written to a temporary name first and
    /// renamed, so two tests saving the same name never leave half a file.
    pub async fn screenshot(&self, name: &str) -> anyhow::Result<PathBuf> {
        let png = self.client().screenshot().await?;
        let path = screenshot_dir().join(name);
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let partial = dir.join(format!(".{}.partial", uuid::Uuid::new_v4().simple()));
        std::fs::write(&partial, png).with_context(|| format!("write {}", partial.display()))?;
        std::fs::rename(&partial, &path).with_context(|| format!("write {}", path.display()))?;
        Ok(path)
    }

    /// Ends the session (Chromium quits) and stops chromedriver, reporting what failed.
    pub async fn close(mut self) -> anyhow::Result<()> {
        if let Some(client) = self.client.take() {
            client.close().await.context("end the WebDriver session")?;
            self.session = None;
        }
        self.stop_driver();
        Ok(())
    }

    fn stop_driver(&mut self) {
        // `Child::kill` signals this child's own pid; nothing else is touched.
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }

    /// `DELETE /session/{id}` over a plain socket: `Drop` has no runtime to run the
    /// client's shutdown on, and killing chromedriver alone would leave Chromium running.
    /// chromedriver answers once Chromium has quit; best effort, bounded by a timeout.
    fn end_session_blocking(&self, session: &str) {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
        let request = format!(
            "DELETE /session/{session} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        );
        if stream.write_all(request.as_bytes()).is_ok() {
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer);
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            self.end_session_blocking(&session);
        }
        self.stop_driver();
    }
}

/// Where screenshots go: `$SCREENSHOT_DIR`, else `screenshots/` in the Cargo target
/// directory (`$CARGO_TARGET_DIR`, else the workspace's `target/`), so CI can keep them
/// as artifacts and they never land in the source tree.
pub fn screenshot_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SCREENSHOT_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .unwrap_or(Path::new("."))
                .join("target")
        });
    target.join("screenshots")
}

/// Headless Chromium at [`CHROMIUM`] with [`CHROMIUM_ARGS`], saving downloads to
/// `downloads` without asking.
fn capabilities(downloads: &Path) -> serde_json::Map<String, serde_json::Value> {
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": CHROMIUM_ARGS,
            "prefs": {
                "download.default_directory": downloads.to_string_lossy(),
                "download.prompt_for_download": false,
            },
        },
    });
    match caps {
        serde_json::Value::Object(map) => map,
        _ => unreachable!("a JSON object literal"),
    }
}

/// A loopback port nothing listens on right now (the OS picks it). Another process could
/// take it before chromedriver binds; `wait_until_ready` then fails at once, naming it.
fn free_port() -> anyhow::Result<u16> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| anyhow!("find a free port: {e}"))?;
    Ok(listener.local_addr()?.port())
}
