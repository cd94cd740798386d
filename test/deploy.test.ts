import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import picomatch from 'picomatch';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { CONFIG_VARIABLES, loadConfig } from '../src/config.js';
import { type Child, spawnChild } from './helpers/child.js';
import { call } from './helpers/http.js';

/**
 * The deployment files: Dockerfile, .dockerignore, deploy/compose.yaml, deploy/Caddyfile.
 *
 * There is no Docker engine on these machines, so the Dockerfile is checked by doing what it says
 * outside Docker: its stages are parsed and replayed in a temp directory (every container path maps
 * under that stage's own root), the build context is what `docker build` would send (the working
 * tree's files, tracked or not yet, minus .gitignore and .dockerignore), RUN lines run with the
 * stage's ENV, and the final stage's CMD is started and its HEALTHCHECK run against it. What the
 * replay cannot do: change user (USER/--chown are checked, not applied), use another Node or npm
 * than this machine's, or provide the image's /root/.npm cache mount (the local npm cache stands in).
 *
 * The compose file is checked against src/config.ts: every gateway variable is one the gateway
 * reads, and the real config parser, given a replica's environment on top of the image's, yields a
 * complete server-mode configuration.
 */

const ROOT = path.resolve(import.meta.dirname, '..');
const DEPLOY = path.join(ROOT, 'deploy');
const exec = promisify(execFile);

// ---------------------------------------------------------------------------------------------
// Dockerfile parsing

interface Instruction {
  keyword: string;
  /** The rest of the line after the keyword, continuations joined. */
  args: string;
  line: number;
}

interface Stage {
  name: string;
  from: string;
  instructions: Instruction[];
}

/** The instructions the replay knows; anything else (ADD, ARG, ENTRYPOINT, SHELL…) fails the test rather than being skipped. */
const KNOWN = new Set(['FROM', 'WORKDIR', 'COPY', 'RUN', 'ENV', 'USER', 'EXPOSE', 'HEALTHCHECK', 'CMD', 'LABEL', 'STOPSIGNAL']);

function parseDockerfile(text: string): Stage[] {
  const logical: { text: string; line: number }[] = [];
  let current = '';
  let start = 0;
  text.split('\n').forEach((raw, i) => {
    const trimmed = raw.trim();
    // Comment lines go, inside a continuation too (as Docker does); so do blank lines.
    if (trimmed === '' || trimmed.startsWith('#')) return;
    if (current === '') start = i + 1;
    if (trimmed.endsWith('\\')) {
      current += `${trimmed.slice(0, -1)} `;
      return;
    }
    logical.push({ text: current + trimmed, line: start });
    current = '';
  });
  if (current !== '') throw new Error('Dockerfile ends inside a line continuation');

  const stages: Stage[] = [];
  for (const { text: line, line: n } of logical) {
    const m = /^([A-Za-z]+)\s+([\s\S]*)$/.exec(line);
    if (!m) throw new Error(`Dockerfile line ${n}: cannot parse "${line}"`);
    const keyword = m[1]!.toUpperCase();
    const args = m[2]!.trim();
    if (!KNOWN.has(keyword)) throw new Error(`Dockerfile line ${n}: ${keyword} is not replayed by test/deploy.test.ts (extend it)`);
    if (keyword === 'FROM') {
      const { rest } = splitFlags(args);
      const from = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(rest);
      if (!from) throw new Error(`Dockerfile line ${n}: cannot parse FROM ${args}`);
      stages.push({ from: from[1]!, name: from[2] ?? String(stages.length), instructions: [] });
      continue;
    }
    const stage = stages.at(-1);
    if (!stage) throw new Error(`Dockerfile line ${n}: ${keyword} before FROM`);
    stage.instructions.push({ keyword, args, line: n });
  }
  return stages;
}

/** Leading `--name=value` / `--flag` options, and the rest. */
function splitFlags(args: string): { flags: Record<string, string | true>; rest: string } {
  const flags: Record<string, string | true> = {};
  let rest = args.trim();
  for (let m = /^--([a-z-]+)(?:=(\S*))?\s+/.exec(rest); m; m = /^--([a-z-]+)(?:=(\S*))?\s+/.exec(rest)) {
    flags[m[1]!] = m[2] ?? true;
    rest = rest.slice(m[0].length).trimStart();
  }
  return { flags, rest };
}

/** Exec form (a JSON array) or shell form (run by /bin/sh -c, as Docker's default SHELL). */
function commandOf(rest: string): string[] {
  if (rest.startsWith('[')) {
    const argv = JSON.parse(rest) as unknown;
    if (!Array.isArray(argv) || argv.some((a) => typeof a !== 'string')) throw new Error(`not an exec form: ${rest}`);
    return argv as string[];
  }
  return ['/bin/sh', '-c', rest];
}

/** `ENV A=1 B="two words"` (or the legacy `ENV A 1`). */
function parseEnv(args: string): Record<string, string> {
  const out: Record<string, string> = {};
  const legacy = /^([A-Za-z_][A-Za-z0-9_]*)\s+([^=]*)$/.exec(args);
  if (legacy) {
    out[legacy[1]!] = legacy[2]!;
    return out;
  }
  const re = /([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|\S*)/g;
  let consumed = '';
  for (const m of args.matchAll(re)) {
    const raw = m[2]!;
    if (raw.includes('$')) throw new Error(`ENV ${m[1]}: variable expansion is not replayed`);
    out[m[1]!] = raw.startsWith('"') ? (JSON.parse(raw) as string) : raw;
    consumed += m[0];
  }
  if (consumed.replace(/\s/g, '') !== args.replace(/\s/g, '')) throw new Error(`cannot parse ENV ${args}`);
  return out;
}

// ---------------------------------------------------------------------------------------------
// .dockerignore and the build context

/** Docker's rules: patterns relative to the context root, a match on a directory excludes what is inside, the last matching line wins. */
function dockerIgnore(text: string): (relPath: string) => boolean {
  const rules = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => {
      const negate = l.startsWith('!');
      const pattern = path.posix.normalize((negate ? l.slice(1) : l).replace(/^\/+/, '')).replace(/\/+$/, '');
      return { negate, isMatch: picomatch(pattern, { dot: true }) };
    });
  return (relPath) => {
    const parts = relPath.split('/');
    const candidates = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
    let excluded = false;
    for (const rule of rules) if (candidates.some((c) => rule.isMatch(c))) excluded = !rule.negate;
    return excluded;
  };
}

/** The files `docker build .` would send: the working tree (tracked files and new ones), minus .gitignore'd ones and .dockerignore's. */
async function buildContext(into: string): Promise<string[]> {
  const { stdout } = await exec('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], {
    cwd: ROOT,
    maxBuffer: 64 * 1024 * 1024,
  });
  const ignored = dockerIgnore(await fs.readFile(path.join(ROOT, '.dockerignore'), 'utf8'));
  const files = [...new Set(stdout.split('\0').filter(Boolean))].filter((f) => !ignored(f) && existsSync(path.join(ROOT, f)));
  for (const f of files) {
    await fs.mkdir(path.dirname(path.join(into, f)), { recursive: true });
    await fs.copyFile(path.join(ROOT, f), path.join(into, f));
  }
  return files;
}

// ---------------------------------------------------------------------------------------------
// Replaying stages

interface ReplayedStage {
  name: string;
  /** This stage's filesystem root on the host: container path /x is root + /x. */
  root: string;
  workdir: string;
  env: Record<string, string>;
  user: string | undefined;
  exposed: string[];
  cmd: string[] | undefined;
  healthcheck: { flags: Record<string, string | true>; argv: string[] } | undefined;
  runs: string[];
  copies: { from: string | undefined; chown: string | undefined; sources: string[]; dest: string }[];
}

/** What a clean service manager would pass (nothing from the test runner: no NODE_ENV=test, no npm_config_*), plus this machine's Node first on PATH. */
function baseEnv(): Record<string, string> {
  return {
    PATH: `${path.dirname(process.execPath)}:${process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin'}`,
    HOME: process.env.HOME ?? os.tmpdir(),
    TMPDIR: os.tmpdir(),
  };
}

function parseCopy(ins: Instruction): ReplayedStage['copies'][number] {
  const { flags, rest } = splitFlags(ins.args);
  for (const f of Object.keys(flags)) if (!['from', 'chown', 'chmod', 'link'].includes(f)) throw new Error(`COPY --${f} is not replayed`);
  const parts = rest.startsWith('[') ? (JSON.parse(rest) as string[]) : rest.split(/\s+/);
  const sources = parts.slice(0, -1);
  if (sources.length === 0) throw new Error(`line ${ins.line}: COPY without a source`);
  return {
    from: typeof flags.from === 'string' ? flags.from : undefined,
    chown: typeof flags.chown === 'string' ? flags.chown : undefined,
    sources,
    dest: parts.at(-1)!,
  };
}

/** Reads a stage's instructions without running anything (also used by the static checks). */
function describeStage(stage: Stage, root = ''): ReplayedStage {
  const r: ReplayedStage = {
    name: stage.name,
    root,
    workdir: '/',
    env: {},
    user: undefined,
    exposed: [],
    cmd: undefined,
    healthcheck: undefined,
    runs: [],
    copies: [],
  };
  for (const ins of stage.instructions) {
    if (ins.keyword === 'ENV') Object.assign(r.env, parseEnv(ins.args));
    else if (ins.keyword === 'USER') r.user = ins.args;
    else if (ins.keyword === 'EXPOSE') r.exposed.push(...ins.args.split(/\s+/));
    else if (ins.keyword === 'CMD') r.cmd = commandOf(ins.args);
    else if (ins.keyword === 'RUN') r.runs.push(splitFlags(ins.args).rest);
    else if (ins.keyword === 'COPY') r.copies.push(parseCopy(ins));
    else if (ins.keyword === 'HEALTHCHECK') {
      const { flags, rest } = splitFlags(ins.args);
      if (/^NONE$/i.test(rest)) r.healthcheck = undefined;
      else {
        const m = /^CMD\s+([\s\S]+)$/i.exec(rest);
        if (!m) throw new Error(`line ${ins.line}: cannot parse HEALTHCHECK ${ins.args}`);
        r.healthcheck = { flags, argv: commandOf(m[1]!) };
      }
    }
  }
  return r;
}

async function runStage(
  stage: Stage,
  root: string,
  contextDir: string,
  done: Map<string, ReplayedStage>,
  log: (line: string) => void,
): Promise<ReplayedStage> {
  const r = describeStage(stage, root);
  r.env = {};
  let workdir = '/';
  const onHost = (containerPath: string, base = workdir) => path.join(root, path.posix.resolve(base, containerPath));
  await fs.mkdir(root, { recursive: true });

  for (const ins of stage.instructions) {
    switch (ins.keyword) {
      case 'WORKDIR':
        workdir = path.posix.resolve(workdir, ins.args);
        await fs.mkdir(onHost('.'), { recursive: true });
        break;
      case 'ENV':
        Object.assign(r.env, parseEnv(ins.args));
        break;
      case 'COPY': {
        const { from, sources, dest } = parseCopy(ins);
        const fromStage = from === undefined ? undefined : done.get(from);
        if (from !== undefined && !fromStage) throw new Error(`line ${ins.line}: COPY --from=${from} names no earlier stage`);
        const destIsDir = dest.endsWith('/') || sources.length > 1;
        for (const src of sources) {
          if (/[*?[$]/.test(src)) throw new Error(`line ${ins.line}: COPY source ${src}: wildcards and variables are not replayed`);
          // Context sources are relative to the context; --from sources to that stage's root.
          const srcOnHost = fromStage
            ? path.join(fromStage.root, path.posix.resolve('/', src))
            : path.join(contextDir, path.posix.normalize(src));
          if (!fromStage && path.relative(contextDir, srcOnHost).startsWith('..')) throw new Error(`COPY ${src} leaves the context`);
          const st = await fs.stat(srcOnHost).catch(() => undefined);
          if (!st) throw new Error(`line ${ins.line}: COPY ${from ? `--from=${from} ` : ''}${src}: not found (as docker build would fail)`);
          const target = onHost(dest);
          if (st.isDirectory()) await fs.cp(srcOnHost, target, { recursive: true });
          else {
            const file = destIsDir ? path.join(target, path.basename(srcOnHost)) : target;
            await fs.mkdir(path.dirname(file), { recursive: true });
            await fs.copyFile(srcOnHost, file);
          }
        }
        break;
      }
      case 'RUN': {
        const { flags, rest } = splitFlags(ins.args);
        for (const f of Object.keys(flags))
          if (!['mount', 'network', 'security'].includes(f)) throw new Error(`RUN --${f} is not replayed`);
        const argv = commandOf(rest);
        log(`[${stage.name}] RUN ${rest}`);
        const started = Date.now();
        try {
          await exec(argv[0]!, argv.slice(1), { cwd: onHost('.'), env: { ...baseEnv(), ...r.env }, maxBuffer: 256 * 1024 * 1024 });
        } catch (err) {
          const e = err as { stdout?: string; stderr?: string; message: string };
          throw new Error(
            `Dockerfile line ${ins.line} (stage ${stage.name}) failed: RUN ${rest}\n${e.message}\n${(e.stdout ?? '').slice(-4000)}\n${(e.stderr ?? '').slice(-4000)}`,
          );
        }
        log(`[${stage.name}]   done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
        break;
      }
      default:
        break; // USER, EXPOSE, CMD, HEALTHCHECK, LABEL, STOPSIGNAL: read by describeStage
    }
  }
  r.workdir = workdir;
  return r;
}

// ---------------------------------------------------------------------------------------------
// compose.yaml

type Yaml = Record<string, any>;

/** Compose interpolation: ${VAR}, $VAR, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}, $$. Missing required variables are collected. */
function interpolate(value: string, vars: Record<string, string>, missing: Set<string>): string {
  return value.replace(
    /\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g,
    (whole, braced: string | undefined, op: string | undefined, arg: string | undefined, bare: string | undefined) => {
      if (whole === '$$') return '$';
      const name = (braced ?? bare)!;
      const v = vars[name];
      if (!op) return v ?? '';
      const absent = op.startsWith(':') ? v === undefined || v === '' : v === undefined;
      if (!absent) return v!;
      if (op.endsWith('-')) return arg ?? '';
      missing.add(name);
      return '';
    },
  );
}

function interpolateAll(node: unknown, vars: Record<string, string>, missing: Set<string>): any {
  if (typeof node === 'string') return interpolate(node, vars, missing);
  if (Array.isArray(node)) return node.map((n) => interpolateAll(n, vars, missing));
  if (node && typeof node === 'object')
    return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, interpolateAll(v, vars, missing)]));
  return node;
}

/** A service's environment, whichever form it is written in. */
function environmentOf(service: Yaml): Record<string, string> {
  const env = service.environment ?? {};
  if (Array.isArray(env)) {
    return Object.fromEntries(
      env.map((e: string) => {
        const i = e.indexOf('=');
        return i < 0 ? [e, ''] : [e.slice(0, i), e.slice(i + 1)];
      }),
    );
  }
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, v === null ? '' : String(v)]));
}

/** Compose durations: 1m30s, 20s, 500ms. */
function durationMs(d: string): number {
  let ms = 0;
  for (const m of d.matchAll(/(\d+(?:\.\d+)?)(ms|us|h|m|s)/g))
    ms += Number(m[1]) * { h: 3_600_000, m: 60_000, s: 1000, ms: 1, us: 0.001 }[m[2]!]!;
  return ms;
}

/** The secrets compose must refuse to start without, and example values for them. */
const SECRETS: Record<string, string> = {
  ADMIN_API_KEY: 'deploy-test-admin-key-0123456789',
  POSTGRES_PASSWORD: 'pg0123456789abcdef',
  MINIO_ROOT_USER: 'minio-root',
  MINIO_ROOT_PASSWORD: 'minio-root-0123456789',
  S3_ACCESS_KEY_ID: 'volumes-gateway',
  S3_SECRET_ACCESS_KEY: 'gateway-secret-0123456789',
};

/** What a replica needs for server mode; each must be a variable src/config.ts reads (a renamed one fails below). */
const SERVER_MODE_SETTINGS = [
  'NODE_ENV',
  'HOST',
  'PORT',
  'PUBLIC_URL',
  'ADMIN_API_KEY',
  'DATABASE_URL',
  'S3_ENDPOINT',
  'S3_REGION',
  'S3_ACCESS_KEY_ID',
  'S3_SECRET_ACCESS_KEY',
  'S3_FORCE_PATH_STYLE',
  'REDIS_URL',
];

const dockerfile = parseDockerfile(readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8'));
const runtimeStatic = describeStage(dockerfile.at(-1)!);
const rawCompose = parseYaml(readFileSync(path.join(DEPLOY, 'compose.yaml'), 'utf8'), { merge: true }) as Yaml;
const missingWithSecrets = new Set<string>();
const compose = interpolateAll(rawCompose, SECRETS, missingWithSecrets) as Yaml;
const services = compose.services as Record<string, Yaml>;
/** Services built from this repository's Dockerfile. */
const gatewayNames = Object.keys(services).filter((name) => {
  const build = services[name]!.build;
  const context = typeof build === 'string' ? build : build?.context;
  return context !== undefined && path.resolve(DEPLOY, context) === ROOT && (build.dockerfile ?? 'Dockerfile') === 'Dockerfile';
});

describe('Dockerfile (static)', () => {
  it('builds in a node:20 stage and runs a production stage: NODE_ENV, non-root, EXPOSE, HEALTHCHECK on /readyz, node dist/main.js', () => {
    expect(dockerfile.length).toBeGreaterThanOrEqual(2);
    for (const stage of dockerfile) expect(stage.from).toMatch(/^node:20[.-]/);
    const rt = runtimeStatic;
    expect(rt.env.NODE_ENV).toBe('production');
    expect(rt.user, 'the runtime stage sets USER').toBeDefined();
    expect(['root', '0']).not.toContain(rt.user!.split(':')[0]);
    expect(rt.cmd).toEqual(['node', 'dist/main.js']);
    expect(rt.exposed.map((p) => p.split('/')[0])).toContain(rt.env.PORT ?? '4000');
    // In a container the default 127.0.0.1 cannot be reached from outside.
    expect(['127.0.0.1', 'localhost', '::1']).not.toContain(loadConfig(rt.env).host);
    expect(rt.healthcheck?.argv[0], 'HEALTHCHECK uses node itself (slim images have no curl)').toBe('node');
    expect(rt.healthcheck?.argv.join(' ')).toContain('/readyz');
    // The migrations the gateway applies at start-up travel with it.
    expect(rt.copies.some((c) => c.sources.some((s) => /^(\.\/)?prisma\/?$/.test(s)))).toBe(true);
  });

  it('.dockerignore keeps installed, built, local and secret files out of the context', () => {
    const ignored = dockerIgnore(readFileSync(path.join(ROOT, '.dockerignore'), 'utf8'));
    for (const p of [
      'node_modules/x/index.js',
      'dist/main.js',
      'data/pgdata/PG_VERSION',
      '.git/HEAD',
      '.env',
      'deploy/.env',
      'src/generated/prisma/client.ts',
    ]) {
      expect(ignored(p), p).toBe(true);
    }
    for (const p of [
      'package.json',
      'package-lock.json',
      'prisma/schema.prisma',
      'prisma/migrations/migration_lock.toml',
      'src/main.ts',
      'tsconfig.build.json',
    ]) {
      expect(ignored(p), p).toBe(false);
    }
  });
});

describe('deploy/compose.yaml', () => {
  it('runs two gateway replicas built from the Dockerfile, each with a complete server-mode configuration of real config variables', () => {
    expect(gatewayNames).toHaveLength(2);
    const known = new Set(CONFIG_VARIABLES);
    for (const name of SERVER_MODE_SETTINGS) expect(known.has(name), `${name} is not read by src/config.ts`).toBe(true);

    const envs = gatewayNames.map((name) => environmentOf(services[name]!));
    expect(envs[0]).toEqual(envs[1]);
    for (const [i, env] of envs.entries()) {
      const name = gatewayNames[i]!;
      for (const key of Object.keys(env)) expect(known.has(key), `${name}: ${key} is not a variable src/config.ts reads`).toBe(true);
      for (const key of SERVER_MODE_SETTINGS) expect(env[key], `${name} sets ${key}`).toBeTruthy();
      expect(env.NODE_ENV).toBe('production');

      // The real parser, on the image's ENV overlaid with the service's, as the container sees it.
      const config = loadConfig({ ...runtimeStatic.env, ...env });
      expect(config.env).toBe('production');
      expect(['127.0.0.1', 'localhost', '::1']).not.toContain(config.host);
      expect(config.adminApiKey).toBe(SECRETS.ADMIN_API_KEY);
      expect(config.publicUrl).toMatch(/^https?:\/\//);

      const db = new URL(config.databaseUrl!);
      const postgres = services[db.hostname];
      expect(postgres?.image, `DATABASE_URL names the service ${db.hostname}`).toMatch(/pgvector/);
      const pgEnv = environmentOf(postgres!);
      expect(decodeURIComponent(db.username)).toBe(pgEnv.POSTGRES_USER);
      expect(decodeURIComponent(db.password)).toBe(pgEnv.POSTGRES_PASSWORD);
      expect(db.pathname.slice(1)).toBe(pgEnv.POSTGRES_DB);

      expect(config.s3, 'S3_ENDPOINT makes the blob store S3').toBeDefined();
      const minioName = new URL(config.s3!.endpoint).hostname;
      expect(services[minioName]?.image).toMatch(/minio\/minio/);
      expect(config.s3!.accessKeyId).toBe(SECRETS.S3_ACCESS_KEY_ID);
      expect(config.s3!.secretAccessKey).toBe(SECRETS.S3_SECRET_ACCESS_KEY);
      expect(config.s3!.forcePathStyle).toBe(true);

      expect(services[new URL(config.redisUrl!).hostname]?.image).toMatch(/^redis/);
      // Docker's SIGKILL must not cut the graceful stop short.
      expect(durationMs(services[name]!.stop_grace_period ?? '10s')).toBeGreaterThan(config.shutdownTimeoutMs);
      // Only the proxy is published.
      expect(services[name]!.ports).toBeUndefined();
    }
  });

  it('takes secrets from the environment and refuses to start without them', () => {
    expect(missingWithSecrets.size).toBe(0);
    const missing = new Set<string>();
    interpolateAll(rawCompose, {}, missing);
    expect([...missing].sort()).toEqual(Object.keys(SECRETS).sort());
    // No literal secret: the gateway's come from ${VAR:?…}.
    for (const name of gatewayNames) {
      const raw = environmentOf(rawCompose.services[name]);
      for (const key of ['ADMIN_API_KEY', 'S3_ACCESS_KEY_ID', 'S3_SECRET_ACCESS_KEY'])
        expect(raw[key]).toMatch(new RegExp(`^\\$\\{${key}:\\?`));
      expect(raw.DATABASE_URL).toContain('${POSTGRES_PASSWORD:?');
    }
    // deploy/.env.example names each of them.
    const example = readFileSync(path.join(DEPLOY, '.env.example'), 'utf8');
    for (const key of Object.keys(SECRETS)) expect(example).toMatch(new RegExp(`^${key}=`, 'm'));
  });

  it('has health checks, and starts each service only after what it needs is healthy', () => {
    for (const [name, service] of Object.entries(services)) {
      const oneShot = service.restart === 'no';
      if (!oneShot) {
        expect(service.healthcheck?.test, `${name} has a healthcheck`).toBeDefined();
        expect(service.healthcheck.disable).not.toBe(true);
      }
      const deps = service.depends_on ?? {};
      expect(Array.isArray(deps), `${name}: depends_on with conditions`).toBe(false);
      for (const [dep, how] of Object.entries(deps as Record<string, { condition: string }>)) {
        expect(services[dep], `${name} depends on ${dep}`).toBeDefined();
        if (services[dep]!.restart === 'no') expect(how.condition).toBe('service_completed_successfully');
        else {
          expect(how.condition, `${name} waits for ${dep}`).toBe('service_healthy');
          expect(services[dep]!.healthcheck).toBeDefined();
        }
      }
    }
    for (const name of gatewayNames) {
      const deps = Object.keys(services[name]!.depends_on);
      for (const needed of ['postgres', 'redis', 'minio']) expect(deps).toContain(needed);
      // The same check as the image's HEALTHCHECK.
      expect(services[name]!.healthcheck.test).toEqual(['CMD', ...runtimeStatic.healthcheck!.argv]);
    }
  });

  it('puts one proxy in front of both replicas: the Caddyfile routes to each, streams, and checks readiness', () => {
    const proxies = Object.entries(services).filter(([, s]) => (s.volumes ?? []).some((v: string) => /Caddyfile/.test(v)));
    expect(proxies).toHaveLength(1);
    const [proxyName, proxy] = proxies[0]!;
    expect(proxy.image).toMatch(/^caddy:/);
    expect(proxy.ports?.length).toBeGreaterThan(0);
    expect(Object.keys(proxy.depends_on).sort()).toEqual([...gatewayNames].sort());
    const mount = (proxy.volumes as string[]).find((v) => /Caddyfile/.test(v))!;
    const caddyfile = readFileSync(path.resolve(DEPLOY, mount.split(':')[0]!), 'utf8').replace(/#.*$/gm, '');

    const upstreams = /reverse_proxy\s+([^{\n]+)\{/.exec(caddyfile)?.[1]?.trim().split(/\s+/);
    const expected = gatewayNames.map((name) => `${name}:${loadConfig({ ...runtimeStatic.env, ...environmentOf(services[name]!) }).port}`);
    expect(upstreams?.sort(), `${proxyName} proxies to every replica's PORT`).toEqual(expected.sort());
    // Caddy passes WebSocket upgrades and streams request bodies by itself; nothing here may undo that.
    expect(caddyfile).not.toMatch(/request_buffers|request_body|max_size|header_up\s+-?(Upgrade|Connection)/);
    expect(caddyfile).toMatch(/flush_interval\s+-1/); // SSE and downloads are not held back
    expect(caddyfile).toMatch(/health_uri\s+\/readyz/);
  });

  it('scopes the gateway MinIO user to the buckets the gateway names (S3_BUCKET_PREFIX)', () => {
    const init = services['minio-init']!;
    const mount = (init.volumes as string[]).find((v) => v.endsWith('.json:ro') || v.includes('.json:'))!;
    const policy = JSON.parse(readFileSync(path.resolve(DEPLOY, mount.split(':')[0]!), 'utf8'));
    const prefix = loadConfig({ ...runtimeStatic.env, ...environmentOf(services[gatewayNames[0]!]!) }).bucketPrefix;
    expect(policy.Statement[0].Resource).toEqual([`arn:aws:s3:::${prefix}*`, `arn:aws:s3:::${prefix}*/*`]);
  });

  it('docs/DEPLOY.md names every setting the compose file makes', () => {
    const doc = readFileSync(path.join(ROOT, 'docs/DEPLOY.md'), 'utf8');
    const names = new Set([...Object.keys(environmentOf(services[gatewayNames[0]!]!)), ...Object.keys(SECRETS)]);
    for (const name of names) expect(doc, name).toContain(`\`${name}\``);
  });
});

// ---------------------------------------------------------------------------------------------
// The replay

const REPLAY_TIMEOUT = 10 * 60_000;

describe('the Dockerfile, replayed outside Docker', () => {
  let tmp: string;
  let runtime: ReplayedStage;
  const children = new Set<Child>();
  const log: string[] = [];

  beforeAll(async () => {
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'vg-deploy-'));
    const contextDir = path.join(tmp, 'context');
    await buildContext(contextDir);
    const done = new Map<string, ReplayedStage>();
    for (const [i, stage] of dockerfile.entries()) {
      const r = await runStage(stage, path.join(tmp, 'stages', String(i)), contextDir, done, (l) => log.push(l));
      done.set(stage.name, r);
      done.set(String(i), r);
    }
    runtime = done.get(dockerfile.at(-1)!.name)!;
  }, REPLAY_TIMEOUT);

  afterAll(async () => {
    for (const c of children) await c.kill();
    // DEPLOY_TEST_KEEP=1 keeps the replayed stages for a look; DEPLOY_TEST_TIMINGS=1 prints each RUN's time.
    if (tmp && !process.env.DEPLOY_TEST_KEEP) await fs.rm(tmp, { recursive: true, force: true });
    if (process.env.DEPLOY_TEST_TIMINGS) console.log([`replayed in ${tmp}`, ...log].join('\n'));
  });

  it('installs production dependencies only, and no sources', async () => {
    const runtimeDir = path.join(runtime.root, runtime.workdir);
    expect(runtime.runs.some((r) => /npm ci\b.*--omit=dev/.test(r))).toBe(true);
    const lock = JSON.parse(await fs.readFile(path.join(runtimeDir, 'package-lock.json'), 'utf8')) as {
      packages: Record<string, { dev?: boolean; devOptional?: boolean }>;
    };
    const pkg = JSON.parse(await fs.readFile(path.join(runtimeDir, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
    // Everything the lockfile has only for development, including "devOptional" packages such as
    // typescript (an optional peer of prisma, installed here only because we develop with it).
    // Some devDependencies (@types/node, yaml…) are also needed by production packages: those stay.
    const devOnly = Object.entries(lock.packages)
      .filter(([p, meta]) => p.startsWith('node_modules/') && (meta.dev || meta.devOptional))
      .map(([p]) => p);
    expect(devOnly).toEqual(expect.arrayContaining(['node_modules/typescript', 'node_modules/tsx', 'node_modules/vitest']));
    const present = devOnly.filter((p) => existsSync(path.join(runtimeDir, p)));
    expect(present, 'devDependencies in the runtime stage').toEqual([]);
    for (const dep of Object.keys(pkg.dependencies)) expect(existsSync(path.join(runtimeDir, 'node_modules', dep)), dep).toBe(true);
    // It runs the build stage's output, not sources.
    expect(existsSync(path.join(runtimeDir, 'src'))).toBe(false);
    expect(existsSync(path.join(runtimeDir, 'dist/main.js'))).toBe(true);
    // The web console, bundled by the build stage's `npm run build`, travels in dist/.
    expect(existsSync(path.join(runtimeDir, 'dist/console/index.html'))).toBe(true);
    expect(existsSync(path.join(runtimeDir, 'prisma/migrations/migration_lock.toml'))).toBe(true);
    // The static embedder's table, which dist/indexing/embedders/static.js reads from ../../../models.
    expect(existsSync(path.join(runtimeDir, 'models/static-use-384/vectors.bin'))).toBe(true);
  });

  it(
    'starts with its CMD, passes its HEALTHCHECK, serves REST and GraphQL, and stops on SIGTERM',
    async () => {
      const runtimeDir = path.join(runtime.root, runtime.workdir);
      const dataDir = path.join(tmp, 'data');
      const env = { ...baseEnv(), ...runtime.env, DATA_DIR: dataDir, PORT: '0' };
      const [command, ...args] = runtime.cmd!;
      const child = spawnChild(command!, args, { cwd: runtimeDir, env }, children);
      const [, banner] = (await child.waitForStdout(/listening on (http:\/\/\S+)/, 120_000)) as string[];
      const url = new URL(banner!);
      const port = url.port;
      if (url.hostname === '0.0.0.0' || url.hostname === '[::]') url.hostname = '127.0.0.1';
      const base = url.origin;

      // The HEALTHCHECK, as Docker runs it: in the container's environment, until it reports healthy.
      const health = runtime.healthcheck!.argv;
      const healthEnv = { ...env, PORT: port };
      const runHealthcheck = () =>
        exec(health[0]!, health.slice(1), { cwd: runtimeDir, env: healthEnv, timeout: 10_000 }).then(
          () => 0,
          (err: { code?: number }) => err.code ?? 1,
        );
      const deadline = Date.now() + 60_000;
      let healthy = await runHealthcheck();
      while (healthy !== 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 500));
        healthy = await runHealthcheck();
      }
      expect(healthy, `HEALTHCHECK never passed\n${child.stdout()}\n${child.stderr()}`).toBe(0);

      const ready = await call(base, 'GET', '/readyz', undefined, { key: null });
      expect(ready.status).toBe(200);
      expect(ready.body).toMatchObject({ status: 'ready', database: 'embedded' });

      // Migrations ran from the image's prisma/, and the compiled Prisma client and schema work.
      const key = (await fs.readFile(path.join(dataDir, 'admin-api-key'), 'utf8')).trim();
      const created = await call(base, 'POST', '/v1/orgs/deploy/workspaces', { name: 'from-the-image' }, { key });
      expect(created.status).toBe(201);
      const gql = await call(base, 'POST', '/graphql', { query: '{ workspaces(orgId: "deploy", first: 5) { totalCount } }' }, { key });
      expect(gql.body).toEqual({ data: { workspaces: { totalCount: 1 } } });

      child.proc.kill('SIGTERM');
      expect(await child.exited).toBe(0);
      // And the same HEALTHCHECK fails when nothing answers.
      expect(await runHealthcheck()).not.toBe(0);
    },
    REPLAY_TIMEOUT,
  );
});
