import { afterAll, beforeAll, expect, it } from 'vitest';
import { startGateway, type TestGateway, waitFor } from './helpers/app.js';
import { newVolume, putText } from './helpers/entries.js';
import { type PgliteServer, startPgliteServer } from './helpers/pglite-server.js';

// A database that cannot take a request in time (every pooled connection busy past the wait limit)
// is an overload, not a fault: 503 SERVICE_UNAVAILABLE with Retry-After over REST, UNAVAILABLE over
// GraphQL, nothing written, and the same request succeeds once the pool frees up.

const ORG = 'org-overload';
let db: PgliteServer;
let gw: TestGateway;

beforeAll(async () => {
  db = await startPgliteServer(10);
  // One pooled connection, so a test can hold all of them.
  gw = await startGateway({ DATABASE_URL: db.url, DATABASE_POOL_SIZE: '1', DATABASE_POOL_TIMEOUT_MS: '1000', JOB_CONCURRENCY: '0' });
});
afterAll(async () => {
  await gw?.stop();
  await db?.stop();
});

/** Holds the gateway's only pooled connection in a transaction until `release` is called. */
async function holdPool(): Promise<{ release: () => Promise<void> }> {
  let open!: () => void;
  const gate = new Promise<void>((r) => {
    open = r;
  });
  let started!: () => void;
  const holding = new Promise<void>((r) => {
    started = r;
  });
  const tx = gw.app.database.prisma.$transaction(
    async (t) => {
      await t.$queryRaw`SELECT 1`;
      started();
      await gate;
    },
    { timeout: 60_000 },
  );
  await holding;
  return {
    release: async () => {
      open();
      await tx;
    },
  };
}

it('a search that cannot get a connection in time answers 503 with Retry-After (REST) and UNAVAILABLE (GraphQL); it works again after', async () => {
  const v = await newVolume(gw, ORG, { indexing_mode: 'manual' });
  await putText(gw, v, '/a.md', 'granite and basalt are igneous rocks');
  const hold = await holdPool();
  try {
    // The request waits DATABASE_POOL_TIMEOUT_MS (1 s here) for a connection, then gives up.
    const rest = await gw.call('POST', `${v.volumeUrl}/search`, { query: 'granite' });
    expect(rest.status, JSON.stringify(rest.body)).toBe(503);
    expect(rest.headers.get('retry-after')).toBe('1');
    expect(rest.body).toMatchObject({
      error: 'SERVICE_UNAVAILABLE',
      details: { retry_after_seconds: 1 },
      status_code: 503,
    });
    const gql = await gw.gql(`query($id: ID!) { search(volumeId: $id, query: "granite") { total } }`, { id: v.volumeId });
    expect(gql.status).toBe(200);
    expect(gql.body.errors?.[0]?.extensions).toMatchObject({ code: 'UNAVAILABLE', retry_after_seconds: 1 });
    expect(gql.body.errors?.[0]?.message).toMatch(/overloaded/);
  } finally {
    await hold.release();
  }
  expect((await gw.call('POST', `${v.volumeUrl}/search`, { query: 'granite' })).status).toBe(200);
});

it('a write that cannot get a connection in time writes nothing (503) and may be sent again', async () => {
  const v = await newVolume(gw, ORG, { indexing_mode: 'manual' });
  const hold = await holdPool();
  let refused: Awaited<ReturnType<typeof gw.call>>;
  try {
    refused = await gw.call('POST', `${v.volumeUrl}/mounts`, { app_id: 'app-o', path_pattern: '/o/**', access_level: 'read' });
  } finally {
    await hold.release();
  }
  expect(refused.status, JSON.stringify(refused.body)).toBe(503);
  expect((await gw.call('GET', `${v.volumeUrl}/mounts`)).body.mounts ?? []).toEqual([]);
  const again = await gw.call('POST', `${v.volumeUrl}/mounts`, { app_id: 'app-o', path_pattern: '/o/**', access_level: 'read' });
  expect(again.status).toBe(201);
  await waitFor(async () => (await gw.call('GET', `${v.volumeUrl}/mounts`)).body.mounts?.length === 1);
});
