import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from './helpers/app.js';
import { fetchAndHash, gqlUpload, lazyBytes, MiB, type UploadVolume, upload, uploadVolume } from './helpers/uploads.js';

/**
 * Uploads stream: a 200 MiB file goes from the socket to the (local) blob store, through REST and
 * through the GraphQL multipart parser, without the process holding it. The gateway runs in this
 * process, so its RSS is what is sampled while the upload runs.
 */
const SIZE = 200 * MiB;
const BOUND = 64 * MiB;

let gw: TestGateway;
let v: UploadVolume;
beforeAll(async () => {
  gw = await startGateway({ SWEEP_INTERVAL_MS: '3600000' });
  v = await uploadVolume(gw, 'acme');
});
afterAll(async () => {
  await gw?.stop();
});

/** Runs `work` while sampling RSS every few ms; returns its result, the RSS before, and the peak. */
async function sampled<T>(work: () => Promise<T>): Promise<{ result: T; baseline: number; peak: number; samples: number }> {
  const baseline = process.memoryUsage().rss;
  let peak = baseline;
  let samples = 0;
  const timer = setInterval(() => {
    samples += 1;
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 3);
  try {
    const result = await work();
    peak = Math.max(peak, process.memoryUsage().rss);
    return { result, baseline, peak, samples };
  } finally {
    clearInterval(timer);
  }
}

const mib = (n: number) => `${(n / MiB).toFixed(1)} MiB`;
function report(label: string, m: { baseline: number; peak: number; samples: number }, ms: number) {
  console.log(
    `[memory] ${label}: baseline ${mib(m.baseline)}, peak ${mib(m.peak)}, growth ${mib(m.peak - m.baseline)} ` +
      `(${m.samples} samples, ${ms} ms)`,
  );
}

const UPLOAD = `mutation($v: ID!, $p: String!, $file: File!) {
  uploadEntry(volumeId: $v, path: $p, file: $file) { created entry { sizeBytes sha256 downloadUrl(expiresIn: 600) } }
}`;
const restUpload = (path: string, file: ReturnType<typeof lazyBytes>) =>
  upload(gw, v.upload(path), { data: file.iterable(), size: file.size, filename: 'big.bin' });
const graphqlUpload = (path: string, file: ReturnType<typeof lazyBytes>) =>
  gqlUpload(
    gw,
    UPLOAD,
    { v: v.volumeId, p: path, file: null },
    { 'variables.file': { data: file.iterable(), size: file.size, filename: 'big.bin' } },
  );

describe('a 200 MiB upload keeps RSS growth under 64 MiB', () => {
  it('through REST, then downloads it and checks its sha256 while streaming', async () => {
    const warm = lazyBytes(16 * MiB);
    expect((await restUpload('/warm-rest.bin', warm)).status).toBe(201);

    const file = lazyBytes(SIZE);
    const started = Date.now();
    const m = await sampled(() => restUpload('/rest-200.bin', file));
    report('REST upload of 200 MiB', m, Date.now() - started);
    expect(m.result.status, JSON.stringify(m.result.body)).toBe(201);
    expect(m.result.body.entry).toMatchObject({ size_bytes: SIZE, sha256: file.digest() });
    expect(m.peak - m.baseline).toBeLessThan(BOUND);

    const dl = await gw.call('GET', `${v.download('/rest-200.bin')}?expires_in=600`);
    expect(dl.status).toBe(200);
    const downloadStarted = Date.now();
    const d = await sampled(() => fetchAndHash(dl.body.download_url));
    report('download of 200 MiB', d, Date.now() - downloadStarted);
    expect(d.result).toMatchObject({ status: 200, size: SIZE, sha256: file.digest() });
    expect(d.peak - d.baseline).toBeLessThan(BOUND);
  });

  it('through GraphQL uploadEntry (multipart request spec, streaming parser)', async () => {
    const warm = lazyBytes(16 * MiB);
    const warmed = await graphqlUpload('/warm-gql.bin', warm);
    expect(warmed.body.errors, JSON.stringify(warmed.body)).toBeUndefined();

    const file = lazyBytes(SIZE);
    const started = Date.now();
    const m = await sampled(() => graphqlUpload('/gql-200.bin', file));
    report('GraphQL upload of 200 MiB', m, Date.now() - started);
    expect(m.result.status, JSON.stringify(m.result.body)).toBe(200);
    expect(m.result.body.errors, JSON.stringify(m.result.body)).toBeUndefined();
    expect(m.result.body.data.uploadEntry).toMatchObject({ created: true, entry: { sizeBytes: SIZE, sha256: file.digest() } });
    expect(m.peak - m.baseline).toBeLessThan(BOUND);

    const got = await fetchAndHash(m.result.body.data.uploadEntry.entry.downloadUrl);
    expect(got).toMatchObject({ status: 200, size: SIZE, sha256: file.digest() });
  });
});
