import { createHash, timingSafeEqual } from 'node:crypto';
import { AuthenticationError, NotFoundError, ValidationError } from '../shared/errors.js';
import { ExternalId } from '../shared/fields.js';
import type { Runtime } from '../shared/runtime.js';
import type { Principal, Scope } from './principal.js';

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

/**
 * Resolves a credential to a principal.
 * @throws AuthenticationError when the credential is missing, unknown or revoked
 */
export async function authenticate(rt: Runtime, credential: string | undefined, adminApiKey: string | undefined): Promise<Principal> {
  if (!credential) throw new AuthenticationError();
  if (adminApiKey && safeEqual(credential, adminApiKey)) return { kind: 'platform', subject: 'admin' };
  const key = await rt.db.apiKey.findUnique({ where: { secretHash: hashSecret(credential) } });
  if (!key || key.revokedAt) throw new AuthenticationError();
  // last_used_at at minute resolution: a write per request would double the cost of every read.
  const now = Date.now();
  if ((rt.state.keyLastUsedWrites.get(key.id) ?? 0) < now - LAST_USED_RESOLUTION_MS) {
    rt.state.keyLastUsedWrites.set(key.id, now);
    await rt.db.apiKey.update({ where: { id: key.id }, data: { lastUsedAt: new Date(now) } });
  }
  return {
    kind: 'key',
    subject: `key:${key.id}`,
    keyId: key.id,
    orgId: key.orgId,
    scopes: new Set(key.scopes as Scope[]),
    appId: key.appId,
  };
}

/**
 * Admits the principal to an organisation. A platform key brings the organisation into being on
 * first use; any other key sees only its own (another org answers 404, never 403, so ids do not leak).
 * @throws NotFoundError for another organisation
 */
export async function enterOrg(rt: Runtime, p: Principal, orgId: string): Promise<void> {
  if (!ExternalId.safeParse(orgId).success) {
    throw ValidationError.field(['org_id'], 'org_id must be 1-128 letters, digits or . _ : @ -, starting with a letter or digit', orgId);
  }
  if (p.kind === 'key') {
    if (p.orgId !== orgId) throw new NotFoundError('organization', orgId);
    return;
  }
  if (rt.state.knownOrgs.has(orgId)) return;
  await rt.db.organization.upsert({ where: { id: orgId }, create: { id: orgId }, update: {} });
  rt.state.knownOrgs.add(orgId);
}
