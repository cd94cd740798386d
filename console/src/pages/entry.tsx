import { useState } from 'preact/hooks';
import { fieldError, request } from '../api.ts';
import { graphql } from '../graphql.ts';
import { href, Link, navigate } from '../router.ts';
import { ErrorMessage, FieldNote, formatBytes, formatDate, timeUntil, useLoad, useNow } from '../ui.tsx';

const EntryQuery = graphql(`
  query Entry($id: ID!, $path: String!) {
    volume(id: $id) {
      id name workspaceId
      entry(path: $path) {
        id path contentType mimeType sizeBytes version tags metadata ttlSeconds expiresAt createdAt updatedAt
        sha256 isIndexed indexedAt indexError totalChunks writtenByAppId writtenByExecutionId schemaId
        content contentText
        downloadUrl(expiresIn: 900)
      }
    }
  }
`);

const DeleteEntry = graphql(`
  mutation DeleteEntry($volumeId: ID!, $path: String!, $expectedVersion: Int) {
    deleteEntry(volumeId: $volumeId, path: $path, expectedVersion: $expectedVersion) { id message }
  }
`);

const MoveEntry = graphql(`
  mutation MoveEntry($volumeId: ID!, $from: String!, $to: String!, $overwrite: Boolean, $expectedVersion: Int) {
    moveEntry(volumeId: $volumeId, from: $from, to: $to, overwrite: $overwrite, expectedVersion: $expectedVersion) { id path }
  }
`);

const TEXT_PREVIEW = 20_000;

const folderOf = (p: string) => p.slice(0, p.lastIndexOf('/') + 1);

export function EntryPage({ volumeId, path }: { volumeId: string; path: string }) {
  const loaded = useLoad(() => request(EntryQuery, { id: volumeId, path }), [volumeId, path]);
  const now = useNow();
  const [to, setTo] = useState(path);
  const [overwrite, setOverwrite] = useState(false);
  const [actionError, setActionError] = useState<unknown>(null);
  const [confirming, setConfirming] = useState(false);
  const volume = loaded.data?.volume;
  const entry = volume?.entry;
  const back = href(`/v/${volumeId}`, { path: folderOf(path) === '/' ? undefined : folderOf(path) });
  const toError = fieldError(actionError, 'to');

  return (
    <section>
      <p class="crumbs">
        {volume ? <Link to={`/v/${volumeId}`}>{volume.name}</Link> : 'Volume'} / <Link to={back}>{folderOf(path)}</Link>
      </p>
      <h1 class="path">{path}</h1>
      <ErrorMessage error={loaded.error} title="Could not read the entry" />
      {loaded.loading && !loaded.data && <p class="loading">Loading…</p>}
      {loaded.data && !entry && (
        <p class="empty">
          No entry at this path: it was deleted, moved, has expired, or this key cannot read it. <Link to={back}>Back to the folder</Link>
        </p>
      )}
      {entry && (
        <>
          <dl class="facts">
            <dt>Kind</dt>
            <dd>
              {entry.contentType}
              {entry.mimeType && ` (${entry.mimeType})`}
            </dd>
            <dt>Size</dt>
            <dd>{formatBytes(entry.sizeBytes)}</dd>
            <dt>Version</dt>
            <dd>{entry.version}</dd>
            <dt>Tags</dt>
            <dd>
              {entry.tags.length
                ? entry.tags.map((t) => (
                    <span class="tag" key={t}>
                      {t}
                    </span>
                  ))
                : '—'}
            </dd>
            <dt>TTL</dt>
            <dd>
              {entry.ttlSeconds ? `${entry.ttlSeconds} s` : 'none'}
              {entry.expiresAt && ` · expires in ${timeUntil(entry.expiresAt, now)} (${formatDate(entry.expiresAt)})`}
            </dd>
            <dt>Indexed</dt>
            <dd>
              {entry.isIndexed
                ? `yes, ${entry.totalChunks} chunk${entry.totalChunks === 1 ? '' : 's'} (${formatDate(entry.indexedAt)})`
                : 'not yet'}
              {entry.indexError && <span class="error-text"> · {entry.indexError}</span>}
            </dd>
            <dt>Written by</dt>
            <dd>
              {entry.writtenByAppId ?? '—'}
              {entry.writtenByExecutionId && ` / ${entry.writtenByExecutionId}`}
            </dd>
            <dt>Created / updated</dt>
            <dd>
              {formatDate(entry.createdAt)} / {formatDate(entry.updatedAt)}
            </dd>
            {entry.sha256 && (
              <>
                <dt>SHA-256</dt>
                <dd>
                  <code class="small">{entry.sha256}</code>
                </dd>
              </>
            )}
            {Object.keys((entry.metadata as object | null) ?? {}).length > 0 && (
              <>
                <dt>Metadata</dt>
                <dd>
                  <code>{JSON.stringify(entry.metadata)}</code>
                </dd>
              </>
            )}
          </dl>

          <h2>Content</h2>
          {entry.contentType === 'json' && <pre class="content">{JSON.stringify(entry.content, null, 2)}</pre>}
          {entry.contentType === 'text' && <pre class="content">{entry.contentText ?? ''}</pre>}
          {entry.contentType === 'file' && (
            <div>
              {entry.downloadUrl ? (
                <p>
                  <a href={entry.downloadUrl} download={path.slice(path.lastIndexOf('/') + 1)} rel="noreferrer">
                    Download {path.slice(path.lastIndexOf('/') + 1)}
                  </a>{' '}
                  <span class="muted small">(link valid for 15 minutes)</span>
                </p>
              ) : (
                <p class="muted">No download link for this entry.</p>
              )}
              {entry.contentText && (
                <details>
                  <summary>Extracted text</summary>
                  <pre class="content">
                    {entry.contentText.slice(0, TEXT_PREVIEW)}
                    {entry.contentText.length > TEXT_PREVIEW ? '\n…' : ''}
                  </pre>
                </details>
              )}
            </div>
          )}

          <h2>Move or delete</h2>
          <ErrorMessage error={actionError} />
          <form
            class="inline-form"
            aria-label="Move the entry"
            onSubmit={async (e) => {
              e.preventDefault();
              setActionError(null);
              try {
                const { moveEntry } = await request(MoveEntry, { volumeId, from: path, to, overwrite, expectedVersion: entry.version });
                navigate(href(`/v/${volumeId}/entry`, { path: moveEntry.path }), true);
              } catch (err) {
                setActionError(err);
              }
            }}
          >
            <label>
              New path
              <input
                name="move-to"
                required
                value={to}
                aria-invalid={toError ? true : undefined}
                aria-describedby={toError ? 'move-to-error' : undefined}
                onInput={(e) => setTo(e.currentTarget.value)}
              />
              <FieldNote id="move-to-error" message={toError} />
            </label>
            <label class="check">
              <input type="checkbox" name="overwrite" checked={overwrite} onChange={(e) => setOverwrite(e.currentTarget.checked)} />
              Replace an entry already there
            </label>
            <button type="submit">Move</button>
          </form>
          {confirming ? (
            <fieldset class="confirm">
              <legend>Confirm deletion</legend>
              Delete <code>{path}</code> for good?{' '}
              <button
                type="button"
                class="danger"
                onClick={async () => {
                  setActionError(null);
                  try {
                    await request(DeleteEntry, { volumeId, path, expectedVersion: entry.version });
                    navigate(back, true);
                  } catch (err) {
                    setActionError(err);
                    setConfirming(false);
                  }
                }}
              >
                Yes, delete
              </button>{' '}
              <button type="button" onClick={() => setConfirming(false)}>
                Keep it
              </button>
            </fieldset>
          ) : (
            <button type="button" class="danger" onClick={() => setConfirming(true)}>
              Delete entry
            </button>
          )}
        </>
      )}
    </section>
  );
}
