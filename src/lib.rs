//! cairn: an embedded, Raft-replicated artifact and coordination store.
//!
//! A [`Node`] opens its data directory, joins or forms a Raft cluster with
//! its peers, and serves the HTTP API of API.md: artifacts, key/value state
//! with TTL, fenced locks, instance heartbeats, change watches, and the
//! cluster and health endpoints. Every node serves every request; followers
//! forward writes and linearizable reads to the leader themselves. A host
//! application embeds a node and calls it in-process through the typed
//! methods of [`Node`] (see `embed`), or merges [`Node::router`] into its
//! own axum app.
//!
//! ```no_run
//! # async fn demo() -> Result<(), cairn::node::NodeError> {
//! let config = cairn::NodeConfig::new(1, "./cairn-data".into(),
//!     "127.0.0.1:7070".into(), "127.0.0.1:7071".into());
//! let node = cairn::Node::start(config).await?;
//! // ... serve until asked to stop ...
//! node.shutdown().await?;
//! # Ok(()) }
//! ```

pub mod admin;
pub mod api;
pub mod client;
pub mod config;
pub mod diagnose;
pub mod embed;
pub mod forward;
pub mod health;
pub mod housekeeping;
pub mod integrity;
pub mod join;
pub mod node;
pub mod ops;
pub mod probe;
pub mod status;
pub mod telemetry;
pub mod write_session;

pub use cairn_storage::{ArtifactFields, ArtifactMeta, Fence, KvRecord, LockRecord, Precondition};
pub use config::NodeConfig;
pub use embed::Write;
pub use node::Node;
pub use ops::Error;
