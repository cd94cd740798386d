import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { waitFor } from './helpers/app.js';
import { type Child, type ChildGateway, spawnGateway } from './helpers/child.js';
import { ADMIN_KEY, call } from './helpers/http.js';

/**
 * Uploads cut off by a crash: the real gateway (src/main.ts, embedded PGlite and the local blob
 * store in DATA_DIR) is SIGKILLed while a large upload streams in, which leaves its temporary file
 * under DATA_DIR/blobs/<bucket>/.tmp/ (nothing in the dead process can clean up). Started again
 * with a small UPLOAD_TEMP_MAX_AGE_MS, the start-up sweep removes it; a temp file left while the
 * gateway runs is removed and counted by POST …/reconcile.
 */

// First boot compiles the sources with tsx and runs initdb and the migrations: over 20 s on a busy
// 2-core machine running other test files alongside.
const BOOT_TIMEOUT = 90_000;
const MiB = 1024 * 1024;
const ORG = 'crashorg';

const children = new Set<Child>();
let dataDir: string;

beforeAll(async () => {
  dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'vg-upload-crash-'));
});
afterAll(async () => {
  await Promise.all([...children].map((c) => c.kill()));
  if (dataDir) await fs.rm(dataDir, { recursive: true, force: true });
});

/** Starts src/main.ts on DATA_DIR and waits for its banner (a killed owner's lock never holds a restart up). */
const boot = (env: Record<string, string> = {}): Promise<ChildGateway> =>
  spawnGateway({ TMPDIR: os.tmpdir(), DATA_DIR: dataDir, ...env }, { children, timeoutMs: BOOT_TIMEOUT });

/** A workspace whose bucket is active, with one volume; the bucket's folders on disk. */
async function bucketVolume(gw: ChildGateway, name: string) {
  const ws = await call(gw, 'POST', `/v1/orgs/${ORG}/workspaces`, { name });
  expect(ws.status, JSON.stringify(ws.body)).toBe(201);
  const workspaceId: string = ws.body.workspace_id;
  const settled = await waitFor(async () => {
    const got = await call(gw, 'GET', `/v1/orgs/${ORG}/workspaces/${workspaceId}`);
    return got.body.bucket_status === 'active' ? got.body : undefined;
  }, 30_000);
  const vol = await call(gw, 'POST', `/v1/orgs/${ORG}/workspaces/${workspaceId}/volumes`, { name: `${name}-vol` });
  expect(vol.status, JSON.stringify(vol.body)).toBe(201);
  const volumeUrl = `/v1/orgs/${ORG}/workspaces/${workspaceId}/volumes/${vol.body.volume.volume_id}`;
  const bucketDir = path.join(dataDir, 'blobs', settled.s3_bucket);
  return { workspaceId, volumeUrl, bucketDir, tmp: path.join(bucketDir, '.tmp') };
}

/** Names and sizes of the files under a .tmp/ folder (none when it does not exist). */
async function temps(tmp: string): Promise<{ name: string; size: number; mtimeMs: number }[]> {
  const names = await fs.readdir(tmp).catch(() => [] as string[]);
  const out: { name: string; size: number; mtimeMs: number }[] = [];
  for (const name of names) {
    const stat = await fs.stat(path.join(tmp, name)).catch(() => undefined);
    if (stat?.isFile()) out.push({ name, size: stat.size, mtimeMs: stat.mtimeMs });
  }
  return out;
}

/** Every file under a folder, recursively, as paths relative to it. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await fs.readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile()).map((e) => path.relative(dir, path.join(e.parentPath, e.name)));
}

/**
 * POSTs a multipart upload declaring `declared` bytes of file over raw node:http, but writes only
 * the first `send` of them (respecting backpressure) and then holds the request open: an upload
 * in the middle of streaming, for as long as the caller wants.
 */
function startUpload(gw: ChildGateway, route: string, declared: number, send: number) {
  const boundary = `----crash${randomBytes(8).toString('hex')}`;
  const head = Buffer.from(
    `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n` +
      'Content-Type: application/octet-stream\r\n\r\n',
  );
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  const { hostname, port } = new URL(gw.url);
  const req = http.request({
    hostname,
    port,
    method: 'POST',
    path: route,
    agent: false,
    headers: {
      authorization: `Bearer ${ADMIN_KEY}`,
      'content-type': `multipart/form-data; boundary=${boundary}`,
      'content-length': String(head.length + declared + tail.length),
    },
  });
  let failure: Error | undefined;
  let response: number | undefined;
  req.on('error', (err) => {
    failure = err; // expected once the server is killed
  });
  req.on('response', (res) => {
    response = res.statusCode;
    res.resume();
  });
  const sent = (async () => {
    const drained = () => new Promise<void>((resolve) => req.once('drain', resolve));
    if (!req.write(head)) await drained();
    const chunk = randomBytes(256 * 1024);
    for (let n = 0; n < send && !failure; n += chunk.length) {
      if (!req.write(chunk)) await drained();
    }
  })();
  return { req, sent, failure: () => failure, response: () => response };
}

it('a gateway killed mid-upload leaves a temp file; the start-up sweep removes it and reconcile counts one left while running', async () => {
  // 1. A gateway with the default max age (24 h) receives a large upload, and is killed mid-stream.
  const first = await boot();
  const v = await bucketVolume(first, 'crash');
  const upload = startUpload(first, `${v.volumeUrl}/entries/big.bin/upload`, 20 * MiB, 8 * MiB);
  // The bytes are landing in the bucket's .tmp/ folder: the upload is under way.
  await waitFor(async () => (await temps(v.tmp)).some((t) => t.size >= 4 * MiB), 60_000);
  expect(upload.response()).toBeUndefined();
  await first.child.kill();
  await waitFor(async () => upload.failure() !== undefined || upload.req.destroyed, 10_000);
  upload.req.destroy();

  const left = await temps(v.tmp);
  expect(left).toHaveLength(1);
  expect(left[0]?.size).toBeGreaterThanOrEqual(4 * MiB);
  expect(left[0]?.size).toBeLessThan(20 * MiB);
  // Nothing of it became an object.
  expect((await filesUnder(v.bucketDir)).filter((f) => !f.startsWith('.tmp'))).toEqual([]);

  // 2. Started again with a 1 s max age, the crashed upload's temp file is old enough to go (the
  // wait makes its age certain however fast the restart is).
  await waitFor(async () => Date.now() - (left[0]?.mtimeMs ?? 0) > 1_500, 10_000);
  const bootedAt = Date.now();
  const second = await boot({ UPLOAD_TEMP_MAX_AGE_MS: '1000' });
  await waitFor(async () => (await temps(v.tmp)).length === 0, 60_000);
  expect((await filesUnder(v.bucketDir)).filter((f) => !f.startsWith('.tmp'))).toEqual([]);
  expect((await call(second, 'GET', `${v.volumeUrl}/entries/big.bin`)).status).toBe(404);

  // 3. A temp file left while the gateway runs: POST …/reconcile removes and counts it. It goes in
  // a bucket made after the boot-time reconciliation listed the workspaces (the volume's
  // last_reconciled_at shows it ran), so only this request can find it.
  await waitFor(async () => {
    const vol = await call(second, 'GET', v.volumeUrl);
    return vol.body.last_reconciled_at && Date.parse(vol.body.last_reconciled_at) >= bootedAt - 1000;
  }, 60_000);
  const w = await bucketVolume(second, 'running');
  await fs.mkdir(w.tmp, { recursive: true });
  const stray = path.join(w.tmp, 'left-by-a-crash');
  await fs.writeFile(stray, randomBytes(12_345));
  const hourAgo = new Date(Date.now() - 3_600_000);
  await fs.utimes(stray, hourAgo, hourAgo);

  const res = await call(second, 'POST', `/v1/orgs/${ORG}/workspaces/${w.workspaceId}/reconcile`);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  expect(res.body).toMatchObject({ incomplete_uploads_removed: 1, incomplete_upload_bytes: 12_345, orphans_removed: [] });
  expect(await temps(w.tmp)).toEqual([]);

  // No sweep failed along the way.
  for (const gw of [first, second]) {
    expect(gw.child.stdout()).not.toMatch(/incomplete uploads failed/);
  }
  second.child.proc.kill('SIGTERM');
  expect(await second.child.exited).toBe(0);
}, 300_000);
