import { createHash, timingSafeEqual } from 'node:crypto';
import { AuthenticationError, NotFoundError, ValidationError } from '../shared/errors.js';
import { ExternalId } from '../shared/fields.js';
import type { Runtime } from '../shared/runtime.js';
import { type KeyPrincipal, keySubject, type Principal, type Scope } from './principal.js';

// Credentials to principals, and principals into organisations.

export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

function safeEqual(a: string, b: string): boolean {
  const ab = Buffer.from(a);
  const bb = Buffer.from(b);
  return ab.length === bb.length && timingSafeEqual(ab, bb);
}

/** Pulls the key from `Authorization: Bearer …` or `X-API-Key`, as every transport accepts both. */
export function credentialFrom(headers: { authorization?: string | null; apiKey?: string | null }): string | undefined {
  const auth = headers.authorization?.trim();
  if (auth) {
    const m = /^Bearer\s+(.+)$/i.exec(auth);
    return m?.[1]?.trim() || undefined;
  }
  return headers.apiKey?.trim() || undefined;
}

const LAST_USED_RESOLUTION_MS = 60_000;

/** Most keys remembered per gateway; the oldest lookup is forgotten first. */
const KEY_CACHE_MAX = 10_000;

/**
 * Resolves a credential to a principal. A key's lookup is reused for `keyCacheTtlMs` (the database
 * is not asked on every request); revoking a key evicts it at once on every replica (`apiKeyRevoked`,
 * through the event bus, Redis between replicas), and the TTL bounds how long a lost event matters.
 * @throws AuthenticationError when the credential is missing, unknown or revoked
 */
export async function authenticate(rt: Runtime, credential: string | undefined, adminApiKey: string | undefined): Promise<Principal> {
  if (!credential) throw new AuthenticationError();
  if (adminApiKey && safeEqual(credential, adminApiKey)) return { kind: 'platform', subject: 'admin' };
  const hash = hashSecret(credential);
  const now = Date.now();
  const cached = rt.state.keyCache.get(hash);
  const principal = cached && cached.until > now ? (cached.principal as KeyPrincipal) : await lookUpKey(rt, hash, now);
  // last_used_at at minute resolution: a write per request would double the cost of every read.
  if ((rt.state.keyLastUsedWrites.get(principal.keyId) ?? 0) < now - LAST_USED_RESOLUTION_MS) {
    rt.state.keyLastUsedWrites.set(principal.keyId, now);
    await rt.db.apiKey.update({ where: { id: principal.keyId }, data: { lastUsedAt: new Date(now) } });
  }
  return principal;
}

async function lookUpKey(rt: Runtime, hash: string, now: number): Promise<KeyPrincipal> {
  rt.state.keyCache.delete(hash);
  const key = await rt.db.apiKey.findUnique({ where: { secretHash: hash } });
  if (!key || key.revokedAt) throw new AuthenticationError();
  const principal: KeyPrincipal = {
    kind: 'key',
    subject: keySubject(key.id),
    keyId: key.id,
    orgId: key.orgId,
    scopes: new Set(key.scopes as Scope[]),
    appId: key.appId,
  };
  // A revocation that committed while this lookup ran has evicted nothing yet: never cache such a key.
  if (rt.settings.keyCacheTtlMs > 0 && !wasRevoked(rt, key.id)) {
    if (rt.state.keyCache.size >= KEY_CACHE_MAX) rt.state.keyCache.delete(rt.state.keyCache.keys().next().value as string);
    rt.state.keyCache.set(hash, { principal, until: now + rt.settings.keyCacheTtlMs });
  }
  return principal;
}

/**
 * Forgets a key's cached lookup (on this gateway; `apiKeyRevoked` events call this on every replica)
 * and remembers the revocation for one cache lifetime, so a lookup that read the key just before the
 * revocation committed does not cache it afterwards.
 */
export function forgetKey(rt: Runtime, keyId: string): void {
  const now = Date.now();
  for (const [id, until] of rt.state.revokedKeys) if (until <= now) rt.state.revokedKeys.delete(id);
  rt.state.revokedKeys.set(keyId, now + Math.max(rt.settings.keyCacheTtlMs, 1000));
  for (const [hash, entry] of rt.state.keyCache) if (entry.principal.keyId === keyId) rt.state.keyCache.delete(hash);
}

/** Whether the key was revoked within the last cache lifetime (as heard on this gateway). */
export function wasRevoked(rt: Runtime, keyId: string): boolean {
  return (rt.state.revokedKeys.get(keyId) ?? 0) > Date.now();
}

/**
 * Evicts revoked keys from this gateway's cache as their events arrive, until `signal` aborts.
 * Started by the runtime; the revoking replica also evicts in line (its own bus may be Redis).
 */
export async function evictRevokedKeys(rt: Runtime, signal: AbortSignal): Promise<void> {
  const events = rt.events.subscribe('apiKeyRevoked');
  const iterator = events[Symbol.asyncIterator]();
  signal.addEventListener('abort', () => void iterator.return?.(), { once: true });
  for (;;) {
    const next = await iterator.next();
    if (next.done) return;
    forgetKey(rt, next.value.keyId);
  }
}

/**
 * Admits the principal to an organisation: a platform key to any (an organisation it has not written
 * to yet simply holds nothing), any other key to its own only (another org answers 404, never 403,
 * so ids do not leak). Reads never create anything; see ensureOrg.
 * @throws ValidationError (malformed id), NotFoundError for another organisation
 */
export async function enterOrg(_rt: Runtime, p: Principal, orgId: string): Promise<void> {
  if (!ExternalId.safeParse(orgId).success) {
    throw ValidationError.field(['org_id'], 'org_id must be 1-128 letters, digits or . _ : @ -, starting with a letter or digit', orgId);
  }
  if (p.kind === 'key' && p.orgId !== orgId) throw new NotFoundError('organization', orgId);
}

/**
 * Brings an organisation into being, just before its first row that needs it (a workspace or an API
 * key) is written, after that write's input was validated: a platform key's reads, or a refused
 * create, leave no organisation behind.
 */
export async function ensureOrg(rt: Runtime, orgId: string): Promise<void> {
  if (rt.state.knownOrgs.has(orgId)) return;
  await rt.db.organization.upsert({ where: { id: orgId }, create: { id: orgId }, update: {} });
  rt.state.knownOrgs.add(orgId);
}
