//! The HTTP client side of the workloads: one call per operation, each
//! answer classified as ok, fail (definitely no effect) or info
//! (indeterminate).

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::history::{Status, Versioned};

/// Where registers live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Store {
    /// `/v1/artifacts/{id}` (JSON body, `version` in the answer).
    Artifact,
    /// `/v1/kv/{key}` (raw body, `ETag` = version).
    Kv,
}

/// The result of one request.
#[derive(Debug)]
pub enum Answer<T> {
    /// Acknowledged, with its output.
    Ok(T),
    /// Not ok; `Status::Fail` or `Status::Info` and why.
    Err(Status, String),
}

/// A client for one run.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// `?consistency=` of register reads.
    pub consistency: String,
    /// Where registers live.
    pub store: Store,
}

#[derive(Deserialize)]
struct ArtifactBody {
    version: u64,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    checksum: Option<String>,
}

#[derive(Deserialize)]
struct Grant {
    token: u64,
}

#[derive(Deserialize)]
struct KvBody {
    version: u64,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

#[derive(Deserialize)]
struct ListBody {
    artifacts: Vec<ListItem>,
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct ListItem {
    id: String,
}

/// The SHA-256 of `data` as lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Whether an HTTP status proves the write did not apply.
fn definite(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        400 | 401 | 403 | 404 | 409 | 412 | 413 | 423
    )
}

impl Client {
    /// A client with the given request timeout.
    pub fn new(timeout: Duration, consistency: String, store: Store) -> reqwest::Result<Self> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(1))
            .pool_max_idle_per_host(4)
            .build()?;
        Ok(Self {
            http,
            consistency,
            store,
        })
    }

    /// The underlying HTTP client.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Answer<reqwest::Response> {
        match req.send().await {
            Ok(resp) if resp.status().is_success() => Answer::Ok(resp),
            Ok(resp) => {
                let status = resp.status();
                let body = resp.text().await.unwrap_or_default();
                let why = match serde_json::from_str::<ErrorBody>(&body) {
                    Ok(e) => format!("{} {}: {}", status.as_u16(), e.error.code, e.error.message),
                    Err(_) => format!(
                        "{} {}",
                        status.as_u16(),
                        body.chars().take(200).collect::<String>()
                    ),
                };
                let kind = if definite(status) {
                    Status::Fail
                } else {
                    Status::Info
                };
                Answer::Err(kind, why)
            }
            // No connection means the request never left: no effect.
            Err(e) if e.is_connect() => Answer::Err(Status::Fail, format!("connect: {e}")),
            Err(e) if e.is_timeout() => Answer::Err(Status::Info, "timeout".into()),
            Err(e) => Answer::Err(Status::Info, format!("transport: {e}")),
        }
    }

    /// Reads register `key` through `url`. For artifacts the value is the
    /// content's SHA-256 (checked against the stored checksum: a mismatch
    /// comes back in the second field).
    pub async fn read(&self, url: &str, key: &str) -> Answer<(Option<Versioned>, Option<String>)> {
        let path = match self.store {
            Store::Artifact => format!("{url}/v1/artifacts/{key}"),
            Store::Kv => format!("{url}/v1/kv/{key}"),
        };
        let req = self
            .http
            .get(path)
            .query(&[("consistency", self.consistency.as_str())]);
        let resp = match req.send().await {
            Ok(r) if r.status() == StatusCode::NOT_FOUND => {
                let body = r.text().await.unwrap_or_default();
                // An absent key is `not_found`; an unknown route is a harness error.
                return if body.contains("no such route") {
                    Answer::Err(Status::Fail, "404 no such route".into())
                } else {
                    Answer::Ok((None, None))
                };
            }
            Ok(r) => r,
            Err(e) if e.is_connect() => return Answer::Err(Status::Fail, format!("connect: {e}")),
            Err(e) => return Answer::Err(Status::Info, format!("{e}")),
        };
        let resp = match self.send_checked(resp).await {
            Answer::Ok(r) => r,
            Answer::Err(s, why) => return Answer::Err(s, why),
        };
        match self.store {
            Store::Artifact => match resp.json::<ArtifactBody>().await {
                Ok(b) => {
                    let content = b.content.unwrap_or_default();
                    let hash = sha256_hex(content.as_bytes());
                    let claimed = b.checksum.unwrap_or_default();
                    let corrupt = (claimed != format!("sha256:{hash}")).then(|| {
                        format!("content hashes to sha256:{hash} but the checksum says {claimed}")
                    });
                    Answer::Ok((
                        Some(Versioned {
                            version: b.version,
                            value: hash,
                        }),
                        corrupt,
                    ))
                }
                Err(e) => Answer::Err(Status::Info, format!("bad body: {e}")),
            },
            Store::Kv => {
                let version = resp
                    .headers()
                    .get(reqwest::header::ETAG)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim_start_matches("W/").trim_matches('"').parse().ok());
                let Some(version) = version else {
                    return Answer::Err(Status::Info, "no ETag version on a kv read".into());
                };
                match resp.bytes().await {
                    Ok(b) => Answer::Ok((
                        Some(Versioned {
                            version,
                            value: String::from_utf8_lossy(&b).into_owned(),
                        }),
                        None,
                    )),
                    Err(e) => Answer::Err(Status::Info, format!("body: {e}")),
                }
            }
        }
    }

    async fn send_checked(&self, resp: reqwest::Response) -> Answer<reqwest::Response> {
        if resp.status().is_success() {
            return Answer::Ok(resp);
        }
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        Answer::Err(
            if definite(status) {
                Status::Fail
            } else {
                Status::Info
            },
            format!(
                "{} {}",
                status.as_u16(),
                body.chars().take(200).collect::<String>()
            ),
        )
    }

    /// Writes `content` to register `key`: unconditionally, or when
    /// `expect` is given as compare-and-set on the version (`If-Match`;
    /// version 0 means absent: `If-None-Match: *`). Returns the version
    /// written.
    pub async fn write(
        &self,
        url: &str,
        key: &str,
        content: &str,
        expect: Option<u64>,
    ) -> Answer<u64> {
        let req = match self.store {
            Store::Artifact => self
                .http
                .request(Method::PUT, format!("{url}/v1/artifacts/{key}"))
                .json(&serde_json::json!({ "content": content, "kind": "jepsen" })),
            Store::Kv => self
                .http
                .request(Method::PUT, format!("{url}/v1/kv/{key}"))
                .body(content.to_string()),
        };
        let req = match expect {
            Some(0) => req.header("If-None-Match", "*"),
            Some(v) => req.header("If-Match", format!("\"{v}\"")),
            None => req,
        };
        let resp = match self.send(req).await {
            Answer::Ok(r) => r,
            Answer::Err(s, why) => return Answer::Err(s, why),
        };
        let version = match self.store {
            Store::Artifact => resp.json::<ArtifactBody>().await.map(|b| b.version),
            Store::Kv => resp.json::<KvBody>().await.map(|b| b.version),
        };
        match version {
            Ok(v) => Answer::Ok(v),
            // The write was acknowledged; only its answer got lost.
            Err(e) => Answer::Err(Status::Info, format!("acknowledged but unreadable: {e}")),
        }
    }

    /// Acquires lock `name` for `owner`; returns the fencing token.
    pub async fn acquire(
        &self,
        url: &str,
        name: &str,
        owner: &str,
        ttl_ms: u64,
        wait_ms: u64,
    ) -> Answer<u64> {
        let req = self
            .http
            .post(format!("{url}/v1/locks/{name}/acquire"))
            .json(&serde_json::json!({ "owner": owner, "ttl_ms": ttl_ms, "wait_ms": wait_ms }));
        match self.send(req).await {
            Answer::Ok(r) => match r.json::<Grant>().await {
                Ok(g) => Answer::Ok(g.token),
                // Granted, but the token is lost to us: indeterminate.
                Err(e) => Answer::Err(Status::Info, format!("granted but unreadable: {e}")),
            },
            Answer::Err(s, why) => Answer::Err(s, why),
        }
    }

    /// Releases lock `name` held with `token`.
    pub async fn release(&self, url: &str, name: &str, token: u64) -> Answer<()> {
        let req = self
            .http
            .post(format!("{url}/v1/locks/{name}/release"))
            .json(&serde_json::json!({ "token": token }));
        match self.send(req).await {
            Answer::Ok(_) => Answer::Ok(()),
            Answer::Err(s, why) => Answer::Err(s, why),
        }
    }

    /// Writes `value` to kv `key` fenced by lock `name` at `token`; returns
    /// the version written.
    pub async fn fenced_write(
        &self,
        url: &str,
        key: &str,
        value: &str,
        name: &str,
        token: u64,
    ) -> Answer<u64> {
        let req = self
            .http
            .put(format!("{url}/v1/kv/{key}"))
            .header("X-Cairn-Fence", format!("{name}:{token}"))
            .body(value.to_string());
        match self.send(req).await {
            Answer::Ok(r) => match r.json::<KvBody>().await {
                Ok(b) => Answer::Ok(b.version),
                Err(e) => Answer::Err(Status::Info, format!("acknowledged but unreadable: {e}")),
            },
            Answer::Err(s, why) => Answer::Err(s, why),
        }
    }

    /// Lists the ids of every artifact under `prefix` through `url`
    /// (linearizable, all pages).
    pub async fn list_ids(&self, url: &str, prefix: &str) -> Answer<Vec<String>> {
        let mut ids = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut query = vec![
                ("prefix", prefix.to_string()),
                ("limit", "1000".to_string()),
                ("consistency", "linearizable".to_string()),
            ];
            if let Some(c) = &cursor {
                query.push(("cursor", c.clone()));
            }
            let req = self.http.get(format!("{url}/v1/artifacts")).query(&query);
            let resp = match self.send(req).await {
                Answer::Ok(r) => r,
                Answer::Err(s, why) => return Answer::Err(s, why),
            };
            match resp.json::<ListBody>().await {
                Ok(page) => {
                    ids.extend(page.artifacts.into_iter().map(|a| a.id));
                    match page.next_cursor {
                        Some(c) => cursor = Some(c),
                        None => return Answer::Ok(ids),
                    }
                }
                Err(e) => return Answer::Err(Status::Info, format!("bad list body: {e}")),
            }
        }
    }

    /// Whether the nodes serve `/v1/kv` (an unknown route is 404 `no such route`).
    pub async fn kv_supported(&self, url: &str) -> bool {
        match self
            .http
            .get(format!("{url}/v1/kv/cairn-jepsen-probe"))
            .send()
            .await
        {
            Ok(r) => {
                let body = r.text().await.unwrap_or_default();
                !body.contains("no such route")
            }
            Err(_) => false,
        }
    }
}
