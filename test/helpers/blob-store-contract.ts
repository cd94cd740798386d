import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { PassThrough, Readable } from 'node:stream';
import { CreateMultipartUploadCommand, ListMultipartUploadsCommand, S3ServiceException, UploadPartCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BlobNotFoundError,
  type BlobStore,
  BlobTooLargeError,
  type ObjectInfo,
  RangeNotSatisfiableError,
} from '../../src/storage/blob-store.js';
import { S3BlobStore } from '../../src/storage/s3.js';
import { waitFor } from './app.js';

/** What a test file hands the contract: a store with a working `signedUrl`, and how to dispose of it. */
export interface BlobStoreHarness {
  store: BlobStore;
  /** Names of unfinished uploads in `bucket` (temporary files, incomplete multipart uploads), where the store can tell. */
  leftovers?(bucket: string): Promise<string[]>;
  /**
   * Leaves in `bucket` what a put cut off by a crash leaves (the process is gone, so nothing cleans
   * up): `bytes` of data in the store's upload area, written now. Returns its name as `leftovers`
   * would list it. Without it, an S3BlobStore gets the contract's own (`abandonS3Upload`).
   */
  abandonUpload?(bucket: string, bytes: number): Promise<string>;
  teardown(): Promise<void>;
}

/** A multipart upload started and given one part, never completed or aborted: what a crashed S3 put leaves. Returns its key. */
export async function abandonS3Upload(store: S3BlobStore, bucket: string, bytes: number): Promise<string> {
  const Key = `abandoned/${randomUUID()}`;
  const { UploadId } = await store.client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key }));
  await store.client.send(
    new UploadPartCommand({ Bucket: bucket, Key, UploadId, PartNumber: 1, Body: randomBytes(bytes), ContentLength: bytes }),
  );
  return Key;
}

/**
 * Keys of the bucket's incomplete multipart uploads, or null when the S3 store does not implement
 * ListMultipartUploads (s3rver answers 501 NotImplemented).
 */
export async function s3UploadKeys(store: S3BlobStore, bucket: string): Promise<string[] | null> {
  const keys: string[] = [];
  let KeyMarker: string | undefined;
  let UploadIdMarker: string | undefined;
  for (;;) {
    try {
      const page = await store.client.send(new ListMultipartUploadsCommand({ Bucket: bucket, KeyMarker, UploadIdMarker }));
      for (const u of page.Uploads ?? []) if (u.Key !== undefined) keys.push(u.Key);
      if (!page.IsTruncated) return keys;
      KeyMarker = page.NextKeyMarker;
      UploadIdMarker = page.NextUploadIdMarker;
    } catch (err) {
      if (err instanceof S3ServiceException && (err.name === 'NotImplemented' || err.$metadata.httpStatusCode === 501)) return null;
      throw err;
    }
  }
}

const MiB = 1024 * 1024;

/** A body generated lazily in random chunks, hashed here (independently of the store) as it is read. */
export class GeneratedBody extends Readable {
  private left: number;
  private sent = 0;
  private readonly hash = createHash('sha256');

  constructor(
    readonly size: number,
    private readonly opts: { chunk?: number; failAfter?: number } = {},
  ) {
    super();
    this.left = size;
  }

  override _read(): void {
    if (this.opts.failAfter !== undefined && this.sent >= this.opts.failAfter) {
      this.destroy(new Error('source broke midway'));
      return;
    }
    if (this.left === 0) {
      this.push(null);
      return;
    }
    const n = Math.min(this.opts.chunk ?? 64 * 1024, this.left);
    const buf = randomBytes(n);
    this.hash.update(buf);
    this.left -= n;
    this.sent += n;
    this.push(buf);
  }

  /** sha256 of everything generated; read it once the body has ended. */
  digest(): string {
    return this.hash.copy().digest('hex');
  }
}

/** sha256 and length of a stream, read chunk by chunk. */
export async function hashStream(stream: AsyncIterable<Uint8Array>): Promise<{ sha256: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of stream) {
    hash.update(chunk);
    size += chunk.length;
  }
  return { sha256: hash.digest('hex'), size };
}

/** Reads a stream into one buffer (small objects only). */
export async function readAll(stream: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return Buffer.concat(chunks);
}

/** Hex sha256 of bytes held in memory. */
export const sha256 = (data: Uint8Array | string) => createHash('sha256').update(data).digest('hex');

async function collect(it: AsyncIterable<ObjectInfo>): Promise<ObjectInfo[]> {
  const out: ObjectInfo[] = [];
  for await (const o of it) out.push(o);
  return out;
}

/** Samples RSS every few ms while `fn` runs; returns fn's result and the peak growth over the RSS at the start. */
export async function peakRssGrowth<T>(fn: () => Promise<T>): Promise<{ result: T; growth: number }> {
  const start = process.memoryUsage().rss;
  let peak = start;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 5);
  try {
    const result = await fn();
    peak = Math.max(peak, process.memoryUsage().rss);
    return { result, growth: peak - start };
  } finally {
    clearInterval(timer);
  }
}

/** Parses `filename*=UTF-8''…` out of a Content-Disposition header. */
export function dispositionFilename(header: string | null): string | undefined {
  const m = header?.match(/filename\*=UTF-8''([^;\s]+)/i);
  return m?.[1] ? decodeURIComponent(m[1]) : undefined;
}

/**
 * The behaviour every BlobStore adapter must share, declared as a vitest suite. Each test works
 * under its own key prefix in one bucket created for the suite.
 */
export function blobStoreContract(name: string, setup: () => Promise<BlobStoreHarness>): void {
  describe(`BlobStore contract: ${name}`, () => {
    let h: BlobStoreHarness | undefined;
    const bucket = `vg-contract-${randomBytes(4).toString('hex')}`;
    const store = () => (h as BlobStoreHarness).store;

    beforeAll(async () => {
      h = await setup();
      await store().createBucket(bucket);
    });

    afterAll(async () => {
      if (!h) return;
      try {
        await store().deleteBucket(bucket);
      } finally {
        await h.teardown();
      }
    });

    const put = (key: string, data: Buffer | string, contentType?: string) =>
      store().put(bucket, key, Readable.from([Buffer.from(data)]), contentType ? { contentType } : {});

    /** Asserts that nothing of a failed upload under `prefix` is visible or left over. */
    async function expectNothingLeft(prefix: string, key: string) {
      expect(await store().head(bucket, key)).toBeNull();
      expect(await collect(store().list(bucket, prefix))).toEqual([]);
      if (h?.leftovers) expect(await h.leftovers(bucket)).toEqual([]);
    }

    it('streams 200 MiB in and out with memory bounded well under 64 MiB', { timeout: 180_000 }, async () => {
      // The first streams through a process grow its heap and malloc arenas once (~35 MiB even into
      // a sink that drops everything). Warm every path up with 16 MiB, so what is measured is what
      // a size 12 times larger adds.
      await store().put(bucket, 'big/warm-up.bin', new GeneratedBody(16 * MiB));
      await hashStream((await store().get(bucket, 'big/warm-up.bin')).body);
      await hashStream(
        (await fetch(await store().signedUrl(bucket, 'big/warm-up.bin', { expiresIn: 60 }))).body as unknown as AsyncIterable<Uint8Array>,
      );
      await store().delete(bucket, 'big/warm-up.bin');

      const size = 200 * MiB;
      const body = new GeneratedBody(size);
      const up = await peakRssGrowth(() => store().put(bucket, 'big/200mib.bin', body, { contentType: 'application/octet-stream' }));
      expect(up.result).toEqual({ size, sha256: body.digest() });

      const down = await peakRssGrowth(async () => hashStream((await store().get(bucket, 'big/200mib.bin')).body));
      expect(down.result).toEqual({ size, sha256: body.digest() });

      const url = await store().signedUrl(bucket, 'big/200mib.bin', { expiresIn: 600 });
      const fetched = await peakRssGrowth(async () => {
        const res = await fetch(url);
        expect(res.status).toBe(200);
        return hashStream(res.body as unknown as AsyncIterable<Uint8Array>);
      });
      expect(fetched.result).toEqual({ size, sha256: body.digest() });

      const mib = (n: number) => `${(n / MiB).toFixed(1)} MiB`;
      console.log(`[${name}] peak RSS growth: put ${mib(up.growth)}, get ${mib(down.growth)}, signed-URL download ${mib(fetched.growth)}`);
      expect(up.growth).toBeLessThan(64 * MiB);
      expect(down.growth).toBeLessThan(64 * MiB);
      expect(fetched.growth).toBeLessThan(64 * MiB);
      await store().delete(bucket, 'big/200mib.bin');
    });

    it('round-trips bytes with their size, sha256 and type (single-request and multipart sizes)', async () => {
      // Around S3's 5 MiB part size: one request, exactly one and two full parts, a 1-byte last part.
      for (const size of [1024 + 7, 5 * MiB, 5 * MiB + 1, 10 * MiB, 17 * MiB + 3]) {
        const key = `roundtrip/${size}.bin`;
        const body = new GeneratedBody(size);
        const result = await store().put(bucket, key, body, { contentType: 'application/x-test' });
        expect(result).toEqual({ size, sha256: body.digest() });
        expect(await store().head(bucket, key)).toEqual({ size, contentType: 'application/x-test' });
        const got = await store().get(bucket, key);
        expect({ size: got.size, contentLength: got.contentLength, contentType: got.contentType, range: got.range }).toEqual({
          size,
          contentLength: size,
          contentType: 'application/x-test',
          range: undefined,
        });
        expect(await hashStream(got.body)).toEqual({ size, sha256: body.digest() });
      }
    });

    it('stores an empty object', async () => {
      const result = await store().put(bucket, 'empty/nothing', Readable.from([]), { contentType: 'text/plain' });
      expect(result).toEqual({ size: 0, sha256: sha256('') });
      expect(await store().head(bucket, 'empty/nothing')).toEqual({ size: 0, contentType: 'text/plain' });
      const got = await store().get(bucket, 'empty/nothing');
      expect(got.size).toBe(0);
      expect(got.contentLength).toBe(0);
      expect((await readAll(got.body)).length).toBe(0);
      await expect(store().get(bucket, 'empty/nothing', { start: 0 })).rejects.toMatchObject({ name: 'RangeNotSatisfiableError', size: 0 });
    });

    it('round-trips unicode and URL-special keys, in get, list and signed URLs', async () => {
      const keys = [
        'unicode/ünïcødé/日本語 ファイル.txt',
        'unicode/space and #hash?q=%25+plus&amp;.txt',
        'unicode/emoji 😀/quote\'"(x)*!~.bin',
        'unicode/Ωmega/Ελληνικά/кириллица.md',
      ];
      for (const key of keys) await put(key, `content of ${key}`, 'text/plain; charset=utf-8');
      expect((await collect(store().list(bucket, 'unicode/'))).map((o) => o.key).sort()).toEqual([...keys].sort());
      for (const key of keys) {
        expect((await readAll((await store().get(bucket, key)).body)).toString()).toBe(`content of ${key}`);
        const res = await fetch(await store().signedUrl(bucket, key, { expiresIn: 60 }));
        expect(res.status).toBe(200);
        expect(await res.text()).toBe(`content of ${key}`);
      }
    });

    it('serves byte ranges (a-b, a-, clamped past the end, single bytes)', async () => {
      const data = randomBytes(1000);
      await put('ranges/data.bin', data, 'application/x-range');
      const cases: { start: number; end?: number; want: [number, number] }[] = [
        { start: 10, end: 19, want: [10, 19] },
        { start: 990, want: [990, 999] },
        { start: 995, end: 5000, want: [995, 999] },
        { start: 0, end: 0, want: [0, 0] },
        { start: 999, end: 999, want: [999, 999] },
        { start: 0, want: [0, 999] },
      ];
      for (const c of cases) {
        const got = await store().get(bucket, 'ranges/data.bin', c.end === undefined ? { start: c.start } : { start: c.start, end: c.end });
        const [start, end] = c.want;
        expect({ size: got.size, contentLength: got.contentLength, range: got.range, contentType: got.contentType }).toEqual({
          size: 1000,
          contentLength: end - start + 1,
          range: { start, end },
          contentType: 'application/x-range',
        });
        expect((await readAll(got.body)).equals(data.subarray(start, end + 1))).toBe(true);
      }
    });

    it('refuses a range that starts at or past the end with RangeNotSatisfiableError', async () => {
      await put('ranges/small.bin', randomBytes(100));
      for (const start of [100, 5000]) {
        const err = await store()
          .get(bucket, 'ranges/small.bin', { start })
          .then(
            () => undefined,
            (e: unknown) => e,
          );
        expect(err).toBeInstanceOf(RangeNotSatisfiableError);
        expect((err as RangeNotSatisfiableError).size).toBe(100);
      }
    });

    it('answers null to head and BlobNotFoundError to get for a missing key', async () => {
      expect(await store().head(bucket, 'missing/nothing-here')).toBeNull();
      await expect(store().get(bucket, 'missing/nothing-here')).rejects.toBeInstanceOf(BlobNotFoundError);
      await expect(store().get(bucket, 'missing/nothing-here', { start: 5 })).rejects.toBeInstanceOf(BlobNotFoundError);
      // A "folder" (a prefix of other keys) is not an object either.
      await put('missing/folder/child', 'x');
      expect(await store().head(bucket, 'missing/folder')).toBeNull();
      await expect(store().get(bucket, 'missing/folder')).rejects.toBeInstanceOf(BlobNotFoundError);
    });

    it('deletes idempotently', async () => {
      await put('delete/once', 'bye');
      await store().delete(bucket, 'delete/once');
      expect(await store().head(bucket, 'delete/once')).toBeNull();
      await store().delete(bucket, 'delete/once');
      await store().delete(bucket, 'delete/never-existed');
      expect(await collect(store().list(bucket, 'delete/'))).toEqual([]);
    });

    it('lists and deleteMany-s 1100 keys across pages and batches; missing keys are fine', async () => {
      const keys = Array.from({ length: 1100 }, (_, i) => `many/${String(i).padStart(4, '0')}.txt`);
      let next = 0;
      await Promise.all(
        Array.from({ length: 16 }, async () => {
          while (next < keys.length) {
            const key = keys[next++] as string;
            await put(key, key);
          }
        }),
      );
      const listed = await collect(store().list(bucket, 'many/'));
      expect(listed.map((o) => o.key).sort()).toEqual(keys);
      expect(listed.every((o) => o.size === 'many/0000.txt'.length)).toBe(true);

      await store().deleteMany(bucket, [...keys, 'many/missing-1', 'many/missing-2']);
      expect(await collect(store().list(bucket, 'many/'))).toEqual([]);
      await store().deleteMany(bucket, []);
      await store().deleteMany(bucket, ['many/missing-1', 'never/there']);
    });

    it('lists exactly the keys under a prefix, never other prefixes or unfinished uploads', async () => {
      const keys = ['lst/a.txt', 'lst/sub/b.txt', 'lst/sub/deeper/c.txt', 'lst-other/d.txt', 'other/lst/e.txt'];
      const before = Date.now();
      for (const key of keys) await put(key, `<${key}>`);
      const list = async (prefix: string) => (await collect(store().list(bucket, prefix))).map((o) => o.key).sort();

      const under = await collect(store().list(bucket, 'lst/'));
      expect(under.map((o) => o.key).sort()).toEqual(['lst/a.txt', 'lst/sub/b.txt', 'lst/sub/deeper/c.txt']);
      for (const o of under) {
        expect(o.size).toBe(`<${o.key}>`.length);
        expect(o.lastModified).toBeInstanceOf(Date);
        // Second-granular stores (S3) round down; allow for that and for clock skew.
        expect(Math.abs(o.lastModified.getTime() - before)).toBeLessThan(60_000);
      }
      expect(await list('lst')).toEqual(['lst-other/d.txt', 'lst/a.txt', 'lst/sub/b.txt', 'lst/sub/deeper/c.txt']);
      expect(await list('lst/sub/')).toEqual(['lst/sub/b.txt', 'lst/sub/deeper/c.txt']);
      expect(await list('lst/su')).toEqual(['lst/sub/b.txt', 'lst/sub/deeper/c.txt']);
      expect(await list('lst/sub/deeper/c.txt')).toEqual(['lst/sub/deeper/c.txt']);
      expect(await list('nope/')).toEqual([]);

      // An upload in progress is invisible until it completes.
      const pending = new PassThrough();
      const putting = store().put(bucket, 'lst/pending.bin', pending);
      pending.write(randomBytes(MiB));
      await waitFor(async () => pending.readableLength === 0);
      if (h?.leftovers) await waitFor(async () => (await h!.leftovers!(bucket)).length > 0);
      expect(await list('lst/')).toEqual(['lst/a.txt', 'lst/sub/b.txt', 'lst/sub/deeper/c.txt']);
      // No store-internal names (temporary files, metadata) anywhere in the bucket either.
      expect((await list('')).filter((k) => k.startsWith('.'))).toEqual([]);
      pending.end(randomBytes(10));
      expect((await putting).size).toBe(MiB + 10);
      expect(await list('lst/')).toEqual(['lst/a.txt', 'lst/pending.bin', 'lst/sub/b.txt', 'lst/sub/deeper/c.txt']);
    });

    it('keeps serving the previous object while an overwrite is in progress', async () => {
      const v1 = randomBytes(2000);
      await put('atomic/obj', v1, 'application/x-v1');
      const pending = new PassThrough();
      const putting = store().put(bucket, 'atomic/obj', pending, { contentType: 'application/x-v2' });
      pending.write(randomBytes(1000));
      await waitFor(async () => pending.readableLength === 0);
      const during = await store().get(bucket, 'atomic/obj');
      expect(during.contentType).toBe('application/x-v1');
      expect((await readAll(during.body)).equals(v1)).toBe(true);
      const v2tail = randomBytes(500);
      pending.end(v2tail);
      expect((await putting).size).toBe(1500);
      const after = await store().get(bucket, 'atomic/obj');
      expect(after.contentType).toBe('application/x-v2');
      expect((await readAll(after.body)).subarray(1000).equals(v2tail)).toBe(true);
    });

    it('refuses a body over maxBytes with BlobTooLargeError and leaves nothing', async () => {
      const cases = [
        { key: 'toolarge/small', size: 5000, maxBytes: 1000 },
        // Big enough that an S3 multipart upload has sent a part before the limit is hit.
        { key: 'toolarge/multipart', size: 20 * MiB, maxBytes: 12 * MiB },
      ];
      for (const c of cases) {
        const body = new GeneratedBody(c.size);
        const err = await store()
          .put(bucket, c.key, body, { maxBytes: c.maxBytes })
          .then(
            () => undefined,
            (e: unknown) => e,
          );
        expect(err).toBeInstanceOf(BlobTooLargeError);
        expect((err as BlobTooLargeError).maxBytes).toBeGreaterThan(0);
        expect(body.destroyed).toBe(true);
        await expectNothingLeft('toolarge/', c.key);
      }
      // Exactly at the limit is fine.
      const exact = await store().put(bucket, 'toolarge/exact', new GeneratedBody(1000), { maxBytes: 1000 });
      expect(exact.size).toBe(1000);
      await store().delete(bucket, 'toolarge/exact');
    });

    it('rejects a put whose body fails midway, leaves nothing, and keeps an object it would have replaced', async () => {
      for (const c of [
        { key: 'broken/small', size: 100_000, failAfter: 10 * 1024 },
        { key: 'broken/multipart', size: 20 * MiB, failAfter: 9 * MiB },
      ]) {
        const body = new GeneratedBody(c.size, { failAfter: c.failAfter });
        await expect(store().put(bucket, c.key, body)).rejects.toThrow('source broke midway');
        await expectNothingLeft('broken/', c.key);
      }
      const kept = randomBytes(3000);
      await put('broken-overwrite/obj', kept, 'application/x-kept');
      await expect(store().put(bucket, 'broken-overwrite/obj', new GeneratedBody(50_000, { failAfter: 16 * 1024 }))).rejects.toThrow(
        'source broke midway',
      );
      const got = await store().get(bucket, 'broken-overwrite/obj');
      expect(got.contentType).toBe('application/x-kept');
      expect((await readAll(got.body)).equals(kept)).toBe(true);
      if (h?.leftovers) expect(await h.leftovers(bucket)).toEqual([]);
    });

    it('rejects a put into a bucket that does not exist, releasing the body', async () => {
      for (const size of [1000, 12 * MiB]) {
        const body = new GeneratedBody(size);
        await expect(store().put(`${bucket}-missing`, 'x/y', body)).rejects.toThrow();
        expect(body.destroyed).toBe(true);
      }
      expect(await store().bucketExists(`${bucket}-missing`)).toBe(false);
    });

    it('sweeps abandoned uploads once older than the cutoff, never a put in progress', { timeout: 120_000 }, async () => {
      const s = store();
      const harness = h as BlobStoreHarness;
      const abandon = harness.abandonUpload ?? (s instanceof S3BlobStore ? (b: string, n: number) => abandonS3Upload(s, b, n) : undefined);
      if (!abandon) throw new Error(`the ${name} harness cannot leave an abandoned upload`);
      // The S3 adapter can sweep only where the store lists multipart uploads; s3rver does not
      // (ListMultipartUploads 501, AbortMultipartUpload 405), and there a sweep must find nothing
      // rather than fail. Stores that can are held to the real thing.
      const listed = s instanceof S3BlobStore ? await s3UploadKeys(s, bucket) : [];
      const canSweep = listed !== null;
      // Bytes are measured where the store can tell (local); S3 lists no part sizes.
      const noBytes = s.kind === 's3' ? null : 0;

      const abandoned = await abandon(bucket, 100_000);
      // A put in progress, past S3's 5 MiB part size so that its multipart upload is under way.
      const pending = new PassThrough();
      const putting = s.put(bucket, 'sweep/in-progress.bin', pending, { contentType: 'application/x-live' });
      pending.write(randomBytes(6 * MiB));
      await waitFor(async () => pending.readableLength === 0);
      if (harness.leftovers) await waitFor(async () => (await harness.leftovers!(bucket)).length >= 2);

      // Cutoff an hour ago: both are younger, nothing goes.
      expect(await s.sweepIncompleteUploads(bucket, new Date(Date.now() - 3_600_000))).toEqual({ removed: 0, bytes: noBytes });
      if (harness.leftovers) expect(await harness.leftovers(bucket)).toContain(abandoned);
      pending.end(randomBytes(10));
      expect((await putting).size).toBe(6 * MiB + 10);
      expect(await s.head(bucket, 'sweep/in-progress.bin')).toEqual({ size: 6 * MiB + 10, contentType: 'application/x-live' });

      // A cutoff in the future makes the abandoned upload old enough.
      const future = new Date(Date.now() + 60_000);
      const swept = await s.sweepIncompleteUploads(bucket, future);
      if (!canSweep) {
        console.log(`[${name}] the store cannot list multipart uploads: the sweep resolved with nothing removed`);
        expect(swept).toEqual({ removed: 0, bytes: null });
      } else if (harness.leftovers) {
        expect(swept).toEqual({ removed: 1, bytes: noBytes === null ? null : 100_000 });
        expect(await harness.leftovers(bucket)).toEqual([]);
      } else {
        expect(swept.removed).toBeGreaterThanOrEqual(1);
        expect(swept.bytes).toBeNull();
        expect(await s3UploadKeys(s as S3BlobStore, bucket)).not.toContain(abandoned);
      }
      // Objects are not the sweep's business; a second sweep finds nothing more.
      expect((await readAll((await s.get(bucket, 'sweep/in-progress.bin')).body)).length).toBe(6 * MiB + 10);
      expect(await s.sweepIncompleteUploads(bucket, future)).toEqual({ removed: 0, bytes: noBytes });
      // A bucket that does not exist has nothing to sweep.
      expect((await s.sweepIncompleteUploads(`${bucket}-missing`, future)).removed).toBe(0);
      await s.delete(bucket, 'sweep/in-progress.bin');
    });

    it('signs a URL that a plain fetch downloads with the file name, type and byte ranges', async () => {
      const data = randomBytes(300 * 1024);
      await put('signed/report.bin', data, 'application/x-stored');
      const filename = 'Résumé — 日本 "v2" 100%.pdf';
      const url = await store().signedUrl(bucket, 'signed/report.bin', { expiresIn: 300, filename, contentType: 'application/pdf' });

      const res = await fetch(url);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('application/pdf');
      expect(res.headers.get('content-length')).toBe(String(data.length));
      const disposition = res.headers.get('content-disposition');
      expect(disposition).toMatch(/^attachment; filename="[\x20-\x7e]+"; filename\*=UTF-8''/);
      expect(disposition).toContain('filename="Resume _ __ _v2_ 100%.pdf"');
      expect(dispositionFilename(disposition)).toBe(filename);
      expect(sha256(Buffer.from(await res.arrayBuffer()))).toBe(sha256(data));

      const partial = await fetch(url, { headers: { Range: 'bytes=100-199' } });
      expect(partial.status).toBe(206);
      expect(partial.headers.get('content-range')).toBe(`bytes 100-199/${data.length}`);
      expect(Buffer.from(await partial.arrayBuffer()).equals(data.subarray(100, 200))).toBe(true);

      // Without a file name or type: still a download, typed as stored.
      const plain = await fetch(await store().signedUrl(bucket, 'signed/report.bin', { expiresIn: 300 }));
      expect(plain.status).toBe(200);
      expect(plain.headers.get('content-disposition')).toBe('attachment');
      expect(plain.headers.get('content-type')).toBe('application/x-stored');
      await plain.arrayBuffer();
    });

    it('refuses a signed URL once it has expired', { timeout: 30_000 }, async () => {
      await put('signed/short-lived.txt', 'soon gone');
      const url = await store().signedUrl(bucket, 'signed/short-lived.txt', { expiresIn: 2 });
      const first = await fetch(url);
      expect(first.status).toBe(200);
      expect(await first.text()).toBe('soon gone');
      const refused = await waitFor(async () => {
        const res = await fetch(url);
        await res.arrayBuffer();
        return res.status !== 200 ? res.status : undefined;
      }, 15_000);
      expect(refused).toBe(403);
    });
  });
}
