import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import type { ApiKey } from '../../generated/prisma/client.js';
import { NotFoundError, ValidationError } from '../shared/errors.js';
import { ExternalId, isId, Name } from '../shared/fields.js';
import { type Page, type PageQuery, paginate } from '../shared/pagination.js';
import type { Runtime } from '../shared/runtime.js';
import { parseInput } from '../shared/validation.js';
import { ensureOrg, forgetKey, hashSecret } from './authenticate.js';
import { authorizeOrg } from './authorize.js';
import { APP_KEY_SCOPES, keyIdOfSubject, PLATFORM_SUBJECT, PLATFORM_SUBJECT_NAME, type Principal, SCOPES } from './principal.js';

export const SECRET_PREFIX = 'vgk_';

export const CreateApiKeyInput = z.object({
  name: Name,
  scopes: z
    .array(z.enum(SCOPES))
    .min(1)
    .max(SCOPES.length)
    .transform((s) => [...new Set(s)]),
  app_id: ExternalId.nullable().optional().describe('Makes this an app key: it reaches only volumes mounted for this app'),
});
export type CreateApiKeyInput = z.input<typeof CreateApiKeyInput>;

/**
 * Creates an org key. The secret is returned once and only its sha256 is stored. App keys may not
 * hold `admin` or `workspaces:write`: they act through mounts only.
 * @throws ValidationError, ForbiddenError (needs `admin`), NotFoundError
 */
export async function createApiKey(
  rt: Runtime,
  p: Principal,
  orgId: string,
  raw: unknown,
  loc: (string | number)[] = ['body'],
): Promise<{ secret: string; key: ApiKey }> {
  await authorizeOrg(rt, p, orgId, { scope: 'admin', orgWide: true });
  const input = parseInput(CreateApiKeyInput, raw, loc);
  if (input.app_id) {
    const outside = input.scopes.filter((s) => !APP_KEY_SCOPES.includes(s));
    if (outside.length > 0) {
      throw ValidationError.field([...loc, 'scopes'], `app keys cannot hold: ${outside.join(', ')}`, input.scopes);
    }
  }
  const secret = `${SECRET_PREFIX}${randomBytes(32).toString('base64url')}`;
  await ensureOrg(rt, orgId);
  const key = await rt.db.apiKey.create({
    data: {
      orgId,
      name: input.name,
      prefix: secret.slice(0, SECRET_PREFIX.length + 8),
      secretHash: hashSecret(secret),
      scopes: input.scopes,
      appId: input.app_id ?? null,
      createdBy: p.subject,
    },
  });
  return { secret, key };
}

/** @throws ForbiddenError, NotFoundError */
/**
 * The checks and filter for reading an org's API keys (org admins and the platform key only),
 * shared by REST and GraphQL.
 * @throws NotFoundError (another org), ForbiddenError (needs admin; never app keys)
 */
export async function apiKeyReadFilter(rt: Runtime, p: Principal, orgId: string): Promise<{ orgId: string }> {
  await authorizeOrg(rt, p, orgId, { scope: 'admin', orgWide: true });
  return { orgId };
}

export async function listApiKeys(rt: Runtime, p: Principal, orgId: string, page: PageQuery): Promise<Page<ApiKey>> {
  const where = await apiKeyReadFilter(rt, p, orgId);
  return paginate(
    page,
    () => rt.db.apiKey.count({ where }),
    (q) => rt.db.apiKey.findMany({ ...q, where: { ...where, ...q.where } }),
  );
}

/** The org of a key, for callers that know only its id. @throws NotFoundError */
export async function locateApiKey(rt: Runtime, keyId: string): Promise<{ orgId: string }> {
  const k = isId(keyId) ? await rt.db.apiKey.findUnique({ where: { id: keyId }, select: { orgId: true } }) : null;
  if (!k) throw new NotFoundError('api_key', keyId);
  return k;
}

/** Revokes a key at once (idempotent). @throws ForbiddenError, NotFoundError */
export async function revokeApiKey(rt: Runtime, p: Principal, orgId: string, keyId: string): Promise<ApiKey> {
  await authorizeOrg(rt, p, orgId, { scope: 'admin', orgWide: true });
  const key = isId(keyId) ? await rt.db.apiKey.findFirst({ where: { id: keyId, orgId } }) : null;
  if (!key) throw new NotFoundError('api_key', keyId);
  if (key.revokedAt) return key;
  const revoked = await rt.db.apiKey.update({ where: { id: keyId }, data: { revokedAt: new Date() } });
  forgetKey(rt, keyId);
  rt.events.publish('apiKeyRevoked', { keyId });
  return revoked;
}

/**
 * Display names of recorded subjects (`created_by`, `modified_by`): an API key's name (a revoked
 * key keeps its name), "platform admin" for the platform key, null for anything else (a key of
 * another organisation than `orgId` included). In `subjects`' order, with one query however many.
 * Not a permission check: callers show names only beside rows the principal could already read.
 */
export async function subjectNames(rt: Runtime, subjects: readonly { orgId: string; subject: string }[]): Promise<(string | null)[]> {
  const ids = [...new Set(subjects.map((s) => keyIdOfSubject(s.subject)).filter((id): id is string => id !== null && isId(id)))];
  const keys =
    ids.length === 0 ? [] : await rt.db.apiKey.findMany({ where: { id: { in: ids } }, select: { id: true, orgId: true, name: true } });
  const byId = new Map(keys.map((k) => [k.id, k]));
  return subjects.map(({ orgId, subject }) => {
    if (subject === PLATFORM_SUBJECT) return PLATFORM_SUBJECT_NAME;
    const key = byId.get(keyIdOfSubject(subject) ?? '');
    return key && key.orgId === orgId ? key.name : null;
  });
}
