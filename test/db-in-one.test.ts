import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Database, inlineSql, openDatabase } from '../src/db/database.js';
import { Prisma } from '../src/generated/prisma/client.js';
import { clonePglite } from './helpers/app.js';
import { type PgliteServer, startPgliteServer } from './helpers/pglite-server.js';

// Database.queryInOne (searches send their plan settings and their statement in one round trip):
// values are written into the text as literals. Each value must come back exactly as it does when
// sent as a parameter, whatever it holds, on both paths (a PGlite handed in, the pg pool).

const TRICKY_TEXT = [
  "it's",
  "'; DROP TABLE chunks; --",
  'back\\slash \\x41 \\\\',
  "E'\\''",
  '$1 $$ $tag$ ?',
  'line\nbreak\ttab',
  '🙂 ünïcödé',
  '',
];
const TRICKY_ARRAYS = [['a', 'b'], ['with "quotes"', 'comma,brace}{', 'back\\slash', "it's", 'NULL'], []];

let server: PgliteServer;
const dbs: Record<string, Database> = {};

beforeAll(async () => {
  server = await startPgliteServer(4);
  dbs.handedIn = await openDatabase({ dataDir: '/nonexistent', pglite: await clonePglite(), migrate: false });
  dbs.pool = await openDatabase({ dataDir: '/nonexistent', databaseUrl: server.url, migrate: false, poolSize: 2 });
});

afterAll(async () => {
  for (const db of Object.values(dbs)) await db.close();
  await dbs.handedIn?.pglite?.close();
  await server?.stop();
});

describe.each(['handedIn', 'pool'])('queryInOne (%s)', (which) => {
  const db = () => dbs[which] as Database;

  it('writes text values as literals that read back exactly as parameters do', async () => {
    for (const v of TRICKY_TEXT) {
      const [asParam] = await db().prisma.$queryRaw<{ v: string }[]>`SELECT ${v}::text AS v`;
      const [inlined] = await db().queryInOne([Prisma.sql`SELECT ${v}::text AS v`]);
      expect(inlined?.v, JSON.stringify(v)).toBe(v);
      expect(inlined?.v).toBe(asParam?.v);
    }
  });

  it('writes arrays, numbers, booleans, null and dates as a parameter would be read', async () => {
    for (const a of TRICKY_ARRAYS) {
      const [r] = await db().queryInOne([Prisma.sql`SELECT ${a}::text[] AS v, cardinality(${a}::text[]) AS n`]);
      expect(r?.n).toBe(a.length);
      // An empty array reads back as an empty array; pg and PGlite both parse text[] to arrays.
      expect(r?.v).toEqual(a);
    }
    const at = new Date('2026-12-01T02:03:04.567Z');
    const [r] = await db().queryInOne([
      Prisma.sql`SELECT ${42}::int AS i, ${-1.5}::float8 AS f, ${true}::boolean AS b, ${null}::text AS z,
        (${at}::timestamptz = '2026-12-01T02:03:04.567Z'::timestamptz) AS same_instant, ${'{"a":"b\\"c"}'}::jsonb ->> 'a' AS j`,
    ]);
    expect(r).toEqual({ i: 42, f: -1.5, b: true, z: null, same_instant: true, j: 'b"c' });
  });

  it('runs the statements in one transaction: a local setting of the first holds for the next, and not after', async () => {
    const rows = await db().queryInOne([
      Prisma.sql`SELECT set_config('application_name', ${"vg 'in one'"}, true)`,
      Prisma.sql`SELECT current_setting('application_name') AS name`,
    ]);
    expect(rows).toEqual([{ name: "vg 'in one'" }]);
    const [after] = await db().queryInOne([Prisma.sql`SELECT current_setting('application_name') AS name`]);
    expect(after?.name).not.toBe("vg 'in one'");
  });

  it('a failing statement fails the whole: nothing of the batch is kept', async () => {
    await db().queryInOne([Prisma.sql`CREATE TABLE IF NOT EXISTS in_one_probe (x int)`]);
    await expect(
      db().queryInOne([Prisma.sql`INSERT INTO in_one_probe VALUES (1)`, Prisma.sql`SELECT 1 / ${0}::int AS boom`]),
    ).rejects.toThrow(/division by zero/);
    expect(await db().queryInOne([Prisma.sql`SELECT count(*)::int AS n FROM in_one_probe`])).toEqual([{ n: 0 }]);
  });
});

it('refuses binary values rather than write them as text', () => {
  expect(() => inlineSql(Prisma.sql`SELECT ${Buffer.from('x')} AS b`)).toThrow(/binary/);
});
