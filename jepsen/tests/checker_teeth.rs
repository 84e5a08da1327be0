//! The checkers' teeth: known-bad histories must be flagged, and their
//! correct counterparts must pass (so a checker that flags everything fails
//! too).

use std::time::Duration;

use cairn_jepsen::checker::{lock, register, set, Validity};
use cairn_jepsen::history::{Call, Op, Status, Versioned};

fn op(id: u64, call: Call, status: Status, invoke_ms: f64, complete_ms: f64) -> Op {
    Op {
        id,
        process: id,
        node: 1,
        call,
        status,
        invoke_ms,
        complete_ms,
        error: None,
    }
}

fn read(key: &str, seen: Option<(u64, &str)>) -> Call {
    Call::Read {
        key: key.into(),
        output: seen.map(|(version, value)| Versioned {
            version,
            value: value.into(),
        }),
        corrupt: None,
    }
}

fn write(key: &str, value: &str, version: Option<u64>) -> Call {
    Call::Write {
        key: key.into(),
        value: value.into(),
        version,
    }
}

const BUDGET: Duration = Duration::from_secs(10);

#[test]
fn stale_read_after_acknowledged_write_is_not_linearizable() {
    let ops = vec![
        op(1, write("k", "a", Some(1)), Status::Ok, 0.0, 10.0),
        op(2, write("k", "b", Some(2)), Status::Ok, 20.0, 30.0),
        // Begins after b was acknowledged, yet sees a.
        op(3, read("k", Some((1, "a"))), Status::Ok, 40.0, 45.0),
    ];
    let v = register::check(&ops, BUDGET);
    assert_eq!(v.validity, Validity::Invalid, "{v:?}");
    assert_eq!(v.anomalies[0].kind, "not-linearizable");
}

#[test]
fn read_concurrent_with_a_write_may_see_either_value() {
    let ops = vec![
        op(1, write("k", "a", Some(1)), Status::Ok, 0.0, 10.0),
        op(2, write("k", "b", Some(2)), Status::Ok, 20.0, 50.0),
        op(3, read("k", Some((1, "a"))), Status::Ok, 25.0, 30.0),
        op(4, read("k", Some((2, "b"))), Status::Ok, 31.0, 35.0),
    ];
    assert_eq!(register::check(&ops, BUDGET).validity, Validity::Valid);
}

#[test]
fn lost_update_under_cas_is_caught() {
    // Two compare-and-sets from version 1 both acknowledged: one was lost.
    let cas = |value: &str| Call::Cas {
        key: "k".into(),
        expect: 1,
        value: value.into(),
    };
    let ops = vec![
        op(1, write("k", "a", Some(1)), Status::Ok, 0.0, 5.0),
        op(2, cas("b"), Status::Ok, 10.0, 20.0),
        op(3, cas("c"), Status::Ok, 12.0, 22.0),
    ];
    let v = register::check(&ops, BUDGET);
    assert_eq!(v.validity, Validity::Invalid, "{v:?}");
}

#[test]
fn indeterminate_cas_may_or_may_not_have_applied() {
    let cas = Call::Cas {
        key: "k".into(),
        expect: 1,
        value: "b".into(),
    };
    let applied = vec![
        op(1, write("k", "a", Some(1)), Status::Ok, 0.0, 5.0),
        op(2, cas.clone(), Status::Info, 10.0, 5000.0),
        op(3, read("k", Some((2, "b"))), Status::Ok, 6000.0, 6001.0),
    ];
    assert_eq!(register::check(&applied, BUDGET).validity, Validity::Valid);
    let not_applied = vec![
        op(1, write("k", "a", Some(1)), Status::Ok, 0.0, 5.0),
        op(2, cas, Status::Info, 10.0, 5000.0),
        op(3, read("k", Some((1, "a"))), Status::Ok, 6000.0, 6001.0),
    ];
    assert_eq!(
        register::check(&not_applied, BUDGET).validity,
        Validity::Valid
    );
}

#[test]
fn corrupt_artifact_read_is_flagged() {
    let ops = vec![
        op(1, write("k", "h1", Some(1)), Status::Ok, 0.0, 5.0),
        op(
            2,
            Call::Read {
                key: "k".into(),
                output: Some(Versioned {
                    version: 1,
                    value: "h1".into(),
                }),
                corrupt: Some("content hashes to sha256:00 but the checksum says h1".into()),
            },
            Status::Ok,
            6.0,
            7.0,
        ),
    ];
    let v = register::check(&ops, BUDGET);
    assert_eq!(v.validity, Validity::Invalid);
    assert_eq!(v.anomalies[0].kind, "corrupt-read");
}

fn add(id: u64, element: u64, status: Status) -> Op {
    op(
        id,
        Call::Add { element },
        status,
        id as f64,
        id as f64 + 1.0,
    )
}

fn final_read(id: u64, elements: &[u64]) -> Op {
    op(
        id,
        Call::ReadSet {
            elements: Some(elements.to_vec()),
        },
        Status::Ok,
        1000.0,
        1001.0,
    )
}

#[test]
fn lost_acknowledged_add_is_caught() {
    let ops = vec![
        add(1, 1, Status::Ok),
        add(2, 2, Status::Ok),
        add(3, 3, Status::Info),
        final_read(4, &[1]),
    ];
    let v = set::check(&ops);
    assert_eq!(v.validity, Validity::Invalid);
    assert_eq!(v.anomalies[0].kind, "lost-write");
    assert!(v.anomalies[0].detail.contains(": 2"), "{v:?}");
}

#[test]
fn set_with_every_acknowledged_add_is_valid_and_without_a_read_unknown() {
    let ops = vec![
        add(1, 1, Status::Ok),
        add(2, 2, Status::Info),
        add(3, 3, Status::Fail),
        final_read(4, &[1, 2]),
    ];
    assert_eq!(set::check(&ops).validity, Validity::Valid);
    assert_eq!(set::check(&ops[..3]).validity, Validity::Unknown);
    // A definitely failed add that shows up anyway is an anomaly.
    let ops = vec![add(1, 1, Status::Fail), final_read(2, &[1])];
    assert_eq!(set::check(&ops).validity, Validity::Invalid);
}

fn acquire(id: u64, token: u64, t0: f64, t1: f64) -> Op {
    op(
        id,
        Call::Acquire {
            lock: "L".into(),
            token: Some(token),
        },
        Status::Ok,
        t0,
        t1,
    )
}

fn fenced(id: u64, token: u64, status: Status, t0: f64, t1: f64) -> Op {
    op(
        id,
        Call::FencedWrite {
            lock: "L".into(),
            token,
            key: "guard".into(),
            value: format!("w{id}"),
            version: None,
        },
        status,
        t0,
        t1,
    )
}

fn release(id: u64, token: u64, status: Status, t0: f64, t1: f64) -> Op {
    op(
        id,
        Call::Release {
            lock: "L".into(),
            token,
        },
        status,
        t0,
        t1,
    )
}

#[test]
fn double_lock_grant_is_caught() {
    // The same token granted twice.
    let ops = vec![acquire(1, 7, 0.0, 5.0), acquire(2, 7, 10.0, 15.0)];
    let v = lock::check(&ops);
    assert_eq!(v.validity, Validity::Invalid);
    assert!(
        v.anomalies.iter().any(|a| a.kind == "double-grant"),
        "{v:?}"
    );
    // A second holder granted while the first still held: its release
    // succeeded after the newer grant completed.
    let ops = vec![
        acquire(1, 7, 0.0, 5.0),
        acquire(2, 9, 10.0, 15.0),
        release(3, 7, Status::Ok, 20.0, 25.0),
    ];
    let v = lock::check(&ops);
    assert!(v.anomalies.iter().any(|a| a.kind == "two-holders"), "{v:?}");
}

#[test]
fn fenced_write_with_an_old_token_after_a_new_grant_is_caught() {
    let ops = vec![
        acquire(1, 7, 0.0, 5.0),
        fenced(2, 7, Status::Ok, 6.0, 8.0),
        acquire(3, 9, 10.0, 15.0),
        fenced(4, 9, Status::Ok, 16.0, 18.0),
        // The old holder's write must be refused (412) from here on.
        fenced(5, 7, Status::Ok, 20.0, 22.0),
    ];
    let v = lock::check(&ops);
    assert_eq!(v.validity, Validity::Invalid);
    assert!(v.anomalies.iter().any(|a| a.kind == "two-holders"));
    assert!(v.anomalies.iter().any(|a| a.kind == "fence-regressed"));
}

#[test]
fn correctly_fenced_lock_history_is_valid() {
    let ops = vec![
        acquire(1, 7, 0.0, 5.0),
        fenced(2, 7, Status::Ok, 6.0, 8.0),
        release(3, 7, Status::Ok, 9.0, 9.5),
        acquire(4, 9, 10.0, 15.0),
        fenced(5, 7, Status::Fail, 16.0, 17.0),
        fenced(6, 9, Status::Ok, 16.0, 18.0),
        release(7, 9, Status::Info, 19.0, 30.0),
    ];
    let v = lock::check(&ops);
    assert_eq!(v.validity, Validity::Valid, "{v:?}");
}

fn event(revision: u64, key: &str, version: u64) -> cairn_jepsen::watch::WatchEvent {
    cairn_jepsen::watch::WatchEvent {
        revision,
        kind: "put".into(),
        key: format!("kv/{key}"),
        version: Some(version),
    }
}

#[test]
fn watch_that_misses_an_acknowledged_write_is_caught() {
    use cairn_jepsen::checker::watch;
    let ops = vec![
        op(1, write("k", "a", Some(1)), Status::Ok, 0.0, 10.0),
        op(2, write("k", "b", Some(2)), Status::Ok, 20.0, 30.0),
        // Indeterminate writes need not show up.
        op(3, write("k", "c", None), Status::Info, 40.0, 50.0),
    ];
    let all = vec![event(5, "k", 1), event(9, "k", 2)];
    assert!(watch::complete(&ops, &all));
    assert_eq!(watch::check(&ops, &all, &[]).validity, Validity::Valid);
    let missed = vec![event(5, "k", 1)];
    assert!(!watch::complete(&ops, &missed));
    let v = watch::check(&ops, &missed, &[]);
    assert_eq!(v.validity, Validity::Invalid);
    assert_eq!(v.anomalies[0].kind, "watch-missed");
    let reordered = vec![event(9, "k", 2), event(5, "k", 1)];
    let v = watch::check(&ops, &reordered, &[]);
    assert!(v.anomalies.iter().any(|a| a.kind == "watch-order"), "{v:?}");
}

#[test]
fn watch_allows_a_revision_of_several_changes_but_not_a_repeat() {
    use cairn_jepsen::checker::watch;
    let ops = vec![
        op(1, write("a", "x", Some(1)), Status::Ok, 0.0, 10.0),
        op(2, write("b", "y", Some(1)), Status::Ok, 0.0, 10.0),
    ];
    // Two writes committed in one entry share its revision.
    let batched = vec![event(5, "a", 1), event(5, "b", 1)];
    assert_eq!(watch::check(&ops, &batched, &[]).validity, Validity::Valid);
    let repeated = vec![event(5, "a", 1), event(5, "b", 1), event(5, "a", 1)];
    let v = watch::check(&ops, &repeated, &[]);
    assert_eq!(v.validity, Validity::Invalid);
    assert!(
        v.anomalies.iter().any(|a| a.kind == "watch-repeated"),
        "{v:?}"
    );
}
