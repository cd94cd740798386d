import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { schema } from '../src/graphql/schema/index.js';
import { openApiDocument } from '../src/rest/openapi.js';
import { ADMIN_KEY, startGateway, type TestGateway } from './helpers/app.js';
import { buildFixture, type FuzzFixture, fuzzGraphQL, fuzzRest, operationsOf } from './helpers/fuzz.js';

/**
 * No input gets a 5xx: property-based fuzzing of every REST operation and every GraphQL mutation,
 * with a fixed seed and a bounded budget so CI is repeatable (FUZZ_SEED / FUZZ_RUNS override them;
 * `npm run fuzz` runs longer, with a fresh seed each time).
 */
const SEED = Number(process.env.FUZZ_SEED ?? 20261129);
const RUNS = Number(process.env.FUZZ_RUNS ?? 600);

let gw: TestGateway;
let fixture: FuzzFixture;
let weakKey: string;
beforeAll(async () => {
  gw = await startGateway();
  ({ fixture, weakKey } = await buildFixture(gw.url, ADMIN_KEY));
}, 120_000);
afterAll(() => gw?.stop());

describe('fuzzing (fixed seed, bounded budget)', () => {
  it('every REST operation answers hostile input without a 5xx', { timeout: 600_000 }, async () => {
    const openapi = (await openApiDocument()) as Parameters<typeof operationsOf>[0];
    const operations = operationsOf(openapi).map((op) => `${op.method} ${op.path}`);
    expect(operations.length).toBeGreaterThanOrEqual(40);
    const seen = new Map<string, number[]>();
    const failure = await fuzzRest({ baseUrl: gw.url, adminKey: ADMIN_KEY, fixture }, openapi, {
      seed: SEED,
      runs: RUNS,
      weakKey,
      onResult: (op, status) => seen.set(op, [...(seen.get(op) ?? []), status]),
    });
    expect(failure).toBeUndefined();
    // The budget reached every operation, and a fair share of requests got past validation into the
    // domain (the fuzzing is not just a 422 generator).
    expect(operations.filter((op) => !seen.has(op))).toEqual([]);
    const statuses = [...seen.values()].flat();
    const accepted = statuses.filter((s) => s < 300).length / statuses.length;
    console.log(`REST fuzz: ${statuses.length} requests, ${(accepted * 100).toFixed(0)}% 2xx`);
    expect(accepted).toBeGreaterThan(0.15);
  });

  it('every GraphQL mutation answers hostile variables without a 5xx or INTERNAL_SERVER_ERROR', { timeout: 600_000 }, async () => {
    const seen = new Set<string>();
    const failure = await fuzzGraphQL({ baseUrl: gw.url, adminKey: ADMIN_KEY, fixture }, schema, {
      seed: SEED,
      runs: RUNS,
      onResult: (mutation) => seen.add(mutation),
    });
    expect(failure).toBeUndefined();
    const mutations = Object.keys(schema.getMutationType()?.getFields() ?? {});
    expect(mutations.length).toBeGreaterThanOrEqual(26);
    expect(mutations.filter((m) => !seen.has(m))).toEqual([]);
  });
});
