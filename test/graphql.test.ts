import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKey, startGateway, type TestGateway } from './helpers/app.js';
import { results, wsClient } from './helpers/graphql-ws.js';

let gw: TestGateway;
beforeAll(async () => {
  gw = await startGateway();
});
afterAll(async () => {
  await gw?.stop();
});

const codeOf = (body: any) => body.errors?.[0]?.extensions?.code;

describe('GraphQL operations', () => {
  it('runs every write as a mutation and reads it back', async () => {
    const ws = await gw.gql(
      `mutation { createWorkspace(orgId: "gql", input: { name: "G", tags: ["a"] }) { id name tags bucketStatus orgId } }`,
    );
    expect(ws.body.errors).toBeUndefined();
    const wsId = ws.body.data.createWorkspace.id;
    expect(ws.body.data.createWorkspace).toMatchObject({ name: 'G', tags: ['a'], orgId: 'gql' });

    const upd = await gw.gql(`mutation($id: ID!) { updateWorkspace(id: $id, input: { description: "d" }) { name description } }`, {
      id: wsId,
    });
    expect(upd.body.data.updateWorkspace).toEqual({ name: 'G', description: 'd' });

    const vol = await gw.gql(
      `mutation($ws: ID!) { createVolume(workspaceId: $ws, input: { name: "v1", indexingMode: manual }) { id name indexingMode chunkingStrategy status embeddingModelId workspace { id } } }`,
      { ws: wsId },
    );
    expect(vol.body.data.createVolume).toMatchObject({
      name: 'v1',
      indexingMode: 'manual',
      chunkingStrategy: 'recursive',
      status: 'active',
      embeddingModelId: 'hash-1024',
      workspace: { id: wsId },
    });
    const volId = vol.body.data.createVolume.id;

    const updV = await gw.gql(`mutation($id: ID!) { updateVolume(id: $id, input: { name: "v2", tags: ["t"] }) { name tags } }`, {
      id: volId,
    });
    expect(updV.body.data.updateVolume).toEqual({ name: 'v2', tags: ['t'] });

    const mount = await gw.gql(
      `mutation($v: ID!) { createMount(volumeId: $v, input: { appId: "bot", pathPattern: "notes/", accessLevel: write }) { id appId pathPattern accessLevel grantedBy volume { id } } }`,
      { v: volId },
    );
    expect(mount.body.data.createMount).toMatchObject({
      appId: 'bot',
      pathPattern: '/notes/**',
      accessLevel: 'write',
      grantedBy: 'admin',
      volume: { id: volId },
    });

    const read = await gw.gql(`query($id: ID!) { volume(id: $id) { name mounts { totalCount edges { node { appId } } } } }`, { id: volId });
    expect(read.body.data.volume).toEqual({ name: 'v2', mounts: { totalCount: 1, edges: [{ node: { appId: 'bot' } }] } });

    const delM = await gw.gql(`mutation($id: ID!) { deleteMount(id: $id) { id message } }`, { id: mount.body.data.createMount.id });
    expect(delM.body.data.deleteMount.message).toBe('Mount removed successfully');
    const delV = await gw.gql(`mutation($id: ID!) { deleteVolume(id: $id) { message } }`, { id: volId });
    expect(delV.body.data.deleteVolume.message).toBe('Volume deleted successfully');
    const delW = await gw.gql(`mutation($id: ID!) { deleteWorkspace(id: $id) { message } }`, { id: wsId });
    expect(delW.body.data.deleteWorkspace.message).toBe('Workspace deleted successfully');
    expect((await gw.gql(`query($id: ID!) { workspace(id: $id) { id } }`, { id: wsId })).body.data.workspace).toBeNull();
  });

  it('creates, lists and revokes API keys; the secret is returned once', async () => {
    const created = await gw.gql(
      `mutation { createApiKey(orgId: "gql", input: { name: "ci", scopes: ["workspaces:read"] }) { apiKey key { id scopes revokedAt } } }`,
    );
    const { apiKey, key } = created.body.data.createApiKey;
    expect(apiKey).toMatch(/^vgk_/);
    expect((await gw.gql('{ viewer { kind orgId scopes } }', {}, apiKey)).body.data.viewer).toEqual({
      kind: 'key',
      orgId: 'gql',
      scopes: ['workspaces:read'],
    });
    const list = await gw.gql(`{ apiKeys(orgId: "gql") { edges { node { id prefix } } } }`);
    expect(list.body.data.apiKeys.edges.map((e: any) => e.node.id)).toContain(key.id);
    expect(JSON.stringify(list.body)).not.toContain(apiKey);
    const revoked = await gw.gql(`mutation($id: ID!) { revokeApiKey(id: $id) { revokedAt } }`, { id: key.id });
    expect(revoked.body.data.revokeApiKey.revokedAt).not.toBeNull();
    expect(codeOf((await gw.gql('{ viewer { kind } }', {}, apiKey)).body)).toBe('UNAUTHENTICATED');
  });
});

describe('GraphQL volume label, type, mount path and owner', () => {
  it('creates with the defaults, takes every field, updates them, and names bad fields', async () => {
    const ws = (await gw.call('POST', '/v1/orgs/gql-display/workspaces', { name: 'd' })).body.workspace_id;
    const fields = 'id name label volumeType mountPath owner { id name }';
    const plain = await gw.gql(`mutation($ws: ID!) { createVolume(workspaceId: $ws, input: { name: "Café Notes" }) { ${fields} } }`, {
      ws,
    });
    expect(plain.body.errors).toBeUndefined();
    expect(plain.body.data.createVolume).toMatchObject({
      name: 'Café Notes',
      label: 'Café Notes',
      volumeType: 'data',
      mountPath: '/data/cafe-notes',
      owner: { id: 'admin', name: 'platform admin' },
    });
    const full = await gw.gql(
      `mutation($ws: ID!) { createVolume(workspaceId: $ws, input: { name: "w", label: "Weights", volumeType: model, mountPath: "/models/w" }) { ${fields} } }`,
      { ws },
    );
    expect(full.body.data.createVolume).toMatchObject({ label: 'Weights', volumeType: 'model', mountPath: '/models/w' });
    const id = full.body.data.createVolume.id;

    const upd = await gw.gql(
      `mutation($id: ID!) { updateVolume(id: $id, input: { label: "New weights", volumeType: workspace, mountPath: "/ws/w", name: "w2" }) { name label volumeType mountPath version } }`,
      { id },
    );
    expect(upd.body.data.updateVolume).toEqual({
      name: 'w2',
      label: 'New weights',
      volumeType: 'workspace',
      mountPath: '/ws/w',
      version: 2,
    });
    const read = await gw.gql(`query($id: ID!) { volume(id: $id) { label volumeType mountPath } }`, { id });
    expect(read.body.data.volume).toEqual({ label: 'New weights', volumeType: 'workspace', mountPath: '/ws/w' });

    for (const [input, path, type] of [
      ['{ name: "x", label: "" }', ['input', 'label'], 'string_too_short'],
      [`{ name: "x", label: "${'l'.repeat(129)}" }`, ['input', 'label'], 'string_too_long'],
      ['{ name: "x", label: "a\\nb" }', ['input', 'label'], 'string_pattern_mismatch'],
      ['{ name: "x", mountPath: "relative/path" }', ['input', 'mountPath'], 'value_error'],
      ['{ name: "x", mountPath: "/data/../etc" }', ['input', 'mountPath'], 'value_error'],
      ['{ name: "x", mountPath: "/data/" }', ['input', 'mountPath'], 'value_error'],
    ] as const) {
      const res = await gw.gql(`mutation($ws: ID!) { createVolume(workspaceId: $ws, input: ${input}) { id } }`, { ws });
      expect(codeOf(res.body), input).toBe('VALIDATION_FAILED');
      expect(res.body.errors[0].extensions.fields, input).toEqual([expect.objectContaining({ path, type })]);
    }
    const badUpdate = await gw.gql(`mutation($id: ID!) { updateVolume(id: $id, input: { mountPath: "/a//b" }) { id } }`, { id });
    expect(badUpdate.body.errors[0].extensions).toMatchObject({
      code: 'VALIDATION_FAILED',
      fields: [{ path: ['input', 'mountPath'], type: 'value_error' }],
    });
    const badType = await gw.gql(`mutation($id: ID!) { updateVolume(id: $id, input: { volumeType: shared }) { id } }`, { id });
    expect(badType.body.errors[0].message).toMatch(/VolumeType/);
    expect((await gw.gql(`query($id: ID!) { volume(id: $id) { mountPath volumeType version } }`, { id })).body.data.volume).toEqual({
      mountPath: '/ws/w',
      volumeType: 'workspace',
      version: 2,
    });
    // The dry run answers the same field.
    const dry = await gw.gql(
      `mutation($ws: ID!) { validateVolume(workspaceId: $ws, input: { name: "y", mountPath: "nope" }) { valid errors { path type } } }`,
      { ws },
    );
    expect(dry.body.data.validateVolume).toEqual({ valid: false, errors: [{ path: ['input', 'mountPath'], type: 'value_error' }] });
  });

  it('Volume.owner names the creating key (or platform admin), in one query for a whole page', async () => {
    const ws = (await gw.call('POST', '/v1/orgs/gql-owner/workspaces', { name: 'o' })).body.workspace_id;
    const keys: string[] = [];
    for (const name of ['alpha-bot', 'beta-bot', 'gamma-bot']) {
      const made = await gw.call('POST', '/v1/orgs/gql-owner/api-keys', { name, scopes: ['volumes:write', 'volumes:read'] });
      keys.push(made.body.key.key_id);
      const created = await gw.gql(
        `mutation($ws: ID!, $n: String!) { createVolume(workspaceId: $ws, input: { name: $n }) { owner { id name } } }`,
        { ws, n: `by-${name}` },
        made.body.api_key,
      );
      expect(created.body.data.createVolume.owner).toEqual({ id: `key:${made.body.key.key_id}`, name });
    }
    await gw.call('POST', `/v1/orgs/gql-owner/workspaces/${ws}/volumes`, { name: 'by-admin' });
    const query = `query($ws: ID!) { volumes(workspaceId: $ws, sort: "name") { edges { node { name owner { id name } } } } }`;
    await gw.gql('{ __typename }');
    gw.queries.length = 0;
    const res = await gw.gql(query, { ws });
    expect(res.body.errors).toBeUndefined();
    expect(res.body.data.volumes.edges.map((e: any) => e.node)).toEqual([
      { name: 'by-admin', owner: { id: 'admin', name: 'platform admin' } },
      { name: 'by-alpha-bot', owner: { id: `key:${keys[0]}`, name: 'alpha-bot' } },
      { name: 'by-beta-bot', owner: { id: `key:${keys[1]}`, name: 'beta-bot' } },
      { name: 'by-gamma-bot', owner: { id: `key:${keys[2]}`, name: 'gamma-bot' } },
    ]);
    expect(gw.queries.filter((q) => /"api_keys"/.test(q))).toHaveLength(1);
  });
});

describe('GraphQL errors', () => {
  it('answers each mutation failure with a stable extensions.code', async () => {
    const wsId = (await gw.gql(`mutation { createWorkspace(orgId: "errs", input: { name: "E" }) { id } }`)).body.data.createWorkspace.id;
    const volId = (await gw.gql(`mutation($w: ID!) { createVolume(workspaceId: $w, input: { name: "dup" }) { id } }`, { w: wsId })).body
      .data.createVolume.id;
    const reader = await createKey(gw, 'errs', ['workspaces:read', 'volumes:read']);
    const cases: [string, Record<string, unknown>, string, string?][] = [
      [`mutation { createWorkspace(orgId: "errs", input: { name: "" }) { id } }`, {}, 'VALIDATION_FAILED'],
      [`mutation { createWorkspace(input: { name: "x" }) { id } }`, {}, 'VALIDATION_FAILED'],
      [`mutation { createWorkspace(orgId: "errs", input: { name: "x" }) { id } }`, {}, 'FORBIDDEN', reader],
      [`mutation { updateWorkspace(id: "nope", input: { name: "x" }) { id } }`, {}, 'NOT_FOUND'],
      [`mutation { deleteWorkspace(id: "nope") { id } }`, {}, 'NOT_FOUND'],
      [`mutation($w: ID!) { createVolume(workspaceId: $w, input: { name: "dup" }) { id } }`, { w: wsId }, 'CONFLICT'],
      [`mutation($v: ID!) { updateVolume(id: $v, input: { tags: [""] }) { id } }`, { v: volId }, 'VALIDATION_FAILED'],
      [`mutation($v: ID!) { deleteVolume(id: $v) { id } }`, { v: volId }, 'FORBIDDEN', reader],
      [
        `mutation($v: ID!) { createMount(volumeId: $v, input: { appId: "a", pathPattern: "/../x" }) { id } }`,
        { v: volId },
        'VALIDATION_FAILED',
      ],
      [`mutation { deleteMount(id: "nope") { id } }`, {}, 'NOT_FOUND'],
      [`mutation { createApiKey(orgId: "errs", input: { name: "k", scopes: ["root"] }) { apiKey } }`, {}, 'VALIDATION_FAILED'],
      [`mutation { revokeApiKey(id: "nope") { id } }`, {}, 'NOT_FOUND'],
      [`mutation($id: ID!) { deleteVolume(id: $id) { id } }`, { id: 'a-b' }, 'NOT_FOUND'],
      // Text that cannot be stored is refused before anything runs (the input policy), ids included.
      [`mutation($id: ID!) { deleteVolume(id: $id) { id } }`, { id: 'a\u0000b' }, 'BAD_USER_INPUT'],
      [`mutation($id: ID!) { updateWorkspace(id: $id, input: { name: "x" }) { id } }`, { id: '\u0000' }, 'BAD_USER_INPUT'],
      [`mutation($id: ID!) { updateWorkspace(id: $id, input: { name: "x" }) { id } }`, { id: '\ud800' }, 'BAD_USER_INPUT'],
      [`mutation { createWorkspace(orgId: "bad org", input: { name: "x" }) { id } }`, {}, 'VALIDATION_FAILED'],
      [`mutation { createApiKey(orgId: "errs", input: { name: "k", scopes: ["admin"] }) { apiKey } }`, {}, 'FORBIDDEN', reader],
    ];
    for (const [query, variables, code, key] of cases) {
      const res = await gw.gql(query, variables, key);
      expect(codeOf(res.body), query).toBe(code);
    }
  });

  it('names the bad fields as the GraphQL input does, and 403s name the scope', async () => {
    const res = await gw.gql(`mutation { createWorkspace(orgId: "errs", input: { name: "ok", subscriptionPlanId: "" }) { id } }`);
    expect(res.body.errors[0].extensions.fields).toEqual([
      { path: ['input', 'subscriptionPlanId'], message: 'String should have at least 1 character', type: 'string_too_short' },
    ]);
    const volumesOnly = await createKey(gw, 'errs', ['volumes:read']);
    const denied = await gw.gql('{ workspaces { totalCount } }', {}, volumesOnly);
    expect(denied.body.errors[0].extensions).toMatchObject({ code: 'FORBIDDEN', required_permission: 'workspaces:read' });
  });

  it('variable errors keep the variable and the path inside it, with BAD_USER_INPUT and the spec status', async () => {
    const query = 'mutation($i: CreateVolumeInput!) { createVolume(workspaceId: "x", input: $i) { id } }';
    const send = (accept: string, variables: unknown) =>
      fetch(`${gw.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept, authorization: 'Bearer test-admin-key-0123456789abcdef' },
        body: JSON.stringify({ query, variables }),
      });
    const modern = await send('application/graphql-response+json', { i: { name: 42, maxFileCount: 'many' } });
    expect(modern.status).toBe(400);
    expect(modern.headers.get('content-type')).toMatch(/^application\/graphql-response\+json/);
    const body = await modern.json();
    expect(body.data).toBeUndefined();
    expect(body.errors.map((e: any) => [e.message, e.extensions])).toEqual(
      expect.arrayContaining([
        [
          'Variable "$i" got invalid value "many" at "i.maxFileCount"; Int cannot represent non-integer value: "many"',
          { code: 'BAD_USER_INPUT' },
        ],
        ['Variable "$i" got invalid value 42 at "i.name"; String cannot represent a non string value: 42', { code: 'BAD_USER_INPUT' }],
      ]),
    );
    // A missing variable too; legacy application/json clients keep the 200 the spec gives them.
    const legacy = await send('application/json', {});
    expect(legacy.status).toBe(200);
    const missing = await legacy.json();
    expect(missing.errors[0]).toMatchObject({
      message: 'Variable "$i" of required type "CreateVolumeInput!" was not provided.',
      extensions: { code: 'BAD_USER_INPUT' },
    });
  });

  it('refuses a page larger than 200 naming the argument (no silent cap), as entries and REST limit do', async () => {
    const ws = (await gw.call('POST', '/v1/orgs/pages/workspaces', { name: 'p' })).body.workspace_id;
    for (const [query, argument] of [
      ['{ workspaces(orgId: "pages", first: 500) { totalCount } }', 'first'],
      ['{ workspaces(orgId: "pages", last: 201) { totalCount } }', 'last'],
      [`{ workspace(id: "${ws}") { volumes(first: 1000) { totalCount } } }`, 'first'],
      ['{ workspaces(orgId: "pages", first: -1) { totalCount } }', 'first'],
    ] as const) {
      const res = await gw.gql(query);
      expect(res.body.errors?.[0]?.extensions, query).toEqual({
        code: 'VALIDATION_FAILED',
        fields: [{ path: [argument], message: `${argument} must be between 0 and 200`, type: 'page_size' }],
        requestId: expect.any(String),
      });
      expect(JSON.stringify(res.body.data)).not.toMatch(/totalCount/);
    }
    const ok = await gw.gql('{ workspaces(orgId: "pages", first: 200) { totalCount } }');
    expect(ok.body).toEqual({ data: { workspaces: { totalCount: 1 } } });
  });

  it('answers null, not an error, for ids that cannot exist', async () => {
    const res = await gw.gql('query($id: ID!) { workspace(id: $id) { id } volume(id: $id) { id } }', { id: 'x' });
    expect(res.body).toEqual({ data: { workspace: null, volume: null } });
  });

  it('requires credentials for every root field but __typename', async () => {
    expect((await gw.gql('{ __typename }', {}, null)).body).toEqual({ data: { __typename: 'Query' } });
    for (const q of ['{ workspaces { totalCount } }', '{ viewer { kind } }', 'mutation { deleteMount(id: "x") { id } }']) {
      expect(codeOf((await gw.gql(q, {}, null)).body)).toBe('UNAUTHENTICATED');
      expect(codeOf((await gw.gql(q, {}, 'wrong-key')).body)).toBe('UNAUTHENTICATED');
    }
  });

  it('refuses queries beyond the depth limit before resolving anything', async () => {
    const deep = `{ workspaces { edges { node { volumes { edges { node { workspace { volumes { edges { node { workspace { volumes { edges { node { id } } } } } } } } } } } } } } }`;
    gw.queries.length = 0;
    const res = await gw.gql(deep);
    expect(res.body.data?.workspaces ?? null).toBeNull();
    expect(res.body.errors[0].extensions).toMatchObject({ code: 'QUERY_TOO_COMPLEX', maxDepth: 12 });
    expect(res.body.errors[0].message).toBe('Query is too deep');
    expect(gw.queries).toEqual([]);

    const wide = await gw.gql('{ workspaces(first: 200) { edges { node { volumes(first: 200) { edges { node { id name } } } } } } }');
    expect(wide.body.errors[0].extensions).toMatchObject({ code: 'QUERY_TOO_COMPLEX', maxComplexity: 20000 });
  });
});

describe('GraphQL performance', () => {
  async function seed(org: string, workspaces: number, volumes: number, mounts: number) {
    for (let w = 0; w < workspaces; w++) {
      const ws = (await gw.call('POST', `/v1/orgs/${org}/workspaces`, { name: `w${w}` })).body.workspace_id;
      for (let v = 0; v < volumes; v++) {
        const vol = (await gw.call('POST', `/v1/orgs/${org}/workspaces/${ws}/volumes`, { name: `v${v}` })).body.volume.volume_id;
        for (let m = 0; m < mounts; m++) {
          await gw.call('POST', `/v1/orgs/${org}/workspaces/${ws}/volumes/${vol}/mounts`, { app_id: `app${m}` });
        }
      }
    }
  }

  const nested = `query($org: ID!) { workspaces(orgId: $org, first: 10) { totalCount edges { node { name volumes(first: 10) { totalCount edges { node { name workspace { name } mounts(first: 10) { totalCount edges { node { appId volume { name } } } } } } } } } } }`;

  async function countQueries(org: string): Promise<{ sql: number; volumes: number }> {
    await gw.gql('{ __typename }'); // warm up
    gw.queries.length = 0;
    const res = await gw.gql(nested, { org });
    expect(res.body.errors).toBeUndefined();
    const volumes = res.body.data.workspaces.edges.reduce((n: number, e: any) => n + e.node.volumes.edges.length, 0);
    return { sql: gw.queries.length, volumes };
  }

  it('resolves workspaces → volumes → mounts with a constant number of SQL statements', async () => {
    await seed('small', 1, 2, 1);
    await seed('large', 3, 4, 3);
    const small = await countQueries('small');
    const large = await countQueries('large');
    expect(small.volumes).toBe(2);
    expect(large.volumes).toBe(12);
    expect(large.sql).toBe(small.sql);
    expect(large.sql).toBeGreaterThan(0);
    expect(large.sql).toBeLessThanOrEqual(8);
  });
});

describe('GraphQL subscriptions', () => {
  it('streams bucketStatus over graphql-ws, authorised at connection_init', async () => {
    const wsId = (await gw.call('POST', '/v1/orgs/subs/workspaces', { name: 's' })).body.workspace_id;
    const client = wsClient(gw.url, 'test-admin-key-0123456789abcdef');
    const events = await results(client, `subscription($id: ID!) { bucketStatus(workspaceId: $id) { workspaceId bucketStatus error } }`, {
      id: wsId,
    });
    await client.dispose();
    expect(events.at(-1)).toEqual({ data: { bucketStatus: { workspaceId: wsId, bucketStatus: 'active', error: null } } });
  });

  it('closes a graphql-ws connection with bad credentials and hides other orgs', async () => {
    const wsId = (await gw.call('POST', '/v1/orgs/hidden/workspaces', { name: 'h' })).body.workspace_id;
    const bad = wsClient(gw.url, 'nope', { keyParam: 'apiKey' });
    await expect(results(bad, '{ __typename }')).rejects.toMatchObject({ code: 4403 });
    await bad.dispose();

    const other = await createKey(gw, 'elsewhere', ['workspaces:read']);
    const client = wsClient(gw.url, other, { keyParam: 'apiKey' });
    const received = await results(client, `subscription($id: ID!) { bucketStatus(workspaceId: $id) { bucketStatus } }`, { id: wsId });
    await client.dispose();
    expect(received[0]?.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
  });

  it('streams bucketStatus over SSE', async () => {
    const wsId = (await gw.call('POST', '/v1/orgs/subs/workspaces', { name: 'sse' })).body.workspace_id;
    const res = await fetch(`${gw.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream', 'x-api-key': 'test-admin-key-0123456789abcdef' },
      body: JSON.stringify({
        query: `subscription($id: ID!) { bucketStatus(workspaceId: $id) { bucketStatus } }`,
        variables: { id: wsId },
      }),
    });
    expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
    const text = await res.text(); // the stream completes after the terminal state
    const data = text
      .split('\n')
      .filter((l) => l.startsWith('data:'))
      .map((l) => l.slice(5).trim())
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l));
    expect(data.at(-1)).toEqual({ data: { bucketStatus: { bucketStatus: 'active' } } });
    expect(text).toContain('event: complete');
  });
});
