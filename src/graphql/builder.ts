import SchemaBuilder from '@pothos/core';
import ComplexityPlugin from '@pothos/plugin-complexity';
import PrismaPlugin from '@pothos/plugin-prisma';
import RelayPlugin from '@pothos/plugin-relay';
import ScopeAuthPlugin, { type AuthFailure, AuthScopeFailureType } from '@pothos/plugin-scope-auth';
import { GraphQLError, type GraphQLField, GraphQLScalarType, getNamedType, getNullableType, isListType, isObjectType } from 'graphql';
import { DateTimeResolver, JSONResolver, SafeIntResolver } from 'graphql-scalars';
import { schemaBuildOptions } from '../config.js';
import { hasScope, type Principal, type Scope } from '../domain/access/principal.js';
import { AuthenticationError, ForbiddenError } from '../domain/shared/errors.js';
import type PrismaTypes from '../generated/pothos-types.js';
import { getDatamodel } from '../generated/pothos-types.js';
import type { GraphQLContext } from './context.js';
import { MAX_PAGE_SIZE } from './page-size.js';

/** The first scope a failed auth check asked for, to name it in `required_permission`. */
function missingScope(failure: AuthFailure): string | undefined {
  if ('failures' in failure) return failure.failures.map(missingScope).find(Boolean);
  if (failure.kind === AuthScopeFailureType.AuthScope && failure.scope === 'scope') return String(failure.parameter);
  return undefined;
}

/** A connection's page when `first` is not given (Prisma connections; complexity prices it so). */
export const DEFAULT_PAGE = 50;

/**
 * Cost of a field: a connection costs its page size (`first`/`last`, default 50) times what each
 * node selects, so `workspaces(first: 200) { volumes(first: 200) { … } }` is priced as the 40 000
 * rows it could load; other object lists count 10 per item; scalars and edges lists count once.
 */
function fieldComplexity(
  args: Record<string, unknown>,
  _ctx: GraphQLContext,
  field: GraphQLField<unknown, GraphQLContext, Record<string, unknown>>,
) {
  const named = getNamedType(field.type);
  if (named.name.endsWith('Connection')) {
    const size = Number(args.first ?? args.last ?? DEFAULT_PAGE);
    return { field: 1, multiplier: Math.min(Number.isFinite(size) && size > 0 ? size : DEFAULT_PAGE, MAX_PAGE_SIZE) };
  }
  // The connection already paid for its page; a list number alone would be multiplied again by 10.
  if (field.name === 'edges' || !isObjectType(named)) return { field: 1, multiplier: 1 };
  return { field: 1, multiplier: isListType(getNullableType(field.type)) ? 10 : 1 };
}

/**
 * The one schema builder. Plugin order matters: scope-auth wraps resolvers first so nothing below
 * it runs for an unauthorised caller; page sizes are checked next; complexity prices the whole
 * operation before execution; prisma and relay then shape fields and connections.
 */
export const builder = new SchemaBuilder<{
  Context: GraphQLContext;
  PrismaTypes: PrismaTypes;
  AuthScopes: { authenticated: boolean; scope: Scope };
  AuthContexts: { authenticated: GraphQLContext & { principal: Principal } };
  Scalars: {
    DateTime: { Input: Date; Output: Date };
    JSON: { Input: unknown; Output: unknown };
    SafeInt: { Input: number; Output: number | bigint };
    File: { Input: unknown; Output: never };
  };
  DefaultFieldNullability: false;
}>({
  defaultFieldNullability: false,
  plugins: [ScopeAuthPlugin, 'pageSize', ComplexityPlugin, PrismaPlugin, RelayPlugin],
  complexity: {
    fieldComplexity,
    // Per gateway (config), so the schema itself stays static and shared.
    limit: (ctx) => ctx.queryLimits,
    complexityError: (kind, result) =>
      new GraphQLError(`Query is too ${kind === 'Depth' ? 'deep' : kind === 'Breadth' ? 'broad' : 'expensive'}`, {
        extensions: {
          code: 'QUERY_TOO_COMPLEX',
          depth: result.depth,
          complexity: result.complexity,
          breadth: result.breadth,
          maxDepth: result.maxDepth,
          maxComplexity: result.maxComplexity,
          maxBreadth: result.maxBreadth,
        },
      }),
  },
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
    // One client per gateway: the runtime's, carried by each request's context.
    client: (ctx) => ctx.runtime.db,
    dmmf: getDatamodel(),
    exposeDescriptions: true,
    filterConnectionTotalCount: true,
    onUnusedQuery: schemaBuildOptions.onUnusedQuery,
    maxConnectionSize: MAX_PAGE_SIZE,
    defaultConnectionSize: DEFAULT_PAGE,
  },
  relay: {
    clientMutationId: 'omit',
    cursorType: 'String',
    firstArgOptions: { description: `Returns the first n items (0-${MAX_PAGE_SIZE}, default ${DEFAULT_PAGE}; more is VALIDATION_FAILED)` },
    lastArgOptions: { description: `Returns the last n items (0-${MAX_PAGE_SIZE}; more is VALIDATION_FAILED)` },
  },
});

builder.addScalarType('DateTime', DateTimeResolver);
builder.addScalarType('JSON', JSONResolver);
// Postgres BIGINT columns (sizes, counters, fencing tokens) arrive as bigint: exposed as they are,
// serialised as numbers, and refused like any other value past 2^53 - 1 rather than rounded.
builder.addScalarType(
  'SafeInt',
  new GraphQLScalarType({
    ...SafeIntResolver.toConfig(),
    serialize: (value) => SafeIntResolver.serialize(typeof value === 'bigint' ? Number(value) : value),
  }),
);

// Deny by default: every root field needs a principal unless it opts out.
builder.queryType({ authScopes: { authenticated: true } });
builder.mutationType({ authScopes: { authenticated: true } });
builder.subscriptionType({ authScopes: { authenticated: true } });

/** Generic result of a delete mutation. */
export const Deleted = builder.objectRef<{ id: string; message: string }>('Deleted').implement({
  description: 'What a delete mutation removed.',
  fields: (t) => ({ id: t.exposeID('id'), message: t.exposeString('message') }),
});
