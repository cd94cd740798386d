import type { Principal } from '../domain/access/principal.js';
import { ValidationError } from '../domain/shared/errors.js';

const toSnake = (k: string) => k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
export const toCamel = (k: string) => k.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());

/**
 * GraphQL inputs are camelCase; the domain's schemas use the REST wire names (snake_case). Keys are
 * renamed only at the top level, and null/undefined GraphQL values are dropped so "not given" means
 * the same in both layers. Validation errors are renamed back in src/graphql/errors.ts.
 */
export function toDomainInput(input: Record<string, unknown> | null | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(input ?? {})) if (v !== undefined) out[toSnake(k)] = v;
  return out;
}

/** The org an operation targets: an org key's own, or the `orgId` argument a platform key must give. */
export function orgFor(principal: Principal, orgId: string | null | undefined): string {
  if (principal.kind === 'key') return orgId ?? principal.orgId;
  if (!orgId) throw ValidationError.field(['orgId'], 'orgId is required when acting with the platform admin key', null, 'missing');
  return orgId;
}
