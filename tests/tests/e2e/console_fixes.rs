//! The console keeping its footing in a real Chromium: the keyboard stays on a ramp control
//! and on a flag's link while live refreshes redraw them; a full read of the flags that
//! lands late does not undo a kill shown live, nor a late read of one flag a newer full
//! read; a failed read of the ramps keeps the badges and says they may be stale; a burst of
//! changes reads the environments a few times, not once each; guard tiles whose metrics differ in punctuation are
//! each named by their own; a malformed address is a page that does not exist rather than
//! a frozen console; and signing out stops the open screen's reads.

use std::time::{Duration, Instant};

use fantoccini::Client;
use serde_json::{json, Value};

use crate::browser::{button, fail, find, read, sign_in, wait_text, with_browser};
use crate::harness::Server;
use crate::ramps::RAMPED;

const RAMP: &str = "/api/v1/environments/default/flags/new-checkout/ramp";
const SECTION: &str = "//section[@aria-labelledby='ramp-heading']";

/// Focuses the first element the selector finds and keeps it as `window.focusedBefore`;
/// fails if it could not take the focus.
async fn focus(client: &Client, selector: &str) -> Result<(), String> {
    let focused = client
        .execute(
            "const node = document.evaluate(arguments[0], document, null, \
             XPathResult.FIRST_ORDERED_NODE_TYPE, null).singleNodeValue; \
             if (node === null) return false; \
             node.focus(); window.focusedBefore = node; \
             return document.activeElement === node;",
            vec![Value::from(selector)],
        )
        .await
        .map_err(fail("focusing"))?;
    if focused != json!(true) {
        return Err(format!("{selector} could not take the focus"));
    }
    Ok(())
}

/// Waits until the element focused by `focus` has been replaced by a redraw, then answers
/// the text of the element holding the focus (empty when it is the page itself).
async fn focus_after_redraw(client: &Client, patience: Duration) -> Result<String, String> {
    let started = Instant::now();
    loop {
        let answer = client
            .execute(
                "return {redrawn: !window.focusedBefore.isConnected, \
                 active: document.activeElement === document.body ? '' : \
                 document.activeElement.textContent.trim()};",
                vec![],
            )
            .await
            .map_err(fail("reading the focus"))?;
        if answer["redrawn"] == json!(true) {
            return Ok(answer["active"].as_str().unwrap_or_default().to_string());
        }
        if started.elapsed() > patience {
            return Err(format!("no redraw within {patience:?}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_focused_ramp_button_keeps_the_focus_across_the_ramps_refresh() {
    with_browser(|client| async move {
        let server = Server::start_with(&[("RIPCORD_RAMP_TICK", "1s")], RAMPED).await;
        server
            .admin_post(&format!("{RAMP}/start"), json!({}))
            .await
            .expect_status(200);
        sign_in(&server, &client).await?;
        client
            .goto(&server.url("/admin#/flags/new-checkout"))
            .await
            .map_err(fail("opening the flag page"))?;
        let pause = format!("{SECTION}{}", button("Pause ramp"));
        find(&client, &pause).await?;
        focus(&client, &pause).await?;
        // A running ramp is read again every 5 s and drawn anew.
        let active = focus_after_redraw(&client, Duration::from_secs(8)).await?;
        if active != "Pause ramp" {
            return Err(format!("after the refresh the focus is on {active:?}"));
        }
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_focused_flag_link_keeps_the_focus_when_a_live_change_redraws_the_list() {
    with_browser(|client| async move {
        let server = Server::start_with(&[], RAMPED).await;
        sign_in(&server, &client).await?;
        let link = "//tr[@data-flag='new-checkout']//a";
        find(&client, link).await?;
        find(&client, "//header//*[normalize-space()='Live']").await?;
        focus(&client, link).await?;
        server
            .admin_put(
                "/api/v1/environments/default/flags/new-checkout/enabled",
                json!({"enabled": false, "reason": "checkout errors"}),
            )
            .await
            .expect_status(200);
        let active = focus_after_redraw(&client, Duration::from_secs(5)).await?;
        if active != "new-checkout" {
            return Err(format!("after the live change the focus is on {active:?}"));
        }
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_address_is_no_such_page_and_the_console_goes_on() {
    with_browser(|client| async move {
        let server = Server::start_with(&[], RAMPED).await;
        sign_in(&server, &client).await?;
        client
            .execute("location.hash = '#/flags/%E0'", vec![])
            .await
            .map_err(fail("going to a malformed address"))?;
        wait_text(&client, "//main", Duration::from_secs(5), |text| {
            text.contains("There is no such page")
        })
        .await?;
        // The console still answers its navigation.
        find(&client, "//nav//a[normalize-space()='Audit log']")
            .await?
            .click()
            .await
            .map_err(fail("opening the audit log"))?;
        find(&client, "//main//h1[normalize-space()='Audit log']").await?;
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn signing_out_stops_the_open_screens_reads() {
    with_browser(|client| async move {
        let server = Server::start_with(&[("RIPCORD_RAMP_TICK", "1s")], RAMPED).await;
        server
            .admin_post(&format!("{RAMP}/start"), json!({}))
            .await
            .expect_status(200);
        sign_in(&server, &client).await?;
        client
            .goto(&server.url("/admin#/flags/new-checkout"))
            .await
            .map_err(fail("opening the flag page"))?;
        find(&client, &format!("{SECTION}{}", button("Pause ramp"))).await?;
        find(&client, &button("Sign out"))
            .await?
            .click()
            .await
            .map_err(fail("signing out"))?;
        // Signed in again on another screen: the ramp's timer, had it survived, would read
        // the ramp with the new key.
        client
            .execute(
                "location.hash = '#/keys'; window.signedOutAt = performance.now();",
                vec![],
            )
            .await
            .map_err(fail("leaving the flag page"))?;
        find(
            &client,
            "//*[@id=//label[normalize-space()='Admin key']/@for]",
        )
        .await?
        .send_keys(crate::harness::ADMIN_KEY)
        .await
        .map_err(fail("typing the admin key"))?;
        find(&client, &button("Sign in"))
            .await?
            .click()
            .await
            .map_err(fail("signing in again"))?;
        find(&client, "//main//h1[normalize-space()='Keys']").await?;
        tokio::time::sleep(Duration::from_secs(6)).await;
        let reads = client
            .execute(
                "return performance.getEntriesByType('resource').filter((entry) => \
                 entry.startTime > window.signedOutAt && entry.name.includes('/ramp')).length",
                vec![],
            )
            .await
            .map_err(fail("counting the ramp's reads"))?;
        if reads != json!(0) {
            return Err(format!(
                "the closed ramp section read the ramp {reads} times"
            ));
        }
        Ok(())
    })
    .await;
}

/// From now on, the page gets the answers of requests whose URL matches `pattern` (a
/// JavaScript regular expression) two seconds after the server gave them, as on a slow
/// network.
async fn slow_answers(client: &Client, pattern: &str) -> Result<(), String> {
    client
        .execute(
            "const slow = new RegExp(arguments[0]); \
             const original = window.fetch; \
             window.fetch = async (...args) => { \
               const response = await original(...args); \
               if (slow.test(String(args[0]))) { \
                 await new Promise((done) => setTimeout(done, 2000)); \
               } \
               return response; \
             };",
            vec![json!(pattern)],
        )
        .await
        .map(drop)
        .map_err(fail("slowing the answers"))
}

/// Adds `count` plain flags to an exported `document`: an import of it names many flags,
/// which the console reads as a whole list.
fn add_flags(document: &mut Value, count: usize) {
    for index in 0..count {
        document["flags"][format!("extra-{index}")] =
            json!({"type": "boolean", "variants": {"on": true}, "default_variant": "on"});
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_full_read_does_not_undo_a_kill_shown_live() {
    with_browser(|client| async move {
        let server = Server::start_with(&[], RAMPED).await;
        sign_in(&server, &client).await?;
        let state = "//tr[@data-flag='new-checkout']/td[2]";
        find(&client, state).await?;
        find(&client, "//header//*[normalize-space()='Live']").await?;
        // The list's answer arrives two seconds after the server gave it, as on a slow
        // network: it was read before the kill below and lands after the kill is shown.
        slow_answers(&client, "/flags$").await?;
        client
            .execute("location.hash = '#/audit';", vec![])
            .await
            .map_err(fail("opening the audit log"))?;
        find(&client, "//main//h1[normalize-space()='Audit log']").await?;
        client
            .execute("location.hash = '#/flags';", vec![])
            .await
            .map_err(fail("opening the flags again"))?;
        find(&client, "//main//h1[normalize-space()='Flags']").await?;
        // Let the list's request go out before the kill.
        tokio::time::sleep(Duration::from_millis(300)).await;
        server
            .admin_put(
                "/api/v1/environments/default/flags/new-checkout/enabled",
                json!({"enabled": false, "reason": "checkout errors"}),
            )
            .await
            .expect_status(200);
        wait_text(&client, state, Duration::from_secs(5), |text| {
            text == "Killed"
        })
        .await?;
        // The slow answer has landed by now; the kill stays.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let shown = read(&client, state).await?.unwrap_or_default();
        if shown != "Killed" {
            return Err(format!(
                "after the slow list landed the flag shows {shown:?}"
            ));
        }
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ramp_badges_stay_and_are_called_stale_when_the_ramps_cannot_be_read() {
    with_browser(|client| async move {
        let server = Server::start_with(&[], RAMPED).await;
        sign_in(&server, &client).await?;
        let badge = "//tr[@data-flag='new-checkout']/td[4]";
        let shown = wait_text(&client, badge, Duration::from_secs(5), |text| {
            text.starts_with("Not started")
        })
        .await?;
        find(&client, "//header//*[normalize-space()='Live']").await?;
        // From now on the server cannot give the ramps, as when its store is unavailable.
        client
            .execute(
                "const original = window.fetch; \
                 window.fetch = async (...args) => /\\/ramps$/.test(String(args[0])) \
                   ? new Response(JSON.stringify({error: 'store_unavailable', message: 'the store is unavailable'}), \
                       {status: 503, headers: {'Content-Type': 'application/json'}}) \
                   : original(...args);",
                vec![],
            )
            .await
            .map_err(fail("failing the ramps"))?;
        // A change naming many flags reads the whole list again, ramps and all.
        let mut document = server.export("default").await;
        add_flags(&mut document, 25);
        server
            .admin_put("/api/v1/environments/default/document", document)
            .await
            .expect_status(200);
        let status = wait_text(&client, "//main//p[@role='status']", Duration::from_secs(5), |text| {
            text.starts_with("26 flags")
        })
        .await?;
        if !status.contains("may be stale") {
            return Err(format!("the status says {status:?}"));
        }
        let kept = read(&client, badge).await?.unwrap_or_default();
        if kept != shown {
            return Err(format!("the badge was {shown:?} and is now {kept:?}"));
        }
        Ok(())
    })
    .await;
}

/// Two guards whose metric names differ only in punctuation.
const TWO_GUARDS: &str = r#"
flags:
  new-checkout:
    type: boolean
    variants: {"on": true, "off": false}
    default_variant: "off"
    rollout: {percentage: 0, split: [{variant: "on", weight: 1}]}
    ramp:
      stages: [10, 50, 100]
      min_stage_duration: 2s
      max_stage_duration: 1h
      guards:
        - {metric: p99.latency, category: performance, kind: value, better: lower, tolerance: 0.1, min_samples: 500}
        - {metric: p99_latency, category: performance, kind: value, better: lower, tolerance: 0.1, min_samples: 500}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn each_guard_tile_is_named_by_its_own_metric() {
    with_browser(|client| async move {
        let server = Server::start_with(&[], TWO_GUARDS).await;
        sign_in(&server, &client).await?;
        client
            .goto(&server.url("/admin#/flags/new-checkout"))
            .await
            .map_err(fail("opening the flag page"))?;
        find(&client, "//article[contains(@class, 'guard')][2]").await?;
        // The name a screen reader gives each tile: the heading its aria-labelledby points at.
        let names = client
            .execute(
                "return [...document.querySelectorAll('article.guard')].map((tile) => \
                 document.getElementById(tile.getAttribute('aria-labelledby'))?.textContent ?? null)",
                vec![],
            )
            .await
            .map_err(fail("reading the tiles' names"))?;
        if names != json!(["p99.latency", "p99_latency"]) {
            return Err(format!("the tiles are named {names}"));
        }
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_read_of_one_flag_does_not_undo_a_newer_full_read() {
    with_browser(|client| async move {
        let server = Server::start_with(&[], RAMPED).await;
        sign_in(&server, &client).await?;
        let state = "//tr[@data-flag='new-checkout']/td[2]";
        find(&client, state).await?;
        find(&client, "//header//*[normalize-space()='Live']").await?;
        // The flag's own read answers two seconds after the server gave it.
        slow_answers(&client, "/flags/new-checkout$").await?;
        let before = server.export("default").await;
        // The kill is read alone (slowly); the import after it, naming many flags, is read
        // as a whole list, which answers first and is the newer.
        server
            .admin_put(
                "/api/v1/environments/default/flags/new-checkout/enabled",
                json!({"enabled": false, "reason": "checkout errors"}),
            )
            .await
            .expect_status(200);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut document = before;
        document["flags"]["new-checkout"]["enabled"] = json!(true);
        add_flags(&mut document, 25);
        server
            .admin_put("/api/v1/environments/default/document", document)
            .await
            .expect_status(200);
        wait_text(
            &client,
            "//main//p[@role='status']",
            Duration::from_secs(5),
            |text| text.starts_with("26 flags"),
        )
        .await?;
        // By now the slow read of the kill has landed too; the newer state stays.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let shown = read(&client, state).await?.unwrap_or_default();
        if shown != "On" {
            return Err(format!(
                "after the slow read landed the flag shows {shown:?}"
            ));
        }
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_changes_reads_the_environments_once_it_settles() {
    with_browser(|client| async move {
        let flags: String = (0..10)
            .map(|index| {
                format!(
                    "  flag-{index}:\n    type: boolean\n    variants: {{\"on\": true, \"off\": false}}\n    default_variant: \"on\"\n"
                )
            })
            .collect();
        let server = Server::start_with(&[], &format!("flags:\n{flags}")).await;
        sign_in(&server, &client).await?;
        find(&client, "//nav//a[normalize-space()='Environments']")
            .await?
            .click()
            .await
            .map_err(fail("opening Environments"))?;
        find(&client, "//main//h1[normalize-space()='Environments']").await?;
        find(&client, "//header//*[normalize-space()='Live']").await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        client
            .execute("window.burstAt = performance.now();", vec![])
            .await
            .map_err(fail("marking the burst"))?;
        // Ten kills of ten flags, ten changes, sent at once so that the burst is one however
        // slow the machine.
        let paths: Vec<String> = (0..10)
            .map(|index| format!("/api/v1/environments/default/flags/flag-{index}/enabled"))
            .collect();
        let changes = paths
            .iter()
            .map(|path| server.admin_put(path, json!({"enabled": false})));
        for reply in futures_util::future::join_all(changes).await {
            reply.expect_status(200);
        }
        let revision = server.revision("default").await;
        // The list ends up at the last revision...
        wait_text(&client, "//main", Duration::from_secs(5), |text| {
            text.contains(&revision.to_string())
        })
        .await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        // ...having read the environments a few times, not once per change.
        let reads = client
            .execute(
                "return performance.getEntriesByType('resource').filter((entry) => \
                 entry.startTime > window.burstAt && \
                 new URL(entry.name).pathname === '/api/v1/environments').length",
                vec![],
            )
            .await
            .map_err(fail("counting the reads"))?;
        if reads.as_u64().is_none_or(|reads| reads > 3) {
            return Err(format!("ten changes read the environments {reads} times"));
        }
        Ok(())
    })
    .await;
}
