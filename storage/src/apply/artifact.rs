//! Artifacts: create, replace, delete; the conversation index.

use super::{check, Ctx};
use crate::artifact::{ArtifactMeta, StoredContent};
use crate::command::{ArtifactFields, Precondition, Rejection, Response};
use crate::content;
use crate::error::StoreError;
use crate::event::EventKind;
use crate::keys;

fn event_key(id: &str) -> String {
    format!("artifacts/{id}")
}

pub(super) fn put(
    ctx: &mut Ctx<'_, '_>,
    id: &str,
    fields: &ArtifactFields,
    content: &StoredContent,
    merge: bool,
    precondition: Precondition,
) -> Result<Response, StoreError> {
    let current: Option<ArtifactMeta> = ctx.load(&keys::artifact(id))?;
    if let Err(rejection) = check(precondition, current.as_ref().map(|a| a.version)) {
        return Ok(Response::Rejected(rejection));
    }
    let meta = build(
        id,
        fields,
        merge,
        current.as_ref(),
        content,
        ctx.index,
        ctx.now,
    );
    if let Some(old) = &current {
        unindex_conversation(ctx, old);
        ctx.view.content.drop_file(content::file_name(old));
    }
    if !meta.conversation_id.is_empty() {
        ctx.view
            .put(keys::conversation(&meta.conversation_id, id), Vec::new());
    }
    ctx.store(keys::artifact(id), &meta)?;
    ctx.view
        .content
        .write(content::file_name(&meta), content.clone());
    ctx.emit(EventKind::Put, event_key(id), meta.version)?;
    Ok(Response::Artifact(Box::new(meta)))
}

pub(super) fn delete(
    ctx: &mut Ctx<'_, '_>,
    id: &str,
    precondition: Precondition,
) -> Result<Response, StoreError> {
    let Some(current) = ctx.load::<ArtifactMeta>(&keys::artifact(id))? else {
        return Ok(Response::Rejected(Rejection::NotFound));
    };
    if let Err(rejection) = check(precondition, Some(current.version)) {
        return Ok(Response::Rejected(rejection));
    }
    unindex_conversation(ctx, &current);
    ctx.view.delete(keys::artifact(id));
    ctx.view.content.drop_file(content::file_name(&current));
    ctx.emit(EventKind::Delete, event_key(id), current.version)?;
    Ok(Response::Deleted {
        revision: ctx.index,
    })
}

fn unindex_conversation(ctx: &mut Ctx<'_, '_>, meta: &ArtifactMeta) {
    if !meta.conversation_id.is_empty() {
        ctx.view
            .delete(keys::conversation(&meta.conversation_id, &meta.id));
    }
}

fn build(
    id: &str,
    fields: &ArtifactFields,
    merge: bool,
    current: Option<&ArtifactMeta>,
    content: &StoredContent,
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
