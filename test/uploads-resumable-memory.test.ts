import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { waitFor } from './helpers/app.js';
import { type ChildGateway, spawnGateway, stopChild } from './helpers/child.js';
import { call } from './helpers/http.js';
import { tusUpload } from './helpers/tus.js';
import { lazyBytes, MiB } from './helpers/uploads.js';

/**
 * A 1 GB resumable (tus) upload through the real entry point in a child process (embedded PGlite,
 * local blob store): the gateway's RSS, sampled from /proc while the upload runs, grows by less than
 * 64 MiB. The client (tus-js-client reading a generated stream in 32 MiB chunks) runs in this
 * process, so its buffers do not count.
 */
const SIZE = 1024 * MiB;
const BOUND = 64 * MiB;

let gw: ChildGateway | undefined;
let dataDir: string;
beforeAll(async () => {
  dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'vg-tus-mem-'));
  gw = await spawnGateway({ DATA_DIR: dataDir, SWEEP_INTERVAL_MS: '3600000' });
}, 120_000);
afterAll(async () => {
  if (gw) await stopChild(gw.child);
  await fs.rm(dataDir, { recursive: true, force: true });
});

async function rssOf(pid: number): Promise<number> {
  const status = await fs.readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024;
}

it('keeps gateway RSS growth under 64 MiB for a 1 GB tus upload', async () => {
  const url = (gw as ChildGateway).url;
  const pid = (gw as ChildGateway).child.proc.pid as number;
  const ws = await call(url, 'POST', '/v1/orgs/acme/workspaces', { name: 'mem' });
  const wsId = ws.body.workspace_id;
  const vol = await call(url, 'POST', `/v1/orgs/acme/workspaces/${wsId}/volumes`, { name: 'mem' });
  const volumeUrl = `/v1/orgs/acme/workspaces/${wsId}/volumes/${vol.body.volume.volume_id}`;
  await waitFor(async () => (await call(url, 'GET', `/v1/orgs/acme/workspaces/${wsId}`)).body.bucket_status === 'active');
  const endpoint = `${url}${volumeUrl}/uploads`;
  const send = async (p: string, size: number) => {
    const file = lazyBytes(size, 1024 * 1024);
    const r = await tusUpload(endpoint, Readable.from(file.iterable()), { metadata: { path: p }, uploadSize: size, chunkSize: 32 * MiB });
    return { r, file };
  };

  const warm = await send('/warm.bin', 64 * MiB);
  expect(warm.r.error).toBeNull();
  const baseline = await rssOf(pid);
  let peak = baseline;
  const timer = setInterval(() => {
    rssOf(pid).then(
      (rss) => {
        peak = Math.max(peak, rss);
      },
      () => {},
    );
  }, 20);
  const started = Date.now();
  let big: Awaited<ReturnType<typeof send>>;
  try {
    big = await send('/big.bin', SIZE);
  } finally {
    clearInterval(timer);
  }
  peak = Math.max(peak, await rssOf(pid));
  console.log(
    `[memory] tus upload of 1 GiB: baseline ${(baseline / MiB).toFixed(1)} MiB, peak ${(peak / MiB).toFixed(1)} MiB, ` +
      `growth ${((peak - baseline) / MiB).toFixed(1)} MiB (${Date.now() - started} ms)`,
  );
  expect(big.r.error).toBeNull();
  const entry = await call(url, 'GET', `${volumeUrl}/entries/big.bin`);
  expect(entry.body).toMatchObject({ size_bytes: SIZE, sha256: big.file.digest() });
  expect(peak - baseline).toBeLessThan(BOUND);
}, 240_000);
