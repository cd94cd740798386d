import { expect } from 'vitest';
import type { TestGateway } from './app.js';

/** Percent-encodes each segment of an entry path (slashes kept). */
export const encodePath = (path: string) => path.split('/').map(encodeURIComponent).join('/');

/** A fresh workspace and volume (with optional quotas) and URL builders for its entry routes. */
export async function newVolume(gw: TestGateway, org: string, body: Record<string, unknown> = {}) {
  const ws = await gw.call('POST', `/v1/orgs/${org}/workspaces`, { name: `ws-${Math.random().toString(36).slice(2)}` });
  expect(ws.status, JSON.stringify(ws.body)).toBe(201);
  const workspaceId: string = ws.body.workspace_id;
  const base = `/v1/orgs/${org}/workspaces/${workspaceId}/volumes`;
  const vol = await gw.call('POST', base, { name: `vol-${Math.random().toString(36).slice(2)}`, ...body });
  expect(vol.status, JSON.stringify(vol.body)).toBe(201);
  const volumeId: string = vol.body.volume.volume_id;
  const volumeUrl = `${base}/${volumeId}`;
  return {
    org,
    workspaceId,
    volumeId,
    volumeUrl,
    /** The entry route for a path given unencoded (`/notes/a.md`). */
    entry: (path: string) => `${volumeUrl}/entries${encodePath(path.startsWith('/') ? path : `/${path}`)}`,
    list: (path?: string, extra = '') => `${volumeUrl}/list?${path === undefined ? '' : `path=${encodeURIComponent(path)}`}${extra}`,
    move: `${volumeUrl}/move`,
    mounts: `${volumeUrl}/mounts`,
  };
}
export type TestVolume = Awaited<ReturnType<typeof newVolume>>;

/** The volume's counters as the API reports them. */
export async function usage(gw: TestGateway, v: TestVolume) {
  const res = await gw.call('GET', v.volumeUrl);
  expect(res.status).toBe(200);
  const { used_bytes, entry_count, mount_count, last_reconciled_at } = res.body;
  return { used_bytes, entry_count, mount_count, last_reconciled_at } as {
    used_bytes: number;
    entry_count: number;
    mount_count: number;
    last_reconciled_at: string | null;
  };
}

/** What the rows say: entry count and byte sum, straight from SQL. */
export async function rowTotals(gw: TestGateway, volumeId: string) {
  const [row] = await gw.app.database.prisma.$queryRawUnsafe<{ n: number; bytes: number }[]>(
    'SELECT count(*)::int AS n, coalesce(sum(size_bytes), 0)::int AS bytes FROM entries WHERE volume_id = $1',
    volumeId,
  );
  return { entry_count: row?.n ?? -1, used_bytes: row?.bytes ?? -1 };
}

/** Asserts the volume's counters equal its rows exactly. */
export async function expectExactUsage(gw: TestGateway, v: TestVolume, what = 'usage') {
  const counters = await usage(gw, v);
  const rows = await rowTotals(gw, v.volumeId);
  expect({ entry_count: counters.entry_count, used_bytes: counters.used_bytes }, what).toEqual(rows);
  return rows;
}

/** PUT a text entry; asserts success. */
export async function putText(gw: TestGateway, v: TestVolume, path: string, text = `text of ${path}`, key?: string) {
  const res = await gw.call('PUT', v.entry(path), { content_text: text }, key);
  expect([200, 201], `${path}: ${JSON.stringify(res.body)}`).toContain(res.status);
  return res.body.entry;
}
