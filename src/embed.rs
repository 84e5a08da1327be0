//! The typed API of an embedded [`Node`]: what a host application calls
//! in-process instead of going through HTTP. Every method is the same
//! operation the HTTP API performs (`crate::ops`), with the same
//! consistency, fencing and idempotency rules.

use std::time::Duration;

use cairn_storage::{
    ArtifactFields, ArtifactMeta, Fence, InstanceRecord, KvMeta, KvRecord, LockRecord, Precondition,
};
use tokio_stream::wrappers::ReceiverStream;

use crate::forward::{Consistency, WriteOptions};
use crate::node::Node;
use crate::ops::{self, artifacts::Artifact, watch::WatchItem, Error};

/// How a write is made.
#[derive(Debug, Clone, Default)]
pub struct Write {
    /// Version condition (`If-Match` / `If-None-Match` over HTTP).
    pub precondition: Precondition,
    /// Apply only while this lock is held with this token.
    pub fence: Option<Fence>,
    /// A retry with the same key returns the first outcome.
    pub idempotency_key: Option<String>,
}

impl Write {
    /// A write fenced by `lock` held with `token`.
    pub fn fenced(lock: &str, token: u64) -> Self {
        Self {
            fence: Some(Fence {
                lock: lock.to_string(),
                token,
            }),
            ..Self::default()
        }
    }

    fn split(self) -> (Precondition, WriteOptions) {
        let opts = WriteOptions {
            idempotency_key: self.idempotency_key,
            fence: self.fence,
        };
        (self.precondition, opts)
    }
}

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}

impl Node {
    /// The HTTP API as an axum router, to merge or nest into the host app.
    pub fn router(&self) -> axum::Router {
        crate::api::router(self.core().clone())
    }

    /// Creates or replaces artifact `id`.
    pub async fn put_artifact(
        &self,
        id: &str,
        fields: ArtifactFields,
        content: &[u8],
        write: Write,
    ) -> Result<ArtifactMeta, Error> {
        let (pre, opts) = write.split();
        ops::artifacts::put(self.core(), id, fields, content, false, pre, opts).await
    }

    /// Reads artifact `id` with its verified content (linearizable).
    pub async fn get_artifact(&self, id: &str) -> Result<Option<Artifact>, Error> {
        Ok(
            ops::artifacts::get(self.core(), id, Consistency::Linearizable, true)
                .await?
                .value,
        )
    }

    /// Deletes artifact `id`.
    pub async fn delete_artifact(&self, id: &str, write: Write) -> Result<u64, Error> {
        let (pre, opts) = write.split();
        ops::artifacts::delete(self.core(), id, pre, opts).await
    }

    /// Sets `key` to `value`, optionally expiring after `ttl`.
    pub async fn kv_put(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        write: Write,
    ) -> Result<KvMeta, Error> {
        let (pre, opts) = write.split();
        ops::kv::put(self.core(), key, value.to_vec(), ttl.map(ms), pre, opts).await
    }

    /// Reads `key` (linearizable).
    pub async fn kv_get(&self, key: &str) -> Result<Option<KvRecord>, Error> {
        Ok(ops::kv::get(self.core(), key, Consistency::Linearizable)
            .await?
            .value)
    }

    /// Deletes `key`.
    pub async fn kv_delete(&self, key: &str, write: Write) -> Result<u64, Error> {
        let (pre, opts) = write.split();
        ops::kv::delete(self.core(), key, pre, opts).await
    }

    /// Takes lock `name` for `owner` with a `ttl` lease, waiting up to `wait`.
    pub async fn lock(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
        wait: Duration,
    ) -> Result<LockRecord, Error> {
        ops::locks::acquire(self.core(), name, owner, ms(ttl), ms(wait)).await
    }

    /// Extends the lease of the lock held with `token`.
    pub async fn renew_lock(
        &self,
        name: &str,
        token: u64,
        ttl: Duration,
    ) -> Result<LockRecord, Error> {
        ops::locks::renew(self.core(), name, token, ms(ttl)).await
    }

    /// Releases the lock held with `token`.
    pub async fn unlock(&self, name: &str, token: u64) -> Result<u64, Error> {
        ops::locks::release(self.core(), name, token).await
    }

    /// Registers or refreshes this application instance.
    pub async fn heartbeat(
        &self,
        id: &str,
        ttl: Duration,
        meta: Option<&serde_json::Value>,
    ) -> Result<InstanceRecord, Error> {
        ops::instances::heartbeat(self.core(), id, ms(ttl), meta).await
    }

    /// The live application instances (linearizable).
    pub async fn instances(&self) -> Result<Vec<InstanceRecord>, Error> {
        Ok(ops::instances::list(self.core(), Consistency::Linearizable)
            .await?
            .value)
    }

    /// Every change under `prefix` from `from_revision` (default: from now).
    pub fn watch(
        &self,
        prefix: &str,
        from_revision: Option<u64>,
    ) -> Result<ReceiverStream<WatchItem>, Error> {
        ops::watch::watch(self.core().clone(), prefix.to_string(), from_revision)
    }
}
