import { GraphQLError } from 'graphql';
import type { Logger } from 'pino';
import { AppError, dataExceptionAsValidation, overloadAsUnavailable, RateLimitedError, ValidationError } from '../domain/shared/errors.js';
import { currentRequest, noteRequest } from '../http/request-log.js';
import { toCamel } from './inputs.js';

/** The current HTTP request's id (X-Request-Id), for errors' extensions: a caller quotes it, support finds the log lines. */
function requestIdExtension(): { requestId?: string } {
  const id = currentRequest()?.id;
  return id ? { requestId: id } : {};
}

function findAppError(err: unknown): AppError | undefined {
  let cur: unknown = err;
  for (let i = 0; i < 5 && cur; i++) {
    if (cur instanceof AppError) return cur;
    cur = (cur as { originalError?: unknown }).originalError;
  }
  return undefined;
}

/**
 * GraphQLError by shape, not class: CommonJS dependencies (graphql-armor) load their own copy of
 * `graphql`, whose errors fail `instanceof` against ours.
 */
function asGraphQLError(err: unknown): GraphQLError | undefined {
  return err instanceof Error && err.name === 'GraphQLError' ? (err as GraphQLError) : undefined;
}

/**
 * Yoga's `maskError`: domain errors keep their message and gain a stable `extensions.code`
 * (validation errors also list the bad fields, named as in the GraphQL input); everything else is
 * logged and replaced by a generic INTERNAL_SERVER_ERROR so internals (Prisma, stack traces) never leak.
 */
export function maskError(log: Logger, error: unknown, message: string): Error {
  const gqlError = asGraphQLError(error);
  const refused = dataExceptionAsValidation(gqlError?.originalError ?? error);
  if (refused) log.warn({ err: gqlError?.originalError ?? error }, 'database refused a value the input policy let through');
  const busy = refused ? undefined : overloadAsUnavailable(gqlError?.originalError ?? error);
  if (busy) log.warn({ err: gqlError?.originalError ?? error }, 'database overloaded: answered UNAVAILABLE');
  const appError = refused ?? busy ?? findAppError(error);
  if (appError) {
    const extensions: Record<string, unknown> = { code: appError.code, ...appError.details, ...requestIdExtension() };
    // Refused before execution (the context): the HTTP answer is 429 with Retry-After, as in REST.
    if (appError instanceof RateLimitedError) {
      extensions.http = { status: 429, headers: { 'Retry-After': String(appError.retryAfterSeconds) } };
      noteRequest({ rateLimited: appError.limit });
    }
    if (appError instanceof ValidationError) {
      extensions.fields = appError.issues.map((i) => ({
        path: i.loc.map((s) => (typeof s === 'string' ? toCamel(s) : s)),
        message: i.msg,
        type: i.type,
      }));
    }
    return new GraphQLError(appError.message, {
      nodes: gqlError?.nodes,
      source: gqlError?.source,
      positions: gqlError?.positions,
      path: gqlError?.path,
      extensions,
    });
  }
  // Pothos refuses bad connection arguments (a cursor it did not issue, first and last together)
  // before any resolver runs: bad input, not a fault.
  const pothos = [error, gqlError?.originalError].find((e) => e instanceof Error && e.name === 'PothosValidationError') as
    | Error
    | undefined;
  if (pothos) {
    return new GraphQLError(pothos.message, { nodes: gqlError?.nodes, path: gqlError?.path, extensions: { code: 'VALIDATION_FAILED' } });
  }
  // Variables that are missing or do not coerce (graphql-js names the variable and the path inside
  // it; a scalar's own error hangs below): a request error, shown whole, with the status the
  // GraphQL-over-HTTP spec gives it (400 for application/graphql-response+json, 200 for legacy JSON).
  if (gqlError && !gqlError.path && gqlError.message.startsWith('Variable "$')) {
    return new GraphQLError(gqlError.message, {
      nodes: gqlError.nodes,
      source: gqlError.source,
      positions: gqlError.positions,
      extensions: { code: 'BAD_USER_INPUT', http: { status: 400, spec: true } },
    });
  }
  // Errors yoga itself raised for the request (parse, validation, limits) are already safe to show.
  if (gqlError && !gqlError.originalError) return gqlError;
  const inner = asGraphQLError(gqlError?.originalError);
  // A GraphQLError a resolver threw on purpose (scope-auth, page sizes): its message and code, at its path.
  if (inner) {
    return new GraphQLError(inner.message, {
      nodes: gqlError?.nodes,
      source: gqlError?.source,
      positions: gqlError?.positions,
      path: gqlError?.path,
      extensions: inner.extensions,
    });
  }
  log.error({ err: gqlError?.originalError ?? error }, 'unexpected GraphQL error');
  return new GraphQLError(message, {
    nodes: gqlError?.nodes,
    path: gqlError?.path,
    extensions: { code: 'INTERNAL_SERVER_ERROR', ...requestIdExtension() },
  });
}
