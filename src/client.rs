//! A small client of the admin API (`/v1/cluster*`), used by `cairn admin`
//! and by `cairn serve --join`.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

/// Why an admin call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The node could not be reached or did not answer in time.
    #[error("{url}: {source}")]
    Transport {
        /// The URL called.
        url: String,
        /// Why.
        source: reqwest::Error,
    },
    /// The node answered with an API error.
    #[error("{status} {code}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The API.md error code.
        code: String,
        /// The message.
        message: String,
    },
}

impl ClientError {
    /// Whether retrying later may succeed (no leader yet, change in
    /// progress, node unreachable).
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Transport { .. } => true,
            ClientError::Api { status, .. } => matches!(status, 409 | 503 | 504),
        }
    }
}

/// The admin API of one node (or a load balancer in front of several).
#[derive(Clone)]
pub struct AdminClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl AdminClient {
    /// A client of `endpoint` (`http://host:port`), sending `token` as bearer.
    pub fn new(endpoint: &str, token: Option<String>) -> Self {
        let base = endpoint.trim_end_matches('/');
        let base = if base.contains("://") {
            base.to_string()
        } else {
            format!("http://{base}")
        };
        Self {
            base,
            token,
            http: reqwest::Client::builder()
                .no_proxy()
                .connect_timeout(Duration::from_secs(3))
                .build()
                .unwrap_or_default(),
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        timeout: Duration,
    ) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url).timeout(timeout);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let transport = |source| ClientError::Transport {
            url: url.clone(),
            source,
        };
        let answer = req.send().await.map_err(transport)?;
        let status = answer.status();
        let bytes = answer.bytes().await.map_err(transport)?;
        let value: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        if status.is_success() {
            return Ok(value);
        }
        let err = &value["error"];
        Err(ClientError::Api {
            status: status.as_u16(),
            code: err["code"].as_str().unwrap_or("unknown").to_string(),
            message: err["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| value.to_string()),
        })
    }

    /// `GET /v1/cluster`.
    pub async fn status(&self) -> Result<Value, ClientError> {
        self.call(Method::GET, "/v1/cluster", None, Duration::from_secs(10))
            .await
    }

    /// `POST /v1/cluster/learners`; waits up to `wait` for the learner to
    /// catch up (`None`: returns at once).
    pub async fn add_learner(
        &self,
        id: u64,
        api_addr: &str,
        raft_addr: &str,
        wait: Option<Duration>,
    ) -> Result<Value, ClientError> {
        let query = match wait {
            Some(w) => format!("?timeout_ms={}", w.as_millis()),
            None => "?wait=false".to_string(),
        };
        let body = json!({ "id": id, "api_addr": api_addr, "raft_addr": raft_addr });
        let timeout = wait.unwrap_or_default() + Duration::from_secs(30);
        self.call(
            Method::POST,
            &format!("/v1/cluster/learners{query}"),
            Some(body),
            timeout,
        )
        .await
    }

    /// `POST /v1/cluster/members/{id}/promote`.
    pub async fn promote(&self, id: u64) -> Result<Value, ClientError> {
        let path = format!("/v1/cluster/members/{id}/promote");
        self.call(Method::POST, &path, None, Duration::from_secs(60))
            .await
    }

    /// `DELETE /v1/cluster/members/{id}`.
    pub async fn remove(&self, id: u64) -> Result<Value, ClientError> {
        let path = format!("/v1/cluster/members/{id}");
        self.call(Method::DELETE, &path, None, Duration::from_secs(60))
            .await
    }

    /// `POST /v1/cluster/leader/transfer`.
    pub async fn transfer_leader(&self, to: Option<u64>) -> Result<Value, ClientError> {
        let body = match to {
            Some(id) => json!({ "to": id }),
            None => json!({}),
        };
        self.call(
            Method::POST,
            "/v1/cluster/leader/transfer",
            Some(body),
            Duration::from_secs(60),
        )
        .await
    }

    /// `POST /v1/cluster/snapshot`.
    pub async fn snapshot(&self) -> Result<Value, ClientError> {
        self.call(
            Method::POST,
            "/v1/cluster/snapshot",
            None,
            Duration::from_secs(120),
        )
        .await
    }
}
