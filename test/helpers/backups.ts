import { expect } from 'vitest';
import { type TestGateway, waitFor } from './app.js';
import type { TestVolume } from './entries.js';
import { fetchAndHash, sha256 } from './uploads.js';

/** Starts a backup over REST and waits until it completed; returns the backup JSON. */
export async function backUp(gw: TestGateway, v: Pick<TestVolume, 'volumeUrl'>, key?: string, timeoutMs = 30_000) {
  const res = await gw.call('POST', `${v.volumeUrl}/sync`, undefined, key);
  expect(res.status, JSON.stringify(res.body)).toBe(202);
  const id: string = res.body.backup_id;
  return waitFor(async () => {
    const b = await gw.call('GET', `${v.volumeUrl}/backups/${id}`, undefined, key);
    if (b.body.status === 'failed') throw new Error(`backup failed: ${b.body.error}`);
    return b.body.status === 'completed' ? b.body : undefined;
  }, timeoutMs);
}

/** Reads a whole object from the gateway's blob store. */
export async function readBlob(gw: TestGateway, bucket: string, key: string): Promise<Buffer> {
  const { body } = await gw.app.blobStore.get(bucket, key);
  const chunks: Buffer[] = [];
  for await (const c of body) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** Every live entry of a volume as the API shows it (by path), with file bytes' sha256 from a real download. */
export async function entriesOf(gw: TestGateway, volumeUrl: string, volumeId: string) {
  const rows = await gw.app.database.prisma.$queryRawUnsafe<{ path: string }[]>(
    'SELECT path FROM entries WHERE volume_id = $1 ORDER BY path',
    volumeId,
  );
  const out: Record<string, any> = {};
  for (const { path } of rows) {
    const encoded = path.split('/').map(encodeURIComponent).join('/');
    const res = await gw.call('GET', `${volumeUrl}/entries${encoded}`);
    expect(res.status, path).toBe(200);
    // Ids and index state belong to the volume; everything else must survive a restore.
    const { entry_id: _id, volume_id: _v, is_indexed: _i, indexed_at: _a, total_chunks: _t, index_error: _e, ...entry } = res.body;
    if (entry.content_type === 'file') {
      const dl = await gw.call('GET', `${volumeUrl}/entries${encoded}/download`);
      expect(dl.status).toBe(200);
      const fetched = await fetchAndHash(dl.body.download_url);
      expect(fetched.status).toBe(200);
      entry.downloaded_sha256 = fetched.sha256;
      entry.downloaded_size = fetched.size;
    }
    out[path] = entry;
  }
  return out;
}

export { sha256 };
