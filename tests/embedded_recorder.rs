//! An application embedding `cairn::Node` that installed its own metrics
//! recorder first keeps it: the node starts, serves, and `/metrics` says
//! where the metrics went instead of panicking.

use std::time::Duration;

/// A host recorder that counts what Cairn registers with it.
#[derive(Default)]
struct HostRecorder {
    counters: std::sync::atomic::AtomicUsize,
}

impl metrics::Recorder for HostRecorder {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn register_counter(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        self.counters
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        metrics::Counter::noop()
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }
    fn register_histogram(
        &self,
        _: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_recorder_installed_first_is_kept_and_the_node_still_serves() {
    let host: &'static HostRecorder = Box::leak(Box::default());
    metrics::set_global_recorder(host).expect("the host installs its recorder first");

    let dir = tempfile::tempdir().unwrap();
    let config = cairn::NodeConfig::new(
        1,
        dir.path().join("data"),
        "127.0.0.1:0".into(),
        "127.0.0.1:0".into(),
    );
    let node = cairn::Node::start(config).await.expect("node starts");
    let base = format!("http://{}", node.api_addr());
    let http = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let resp = http
            .put(format!("{base}/v1/artifacts/embedded"))
            .json(&serde_json::json!({"content": "hello"}))
            .send()
            .await
            .unwrap();
        if resp.status().is_success() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no write within 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let resp = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("host application"));
    // Cairn's metrics went to the host's recorder.
    assert!(host.counters.load(std::sync::atomic::Ordering::Relaxed) > 0);
    node.shutdown().await.unwrap();
}
