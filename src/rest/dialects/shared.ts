import { OpenAPIHono, z } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { routePath } from 'hono/route';
import { authenticate, credentialFrom } from '../../domain/access/authenticate.js';
import type { Principal } from '../../domain/access/principal.js';
import { chargeRequest } from '../../domain/access/rate-limits.js';
import { PayloadTooLargeError, ValidationError } from '../../domain/shared/errors.js';
import { ExternalId } from '../../domain/shared/fields.js';
import type { Runtime } from '../../domain/shared/runtime.js';
import { noteCaller, noteRequest } from '../../http/request-log.js';
import { refuseDotSegments, refuseUnacceptableInput } from '../app.js';
import type { RestEnv } from '../env.js';
import { type ClassifiedError, classifyError } from '../errors.js';

// What every peer dialect (src/rest/dialects/<name>/) shares with /v1: the same authentication,
// rate limits, input policy, body limit, access line and error classification. A dialect is a
// thin mapping: request -> domain call -> response in that dialect's shape; no rule lives here.

export interface DialectOptions {
  adminApiKey: string | undefined;
  /** Largest JSON body (1 MiB, as /v1's JSON routes). */
  maxJsonBytes: number;
}

/** The header a platform key names its organisation with, in dialects whose paths carry none. */
export const ORG_HEADER = 'X-Org-Id';

/** X-Org-Id as a route's request header (OpenAPI), for every dialect operation that acts on an org. */
export const OrgIdHeader = z.object({
  [ORG_HEADER]: z.string().optional().openapi({
    description: 'The organisation a platform key acts on (required then; an org key acts on its own organisation and this is ignored)',
  }),
});

/** A JSON response of a dialect's route (OpenAPI). */
export const json = <T>(schema: T, description: string) => ({ content: { 'application/json': { schema } }, description });
/** The Retry-After response header (429, 503), as /v1 documents it. */
export const retryAfter = { 'Retry-After': { $ref: '#/components/headers/Retry-After' } };

export interface DialectSetup {
  /** Where the dialect's routes live (e.g. `/api/v1/volumes`); the guards apply below it. */
  prefixes: string[];
  /** How the dialect reads the credential (default: `Authorization: Bearer` or `X-API-Key`). */
  credential?: (c: Context) => string | undefined;
  /** Shapes an error in the dialect's style (status, headers already decided by classifyError). */
  errorBody: (e: ClassifiedError, c: Context) => unknown;
}

/**
 * A dialect's app: full paths (no base path), every guard /v1 has, errors shaped by `errorBody`.
 * Routes read the caller with `c.get('principal')` and its organisation with `orgOf(c)`.
 */
export function createDialectApp(rt: Runtime, opts: DialectOptions, setup: DialectSetup): OpenAPIHono<RestEnv> {
  const app = new OpenAPIHono<RestEnv>({
    defaultHook: (result) => {
      if (!result.success) {
        const target = result.target === 'json' ? 'body' : result.target === 'param' ? 'path' : result.target;
        const issues = result.error.issues.map((i) => ({
          loc: [target, ...i.path.map((p) => (typeof p === 'number' ? p : String(p)))],
          msg: i.message,
          type: i.code,
          input: undefined,
        }));
        throw new ValidationError(issues);
      }
    },
  });
  app.onError((err, c) => {
    const e = classifyError(rt.log, err, c);
    return c.json(setup.errorBody(e, c) as object, e.status);
  });
  const limit = bodyLimit({
    maxSize: opts.maxJsonBytes,
    onError: () => {
      throw new PayloadTooLargeError(`Request body exceeds ${opts.maxJsonBytes} bytes`, { max_bytes: opts.maxJsonBytes });
    },
  });
  const credential =
    setup.credential ??
    ((c: Context) => credentialFrom({ authorization: c.req.header('authorization'), apiKey: c.req.header('x-api-key') }));
  for (const prefix of setup.prefixes) {
    for (const path of [prefix, `${prefix}/*`]) {
      app.use(path, async (c, next) => {
        await next();
        noteRequest({ route: routePath(c, -1) });
      });
      app.use(path, refuseDotSegments);
      app.use(path, limit);
      app.use(path, async (c, next) => {
        const principal: Principal = await authenticate(rt, credential(c), opts.adminApiKey);
        c.set('principal', principal);
        noteCaller(principal, principal.kind === 'key' ? principal.orgId : (c.req.header(ORG_HEADER) ?? undefined));
        await chargeRequest(rt, principal);
        await next();
      });
      app.use(path, refuseUnacceptableInput);
    }
  }
  return app;
}

/**
 * The organisation a dialect call acts on: the calling key's; the platform key must name one in
 * X-Org-Id (never a guess). @throws ValidationError when a platform key names none
 */
export function orgOf(c: Context<RestEnv>): string {
  const p = c.get('principal');
  if (p.kind === 'key') return p.orgId;
  const named = c.req.header(ORG_HEADER);
  if (!named) {
    throw new ValidationError([
      { loc: ['header', ORG_HEADER], msg: `the platform key must name the organisation in ${ORG_HEADER}`, type: 'missing', input: null },
    ]);
  }
  const parsed = ExternalId.safeParse(named);
  if (!parsed.success) {
    throw new ValidationError([
      { loc: ['header', ORG_HEADER], msg: parsed.error.issues[0]?.message ?? 'invalid organisation id', type: 'value_error', input: named },
    ]);
  }
  return parsed.data;
}
