import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from './helpers/app.js';

let gw: TestGateway;
beforeAll(async () => {
  gw = await startGateway();
});
afterAll(async () => {
  await gw?.stop().catch(() => {});
});

describe('when the database fails', () => {
  it('masks internals as 500 / INTERNAL_SERVER_ERROR and readiness turns 503', async () => {
    expect((await gw.call('GET', '/readyz')).status).toBe(200);
    await gw.pg?.close();

    const rest = await gw.call('GET', '/v1/orgs/acme/workspaces');
    expect(rest.status).toBe(500);
    expect(rest.body).toMatchObject({
      error: 'INTERNAL_SERVER_ERROR',
      message: 'An unexpected error occurred',
      details: {},
      status_code: 500,
    });
    expect(JSON.stringify(rest.body)).not.toMatch(/prisma|pglite|stack/i);

    const gql = await gw.gql('{ workspaces(orgId: "acme") { totalCount } }');
    expect(gql.body.errors[0]).toMatchObject({ message: 'Unexpected error.', extensions: { code: 'INTERNAL_SERVER_ERROR' } });
    expect(JSON.stringify(gql.body)).not.toMatch(/prisma|pglite|stack/i);

    const ready = await gw.call('GET', '/readyz');
    expect(ready.status).toBe(503);
    expect((await gw.call('GET', '/healthz')).status).toBe(200);
  });
});
