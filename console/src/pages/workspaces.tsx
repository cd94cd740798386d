import { useState } from 'preact/hooks';
import { fieldError, request } from '../api.ts';
import type { Session } from '../app.tsx';
import { graphql, type ResultOf } from '../graphql.ts';
import { Link, navigate } from '../router.ts';
import { count, Empty, ErrorMessage, FieldNote, formatDate, StatusBadge, useLoad } from '../ui.tsx';

const WorkspacesQuery = graphql(`
  query Workspaces($orgId: ID, $after: String) {
    workspaces(orgId: $orgId, first: 50, after: $after, sort: "name:asc") {
      totalCount
      pageInfo { hasNextPage endCursor }
      edges { node { id name description bucketStatus bucketError isActive region tags createdAt volumes(first: 0) { totalCount } } }
    }
  }
`);

const CreateWorkspace = graphql(`
  mutation CreateWorkspace($orgId: ID, $input: CreateWorkspaceInput!) {
    createWorkspace(orgId: $orgId, input: $input) { id name }
  }
`);

type WorkspaceRow = ResultOf<typeof WorkspacesQuery>['workspaces']['edges'][number]['node'];

function CreateWorkspaceForm({ orgId, onCreated }: { orgId: string | null; onCreated(): void }) {
  const [name, setName] = useState('');
  const [description, setDescription] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const nameError = fieldError(error, 'name');
  return (
    <form
      class="inline-form"
      aria-label="Create a workspace"
      onSubmit={async (e) => {
        e.preventDefault();
        setBusy(true);
        setError(null);
        try {
          const { createWorkspace } = await request(CreateWorkspace, {
            orgId,
            input: { name, ...(description ? { description } : {}) },
          });
          setName('');
          setDescription('');
          onCreated();
          navigate(`/w/${createWorkspace.id}`);
        } catch (err) {
          setError(err);
        } finally {
          setBusy(false);
        }
      }}
    >
      <h2>New workspace</h2>
      <ErrorMessage error={error} title="Could not create the workspace" />
      <label>
        Name
        <input
          name="workspace-name"
          required
          value={name}
          aria-invalid={nameError ? true : undefined}
          aria-describedby={nameError ? 'ws-name-error' : undefined}
          onInput={(e) => setName(e.currentTarget.value)}
        />
        <FieldNote id="ws-name-error" message={nameError} />
      </label>
      <label>
        Description
        <input name="workspace-description" value={description} onInput={(e) => setDescription(e.currentTarget.value)} />
      </label>
      <button type="submit" disabled={busy}>
        Create workspace
      </button>
    </form>
  );
}

export function WorkspacesPage({ session }: { session: Session }) {
  const [pages, setPages] = useState<WorkspaceRow[][]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const first = useLoad(async () => {
    const d = await request(WorkspacesQuery, { orgId: session.orgId });
    setPages([d.workspaces.edges.map((e) => e.node)]);
    setCursor(d.workspaces.pageInfo.hasNextPage ? (d.workspaces.pageInfo.endCursor ?? null) : null);
    return d.workspaces.totalCount;
  }, [session.orgId]);
  const [moreError, setMoreError] = useState<unknown>(null);
  const rows = pages.flat();

  return (
    <section>
      <h1>Workspaces {session.orgId && <span class="muted">in {session.orgId}</span>}</h1>
      <ErrorMessage error={first.error} title="Could not load the workspaces" />
      {first.loading && rows.length === 0 && <p class="loading">Loading…</p>}
      {!first.loading && !first.error && rows.length === 0 && <Empty>No workspaces yet. Create the first one below.</Empty>}
      {rows.length > 0 && (
        <table>
          <caption>
            {count(first.data ?? rows.length)} workspace{first.data === 1 ? '' : 's'}
          </caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Volumes</th>
              <th scope="col">Bucket</th>
              <th scope="col">Region</th>
              <th scope="col">Tags</th>
              <th scope="col">Created</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((w) => (
              <tr key={w.id}>
                <td>
                  <Link to={`/w/${w.id}`}>{w.name}</Link>
                  {w.description && <div class="muted small">{w.description}</div>}
                </td>
                <td class="num">{count(w.volumes.totalCount)}</td>
                <td>
                  <StatusBadge status={w.bucketStatus} />
                  {w.bucketError && <div class="small">{w.bucketError}</div>}
                </td>
                <td>{w.region}</td>
                <td>{w.tags.join(', ') || '—'}</td>
                <td>{formatDate(w.createdAt)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <ErrorMessage error={moreError} />
      {cursor && (
        <button
          type="button"
          onClick={async () => {
            try {
              const d = await request(WorkspacesQuery, { orgId: session.orgId, after: cursor });
              setPages((p) => [...p, d.workspaces.edges.map((e) => e.node)]);
              setCursor(d.workspaces.pageInfo.hasNextPage ? (d.workspaces.pageInfo.endCursor ?? null) : null);
            } catch (err) {
              setMoreError(err);
            }
          }}
        >
          Load more workspaces
        </button>
      )}
      <CreateWorkspaceForm orgId={session.orgId} onCreated={first.reload} />
    </section>
  );
}
