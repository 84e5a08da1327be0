//! The built-in status page, loaded by headless Chromium from a running
//! cluster: what a person opening `GET /` actually sees once the page's
//! scripts have run. Needs the Debian `chromium` package; run by
//! scripts/ci/60-observability.sh, which keeps the screenshots.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{eventually, serial, Cluster};

fn results_dir() -> PathBuf {
    let dir = std::env::var("CAIRN_TEST_RESULTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("status-page"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Loads `url` in headless Chromium until the page has rendered its first
/// refresh and its change stream settled; returns the DOM and keeps a
/// screenshot named `name` in the results folder.
fn load(url: &str, name: &str) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/ci/cdp_snapshot.py");
    let dom_path = results_dir().join(format!("{name}.html"));
    let png_path = results_dir().join(format!("{name}.png"));
    let ready = "document.getElementById('updated').textContent !== 'never' && \
                 document.getElementById('events-state').textContent !== 'connecting' && \
                 document.getElementById('events').children.length > 0";
    let out = Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into()))
        .args([script, url])
        .arg(&dom_path)
        .arg(&png_path)
        .args([ready, "30"])
        .output()
        .expect("run the DevTools snapshot helper");
    assert!(
        out.status.success(),
        "snapshot failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let len = std::fs::metadata(&png_path).map(|m| m.len()).unwrap_or(0);
    assert!(
        len > 10_000,
        "screenshot {} is only {len} bytes",
        png_path.display()
    );
    eprintln!("screenshot: {}", png_path.display());
    std::fs::read_to_string(&dom_path).unwrap()
}

/// The text of the element with `id` in a dumped DOM.
fn text_of<'a>(dom: &'a str, id: &str) -> &'a str {
    let open = format!("id=\"{id}\"");
    let at = dom
        .find(&open)
        .unwrap_or_else(|| panic!("no #{id} in:\n{dom}"));
    let start = at + dom[at..].find('>').unwrap() + 1;
    let end = start + dom[start..].find('<').unwrap();
    &dom[start..end]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs chromium; run by scripts/ci/60-observability.sh"]
async fn status_page_shows_members_leader_and_health_and_a_dead_member() {
    let _g = serial().await;
    let mut c = Cluster::start(3, &["--min-free-disk-percent", "1"]).await;
    let leader = c.wait_for_leader(Duration::from_secs(10)).await;
    for i in 0..3 {
        assert!(c
            .put_text(1, &format!("page-{i}"), "shown")
            .await
            .status()
            .is_success());
    }
    let follower = c.others(leader)[0];
    let viewer = c.others(leader)[1];
    eventually(
        "full health everywhere",
        Duration::from_secs(30),
        || async {
            let h: serde_json::Value = c
                .http
                .get(c.node(viewer).url("/health"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (h["score"] == 100).then_some(())
        },
    )
    .await;

    let url = c.node(viewer).url("/");
    let dom = load(&url, "status-page-healthy");
    assert_eq!(text_of(&dom, "leader"), leader.to_string(), "{dom}");
    assert_eq!(text_of(&dom, "score"), "100");
    assert_eq!(text_of(&dom, "status"), "healthy");
    assert_eq!(text_of(&dom, "node"), viewer.to_string());
    for id in 1..=3 {
        assert!(
            dom.contains(&format!("<tr data-id=\"{id}\">")),
            "member {id} row:\n{dom}"
        );
    }
    assert!(dom.contains(&format!("{leader} (leader)")), "{dom}");
    for check in [
        "leader_known",
        "quorum_reachable",
        "checksum_failures",
        "disk_space",
    ] {
        assert!(
            dom.contains(&format!("data-check=\"{check}\" class=\"yes\"")),
            "{check}:\n{dom}"
        );
    }
    assert!(
        text_of(&dom, "error").is_empty(),
        "page reported an error:\n{dom}"
    );
    // Recent changes come from the watch stream (history, then live).
    assert_eq!(text_of(&dom, "events-state"), "live", "{dom}");
    for i in 0..3 {
        assert!(
            dom.contains(&format!(" put artifacts/page-{i} v1<")),
            "event of page-{i}:\n{dom}"
        );
    }

    c.node_mut(follower).kill();
    eventually(
        "the viewer sees the dead member",
        Duration::from_secs(15),
        || async {
            let h: serde_json::Value = c
                .http
                .get(c.node(viewer).url("/health"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (h["score"].as_u64()? < 100).then_some(())
        },
    )
    .await;
    let dom = load(&url, "status-page-member-down");
    assert_eq!(text_of(&dom, "status"), "degraded", "{dom}");
    assert!(
        dom.contains("data-check=\"members_reachable\" class=\"no\""),
        "the failing check is shown:\n{dom}"
    );
    let row_start = dom.find(&format!("<tr data-id=\"{follower}\">")).unwrap();
    let row = &dom[row_start..row_start + dom[row_start..].find("</tr>").unwrap()];
    assert!(
        row.contains("<td class=\"no\">no</td>"),
        "dead member row: {row}"
    );
}
