//! Workloads: what the clients do, each through a random node.
//!
//! - `register`: per-key read / write / compare-and-set on small values;
//! - `artifact`: the same on artifacts whose content spans the compression
//!   threshold, every read verifying the content against its checksum;
//! - `set`: create-only adds of unique elements, then a final read of the
//!   whole set through every node (lost acknowledged writes).
//!
//! Keys are retired after a number of operations and replaced by fresh ones,
//! so each key's sub-history stays small enough to check exhaustively.

use std::sync::Mutex;

use rand::rngs::StdRng;
use rand::{Rng, RngCore};

use crate::client::{sha256_hex, Answer, Client, Store};
use crate::history::{Call, Op, Recorder, Status};

/// Which workload runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Per-key registers: read, write, compare-and-set.
    Register,
    /// Locks with fenced writes to a guarded key.
    Lock,
    /// Artifacts: create and update with checksum verification.
    Artifact,
    /// Unique adds and a final read: lost acknowledged writes.
    Set,
}

struct Slot {
    generation: u64,
    ops: u64,
    /// The latest version any client saw, to aim compare-and-sets.
    version: u64,
}

/// Registers (and artifacts) spread over a few live keys.
pub struct Registers {
    tag: String,
    big: bool,
    ops_per_key: u64,
    slots: Mutex<Vec<Slot>>,
    keys: Mutex<Vec<String>>,
}

impl Registers {
    /// `keys` live keys, each retired after `ops_per_key` operations; `big`
    /// for artifact-sized random content.
    pub fn new(tag: &str, keys: usize, ops_per_key: u64, big: bool) -> Self {
        Self {
            tag: tag.to_string(),
            big,
            ops_per_key,
            slots: Mutex::new(
                (0..keys)
                    .map(|_| Slot {
                        generation: 0,
                        ops: 0,
                        version: 0,
                    })
                    .collect(),
            ),
            keys: Mutex::new(Vec::new()),
        }
    }

    fn pick(&self, rng: &mut StdRng) -> (usize, String, u64) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let i = rng.random_range(0..slots.len());
        let s = &mut slots[i];
        if s.ops >= self.ops_per_key {
            s.generation += 1;
            s.ops = 0;
            s.version = 0;
        }
        s.ops += 1;
        let key = format!("{}-r{i}-{}", self.tag, s.generation);
        if s.ops == 1 {
            self.keys
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(key.clone());
        }
        (i, key, s.version)
    }

    fn saw(&self, slot: usize, version: u64) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots[slot].version = slots[slot].version.max(version);
    }

    /// Every key used so far.
    pub fn keys(&self) -> Vec<String> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn content(&self, rng: &mut StdRng, id: u64) -> String {
        if !self.big {
            return format!("v{id}");
        }
        // Sizes on both sides of the 1 KiB compression threshold; repetitive
        // text so that compression actually applies.
        let len = rng.random_range(16..6000usize);
        let word = format!("artifact {id} {:08x} ", rng.next_u32());
        word.repeat(len / word.len() + 1)[..len].to_string()
    }
}

/// The value the history records for `content`: the content itself for kv,
/// its SHA-256 for artifacts (what an artifact read reports).
fn recorded(store: Store, content: &str) -> String {
    match store {
        Store::Artifact => sha256_hex(content.as_bytes()),
        Store::Kv => content.to_string(),
    }
}

/// Everything one operation needs.
pub struct Ctx<'a> {
    /// The client.
    pub client: &'a Client,
    /// The history.
    pub recorder: &'a Recorder,
    /// Node id and base URL the operation goes through.
    pub node: (u64, String),
    /// The logical process.
    pub process: u64,
}

impl Ctx<'_> {
    fn op(&self, id: u64, call: Call, invoke_ms: f64, status: Status, error: Option<String>) -> Op {
        Op {
            id,
            process: self.process,
            node: self.node.0,
            call,
            status,
            invoke_ms,
            complete_ms: self.recorder.now_ms(),
            error,
        }
    }
}

impl Registers {
    /// One random operation.
    pub async fn step(&self, ctx: &Ctx<'_>, rng: &mut StdRng) -> Op {
        let id = ctx.recorder.next_id();
        let (slot, key, last_version) = self.pick(rng);
        let url = &ctx.node.1;
        let store = ctx.client.store;
        let roll: f64 = rng.random();
        let invoke = ctx.recorder.now_ms();
        if roll < 0.5 {
            let ans = ctx.client.read(url, &key).await;
            return match ans {
                Answer::Ok((output, corrupt)) => {
                    if let Some(o) = &output {
                        self.saw(slot, o.version);
                    }
                    let call = Call::Read {
                        key,
                        output,
                        corrupt,
                    };
                    ctx.op(id, call, invoke, Status::Ok, None)
                }
                Answer::Err(s, why) => {
                    let call = Call::Read {
                        key,
                        output: None,
                        corrupt: None,
                    };
                    ctx.op(id, call, invoke, s, Some(why))
                }
            };
        }
        let content = self.content(rng, id);
        let value = recorded(store, &content);
        if roll < 0.75 {
            let ans = ctx.client.write(url, &key, &content, None).await;
            let (status, version, error) = match ans {
                Answer::Ok(v) => {
                    self.saw(slot, v);
                    (Status::Ok, Some(v), None)
                }
                Answer::Err(s, why) => (s, None, Some(why)),
            };
            let call = Call::Write {
                key,
                value,
                version,
            };
            return ctx.op(id, call, invoke, status, error);
        }
        // Aim at the latest version seen, sometimes one behind or ahead.
        let expect = match rng.random_range(0..6) {
            0 => last_version.saturating_sub(1),
            1 => last_version + 1,
            _ => last_version,
        };
        let ans = ctx.client.write(url, &key, &content, Some(expect)).await;
        let (status, error) = match ans {
            Answer::Ok(v) => {
                self.saw(slot, v);
                (Status::Ok, None)
            }
            Answer::Err(s, why) => (s, Some(why)),
        };
        let call = Call::Cas { key, expect, value };
        ctx.op(id, call, invoke, status, error)
    }

    /// A final linearizable read of `key`.
    pub async fn final_read(&self, ctx: &Ctx<'_>, key: &str) -> Op {
        let id = ctx.recorder.next_id();
        let invoke = ctx.recorder.now_ms();
        match ctx.client.read(&ctx.node.1, key).await {
            Answer::Ok((output, corrupt)) => ctx.op(
                id,
                Call::Read {
                    key: key.to_string(),
                    output,
                    corrupt,
                },
                invoke,
                Status::Ok,
                None,
            ),
            Answer::Err(s, why) => ctx.op(
                id,
                Call::Read {
                    key: key.to_string(),
                    output: None,
                    corrupt: None,
                },
                invoke,
                s,
                Some(why),
            ),
        }
    }
}

/// Unique create-only adds.
pub struct SetAdds {
    prefix: String,
    next: Mutex<u64>,
}

impl SetAdds {
    /// Elements live under artifact ids `<tag>-s-<element>`.
    pub fn new(tag: &str) -> Self {
        Self {
            prefix: format!("{tag}-s-"),
            next: Mutex::new(0),
        }
    }

    /// Adds the next element.
    pub async fn step(&self, ctx: &Ctx<'_>) -> Op {
        let id = ctx.recorder.next_id();
        let element = {
            let mut n = self.next.lock().unwrap_or_else(|p| p.into_inner());
            *n += 1;
            *n
        };
        let invoke = ctx.recorder.now_ms();
        let key = format!("{}{element:010}", self.prefix);
        let ans = ctx
            .client
            .write(&ctx.node.1, &key, &element.to_string(), Some(0))
            .await;
        let (status, error) = match ans {
            Answer::Ok(_) => (Status::Ok, None),
            Answer::Err(s, why) => (s, Some(why)),
        };
        ctx.op(id, Call::Add { element }, invoke, status, error)
    }

    /// Reads the whole set through the context's node.
    pub async fn final_read(&self, ctx: &Ctx<'_>) -> Op {
        let id = ctx.recorder.next_id();
        let invoke = ctx.recorder.now_ms();
        match ctx.client.list_ids(&ctx.node.1, &self.prefix).await {
            Answer::Ok(ids) => {
                let elements = ids
                    .iter()
                    .filter_map(|i| i.strip_prefix(&self.prefix)?.parse().ok())
                    .collect();
                ctx.op(
                    id,
                    Call::ReadSet {
                        elements: Some(elements),
                    },
                    invoke,
                    Status::Ok,
                    None,
                )
            }
            Answer::Err(s, why) => {
                ctx.op(id, Call::ReadSet { elements: None }, invoke, s, Some(why))
            }
        }
    }
}

/// Locks guarding a kv key: acquire, a few fenced writes (with pauses that
/// may outlast the lease), sometimes a read of the guarded key, release.
pub struct Locks {
    tag: String,
    locks: usize,
}

impl Locks {
    /// `locks` locks named `<tag>-L<i>`, each guarding kv key `<tag>-guard-L<i>`.
    pub fn new(tag: &str, locks: usize) -> Self {
        Self {
            tag: tag.to_string(),
            locks: locks.max(1),
        }
    }

    fn names(&self, i: usize) -> (String, String) {
        (
            format!("{}-L{i}", self.tag),
            format!("{}-guard-L{i}", self.tag),
        )
    }

    /// Every guarded key.
    pub fn guards(&self) -> Vec<String> {
        (0..self.locks).map(|i| self.names(i).1).collect()
    }

    /// One lock session; stops at the first indeterminate operation.
    pub async fn step(&self, ctx: &Ctx<'_>, rng: &mut StdRng) -> Vec<Op> {
        let (lock, guard) = self.names(rng.random_range(0..self.locks));
        let url = &ctx.node.1;
        let mut ops = Vec::new();
        let id = ctx.recorder.next_id();
        let invoke = ctx.recorder.now_ms();
        let owner = format!("p{}", ctx.process);
        let ttl = rng.random_range(300..2000);
        let wait = rng.random_range(0..1000);
        let token = match ctx.client.acquire(url, &lock, &owner, ttl, wait).await {
            Answer::Ok(t) => {
                let call = Call::Acquire {
                    lock: lock.clone(),
                    token: Some(t),
                };
                ops.push(ctx.op(id, call, invoke, Status::Ok, None));
                t
            }
            Answer::Err(s, why) => {
                let call = Call::Acquire {
                    lock: lock.clone(),
                    token: None,
                };
                ops.push(ctx.op(id, call, invoke, s, Some(why)));
                return ops;
            }
        };
        for _ in 0..rng.random_range(1..=3) {
            // Sometimes longer than the lease: the store must refuse the
            // write once the lock has moved on.
            let nap = rng.random_range(0..ttl * 3 / 2);
            tokio::time::sleep(std::time::Duration::from_millis(nap)).await;
            let id = ctx.recorder.next_id();
            let invoke = ctx.recorder.now_ms();
            let value = format!("t{token}-{id}");
            let (status, version, error) = match ctx
                .client
                .fenced_write(url, &guard, &value, &lock, token)
                .await
            {
                Answer::Ok(v) => (Status::Ok, Some(v), None),
                Answer::Err(s, why) => (s, None, Some(why)),
            };
            let call = Call::FencedWrite {
                lock: lock.clone(),
                token,
                key: guard.clone(),
                value,
                version,
            };
            ops.push(ctx.op(id, call, invoke, status, error));
            if status == Status::Info {
                return ops;
            }
        }
        if rng.random_bool(0.3) {
            ops.push(guard_read(ctx, &guard).await);
        }
        let id = ctx.recorder.next_id();
        let invoke = ctx.recorder.now_ms();
        let (status, error) = match ctx.client.release(url, &lock, token).await {
            Answer::Ok(()) => (Status::Ok, None),
            Answer::Err(s, why) => (s, Some(why)),
        };
        let call = Call::Release { lock, token };
        ops.push(ctx.op(id, call, invoke, status, error));
        ops
    }

    /// A final read of a guarded key.
    pub async fn final_read(&self, ctx: &Ctx<'_>, guard: &str) -> Op {
        guard_read(ctx, guard).await
    }
}

async fn guard_read(ctx: &Ctx<'_>, key: &str) -> Op {
    let id = ctx.recorder.next_id();
    let invoke = ctx.recorder.now_ms();
    let (status, output, error) = match ctx.client.read(&ctx.node.1, key).await {
        Answer::Ok((output, _)) => (Status::Ok, output, None),
        Answer::Err(s, why) => (s, None, Some(why)),
    };
    let call = Call::Read {
        key: key.to_string(),
        output,
        corrupt: None,
    };
    ctx.op(id, call, invoke, status, error)
}
