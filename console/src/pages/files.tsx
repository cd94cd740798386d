import { useEffect, useRef, useState } from 'preact/hooks';
import { type ApiError, request, subscribe, upload, watchConnection } from '../api.ts';
import { graphql, type ResultOf } from '../graphql.ts';
import { href, Link } from '../router.ts';
import { count, Empty, ErrorMessage, formatBytes, formatDate, timeUntil, useNow } from '../ui.tsx';

/** Entries per page: a volume of 10,000 entries opens with one page, the rest on demand. */
const PAGE = 100;

const DirectoryQuery = graphql(`
  query Directory($id: ID!, $path: String, $after: String, $first: Int) {
    volume(id: $id) {
      id
      directory(path: $path, first: $first, after: $after) {
        path directories hasMore nextCursor
        entries { id path contentType mimeType sizeBytes version tags ttlSeconds expiresAt updatedAt isIndexed }
      }
    }
  }
`);

const EntryRowQuery = graphql(`
  query EntryRow($id: ID!, $path: String!) {
    volume(id: $id) {
      id
      entry(path: $path) { id path contentType mimeType sizeBytes version tags ttlSeconds expiresAt updatedAt isIndexed }
    }
  }
`);

const EntryChanged = graphql(`
  subscription EntryChanged($volumeId: ID!, $pathPrefix: String) {
    entryChanged(volumeId: $volumeId, pathPrefix: $pathPrefix) { change path previousPath entryId version }
  }
`);

const UploadEntry = graphql(`
  mutation UploadEntry($volumeId: ID!, $path: String!, $file: File!) {
    uploadEntry(volumeId: $volumeId, path: $path, file: $file) {
      created
      entry { id path contentType mimeType sizeBytes version tags ttlSeconds expiresAt updatedAt isIndexed }
    }
  }
`);

type Row = NonNullable<NonNullable<ResultOf<typeof EntryRowQuery>['volume']>['entry']>;

interface UploadState {
  id: number;
  name: string;
  path: string;
  sent: number;
  total: number;
  status: 'uploading' | 'done' | 'failed';
  error?: ApiError;
  abort(): void;
}

const parentOf = (p: string) => p.slice(0, p.lastIndexOf('/') + 1);
const nameOf = (p: string) => p.slice(p.lastIndexOf('/') + 1);

function Breadcrumbs({ volumeId, path }: { volumeId: string; path: string }) {
  const parts = path.split('/').filter(Boolean);
  return (
    <nav aria-label="Folder" class="crumbs">
      <Link to={href(`/v/${volumeId}`)}>/</Link>
      {parts.map((part, i) => {
        const to = `/${parts.slice(0, i + 1).join('/')}/`;
        return (
          <span key={to}>
            {' '}
            <Link to={href(`/v/${volumeId}`, { path: to })} aria-current={i === parts.length - 1 ? 'page' : undefined}>
              {part}
            </Link>{' '}
            /
          </span>
        );
      })}
    </nav>
  );
}

function Ttl({ row, now }: { row: Row; now: number }) {
  if (!row.expiresAt) return <>—</>;
  return <span title={`expires ${formatDate(row.expiresAt)}`}>{timeUntil(row.expiresAt, now)}</span>;
}

export function FilesTab({ volumeId, path, onChange }: { volumeId: string; path: string; onChange?(): void }) {
  // The volume's usage (shown above the tab) changes with every write: read it again, once per burst.
  const usageTimer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  const usageChanged = () => {
    clearTimeout(usageTimer.current);
    usageTimer.current = setTimeout(() => onChange?.(), 300);
  };
  useEffect(() => () => clearTimeout(usageTimer.current), []);
  const dir = path.endsWith('/') ? path : `${path}/`;
  const [dirs, setDirs] = useState<string[]>([]);
  const [rows, setRows] = useState<Row[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState<unknown>(null);
  const [live, setLive] = useState<'connecting' | 'on' | 'off'>('connecting');
  const [announcement, setAnnouncement] = useState('');
  const [uploads, setUploads] = useState<UploadState[]>([]);
  const [dragging, setDragging] = useState(false);
  const cursorRef = useRef<string | null>(null);
  cursorRef.current = cursor;
  const nextUpload = useRef(0);
  const now = useNow();

  /** Puts a row in its place (by path), unless it sorts after the last page loaded (it will come with "Load more"). */
  const upsert = (row: Row) =>
    setRows((current) => {
      const others = current.filter((r) => r.path !== row.path);
      const last = others.at(-1);
      if (cursorRef.current && last && row.path > last.path) return others;
      return [...others, row].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    });
  const remove = (p: string) => setRows((current) => current.filter((r) => r.path !== p));

  useEffect(() => {
    let stale = false;
    setLoading(true);
    setError(null);
    setRows([]);
    setDirs([]);
    request(DirectoryQuery, { id: volumeId, path: dir, first: PAGE }).then(
      (d) => {
        if (stale) return;
        const listing = d.volume?.directory;
        setDirs(listing?.directories ?? []);
        setRows(listing?.entries ?? []);
        setCursor(listing?.hasMore ? (listing.nextCursor ?? null) : null);
        setLoading(false);
      },
      (err) => {
        if (stale) return;
        setError(err);
        setLoading(false);
      },
    );

    // Other clients' writes under this folder, as they happen.
    setLive('connecting');
    const stop = subscribe(
      EntryChanged,
      { volumeId, pathPrefix: dir },
      {
        next: async ({ entryChanged: ev }) => {
          if (ev.change === 'deleted') remove(ev.path);
          if (ev.change === 'moved' && ev.previousPath) remove(ev.previousPath);
          if (ev.change !== 'deleted') {
            if (parentOf(ev.path) === dir) {
              const d = await request(EntryRowQuery, { id: volumeId, path: ev.path }).catch(() => undefined);
              const row = d?.volume?.entry;
              if (row && !stale) upsert(row);
            } else if (ev.path.startsWith(dir)) {
              const sub = `${dir}${ev.path.slice(dir.length).split('/')[0]}/`;
              setDirs((ds) => (ds.includes(sub) ? ds : [...ds, sub].sort()));
            }
          }
          usageChanged();
          setAnnouncement(`${ev.path} ${ev.change}${ev.change === 'moved' && ev.previousPath ? ` from ${ev.previousPath}` : ''}`);
        },
        error: () => setLive('off'),
        complete: () => setLive('off'),
      },
    );
    // graphql-ws acknowledges the connection, not each subscription: "live" once the socket is up.
    const unwatch = watchConnection((up) => !stale && setLive((l) => (up ? 'on' : l === 'on' ? 'connecting' : l)));
    return () => {
      stale = true;
      unwatch();
      stop();
    };
  }, [volumeId, dir]);

  const loadMore = async () => {
    if (!cursor) return;
    try {
      const d = await request(DirectoryQuery, { id: volumeId, path: dir, first: PAGE, after: cursor });
      const listing = d.volume?.directory;
      setRows((r) => [...r, ...(listing?.entries ?? []).filter((e) => !r.some((x) => x.path === e.path))]);
      setCursor(listing?.hasMore ? (listing.nextCursor ?? null) : null);
    } catch (err) {
      setError(err);
    }
  };

  const startUploads = (files: FileList | File[]) => {
    for (const file of Array.from(files)) {
      const id = ++nextUpload.current;
      const target = dir + file.name;
      const handle = upload(UploadEntry, { volumeId, path: target, file }, (sent, total) =>
        setUploads((us) => us.map((u) => (u.id === id ? { ...u, sent, total } : u))),
      );
      setUploads((us) => [
        ...us,
        { id, name: file.name, path: target, sent: 0, total: file.size, status: 'uploading', abort: handle.abort },
      ]);
      handle.done.then(
        (d) => {
          upsert(d.uploadEntry.entry);
          usageChanged();
          setUploads((us) => us.map((u) => (u.id === id ? { ...u, sent: u.total, status: 'done' } : u)));
        },
        (err: ApiError) => setUploads((us) => us.map((u) => (u.id === id ? { ...u, status: 'failed', error: err } : u))),
      );
    }
  };

  return (
    <div>
      <Breadcrumbs volumeId={volumeId} path={dir} />
      <p class="live-status">
        <span class={`dot dot-${live}`} aria-hidden="true" />{' '}
        {live === 'on' ? 'Live: changes by others appear here' : live === 'off' ? 'Live updates stopped (reload to retry)' : 'Connecting…'}
      </p>
      <div class="sr-only" aria-live="polite">
        {announcement}
      </div>
      <section
        class={`dropzone${dragging ? ' dragging' : ''}`}
        aria-label="Upload files"
        onDragOver={(e) => {
          e.preventDefault();
          setDragging(true);
        }}
        onDragLeave={() => setDragging(false)}
        onDrop={(e) => {
          e.preventDefault();
          setDragging(false);
          if (e.dataTransfer?.files.length) startUploads(e.dataTransfer.files);
        }}
      >
        <p>
          Drop files here to upload them to <code>{dir}</code>, or{' '}
          <label class="file-pick">
            choose files
            <input
              type="file"
              name="upload"
              multiple
              onChange={(e) => {
                const input = e.currentTarget;
                if (input.files?.length) startUploads(input.files);
                input.value = '';
              }}
            />
          </label>
          .
        </p>
        {uploads.length > 0 && (
          <ul class="uploads">
            {uploads.map((u) => {
              const pct = u.total > 0 ? Math.round((u.sent / u.total) * 100) : u.status === 'done' ? 100 : 0;
              return (
                <li key={u.id}>
                  <span>{u.name}</span>{' '}
                  <progress max={100} value={pct} aria-label={`Upload of ${u.name}`}>
                    {pct} %
                  </progress>{' '}
                  <span>{u.status === 'done' ? 'uploaded' : u.status === 'failed' ? 'failed' : `${pct} %`}</span>
                  {u.status === 'uploading' && (
                    <button type="button" class="link" onClick={u.abort}>
                      Cancel
                    </button>
                  )}
                  {u.error && <ErrorMessage error={u.error} title={u.path} />}
                </li>
              );
            })}
          </ul>
        )}
      </section>
      <ErrorMessage error={error} title="Could not list this folder" />
      {loading && <p class="loading">Loading…</p>}
      {!loading && !error && dirs.length === 0 && rows.length === 0 && <Empty>This folder is empty. Drop a file above to add one.</Empty>}
      {(dirs.length > 0 || rows.length > 0) && (
        <table class="entries">
          <caption class="sr-only">Contents of {dir}</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Kind</th>
              <th scope="col" class="num">
                Size
              </th>
              <th scope="col" class="num">
                Version
              </th>
              <th scope="col">Tags</th>
              <th scope="col">Expires in</th>
              <th scope="col">Updated</th>
            </tr>
          </thead>
          <tbody>
            {dirs.map((d) => (
              <tr key={d} class="dir">
                <td colSpan={7}>
                  <Link to={href(`/v/${volumeId}`, { path: d })}>{`${d.slice(dir.length)}`}</Link>
                </td>
              </tr>
            ))}
            {rows.map((r) => (
              <tr key={r.path} data-path={r.path}>
                <td>
                  <Link to={href(`/v/${volumeId}/entry`, { path: r.path })}>{nameOf(r.path)}</Link>
                </td>
                <td>
                  {r.contentType}
                  {r.mimeType && <span class="muted small"> {r.mimeType}</span>}
                </td>
                <td class="num">{formatBytes(r.sizeBytes)}</td>
                <td class="num">{r.version}</td>
                <td>
                  {r.tags.length
                    ? r.tags.map((t) => (
                        <span class="tag" key={t}>
                          {t}
                        </span>
                      ))
                    : '—'}
                </td>
                <td>
                  <Ttl row={r} now={now} />
                </td>
                <td>{formatDate(r.updatedAt)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {rows.length > 0 && (
        <p class="muted">
          Showing {count(rows.length)} entr{rows.length === 1 ? 'y' : 'ies'}
          {cursor ? ' (more below)' : ''} in this folder.
        </p>
      )}
      {cursor && (
        <button type="button" onClick={loadMore}>
          Load {PAGE} more
        </button>
      )}
    </div>
  );
}
