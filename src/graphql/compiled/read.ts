/**
 * Compiled reads: a query over workspaces, volumes, their entries, mounts and locks answered by ONE
 * SQL statement that builds the response JSON in Postgres (as PostGraphile does), instead of
 * graphql-js walking resolvers over Prisma rows. The cost of a nested read was per-row and per-field
 * work in the gateway (Prisma's row mapping, ~1,300 field resolutions, their garbage), not the database.
 *
 * It is a fast path with a strict fallback: `compileRead` returns undefined, and the operation runs
 * through graphql-js as before, whenever anything is outside what it knows to answer identically:
 * - the platform key (it names an org per call);
 * - a missing scope, an argument that would be refused, paging past a first page of a Prisma
 *   connection (`after`), `last`/`before`, filters, sorts and offsets of volume and workspace lists;
 * - a field that is not a plain column (exposed by Pothos) or one of the relations below;
 * - directives, repeated response keys, fragments on other types, several operations;
 * - a query over the complexity limits (which then answers QUERY_TOO_COMPLEX the usual way);
 * - a workspace that `volumes(workspaceId)` cannot see (the statement says so; the usual path answers).
 * Visibility comes from the domain's SQL forms of its rules (`visibleVolumeSql`, `visibleMountSql`,
 * `readableRegexesSql`, `liveLocksSql`, `entryListingSql`). An app key's path regexes are made from its
 * mount patterns in JS (`appPatternRegexes`, one statement before the read), and the read checks it
 * was given every pattern. test/graphql-compiled.test.ts compares answers with graphql-js' field by
 * field, for org and app keys.
 */
import { complexityFromQuery } from '@pothos/plugin-complexity';
import {
  type ExecutionArgs,
  type FieldNode,
  type FragmentDefinitionNode,
  type GraphQLField,
  type GraphQLObjectType,
  getArgumentValues,
  getNamedType,
  getVariableValues,
  isObjectType,
  Kind,
  type OperationDefinitionNode,
  type SelectionSetNode,
} from 'graphql';
import { readableRegexesSql } from '../../domain/access/entry-access.js';
import { hasScope, type KeyPrincipal, type Scope } from '../../domain/access/principal.js';
import { visibleMountSql, visibleVolumeSql, visibleWorkspaceSql } from '../../domain/access/visibility.js';
import { type EntryListFilters, entryListingSql, parseEntryFilters } from '../../domain/entries/listing.js';
import { liveLocksSql } from '../../domain/locks/locks.js';
import { isId } from '../../domain/shared/fields.js';
import { Prisma } from '../../generated/prisma/client.js';
import { DEFAULT_PAGE } from '../builder.js';
import type { GraphQLContext } from '../context.js';
import { MAX_PAGE_SIZE } from '../page-size.js';
import { pageOf } from '../schema/entry.js';

/** Thrown while compiling when the operation must take the usual path. */
class Unsupported extends Error {}
const unsupported = (why: string): never => {
  throw new Unsupported(why);
};

/** Fields that read one column without being a Pothos `expose` (their resolver only narrows the type). */
const COLUMN_FIELDS: Record<string, string> = { 'Entry.contentType': 'contentType' };

const NAME = /^[_A-Za-z][_0-9A-Za-z]*$/;
const raw = Prisma.raw;
const literal = (text: string) => (NAME.test(text) ? raw(`'${text}'`) : unsupported('name'));
const snake = (field: string) => field.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

interface Selected {
  key: string;
  node: FieldNode;
  /** null for __typename */
  def: GraphQLField<unknown, unknown> | null;
}

interface Env {
  p: KeyPrincipal;
  fragments: Record<string, FragmentDefinitionNode>;
  variables: Record<string, unknown>;
  now: Date;
  aliases: number;
  /** Conditions under which the statement's answer must not be used (the usual path answers). */
  bail: Prisma.Sql[];
  /** Whether the statement reads an app key's path regexes (the APP_REGEXES parameter). */
  appRegexes: boolean;
}

export interface CompiledRead {
  sql: Prisma.Sql;
  /** APP_REGEXES stands in its values for the JSON of `appPatternRegexes`, to be put in before it runs. */
  appRegexes: boolean;
}

/** The parameter that stands for an app key's pattern regexes (JSON) until the statement runs. */
export const APP_REGEXES = Object.freeze({ appRegexes: true });

/**
 * The one statement answering this query, or undefined when it must run through graphql-js.
 * Synchronous and side-effect free: deciding costs no database round trip.
 */
export function compileRead(args: ExecutionArgs): CompiledRead | undefined {
  const ctx = args.contextValue as GraphQLContext | undefined;
  const p = ctx?.principal;
  if (!ctx?.runtime.sql || !ctx.runtime.settings.compiledReads || !p || p.kind !== 'key') return undefined;
  const ops = args.document.definitions.filter((d): d is OperationDefinitionNode => d.kind === Kind.OPERATION_DEFINITION);
  const op = ops[0];
  if (ops.length !== 1 || !op || op.operation !== 'query' || op.directives?.length) return undefined;
  // Nothing to read (`{ __typename }`): graphql-js answers without a round trip.
  if (!op.selectionSet.selections.some((s) => s.kind !== Kind.FIELD || ROOT_FIELDS.has(s.name.value))) return undefined;
  const coerced = getVariableValues(args.schema, op.variableDefinitions ?? [], (args.variableValues ?? {}) as Record<string, unknown>);
  if (coerced.errors) return undefined;
  if (overLimits(args, ctx)) return undefined;
  const fragments: Record<string, FragmentDefinitionNode> = {};
  for (const d of args.document.definitions) if (d.kind === Kind.FRAGMENT_DEFINITION) fragments[d.name.value] = d;
  const env: Env = { p, fragments, variables: coerced.coerced, now: new Date(), aliases: 0, bail: [], appRegexes: false };
  try {
    const root = args.schema.getQueryType() as GraphQLObjectType;
    const data = object(collect(env, root, op.selectionSet).map((f) => [f.key, f.def ? rootField(env, f) : literal(root.name)]));
    const bail = env.bail.length ? Prisma.join(env.bail, ' OR ') : raw('false');
    // As text: the gateway hands the JSON on as it is, never parsing or re-serialising it.
    return { sql: Prisma.sql`SELECT ${data}::text AS data, (${bail}) AS bail`, appRegexes: env.appRegexes };
  } catch (err) {
    if (err instanceof Unsupported) return undefined;
    throw err;
  }
}

const ROOT_FIELDS = new Set(['workspaces', 'workspace', 'volumes', 'volume']);

/**
 * Whether the usual path would refuse the query as too deep, broad or expensive (Pothos' own count),
 * remembered per parsed document (yoga reuses them) and variables, for the same limits.
 */
function overLimits(args: ExecutionArgs, ctx: GraphQLContext): boolean {
  let known = limitChecks.get(args.document);
  if (!known) {
    known = new Map();
    limitChecks.set(args.document, known);
  }
  const key = JSON.stringify([args.variableValues ?? {}, ctx.queryLimits]);
  let over = known.get(key);
  if (over === undefined) {
    over = countsOverLimits(args, ctx);
    if (known.size >= 64) known.clear();
    known.set(key, over);
  }
  return over;
}
const limitChecks = new WeakMap<ExecutionArgs['document'], Map<string, boolean>>();

function countsOverLimits(args: ExecutionArgs, ctx: GraphQLContext): boolean {
  try {
    const { complexity, depth, breadth } = complexityFromQuery(args.document, {
      schema: args.schema,
      variables: (args.variableValues ?? {}) as Record<string, unknown>,
      ctx,
    });
    const max = ctx.queryLimits;
    return depth > max.depth || breadth > max.breadth || complexity > max.complexity;
  } catch {
    return true;
  }
}

/** The fields selected on `type` in response order, through fragments on that same type. */
function collect(env: Env, type: GraphQLObjectType, set: SelectionSetNode | undefined): Selected[] {
  if (!set) return unsupported('selection');
  const out: Selected[] = [];
  const keys = new Set<string>();
  const walk = (s: SelectionSetNode) => {
    for (const sel of s.selections) {
      if (sel.directives?.length) unsupported('directive');
      if (sel.kind === Kind.FIELD) {
        const key = sel.alias?.value ?? sel.name.value;
        if (keys.has(key)) unsupported('merged field');
        keys.add(key);
        const def = sel.name.value === '__typename' ? null : (type.getFields()[sel.name.value] ?? unsupported('field'));
        out.push({ key, node: sel, def });
      } else {
        const frag = sel.kind === Kind.INLINE_FRAGMENT ? sel : (env.fragments[sel.name.value] ?? unsupported('fragment'));
        if (frag.typeCondition && frag.typeCondition.name.value !== type.name) unsupported('type condition');
        walk(frag.selectionSet);
      }
    }
  };
  walk(set);
  return out;
}

function argsOf(env: Env, f: Selected, allowed: readonly string[]): Record<string, unknown> {
  let args: Record<string, unknown>;
  try {
    args = getArgumentValues(f.def as GraphQLField<unknown, unknown>, f.node, env.variables);
  } catch {
    return unsupported('arguments');
  }
  for (const [name, value] of Object.entries(args)) if (value != null && !allowed.includes(name)) unsupported(`argument ${name}`);
  return args;
}

function requireScope(env: Env, scope: Scope) {
  if (!hasScope(env.p, scope)) unsupported('scope');
}

function object(pairs: [string, Prisma.Sql][]): Prisma.Sql {
  // json_build_object takes at most 100 arguments.
  if (pairs.length === 0 || pairs.length > 50) return unsupported('object size');
  return Prisma.sql`json_build_object(${Prisma.join(
    pairs.map(([k, v]) => Prisma.sql`${literal(k)}, ${v}`),
    ', ',
  )})`;
}

function typeOf(f: Selected): GraphQLObjectType {
  const t = getNamedType((f.def as GraphQLField<unknown, unknown>).type);
  return isObjectType(t) ? t : unsupported('type');
}

function rootField(env: Env, f: Selected): Prisma.Sql {
  const name = (f.def as GraphQLField<unknown, unknown>).name;
  const orgWorkspaces = (a: string) => visibleWorkspaceSql(env.p, a) as Prisma.Sql;
  const orgVolumes = (a: string) => visibleVolumeSql(env.p, a) as Prisma.Sql;
  if (name === 'workspaces') {
    requireScope(env, 'workspaces:read');
    const args = argsOf(env, f, ['orgId', 'first']);
    if (args.orgId != null && args.orgId !== env.p.orgId) unsupported('another org');
    return prismaConnection(env, f, args, 'workspaces', orgWorkspaces);
  }
  if (name === 'volumes') {
    requireScope(env, 'volumes:read');
    const args = argsOf(env, f, ['workspaceId', 'first']);
    const workspaceId = String(args.workspaceId);
    if (!isId(workspaceId)) unsupported('workspace id');
    env.bail.push(Prisma.sql`NOT EXISTS (SELECT 1 FROM workspaces w WHERE w.id = ${workspaceId} AND ${orgWorkspaces('w')})`);
    return prismaConnection(env, f, args, 'volumes', (a) => Prisma.sql`${raw(a)}.workspace_id = ${workspaceId} AND ${orgVolumes(a)}`);
  }
  if (name === 'workspace' || name === 'volume') {
    requireScope(env, name === 'workspace' ? 'workspaces:read' : 'volumes:read');
    const id = String(argsOf(env, f, ['id']).id);
    if (!isId(id)) unsupported('id');
    const a = `t${env.aliases++}`;
    const where = name === 'workspace' ? orgWorkspaces(a) : orgVolumes(a);
    const table = raw(name === 'workspace' ? 'workspaces' : 'volumes');
    return Prisma.sql`(SELECT ${entity(env, typeOf(f), f.node.selectionSet, a, new Set())} FROM ${table} ${raw(a)} WHERE ${raw(a)}.id = ${id} AND ${where})`;
  }
  return unsupported('root field');
}

/**
 * A row's object: its columns, __typename, and the relations listed here, with `cols` collecting the
 * columns read from `alias` (a derived table selects only those).
 */
function entity(env: Env, type: GraphQLObjectType, set: SelectionSetNode | undefined, alias: string, cols: Set<string>): Prisma.Sql {
  return object(
    collect(env, type, set).map((f): [string, Prisma.Sql] => {
      if (!f.def) return [f.key, literal(type.name)];
      const name = `${type.name}.${f.def.name}`;
      const relation = RELATIONS[name];
      if (relation) {
        for (const c of PARENT_COLUMNS[name] ?? ['id']) cols.add(c);
        return [f.key, relation(env, f, alias)];
      }
      if (f.node.arguments?.length || f.node.selectionSet) unsupported('field with arguments or selections');
      return [f.key, column(type, f.def, alias, cols)];
    }),
  );
}

/** A column as its GraphQL scalar serialises it (DateTime as ISO text in UTC with milliseconds). */
function column(type: GraphQLObjectType, def: GraphQLField<unknown, unknown>, alias: string, cols: Set<string>): Prisma.Sql {
  const exposed = (def.extensions.pothosExposedField as string | undefined) ?? COLUMN_FIELDS[`${type.name}.${def.name}`];
  const options = def.extensions.pothosOptions as { authScopes?: unknown } | undefined;
  if (!exposed || options?.authScopes) return unsupported('computed field');
  const name = snake(exposed);
  cols.add(name);
  const ref = `${alias}.${name}`;
  // TIMESTAMP(3) columns hold UTC.
  return raw(getNamedType(def.type).name === 'DateTime' ? `to_char(${ref}, 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')` : ref);
}

type Relation = (env: Env, f: Selected, parent: string) => Prisma.Sql;

/** The parent's columns a relation reads (default: its id). */
const PARENT_COLUMNS: Record<string, string[]> = { 'Volume.entries': ['id', 'is_shared'] };

const RELATIONS: Record<string, Relation> = {
  'Workspace.volumes': (env, f, parent) => {
    requireScope(env, 'volumes:read');
    const args = argsOf(env, f, ['first']);
    return prismaConnection(
      env,
      f,
      args,
      'volumes',
      (a) => Prisma.sql`${raw(a)}.workspace_id = ${raw(parent)}.id AND ${visibleVolumeSql(env.p, a) as Prisma.Sql}`,
    );
  },
  'Volume.mounts': (env, f, parent) =>
    prismaConnection(
      env,
      f,
      argsOf(env, f, ['first']),
      'mounts',
      (a) => Prisma.sql`${raw(a)}.volume_id = ${raw(parent)}.id AND ${visibleMountSql(env.p, a) as Prisma.Sql}`,
    ),
  'Volume.locks': (env, f, parent) => {
    requireScope(env, 'volumes:read');
    argsOf(env, f, []);
    const a = `t${env.aliases++}`;
    const live = liveLocksSql(a, env.now);
    const node = entity(env, typeOf(f), f.node.selectionSet, a, new Set());
    return Prisma.sql`coalesce((SELECT json_agg(${node} ORDER BY ${live.orderBy}) FROM locks ${raw(a)}
      WHERE ${raw(a)}.volume_id = ${raw(parent)}.id AND ${live.where}), '[]'::json)`;
  },
  'Volume.entries': (env, f, parent) => {
    requireScope(env, 'entries:read');
    const args = argsOf(env, f, ['first', 'after', 'prefix', 'tags', 'contentType']);
    // The resolver's own rules (entry.ts `pageOf`, the domain's filters): whatever they refuse, the resolver answers.
    let filters: EntryListFilters;
    try {
      filters = parseEntryFilters(
        {
          ...pageOf(args as { first?: number; after?: string }),
          ...(args.prefix != null ? { prefix: args.prefix as string } : {}),
          ...(args.tags != null ? { tags: args.tags as string[] } : {}),
          ...(args.contentType != null ? { content_type: args.contentType as 'json' } : {}),
        },
        [],
      );
    } catch {
      return unsupported('entry filters');
    }
    const limit = filters.limit;
    // An app key reads the paths its mounts there match (all of a shared volume): computed once per
    // volume, joined to the page and to its count as `<alias>rx.rx`.
    const readable = readableRegexesSql(env.p, parent, Prisma.sql`${APP_REGEXES}`);
    if (readable) {
      env.appRegexes = true;
      env.bail.push(Prisma.sql`NOT (${readable.complete})`);
    }
    const from = (a: string) =>
      readable ? Prisma.sql`entries ${raw(a)}, (SELECT ${readable.rx} AS rx) ${raw(`${a}rx`)}` : Prisma.sql`entries ${raw(a)}`;
    const where = (a: string) => entryListingSql(filters, a, raw(`${parent}.id`), readable ? raw(`${a}rx.rx`) : undefined);
    const after = filters.after;
    return connection(env, f, {
      from,
      where: (a) => (after !== null ? Prisma.sql`${where(a)} AND ${raw(a)}.path > ${after}` : where(a)),
      totalWhere: where,
      order: 'path',
      limit,
      cursor: pathCursor,
      // The entries connection (entry.ts): no start cursor; the end cursor only when there is more.
      startCursor: () => raw('NULL'),
      endCursor: (last, more) => Prisma.sql`CASE WHEN ${more} THEN ${pathCursor(last)} END`,
      hasPreviousPage: raw(after !== null ? 'true' : 'false'),
    });
  },
};

/** `encodePathCursor` in SQL: base64url (unpadded) of {"v":1,"p":<path>}. */
const pathCursor = (path: Prisma.Sql) =>
  Prisma.sql`translate(encode(convert_to('{"v":1,"p":' || to_json(${path})::text || '}', 'UTF8'), 'base64'), E'+/=\\n', '-_')`;

/** Pothos' Prisma cursor for an id column: base64 of GPC:S:<id>. */
const prismaCursor = (id: Prisma.Sql) => Prisma.sql`translate(encode(convert_to('GPC:S:' || ${id}, 'UTF8'), 'base64'), E'\\n', '')`;

/** A first page of a Pothos Prisma connection ordered by id (`orderByOf(null)`), as `wrapConnectionResult` shapes it. */
function prismaConnection(
  env: Env,
  f: Selected,
  args: Record<string, unknown>,
  table: string,
  where: (alias: string) => Prisma.Sql,
): Prisma.Sql {
  const limit = (args.first as number | undefined) ?? DEFAULT_PAGE;
  // Pothos refuses more than MAX_PAGE_SIZE (page-size.ts) and pages `first: 0` its own way.
  if (limit < 1 || limit > MAX_PAGE_SIZE) unsupported('page size');
  return connection(env, f, {
    from: (a) => Prisma.sql`${raw(table)} ${raw(a)}`,
    where,
    totalWhere: where,
    order: 'id',
    limit,
    cursor: prismaCursor,
    startCursor: prismaCursor,
    endCursor: (last) => prismaCursor(last),
    hasPreviousPage: raw('false'),
  });
}

interface ConnectionSpec {
  /** The FROM items for an alias: the table, and anything its conditions read beside it. */
  from: (alias: string) => Prisma.Sql;
  where: (alias: string) => Prisma.Sql;
  totalWhere: (alias: string) => Prisma.Sql;
  /** The one column the page is ordered by, ascending (unique within the parent). */
  order: string;
  limit: number;
  cursor: (value: Prisma.Sql) => Prisma.Sql;
  startCursor: (first: Prisma.Sql) => Prisma.Sql;
  endCursor: (last: Prisma.Sql, more: Prisma.Sql) => Prisma.Sql;
  hasPreviousPage: Prisma.Sql;
}

/**
 * A connection page: the first `limit + 1` rows by `order` (the extra one says whether there is a
 * next page), numbered, aggregated into edges. Only the columns the selection reads are selected.
 */
function connection(env: Env, f: Selected, spec: ConnectionSpec): Prisma.Sql {
  const a = `t${env.aliases++}`;
  const cols = new Set<string>([spec.order]);
  const ord = raw(`${a}.${spec.order}`);
  const inPage = raw(`${a}.rn_ <= ${spec.limit}`);
  const more = raw(`count(*) > ${spec.limit}`);
  const connType = typeOf(f);
  const pairs = collect(env, connType, f.node.selectionSet).map((c): [string, Prisma.Sql] => {
    if (!c.def) return [c.key, literal(connType.name)];
    const name = c.def.name;
    if (name === 'edges') {
      const edgeType = typeOf(c);
      const edge = object(
        collect(env, edgeType, c.node.selectionSet).map((e): [string, Prisma.Sql] => {
          if (!e.def) return [e.key, literal(edgeType.name)];
          if (e.def.name === 'cursor') return [e.key, spec.cursor(ord)];
          if (e.def.name === 'node') return [e.key, entity(env, typeOf(e), e.node.selectionSet, a, cols)];
          return unsupported('edge field');
        }),
      );
      return [c.key, Prisma.sql`coalesce(json_agg(${edge} ORDER BY ${raw(`${a}.rn_`)}) FILTER (WHERE ${inPage}), '[]'::json)`];
    }
    if (name === 'pageInfo') {
      const infoType = typeOf(c);
      const first = Prisma.sql`min(${ord}) FILTER (WHERE ${inPage})`;
      const last = Prisma.sql`max(${ord}) FILTER (WHERE ${inPage})`;
      return [
        c.key,
        object(
          collect(env, infoType, c.node.selectionSet).map((i): [string, Prisma.Sql] => {
            if (!i.def) return [i.key, literal(infoType.name)];
            if (i.def.name === 'hasNextPage') return [i.key, more];
            if (i.def.name === 'hasPreviousPage') return [i.key, spec.hasPreviousPage];
            if (i.def.name === 'startCursor') return [i.key, spec.startCursor(first)];
            if (i.def.name === 'endCursor') return [i.key, spec.endCursor(last, more)];
            return unsupported('page info field');
          }),
        ),
      ];
    }
    if (name === 'totalCount') {
      const t = `t${env.aliases++}`;
      return [c.key, Prisma.sql`(SELECT count(*)::int FROM ${spec.from(t)} WHERE ${spec.totalWhere(t)})`];
    }
    return unsupported('connection field');
  });
  const body = object(pairs);
  // HAVING makes it one group even over no rows (a selection with no aggregate, `{ totalCount }`,
  // would otherwise make an empty page a null connection).
  const select = raw([...cols].map((c) => `${a}.${c}`).join(', '));
  return Prisma.sql`(SELECT ${body} FROM (
    SELECT ${select}, row_number() OVER (ORDER BY ${ord}) AS rn_ FROM ${spec.from(a)}
    WHERE ${spec.where(a)} ORDER BY ${ord} LIMIT ${raw(String(spec.limit + 1))}) ${raw(a)} HAVING true)`;
}
