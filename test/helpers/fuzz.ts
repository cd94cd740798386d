import fc from 'fast-check';
import {
  type GraphQLInputType,
  type GraphQLSchema,
  getNamedType,
  isEnumType,
  isInputObjectType,
  isListType,
  isNonNullType,
  isObjectType,
  isScalarType,
} from 'graphql';
import { call as httpCall } from './http.js';

/**
 * Property-based fuzzing of the whole API surface: every REST operation of the OpenAPI document and
 * every GraphQL mutation, called over real HTTP with hostile input (unpaired surrogates, NUL, deep
 * nesting, wrong types, huge numbers, odd numbers in query strings, repeated parameters, crafted
 * cursors). The property: the gateway never answers 5xx (and GraphQL never reports
 * INTERNAL_SERVER_ERROR). Used by test/fuzz.test.ts (fixed seed, bounded budget) and
 * scripts/fuzz.ts (longer runs, any seed).
 */

/** Ids of real resources, so generated requests reach past the lookups into the domain rules. */
export interface FuzzFixture {
  orgId: string;
  workspaceId: string;
  volumeId: string;
  mountId: string;
  keyId: string;
  backupId: string;
  entryPath: string;
}

export interface FuzzTarget {
  baseUrl: string;
  adminKey: string;
  fixture: FuzzFixture;
}

export interface FuzzFailure {
  request: string;
  status: number;
  body: string;
}

const surrogates = ['\ud800', '\udc00', 'a\ud83d', '\ude00b', '\udbff\udbff'];
const oddText = [
  '\u0000',
  'a\u0000b',
  '',
  ' ',
  '../..',
  '%00',
  '%2e%2e',
  '\u202e',
  '\uffff',
  '😀',
  'é'.normalize('NFD'),
  '\\',
  '"',
  "'",
  '*',
  '**/',
];

/** Strings a careless parser trips over, and ordinary ones. */
export const hostileString = fc.oneof(
  { weight: 3, arbitrary: fc.string({ maxLength: 40, unit: 'binary' }) },
  { weight: 2, arbitrary: fc.constantFrom(...surrogates, ...oddText) },
  { weight: 1, arbitrary: fc.string({ minLength: 1, maxLength: 5, unit: 'grapheme' }).map((s) => s.repeat(100)) },
  { weight: 1, arbitrary: fc.tuple(fc.string({ maxLength: 8 }), fc.constantFrom(...surrogates)).map(([a, b]) => a + b) },
);

const hugeNumber = fc.constantFrom(2 ** 31, 2 ** 53, -(2 ** 53), 1e308, -1, 0, 0.5, -0.0001, Number.MAX_SAFE_INTEGER + 2);

/** Nesting far past any limit, built without recursion. */
const deepValue = fc.tuple(fc.integer({ min: 30, max: 3000 }), fc.boolean()).map(([n, arrays]) => {
  let v: unknown = 'leaf';
  for (let i = 0; i < n; i++) v = arrays ? [v] : { k: v };
  return v;
});

/** Field names the API reads, so generated bodies hit real validation paths. */
const FIELDS = [
  'name',
  'description',
  'tags',
  'metadata',
  'content',
  'content_text',
  'query',
  'top_k',
  'mode',
  'filters',
  'path_prefix',
  'partition',
  'app_id',
  'lock_type',
  'ttl_seconds',
  'lock_id',
  'path_pattern',
  'access_level',
  'scopes',
  'from',
  'to',
  'embedding_model_id',
  'indexing_mode',
  'chunking_strategy',
  'chunk_size',
  'chunk_overlap',
  'max_size_bytes',
  'max_file_count',
  'max_mounts',
  'min_score',
  'expected_version',
  'backup_id',
  'source_volume_id',
  'timestamp',
  'execution_id',
  'mime_type',
  'subscription_plan_id',
  'region',
  'is_active',
  'environment_id',
  'extraction_model_id',
  'written_by_app_id',
  'content_type',
];

export const hostileJson: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  value: fc.oneof(
    { maxDepth: 3, depthSize: 'small' },
    { weight: 4, arbitrary: hostileString },
    { weight: 2, arbitrary: fc.oneof(fc.integer(), hugeNumber, fc.double(), fc.boolean(), fc.constant(null)) },
    { weight: 2, arbitrary: fc.array(tie('value'), { maxLength: 4 }) },
    { weight: 3, arbitrary: tie('object') },
    { weight: 1, arbitrary: deepValue },
  ),
  object: fc.dictionary(fc.oneof(fc.constantFrom(...FIELDS), hostileString), tie('value'), { maxKeys: 6 }),
})).value;

/** A body with the API's own field names, hostile values, sometimes not JSON at all. */
const hostileBody = fc.oneof(
  { weight: 6, arbitrary: fc.dictionary(fc.constantFrom(...FIELDS), hostileJson, { maxKeys: 8 }).map((o) => JSON.stringify(o)) },
  { weight: 2, arbitrary: hostileJson.map((v) => JSON.stringify(v)) },
  { weight: 1, arbitrary: fc.constantFrom('{', '[1,', '{"name": "\\ud800"}', 'null', '"x"', '{"content": {"\\u0000": 1}}') },
);

const hostileQueryValue = fc.oneof(hostileString, fc.constantFrom('0x10', '5 ', ' 5', '1e3', '-1', '9999999999999999999', '', '0', '50'));

/** The parts of JSON Schema (as the OpenAPI document writes it) the generator below reads. */
interface JsonSchema {
  $ref?: string;
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  additionalProperties?: JsonSchema | boolean;
  items?: JsonSchema;
  enum?: unknown[];
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
}

interface OpenApi {
  paths: Record<
    string,
    Record<
      string,
      {
        parameters?: { in: string; name: string; schema?: JsonSchema }[];
        requestBody?: { content?: Record<string, { schema?: JsonSchema }> };
      }
    >
  >;
  components?: { schemas?: Record<string, JsonSchema> };
}

interface Operation {
  method: string;
  path: string;
  params: { in: string; name: string; schema?: JsonSchema }[];
  /** JSON body schema, when the operation takes JSON. */
  body: JsonSchema | undefined;
}

/** Every operation the OpenAPI document describes. */
export function operationsOf(openapi: OpenApi): Operation[] {
  const ops: Operation[] = [];
  for (const [path, methods] of Object.entries(openapi.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const body = op.requestBody?.content?.['application/json']?.schema;
      ops.push({ method: method.toUpperCase(), path, params: op.parameters ?? [], body });
    }
  }
  return ops;
}

/** A value that satisfies `schema` (as far as a generator without pattern support can): the valid baseline. */
function validValue(schema: JsonSchema | undefined, doc: OpenApi, depth = 0): fc.Arbitrary<unknown> {
  if (!schema || depth > 6) return fc.constant(null);
  if (schema.$ref) return validValue(doc.components?.schemas?.[schema.$ref.split('/').at(-1) as string], doc, depth + 1);
  if (schema.enum) return fc.constantFrom(...schema.enum);
  const variants = schema.anyOf ?? schema.oneOf;
  if (variants) return fc.oneof(...variants.map((v) => validValue(v, doc, depth + 1)));
  const type = Array.isArray(schema.type) ? (schema.type.find((t) => t !== 'null') ?? 'null') : schema.type;
  switch (type) {
    case 'object': {
      const props = Object.entries(schema.properties ?? {});
      const required = new Set(schema.required ?? []);
      return fc
        .tuple(
          ...props.map(([name, s]) =>
            required.has(name)
              ? validValue(s, doc, depth + 1)
              : // Optional fields rarely: every one more is one more chance to break a cross-field rule.
                fc.oneof({ weight: 4, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: validValue(s, doc, depth + 1) }),
          ),
        )
        .map((values) => Object.fromEntries(props.map(([name], i) => [name, values[i]]).filter(([, v]) => v !== undefined)));
    }
    case 'array':
      return fc.array(validValue(schema.items, doc, depth + 1), { maxLength: 3 });
    case 'integer':
      return fc.integer({ min: schema.minimum ?? 0, max: Math.min(schema.maximum ?? 1000, (schema.minimum ?? 0) + 1000) });
    case 'number':
      return fc.double({ min: schema.minimum ?? -1, max: schema.maximum ?? 1000, noNaN: true });
    case 'boolean':
      return fc.boolean();
    case 'string':
      if (schema.pattern) return fc.constantFrom('a1', 'app-1', 'x');
      return fc
        .string({ minLength: Math.max(1, schema.minLength ?? 1), maxLength: Math.min(schema.maxLength ?? 20, 20) })
        .map((s) => s.replaceAll('/', '-'));
    default:
      return fc.jsonValue({ maxDepth: 2 });
  }
}

/** A hostile value of the same kind as `like` most of the time (so it reaches the rules behind the type checks), anything sometimes. */
function hostileLike(like: unknown): fc.Arbitrary<unknown> {
  const sameKind =
    typeof like === 'string'
      ? hostileString
      : typeof like === 'number'
        ? fc.oneof(hugeNumber, fc.integer())
        : Array.isArray(like)
          ? fc.array(hostileString, { minLength: 1, maxLength: 3 }).map((extra) => [...like, ...extra])
          : like && typeof like === 'object'
            ? fc.oneof(
                fc.tuple(hostileString, hostileJson).map(([k, v]) => ({ ...like, [k]: v })),
                deepValue.map((deep) => ({ ...like, nested: deep })),
              )
            : hostileJson;
  return fc.oneof({ weight: 5, arbitrary: sameKind }, { weight: 1, arbitrary: hostileJson });
}

/** One leaf (or the whole value) of `value` replaced by something hostile, usually of the same kind. */
function mutate(value: unknown): fc.Arbitrary<unknown> {
  const paths: (string | number)[][] = [[]];
  const walk = (v: unknown, at: (string | number)[]) => {
    if (v && typeof v === 'object') {
      for (const [k, child] of Object.entries(v)) {
        const p = [...at, Array.isArray(v) ? Number(k) : k];
        paths.push(p);
        walk(child, p);
      }
    }
  };
  walk(value, []);
  const at = (path: (string | number)[]) => path.reduce<unknown>((v, k) => (v as Record<string | number, unknown>)[k], value);
  return fc.constantFrom(...paths).chain((path) =>
    hostileLike(at(path)).map((hostile) => {
      if (path.length === 0) return hostile;
      const copy = JSON.parse(JSON.stringify(value)) as Record<string | number, unknown>;
      let parent: Record<string | number, unknown> = copy;
      for (const k of path.slice(0, -1)) parent = parent[k] as Record<string | number, unknown>;
      parent[path.at(-1) as string | number] = hostile;
      return copy;
    }),
  );
}

/**
 * Valid bodies of the write operations (the OpenAPI schemas cannot say "content or content_text"),
 * so that one hostile leaf, not a dozen broken rules, decides what the gateway sees.
 */
function examplesFor(op: Operation, f: FuzzFixture): unknown[] | undefined {
  const key = `${op.method} ${op.path.replace(/^\/v1\/orgs\/\{org_id\}/, '')}`;
  const volume = '/workspaces/{workspace_id}/volumes/{volume_id}';
  const examples: Record<string, unknown[]> = {
    'POST /api-keys': [{ name: 'k', scopes: ['volumes:read', 'search'] }],
    'POST /workspaces': [{ name: 'w', description: 'd', tags: ['a'] }],
    'PUT /workspaces/{workspace_id}': [{ name: 'w2', description: 'd2', tags: ['b'] }],
    'POST /workspaces/{workspace_id}/volumes': [{ name: 'v', description: 'd', tags: ['a'], indexing_mode: 'auto' }],
    'POST /workspaces/{workspace_id}/volumes/validate': [{ name: 'v2', tags: ['x'] }],
    'POST /workspaces/{workspace_id}/volumes/restore': [{ backup_id: f.backupId, name: 'restored' }],
    'POST /workspaces/{workspace_id}/volumes/search-all': [{ query: 'fuzzing target', filters: { metadata: { k: 'v' }, tags: ['t'] } }],
    [`PATCH ${volume}`]: [{ description: 'x', tags: ['a'], max_file_count: 1000 }],
    [`POST ${volume}/restore`]: [{ name: 'again' }],
    [`POST ${volume}/mounts`]: [{ app_id: 'a1', path_pattern: '/docs/**', access_level: 'read' }],
    [`POST ${volume}/search`]: [
      { query: 'fuzzing target', top_k: 5, mode: 'hybrid', filters: { path_prefix: '/docs/', tags: ['t'], metadata: { k: 'v' } } },
    ],
    [`PUT ${volume}/entries/{path}`]: [
      { content: { title: 'x', n: 1, tags: ['a'] }, tags: ['t'], metadata: { k: 'v' } },
      { content_text: 'hello world', metadata: { a: 1 }, ttl_seconds: 3600 },
    ],
    [`POST ${volume}/move`]: [{ from: f.entryPath, to: '/docs/b.md' }],
    [`POST ${volume}/locks`]: [{ partition: '/reports/', app_id: 'a1', lock_type: 'exclusive', ttl_seconds: 30 }],
    [`POST ${volume}/locks/renew`]: [{ lock_id: '01900000-0000-7000-8000-000000000000', ttl_seconds: 30 }],
  };
  return examples[key];
}

/** DELETEs that would take the fixture itself away (and the coverage of every later run with it). */
const FIXTURE_DELETES = new Set([
  '/v1/orgs/{org_id}/workspaces/{workspace_id}',
  '/v1/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}',
]);

function pathValue(name: string, f: FuzzFixture, op: Operation): fc.Arbitrary<string> {
  const real: Record<string, string> = {
    org_id: f.orgId,
    workspace_id: f.workspaceId,
    volume_id: f.volumeId,
    mount_id: f.mountId,
    key_id: f.keyId,
    backup_id: f.backupId,
    path: f.entryPath.slice(1),
    partition: 'reports',
  };
  const protectedId = op.method === 'DELETE' && FIXTURE_DELETES.has(op.path) && name !== 'org_id';
  const crafted = fc.constantFrom('%00', '%ED%A0%80', '%F0%9F', 'a%2Fb', '%2e%2e', 'x'.repeat(300), '01900000-0000-7000-8000-000000000000');
  const odd = [
    { weight: 1, arbitrary: crafted },
    { weight: 1, arbitrary: hostileString.map((s) => encodeURIComponent(s.toWellFormed())) },
  ];
  return protectedId ? fc.oneof(...odd) : fc.oneof({ weight: 12, arbitrary: fc.constant(real[name] ?? 'x') }, ...odd);
}

/** One generated request against one operation: valid but for (usually) one hostile part. */
function requestFor(op: Operation, f: FuzzFixture, doc: OpenApi) {
  const pathParams = op.params.filter((p) => p.in === 'path');
  const queryParams = op.params.filter((p) => p.in === 'query');
  const queryArb = fc
    .tuple(...queryParams.map((p) => fc.option(validValue(p.schema, doc).map(String), { nil: undefined, freq: 2 })))
    .chain((values) => {
      const valid = queryParams.flatMap((p, i) => (values[i] === undefined ? [] : [[p.name, values[i] as string] as [string, string]]));
      const names = queryParams.length ? queryParams.map((p) => p.name) : ['x'];
      // Mostly one hostile parameter (or a repeat of a valid one) on top of valid ones.
      return fc.oneof(
        { weight: 2, arbitrary: fc.constant(valid) },
        { weight: 3, arbitrary: fc.tuple(fc.constantFrom(...names), hostileQueryValue).map((h) => [...valid, h]) },
      );
    });
  const examples = examplesFor(op, f);
  const bodyArb = op.body
    ? (examples ? fc.constantFrom(...examples) : validValue(op.body, doc)).chain((valid) =>
        fc.oneof(
          { weight: 2, arbitrary: fc.constant(JSON.stringify(valid)) },
          { weight: 6, arbitrary: mutate(valid).map((v) => JSON.stringify(v)) },
          { weight: 1, arbitrary: hostileBody },
        ),
      )
    : fc.constant(undefined);
  return fc.record({
    path: fc.tuple(...pathParams.map((p) => pathValue(p.name, f, op))).map((values) => {
      let url = op.path;
      pathParams.forEach((p, i) => {
        url = url.replace(`{${p.name}}`, values[i] as string);
      });
      return url;
    }),
    query: queryArb,
    body: bodyArb,
    weakKey: fc
      .boolean()
      .chain((b) => (b ? fc.boolean() : fc.constant(false)))
      .chain((b) => (b ? fc.boolean() : fc.constant(false))),
  });
}

function encodeQuery(pairs: [string, string][]): string {
  if (pairs.length === 0) return '';
  // Unpaired surrogates cannot be percent-encoded as UTF-8: they go out as the bytes of U+D800, which
  // is what a hostile client would send.
  return `?${pairs.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v.toWellFormed()).replaceAll('%EF%BF%BD', '%ED%A0%80')}`).join('&')}`;
}

async function send(url: string, init: RequestInit): Promise<{ status: number; text: string }> {
  const res = await fetch(url, init);
  return { status: res.status, text: await res.text() };
}

/** Fuzzes every REST operation; resolves with the first 5xx (or undefined). */
export async function fuzzRest(
  target: FuzzTarget,
  openapi: OpenApi,
  opts: { seed: number; runs: number; weakKey: string; onResult?: (operation: string, status: number) => void },
): Promise<FuzzFailure | undefined> {
  const ops = operationsOf(openapi);
  let failure: FuzzFailure | undefined;
  const arbitrary = fc.constantFrom(...ops).chain((op) => requestFor(op, target.fixture, openapi).map((r) => ({ op, ...r })));
  await fc
    .assert(
      fc.asyncProperty(arbitrary, async ({ op, path, query, body, weakKey }) => {
        const url = `${target.baseUrl}${path}${encodeQuery(query)}`;
        const headers: Record<string, string> = { authorization: `Bearer ${weakKey ? opts.weakKey : target.adminKey}` };
        if (body !== undefined) headers['content-type'] = 'application/json';
        const res = await send(url, { method: op.method, headers, ...(body !== undefined ? { body } : {}) });
        opts.onResult?.(`${op.method} ${op.path}`, res.status);
        if (res.status >= 500) {
          failure = { request: `${op.method} ${url} ${body ?? ''}`.slice(0, 2000), status: res.status, body: res.text.slice(0, 500) };
          return false;
        }
        return true;
      }),
      { seed: opts.seed, numRuns: opts.runs, endOnFailure: true },
    )
    .catch((err) => {
      if (!failure) throw err;
    });
  return failure;
}

/** The fixture id an argument or field most likely names, from its name and the mutation's. */
function idFor(name: string, mutation: string, f: FuzzFixture): string | undefined {
  const n = name.toLowerCase();
  const m = mutation.toLowerCase();
  if (n.includes('volume') || (n === 'id' && m.includes('volume'))) return f.volumeId;
  if (n.includes('workspace') || (n === 'id' && m.includes('workspace'))) return f.workspaceId;
  if (n.includes('mount') || (n === 'id' && m.includes('mount'))) return f.mountId;
  if (n.includes('backup')) return f.backupId;
  if (n === 'orgid') return f.orgId;
  if (n === 'id' && m.includes('apikey')) return f.keyId;
  return undefined;
}

/** Mutations that would take the fixture itself away (and the coverage of every later run with it). */
const FIXTURE_DELETING_MUTATIONS = new Set(['deleteVolume', 'deleteWorkspace']);

/** A value for a GraphQL input type: usually of the right shape with a hostile leaf here and there, sometimes of no shape at all. */
function graphqlValue(type: GraphQLInputType, f: FuzzFixture, ctx: { name: string; mutation: string }, depth = 0): fc.Arbitrary<unknown> {
  if (isNonNullType(type)) return graphqlValue(type.ofType, f, ctx, depth);
  if (depth > 4) return fc.constant(null);
  const anything = fc.oneof(hostileJson, fc.constant(null));
  if (isListType(type)) {
    return fc.oneof(
      { weight: 8, arbitrary: fc.array(graphqlValue(type.ofType, f, ctx, depth + 1), { maxLength: 3 }) },
      { weight: 1, arbitrary: anything },
    );
  }
  if (isEnumType(type)) {
    return fc.oneof(
      { weight: 8, arbitrary: fc.constantFrom(...type.getValues().map((v) => v.name)) },
      { weight: 1, arbitrary: hostileString },
    );
  }
  if (isInputObjectType(type)) {
    const fields = Object.values(type.getFields());
    const shaped = fc
      .tuple(
        ...fields.map((field) =>
          isNonNullType(field.type)
            ? graphqlValue(field.type, f, { ...ctx, name: field.name }, depth + 1)
            : fc.oneof(
                { weight: 2, arbitrary: fc.constant(undefined) },
                { weight: 1, arbitrary: graphqlValue(field.type, f, { ...ctx, name: field.name }, depth + 1) },
              ),
        ),
      )
      .map((values) => Object.fromEntries(fields.map((field, i) => [field.name, values[i]]).filter(([, v]) => v !== undefined)));
    return fc.oneof({ weight: 10, arbitrary: shaped }, { weight: 1, arbitrary: anything });
  }
  if (isScalarType(type)) {
    const real = idFor(ctx.name, ctx.mutation, f);
    const keepFixture = FIXTURE_DELETING_MUTATIONS.has(ctx.mutation);
    const ids =
      real && !keepFixture ? fc.oneof({ weight: 6, arbitrary: fc.constant(real) }, { weight: 1, arbitrary: hostileString }) : hostileString;
    const plain = fc.oneof(
      { weight: 3, arbitrary: fc.constantFrom('fuzz', 'a1', '/docs/a.md', 'hello world', 'x') },
      { weight: 2, arbitrary: hostileString },
    );
    const byName: Record<string, fc.Arbitrary<unknown>> = {
      ID: ids,
      String: real && !keepFixture ? ids : plain,
      Int: fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 1, max: 100 }) }, { weight: 1, arbitrary: hugeNumber }),
      SafeInt: fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 1, max: 100_000 }) }, { weight: 1, arbitrary: hugeNumber }),
      Float: fc.oneof(fc.double({ min: -1, max: 1, noNaN: true }), hugeNumber),
      Boolean: fc.boolean(),
      JSON: fc.oneof({ weight: 2, arbitrary: fc.jsonValue({ maxDepth: 2 }) }, { weight: 2, arbitrary: hostileJson }),
      DateTime: fc.oneof(
        fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
        hostileString,
      ),
      File: fc.constant(null),
    };
    return fc.oneof({ weight: 12, arbitrary: byName[type.name] ?? hostileString }, { weight: 1, arbitrary: anything });
  }
  return anything;
}

/** Fuzzes every GraphQL mutation; resolves with the first 5xx or INTERNAL_SERVER_ERROR (or undefined). */
export async function fuzzGraphQL(
  target: FuzzTarget,
  schema: GraphQLSchema,
  opts: { seed: number; runs: number; onResult?: (mutation: string, status: number) => void },
): Promise<FuzzFailure | undefined> {
  const mutations = Object.values(schema.getMutationType()?.getFields() ?? {});
  let failure: FuzzFailure | undefined;
  const arbitrary = fc.constantFrom(...mutations).chain((field) =>
    fc
      .tuple(
        ...(field.args.length
          ? field.args.map((a) => graphqlValue(a.type, target.fixture, { name: a.name, mutation: field.name }))
          : [fc.constant(undefined)]),
      )
      .map((values) => {
        const defs = field.args.map((a) => `$${a.name}: ${a.type.toString()}`).join(', ');
        const args = field.args.map((a) => `${a.name}: $${a.name}`).join(', ');
        const selection = isObjectType(getNamedType(field.type)) ? ' { __typename }' : '';
        const query = `mutation${defs ? `(${defs})` : ''} { ${field.name}${args ? `(${args})` : ''}${selection} }`;
        const variables = Object.fromEntries(field.args.map((a, i) => [a.name, values[i]]));
        return { query, variables, name: field.name };
      }),
  );
  await fc
    .assert(
      fc.asyncProperty(arbitrary, async ({ query, variables, name }) => {
        const res = await send(`${target.baseUrl}/graphql`, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            accept: 'application/graphql-response+json',
            authorization: `Bearer ${target.adminKey}`,
          },
          body: JSON.stringify({ query, variables }),
        });
        const internal = res.text.includes('"INTERNAL_SERVER_ERROR"');
        opts.onResult?.(name, res.status);
        if (res.status >= 500 || internal) {
          failure = { request: `${query} ${JSON.stringify(variables)}`.slice(0, 2000), status: res.status, body: res.text.slice(0, 500) };
          return false;
        }
        return true;
      }),
      { seed: opts.seed, numRuns: opts.runs, endOnFailure: true },
    )
    .catch((err) => {
      if (!failure) throw err;
    });
  return failure;
}

/** Creates the resources the fuzzers aim at, over the API itself (no test framework needed). */
export async function buildFixture(baseUrl: string, adminKey: string, orgId = 'fuzz'): Promise<{ fixture: FuzzFixture; weakKey: string }> {
  const call = async (method: string, route: string, body?: unknown) => {
    const res = await httpCall(baseUrl, method, `/v1/orgs/${orgId}${route}`, body, { key: adminKey });
    if (res.status >= 300) throw new Error(`${method} ${route}: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body;
  };
  const until = async <T>(check: () => Promise<T | undefined>): Promise<T> => {
    for (let i = 0; i < 1200; i++) {
      const v = await check();
      if (v !== undefined) return v;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error('fixture: condition not met in time');
  };
  const ws = (await call('POST', '/workspaces', { name: 'fuzz' })).workspace_id as string;
  await until(async () => ((await call('GET', `/workspaces/${ws}`)).bucket_status === 'active' ? true : undefined));
  const vol = (await call('POST', `/workspaces/${ws}/volumes`, { name: 'fuzz' })).volume.volume_id as string;
  const base = `/workspaces/${ws}/volumes/${vol}`;
  const mount = await call('POST', `${base}/mounts`, { app_id: 'fuzz-app', path_pattern: '/docs/**', access_level: 'write' });
  const key = await call('POST', '/api-keys', { name: 'fuzz', scopes: ['volumes:read'] });
  const weak = await call('POST', '/api-keys', { name: 'fuzz-weak', scopes: ['entries:read'], app_id: 'fuzz-app' });
  await call('PUT', `${base}/entries/docs/a.md`, { content_text: 'fuzzing target', tags: ['t'] });
  const backupId = (await call('POST', `${base}/sync`)).backup_id as string;
  await until(async () => {
    const b = await call('GET', `${base}/backups/${backupId}`);
    if (b.status === 'failed') throw new Error(`fixture backup failed: ${b.error}`);
    return b.status === 'completed' ? true : undefined;
  });
  return {
    fixture: {
      orgId,
      workspaceId: ws,
      volumeId: vol,
      mountId: mount.mount_id ?? mount.mount?.mount_id,
      keyId: key.key.key_id,
      backupId,
      entryPath: '/docs/a.md',
    },
    weakKey: weak.api_key,
  };
}
