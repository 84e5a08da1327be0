//! A watcher that follows `/v1/watch` (Server-Sent Events) through the
//! nodes for the whole run, resuming with `Last-Event-ID` on another node
//! whenever a stream breaks or goes quiet.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One change event as the stream delivered it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchEvent {
    /// The revision (Raft index) of the change.
    pub revision: u64,
    /// `put`, `delete` or `expire`.
    pub kind: String,
    /// The namespaced key, e.g. `kv/<key>`.
    pub key: String,
    /// The object's version after the change.
    #[serde(default)]
    pub version: Option<u64>,
}

/// What the watcher collected.
#[derive(Debug, Default)]
pub struct Watched {
    /// Every event, in delivery order.
    pub events: Vec<WatchEvent>,
    /// Error events (e.g. a compacted revision) and unparsable data.
    pub errors: Vec<String>,
    /// Streams opened (1 + reconnections).
    pub streams: usize,
}

/// Follows the events under `prefix` until `stop` fires.
pub async fn follow(
    urls: Vec<String>,
    prefix: String,
    out: Arc<Mutex<Watched>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let http = match reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(1))
        .build()
    {
        Ok(h) => h,
        Err(e) => {
            lock(&out).errors.push(format!("client: {e}"));
            return;
        }
    };
    let mut last: Option<u64> = None;
    let mut turn = 0usize;
    while !*stop.borrow() {
        let url = &urls[turn % urls.len()];
        turn += 1;
        let mut req = http
            .get(format!("{url}/v1/watch"))
            .query(&[("prefix", prefix.as_str()), ("from_revision", "1")]);
        if let Some(l) = last {
            req = req.header("Last-Event-ID", l.to_string());
        }
        let resp = tokio::select! {
            r = tokio::time::timeout(Duration::from_secs(3), req.send()) => r,
            _ = stop.changed() => return,
        };
        let mut resp = match resp {
            Ok(Ok(r)) if r.status().is_success() => r,
            _ => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        lock(&out).streams += 1;
        let mut buf = String::new();
        // Changes of a revision not yet closed by an `id:`; a stream cut
        // inside a revision resends it whole after `last`, so these go.
        let mut open = Vec::new();
        loop {
            // A stream that stays quiet may be cut off by a partition:
            // resume elsewhere (resuming is idempotent).
            let chunk = tokio::select! {
                c = tokio::time::timeout(Duration::from_secs(4), resp.chunk()) => c,
                _ = stop.changed() => return,
            };
            let bytes = match chunk {
                Ok(Ok(Some(b))) => b,
                _ => break,
            };
            buf.push_str(&String::from_utf8_lossy(&bytes));
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                parse_block(&block, &out, &mut open, &mut last);
            }
        }
    }
}

fn lock(out: &Mutex<Watched>) -> std::sync::MutexGuard<'_, Watched> {
    out.lock().unwrap_or_else(|p| p.into_inner())
}

/// Takes one SSE block. A change joins `open` until a change with an `id:`
/// ends its revision; then the revision's changes count as delivered and
/// `last` (where a resumed stream starts after) moves to it.
fn parse_block(
    block: &str,
    out: &Mutex<Watched>,
    open: &mut Vec<WatchEvent>,
    last: &mut Option<u64>,
) {
    let mut event = "message";
    let mut data = String::new();
    let mut id = None;
    for line in block.lines() {
        if let Some(v) = line.strip_prefix("event:") {
            event = v.trim();
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push_str(v.trim_start());
        } else if let Some(v) = line.strip_prefix("id:") {
            id = v.trim().parse::<u64>().ok();
        }
    }
    if data.is_empty() {
        return; // a keep-alive comment
    }
    let mut out = lock(out);
    if event == "error" {
        out.errors.push(data);
        return;
    }
    match serde_json::from_str::<WatchEvent>(&data) {
        Ok(e) => {
            open.push(e);
            if let Some(id) = id {
                *last = Some(id);
                out.events.append(open);
            }
        }
        Err(e) => out.errors.push(format!("unparsable event {data}: {e}")),
    }
}
