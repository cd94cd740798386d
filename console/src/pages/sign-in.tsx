import { useState } from 'preact/hooks';
import { request } from '../api.ts';
import { storeKey, storeOrg, type Viewer } from '../session.ts';
import { ErrorMessage } from '../ui.tsx';
import { ViewerQuery } from '../viewer.ts';

export function SignIn({ error, onSignedIn }: { error: unknown; onSignedIn(viewer: Viewer, org: string | null): void }) {
  const [key, setKey] = useState('');
  const [org, setOrg] = useState('');
  const [busy, setBusy] = useState(false);
  const [failure, setFailure] = useState<unknown>(null);

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setFailure(null);
    try {
      // Checked before it is kept: a wrong key never reaches sessionStorage.
      const { viewer } = await request(ViewerQuery, {}, key.trim());
      storeKey(key.trim());
      const chosen = viewer.kind === 'platform' && org.trim() ? org.trim() : null;
      if (chosen) storeOrg(chosen);
      setKey('');
      onSignedIn(viewer, chosen);
    } catch (err) {
      setFailure(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <main id="main" class="sign-in" tabIndex={-1}>
      <h1>Volumes console</h1>
      <p>Sign in with an API key. It is kept in this tab only (session storage) and sent only to this gateway.</p>
      <ErrorMessage error={failure ?? error} />
      <form onSubmit={submit}>
        <label>
          API key
          <input
            name="api-key"
            type="password"
            autocomplete="off"
            spellcheck={false}
            required
            value={key}
            onInput={(e) => setKey(e.currentTarget.value)}
          />
        </label>
        <label>
          Organisation <span class="muted">(platform keys only; switch later in the header)</span>
          <input name="org" autocomplete="off" value={org} onInput={(e) => setOrg(e.currentTarget.value)} />
        </label>
        <button type="submit" disabled={busy}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
      </form>
    </main>
  );
}
