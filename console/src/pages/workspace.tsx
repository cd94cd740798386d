import { useState } from 'preact/hooks';
import { fieldError, request } from '../api.ts';
import type { Session } from '../app.tsx';
import { graphql, type ResultOf } from '../graphql.ts';
import { href, Link, navigate } from '../router.ts';
import { count, Empty, ErrorMessage, FieldNote, formatBytes, intInput, StatusBadge, Usage, useLoad } from '../ui.tsx';

const WorkspaceQuery = graphql(`
  query Workspace($id: ID!) {
    workspace(id: $id) { id name description orgId bucketStatus region }
  }
`);

const VolumesQuery = graphql(`
  query Volumes($workspaceId: ID!, $after: String, $search: String) {
    volumes(workspaceId: $workspaceId, first: 50, after: $after, search: $search, sort: "name:asc") {
      totalCount
      pageInfo { hasNextPage endCursor }
      edges {
        node {
          id name label status isShared indexingMode embeddingModelId
          usedBytes maxSizeBytes entryCount maxFileCount mountCount maxMounts
          reindex { status percent }
        }
      }
    }
  }
`);

const CreateVolume = graphql(`
  mutation CreateVolume($workspaceId: ID!, $input: CreateVolumeInput!) {
    createVolume(workspaceId: $workspaceId, input: $input) { id name }
  }
`);

type VolumeRow = ResultOf<typeof VolumesQuery>['volumes']['edges'][number]['node'];

function CreateVolumeForm({ workspaceId }: { workspaceId: string }) {
  const [name, setName] = useState('');
  const [indexingMode, setIndexingMode] = useState<'auto' | 'manual'>('auto');
  const [model, setModel] = useState('');
  const [maxSize, setMaxSize] = useState('');
  const [maxFiles, setMaxFiles] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const errors = {
    name: fieldError(error, 'name'),
    model: fieldError(error, 'embeddingModelId'),
    maxSize: fieldError(error, 'maxSizeBytes'),
    maxFiles: fieldError(error, 'maxFileCount'),
  };
  return (
    <form
      class="inline-form"
      aria-label="Create a volume"
      onSubmit={async (e) => {
        e.preventDefault();
        setBusy(true);
        setError(null);
        try {
          const size = intInput(maxSize);
          const files = intInput(maxFiles);
          const { createVolume } = await request(CreateVolume, {
            workspaceId,
            input: {
              name,
              indexingMode,
              ...(model.trim() ? { embeddingModelId: model.trim() } : {}),
              ...(size !== undefined ? { maxSizeBytes: size } : {}),
              ...(files !== undefined ? { maxFileCount: files } : {}),
            },
          });
          navigate(`/v/${createVolume.id}`);
        } catch (err) {
          setError(err);
        } finally {
          setBusy(false);
        }
      }}
    >
      <h2>New volume</h2>
      <ErrorMessage error={error} title="Could not create the volume" />
      <label>
        Name
        <input
          name="volume-name"
          required
          value={name}
          aria-invalid={errors.name ? true : undefined}
          aria-describedby={errors.name ? 'vol-name-error' : undefined}
          onInput={(e) => setName(e.currentTarget.value)}
        />
        <FieldNote id="vol-name-error" message={errors.name} />
      </label>
      <label>
        Indexing
        <select name="indexing-mode" value={indexingMode} onChange={(e) => setIndexingMode(e.currentTarget.value as 'auto' | 'manual')}>
          <option value="auto">auto (index on write)</option>
          <option value="manual">manual (index on reindex)</option>
        </select>
      </label>
      <label>
        Embedding model
        <input
          name="embedding-model"
          placeholder="hash-1024"
          value={model}
          aria-invalid={errors.model ? true : undefined}
          aria-describedby={errors.model ? 'vol-model-error' : undefined}
          onInput={(e) => setModel(e.currentTarget.value)}
        />
        <FieldNote id="vol-model-error" message={errors.model} />
      </label>
      <label>
        Size quota (bytes)
        <input
          name="max-size-bytes"
          inputMode="numeric"
          placeholder="no limit"
          value={maxSize}
          aria-invalid={errors.maxSize ? true : undefined}
          aria-describedby={errors.maxSize ? 'vol-size-error' : undefined}
          onInput={(e) => setMaxSize(e.currentTarget.value)}
        />
        <FieldNote id="vol-size-error" message={errors.maxSize} />
      </label>
      <label>
        Entry quota
        <input
          name="max-file-count"
          inputMode="numeric"
          placeholder="no limit"
          value={maxFiles}
          aria-invalid={errors.maxFiles ? true : undefined}
          aria-describedby={errors.maxFiles ? 'vol-files-error' : undefined}
          onInput={(e) => setMaxFiles(e.currentTarget.value)}
        />
        <FieldNote id="vol-files-error" message={errors.maxFiles} />
      </label>
      <button type="submit" disabled={busy}>
        Create volume
      </button>
    </form>
  );
}

export function VolumeTable({ rows }: { rows: VolumeRow[] }) {
  return (
    <table class="volumes">
      <thead>
        <tr>
          <th scope="col">Volume</th>
          <th scope="col">Status</th>
          <th scope="col">Size</th>
          <th scope="col">Entries</th>
          <th scope="col">Mounts</th>
          <th scope="col">Model</th>
          <th scope="col">Indexing</th>
          <th scope="col">Reindex</th>
        </tr>
      </thead>
      <tbody>
        {rows.map((v) => (
          <tr key={v.id}>
            <td>
              <Link to={`/v/${v.id}`}>{v.name}</Link>
              {v.label !== v.name && <div class="muted small">{v.label}</div>}
              {v.isShared && <span class="badge">shared</span>}
            </td>
            <td>
              <StatusBadge status={v.status} />
            </td>
            <td>
              <Usage compact label="Size" used={v.usedBytes} max={v.maxSizeBytes ?? null} format={formatBytes} />
            </td>
            <td>
              <Usage compact label="Entries" used={v.entryCount} max={v.maxFileCount ?? null} format={count} />
            </td>
            <td>
              <Usage compact label="Mounts" used={v.mountCount} max={v.maxMounts ?? null} format={count} />
            </td>
            <td>
              <code>{v.embeddingModelId}</code>
            </td>
            <td>{v.indexingMode}</td>
            <td>
              <StatusBadge status={v.reindex.status} />
              {(v.reindex.status === 'running' || v.reindex.status === 'queued') && <span> {Math.floor(v.reindex.percent)} %</span>}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

export function WorkspacePage({ session, workspaceId }: { session: Session; workspaceId: string }) {
  const ws = useLoad(() => request(WorkspaceQuery, { id: workspaceId }), [workspaceId]);
  const [search, setSearch] = useState('');
  const [applied, setApplied] = useState('');
  const [rows, setRows] = useState<VolumeRow[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [moreError, setMoreError] = useState<unknown>(null);
  const list = useLoad(async () => {
    const d = await request(VolumesQuery, { workspaceId, ...(applied ? { search: applied } : {}) });
    setRows(d.volumes.edges.map((e) => e.node));
    setCursor(d.volumes.pageInfo.hasNextPage ? (d.volumes.pageInfo.endCursor ?? null) : null);
    return d.volumes.totalCount;
  }, [workspaceId, applied]);
  const workspace = ws.data?.workspace;

  if (ws.data && !workspace)
    return (
      <section>
        <h1>Workspace not found</h1>
        <p>
          It does not exist or this key cannot see it{session.orgId ? ` in ${session.orgId}` : ''}.{' '}
          <Link to="/">Back to the workspaces</Link>
        </p>
      </section>
    );
  return (
    <section>
      <p class="crumbs">
        <Link to="/">Workspaces</Link> /
      </p>
      <h1>{workspace?.name ?? 'Workspace'}</h1>
      <ErrorMessage error={ws.error} />
      {workspace && (
        <p class="muted">
          {workspace.description ?? ''} Bucket <StatusBadge status={workspace.bucketStatus} /> · region {workspace.region} ·{' '}
          <Link to={href('/search', { workspace: workspace.id })}>Search this workspace</Link>
        </p>
      )}
      <form
        class="filter"
        aria-label="Find volumes"
        onSubmit={(e) => {
          e.preventDefault();
          setApplied(search.trim());
        }}
      >
        <label>
          Find volumes
          <input name="volume-search" type="search" value={search} onInput={(e) => setSearch(e.currentTarget.value)} />
        </label>
        <button type="submit">Filter</button>
      </form>
      <ErrorMessage error={list.error} title="Could not load the volumes" />
      {list.loading && rows.length === 0 && <p class="loading">Loading…</p>}
      {!list.loading && !list.error && rows.length === 0 && (
        <Empty>{applied ? `No volume matches “${applied}”.` : 'No volumes in this workspace yet. Create one below.'}</Empty>
      )}
      {rows.length > 0 && (
        <>
          <p class="muted">
            {count(list.data ?? rows.length)} volume{list.data === 1 ? '' : 's'}
          </p>
          <VolumeTable rows={rows} />
        </>
      )}
      <ErrorMessage error={moreError} />
      {cursor && (
        <button
          type="button"
          onClick={async () => {
            try {
              const d = await request(VolumesQuery, { workspaceId, after: cursor, ...(applied ? { search: applied } : {}) });
              setRows((r) => [...r, ...d.volumes.edges.map((e) => e.node)]);
              setCursor(d.volumes.pageInfo.hasNextPage ? (d.volumes.pageInfo.endCursor ?? null) : null);
            } catch (err) {
              setMoreError(err);
            }
          }}
        >
          Load more volumes
        </button>
      )}
      {workspace && <CreateVolumeForm workspaceId={workspace.id} />}
    </section>
  );
}
