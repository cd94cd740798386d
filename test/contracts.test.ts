import fs from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { CONFIG_VARIABLES } from '../src/config.js';
import { printGraphQLSchema } from '../src/graphql/print.js';
import { openApiDocument } from '../src/rest/openapi.js';

// The committed contracts must match the code; regenerate both with `npm run schema:print`.
describe('committed contracts', () => {
  it('schema.graphql is current', async () => {
    const committed = await fs.readFile(new URL('../schema.graphql', import.meta.url), 'utf8');
    expect(committed, 'schema.graphql is stale: run npm run schema:print').toBe(printGraphQLSchema());
  });

  it('docs/openapi.json is current and describes every /v1 route', async () => {
    const doc = (await openApiDocument()) as { openapi: string; paths: Record<string, Record<string, unknown>> };
    const committed = JSON.parse(await fs.readFile(new URL('../docs/openapi.json', import.meta.url), 'utf8'));
    expect(committed, 'docs/openapi.json is stale: run npm run schema:print').toEqual(doc);
    expect(doc.openapi).toBe('3.1.0');
    const routes = Object.entries(doc.paths).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${p}`));
    for (const route of [
      'GET /v1/orgs/{org_id}/workspaces',
      'POST /v1/orgs/{org_id}/workspaces',
      'GET /v1/orgs/{org_id}/workspaces/{workspace_id}',
      'PUT /v1/orgs/{org_id}/workspaces/{workspace_id}',
      'DELETE /v1/orgs/{org_id}/workspaces/{workspace_id}',
      'GET /v1/orgs/{org_id}/workspaces/{workspace_id}/volumes',
      'POST /v1/orgs/{org_id}/workspaces/{workspace_id}/volumes',
      'PATCH /v1/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}',
      'DELETE /v1/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}/mounts/{mount_id}',
      'POST /v1/orgs/{org_id}/api-keys',
      'PUT /v1/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}/entries/{path}',
      'GET /v1/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}/entries/{path}',
      'DELETE /v1/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}/entries/{path}',
      'GET /v1/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}/list',
      'POST /v1/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}/entries/{path}/upload',
      'GET /v1/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}/entries/{path}/download',
      'GET /v1/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}/locks',
      'POST /v1/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}/locks',
      'DELETE /v1/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}/locks/{partition}',
    ]) {
      expect(routes).toContain(route);
    }
  });

  it('.env.example documents every variable the config reads, and only those', async () => {
    const example = await fs.readFile(new URL('../.env.example', import.meta.url), 'utf8');
    const documented = [...example.matchAll(/^([A-Z0-9_]+)=/gm)].map((m) => m[1]);
    expect(documented.sort()).toEqual([...CONFIG_VARIABLES].sort());
  });
});
