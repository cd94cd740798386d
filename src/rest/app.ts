import { OpenAPIHono } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { routePath } from 'hono/route';
import { authenticate, credentialFrom } from '../domain/access/authenticate.js';
import { chargeRequest } from '../domain/access/rate-limits.js';
import { ValidationError } from '../domain/shared/errors.js';
import { assertAcceptableInput, textProblem } from '../domain/shared/input-policy.js';
import type { Runtime } from '../domain/shared/runtime.js';
import { toFieldIssues } from '../domain/shared/validation.js';
import { noteCaller, noteRequest } from '../http/request-log.js';
import type { Dialect, RestApp, RestEnv } from './env.js';
import { errorEnvelope, handleError, notFound, validationResponse } from './errors.js';
import { registerApiKeyRoutes } from './routes/api-keys.js';
import { registerBackupRoutes } from './routes/backups.js';
import { registerEntryRoutes } from './routes/entries.js';
import { registerLockRoutes } from './routes/locks.js';
import { registerMountRoutes } from './routes/mounts.js';
import { registerSearchRoutes } from './routes/search.js';
import { registerUploadRoutes } from './routes/uploads.js';
import { registerVolumeSharingRoutes } from './routes/volume-sharing.js';
import { registerVolumeRoutes, registerVolumeValidationRoute } from './routes/volumes.js';
import { registerWorkspaceRoutes } from './routes/workspaces.js';
import { apiDocument, describeApi } from './schemas.js';

const locPrefix: Record<string, string> = { json: 'body', query: 'query', param: 'path', header: 'header', form: 'body' };

export interface RestOptions {
  adminApiKey: string | undefined;
  maxJsonBytes: number;
  /** Largest JSON body of an entry write (content + content_text + metadata). */
  maxEntryBytes: number;
  /**
   * The peer dialects (src/rest/dialects/): their routes are served beside /v1 by app.ts; here only
   * their definitions join the OpenAPI document at /v1/openapi.json.
   */
  dialects?: Dialect[];
}

/**
 * URL parsing resolves `.` and `..` segments (`%2e` too) before routing, so `entries/a/../b` would
 * silently address `/b`, and `entries/../mounts` another route. Paths here are keys, not file-system
 * paths: a request target holding such a segment is refused (422), judged on the target exactly as
 * the client sent it.
 */
export async function refuseDotSegments(c: Context<RestEnv>, next: () => Promise<void>): Promise<void> {
  const target = (c.env?.incoming?.url ?? '').split(/[?#]/)[0] ?? '';
  const segments = target.split('/').map((s) => s.replace(/%2e/gi, '.'));
  if (segments.some((s) => s === '.' || s === '..')) {
    // Echo what the caller got wrong: the entry path (as sent) for entry routes, else the URL path.
    const entry = /\/volumes\/[^/]+\/entries(\/.*)$/.exec(target)?.[1];
    throw ValidationError.field(
      entry ? ['path', 'path'] : ['path'],
      "path must not contain '.' or '..' segments",
      entry ?? target,
      'path_invalid',
    );
  }
  await next();
}

const JSON_TYPE = /^application\/([\w.-]+\+)?json/i;

/** Query parameters that may be repeated (each occurrence adds to the list); any other given twice is ambiguous. */
const REPEATABLE_QUERY = new Set(['tags', 'fields']);

/**
 * The input policy (src/domain/input-policy.ts) at the REST edge: query strings (each given once,
 * but for the list parameters), and JSON bodies
 * parsed once here (the routes' validators reuse the parsed value), before any route sees them. A
 * body that is not JSON at all is left to the route, which names it.
 */
export async function refuseUnacceptableInput(c: Context<RestEnv>, next: () => Promise<void>): Promise<void> {
  for (const [name, values] of Object.entries(c.req.queries())) {
    if (values.length > 1 && !REPEATABLE_QUERY.has(name)) {
      throw new ValidationError([{ loc: ['query', name], msg: 'must be given once', type: 'duplicate_parameter', input: values }]);
    }
    for (const value of values) {
      const problem = textProblem(value);
      if (problem) throw new ValidationError([{ loc: ['query', name], ...problem, input: value }]);
    }
  }
  if (c.req.method !== 'GET' && c.req.method !== 'HEAD' && JSON_TYPE.test(c.req.header('content-type') ?? '')) {
    const text = await c.req.text();
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      return next();
    }
    assertAcceptableInput(parsed, ['body']);
    c.req.bodyCache.json = Promise.resolve(parsed);
  }
  await next();
}

/** The unparsed value a validator saw, so 422 items can echo the offending `input`. */
async function rawInput(c: Context, target: string): Promise<unknown> {
  switch (target) {
    case 'json':
      return c.req.json().catch(() => undefined);
    case 'query':
      return c.req.query();
    case 'param':
      return c.req.param();
    default:
      return undefined;
  }
}

/**
 * /v1's document with each dialect's paths (full paths: dialects have no base path) and components
 * merged in; its tags are listed after /v1's.
 */
type OpenApiDoc = ReturnType<RestApp['getOpenAPI31Document']>;
function withDialects(doc: OpenApiDoc, dialects: Dialect[]): OpenApiDoc {
  for (const { app: d, tag } of dialects) {
    describeApi(d.openAPIRegistry);
    const part = d.getOpenAPI31Document({ openapi: '3.1.0', info: { title: '', version: '' } });
    doc.tags = [...(doc.tags ?? []), tag];
    doc.paths = { ...doc.paths, ...part.paths };
    doc.components ??= {};
    const components = doc.components as Record<string, Record<string, unknown> | undefined>;
    for (const [kind, entries] of Object.entries(part.components ?? {})) components[kind] = { ...components[kind], ...(entries as object) };
  }
  return doc;
}

/**
 * The `/v1` compatibility layer: every route parses, authorises and calls src/domain, then shapes
 * the legacy JSON. Validation failures become the legacy 422 `detail` items via the same mapping the
 * domain uses.
 */
export function createRestApp(rt: Runtime, opts: RestOptions): RestApp {
  const app = new OpenAPIHono<RestEnv>({
    defaultHook: async (result, c) => {
      if (!result.success) {
        const prefix = locPrefix[result.target] ?? result.target;
        return validationResponse(c, toFieldIssues(result.error, await rawInput(c, result.target), [prefix]));
      }
    },
  }).basePath('/v1');

  app.onError((err, c) => handleError(rt.log, err, c));
  app.notFound(notFound);
  // The access line names the route template, not the path (src/http/request-log.ts).
  app.use('*', async (c, next) => {
    await next();
    noteRequest({ route: routePath(c, -1) });
  });
  app.use('*', refuseDotSegments);

  // Bodies are bounded before they are read: JSON routes by maxJsonBytes, entry writes (and batch
  // writes) by maxEntryBytes; uploads stream and are bounded by MAX_UPLOAD_BYTES as they are stored.
  const tooLarge = (max: number) => (c: Context) =>
    c.json(errorEnvelope('PAYLOAD_TOO_LARGE', `Request body exceeds ${max} bytes`, { max_bytes: max }, 413), 413);
  const jsonLimit = bodyLimit({ maxSize: opts.maxJsonBytes, onError: tooLarge(opts.maxJsonBytes) });
  const entryLimit = bodyLimit({ maxSize: opts.maxEntryBytes, onError: tooLarge(opts.maxEntryBytes) });
  app.use('/orgs/*', async (c, next) => {
    if (c.req.method === 'POST' && c.req.path.endsWith('/upload')) return next();
    // tus PATCH bodies stream into the upload store, bounded by the session's declared length.
    if (c.req.method === 'PATCH' && /\/volumes\/[^/]+\/uploads\/[^/]+$/.test(c.req.path)) return next();
    if (c.req.method === 'PUT' && c.req.path.includes('/entries/')) return entryLimit(c, next);
    if (c.req.method === 'POST' && /\/volumes\/[^/]+\/batch$/.test(c.req.path)) return entryLimit(c, next);
    return jsonLimit(c, next);
  });
  app.use('/orgs/*', async (c, next) => {
    const credential = credentialFrom({ authorization: c.req.header('authorization'), apiKey: c.req.header('x-api-key') });
    const principal = await authenticate(rt, credential, opts.adminApiKey);
    c.set('principal', principal);
    noteCaller(principal, /^\/v1\/orgs\/([^/]+)/.exec(c.req.path)?.[1]);
    await chargeRequest(rt, principal);
    await next();
  });
  app.use('/orgs/*', refuseUnacceptableInput);

  registerApiKeyRoutes(rt, app);
  registerWorkspaceRoutes(rt, app);
  registerSearchRoutes(rt, app);
  // Before the volume routes: /volumes/shared and /volumes/validate are not volume ids.
  registerVolumeSharingRoutes(rt, app);
  registerBackupRoutes(rt, app);
  registerVolumeValidationRoute(rt, app);
  registerVolumeRoutes(rt, app);
  registerMountRoutes(rt, app);
  // Before the entry routes: …/entries/{path}/upload-url is not an entry path.
  registerUploadRoutes(rt, app);
  registerEntryRoutes(rt, app);
  registerLockRoutes(rt, app);

  // After the routes: documents X-Request-Id on each of them (src/rest/schemas.ts).
  describeApi(app.openAPIRegistry);
  const dialects = opts.dialects ?? [];
  let document: OpenApiDoc | undefined;
  app.get('/openapi.json', (c) => {
    document ??= withDialects(app.getOpenAPI31Document(apiDocument), dialects);
    return c.json(document);
  });
  return app;
}
