import { spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import openapiTS, { astToString } from 'openapi-typescript';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// docs/openapi.json is what clients generate from (test/contracts.test.ts keeps it current): it must
// name every operation stably, document every header the code reads and writes, lint clean, and
// generate typed operations.

const root = fileURLToPath(new URL('../', import.meta.url));
const DOC = path.join(root, 'docs/openapi.json');

interface Ref {
  $ref: string;
}
interface Parameter {
  name: string;
  in: string;
}
interface Response {
  headers?: Record<string, unknown>;
}
interface Operation {
  operationId?: string;
  tags?: string[];
  parameters?: (Parameter | Ref)[];
  responses: Record<string, Response | Ref>;
}
interface Document {
  paths: Record<string, Record<string, Operation>>;
  components: {
    parameters: Record<string, Parameter>;
    securitySchemes: Record<string, Record<string, string>>;
  };
  security: Record<string, string[]>[];
  servers: { url: string }[];
}

/** Every operationId, pinned: generated clients name their methods after them. */
const OPERATION_IDS: Record<string, string> = {
  createApiKey: 'POST /v1/orgs/{org_id}/api-keys',
  listApiKeys: 'GET /v1/orgs/{org_id}/api-keys',
  revokeApiKey: 'DELETE /v1/orgs/{org_id}/api-keys/{key_id}',
  listWorkspaces: 'GET /v1/orgs/{org_id}/workspaces',
  createWorkspace: 'POST /v1/orgs/{org_id}/workspaces',
  getWorkspace: 'GET /v1/orgs/{org_id}/workspaces/{workspace_id}',
  updateWorkspace: 'PUT /v1/orgs/{org_id}/workspaces/{workspace_id}',
  deleteWorkspace: 'DELETE /v1/orgs/{org_id}/workspaces/{workspace_id}',
  reconcileWorkspace: 'POST /v1/orgs/{org_id}/workspaces/{workspace_id}/reconcile',
  searchAll: 'POST /v1/orgs/{org_id}/workspaces/{workspace_id}/volumes/search-all',
  searchVolume: 'POST /v1/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}/search',
  startReindex: 'POST /v1/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}/reindex',
  getReindexProgress: 'GET /v1/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}/reindex',
  cancelReindex: 'POST /v1/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}/reindex/cancel',
  listSharedVolumes: 'GET /v1/orgs/{org_id}/volumes/shared',
  listWorkspaceSharedVolumes: 'GET /v1/orgs/{org_id}/workspaces/{workspace_id}/volumes/shared',
  makeVolumeShared: 'POST /v1/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}/make-shared',
  makeVolumePrivate: 'POST /v1/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}/make-private',
  startVolumeBackup: 'POST /v1/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}/sync',
  listVolumeBackups: 'GET /v1/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}/backups',
  getBackup: 'GET /v1/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}/backups/{backup_id}',
  restoreVolume: 'POST /v1/orgs/{org_id}/workspaces/{workspace_id}/volumes/restore',
  validateVolume: 'POST /v1/orgs/{org_id}/workspaces/{workspace_id}/volumes/validate',
  listVolumes: 'GET /v1/orgs/{org_id}/workspaces/{workspace_id}/volumes',
  createVolume: 'POST /v1/orgs/{org_id}/workspaces/{workspace_id}/volumes',
  getVolume: 'GET /v1/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}',
  updateVolume: 'PATCH /v1/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}',
  deleteVolume: 'DELETE /v1/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}',
  undeleteVolume: 'POST /v1/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}/restore',
  listMounts: 'GET /v1/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}/mounts',
  createMount: 'POST /v1/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}/mounts',
  deleteMount: 'DELETE /v1/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}/mounts/{mount_id}',
  getEntry: 'GET /v1/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}/entries/{path}',
  writeEntry: 'PUT /v1/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}/entries/{path}',
  deleteEntry: 'DELETE /v1/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}/entries/{path}',
  listDirectory: 'GET /v1/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}/list',
  uploadEntry: 'POST /v1/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}/entries/{path}/upload',
  getEntryDownloadUrl: 'GET /v1/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}/entries/{path}/download',
  moveEntry: 'POST /v1/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}/move',
  listLocks: 'GET /v1/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}/locks',
  acquireLock: 'POST /v1/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}/locks',
  renewLock: 'POST /v1/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}/locks/renew',
  releaseLock: 'DELETE /v1/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}/locks/{partition}',
};

/**
 * The request headers each operation reads besides X-Request-Id (read on every request by
 * src/http/request-log.ts) and the credentials (security schemes): src/rest/routes/entries.ts
 * `preconditions` and `executionId`, src/rest/routes/volumes.ts `ifMatchVersion`.
 */
const ENTRY_GUARD = ['If-Match', 'X-Lock-Id', 'X-Fencing-Token', 'X-Lock-Partition'];
const REQUEST_HEADERS: Record<string, string[]> = {
  writeEntry: [...ENTRY_GUARD, 'If-None-Match', 'X-Execution-Id'],
  uploadEntry: [...ENTRY_GUARD, 'If-None-Match', 'X-Execution-Id'],
  // A batch states versions per entry; If-Match / If-None-Match are refused (422), not documented.
  writeEntries: ['X-Lock-Id', 'X-Fencing-Token', 'X-Lock-Partition', 'X-Execution-Id'],
  deleteEntry: ENTRY_GUARD,
  moveEntry: ENTRY_GUARD,
  createTusUpload: [
    ...ENTRY_GUARD,
    'If-None-Match',
    'X-Execution-Id',
    'Tus-Resumable',
    'Upload-Length',
    'Upload-Defer-Length',
    'Upload-Metadata',
  ],
  getTusUploadOffset: ['Tus-Resumable'],
  patchTusUpload: ['Tus-Resumable', 'Upload-Offset'],
  createUploadUrl: [...ENTRY_GUARD, 'If-None-Match', 'X-Execution-Id'],
  updateVolume: ['If-Match'],
};

const DIALECT_TAGS = ['project-volumes', 'quota-volumes', 'environment-volumes'];

/** The responses that carry ETag (the routes' `c.header('ETag', …)`), and only those. */
const ETAG_RESPONSES = [
  'getVolume 200',
  'updateVolume 200',
  'undeleteVolume 200',
  'getEntry 200',
  'writeEntry 200',
  'writeEntry 201',
  'uploadEntry 200',
  'uploadEntry 201',
  'moveEntry 200',
  'completeUpload 200',
];

const METHODS = new Set(['get', 'put', 'post', 'delete', 'patch', 'head', 'options', 'trace']);

let doc: Document;
beforeAll(async () => {
  doc = JSON.parse(await fs.readFile(DOC, 'utf8')) as Document;
});

function operations(): { route: string; op: Operation }[] {
  return Object.entries(doc.paths).flatMap(([p, item]) =>
    Object.entries(item)
      .filter(([method]) => METHODS.has(method))
      .map(([method, op]) => ({ route: `${method.toUpperCase()} ${p}`, op })),
  );
}

function resolve<T>(value: T | Ref): T {
  if (!('$ref' in (value as object))) return value as T;
  const target = (value as Ref).$ref
    .replace(/^#\//, '')
    .split('/')
    .reduce<unknown>((node, key) => (node as Record<string, unknown>)?.[key.replaceAll('~1', '/').replaceAll('~0', '~')], doc);
  if (target === undefined) throw new Error(`unresolved ${(value as Ref).$ref}`);
  return target as T;
}

const headerParams = (op: Operation) =>
  (op.parameters ?? [])
    .map((p) => resolve<Parameter>(p))
    .filter((p) => p.in === 'header')
    .map((p) => p.name);

const responseHeaders = (response: Response | Ref) => Object.keys(resolve<Response>(response).headers ?? {});

describe('OpenAPI document: operations', () => {
  it('every operation has a unique camelCase operationId, and the pinned ones keep theirs', () => {
    const ids = operations().map(({ route, op }) => {
      expect(op.operationId, `${route} has no operationId`).toMatch(/^[a-z][A-Za-z0-9]*$/);
      return op.operationId as string;
    });
    expect(ids.filter((id, i) => ids.indexOf(id) !== i)).toEqual([]);
    const byId = Object.fromEntries(operations().map(({ route, op }) => [op.operationId, route]));
    for (const [id, route] of Object.entries(OPERATION_IDS)) expect(byId[id], id).toBe(route);
  });

  it('names its servers and security schemes', () => {
    expect(doc.servers.length).toBeGreaterThan(0);
    expect(doc.components.securitySchemes.bearer).toMatchObject({ type: 'http', scheme: 'bearer' });
    expect(doc.components.securitySchemes.apiKey).toMatchObject({ type: 'apiKey', in: 'header', name: 'X-API-Key' });
    expect(doc.security).toEqual([{ bearer: [] }, { apiKey: [] }]);
  });
});

describe('OpenAPI document: headers', () => {
  it('X-Request-Id on every operation and every response', () => {
    for (const { route, op } of operations()) {
      expect(headerParams(op), route).toContain('X-Request-Id');
      for (const [status, response] of Object.entries(op.responses)) {
        expect(responseHeaders(response), `${route} ${status}`).toContain('X-Request-Id');
      }
    }
  });

  it('each request header on exactly the operations that read it', () => {
    for (const { route, op } of operations()) {
      // The peer dialects' operations (their own tags) act on the org a platform key names in X-Org-Id.
      const dialect = (op.tags ?? []).some((t) => DIALECT_TAGS.includes(t));
      const expected = ['X-Request-Id', ...(dialect ? ['X-Org-Id'] : []), ...(REQUEST_HEADERS[op.operationId as string] ?? [])];
      expect(headerParams(op).sort(), route).toEqual(expected.sort());
    }
  });

  it('ETag on exactly the responses that set it', () => {
    const withEtag = operations().flatMap(({ op }) =>
      Object.entries(op.responses)
        .filter(([, response]) => responseHeaders(response).includes('ETag'))
        .map(([status]) => `${op.operationId} ${status}`),
    );
    expect(withEtag.sort()).toEqual([...ETAG_RESPONSES].sort());
  });

  it('429 RATE_LIMITED and 503 SERVICE_UNAVAILABLE, with Retry-After, on every operation', () => {
    for (const { route, op } of operations()) {
      for (const status of ['429', '503']) {
        const response = op.responses[status];
        expect(response, `${route} ${status}`).toBeDefined();
        expect(responseHeaders(response as Response), `${route} ${status}`).toContain('Retry-After');
      }
      expect(JSON.stringify(resolve(op.responses['429'] as Response))).toContain('RATE_LIMITED');
    }
  });

  it('every header the REST layer reads or writes is documented', async () => {
    // Read by name in src/rest and src/http; download-route.ts (/blobs) and console.ts (/console, the
    // web console's static files) serve routes outside /v1, which this document does not describe.
    const files = [
      ...(await fs.readdir(path.join(root, 'src/rest'), { recursive: true })).map((f) => `src/rest/${f}`),
      ...(await fs.readdir(path.join(root, 'src/http'))).map((f) => `src/http/${f}`),
    ].filter((f) => f.endsWith('.ts') && !f.endsWith('download-route.ts') && f !== 'src/http/console.ts');
    const read = new Set<string>();
    const written = new Set<string>();
    for (const file of files) {
      const source = await fs.readFile(path.join(root, file), 'utf8');
      for (const m of source.matchAll(/req\.header\(\s*['"]([^'"]+)['"]\s*\)|req\.headers\[\s*['"]([^'"]+)['"]\s*\]/g)) {
        read.add((m[1] ?? m[2] ?? '').toLowerCase());
      }
      for (const m of source.matchAll(/\bc\.header\(\s*['"]([^'"]+)['"]\s*,|setHeader\(\s*['"]([^'"]+)['"]/g)) {
        written.add((m[1] ?? m[2] ?? '').toLowerCase());
      }
    }
    expect(read).toContain('if-match');
    expect(written).toContain('etag');
    const ops = operations().map(({ op }) => op);
    const documentedParams = new Set(ops.flatMap(headerParams).map((h) => h.toLowerCase()));
    for (const scheme of Object.values(doc.components.securitySchemes)) {
      documentedParams.add(scheme.type === 'http' ? 'authorization' : (scheme.name ?? '').toLowerCase());
    }
    documentedParams.add('content-type'); // described by each request body's media types
    const documentedResponses = new Set(
      ops.flatMap((op) => Object.values(op.responses).flatMap(responseHeaders)).map((h) => h.toLowerCase()),
    );
    expect([...read].filter((h) => !documentedParams.has(h))).toEqual([]);
    expect([...written].filter((h) => !documentedResponses.has(h))).toEqual([]);
  });
});

describe('OpenAPI document: tools', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'openapi-ts-'));
  });
  afterAll(async () => {
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  it('openapi-typescript generates typed operations that a client type-checks against', async () => {
    const ast = await openapiTS(new URL(`file://${DOC}`));
    await fs.writeFile(path.join(dir, 'api.ts'), astToString(ast));
    const client = `
import type { operations, paths } from './api';

type Op<K extends keyof operations> = operations[K];

// The pinned operationIds are all there.
export const ids = ${JSON.stringify(Object.keys(OPERATION_IDS))} satisfies (keyof operations)[];
export const same: paths['/v1/orgs/{org_id}/workspaces/{workspace_id}/volumes']['get'] = {} as Op<'listVolumes'>;

export const where: Op<'listVolumes'>['parameters']['path'] = { org_id: 'acme', workspace_id: 'ws' };
// @ts-expect-error workspace_id is required
export const nowhere: Op<'listVolumes'>['parameters']['path'] = { org_id: 'acme' };

declare const created: Op<'createVolume'>['responses'][201]['content']['application/json'];
export const name: string = created.volume.name;
export const version: number = created.volume.version;
// @ts-expect-error a volume has no such field
export const nothing = created.volume.no_such_field;

declare const page: Op<'listDirectory'>['responses'][200]['content']['application/json'];
export const paths_: string[] = page.entries.map((e) => e.path);
export const more: boolean = page.has_more;

export const guarded: NonNullable<Op<'writeEntry'>['parameters']['header']> = {
  'If-Match': '"3"',
  'X-Lock-Id': 'lock',
  'X-Fencing-Token': 7,
  'X-Lock-Partition': '/reports/',
  'X-Request-Id': 'req-1',
};
// @ts-expect-error a fencing token is a number
export const badToken: NonNullable<Op<'deleteEntry'>['parameters']['header']> = { 'X-Fencing-Token': 'seven' };

declare const written: Op<'writeEntry'>['responses'][201];
export const etag: string = written.headers.ETag;
export const requestId: string = written.headers['X-Request-Id'];
declare const limited: Op<'listVolumes'>['responses'][429];
export const retryAfter: number = limited.headers['Retry-After'];
export const code: string = limited.content['application/json'].error;
`;
    await fs.writeFile(path.join(dir, 'client.ts'), client);
    const program = ts.createProgram([path.join(dir, 'client.ts')], {
      strict: true,
      noEmit: true,
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.ESNext,
      moduleResolution: ts.ModuleResolutionKind.Bundler,
      lib: ['lib.es2022.d.ts'],
      types: [],
      skipLibCheck: true,
    });
    const problems = ts
      .getPreEmitDiagnostics(program)
      .map((d) => `${d.file ? path.basename(d.file.fileName) : ''}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`);
    expect(problems).toEqual([]);
  });

  it('redocly lint (redocly.yaml) finds no problems', () => {
    const run = spawnSync(
      path.join(root, 'node_modules/.bin/redocly'),
      ['lint', 'docs/openapi.json', '--config', 'redocly.yaml', '--format=json'],
      {
        cwd: root,
        encoding: 'utf8',
        env: { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true' },
        timeout: 60_000,
      },
    );
    expect(run.error).toBeUndefined();
    const report = JSON.parse(run.stdout) as {
      totals: { errors: number; warnings: number };
      problems: { ruleId: string; message: string; location: { pointer: string }[] }[];
    };
    const problems = report.problems.map((p) => `${p.ruleId} ${p.location[0]?.pointer}: ${p.message}`);
    expect(problems).toEqual([]);
    expect(report.totals).toMatchObject({ errors: 0, warnings: 0 });
  });
});
