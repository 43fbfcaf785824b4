//! The flag page of the web console in a real Chromium: a rule edited into an invalid flag
//! shows each of the server's problems beside the field it names and changes nothing; the
//! kill switch through its dialog, by keyboard, with a reason that reaches the audit log, and
//! back on; the evaluation playground explaining a typed context.

use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::key::Key;
use fantoccini::{Client, Locator};
use serde_json::{json, Value};

use crate::browser::{button, fail, find, labelled, read, screenshot, sign_in, with_browser, WAIT};
use crate::harness::Server;

const DOCUMENT: &str = r#"
segments:
  beta:
    when: [{attribute: track, op: eq, values: [beta]}]
flags:
  new-checkout:
    type: boolean
    description: Single-page checkout
    variants: {"on": true, "off": false}
    default_variant: "off"
    rules:
      - name: staff
        when: [{attribute: email, op: ends_with, values: ["@example.com"]}]
        serve: {variant: "on"}
      - name: recent apps
        when: [{attribute: appVersion, op: semver_gte, values: ["2.4.0"]}]
        serve: {variant: "on"}
      - when:
          - {attribute: plan, op: in, values: ["42", 42, true, " padded", "plain", "a\"b"]}
          - {attribute: build, op: contains, values: ["7", "\"quoted\""]}
        segment: beta
        serve: {variant: "on"}
    rollout: {stickiness: userId, percentage: 30, split: [{variant: "on", weight: 1}]}
  banner:
    type: string
    variants: {plain: "hello", fancy: "HELLO"}
    default_variant: plain
"#;

const FLAG: &str = "/api/v1/environments/default/flags/new-checkout";

/// The state line under the page's `h1`: "On" or "Killed", and the revision.
const STATE: &str = "//main//h1[normalize-space()='new-checkout']/following-sibling::p[1]";

/// Signs in and opens new-checkout's page from the list, as a person would.
async fn open_flag(server: &Server, client: &Client) -> Result<(), String> {
    sign_in(server, client).await?;
    // The list is drawn again when its data arrive (the flags, then live updates), which can
    // replace the link between finding it and clicking it: then it is found again.
    let start = Instant::now();
    loop {
        let link = find(client, "//table//th/a[normalize-space()='new-checkout']").await?;
        match link.click().await {
            Ok(()) => break,
            Err(error) if start.elapsed() > WAIT => {
                return Err(format!("opening new-checkout: {error}"))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    find(client, STATE).await?;
    Ok(())
}

/// The control labelled `label` inside the fieldset whose legend is `legend`.
fn in_group(legend: &str, label: &str) -> String {
    format!("//*[@id=//fieldset[legend[normalize-space()='{legend}']]//label[normalize-space()='{label}']/@for]")
}

/// A problem shown in the same field as the control labelled `label` in group `legend`.
fn problem_at(legend: &str, label: &str) -> String {
    format!(
        "//fieldset[legend[normalize-space()='{legend}']]//div[label[normalize-space()='{label}']]/p[@class='problem']"
    )
}

/// Replaces a field's text by typing, as a person does: select all, then type.
async fn retype(field: &Element, text: &str) -> Result<(), String> {
    field
        .send_keys(&format!("{}a{}{text}", Key::Control, Key::Null))
        .await
        .map_err(fail(&format!("typing {text:?}")))
}

async fn click(client: &Client, path: &str) -> Result<(), String> {
    crate::browser::click(client, path, path).await
}

/// Waits until the text at `path` satisfies `done`.
async fn wait_for_text(
    client: &Client,
    path: &str,
    done: impl Fn(&str) -> bool,
) -> Result<String, String> {
    crate::browser::wait_text(client, path, WAIT, done).await
}

async fn attribute(client: &Client, path: &str, name: &str) -> Result<Option<String>, String> {
    find(client, path)
        .await?
        .attr(name)
        .await
        .map_err(fail(&format!("reading {name} of {path}")))
}

/// The controls on screen that have no accessible name, which a screen reader would announce
/// as a bare "button" or "edit text": a name from `aria-label`, `aria-labelledby`, a `label`,
/// or a button's or link's own text.
async fn unnamed_controls(client: &Client) -> Result<Vec<String>, String> {
    let found = client
        .execute(
            r#"
            const text = (node) => (node === null ? "" : node.textContent.trim());
            const unnamed = [];
            for (const control of document.querySelectorAll("main button, main input, main select, main textarea, main a[href], main dialog")) {
              if (control.closest("[hidden]") !== null) {
                continue;
              }
              const name =
                (control.getAttribute("aria-label") ?? "").trim() ||
                (control.getAttribute("aria-labelledby") ?? "").split(" ").map((id) => text(document.getElementById(id))).join(" ").trim() ||
                [...(control.labels ?? [])].map(text).join(" ").trim() ||
                (control.tagName === "BUTTON" || control.tagName === "A" ? text(control) : "");
              if (name === "") {
                unnamed.push(control.outerHTML.slice(0, 160));
              }
            }
            return unnamed;
            "#,
            vec![],
        )
        .await
        .map_err(fail("looking for controls without a name"))?;
    Ok(found
        .as_array()
        .map(|items| items.iter().map(|item| item.to_string()).collect())
        .unwrap_or_default())
}

async fn every_control_is_named(client: &Client, when: &str) -> Result<(), String> {
    let unnamed = unnamed_controls(client).await?;
    if unnamed.is_empty() {
        Ok(())
    } else {
        Err(format!("{when}, controls without a name: {unnamed:?}"))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_edit_shows_each_problem_beside_its_field_and_changes_nothing() {
    with_browser(|client| async move {
        let server = Server::start_with(&[], DOCUMENT).await;
        edit(&server, &client).await
    })
    .await;
}

async fn edit(server: &Server, client: &Client) -> Result<(), String> {
    open_flag(server, client).await?;
    let before = server.admin_get(FLAG).await.expect_status(200).json();
    // The definition is shown as text.
    let page = read(client, "//main").await?.unwrap_or_default();
    for shown in [
        "Single-page checkout",
        "staff",
        "@example.com",
        "30%",
        "userId",
    ] {
        if !page.contains(shown) {
            return Err(format!("the page does not show {shown:?}: {page:?}"));
        }
    }

    click(client, &button("Edit flag")).await?;
    retype(
        &find(client, &in_group("Rule 1", "Serve variant")).await?,
        "yes",
    )
    .await?;
    // Rule 2's condition is its "Condition 1" group: found under rule 2.
    let version = find(
        client,
        "//*[@id=//fieldset[legend[normalize-space()='Rule 2']]//label[normalize-space()='Values']/@for]",
    )
    .await?;
    retype(&version, "2.4").await?;
    click(client, &button("Save flag")).await?;

    let serve = problem_at("Rule 1", "Serve variant");
    let text = wait_for_text(client, &serve, |text| !text.is_empty()).await?;
    if !text.contains("no variant is named `yes`") {
        return Err(format!("rule 1's serve variant shows {text:?}"));
    }
    let values = "//fieldset[legend[normalize-space()='Rule 2']]//div[label[normalize-space()='Values']]/p[@class='problem']";
    let text = read(client, values).await?.unwrap_or_default();
    if !text.contains("2.4") {
        return Err(format!("rule 2's values show {text:?}"));
    }
    // Each problem is tied to its field for a screen reader too.
    let field = in_group("Rule 1", "Serve variant");
    let problem_id = attribute(client, &serve, "id").await?.unwrap_or_default();
    let described = attribute(client, &field, "aria-describedby")
        .await?
        .unwrap_or_default();
    if attribute(client, &field, "aria-invalid").await?.as_deref() != Some("true")
        || !described.split(' ').any(|id| id == problem_id)
    {
        return Err(format!(
            "the serve field is not marked invalid by {problem_id:?}: {described:?}"
        ));
    }
    // The summary at the top of the form names each place in the words on screen.
    let summary = read(client, "//form//div[@role='alert']")
        .await?
        .unwrap_or_default();
    if !summary.contains("Rules › Rule 1 › Serve variant: no variant is named `yes`")
        || !summary.contains("Rules › Rule 2 › Condition 1 › Values:")
    {
        return Err(format!("the summary of the problems reads {summary:?}"));
    }
    every_control_is_named(client, "with the edit form and its problems").await?;
    // Rule 1's condition is fine and says nothing.
    if read(client, &problem_at("Rule 1", "Values"))
        .await?
        .is_some()
    {
        return Err("a problem is shown at a field that has none".to_string());
    }
    let after = server.admin_get(FLAG).await.expect_status(200).json();
    if after != before {
        return Err(format!("a refused edit changed the flag: {after}"));
    }

    // Corrected, it saves: the form closes and the page shows the flag as stored.
    retype(
        &find(client, &in_group("Rule 1", "Serve variant")).await?,
        "off",
    )
    .await?;
    retype(&version, "2.4.0").await?;
    click(client, &button("Save flag")).await?;
    wait_for_gone(client, &button("Save flag")).await?;
    let saved = server.admin_get(FLAG).await.expect_status(200).json();
    if saved["flag"]["rules"][0]["serve"]["variant"] != "off" {
        return Err(format!("the corrected edit was not stored: {saved}"));
    }
    // Everything the form did not touch is as it was: values that read as other types
    // (the string "42", a string with a space at its start) come back as they were.
    let mut expected = before["flag"].clone();
    expected["rules"][0]["serve"]["variant"] = json!("off");
    if saved["flag"] != expected {
        return Err(format!("the save changed more than the rule: {saved}"));
    }
    wait_for_text(client, "//main//ol[@class='rules']/li[1]", |text| {
        text.ends_with("serve off")
    })
    .await?;
    screenshot(client, "flag").await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_kill_switch_takes_a_reason_by_keyboard_and_turns_back_on() {
    with_browser(|client| async move {
        let server = Server::start_with(&[], DOCUMENT).await;
        kill(&server, &client).await
    })
    .await;
}

async fn kill(server: &Server, client: &Client) -> Result<(), String> {
    open_flag(server, client).await?;
    wait_for_text(client, STATE, |text| text.starts_with("On")).await?;

    // Escape closes the dialog and changes nothing; the focus goes back to Kill.
    click(client, &button("Kill")).await?;
    let reason = find(client, &labelled("Reason")).await?;
    every_control_is_named(client, "with the Kill dialog open").await?;
    let in_dialog = client
        .execute(
            "return document.activeElement !== null && document.activeElement.closest('dialog[open]') !== null \
             && document.activeElement.id === document.evaluate(\"//label[normalize-space()='Reason']/@for\", document, null, XPathResult.STRING_TYPE, null).stringValue",
            vec![],
        )
        .await
        .map_err(fail("reading the focus"))?;
    if in_dialog != json!(true) {
        return Err("the Reason field of an open dialog does not have the focus".to_string());
    }
    reason
        .send_keys(&format!("{}", Key::Escape))
        .await
        .map_err(fail("pressing Escape"))?;
    wait_for_gone(client, "//dialog").await?;
    let focused = client
        .execute("return document.activeElement.textContent", vec![])
        .await
        .map_err(fail("reading the focus"))?;
    if focused != json!("Kill") {
        return Err(format!("after Escape the focus is on {focused}"));
    }
    if server.admin_get(FLAG).await.expect_status(200).json()["flag"].get("enabled")
        == Some(&json!(false))
    {
        return Err("Escape killed the flag".to_string());
    }

    // Kill from the keyboard: Enter on the focused Kill, type the reason, Enter.
    client
        .active_element()
        .await
        .map_err(fail("the focused element"))?
        .send_keys(&format!("{}", Key::Enter))
        .await
        .map_err(fail("pressing Enter on Kill"))?;
    find(client, &button("Kill flag")).await?;
    let reason = find(client, &labelled("Reason")).await?;
    reason
        .send_keys(&format!("checkout errors, INC-4411{}", Key::Enter))
        .await
        .map_err(fail("typing the reason"))?;
    wait_for_text(client, STATE, |text| text.starts_with("Killed")).await?;
    wait_for_gone(client, "//dialog").await?;
    let flag = server.admin_get(FLAG).await.expect_status(200).json();
    if flag["flag"]["enabled"] != json!(false) {
        return Err(format!("the page says Killed but the flag is {flag}"));
    }
    let audit = server
        .admin_get("/api/v1/audit?environment=default&flag=new-checkout&limit=1")
        .await
        .expect_status(200)
        .json();
    let entry = &audit["entries"][0];
    if entry["reason"] != "checkout errors, INC-4411" || entry["operation"] != "kill_switch" {
        return Err(format!("the kill's audit entry is {entry}"));
    }

    // Turned on, after a confirmation.
    click(client, &button("Turn on")).await?;
    click(client, &button("Turn flag on")).await?;
    wait_for_text(client, STATE, |text| text.starts_with("On")).await?;
    let flag: Value = server.admin_get(FLAG).await.expect_status(200).json();
    if flag["flag"]["enabled"] != json!(true) {
        return Err(format!("the page says On but the flag is {flag}"));
    }
    find(client, &button("Kill")).await?;
    Ok(())
}

async fn wait_for_gone(client: &Client, path: &str) -> Result<(), String> {
    let start = Instant::now();
    while client.find(Locator::XPath(path)).await.is_ok() {
        if start.elapsed() > WAIT {
            return Err(format!("{path} is still there"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_playground_shows_what_every_flag_gives_a_typed_context_and_why() {
    with_browser(|client| async move {
        let server = Server::start_with(&[], DOCUMENT).await;
        playground(&server, &client).await
    })
    .await;
}

async fn playground(server: &Server, client: &Client) -> Result<(), String> {
    open_flag(server, client).await?;
    let context = find(client, &labelled("Context")).await?;

    // Not JSON: said at the field, and nothing is asked.
    retype(&context, "{targetingKey: u}").await?;
    click(client, &button("Explain")).await?;
    wait_for_text(client, "//p[@id='playground-problem']", |text| {
        text.starts_with("Not JSON")
    })
    .await?;

    retype(
        &context,
        r#"{"targetingKey": "u", "email": "ada@example.com"}"#,
    )
    .await?;
    click(client, &button("Explain")).await?;
    let row = |key: &str| {
        format!("//table[@class='explained']//tr[th[starts-with(normalize-space(), '{key}')]]")
    };
    let checkout = wait_for_text(client, &row("new-checkout"), |text| !text.is_empty()).await?;
    for part in ["true", "TARGETING_MATCH", "rule 1, staff"] {
        if !checkout.contains(part) {
            return Err(format!(
                "new-checkout's row is {checkout:?}, without {part:?}"
            ));
        }
    }
    let banner = read(client, &row("banner")).await?.unwrap_or_default();
    if !(banner.contains("\"hello\"") && banner.contains("STATIC")) {
        return Err(format!("banner's row is {banner:?}"));
    }

    // Into the rollout: the bucket the server computed, and the cohort. The unit is one the
    // server puts inside the 30%, so that every column has something to say.
    let mut inside = None;
    for unit in 0..100 {
        let unit = json!({"userId": format!("user-{unit}"), "email": "ada@example.org"});
        let explained = server
            .admin_post(
                "/api/v1/environments/default/explain",
                json!({"context": unit}),
            )
            .await
            .expect_status(200)
            .json();
        let checkout = explained["flags"]
            .as_array()
            .and_then(|flags| flags.iter().find(|flag| flag["key"] == "new-checkout"))
            .cloned()
            .ok_or(format!("no new-checkout in {explained}"))?;
        if checkout["reason"] == "SPLIT" {
            inside = Some((unit, checkout));
            break;
        }
    }
    let (unit, expected) = inside.ok_or("no unit of 100 is in a 30% rollout")?;
    let bucket = expected["rollout"]["bucket"]
        .as_u64()
        .ok_or(format!("no bucket in {expected}"))?;
    retype(&context, &unit.to_string()).await?;
    context
        .send_keys(&format!("{}{}{}", Key::Control, Key::Enter, Key::Null))
        .await
        .map_err(fail("pressing Ctrl+Enter"))?;
    let grouped = bucket
        .to_string()
        .as_bytes()
        .rchunks(3)
        .rev()
        .map(|chunk| String::from_utf8_lossy(chunk).into_owned())
        .collect::<Vec<_>>()
        .join(",");
    // The unit's bucket against the rollout's threshold, as people read numbers: 4,127.
    let place = format!("{grouped} < 30,000 (30%): in the rollout");
    let checkout =
        wait_for_text(client, &row("new-checkout"), |text| text.contains(&place)).await?;
    for part in ["true", "SPLIT", "treatment"] {
        if !checkout.contains(part) {
            return Err(format!(
                "new-checkout's row is {checkout:?}, without {part:?}; expected {expected}"
            ));
        }
    }
    every_control_is_named(client, "with the playground's answer").await?;
    client
        .execute(
            "document.getElementById('playground-heading').scrollIntoView()",
            vec![],
        )
        .await
        .map_err(fail("scrolling to the playground"))?;
    screenshot(client, "playground").await?;

    // In an environment of many flags, the table is filtered by key.
    let filter = find(client, &labelled("Filter explained flags")).await?;
    filter.send_keys("bann").await.map_err(fail("filtering"))?;
    wait_for_gone(client, &row("new-checkout")).await?;
    find(client, &row("banner")).await?;
    filter
        .send_keys(&format!("{}a{}{}", Key::Control, Key::Null, Key::Backspace))
        .await
        .map_err(fail("clearing the filter"))?;

    // A kill made elsewhere is explained again for the same context, without a click.
    server
        .admin_put(&format!("{FLAG}/enabled"), json!({"enabled": false}))
        .await
        .expect_status(200);
    let killed = Instant::now();
    loop {
        let text = read(client, &row("new-checkout"))
            .await?
            .unwrap_or_default();
        if text.contains("DISABLED") {
            break;
        }
        if killed.elapsed() > Duration::from_secs(2) {
            return Err(format!("2 s after the kill the playground says {text:?}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}
