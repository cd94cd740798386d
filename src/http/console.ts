import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Context, Hono } from 'hono';
import { noteRequest } from './request-log.js';

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
  '.map': 'application/json',
  '.woff2': 'font/woff2',
  '.txt': 'text/plain; charset=utf-8',
};

/** A file name the build writes: no separators, no dot segments, nothing percent-encoded. */
const SAFE_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/;
/** A Host header that may go into the CSP verbatim (name or IPv4/IPv6 literal, optional port). */
const SAFE_HOST = /^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

/**
 * Where the built console is when CONSOLE_DIR is unset: dist/console, found beside the running code
 * (dist/http/ → dist/console) or, when running the sources with tsx, in the checkout's dist/.
 */
function defaultDirs(): string[] {
  const here = path.dirname(fileURLToPath(import.meta.url));
  return [path.resolve(here, '../console'), path.resolve(here, '../../dist/console')];
}

async function readable(file: string): Promise<Buffer | undefined> {
  try {
    return await fs.readFile(file);
  } catch {
    return undefined;
  }
}

/**
 * The page's policy: its own scripts and styles only, API calls to this origin (GraphQL over HTTP,
 * and graphql-ws on the same host), never framed. Nothing inline, nothing from elsewhere.
 */
function contentSecurityPolicy(host: string | undefined): string {
  const sockets = host && SAFE_HOST.test(host) ? ` ws://${host} wss://${host}` : '';
  return [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "font-src 'self'",
    `connect-src 'self'${sockets}`,
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
  ].join('; ');
}

/**
 * The web console (issue 17) at /console: static files from `npm run build` (console/ built by
 * Vite into dist/console). Hashed assets are cached for good; index.html answers /console and every
 * client route under it, never cached, with a strict Content-Security-Policy. Without a build it
 * answers 503 saying how to make one.
 */
export function createConsoleRoutes(opts: { dir?: string | undefined } = {}): Hono {
  const dirs = opts.dir ? [opts.dir] : defaultDirs();
  const app = new Hono();

  /** The first candidate folder holding a build (looked up per request: a build made after start counts). */
  const findBuild = async (): Promise<{ dir: string; index: Buffer } | undefined> => {
    for (const dir of dirs) {
      const index = await readable(path.join(dir, 'index.html'));
      if (index) return { dir, index };
    }
    return undefined;
  };

  const notBuilt = (c: Context) =>
    c.text(
      `The console is not built. Run \`npm run build\` (it writes dist/console), or point CONSOLE_DIR at a built console.\nLooked in: ${dirs.join(', ')}\n`,
      503,
      { 'cache-control': 'no-store' },
    );

  const page = async (c: Context) => {
    noteRequest({ route: '/console' });
    const build = await findBuild();
    if (!build) return notBuilt(c);
    return c.body(new Uint8Array(build.index), 200, {
      'content-type': CONTENT_TYPES['.html']!,
      'cache-control': 'no-cache',
      'content-security-policy': contentSecurityPolicy(c.req.header('host')),
      'x-content-type-options': 'nosniff',
      'x-frame-options': 'DENY',
      'referrer-policy': 'no-referrer',
    });
  };

  const file = async (c: Context, segments: string[], immutable: boolean) => {
    noteRequest({ route: '/console/*' });
    if (!segments.every((s) => SAFE_NAME.test(s))) return c.text('Not found\n', 404);
    const build = await findBuild();
    if (!build) return notBuilt(c);
    const target = path.resolve(build.dir, ...segments);
    // SAFE_NAME already rules out `..`; this keeps the rule in one obvious place as well.
    if (!target.startsWith(build.dir + path.sep)) return c.text('Not found\n', 404);
    const body = await readable(target);
    if (!body) return c.text('Not found\n', 404);
    const type = CONTENT_TYPES[path.extname(target).toLowerCase()] ?? 'application/octet-stream';
    return c.body(new Uint8Array(body), 200, {
      'content-type': type,
      'cache-control': immutable ? 'public, max-age=31536000, immutable' : 'no-cache',
      'x-content-type-options': 'nosniff',
    });
  };

  app.get('/console', page);
  app.get('/console/*', (c) => {
    const rest = c.req.path.slice('/console/'.length).split('/');
    // Vite's content-hashed output: a new build gets new names, so these never change.
    if (rest[0] === 'assets') return rest.length === 2 ? file(c, rest, true) : c.text('Not found\n', 404);
    // Other files of the build (favicon.svg): a last segment with an extension is a file, not a route.
    if (rest.length === 1 && /\.[A-Za-z0-9]+$/.test(rest[0]!)) return file(c, rest, false);
    return page(c);
  });
  return app;
}
