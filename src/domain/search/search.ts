import type { z } from 'zod';
import { enterOrg } from '../access/authenticate.js';
import { findSearchedVolume, findWorkspace } from '../access/authorize.js';
import { pathAccess, pathAccessMany } from '../access/entry-access.js';
import { actingAsApp, isAppKey, type Principal, requireScope } from '../access/principal.js';
import { visibleVolumeWhere } from '../access/visibility.js';
import { ForbiddenError } from '../shared/errors.js';
import { ExternalId } from '../shared/fields.js';
import { normaliseEntryPath } from '../shared/paths.js';
import type { Loc } from '../shared/routes.js';
import type { Runtime } from '../shared/runtime.js';
import { parseInput } from '../shared/validation.js';
import { SearchInput, type SearchResult } from './input.js';
import { candidatesFor, fuse, type SearchScope } from './sql.js';

// Search within one volume or across every volume an app can read. Access is applied in SQL, per
// volume: chunks of volumes the caller cannot see never become candidates, and paths an app's mounts
// do not match are filtered by the same compiled globs listings use.

/**
 * Searches one volume. Needs `search` and `entries:read`; app keys see only paths their mounts match.
 * @throws ValidationError, NotFoundError, ForbiddenError
 */
export async function searchVolume(
  rt: Runtime,
  p: Principal,
  route: { orgId: string; workspaceId: string; volumeId: string },
  raw: unknown,
  loc: Loc = ['body'],
): Promise<SearchResult> {
  await authorizeSearch(rt, p, route.orgId);
  const volume = await findSearchedVolume(rt, p, route);
  const input = parseSearch(raw, loc);
  const access = await pathAccess(rt, p, volume.id);
  return run(rt, input, [
    { volumeId: volume.id, volumeName: volume.name, embedderId: searchEmbedder(volume), pathRegexes: access.readableRegexes() },
  ]);
}

/**
 * Searches every volume of a workspace that an app can read (`app_id`), with that app's mounts:
 * whoever names the app (platform key, org key, the app's own key) gets exactly that app's view. An
 * app key may only search as itself. Without `app_id`, a key searches every volume it can see.
 * @throws ValidationError, NotFoundError, ForbiddenError
 */
export async function searchAll(
  rt: Runtime,
  p: Principal,
  route: { orgId: string; workspaceId: string },
  appId: string | undefined,
  raw: unknown,
  loc: Loc = ['body'],
): Promise<SearchResult> {
  await authorizeSearch(rt, p, route.orgId);
  if (appId !== undefined) parseInput(ExternalId, appId, ['query', 'app_id']);
  if (isAppKey(p) && appId !== undefined && appId !== p.appId) {
    throw new ForbiddenError('search:other_app', { reason: `this key belongs to app ${p.appId}`, app_id: appId });
  }
  await findWorkspace(rt, p, route);
  const input = parseSearch(raw, loc);
  // Naming an app searches exactly as that app would: its mounts, its path patterns.
  const as: Principal = appId !== undefined ? actingAsApp(p, route.orgId, appId) : p;
  const volumes = await rt.db.volume.findMany({
    where: { ...visibleVolumeWhere(as, route.orgId), workspaceId: route.workspaceId },
    select: { id: true, name: true, embeddingModelId: true, activeEmbedderId: true },
    orderBy: { id: 'asc' },
  });
  // Every volume's mounts in one query, whatever their number.
  const access = await pathAccessMany(
    rt,
    as,
    volumes.map((v) => v.id),
  );
  const scopes: SearchScope[] = [];
  for (const v of volumes) {
    const regexes = access.get(v.id)?.readableRegexes();
    if (regexes === undefined || (regexes && regexes.length === 0)) continue;
    scopes.push({ volumeId: v.id, volumeName: v.name, embedderId: searchEmbedder(v), pathRegexes: regexes });
  }
  return run(rt, input, scopes);
}

/** Searching reads entries: it needs `search` and `entries:read` in the org. @throws NotFoundError, ForbiddenError */
async function authorizeSearch(rt: Runtime, p: Principal, orgId: string): Promise<void> {
  await enterOrg(rt, p, orgId);
  requireScope(p, 'search');
  requireScope(p, 'entries:read');
}

/** The embedder whose vectors a volume is searched with: the complete set, even while a reindex builds another. */
export function searchEmbedder(v: { embeddingModelId: string; activeEmbedderId: string | null }): string {
  return v.activeEmbedderId ?? v.embeddingModelId;
}

function parseSearch(raw: unknown, loc: Loc): z.output<typeof SearchInput> {
  const input = parseInput(SearchInput, raw, loc);
  if (input.filters?.path_prefix !== undefined) {
    const prefix = input.filters.path_prefix;
    // A prefix is a path (normalised the same way) or a directory ending in '/'.
    const dir = prefix.endsWith('/') && prefix !== '/';
    const normal = prefix === '/' ? '/' : normaliseEntryPath(dir ? prefix.slice(0, -1) : prefix, [...loc, 'filters', 'path_prefix']);
    input.filters.path_prefix = dir ? `${normal}/` : normal;
  }
  return input;
}

/** Hybrid fuses deeper lists than it returns (this many rows a leg, at least), so a hit ranked low by one method can still surface. */
export const HYBRID_DEPTH = 50;

async function run(rt: Runtime, input: z.output<typeof SearchInput>, scopes: SearchScope[]): Promise<SearchResult> {
  if (scopes.length === 0) return { query: input.query, results: [], total: 0 };
  const depth = input.mode === 'hybrid' ? Math.max(HYBRID_DEPTH, input.top_k * 4) : input.top_k;
  const lists = await candidatesFor(rt, input.mode, input.query, scopes, input.filters ?? {}, depth, (id) => rt.embedders.get(id));
  let hits = input.mode === 'hybrid' ? fuse(lists) : (lists[0] ?? []);
  if (input.min_score !== undefined) hits = hits.filter((h) => h.score >= (input.min_score as number));
  hits = hits.slice(0, input.top_k);
  const names = new Map(scopes.map((s) => [s.volumeId, s.volumeName]));
  const results = hits.map((h) => ({
    entryId: h.entryId,
    volumeId: h.volumeId,
    volumeName: names.get(h.volumeId) ?? '',
    path: h.path,
    score: Math.round(h.score * 1e6) / 1e6,
    contentPreview: h.preview,
    chunkIndex: h.chunkIndex,
  }));
  return { query: input.query, results, total: results.length };
}
