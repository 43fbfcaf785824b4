//! The console's admin screens in a real Chromium: keys created (the token shown once) and
//! revoked, the audit log with a kill's reason and the diff of the flag, environments
//! created and deleted by typing the name, and the flags list of ten thousand flags with its
//! ramp badges, filters and search. And the ramp summaries the flags list reads, over HTTP.

use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use reqwest::Method;
use serde_json::{json, Map, Value};

use crate::browser::{
    button, click, fail, find, labelled, read, screenshot, sign_in, with_browser,
};
use crate::harness::{Body, Server};

const DOCUMENT: &str = r#"
flags:
  new-checkout:
    type: boolean
    description: the checkout rewritten
    variants: {"on": true, "off": false}
    default_variant: "off"
    rollout: {percentage: 30, split: [{variant: "on", weight: 1}]}
    ramp:
      stages: [30, 60, 100]
      min_stage_duration: 1h
      max_stage_duration: 2h
      guards:
        - {metric: errors, category: stability, kind: rate, better: lower, tolerance: 0.02, min_samples: 500}
  banner:
    type: string
    variants: {plain: "hello", fancy: "HELLO"}
    default_variant: plain
"#;

const RAMP: &str = "/api/v1/environments/default/flags/new-checkout/ramp";

/// Polls `read` until `done` holds, for at most five seconds.
async fn until(
    client: &Client,
    path: &str,
    what: &str,
    done: impl Fn(&str) -> bool,
) -> Result<String, String> {
    let started = Instant::now();
    loop {
        let text = read(client, path).await?;
        if let Some(text) = text.as_deref().filter(|text| done(text)) {
            return Ok(text.to_string());
        }
        if started.elapsed() > Duration::from_secs(5) {
            return Err(format!("{what}: {path} reads {text:?}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn open(client: &Client, screen: &str) -> Result<(), String> {
    click(
        client,
        &format!("//nav//a[normalize-space()='{screen}']"),
        screen,
    )
    .await?;
    find(client, &format!("//main//h1[normalize-space()='{screen}']")).await?;
    Ok(())
}

/// Every ramp of an environment in one request, where each stands: what the flags list
/// draws its badges from.
#[tokio::test(flavor = "multi_thread")]
async fn ramp_summaries_say_where_every_ramp_of_an_environment_stands() {
    let server = Server::start_with(&[], DOCUMENT).await;
    const RAMPS: &str = "/api/v1/environments/default/ramps";
    let summaries = server.admin_get(RAMPS).await.expect_status(200).json();
    assert_eq!(
        summaries,
        json!([{"flag": "new-checkout", "generation": 1, "status": "pending", "stage": 0,
                "stages": [30.0, 60.0, 100.0], "percentage": 0.0}]),
        "a ramp never started is pending (the rollout left alone at 0), and a flag without a ramp is not listed"
    );

    server
        .admin_post(&format!("{RAMP}/start"), json!({"reason": "go"}))
        .await
        .expect_status(200);
    let summaries = server.admin_get(RAMPS).await.expect_status(200).json();
    assert_eq!(summaries[0]["status"], "running", "{summaries}");
    assert_eq!(summaries[0]["stage"], 0, "{summaries}");

    server
        .admin_post(&format!("{RAMP}/pause"), json!({"reason": "lunch"}))
        .await
        .expect_status(200);
    let summaries = server.admin_get(RAMPS).await.expect_status(200).json();
    assert_eq!(summaries[0]["status"], "paused", "{summaries}");
    assert_eq!(summaries[0]["pause_reason"], "manual", "{summaries}");
    // The same as the flag's own status says.
    let status = server.admin_get(RAMP).await.expect_status(200).json();
    for field in [
        "generation",
        "status",
        "pause_reason",
        "stage",
        "percentage",
    ] {
        assert_eq!(summaries[0][field], status[field], "{field}");
    }

    server
        .admin_get("/api/v1/environments/nowhere/ramps")
        .await
        .expect_status(404);
    server
        .call(Method::GET, RAMPS, None, Body::None)
        .await
        .expect_status(401);
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_are_created_with_the_token_shown_once_and_revoked_after_a_confirmation() {
    with_browser(|client| async move {
        let server = Server::start_with(&[], DOCUMENT).await;
        keys(&server, &client).await
    })
    .await;
}

async fn keys(server: &Server, client: &Client) -> Result<(), String> {
    sign_in(server, client).await?;
    open(client, "Keys").await?;
    find(client, &labelled("Name"))
        .await?
        .send_keys("ci-bot")
        .await
        .map_err(fail("typing the name"))?;
    find(client, &labelled("Scope"))
        .await?
        .select_by_value("server")
        .await
        .map_err(fail("choosing the scope"))?;
    find(client, &labelled("Key environment"))
        .await?
        .select_by_value("default")
        .await
        .map_err(fail("choosing the environment"))?;
    click(client, &button("Create key"), "Create key").await?;

    const TOKEN: &str = "//code[contains(@class, 'token-value')]";
    let token = until(client, TOKEN, "the new token", |text| {
        text.starts_with("ripcord-server-")
    })
    .await?;
    find(client, &button("Copy")).await?;
    const ROW: &str = "//table//tr[th[normalize-space()='ci-bot']]";
    let row = until(client, ROW, "the new key's row", |text| {
        text.contains("Active")
    })
    .await?;
    if !row.contains("server") || !row.contains("default") {
        return Err(format!("the new key's row reads {row:?}"));
    }
    screenshot(client, "keys").await?;
    // The token works: it is the key that was made.
    server
        .evaluate(&token, "banner", json!({}))
        .await
        .expect_status(200);

    // Shown once: after leaving the screen it is nowhere on the page, nor in the list.
    open(client, "Audit log").await?;
    open(client, "Keys").await?;
    until(client, ROW, "the key after coming back", |text| {
        text.contains("Active")
    })
    .await?;
    let page = read(client, "/html").await?.unwrap_or_default();
    if page.contains(&token) {
        return Err("the token is shown again after leaving the screen".to_string());
    }
    let listed = server.admin_get("/api/v1/keys").await.expect_status(200);
    assert!(!listed.text().contains(&token), "the list has the token");

    // Revoking asks first; Cancel keeps the key.
    let revoke = format!("{ROW}//button[normalize-space()='Revoke']");
    click(client, &revoke, "Revoke").await?;
    click(
        client,
        "//dialog[@open]//button[normalize-space()='Cancel']",
        "Cancel",
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    server
        .evaluate(&token, "banner", json!({}))
        .await
        .expect_status(200);
    click(client, &revoke, "Revoke").await?;
    let dialog = read(client, "//dialog[@open]").await?.unwrap_or_default();
    if !dialog.contains("ci-bot") {
        return Err(format!("the dialog does not name the key: {dialog:?}"));
    }
    click(client, &button("Revoke key"), "Revoke key").await?;
    until(client, ROW, "the revoked key", |text| {
        text.contains("Revoked")
    })
    .await?;
    if read(client, &revoke).await?.is_some() {
        return Err("a revoked key can still be revoked".to_string());
    }
    server
        .evaluate(&token, "banner", json!({}))
        .await
        .expect_status(401);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_audit_log_shows_a_kills_reason_and_the_flags_diff() {
    with_browser(|client| async move {
        let server = Server::start_with(&[], DOCUMENT).await;
        audit(&server, &client).await
    })
    .await;
}

async fn audit(server: &Server, client: &Client) -> Result<(), String> {
    server
        .admin_put(
            "/api/v1/environments/default/flags/new-checkout/enabled",
            json!({"enabled": false, "reason": "checkout errors, INC-4411"}),
        )
        .await
        .expect_status(200);
    // Another actor's change, which the actor filter leaves out.
    let bot = server.create_key("release-bot", "admin", None).await;
    server
        .call(
            Method::PUT,
            "/api/v1/environments/default/flags/banner/enabled",
            Some(&bot.token),
            Body::Json(json!({"enabled": false})),
        )
        .await
        .expect_status(200);

    sign_in(server, client).await?;
    open(client, "Audit log").await?;
    const KILL: &str =
        "//ol[contains(@class, 'audit')]/li[.//h2[contains(., 'flag.update') and contains(., 'new-checkout')]]";
    let entry = until(client, KILL, "the kill's entry", |text| {
        text.contains("kill_switch")
    })
    .await?;
    if !entry.contains("Reason: checkout errors, INC-4411") {
        return Err(format!("the kill's entry has no reason: {entry:?}"));
    }
    // The diff: the kill switch added, nothing else changed. The diff's code is a chunk
    // loaded with the first entry, so the diff may follow the entry by a moment.
    let added = until(client, &format!("{KILL}//pre//ins"), "the diff", |text| {
        !text.is_empty()
    })
    .await?;
    if added.trim() != r#"+   "enabled": false,"# {
        return Err(format!("the diff adds {added:?}"));
    }
    if read(client, &format!("{KILL}//pre//del")).await?.is_some() {
        return Err("the diff removes lines the kill did not touch".to_string());
    }

    // By flag: only new-checkout's entries.
    find(client, &labelled("Filter by flag"))
        .await?
        .send_keys("new-checkout")
        .await
        .map_err(fail("typing the flag"))?;
    click(client, &button("Filter"), "Filter").await?;
    until(
        client,
        "//main//p[@role='status']",
        "the flag filter",
        |text| text.contains("flag new-checkout"),
    )
    .await?;
    let targets = client
        .execute(
            "return [...document.querySelectorAll('ol.audit h2 code')].map((node) => node.textContent)",
            vec![],
        )
        .await
        .map_err(fail("reading the entries"))?;
    if targets.as_array().is_none_or(|targets| {
        targets.is_empty() || targets.iter().any(|target| target != "new-checkout")
    }) {
        return Err(format!("filtered by flag, the entries are about {targets}"));
    }
    screenshot(client, "audit").await?;

    // By actor: the bot's kill of banner, and nothing of the admin's.
    find(client, &labelled("Filter by flag"))
        .await?
        .clear()
        .await
        .map_err(fail("clearing the flag"))?;
    find(client, &labelled("Filter by actor"))
        .await?
        .send_keys("release")
        .await
        .map_err(fail("typing the actor"))?;
    click(client, &button("Filter"), "Filter").await?;
    until(
        client,
        "//main//p[@role='status']",
        "the actor filter",
        |text| text.contains("actor containing"),
    )
    .await?;
    let entries = read(client, "//ol[contains(@class, 'audit')]")
        .await?
        .unwrap_or_default();
    if !entries.contains("banner") || entries.contains("new-checkout") {
        return Err(format!("filtered by actor, the log reads {entries:?}"));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn environments_are_created_and_deleted_once_the_name_is_typed() {
    with_browser(|client| async move {
        let server = Server::start_with(&[], DOCUMENT).await;
        environments(&server, &client).await
    })
    .await;
}

async fn environments(server: &Server, client: &Client) -> Result<(), String> {
    sign_in(server, client).await?;
    open(client, "Environments").await?;
    find(client, &labelled("Name"))
        .await?
        .send_keys("staging")
        .await
        .map_err(fail("typing the name"))?;
    click(client, &button("Create environment"), "Create environment").await?;
    const ROW: &str = "//table//tr[th[normalize-space()='staging']]";
    find(client, ROW).await?;
    // The header's select follows.
    const OPTION: &str = "//header//select/option[@value='staging']";
    until(client, OPTION, "staging in the Environment select", |_| {
        true
    })
    .await?;
    server
        .admin_get("/api/v1/environments/staging")
        .await
        .expect_status(200);

    // Delete asks for the name: a near miss does not arm the button.
    click(
        client,
        &format!("{ROW}//button[normalize-space()='Delete']"),
        "Delete",
    )
    .await?;
    let field = find(client, "//dialog[@open]//input").await?;
    field
        .send_keys("stagin")
        .await
        .map_err(fail("typing the name"))?;
    let armed = |client: &Client| {
        let client = client.clone();
        async move {
            client
                .execute(
                    "return !document.evaluate(\"//dialog[@open]//button[normalize-space()='Delete environment']\", document, null, XPathResult.FIRST_ORDERED_NODE_TYPE, null).singleNodeValue.disabled",
                    vec![],
                )
                .await
                .map_err(fail("reading the button"))
        }
    };
    if armed(client).await? != json!(false) {
        return Err("Delete environment is enabled before the name is typed".to_string());
    }
    screenshot(client, "environments").await?;
    field.send_keys("g").await.map_err(fail("typing"))?;
    if armed(client).await? != json!(true) {
        return Err("Delete environment stays disabled with the name typed".to_string());
    }
    click(client, &button("Delete environment"), "Delete environment").await?;
    let started = Instant::now();
    while read(client, ROW).await?.is_some() || read(client, OPTION).await?.is_some() {
        if started.elapsed() > Duration::from_secs(5) {
            return Err("staging is still listed 5 s after its delete".to_string());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server
        .admin_get("/api/v1/environments/staging")
        .await
        .expect_status(404);
    Ok(())
}

const FLAGS: usize = 10_000;

/// Ten thousand flags, one of them with a ramp.
fn large_document() -> String {
    let mut flags = Map::new();
    for index in 0..FLAGS {
        flags.insert(
            format!("flag-{index:05}"),
            json!({
                "type": "boolean",
                "description": format!("flag number {index}"),
                "variants": {"on": true, "off": false},
                "default_variant": "off",
            }),
        );
    }
    flags.insert("new-checkout".to_string(), ramped_flag());
    json!({ "flags": flags }).to_string()
}

/// new-checkout as in [`DOCUMENT`], in JSON.
fn ramped_flag() -> Value {
    json!({
        "type": "boolean",
        "variants": {"on": true, "off": false},
        "default_variant": "off",
        "rollout": {"percentage": 30, "split": [{"variant": "on", "weight": 1}]},
        "ramp": {
            "stages": [30, 60, 100],
            "min_stage_duration": "1h",
            "max_stage_duration": "2h",
            "guards": [{"metric": "errors", "category": "stability", "kind": "rate", "better": "lower", "tolerance": 0.02, "min_samples": 500}],
        },
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_flags_are_listed_a_page_at_a_time_and_searched() {
    with_browser(|client| async move {
        let server = Server::start_with(&[], "flags: {}\n").await;
        server
            .call(
                Method::PUT,
                "/api/v1/environments/default/document",
                Some(crate::harness::ADMIN_KEY),
                Body::raw_json(large_document()),
            )
            .await
            .expect_status(200);
        large(&server, &client).await
    })
    .await;
}

async fn large(server: &Server, client: &Client) -> Result<(), String> {
    sign_in(server, client).await?;
    // From navigation to the table drawn, as a person opening the console sees it.
    client.refresh().await.map_err(fail("reloading"))?;
    let first = "//table//tr[th/a[normalize-space()='flag-00000']]";
    find(client, first).await?;
    // Figures for docs/benchmarks.md, printed and never asserted: from navigation to the
    // table painted, and one keystroke of search (filtering all, drawing, laying out).
    let mut drawn = Value::Null;
    for _ in 0..100 {
        drawn = client
            .execute(
                "const mark = performance.getEntriesByName('ripcord:flags-drawn')[0]; return mark === undefined ? null : mark.startTime",
                vec![],
            )
            .await
            .map_err(fail("reading the mark"))?;
        if !drawn.is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let keystroke = client
        .execute(
            "const input = document.getElementById('flag-search'); const started = performance.now(); \
             input.value = 'flag-0987'; input.dispatchEvent(new Event('input')); void document.body.offsetHeight; \
             const took = performance.now() - started; input.value = ''; input.dispatchEvent(new Event('input')); return took",
            vec![],
        )
        .await
        .map_err(fail("timing a search"))?;
    eprintln!(
        "console: {FLAGS} flags drawn {drawn} ms after navigation; a search keystroke {keystroke} ms"
    );

    let rows = client
        .find_all(Locator::XPath(
            "//table[contains(@class, 'flags')]/tbody/tr",
        ))
        .await
        .map_err(fail("counting rows"))?;
    if rows.is_empty() || rows.len() > 100 {
        return Err(format!("{} rows are drawn at once", rows.len()));
    }
    let status = read(client, "//main//p[@role='status']")
        .await?
        .unwrap_or_default();
    if !status.contains("10,001 flags") {
        return Err(format!("the list says {status:?}"));
    }
    click(client, &button("Next page"), "Next page").await?;
    find(client, "//table//tr[th/a[normalize-space()='flag-00100']]").await?;

    // Search runs over every flag, not the page shown.
    find(client, &labelled("Search flags"))
        .await?
        .send_keys("flag-09876")
        .await
        .map_err(fail("searching"))?;
    let found = "//table//tr[th/a[normalize-space()='flag-09876']]";
    find(client, found).await?;
    let href = read(client, &format!("{found}/th/a/@href")).await?;
    if href.as_deref() != Some("#/flags/flag-09876") {
        return Err(format!("flag-09876 links to {href:?}"));
    }
    let rows = client
        .find_all(Locator::XPath(
            "//table[contains(@class, 'flags')]/tbody/tr",
        ))
        .await
        .map_err(fail("counting rows"))?;
    if rows.len() != 1 {
        return Err(format!("the search shows {} rows", rows.len()));
    }
    find(client, &labelled("Search flags"))
        .await?
        .clear()
        .await
        .map_err(fail("clearing the search"))?;

    // The ramp badge, and the filter of flags with a ramp; it follows a start live.
    find(client, &labelled("Ramp"))
        .await?
        .select_by_value("any")
        .await
        .map_err(fail("choosing flags with a ramp"))?;
    const RAMPED: &str = "//table//tr[th/a[normalize-space()='new-checkout']]";
    let row = until(client, RAMPED, "new-checkout with a ramp", |text| {
        text.contains("Not started · 3 stages")
    })
    .await?;
    let rows = client
        .find_all(Locator::XPath(
            "//table[contains(@class, 'flags')]/tbody/tr",
        ))
        .await
        .map_err(fail("counting rows"))?;
    if rows.len() != 1 {
        return Err(format!(
            "{} flags have a ramp; the row: {row:?}",
            rows.len()
        ));
    }
    server
        .admin_post(&format!("{RAMP}/start"), json!({"reason": "go"}))
        .await
        .expect_status(200);
    until(client, RAMPED, "the started ramp", |text| {
        text.contains("Ramping: stage 1 of 3 · 30%")
    })
    .await?;
    server
        .admin_post(&format!("{RAMP}/pause"), json!({"reason": "lunch"}))
        .await
        .expect_status(200);
    until(client, RAMPED, "the paused ramp and why", |text| {
        text.contains("Paused at stage 1 of 3 · 30% · paused by hand")
    })
    .await?;
    find(client, &labelled("Ramp"))
        .await?
        .select_by_value("paused")
        .await
        .map_err(fail("choosing paused ramps"))?;
    find(client, RAMPED).await?;

    // The state filter: a kill elsewhere shows among the killed flags.
    find(client, &labelled("Ramp"))
        .await?
        .select_by_value("")
        .await
        .map_err(fail("clearing the ramp filter"))?;
    find(client, &labelled("State"))
        .await?
        .select_by_value("killed")
        .await
        .map_err(fail("choosing killed flags"))?;
    until(client, "//main//section", "no killed flag yet", |text| {
        text.contains("No flag matches.")
    })
    .await?;
    // What the page reads from here on: a kill of one flag must not read all ten thousand.
    client
        .execute(
            "performance.setResourceTimingBufferSize(10000); performance.clearResourceTimings()",
            vec![],
        )
        .await
        .map_err(fail("clearing the resource timings"))?;
    server
        .admin_put(
            "/api/v1/environments/default/flags/flag-04242/enabled",
            json!({"enabled": false}),
        )
        .await
        .expect_status(200);
    until(
        client,
        "//table//tr[th/a[normalize-space()='flag-04242']]",
        "the killed flag",
        |text| text.contains("Killed"),
    )
    .await?;
    let read_since = client
        .execute(
            "return performance.getEntriesByType('resource').map((entry) => new URL(entry.name).pathname + new URL(entry.name).search)",
            vec![],
        )
        .await
        .map_err(fail("reading the resource timings"))?;
    let read_since: Vec<&str> = read_since
        .as_array()
        .map(|urls| urls.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !read_since.contains(&"/api/v1/environments/default/flags/flag-04242")
        || read_since.iter().any(|url| {
            url.ends_with("/flags") || url.ends_with("/ramps") || url.contains("limit=500")
        })
    {
        return Err(format!(
            "a kill of one flag made the page read {read_since:?}"
        ));
    }
    Ok(())
}
