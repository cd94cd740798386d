import SchemaBuilder from '@pothos/core';
import PrismaPlugin from '@pothos/plugin-prisma';
import RelayPlugin from '@pothos/plugin-relay';
import ScopeAuthPlugin, { type AuthFailure, AuthScopeFailureType } from '@pothos/plugin-scope-auth';
import { DateTimeResolver, JSONResolver } from 'graphql-scalars';
import { db } from '../db/client.js';
import { hasScope, type Principal, type Scope } from '../domain/access.js';
import { AuthenticationError, ForbiddenError } from '../domain/errors.js';
import type PrismaTypes from '../generated/pothos-types.js';
import { getDatamodel } from '../generated/pothos-types.js';
import type { GraphQLContext } from './context.js';

/** The first scope a failed auth check asked for, to name it in `required_permission`. */
function missingScope(failure: AuthFailure): string | undefined {
  if ('failures' in failure) return failure.failures.map(missingScope).find(Boolean);
  if (failure.kind === AuthScopeFailureType.AuthScope && failure.scope === 'scope') return String(failure.parameter);
  return undefined;
}

/**
 * The one schema builder. Plugin order matters: scope-auth wraps resolvers first so nothing below
 * it runs for an unauthorised caller; prisma and relay then shape fields and connections.
 */
export const builder = new SchemaBuilder<{
  Context: GraphQLContext;
  PrismaTypes: PrismaTypes;
  AuthScopes: { authenticated: boolean; scope: Scope };
  AuthContexts: { authenticated: GraphQLContext & { principal: Principal } };
  Scalars: {
    DateTime: { Input: Date; Output: Date };
    JSON: { Input: unknown; Output: unknown };
  };
  DefaultFieldNullability: false;
}>({
  defaultFieldNullability: false,
  plugins: [ScopeAuthPlugin, PrismaPlugin, RelayPlugin],
  scopeAuth: {
    // Scope decisions come from the domain's hasScope, the same rule REST routes use.
    authScopes: (ctx) => ({
      authenticated: ctx.principal !== null,
      scope: (scope: Scope) => ctx.principal !== null && hasScope(ctx.principal, scope),
    }),
    unauthorizedError: (_parent, ctx, _info, result) => {
      if (!ctx.principal) return new AuthenticationError();
      return new ForbiddenError(missingScope(result.failure) ?? 'unknown');
    },
    authorizeOnSubscribe: true,
  },
  prisma: {
    client: () => db,
    dmmf: getDatamodel(),
    exposeDescriptions: true,
    filterConnectionTotalCount: true,
    onUnusedQuery: process.env.NODE_ENV === 'production' ? null : 'warn',
    maxConnectionSize: 200,
    defaultConnectionSize: 50,
  },
  relay: {
    clientMutationId: 'omit',
    cursorType: 'String',
  },
});

builder.addScalarType('DateTime', DateTimeResolver);
builder.addScalarType('JSON', JSONResolver);

// Deny by default: every root field needs a principal unless it opts out.
builder.queryType({ authScopes: { authenticated: true } });
builder.mutationType({ authScopes: { authenticated: true } });
builder.subscriptionType({ authScopes: { authenticated: true } });

/** Generic result of a delete mutation. */
export const Deleted = builder.objectRef<{ id: string; message: string }>('Deleted').implement({
  description: 'What a delete mutation removed.',
  fields: (t) => ({ id: t.exposeID('id'), message: t.exposeString('message') }),
});
