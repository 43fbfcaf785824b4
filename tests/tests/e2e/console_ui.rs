//! The web console. In a real Chromium, driven over WebDriver: sign-in by the controls'
//! names, the flags list, flag data shown as text and never as markup, and a kill made
//! through the API appearing in the open list without a reload. And the bundle the server
//! embeds, checked against the TypeScript sources it is built from.
//!
//! The browser test needs a running chromedriver at the URL in `CHROMEDRIVER`; the bundle
//! check needs Node.js and `admin-ui/node_modules` (scripts/test.sh installs what is missing
//! and starts the driver). Without them these tests fail under `CI=true`, and otherwise say
//! they skipped.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use serde_json::{json, Value};

use crate::browser::{button, fail, find, in_ci, labelled, read, screenshot, with_browser, WAIT};
use crate::harness::{Server, ADMIN_KEY};

/// A description written to be markup: shown as markup, it would add an `img` to the page.
const INJECTED: &str = r#"<img src=x onerror="document.title='injected'">"#;

fn document() -> String {
    // A JSON string is a YAML double-quoted scalar: the quotes inside stay as they are.
    let description = Value::from(INJECTED);
    format!(
        r#"
flags:
  new-checkout:
    type: boolean
    description: {description}
    variants: {{"on": true, "off": false}}
    default_variant: "off"
    rollout: {{percentage: 30, split: [{{variant: "on", weight: 1}}]}}
  banner:
    type: string
    variants: {{plain: "hello", fancy: "HELLO"}}
    default_variant: plain
"#
    )
}

/// The server embeds `admin-ui/dist/` as committed; a source changed without a rebuild
/// would ship the old console. `npm run check` type-checks the sources (strict) and builds
/// them in memory, failing when the bytes differ from the committed ones.
#[test]
fn the_committed_console_bundle_is_built_from_the_sources() {
    let admin_ui = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../admin-ui");
    if !admin_ui.join("node_modules").is_dir() {
        assert!(
            !in_ci(),
            "admin-ui/node_modules is missing: CI must check the console's bundle. \
             scripts/test.sh installs Node.js and runs `npm ci` in admin-ui"
        );
        eprintln!("skipped: admin-ui/node_modules is missing (scripts/test.sh runs `npm ci`)");
        return;
    }
    let output = Command::new("npm")
        .args(["run", "--silent", "check"])
        .current_dir(&admin_ui)
        .output()
        .unwrap_or_else(|error| panic!("running npm in {}: {error}", admin_ui.display()));
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_signs_in_lists_flags_as_text_and_shows_a_kill_live() {
    with_browser(|client| async move {
        let server = Server::start_with(&[], &document()).await;
        run(&server, &client).await
    })
    .await;
}

async fn run(server: &Server, client: &Client) -> Result<(), String> {
    let wait = WAIT;
    client
        .goto(&server.url("/admin"))
        .await
        .map_err(fail("opening /admin"))?;

    // A wrong key is refused and not kept.
    let key_field = client
        .wait()
        .at_most(wait)
        .for_element(Locator::XPath(&labelled("Admin key")))
        .await
        .map_err(fail("the Admin key field"))?;
    key_field
        .send_keys("not-a-key")
        .await
        .map_err(fail("typing"))?;
    let sign_in_button = button("Sign in");
    let sign_in = Locator::XPath(&sign_in_button);
    client
        .find(sign_in)
        .await
        .map_err(fail("the Sign in button"))?
        .click()
        .await
        .map_err(fail("clicking Sign in"))?;
    client
        .wait()
        .at_most(wait)
        .for_element(Locator::XPath(
            "//*[@role='alert' and contains(., 'not an admin key')]",
        ))
        .await
        .map_err(fail("the refusal of a wrong key"))?;

    key_field.clear().await.map_err(fail("clearing"))?;
    key_field
        .send_keys(ADMIN_KEY)
        .await
        .map_err(fail("typing"))?;
    client
        .find(sign_in)
        .await
        .map_err(fail("the Sign in button"))?
        .click()
        .await
        .map_err(fail("clicking Sign in"))?;

    // The list, each flag linked by its key.
    const ROW: &str = "//table//tr[th/a[normalize-space()='new-checkout']]";
    client
        .wait()
        .at_most(wait)
        .for_element(Locator::XPath(ROW))
        .await
        .map_err(fail("the flags table with new-checkout"))?;
    let href = read(client, &format!("{ROW}/th/a/@href")).await?;
    if href.as_deref() != Some("#/flags/new-checkout") {
        return Err(format!("new-checkout links to {href:?}"));
    }
    find(client, "//table//th/a[normalize-space()='banner']").await?;
    screenshot(client, "flags").await?;
    for name in [
        "Flags",
        "Incidents",
        "Audit log",
        "Keys",
        "Document",
        "Judge",
        "Environments",
    ] {
        client
            .find(Locator::XPath(&format!(
                "//nav//a[normalize-space()='{name}']"
            )))
            .await
            .map_err(fail(&format!("the navigation link {name}")))?;
    }
    let environment = client
        .find(Locator::XPath(&labelled("Environment")))
        .await
        .map_err(fail("the Environment select"))?;
    let tag = environment.tag_name().await.map_err(fail("its tag"))?;
    let selected = environment.prop("value").await.map_err(fail("its value"))?;
    if tag != "select" || selected.as_deref() != Some("default") {
        return Err(format!(
            "Environment is a {tag} showing {selected:?}, not a select on default"
        ));
    }

    // The description is shown as the text it is.
    let row_text = read(client, ROW).await?.unwrap_or_default();
    if !row_text.contains(INJECTED) {
        return Err(format!(
            "the description is not shown as text: {row_text:?}"
        ));
    }
    let images = client
        .find_all(Locator::Css("img"))
        .await
        .map_err(fail("looking for images"))?;
    if !images.is_empty() {
        return Err(format!(
            "flag data became markup: {} img elements",
            images.len()
        ));
    }
    let state = read(client, STATE).await?;
    if state.as_deref() != Some("On") {
        return Err(format!("new-checkout shows {state:?} before the kill"));
    }

    // The key is in sessionStorage, and nowhere a later visitor or another site could
    // find it.
    let storage = client
        .execute(
            "return [localStorage.length, document.cookie, sessionStorage.getItem('ripcord.adminKey')]",
            vec![],
        )
        .await
        .map_err(fail("reading the storage"))?;
    if storage != json!([0, "", ADMIN_KEY]) {
        return Err(format!("the key is kept as {storage}"));
    }

    // Live: once the stream is open, a kill through the API shows without a reload.
    client
        .wait()
        .at_most(wait)
        .for_element(Locator::XPath("//header//*[normalize-space()='Live']"))
        .await
        .map_err(fail("the live stream"))?;
    // Gone if the page is loaded again: the kill must show without that.
    client
        .execute("window.beforeTheKill = true", vec![])
        .await
        .map_err(fail("marking the page"))?;
    server
        .admin_put(
            "/api/v1/environments/default/flags/new-checkout/enabled",
            json!({"enabled": false, "reason": "checkout errors"}),
        )
        .await
        .expect_status(200);
    let killed = Instant::now();
    loop {
        if read(client, STATE).await?.as_deref() == Some("Killed") {
            break;
        }
        if killed.elapsed() > Duration::from_secs(2) {
            return Err("the kill did not show within 2 s".to_string());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let same_page = client
        .execute("return window.beforeTheKill === true", vec![])
        .await
        .map_err(fail("reading the marker"))?;
    if same_page != json!(true) {
        return Err("the page was reloaded to show the kill".to_string());
    }

    // The flag's page follows too: turned back on through the API, it says so.
    client
        .find(Locator::XPath(
            "//table//th/a[normalize-space()='new-checkout']",
        ))
        .await
        .map_err(fail("the flag's link"))?
        .click()
        .await
        .map_err(fail("opening the flag"))?;
    const PAGE_STATE: &str = "//main//h1[normalize-space()='new-checkout']/following-sibling::p[1]";
    client
        .wait()
        .at_most(wait)
        .for_element(Locator::XPath(PAGE_STATE))
        .await
        .map_err(fail("the flag's page"))?;
    let state = read(client, PAGE_STATE).await?.unwrap_or_default();
    if !state.starts_with("Killed") {
        return Err(format!("the flag's page says {state:?} after the kill"));
    }
    server
        .admin_put(
            "/api/v1/environments/default/flags/new-checkout/enabled",
            json!({"enabled": true}),
        )
        .await
        .expect_status(200);
    let turned_on = Instant::now();
    loop {
        let state = read(client, PAGE_STATE).await?.unwrap_or_default();
        if state.starts_with("On") {
            break;
        }
        if turned_on.elapsed() > Duration::from_secs(2) {
            return Err(format!(
                "the flag's page still says {state:?} 2 s after it was turned on"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// The State cell of new-checkout's row.
const STATE: &str = "//tr[th/a[normalize-space()='new-checkout']]/td[2]";
