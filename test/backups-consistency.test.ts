import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway, waitFor } from './helpers/app.js';
import { backUp, readBlob, sha256 } from './helpers/backups.js';
import { blobKeyOf, listKeys, type UploadVolume, upload, uploadVolume } from './helpers/uploads.js';

/**
 * Snapshot consistency: a backup taken while writers are busy restores to one moment of the
 * volume, never a mix of moments; and an object that vanishes under a snapshot makes the job take a
 * newer one (or, when it is really lost, fail and say so).
 */
let gw: TestGateway;
beforeAll(async () => {
  gw = await startGateway({ JOB_POLL_MS: '50' });
});
afterAll(async () => {
  await gw?.stop();
});
afterEach(() => {
  gw.app.runtime.hooks.backupSnapshot = undefined;
});

const pad = (n: number) => String(n).padStart(5, '0');

/** What one writer wrote: for every step n, item n's content and counter value n's content. */
interface Writer {
  index: number;
  files: boolean;
  steps: number;
  items: Map<number, string>;
  counters: Map<number, string>;
  /** Why the writer stopped early, if it did (surfaced by the waits instead of a bare timeout). */
  error?: unknown;
}

/** JSON with keys sorted (jsonb does not keep the order they were written in). */
const canonical = (value: unknown): string =>
  JSON.stringify(value, (_k, v) =>
    v && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => a.localeCompare(b))) : v,
  );

/** A restored row, reduced to what writers can compare: JSON content, or file bytes' sha256. */
const fingerprintOf = (row: { content_type: string; content: unknown; sha256: string | null }) =>
  row.content_type === 'file' ? `sha256:${row.sha256}` : canonical(row.content);

/**
 * Writer i repeats one logical step: create item n, then set its counter to n (JSON writers rewrite
 * /w{i}/counter, file writers re-upload /f{i}/counter.bin, so its old object is deleted each time).
 * A snapshot of one moment therefore holds items 1..m with m = counter or counter + 1, never a gap.
 */
async function runWriter(v: UploadVolume, w: Writer, stop: { now: boolean }) {
  const dir = w.files ? `/f${w.index}` : `/w${w.index}`;
  for (let n = 1; !stop.now; n++) {
    for (const [path, record] of [
      [`${dir}/item-${pad(n)}`, w.items],
      [`${dir}/counter`, w.counters],
    ] as const) {
      if (w.files) {
        const bytes = Buffer.concat([Buffer.from(`${path} ${n} `), randomBytes(2_000 + (n % 7) * 500)]);
        record.set(n, `sha256:${sha256(bytes)}`);
        const res = await upload(gw, v.upload(path), { data: bytes, filename: 'x.bin' });
        expect([200, 201], JSON.stringify(res.body)).toContain(res.status);
      } else {
        const content = { writer: w.index, n, path, pad: 'x'.repeat(n % 40) };
        record.set(n, canonical(content));
        const res = await gw.call('PUT', v.entry(path), { content });
        expect([200, 201], JSON.stringify(res.body)).toContain(res.status);
      }
    }
    w.steps = n;
  }
}

describe('a backup taken while 20 writers are active', () => {
  it('restores to one consistent moment that the manifest describes exactly', async () => {
    // Manual indexing: the point here is the snapshot, and embedding every write would only slow the writers.
    const v = await uploadVolume(gw, 'acme', { indexing_mode: 'manual' });
    // Some bulk, so that the copy phase overlaps the writers for a while.
    for (let i = 0; i < 6; i++) {
      const res = await upload(gw, v.upload(`/bulk/${i}.bin`), { data: randomBytes(100_000), filename: `${i}.bin` });
      expect(res.status).toBe(201);
    }
    const writers: Writer[] = Array.from({ length: 20 }, (_, index) => ({
      index,
      files: index >= 15,
      steps: 0,
      items: new Map(),
      counters: new Map(),
    }));
    const stop = { now: false };
    const running = writers.map((w) =>
      runWriter(v, w, stop).catch((err) => {
        w.error = err;
      }),
    );
    const progressed = (min: (i: number) => number) => async () => {
      const failed = writers.find((w) => w.error !== undefined);
      if (failed) throw failed.error;
      return writers.every((w, i) => w.steps >= min(i));
    };
    try {
      await waitFor(
        progressed(() => 2),
        60_000,
      );
      const before = writers.map((w) => w.steps);
      const backup = await backUp(gw, v, undefined, 150_000);
      const after = writers.map((w) => w.steps);
      // The writers were busy through the whole backup, and keep going a little after it.
      await waitFor(
        progressed((i) => (after[i] as number) + 1),
        60_000,
      );
      stop.now = true;
      await Promise.all(running);
      expect(writers.map((w) => w.error).filter((e) => e !== undefined)).toEqual([]);

      const restore = await gw.call('POST', `/v1/orgs/acme/workspaces/${v.workspaceId}/volumes/restore`, {
        backup_id: backup.backup_id,
        name: 'consistent',
      });
      expect(restore.status, JSON.stringify(restore.body)).toBe(201);
      const restoredId: string = restore.body.volume.volume_id;
      const rows = await gw.app.database.prisma.$queryRawUnsafe<
        { path: string; content_type: string; content: unknown; sha256: string | null; blob_key: string | null; size_bytes: bigint }[]
      >('SELECT path, content_type, content, sha256, blob_key, size_bytes FROM entries WHERE volume_id = $1', restoredId);
      const byPath = new Map(rows.map((r) => [r.path, r]));

      // No entry outside what the writers and the setup wrote.
      for (const path of byPath.keys()) expect(path).toMatch(/^\/(bulk\/\d+\.bin|[wf]\d+\/(item-\d{5}|counter))$/);
      expect(rows.filter((r) => r.path.startsWith('/bulk/'))).toHaveLength(6);

      for (const w of writers) {
        const dir = w.files ? `/f${w.index}` : `/w${w.index}`;
        const counterRow = byPath.get(`${dir}/counter`);
        const fingerprint = counterRow ? fingerprintOf(counterRow) : undefined;
        // The counter holds a value the writer actually wrote; c = 0 when it was not written yet.
        const c = counterRow ? [...w.counters].find(([, f]) => f === fingerprint)?.[0] : 0;
        expect(c, `${dir}/counter is a version the writer wrote`).toBeDefined();
        const items = rows
          .filter((r) => r.path.startsWith(`${dir}/item-`))
          .map((r) => Number(r.path.slice(-5)))
          .sort((a, b) => a - b);
        const m = items.length;
        // Items 1..m with no gap, and m is c or c + 1 (the step in flight at the snapshot).
        expect(items, `${dir} items`).toEqual(Array.from({ length: m }, (_, k) => k + 1));
        expect([c, (c as number) + 1], `${dir}: ${m} items, counter ${c}`).toContain(m);
        for (const n of items) expect(fingerprintOf(byPath.get(`${dir}/item-${pad(n)}`) as never)).toBe(w.items.get(n));
        // The snapshot lies between the sync request and the backup's completion.
        expect(c as number).toBeGreaterThanOrEqual(before[w.index] as number);
        expect(m).toBeLessThanOrEqual((after[w.index] as number) + 1);
      }

      // The restored volume is exactly what the manifest and its entry records say.
      const prefix: string = backup.location.prefix;
      const manifest = JSON.parse((await readBlob(gw, v.bucket, `${prefix}manifest.json`)).toString('utf8'));
      expect(manifest.entry_count).toBe(rows.length);
      expect(backup.entry_count).toBe(rows.length);
      const records = [];
      for (const part of manifest.objects.filter((o: { kind: string }) => o.kind === 'entries')) {
        const text = (await readBlob(gw, v.bucket, prefix + part.key)).toString('utf8');
        records.push(
          ...text
            .trim()
            .split('\n')
            .map((l) => JSON.parse(l)),
        );
      }
      expect(records.map((r) => r.path).sort()).toEqual([...byPath.keys()].sort());
      for (const r of records) {
        const row = byPath.get(r.path);
        expect(fingerprintOf(row as never), r.path).toBe(fingerprintOf(r));
        if (row?.blob_key) expect(sha256(await readBlob(gw, v.bucket, row.blob_key)), r.path).toBe(r.sha256);
      }
      // Only the manifest's objects are under the prefix: copies of versions the snapshot did not keep are gone.
      const keys = await listKeys(gw, v.bucket, prefix);
      expect(keys).toEqual([`${prefix}manifest.json`, ...manifest.objects.map((o: { key: string }) => prefix + o.key)].sort());
    } finally {
      stop.now = true;
      await Promise.allSettled(running);
    }
  }, 240_000);
});

describe('an object that vanishes under the snapshot', () => {
  /**
   * Before round 1, uploads /late.bin (so the copy ahead of the snapshot has not seen it); inside
   * round 1, deletes its object as a rewrite committed after the snapshot would. `restoreIn`
   * decides whether it comes back before a later round (a rewrite) or never (a lost object).
   */
  function vanishOnce(v: UploadVolume, bytes: Buffer, restoreIn: number | null) {
    const rounds: { round: number; locked: boolean; inTransaction: boolean }[] = [];
    let key: string | undefined;
    gw.app.runtime.hooks.backupSnapshot = async (at) => {
      if (at.volumeId !== v.volumeId) return;
      rounds.push({ round: at.round, locked: at.locked, inTransaction: at.inTransaction });
      if (at.round === 1 && !at.inTransaction) {
        expect((await upload(gw, v.upload('/late.bin'), { data: bytes, filename: 'late.bin' })).status).toBe(201);
        key = (await blobKeyOf(gw, v.volumeId, '/late.bin')) ?? undefined;
      }
      if (at.round === 1 && at.inTransaction) await gw.app.blobStore.delete(v.bucket, key as string);
      if (at.round === restoreIn && !at.inTransaction) await gw.app.blobStore.put(v.bucket, key as string, Readable.from([bytes]));
    };
    return rounds;
  }

  it('is taken again from a newer snapshot, and the backup holds the bytes', async () => {
    const v = await uploadVolume(gw, 'acme');
    expect((await upload(gw, v.upload('/early.bin'), { data: randomBytes(10_000), filename: 'early.bin' })).status).toBe(201);
    const bytes = randomBytes(50_000);
    const rounds = vanishOnce(v, bytes, 2);
    const backup = await backUp(gw, v);
    expect(rounds.map((r) => [r.round, r.inTransaction])).toEqual([
      [1, false],
      [1, true],
      [2, false],
      [2, true],
    ]);
    expect(backup).toMatchObject({ status: 'completed', entry_count: 2, file_count: 2 });
    const restore = await gw.call('POST', `/v1/orgs/acme/workspaces/${v.workspaceId}/volumes/restore`, {
      backup_id: backup.backup_id,
      name: 'after-retry',
    });
    expect(restore.status, JSON.stringify(restore.body)).toBe(201);
    const key = await blobKeyOf(gw, restore.body.volume.volume_id, '/late.bin');
    expect(sha256(await readBlob(gw, v.bucket, key as string))).toBe(sha256(bytes));
  });

  it('when it is really lost, the last round locks writers out, finds it missing, and the backup fails leaving nothing', async () => {
    const v = await uploadVolume(gw, 'acme');
    const rounds = vanishOnce(v, randomBytes(5_000), null);
    const res = await gw.call('POST', `${v.volumeUrl}/sync`);
    expect(res.status).toBe(202);
    const failed = await waitFor(async () => {
      const b = await gw.call('GET', `${v.volumeUrl}/backups/${res.body.backup_id}`);
      return b.body.status === 'failed' ? b.body : undefined;
    }, 30_000);
    expect(failed.error).toMatch(/\/late\.bin .* is missing from the store; run reconcile/);
    expect(failed.progress.phase).toBe('done');
    expect(rounds.filter((r) => r.inTransaction).map((r) => [r.round, r.locked])).toEqual([
      [1, false],
      [2, false],
      [3, false],
      [4, true],
    ]);
    expect(await listKeys(gw, v.bucket, failed.location.prefix)).toEqual([]);
  });
});
