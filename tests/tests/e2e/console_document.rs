//! The console's Document and Judge screens in a real Chromium: an import typed into the
//! YAML editor tried with a dry run (the change shown, nothing changed on the server) and
//! then applied; a document with a problem shown at its path and its line; two pasted
//! samples judged, with the verdict and both charts.

use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, Locator};

use crate::browser::{button, fail, find, labelled, read, screenshot, sign_in, with_browser};
use crate::harness::Server;

const DOCUMENT: &str = r#"
flags:
  banner:
    type: string
    variants: {plain: "hello", fancy: "HELLO"}
    default_variant: plain
  old-banner:
    type: boolean
    variants: {yes: true, no: false}
    default_variant: "no"
"#;

/// The document a person brings back to edit: `fresh` added, `old-banner` gone, and
/// `banner` as it is until line 5 is edited in the editor.
const EDITED: &str = r#"flags:
  banner:
    type: string
    variants: {plain: "hello", fancy: "HELLO"}
    default_variant: plain
  fresh:
    type: boolean
    description: A flag the import adds
    variants: {yes: true, no: false}
    default_variant: "yes"
"#;

/// The editor lives in a shadow root (see admin-ui/src/document-editor.ts), which XPath
/// does not enter: its text is read by script.
const EDITOR_TEXT: &str = "return document.querySelector('.yaml-editor')?.shadowRoot\
     ?.querySelector('.cm-content')?.textContent ?? ''";

/// A document with two problems, each on a line of its own.
const BROKEN: &str = r#"flags:
  banner:
    type: string
    variants: {plain: "hello", fancy: "HELLO"}
    description: two mistakes below
    default_variant: fanc
    rules:
      - name: staff
        when:
          - attribute: ""
            op: ends_with
            values: ["@example.com"]
        serve: {variant: plain}
"#;

/// Waits until the text at `path` (an XPath, or the editor's text for `EDITOR`) satisfies
/// `done`, and answers it.
async fn until(
    client: &Client,
    path: &str,
    what: &str,
    done: impl Fn(&str) -> bool,
) -> Result<String, String> {
    let start = Instant::now();
    loop {
        let text = if path == EDITOR {
            client
                .execute(EDITOR_TEXT, vec![])
                .await
                .map_err(fail("reading the editor"))?
                .as_str()
                .unwrap_or_default()
                .to_string()
        } else {
            read(client, path).await?.unwrap_or_default()
        };
        if done(&text) {
            return Ok(text);
        }
        if start.elapsed() > Duration::from_secs(5) {
            return Err(format!("{what}: still {text:?} after 5 s"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const EDITOR: &str = "the editor";

/// The editor's text area, found by its accessible name inside the editor's shadow root.
async fn editor(client: &Client) -> Result<Element, String> {
    find(client, "//div[@class='yaml-editor']")
        .await?
        .shadow_root()
        .await
        .map_err(fail("the editor's shadow root"))?
        .find(Locator::Css("[aria-label='Document YAML']"))
        .await
        .map_err(fail("the Document YAML editor"))
}

/// Opens `text` in the editor through the page's file field, as a person opens a file.
async fn open_file(
    client: &Client,
    folder: &tempfile::TempDir,
    name: &str,
    text: &str,
) -> Result<(), String> {
    let file = folder.path().join(name);
    std::fs::write(&file, text).map_err(|error| format!("{}: {error}", file.display()))?;
    find(client, &labelled("Open a file"))
        .await?
        .send_keys(&file.display().to_string())
        .await
        .map_err(fail("choosing the file"))?;
    let last = text.lines().last().unwrap_or_default().trim().to_string();
    until(client, EDITOR, "the opened file", |shown| {
        shown.contains(&last)
    })
    .await?;
    Ok(())
}

async fn open_document(server: &Server, client: &Client) -> Result<(), String> {
    sign_in(server, client).await?;
    find(client, "//nav//a[normalize-space()='Document']")
        .await?
        .click()
        .await
        .map_err(fail("opening Document"))?;
    // The editor shows the environment's document once its code has loaded.
    until(client, EDITOR, "the exported document", |text| {
        text.contains("old-banner")
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_shows_a_changed_flag_and_changes_nothing_then_apply_imports() {
    with_browser(|client| async move {
        let server = Server::start_with(&[], DOCUMENT).await;
        dry_run_then_apply(&server, &client).await
    })
    .await;
}

async fn dry_run_then_apply(server: &Server, client: &Client) -> Result<(), String> {
    open_document(server, client).await?;
    // The editor is styled: its styles are added as constructed style sheets, which the
    // page's Content-Security-Policy must not block.
    let display = client
        .execute(
            "return getComputedStyle(document.querySelector('.yaml-editor').shadowRoot\
             .querySelector('.cm-editor')).display",
            vec![],
        )
        .await
        .map_err(fail("reading the editor's style"))?;
    if display != "flex" {
        return Err(format!("the editor is not styled: display {display}"));
    }

    let revision = server.revision("default").await;
    let before = server.export("default").await;
    let folder = tempfile::tempdir().map_err(|error| error.to_string())?;
    open_file(client, &folder, "edited.yaml", EDITED).await?;
    // By keyboard, as a person edits: Control-Home (the modifier stays down until the null
    // key), down to line 5, End, and `plain` becomes `fancy`.
    editor(client)
        .await?
        .send_keys(&format!(
            "\u{E009}\u{E011}\u{E000}{}\u{E010}{}fancy",
            "\u{E015}".repeat(4),
            "\u{E003}".repeat(5)
        ))
        .await
        .map_err(fail("editing line 5"))?;
    until(client, EDITOR, "the edit", |text| {
        text.contains("default_variant: fancy")
    })
    .await?;
    find(client, &button("Dry run"))
        .await?
        .click()
        .await
        .map_err(fail("clicking Dry run"))?;

    const CHANGED: &str = "//section[@aria-label='Flags changed']";
    find(client, &format!("{CHANGED}//details[@data-key='banner']")).await?;
    let removed = read(client, "//section[@aria-label='Flags removed']")
        .await?
        .unwrap_or_default();
    let added = read(client, "//section[@aria-label='Flags added']")
        .await?
        .unwrap_or_default();
    if !removed.contains("old-banner") || !added.contains("fresh") {
        return Err(format!("added {added:?}, removed {removed:?}"));
    }
    let deleted = read(
        client,
        &format!("{CHANGED}//pre[@class='diff']/span[@class='del']"),
    )
    .await?
    .unwrap_or_default();
    let inserted = read(
        client,
        &format!("{CHANGED}//pre[@class='diff']/span[@class='ins']"),
    )
    .await?
    .unwrap_or_default();
    if !deleted.contains(r#""default_variant": "plain""#) || !deleted.starts_with('-') {
        return Err(format!("the diff's removed line is {deleted:?}"));
    }
    if !inserted.contains(r#""default_variant": "fancy""#) || !inserted.starts_with('+') {
        return Err(format!("the diff's added line is {inserted:?}"));
    }
    client
        .execute(
            "document.querySelector('.workspace').scrollIntoView({block: 'start'})",
            vec![],
        )
        .await
        .map_err(fail("scrolling to the editor"))?;
    screenshot(client, "document").await?;

    // A dry run changes nothing on the server.
    if server.revision("default").await != revision || server.export("default").await != before {
        return Err("the dry run changed the environment".to_string());
    }

    // Apply asks first, then imports.
    find(client, &button("Apply"))
        .await?
        .click()
        .await
        .map_err(fail("clicking Apply"))?;
    let dialog = find(client, "//dialog[@open]").await?;
    let asked = dialog.text().await.map_err(fail("reading the dialog"))?;
    if !asked.contains("1 added, 1 changed, 1 removed") {
        return Err(format!("the confirmation says {asked:?}"));
    }
    find(client, &button("Apply import"))
        .await?
        .click()
        .await
        .map_err(fail("confirming the import"))?;
    until(
        client,
        "//main//*[@role='status']",
        "the import's outcome",
        |text| text.starts_with("Imported into default"),
    )
    .await?;
    let after = server.export("default").await;
    if after["flags"]["banner"]["default_variant"] != "fancy"
        || after["flags"].get("fresh").is_none()
        || after["flags"].get("old-banner").is_some()
    {
        return Err(format!("the import left {after}"));
    }
    if server.revision("default").await <= revision {
        return Err("the import made no revision".to_string());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_document_with_a_problem_shows_it_at_its_path_and_line() {
    with_browser(|client| async move {
        let server = Server::start_with(&[], DOCUMENT).await;
        problem_at_its_path(&server, &client).await
    })
    .await;
}

async fn problem_at_its_path(server: &Server, client: &Client) -> Result<(), String> {
    open_document(server, client).await?;
    let revision = server.revision("default").await;
    // Opened from a file, as a person brings an edited export back: line 6 names a variant
    // that does not exist, line 10 a condition on no attribute.
    let folder = tempfile::tempdir().map_err(|error| error.to_string())?;
    open_file(client, &folder, "broken.yaml", BROKEN).await?;
    // A change made elsewhere meanwhile is noticed, and the opened file stays in the editor.
    server
        .admin_put(
            "/api/v1/environments/default/flags/banner/enabled",
            serde_json::json!({"enabled": false}),
        )
        .await
        .expect_status(200);
    until(
        client,
        "//main//p[button[normalize-space()='Download YAML']]",
        "the new revision",
        |text| text.contains(&format!("Revision {}", revision + 1)),
    )
    .await?;
    let shown = client
        .execute(EDITOR_TEXT, vec![])
        .await
        .map_err(fail("reading the editor"))?;
    if !shown
        .as_str()
        .unwrap_or_default()
        .contains("default_variant: fanc")
    {
        return Err(format!("the opened file was replaced: {shown}"));
    }
    let revision = revision + 1;
    find(client, &button("Dry run"))
        .await?
        .click()
        .await
        .map_err(fail("clicking Dry run"))?;

    for (path, words, line) in [
        ("flags.banner.default_variant", "fanc", 6),
        ("flags.banner.rules[0].when[0].attribute", "empty", 10),
    ] {
        let problem = format!("//ul[@class='problems']/li[@data-path='{path}']");
        find(client, &problem).await?;
        let text = read(client, &problem).await?.unwrap_or_default();
        if !text.contains(words) || !text.contains(&format!("(line {line})")) {
            return Err(format!("the problem at {path} reads {text:?}"));
        }
    }
    // The editor marks the lines themselves.
    let marked = client
        .execute(
            "return [...document.querySelector('.yaml-editor').shadowRoot\
             .querySelectorAll('.cm-line')].filter((line) => \
             line.querySelector('.cm-lintRange-error') !== null).map((line) => line.textContent)",
            vec![],
        )
        .await
        .map_err(fail("reading the marked lines"))?;
    if marked != serde_json::json!(["    default_variant: fanc", "          - attribute: \"\""]) {
        return Err(format!("the editor marks {marked}"));
    }
    if server.revision("default").await != revision {
        return Err("a refused dry run changed the environment".to_string());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_judge_shows_a_verdict_and_both_distributions_for_two_pasted_samples() {
    with_browser(|client| async move {
        let server = Server::start().await;
        judge(&server, &client).await
    })
    .await;
}

async fn judge(server: &Server, client: &Client) -> Result<(), String> {
    sign_in(server, client).await?;
    find(client, "//nav//a[normalize-space()='Judge']")
        .await?
        .click()
        .await
        .map_err(fail("opening Judge"))?;
    // Latencies with a header line: the treatment about 20 ms slower than the control.
    let treatment: String = std::iter::once("latency_ms".to_string())
        .chain((0..30).map(|index| format!("{}", 120 + (index * 7) % 23)))
        .collect::<Vec<_>>()
        .join("\n");
    let control: String = (0..30)
        .map(|index| format!("{}", 100 + (index * 5) % 19))
        .collect::<Vec<_>>()
        .join("\n");
    find(client, &labelled("Treatment"))
        .await?
        .send_keys(&treatment)
        .await
        .map_err(fail("pasting the treatment"))?;
    find(client, &labelled("Control"))
        .await?
        .send_keys(&control)
        .await
        .map_err(fail("pasting the control"))?;
    find(client, &labelled("Tolerance"))
        .await?
        .send_keys("5%")
        .await
        .map_err(fail("typing the tolerance"))?;
    find(client, &button("Judge"))
        .await?
        .click()
        .await
        .map_err(fail("clicking Judge"))?;

    let verdict = until(
        client,
        "//main//h2[@id='verdict-heading']",
        "the verdict",
        |text| !text.is_empty(),
    )
    .await?;
    if verdict != "Verdict: REGRESSION" {
        return Err(format!("the verdict reads {verdict:?}"));
    }
    let numbers = read(client, "//table[@class='numbers']")
        .await?
        .unwrap_or_default();
    if !numbers.contains("30 values") || !numbers.contains("tolerance") {
        return Err(format!("the numbers read {numbers:?}"));
    }
    // Both charts are drawn, the distributions with a legend naming both samples.
    let charts = client
        .execute(
            "return [document.querySelectorAll('figure.chart canvas').length, \
             document.querySelector('figure.chart:last-of-type .u-legend')?.textContent ?? '']",
            vec![],
        )
        .await
        .map_err(fail("counting the charts"))?;
    let canvases = charts[0].as_u64().unwrap_or_default();
    let legend = charts[1].as_str().unwrap_or_default();
    if canvases != 2 || !legend.contains("Treatment") || !legend.contains("Control") {
        return Err(format!("charts: {charts}"));
    }
    client
        .execute(
            "document.getElementById('verdict-heading').scrollIntoView({block: 'start'})",
            vec![],
        )
        .await
        .map_err(fail("scrolling to the verdict"))?;
    screenshot(client, "judge").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_after_the_environment_changed_under_the_dialog_imports_nothing() {
    with_browser(|client| async move {
        let server = Server::start_with(&[], DOCUMENT).await;
        stale_apply(&server, &client).await
    })
    .await;
}

async fn stale_apply(server: &Server, client: &Client) -> Result<(), String> {
    open_document(server, client).await?;
    let folder = tempfile::tempdir().map_err(|error| error.to_string())?;
    open_file(client, &folder, "edited.yaml", EDITED).await?;
    find(client, &button("Apply"))
        .await?
        .click()
        .await
        .map_err(fail("clicking Apply"))?;
    find(client, "//dialog[@open]").await?;

    // While the person reads the confirmation, someone else changes a flag.
    let path = "/api/v1/environments/default/document";
    let mut theirs = server.export("default").await;
    theirs["flags"]["banner"]["default_variant"] = serde_json::json!("fancy");
    server
        .admin_put(path, theirs.clone())
        .await
        .expect_status(200);
    let revision = server.revision("default").await;

    find(client, &button("Apply import"))
        .await?
        .click()
        .await
        .map_err(fail("confirming the import"))?;
    let said = until(
        client,
        "//main//*[@role='status']",
        "the refused import",
        |text| text.contains("changed since the dry run"),
    )
    .await?;
    if !said.contains("run it again") || !said.contains("Nothing was imported") {
        return Err(format!("the refusal reads {said:?}"));
    }
    // Their change stands, and the file's import did not happen.
    if server.revision("default").await != revision || server.export("default").await != theirs {
        return Err("the stale import changed the environment".to_string());
    }
    Ok(())
}
