import { EnvelopArmorPlugin } from '@escape.tech/graphql-armor';
import { useCSRFPrevention } from '@graphql-yoga/plugin-csrf-prevention';
import { useDisableIntrospection } from '@graphql-yoga/plugin-disable-introspection';
import { createYoga, type Plugin } from 'graphql-yoga';
import type { Runtime } from '../domain/shared/runtime.js';
import { createContextFactory, type GraphQLContext, type InitialContext } from './context.js';
import { maskError } from './errors.js';
import { useInputPolicy } from './input-policy.js';
import { schema } from './schema/index.js';
import { useRequestBodyLimit, useStreamingUploads } from './uploads.js';

export interface YogaOptions {
  adminApiKey: string | undefined;
  graphiql: boolean;
  introspection: boolean;
  maxDepth: number;
  maxCost: number;
  production: boolean;
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
    useStreamingUploads(),
    // Yoga's 25 MB body limit, except for multipart uploads (bounded per file by MAX_UPLOAD_BYTES).
    useRequestBodyLimit(GRAPHQL_MAX_BODY_BYTES),
    // Browsers send Authorization/X-API-Key only after a CORS preflight, so their presence (or a
    // JSON content type) proves the request is not a cross-site "simple" one.
    useCSRFPrevention({ requestHeaders: ['x-graphql-yoga-csrf', 'apollo-require-preflight', 'authorization', 'x-api-key'] }),
  ];
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
    graphiql: opts.graphiql ? { subscriptionsProtocol: 'WS', title: 'Volumes Gateway' } : false,
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
