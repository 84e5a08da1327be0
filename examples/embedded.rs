//! A small axum app that embeds a Cairn node.
//!
//! `POST /summaries/{id}` (body: text) writes a summary artifact while
//! holding the lock `summary:{id}`, fenced by the lock's token, so two app
//! instances never interleave their writes; `GET /summaries/{id}` reads it
//! back. The node's own API is nested under `/cairn`.
//!
//! ```sh
//! cargo run --example embedded -- 127.0.0.1:8080 ./embedded-data
//! curl -XPOST localhost:8080/summaries/s1 -d 'the meeting went well'
//! curl localhost:8080/summaries/s1
//! curl localhost:8080/cairn/v1/cluster
//! ```

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use cairn::{ArtifactFields, Node, NodeConfig, Write};

/// Builds the app around a started node.
fn app(node: Arc<Node>) -> Router {
    Router::new()
        .route("/summaries/{id}", post(write_summary).get(read_summary))
        .with_state(node.clone())
        .nest("/cairn", node.router())
}

async fn write_summary(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
    body: String,
) -> Result<String, (StatusCode, String)> {
    let fail = |e: cairn::Error| (StatusCode::SERVICE_UNAVAILABLE, e.to_string());
    let lock_name = format!("summary:{id}");
    let lock = node
        .lock(
            &lock_name,
            "embedded-example",
            Duration::from_secs(10),
            Duration::from_secs(5),
        )
        .await
        .map_err(fail)?;
    let fields = ArtifactFields {
        kind: Some("summary".into()),
        title: Some(format!("Summary {id}")),
        content_type: Some("text/plain".into()),
        ..Default::default()
    };
    let written = node
        .put_artifact(
            &id,
            fields,
            body.as_bytes(),
            Write::fenced(&lock_name, lock.token),
        )
        .await;
    node.unlock(&lock_name, lock.token).await.map_err(fail)?;
    let meta = written.map_err(fail)?;
    Ok(format!(
        "stored {} version {} (lock token {})\n",
        meta.id, meta.version, lock.token
    ))
}

async fn read_summary(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
) -> Result<Vec<u8>, StatusCode> {
    match node.get_artifact(&id).await {
        Ok(Some(a)) => Ok(a.content.unwrap_or_default()),
        Ok(None) => Err(StatusCode::NOT_FOUND),
        Err(_) => Err(StatusCode::SERVICE_UNAVAILABLE),
    }
}

/// Starts a one-node store on free loopback ports in `data_dir`.
async fn start_node(data_dir: std::path::PathBuf) -> anyhow::Result<Node> {
    let free = || -> anyhow::Result<String> {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        Ok(l.local_addr()?.to_string())
    };
    let config = NodeConfig::new(1, data_dir, free()?, free()?);
    Ok(Node::start(config).await?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8080".into());
    let data = args.next().unwrap_or_else(|| "./embedded-data".into());
    let node = Arc::new(start_node(data.into()).await?);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    tracing::info!(%addr, "embedded example listening");
    axum::serve(listener, app(node.clone()))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    if let Ok(node) = Arc::try_unwrap(node) {
        node.shutdown().await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn summaries_are_written_under_a_fenced_lock_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let node = Arc::new(start_node(dir.path().join("data")).await.unwrap());
        // Wait until the one-node cluster has formed.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while node.kv_get("probe").await.is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "node never became ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let served = app(node.clone());
        tokio::spawn(async move { axum::serve(listener, served).await });
        let http = reqwest::Client::new();

        let first = http
            .post(format!("{base}/summaries/s1"))
            .body("v1")
            .send()
            .await
            .unwrap();
        assert_eq!(first.status(), 200, "{}", first.text().await.unwrap());
        let second = http
            .post(format!("{base}/summaries/s1"))
            .body("v2")
            .send()
            .await
            .unwrap();
        assert!(second.text().await.unwrap().contains("version 2"));
        let read = http
            .get(format!("{base}/summaries/s1"))
            .send()
            .await
            .unwrap();
        assert_eq!(read.text().await.unwrap(), "v2");

        // The lock was released after each write.
        assert!(node.core().state.lock("summary:s1").unwrap().is_none());
        // A write fenced with a token that no longer holds is refused by the store.
        let stale = node
            .put_artifact(
                "s1",
                ArtifactFields::default(),
                b"late",
                Write::fenced("summary:s1", 1),
            )
            .await;
        assert!(matches!(stale, Err(cairn::Error::Rejected(_))), "{stale:?}");
        // The node's own API is served under /cairn.
        let cluster = http
            .get(format!("{base}/cairn/v1/cluster"))
            .send()
            .await
            .unwrap();
        assert_eq!(cluster.status(), 200);
    }
}
