import type { Redis } from 'ioredis';
import { type RateLimiterAbstract, RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import { RateLimitedError } from '../shared/errors.js';
import type { RateLimits, Runtime } from '../shared/runtime.js';
import type { Principal } from './principal.js';

// Per-key rate limits: requests (every REST request, GraphQL request over HTTP and graphql-ws
// operation) and upload bytes, per fixed window. One rule for every transport, kept here. The
// platform key (the operator's) is never limited; a request without a valid key is refused by
// authentication before it is counted.

export interface RateLimitSettings {
  /** Requests per window per key (0: no limit). */
  requests: number;
  /** Upload bytes per window per key (0: no limit). */
  uploadBytes: number;
  windowSeconds: number;
}

/**
 * The limiters of one gateway: in this process's memory, or in Redis when a client is given, so
 * every replica counts against the same budget (with a per-process limiter as insurance should
 * Redis fail: a Redis outage never refuses requests on its own).
 */
export function createRateLimits(settings: RateLimitSettings, redis?: Redis): RateLimits {
  const make = (keyPrefix: string, points: number): RateLimiterAbstract | undefined => {
    if (points === 0) return undefined;
    const opts = { keyPrefix: `vg-rl-${keyPrefix}`, points, duration: settings.windowSeconds };
    if (!redis) return new RateLimiterMemory(opts);
    return new RateLimiterRedis({
      ...opts,
      storeClient: redis,
      rejectIfRedisNotReady: true,
      insuranceLimiter: new RateLimiterMemory(opts),
    });
  };
  return { requests: make('req', settings.requests), uploadBytes: make('upl', settings.uploadBytes), settings };
}

/** Seconds until the window that refused a request ends (at least 1). */
const retryAfter = (res: RateLimiterRes) => Math.max(1, Math.ceil(res.msBeforeNext / 1000));

function refused(err: unknown, limit: 'requests' | 'upload_bytes', max: number, windowSeconds: number): RateLimitedError {
  if (err instanceof RateLimiterRes) return new RateLimitedError(limit, max, windowSeconds, retryAfter(err));
  throw err;
}

/**
 * Counts one request of `p` against its key's budget.
 * @throws RateLimitedError when the key has used its requests for this window
 */
export async function chargeRequest(rt: Runtime, p: Principal): Promise<void> {
  const { requests, settings } = rt.limits;
  if (!requests || p.kind !== 'key') return;
  try {
    await requests.consume(p.keyId);
  } catch (err) {
    throw refused(err, 'requests', settings.requests, settings.windowSeconds);
  }
}

/**
 * Before an upload streams: refuses it when the key has no upload bytes left in this window.
 * (The bytes are counted when they have arrived, by `chargeUploadBytes`: one upload may overrun
 * the window's budget; the next one is refused until the window ends.)
 * @throws RateLimitedError
 */
export async function checkUploadAllowance(rt: Runtime, p: Principal): Promise<void> {
  const { uploadBytes, settings } = rt.limits;
  if (!uploadBytes || p.kind !== 'key') return;
  const used = await uploadBytes.get(p.keyId);
  if (used && used.consumedPoints >= settings.uploadBytes)
    throw refused(used, 'upload_bytes', settings.uploadBytes, settings.windowSeconds);
}

/** Counts the bytes an upload of `p` sent (whether or not it was stored). Never throws. */
export async function chargeUploadBytes(rt: Runtime, p: Principal, bytes: number): Promise<void> {
  const { uploadBytes } = rt.limits;
  if (!uploadBytes || p.kind !== 'key' || bytes <= 0) return;
  // penalty() adds points without refusing: the budget check is checkUploadAllowance's.
  await uploadBytes.penalty(p.keyId, bytes).catch((err) => rt.log.warn({ err }, 'could not count upload bytes against the rate limit'));
}
