import { serverAudits } from 'graphql-http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from './helpers/app.js';

let gw: TestGateway;
beforeAll(async () => {
  gw = await startGateway();
});
afterAll(async () => {
  await gw?.stop();
});

describe('GraphQL over HTTP spec (graphql-http server audits)', () => {
  it('passes every MUST and SHOULD audit against /graphql', async () => {
    const audits = serverAudits({ url: () => `${gw.url}/graphql`, fetchFn: fetch });
    // MAY audits (GET with form-encoded variables) stay off: GETs need CSRF-safe headers here.
    const must = audits.filter((a) => a.name.startsWith('MUST') || a.name.startsWith('SHOULD'));
    expect(must.length).toBeGreaterThan(10);
    const failures: string[] = [];
    for (const audit of must) {
      const result = await audit.fn();
      if (result.status !== 'ok') failures.push(`${audit.name}: ${result.reason}`);
    }
    expect(failures).toEqual([]);
  });
});
