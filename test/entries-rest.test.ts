import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKey, startGateway, type TestGateway } from './helpers/app.js';
import { newVolume, rowTotals, type TestVolume, usage } from './helpers/entries.js';
import { request } from './helpers/http.js';

// The reference's entry fields in its order, then this API's additions.
const ENTRY_FIELDS = (
  'entry_id volume_id path content_type content content_text mime_type size_bytes schema_id is_indexed indexed_at total_chunks ' +
  'ttl_seconds written_by_app_id written_by_execution_id tags metadata created_at updated_at version sha256 expires_at index_error'
).split(' ');

let gw: TestGateway;
let v: TestVolume;
beforeAll(async () => {
  gw = await startGateway();
  v = await newVolume(gw, 'acme');
});
afterAll(async () => {
  await gw?.stop();
});

/** The 422 `detail` locs of a response. */
const locs = (body: any): string[] => (body.detail ?? []).map((d: { loc: unknown[] }) => d.loc.join('.'));

describe('entry CRUD', () => {
  it('creates (201, ETag "1"), replaces (200, version 2), reads and deletes', async () => {
    const created = await gw.call('PUT', v.entry('/notes/plan.md'), { content_text: 'first', tags: ['a'], metadata: { k: 1 } });
    expect(created.status).toBe(201);
    expect(Object.keys(created.body)).toEqual(['message', 'entry']);
    expect(created.body.message).toBe('Entry written successfully');
    expect(created.headers.get('etag')).toBe('"1"');
    const e1 = created.body.entry;
    expect(Object.keys(e1)).toEqual(ENTRY_FIELDS);
    expect(e1).toMatchObject({
      volume_id: v.volumeId,
      path: '/notes/plan.md',
      content_type: 'text',
      content: null,
      content_text: 'first',
      mime_type: 'text/plain',
      size_bytes: 5,
      schema_id: null,
      is_indexed: false,
      indexed_at: null,
      total_chunks: 0,
      ttl_seconds: null,
      written_by_app_id: null,
      written_by_execution_id: null,
      tags: ['a'],
      metadata: { k: 1 },
      version: 1,
      expires_at: null,
    });

    const replaced = await gw.call('PUT', v.entry('/notes/plan.md'), { content: { step: 2 } });
    expect(replaced.status).toBe(200);
    expect(replaced.headers.get('etag')).toBe('"2"');
    const e2 = replaced.body.entry;
    expect(e2).toMatchObject({
      entry_id: e1.entry_id,
      version: 2,
      content_type: 'json',
      content: { step: 2 },
      content_text: null,
      tags: [],
    });
    expect(e2.created_at).toBe(e1.created_at);

    const read = await gw.call('GET', v.entry('/notes/plan.md'));
    expect(read.status).toBe(200);
    expect(Object.keys(read.body)).toEqual(ENTRY_FIELDS);
    // Indexing may have run in between: it touches only the index fields.
    const { is_indexed: _i, indexed_at: _a, total_chunks: _t, ...readRest } = read.body;
    const { is_indexed: _i2, indexed_at: _a2, total_chunks: _t2, ...e2Rest } = e2;
    expect(readRest).toEqual(e2Rest);
    expect(read.headers.get('etag')).toBe('"2"');

    const del = await gw.call('DELETE', v.entry('/notes/plan.md'));
    expect(del.status).toBe(200);
    expect(del.body).toEqual({ message: 'Entry deleted successfully' });
    for (const method of ['GET', 'DELETE']) {
      const gone = await gw.call(method, v.entry('/notes/plan.md'));
      expect(gone.status, method).toBe(404);
      expect(gone.body).toMatchObject({
        error: 'RESOURCE_NOT_FOUND',
        status_code: 404,
        details: { resource_type: 'entry', resource_id: '/notes/plan.md' },
      });
    }
  });

  it('stores JSON content of every JSON type exactly, text, and both', async () => {
    const values: unknown[] = [
      { nested: { list: [1, 'two', null, true, { deep: [] }] }, empty: {}, unicode: 'é日本' },
      [1, 2.5, -3e-7, 'x', false, null],
      'just a string',
      42,
      -0.125,
      9007199254740991,
      true,
      false,
      null,
      [],
      {},
    ];
    for (const [i, content] of values.entries()) {
      const res = await gw.call('PUT', v.entry(`/json/${i}`), { content });
      expect(res.status, JSON.stringify(content)).toBe(201);
      const back = await gw.call('GET', v.entry(`/json/${i}`));
      expect(back.body.content, JSON.stringify(content)).toEqual(content);
      expect(back.body).toMatchObject({ content_type: 'json', mime_type: 'application/json', content_text: null });
      expect(back.body.size_bytes).toBe(Buffer.byteLength(JSON.stringify(content)));
    }
    const both = await gw.call('PUT', v.entry('/both'), { content: { a: 1 }, content_text: 'héllo', mime_type: 'text/markdown' });
    expect(both.status).toBe(201);
    expect(both.body.entry).toMatchObject({ content_type: 'json', content: { a: 1 }, content_text: 'héllo', mime_type: 'text/markdown' });
    expect(both.body.entry.size_bytes).toBe(Buffer.byteLength('{"a":1}') + Buffer.byteLength('héllo'));
    const text = await gw.call('PUT', v.entry('/text'), { content_type: 'text', content_text: '' });
    expect(text.status, JSON.stringify(text.body)).toBe(201);
    expect(text.body.entry).toMatchObject({ content_type: 'text', content_text: '', content: null, size_bytes: 0 });
  });

  it('records the execution (the X-Execution-Id header wins over the body) and the app only from an app key', async () => {
    const url = v.entry('/who/1');
    const header = await request(gw, 'PUT', url, {
      body: { content_text: 'x', execution_id: 'from-body', written_by_app_id: 'forged' },
      headers: { 'x-execution-id': 'from-header' },
    });
    expect(header.status).toBe(201);
    expect(header.body.entry).toMatchObject({ written_by_execution_id: 'from-header', written_by_app_id: null });
    const body = await gw.call('PUT', v.entry('/who/2'), { content_text: 'x', execution_id: 'from-body' });
    expect(body.body.entry.written_by_execution_id).toBe('from-body');
    // The header obeys the body field's rules.
    for (const [headers, b, loc] of [
      [{ 'x-execution-id': 'e'.repeat(256) }, { content_text: 'x' }, 'header.x-execution-id'],
      [{}, { content_text: 'x', execution_id: 'e'.repeat(256) }, 'body.execution_id'],
    ] as const) {
      const res = await request(gw, 'PUT', v.entry('/who/long'), { body: b, headers });
      expect(res.status, loc).toBe(422);
      expect(locs(res.body)).toEqual([loc]);
    }
    expect((await gw.call('GET', v.entry('/who/long'))).status).toBe(404);

    await gw.call('POST', v.mounts, { app_id: 'bot', access_level: 'write', path_pattern: '/who/**' });
    const botKey = await createKey(gw, 'acme', ['entries:read', 'entries:write'], 'bot');
    const byApp = await gw.call('PUT', v.entry('/who/3'), { content_text: 'x', written_by_app_id: 'forged' }, botKey);
    expect(byApp.status).toBe(201);
    expect(byApp.body.entry.written_by_app_id).toBe('bot');
    // A later write by a non-app key is no longer the app's.
    const byAdmin = await gw.call('PUT', v.entry('/who/3'), { content_text: 'y' });
    expect(byAdmin.body.entry.written_by_app_id).toBeNull();
  });
});

describe('entry paths', () => {
  it('round-trips unicode paths sent percent-encoded', async () => {
    const url = `${v.volumeUrl}/entries/notes/${encodeURIComponent('日本語')}/plan.md`;
    const put = await request(gw, 'PUT', url, { body: { content_text: 'こんにちは' } });
    expect(put.status).toBe(201);
    expect(put.body.entry.path).toBe('/notes/日本語/plan.md');
    const get = await request(gw, 'GET', url);
    expect(get.body).toMatchObject({ path: '/notes/日本語/plan.md', content_text: 'こんにちは' });
    const listing = await gw.call('GET', v.list('/notes/'));
    expect(listing.body.directories).toContain('/notes/日本語/');
  });

  it('normalises paths to NFC, so both spellings name one entry', async () => {
    const nfd = '/caf\u0065\u0301/menu';
    const put = await gw.call('PUT', v.entry(nfd), { content_text: 'nfd' });
    expect(put.status).toBe(201);
    expect(put.body.entry.path).toBe('/caf\u00e9/menu');
    const again = await gw.call('PUT', v.entry('/caf\u00e9/menu'), { content_text: 'nfc' });
    expect(again.body.entry).toMatchObject({ entry_id: put.body.entry.entry_id, version: 2 });
  });

  it('answers 404 for a volume that does not exist', async () => {
    const base = v.volumeUrl.replace(v.volumeId, '');
    for (const id of ['01900000-0000-7000-8000-000000000000', 'not-a-uuid']) {
      const res = await gw.call('PUT', `${base}${id}/entries/a`, { content_text: 'x' });
      expect(res.status).toBe(404);
      expect(res.body.details).toEqual({ resource_type: 'volume', resource_id: id });
    }
  });

  const bad: [string, string][] = [
    ['a/../b', 'dot-dot segment'],
    ['..', 'bare dot-dot'],
    ['a/./b', 'dot segment'],
    ['a//b', 'empty segment'],
    ['a/%2e%2e/b', 'encoded dot-dot'],
    ['a/%2E%2E', 'upper-case encoded dot-dot'],
    ['a/b/', 'trailing slash'],
    ['a/%01b', 'control character'],
    ['a/%7Fb', 'DEL'],
    [`a/${'x'.repeat(1024)}`, 'longer than 1024 bytes'],
    [`${encodeURIComponent('é').repeat(512)}`, '1025 bytes of UTF-8 with the slash'],
  ];
  it.each(bad)('refuses %s (%s) with 422 naming the path, for every method', async (raw) => {
    const before = await rowTotals(gw, v.volumeId);
    for (const method of ['PUT', 'GET', 'DELETE']) {
      const res = await request(gw, method, `${v.volumeUrl}/entries/${raw}`, method === 'PUT' ? { body: { content_text: 'x' } } : {});
      expect(res.status, `${method} ${raw}: ${JSON.stringify(res.body)}`).toBe(422);
      expect(locs(res.body), method).toEqual(['path.path']);
    }
    expect(await rowTotals(gw, v.volumeId)).toEqual(before);
  });

  it('echoes the offending entry path, not the whole URL, as the 422 input', async () => {
    for (const [raw, echoed] of [
      ['a/../b', '/a/../b'],
      ['a/%2e%2e/b', '/a/%2e%2e/b'],
    ]) {
      const res = await request(gw, 'GET', `${v.volumeUrl}/entries/${raw}`);
      expect(res.status).toBe(422);
      expect(res.body.detail).toEqual([
        { loc: ['path', 'path'], msg: "path must not contain '.' or '..' segments", type: 'path_invalid', input: echoed, ctx: {} },
      ]);
    }
  });

  it('accepts a path of exactly 1024 bytes', async () => {
    const name = 'y'.repeat(1023);
    const res = await request(gw, 'PUT', `${v.volumeUrl}/entries/${name}`, { body: { content_text: 'x' } });
    expect(res.status).toBe(201);
    expect(Buffer.byteLength(res.body.entry.path)).toBe(1024);
  });

  it('treats %252e%252e as the literal segment %2e%2e, inside the volume', async () => {
    const url = `${v.volumeUrl}/entries/lit/%252e%252e/x`;
    const put = await request(gw, 'PUT', url, { body: { content_text: 'literal' } });
    expect(put.status, JSON.stringify(put.body)).toBe(201);
    expect(put.body.entry.path).toBe('/lit/%2e%2e/x');
    expect((await request(gw, 'GET', url)).body.content_text).toBe('literal');
    expect((await gw.call('GET', v.list('/lit/'))).body.directories).toEqual(['/lit/%2e%2e/']);
    expect((await gw.call('GET', v.list('/'))).body.entries.map((e: { path: string }) => e.path)).not.toContain('/x');
  });
});

describe('entry bodies', () => {
  const cases: [string, unknown, string][] = [
    ['no content at all', {}, 'body.content'],
    ['only metadata', { tags: ['a'] }, 'body.content'],
    ['content_text null', { content_text: null }, 'body.content'],
    ['json without content', { content_type: 'json', content_text: 'x' }, 'body.content'],
    ['text without content_text', { content_type: 'text', content: { a: 1 } }, 'body.content_text'],
    ['unknown content_type', { content_type: 'file', content_text: 'x' }, 'body.content_type'],
    ['content_text a number', { content_text: 5 }, 'body.content_text'],
    ['tags a string', { content_text: 'x', tags: 'a' }, 'body.tags'],
    ['a tag too long', { content_text: 'x', tags: ['t'.repeat(65)] }, 'body.tags.0'],
    ['too many tags', { content_text: 'x', tags: Array.from({ length: 51 }, (_, i) => `t${i}`) }, 'body.tags'],
    ['metadata an array', { content_text: 'x', metadata: [1] }, 'body.metadata'],
    ['metadata a string', { content_text: 'x', metadata: 'm' }, 'body.metadata'],
    ['ttl_seconds 0', { content_text: 'x', ttl_seconds: 0 }, 'body.ttl_seconds'],
    ['ttl_seconds negative', { content_text: 'x', ttl_seconds: -5 }, 'body.ttl_seconds'],
    ['ttl_seconds a string', { content_text: 'x', ttl_seconds: '10' }, 'body.ttl_seconds'],
    ['ttl_seconds fractional', { content_text: 'x', ttl_seconds: 1.5 }, 'body.ttl_seconds'],
    ['NUL in content_text', { content_text: 'a\u0000b' }, 'body.content_text'],
    ['NUL in content', { content: { a: 'a\u0000b' } }, 'body.content.a'],
    ['an unpaired surrogate in metadata', { content_text: 'x', metadata: { k: 'a\ud800' } }, 'body.metadata.k'],
    ['content nested 100 deep', { content: JSON.parse(`${'['.repeat(100)}${']'.repeat(100)}`) }, `body.content${'.0'.repeat(63)}`],
    ['mime_type not a media type', { content_text: 'x', mime_type: 'text' }, 'body.mime_type'],
    ['a JSON array body', [1], 'body'],
  ];
  it.each(cases)('refuses %s with 422 naming the field and writes nothing', async (_what, body, loc) => {
    const before = await usage(gw, v);
    const res = await gw.call('PUT', v.entry('/bad/x'), body);
    expect(res.status, JSON.stringify(res.body)).toBe(422);
    expect(locs(res.body)).toContain(loc);
    expect((await gw.call('GET', v.entry('/bad/x'))).status).toBe(404);
    expect(await usage(gw, v)).toEqual(before);
  });

  it('refuses a body that is not JSON, or not labelled JSON', async () => {
    const asText = await request(gw, 'PUT', v.entry('/bad/y'), { body: '{"content_text":"x"}', headers: { 'content-type': 'text/plain' } });
    expect(asText.status).toBe(422);
    expect(locs(asText.body)).toEqual(['body']);
    const broken = await request(gw, 'PUT', v.entry('/bad/y'), { body: '{"content_text":' });
    expect(broken.status).toBe(422);
    expect(locs(broken.body)).toEqual(['body']);
    expect((await gw.call('GET', v.entry('/bad/y'))).status).toBe(404);
  });
});

describe('preconditions', () => {
  const put = (path: string, headers: Record<string, string>, text = 'x') =>
    request(gw, 'PUT', v.entry(path), { body: { content_text: text }, headers });
  const expectConflict = (res: { status: number; body: any }, current: number | null) => {
    expect(res.status, JSON.stringify(res.body)).toBe(409);
    expect(res.body).toMatchObject({ error: 'CONFLICT', status_code: 409, details: { current_version: current } });
  };

  it('honours If-Match in every spelling and refuses stale versions with the current one', async () => {
    expect((await put('/pre/a', {})).status).toBe(201);
    expectConflict(await put('/pre/a', { 'if-match': '"2"' }), 1);
    const steps: [string, number][] = [
      ['"1"', 2],
      ['2', 3],
      ['W/"3"', 4],
      ['*', 5],
    ];
    for (const [header, version] of steps) {
      const res = await put('/pre/a', { 'if-match': header }, `v${version}`);
      expect(res.status, header).toBe(200);
      expect(res.body.entry.version).toBe(version);
      expect(res.headers.etag).toBe(`"${version}"`);
    }
    expectConflict(await put('/pre/a', { 'if-match': '"4"' }), 5);
    expect((await gw.call('GET', v.entry('/pre/a'))).body).toMatchObject({ version: 5, content_text: 'v5' });
  });

  it('If-Match on a missing entry is a conflict and creates nothing', async () => {
    for (const header of ['"1"', '*']) {
      expectConflict(await put('/pre/missing', { 'if-match': header }), null);
    }
    expect((await gw.call('GET', v.entry('/pre/missing'))).status).toBe(404);
  });

  it('If-None-Match: * creates only', async () => {
    expect((await put('/pre/new', { 'if-none-match': '*' })).status).toBe(201);
    expectConflict(await put('/pre/new', { 'if-none-match': '*' }, 'again'), 1);
    expect((await gw.call('GET', v.entry('/pre/new'))).body.content_text).toBe('x');
  });

  it('refuses garbage preconditions with 422', async () => {
    for (const [name, value] of [
      ['if-match', 'abc'],
      ['if-match', '"1", "2"'],
      ['if-match', '-1'],
      ['if-none-match', '"1"'],
    ]) {
      const res = await put('/pre/garbage', { [name as string]: value as string });
      expect(res.status, `${name}: ${value}`).toBe(422);
      expect(locs(res.body)).toEqual([`header.${name}`]);
    }
    expect((await gw.call('GET', v.entry('/pre/garbage'))).status).toBe(404);
  });

  it('applies If-Match to deletes', async () => {
    await put('/pre/del', {});
    expectConflict(await request(gw, 'DELETE', v.entry('/pre/del'), { headers: { 'if-match': '"7"' } }), 1);
    expect((await request(gw, 'DELETE', v.entry('/pre/del'), { headers: { 'if-match': '"1"' } })).status).toBe(200);
  });
});

describe('move', () => {
  it('renames atomically, bumps the version, and frees the old path', async () => {
    const src = (await gw.call('PUT', v.entry('/mv/a'), { content_text: 'A', tags: ['t'] })).body.entry;
    const res = await gw.call('POST', v.move, { from: '/mv/a', to: 'mv/b' });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body.message).toBe('Entry moved successfully');
    expect(res.body.entry).toMatchObject({ entry_id: src.entry_id, path: '/mv/b', version: 2, content_text: 'A', tags: ['t'] });
    expect(res.headers.get('etag')).toBe('"2"');
    expect((await gw.call('GET', v.entry('/mv/a'))).status).toBe(404);
    expect((await gw.call('GET', v.entry('/mv/b'))).body.version).toBe(2);
  });

  it('refuses an existing target unless overwrite', async () => {
    await gw.call('PUT', v.entry('/mv/c'), { content_text: 'C' });
    await gw.call('PUT', v.entry('/mv/d'), { content_text: 'D' });
    const refused = await gw.call('POST', v.move, { from: '/mv/c', to: '/mv/d' });
    expect(refused.status).toBe(409);
    expect(refused.body).toMatchObject({ error: 'CONFLICT', details: { current_version: 1 } });
    expect((await gw.call('GET', v.entry('/mv/c'))).body.content_text).toBe('C');
    expect((await gw.call('GET', v.entry('/mv/d'))).body.content_text).toBe('D');

    const forced = await gw.call('POST', v.move, { from: '/mv/c', to: '/mv/d', overwrite: true });
    expect(forced.status).toBe(200);
    expect(forced.body.entry).toMatchObject({ path: '/mv/d', content_text: 'C', version: 2 });
    expect((await gw.call('GET', v.entry('/mv/c'))).status).toBe(404);
  });

  it('answers 404 for a missing source and 422 for bad paths or bodies', async () => {
    const missing = await gw.call('POST', v.move, { from: '/mv/nothing', to: '/mv/z' });
    expect(missing.status).toBe(404);
    expect(missing.body.details).toEqual({ resource_type: 'entry', resource_id: '/mv/nothing' });
    await gw.call('PUT', v.entry('/mv/e'), { content_text: 'E' });
    for (const [body, loc] of [
      [{ from: '/mv/e', to: '/mv/../x' }, 'body.to'],
      [{ from: '/mv/e/', to: '/mv/x' }, 'body.from'],
      [{ from: '/mv/e' }, 'body.to'],
      [{ from: '/mv/e', to: '/mv/x', overwrite: 'yes' }, 'body.overwrite'],
    ] as const) {
      const res = await gw.call('POST', v.move, body);
      expect(res.status, JSON.stringify(body)).toBe(422);
      expect(locs(res.body)).toEqual([loc]);
    }
    expect((await gw.call('GET', v.entry('/mv/e'))).body.version).toBe(1);
  });

  it('honours If-Match on the source', async () => {
    await gw.call('PUT', v.entry('/mv/f'), { content_text: 'F' });
    const stale = await request(gw, 'POST', v.move, { body: { from: '/mv/f', to: '/mv/g' }, headers: { 'if-match': '"2"' } });
    expect(stale.status).toBe(409);
    expect(stale.body.details.current_version).toBe(1);
    expect((await gw.call('GET', v.entry('/mv/g'))).status).toBe(404);
    const fresh = await request(gw, 'POST', v.move, { body: { from: '/mv/f', to: '/mv/g' }, headers: { 'if-match': '"1"' } });
    expect(fresh.status).toBe(200);
    expect(fresh.body.entry.version).toBe(2);
  });
});

describe('content size: one bound for REST and GraphQL', () => {
  // 8 MiB of JSON content (serialised), like content_text: a body either transport accepts.
  const at = (n: number) => ({ s: 'x'.repeat(n - 8) }); // {"s":"…"} is 8 bytes besides the letters

  it('8 MiB of JSON content is stored over both; one byte more is 422 naming content over both', async () => {
    const max = 8 * 1024 * 1024;
    expect((await gw.call('PUT', v.entry('/size/ok-rest.json'), { content: at(max) })).status).toBe(201);
    const refused = await gw.call('PUT', v.entry('/size/over-rest.json'), { content: at(max + 1) });
    expect(refused.status).toBe(422);
    expect(refused.body.detail[0]).toMatchObject({ loc: ['body', 'content'], msg: `content must be at most ${max} bytes as JSON` });

    const write = 'mutation($id: ID!, $p: String!, $c: JSON) { writeEntry(volumeId: $id, path: $p, input: { content: $c }) { created } }';
    const ok = await gw.gql(write, { id: v.volumeId, p: '/size/ok-gql.json', c: at(max) });
    expect(ok.body).toEqual({ data: { writeEntry: { created: true } } });
    const over = await gw.gql(write, { id: v.volumeId, p: '/size/over-gql.json', c: at(max + 1) });
    expect(over.body.errors[0].extensions).toMatchObject({ code: 'VALIDATION_FAILED' });
    expect(over.body.errors[0].extensions.fields[0].path).toEqual(['input', 'content']);
    expect((await gw.call('GET', v.entry('/size/over-gql.json'))).status).toBe(404);
  });
});
