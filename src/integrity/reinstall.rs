//! Re-installing this member's whole state from a healthy member, for a
//! member whose digest disagrees with the majority although its stored
//! checksums hold (a record edited or lost on disk, say).
//!
//! This member holds its apply still and asks the healthy member for its
//! state at the healthy member's applied index `H`, at least this member's
//! applied index; this member replaces its state with it when its own apply
//! stands exactly at `H`, at once or once apply (resumed) reaches `H` (see
//! `cairn_storage::reinstall` for why openraft's view and the state machine
//! then agree).

use std::sync::Arc;
use std::time::Duration;

use cairn_storage::{NodeId, ReinstallOutcome};
use serde::{Deserialize, Serialize};

use super::service::{fetch_state, other_members};
use crate::node::NodeCore;

/// How many images are fetched before giving up on one at or after this
/// member's applied index.
const ATTEMPTS: usize = 3;
/// How long this member may take to apply up to the image's index (which
/// the healthy member has applied, so it is committed).
const APPLY_WAIT: Duration = Duration::from_secs(30);

/// A completed re-install.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reinstalled {
    /// The member whose image was installed.
    pub from: NodeId,
    /// The applied index of that image.
    pub index: u64,
}

/// Replaces this member's state with the state of member `source`. A
/// leader first hands leadership to another voter: its applied state
/// answers clients, so it steps aside while it is replaced.
pub async fn reinstall_from(core: &Arc<NodeCore>, source: NodeId) -> Result<Reinstalled, String> {
    if source == core.config.id {
        return Err("a member cannot re-install its state from itself".into());
    }
    let addr = other_members(core)
        .into_iter()
        .find(|(id, _)| *id == source)
        .map(|(_, addr)| addr)
        .ok_or_else(|| format!("node {source} is not a member"))?;
    step_down(core).await?;
    for _ in 0..ATTEMPTS {
        let file = core
            .state
            .begin_receiving_image()
            .map_err(|e| e.to_string())?;
        let path = file.path.clone();
        // This member's apply waits while the image travels, so that it
        // cannot run past the image's index meanwhile (under steady writes
        // it otherwise would, every time). Raft keeps appending here.
        let paused = core.state.pause_apply().await.map_err(|e| e.to_string())?;
        if let Err(e) = fetch_state(core, &addr, paused.applied, file).await {
            drop(paused);
            let _ = std::fs::remove_file(&path);
            return Err(format!("fetching the state of node {source}: {e}"));
        }
        match core
            .state
            .reinstall(paused, &path, APPLY_WAIT)
            .await
            .map_err(|e| e.to_string())?
        {
            ReinstallOutcome::Installed { index } => {
                tracing::warn!(from = source, index, "re-installed this member's state");
                return Ok(Reinstalled {
                    from: source,
                    index,
                });
            }
            // The source answered with an older image than asked for.
            ReinstallOutcome::Ahead { .. } => continue,
            ReinstallOutcome::NotReached { index, applied } => {
                return Err(format!(
                    "applied only up to {applied} within {} s, not the image's index {index}",
                    APPLY_WAIT.as_secs()
                ))
            }
        }
    }
    Err(format!(
        "node {source} kept sending an image older than this member's state ({ATTEMPTS} attempts)"
    ))
}

/// Hands leadership to the best placed voter if this member leads.
async fn step_down(core: &NodeCore) -> Result<(), String> {
    let leads =
        |core: &NodeCore| core.raft.metrics().borrow().current_leader == Some(core.config.id);
    if !leads(core) {
        return Ok(());
    }
    crate::admin::transfer(core, None)
        .await
        .map_err(|e| format!("this member leads and could not hand leadership over: {e}"))?;
    if leads(core) {
        return Err("this member still leads; not re-installing its state".into());
    }
    Ok(())
}
