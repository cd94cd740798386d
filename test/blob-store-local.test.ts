import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { getRequestListener } from '@hono/node-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDownloadRoutes } from '../src/rest/download-route.js';
import { LocalBlobStore, signLocalDownload } from '../src/storage/local.js';
import { InvalidBlobKeyError } from '../src/storage/validate.js';
import { waitFor } from './helpers/app.js';
import { blobStoreContract, GeneratedBody, readAll } from './helpers/blob-store-contract.js';

interface LocalHarness {
  store: LocalBlobStore;
  root: string;
  secret: string;
  base: string;
  leftovers(bucket: string): Promise<string[]>;
  abandonUpload(bucket: string, bytes: number): Promise<string>;
  teardown(): Promise<void>;
}

/** A local store in a temp folder, its download route served over real HTTP on 127.0.0.1. */
async function startLocal(): Promise<LocalHarness> {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'vg-blobs-'));
  const secret = randomBytes(32).toString('base64url');
  let base = '';
  const store = new LocalBlobStore({ root, baseUrl: () => base, signingSecret: secret });
  const server = http.createServer(getRequestListener(createDownloadRoutes(store).fetch));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    store,
    root,
    secret,
    base,
    leftovers: async (bucket) => fs.readdir(path.join(root, bucket, '.tmp')).catch(() => []),
    // What a put leaves when its process is killed mid-stream: a temporary data file under .tmp/.
    abandonUpload: async (bucket, bytes) => {
      const name = randomUUID();
      await fs.mkdir(path.join(root, bucket, '.tmp'), { recursive: true });
      await fs.writeFile(path.join(root, bucket, '.tmp', name), randomBytes(bytes));
      return name;
    },
    teardown: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await fs.rm(root, { recursive: true, force: true });
    },
  };
}

blobStoreContract('local', startLocal);

describe('local blob store: keys, signatures and the download route', () => {
  let h: LocalHarness;
  const bucket = 'vg-local-only';
  const data = randomBytes(1000);

  beforeAll(async () => {
    h = await startLocal();
    await h.store.createBucket(bucket);
    await h.store.put(bucket, 'files/data.bin', Readable.from([data]), { contentType: 'application/x-data' });
    await h.store.put(bucket, 'files/other.bin', Readable.from([Buffer.from('other')]));
  });
  afterAll(async () => {
    await h?.teardown();
  });

  const sign = (key = 'files/data.bin', expiresIn = 300) =>
    h.store.signedUrl(bucket, key, { expiresIn, filename: 'data.bin', contentType: 'application/octet-stream' });

  /** A raw GET, because fetch and URL normalise "..", "%2e%2e" and the like away. */
  function rawGet(
    pathAndQuery: string,
    headers: Record<string, string> = {},
  ): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
    return new Promise((resolve, reject) => {
      const req = http.request(`${h.base}/`, { path: pathAndQuery, headers }, (res) => {
        readAll(res).then((body) => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }), reject);
      });
      req.on('error', reject).end();
    });
  }

  const expectForbidden = async (res: Response) => {
    expect(res.status).toBe(403);
    const body = await res.json();
    expect(body).toEqual({
      error: 'FORBIDDEN',
      message: 'Invalid or expired download URL',
      details: {},
      timestamp: expect.any(String),
      status_code: 403,
    });
    expect(body.timestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$/);
  };

  it('refuses keys that could leave the bucket or hit its reserved folders, writing nothing', async () => {
    const bad = [
      '',
      '/abs',
      '../escape',
      'a/../../b',
      'a/./b',
      '.',
      '..',
      'a//b',
      'trailing/',
      'back\\slash',
      'nul\0byte',
      '.tmp/x',
      '.meta/x',
      `${'x'.repeat(256)}/y`,
    ];
    for (const key of bad) {
      await expect(h.store.put(bucket, key, Readable.from([Buffer.from('x')]))).rejects.toBeInstanceOf(InvalidBlobKeyError);
      await expect(h.store.head(bucket, key)).rejects.toBeInstanceOf(InvalidBlobKeyError);
      await expect(h.store.signedUrl(bucket, key, { expiresIn: 60 })).rejects.toBeInstanceOf(InvalidBlobKeyError);
    }
    expect((await fs.readdir(h.root)).sort()).toEqual([bucket]);
    expect((await fs.readdir(path.join(h.root, bucket))).sort()).toEqual(['.meta', '.tmp', 'files']);
    expect(await fs.readdir(path.join(h.root, bucket, '.tmp'))).toEqual([]);
  });

  it('needs a signing secret of at least 32 characters', () => {
    expect(() => new LocalBlobStore({ root: h.root, baseUrl: () => h.base, signingSecret: 'short' })).toThrow(/32 characters/);
  });

  it('signs URLs on the configured base with each key segment encoded', async () => {
    await h.store.put(bucket, 'files/a b/ü?#.txt', Readable.from([Buffer.from('enc')]));
    const url = new URL(await h.store.signedUrl(bucket, 'files/a b/ü?#.txt', { expiresIn: 60 }));
    expect(url.origin).toBe(h.base);
    expect(url.pathname).toBe(`/blobs/${bucket}/files/a%20b/%C3%BC%3F%23.txt`);
    expect([...url.searchParams.keys()]).toEqual(['expires', 'sig']);
    expect(Number(url.searchParams.get('expires'))).toBeGreaterThanOrEqual(Math.floor(Date.now() / 1000) + 59);
  });

  it('refuses a URL whose key, bucket, expiry, file name, type or signature was changed (403)', async () => {
    const good = new URL(await sign());
    expect((await fetch(good)).status).toBe(200);
    const tamper = (fn: (u: URL) => void) => {
      const u = new URL(good);
      fn(u);
      return u;
    };
    const sig = good.searchParams.get('sig') as string;
    const flipped = (sig[0] === 'A' ? 'B' : 'A') + sig.slice(1);
    const variants = [
      tamper((u) => {
        u.pathname = u.pathname.replace('data.bin', 'other.bin');
      }),
      tamper((u) => {
        u.pathname = u.pathname.replace(bucket, 'vg-someone-else');
      }),
      tamper((u) => u.searchParams.set('expires', String(Number(u.searchParams.get('expires')) + 3600))),
      tamper((u) => u.searchParams.set('filename', 'evil.html')),
      tamper((u) => u.searchParams.set('type', 'text/html')),
      tamper((u) => u.searchParams.delete('type')),
      tamper((u) => u.searchParams.set('sig', flipped)),
      tamper((u) => u.searchParams.set('sig', `${sig}A`)),
      tamper((u) => u.searchParams.set('sig', '')),
      tamper((u) => u.searchParams.delete('sig')),
      tamper((u) => u.searchParams.set('expires', 'soon')),
    ];
    for (const u of variants) await expectForbidden(await fetch(u));
  });

  it('refuses an expired URL even with a valid signature', async () => {
    const expires = Math.floor(Date.now() / 1000) - 1;
    const sig = signLocalDownload(h.secret, { bucket, key: 'files/data.bin', expires, filename: undefined, contentType: undefined });
    await expectForbidden(await fetch(`${h.base}/blobs/${bucket}/files/data.bin?expires=${expires}&sig=${sig}`));
  });

  it('never serves a path outside the bucket, even when correctly signed', async () => {
    const expires = Math.floor(Date.now() / 1000) + 60;
    const signed = (key: string) =>
      `expires=${expires}&sig=${signLocalDownload(h.secret, { bucket, key, expires, filename: undefined, contentType: undefined })}`;
    // "/" inside a segment is decoded into the key, whose ".." segments the store refuses.
    for (const [rawKey, key] of [
      ['files%2F..%2F..%2F..%2Fetc%2Fpasswd', 'files/../../../etc/passwd'],
      ['.tmp/x', '.tmp/x'],
      ['.meta/files/data.bin', '.meta/files/data.bin'],
    ] as const) {
      const res = await rawGet(`/blobs/${bucket}/${rawKey}?${signed(key)}`);
      expect(res.status, rawKey).toBe(404);
      expect(JSON.parse(res.body.toString())).toMatchObject({ error: 'RESOURCE_NOT_FOUND', status_code: 404 });
    }
    // Dot segments are resolved by the URL parser before routing, so the signature no longer matches.
    const dotted = await rawGet(`/blobs/${bucket}/files/../../x?${signed('files/../../x')}`);
    expect(dotted.status).toBe(403);
  });

  it('answers the 404 envelope when the object is gone', async () => {
    await h.store.put(bucket, 'files/doomed.bin', Readable.from([Buffer.from('doomed')]));
    const url = await sign('files/doomed.bin');
    await h.store.delete(bucket, 'files/doomed.bin');
    const res = await fetch(url);
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({
      error: 'RESOURCE_NOT_FOUND',
      message: 'The requested resource was not found',
      details: { resource_type: 'object', resource_id: 'files/doomed.bin' },
      timestamp: expect.any(String),
      status_code: 404,
    });
  });

  it('serves single byte ranges with 206 and refuses unsatisfiable ones with 416', async () => {
    const url = await sign();
    const ok: [string, number, number][] = [
      ['bytes=0-99', 0, 99],
      ['bytes=900-', 900, 999],
      ['bytes=-100', 900, 999],
      ['bytes=-5000', 0, 999],
      ['bytes=990-5000', 990, 999],
      ['bytes=0-0', 0, 0],
    ];
    for (const [range, start, end] of ok) {
      const res = await fetch(url, { headers: { Range: range } });
      expect(res.status, range).toBe(206);
      expect(res.headers.get('content-range')).toBe(`bytes ${start}-${end}/1000`);
      expect(res.headers.get('content-length')).toBe(String(end - start + 1));
      expect(res.headers.get('accept-ranges')).toBe('bytes');
      expect(Buffer.from(await res.arrayBuffer()).equals(data.subarray(start, end + 1))).toBe(true);
    }
    for (const range of ['bytes=1000-', 'bytes=5000-6000', 'bytes=-0']) {
      const res = await fetch(url, { headers: { Range: range } });
      expect(res.status, range).toBe(416);
      expect(res.headers.get('content-range')).toBe('bytes */1000');
      expect(await res.json()).toMatchObject({ error: 'RANGE_NOT_SATISFIABLE', status_code: 416 });
    }
    // Several ranges, other units and malformed ones are ignored: the whole object.
    for (const range of ['bytes=0-1,5-6', 'items=0-1', 'bytes=5-2', 'bytes=abc']) {
      const res = await fetch(url, { headers: { Range: range } });
      expect(res.status, range).toBe(200);
      expect(Buffer.from(await res.arrayBuffer()).equals(data)).toBe(true);
    }
  });

  it('answers HEAD with the headers of GET and no body', async () => {
    const url = await sign();
    const res = await fetch(url, { method: 'HEAD' });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-length')).toBe('1000');
    expect(res.headers.get('content-type')).toBe('application/octet-stream');
    expect(res.headers.get('content-disposition')).toBe(`attachment; filename="data.bin"; filename*=UTF-8''data.bin`);
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect((await res.arrayBuffer()).byteLength).toBe(0);
    const partial = await fetch(url, { method: 'HEAD', headers: { Range: 'bytes=10-19' } });
    expect(partial.status).toBe(206);
    expect(partial.headers.get('content-range')).toBe('bytes 10-19/1000');
  });

  it.runIf(process.platform === 'linux')('closes the file when a client abandons a download', async () => {
    await h.store.put(bucket, 'files/large.bin', new GeneratedBody(32 * 1024 * 1024));
    const file = path.join(h.root, bucket, 'files', 'large.bin');
    const openFds = async () => {
      const fds = await fs.readdir('/proc/self/fd');
      const targets = await Promise.all(fds.map((fd) => fs.readlink(`/proc/self/fd/${fd}`).catch(() => '')));
      return targets.filter((t) => t === file).length;
    };
    const controller = new AbortController();
    const res = await fetch(await sign('files/large.bin'), { signal: controller.signal });
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    await reader.read();
    expect(await openFds()).toBe(1);
    controller.abort();
    await reader.read().catch(() => undefined);
    await waitFor(async () => (await openFds()) === 0);
  });

  it('removes folders emptied by deletes', async () => {
    await h.store.put(bucket, 'prune/a/b/c.txt', Readable.from([Buffer.from('c')]), { contentType: 'text/plain' });
    await h.store.delete(bucket, 'prune/a/b/c.txt');
    await expect(fs.stat(path.join(h.root, bucket, 'prune'))).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(fs.stat(path.join(h.root, bucket, '.meta', 'prune'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('local blob store: sweeping abandoned uploads by age', () => {
  let h: LocalHarness;
  const bucket = 'vg-local-sweep';
  const tmp = () => path.join(h.root, bucket, '.tmp');
  const HOUR = 3_600_000;

  beforeAll(async () => {
    h = await startLocal();
    await h.store.createBucket(bucket);
  });
  afterAll(async () => {
    await h?.teardown();
  });

  /** A file under .tmp/ last modified `ageMs` ago (fs.utimes), as a crashed put leaves it. */
  async function temp(name: string, bytes: number, ageMs: number): Promise<void> {
    const file = path.join(tmp(), name);
    await fs.mkdir(tmp(), { recursive: true });
    await fs.writeFile(file, randomBytes(bytes));
    const when = new Date(Date.now() - ageMs);
    await fs.utimes(file, when, when);
  }

  it('removes temp files last modified before the cutoff, counts bytes, keeps fresh ones', async () => {
    const [a, b, fresh, edge] = [randomUUID(), randomUUID(), randomUUID(), randomUUID()];
    await temp(a, 4000, 48 * HOUR); // a crash mid-stream: data only
    await temp(b, 2500, 30 * HOUR); // a crash between the type sidecar and the renames: data + .meta
    await temp(`${b}.meta`, 40, 30 * HOUR);
    await temp(fresh, 7000, 60_000); // an upload a minute old: in progress for all we know
    await temp(`${fresh}.meta`, 40, 60_000);
    await temp(edge, 100, 23 * HOUR); // just inside a 24 h limit
    await fs.mkdir(path.join(tmp(), 'not-a-file')); // nothing the store makes: left alone

    const swept = await h.store.sweepIncompleteUploads(bucket, new Date(Date.now() - 24 * HOUR));
    // Uploads, not files: b's data and sidecar are one upload.
    expect(swept).toEqual({ removed: 2, bytes: 4000 + 2500 + 40 });
    expect((await fs.readdir(tmp())).sort()).toEqual([edge, fresh, `${fresh}.meta`, 'not-a-file'].sort());

    // Objects are never touched, and a second sweep at the same cutoff finds nothing.
    await h.store.put(bucket, 'kept/object.bin', Readable.from([Buffer.from('kept')]));
    const object = path.join(h.root, bucket, 'kept', 'object.bin');
    const old = new Date(Date.now() - 100 * HOUR);
    await fs.utimes(object, old, old);
    expect(await h.store.sweepIncompleteUploads(bucket, new Date(Date.now() - 24 * HOUR))).toEqual({ removed: 0, bytes: 0 });
    expect(await h.store.head(bucket, 'kept/object.bin')).toEqual({ size: 4, contentType: undefined });

    // A tighter limit takes the rest.
    expect(await h.store.sweepIncompleteUploads(bucket, new Date(Date.now() + 1000))).toEqual({ removed: 2, bytes: 100 + 7000 + 40 });
    expect(await fs.readdir(tmp())).toEqual(['not-a-file']);
  });

  it('has nothing to sweep in a bucket without .tmp/ or one that does not exist, and refuses bad bucket names', async () => {
    await h.store.createBucket('vg-local-sweep-empty');
    expect(await h.store.sweepIncompleteUploads('vg-local-sweep-empty', new Date(Date.now() + HOUR))).toEqual({ removed: 0, bytes: 0 });
    expect(await h.store.sweepIncompleteUploads('vg-local-sweep-missing', new Date(Date.now() + HOUR))).toEqual({ removed: 0, bytes: 0 });
    await expect(h.store.sweepIncompleteUploads('../escape', new Date())).rejects.toThrow(/invalid bucket name/);
  });
});
