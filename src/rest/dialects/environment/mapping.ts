import type { FieldIssue } from '../../../domain/shared/errors.js';
import { ValidationError } from '../../../domain/shared/errors.js';
import type { CreateVolumeInput, UpdateVolumeInput } from '../../../domain/volumes/inputs.js';
import type { Volume } from '../../../generated/prisma/client.js';
import type { ClassifiedError } from '../../errors.js';
import { BYTES_PER_MB, type CreateBody, type ErrorBody, type FieldError, ID_PREFIX, type UpdateBody, type VolumeJson } from './schemas.js';

// Names and units between the environment dialect and the domain, both ways: the Volume object,
// request bodies, and errors (field names as the caller sent them). No rule lives here.

/** Our field names (domain locs and details) as this dialect's. */
const FIELD_NAMES: Record<string, string> = {
  max_size_bytes: 'size',
  mount_path: 'mountPath',
  environment_id: 'envIdRef',
  expected_version: 'version',
};

/** `max_size_bytes` as MB, rounded down (never more than the limit allows); null: unlimited. */
export function sizeMb(maxSizeBytes: bigint | null): number | null {
  return maxSizeBytes === null ? null : Number(maxSizeBytes / BigInt(BYTES_PER_MB));
}

export function volumeJson(v: Volume): VolumeJson {
  return {
    id: `${ID_PREFIX}${v.id}`,
    name: v.name,
    envIdRef: v.environmentId ?? '',
    companyIdRef: v.orgId,
    size: sizeMb(v.maxSizeBytes),
    mountPath: v.mountPath,
    isDeleted: v.deletedAt !== null,
    createdBy: v.createdBy,
    modifiedBy: v.modifiedBy ?? v.createdBy,
    version: v.version,
  };
}

/** Our volume_id from an id of this API: "vol-<uuid>" or the bare uuid (anything else finds nothing). */
export function volumeIdOf(id: string): string {
  return id.startsWith(ID_PREFIX) ? id.slice(ID_PREFIX.length) : id;
}

/**
 * The read-only references a body may carry must be the ones the call is about (a body naming
 * another environment or company is a mistake, not a move).
 * @throws ValidationError naming each one that differs
 */
export function checkReadOnlyRefs(
  body: { id?: string | undefined; envIdRef?: string | undefined; companyIdRef?: string | undefined },
  expected: { envId: string; orgId: string; volumeId?: string },
): void {
  const issues: FieldIssue[] = [];
  const refuse = (field: string, given: string, want: string) =>
    issues.push({ loc: ['body', field], msg: `read-only: must be ${want} when given`, type: 'read_only', input: given });
  if (body.id !== undefined && expected.volumeId !== undefined && volumeIdOf(body.id) !== expected.volumeId) {
    refuse('id', body.id, `${ID_PREFIX}${expected.volumeId} (the volume of the path)`);
  }
  if (body.envIdRef !== undefined && body.envIdRef !== expected.envId)
    refuse('envIdRef', body.envIdRef, `${expected.envId} (the envId of the path)`);
  if (body.companyIdRef !== undefined && body.companyIdRef !== expected.orgId) {
    refuse('companyIdRef', body.companyIdRef, `${expected.orgId} (the caller's organisation)`);
  }
  if (issues.length > 0) throw new ValidationError(issues);
}

const bytesOf = (size: number | null | undefined) => (size === undefined ? undefined : size === null ? null : size * BYTES_PER_MB);

/** A create body as /v1's create body (snake_case, bytes), in the environment `envId`. */
export function createInput(body: CreateBody, envId: string): CreateVolumeInput {
  const bytes = bytesOf(body.size);
  return {
    name: body.name,
    environment_id: envId,
    ...(body.mountPath !== undefined && { mount_path: body.mountPath }),
    ...(bytes !== undefined && { max_size_bytes: bytes }),
  };
}

/**
 * A PUT body as /v1's update body. A size equal to the one the volume shows now changes nothing
 * (a volume read with GET and sent back whole keeps its exact max_size_bytes, even one set in bytes
 * through /v1 that MB round down).
 */
export function updateInput(body: UpdateBody, current: Pick<Volume, 'maxSizeBytes'>): UpdateVolumeInput {
  const unchanged = body.size !== undefined && body.size === sizeMb(current.maxSizeBytes);
  const bytes = unchanged ? undefined : bytesOf(body.size);
  return {
    ...(body.name !== undefined && { name: body.name }),
    ...(body.mountPath !== undefined && { mount_path: body.mountPath }),
    ...(bytes !== undefined && { max_size_bytes: bytes }),
  };
}

const LOCATIONS = new Set(['body', 'query', 'path', 'header']);

/** A domain or route validation item as this dialect's `{field, in, message, type}`. */
export function fieldError(issue: FieldIssue): FieldError {
  const [first, ...rest] = issue.loc;
  const where = typeof first === 'string' && LOCATIONS.has(first) ? (first as FieldError['in']) : 'body';
  const path = typeof first === 'string' && LOCATIONS.has(first) ? rest : issue.loc;
  const named = path.map((p, i) => (i === 0 && typeof p === 'string' ? (FIELD_NAMES[p] ?? p) : p));
  return { field: named.length > 0 ? named.join('.') : null, in: where, message: issue.msg, type: issue.type };
}

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  409: 'Conflict',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Entity',
  423: 'Locked',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
  507: 'Insufficient Storage',
};

const camel = (key: string) => key.replace(/_([a-z])/g, (_, ch: string) => ch.toUpperCase());

/** `details` with camelCase keys and this dialect's field names and units. */
function detailsOf(e: ClassifiedError): { message: string; details: Record<string, unknown> } {
  const d = e.details;
  if (d.reason === 'size_decrease') {
    const to = typeof d.value === 'number' ? d.value / BYTES_PER_MB : null;
    const from = typeof d.current === 'number' ? Math.floor(d.current / BYTES_PER_MB) : null;
    return {
      message: `Volume size cannot be decreased after creation (from ${from === null ? 'unlimited' : `${from} MB`} to ${to} MB)`,
      details: { field: 'size', value: to, current: from, reason: 'size_decrease' },
    };
  }
  const details: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(d)) {
    if (key === 'precondition') continue; // /v1's If-Match; here the precondition is the body's version
    details[camel(key)] = key === 'field' && typeof value === 'string' ? (FIELD_NAMES[value] ?? value) : value;
  }
  return { message: e.message, details };
}

/** Any error as this dialect's body: `{statusCode, error, code, message, details?, errors?}`. */
export function errorBody(e: ClassifiedError): ErrorBody {
  const code = e.code === 'INTERNAL' ? 'INTERNAL_SERVER_ERROR' : e.code;
  const base = { statusCode: e.status, error: REASONS[e.status] ?? 'Error', code };
  if (e.issues) {
    const errors = e.issues.map(fieldError);
    const message = `Validation failed: ${errors.map((f) => (f.field === null ? f.message : `${f.field}: ${f.message}`)).join('; ')}`;
    return { ...base, message, errors };
  }
  const { message, details } = detailsOf(e);
  return { ...base, message, ...(Object.keys(details).length > 0 && { details }) };
}
