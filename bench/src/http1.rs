//! One HTTP/1.1 keep-alive connection per worker, as the Redis client keeps
//! one connection per worker: made on first use, remade after an error.
//!
//! The load generator shares the machine's cores with the servers it
//! measures, so what it spends per request is taken from them. A pooled
//! general-purpose client parses every URL, checks a connection out of a
//! pool and back, and wraps each call in redirect and timeout layers; a
//! worker that owns its connection sends a request line and headers built
//! from parts it already has. The etcd client is tonic's, which likewise
//! keeps its connections and builds no URL per call.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Mutex;

/// How long one request may take before it counts as failed (the same
/// limit the etcd client's channels have).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A worker's connection to one node.
pub struct Conn {
    /// `host:port` of the node.
    authority: String,
    sender: Mutex<Option<SendRequest<Full<Bytes>>>>,
}

impl Conn {
    /// A connection to `authority` (`host:port`), opened on first use.
    pub fn new(authority: String) -> Self {
        Self {
            authority,
            sender: Mutex::new(None),
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let stream = TcpStream::connect(&self.authority)
            .await
            .map_err(|e| format!("connect {}: {e}", self.authority))?;
        // Requests are small and answered one at a time: send each at once.
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        Ok(sender)
    }

    /// Sends one request (`path` with its query, and a body with its
    /// content type) and returns the whole body of a 2xx answer; any other
    /// status is an error.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<(Bytes, &'static str)>,
    ) -> Result<Bytes, String> {
        let mut slot = self.sender.lock().await;
        let mut sender = match slot.take() {
            Some(s) if !s.is_closed() => s,
            _ => self.connect().await?,
        };
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.authority.as_str());
        let body = match body {
            Some((bytes, content_type)) => {
                request = request.header(CONTENT_TYPE, content_type);
                bytes
            }
            None => Bytes::new(),
        };
        let request = request.body(Full::new(body)).map_err(|e| e.to_string())?;
        let exchange = async {
            sender.ready().await.map_err(|e| e.to_string())?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok::<_, String>((status, body))
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(Ok((status, body))) => {
                // Only a connection that finished its exchange is reused.
                *slot = Some(sender);
                if status.is_success() {
                    Ok(body)
                } else {
                    Err(format!("HTTP {status}"))
                }
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!("no answer within {REQUEST_TIMEOUT:?}")),
        }
    }
}
