import fs from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_KEY, startGateway, type TestGateway, waitFor } from './helpers/app.js';
import { streamRequest } from './helpers/http.js';
import { S3RVER_CREDENTIALS, startS3rver } from './helpers/s3rver.js';
import {
  blobKeyOf,
  expectValidation,
  fetchAndHash,
  lazyBytes,
  listKeys,
  MiB,
  rowCount,
  sha256,
  truncatedUpload,
  type UploadVolume,
  upload,
  uploadVolume,
  watchPuts,
} from './helpers/uploads.js';

/**
 * File entries end to end over real HTTP, on both blob stores: the local store (gateway-signed URLs
 * served at /blobs) and S3 (s3rver in a child process, presigned URLs).
 */
interface Backend {
  env: Record<string, string>;
  stop(): Promise<void>;
}
const stores: { name: 'local' | 's3'; start(): Promise<Backend> }[] = [
  { name: 'local', start: async () => ({ env: {}, stop: async () => {} }) },
  {
    name: 's3',
    start: async () => {
      const s3 = await startS3rver();
      return {
        env: {
          S3_ENDPOINT: s3.endpoint,
          S3_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
          S3_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
        },
        stop: s3.stop,
      };
    },
  },
];

const PNG = Buffer.concat([
  Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
  // IHDR chunk: 1×1, 8-bit RGBA
  Buffer.from('0000000d49484452000000010000000108060000001f15c489', 'hex'),
  Buffer.alloc(64, 7),
]);

describe.each(stores)('file entries on the $name blob store', (store) => {
  let backend: Backend | undefined;
  beforeAll(async () => {
    backend = await store.start();
  });
  afterAll(async () => {
    await backend?.stop();
  });

  /** Leftover temporary files of the local store (puts in progress or abandoned); S3 has none to see. */
  async function tmpFiles(gw: TestGateway, bucket: string): Promise<string[]> {
    if (store.name !== 'local') return [];
    return fs.readdir(path.join(gw.dataDir, 'blobs', bucket, '.tmp')).catch(() => []);
  }

  /** No row for the volume and nothing in the bucket (objects or temporary files). */
  async function expectNothingLeft(gw: TestGateway, v: UploadVolume) {
    expect(await rowCount(gw, v.volumeId)).toBe(0);
    expect(await listKeys(gw, v.bucket)).toEqual([]);
    expect(await tmpFiles(gw, v.bucket)).toEqual([]);
  }

  describe('a gateway with the default upload limit', () => {
    let gw: TestGateway;
    beforeAll(async () => {
      gw = await startGateway({ ...backend?.env, SWEEP_INTERVAL_MS: '3600000' });
    });
    afterAll(async () => {
      await gw?.stop();
    });

    it('stores an upload with its fields, and the download URL serves the same bytes', async () => {
      const v = await uploadVolume(gw, 'acme');
      const data = Buffer.from('hello, volumes\nsecond line\n');
      const res = await upload(
        gw,
        v.upload('/notes/hello.txt'),
        { data, filename: 'hello.txt', contentType: 'text/plain' },
        { mime_type: 'text/x-custom', tags: '["alpha","beta"]', metadata: '{"source":"test","n":3}', ttl_seconds: '3600' },
      );
      expect(res.status, JSON.stringify(res.body)).toBe(201);
      expect(res.body.message).toBe('Entry written successfully');
      const entry = res.body.entry;
      expect(entry).toMatchObject({
        path: '/notes/hello.txt',
        volume_id: v.volumeId,
        content_type: 'file',
        size_bytes: data.length,
        sha256: sha256(data),
        mime_type: 'text/x-custom',
        tags: ['alpha', 'beta'],
        metadata: { source: 'test', n: 3 },
        ttl_seconds: 3600,
        version: 1,
        content_text: data.toString('utf8'),
      });
      expect(Date.parse(entry.expires_at) - Date.parse(entry.created_at)).toBeGreaterThan(3590_000);
      expect(res.headers.etag).toBe('"1"');

      // A plain GET of the entry sees the same row.
      expect((await gw.call('GET', v.entry('/notes/hello.txt'))).body).toMatchObject({ sha256: sha256(data), content_type: 'file' });

      const dl = await gw.call('GET', v.download('/notes/hello.txt'));
      expect(dl.status, JSON.stringify(dl.body)).toBe(200);
      expect(dl.body).toMatchObject({
        entry_id: entry.entry_id,
        path: '/notes/hello.txt',
        mime_type: 'text/x-custom',
        size_bytes: data.length,
        expires_in: 3600,
      });
      const got = await fetchAndHash(dl.body.download_url);
      expect(got.status).toBe(200);
      expect(got.size).toBe(data.length);
      expect(got.sha256).toBe(sha256(data));
      expect(got.headers.get('content-type')).toMatch(/^text\/x-custom/);
      // The object key is the gateway's, under the volume's prefix; the row points at it.
      const key = await blobKeyOf(gw, v.volumeId, '/notes/hello.txt');
      expect(key).toMatch(new RegExp(`^volumes/${v.volumeId}/objects/`));
      expect(await listKeys(gw, v.bucket)).toEqual([key]);
    });

    it('fields may follow the file, and tags may be a comma list', async () => {
      const v = await uploadVolume(gw, 'acme');
      const res = await upload(
        gw,
        v.upload('/after.bin'),
        { data: Buffer.from([1, 2, 3, 0, 4]), filename: 'after.bin' },
        { tags: ' red, green ,blue ', metadata: '{"k":[1,2]}' },
        { fileFirst: true },
      );
      expect(res.status, JSON.stringify(res.body)).toBe(201);
      expect(res.body.entry).toMatchObject({
        tags: ['red', 'green', 'blue'],
        metadata: { k: [1, 2] },
        ttl_seconds: null,
        expires_at: null,
      });
    });

    it('sniffs the media type when none is given: magic numbers, then the name, then binary', async () => {
      const v = await uploadVolume(gw, 'acme');
      // The part says application/octet-stream (what browsers send for unknown files): not a statement.
      const png = await upload(gw, v.upload('/img/pixel'), { data: PNG, filename: 'pixel', contentType: 'application/octet-stream' });
      expect(png.status, JSON.stringify(png.body)).toBe(201);
      expect(png.body.entry).toMatchObject({ mime_type: 'image/png', content_text: null, size_bytes: PNG.length });

      const md = Buffer.from('# Title\n\nSome *markdown* text.\n');
      const mdRes = await upload(gw, v.upload('/docs/readme.md'), { data: md, filename: 'readme.md' });
      expect(mdRes.status, JSON.stringify(mdRes.body)).toBe(201);
      expect(mdRes.body.entry).toMatchObject({ mime_type: 'text/markdown', content_text: md.toString() });

      const binary = Buffer.from([0x00, 0xff, 0x13, 0x37, 0x00, 0x9c, 0xfe, 0x01, 0x00, 0x42]);
      const binRes = await upload(gw, v.upload('/data/blob.qqzz'), { data: binary, filename: 'blob.qqzz' });
      expect(binRes.status, JSON.stringify(binRes.body)).toBe(201);
      expect(binRes.body.entry).toMatchObject({ mime_type: 'application/octet-stream', content_text: null, sha256: sha256(binary) });
    });

    it('text-like uploads get content_text: capped at 1 MiB on a character boundary, without NUL', async () => {
      const v = await uploadVolume(gw, 'acme');
      // 3-byte characters: 1 MiB is not a multiple of 3, so the cap falls inside a character.
      const big = Buffer.from('日本語のテキスト。'.repeat(Math.ceil((1.5 * MiB) / 27)));
      expect(big.length).toBeGreaterThan(1.4 * MiB);
      const res = await upload(gw, v.upload('/text/big.txt'), { data: big, filename: 'big.txt', contentType: 'text/plain' });
      expect(res.status, JSON.stringify(res.body)).toBe(201);
      const text: string = res.body.entry.content_text;
      expect(res.body.entry.size_bytes).toBe(big.length);
      expect(Buffer.byteLength(text)).toBeLessThanOrEqual(MiB);
      expect(Buffer.byteLength(text)).toBeGreaterThan(MiB - 4);
      expect(text).not.toContain('\uFFFD');
      expect(big.toString('utf8').startsWith(text)).toBe(true);
      // The object holds the whole file, not the capped text.
      const dl = await gw.call('GET', v.download('/text/big.txt'));
      expect((await fetchAndHash(dl.body.download_url)).sha256).toBe(sha256(big));

      const withNul = Buffer.from('before\u0000middle\u0000\u0000after\n');
      const nul = await upload(gw, v.upload('/text/nul.txt'), { data: withNul, filename: 'nul.txt' }, { mime_type: 'text/plain' });
      expect(nul.status, JSON.stringify(nul.body)).toBe(201);
      expect(nul.body.entry.content_text).toBe('beforemiddleafter\n');
      expect(nul.body.entry.sha256).toBe(sha256(withNul));
      const back = await fetchAndHash((await gw.call('GET', v.download('/text/nul.txt'))).body.download_url);
      expect(back.sha256).toBe(sha256(withNul));
    });

    it('an empty file', async () => {
      const v = await uploadVolume(gw, 'acme');
      const res = await upload(gw, v.upload('/empty.dat'), { data: Buffer.alloc(0), filename: 'empty.dat' });
      expect(res.status, JSON.stringify(res.body)).toBe(201);
      expect(res.body.entry).toMatchObject({ size_bytes: 0, sha256: sha256(Buffer.alloc(0)), content_type: 'file' });
      const dl = await gw.call('GET', v.download('/empty.dat'));
      expect(dl.body.size_bytes).toBe(0);
      const got = await fetchAndHash(dl.body.download_url);
      expect(got).toMatchObject({ status: 200, size: 0, sha256: sha256(Buffer.alloc(0)) });
    });

    it('a unicode path and file name: the entry keeps both and the download carries the name', async () => {
      const v = await uploadVolume(gw, 'acme');
      const name = 'résumé 日本.txt';
      const data = Buffer.from('Curriculum vitæ — 履歴書\n');
      const res = await upload(gw, v.upload(`/docs/${name}`), { data, filename: name, contentType: 'text/plain; charset=utf-8' });
      expect(res.status, JSON.stringify(res.body)).toBe(201);
      expect(res.body.entry).toMatchObject({ path: `/docs/${name}`, content: { filename: name }, content_text: data.toString() });
      const listed = await gw.call('GET', `${v.list('/docs')}`);
      expect(listed.body.entries.map((e: { path: string }) => e.path)).toEqual([`/docs/${name}`]);

      const dl = await gw.call('GET', v.download(`/docs/${name}`));
      expect(dl.status, JSON.stringify(dl.body)).toBe(200);
      expect(dl.body.path).toBe(`/docs/${name}`);
      const got = await fetchAndHash(dl.body.download_url);
      expect(got.status).toBe(200);
      expect(got.sha256).toBe(sha256(data));
      const disposition = got.headers.get('content-disposition') ?? '';
      expect(disposition).toMatch(/^attachment;/);
      expect(disposition).toContain(`filename*=UTF-8''${encodeURIComponent(name)}`);
      expect(disposition).toContain('filename="resume __.txt"');
    });

    it('a 100 MiB file, streamed both ways', async () => {
      const v = await uploadVolume(gw, 'acme');
      const file = lazyBytes(100 * MiB);
      const started = Date.now();
      const res = await upload(gw, v.upload('/big/100mib.bin'), { data: file.iterable(), size: file.size, filename: '100mib.bin' });
      expect(res.status, JSON.stringify(res.body)).toBe(201);
      expect(res.body.entry).toMatchObject({ size_bytes: 100 * MiB, sha256: file.digest(), mime_type: 'application/octet-stream' });
      const uploadedMs = Date.now() - started;
      const dl = await gw.call('GET', v.download('/big/100mib.bin'));
      expect(dl.body.size_bytes).toBe(100 * MiB);
      const got = await fetchAndHash(dl.body.download_url);
      expect(got.size).toBe(100 * MiB);
      expect(got.sha256).toBe(file.digest());
      expect(Number(got.headers.get('content-length'))).toBe(100 * MiB);
      console.log(`[${store.name}] 100 MiB: upload ${uploadedMs} ms, download ${Date.now() - started - uploadedMs} ms`);
    });

    it('replacing an entry by a new upload keeps only the new object', async () => {
      const v = await uploadVolume(gw, 'acme');
      const first = Buffer.from('version one');
      const second = Buffer.from('version two, longer');
      expect((await upload(gw, v.upload('/r.txt'), { data: first, filename: 'r.txt' })).status).toBe(201);
      const oldKey = await blobKeyOf(gw, v.volumeId, '/r.txt');
      expect(oldKey).toBeTruthy();
      expect(await gw.app.blobStore.head(v.bucket, oldKey as string)).toMatchObject({ size: first.length });

      const res = await upload(gw, v.upload('/r.txt'), { data: second, filename: 'r.txt' });
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      expect(res.body.entry).toMatchObject({ version: 2, size_bytes: second.length, sha256: sha256(second) });
      const newKey = await blobKeyOf(gw, v.volumeId, '/r.txt');
      expect(newKey).toBeTruthy();
      expect(newKey).not.toBe(oldKey);
      expect(await gw.app.blobStore.head(v.bucket, oldKey as string)).toBeNull();
      expect(await gw.app.blobStore.head(v.bucket, newKey as string)).toMatchObject({ size: second.length });
      expect(await listKeys(gw, v.bucket)).toEqual([newKey]);
      const got = await fetchAndHash((await gw.call('GET', v.download('/r.txt'))).body.download_url);
      expect(got.sha256).toBe(sha256(second));
      const vol = await gw.call('GET', v.volumeUrl);
      expect(vol.body).toMatchObject({ used_bytes: second.length, entry_count: 1 });

      // Replacing a file by a JSON entry removes the object too.
      expect((await gw.call('PUT', v.entry('/r.txt'), { content: { now: 'json' } })).status).toBe(200);
      expect(await gw.app.blobStore.head(v.bucket, newKey as string)).toBeNull();
      expect(await listKeys(gw, v.bucket)).toEqual([]);
    });

    it('deleting the entry, the volume and the workspace removes their objects', async () => {
      const v = await uploadVolume(gw, 'acme');
      const put = async (p: string) => {
        const res = await upload(gw, v.upload(p), { data: Buffer.from(`bytes of ${p}`), filename: 'f.txt' });
        expect(res.status, JSON.stringify(res.body)).toBe(201);
        return (await blobKeyOf(gw, v.volumeId, p)) as string;
      };
      const a = await put('/a.txt');
      const b = await put('/b.txt');
      expect((await gw.call('DELETE', v.entry('/a.txt'))).status).toBe(200);
      expect(await gw.app.blobStore.head(v.bucket, a)).toBeNull();
      expect(await listKeys(gw, v.bucket)).toEqual([b]);

      // A second volume in the same workspace keeps its objects when the first is deleted.
      const other = await gw.call('POST', `/v1/orgs/acme/workspaces/${v.workspaceId}/volumes`, { name: `other-${Date.now()}` });
      expect(other.status).toBe(201);
      const otherUrl = `/v1/orgs/acme/workspaces/${v.workspaceId}/volumes/${other.body.volume.volume_id}`;
      expect((await upload(gw, `${otherUrl}/entries/keep.txt/upload`, { data: Buffer.from('keep'), filename: 'keep.txt' })).status).toBe(
        201,
      );
      const keep = (await blobKeyOf(gw, other.body.volume.volume_id, '/keep.txt')) as string;

      // A plain DELETE only hides the volume (restorable, objects kept until the purge); permanent removes them now.
      expect((await gw.call('DELETE', v.volumeUrl)).status).toBe(200);
      expect(await gw.app.blobStore.head(v.bucket, b)).not.toBeNull();
      expect((await gw.call('DELETE', `${v.volumeUrl}?permanent=true`)).status).toBe(200);
      expect(await gw.app.blobStore.head(v.bucket, b)).toBeNull();
      expect(await listKeys(gw, v.bucket, `volumes/${v.volumeId}/`)).toEqual([]);
      expect(await listKeys(gw, v.bucket)).toEqual([keep]);

      expect((await gw.call('DELETE', `/v1/orgs/acme/workspaces/${v.workspaceId}`)).status).toBe(200);
      expect(await gw.app.blobStore.head(v.bucket, keep).catch(() => null)).toBeNull();
      expect(await listKeys(gw, v.bucket)).toEqual([]);
      expect(await gw.app.blobStore.bucketExists(v.bucket)).toBe(false);
    });

    it('expires_in must be 60 to 604800 seconds', async () => {
      const v = await uploadVolume(gw, 'acme');
      expect((await upload(gw, v.upload('/e.bin'), { data: Buffer.from('e'), filename: 'e.bin' })).status).toBe(201);
      for (const bad of ['59', '604801', 'abc', '-1', '1.5']) {
        const res = await gw.call('GET', `${v.download('/e.bin')}?expires_in=${bad}`);
        expectValidation(res, ['query', 'expires_in']);
      }
      for (const ok of [60, 604800]) {
        const res = await gw.call('GET', `${v.download('/e.bin')}?expires_in=${ok}`);
        expect(res.status, JSON.stringify(res.body)).toBe(200);
        expect(res.body.expires_in).toBe(ok);
      }
    });

    it('a JSON or text entry has no download (409), a missing one is 404', async () => {
      const v = await uploadVolume(gw, 'acme');
      expect((await gw.call('PUT', v.entry('/j.json'), { content: { a: 1 } })).status).toBe(201);
      const res = await gw.call('GET', v.download('/j.json'));
      expect(res.status, JSON.stringify(res.body)).toBe(409);
      expect(res.body).toMatchObject({ error: 'CONFLICT', status_code: 409, details: { content_type: 'json' } });
      expect((await gw.call('GET', v.download('/nothing.bin'))).status).toBe(404);
      // An entry may itself be called "download": only the suffix of a longer path is the route.
      expect((await gw.call('PUT', v.entry('/download'), { content_text: 'plain' })).status).toBe(201);
      expect((await gw.call('GET', v.entry('/download'))).body).toMatchObject({ path: '/download', content_text: 'plain' });
    });

    it('refuses an upload without a file part or that is not multipart (422), writing nothing', async () => {
      const v = await uploadVolume(gw, 'acme');
      const noFile = await streamRequest(gw, 'POST', v.upload('/x.bin'), {
        contentType: 'multipart/form-data; boundary=abc',
        stream: () => {
          const body = '--abc\r\nContent-Disposition: form-data; name="tags"\r\n\r\na,b\r\n--abc--\r\n';
          return readableFrom(body);
        },
      });
      expectValidation(noFile, ['body', 'file']);

      // A file under another field name is not the file.
      const wrongName = await streamRequest(gw, 'POST', v.upload('/x.bin'), {
        contentType: 'multipart/form-data; boundary=abc',
        stream: () => readableFrom('--abc\r\nContent-Disposition: form-data; name="upload"; filename="x.bin"\r\n\r\nxyz\r\n--abc--\r\n'),
      });
      expectValidation(wrongName, ['body', 'file']);

      const json = await gw.call('POST', v.upload('/x.bin'), { file: 'not a file' });
      expect(json.status, JSON.stringify(json.body)).toBe(422);
      expect(json.body.detail[0].loc[0]).toBe('body');
      const none = await fetch(gw.url + v.upload('/x.bin'), {
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN_KEY}` },
      });
      expect(none.status).toBe(422);
      // A malformed multipart body (no boundary) is a 422 too.
      const noBoundary = await streamRequest(gw, 'POST', v.upload('/x.bin'), {
        contentType: 'multipart/form-data',
        stream: () => readableFrom('whatever'),
      });
      expect(noBoundary.status, JSON.stringify(noBoundary.body)).toBe(422);
      const badTags = await upload(gw, v.upload('/x.bin'), { data: Buffer.from('x'), filename: 'x.bin' }, { tags: '[not json' });
      expectValidation(badTags, ['body', 'tags']);
      const badTtl = await upload(gw, v.upload('/x.bin'), { data: Buffer.from('x'), filename: 'x.bin' }, { ttl_seconds: 'soon' });
      expectValidation(badTtl, ['body', 'ttl_seconds']);
      await expectNothingLeft(gw, v);
    });

    it('an upload over the volume quota is refused (507) and leaves no object', async () => {
      const v = await uploadVolume(gw, 'acme', { max_size_bytes: 1000 });
      const res = await upload(gw, v.upload('/too-big.bin'), { data: Buffer.alloc(4000, 1), filename: 'too-big.bin' });
      expect(res.status, JSON.stringify(res.body)).toBe(507);
      expect(res.body).toMatchObject({ error: 'QUOTA_EXCEEDED', status_code: 507, details: { quota: 'max_size_bytes' } });
      await expectNothingLeft(gw, v);
      // What fits still goes in.
      expect((await upload(gw, v.upload('/fits.bin'), { data: Buffer.alloc(900, 1), filename: 'fits.bin' })).status).toBe(201);
      expect((await listKeys(gw, v.bucket)).length).toBe(1);
    });

    it('an upload cut off mid-file leaves no row and no object', async () => {
      const v = await uploadVolume(gw, 'acme');
      const puts = watchPuts(gw);
      try {
        // 12 MiB of a declared 20: on S3 the first parts of a multipart upload are already stored.
        await truncatedUpload(gw, v.upload('/cut.bin'), 12 * MiB + 123, 20 * MiB, async () => {
          await waitFor(async () => puts.calls.length === 1);
          if (store.name === 'local') await waitFor(async () => (await tmpFiles(gw, v.bucket)).length === 1);
        });
        // The gateway notices the broken connection, fails the put and cleans up; nothing is committed.
        await waitFor(async () => puts.calls[0]?.outcome);
        expect(puts.calls[0]?.outcome).toBe('failed');
      } finally {
        puts.restore();
      }
      await expectNothingLeft(gw, v);
      expect((await gw.call('GET', v.entry('/cut.bin'))).status).toBe(404);
      // The same path uploads fine afterwards.
      const ok = await upload(gw, v.upload('/cut.bin'), { data: Buffer.from('whole'), filename: 'cut.bin' });
      expect(ok.status, JSON.stringify(ok.body)).toBe(201);
    });
  });

  describe('a gateway with MAX_UPLOAD_BYTES=1048576', () => {
    let gw: TestGateway;
    beforeAll(async () => {
      gw = await startGateway({ ...backend?.env, MAX_UPLOAD_BYTES: String(MiB), SWEEP_INTERVAL_MS: '3600000' });
    });
    afterAll(async () => {
      await gw?.stop();
    });

    it('a 2 MiB upload is refused with 413 and leaves neither a row nor an object', async () => {
      const v = await uploadVolume(gw, 'acme');
      const file = lazyBytes(2 * MiB);
      const res = await upload(gw, v.upload('/big.bin'), { data: file.iterable(), size: file.size, filename: 'big.bin' });
      expect(res.status, JSON.stringify(res.body)).toBe(413);
      expect(res.body).toMatchObject({ error: 'PAYLOAD_TOO_LARGE', status_code: 413 });
      await waitFor(async () => (await tmpFiles(gw, v.bucket)).length === 0);
      await expectNothingLeft(gw, v);
      // Exactly the limit is allowed.
      const exact = await upload(gw, v.upload('/exact.bin'), { data: Buffer.alloc(MiB, 3), filename: 'exact.bin' });
      expect(exact.status, JSON.stringify(exact.body)).toBe(201);
      expect(exact.body.entry.size_bytes).toBe(MiB);
    });
  });
});

function readableFrom(text: string) {
  return Readable.from([Buffer.from(text)]);
}
