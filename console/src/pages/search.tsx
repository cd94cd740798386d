import { useEffect, useState } from 'preact/hooks';
import { ApiError, fieldError, request } from '../api.ts';
import type { Session } from '../app.tsx';
import { graphql, type ResultOf } from '../graphql.ts';
import { href, Link } from '../router.ts';
import { Empty, ErrorMessage, FieldNote, intInput, useLoad } from '../ui.tsx';

const WorkspaceOptions = graphql(`
  query WorkspaceOptions($orgId: ID) {
    workspaces(orgId: $orgId, first: 200, sort: "name:asc") { edges { node { id name } } }
  }
`);

const VolumeOptions = graphql(`
  query VolumeOptions($workspaceId: ID!) {
    volumes(workspaceId: $workspaceId, first: 200, sort: "name:asc") { edges { node { id name } } }
  }
`);

const SearchVolume = graphql(`
  query SearchVolume($volumeId: ID!, $query: String!, $mode: SearchMode, $topK: Int, $minScore: Float, $filters: SearchFilters) {
    search(volumeId: $volumeId, query: $query, mode: $mode, topK: $topK, minScore: $minScore, filters: $filters) {
      total
      hits { entryId volumeId volumeName path score chunkIndex contentPreview }
    }
  }
`);

const SearchAll = graphql(`
  query SearchAll($workspaceId: ID!, $appId: String, $query: String!, $mode: SearchMode, $topK: Int, $minScore: Float, $filters: SearchFilters) {
    searchAll(workspaceId: $workspaceId, appId: $appId, query: $query, mode: $mode, topK: $topK, minScore: $minScore, filters: $filters) {
      total
      hits { entryId volumeId volumeName path score chunkIndex contentPreview }
    }
  }
`);

type Hit = ResultOf<typeof SearchVolume>['search']['hits'][number];
type Mode = 'hybrid' | 'semantic' | 'keyword';
type Kind = '' | 'json' | 'text' | 'file';

/** The preview with the query's words marked. */
function Highlighted({ text, query }: { text: string; query: string }) {
  const words = [...new Set(query.toLowerCase().match(/[\p{L}\p{N}]{2,}/gu) ?? [])];
  if (words.length === 0) return <>{text}</>;
  const pattern = new RegExp(`(${words.map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|')})`, 'giu');
  const parts = text.split(pattern);
  return <>{parts.map((part, i) => (i % 2 === 1 ? <mark key={i}>{part}</mark> : part))}</>;
}

export function SearchPage({ session, params }: { session: Session; params: URLSearchParams }) {
  const [workspaceId, setWorkspaceId] = useState(params.get('workspace') ?? '');
  const [scope, setScope] = useState<'volume' | 'all'>(params.get('volume') || !params.get('workspace') ? 'volume' : 'all');
  const [volumeId, setVolumeId] = useState(params.get('volume') ?? '');
  const [appId, setAppId] = useState(session.viewer.appId ?? '');
  const [query, setQuery] = useState('');
  const [mode, setMode] = useState<Mode>('hybrid');
  const [topK, setTopK] = useState('10');
  const [minScore, setMinScore] = useState('');
  const [pathPrefix, setPathPrefix] = useState('');
  const [tags, setTags] = useState('');
  const [contentType, setContentType] = useState<Kind>('');
  const [writtenBy, setWrittenBy] = useState('');
  const [metadata, setMetadata] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<{ query: string; total: number; hits: Hit[] } | null>(null);

  const workspaces = useLoad(() => request(WorkspaceOptions, { orgId: session.orgId }), [session.orgId]);
  const volumes = useLoad(() => (workspaceId ? request(VolumeOptions, { workspaceId }) : Promise.resolve(undefined)), [workspaceId]);
  const wsList = workspaces.data?.workspaces.edges.map((e) => e.node) ?? [];
  const volList = volumes.data?.volumes.edges.map((e) => e.node) ?? [];

  // Defaults once the lists arrive: the first workspace, the first volume.
  useEffect(() => {
    if (!workspaceId && wsList[0]) setWorkspaceId(wsList[0].id);
  }, [wsList.length]);
  useEffect(() => {
    if (volList.length && !volList.some((v) => v.id === volumeId)) setVolumeId(volList[0]!.id);
  }, [volumes.data]);

  const submit = async (e: Event) => {
    e.preventDefault();
    setError(null);
    let meta: unknown;
    if (metadata.trim()) {
      try {
        meta = JSON.parse(metadata);
      } catch {
        setError(
          new ApiError('Metadata must be a JSON object', 'VALIDATION_FAILED', [
            { path: ['filters', 'metadata'], message: 'not valid JSON' },
          ]),
        );
        return;
      }
    }
    const tagList = tags
      .split(',')
      .map((t) => t.trim())
      .filter(Boolean);
    const filters = {
      ...(pathPrefix.trim() ? { pathPrefix: pathPrefix.trim() } : {}),
      ...(tagList.length ? { tags: tagList } : {}),
      ...(contentType ? { contentType } : {}),
      ...(writtenBy.trim() ? { writtenByAppId: writtenBy.trim() } : {}),
      ...(meta !== undefined ? { metadata: meta } : {}),
    };
    const k = intInput(topK);
    const min = minScore.trim() === '' ? undefined : Number.isFinite(Number(minScore)) ? Number(minScore) : (minScore as unknown as number);
    const common = {
      query,
      mode,
      ...(k !== undefined ? { topK: k } : {}),
      ...(min !== undefined ? { minScore: min } : {}),
      ...(Object.keys(filters).length ? { filters } : {}),
    };
    setBusy(true);
    try {
      if (scope === 'volume') {
        if (!volumeId) throw new ApiError('Choose a volume to search', 'VALIDATION_FAILED', [{ path: ['volumeId'], message: 'required' }]);
        const d = await request(SearchVolume, { volumeId, ...common });
        setResult({ query, total: d.search.total, hits: d.search.hits });
      } else {
        if (!workspaceId)
          throw new ApiError('Choose a workspace to search', 'VALIDATION_FAILED', [{ path: ['workspaceId'], message: 'required' }]);
        const d = await request(SearchAll, { workspaceId, ...(appId.trim() ? { appId: appId.trim() } : {}), ...common });
        setResult({ query, total: d.searchAll.total, hits: d.searchAll.hits });
      }
    } catch (err) {
      setError(err);
      setResult(null);
    } finally {
      setBusy(false);
    }
  };

  const note = (name: string) => fieldError(error, name);
  return (
    <section>
      <h1>Search</h1>
      <ErrorMessage error={workspaces.error} title="Could not load the workspaces" />
      {workspaces.data && wsList.length === 0 && (
        <Empty>No workspaces yet: create one, add a volume and write entries to search them.</Empty>
      )}
      <search>
        <form class="search-form" aria-label="Search entries" onSubmit={submit}>
          <fieldset>
            <legend>Where</legend>
            <div class="field">
              <label for="search-workspace">Workspace</label>
              <select id="search-workspace" name="workspace" value={workspaceId} onChange={(e) => setWorkspaceId(e.currentTarget.value)}>
                {wsList.map((w) => (
                  <option key={w.id} value={w.id}>
                    {w.name}
                  </option>
                ))}
              </select>
            </div>
            <label class="check">
              <input type="radio" name="scope" value="volume" checked={scope === 'volume'} onChange={() => setScope('volume')} />
              One volume
            </label>
            <label class="check">
              <input type="radio" name="scope" value="all" checked={scope === 'all'} onChange={() => setScope('all')} />
              Every volume an app can read (searchAll)
            </label>
            {scope === 'volume' ? (
              <div class="field">
                <label for="search-volume">Volume</label>
                <select id="search-volume" name="volume" value={volumeId} onChange={(e) => setVolumeId(e.currentTarget.value)}>
                  {volList.map((v) => (
                    <option key={v.id} value={v.id}>
                      {v.name}
                    </option>
                  ))}
                </select>
              </div>
            ) : (
              <label>
                As app
                <input
                  name="app-id"
                  placeholder={session.viewer.appId ?? 'every volume this key sees'}
                  value={appId}
                  aria-invalid={note('appId') ? true : undefined}
                  onInput={(e) => setAppId(e.currentTarget.value)}
                />
              </label>
            )}
          </fieldset>
          <fieldset>
            <legend>What</legend>
            <label class="wide">
              Query
              <input
                name="query"
                type="search"
                required
                value={query}
                aria-invalid={note('query') ? true : undefined}
                aria-describedby={note('query') ? 'query-error' : undefined}
                onInput={(e) => setQuery(e.currentTarget.value)}
              />
              <FieldNote id="query-error" message={note('query')} />
            </label>
            <label>
              Mode
              <select name="mode" value={mode} onChange={(e) => setMode(e.currentTarget.value as Mode)}>
                <option value="hybrid">hybrid</option>
                <option value="semantic">semantic</option>
                <option value="keyword">keyword</option>
              </select>
            </label>
            <label>
              Top k
              <input
                name="top-k"
                inputMode="numeric"
                size={4}
                value={topK}
                aria-invalid={note('topK') || note('top_k') ? true : undefined}
                aria-describedby={note('topK') || note('top_k') ? 'topk-error' : undefined}
                onInput={(e) => setTopK(e.currentTarget.value)}
              />
              <FieldNote id="topk-error" message={note('topK') ?? note('top_k')} />
            </label>
            <label>
              Min score
              <input name="min-score" inputMode="decimal" size={5} value={minScore} onInput={(e) => setMinScore(e.currentTarget.value)} />
            </label>
          </fieldset>
          <details>
            <summary>Filters</summary>
            <fieldset>
              <legend class="sr-only">Filters</legend>
              <label>
                Path prefix
                <input
                  name="path-prefix"
                  placeholder="/notes/"
                  value={pathPrefix}
                  aria-invalid={note('pathPrefix') ? true : undefined}
                  onInput={(e) => setPathPrefix(e.currentTarget.value)}
                />
              </label>
              <label>
                Tags (all of, comma-separated)
                <input name="tags" value={tags} onInput={(e) => setTags(e.currentTarget.value)} />
              </label>
              <label>
                Kind
                <select name="content-type" value={contentType} onChange={(e) => setContentType(e.currentTarget.value as Kind)}>
                  <option value="">any</option>
                  <option value="json">json</option>
                  <option value="text">text</option>
                  <option value="file">file</option>
                </select>
              </label>
              <label>
                Written by app
                <input name="written-by" value={writtenBy} onInput={(e) => setWrittenBy(e.currentTarget.value)} />
              </label>
              <label class="wide">
                Metadata (JSON, exact values)
                <input
                  name="metadata"
                  placeholder='{"lang": "en"}'
                  value={metadata}
                  aria-invalid={note('metadata') ? true : undefined}
                  aria-describedby={note('metadata') ? 'metadata-error' : undefined}
                  onInput={(e) => setMetadata(e.currentTarget.value)}
                />
                <FieldNote id="metadata-error" message={note('metadata')} />
              </label>
            </fieldset>
          </details>
          <button type="submit" disabled={busy}>
            {busy ? 'Searching…' : 'Search'}
          </button>
        </form>
      </search>
      <ErrorMessage error={error} title="Search failed" />
      {result && (
        <section aria-label="Results" class="results">
          <h2>
            {result.total} hit{result.total === 1 ? '' : 's'} for “{result.query}”
          </h2>
          {result.hits.length === 0 && (
            <Empty>Nothing matched. Entries are searchable once indexed; try keyword mode or fewer filters.</Empty>
          )}
          <ol class="hits">
            {result.hits.map((h) => (
              <li key={`${h.entryId}:${h.chunkIndex}`} class="hit">
                <p>
                  <Link to={href(`/v/${h.volumeId}/entry`, { path: h.path })}>{h.path}</Link>{' '}
                  <span class="muted small">
                    in {h.volumeName} · chunk {h.chunkIndex}
                  </span>{' '}
                  <span class="score" title="score">
                    score {h.score.toFixed(3)}
                  </span>
                </p>
                <p class="preview">
                  <Highlighted text={h.contentPreview} query={result.query} />
                </p>
              </li>
            ))}
          </ol>
        </section>
      )}
    </section>
  );
}
