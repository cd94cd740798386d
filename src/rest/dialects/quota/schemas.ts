import { z } from 'zod';
import { refuseBadText } from '../../../domain/shared/input-policy.js';
import { MAX_OFFSET } from '../../../domain/shared/listing.js';
import { queryInt } from '../../../domain/shared/pagination.js';
import { fieldsParam } from '../../field-mask.js';
import { ORG_HEADER } from '../shared.js';

// The quota volumes dialect's wire shapes (/work/shared/reference/peer-quota-volumes.txt): they
// describe it in /v1/openapi.json, validate its query and type its serializer (mapping.ts).

/** The `status` enum of the reference, derived from our volume status and mount count (mapping.ts). */
export const QUOTA_STATUSES = ['available', 'attached', 'degraded', 'error'] as const;
export type QuotaStatus = (typeof QUOTA_STATUSES)[number];

/** Most volumes one list answers (the reference has no paging): `limit` may ask for fewer. */
export const MAX_LIST = 1000;

const Timestamp = z.string().describe('ISO 8601 date-time (UTC)');

/**
 * A volume as the reference lists it, its fields in the reference's order. `host_id` is in the
 * schema (and so in the field mask) only because the reference names it; it is never sent.
 */
export const QuotaVolume = z
  .object({
    id: z.string().describe('The volume id (our volume_id)'),
    name: z.string().describe('The volume name'),
    created_at: Timestamp.describe('When the volume was created (ISO 8601, UTC)'),
    used_bytes: z
      .number()
      .int()
      .describe('Last reconciled observed bytes stored in the volume (our used_bytes, kept exact on every write)'),
    inode_count: z.number().int().describe('Last reconciled observed inode count for the volume: its entries (our entry_count)'),
    mount_count: z
      .number()
      .int()
      .describe('Current number of mounts tracked by the control plane: the mounts granting an app access (our mount_count)'),
    max_size_bytes: z.number().int().nullable().describe('Current enforced storage quota in bytes (our max_size_bytes); null: unlimited'),
    max_file_count: z.number().int().nullable().describe('Current enforced file-count quota (our max_file_count); null: none configured'),
    max_mounts: z.number().int().nullable().describe('Current enforced concurrent-mount limit (our max_mounts); null: none configured'),
    last_reconciled_at: Timestamp.nullable().describe('When usage was last recomputed by a reconcile; null: never'),
    status: z
      .enum(QUOTA_STATUSES)
      .describe(
        'error: the workspace bucket failed to provision; degraded: search is incomplete (an entry failed indexing, or the last reindex failed); otherwise attached when mount_count > 0, else available. The first that holds wins.',
      ),
    host_id: z
      .string()
      .optional()
      .meta({ deprecated: true })
      .describe(
        'Deprecated legacy diagnostic. Never sent: this gateway has no volume hosts. Accepted in the fields mask, where it selects nothing.',
      ),
  })
  .meta({ id: 'QuotaVolume' });

export type QuotaVolume = z.infer<typeof QuotaVolume>;

/** Query of the list route: the reference's field mask, and our optional `limit`/`offset`. */
export const QuotaListQuery = z.object({
  fields: fieldsParam(QuotaVolume).describe(
    `Comma-separated field mask for volume list/get responses (may be repeated). Supported fields: ${Object.keys(QuotaVolume.shape).join(', ')}. host_id is accepted but never returned. An unknown field is a 422 naming it.`,
  ),
  limit: queryInt(1, MAX_LIST).optional().describe(`Extension: at most this many volumes (1-${MAX_LIST}; default and maximum ${MAX_LIST})`),
  offset: queryInt(0, MAX_OFFSET)
    .optional()
    .describe(`Extension: skip this many volumes of the list, oldest first (0-${MAX_OFFSET}; default 0)`),
});

/** Query of the get route: the field mask alone. */
export const QuotaGetQuery = QuotaListQuery.pick({ fields: true });

export const QuotaVolumeParams = z.object({
  id: z.string().min(1).max(255).superRefine(refuseBadText).describe('The volume id'),
});

/** The organisation header (platform key only), documented on each operation. */
export const orgHeaderParam = {
  in: 'header' as const,
  name: ORG_HEADER,
  required: false,
  description:
    "The organisation to act on: required with the platform key (else 422), ignored for org and app keys, which act in their key's organisation.",
  schema: { type: 'string' as const },
};

/** The total the list response carries beside the bare array. */
export const totalCountHeader = {
  'X-Total-Count': {
    description: `How many volumes the caller can see in all; more than the array holds when it was cut at limit (${MAX_LIST} at most): page on with offset`,
    schema: { type: 'integer' as const, minimum: 0 },
  },
};

export const QUOTA_ERROR_CODES = [
  'unauthenticated',
  'forbidden',
  'not_found',
  'conflict',
  'validation_failed',
  'quota_exceeded',
  'payload_too_large',
  'rate_limited',
  'locked',
  'unavailable',
  'bad_request',
  'internal_error',
] as const;

/** The dialect's error body (the reference shows none): one snake_case `error` object. */
export const QuotaError = z
  .object({
    error: z.object({
      code: z.enum(QUOTA_ERROR_CODES).describe('Stable, machine-readable code'),
      message: z.string().describe('What went wrong, for people'),
      details: z
        .record(z.string(), z.unknown())
        .optional()
        .describe(
          'Facts about the failure when there are any: required_permission (403), resource_type and resource_id (404), retry_after_seconds (429, 503)',
        ),
      errors: z
        .array(
          z.object({
            in: z.enum(['query', 'path', 'header', 'body']).optional().describe('Where the bad input was'),
            name: z.string().describe('The parameter, as the caller sent it (fields, limit, id, X-Org-Id…)'),
            message: z.string(),
            type: z.string().describe('field_unknown, missing, too_big, …'),
            value: z.unknown().optional().describe('The value sent, when it helps'),
            ctx: z.record(z.string(), z.unknown()).optional().describe('More facts: for field_unknown, the field and the allowed fields'),
          }),
        )
        .optional()
        .describe('validation_failed: one item per bad parameter'),
    }),
  })
  .meta({ id: 'QuotaError' });
export type QuotaError = z.infer<typeof QuotaError>;
