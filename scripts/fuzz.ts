// `npm run fuzz`: the property-based fuzzing of test/fuzz.test.ts, for longer and with a fresh seed
// each time (FUZZ_SEED to replay one, FUZZ_RUNS per surface, default 20,000). Boots an embedded
// gateway in a temporary DATA_DIR, prints the seed, and exits 1 with the failing request if any
// operation answers 5xx (or a GraphQL mutation INTERNAL_SERVER_ERROR).
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { schema } from '../src/graphql/schema/index.js';
import { openApiDocument } from '../src/rest/openapi.js';
import { buildFixture, fuzzGraphQL, fuzzRest, type operationsOf } from '../test/helpers/fuzz.js';

const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31);
const runs = Number(process.env.FUZZ_RUNS ?? 20_000);
const adminKey = `fuzz-${Math.random().toString(36).slice(2)}-admin-key`;
const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'vg-fuzz-'));
const app = await createApp(
  loadConfig({ DATA_DIR: dataDir, ADMIN_API_KEY: adminKey, LOG_LEVEL: process.env.LOG_LEVEL ?? 'error', JOB_POLL_MS: '100' }),
);
const baseUrl = await app.start(0);
let failed = false;
try {
  console.log(`fuzzing ${baseUrl} with seed ${seed}, ${runs} runs per surface`);
  const { fixture, weakKey } = await buildFixture(baseUrl, adminKey);
  const target = { baseUrl, adminKey, fixture };
  const started = Date.now();
  const rest = await fuzzRest(target, (await openApiDocument()) as Parameters<typeof operationsOf>[0], { seed, runs, weakKey });
  console.log(`REST: ${rest ? 'FAILED' : 'ok'} (${((Date.now() - started) / 1000).toFixed(0)} s)`);
  const gql = await fuzzGraphQL(target, schema, { seed, runs });
  console.log(`GraphQL: ${gql ? 'FAILED' : 'ok'} (${((Date.now() - started) / 1000).toFixed(0)} s in all)`);
  for (const f of [rest, gql]) {
    if (!f) continue;
    failed = true;
    console.log(JSON.stringify(f, null, 2));
  }
  if (failed) console.log(`replay with FUZZ_SEED=${seed}`);
} finally {
  await app.stop();
  await fs.rm(dataDir, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
