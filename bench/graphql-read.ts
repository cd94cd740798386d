/**
 * Nested GraphQL reads: the gateway (server mode and embedded) against PostGraphile 5 and two
 * hand-written SQL servers on the same Postgres database, in one run.
 *
 *   npx tsx bench/graphql-read.ts [--volumes 10] [--rounds 5] [--duration 5] [--db postgresql://postgres@127.0.0.1:5432/bench_pgv]
 *
 * Needs `npm --prefix bench/peers install` and a Postgres with pgvector and pg_stat_statements
 * (bench/README.md). `--db` is any database on that server: `bench_read` is dropped and created
 * beside it. `--gateway-dir` runs the gateway from another checkout (default: this one).
 * Writes the `## GraphQL reads` section of BENCHMARKS.md. Not part of the test suite.
 */
import fs from 'node:fs';
import path from 'node:path';
import { ADMIN_KEY, Api, NESTED, ORG, StatementCounter, seedRead } from './lib-gateway.js';
import { fmt, fmtMs, fmtX, latency, median, pairedRatio, type Req, rounds, send, throughput } from './lib-load.js';
import {
  arg,
  describeDatabase,
  freshDatabase,
  gatewayVersion,
  ROOT,
  type Server,
  startGateway,
  startServer,
  stopAll,
} from './lib-procs.js';
import { machine, writeSection } from './report.js';

const VOLUMES = Number(arg('volumes', '10'));
const ROUNDS = Number(arg('rounds', '5'));
const SECONDS = Number(arg('duration', '5'));
const ADMIN_URL = arg('db', 'postgresql://postgres@127.0.0.1:5432/bench_pgv');
const GATEWAY_DIR = path.resolve(arg('gateway-dir', ROOT));
const COUNTS = [2, 10, 50];
const SEED_VOLUMES = Math.max(VOLUMES, ...COUNTS);

// The same shape in PostGraphile's generated schema (Amber preset: rowId, <table>By<Fk> relations).
const PGL_NESTED = `query Nested($org: String!, $n: Int!) {
  allWorkspaces(condition: { orgId: $org }, first: 1, orderBy: PRIMARY_KEY_ASC) { edges { node { id: rowId name
    volumes: volumesByWorkspaceId(first: $n, orderBy: PRIMARY_KEY_ASC) { edges { node { id: rowId name
      entries: entriesByVolumeId(first: 20, orderBy: PATH_ASC) { edges { node { path sizeBytes version } } }
      mounts: mountsByVolumeId(first: 10, orderBy: PRIMARY_KEY_ASC) { edges { node { appId pathPattern accessLevel } } }
      locks: locksByVolumeId(orderBy: PARTITION_ASC) { nodes { partition lockType holderAppId fencingToken expiresAt } } } } } } } } }`;
const LISTING = 'query List($id: ID!) { volume(id: $id) { entries(first: 20) { edges { node { path sizeBytes } } } } }';

const gql = (url: string, key: string | undefined, query: string, variables: object): Req => ({
  url: `${url}/graphql`,
  method: 'POST',
  headers: { 'content-type': 'application/json', ...(key ? { authorization: `Bearer ${key}` } : {}) },
  body: JSON.stringify({ query, variables }),
});

/** Volume name → [entry paths, mounts, locks] from any server's answer, to check they agree. */
function shape(body: string): string {
  const doc = JSON.parse(body);
  if (doc.errors) throw new Error(JSON.stringify(doc.errors).slice(0, 500));
  const ws = (doc.data.workspaces ?? doc.data.allWorkspaces).edges[0].node;
  return JSON.stringify(
    ws.volumes.edges.map(({ node: v }: any) => [
      v.name,
      v.entries.edges.map((e: any) => e.node.path),
      v.mounts.edges.length,
      (v.locks.nodes ?? v.locks).length,
    ]),
  );
}

interface Target {
  name: string;
  db: string;
  nested: (n: number) => Req;
}

async function main(): Promise<void> {
  const url = await freshDatabase(ADMIN_URL, 'bench_read');
  const pgDb = await describeDatabase(url);
  const pglite = JSON.parse(fs.readFileSync(path.join(GATEWAY_DIR, 'node_modules/@electric-sql/pglite/package.json'), 'utf8')).version;
  const embDb = `embedded PGlite ${pglite}`;
  const counter = await StatementCounter.open(ADMIN_URL, 'bench_read');
  try {
    const [gw, emb] = await Promise.all([
      startGateway({ dir: GATEWAY_DIR, adminKey: ADMIN_KEY, databaseUrl: url }),
      startGateway({ dir: GATEWAY_DIR, adminKey: ADMIN_KEY }),
    ]);
    process.stdout.write(`Seeding ${SEED_VOLUMES} volumes on both gateways…\n`);
    const [seed, embSeed] = await Promise.all([
      seedRead(new Api(gw.url, ADMIN_KEY), SEED_VOLUMES),
      seedRead(new Api(emb.url, ADMIN_KEY), SEED_VOLUMES),
    ]);
    const peerEnv = { PATH: process.env.PATH ?? '', DATABASE_URL: url };
    const [pgl, sql4, sql1] = await Promise.all([
      startServer('PostGraphile 5', ['--import', './bench/peers/with-resolvers.mjs', 'bench/peers/postgraphile-server.mjs'], {
        env: peerEnv,
      }),
      startServer('SQL, 4 statements', ['bench/peers/sql-server.mjs'], { env: { ...peerEnv, STATEMENTS: '4' } }),
      startServer('SQL, 1 statement', ['bench/peers/sql-server.mjs'], { env: { ...peerEnv, STATEMENTS: '1' } }),
    ]);
    const sqlReq = (s: Server) => (n: number) => ({ url: `${s.url}/nested?org=${ORG}&volumes=${n}` });
    const targets: Target[] = [
      { name: 'this gateway, server mode', db: pgDb, nested: (n) => gql(gw.url, seed.orgKey, NESTED, { n }) },
      { name: 'PostGraphile 5.1.5, default preset (Amber)', db: pgDb, nested: (n) => gql(pgl.url, undefined, PGL_NESTED, { org: ORG, n }) },
      { name: 'hand-written SQL, 4 statements', db: pgDb, nested: sqlReq(sql4) },
      { name: 'hand-written SQL, 1 statement (json_agg)', db: pgDb, nested: sqlReq(sql1) },
      // The same document for an app key that administers every volume whole (mount-based visibility).
      { name: 'this gateway, server mode, app key', db: pgDb, nested: (n) => gql(gw.url, seed.appKey, NESTED, { n }) },
    ];
    const embedded = (n: number) => gql(emb.url, embSeed.orgKey, NESTED, { n });

    // Every server answers the same document (volumes, entry paths, mount and lock counts).
    const sizes: number[] = [];
    for (const n of [VOLUMES, ...COUNTS]) {
      const shapes = await Promise.all([...targets.map((t) => send(t.nested(n))), send(embedded(n))]);
      for (const [i, res] of shapes.entries()) {
        if (res.status !== 200) throw new Error(`${targets[i]?.name ?? 'embedded'}: ${res.status} ${res.body.slice(0, 300)}`);
        if (shape(res.body) !== shape(shapes[0]!.body))
          throw new Error(`${targets[i]?.name ?? 'embedded'} answers a different document for ${n} volumes`);
        if (n === VOLUMES) sizes.push(res.body.length);
      }
      if (JSON.parse(shape(shapes[0]!.body)).length !== n) throw new Error(`expected ${n} volumes`);
    }

    // SQL statements per nested request, nothing else running: median of 5 counted requests.
    const statements = new Map<string, number[]>();
    let breakdown: { calls: number; query: string }[] = [];
    for (const t of targets) {
      const perN: number[] = [];
      for (const n of COUNTS) {
        await send(t.nested(n));
        const counts: number[] = [];
        for (let i = 0; i < 5; i++) {
          const c = await counter.count(() => send(t.nested(n)));
          counts.push(c.total);
          if (t === targets[0] && n === 10) breakdown = c.top;
        }
        perN.push(median(counts));
      }
      statements.set(t.name, perN);
    }

    const typename = (key: string) => gql(gw.url, key, '{ __typename }', {});
    const list = (id: string) => gql(gw.url, seed.orgKey, LISTING, { id });
    for (const r of [typename(seed.orgKey), typename(ADMIN_KEY), list(seed.largeVolumeId), list(seed.smallVolumeId)]) {
      const res = await send(r);
      if (res.status !== 200 || res.body.includes('"errors"')) throw new Error(`${res.status} ${res.body.slice(0, 300)}`);
    }

    const rps = new Map<string, number[]>();
    const p99c = new Map<string, number[]>();
    const p50 = new Map<string, number[]>();
    const p99 = new Map<string, number[]>();
    const push = (m: Map<string, number[]>, k: string, v: number) => m.set(k, [...(m.get(k) ?? []), v]);
    let errors = 0;
    const load = async (name: string, req: Req) => {
      const r = await throughput(req, 16, SECONDS);
      errors += r.errors;
      push(rps, name, r.rps);
      push(p99c, name, r.p99);
    };
    const lat = async (name: string, req: Req) => {
      const r = await latency(req, Math.min(3, SECONDS));
      push(p50, name, r.p50);
      push(p99, name, r.p99);
    };
    process.stdout.write(`Measuring: ${ROUNDS} rounds, ${SECONDS} s per throughput sample…\n`);
    // Paired measures swap their order every round, so neither always runs first after the heavy loads.
    const pair = async (i: number, a: [string, Req], b: [string, Req]) => {
      for (const [name, req] of i % 2 === 0 ? [a, b] : [b, a]) await load(name, req);
    };
    await rounds(ROUNDS, async (i) => {
      for (const t of targets) await load(t.name, t.nested(VOLUMES));
      await load('embedded', embedded(VOLUMES));
      for (const t of targets) await lat(t.name, t.nested(VOLUMES));
      await lat('embedded', embedded(VOLUMES));
      await pair(i, ['typename org', typename(seed.orgKey)], ['typename platform', typename(ADMIN_KEY)]);
      await pair(i, ['list large', list(seed.largeVolumeId)], ['list small', list(seed.smallVolumeId)]);
    });

    const M = (m: Map<string, number[]>, k: string) => median(m.get(k) ?? []);
    const R = (m: Map<string, number[]>, a: string, b: string) => pairedRatio(m.get(a) ?? [], m.get(b) ?? []);
    const [gwName, pglName, sql4Name] = [targets[0]!.name, targets[1]!.name, targets[2]!.name];
    const gwStatements = statements.get(gwName)!;
    const ok = (met: boolean) => (met ? 'met' : '**not met**');
    const vsPgl = R(rps, gwName, pglName);
    const vsSql = R(rps, gwName, sql4Name);
    const typeRatio = R(rps, 'typename org', 'typename platform');
    const listRatio = R(rps, 'list large', 'list small');
    const embP99 = M(p99c, 'embedded');
    const date = new Date().toISOString().slice(0, 10);
    const lines = [
      `One run of \`npx tsx bench/graphql-read.ts --volumes ${VOLUMES} --rounds ${ROUNDS} --duration ${SECONDS}\`, ${date}. Machine: ${machine()}.`,
      `Gateway: ${gatewayVersion(GATEWAY_DIR)}. Servers measured in turn, ${ROUNDS} interleaved rounds; every number is the median over rounds and every ratio the median of the per-round ratios; the two \`{ __typename }\` loads and the two listing loads swap order every round.`,
      `Databases: server-mode gateway, PostGraphile and the SQL servers share one fresh database \`bench_read\` on **${pgDb}** (real Postgres, fsync on);`,
      `the embedded gateway runs on **${embDb}** in a temp \`DATA_DIR\`, with the same seed. Nested query: a workspace's ${VOLUMES} volumes × (20 entries \`path sizeBytes version\`,`,
      `mounts(first: 10), locks), ${fmt(median(sizes) / 1024, 1)} KB of JSON; the gateway is called with an org key (read scopes; and, in its own row, an app key whose app administers every volume whole, so it sees the same document), PostGraphile without auth.`,
      '',
      '| Target | Measured | Target | |',
      '|---|---:|---:|---|',
      `| SQL statements per nested request, 2 / 10 / 50 volumes (gateway, ${pgDb}) | ${gwStatements.join(' / ')} | ≤ 5, equal | ${ok(gwStatements.every((s) => s <= 5 && s === gwStatements[0]))} |`,
      `| Nested read req/s at 16 conn vs PostGraphile 5 (${pgDb}) | ${fmtX(vsPgl)} | ≥ 1.2× | ${ok(vsPgl >= 1.2)} |`,
      `| Nested read req/s at 16 conn vs hand-written SQL, 4 statements (${pgDb}) | ${fmtX(vsSql)} | ≥ 0.5× | ${ok(vsSql >= 0.5)} |`,
      `| \`{ __typename }\` req/s, org key vs platform key (${pgDb}) | ${fmtX(typeRatio)} (${fmt(M(rps, 'typename org'))} vs ${fmt(M(rps, 'typename platform'))}) | ≥ 0.9× | ${ok(typeRatio >= 0.9)} |`,
      `| Listing 20 × 256 KiB entries vs 20 small, \`path sizeBytes\`, req/s (${pgDb}) | ${fmtX(listRatio)} (${fmt(M(rps, 'list large'))} vs ${fmt(M(rps, 'list small'))}) | ≥ 0.9× | ${ok(listRatio >= 0.9)} |`,
      `| Embedded nested read p99 at 16 conn (${embDb}) | ${fmtMs(embP99)} | ≤ 250 ms | ${ok(embP99 <= 250)} |`,
      '',
      '| Server | Database | req/s at 16 conn | p50 at 1 conn | p99 at 1 conn | p99 at 16 conn | SQL statements, 2 / 10 / 50 volumes |',
      '|---|---|---:|---:|---:|---:|---:|',
      ...targets.map(
        (t) =>
          `| ${t.name} | ${t.db} | ${fmt(M(rps, t.name))} | ${fmtMs(M(p50, t.name))} | ${fmtMs(M(p99, t.name))} | ${fmtMs(M(p99c, t.name))} | ${statements.get(t.name)!.join(' / ')} |`,
      ),
      `| this gateway, embedded | ${embDb} | ${fmt(M(rps, 'embedded'))} | ${fmtMs(M(p50, 'embedded'))} | ${fmtMs(M(p99, 'embedded'))} | ${fmtMs(embP99)} | n/a |`,
      '',
      `Embedded vs server mode (same run): req/s ${fmtX(R(rps, 'embedded', gwName))}, p50 at 1 conn ${fmtX(R(p50, 'embedded', gwName))}. ` +
        `Gateway vs the 1-statement floor: ${fmtX(R(rps, gwName, targets[3]!.name))}. Failed or non-2xx responses under load: ${errors}.`,
      'How it is measured: req/s = 2xx answers / duration at 16 keep-alive connections (autocannon 9, in the harness process), ' +
        `${SECONDS} s per sample; p50/p99 at 1 conn = sequential requests for ${Math.min(3, SECONDS)} s on one keep-alive connection. SQL statements = the`,
      'delta of `pg_stat_statements` calls for `bench_read` around one request (median of 5, after a warm-up request; no background jobs or sweeps, other servers idle;',
      'BEGIN/COMMIT count). PostGraphile lists all unreleased locks of a volume (Amber has no `expiresAt > now()` filter); every seeded lock is live, so the answers match.',
    ];
    process.stdout.write(
      `\nGateway statements for one ${10}-volume request, busiest shapes:\n${breakdown.map((b) => `  ${b.calls} × ${b.query.replace(/\s+/g, ' ').slice(0, 150)}`).join('\n')}\n\n`,
    );
    await writeSection('GraphQL reads', lines.join('\n'));
  } finally {
    await stopAll();
    await counter.close();
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
