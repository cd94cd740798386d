import type { Context } from 'hono';
import { type Preconditions, parseIfMatch, type WriteConditions } from '../domain/entries/rules.js';
import { ValidationError } from '../domain/shared/errors.js';
import { ShortId } from '../domain/shared/fields.js';
import { parseInput } from '../domain/shared/validation.js';
import type { RestEnv } from './env.js';

// The headers a REST writer states its conditions with, read once for every route that writes an
// entry (PUT/POST/DELETE/move of entries, tus creation, signed upload URLs).

/**
 * What a writer states with headers: versions (If-Match / If-None-Match) and the lock it holds
 * (X-Lock-Id) or the fencing token it was issued (X-Fencing-Token with X-Lock-Partition).
 */
export function preconditions(c: Context<RestEnv>): WriteConditions {
  const token = c.req.header('x-fencing-token')?.trim();
  const partition = c.req.header('x-lock-partition')?.trim();
  if ((token === undefined) !== (partition === undefined)) {
    throw ValidationError.field(
      ['header', token === undefined ? 'x-fencing-token' : 'x-lock-partition'],
      'X-Fencing-Token and X-Lock-Partition go together',
      null,
      'missing',
    );
  }
  if (token !== undefined && !/^\d{1,15}$/.test(token)) {
    throw ValidationError.field(['header', 'x-fencing-token'], 'X-Fencing-Token must be a fencing token (a positive integer)', token);
  }
  const lockId = c.req.header('x-lock-id')?.trim() || undefined;
  return {
    ...versionPreconditions(c),
    ...(lockId ? { lockId } : {}),
    ...(token !== undefined && partition !== undefined ? { fencing: { partition, token: Number(token) } } : {}),
  };
}

/** If-Match / If-None-Match as domain preconditions (only `*` is supported for If-None-Match). */
function versionPreconditions(c: Context<RestEnv>): Preconditions {
  const ifMatch = parseIfMatch(c.req.header('if-match'));
  if (ifMatch === 'invalid')
    throw ValidationError.field(['header', 'if-match'], 'If-Match must be an entry version such as "3", or *', c.req.header('if-match'));
  const none = c.req.header('if-none-match')?.trim();
  if (none !== undefined && none !== '*')
    throw ValidationError.field(['header', 'if-none-match'], 'Only If-None-Match: * is supported', none);
  return { ifMatch, ifNoneMatch: none === '*' };
}

/** The X-Execution-Id header, held to the same rules as the body's `execution_id`. */
export function executionId(c: Context<RestEnv>): string | undefined {
  const header = c.req.header('x-execution-id');
  if (header === undefined || header.trim() === '') return undefined;
  return parseInput(ShortId, header, ['header', 'x-execution-id']);
}
