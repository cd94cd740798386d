/**
 * The graphql-ws endpoint and its hostile-client limits (connection caps per process and key,
 * subscription caps, idle and init timeouts, message size). One file (~300 lines) because every limit
 * hooks the same graphql-ws server callbacks and shares its per-connection bookkeeping.
 */
import type http from 'node:http';
import { type DocumentNode, GraphQLError, getOperationAST } from 'graphql';
import type { ConnectionInitMessage, Context } from 'graphql-ws';
import { type Extra, useServer } from 'graphql-ws/use/ws';
import type { Logger } from 'pino';
import { WebSocket, WebSocketServer } from 'ws';
import type { Config } from '../config.js';
import { wasRevoked } from '../domain/access/authenticate.js';
import type { Principal } from '../domain/access/principal.js';
import { chargeRequest } from '../domain/access/rate-limits.js';
import { RateLimitedError } from '../domain/shared/errors.js';
import type { Runtime } from '../domain/shared/runtime.js';
import type { GatewayMetrics } from '../telemetry/metrics.js';
import { credentialFromConnectionParams, resolvePrincipal } from './context.js';
import { maskError } from './errors.js';
import { GRAPHQL_MAX_BODY_BYTES, type GraphQLServer } from './yoga.js';

/** Limits of the graphql-ws endpoint (WS_* settings, see .env.example and config.ts). */
export type WsLimits = Config['ws'];

/**
 * Close codes this server uses besides graphql-ws' own (4400 bad message, 4401 subscribe before
 * ack, 4403 forbidden, 4408 no connection_init in time, 4409 duplicate id, 4429 second
 * connection_init, 4500 internal error). A message over the size limit is closed by ws with 1009.
 */
export const WsCloseCode = {
  /** The connection's API key was revoked (graphql-ws' own "forbidden"; clients do not retry it). */
  Forbidden: 4403,
  /** The principal already holds WS_MAX_CONNECTIONS_PER_KEY connections (graphql-ws clients do not retry it). */
  TooManyConnectionsForKey: 4429,
  /** No live operation for WS_IDLE_TIMEOUT_MS (graphql-ws clients reconnect on demand). */
  IdleTimeout: 4408,
  /** The gateway already holds WS_MAX_CONNECTIONS sockets: the standard "try again later". */
  TryAgainLater: 1013,
} as const;

export const WS_REASON_TOO_MANY_CONNECTIONS_FOR_KEY = 'Too many connections for this key';
export const WS_REASON_IDLE_TIMEOUT = 'Idle timeout';
export const WS_REASON_KEY_REVOKED = 'API key revoked';
export const WS_REASON_TRY_AGAIN_LATER = 'Too many connections';

export interface WsServerOptions {
  runtime: Runtime;
  server: http.Server;
  path: string;
  yoga: GraphQLServer;
  adminApiKey: string | undefined;
  limits: WsLimits;
  /** Close reasons of internal errors say nothing in production. */
  production: boolean;
  metrics?: GatewayMetrics;
}

interface ConnectionState {
  principalKey: string;
  /** Operation ids of this connection's `subscription` operations; live while also in ctx.subscriptions. */
  subscriptionIds: Set<string>;
  /** When the connection last had a live operation (or was acknowledged). */
  lastActive: number;
}

/** What this server keeps on graphql-ws' `ctx.extra` besides ws' socket and upgrade request. */
type WsExtraFields = { principal?: Principal | null; closed?: boolean };
type WsContext = Context<ConnectionInitMessage['payload'], Extra & Partial<WsExtraFields>>;

/**
 * A GraphQLError that graphql-ws sends as an `error` message for one operation id. Errors from the
 * parser and validation (no originalError) are safe to show and are rebuilt with this module's
 * GraphQLError class (graphql-ws recognises errors by `instanceof`); anything else goes through
 * maskError (logged, INTERNAL_SERVER_ERROR).
 */
function operationError(log: Logger, err: unknown, code?: string): GraphQLError {
  if (err instanceof Error && err.name === 'GraphQLError' && !(err as GraphQLError).originalError) {
    const e = err as GraphQLError;
    return new GraphQLError(e.message, {
      nodes: e.nodes,
      source: e.source,
      positions: e.positions,
      extensions: { ...(code ? { code } : {}), ...e.extensions },
    });
  }
  const masked = maskError(log, err, 'Unexpected error.');
  return masked instanceof GraphQLError ? masked : new GraphQLError(masked.message, { extensions: { code: 'INTERNAL_SERVER_ERROR' } });
}

const hasLiveOperation = (ctx: WsContext) => {
  for (const _ in ctx.subscriptions) return true;
  return false;
};

/**
 * graphql-ws on a `ws` server sharing the HTTP server's port and path. Operations run through
 * yoga's envelop (same plugins, limits and context as HTTP). Adds what graphql-ws leaves out:
 * credentials required at `connection_init` (4403 otherwise), the HTTP body limit as maxPayload,
 * connection and subscription caps, ws ping/pong keep-alive and an idle timeout. A bad `subscribe`
 * (syntax error, validation, a context failure) answers an `error` message for its id only.
 */
export function createWsServer(opts: WsServerOptions) {
  const { yoga, adminApiKey, limits } = opts;
  const wss = new WebSocketServer({
    server: opts.server,
    path: opts.path,
    // A bigger message is refused from its frame header (close 1009), never buffered whole.
    maxPayload: GRAPHQL_MAX_BODY_BYTES,
    perMessageDeflate: false,
  });

  const states = new WeakMap<WsContext, ConnectionState>();
  /** Registered (authenticated, under the caps) connections, by principal. */
  const byKey = new Map<string, Set<WsContext>>();
  const connections = new Set<WsContext>();

  const register = (ctx: WsContext, principalKey: string) => {
    const set = byKey.get(principalKey) ?? new Set<WsContext>();
    byKey.set(principalKey, set);
    set.add(ctx);
    connections.add(ctx);
    states.set(ctx, { principalKey, subscriptionIds: new Set(), lastActive: Date.now() });
  };
  const unregister = (ctx: WsContext) => {
    ctx.extra.closed = true;
    const state = states.get(ctx);
    if (!state) return;
    states.delete(ctx);
    connections.delete(ctx);
    const set = byKey.get(state.principalKey);
    set?.delete(ctx);
    if (set?.size === 0) byKey.delete(state.principalKey);
  };

  /**
   * Live subscriptions of a principal. graphql-ws keeps an operation in ctx.subscriptions from its
   * `subscribe` message until it completes, errors or its socket closes, so ids no longer there
   * have ended (whatever way) and are dropped here: the count can never leak.
   */
  const liveSubscriptions = (principalKey: string) => {
    let n = 0;
    for (const ctx of byKey.get(principalKey) ?? []) {
      const state = states.get(ctx);
      if (!state) continue;
      for (const id of state.subscriptionIds) {
        if (id in ctx.subscriptions) n++;
        else state.subscriptionIds.delete(id);
      }
    }
    return n;
  };

  // The global cap, before graphql-ws sees the socket (ws adds it to wss.clients first).
  wss.on('connection', (socket) => {
    if (wss.clients.size > limits.maxConnections) socket.close(WsCloseCode.TryAgainLater, WS_REASON_TRY_AGAIN_LATER);
  });

  const wsServer = useServer<ConnectionInitMessage['payload'], WsExtraFields>(
    {
      isProd: opts.production,
      connectionInitWaitTimeout: limits.connectionInitTimeoutMs,
      execute: async (args: any) => {
        try {
          return await args.rootValue.execute(args);
        } catch (err) {
          return { errors: [operationError(opts.runtime.log, err)] };
        }
      },
      subscribe: async (args: any) => {
        try {
          return await args.rootValue.subscribe(args);
        } catch (err) {
          return { errors: [operationError(opts.runtime.log, err)] };
        }
      },
      // Credentials are required: none or bad ones close the socket with 4403 Forbidden.
      onConnect: async (ctx) => {
        const credential = credentialFromConnectionParams(ctx.connectionParams);
        if (!credential) return false;
        let principal: Principal | null;
        try {
          principal = await resolvePrincipal(opts.runtime, credential, adminApiKey);
        } catch (err) {
          opts.runtime.log.error({ err }, 'graphql-ws: authenticating connection_init failed');
          ctx.extra.socket.close(4500, 'Internal server error');
          return false;
        }
        if (!principal) return false;
        // Closed while authenticating: onClose has run already, so it must not be registered.
        if (ctx.extra.closed || ctx.extra.socket.readyState !== WebSocket.OPEN) return false;
        const key = principal.subject;
        if ((byKey.get(key)?.size ?? 0) >= limits.maxConnectionsPerKey) {
          // Closed here with our own code; graphql-ws' 4403 after `false` is then a no-op.
          ctx.extra.socket.close(WsCloseCode.TooManyConnectionsForKey, WS_REASON_TOO_MANY_CONNECTIONS_FOR_KEY);
          return false;
        }
        register(ctx, key);
        // Revoked while this connection authenticated: the revocation event has come and gone.
        if (principal.kind === 'key' && wasRevoked(opts.runtime, principal.keyId)) {
          ctx.extra.socket.close(WsCloseCode.Forbidden, WS_REASON_KEY_REVOKED);
          return false;
        }
        ctx.extra.principal = principal;
        return true;
      },
      onClose: (ctx) => unregister(ctx),
      onComplete: (ctx) => {
        const state = states.get(ctx);
        if (state) state.lastActive = Date.now();
      },
      // Run WebSocket operations through yoga's envelop so they share HTTP's plugins and context.
      // Whatever fails here is answered as an `error` message for this operation id only.
      onSubscribe: async (ctx, id, params) => {
        const state = states.get(ctx);
        if (!state) return [new GraphQLError('Forbidden', { extensions: { code: 'UNAUTHENTICATED' } })];
        // The id may be reused after its previous operation ended (synchronously, before any await).
        state.subscriptionIds.delete(id);
        state.lastActive = Date.now();
        try {
          // Every operation on the socket counts against its key's request budget, as HTTP requests do.
          const principal = ctx.extra.principal;
          if (principal) {
            try {
              await chargeRequest(opts.runtime, principal);
            } catch (err) {
              if (!(err instanceof RateLimitedError)) throw err;
              opts.metrics?.rateLimited.inc({ limit: err.limit, transport: 'ws' });
              return [new GraphQLError(err.message, { extensions: { code: err.code, ...err.details } })];
            }
          }
          const { schema, execute, subscribe, contextFactory, parse, validate } = yoga.getEnveloped({
            ...ctx,
            req: ctx.extra.request,
            socket: ctx.extra.socket,
            params,
            principal: ctx.extra.principal ?? null,
          });
          let document: DocumentNode;
          try {
            document = parse(params.query);
          } catch (err) {
            return [operationError(opts.runtime.log, err, 'GRAPHQL_PARSE_FAILED')];
          }
          const errors = validate(schema, document);
          if (errors.length) return errors.map((e: unknown) => operationError(opts.runtime.log, e, 'GRAPHQL_VALIDATION_FAILED'));
          const operation = getOperationAST(document, params.operationName);
          if (!operation) return [new GraphQLError('Unable to identify operation', { extensions: { code: 'BAD_USER_INPUT' } })];
          if (operation.operation === 'subscription') {
            // Counted and claimed without an await in between, so concurrent subscribes cannot overshoot.
            if (liveSubscriptions(state.principalKey) >= limits.maxSubscriptionsPerKey) {
              return [
                new GraphQLError(`Too many live subscriptions for this key (at most ${limits.maxSubscriptionsPerKey})`, {
                  extensions: { code: 'RATE_LIMITED', limit: limits.maxSubscriptionsPerKey },
                }),
              ];
            }
            state.subscriptionIds.add(id);
          }
          return {
            schema,
            operationName: params.operationName,
            document,
            variableValues: params.variables,
            contextValue: await contextFactory(),
            rootValue: { execute, subscribe },
          };
        } catch (err) {
          state.subscriptionIds.delete(id);
          return [operationError(opts.runtime.log, err)];
        }
      },
    },
    wss,
    limits.keepAliveMs,
  );

  // After graphql-ws' own listener: its socket 'error' handler logs every client mistake
  // (a message over maxPayload, a bad frame) as an internal error on the console. ws has already
  // sent the right close code (1009, 1002, …) by then; log it as what it is.
  wss.on('connection', (socket) => {
    socket.removeAllListeners('error');
    socket.on('error', (err: Error & { code?: string }) => {
      if (err.code?.startsWith('WS_ERR_'))
        opts.runtime.log.info({ code: err.code, message: err.message }, 'graphql-ws: bad frame from client');
      else {
        opts.runtime.log.warn({ err }, 'graphql-ws: socket error');
        socket.close(4500, 'Internal server error');
      }
    });
  });

  // Idle connections: one sweep for all of them (a connection is busy while any operation is live).
  const sweepEvery = Math.max(25, Math.min(Math.floor(limits.idleTimeoutMs / 4), 5_000));
  const idleSweep =
    limits.idleTimeoutMs > 0
      ? setInterval(() => {
          const now = Date.now();
          for (const ctx of connections) {
            const state = states.get(ctx);
            if (!state) continue;
            if (hasLiveOperation(ctx)) state.lastActive = now;
            else if (now - state.lastActive >= limits.idleTimeoutMs) {
              ctx.extra.socket.close(WsCloseCode.IdleTimeout, WS_REASON_IDLE_TIMEOUT);
            }
          }
        }, sweepEvery)
      : undefined;
  idleSweep?.unref();

  // A revoked key's open connections close at once (4403), on every replica (apiKeyRevoked events).
  const revocations = opts.runtime.events.subscribe('apiKeyRevoked')[Symbol.asyncIterator]();
  void (async () => {
    for (let next = await revocations.next(); !next.done; next = await revocations.next()) {
      for (const ctx of byKey.get(`key:${next.value.keyId}`) ?? []) ctx.extra.socket.close(WsCloseCode.Forbidden, WS_REASON_KEY_REVOKED);
    }
  })().catch((err) => opts.runtime.log.error({ err }, 'graphql-ws: revocation watch stopped'));

  return {
    wss,
    wsServer: {
      dispose: async () => {
        if (idleSweep) clearInterval(idleSweep);
        await revocations.return?.();
        await wsServer.dispose();
      },
    },
  };
}
