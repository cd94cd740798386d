import { randomUUID } from 'node:crypto';
import { authenticate, credentialFrom } from '../domain/access/authenticate.js';
import type { Principal } from '../domain/access/principal.js';
import { chargeRequest } from '../domain/access/rate-limits.js';
import { AuthenticationError } from '../domain/shared/errors.js';
import type { Runtime } from '../domain/shared/runtime.js';
import { noteCaller, noteRequest } from '../http/request-log.js';

/** Per-request (or per WebSocket operation) context: who calls, and the gateway it calls. Immutable. */
export interface GraphQLContext {
  principal: Principal | null;
  requestId: string;
  /** The gateway's one runtime (database, blob store, events, jobs, settings). */
  runtime: Runtime;
  /** This gateway's depth, cost and breadth limits (config), read by the complexity plugin. */
  queryLimits: QueryLimits;
  /** This request's batch loaders by name (src/graphql/loaders.ts). */
  loaders: Map<string, unknown>;
}

export interface QueryLimits {
  depth: number;
  complexity: number;
  breadth: number;
}

/** What yoga hands the context factory: an HTTP request, or graphql-ws connection params. */
export interface InitialContext {
  request?: Request;
  connectionParams?: Record<string, unknown>;
  /** Set by the WebSocket server after it authenticated `connection_init`. */
  principal?: Principal | null;
}

/** Reads `{authorization}` or `{apiKey}` from graphql-ws `connection_init` params. */
export function credentialFromConnectionParams(params: Record<string, unknown> | undefined): string | undefined {
  const str = (v: unknown) => (typeof v === 'string' ? v : undefined);
  return credentialFrom({
    authorization: str(params?.authorization) ?? str(params?.Authorization),
    apiKey: str(params?.apiKey) ?? str(params?.['x-api-key']),
  });
}

/**
 * Resolves the caller. No or bad credentials give a null principal: public fields still work and
 * every protected one answers UNAUTHENTICATED (scope-auth, src/graphql/builder.ts).
 */
export async function resolvePrincipal(
  rt: Runtime,
  credential: string | undefined,
  adminApiKey: string | undefined,
): Promise<Principal | null> {
  if (!credential) return null;
  try {
    return await authenticate(rt, credential, adminApiKey);
  } catch (err) {
    if (err instanceof AuthenticationError) return null;
    throw err;
  }
}

export function createContextFactory(rt: Runtime, adminApiKey: string | undefined, queryLimits: QueryLimits) {
  return async (initial: InitialContext): Promise<GraphQLContext> => {
    let principal: Principal | null;
    if (initial.principal !== undefined) principal = initial.principal;
    else if (initial.connectionParams)
      principal = await resolvePrincipal(rt, credentialFromConnectionParams(initial.connectionParams), adminApiKey);
    else {
      const h = initial.request?.headers;
      principal = await resolvePrincipal(
        rt,
        credentialFrom({ authorization: h?.get('authorization'), apiKey: h?.get('x-api-key') }),
        adminApiKey,
      );
    }
    if (principal) noteCaller(principal);
    // Over HTTP, each request counts; over graphql-ws the server counts each operation (ws-server.ts).
    if (principal && initial.request && initial.principal === undefined && !initial.connectionParams) await chargeRequest(rt, principal);
    const operation = (initial as { params?: { operationName?: string | null } }).params?.operationName;
    if (operation) noteRequest({ operation });
    return {
      principal,
      // Set on every HTTP request by src/http/request-log.ts (from the client's X-Request-Id or made there).
      requestId: initial.request?.headers.get('x-request-id') ?? randomUUID(),
      runtime: rt,
      queryLimits,
      loaders: new Map(),
    };
  };
}
