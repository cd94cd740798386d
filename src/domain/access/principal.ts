import { ForbiddenError } from '../shared/errors.js';

// Who is calling and what they may do in general: scopes, access levels. Pure: no database here.

export const SCOPES = [
  'workspaces:read',
  'workspaces:write',
  'volumes:read',
  'volumes:write',
  'entries:read',
  'entries:write',
  'locks:write',
  'search',
  'admin',
] as const;
export type Scope = (typeof SCOPES)[number];

/** Scopes an app key may hold: app keys act only through their mounts, never on the org itself. */
export const APP_KEY_SCOPES: readonly Scope[] = [
  'workspaces:read',
  'volumes:read',
  'volumes:write',
  'entries:read',
  'entries:write',
  'locks:write',
  'search',
];

export const ACCESS_LEVELS = ['read', 'write', 'admin'] as const;
export type AccessLevel = (typeof ACCESS_LEVELS)[number];

/** Who is calling. Built once per request (or WebSocket connection) by `authenticate`. */
export type Principal =
  | { kind: 'platform'; subject: 'admin' }
  | { kind: 'key'; subject: string; keyId: string; orgId: string; scopes: ReadonlySet<Scope>; appId: string | null };

export type KeyPrincipal = Extract<Principal, { kind: 'key' }>;
export type AppPrincipal = KeyPrincipal & { appId: string };

/** The `subject` of a key principal, as rows record it in `created_by` / `modified_by` / `granted_by`. */
export const keySubject = (keyId: string) => `key:${keyId}`;

/** The API key id a recorded subject names (`key:<id>`), or null (the platform key is `admin`). */
export function keyIdOfSubject(subject: string): string | null {
  return subject.startsWith('key:') ? subject.slice(4) : null;
}

/** The `subject` of the platform key, as rows record it. */
export const PLATFORM_SUBJECT = 'admin';

/** How the platform key is named where a subject is shown by name (a volume's owner). */
export const PLATFORM_SUBJECT_NAME = 'platform admin';

export function isAppKey(p: Principal): p is AppPrincipal {
  return p.kind === 'key' && p.appId !== null;
}

/**
 * The principal whose view a caller asks for by naming an app (`app_id`): that app's mounts and
 * path patterns, plus the org's shared volumes, within `orgId`. Whoever names the app, platform key,
 * org key or the app's own key, gets exactly this view and nothing beyond it. Scopes stay the
 * caller's (they were checked already; this principal only narrows what is visible).
 */
export function actingAsApp(p: Principal, orgId: string, appId: string): AppPrincipal {
  if (p.kind === 'key') return { ...p, appId };
  return { kind: 'key', subject: `platform-as:${appId}`, keyId: '', orgId, scopes: new Set(SCOPES), appId };
}

export function hasScope(p: Principal, scope: Scope): boolean {
  return p.kind === 'platform' || p.scopes.has('admin') || p.scopes.has(scope);
}

/** @throws ForbiddenError naming the missing scope */
export function requireScope(p: Principal, scope: Scope): void {
  if (!hasScope(p, scope)) throw new ForbiddenError(scope);
}

const rank: Record<AccessLevel, number> = { read: 1, write: 2, admin: 3 };

export function levelAtLeast(have: AccessLevel, need: AccessLevel): boolean {
  return rank[have] >= rank[need];
}

/** @throws ForbiddenError for app keys, which act only through their mounts and cannot change the org's structure */
export function forbidAppKey(p: Principal, requiredPermission: string): void {
  if (isAppKey(p)) {
    throw new ForbiddenError(requiredPermission, { reason: 'app keys act only through their mounts' });
  }
}
