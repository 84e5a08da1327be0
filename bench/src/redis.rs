//! A local Redis (Debian's `redis-server`), the non-replicated, non-durable
//! upper bound: persistence off, one process.

use std::path::Path;
use std::sync::Arc;

use redis::aio::MultiplexedConnection;

use crate::procs::Proc;
use crate::workload::{self, Workload};

/// Deletes the lock only if the caller still holds it (the release half of
/// the usual SET NX PX lock).
const RELEASE: &str = r#"if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("del", KEYS[1]) else return 0 end"#;

/// The running server.
pub struct Redis {
    /// The one process.
    pub procs: Vec<Proc>,
    url: String,
}

impl Redis {
    /// Starts it on `port`, without snapshots or an append-only file.
    pub fn start(bin: &Path, dir: &Path, port: u16) -> anyhow::Result<Self> {
        let data = dir.join("redis");
        std::fs::create_dir_all(&data)?;
        let args = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &data.display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut p = Proc::new("redis", bin, args, dir.join("redis.log"));
        p.start()?;
        Ok(Self {
            procs: vec![p],
            url: format!("redis://127.0.0.1:{port}/"),
        })
    }

    /// Whether it answers PING.
    pub async fn ready(&self) -> bool {
        let Ok(client) = redis::Client::open(self.url.as_str()) else {
            return false;
        };
        let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
            return false;
        };
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .is_ok()
    }
}

/// A connection per worker.
#[derive(Clone)]
pub struct RedisClient {
    conns: Arc<Vec<MultiplexedConnection>>,
    release: Arc<redis::Script>,
}

impl RedisClient {
    /// Opens one connection per worker.
    pub async fn new(server: &Redis, concurrency: usize) -> Result<Self, String> {
        let client = redis::Client::open(server.url.as_str()).map_err(|e| e.to_string())?;
        let mut conns = Vec::with_capacity(concurrency);
        for _ in 0..concurrency.max(1) {
            conns.push(
                client
                    .get_multiplexed_async_connection()
                    .await
                    .map_err(|e| e.to_string())?,
            );
        }
        Ok(Self {
            conns: Arc::new(conns),
            release: Arc::new(redis::Script::new(RELEASE)),
        })
    }

    /// A put on connection `conn`.
    pub async fn put_via(&self, conn: usize, key: &str, value: Vec<u8>) -> Result<u64, String> {
        let mut c = self.conns[conn % self.conns.len()].clone();
        let len = value.len() as u64;
        redis::cmd("SET")
            .arg(key)
            .arg(value)
            .query_async::<()>(&mut c)
            .await
            .map_err(|e| e.to_string())?;
        Ok(len)
    }

    /// One operation of `w`.
    pub async fn run(&self, w: Workload, worker: usize, seq: u64) -> Result<u64, String> {
        let mut c = self.conns[worker % self.conns.len()].clone();
        let e = |e: redis::RedisError| e.to_string();
        match w {
            Workload::Put => {
                self.put_via(worker, &workload::put_key(worker, seq), w.payload())
                    .await
            }
            Workload::GetStale | Workload::GetLinearizable => {
                let v: Option<Vec<u8>> = redis::cmd("GET")
                    .arg(workload::read_key(worker, seq))
                    .query_async(&mut c)
                    .await
                    .map_err(e)?;
                v.map(|v| v.len() as u64)
                    .ok_or_else(|| "key not found".into())
            }
            Workload::Lock => {
                let name = workload::lock_name(worker);
                let token = format!("{worker}-{seq}");
                let set: Option<String> = redis::cmd("SET")
                    .arg(&name)
                    .arg(&token)
                    .arg("NX")
                    .arg("PX")
                    .arg(workload::LEASE_TTL_S * 1000)
                    .query_async(&mut c)
                    .await
                    .map_err(e)?;
                if set.is_none() {
                    return Err("lock held".into());
                }
                let released: i64 = self
                    .release
                    .key(&name)
                    .arg(&token)
                    .invoke_async(&mut c)
                    .await
                    .map_err(e)?;
                if released == 1 {
                    Ok(0)
                } else {
                    Err("lock lost before release".into())
                }
            }
            Workload::ArtifactPut(_) | Workload::ArtifactGet(_) => {
                Err("not a redis workload".into())
            }
        }
    }
}
