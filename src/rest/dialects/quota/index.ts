import { createRoute, type OpenAPIHono } from '@hono/zod-openapi';
import { z } from 'zod';
import type { Principal } from '../../../domain/access/principal.js';
import { MAX_LIMIT } from '../../../domain/shared/pagination.js';
import type { Runtime } from '../../../domain/shared/runtime.js';
import { parseInput } from '../../../domain/shared/validation.js';
import { listOrgVolumes, OrgVolumeListQuery } from '../../../domain/volumes/listing.js';
import { getVolume, volumeRouteById } from '../../../domain/volumes/volumes.js';
import type { Volume } from '../../../generated/prisma/client.js';
import type { RestEnv } from '../../env.js';
import { masked, parseFieldMask } from '../../field-mask.js';
import { createDialectApp, type DialectOptions, json, orgOf, retryAfter } from '../shared.js';
import { quotaErrorBody, quotaVolumeJson } from './mapping.js';
import {
  MAX_LIST,
  orgHeaderParam,
  QuotaError,
  QuotaGetQuery,
  QuotaListQuery,
  QuotaVolume,
  QuotaVolumeParams,
  totalCountHeader,
} from './schemas.js';

// The quota volumes dialect (issue #16; /work/shared/reference/peer-quota-volumes.txt): `GET
// /v1/volumes` and `GET /v1/volumes/{id}` over the domain's org-wide list and volume lookup, in the
// reference's shape (a bare array of snake_case volumes with quotas, usage and a status). Read-only:
// the reference has no write. /v1's own routes all live under /v1/orgs/…, so these paths are free.

const tags = ['quota-volumes'];

const errors = {
  401: json(QuotaError, 'unauthenticated: missing or invalid Authorization: Bearer key'),
  403: json(QuotaError, 'forbidden: the key lacks volumes:read (details.required_permission)'),
  422: json(QuotaError, 'validation_failed: a bad parameter (an unknown field in fields, limit, X-Org-Id…), named in errors[]'),
  429: {
    ...json(
      QuotaError,
      'RATE_LIMITED (error.code rate_limited): this key used its requests for the window (details.limit, max, window_seconds); retry after Retry-After seconds',
    ),
    headers: retryAfter,
  },
  500: json(QuotaError, 'internal_error: unexpected error'),
  503: {
    ...json(
      QuotaError,
      'SERVICE_UNAVAILABLE (error.code unavailable): the database could not take the request in time; nothing was written, retry after Retry-After seconds',
    ),
    headers: retryAfter,
  },
} as const;

/**
 * The caller's volumes of the organisation, oldest first (created_at, then id), `offset` skipped, at
 * most `want` of them: pages of the domain's list (200 at most each) read on by its keyset cursor.
 * Returns them with how many the caller can see in all.
 */
async function visibleVolumes(
  rt: Runtime,
  p: Principal,
  orgId: string,
  want: number,
  offset: number | undefined,
): Promise<{ items: Volume[]; total: number }> {
  const items: Volume[] = [];
  let total = 0;
  let cursor: string | null = null;
  do {
    const position = cursor !== null ? { cursor } : offset !== undefined ? { offset } : {};
    const raw = { limit: Math.min(MAX_LIMIT, want - items.length), sort: 'created_at', ...position };
    const page = await listOrgVolumes(rt, p, orgId, parseInput(OrgVolumeListQuery, raw, ['query']));
    if (cursor === null) total = page.total;
    items.push(...page.items);
    cursor = page.hasMore ? page.nextCursor : null;
  } while (cursor !== null && items.length < want);
  return { items, total };
}

export const BASE = '/v1/volumes';

export function createQuotaDialect(rt: Runtime, opts: DialectOptions): OpenAPIHono<RestEnv> {
  const app = createDialectApp(rt, opts, { prefixes: [BASE], errorBody: (e) => quotaErrorBody(e) });

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/volumes',
      operationId: 'quotaListVolumes',
      tags,
      summary: 'List volumes visible to the current user',
      description: `Every live volume of the organisation the key can see, whichever workspace holds it (org keys: all; app keys: those mounted for their app and the shared ones), as a bare array, oldest first (created_at). At most ${MAX_LIST}: X-Total-Count says how many there are, and the optional limit and offset page through more. Needs volumes:read. Soft-deleted volumes are not listed.`,
      parameters: [orgHeaderParam],
      request: { query: QuotaListQuery },
      responses: { 200: { ...json(z.array(QuotaVolume), 'List of volumes'), headers: totalCountHeader }, ...errors },
    }),
    async (c) => {
      const { fields, limit, offset } = c.req.valid('query');
      const mask = parseFieldMask(fields, QuotaVolume);
      const { items, total } = await visibleVolumes(rt, c.get('principal'), orgOf(c), limit ?? MAX_LIST, offset);
      c.header('X-Total-Count', String(total));
      return c.json(
        items.map((v) => masked(quotaVolumeJson(v), mask)),
        200,
      );
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/volumes/{id}',
      operationId: 'quotaGetVolume',
      tags,
      summary: 'Get a volume by id',
      description:
        "One volume of the organisation the key can see, in the list's shape. Another organisation's volume, one the key cannot see (an app key's unmounted volume) and a soft-deleted one are 404. Needs volumes:read.",
      parameters: [orgHeaderParam],
      request: { params: QuotaVolumeParams, query: QuotaGetQuery },
      responses: {
        200: json(QuotaVolume, 'The volume'),
        ...errors,
        404: json(QuotaError, 'not_found: no such volume in the organisation, or not visible to this key'),
      },
    }),
    async (c) => {
      const mask = parseFieldMask(c.req.valid('query').fields, QuotaVolume);
      const route = await volumeRouteById(rt, orgOf(c), c.req.valid('param').id);
      const volume = await getVolume(rt, c.get('principal'), route);
      return c.json(masked(quotaVolumeJson(volume), mask), 200);
    },
  );

  return app;
}
