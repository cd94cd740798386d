import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { Readable } from 'node:stream';
import { expect } from 'vitest';
import { type TestGateway, waitFor } from './app.js';
import { newVolume } from './entries.js';
import { ADMIN_KEY, type RawResponse, streamRequest } from './http.js';

export const MiB = 1024 * 1024;
export const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');

/** A volume whose workspace bucket is active (uploads are refused while it is provisioned). */
export async function uploadVolume(gw: TestGateway, org: string, body: Record<string, unknown> = {}) {
  const v = await newVolume(gw, org, body);
  await waitFor(async () => {
    const ws = await gw.call('GET', `/v1/orgs/${org}/workspaces/${v.workspaceId}`);
    return ws.body.bucket_status === 'active';
  });
  const bucket: string = (await gw.call('GET', `/v1/orgs/${org}/workspaces/${v.workspaceId}`)).body.s3_bucket;
  return { ...v, bucket, upload: (path: string) => `${v.entry(path)}/upload`, download: (path: string) => `${v.entry(path)}/download` };
}
export type UploadVolume = Awaited<ReturnType<typeof uploadVolume>>;

/**
 * `size` bytes produced lazily in fresh `chunkSize` chunks (never the whole file in memory): a random
 * block stamped with each chunk's index, so reordered or repeated chunks change the sha256.
 * `digest()` is the sha256 of what was generated, final once the stream has ended.
 */
export function lazyBytes(size: number, chunkSize = 64 * 1024) {
  const block = randomBytes(chunkSize);
  const hash = createHash('sha256');
  let digest: string | undefined;
  let used = false;
  async function* generate() {
    if (used) throw new Error('lazyBytes: a file is generated once');
    used = true;
    let sent = 0;
    let index = 0;
    while (sent < size) {
      const n = Math.min(chunkSize, size - sent);
      const chunk = Buffer.allocUnsafe(n);
      block.copy(chunk, 0, 0, n);
      if (n >= 8) chunk.writeUInt32BE(index, 0);
      hash.update(chunk);
      sent += n;
      index += 1;
      yield chunk;
    }
    digest = hash.digest('hex');
  }
  return {
    size,
    /** The bytes, once: hand it to `upload`/`gqlUpload` as `data`. */
    iterable: generate,
    digest: () => {
      if (digest === undefined) throw new Error('lazyBytes: digest read before the stream ended');
      return digest;
    },
  };
}

/** A multipart part: a field, or a file whose data may be streamed (`size` known or not). */
export type Part =
  | { name: string; value: string }
  | { name: string; filename?: string; contentType?: string; data: Buffer | AsyncIterable<Buffer>; size?: number };

const CRLF = '\r\n';

function partHeader(boundary: string, part: Part): string {
  if ('value' in part) return `--${boundary}${CRLF}Content-Disposition: form-data; name="${part.name}"${CRLF}${CRLF}`;
  const filename = part.filename === undefined ? '' : `; filename="${part.filename}"`;
  const type = part.contentType ? `Content-Type: ${part.contentType}${CRLF}` : '';
  return `--${boundary}${CRLF}Content-Disposition: form-data; name="${part.name}"${filename}${CRLF}${type}${CRLF}`;
}

/** A multipart/form-data body as a stream: parts in the order given, files streamed. */
export function multipartBody(parts: Part[], boundary = `----vgtest${randomBytes(8).toString('hex')}`) {
  async function* generate() {
    for (const part of parts) {
      yield Buffer.from(partHeader(boundary, part), 'utf8');
      if ('value' in part) yield Buffer.from(part.value, 'utf8');
      else if (Buffer.isBuffer(part.data)) yield part.data;
      else yield* part.data;
      yield Buffer.from(CRLF);
    }
    yield Buffer.from(`--${boundary}--${CRLF}`);
  }
  // The length is known when every file's size is: send it, like a browser would.
  let length: number | undefined = 0;
  for (const part of parts) {
    const head = Buffer.byteLength(partHeader(boundary, part));
    const body =
      'value' in part ? Buffer.byteLength(part.value) : Buffer.isBuffer(part.data) ? part.data.length : (part.size ?? Number.NaN);
    length = length === undefined || Number.isNaN(body) ? undefined : length + head + body + 2;
  }
  if (length !== undefined) length += Buffer.byteLength(`--${boundary}--${CRLF}`);
  return { contentType: `multipart/form-data; boundary=${boundary}`, length, stream: () => Readable.from(generate()) };
}

/** POSTs a file (and fields) to an upload route as multipart/form-data. */
export function upload(
  gw: TestGateway,
  route: string,
  file: { data: Buffer | AsyncIterable<Buffer>; size?: number; filename?: string; contentType?: string } | null,
  fields: Record<string, string> = {},
  opts: { headers?: Record<string, string>; key?: string | null; fileFirst?: boolean } = {},
): Promise<RawResponse> {
  const fieldParts: Part[] = Object.entries(fields).map(([name, value]) => ({ name, value }));
  const fileParts: Part[] = file
    ? [
        {
          name: 'file',
          filename: file.filename ?? 'upload.bin',
          data: file.data,
          ...(file.contentType ? { contentType: file.contentType } : {}),
          ...(file.size !== undefined ? { size: file.size } : {}),
        },
      ]
    : [];
  const parts = opts.fileFirst ? [...fileParts, ...fieldParts] : [...fieldParts, ...fileParts];
  return streamRequest(gw, 'POST', route, multipartBody(parts), opts.headers, opts.key);
}

/** GETs a URL with plain fetch (no credentials) and hashes the body while it streams. */
export async function fetchAndHash(url: string, headers: Record<string, string> = {}) {
  const res = await fetch(url, { headers });
  const hash = createHash('sha256');
  let size = 0;
  if (res.body) {
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      hash.update(chunk);
      size += chunk.length;
    }
  }
  return { status: res.status, headers: res.headers, size, sha256: hash.digest('hex') };
}

/** Every object key in a bucket, straight from the blob store. */
export async function listKeys(gw: TestGateway, bucket: string, prefix = ''): Promise<string[]> {
  const keys: string[] = [];
  for await (const o of gw.app.blobStore.list(bucket, prefix)) keys.push(o.key);
  return keys.sort();
}

/** The blob key the row at `path` points to (SQL), or undefined when there is no row. */
export async function blobKeyOf(gw: TestGateway, volumeId: string, path: string): Promise<string | null | undefined> {
  const rows = await gw.app.database.prisma.$queryRawUnsafe<{ blob_key: string | null }[]>(
    'SELECT blob_key FROM entries WHERE volume_id = $1 AND path = $2',
    volumeId,
    path,
  );
  return rows[0]?.blob_key;
}

/** Rows of a volume (any state), straight from SQL. */
export async function rowCount(gw: TestGateway, volumeId: string): Promise<number> {
  const [row] = await gw.app.database.prisma.$queryRawUnsafe<{ n: number }[]>(
    'SELECT count(*)::int AS n FROM entries WHERE volume_id = $1',
    volumeId,
  );
  return row?.n ?? -1;
}

/**
 * Over a raw socket: sends a request head declaring `declaredBytes` of body, then `prefix` and
 * `sentFileBytes` random bytes of the file it opens, runs `beforeDestroy`, then destroys the socket
 * (a client that goes away mid-upload).
 */
export async function truncatedRequest(
  gw: TestGateway,
  route: string,
  body: { contentType: string; prefix: Buffer; declaredBytes: number },
  sentFileBytes: number,
  beforeDestroy: () => Promise<void> = async () => {},
): Promise<void> {
  const { hostname, port } = new URL(gw.url);
  const requestHead =
    `POST ${route} HTTP/1.1${CRLF}Host: ${hostname}:${port}${CRLF}Authorization: Bearer ${ADMIN_KEY}${CRLF}` +
    `Content-Type: ${body.contentType}${CRLF}Content-Length: ${body.declaredBytes}${CRLF}${CRLF}`;
  const socket = net.connect(Number(port), hostname);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const write = (b: Buffer | string) => new Promise<void>((resolve, reject) => socket.write(b, (err) => (err ? reject(err) : resolve())));
  try {
    await write(requestHead);
    await write(body.prefix);
    const chunk = randomBytes(64 * 1024);
    for (let sent = 0; sent < sentFileBytes; sent += chunk.length) {
      await write(chunk.subarray(0, Math.min(chunk.length, sentFileBytes - sent)));
    }
    await beforeDestroy();
  } finally {
    socket.destroy();
  }
}

/** A REST upload of a `declaredFileBytes` file cut off after `sentFileBytes`. */
export function truncatedUpload(
  gw: TestGateway,
  route: string,
  sentFileBytes: number,
  declaredFileBytes: number,
  beforeDestroy?: () => Promise<void>,
): Promise<void> {
  const boundary = `----vgcut${randomBytes(6).toString('hex')}`;
  const prefix = Buffer.from(
    partHeader(boundary, { name: 'file', filename: 'cut.bin', contentType: 'application/octet-stream', data: Buffer.alloc(0) }),
  );
  const declaredBytes = prefix.length + declaredFileBytes + 2 + Buffer.byteLength(`--${boundary}--${CRLF}`);
  return truncatedRequest(
    gw,
    route,
    { contentType: `multipart/form-data; boundary=${boundary}`, prefix, declaredBytes },
    sentFileBytes,
    beforeDestroy,
  );
}

/** A GraphQL multipart upload (one file, at `variables.file`) cut off after `sentFileBytes`. */
export function truncatedGqlUpload(
  gw: TestGateway,
  query: string,
  variables: Record<string, unknown>,
  sentFileBytes: number,
  declaredFileBytes: number,
  beforeDestroy?: () => Promise<void>,
): Promise<void> {
  const boundary = `----vgcut${randomBytes(6).toString('hex')}`;
  const fields: Part[] = [
    { name: 'operations', value: JSON.stringify({ query, variables }) },
    { name: 'map', value: JSON.stringify({ 0: ['variables.file'] }) },
  ];
  const prefix = Buffer.concat([
    ...fields.map((f) => Buffer.from(`${partHeader(boundary, f)}${(f as { value: string }).value}${CRLF}`)),
    Buffer.from(partHeader(boundary, { name: '0', filename: 'cut.bin', contentType: 'application/octet-stream', data: Buffer.alloc(0) })),
  ]);
  const declaredBytes = prefix.length + declaredFileBytes + 2 + Buffer.byteLength(`--${boundary}--${CRLF}`);
  return truncatedRequest(
    gw,
    '/graphql',
    { contentType: `multipart/form-data; boundary=${boundary}`, prefix, declaredBytes },
    sentFileBytes,
    beforeDestroy,
  );
}

export function expectValidation(res: { status: number; body: any }, loc: (string | number)[]) {
  expect(res.status, JSON.stringify(res.body)).toBe(422);
  expect(res.body.detail.map((d: { loc: unknown }) => d.loc)).toContainEqual(loc);
}

/**
 * Watches the gateway's blob store `put` calls (passing everything through to the real store), so
 * a test can wait for an upload to reach the store and for its put to settle. `restore()` undoes it.
 */
export function watchPuts(gw: TestGateway) {
  const store = gw.app.blobStore;
  const original = store.put;
  const calls: { key: string; settled: Promise<'stored' | 'failed'>; outcome?: 'stored' | 'failed' }[] = [];
  store.put = function (this: typeof store, bucket, key, body, opts) {
    const result = original.call(this, bucket, key, body, opts);
    const call: (typeof calls)[number] = {
      key,
      settled: result.then(
        () => 'stored' as const,
        () => 'failed' as const,
      ),
    };
    call.settled.then((o) => {
      call.outcome = o;
    });
    calls.push(call);
    return result;
  };
  return {
    calls,
    restore: () => {
      store.put = original;
    },
  };
}

export interface GqlFile {
  data: Buffer | AsyncIterable<Buffer>;
  size?: number;
  filename?: string;
  contentType?: string;
}

/**
 * A GraphQL multipart request (graphql-multipart-request-spec): `operations`, `map`, then one part
 * per file, streamed. `files` maps a variable path (`variables.file`) to the file sent for it.
 * Credentials go in Authorization (which also satisfies CSRF prevention) unless `key` is null.
 */
export function gqlUpload(
  gw: TestGateway,
  query: string,
  variables: Record<string, unknown>,
  files: Record<string, GqlFile>,
  opts: { key?: string | null; headers?: Record<string, string> } = {},
): Promise<RawResponse> {
  const entries = Object.entries(files);
  const map = Object.fromEntries(entries.map(([path], i) => [String(i), [path]]));
  const parts: Part[] = [
    { name: 'operations', value: JSON.stringify({ query, variables }) },
    { name: 'map', value: JSON.stringify(map) },
    ...entries.map(
      ([, f], i): Part => ({
        name: String(i),
        filename: f.filename ?? 'upload.bin',
        data: f.data,
        ...(f.contentType ? { contentType: f.contentType } : {}),
        ...(f.size !== undefined ? { size: f.size } : {}),
      }),
    ),
  ];
  return streamRequest(gw, 'POST', '/graphql', multipartBody(parts), opts.headers, opts.key);
}
