import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ORPHAN_GRACE_MS,
  reconcileVolumeUsage,
  reconcileWorkspaceObjects,
  sweepAllIncompleteUploads,
  sweepExpiredEntries,
} from '../src/domain/maintenance/maintenance.js';
import { startGateway, type TestGateway, waitFor } from './helpers/app.js';
import { expectExactUsage, newVolume, putText, rowTotals, usage } from './helpers/entries.js';
import { request } from './helpers/http.js';

let gw: TestGateway;
beforeAll(async () => {
  // The background sweeper stays out of the way: these tests run the sweep themselves.
  gw = await startGateway({ SWEEP_INTERVAL_MS: '3600000' });
});
afterAll(async () => {
  await gw?.stop();
});

const count = (statuses: number[], status: number) => statuses.filter((s) => s === status).length;
const sql = (query: string, ...args: unknown[]) => gw.app.database.prisma.$executeRawUnsafe(query, ...args);

function expectQuota(res: { status: number; body: any }, quota: string) {
  expect(res.status, JSON.stringify(res.body)).toBe(507);
  expect(res.body).toMatchObject({ error: 'QUOTA_EXCEEDED', status_code: 507, details: { quota } });
}

describe('concurrent writes', () => {
  it('200 concurrent creates on distinct paths: 200 rows and exact counters', async () => {
    const v = await newVolume(gw, 'acme');
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) => gw.call('PUT', v.entry(`/c/${i}`), { content_text: 'y'.repeat(i % 17) })),
    );
    expect(
      count(
        results.map((r) => r.status),
        201,
      ),
    ).toBe(200);
    const rows = await expectExactUsage(gw, v);
    expect(rows.entry_count).toBe(200);
    expect(rows.used_bytes).toBe(Array.from({ length: 200 }, (_, i) => i % 17).reduce((a, b) => a + b, 0));
  });

  it('20 concurrent If-Match "1" replacements: exactly one wins', async () => {
    const v = await newVolume(gw, 'acme');
    await putText(gw, v, '/one', 'v1');
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        request(gw, 'PUT', v.entry('/one'), { body: { content_text: `writer ${i}` }, headers: { 'if-match': '"1"' } }),
      ),
    );
    const statuses = results.map((r) => r.status);
    expect(count(statuses, 200)).toBe(1);
    expect(count(statuses, 409)).toBe(19);
    for (const r of results.filter((x) => x.status === 409)) expect(r.body.details.current_version).toBe(2);
    const winner = results.find((r) => r.status === 200)?.body.entry;
    const now = (await gw.call('GET', v.entry('/one'))).body;
    expect(now).toMatchObject({ version: 2, content_text: winner.content_text });
    await expectExactUsage(gw, v);
  });

  it('concurrent If-None-Match: * creators of one path: exactly one 201', async () => {
    const v = await newVolume(gw, 'acme');
    const results = await Promise.all(
      Array.from({ length: 15 }, (_, i) =>
        request(gw, 'PUT', v.entry('/only'), { body: { content_text: `c${i}` }, headers: { 'if-none-match': '*' } }),
      ),
    );
    const statuses = results.map((r) => r.status);
    expect(count(statuses, 201)).toBe(1);
    expect(count(statuses, 409)).toBe(14);
    expect((await gw.call('GET', v.entry('/only'))).body.version).toBe(1);
    expect((await usage(gw, v)).entry_count).toBe(1);
  });
});

describe('quotas', () => {
  it('max_file_count refuses the next new path with 507 and still allows replacing', async () => {
    const v = await newVolume(gw, 'acme', { max_file_count: 3 });
    for (const p of ['/a', '/b', '/c']) await putText(gw, v, p);
    const refused = await gw.call('PUT', v.entry('/d'), { content_text: 'd' });
    expectQuota(refused, 'max_file_count');
    expect(refused.body.details).toMatchObject({ limit: 3, used: 3 });
    expect((await gw.call('GET', v.entry('/d'))).status).toBe(404);
    expect((await usage(gw, v)).entry_count).toBe(3);
    expect((await gw.call('PUT', v.entry('/a'), { content_text: 'replaced' })).status).toBe(200);
    // A move onto a fresh path does not add an entry.
    expect((await gw.call('POST', v.move, { from: '/b', to: '/e' })).status).toBe(200);
    expect((await gw.call('DELETE', v.entry('/c'))).status).toBe(200);
    expect((await gw.call('PUT', v.entry('/d'), { content_text: 'd' })).status).toBe(201);
    await expectExactUsage(gw, v);
  });

  it('expired entries do not hold a quota: a write that needs their room purges them', async () => {
    const v = await newVolume(gw, 'acme', { max_file_count: 1, max_size_bytes: 10 });
    expect((await gw.call('PUT', v.entry('/old'), { content_text: '0123456789', ttl_seconds: 1 })).status).toBe(201);
    expectQuota(await gw.call('PUT', v.entry('/new'), { content_text: 'x' }), 'max_size_bytes');
    await waitFor(async () => (await gw.call('GET', v.entry('/old'))).status === 404);
    expect((await gw.call('PUT', v.entry('/new'), { content_text: '0123456789' })).status).toBe(201);
    expect(await rowTotals(gw, v.volumeId)).toMatchObject({ entry_count: 1, used_bytes: 10 });
    await expectExactUsage(gw, v);
  });

  it('concurrent creators cannot squeeze past max_file_count', async () => {
    const v = await newVolume(gw, 'acme', { max_file_count: 5 });
    const results = await Promise.all(Array.from({ length: 12 }, (_, i) => gw.call('PUT', v.entry(`/r/${i}`), { content_text: 'x' })));
    expect(
      count(
        results.map((r) => r.status),
        201,
      ),
    ).toBe(5);
    expect(
      count(
        results.map((r) => r.status),
        507,
      ),
    ).toBe(7);
    expect((await expectExactUsage(gw, v)).entry_count).toBe(5);
  });

  it('max_size_bytes refuses growth past the limit and accepts a write that shrinks', async () => {
    const v = await newVolume(gw, 'acme', { max_size_bytes: 100 });
    await putText(gw, v, '/big', 'b'.repeat(90));
    expectQuota(await gw.call('PUT', v.entry('/more'), { content_text: 'm'.repeat(11) }), 'max_size_bytes');
    expectQuota(await gw.call('PUT', v.entry('/big'), { content_text: 'b'.repeat(101) }), 'max_size_bytes');
    expect((await gw.call('GET', v.entry('/big'))).body).toMatchObject({ version: 1, size_bytes: 90 });
    expect((await gw.call('PUT', v.entry('/more'), { content_text: 'm'.repeat(10) })).status).toBe(201);
    // At the limit: replacing with something smaller (even though old + new > limit) is fine.
    expect((await gw.call('PUT', v.entry('/big'), { content_text: 'b'.repeat(80) })).status).toBe(200);
    expect(await expectExactUsage(gw, v)).toEqual({ entry_count: 2, used_bytes: 90 });
  });

  it('max_mounts refuses the extra mount', async () => {
    const v = await newVolume(gw, 'acme', { max_mounts: 1 });
    expect((await gw.call('POST', v.mounts, { app_id: 'one' })).status).toBe(201);
    const refused = await gw.call('POST', v.mounts, { app_id: 'two' });
    expectQuota(refused, 'max_mounts');
    expect((await gw.call('GET', v.mounts)).body.mounts).toHaveLength(1);
    expect((await usage(gw, v)).mount_count).toBe(1);
  });

  it('refuses lowering a quota below current usage with 409, and allows it at usage', async () => {
    const v = await newVolume(gw, 'acme');
    for (const p of ['/a', '/b']) await putText(gw, v, p, '12345');
    await gw.call('POST', v.mounts, { app_id: 'm1' });
    for (const [field, value] of [
      ['max_file_count', 1],
      ['max_size_bytes', 9],
      ['max_mounts', 0],
    ] as const) {
      const res = await gw.call('PATCH', v.volumeUrl, { [field]: value });
      expect(res.status, field).toBe(409);
      expect(res.body).toMatchObject({ error: 'CONFLICT', details: { field } });
    }
    const ok = await gw.call('PATCH', v.volumeUrl, { max_file_count: 2, max_size_bytes: 10, max_mounts: 1 });
    expect(ok.status, JSON.stringify(ok.body)).toBe(200);
    expect(ok.body.volume).toMatchObject({ max_file_count: 2, max_size_bytes: 10, max_mounts: 1 });
    expectQuota(await gw.call('PUT', v.entry('/c'), { content_text: '' }), 'max_file_count');
  });
});

describe('usage counters', () => {
  it('stay exact through deletes, moves with overwrite and expiry', async () => {
    const v = await newVolume(gw, 'acme');
    for (let i = 0; i < 6; i++) await putText(gw, v, `/u/${i}`, 'z'.repeat(10 * (i + 1)));
    await expectExactUsage(gw, v, 'after writes');
    await gw.call('DELETE', v.entry('/u/0'));
    await expectExactUsage(gw, v, 'after delete');
    expect((await gw.call('POST', v.move, { from: '/u/1', to: '/u/2', overwrite: true })).status).toBe(200);
    expect(await expectExactUsage(gw, v, 'after move with overwrite')).toEqual({ entry_count: 4, used_bytes: 20 + 40 + 50 + 60 });
    await gw.call('PUT', v.entry('/u/ttl'), { content_text: 'short-lived', ttl_seconds: 1 });
    await waitFor(async () => (await gw.call('GET', v.entry('/u/ttl'))).status === 404);
    // Rewriting an expired path before the sweep replaces the dead row.
    await gw.call('PUT', v.entry('/u/3'), { content_text: 'x', ttl_seconds: 1 });
    await waitFor(async () => (await gw.call('GET', v.entry('/u/3'))).status === 404);
    expect((await gw.call('PUT', v.entry('/u/3'), { content_text: 'again' })).status).toBe(201);
    await expectExactUsage(gw, v, 'with an expired row not yet swept');
    expect(await sweepExpiredEntries(gw.app.runtime)).toBeGreaterThanOrEqual(1);
    expect(await expectExactUsage(gw, v, 'after the sweep')).toEqual({ entry_count: 4, used_bytes: 20 + 5 + 50 + 60 });
  });

  it('reconcileVolumeUsage repairs corrupted counters and stamps last_reconciled_at', async () => {
    const v = await newVolume(gw, 'acme');
    for (const p of ['/r/a', '/r/b', '/r/c']) await putText(gw, v, p, 'abcd');
    await gw.call('POST', v.mounts, { app_id: 'r1' });
    expect((await usage(gw, v)).last_reconciled_at).toBeNull();
    await sql('UPDATE volumes SET used_bytes = 999, entry_count = 42, mount_count = 7 WHERE id = $1', v.volumeId);
    expect(await usage(gw, v)).toMatchObject({ used_bytes: 999, entry_count: 42, mount_count: 7 });

    const started = Date.now();
    const report = await reconcileVolumeUsage(gw.app.runtime, v.volumeId);
    expect(report.before).toEqual({ usedBytes: 999, entryCount: 42, mountCount: 7 });
    expect(report.after).toEqual({ usedBytes: 12, entryCount: 3, mountCount: 1 });
    const after = await usage(gw, v);
    expect(after).toMatchObject({ used_bytes: 12, entry_count: 3, mount_count: 1 });
    expect(Date.parse(after.last_reconciled_at ?? '')).toBeGreaterThanOrEqual(started - 1000);
  });
});

describe('abandoned uploads in reconciliation', () => {
  const HOUR = 3_600_000;

  /** A volume whose workspace bucket is active, and that bucket's .tmp/ folder on disk (local store). */
  async function bucketVolume() {
    const v = await newVolume(gw, 'acme');
    const ws = await waitFor(async () => {
      const got = await gw.call('GET', `/v1/orgs/acme/workspaces/${v.workspaceId}`);
      return got.body.bucket_status === 'active' ? got.body : undefined;
    });
    return { ...v, bucket: ws.s3_bucket as string, tmp: path.join(gw.dataDir, 'blobs', ws.s3_bucket, '.tmp') };
  }

  /** What a put killed mid-stream leaves under .tmp/: its data file (and maybe its type sidecar), last written `ageMs` ago. */
  async function crashedUpload(tmp: string, bytes: number, ageMs: number, withMeta = false): Promise<string> {
    const id = randomUUID();
    await fs.mkdir(tmp, { recursive: true });
    const when = new Date(Date.now() - ageMs);
    for (const [name, data] of [[id, randomBytes(bytes)], ...(withMeta ? [[`${id}.meta`, '{"contentType":"text/plain"}']] : [])] as const) {
      await fs.writeFile(path.join(tmp, name), data);
      await fs.utimes(path.join(tmp, name), when, when);
    }
    return id;
  }

  it('POST /reconcile removes temp files older than UPLOAD_TEMP_MAX_AGE_MS (24 h) and counts them; younger ones stay', async () => {
    const v = await bucketVolume();
    await putText(gw, v, '/kept', 'still here');
    await crashedUpload(v.tmp, 3000, 30 * HOUR, true);
    await crashedUpload(v.tmp, 500, 25 * HOUR);
    const young = await crashedUpload(v.tmp, 800, 2 * HOUR);

    const res = await gw.call('POST', `/v1/orgs/acme/workspaces/${v.workspaceId}/reconcile`);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    const meta = '{"contentType":"text/plain"}'.length;
    expect(res.body).toMatchObject({
      orphans_removed: [],
      missing_objects: [],
      incomplete_uploads_removed: 2,
      incomplete_upload_bytes: 3000 + meta + 500,
    });
    expect(await fs.readdir(v.tmp)).toEqual([young]);
    expect((await gw.call('GET', v.entry('/kept'))).body.content_text).toBe('still here');

    // Nothing left that old: the next run reports zeros.
    const again = await gw.call('POST', `/v1/orgs/acme/workspaces/${v.workspaceId}/reconcile`);
    expect(again.body).toMatchObject({ incomplete_uploads_removed: 0, incomplete_upload_bytes: 0 });
  });

  it('GraphQL reconcileWorkspace reports the same counts', async () => {
    const v = await bucketVolume();
    await crashedUpload(v.tmp, 1234, 48 * HOUR);
    const q = `mutation($id: ID!) { reconcileWorkspace(id: $id) { orphansRemoved incompleteUploadsRemoved incompleteUploadBytes } }`;
    const res = await gw.gql(q, { id: v.workspaceId });
    expect(res.body).toEqual({
      data: { reconcileWorkspace: { orphansRemoved: [], incompleteUploadsRemoved: 1, incompleteUploadBytes: 1234 } },
    });
    expect(await fs.readdir(v.tmp)).toEqual([]);
  });

  it('the cutoff is an argument: a smaller max age takes younger temp files; the sweep of all buckets too', async () => {
    const v = await bucketVolume();
    const w = await bucketVolume();
    await crashedUpload(v.tmp, 100, 10 * 60_000);
    const report = await reconcileWorkspaceObjects(gw.app.runtime, v.workspaceId, ORPHAN_GRACE_MS, 5 * 60_000);
    expect(report).toMatchObject({ incompleteUploadsRemoved: 1, incompleteUploadBytes: 100 });

    await crashedUpload(v.tmp, 10, 3 * HOUR);
    await crashedUpload(w.tmp, 20, 3 * HOUR);
    const kept = await crashedUpload(w.tmp, 30, HOUR / 2);
    // Two and a half hours: the 2 h one the first test kept stays too.
    const all = await sweepAllIncompleteUploads(gw.app.runtime, 2.5 * HOUR);
    expect(all).toEqual({ removed: 2, bytes: 30 });
    expect(await fs.readdir(v.tmp)).toEqual([]);
    expect(await fs.readdir(w.tmp)).toEqual([kept]);
  });
});

describe('TTL', () => {
  it('hides an expired entry everywhere at once, then the sweep removes it and fixes the counters', async () => {
    const v = await newVolume(gw, 'acme');
    await putText(gw, v, '/t/keep');
    const first = await gw.call('PUT', v.entry('/t/soon'), { content_text: 'gone soon', ttl_seconds: 1 });
    expect(first.status).toBe(201);
    expect(first.body.entry.ttl_seconds).toBe(1);
    expect(Date.parse(first.body.entry.expires_at) - Date.parse(first.body.entry.updated_at)).toBeCloseTo(1000, -2);
    const q = `query($id: ID!) { volume(id: $id) { entry(path: "/t/soon") { path }
      entries(prefix: "/t") { totalCount edges { node { path } } } directory(path: "/t") { entries { path } } } }`;
    const visible = async () => {
      const [get, list, gql] = await Promise.all([
        gw.call('GET', v.entry('/t/soon')),
        gw.call('GET', v.list('/t')),
        gw.gql(q, { id: v.volumeId }),
      ]);
      const vol = gql.body.data.volume;
      return {
        get: get.status === 200,
        list: list.body.entries.some((e: any) => e.path === '/t/soon'),
        entry: vol.entry !== null,
        entries: vol.entries.totalCount,
        directory: vol.directory.entries.length,
      };
    };
    expect(await visible()).toEqual({ get: true, list: true, entry: true, entries: 2, directory: 2 });
    await waitFor(async () => (await gw.call('GET', v.entry('/t/soon'))).status === 404);
    expect(await visible()).toEqual({ get: false, list: false, entry: false, entries: 1, directory: 1 });
    expect((await gw.call('DELETE', v.entry('/t/soon'))).status).toBe(404);
    expect((await rowTotals(gw, v.volumeId)).entry_count).toBe(2);

    expect(await sweepExpiredEntries(gw.app.runtime)).toBeGreaterThanOrEqual(1);
    expect(await expectExactUsage(gw, v)).toEqual({ entry_count: 1, used_bytes: 'text of /t/keep'.length });
    expect(await sweepExpiredEntries(gw.app.runtime)).toBe(0);

    const again = await gw.call('PUT', v.entry('/t/soon'), { content_text: 'back' });
    expect(again.status).toBe(201);
    expect(again.body.entry).toMatchObject({ version: 1, ttl_seconds: null, expires_at: null });
    expect(again.body.entry.entry_id).not.toBe(first.body.entry.entry_id);
  });

  it('a write to an expired path that is not swept yet is a fresh entry too', async () => {
    const v = await newVolume(gw, 'acme');
    const first = (await gw.call('PUT', v.entry('/x'), { content_text: 'a', ttl_seconds: 1 })).body.entry;
    await waitFor(async () => (await gw.call('GET', v.entry('/x'))).status === 404);
    // If-None-Match: * holds, since the expired entry no longer exists.
    const again = await request(gw, 'PUT', v.entry('/x'), { body: { content_text: 'b' }, headers: { 'if-none-match': '*' } });
    expect(again.status).toBe(201);
    expect(again.body.entry).toMatchObject({ version: 1, content_text: 'b', expires_at: null });
    expect(again.body.entry.entry_id).not.toBe(first.entry_id);
    expect(await expectExactUsage(gw, v)).toEqual({ entry_count: 1, used_bytes: 1 });
  });

  it('a move onto an expired path needs no overwrite and keeps the counters exact', async () => {
    const v = await newVolume(gw, 'acme');
    await gw.call('PUT', v.entry('/dead'), { content_text: 'expiring', ttl_seconds: 1 });
    await putText(gw, v, '/live', 'abc');
    await waitFor(async () => (await gw.call('GET', v.entry('/dead'))).status === 404);
    const moved = await gw.call('POST', v.move, { from: '/live', to: '/dead' });
    expect(moved.status, JSON.stringify(moved.body)).toBe(200);
    expect(moved.body.entry).toMatchObject({ path: '/dead', content_text: 'abc', expires_at: null });
    expect(await expectExactUsage(gw, v)).toEqual({ entry_count: 1, used_bytes: 3 });
  });
});
