import { z } from 'zod';
import { Name } from '../../../domain/shared/fields.js';
import { MAX_OFFSET } from '../../../domain/shared/listing.js';
import { queryInt } from '../../../domain/shared/pagination.js';
import { MountPath } from '../../../domain/volumes/inputs.js';

// The environment volumes dialect's shapes (/work/shared/reference/peer-environment-volumes.txt):
// request bodies and queries (parsed with the domain's parseInput, so messages and the input policy
// are /v1's), the Volume object, the validate answer and the error body. Field rules are the
// domain's own (Name, MountPath); only units and names are the dialect's.

export const TAG = 'environment-volumes';

/** One MB of `size`: a mebibyte (the reference's 10240 MB example is 10 × 1024). */
export const BYTES_PER_MB = 1024 * 1024;
/** The largest size whose bytes stay an exact integer (max_size_bytes ≤ 2^53 - 1). */
export const MAX_SIZE_MB = Math.floor(Number.MAX_SAFE_INTEGER / BYTES_PER_MB);

/** A UUID in any case, as the route pattern matches it (no braces: Hono's route groups cannot hold them). */
const HEX = '[0-9a-fA-F]';
export const UUID_PATTERN = [8, 4, 4, 4, 12].map((n) => HEX.repeat(n)).join('-');

/** The id prefix the reference shows (`vol-550e8400-…`); the rest is our volume_id. */
export const ID_PREFIX = 'vol-';

const SizeMb = z
  .number()
  .int()
  .min(1)
  .max(MAX_SIZE_MB)
  .describe(`Volume size in MB (1 MB = 1,048,576 bytes), 1-${MAX_SIZE_MB}; the volume's max_size_bytes. null: unlimited`);

export const EnvParams = z.object({
  envId: z
    .string()
    .regex(new RegExp(`^${UUID_PATTERN}$`))
    .describe("Environment id (a UUID): the volumes' environment_id. Any other first path segment is not this API's route"),
});
export const VolumeParams = EnvParams.extend({
  id: z.string().describe('Volume id: "vol-<uuid>" as this API answers it, or the bare uuid (our volume_id)'),
});

const refs = {
  envIdRef: z.string().optional().describe('Read-only: when given it must be the envId of the path'),
  companyIdRef: z.string().optional().describe("Read-only: when given it must be the caller's organisation"),
};

export const CreateBody = z
  .object({
    name: Name.describe('Volume name (1-255 characters), unique among the live volumes of the environment'),
    size: SizeMb.nullable().optional(),
    mountPath: MountPath.optional().describe(
      'Absolute path where the volume will be mounted (no trailing slash, no . or .. segments, at most 255 characters); default: /data/<slug of the name>',
    ),
    ...refs,
  })
  .describe('id, createdBy, modifiedBy, version and isDeleted are set by the server; sent, they are ignored. Unknown fields are ignored.')
  .meta({ id: 'EnvironmentVolumeCreate' });
export type CreateBody = z.output<typeof CreateBody>;

export const UpdateBody = z
  .object({
    id: z.string().optional().describe('Read-only: when given it must name the volume of the path (either form)'),
    name: Name.optional().describe('A new name'),
    size: SizeMb.nullable()
      .optional()
      .describe('A new size in MB: never lower than the current one (409); null: unlimited. The current value again changes nothing'),
    mountPath: MountPath.optional().describe('A new mount path'),
    ...refs,
    version: z
      .number()
      .int()
      .min(1)
      .max(2_147_483_647)
      .optional()
      .describe('Change the volume only if it is still at this version (the one read), else 409'),
  })
  .describe(
    'Only the fields given change (name, size, mountPath); createdBy, modifiedBy and isDeleted are ignored, so a volume read with GET can be sent back whole. Unknown fields are ignored.',
  )
  .meta({ id: 'EnvironmentVolumeUpdate' });
export type UpdateBody = z.output<typeof UpdateBody>;

/** The most volumes one list answers (the reference lists "all"; X-Total-Count shows a cut list). */
export const MAX_LIST = 1000;

export const ListQuery = z.object({
  limit: queryInt(1, MAX_LIST).optional().describe(`At most this many volumes (1-${MAX_LIST}); default ${MAX_LIST}`),
  offset: queryInt(0, MAX_OFFSET).optional().describe(`Skip this many volumes first (0-${MAX_OFFSET}); default 0`),
  isDeleted: z
    .enum(['true', 'false'])
    .optional()
    .describe('true: the deleted volumes still restorable instead of the live ones (needs volumes:write); default false'),
});

/** The total the list answer carries beside its bare array. */
export const totalCountHeader = {
  'X-Total-Count': {
    description: `How many volumes of the environment the key can see in all (with isDeleted=true: deleted ones); more than the array holds when it was cut at limit (${MAX_LIST} at most): page on with offset`,
    schema: { type: 'integer' as const, minimum: 0 },
  },
};

export const DeleteQuery = z.object({
  permanent: z
    .enum(['true', 'false'])
    .optional()
    .describe('true: remove the volume and its data now; default: soft delete (isDeleted), data removed after the retention period'),
});

export const Volume = z
  .object({
    id: z.string().describe('"vol-" + the volume_id (a UUID) of /v1 and GraphQL'),
    name: z.string(),
    envIdRef: z.string().describe('The environment (environment_id)'),
    companyIdRef: z.string().describe('The organisation (org_id)'),
    size: z
      .number()
      .int()
      .nullable()
      .describe('max_size_bytes in MB (1,048,576 bytes), rounded down; null when the volume has no size limit'),
    mountPath: z.string().describe('Where the volume is mounted (mount_path)'),
    isDeleted: z.boolean().describe('Soft-deleted (deleted_at set); only listed with isDeleted=true'),
    createdBy: z.string().describe('Who created it: key:<api key id>, or admin for the platform key (created_by)'),
    modifiedBy: z.string().describe('Who changed it last (modified_by; createdBy while never changed)'),
    version: z.number().int().describe('1 at creation, +1 on every change; send it back with PUT to change only that version'),
  })
  .meta({ id: 'EnvironmentVolume' });
export type VolumeJson = z.infer<typeof Volume>;

const FieldError = z
  .object({
    field: z.string().nullable().describe('The field as sent (size, mountPath, limit, X-Org-Id…); null: the body as a whole'),
    in: z.enum(['body', 'query', 'path', 'header']).describe('Where the field was'),
    message: z.string(),
    type: z.string().describe('Stable kind of problem: missing, int_type, less_than_equal, conflict, read_only…'),
  })
  .meta({ id: 'EnvironmentVolumeFieldError' });
export type FieldError = z.infer<typeof FieldError>;

export const Validation = z
  .object({
    valid: z.boolean(),
    errors: z.array(FieldError).describe('What a create with this body would refuse; empty when valid'),
  })
  .meta({ id: 'EnvironmentVolumeValidation' });

export const ErrorBody = z
  .object({
    statusCode: z.number().int(),
    error: z.string().describe('The HTTP reason phrase (Not Found, Conflict…)'),
    code: z
      .string()
      .describe(
        'Stable code: UNAUTHENTICATED, FORBIDDEN, NOT_FOUND, CONFLICT, VALIDATION_FAILED, QUOTA_EXCEEDED, PAYLOAD_TOO_LARGE, RATE_LIMITED, UNAVAILABLE, BAD_REQUEST, INTERNAL_SERVER_ERROR',
      ),
    message: z.string(),
    details: z
      .record(z.string(), z.unknown())
      .optional()
      .describe('camelCase facts: requiredPermission, resourceType/resourceId, currentVersion, field…'),
    errors: z.array(FieldError).optional().describe('Validation failures (422), one per field'),
  })
  .meta({ id: 'EnvironmentVolumeError' });
export type ErrorBody = z.infer<typeof ErrorBody>;
