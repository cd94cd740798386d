/**
 * The one vocabulary of failures. Domain code throws these; REST maps `code` to a status and
 * envelope (src/rest/errors.ts) and GraphQL exposes it as `extensions.code` (src/graphql/errors.ts).
 * Anything that is not an AppError is unexpected: logged and masked by both layers.
 */
export type ErrorCode =
  | 'UNAUTHENTICATED'
  | 'FORBIDDEN'
  | 'NOT_FOUND'
  | 'CONFLICT'
  | 'VALIDATION_FAILED'
  | 'QUOTA_EXCEEDED'
  | 'PAYLOAD_TOO_LARGE'
  | 'RATE_LIMITED'
  | 'LOCKED'
  | 'UNAVAILABLE';

/** One problem with the input, in the shape of the legacy API's 422 `detail` items. */
export interface FieldIssue {
  loc: (string | number)[];
  msg: string;
  type: string;
  input: unknown;
  ctx?: Record<string, unknown>;
}

export abstract class AppError extends Error {
  abstract readonly code: ErrorCode;
  readonly details: Record<string, unknown>;
  constructor(message: string, details: Record<string, unknown> = {}) {
    super(message);
    this.name = new.target.name;
    this.details = details;
  }
}

export class AuthenticationError extends AppError {
  readonly code = 'UNAUTHENTICATED' as const;
  constructor(message = 'Authentication required') {
    super(message);
  }
}

export class ForbiddenError extends AppError {
  readonly code = 'FORBIDDEN' as const;
  constructor(requiredPermission: string, extra: Record<string, unknown> = {}) {
    super("You don't have permission to perform this action", {
      required_permission: requiredPermission,
      ...extra,
    });
  }
}

export class NotFoundError extends AppError {
  readonly code = 'NOT_FOUND' as const;
  constructor(resourceType: string, resourceId: string) {
    super('The requested resource was not found', { resource_type: resourceType, resource_id: resourceId });
  }
}

export class ConflictError extends AppError {
  readonly code = 'CONFLICT' as const;
}

/** A write under a path held by someone else's exclusive lock. */
export class LockedError extends AppError {
  readonly code = 'LOCKED' as const;
}

export class QuotaExceededError extends AppError {
  readonly code = 'QUOTA_EXCEEDED' as const;
}

export class PayloadTooLargeError extends AppError {
  readonly code = 'PAYLOAD_TOO_LARGE' as const;
}

/**
 * The database could not take the request in time (every connection busy past the wait limit, or
 * Postgres out of connections): nothing was written, and the same request may be sent again.
 * REST answers 503 with `Retry-After`; GraphQL `extensions.code` UNAVAILABLE.
 */
export class UnavailableError extends AppError {
  readonly code = 'UNAVAILABLE' as const;
  constructor(readonly retryAfterSeconds = 1) {
    super('The service is overloaded; retry the request shortly', { retry_after_seconds: retryAfterSeconds });
  }
}

/** A key used its budget (requests or upload bytes) for the current window. */
export class RateLimitedError extends AppError {
  readonly code = 'RATE_LIMITED' as const;
  constructor(
    readonly limit: 'requests' | 'upload_bytes' | 'subscriptions',
    max: number,
    windowSeconds: number,
    readonly retryAfterSeconds: number,
  ) {
    super(
      limit === 'requests'
        ? `Rate limit exceeded: at most ${max} requests per ${windowSeconds} s for this API key; retry after ${retryAfterSeconds} s`
        : `Upload limit exceeded: at most ${max} bytes per ${windowSeconds} s for this API key; retry after ${retryAfterSeconds} s`,
      { limit, max, window_seconds: windowSeconds, retry_after_seconds: retryAfterSeconds },
    );
  }
}

export class ValidationError extends AppError {
  readonly code = 'VALIDATION_FAILED' as const;
  readonly issues: FieldIssue[];
  constructor(issues: FieldIssue[]) {
    super(issues.map((i) => `${i.loc.join('.')}: ${i.msg}`).join('; '));
    this.issues = issues;
  }

  /** A single-field validation failure raised by a rule that zod cannot express. */
  static field(loc: (string | number)[], msg: string, input: unknown, type = 'value_error'): ValidationError {
    return new ValidationError([{ loc, msg, type, input }]);
  }
}

/** Prisma's known request errors, mapped where the domain knows what they mean. */
export function isUniqueViolation(err: unknown): boolean {
  return (typeof err === 'object' && err !== null && (err as { code?: string }).code === 'P2002') || sqlStateOf(err)?.code === '23505';
}

/** A row this write refers to (its parent) was deleted concurrently. */
export function isForeignKeyViolation(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: string }).code === 'P2003';
}

export function isRecordNotFound(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: string }).code === 'P2025';
}

/** The Postgres SQLSTATE behind a Prisma or driver-adapter error, when there is one. */
function sqlStateOf(err: unknown): { code: string; message: string } | undefined {
  for (let cur: unknown = err, i = 0; cur && typeof cur === 'object' && i < 5; i++) {
    const e = cur as {
      meta?: { driverAdapterError?: { cause?: { originalCode?: string; originalMessage?: string } } };
      cause?: unknown;
      originalCode?: string;
      originalMessage?: string;
    };
    const cause = e.meta?.driverAdapterError?.cause ?? (e.originalCode ? e : undefined);
    if (cause?.originalCode) return { code: cause.originalCode, message: cause.originalMessage ?? '' };
    cur = e.cause;
  }
  return undefined;
}

/**
 * A database refusal of the data-exception class (SQLSTATE 22xxx: a value Postgres cannot store or
 * convert) as the 422 / VALIDATION_FAILED it is: input the edge policy did not catch must still
 * never become a 500. Undefined for every other error.
 */
export function dataExceptionAsValidation(err: unknown): ValidationError | undefined {
  const state = sqlStateOf(err);
  if (!state?.code.startsWith('22')) return undefined;
  return new ValidationError([
    {
      loc: ['body'],
      msg: `The database refused a value: ${state.message}`,
      type: 'value_error',
      input: null,
      ctx: { sqlstate: state.code },
    },
  ]);
}

/** Transaction manager errors that mean "no connection in time" or "ran out of time under load". */
const OVERLOADED_TX = /Unable to start a transaction in the given time|cannot be executed on an expired transaction/;
/** SQLSTATEs of a database that is overloaded rather than refusing the request: too many connections, out of memory, starting up. */
const POOL_TIMEOUT = /timeout exceeded when trying to connect|Connection terminated due to connection timeout/;
const OVERLOADED_STATES = new Set(['53300', '53200', '57P03']);

/**
 * Overload as the retryable UnavailableError it is (a request that waited past the transaction
 * wait limit for a connection, a transaction that ran out of time under load, Postgres refusing
 * connections): never a 500. Undefined for every other error.
 */
export function overloadAsUnavailable(err: unknown): UnavailableError | undefined {
  for (let cur: unknown = err, i = 0; cur && typeof cur === 'object' && i < 5; i++) {
    const e = cur as { code?: string; message?: string; cause?: unknown; originalError?: unknown };
    if (e.code === 'P2028' && OVERLOADED_TX.test(e.message ?? '')) return new UnavailableError();
    // pg's pool, past connectionTimeoutMillis (DATABASE_POOL_TIMEOUT_MS), as the driver adapter passes it on.
    if (POOL_TIMEOUT.test(e.message ?? '')) return new UnavailableError();
    cur = e.originalError ?? e.cause;
  }
  const state = sqlStateOf(err);
  return state && OVERLOADED_STATES.has(state.code) ? new UnavailableError() : undefined;
}
