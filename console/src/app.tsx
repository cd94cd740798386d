import { useEffect, useState } from 'preact/hooks';
import { closeSockets, request, setUnauthenticatedHandler } from './api.ts';
import { EntryPage } from './pages/entry.tsx';
import { KeysPage } from './pages/keys.tsx';
import { SearchPage } from './pages/search.tsx';
import { SignIn } from './pages/sign-in.tsx';
import { VolumePage } from './pages/volume.tsx';
import { WorkspacePage } from './pages/workspace.tsx';
import { WorkspacesPage } from './pages/workspaces.tsx';
import { Link, navigate, useRoute } from './router.ts';
import { clearSession, storedKey, storedOrg, storeOrg, type Viewer } from './session.ts';
import { ErrorMessage } from './ui.tsx';
import { ViewerQuery } from './viewer.ts';

/** What every page gets: who is signed in and the organisation it works in. */
export interface Session {
  viewer: Viewer;
  /** The organisation: the key's own, or the one a platform key switched to (null: none chosen yet). */
  orgId: string | null;
}

function OrgSwitcher({ orgId, onSwitch }: { orgId: string | null; onSwitch(org: string): void }) {
  const [value, setValue] = useState(orgId ?? '');
  useEffect(() => setValue(orgId ?? ''), [orgId]);
  return (
    <form
      class="org-switcher"
      onSubmit={(e) => {
        e.preventDefault();
        const org = value.trim();
        if (org) onSwitch(org);
      }}
    >
      <label>
        Organisation
        <input name="org" value={value} onInput={(e) => setValue(e.currentTarget.value)} required size={14} autocomplete="off" />
      </label>
      <button type="submit">Switch</button>
    </form>
  );
}

const TITLES: Record<string, string> = { w: 'Workspace', v: 'Volume', search: 'Search', keys: 'API keys' };

function Pages({ session }: { session: Session }) {
  const route = useRoute();
  const segments = route.path.split('/').filter(Boolean);
  // The tab's title names the page (screen readers announce it on navigation).
  useEffect(() => {
    const page = segments[2] === 'entry' ? 'Entry' : (TITLES[segments[0] ?? ''] ?? 'Workspaces');
    document.title = `${page} · Volumes console`;
  }, [route.path]);
  const needsOrg = session.viewer.kind === 'platform' && !session.orgId;
  if (needsOrg && (segments.length === 0 || segments[0] === 'keys' || segments[0] === 'search')) {
    return (
      <section>
        <h1>Choose an organisation</h1>
        <p>This is a platform key: it may act on any organisation. Name one in the header to work in it.</p>
      </section>
    );
  }
  const [first, id, sub] = segments;
  if (!first) return <WorkspacesPage session={session} />;
  if (first === 'w' && id) return <WorkspacePage session={session} workspaceId={id} />;
  if (first === 'v' && id && sub === 'entry') return <EntryPage volumeId={id} path={route.params.get('path') ?? '/'} />;
  if (first === 'v' && id) return <VolumePage session={session} volumeId={id} route={route} />;
  if (first === 'search') return <SearchPage session={session} params={route.params} />;
  if (first === 'keys') return <KeysPage session={session} />;
  return (
    <section>
      <h1>Not found</h1>
      <p>
        Nothing lives at this address. <Link to="/">Go to the workspaces</Link>.
      </p>
    </section>
  );
}

export function App() {
  const [viewer, setViewer] = useState<Viewer | null>(null);
  const [orgId, setOrgId] = useState<string | null>(storedOrg());
  const [checking, setChecking] = useState(() => storedKey() !== null);
  const [error, setError] = useState<unknown>(null);

  const signOut = (reason?: string) => {
    closeSockets();
    clearSession();
    setViewer(null);
    setOrgId(null);
    setError(reason ? new Error(reason) : null);
    navigate('/', true);
  };

  useEffect(() => {
    setUnauthenticatedHandler(() => signOut('The gateway no longer accepts this key. Sign in again.'));
    // A reload of the tab keeps the session (sessionStorage): check the key is still good.
    if (!storedKey()) return;
    request(ViewerQuery, {}).then(
      (d) => {
        setViewer(d.viewer);
        setChecking(false);
      },
      (err) => {
        setError(err);
        setChecking(false);
      },
    );
  }, []);

  if (checking) return <p class="loading">Checking your key…</p>;
  if (!viewer)
    return (
      <SignIn
        error={error}
        onSignedIn={(v, org) => {
          setError(null);
          setViewer(v);
          setOrgId(v.kind === 'platform' ? org : v.orgId);
        }}
      />
    );

  const effectiveOrg = viewer.kind === 'platform' ? orgId : viewer.orgId;
  const who = viewer.kind === 'platform' ? 'platform key' : viewer.appId ? `app key (${viewer.appId})` : 'organisation key';
  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <nav aria-label="Main">
          <Link to="/" class="brand">
            Volumes console
          </Link>
          <Link to="/">Workspaces</Link>
          <Link to="/search">Search</Link>
          <Link to="/keys">API keys</Link>
        </nav>
        <div class="who">
          {viewer.kind === 'platform' ? (
            <OrgSwitcher
              orgId={orgId}
              onSwitch={(org) => {
                storeOrg(org);
                setOrgId(org);
                navigate('/');
              }}
            />
          ) : (
            <span>
              Organisation <strong>{viewer.orgId}</strong>
            </span>
          )}
          <span class="muted">{who}</span>
          <button type="button" onClick={() => signOut()}>
            Sign out
          </button>
        </div>
      </header>
      <main id="main" tabIndex={-1}>
        <ErrorMessage error={error} />
        <Pages key={effectiveOrg ?? ''} session={{ viewer, orgId: effectiveOrg }} />
      </main>
    </>
  );
}
