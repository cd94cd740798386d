import fs from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKey, startGateway, type TestGateway, waitFor } from './helpers/app.js';
import { streamRequest } from './helpers/http.js';
import {
  blobKeyOf,
  fetchAndHash,
  gqlUpload,
  lazyBytes,
  listKeys,
  MiB,
  rowCount,
  sha256,
  truncatedGqlUpload,
  type UploadVolume,
  uploadVolume,
  watchPuts,
} from './helpers/uploads.js';

/**
 * `uploadEntry(file: File!)` over the GraphQL multipart request spec, parsed by the gateway's own
 * streaming parser (src/graphql/uploads.ts), and `Entry.downloadUrl`.
 */
let gw: TestGateway;
beforeAll(async () => {
  gw = await startGateway({ SWEEP_INTERVAL_MS: '3600000', LOG_LEVEL: process.env.GW_LOG ?? 'silent' });
});
afterAll(async () => {
  await gw?.stop();
});

const UPLOAD = `
  mutation Upload($volumeId: ID!, $path: String!, $file: File!, $mimeType: String, $tags: [String!], $metadata: JSON,
                  $ttlSeconds: Int, $expectedVersion: Int, $createOnly: Boolean) {
    uploadEntry(volumeId: $volumeId, path: $path, file: $file, mimeType: $mimeType, tags: $tags, metadata: $metadata,
                ttlSeconds: $ttlSeconds, expectedVersion: $expectedVersion, createOnly: $createOnly) {
      created
      entry { id path version contentType content sizeBytes sha256 mimeType contentText tags metadata ttlSeconds writtenByAppId
              downloadUrl(expiresIn: 120) }
    }
  }`;

function send(
  v: UploadVolume,
  entryPath: string,
  data: Buffer,
  extra: Record<string, unknown> = {},
  opts: { key?: string | null; headers?: Record<string, string>; filename?: string; contentType?: string } = {},
) {
  return gqlUpload(
    gw,
    UPLOAD,
    { volumeId: v.volumeId, path: entryPath, file: null, ...extra },
    {
      'variables.file': {
        data,
        filename: opts.filename ?? path.posix.basename(entryPath),
        ...(opts.contentType ? { contentType: opts.contentType } : {}),
      },
    },
    { ...(opts.key !== undefined ? { key: opts.key } : {}), ...(opts.headers ? { headers: opts.headers } : {}) },
  );
}

const code = (res: { body: any }) => res.body.errors?.[0]?.extensions?.code;

describe('uploadEntry', () => {
  it('streams the file into a new entry and returns a fetchable downloadUrl', async () => {
    const v = await uploadVolume(gw, 'acme');
    const data = Buffer.from('# Notes\n\nUploaded through GraphQL.\n');
    const res = await send(v, '/notes/gql.md', data, { tags: ['x', 'y'], metadata: { via: 'graphql' }, ttlSeconds: 600 });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body.errors).toBeUndefined();
    const { created, entry } = res.body.data.uploadEntry;
    expect(created).toBe(true);
    expect(entry).toMatchObject({
      path: '/notes/gql.md',
      version: 1,
      contentType: 'file',
      content: { filename: 'gql.md' },
      sizeBytes: data.length,
      sha256: sha256(data),
      mimeType: 'text/markdown',
      contentText: data.toString(),
      tags: ['x', 'y'],
      metadata: { via: 'graphql' },
      ttlSeconds: 600,
      writtenByAppId: null,
    });
    expect(await fetchAndHash(entry.downloadUrl)).toMatchObject({ status: 200, size: data.length, sha256: sha256(data) });
    // REST sees the same entry.
    expect((await gw.call('GET', v.entry('/notes/gql.md'))).body).toMatchObject({ entry_id: entry.id, sha256: sha256(data) });
  });

  it('replaces an entry (created: false), keeping only the new object; mimeType is taken as given', async () => {
    const v = await uploadVolume(gw, 'acme');
    expect((await send(v, '/r.bin', Buffer.from('one'))).body.data.uploadEntry.created).toBe(true);
    const oldKey = await blobKeyOf(gw, v.volumeId, '/r.bin');
    const res = await send(v, '/r.bin', Buffer.from('{"two":2}'), { mimeType: 'application/json' });
    expect(res.body.errors).toBeUndefined();
    expect(res.body.data.uploadEntry).toMatchObject({
      created: false,
      entry: { version: 2, mimeType: 'application/json', contentText: '{"two":2}' },
    });
    const newKey = await blobKeyOf(gw, v.volumeId, '/r.bin');
    expect(newKey).not.toBe(oldKey);
    expect(await listKeys(gw, v.bucket)).toEqual([newKey]);
  });

  it('keeps a unicode file name', async () => {
    const v = await uploadVolume(gw, 'acme');
    const name = 'résumé 日本.txt';
    const res = await send(v, `/docs/${name}`, Buffer.from('日本'), {}, { filename: name });
    expect(res.body.errors, JSON.stringify(res.body)).toBeUndefined();
    expect(res.body.data.uploadEntry.entry).toMatchObject({ path: `/docs/${name}`, content: { filename: name } });
    const got = await fetchAndHash(res.body.data.uploadEntry.entry.downloadUrl);
    expect(got.headers.get('content-disposition')).toContain(`filename*=UTF-8''${encodeURIComponent(name)}`);
  });

  it('expectedVersion and createOnly mismatches are CONFLICT, leaving the entry and its object as they were', async () => {
    const v = await uploadVolume(gw, 'acme');
    const first = Buffer.from('first');
    expect((await send(v, '/c.txt', first)).body.data.uploadEntry.entry.version).toBe(1);
    const key = await blobKeyOf(gw, v.volumeId, '/c.txt');

    const stale = await send(v, '/c.txt', Buffer.from('second'), { expectedVersion: 7 });
    expect(code(stale), JSON.stringify(stale.body)).toBe('CONFLICT');
    expect(stale.body.data?.uploadEntry ?? null).toBeNull();
    const taken = await send(v, '/c.txt', Buffer.from('third'), { createOnly: true });
    expect(code(taken), JSON.stringify(taken.body)).toBe('CONFLICT');
    const absent = await send(v, '/absent.txt', Buffer.from('x'), { expectedVersion: 1 });
    expect(code(absent), JSON.stringify(absent.body)).toBe('CONFLICT');

    expect(await listKeys(gw, v.bucket)).toEqual([key]);
    expect(await rowCount(gw, v.volumeId)).toBe(1);
    expect((await gw.call('GET', v.entry('/c.txt'))).body).toMatchObject({ version: 1, sha256: sha256(first) });

    const current = await send(v, '/c.txt', Buffer.from('fourth'), { expectedVersion: 1 });
    expect(current.body.data.uploadEntry.entry).toMatchObject({ version: 2, sha256: sha256('fourth') });
  });

  it('app keys: FORBIDDEN through a read-only mount, NOT_FOUND outside the mount, allowed inside', async () => {
    const v = await uploadVolume(gw, 'acme');
    const reader = await createKey(gw, 'acme', ['volumes:read', 'entries:read', 'entries:write'], 'reader-app');
    const writer = await createKey(gw, 'acme', ['volumes:read', 'entries:read', 'entries:write'], 'writer-app');
    const mount = async (app_id: string, access_level: string, path_pattern: string) => {
      const res = await gw.call('POST', v.mounts, { app_id, access_level, path_pattern });
      expect(res.status, JSON.stringify(res.body)).toBe(201);
    };
    await mount('reader-app', 'read', '/**');
    await mount('writer-app', 'write', '/inbox/**');

    const forbidden = await send(v, '/inbox/r.txt', Buffer.from('no'), {}, { key: reader });
    expect(code(forbidden), JSON.stringify(forbidden.body)).toBe('FORBIDDEN');
    const outside = await send(v, '/private/w.txt', Buffer.from('no'), {}, { key: writer });
    expect(code(outside), JSON.stringify(outside.body)).toBe('NOT_FOUND');
    expect(await rowCount(gw, v.volumeId)).toBe(0);
    expect(await listKeys(gw, v.bucket)).toEqual([]);

    const inside = await send(v, '/inbox/w.txt', Buffer.from('yes'), {}, { key: writer });
    expect(inside.body.errors, JSON.stringify(inside.body)).toBeUndefined();
    expect(inside.body.data.uploadEntry.entry).toMatchObject({ path: '/inbox/w.txt', writtenByAppId: 'writer-app' });
    // The reader can fetch it through its read mount.
    const read = await gw.gql(
      `query($id: ID!) { volume(id: $id) { entry(path: "/inbox/w.txt") { downloadUrl(expiresIn: 60) } } }`,
      { id: v.volumeId },
      reader,
    );
    expect(await fetchAndHash(read.body.data.volume.entry.downloadUrl)).toMatchObject({ status: 200, sha256: sha256('yes') });
  });

  it('CSRF prevention: a multipart request without a preflight header is refused; credentials headers count', async () => {
    const v = await uploadVolume(gw, 'acme');
    const bare = await send(v, '/csrf.txt', Buffer.from('x'), {}, { key: null });
    expect(bare.status, JSON.stringify(bare.body)).toBe(403);
    const anonymous = await send(v, '/csrf.txt', Buffer.from('x'), {}, { key: null, headers: { 'x-graphql-yoga-csrf': '1' } });
    expect(code(anonymous), JSON.stringify(anonymous.body)).toBe('UNAUTHENTICATED');
    const viaApiKeyHeader = await send(
      v,
      '/csrf.txt',
      Buffer.from('x'),
      {},
      { key: null, headers: { 'x-api-key': 'test-admin-key-0123456789abcdef' } },
    );
    expect(viaApiKeyHeader.body.errors, JSON.stringify(viaApiKeyHeader.body)).toBeUndefined();
    expect(await rowCount(gw, v.volumeId)).toBe(1);
  });

  it('a request whose map names no arriving file part fails cleanly', async () => {
    const v = await uploadVolume(gw, 'acme');
    const res = await gqlUpload(gw, UPLOAD, { volumeId: v.volumeId, path: '/missing.bin', file: null }, {});
    expect(res.status).toBeLessThan(500);
    expect(res.body.errors?.length, JSON.stringify(res.body)).toBeGreaterThan(0);
    expect(await rowCount(gw, v.volumeId)).toBe(0);
  });

  it('a File variable that is not a file part (a string or object in a JSON request) is BAD_USER_INPUT, never an internal error', async () => {
    const v = await uploadVolume(gw, 'acme');
    for (const file of ['**/', { name: 'x.bin' }, 42]) {
      const res = await gw.gql(UPLOAD, { volumeId: v.volumeId, path: '/not-a-file.bin', file });
      expect(res.status, JSON.stringify(file)).toBeLessThan(500);
      expect(res.body.errors?.[0]?.extensions?.code, JSON.stringify(res.body)).toBe('BAD_USER_INPUT');
      expect(res.body.errors[0].message).toMatch(/\$file.*multipart/);
    }
    expect(await rowCount(gw, v.volumeId)).toBe(0);
  });

  it('an upload cut off mid-file leaves no row and no object', async () => {
    const v = await uploadVolume(gw, 'acme');
    const tmp = path.join(gw.dataDir, 'blobs', v.bucket, '.tmp');
    const tmpFiles = () => fs.readdir(tmp).catch(() => [] as string[]);
    const puts = watchPuts(gw);
    try {
      await truncatedGqlUpload(gw, UPLOAD, { volumeId: v.volumeId, path: '/cut.bin', file: null }, 3 * MiB, 8 * MiB, async () => {
        await waitFor(async () => puts.calls.length === 1 && (await tmpFiles()).length === 1);
      });
      await waitFor(async () => puts.calls[0]?.outcome);
      expect(puts.calls[0]?.outcome).toBe('failed');
    } finally {
      puts.restore();
    }
    expect(await tmpFiles()).toEqual([]);
    expect(await rowCount(gw, v.volumeId)).toBe(0);
    expect(await listKeys(gw, v.bucket)).toEqual([]);
  });
});

describe('Entry.downloadUrl', () => {
  it('is null for JSON and text entries, and expiresIn out of range is VALIDATION_FAILED', async () => {
    const v = await uploadVolume(gw, 'acme');
    expect((await gw.call('PUT', v.entry('/j.json'), { content: { a: 1 } })).status).toBe(201);
    expect((await gw.call('PUT', v.entry('/t.txt'), { content_text: 'plain' })).status).toBe(201);
    expect((await send(v, '/f.bin', Buffer.from('file'))).body.errors).toBeUndefined();
    const q = `query($id: ID!, $p: String!, $e: Int) { volume(id: $id) { entry(path: $p) { contentType downloadUrl(expiresIn: $e) } } }`;
    for (const p of ['/j.json', '/t.txt']) {
      const res = await gw.gql(q, { id: v.volumeId, p });
      expect(res.body.errors, JSON.stringify(res.body)).toBeUndefined();
      expect(res.body.data.volume.entry.downloadUrl).toBeNull();
    }
    const ok = await gw.gql(q, { id: v.volumeId, p: '/f.bin', e: 60 });
    expect(await fetchAndHash(ok.body.data.volume.entry.downloadUrl)).toMatchObject({ status: 200, sha256: sha256('file') });
    for (const e of [30, 59, 604801]) {
      const res = await gw.gql(q, { id: v.volumeId, p: '/f.bin', e });
      expect(code(res), JSON.stringify(res.body)).toBe('VALIDATION_FAILED');
      expect(res.body.errors[0].extensions.fields?.[0]?.path).toEqual(['expiresIn']);
    }
    // A literal in the mutation's selection is checked the same way.
    const literal = await send(v, '/g.bin', Buffer.from('g'));
    expect(literal.body.errors).toBeUndefined();
    const bad = await gw.gql(`query($id: ID!) { volume(id: $id) { entry(path: "/g.bin") { downloadUrl(expiresIn: 30) } } }`, {
      id: v.volumeId,
    });
    expect(code(bad)).toBe('VALIDATION_FAILED');
  });
});

describe('request size', () => {
  /**
   * A JSON GraphQL request padded to `bytes`, streamed with or without Content-Length. With `hold`,
   * the body stops there (unfinished) until `hold` resolves: a server that answers after reading
   * it all then closes a connection with nothing unread, so the answer reaches the client.
   */
  function paddedJson(bytes: number, opts: { withLength?: boolean; hold?: Promise<void> } = {}) {
    const head = Buffer.from('{"query":"{ __typename }","extensions":{"pad":"');
    const tail = Buffer.from('"}}');
    const pad = bytes - head.length - (opts.hold ? 0 : tail.length);
    async function* generate() {
      yield head;
      const chunk = Buffer.alloc(64 * 1024, 'a');
      for (let left = pad; left > 0; left -= chunk.length) yield chunk.subarray(0, Math.min(chunk.length, left));
      if (opts.hold) await opts.hold;
      yield tail;
    }
    return { contentType: 'application/json', length: opts.withLength ? bytes : undefined, stream: () => Readable.from(generate()) };
  }

  it('a JSON request over 25 MB is refused (413), with or without Content-Length; small ones pass', async () => {
    const declared = await streamRequest(gw, 'POST', '/graphql', paddedJson(26_000_000, { withLength: true }));
    expect(declared.status, JSON.stringify(declared.body).slice(0, 300)).toBe(413);
    expect(declared.body.errors[0].extensions.code).toBe('REQUEST_ENTITY_TOO_LARGE');
    let release = () => {};
    const hold = new Promise<void>((resolve) => {
      release = resolve;
    });
    try {
      const chunked = await streamRequest(gw, 'POST', '/graphql', paddedJson(25_000_001, { hold }));
      expect(chunked.status, JSON.stringify(chunked.body).slice(0, 300)).toBe(413);
      expect(chunked.body.errors[0].extensions.code).toBe('REQUEST_ENTITY_TOO_LARGE');
    } finally {
      release();
    }
    const small = await streamRequest(gw, 'POST', '/graphql', paddedJson(1_000_000));
    expect(small.status, JSON.stringify(small.body).slice(0, 300)).toBe(200);
    expect(small.body).toEqual({ data: { __typename: 'Query' } });
  });

  it('an upload is not bound by that limit: 30 MiB goes through', async () => {
    const v = await uploadVolume(gw, 'acme');
    const file = lazyBytes(30 * MiB);
    const res = await gqlUpload(
      gw,
      UPLOAD,
      { volumeId: v.volumeId, path: '/thirty.bin', file: null },
      { 'variables.file': { data: file.iterable(), size: file.size, filename: 'thirty.bin' } },
    );
    expect(res.body.errors, JSON.stringify(res.body)).toBeUndefined();
    expect(res.body.data.uploadEntry.entry).toMatchObject({ sizeBytes: 30 * MiB, sha256: file.digest() });
  });
});
