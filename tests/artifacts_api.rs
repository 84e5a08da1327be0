//! The artifacts API of API.md against a three-node cluster of real
//! processes, each request through a different node than the last.

mod common;

use common::{noise, serial, Cluster};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Asserts the API.md error body and returns it.
async fn expect_error(resp: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(resp.status().as_u16(), status, "status");
    let body: Value = resp.json().await.expect("error body is JSON");
    assert_eq!(body["error"]["code"], code, "code in {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "message in {body}"
    );
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_mib_binary_artifact_round_trips_byte_identical_with_range() {
    let _g = serial().await;
    // openraft 0.9 gives each AppendEntries one heartbeat interval; a 10 MiB
    // entry must reach and be fsynced by a follower within it. A longer
    // interval keeps this test about content, not about a loaded machine.
    let c = Cluster::start(
        3,
        &["--heartbeat-ms", "300", "--election-timeout-ms", "1500"],
    )
    .await;
    let data = noise(10 * 1024 * 1024, 7);
    let checksum = format!("sha256:{}", hex::encode(Sha256::digest(&data)));

    let resp = c
        .http
        .put(
            c.node(2)
                .url("/v1/artifacts/blob.1/content?conversation_id=conv-1&kind=image&title=noise"),
        )
        .header("content-type", "image/png")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::CREATED,
        "{}",
        resp.text().await.unwrap()
    );
    let meta: Value = resp.json().await.unwrap();
    assert_eq!(meta["size"], data.len() as u64);
    assert_eq!(meta["checksum"], checksum);
    assert_eq!(meta["content_type"], "image/png");
    assert_eq!(meta["compressed"], false, "noise does not compress");

    let resp = c
        .http
        .get(c.node(3).url("/v1/artifacts/blob.1/content"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let etag = resp.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(etag, format!("\"{checksum}\""));
    assert_eq!(resp.headers()["content-type"], "image/png");
    assert!(resp.headers().contains_key("x-cairn-revision"));
    assert_eq!(resp.headers()["x-cairn-node"], "3");
    assert!(
        resp.bytes().await.unwrap() == data,
        "content differs after the round trip"
    );

    let resp = c
        .http
        .get(c.node(1).url("/v1/artifacts/blob.1/content"))
        .header("range", "bytes=1048576-2097151")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        resp.headers()["content-range"],
        format!("bytes 1048576-2097151/{}", data.len()).as_str()
    );
    assert!(resp.bytes().await.unwrap() == data[1048576..2097152]);

    let resp = c
        .http
        .get(c.node(1).url("/v1/artifacts/blob.1/content"))
        .header("range", "bytes=-100")
        .send()
        .await
        .unwrap();
    assert!(resp.bytes().await.unwrap() == data[data.len() - 100..]);

    let resp = c
        .http
        .get(c.node(2).url("/v1/artifacts/blob.1/content"))
        .header("range", format!("bytes={}-", data.len()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE);

    let resp = c
        .http
        .get(c.node(2).url("/v1/artifacts/blob.1/content"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);

    let resp = c
        .http
        .head(c.node(3).url("/v1/artifacts/blob.1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["content-length"],
        data.len().to_string().as_str()
    );
    assert_eq!(resp.headers()["etag"], etag.as_str());

    // Lazy loading: metadata without the 10 MiB.
    let resp = c
        .http
        .get(c.node(1).url("/v1/artifacts/blob.1?include_content=false"))
        .send()
        .await
        .unwrap();
    let meta: Value = resp.json().await.unwrap();
    assert!(meta.get("content").is_none() && meta.get("content_base64").is_none());
    assert_eq!(meta["conversation_id"], "conv-1");

    // Binary content comes back base64 in the JSON form.
    let resp = c
        .http
        .get(c.node(2).url("/v1/artifacts/blob.1"))
        .send()
        .await
        .unwrap();
    let full: Value = resp.json().await.unwrap();
    use base64::Engine;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(full["content_base64"].as_str().unwrap())
        .unwrap();
    assert!(decoded == data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn compressible_text_is_stored_compressed_and_served_verbatim() {
    let _g = serial().await;
    let c = Cluster::start(3, &[]).await;
    let text = "An LLM answer that repeats itself. ".repeat(500);
    let resp = c
        .http
        .post(c.node(1).url("/v1/artifacts"))
        .json(&json!({"content": text, "kind": "llm_output", "metadata": {"model": "m1"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let meta: Value = resp.json().await.unwrap();
    let id = meta["id"]
        .as_str()
        .expect("server assigns an id")
        .to_string();
    assert_eq!(meta["compressed"], true);
    assert!(meta["stored_size"].as_u64().unwrap() * 4 < meta["size"].as_u64().unwrap());
    assert_eq!(
        c.get_text(3, &id, "linearizable").await.as_deref(),
        Some(text.as_str())
    );

    // Small content stays uncompressed (threshold 1 KiB).
    let resp = c.put_text(2, "small", "tiny").await;
    assert_eq!(resp.json::<Value>().await.unwrap()["compressed"], false);
}

/// Sends only the headers of a PUT announcing 1 GB and returns the status line.
async fn announced_too_large_is_refused_upfront(addr: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!("PUT /v1/artifacts/keep/content HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 1000000000\r\n\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_gets_documented_errors_and_changes_nothing() {
    let _g = serial().await;
    let c = Cluster::start(3, &[]).await;
    assert_eq!(
        c.put_text(1, "keep", "original").await.status(),
        StatusCode::CREATED
    );
    let before: Value = c
        .http
        .get(c.node(2).url("/v1/artifacts/keep"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    let h = &c.http;
    let n = |i: u64| c.node(i);
    expect_error(
        h.get(n(1).url("/v1/artifacts/bad%20id"))
            .send()
            .await
            .unwrap(),
        400,
        "invalid",
    )
    .await;
    expect_error(
        h.put(n(2).url(&format!("/v1/artifacts/{}", "x".repeat(257))))
            .json(&json!({"content": "a"}))
            .send()
            .await
            .unwrap(),
        400,
        "invalid",
    )
    .await;
    expect_error(
        h.post(n(3).url("/v1/artifacts"))
            .json(&json!({"id": "a/b", "content": "x"}))
            .send()
            .await
            .unwrap(),
        400,
        "invalid",
    )
    .await;
    expect_error(
        h.post(n(1).url("/v1/artifacts"))
            .body("{not json")
            .send()
            .await
            .unwrap(),
        400,
        "invalid",
    )
    .await;
    expect_error(
        h.put(n(2).url("/v1/artifacts/keep"))
            .body(r#"{"content": 5}"#)
            .send()
            .await
            .unwrap(),
        400,
        "invalid",
    )
    .await;
    expect_error(
        h.put(n(2).url("/v1/artifacts/keep"))
            .json(&json!({"content": "x", "bogus": 1}))
            .send()
            .await
            .unwrap(),
        400,
        "invalid",
    )
    .await;
    expect_error(
        h.put(n(3).url("/v1/artifacts/keep"))
            .json(&json!({"content": "x", "metadata": [1]}))
            .send()
            .await
            .unwrap(),
        400,
        "invalid",
    )
    .await;
    expect_error(
        h.put(n(1).url("/v1/artifacts/keep"))
            .json(&json!({"title": "no content"}))
            .send()
            .await
            .unwrap(),
        400,
        "invalid",
    )
    .await;
    expect_error(
        h.put(n(1).url("/v1/artifacts/keep"))
            .json(&json!({"content_base64": "***"}))
            .send()
            .await
            .unwrap(),
        400,
        "invalid",
    )
    .await;
    expect_error(
        h.get(n(2).url("/v1/artifacts/keep?consistency=eventual"))
            .send()
            .await
            .unwrap(),
        400,
        "invalid",
    )
    .await;
    expect_error(
        h.get(n(2).url("/v1/artifacts?limit=0"))
            .send()
            .await
            .unwrap(),
        400,
        "invalid",
    )
    .await;
    let big_meta = json!({"content": "x", "metadata": {"blob": "m".repeat(70 * 1024)}});
    expect_error(
        h.put(n(3).url("/v1/artifacts/keep"))
            .json(&big_meta)
            .send()
            .await
            .unwrap(),
        413,
        "too_large",
    )
    .await;
    // Streamed without a length: refused once the limit is crossed.
    let chunks = (0..17).map(|_| Ok::<_, std::io::Error>(vec![b'z'; 1024 * 1024]));
    let streamed = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    expect_error(
        h.put(n(1).url("/v1/artifacts/keep/content"))
            .body(streamed)
            .send()
            .await
            .unwrap(),
        413,
        "too_large",
    )
    .await;
    // Announced by Content-Length: refused before a byte of the body is read.
    assert!(announced_too_large_is_refused_upfront(&n(2).api)
        .await
        .starts_with("HTTP/1.1 413"));

    let body = expect_error(
        h.put(n(2).url("/v1/artifacts/keep"))
            .header("if-match", "\"7\"")
            .json(&json!({"content": "changed"}))
            .send()
            .await
            .unwrap(),
        409,
        "conflict",
    )
    .await;
    assert_eq!(body["error"]["current_version"], 1);
    let body = expect_error(
        h.put(n(3).url("/v1/artifacts/keep"))
            .header("if-none-match", "*")
            .json(&json!({"content": "changed"}))
            .send()
            .await
            .unwrap(),
        409,
        "conflict",
    )
    .await;
    assert_eq!(body["error"]["current_version"], 1);
    expect_error(
        h.post(n(1).url("/v1/artifacts"))
            .json(&json!({"id": "keep", "content": "dup"}))
            .send()
            .await
            .unwrap(),
        409,
        "conflict",
    )
    .await;
    expect_error(
        h.delete(n(1).url("/v1/artifacts/keep"))
            .header("if-match", "2")
            .send()
            .await
            .unwrap(),
        409,
        "conflict",
    )
    .await;
    expect_error(
        h.get(n(1).url("/v1/nothing-here")).send().await.unwrap(),
        404,
        "not_found",
    )
    .await;
    expect_error(
        h.get(n(1).url("/v1/artifacts/missing"))
            .send()
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;

    for via in 1..=3 {
        let after: Value = h
            .get(n(via).url("/v1/artifacts/keep"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            after, before,
            "the artifact changed after rejected requests (via {via})"
        );
        let list: Value = h
            .get(n(via).url("/v1/artifacts"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            list["artifacts"].as_array().unwrap().len(),
            1,
            "something was created: {list}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn versions_cas_delete_and_idempotency_keys() {
    let _g = serial().await;
    let c = Cluster::start(3, &[]).await;
    let h = &c.http;
    let put = |via: u64, body: &'static str| {
        h.put(c.node(via).url("/v1/artifacts/doc"))
            .json(&json!({"content": body, "title": "t"}))
    };
    let v1: Value = put(1, "one").send().await.unwrap().json().await.unwrap();
    assert_eq!(v1["version"], 1);
    let resp = put(2, "two")
        .header("if-match", "\"1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let v2: Value = resp.json().await.unwrap();
    assert_eq!(v2["version"], 2);
    assert!(v2["revision"].as_u64() > v1["revision"].as_u64());
    assert_eq!(v2["created_ms"], v1["created_ms"]);

    // The same Idempotency-Key replays the first outcome instead of applying twice.
    let keyed = || put(3, "three").header("idempotency-key", "req-42");
    let first: Value = keyed().send().await.unwrap().json().await.unwrap();
    let again: Value = keyed().send().await.unwrap().json().await.unwrap();
    assert_eq!(first["version"], 3);
    assert_eq!(again, first);
    let now: Value = h
        .get(c.node(1).url("/v1/artifacts/doc?include_content=false"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(now["version"], 3);

    let resp = h
        .delete(c.node(2).url("/v1/artifacts/doc"))
        .header("if-match", "3")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = h
        .delete(c.node(3).url("/v1/artifacts/doc"))
        .send()
        .await
        .unwrap();
    expect_error(resp, 404, "not_found").await;
    for via in 1..=3 {
        for consistency in ["linearizable", "lease"] {
            assert_eq!(c.get_text(via, "doc", consistency).await, None);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn listings_paginate_by_cursor_prefix_and_conversation() {
    let _g = serial().await;
    let c = Cluster::start(3, &[]).await;
    for i in 0..25u64 {
        let conv = if i % 2 == 0 { "even" } else { "odd" };
        let resp = c
            .http
            .put(c.node(1 + i % 3).url(&format!("/v1/artifacts/item-{i:02}")))
            .json(&json!({"content": format!("c{i}"), "conversation_id": conv}))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success());
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = c.node(2).url("/v1/artifacts?limit=10&prefix=item-");
        if let Some(cur) = &cursor {
            url.push_str(&format!("&cursor={cur}"));
        }
        let page: Value = c.http.get(url).send().await.unwrap().json().await.unwrap();
        for a in page["artifacts"].as_array().unwrap() {
            assert!(a.get("content").is_none(), "listings carry metadata only");
            seen.push(a["id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    let expected: Vec<String> = (0..25).map(|i| format!("item-{i:02}")).collect();
    assert_eq!(seen, expected, "every artifact once, in id order");

    let odd: Value = c
        .http
        .get(c.node(3).url("/v1/conversations/odd/artifacts?limit=100"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(odd["artifacts"].as_array().unwrap().len(), 12);
    let even: Value = c
        .http
        .get(c.node(1).url("/v1/artifacts?conversation_id=even&limit=5"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(even["artifacts"].as_array().unwrap().len(), 5);
    assert_eq!(even["next_cursor"], "item-08");

    // Moving an artifact to another conversation moves it in the index.
    c.http
        .put(c.node(2).url("/v1/artifacts/item-01"))
        .json(&json!({"content": "moved", "conversation_id": "even"}))
        .send()
        .await
        .unwrap();
    let odd: Value = c
        .http
        .get(c.node(3).url("/v1/conversations/odd/artifacts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(odd["artifacts"].as_array().unwrap().len(), 11);
}
