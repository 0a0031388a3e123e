//! The staff page in headless Chromium over WebDriver: sign in with a staff key, approve
//! one draft, edit and approve another, save a screenshot, and check that the bot then
//! gets both replies from `GET /v1/replies`.
//!
//! Needs the Debian packages `chromium` and `chromium-driver`; `.ci/run` installs them.
//! The screenshot goes to `$LEADGATE_TEST_ARTIFACTS`, else `target/test-artifacts`.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::server::{Server, agent, create_key, send};
use fantoccini::{ClientBuilder, Locator};
use serde_json::{Value, json};

const EDITED_REPLY: &str = "Эльвира, ждём вас в субботу в 11:00. Администратор Анна.";

/// Returns the first of `names` found in a folder of `PATH`.
fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// chromedriver on a free port of 127.0.0.1; it is killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start(program: &Path) -> Driver {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("no free port on 127.0.0.1")
            .port();
        let child = Command::new(program)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = agent()
                .get(&format!("{url}/status"))
                .call()
                .ok()
                .and_then(|response| response.into_json::<Value>().ok())
                .is_some_and(|status| status["value"]["ready"] == true);
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not start on {url}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Driver { child, url }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn post_lead(server: &Server, key: &str, external_id: &str, text: &str) {
    let body = json!({
        "channel": "telegram",
        "external_id": external_id,
        "text": text,
        "contact": { "name": "Эльвира", "phone": "+7 917 555-12-34" },
        "consent": { "granted": true },
    });
    let request = agent()
        .post(&server.url("/v1/leads"))
        .set("Content-Type", "application/json")
        .set("Authorization", &format!("Bearer {key}"));
    let (status, answer, _) = send(request, Some(&body.to_string()));
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["status"], "pending_review", "{answer}");
}

/// Waits until a submitted form has led to a page that contains `expected` or an error,
/// and returns that page's source.
async fn page_after_submit(browser: &fantoccini::Client, expected: &str) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let url = browser
            .current_url()
            .await
            .map_err(|e| format!("read the url: {e}"))?;
        let page = browser
            .source()
            .await
            .map_err(|e| format!("read the page: {e}"))?;
        // The page before the click may still be shown, with an older `done=`, so wait for
        // this form's own confirmation or an error.
        if page.contains(expected) || page.contains("class=\"error\"") {
            return Ok(page);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "no page after the form was sent; still at {}",
                url.path()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn artifacts_dir() -> PathBuf {
    std::env::var_os("LEADGATE_TEST_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| common::root().join("target/test-artifacts"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_approve_and_edit_in_chromium() {
    let chromium = find_program(&["chromium", "chromium-browser"]).expect(
        "chromium is not installed: install the Debian packages `chromium` and \
         `chromium-driver` (apt-get install chromium chromium-driver)",
    );
    let chromedriver = find_program(&["chromedriver"])
        .expect("chromedriver is not installed: install the Debian package `chromium-driver`");

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("leads.db");
    let (_, staff_key) = create_key(&db, "staff", "reception");
    let server = tokio::task::block_in_place(|| Server::start(&db, &["--wait-ms", "600000"]));
    let bot_key = server.bot.clone().expect("Server::start makes a bot key");
    tokio::task::block_in_place(|| {
        post_lead(
            &server,
            &bot_key,
            "b-1",
            "Хочу записаться на маникюр в субботу",
        );
        post_lead(
            &server,
            &bot_key,
            "b-2",
            "Хочу записаться на массаж спины в субботу",
        );
    });

    let driver = Driver::start(&chromedriver);
    let profile = tempfile::tempdir().unwrap();
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".to_string(),
        json!({
            "binary": chromium,
            "args": [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--window-size=412,915",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let browser = ClientBuilder::new(connector)
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("cannot open a Chromium session through chromedriver");

    let outcome = drive(&browser, &server.base, &staff_key).await;
    let _ = browser.close().await;
    drop(driver);
    let screenshot = outcome.unwrap_or_else(|e| panic!("{e}"));
    println!("screenshot: {}", screenshot.display());

    let request = agent()
        .get(&server.url("/v1/replies?since=0"))
        .set("Authorization", &format!("Bearer {bot_key}"));
    let (status, replies, _) = tokio::task::block_in_place(|| send(request, None));
    assert_eq!(status, 200, "{replies}");
    let replies = replies["replies"].as_array().unwrap().clone();
    assert_eq!(replies.len(), 2, "{replies:?}");
    assert_eq!(replies[0]["edited"], false);
    assert!(replies[0]["text"].as_str().unwrap().contains("Эльвира"));
    assert_eq!(replies[1]["edited"], true);
    assert_eq!(replies[1]["text"], EDITED_REPLY);
}

/// Signs in, approves the first draft as is, edits and approves the second, and returns
/// the path of the screenshot taken on the way.
async fn drive(
    browser: &fantoccini::Client,
    base: &str,
    staff_key: &str,
) -> Result<PathBuf, String> {
    let step = |what: &'static str| move |e: fantoccini::error::CmdError| format!("{what}: {e}");
    browser
        .goto(&format!("{base}/ui/drafts"))
        .await
        .map_err(step("open /ui/drafts"))?;
    // Without a session the page sends the browser to the sign-in form.
    let url = browser.current_url().await.map_err(step("read the url"))?;
    if !url.path().ends_with("/ui/login") {
        return Err(format!("expected the sign-in page, got {url}"));
    }
    let key = browser
        .find(Locator::Id("key"))
        .await
        .map_err(step("find the key field"))?;
    key.send_keys(staff_key)
        .await
        .map_err(step("type the key"))?;
    browser
        .find(Locator::Css("form button[type=submit].primary"))
        .await
        .map_err(step("find the sign-in button"))?
        .click()
        .await
        .map_err(step("sign in"))?;

    let lead_text = browser
        .find(Locator::Id("lead-text"))
        .await
        .map_err(step("find the lead text after sign-in"))?
        .text()
        .await
        .map_err(step("read the lead text"))?;
    if !lead_text.contains("маникюр") {
        return Err(format!(
            "the first draft shows another lead: {} bytes",
            lead_text.len()
        ));
    }
    let screenshot = browser
        .screenshot()
        .await
        .map_err(step("take a screenshot"))?;
    browser
        .find(Locator::Id("approve"))
        .await
        .map_err(step("find the approve button"))?
        .click()
        .await
        .map_err(step("approve"))?;

    let page = page_after_submit(browser, "Ответ одобрен и передан боту").await?;
    if !page.contains("Ответ одобрен и передан боту") {
        return Err("no confirmation of the first approval".to_string());
    }
    let lead_text = browser
        .find(Locator::Id("lead-text"))
        .await
        .map_err(step("find the second lead"))?
        .text()
        .await
        .map_err(step("read the second lead"))?;
    if !lead_text.contains("массаж") {
        return Err("the second draft is not the massage lead".to_string());
    }
    let reply = browser
        .find(Locator::Id("reply-text"))
        .await
        .map_err(step("find the reply field"))?;
    reply.clear().await.map_err(step("clear the reply"))?;
    reply
        .send_keys(EDITED_REPLY)
        .await
        .map_err(step("type the edit"))?;
    browser
        .find(Locator::Id("approve-edited"))
        .await
        .map_err(step("find the edit-and-approve button"))?
        .click()
        .await
        .map_err(step("approve the edit"))?;
    let page = page_after_submit(browser, "Исправленный ответ одобрен").await?;
    let title = browser.title().await.map_err(step("read the title"))?;
    if !page.contains("Исправленный ответ одобрен") {
        let error = browser.find(Locator::Css(".error")).await.ok();
        let error = match error {
            Some(element) => element.text().await.unwrap_or_default(),
            None => String::new(),
        };
        return Err(format!(
            "no confirmation of the edit; page `{title}`: {error}"
        ));
    }
    if !page.contains("Новых черновиков нет") {
        return Err("the queue is not empty after both reviews".to_string());
    }

    let dir = artifacts_dir();
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let path = dir.join("ui_browser_queue.png");
    std::fs::write(&path, screenshot).map_err(|e| format!("write {}: {e}", path.display()))?;
    Ok(path)
}
