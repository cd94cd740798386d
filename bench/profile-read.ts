/**
 * Loads one gateway process with the nested read (or `{ __typename }`) and, with `--prof`, writes a
 * V8 CPU profile of it, to look at before optimising the read path.
 *
 *   npx tsx bench/profile-read.ts [--prof /tmp/prof] [--embedded] [--q nested|typename] [--key org|platform]
 *                                 [--samples 2] [--duration 8] [--node-args "..."] [--gateway-dir DIR] [--url postgres://…]
 *
 * Server mode uses a fresh database `bench_prof` beside `--db` (bench/README.md); `--embedded` runs on
 * embedded PGlite. Prints req/s at 16 connections per sample. Not part of the test suite.
 */
import path from 'node:path';
import { Api, NESTED, seedRead } from './lib-gateway.js';
import { throughput } from './lib-load.js';
import { arg, freshDatabase, ROOT, startGateway, stopAll } from './lib-procs.js';

const KEY = `bench-admin-${Math.random().toString(36).slice(2)}-0123456789`;
const flag = (name: string) => process.argv.includes(`--${name}`);
const profDir = arg('prof', '');
const url = flag('embedded')
  ? undefined
  : arg('url', '') || (await freshDatabase(arg('db', 'postgresql://postgres@127.0.0.1:5432/bench_pgv'), 'bench_prof'));
const nodeArgs = [...(profDir ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : []), ...arg('node-args', '').split(' ').filter(Boolean)];
const gw = await startGateway({ dir: path.resolve(arg('gateway-dir', ROOT)), adminKey: KEY, databaseUrl: url, nodeArgs });
const seed = await seedRead(new Api(gw.url, KEY), 10);
const query = arg('q', 'nested') === 'nested' ? { query: NESTED, variables: { n: 10 } } : { query: '{ __typename }' };
const key = arg('key', 'org') === 'org' ? seed.orgKey : KEY;
const req = {
  url: `${gw.url}/graphql`,
  method: 'POST',
  headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
  body: JSON.stringify(query),
};
await throughput(req, 16, 3); // warm-up
for (let i = 0; i < Number(arg('samples', '2')); i++) {
  const r = await throughput(req, 16, Number(arg('duration', '8')));
  process.stdout.write(`req/s ${r.rps.toFixed(0)}  p50 ${r.p50} ms  p99 ${r.p99} ms  errors ${r.errors}\n`);
}
await stopAll();
