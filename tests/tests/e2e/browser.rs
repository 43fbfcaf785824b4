//! What every console test in a browser needs: the driver from `CHROMEDRIVER` (a failure
//! under `CI=true` when it is missing), a headless Chromium, controls found the way a
//! person or a screen reader finds them, signing in, and screenshots for docs/console.md.

use std::path::PathBuf;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::harness::{Server, ADMIN_KEY};

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "true")
}

/// The driver's URL, or `None` when there is none outside CI.
pub fn chromedriver() -> Option<String> {
    match std::env::var("CHROMEDRIVER") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if in_ci() => panic!(
            "CHROMEDRIVER is not set: CI must run the console in a browser. \
             scripts/test.sh installs chromium and chromium-driver and starts the driver"
        ),
        _ => {
            eprintln!(
                "skipped: CHROMEDRIVER is not set (scripts/test.sh installs chromium and \
                 chromium-driver and starts the driver)"
            );
            None
        }
    }
}

pub async fn browser(driver: &str) -> Client {
    let binary = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_string());
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".to_string(),
        json!({
            "binary": binary,
            // No sandbox: CI runs the tests as root, where Chromium's sandbox refuses to start.
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(driver)
        .await
        .unwrap_or_else(|error| panic!("starting Chromium through {driver}: {error}"))
}

/// Runs `test` in a fresh browser and closes the browser whatever happened, so that a
/// failure does not leave it running; then fails with the test's message.
pub async fn with_browser<F, Fut>(test: F)
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let Some(driver) = chromedriver() else {
        return;
    };
    let client = browser(&driver).await;
    let outcome = test(client.clone()).await;
    let _ = client.close().await;
    outcome.unwrap_or_else(|error| panic!("{error}"));
}

/// The form control a `label` with this text names: how a person, or a screen reader,
/// finds it.
pub fn labelled(name: &str) -> String {
    format!("//*[@id=//label[normalize-space()='{name}']/@for]")
}

/// A button by its accessible text.
pub fn button(name: &str) -> String {
    format!("//button[normalize-space()='{name}']")
}

/// Turns a WebDriver error into a message saying what was being done.
pub fn fail(what: &str) -> impl Fn(fantoccini::error::CmdError) -> String {
    let what = what.to_string();
    move |error| format!("{what}: {error}")
}

pub const WAIT: Duration = Duration::from_secs(5);

/// Waits for the first node at `path`.
pub async fn find(client: &Client, path: &str) -> Result<fantoccini::elements::Element, String> {
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::XPath(path))
        .await
        .map_err(|error| format!("waiting for {path}: {error}"))
}

/// Clicks the first node at `path`. Screens are redrawn as their data change: a control
/// found just before a redraw is gone by the click, and is found again, as a person would
/// find it.
pub async fn click(client: &Client, path: &str, what: &str) -> Result<(), String> {
    let mut attempts = 0;
    loop {
        let clicked = find(client, path).await?.click().await;
        match clicked {
            Ok(()) => return Ok(()),
            Err(error) if attempts < 5 && error.to_string().contains("stale element") => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => return Err(format!("clicking {what}: {error}")),
        }
    }
}

/// Waits until the text at `path` (empty while there is no such node) satisfies `done`,
/// for at most `patience`; returns the text.
pub async fn wait_text(
    client: &Client,
    path: &str,
    patience: Duration,
    done: impl Fn(&str) -> bool,
) -> Result<String, String> {
    let started = std::time::Instant::now();
    loop {
        let text = read(client, path).await?.unwrap_or_default();
        if done(&text) {
            return Ok(text);
        }
        if started.elapsed() > patience {
            return Err(format!("{path} still reads {text:?} after {patience:?}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Opens `/admin` and signs in with the server's admin key; returns once the navigation
/// is shown.
#[allow(dead_code)] // for the console tests of each screen
pub async fn sign_in(server: &Server, client: &Client) -> Result<(), String> {
    client
        .goto(&server.url("/admin"))
        .await
        .map_err(fail("opening /admin"))?;
    find(client, &labelled("Admin key"))
        .await?
        .send_keys(ADMIN_KEY)
        .await
        .map_err(fail("typing the admin key"))?;
    find(client, &button("Sign in"))
        .await?
        .click()
        .await
        .map_err(fail("clicking Sign in"))?;
    find(client, "//nav//a[normalize-space()='Flags']").await?;
    Ok(())
}

/// The text of the first node at `path`, read in one step: screens are redrawn whenever
/// the data change, and an element found in one WebDriver command may be gone by the next.
pub async fn read(client: &Client, path: &str) -> Result<Option<String>, String> {
    let value = client
        .execute(
            "const node = document.evaluate(arguments[0], document, null, \
             XPathResult.FIRST_ORDERED_NODE_TYPE, null).singleNodeValue; \
             return node === null ? null : node.textContent;",
            vec![Value::from(path)],
        )
        .await
        .map_err(|error| format!("reading {path}: {error}"))?;
    Ok(value.as_str().map(str::to_string))
}

/// Saves what the browser shows as `docs/console/<name>.png`, the pictures docs/console.md
/// shows: each taken from a real run by the test that walks that screen. Only when
/// `RIPCORD_SCREENSHOTS=1`: an ordinary test run leaves the checkout as it found it.
pub async fn screenshot(client: &Client, name: &str) -> Result<(), String> {
    if std::env::var("RIPCORD_SCREENSHOTS").as_deref() != Ok("1") {
        return Ok(());
    }
    let png = client
        .screenshot()
        .await
        .map_err(|error| format!("screenshot {name}: {error}"))?;
    let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/console");
    std::fs::create_dir_all(&folder).map_err(|error| format!("{}: {error}", folder.display()))?;
    let file = folder.join(format!("{name}.png"));
    std::fs::write(&file, png).map_err(|error| format!("{}: {error}", file.display()))
}
