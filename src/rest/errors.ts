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

/** Maps any thrown value to the legacy envelopes; unexpected errors are logged and masked as 500. */
export function handleError(log: Logger, err: unknown, c: Context) {
  const busy = err instanceof AppError ? undefined : overloadAsUnavailable(err);
  if (busy) log.warn({ err, method: c.req.method, path: c.req.path }, 'database overloaded: answered 503');
  if (err instanceof AppError || busy) {
    const e = (busy ?? err) as AppError;
    if (e.code === 'VALIDATION_FAILED' && 'issues' in e) return validationResponse(c, e.issues as FieldIssue[]);
    if (e instanceof UnavailableError || e instanceof RateLimitedError) c.header('Retry-After', String(e.retryAfterSeconds));
    if (e instanceof RateLimitedError) noteRequest({ rateLimited: e.limit });
    const status = statusOf[e.code];
    return c.json(errorEnvelope(envelopeName[e.code], e.message, e.details, status), status);
  }
  if (err instanceof HTTPException) {
    if (err.status === 400 && err.message.startsWith('Malformed JSON')) {
      return validationResponse(c, [
        { loc: ['body'], msg: 'JSON decode error', type: 'json_invalid', input: {}, ctx: { error: 'Malformed JSON in request body' } },
      ]);
    }
    if (err.status === 415) {
      return validationResponse(c, [
        {
          loc: ['body'],
          msg: 'Request body must be JSON (Content-Type: application/json)',
          type: 'content_type',
          input: c.req.header('content-type') ?? null,
        },
      ]);
    }
    if (err.status === 413) {
      return c.json(errorEnvelope('PAYLOAD_TOO_LARGE', 'Request body is too large', {}, 413), 413);
    }
    if (err.status < 500) {
      const status = err.status as ContentfulStatusCode;
      return c.json(errorEnvelope('BAD_REQUEST', err.message, {}, status), status);
    }
  }
  const refused = dataExceptionAsValidation(err);
  if (refused) {
    log.warn({ err, method: c.req.method, path: c.req.path }, 'database refused a value the input policy let through');
    return validationResponse(c, refused.issues);
  }
  log.error({ err, method: c.req.method, path: c.req.path }, 'unexpected error');
  return c.json(errorEnvelope('INTERNAL_SERVER_ERROR', 'An unexpected error occurred', {}, 500), 500);
}

export function notFound(c: Context) {
  return c.json(
    errorEnvelope('RESOURCE_NOT_FOUND', 'The requested resource was not found', { resource_type: 'route', resource_id: c.req.path }, 404),
    404,
  );
}
