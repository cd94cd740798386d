import type { Context } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import type { Logger } from 'pino';
import {
  AppError,
  dataExceptionAsValidation,
  type ErrorCode,
  type FieldIssue,
  overloadAsUnavailable,
  RateLimitedError,
  UnavailableError,
} from '../domain/shared/errors.js';
import { noteRequest } from '../http/request-log.js';

/** The legacy API's timestamp: UTC, microseconds, no zone suffix ("2025-01-01T00:00:00.000000"). */
export function legacyTimestamp(d = new Date()): string {
  return `${d.toISOString().slice(0, 23)}000`;
}

const statusOf: Record<ErrorCode, ContentfulStatusCode> = {
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  CONFLICT: 409,
  VALIDATION_FAILED: 422,
  PAYLOAD_TOO_LARGE: 413,
  QUOTA_EXCEEDED: 507,
  RATE_LIMITED: 429,
  LOCKED: 409,
  UNAVAILABLE: 503,
};

const envelopeName: Record<ErrorCode, string> = {
  UNAUTHENTICATED: 'AUTHENTICATION_FAILED',
  FORBIDDEN: 'FORBIDDEN',
  NOT_FOUND: 'RESOURCE_NOT_FOUND',
  CONFLICT: 'CONFLICT',
  VALIDATION_FAILED: 'VALIDATION_FAILED',
  PAYLOAD_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  QUOTA_EXCEEDED: 'QUOTA_EXCEEDED',
  RATE_LIMITED: 'RATE_LIMITED',
  LOCKED: 'LOCKED',
  UNAVAILABLE: 'SERVICE_UNAVAILABLE',
};

export function errorEnvelope(error: string, message: string, details: Record<string, unknown>, status: number) {
  return { error, message, details, timestamp: legacyTimestamp(), status_code: status };
}

export function validationResponse(c: Context, issues: FieldIssue[]) {
  return c.json({ detail: issues.map((i) => ({ loc: i.loc, msg: i.msg, type: i.type, input: i.input ?? null, ctx: i.ctx ?? {} })) }, 422);
}

/** A thrown value as a REST answer, before any envelope: the dialects (src/rest/dialects/) shape it their own way. */
export interface ClassifiedError {
  status: ContentfulStatusCode;
  /** The domain's code; BAD_REQUEST for a malformed request Hono refused; INTERNAL for the unexpected. */
  code: ErrorCode | 'BAD_REQUEST' | 'INTERNAL';
  message: string;
  details: Record<string, unknown>;
  /** Validation failures: the fields, as the legacy 422 items. */
  issues?: FieldIssue[];
}

/**
 * Classifies any thrown value (logging the unexpected, setting Retry-After where it applies): one
 * mapping for /v1 and every dialect.
 */
export function classifyError(log: Logger, err: unknown, c: Context): ClassifiedError {
  const busy = err instanceof AppError ? undefined : overloadAsUnavailable(err);
  if (busy) log.warn({ err, method: c.req.method, path: c.req.path }, 'database overloaded: answered 503');
  if (err instanceof AppError || busy) {
    const e = (busy ?? err) as AppError;
    if (e instanceof UnavailableError || e instanceof RateLimitedError) c.header('Retry-After', String(e.retryAfterSeconds));
    if (e instanceof RateLimitedError) noteRequest({ rateLimited: e.limit });
    const issues = e.code === 'VALIDATION_FAILED' && 'issues' in e ? (e.issues as FieldIssue[]) : undefined;
    return { status: statusOf[e.code], code: e.code, message: e.message, details: e.details, ...(issues ? { issues } : {}) };
  }
  if (err instanceof HTTPException) {
    if (err.status === 400 && err.message.startsWith('Malformed JSON')) {
      const issues = [
        { loc: ['body'], msg: 'JSON decode error', type: 'json_invalid', input: {}, ctx: { error: 'Malformed JSON in request body' } },
      ];
      return { status: 422, code: 'VALIDATION_FAILED', message: 'JSON decode error', details: {}, issues };
    }
    if (err.status === 415) {
      const msg = 'Request body must be JSON (Content-Type: application/json)';
      const issues = [{ loc: ['body'], msg, type: 'content_type', input: c.req.header('content-type') ?? null }];
      return { status: 422, code: 'VALIDATION_FAILED', message: msg, details: {}, issues };
    }
    if (err.status === 413) return { status: 413, code: 'PAYLOAD_TOO_LARGE', message: 'Request body is too large', details: {} };
    if (err.status < 500) return { status: err.status as ContentfulStatusCode, code: 'BAD_REQUEST', message: err.message, details: {} };
  }
  const refused = dataExceptionAsValidation(err);
  if (refused) {
    log.warn({ err, method: c.req.method, path: c.req.path }, 'database refused a value the input policy let through');
    return { status: 422, code: 'VALIDATION_FAILED', message: refused.message, details: {}, issues: refused.issues };
  }
  log.error({ err, method: c.req.method, path: c.req.path }, 'unexpected error');
  return { status: 500, code: 'INTERNAL', message: 'An unexpected error occurred', details: {} };
}

/** Maps any thrown value to the legacy envelopes; unexpected errors are logged and masked as 500. */
export function handleError(log: Logger, err: unknown, c: Context) {
  const e = classifyError(log, err, c);
  if (e.issues) return validationResponse(c, e.issues);
  const name = e.code === 'INTERNAL' ? 'INTERNAL_SERVER_ERROR' : e.code === 'BAD_REQUEST' ? 'BAD_REQUEST' : envelopeName[e.code];
  return c.json(errorEnvelope(name, e.message, e.details, e.status), e.status);
}

export function notFound(c: Context) {
  return c.json(
    errorEnvelope('RESOURCE_NOT_FOUND', 'The requested resource was not found', { resource_type: 'route', resource_id: c.req.path }, 404),
    404,
  );
}
