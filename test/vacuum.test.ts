import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tableActivity, vacuumDue, vacuumWhereDue } from '../src/domain/maintenance/vacuum.js';
import { startGateway, type TestGateway, waitFor } from './helpers/app.js';
import { newVolume } from './helpers/entries.js';
import { holdMerger, indexed } from './helpers/search.js';

// Vacuuming where Postgres does not (src/domain/maintenance/vacuum.ts): the embedded database runs
// no autovacuum, so the gateway vacuums each table as Postgres' own statistics say it is due, and
// `chunks` (whose HNSW graphs make a VACUUM stop every request for seconds) early only while no
// HTTP request is about.

const LIVE = 600;

/** A volume of LIVE one-chunk text entries, written in batches and indexed; `overwrite(from, n)` rewrites n of them. */
async function filledVolume(gw: TestGateway, org: string) {
  const v = await newVolume(gw, org, { embedding_model_id: 'hash-384' });
  const write = async (from: number, n: number, text: string) => {
    for (let i = 0; i < n; i += 100) {
      const entries = Array.from({ length: Math.min(100, n - i) }, (_, j) => ({
        path: `/notes/${from + i + j}.md`,
        content_text: `${text} ${from + i + j}`,
      }));
      const res = await gw.call('POST', `${v.volumeUrl}/batch`, { entries });
      expect(res.status, JSON.stringify(res.body)).toBe(200);
    }
    // Overwrites keep the volume at LIVE entries.
    await indexed(gw, v.volumeId, LIVE, 60_000);
  };
  await write(0, LIVE, 'tide tables for the northern harbour, page');
  return { ...v, overwrite: (from: number, n: number) => write(from, n, 'lighthouse log, rewritten, page') };
}

const chunksActivity = async (gw: TestGateway) => (await tableActivity(gw.app.runtime)).find((t) => t.table === 'chunks');
const chunkVacuums = async (gw: TestGateway) => {
  const [row] = await gw.app.database.prisma.$queryRaw<{ n: number }[]>`
    SELECT vacuum_count::int AS n FROM pg_stat_user_tables WHERE relname = 'chunks'`;
  return row?.n ?? 0;
};

describe('vacuum rules', () => {
  it("are autovacuum's, with chunks early on a quiet gateway", () => {
    // Autovacuum's defaults: dead rows past 50 + 20% of live, changes past 50 + 10%.
    expect(vacuumDue({ table: 'entries', live: 1000, dead: 250, modified: 0 }, false)).toBeNull();
    expect(vacuumDue({ table: 'entries', live: 1000, dead: 251, modified: 0 }, false)).toBe('vacuum');
    expect(vacuumDue({ table: 'entries', live: 1000, dead: 0, modified: 151 }, false)).toBe('analyze');
    expect(vacuumDue({ table: 'entries', live: 1000, dead: 100, modified: 150 }, true)).toBeNull();
    // chunks: past 50 + 2% while quiet, past 50 + 20% otherwise.
    expect(vacuumDue({ table: 'chunks', live: 1000, dead: 71, modified: 0 }, true)).toBe('vacuum');
    expect(vacuumDue({ table: 'chunks', live: 1000, dead: 71, modified: 0 }, false)).toBeNull();
    expect(vacuumDue({ table: 'chunks', live: 1000, dead: 70, modified: 0 }, true)).toBeNull();
    expect(vacuumDue({ table: 'chunks', live: 1000, dead: 251, modified: 0 }, false)).toBe('vacuum');
    // A small table waits for 50 dead rows, as autovacuum does.
    expect(vacuumDue({ table: 'chunks', live: 0, dead: 50, modified: 50 }, true)).toBeNull();
  });
});

describe('vacuuming an embedded database', () => {
  let gw: TestGateway;
  let release: () => void = () => undefined;
  beforeAll(async () => {
    // The maintenance timer's first tick (VACUUM of everything at start) runs; this test calls the rest itself.
    gw = await startGateway({ JOB_POLL_MS: '50', SWEEP_INTERVAL_MS: '3600000' });
    // The fresh-chunk merger's merges would add dead rows of their own.
    release = holdMerger(gw);
  });
  afterAll(async () => {
    release();
    await gw?.stop();
  });

  it('reads dead rows from the statistics and vacuums chunks early only when quiet', async () => {
    expect(gw.app.runtime.settings.vacuum.byGateway).toBe(true);
    const v = await filledVolume(gw, 'org-vacuum');
    await vacuumWhereDue(gw.app.runtime, true);
    expect(await chunksActivity(gw)).toMatchObject({ live: LIVE, dead: 0 });

    // 100 overwritten entries leave 100 dead chunk rows: past 50 + 2% of 600, short of 50 + 20%.
    await v.overwrite(0, 100);
    expect(await chunksActivity(gw)).toMatchObject({ live: LIVE, dead: 100 });
    const vacuums = await chunkVacuums(gw);
    const busy = await vacuumWhereDue(gw.app.runtime, false);
    expect(busy.filter((r) => r.table === 'chunks' && r.action === 'vacuum')).toEqual([]);
    expect(await chunkVacuums(gw)).toBe(vacuums);
    expect((await chunksActivity(gw))?.dead).toBe(100);

    const quiet = await vacuumWhereDue(gw.app.runtime, true);
    expect(quiet).toContainEqual(expect.objectContaining({ table: 'chunks', action: 'vacuum', dead: 100, live: LIVE }));
    expect(await chunkVacuums(gw)).toBe(vacuums + 1);
    expect((await chunksActivity(gw))?.dead).toBe(0);

    // 200 more: past 50 + 20%, vacuumed however busy the gateway is.
    await v.overwrite(100, 200);
    const due = await vacuumWhereDue(gw.app.runtime, false);
    expect(due).toContainEqual(expect.objectContaining({ table: 'chunks', action: 'vacuum', dead: 200 }));
    expect((await chunksActivity(gw))?.dead).toBe(0);
  });
});

describe('vacuuming by the maintenance timer', () => {
  let gw: TestGateway;
  let release: () => void = () => undefined;
  beforeAll(async () => {
    gw = await startGateway({ JOB_POLL_MS: '50', SWEEP_INTERVAL_MS: '100', VACUUM_QUIET_MS: '500' });
    release = holdMerger(gw);
  });
  afterAll(async () => {
    release();
    await gw?.stop();
  });

  it('waits for the requests (not the health probes) to stop before it vacuums chunks early', async () => {
    const v = await filledVolume(gw, 'org-vacuum-timer');
    // A client reading without pause from before the overwrites until 1.5 s after them (fifteen
    // ticks at least, none of them quiet); then only probing health, which leaves the gateway quiet.
    let route = v.volumeUrl;
    let reading = true;
    const client = (async () => {
      while (reading) expect((await gw.call('GET', route, undefined, route === v.volumeUrl ? undefined : null)).status).toBe(200);
    })();
    const vacuums = await chunkVacuums(gw);
    await v.overwrite(0, 100);
    await new Promise((r) => setTimeout(r, 1500)); // the window in which nothing may happen
    expect(await chunkVacuums(gw)).toBe(vacuums);
    expect((await chunksActivity(gw))?.dead).toBe(100);
    route = '/readyz';
    // Quiet but for the probes: the next tick past VACUUM_QUIET_MS vacuums it.
    await waitFor(async () => (await chunkVacuums(gw)) > vacuums);
    reading = false;
    await client;
    expect((await chunksActivity(gw))?.dead).toBe(0);
  });
});
