import { useState } from 'preact/hooks';
import { fieldError, request } from '../api.ts';
import type { Session } from '../app.tsx';
import { graphql } from '../graphql.ts';
import { Empty, ErrorMessage, FieldNote, formatDate, useLoad } from '../ui.tsx';

const KeysQuery = graphql(`
  query ApiKeys($orgId: ID) {
    apiKeys(orgId: $orgId, first: 200) {
      edges { node { id name prefix scopes appId createdAt createdBy lastUsedAt revokedAt } }
    }
  }
`);

const CreateKey = graphql(`
  mutation CreateApiKey($orgId: ID, $input: CreateApiKeyInput!) {
    createApiKey(orgId: $orgId, input: $input) { apiKey key { id name } }
  }
`);

const RevokeKey = graphql(`
  mutation RevokeApiKey($id: ID!) {
    revokeApiKey(id: $id) { id revokedAt }
  }
`);

const SCOPES = [
  'workspaces:read',
  'workspaces:write',
  'volumes:read',
  'volumes:write',
  'entries:read',
  'entries:write',
  'locks:write',
  'search',
  'admin',
] as const;

export function KeysPage({ session }: { session: Session }) {
  const loaded = useLoad(() => request(KeysQuery, { orgId: session.orgId }), [session.orgId]);
  const [name, setName] = useState('');
  const [appId, setAppId] = useState('');
  const [scopes, setScopes] = useState<string[]>(['volumes:read', 'entries:read', 'search']);
  const [error, setError] = useState<unknown>(null);
  const [secret, setSecret] = useState<{ name: string; key: string } | null>(null);
  const keys = loaded.data?.apiKeys.edges.map((e) => e.node) ?? [];
  const errors = { name: fieldError(error, 'name'), scopes: fieldError(error, 'scopes'), appId: fieldError(error, 'appId') };

  return (
    <section>
      <h1>API keys {session.orgId && <span class="muted">of {session.orgId}</span>}</h1>
      <ErrorMessage error={loaded.error} title="Could not load the keys" />
      <ErrorMessage error={error} />
      {secret && (
        <div class="secret" role="status">
          <p>
            The secret of <strong>{secret.name}</strong>, shown only this once: copy it now.
          </p>
          <output aria-label="New API key">
            <code>{secret.key}</code>
          </output>{' '}
          <button type="button" onClick={() => setSecret(null)}>
            Done
          </button>
        </div>
      )}
      {loaded.data && keys.length === 0 && <Empty>No API keys in this organisation yet.</Empty>}
      {keys.length > 0 && (
        <table>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Prefix</th>
              <th scope="col">Scopes</th>
              <th scope="col">App</th>
              <th scope="col">Created</th>
              <th scope="col">Last used</th>
              <th scope="col">State</th>
            </tr>
          </thead>
          <tbody>
            {keys.map((k) => (
              <tr key={k.id} class={k.revokedAt ? 'revoked' : undefined}>
                <td>{k.name}</td>
                <td>
                  <code>{k.prefix}…</code>
                </td>
                <td>{k.scopes.join(', ')}</td>
                <td>{k.appId ?? '—'}</td>
                <td>{formatDate(k.createdAt)}</td>
                <td>{formatDate(k.lastUsedAt)}</td>
                <td>
                  {k.revokedAt ? (
                    `revoked ${formatDate(k.revokedAt)}`
                  ) : k.id === session.viewer.keyId ? (
                    <span class="muted">this key</span>
                  ) : (
                    <button
                      type="button"
                      class="danger"
                      aria-label={`Revoke the key ${k.name}`}
                      onClick={async () => {
                        setError(null);
                        try {
                          await request(RevokeKey, { id: k.id });
                          loaded.reload();
                        } catch (err) {
                          setError(err);
                        }
                      }}
                    >
                      Revoke
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <form
        class="inline-form"
        aria-label="Create an API key"
        onSubmit={async (e) => {
          e.preventDefault();
          setError(null);
          try {
            const { createApiKey } = await request(CreateKey, {
              orgId: session.orgId,
              input: { name, scopes, ...(appId.trim() ? { appId: appId.trim() } : {}) },
            });
            setSecret({ name: createApiKey.key.name, key: createApiKey.apiKey });
            setName('');
            setAppId('');
            loaded.reload();
          } catch (err) {
            setError(err);
          }
        }}
      >
        <h2>New key</h2>
        <label>
          Name
          <input
            name="key-name"
            required
            value={name}
            aria-invalid={errors.name ? true : undefined}
            aria-describedby={errors.name ? 'key-name-error' : undefined}
            onInput={(e) => setName(e.currentTarget.value)}
          />
          <FieldNote id="key-name-error" message={errors.name} />
        </label>
        <label>
          App id <span class="muted">(makes it an app key)</span>
          <input
            name="key-app"
            value={appId}
            aria-invalid={errors.appId ? true : undefined}
            aria-describedby={errors.appId ? 'key-app-error' : undefined}
            onInput={(e) => setAppId(e.currentTarget.value)}
          />
          <FieldNote id="key-app-error" message={errors.appId} />
        </label>
        <fieldset aria-describedby={errors.scopes ? 'key-scopes-error' : undefined}>
          <legend>Scopes</legend>
          {SCOPES.map((s) => (
            <label class="check" key={s}>
              <input
                type="checkbox"
                name="scope"
                value={s}
                checked={scopes.includes(s)}
                onChange={(e) => {
                  const on = e.currentTarget.checked;
                  setScopes((cur) => (on ? [...cur, s] : cur.filter((x) => x !== s)));
                }}
              />
              {s}
            </label>
          ))}
          <FieldNote id="key-scopes-error" message={errors.scopes} />
        </fieldset>
        <button type="submit">Create key</button>
      </form>
    </section>
  );
}
