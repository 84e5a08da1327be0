//! Tests of the deterministic apply, one per guarantee.

use super::*;
use crate::artifact::ArtifactMeta;
use crate::command::{ArtifactFields, Fence, Idempotency, KvMeta};
use crate::records::{KvRecord, LockRecord};
use crate::state_tree::StateTree;
use crate::StoredContent;

fn tree() -> StateTree {
    StateTree::new()
}

fn put(id: &str, body: &str, pre: Precondition) -> Command {
    Command::PutArtifact {
        id: id.into(),
        fields: ArtifactFields {
            title: Some(format!("title of {id}")),
            ..Default::default()
        },
        content: StoredContent::prepare(body.as_bytes(), 1024),
        merge: false,
        precondition: pre,
    }
}

/// Applies each (index, request) in its own committed batch, like the state machine.
fn run(tree: &StateTree, entries: &[(u64, Request)]) -> Vec<Response> {
    entries
        .iter()
        .map(|(index, req)| {
            let mut view = Overlay::new(tree);
            let r = apply_request(&mut view, *index, req).unwrap();
            tree.apply_batch(view.into_batch().0);
            r
        })
        .collect()
}

fn artifact(r: &Response) -> &ArtifactMeta {
    match r {
        Response::Artifact(a) => a,
        other => panic!("expected artifact, got {other:?}"),
    }
}

fn kv_put(key: &str, value: &str, ttl_ms: Option<u64>, pre: Precondition) -> Command {
    Command::KvPut {
        key: key.into(),
        value: value.as_bytes().to_vec(),
        ttl_ms,
        precondition: pre,
    }
}

fn acquire(name: &str, owner: &str, ttl_ms: u64, wait_ms: u64) -> Command {
    Command::LockAcquire {
        name: name.into(),
        owner: owner.into(),
        ttl_ms,
        wait_ms,
    }
}

fn lock(r: &Response) -> &LockRecord {
    match r {
        Response::Lock(l) => l,
        other => panic!("expected a lock grant, got {other:?}"),
    }
}

fn events(tree: &StateTree) -> Vec<(u64, EventKind, String)> {
    tree.scan_prefix(keys::EVENT_PREFIX)
        .map(|kv| {
            let e: Event = decode(&kv.1).unwrap();
            (e.revision, e.kind, e.key)
        })
        .collect()
}

fn tick(now: u64) -> Request {
    Request::new(now, Command::Tick)
}

#[test]
fn create_then_update_bumps_version_and_revision() {
    let t = tree();
    let rs = run(
        &t,
        &[
            (3, Request::new(1000, put("a", "one", Precondition::None))),
            (4, Request::new(2000, put("a", "two", Precondition::None))),
        ],
    );
    let (first, second) = (artifact(&rs[0]), artifact(&rs[1]));
    assert_eq!((first.version, first.revision), (1, 3));
    assert_eq!((second.version, second.revision), (2, 4));
    assert_eq!(second.created_ms, 1000);
    assert_eq!(second.updated_ms, 2000);
}

#[test]
fn version_preconditions_reject_without_change() {
    let t = tree();
    let rs = run(
        &t,
        &[
            (1, Request::new(1, put("a", "x", Precondition::IfAbsent))),
            (2, Request::new(2, put("a", "y", Precondition::IfAbsent))),
            (
                3,
                Request::new(3, put("a", "y", Precondition::IfVersion(7))),
            ),
            (
                4,
                Request::new(4, put("a", "z", Precondition::IfVersion(1))),
            ),
            (5, Request::new(5, put("b", "z", Precondition::IfExists))),
        ],
    );
    let conflict = |v| Response::Rejected(Rejection::Conflict { current_version: v });
    assert_eq!(rs[1], conflict(Some(1)));
    assert_eq!(rs[2], conflict(Some(1)));
    assert_eq!(artifact(&rs[3]).version, 2);
    assert_eq!(rs[4], conflict(None));
    assert!(t.get(&keys::artifact("b")).is_none());
}

#[test]
fn delete_honours_if_match_and_reports_missing() {
    let t = tree();
    let del = |pre| Command::DeleteArtifact {
        id: "a".into(),
        precondition: pre,
    };
    let rs = run(
        &t,
        &[
            (1, Request::new(1, put("a", "x", Precondition::None))),
            (2, Request::new(2, del(Precondition::IfVersion(9)))),
            (3, Request::new(3, del(Precondition::IfVersion(1)))),
            (4, Request::new(4, del(Precondition::None))),
        ],
    );
    assert_eq!(
        rs[1],
        Response::Rejected(Rejection::Conflict {
            current_version: Some(1)
        })
    );
    assert_eq!(rs[2], Response::Deleted { revision: 3 });
    assert_eq!(rs[3], Response::Rejected(Rejection::NotFound));
    assert!(t.get(&keys::artifact("a")).is_none());
}

#[test]
fn replicated_clock_never_runs_backwards() {
    let t = tree();
    let rs = run(
        &t,
        &[
            (1, Request::new(5000, put("a", "x", Precondition::None))),
            // A new leader with a slower clock proposes an earlier time.
            (2, Request::new(4000, put("a", "y", Precondition::None))),
        ],
    );
    assert_eq!(artifact(&rs[1]).updated_ms, 5000);
}

#[test]
fn idempotent_retry_returns_the_first_outcome_until_retention_ends() {
    let t = tree();
    let keyed = |now, body| Request {
        now_ms: now,
        idempotency: Some(Idempotency {
            key: "k1".into(),
            retain_ms: 60_000,
        }),
        fence: None,
        command: put("a", body, Precondition::None),
    };
    let rs = run(&t, &[(1, keyed(1000, "x")), (2, keyed(2000, "y"))]);
    assert_eq!(rs[0], rs[1], "the retry must not apply again");
    assert_eq!(artifact(&rs[1]).version, 1);

    // After retention, the key is forgotten (dropped on the replicated clock).
    let later = 1000 + 60_000 + 1;
    let rs = run(&t, &[(3, tick(later)), (4, keyed(later, "z"))]);
    assert_eq!(rs[0], Response::Noop);
    assert_eq!(artifact(&rs[1]).version, 2);
}

#[test]
fn kv_ttl_expires_on_the_replicated_clock_with_an_expire_event() {
    let t = tree();
    let rs = run(
        &t,
        &[
            (
                1,
                Request::new(1000, kv_put("s", "v", Some(500), Precondition::None)),
            ),
            (2, tick(1499)),
        ],
    );
    assert_eq!(
        rs[0],
        Response::Kv(KvMeta {
            key: "s".into(),
            version: 1,
            revision: 1,
            expires_ms: Some(1500)
        })
    );
    assert!(t.get(&keys::kv("s")).is_some(), "not yet due at 1499");
    run(&t, &[(3, tick(1500))]);
    assert!(t.get(&keys::kv("s")).is_none(), "due at 1500");
    assert_eq!(
        events(&t),
        vec![
            (1, EventKind::Put, "kv/s".into()),
            (3, EventKind::Expire, "kv/s".into())
        ]
    );
}

#[test]
fn kv_overwrite_without_ttl_cancels_the_old_expiry() {
    let t = tree();
    run(
        &t,
        &[
            (
                1,
                Request::new(1000, kv_put("s", "v", Some(500), Precondition::None)),
            ),
            (
                2,
                Request::new(1100, kv_put("s", "w", None, Precondition::IfVersion(1))),
            ),
            (3, tick(5000)),
        ],
    );
    assert!(t.get(&keys::kv("s")).is_some());
    assert_eq!(t.scan_prefix(keys::EXPIRY_PREFIX).count(), 0);
}

#[test]
fn lock_tokens_are_grant_indexes_and_strictly_increase() {
    let t = tree();
    let rs = run(
        &t,
        &[
            (10, Request::new(1000, acquire("L", "a", 1000, 0))),
            (11, Request::new(1001, acquire("L", "b", 1000, 0))),
            (
                12,
                Request::new(
                    1002,
                    Command::LockRelease {
                        name: "L".into(),
                        token: 10,
                    },
                ),
            ),
            (13, Request::new(1003, acquire("L", "b", 1000, 0))),
        ],
    );
    assert_eq!(lock(&rs[0]).token, 10);
    assert_eq!(
        rs[1],
        Response::Rejected(Rejection::Locked {
            holder: "a".into(),
            expires_ms: 2000
        })
    );
    assert_eq!(rs[2], Response::Released);
    assert_eq!(lock(&rs[3]).token, 13);
}

#[test]
fn waiters_are_granted_first_come_first_served_on_release() {
    let t = tree();
    let rs = run(
        &t,
        &[
            (1, Request::new(0, acquire("L", "a", 10_000, 0))),
            (2, Request::new(1, acquire("L", "b", 10_000, 5_000))),
            (3, Request::new(2, acquire("L", "c", 10_000, 5_000))),
            (
                4,
                Request::new(
                    3,
                    Command::LockRelease {
                        name: "L".into(),
                        token: 1,
                    },
                ),
            ),
        ],
    );
    assert_eq!(rs[1], Response::LockQueued { request: 2 });
    assert_eq!(rs[2], Response::LockQueued { request: 3 });
    let held: LockRecord = decode(&t.get(&keys::lock("L")).unwrap()).unwrap();
    assert_eq!((held.owner.as_str(), held.token, held.request), ("b", 4, 2));
    // c gives up: still queued, so it leaves and is told who holds the lock.
    let rs = run(
        &t,
        &[(
            5,
            Request::new(
                4,
                Command::LockCancelWait {
                    name: "L".into(),
                    request: 3,
                },
            ),
        )],
    );
    assert!(
        matches!(&rs[0], Response::Rejected(Rejection::Locked { holder, .. }) if holder == "b")
    );
    assert_eq!(t.scan_prefix(keys::LOCK_QUEUE_PREFIX).count(), 0);
}

#[test]
fn an_expired_lease_frees_the_lock_and_skips_waiters_past_their_deadline() {
    let t = tree();
    run(
        &t,
        &[
            (1, Request::new(0, acquire("L", "a", 2_000, 0))),
            (2, Request::new(0, acquire("L", "late", 1_000, 500))),
            (3, Request::new(0, acquire("L", "patient", 1_000, 60_000))),
            (4, tick(2_000)),
        ],
    );
    let held: LockRecord = decode(&t.get(&keys::lock("L")).unwrap()).unwrap();
    assert_eq!(
        (held.owner.as_str(), held.token, held.expires_ms),
        ("patient", 4, 3_000)
    );
    let kinds: Vec<_> = events(&t).into_iter().map(|(r, k, _)| (r, k)).collect();
    assert_eq!(
        kinds,
        vec![
            (1, EventKind::Put),
            (4, EventKind::Expire),
            (4, EventKind::Put)
        ]
    );
}

#[test]
fn renew_extends_only_the_current_token() {
    let t = tree();
    let renew = |token| Command::LockRenew {
        name: "L".into(),
        token,
        ttl_ms: 5_000,
    };
    let rs = run(
        &t,
        &[
            (1, Request::new(0, acquire("L", "a", 1_000, 0))),
            (2, Request::new(900, renew(1))),
            (3, tick(1_500)),
            (4, Request::new(1_600, renew(99))),
        ],
    );
    assert_eq!(lock(&rs[1]).expires_ms, 5_900);
    assert!(
        t.get(&keys::lock("L")).is_some(),
        "renewed lease survives its first deadline"
    );
    assert_eq!(
        rs[3],
        Response::Rejected(Rejection::TokenStale {
            lock: "L".into(),
            token: 99
        })
    );
}

#[test]
fn fenced_write_applies_only_with_the_current_token() {
    let t = tree();
    let fenced = |now, token, value: &str| Request {
        now_ms: now,
        idempotency: None,
        fence: Some(Fence {
            lock: "L".into(),
            token,
        }),
        command: kv_put("counter", value, None, Precondition::None),
    };
    let rs = run(
        &t,
        &[
            (1, Request::new(0, acquire("L", "a", 1_000, 0))),
            (2, fenced(10, 1, "1")),
            (3, tick(1_000)),
            (4, Request::new(1_001, acquire("L", "b", 1_000, 0))),
            (5, fenced(1_002, 1, "stale")),
            (6, fenced(1_003, 4, "2")),
        ],
    );
    assert!(matches!(rs[1], Response::Kv(_)));
    assert_eq!(
        rs[4],
        Response::Rejected(Rejection::Fenced {
            lock: "L".into(),
            token: 1,
            current: Some(4)
        })
    );
    assert!(matches!(rs[5], Response::Kv(KvMeta { version: 2, .. })));
}

#[test]
fn instances_expire_and_refreshes_are_not_events() {
    let t = tree();
    let beat = |meta: Option<&str>| Command::InstanceHeartbeat {
        id: "app-1".into(),
        ttl_ms: 1_000,
        meta_json: meta.map(str::to_string),
    };
    run(
        &t,
        &[
            (1, Request::new(0, beat(Some("{\"v\":1}")))),
            (2, Request::new(500, beat(None))),
            (3, Request::new(900, beat(Some("{\"v\":2}")))),
            (4, tick(1_899)),
        ],
    );
    assert!(t.get(&keys::instance("app-1")).is_some());
    run(&t, &[(5, tick(1_900))]);
    assert!(t.get(&keys::instance("app-1")).is_none());
    let kinds: Vec<_> = events(&t).into_iter().map(|(r, k, _)| (r, k)).collect();
    assert_eq!(
        kinds,
        vec![
            (1, EventKind::Put),
            (3, EventKind::Put),
            (5, EventKind::Expire)
        ]
    );
}

#[test]
fn trimming_keeps_the_newest_events_and_raises_the_floor() {
    let t = tree();
    let mut entries: Vec<(u64, Request)> = (1..=10)
        .map(|i| {
            (
                i,
                Request::new(
                    i * 100,
                    kv_put(&format!("k{i}"), "v", None, Precondition::None),
                ),
            )
        })
        .collect();
    entries.push((
        11,
        Request::new(
            1_100,
            Command::TrimEvents {
                keep_count: 4,
                keep_ms: 1_000_000,
            },
        ),
    ));
    run(&t, &entries);
    let revisions: Vec<u64> = events(&t).into_iter().map(|(r, _, _)| r).collect();
    assert_eq!(revisions, vec![7, 8, 9, 10]);
    let stats: HistoryStats = decode(&t.get(keys::EVENT_STATS).unwrap()).unwrap();
    assert_eq!(stats, HistoryStats { count: 4, floor: 6 });
}

#[test]
fn same_entries_give_identical_state_on_two_replicas() {
    let entries: Vec<(u64, Request)> = (1..80)
        .map(|i| {
            let cmd = match i % 7 {
                0 => Command::DeleteArtifact {
                    id: format!("a{}", i % 5),
                    precondition: Precondition::None,
                },
                1 => acquire("L", &format!("o{i}"), 50, 100),
                2 => Command::LockRelease {
                    name: "L".into(),
                    token: i - 1,
                },
                3 => kv_put(&format!("k{}", i % 4), "v", Some(30), Precondition::None),
                _ => put(
                    &format!("a{}", i % 5),
                    &"z".repeat(i as usize * 100),
                    Precondition::None,
                ),
            };
            let idempotency = Some(Idempotency {
                key: format!("k{}", i % 9),
                retain_ms: 200,
            });
            (
                i,
                Request {
                    now_ms: 10 * i,
                    idempotency,
                    fence: None,
                    command: cmd,
                },
            )
        })
        .collect();
    let (a, b) = (tree(), tree());
    run(&a, &entries);
    run(&b, &entries);
    let dump = |t: &StateTree| t.iter().collect::<Vec<_>>();
    assert_eq!(dump(&a), dump(&b));
}

fn batch(now_ms: u64, commands: Vec<Command>) -> Request {
    let requests = commands
        .into_iter()
        .map(|c| Request::new(now_ms, c))
        .collect();
    Request::new(now_ms, Command::Batch(requests))
}

fn answers(r: &Response) -> &[Response] {
    match r {
        Response::Batch(rs) => rs,
        other => panic!("expected a batch answer, got {other:?}"),
    }
}

#[test]
fn a_batch_applies_in_order_and_later_requests_see_earlier_ones() {
    let t = tree();
    let rs = run(
        &t,
        &[(
            7,
            batch(
                100,
                vec![
                    kv_put("k", "one", None, Precondition::IfAbsent),
                    kv_put("k", "two", None, Precondition::IfVersion(1)),
                    kv_put("k", "three", None, Precondition::IfAbsent),
                    Command::KvDelete {
                        key: "other".into(),
                        precondition: Precondition::None,
                    },
                ],
            ),
        )],
    );
    let rs = answers(&rs[0]);
    assert_eq!(rs.len(), 4);
    let meta = |r: &Response| match r {
        Response::Kv(m) => (m.version, m.revision),
        other => panic!("expected a kv answer, got {other:?}"),
    };
    // Every change in the entry has the entry's index as its revision.
    assert_eq!(meta(&rs[0]), (1, 7));
    assert_eq!(meta(&rs[1]), (2, 7));
    assert_eq!(
        rs[2],
        Response::Rejected(Rejection::Conflict {
            current_version: Some(2)
        })
    );
    assert_eq!(rs[3], Response::Rejected(Rejection::NotFound));
    let record: KvRecord = decode(&t.get(&keys::kv("k")).unwrap()).unwrap();
    assert_eq!(record.value, b"two");
    // Both puts are in the history, in order, under one revision.
    let e = events(&t);
    assert_eq!(
        e,
        vec![
            (7, EventKind::Put, "kv/k".to_string()),
            (7, EventKind::Put, "kv/k".to_string())
        ]
    );
}

#[test]
fn lock_tokens_stay_unique_and_increasing_when_one_entry_grants_several() {
    let t = tree();
    let rs = run(
        &t,
        &[
            (
                10,
                batch(
                    1000,
                    vec![
                        acquire("A", "a", 1000, 0),
                        acquire("B", "b", 1000, 0),
                        acquire("A", "c", 1000, 5000),
                        acquire("C", "d", 1000, 0),
                    ],
                ),
            ),
            // The next entry's index is below the ids the batch used up.
            (
                11,
                batch(
                    1001,
                    vec![
                        Command::LockRelease {
                            name: "A".into(),
                            token: 10,
                        },
                        acquire("D", "e", 1000, 0),
                    ],
                ),
            ),
            (20, Request::new(1002, acquire("E", "f", 1000, 0))),
        ],
    );
    let first = answers(&rs[0]);
    assert_eq!(lock(&first[0]).token, 10);
    assert_eq!(lock(&first[1]).token, 11);
    // The waiter's place is an id of its own, not shared with a grant.
    assert_eq!(first[2], Response::LockQueued { request: 12 });
    assert_eq!(lock(&first[3]).token, 13);
    let second = answers(&rs[1]);
    assert_eq!(second[0], Response::Released);
    // The release handed A to the waiter with a fresh token.
    let held: LockRecord = decode(&t.get(&keys::lock("A")).unwrap()).unwrap();
    assert_eq!(
        (held.owner.as_str(), held.token, held.request),
        ("c", 14, 12)
    );
    assert_eq!(lock(&second[1]).token, 15);
    // Once the log index passes the ids issued, tokens are indexes again.
    assert_eq!(lock(&rs[2]).token, 20);
}

#[test]
fn idempotency_keys_and_fences_hold_per_request_inside_a_batch() {
    let t = tree();
    let keyed = |value: &str| Request {
        now_ms: 100,
        idempotency: Some(Idempotency {
            key: "retry-1".into(),
            retain_ms: 60_000,
        }),
        fence: None,
        command: kv_put("k", value, None, Precondition::None),
    };
    let fenced = Request {
        now_ms: 100,
        idempotency: None,
        fence: Some(Fence {
            lock: "L".into(),
            token: 3,
        }),
        command: kv_put("guarded", "x", None, Precondition::None),
    };
    let rs = run(
        &t,
        &[(
            3,
            Request::new(
                100,
                Command::Batch(vec![
                    keyed("first"),
                    keyed("second"),
                    Request::new(100, acquire("L", "a", 1000, 0)),
                    fenced.clone(),
                ]),
            ),
        )],
    );
    let rs = answers(&rs[0]);
    // The retry inside the batch gets the first outcome and changes nothing.
    assert_eq!(rs[0], rs[1]);
    let record: KvRecord = decode(&t.get(&keys::kv("k")).unwrap()).unwrap();
    assert_eq!(record.value, b"first");
    // The fence names the token the batch granted before it.
    assert_eq!(lock(&rs[2]).token, 3);
    assert!(matches!(rs[3], Response::Kv(_)));
}

#[test]
fn garbage_is_purged_a_bounded_amount_per_request_and_never_counts_once_due() {
    let t = tree();
    let n = GC_PER_REQUEST as u64 * 3;
    let keyed = |i: u64, now: u64| Request {
        now_ms: now,
        idempotency: Some(Idempotency {
            key: format!("key-{i}"),
            retain_ms: 1000,
        }),
        fence: None,
        command: kv_put(&format!("k{i}"), "v", None, Precondition::None),
    };
    let entries: Vec<(u64, Request)> = (0..n).map(|i| (i + 1, keyed(i, 100))).collect();
    run(&t, &entries);
    let records = |t: &StateTree| t.scan_prefix(keys::IDEMPOTENCY_PREFIX).count() as u64;
    assert_eq!(records(&t), n);

    // Long after they all fell due, one request purges only the oldest few.
    let later = 100 + 1000 + 50_000;
    run(&t, &[(n + 1, Request::new(later, Command::Tick))]);
    assert_eq!(records(&t), n - GC_PER_REQUEST as u64);
    assert_eq!(
        t.scan_prefix(keys::GC_PREFIX).count() as u64,
        n - GC_PER_REQUEST as u64
    );

    // A key still waiting for its purge is forgotten all the same, and its
    // new record survives the old purge.
    let last = n - 1;
    let rs = run(&t, &[(n + 2, keyed(last, later))]);
    match &rs[0] {
        Response::Kv(meta) => assert_eq!(meta.version, 2, "applied anew"),
        other => panic!("expected a kv answer, got {other:?}"),
    }
    for i in 0..4 {
        run(&t, &[(n + 3 + i, Request::new(later, Command::Tick))]);
    }
    assert!(t.get(&keys::idempotency(&format!("key-{last}"))).is_some());
    assert_eq!(records(&t), 1);
}

#[test]
fn leases_expiring_in_one_entry_hand_their_locks_over_with_distinct_tokens() {
    let t = tree();
    run(
        &t,
        &[
            (1, Request::new(0, acquire("A", "a", 1000, 0))),
            (2, Request::new(0, acquire("B", "b", 1000, 0))),
            (3, Request::new(10, acquire("A", "c", 1000, 60_000))),
            (4, Request::new(10, acquire("B", "d", 1000, 60_000))),
            // One tick expires both leases; each lock goes to its waiter.
            (5, tick(1000)),
        ],
    );
    let held = |name: &str| -> LockRecord { decode(&t.get(&keys::lock(name)).unwrap()).unwrap() };
    let (a, b) = (held("A"), held("B"));
    assert_eq!((a.owner.as_str(), b.owner.as_str()), ("c", "d"));
    assert_ne!(
        a.token, b.token,
        "two locks granted by one entry share no token"
    );
    assert!(a.token >= 5 && b.token >= 5);
}

fn in_session(session: u128, seq: u64, acked_below: u64, command: Command) -> Command {
    Command::InSession(Box::new(crate::command::SessionWrite {
        session,
        seq,
        acked_below,
        retain_ms: 1000,
        command,
    }))
}

fn kv_version(r: &Response) -> u64 {
    match r {
        Response::Kv(meta) => meta.version,
        other => panic!("expected a kv answer, got {other:?}"),
    }
}

fn count(t: &StateTree, prefix: &[u8]) -> usize {
    t.scan_prefix(prefix).count()
}

#[test]
fn a_session_retry_gets_the_first_outcome_even_once_its_fence_is_gone() {
    let t = tree();
    let put = |seq: u64| in_session(7, seq, 0, kv_put("k", "v", None, Precondition::None));
    let grant = run(&t, &[(1, Request::new(0, acquire("L", "a", 10_000, 0)))]);
    let fence = Fence {
        lock: "L".into(),
        token: lock(&grant[0]).token,
    };
    let fenced = |seq: u64| Request {
        fence: Some(fence.clone()),
        ..Request::new(10, put(seq))
    };
    let rs = run(
        &t,
        &[
            (2, fenced(0)),
            (
                3,
                Request::new(
                    10,
                    Command::LockRelease {
                        name: "L".into(),
                        token: fence.token,
                    },
                ),
            ),
            // The retry of write 0 after a leader change, and a new write.
            (4, fenced(0)),
            (5, fenced(1)),
            (6, Request::new(10, put(2))),
        ],
    );
    assert_eq!(rs[0], rs[2], "the retry gets the first outcome");
    assert_eq!(kv_version(&rs[2]), 1, "and the put applied once");
    assert!(matches!(
        rs[3],
        Response::Rejected(Rejection::Fenced { .. })
    ));
    assert_eq!(kv_version(&rs[4]), 2);
    assert_eq!(count(&t, keys::SESSION_OUTCOME_PREFIX), 3);
}

#[test]
fn outcomes_below_acked_are_dropped_and_a_late_copy_is_refused() {
    let t = tree();
    let put = |seq: u64, acked: u64| {
        Request::new(
            10,
            in_session(7, seq, acked, kv_put("k", "v", None, Precondition::None)),
        )
    };
    let rs = run(&t, &[(1, put(0, 0)), (2, put(1, 0)), (3, put(2, 2))]);
    assert_eq!(rs.iter().map(kv_version).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(
        count(&t, keys::SESSION_OUTCOME_PREFIX),
        1,
        "only write 2's is kept"
    );
    // A copy of write 1 that was stuck while its sender gave up on it.
    let late = run(&t, &[(4, put(1, 0))]);
    assert_eq!(late[0], Response::Rejected(Rejection::Abandoned { seq: 1 }));
    let stored: KvRecord = decode(&t.get(&keys::kv("k")).unwrap()).unwrap();
    assert_eq!(stored.version, 3, "the late copy changed nothing");
    // Another session's numbers are its own.
    let other = run(
        &t,
        &[(5, Request::new(10, in_session(8, 1, 0, Command::Tick)))],
    );
    assert_eq!(other[0], Response::Noop);
}

#[test]
fn a_session_is_kept_while_it_writes_and_dropped_once_idle_for_its_retention() {
    let t = tree();
    let write = |seq: u64, now: u64| {
        Request::new(
            now,
            in_session(7, seq, 0, kv_put("k", "v", None, Precondition::None)),
        )
    };
    // Retention is 1000 ms: its first housekeeping falls due at 1100.
    run(
        &t,
        &[(1, write(0, 100)), (2, write(1, 900)), (3, tick(1200))],
    );
    assert_eq!(count(&t, keys::SESSION_PREFIX), 1, "used at 900: kept");
    assert_eq!(count(&t, keys::SESSION_OUTCOME_PREFIX), 2);
    assert_eq!(count(&t, keys::GC_PREFIX), 1, "looked at again at 1900");
    run(&t, &[(4, tick(1899))]);
    assert_eq!(count(&t, keys::SESSION_PREFIX), 1);
    run(&t, &[(5, tick(1900))]);
    assert_eq!(count(&t, keys::SESSION_PREFIX), 0);
    assert_eq!(count(&t, keys::SESSION_OUTCOME_PREFIX), 0);
    assert_eq!(count(&t, keys::GC_PREFIX), 0);
}

#[test]
fn a_long_awaited_write_frees_the_outcomes_behind_it_a_bounded_number_per_write() {
    let t = tree();
    let n = GC_PER_REQUEST as u64 * 2 + 10;
    let write = |seq: u64, acked: u64| Request::new(10, in_session(7, seq, acked, Command::Tick));
    // Write 0 is awaited all along, so nothing behind it may be dropped.
    let entries: Vec<(u64, Request)> = (0..n).map(|seq| (seq + 1, write(seq, 0))).collect();
    run(&t, &entries);
    assert_eq!(count(&t, keys::SESSION_OUTCOME_PREFIX) as u64, n);
    // Its answer frees all n, but each write drops at most GC_PER_REQUEST.
    let mut left = Vec::new();
    for i in 0..3 {
        run(&t, &[(n + 1 + i, write(n + i, n))]);
        left.push(count(&t, keys::SESSION_OUTCOME_PREFIX) as u64);
    }
    let per = GC_PER_REQUEST as u64;
    assert_eq!(left, [n + 1 - per, n + 2 - 2 * per, 3]);
}

/// Applies one request and returns its answer with the content files its
/// batch writes and drops.
fn apply_one(t: &StateTree, index: u64, req: Request) -> (Response, Vec<String>, Vec<String>) {
    let mut view = Overlay::new(t);
    let r = apply_request(&mut view, index, &req).unwrap();
    let (batch, _, content) = view.into_batch();
    t.apply_batch(batch);
    (r, content.written.into_keys().collect(), content.dropped)
}

#[test]
fn each_version_gets_its_own_file_and_drops_the_one_it_replaces() {
    use crate::content::file_name;
    let t = tree();
    let (r, written, dropped) =
        apply_one(&t, 1, Request::new(1, put("a", "one", Precondition::None)));
    let v1 = artifact(&r).clone();
    assert_eq!((written, dropped), (vec![file_name(&v1)], vec![]));

    let (r, written, dropped) =
        apply_one(&t, 2, Request::new(2, put("a", "two", Precondition::None)));
    let v2 = artifact(&r).clone();
    assert_ne!(file_name(&v1), file_name(&v2));
    assert_eq!(
        (written, dropped),
        (vec![file_name(&v2)], vec![file_name(&v1)])
    );

    let refused = put("a", "three", Precondition::IfVersion(1));
    let (_, written, dropped) = apply_one(&t, 3, Request::new(3, refused));
    assert!(
        written.is_empty() && dropped.is_empty(),
        "a refused write touches no file"
    );

    let del = Command::DeleteArtifact {
        id: "a".into(),
        precondition: Precondition::None,
    };
    let (_, written, dropped) = apply_one(&t, 4, Request::new(4, del.clone()));
    assert_eq!((written, dropped), (vec![], vec![file_name(&v2)]));

    // Created, replaced and deleted within one entry: no file at all.
    let commands = vec![
        put("b", "one", Precondition::None),
        put("b", "two", Precondition::None),
        Command::DeleteArtifact {
            id: "b".into(),
            precondition: Precondition::None,
        },
    ];
    let (_, written, dropped) = apply_one(&t, 5, batch(5, commands));
    assert!(written.is_empty() && dropped.is_empty());
}

#[test]
fn events_of_entries_applied_together_are_numbered_per_entry() {
    // The state machine applies many entries into one overlay; each entry's
    // events are numbered from zero, however many came before them.
    let tree = tree();
    let mut view = Overlay::new(&tree);
    let put = |k: &str| Request::new(10, kv_put(k, "v", None, Precondition::None));
    let batch = Request::new(10, Command::Batch(vec![put("a"), put("b"), put("c")]));
    apply_request(&mut view, 5, &batch).unwrap();
    apply_request(&mut view, 6, &put("d")).unwrap();
    apply_request(&mut view, 7, &batch).unwrap();
    let numbered: Vec<(u64, String)> = view
        .events
        .iter()
        .map(|e| (e.revision, e.key.clone()))
        .collect();
    assert_eq!(numbered.len(), 7);
    for (revision, seq, key) in [
        (5, 0, "kv/a"),
        (5, 2, "kv/c"),
        (6, 0, "kv/d"),
        (7, 1, "kv/b"),
    ] {
        let stored: Event =
            crate::codec::decode(&view.get(&keys::event(revision, seq)).unwrap().unwrap()).unwrap();
        assert_eq!((stored.revision, stored.key.as_str()), (revision, key));
    }
    assert!(view.get(&keys::event(6, 1)).unwrap().is_none());
    assert!(view.get(&keys::event(7, 3)).unwrap().is_none());
}
