//! Artifacts: documents, LLM outputs, images, with compression and
//! checksums.

use cairn_storage::{
    ArtifactFields, ArtifactMeta, Command, Page, Precondition, Response, StoredContent,
};

use super::{accepted, barrier, unexpected, validate, Error, Revisioned};
use crate::forward::{Consistency, WriteOptions};
use crate::node::NodeCore;

/// Longest `kind` (bytes).
pub const MAX_KIND_BYTES: usize = 128;
/// Longest `title` (bytes).
pub const MAX_TITLE_BYTES: usize = 1024;
/// Longest `content_type` (bytes).
pub const MAX_CONTENT_TYPE_BYTES: usize = 256;

/// An artifact's metadata and, when asked for, its verified content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// The metadata.
    pub meta: ArtifactMeta,
    /// The content, verified against its checksum.
    pub content: Option<Vec<u8>>,
}

/// Checks the descriptive fields against the documented limits.
pub fn validate_fields(fields: &ArtifactFields) -> Result<(), Error> {
    if let Some(cid) = fields.conversation_id.as_deref().filter(|c| !c.is_empty()) {
        validate::id("conversation_id", cid)?;
    }
    validate::len("kind", fields.kind.as_deref().unwrap_or(""), MAX_KIND_BYTES)?;
    validate::len(
        "title",
        fields.title.as_deref().unwrap_or(""),
        MAX_TITLE_BYTES,
    )?;
    validate::len(
        "content_type",
        fields.content_type.as_deref().unwrap_or(""),
        MAX_CONTENT_TYPE_BYTES,
    )?;
    Ok(())
}

/// Checks content length against the configured limit.
pub fn check_content_size(core: &NodeCore, len: usize) -> Result<(), Error> {
    let max = core.config.max_content_bytes;
    if len > max {
        return Err(Error::TooLarge(format!(
            "content is {len} bytes; the limit is {max}"
        )));
    }
    Ok(())
}

/// Creates or replaces artifact `id`. With `merge`, fields left `None` keep
/// their current values; otherwise they are reset.
pub async fn put(
    core: &NodeCore,
    id: &str,
    fields: ArtifactFields,
    data: &[u8],
    merge: bool,
    precondition: Precondition,
    opts: WriteOptions,
) -> Result<ArtifactMeta, Error> {
    validate::id("id", id)?;
    validate_fields(&fields)?;
    check_content_size(core, data.len())?;
    let command = Command::PutArtifact {
        id: id.to_string(),
        fields,
        content: StoredContent::prepare(data, core.config.compression_threshold),
        merge,
        precondition,
    };
    match accepted(core.write(command, opts).await?)? {
        (Response::Artifact(meta), _) => Ok(*meta),
        (other, _) => Err(unexpected(other)),
    }
}

/// Reads artifact `id`, with its content if `with_content`.
pub async fn get(
    core: &NodeCore,
    id: &str,
    consistency: Consistency,
    with_content: bool,
) -> Result<Revisioned<Option<Artifact>>, Error> {
    validate::id("id", id)?;
    let revision = barrier(core, consistency).await?;
    let value = if with_content {
        match core.state.artifact_with_content(id)? {
            None => None,
            Some((meta, stored)) => {
                let content = stored.open().map_err(|e| corrupt(core, id, e))?;
                Some(Artifact {
                    meta,
                    content: Some(content),
                })
            }
        }
    } else {
        core.state.artifact(id)?.map(|meta| Artifact {
            meta,
            content: None,
        })
    };
    Ok(Revisioned { value, revision })
}

/// Damaged content is never served: it is reported (counted, and repaired
/// from a healthy member in the background) and the caller told to retry.
fn corrupt(core: &NodeCore, id: &str, e: cairn_storage::Corrupt) -> Error {
    core.integrity
        .report(id, &e.to_string(), crate::integrity::FoundBy::Read);
    Error::Corrupt(format!(
        "artifact {id}: stored content failed checksum verification on node {} and is not served; \
         it is being repaired from a healthy member (another node can serve it meanwhile)",
        core.config.id
    ))
}

/// Deletes artifact `id`; returns the revision of the delete.
pub async fn delete(
    core: &NodeCore,
    id: &str,
    precondition: Precondition,
    opts: WriteOptions,
) -> Result<u64, Error> {
    validate::id("id", id)?;
    let command = Command::DeleteArtifact {
        id: id.to_string(),
        precondition,
    };
    match accepted(core.write(command, opts).await?)? {
        (Response::Deleted { revision }, _) => Ok(revision),
        (other, _) => Err(unexpected(other)),
    }
}

/// Lists artifacts by id: all, or one conversation's.
pub async fn list(
    core: &NodeCore,
    conversation_id: Option<&str>,
    prefix: &str,
    cursor: Option<&str>,
    limit: usize,
    consistency: Consistency,
) -> Result<Revisioned<Page<ArtifactMeta>>, Error> {
    validate::len("prefix", prefix, validate::MAX_ID_BYTES)?;
    if let Some(cid) = conversation_id {
        validate::id("conversation_id", cid)?;
    }
    let revision = barrier(core, consistency).await?;
    let value = match conversation_id {
        Some(cid) => core.state.list_conversation(cid, prefix, cursor, limit)?,
        None => core.state.list_artifacts(prefix, cursor, limit)?,
    };
    Ok(Revisioned { value, revision })
}
