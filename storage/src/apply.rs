//! The deterministic apply: a pure function of (state, log entry).
//!
//! No local clock, no randomness, no I/O but the [`Overlay`]. Time comes from
//! the entry (`now_ms`, made monotonic against the stored clock), revisions
//! are log indexes. Every replica applying the same entries therefore holds
//! byte-identical state.

use serde::{Deserialize, Serialize};

use crate::artifact::ArtifactMeta;
use crate::codec::{decode, encode};
use crate::command::{ArtifactFields, Command, Precondition, Rejection, Request, Response};
use crate::error::StoreError;
use crate::keys;
use crate::view::Overlay;

/// The longest an idempotency key may remember its outcome (24 h), so that
/// the records cannot grow without bound.
pub const MAX_IDEMPOTENCY_RETENTION_MS: u64 = 24 * 60 * 60 * 1000;

/// The remembered outcome of a write that carried an idempotency key.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct IdempotencyRecord {
    expires_ms: u64,
    response: Response,
}

/// Applies one client request at log index `index`.
pub fn apply_request(
    view: &mut Overlay<'_>,
    index: u64,
    req: &Request,
) -> Result<Response, StoreError> {
    let now = advance_clock(view, req.now_ms)?;
    expire_due(view, now)?;

    if let Some(idem) = &req.idempotency {
        if let Some(bytes) = view.get(&keys::idempotency(&idem.key))? {
            let record: IdempotencyRecord = decode(&bytes)?;
            return Ok(record.response);
        }
    }

    let response = match &req.command {
        Command::PutArtifact {
            id,
            fields,
            content,
            merge,
            precondition,
        } => {
            let current = load_artifact(view, id)?;
            if let Err(rejection) = check(*precondition, current.as_ref().map(|a| a.version)) {
                Response::Rejected(rejection)
            } else {
                let meta =
                    build_artifact(id, fields, *merge, current.as_ref(), content, index, now);
                if let Some(old) = &current {
                    unindex_conversation(view, old);
                }
                if !meta.conversation_id.is_empty() {
                    view.put(keys::conversation(&meta.conversation_id, id), Vec::new());
                }
                view.put(keys::artifact(id), encode(&meta)?);
                view.put(keys::blob(id), encode(content)?);
                Response::Artifact(Box::new(meta))
            }
        }
        Command::DeleteArtifact { id, precondition } => match load_artifact(view, id)? {
            None => Response::Rejected(Rejection::NotFound),
            Some(current) => match check(*precondition, Some(current.version)) {
                Err(rejection) => Response::Rejected(rejection),
                Ok(()) => {
                    unindex_conversation(view, &current);
                    view.delete(keys::artifact(id));
                    view.delete(keys::blob(id));
                    Response::Deleted { revision: index }
                }
            },
        },
        Command::InitCluster { cluster_id } => {
            if view.get(keys::CLUSTER_ID)?.is_none() {
                view.put(keys::CLUSTER_ID.to_vec(), cluster_id.as_bytes().to_vec());
            }
            Response::Noop
        }
        Command::Tick | Command::DigestMarker => Response::Noop,
    };

    if let Some(idem) = &req.idempotency {
        let retain = idem.retain_ms.min(MAX_IDEMPOTENCY_RETENTION_MS);
        let expires_ms = now.saturating_add(retain);
        let target = keys::idempotency(&idem.key);
        view.put(keys::expiry(expires_ms, &target), Vec::new());
        let record = IdempotencyRecord {
            expires_ms,
            response: response.clone(),
        };
        view.put(target, encode(&record)?);
    }
    Ok(response)
}

/// Moves the replicated clock to `max(stored, proposed)` and returns it.
pub fn advance_clock(view: &mut Overlay<'_>, proposed_ms: u64) -> Result<u64, StoreError> {
    let stored = read_clock(view)?;
    let now = stored.max(proposed_ms);
    if now != stored {
        view.put(keys::CLOCK.to_vec(), encode(&now)?);
    }
    Ok(now)
}

/// The replicated clock as of the overlay (0 before the first entry).
pub fn read_clock(view: &Overlay<'_>) -> Result<u64, StoreError> {
    match view.get(keys::CLOCK)? {
        Some(bytes) => Ok(decode(&bytes)?),
        None => Ok(0),
    }
}

/// Removes everything whose expiry is at or before `now_ms`.
fn expire_due(view: &mut Overlay<'_>, now_ms: u64) -> Result<(), StoreError> {
    let due = view.range(keys::EXPIRY_PREFIX, &keys::expiry_due_end(now_ms))?;
    for (index_key, _) in due {
        if let Some((_, target)) = keys::parse_expiry(&index_key) {
            view.delete(target.to_vec());
        }
        view.delete(index_key);
    }
    Ok(())
}

fn unindex_conversation(view: &mut Overlay<'_>, meta: &ArtifactMeta) {
    if !meta.conversation_id.is_empty() {
        view.delete(keys::conversation(&meta.conversation_id, &meta.id));
    }
}

fn load_artifact(view: &Overlay<'_>, id: &str) -> Result<Option<ArtifactMeta>, StoreError> {
    match view.get(&keys::artifact(id))? {
        Some(bytes) => Ok(Some(decode(&bytes)?)),
        None => Ok(None),
    }
}

/// Checks a version precondition against the current version (`None` = absent).
fn check(pre: Precondition, current: Option<u64>) -> Result<(), Rejection> {
    let ok = match pre {
        Precondition::None => true,
        Precondition::IfVersion(v) => current == Some(v),
        Precondition::IfAbsent => current.is_none(),
        Precondition::IfExists => current.is_some(),
    };
    if ok {
        Ok(())
    } else {
        Err(Rejection::Conflict {
            current_version: current,
        })
    }
}

fn build_artifact(
    id: &str,
    fields: &ArtifactFields,
    merge: bool,
    current: Option<&ArtifactMeta>,
    content: &crate::StoredContent,
    index: u64,
    now: u64,
) -> ArtifactMeta {
    // With `merge`, an absent field keeps its current value; otherwise it is reset.
    let pick = |new: &Option<String>, old: Option<&String>, default: &str| -> String {
        match (new, merge, old) {
            (Some(v), _, _) => v.clone(),
            (None, true, Some(old)) => old.clone(),
            _ => default.to_string(),
        }
    };
    ArtifactMeta {
        id: id.to_string(),
        conversation_id: pick(
            &fields.conversation_id,
            current.map(|c| &c.conversation_id),
            "",
        ),
        kind: pick(&fields.kind, current.map(|c| &c.kind), ""),
        title: pick(&fields.title, current.map(|c| &c.title), ""),
        content_type: pick(
            &fields.content_type,
            current.map(|c| &c.content_type),
            "application/octet-stream",
        ),
        metadata_json: pick(
            &fields.metadata_json,
            current.map(|c| &c.metadata_json),
            "{}",
        ),
        version: current.map_or(1, |c| c.version + 1),
        revision: index,
        size: content.size,
        stored_size: content.bytes.len() as u64,
        compressed: content.compressed,
        checksum: content.checksum.clone(),
        created_ms: current.map_or(now, |c| c.created_ms),
        updated_ms: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Idempotency;
    use crate::StoredContent;

    fn tree() -> sled::Tree {
        let db = sled::Config::new().temporary(true).open().unwrap();
        db.open_tree("state").unwrap()
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
    fn run(tree: &sled::Tree, entries: &[(u64, Request)]) -> Vec<Response> {
        entries
            .iter()
            .map(|(index, req)| {
                let mut view = Overlay::new(tree);
                let r = apply_request(&mut view, *index, req).unwrap();
                tree.apply_batch(view.into_batch()).unwrap();
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
        assert!(t.get(keys::artifact("b")).unwrap().is_none());
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
        assert!(t.get(keys::blob("a")).unwrap().is_none());
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
            command: put("a", body, Precondition::None),
        };
        let rs = run(&t, &[(1, keyed(1000, "x")), (2, keyed(2000, "y"))]);
        assert_eq!(rs[0], rs[1], "the retry must not apply again");
        assert_eq!(artifact(&rs[1]).version, 1);

        // After retention, the key is forgotten (expired on the replicated clock).
        let later = 1000 + 60_000 + 1;
        let rs = run(
            &t,
            &[
                (3, Request::new(later, Command::Tick)),
                (4, keyed(later, "z")),
            ],
        );
        assert_eq!(rs[0], Response::Noop);
        assert_eq!(artifact(&rs[1]).version, 2);
    }

    #[test]
    fn same_entries_give_identical_state_on_two_replicas() {
        let entries: Vec<(u64, Request)> = (1..50)
            .map(|i| {
                let cmd = if i % 7 == 0 {
                    Command::DeleteArtifact {
                        id: format!("a{}", i % 5),
                        precondition: Precondition::None,
                    }
                } else {
                    put(
                        &format!("a{}", i % 5),
                        &"z".repeat(i as usize * 100),
                        Precondition::None,
                    )
                };
                (
                    i,
                    Request {
                        now_ms: 10 * i,
                        idempotency: Some(Idempotency {
                            key: format!("k{}", i % 9),
                            retain_ms: 200,
                        }),
                        command: cmd,
                    },
                )
            })
            .collect();
        let (a, b) = (tree(), tree());
        run(&a, &entries);
        run(&b, &entries);
        let dump = |t: &sled::Tree| t.iter().map(|kv| kv.unwrap()).collect::<Vec<_>>();
        assert_eq!(dump(&a), dump(&b));
    }
}
