import { createRoute } from '@hono/zod-openapi';
import { z } from 'zod';
import { CreateApiKeyInput, createApiKey, listApiKeys, revokeApiKey } from '../../domain/access/api-keys.js';
import { PageQuery } from '../../domain/shared/pagination.js';
import type { Runtime } from '../../domain/shared/runtime.js';
import type { RestApp } from '../env.js';
import { ApiKey, ApiKeyParams, errorResponses, listOf, Message, OrgParams, ok } from '../schemas.js';
import { apiKeyJson, pageJson } from '../serializers.js';

const tags = ['API keys'];

export function registerApiKeyRoutes(rt: Runtime, app: RestApp): void {
  app.openapi(
    createRoute({
      method: 'post',
      path: '/orgs/{org_id}/api-keys',
      operationId: 'createApiKey',
      tags,
      summary: 'Create an API key',
      description: 'The secret is in `api_key` and is shown only in this response; only its hash is stored. Requires `admin`.',
      request: { params: OrgParams, body: { content: { 'application/json': { schema: CreateApiKeyInput } }, required: true } },
      responses: { 201: ok(z.object({ api_key: z.string(), key: ApiKey }), 'Created'), ...errorResponses },
    }),
    async (c) => {
      const { org_id } = c.req.valid('param');
      const { secret, key } = await createApiKey(rt, c.get('principal'), org_id, c.req.valid('json'));
      return c.json({ api_key: secret, key: apiKeyJson(key) }, 201);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/orgs/{org_id}/api-keys',
      operationId: 'listApiKeys',
      tags,
      summary: 'List API keys (never their secrets)',
      description:
        'Every key of the organisation, revoked ones included (revoked_at), with its prefix but never its secret. Requires `admin`.',
      request: { params: OrgParams, query: PageQuery },
      responses: { 200: ok(listOf('api_keys', ApiKey)), ...errorResponses },
    }),
    async (c) => {
      const { org_id } = c.req.valid('param');
      const page = await listApiKeys(rt, c.get('principal'), org_id, c.req.valid('query'));
      return c.json(pageJson('api_keys', page, apiKeyJson), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'delete',
      path: '/orgs/{org_id}/api-keys/{key_id}',
      operationId: 'revokeApiKey',
      tags,
      summary: 'Revoke an API key',
      description: 'Takes effect on the next request. Revoking a revoked key succeeds again.',
      request: { params: ApiKeyParams },
      responses: { 200: ok(Message), ...errorResponses },
    }),
    async (c) => {
      const { org_id, key_id } = c.req.valid('param');
      await revokeApiKey(rt, c.get('principal'), org_id, key_id);
      return c.json({ message: 'API key revoked successfully' }, 200);
    },
  );
}
