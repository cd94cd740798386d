import { request } from '../api.ts';
import type { Session } from '../app.tsx';
import { graphql } from '../graphql.ts';
import { href, Link, type Route } from '../router.ts';
import { count, ErrorMessage, formatBytes, formatDate, StatusBadge, Usage, useLoad } from '../ui.tsx';
import { FilesTab } from './files.tsx';
import { LocksTab } from './locks.tsx';
import { MountsTab } from './mounts.tsx';
import { ReindexTab } from './reindex.tsx';

export const VolumeQuery = graphql(`
  query Volume($id: ID!) {
    volume(id: $id) {
      id name label description status isShared workspaceId
      workspace { id name }
      usedBytes maxSizeBytes entryCount maxFileCount mountCount maxMounts
      embeddingModelId searchEmbeddingModelId indexingMode chunkingStrategy chunkSize chunkOverlap
      reindex { status percent }
      createdAt updatedAt
    }
  }
`);

const TABS = [
  ['files', 'Files'],
  ['index', 'Index'],
  ['mounts', 'Mounts'],
  ['locks', 'Locks'],
] as const;

export function VolumePage({ session, volumeId, route }: { session: Session; volumeId: string; route: Route }) {
  const tab = route.params.get('tab') ?? 'files';
  const path = route.params.get('path') ?? '/';
  const loaded = useLoad(() => request(VolumeQuery, { id: volumeId }), [volumeId, tab]);
  const v = loaded.data?.volume;
  if (loaded.data && !v)
    return (
      <section>
        <h1>Volume not found</h1>
        <p>
          It does not exist, was deleted, or this key cannot see it. <Link to="/">Back to the workspaces</Link>
        </p>
      </section>
    );
  return (
    <section>
      <p class="crumbs">
        <Link to="/">Workspaces</Link> / {v && <Link to={`/w/${v.workspace.id}`}>{v.workspace.name}</Link>} /
      </p>
      <h1>
        {v?.name ?? 'Volume'} {v && <StatusBadge status={v.status} />} {v?.isShared && <span class="badge">shared</span>}
      </h1>
      <ErrorMessage error={loaded.error} title="Could not load the volume" />
      {v && (
        <div class="volume-facts">
          <Usage label="Size" used={v.usedBytes} max={v.maxSizeBytes ?? null} format={formatBytes} />
          <Usage label="Entries" used={v.entryCount} max={v.maxFileCount ?? null} format={count} />
          <Usage label="Mounts" used={v.mountCount} max={v.maxMounts ?? null} format={count} />
          <dl>
            <dt>Model</dt>
            <dd>
              <code>{v.embeddingModelId}</code>
              {v.searchEmbeddingModelId !== v.embeddingModelId && (
                <span class="muted"> (searches use {v.searchEmbeddingModelId} until reindexed)</span>
              )}
            </dd>
            <dt>Indexing</dt>
            <dd>
              {v.indexingMode}, {v.chunkingStrategy} chunks of {v.chunkSize} tokens ({v.chunkOverlap} overlap)
            </dd>
            <dt>Reindex</dt>
            <dd>
              <StatusBadge status={v.reindex.status} />
            </dd>
            <dt>Updated</dt>
            <dd>{formatDate(v.updatedAt)}</dd>
          </dl>
        </div>
      )}
      <nav class="tabs" aria-label="Volume">
        {TABS.map(([id, label]) => (
          <Link
            key={id}
            to={href(`/v/${volumeId}`, { tab: id === 'files' ? undefined : id })}
            aria-current={tab === id ? 'page' : undefined}
          >
            {label}
          </Link>
        ))}
        <Link to={href('/search', { workspace: v?.workspaceId, volume: volumeId })}>Search</Link>
      </nav>
      {tab === 'files' && <FilesTab volumeId={volumeId} path={path} onChange={loaded.reload} />}
      {tab === 'index' && <ReindexTab volumeId={volumeId} onChange={loaded.reload} />}
      {tab === 'mounts' && <MountsTab volumeId={volumeId} />}
      {tab === 'locks' && <LocksTab volumeId={volumeId} session={session} />}
    </section>
  );
}
