import type { PGlite } from '@electric-sql/pglite';
import type { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type TableActivity, tableActivity, vacuumDue, vacuumWhereDue } from '../src/domain/maintenance/vacuum.js';
import { findOrCreateWorkspaceNamed } from '../src/domain/workspaces/workspaces.js';
import { createKey, startGateway, type TestGateway, waitFor } from './helpers/app.js';
import { type PgliteServer, startPgliteServer } from './helpers/pglite-server.js';

/**
 * Server mode end to end: the gateway gets only a DATABASE_URL, so it talks to Postgres through
 * @prisma/adapter-pg and applies the migrations itself at boot. The "server" is a fresh (unmigrated)
 * PGlite with pgvector behind pglite-socket, which speaks the Postgres wire protocol.
 */

let db: PgliteServer | undefined;
let pg: PGlite | undefined;
let socket: PGLiteSocketServer | undefined;
let gw: TestGateway | undefined;

/** The gateway's warnings (JSON lines). */
const warnings: string[] = [];

beforeAll(async () => {
  // maxConnections 1 (pglite-socket's default) kills the connection after any SQL error: see STACK.md.
  db = await startPgliteServer();
  ({ pg, socket } = db);
  const port = Number(socket.getServerConn().split(':').pop());
  expect(port).toBeGreaterThan(0);
  // DATABASE_POOL_SIZE defaults to 10: the whole pool fits under the socket server's cap, with headroom.
  // Warnings kept: a compiled read that fell back says why (the concurrent test below names them).
  gw = await startGateway({ DATABASE_URL: `postgres://postgres@127.0.0.1:${port}/postgres`, LOG_LEVEL: 'warn' }, { logs: warnings });
});

afterAll(async () => {
  // Each step runs even if an earlier one (or beforeAll) failed.
  await gw?.stop().catch((err) => console.error('gateway stop failed', err));
  await db?.stop();
});

const api = () => gw as TestGateway;

describe('server mode (DATABASE_URL via @prisma/adapter-pg, PGlite behind pglite-socket)', () => {
  it('migrated the empty database at boot and reports ready in server mode', async () => {
    expect(api().app.database.mode).toBe('server');
    expect(api().app.database.pglite).toBeUndefined();
    const ready = await api().call('GET', '/readyz', undefined, null);
    expect(ready.status).toBe(200);
    expect(ready.body).toEqual({ status: 'ready', database: 'server', blob_store: 'local' });

    // The migrations went through the socket into our PGlite, with pgvector and Prisma's history table.
    const applied = await pg!.query<{ migration_name: string; finished: boolean }>(
      'SELECT migration_name, finished_at IS NOT NULL AS finished FROM _prisma_migrations ORDER BY migration_name',
    );
    expect(applied.rows.length).toBeGreaterThanOrEqual(2);
    expect(applied.rows.every((r) => r.finished)).toBe(true);
    const ext = await pg!.query<{ extname: string }>("SELECT extname FROM pg_extension WHERE extname = 'vector'");
    expect(ext.rows).toHaveLength(1);
  });

  it('serves workspaces, volumes and mounts over REST and GraphQL, and survives SQL errors', async () => {
    const ws = await api().call('POST', '/v1/orgs/srv/workspaces', { name: 'Server WS', tags: ['a'] });
    expect(ws.status).toBe(201);
    expect(ws.body.bucket_status).toBe('pending');
    const wsId: string = ws.body.workspace_id;
    const active = await waitFor(async () => {
      const got = await api().call('GET', `/v1/orgs/srv/workspaces/${wsId}`);
      return got.body.bucket_status !== 'pending' ? got.body : undefined;
    });
    expect(active).toMatchObject({ bucket_status: 'active', bucket_error: null });

    const vol = await api().call('POST', `/v1/orgs/srv/workspaces/${wsId}/volumes`, { name: 'notes', tags: ['x'] });
    expect(vol.status).toBe(201);
    const volId: string = vol.body.volume.volume_id;

    const mount = await api().call('POST', `/v1/orgs/srv/workspaces/${wsId}/volumes/${volId}/mounts`, {
      app_id: 'bot',
      path_pattern: '/notes/**',
      access_level: 'write',
    });
    expect(mount.status).toBe(201);
    const mountId: string = mount.body.mount.mount_id;

    const list = await api().call('GET', `/v1/orgs/srv/workspaces/${wsId}/volumes`);
    expect(list.status).toBe(200);
    expect(list.body).toMatchObject({ total: 1, has_more: false });
    expect(list.body.volumes.map((v: { volume_id: string }) => v.volume_id)).toEqual([volId]);
    const mounts = await api().call('GET', `/v1/orgs/srv/workspaces/${wsId}/volumes/${volId}/mounts`);
    expect(mounts.body.mounts.map((m: { mount_id: string }) => m.mount_id)).toEqual([mountId]);

    // The same data through GraphQL (POST /graphql).
    const gql = await api().gql(
      `query ($org: ID!) {
        workspaces(orgId: $org, first: 5) {
          totalCount
          edges { node { id name bucketStatus volumes(first: 5) { totalCount edges { node { id name mounts(first: 5) { edges { node { id appId pathPattern accessLevel } } } } } } } }
        }
      }`,
      { org: 'srv' },
    );
    expect(gql.status).toBe(200);
    expect(gql.body.errors).toBeUndefined();
    expect(gql.body.data.workspaces.totalCount).toBe(1);
    const node = gql.body.data.workspaces.edges[0].node;
    expect(node).toMatchObject({ id: wsId, name: 'Server WS', bucketStatus: 'active' });
    expect(node.volumes.totalCount).toBe(1);
    expect(node.volumes.edges[0].node).toMatchObject({ id: volId, name: 'notes' });
    expect(node.volumes.edges[0].node.mounts.edges.map((e: { node: unknown }) => e.node)).toEqual([
      { id: mountId, appId: 'bot', pathPattern: '/notes/**', accessLevel: 'write' },
    ]);

    // A unique violation is an SQL error on one pooled connection; repeat it more times than the
    // pool has connections so every connection has seen one, and check each later query still works.
    for (let i = 0; i < 7; i++) {
      const dup = await api().call('POST', `/v1/orgs/srv/workspaces/${wsId}/volumes`, { name: 'notes' });
      expect(dup.status, JSON.stringify(dup.body)).toBe(409);
      expect(dup.body.error).toBe('CONFLICT');
      const again = await api().call('GET', `/v1/orgs/srv/workspaces/${wsId}/volumes/${volId}`);
      expect(again.status).toBe(200);
    }
    const dupMount = await api().call('POST', `/v1/orgs/srv/workspaces/${wsId}/volumes/${volId}/mounts`, {
      app_id: 'bot',
      path_pattern: '/notes/**',
    });
    expect(dupMount.status).toBe(409);

    const invalid = await api().call('POST', `/v1/orgs/srv/workspaces/${wsId}/volumes`, { name: '' });
    expect(invalid.status).toBe(422);
    expect(invalid.body.detail[0].loc).toEqual(['body', 'name']);

    // Concurrent requests after the errors: the pool and the socket server's queue both hold up.
    const burst = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        i % 3 === 0
          ? api().call('POST', `/v1/orgs/srv/workspaces/${wsId}/volumes`, { name: 'notes' })
          : api().call('POST', `/v1/orgs/srv/workspaces/${wsId}/volumes`, { name: `v-${i}` }),
      ),
    );
    expect(burst.map((r) => r.status)).toEqual(Array.from({ length: 12 }, (_, i) => (i % 3 === 0 ? 409 : 201)));

    const gqlAfter = await api().gql('query ($id: ID!) { volume(id: $id) { id name workspace { id } } }', { id: volId });
    expect(gqlAfter.body).toEqual({ data: { volume: { id: volId, name: 'notes', workspace: { id: wsId } } } });
    const gqlDup = await api().gql('mutation ($ws: ID!) { createVolume(workspaceId: $ws, input: { name: "notes" }) { id } }', { ws: wsId });
    expect(gqlDup.body.errors?.[0]?.extensions?.code).toBe('CONFLICT');
    expect((await api().call('GET', `/v1/orgs/srv/workspaces/${wsId}/volumes`)).body.total).toBe(9);

    // Deleting cascades through Postgres over the wire as well.
    expect((await api().call('DELETE', `/v1/orgs/srv/workspaces/${wsId}`)).status).toBe(200);
    const left = await pg!.query<{ n: number }>(
      'SELECT ((SELECT count(*) FROM volumes) + (SELECT count(*) FROM mounts) + (SELECT count(*) FROM workspaces))::int AS n',
    );
    expect(left.rows[0]?.n).toBe(0);
  });

  it('answers a nested read by an org key with one compiled statement on the pool, as the resolvers do', async () => {
    const ws = (await api().call('POST', '/v1/orgs/srv-compiled/workspaces', { name: 'c' })).body.workspace_id;
    const base = `/v1/orgs/srv-compiled/workspaces/${ws}/volumes`;
    const vol = (await api().call('POST', base, { name: 'v', indexing_mode: 'manual' })).body.volume.volume_id;
    for (const p of ['/a.txt', '/b/c.txt']) await api().call('PUT', `${base}/${vol}/entries${p}`, { content_text: p, ttl_seconds: 600 });
    await api().call('POST', `${base}/${vol}/locks`, { partition: 'jobs', app_id: 'x', ttl_seconds: 600 });
    const key = await createKey(api(), 'srv-compiled', ['workspaces:read', 'volumes:read', 'entries:read']);
    const q = `{ workspaces(first: 5) { edges { cursor node { name createdAt volumes(first: 5) { edges { node { name usedBytes
      entries(first: 1) { totalCount pageInfo { hasNextPage endCursor } edges { node { path expiresAt } } }
      locks { partition fencingToken expiresAt } } } } } } } }`;
    await api().gql('{ __typename }', {}, key);
    api().queries.length = 0;
    const compiled = await api().gql(q, {}, key);
    expect(api().queries).toHaveLength(1);
    expect(api().queries[0]).toMatch(/^SELECT json_build_object\(/);
    api().app.runtime.settings.compiledReads = false;
    const resolved = await api()
      .gql(q, {}, key)
      .finally(() => {
        api().app.runtime.settings.compiledReads = true;
      });
    expect(compiled.body.errors).toBeUndefined();
    expect(compiled.body).toEqual(resolved.body);
    expect(compiled.body.data.workspaces.edges[0].node.volumes.edges[0].node.entries.totalCount).toBe(2);

    // pglite-socket serves every connection from one session, as a pooler in transaction mode would:
    // a second connection preparing the same name is refused (42P05), and the gateway stops
    // preparing rather than fail. Several at once reach several pooled connections.
    api().queries.length = 0;
    const many = await Promise.all([1, 2, 3, 4, 5, 6].map(() => api().gql(q, {}, key)));
    for (const r of many) expect(r.body).toEqual(resolved.body);
    // Written so that a failure names the statements that were not the compiled read, and why it fell back.
    const fellBack = warnings.filter((w) => w.includes('compiled read')).join('\n');
    expect(
      api().queries.filter((s) => !/^SELECT json_build_object\(/.test(s)),
      fellBack,
    ).toEqual([]);
  });

  it('finds or creates a named workspace once under concurrent callers on the pool (the environment dialect across replicas)', async () => {
    // Each call on its own pooled connection, as replicas' calls are: the look-up and the insert run
    // in one transaction under a lock on the name, so no two callers both find none and both create
    // one. pglite-socket runs one transaction at a time, so here this fails a look-up and insert
    // that are not one transaction; the lock's own part (Postgres runs transactions side by side)
    // was checked on PostgreSQL 15: 8 callers, 3–5 rows a round without it, 1 with it.
    const admin = { kind: 'platform', subject: 'admin' } as const;
    const results = await Promise.all(
      Array.from({ length: 8 }, () =>
        findOrCreateWorkspaceNamed(api().app.runtime, admin, 'srv-race', { name: 'env-one', tags: ['environment'] }),
      ),
    );
    expect(results.filter((r) => r.created)).toHaveLength(1);
    expect(new Set(results.map((r) => r.workspace.id)).size).toBe(1);
    expect(await api().app.database.prisma.workspace.count({ where: { orgId: 'srv-race', name: 'env-one' } })).toBe(1);
    // Another name in the same org is another workspace.
    const other = await findOrCreateWorkspaceNamed(api().app.runtime, admin, 'srv-race', { name: 'env-two' });
    expect(other.created).toBe(true);
  });

  it('leaves vacuuming to the server (autovacuum)', async () => {
    const rt = api().app.runtime;
    expect(rt.settings.vacuum.byGateway).toBe(false);
    // A table with 200 dead rows of 200: an embedded gateway would vacuum it now.
    await pg!.exec('CREATE TABLE vacuum_probe AS SELECT g FROM generate_series(1, 200) g; DELETE FROM vacuum_probe;');
    const probe = async () => (await tableActivity(rt)).find((t) => t.table === 'vacuum_probe');
    expect(await probe()).toMatchObject({ dead: 200 });
    expect(vacuumDue((await probe()) as TableActivity, true)).toBe('vacuum');
    expect(await vacuumWhereDue(rt, true)).toEqual([]);
    expect(await probe()).toMatchObject({ dead: 200 });
    await pg!.exec('DROP TABLE vacuum_probe');
  });

  it('stops cleanly: every pooled connection to the database is closed', async () => {
    expect(socket!.getStats().activeConnections).toBeGreaterThan(0);
    const gateway = api();
    await gateway.stop();
    gw = undefined;
    await waitFor(async () => socket!.getStats().activeConnections === 0);
    // The database is still fine for the next client.
    expect((await pg!.query<{ one: number }>('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
  });
});
