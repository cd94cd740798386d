import { useState } from 'preact/hooks';
import { fieldError, request } from '../api.ts';
import { graphql } from '../graphql.ts';
import { Empty, ErrorMessage, FieldNote, formatDate, useLoad } from '../ui.tsx';

const MountsQuery = graphql(`
  query Mounts($id: ID!) {
    volume(id: $id) {
      id
      mounts(first: 200) { totalCount edges { node { id appId pathPattern accessLevel createdAt grantedBy } } }
    }
  }
`);

const CreateMount = graphql(`
  mutation CreateMount($volumeId: ID!, $input: CreateMountInput!) {
    createMount(volumeId: $volumeId, input: $input) { id }
  }
`);

const DeleteMount = graphql(`
  mutation DeleteMount($id: ID!) {
    deleteMount(id: $id) { id message }
  }
`);

type Level = 'read' | 'write' | 'admin';

export function MountsTab({ volumeId }: { volumeId: string }) {
  const loaded = useLoad(() => request(MountsQuery, { id: volumeId }), [volumeId]);
  const [appId, setAppId] = useState('');
  const [pattern, setPattern] = useState('/**');
  const [level, setLevel] = useState<Level>('read');
  const [error, setError] = useState<unknown>(null);
  const mounts = loaded.data?.volume?.mounts;
  const appError = fieldError(error, 'appId');
  const patternError = fieldError(error, 'pathPattern');
  return (
    <div>
      <h2>Mounts</h2>
      <p class="muted">A mount lets an app's keys reach the paths matching its pattern, at its access level.</p>
      <ErrorMessage error={loaded.error} title="Could not load the mounts" />
      <ErrorMessage error={error} />
      {mounts && mounts.edges.length === 0 && <Empty>No mounts: only organisation keys reach this volume.</Empty>}
      {mounts && mounts.edges.length > 0 && (
        <table>
          <thead>
            <tr>
              <th scope="col">App</th>
              <th scope="col">Path pattern</th>
              <th scope="col">Access</th>
              <th scope="col">Granted</th>
              <th scope="col">
                <span class="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {mounts.edges.map(({ node: m }) => (
              <tr key={m.id}>
                <td>{m.appId}</td>
                <td>
                  <code>{m.pathPattern}</code>
                </td>
                <td>{m.accessLevel}</td>
                <td>
                  {formatDate(m.createdAt)} <span class="muted small">by {m.grantedBy}</span>
                </td>
                <td>
                  <button
                    type="button"
                    class="danger"
                    aria-label={`Revoke the mount of ${m.appId} on ${m.pathPattern}`}
                    onClick={async () => {
                      setError(null);
                      try {
                        await request(DeleteMount, { id: m.id });
                        loaded.reload();
                      } catch (err) {
                        setError(err);
                      }
                    }}
                  >
                    Revoke
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <form
        class="inline-form"
        aria-label="Create a mount"
        onSubmit={async (e) => {
          e.preventDefault();
          setError(null);
          try {
            await request(CreateMount, { volumeId, input: { appId, pathPattern: pattern, accessLevel: level } });
            setAppId('');
            loaded.reload();
          } catch (err) {
            setError(err);
          }
        }}
      >
        <h3>New mount</h3>
        <label>
          App id
          <input
            name="mount-app"
            required
            value={appId}
            aria-invalid={appError ? true : undefined}
            aria-describedby={appError ? 'mount-app-error' : undefined}
            onInput={(e) => setAppId(e.currentTarget.value)}
          />
          <FieldNote id="mount-app-error" message={appError} />
        </label>
        <label>
          Path pattern
          <input
            name="mount-pattern"
            value={pattern}
            aria-invalid={patternError ? true : undefined}
            aria-describedby={patternError ? 'mount-pattern-error' : undefined}
            onInput={(e) => setPattern(e.currentTarget.value)}
          />
          <FieldNote id="mount-pattern-error" message={patternError} />
        </label>
        <label>
          Access
          <select name="mount-access" value={level} onChange={(e) => setLevel(e.currentTarget.value as Level)}>
            <option value="read">read</option>
            <option value="write">write</option>
            <option value="admin">admin</option>
          </select>
        </label>
        <button type="submit">Create mount</button>
      </form>
    </div>
  );
}
