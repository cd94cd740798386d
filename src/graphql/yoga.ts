import { EnvelopArmorPlugin } from '@escape.tech/graphql-armor';
import { useCSRFPrevention } from '@graphql-yoga/plugin-csrf-prevention';
import { useDisableIntrospection } from '@graphql-yoga/plugin-disable-introspection';
import { usePrometheus } from '@graphql-yoga/plugin-prometheus';
import { context, SpanStatusCode, trace } from '@opentelemetry/api';
import { type ExecutionArgs, type ExecutionResult, getOperationAST, execute as graphqlJsExecute } from 'graphql';
import { createYoga, type GraphiQLOptions, isAsyncIterable, type Plugin, shouldRenderGraphiQL } from 'graphql-yoga';
import type { RawQuery } from '../db/database.js';
import { appPatternRegexes } from '../domain/access/entry-access.js';
import type { Principal } from '../domain/access/principal.js';
import type { Runtime } from '../domain/shared/runtime.js';
import { noteRequest } from '../http/request-log.js';
import type { GatewayMetrics } from '../telemetry/metrics.js';
import { tracer } from '../telemetry/tracing.js';
import { APP_REGEXES, type CompiledRead, compileRead } from './compiled/read.js';
import { createContextFactory, type GraphQLContext, type InitialContext } from './context.js';
import { maskError } from './errors.js';
import { useInputPolicy } from './input-policy.js';
import { useRevocationEndsSubscriptions } from './revocation.js';
import { schema } from './schema/index.js';
import { useRequestBodyLimit, useStreamingUploads } from './uploads.js';

export interface YogaOptions {
  adminApiKey: string | undefined;
  graphiql: boolean;
  introspection: boolean;
  maxDepth: number;
  maxCost: number;
  production: boolean;
  /** Prometheus metrics: operations by name and outcome (envelop's plugin), live subscriptions. */
  metrics?: GatewayMetrics;
}

/** An API key as GraphiQL's `?key=` may pre-fill it: key characters only (it is written into the page). */
const GRAPHIQL_KEY = /^[A-Za-z0-9_.~-]{16,256}$/;

/**
 * GraphiQL's options for one page: the Authorization header pre-filled from `?key=` (a convenience
 * for development; the header editor starts with a template otherwise), never persisted.
 */
function graphiqlOptions(request: Request): GraphiQLOptions {
  const key = new URL(request.url).searchParams.get('key');
  const value = key && GRAPHIQL_KEY.test(key) ? `Bearer ${key}` : 'Bearer <your API key>';
  return {
    title: 'Volumes Gateway',
    subscriptionsProtocol: 'WS',
    headers: JSON.stringify({ Authorization: value }, null, 2),
    shouldPersistHeaders: false,
  };
}

const GRAPHIQL_OFF_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Volumes Gateway: GraphQL</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 40em; margin: 3em auto; line-height: 1.5">
<h1>GraphQL endpoint</h1>
<p>This is the Volumes Gateway's GraphQL endpoint. The GraphiQL IDE is off on this gateway (it is off by
default when <code>NODE_ENV=production</code>); set <code>GRAPHIQL=true</code> to serve it here.</p>
<p>Send GraphQL requests with <code>POST /graphql</code> and an <code>Authorization: Bearer &lt;API key&gt;</code>
header; subscriptions over graphql-ws on this path or as server-sent events. The schema is in
<code>schema.graphql</code> in the repository.</p>
</body></html>
`;

/** When GraphiQL is off, a browser opening /graphql gets a page that says so (not a CSRF error). */
function useGraphiQLOffPage(): Plugin {
  return {
    onRequest({ request, url, fetchAPI, endResponse }) {
      if (!shouldRenderGraphiQL(request) || url.searchParams.has('query')) return;
      endResponse(new fetchAPI.Response(GRAPHIQL_OFF_PAGE, { status: 200, headers: { 'content-type': 'text/html; charset=utf-8' } }));
    },
  };
}

/**
 * A span per GraphQL operation (a no-op unless tracing is on), the parent of everything its
 * resolvers do (database statements, blob store calls): execution runs inside its context.
 * For a subscription the span covers setting it up, not the stream.
 */
function useOperationSpans(): Plugin {
  const start = (args: { document: import('graphql').DocumentNode; operationName?: string | null | undefined }) => {
    const op = getOperationAST(args.document, args.operationName);
    const type = op?.operation ?? 'query';
    const name = op?.name?.value ?? args.operationName ?? undefined;
    const span = tracer().startSpan(`graphql.${type}${name ? ` ${name}` : ''}`, {
      attributes: { 'graphql.operation.type': type, ...(name ? { 'graphql.operation.name': name } : {}) },
    });
    const end = (result: unknown) => {
      const errors = (result as { errors?: readonly unknown[] } | undefined)?.errors;
      if (!isAsyncIterable(result) && errors?.length) {
        span.setAttribute('graphql.errors', errors.length);
        span.setStatus({ code: SpanStatusCode.ERROR });
      }
      span.end();
    };
    return { ctx: trace.setSpan(context.active(), span), end };
  };
  return {
    onExecute({ args, executeFn, setExecuteFn }) {
      const { ctx, end } = start(args);
      setExecuteFn((a) => context.with(ctx, () => executeFn(a)));
      return { onExecuteDone: ({ result }) => end(result) };
    },
    onSubscribe({ args, subscribeFn, setSubscribeFn }) {
      const { ctx, end } = start(args);
      setSubscribeFn((a) => context.with(ctx, () => subscribeFn(a)));
      return { onSubscribeResult: ({ result }) => end(result) };
    },
  };
}

/**
 * Queries and mutations run on graphql-js's own `execute` rather than yoga's default executor
 * (@graphql-tools/executor, whose extra machinery serves @defer/@stream and cancellation, neither
 * of which this schema offers). Same results; ~10% less CPU per nested read in a same-session A/B
 * (bench: 10 volumes x 20 entries, embedded). Subscriptions keep yoga's `subscribe`. First in the
 * plugin list, so every plugin that wraps execution (spans) wraps this one.
 */
function useGraphQLJsExecute(): Plugin {
  return {
    onExecute({ setExecuteFn }) {
      setExecuteFn((args) => {
        const compiled = compileRead(args);
        return compiled ? executeCompiled(args, compiled) : graphqlJsExecute(args);
      });
    },
  };
}

/**
 * A read compiled into one statement (compiled/read.ts). When the statement reports that its answer
 * cannot stand (a workspace the caller cannot see) or fails, graphql-js answers instead, with the
 * usual errors.
 */
async function executeCompiled(args: ExecutionArgs, compiled: CompiledRead): Promise<ExecutionResult> {
  const rt = (args.contextValue as GraphQLContext).runtime;
  try {
    const p = (args.contextValue as GraphQLContext).principal as Principal;
    const regexes = compiled.appRegexes ? JSON.stringify(await appPatternRegexes(rt, p)) : undefined;
    const values = regexes ? compiled.sql.values.map((v) => (v === APP_REGEXES ? regexes : v)) : compiled.sql.values;
    // Prisma's instrumentation does not see the pool: the statement gets its own span.
    const span = tracer().startSpan('db.compiled_read', { attributes: { 'db.system': 'postgresql' } });
    const [row] = await (rt.sql as RawQuery)({ text: compiled.sql.text, values }, { prepare: true }).finally(() => span.end());
    if (row?.bail === false) {
      noteRequest({ compiled: true });
      return rawResult(row.data as string);
    }
    // The statement always returns one row: none means the connection lost it (never silently).
    if (!row) rt.log.warn('compiled read returned no row; resolvers answered it');
  } catch (err) {
    // Not expected (an overloaded pool aside): say so, and let the resolvers answer.
    rt.log.warn({ err }, 'compiled read failed; resolvers answered it');
  }
  return graphqlJsExecute(args);
}

/**
 * A result whose JSON is already written: yoga's HTTP processors call `stringify` (so the text goes
 * out as it came from Postgres); anything that reads `data` (graphql-ws, SSE) gets it parsed.
 */
function rawResult(json: string): ExecutionResult {
  let data: Record<string, unknown> | undefined;
  return {
    get data() {
      data ??= JSON.parse(json) as Record<string, unknown>;
      return data;
    },
    stringify: () => `{"data":${json}}`,
  } as ExecutionResult;
}

/** Names the codes of a GraphQL answer's errors in the request's access line (never their messages). */
function useErrorCodesInAccessLog(): Plugin {
  return {
    onResultProcess({ result }) {
      if (isAsyncIterable(result)) return;
      const codes = new Set<string>();
      for (const r of Array.isArray(result) ? result : [result]) {
        for (const e of r.errors ?? []) codes.add(String((e as { extensions?: { code?: unknown } }).extensions?.code ?? 'UNKNOWN'));
      }
      if (codes.size > 0) noteRequest({ errors: [...codes] });
    },
  };
}

/** Counts live subscriptions by transport (graphql-ws contexts carry `extra`; the rest are SSE). */
function useSubscriptionGauge(metrics: GatewayMetrics): Plugin {
  return {
    onSubscribe({ args }) {
      const transport = 'extra' in (args.contextValue as object) ? 'ws' : 'sse';
      return {
        onSubscribeResult({ result }) {
          if (!isAsyncIterable(result)) return;
          metrics.subscriptions.inc({ transport });
          let ended = false;
          return {
            onEnd() {
              if (ended) return;
              ended = true;
              metrics.subscriptions.dec({ transport });
            },
          };
        },
      };
    },
  };
}

/** Largest GraphQL request body over HTTP (multipart uploads aside), and largest graphql-ws message. */
export const GRAPHQL_MAX_BODY_BYTES = 25_000_000;

/**
 * The GraphQL server. Plugin order is deliberate: CSRF prevention rejects cross-site simple requests
 * before anything is parsed; introspection is cut before validation; armor's limits (aliases, tokens,
 * directives) run at validation, and the complexity plugin prices depth and cost before execution.
 */
export function createGraphQLServer(rt: Runtime, opts: YogaOptions) {
  const plugins: Plugin[] = [
    useGraphQLJsExecute(),
    useStreamingUploads(),
    // Yoga's 25 MB body limit, except for multipart uploads (bounded per file by MAX_UPLOAD_BYTES).
    useRequestBodyLimit(GRAPHQL_MAX_BODY_BYTES),
    // Browsers send Authorization/X-API-Key only after a CORS preflight, so their presence (or a
    // JSON content type) proves the request is not a cross-site "simple" one.
    useCSRFPrevention({ requestHeaders: ['x-graphql-yoga-csrf', 'apollo-require-preflight', 'authorization', 'x-api-key'] }),
  ];
  if (opts.metrics) {
    plugins.push(
      usePrometheus({
        registry: opts.metrics.registry,
        // Served by the gateway's own /metrics route, with every other family.
        endpoint: false,
        skipIntrospection: true,
        metrics: {
          graphql_envelop_request: true,
          graphql_envelop_request_duration: true,
          graphql_envelop_error_result: true,
          // Per-phase histograms cost ~4% of a small request's CPU (measured): traces show phases.
          graphql_envelop_phase_parse: false,
          graphql_envelop_phase_validate: false,
          graphql_envelop_phase_execute: false,
          graphql_envelop_phase_subscribe: false,
          graphql_envelop_deprecated_field: false,
          graphql_envelop_request_time_summary: false,
          graphql_envelop_phase_context: false,
          graphql_envelop_schema_change: false,
          // http_request_duration_seconds covers HTTP for REST and GraphQL alike.
          graphql_yoga_http_duration: false,
        },
      }) as Plugin,
      useSubscriptionGauge(opts.metrics),
    );
  }
  plugins.push(useOperationSpans(), useErrorCodesInAccessLog(), useRevocationEndsSubscriptions(rt));
  if (!opts.graphiql) plugins.push(useGraphiQLOffPage());
  // Before anything parses the document or coerces its variables.
  plugins.push(useInputPolicy());
  if (!opts.introspection) plugins.push(useDisableIntrospection());
  plugins.push(
    EnvelopArmorPlugin({
      // Depth and cost are priced by Pothos' complexity plugin, which knows page sizes.
      maxDepth: { enabled: false },
      costLimit: { enabled: false },
      maxAliases: { n: 30 },
      maxTokens: { n: 5000 },
      maxDirectives: { n: 50 },
      blockFieldSuggestion: { enabled: opts.production },
    }) as Plugin,
  );
  const contextFactory = createContextFactory(rt, opts.adminApiKey, { depth: opts.maxDepth, complexity: opts.maxCost, breadth: 300 });
  return createYoga<InitialContext, GraphQLContext>({
    schema,
    graphqlEndpoint: '/graphql',
    graphiql: opts.graphiql ? graphiqlOptions : false,
    // GraphiQL with its assets bundled (no CDN: works offline); the ~9 MB module loads on first use.
    renderGraphiQL: async (options) => (await import('@graphql-yoga/render-graphiql')).renderGraphiQL(options),
    landingPage: false,
    maskedErrors: { maskError: (error, message) => maskError(rt.log, error, message) },
    // Replaced by useRequestBodyLimit, which lets uploads through.
    maxRequestBodySize: false,
    logging: {
      debug: (...args) => rt.log.debug(args),
      info: (...args) => rt.log.info(args),
      warn: (...args) => rt.log.warn(args),
      // Unexpected errors are logged by maskError; yoga's own error lines are client mistakes.
      error: (...args) => rt.log.warn(args),
    },
    context: (initial) => contextFactory(initial),
    plugins,
  });
}

export type GraphQLServer = ReturnType<typeof createGraphQLServer>;
