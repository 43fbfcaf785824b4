//! The console's ramp section and incidents, in a real Chromium: a ramp killed by its guard
//! on observations posted over HTTP, seen live on the flag page (the guard's tile under its
//! metric's name, the regression, the kill and its reach) and as an incident reached from
//! the Incidents list; and a ramp started, paused and resumed with the section's buttons,
//! each confirmed in a dialog, advancing refused without a reason, and what it waits for
//! and its sample ratio said in words; and a ramp held because its cohorts' counts lean
//! towards a sample-ratio mismatch, said so in the flags list and on the flag page.

use std::time::Duration;

use fantoccini::Client;
use serde_json::{json, Value};

use crate::browser::{
    button, click, fail, find, read, screenshot, sign_in, wait_text, with_browser,
};
use crate::harness::Server;
use crate::ramps::RAMPED;

const RAMP: &str = "/api/v1/environments/default/flags/new-checkout/ramp";
const SECTION: &str = "//section[@aria-labelledby='ramp-heading']";

async fn ramp_server() -> Server {
    Server::start_with(&[("RIPCORD_RAMP_TICK", "1s")], RAMPED).await
}

/// The word the ramp section gives the ramp's state: Running, Paused, Killed...
fn state_path() -> String {
    format!("{SECTION}//p[contains(@class, 'ramp-state')]/strong")
}

/// Clicks the ramp control `name`, types `reason` into the dialog it opens and confirms
/// with `confirm`.
async fn operate(client: &Client, name: &str, reason: &str, confirm: &str) -> Result<(), String> {
    click(client, &format!("{SECTION}{}", button(name)), name).await?;
    let field = find(
        client,
        "//dialog[@open]//textarea[@id=//dialog[@open]//label[normalize-space()='Reason']/@for]",
    )
    .await?;
    field
        .send_keys(reason)
        .await
        .map_err(fail("typing the reason"))?;
    click(
        client,
        &format!("//dialog[@open]{}", button(confirm)),
        confirm,
    )
    .await
}

async fn status(server: &Server) -> Value {
    server.admin_get(RAMP).await.expect_status(200).json()
}

/// Waits until the current stage's warm-up is over, so that observations count.
async fn past_warm_up(server: &Server) {
    let status = status(server).await;
    let counts_from = status["counts_from"]
        .as_str()
        .and_then(|text| {
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()
        })
        .unwrap_or_else(|| panic!("a running ramp has counts_from: {status:#}"));
    while time::OffsetDateTime::now_utc() <= counts_from {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The ramp section's paragraph of class `class` (`hold`, `srm`), once `done` accepts it.
async fn section_words(
    client: &Client,
    class: &str,
    done: impl Fn(&str) -> bool,
) -> Result<String, String> {
    let path = format!("{SECTION}//p[contains(@class, '{class}')]");
    wait_text(client, &path, Duration::from_secs(8), done).await
}

/// A failure of the test as a message, so that the browser is closed before it is reported.
fn check(holds: bool, message: impl FnOnce() -> String) -> Result<(), String> {
    if holds {
        Ok(())
    } else {
        Err(message())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ramp_killed_by_its_guard_shows_on_the_flag_page_and_as_an_incident() {
    with_browser(|client| async move {
        let server = ramp_server().await;
        let app = server.create_key("app", "client", Some("default")).await;
        server
            .admin_post(&format!("{RAMP}/start"), json!({"reason": "release 4.2"}))
            .await
            .expect_status(200);
        sign_in(&server, &client).await?;
        client
            .goto(&server.url("/admin#/flags/new-checkout"))
            .await
            .map_err(fail("opening the flag page"))?;
        wait_text(&client, &state_path(), Duration::from_secs(5), |text| {
            text == "Running"
        })
        .await?;
        // The guard has a tile under its metric's name before it has judged anything.
        let tile = format!(
            "{SECTION}//article[contains(@class, 'guard')][.//h4[normalize-space()='errors']]"
        );
        find(&client, &tile).await?;
        find(&client, "//header//*[normalize-space()='Live']").await?;

        // One app instance fetches its flags before the kill, and not after: the kill's
        // reach is none of one.
        let fetched = server
            .client()
            .post(server.url("/ofrep/v1/evaluate/flags"))
            .bearer_auth(&app.token)
            .header("x-ripcord-instance", "phone-a")
            .json(&json!({"context": {"targetingKey": "user-7"}}))
            .send()
            .await
            .map_err(|error| format!("fetching as phone-a: {error}"))?;
        check(fetched.status() == 200, || {
            format!("phone-a got {}", fetched.status())
        })?;

        past_warm_up(&server).await;
        // 30% errors in treatment against 1% in control, far past the 2-point tolerance.
        crate::ramps::post_errors(&server, &app.token, 0, 1000, [300, 10]).await;
        wait_text(&client, &state_path(), Duration::from_secs(8), |text| {
            text == "Killed"
        })
        .await?;
        let tile_text = wait_text(&client, &tile, Duration::from_secs(5), |text| {
            text.contains("Killed the ramp")
        })
        .await?;
        for expected in [
            "Regression",
            "treatment 1,000 · control 1,000",
            "Treatment worse by 29.00 pp",
            "the tolerance allows 2.00 pp worse",
            "against the threshold",
        ] {
            if !tile_text.contains(expected) {
                return Err(format!("the guard tile lacks {expected:?}: {tile_text}"));
            }
        }
        // The effect is drawn, and the evidence charted over the looks.
        find(
            &client,
            &format!("{tile}//*[local-name()='svg' and @role='img']"),
        )
        .await?;
        find(&client, &format!("{tile}//figure//canvas")).await?;
        let section = read(&client, SECTION).await?.unwrap_or_default();
        for expected in [
            "Kill reach: 0 of 1 instances active in the last hour have fetched the kill (0%)",
            "Stage 1 · 10%",
            "killed here",
            "Start ramp",
        ] {
            if !section.contains(expected) {
                return Err(format!("the ramp section lacks {expected:?}: {section}"));
            }
        }
        client
            .execute(
                "document.getElementById('ramp-heading').scrollIntoView()",
                vec![],
            )
            .await
            .map_err(fail("scrolling to the ramp"))?;
        screenshot(&client, "ramp").await?;

        // The Incidents list links the incident by its flag key.
        click(
            &client,
            "//nav//a[normalize-space()='Incidents']",
            "Incidents",
        )
        .await?;
        let link = "//main//table//a[normalize-space()='new-checkout']";
        find(&client, link).await?;
        let row = read(&client, &format!("{link}/ancestor::tr"))
            .await?
            .unwrap_or_default();
        if !row.contains("Killed") || !row.contains("errors") {
            return Err(format!("the incident's row says {row:?}"));
        }
        screenshot(&client, "incidents").await?;
        click(&client, link, "the incident").await?;
        let heading = wait_text(&client, "//main//h1", Duration::from_secs(5), |text| {
            text.contains("new-checkout killed")
        })
        .await?;
        let incident_id = status(&server).await["kill"]["incident"].clone();
        if !heading.contains(&format!("Incident {incident_id}")) {
            return Err(format!(
                "the incident page is headed {heading:?}, not incident {incident_id}"
            ));
        }
        let page = wait_text(&client, "//main", Duration::from_secs(5), |text| {
            text.contains("Timeline of the ramp") && text.contains("release 4.2")
        })
        .await?;
        for expected in [
            "By the guarderrors",
            "reached the boundary",
            "Every guard's evidence",
            "Started by",
            "Killed by ramp-controller",
        ] {
            if !page.contains(expected) {
                return Err(format!("the incident page lacks {expected:?}: {page}"));
            }
        }
        find(
            &client,
            "//main//article[contains(@class, 'guard')][.//h3[normalize-space()='errors']]",
        )
        .await?;
        screenshot(&client, "incident").await?;
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_ramp_buttons_start_pause_resume_advance_and_abort_a_ramp_and_advancing_needs_a_reason()
{
    with_browser(|client| async move {
        let server = ramp_server().await;
        sign_in(&server, &client).await?;
        client
            .goto(&server.url("/admin#/flags/new-checkout"))
            .await
            .map_err(fail("opening the flag page"))?;
        let patience = Duration::from_secs(5);
        wait_text(&client, &state_path(), patience, |text| text == "Pending").await?;
        // Only what the state allows is offered.
        if read(&client, &format!("{SECTION}{}", button("Pause ramp")))
            .await?
            .is_some()
        {
            return Err("a pending ramp offers Pause ramp".to_string());
        }

        operate(&client, "Start ramp", "canary", "Start").await?;
        wait_text(&client, &state_path(), patience, |text| text == "Running").await?;
        let started = status(&server).await;
        check(started["status"] == "running", || format!("{started:#}"))?;

        // Why it waits, in words: the observations the stage still needs, and how long they
        // take at the rate they arrive.
        let app = server.create_key("app", "client", Some("default")).await;
        past_warm_up(&server).await;
        crate::ramps::post_errors(&server, &app.token, 0, 100, [1, 1]).await;
        let hold = section_words(&client, "hold", |text| {
            text.ends_with("at the current rate.")
        })
        .await?;
        check(
            hold.contains("Waiting for ") && hold.contains(" more observations, "),
            || format!("the hold reads {hold:?}"),
        )?;
        // Who the treatment is compared with, from the ramp block.
        let described = read(
            &client,
            &format!("{SECTION}//p[contains(text(), 'Compared with')]"),
        )
        .await?;
        check(
            described.as_deref()
                == Some("Compared with as many units as the treatment (control: equal)."),
            || format!("the control reads {described:?}"),
        )?;
        // And whether the cohorts report in the ratio their bands imply (equal here).
        let ratio = section_words(&client, "srm", |text| text.starts_with("Sample ratio")).await?;
        check(
            ratio.starts_with(
                "Sample ratio as expected: 100 treatment and 100 control distinct units",
            ) && ratio.contains("1.0000, 1.0000 expected"),
            || format!("the sample ratio reads {ratio:?}"),
        )?;

        operate(&client, "Pause ramp", "", "Pause").await?;
        wait_text(&client, &state_path(), patience, |text| text == "Paused").await?;
        let paused = status(&server).await;
        check(paused["pause_reason"] == "manual", || format!("{paused:#}"))?;

        // Advancing by hand is refused without a reason, and nothing moves.
        operate(&client, "Advance stage", "", "Advance").await?;
        let refusal = wait_text(
            &client,
            "//dialog[@open]//*[@role='alert']",
            patience,
            |text| text.contains("needs a reason"),
        )
        .await?;
        check(refusal.contains("reason"), || refusal.clone())?;
        click(
            &client,
            &format!("//dialog[@open]{}", button("Cancel")),
            "Cancel",
        )
        .await?;
        let held = status(&server).await;
        check(
            held["stage"] == json!(0) && held["status"] == "paused",
            || format!("advanced without a reason: {held:#}"),
        )?;

        operate(&client, "Resume ramp", "", "Resume").await?;
        wait_text(&client, &state_path(), patience, |text| text == "Running").await?;
        let resumed = status(&server).await;
        check(resumed["status"] == "running", || format!("{resumed:#}"))?;

        // With a reason, advancing by hand moves to the next stage; aborting ends the ramp.
        operate(&client, "Advance stage", "guards look fine", "Advance").await?;
        let deadline = std::time::Instant::now() + patience;
        loop {
            let advanced = status(&server).await;
            if advanced["stage"] == json!(1) {
                break;
            }
            check(std::time::Instant::now() < deadline, || {
                format!("not advanced with a reason: {advanced:#}")
            })?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        operate(&client, "Abort ramp", "", "Abort").await?;
        wait_text(&client, &state_path(), patience, |text| text == "Aborted").await?;
        let aborted = status(&server).await;
        check(aborted["status"] == "aborted", || format!("{aborted:#}"))?;

        // Each press is in the audit log under the key's name, the start with the reason typed.
        let audit = server
            .admin_get("/api/v1/audit?environment=default&flag=new-checkout")
            .await
            .expect_status(200)
            .json();
        let actions: Vec<(&str, Option<&str>)> = audit["entries"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|entry| entry["actor"] != "ramp-controller")
            .filter_map(|entry| {
                entry["action"]
                    .as_str()
                    .filter(|action| action.starts_with("ramp."))
                    .map(|action| (action, entry["reason"].as_str()))
            })
            .collect();
        let start = actions.iter().find(|(action, _)| *action == "ramp.start");
        check(
            start.is_some_and(|(_, reason)| {
                reason.is_some_and(|reason| reason.ends_with(": canary"))
            }),
            || format!("the start's reason is not kept: {actions:?}"),
        )?;
        let advance = actions.iter().find(|(action, _)| *action == "ramp.advance");
        check(
            advance.is_some_and(|(_, reason)| {
                reason.is_some_and(|reason| reason.contains(": guards look fine"))
            }),
            || format!("the advance's reason is not kept: {actions:?}"),
        )?;
        for action in ["ramp.pause", "ramp.resume", "ramp.abort"] {
            check(actions.iter().any(|(found, _)| *found == action), || {
                format!("{action} missing: {actions:?}")
            })?;
        }
        Ok(())
    })
    .await;
}

/// A ramp whose guards pass but whose cohorts' counts lean towards a sample-ratio mismatch
/// says so in the flags list's badge and on the flag page.
#[tokio::test(flavor = "multi_thread")]
async fn a_ramp_held_on_doubtful_counts_says_so_in_the_list_and_on_the_flag_page() {
    with_browser(|client| async move {
        let leaning = crate::srm::a_ramp_with_leaning_counts().await;
        let server = &leaning.server;
        sign_in(server, &client).await?;
        client
            .goto(&server.url("/admin#/flags"))
            .await
            .map_err(fail("opening the flags list"))?;
        let row = wait_text(
            &client,
            "//table//tr[th/a[normalize-space()='new-checkout']]",
            Duration::from_secs(15),
            |text| text.contains("in doubt"),
        )
        .await?;
        check(
            row.contains("Ramping: stage 1 of 3 · 20% · cohorts' counts in doubt"),
            || format!("the row reads {row:?}"),
        )?;
        client
            .goto(&server.url("/admin#/flags/new-checkout"))
            .await
            .map_err(fail("opening the flag page"))?;
        let hold = section_words(&client, "hold", |text| {
            text.contains("sample-ratio mismatch")
        })
        .await?;
        check(
            hold.starts_with(
                "Every guard passes, but the cohorts' counts lean towards a sample-ratio mismatch",
            ),
            || format!("the hold reads {hold:?}"),
        )?;
        let ratio = section_words(&client, "srm", |text| text.starts_with("Sample ratio")).await?;
        let treated = format!("So far: {} treatment and ", leaning.sent);
        check(
            ratio
                .starts_with("Sample ratio in doubt: this stage's counts lean towards a mismatch.")
                && ratio.contains(&treated),
            || format!("the sample ratio reads {ratio:?}"),
        )?;
        let shown = status(server).await;
        check(shown["hold"] == "sample_ratio", || format!("{shown:#}"))
    })
    .await;
}
