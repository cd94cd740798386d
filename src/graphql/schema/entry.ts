import type { GraphQLResolveInfo } from 'graphql';
import { locateVolume } from '../../domain/access/authorize.js';
import { getEntry } from '../../domain/entries/entries.js';
import {
  decodePathCursor,
  type EntriesPage,
  encodePathCursor,
  entryBodies,
  listDirectory,
  listEntriesOfVolumes,
} from '../../domain/entries/listing.js';
import { ENTRY_KINDS } from '../../domain/entries/rules.js';
import { DEFAULT_EXPIRES_IN, downloadUrl } from '../../domain/entries/uploads.js';
import { NotFoundError, ValidationError } from '../../domain/shared/errors.js';
import { DEFAULT_LIMIT, MAX_LIMIT } from '../../domain/shared/pagination.js';
import { routeOfVolume } from '../../domain/shared/routes.js';
import { type Entry as EntryRow, Prisma, type Volume as VolumeRow } from '../../generated/prisma/client.js';

import { builder } from '../builder.js';
import type { GraphQLContext } from '../context.js';
import { loaderOf, selectedFields, selectsField } from '../loaders.js';
import { StreamingUpload, type UploadValue } from '../uploads.js';
import { Volume } from './volume.js';

export const EntryKind = builder.enumType('EntryKind', { values: ENTRY_KINDS });

builder.scalarType('File', {
  description: 'A file of a multipart request (graphql-multipart-request-spec). Input only.',
  serialize: () => {
    throw new Error('File is an input-only scalar');
  },
  // Only a file part of a multipart request is a File: any other value (a string in a JSON request)
  // is refused as the variable's input error, before a resolver sees it.
  parseValue: (value) => {
    if (value instanceof StreamingUpload || value instanceof File) return value as UploadValue;
    throw new TypeError('File must be a file part of a multipart request (graphql-multipart-request-spec)');
  },
});

export const Entry = builder.prismaObject('Entry', {
  description: 'A path-addressed item of a volume: JSON content, text, or a file whose bytes live in the blob store.',
  fields: (t) => ({
    id: t.exposeID('id'),
    volumeId: t.exposeID('volumeId'),
    path: t.exposeString('path'),
    contentType: t.field({ type: EntryKind, resolve: (e) => e.contentType as (typeof ENTRY_KINDS)[number] }),
    // Listings load rows without their bodies; a query that asks for them gets them in one batch.
    content: t.field({ type: 'JSON', nullable: true, resolve: async (e, _args, ctx) => (await bodyOf(ctx, e)).content }),
    contentText: t.string({ nullable: true, resolve: async (e, _args, ctx) => (await bodyOf(ctx, e)).contentText }),
    mimeType: t.exposeString('mimeType', { nullable: true }),
    sizeBytes: t.expose('sizeBytes', { type: 'SafeInt' }),
    schemaId: t.exposeString('schemaId', { nullable: true }),
    sha256: t.exposeString('sha256', { nullable: true }),
    version: t.exposeInt('version', { description: 'Increments on every change; pass it as expectedVersion' }),
    isIndexed: t.exposeBoolean('isIndexed'),
    indexedAt: t.expose('indexedAt', { type: 'DateTime', nullable: true }),
    totalChunks: t.exposeInt('totalChunks'),
    indexError: t.exposeString('indexError', { nullable: true, description: 'Why indexing last failed (null once it succeeds)' }),
    ttlSeconds: t.exposeInt('ttlSeconds', { nullable: true }),
    expiresAt: t.expose('expiresAt', { type: 'DateTime', nullable: true }),
    writtenByAppId: t.exposeString('writtenByAppId', { nullable: true }),
    writtenByExecutionId: t.exposeString('writtenByExecutionId', { nullable: true }),
    tags: t.exposeStringList('tags'),
    metadata: t.expose('metadata', { type: 'JSON' }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    updatedAt: t.expose('updatedAt', { type: 'DateTime' }),
    volume: t.relation('volume'),
    downloadUrl: t.string({
      nullable: true,
      description: 'A URL a plain HTTP client can fetch the file from until it expires (file entries only; null otherwise).',
      args: { expiresIn: t.arg.int({ defaultValue: DEFAULT_EXPIRES_IN, description: '60 to 604800 seconds' }) },
      // The entry was reached through a resolver that checked read access to its path.
      resolve: async (e, args, ctx) => {
        if (e.contentType !== 'file') return null;
        const file = { ...e, content: (await bodyOf(ctx, e)).content };
        return downloadUrl(ctx.runtime, await locateVolume(ctx.runtime, e.volumeId), file, args.expiresIn ?? DEFAULT_EXPIRES_IN, [
          'expiresIn',
        ]);
      },
    }),
  }),
});

/** The entry's body, from the row when it was loaded with it, else batched by id. */
function bodyOf(ctx: GraphQLContext, e: Pick<EntryRow, 'id'> & Partial<Pick<EntryRow, 'content' | 'contentText'>>) {
  if (e.content !== undefined && e.contentText !== undefined) return { content: e.content, contentText: e.contentText };
  return loaderOf(ctx, 'entryBodies', (ids: readonly string[]) => entryBodies(ctx.runtime, ids)).load(e.id);
}

type ListedVolume = Pick<VolumeRow, 'id' | 'orgId' | 'deletedAt'>;

/**
 * The Entry columns each Entry field reads, for listings that load only what the query selects:
 * exposed fields read their own column; the bodies come through `bodyOf` (a batch by id), and
 * `volume` is a relation loaded by id. A field missing here makes the listing load every column.
 */
const ENTRY_COLUMNS = new Set<string>(Object.values(Prisma.EntryScalarFieldEnum));
const ENTRY_FIELD_COLUMNS: Record<string, readonly string[]> = {
  __typename: [],
  content: [],
  contentText: [],
  volume: ['volumeId'],
  downloadUrl: ['contentType', 'blobKey', 'mimeType'],
};

/**
 * The entry columns a listing's query reads under `edges.node`, or undefined (every column) when it
 * selects a field this module does not map.
 */
function selectedColumns(info: GraphQLResolveInfo): string[] | undefined {
  const columns = new Set<string>();
  for (const name of selectedFields(info, ['edges', 'node'])) {
    const mapped = ENTRY_FIELD_COLUMNS[name] ?? (ENTRY_COLUMNS.has(name) ? [name] : undefined);
    if (!mapped) return undefined;
    for (const c of mapped) columns.add(c);
  }
  return [...columns].sort();
}

/**
 * Forward paging arguments as the domain's limit and cursor, refused (and named as the client wrote
 * them) when out of range or not issued by this API. Backward paging is not offered.
 */
export function pageOf(args: { first?: number | null; after?: string | null; last?: number | null; before?: string | null }) {
  if (args.last != null || args.before != null) {
    const field = args.last != null ? 'last' : 'before';
    throw ValidationError.field([field], 'Only forward paging (first/after) is supported', args[field]);
  }
  const limit = args.first ?? DEFAULT_LIMIT;
  if (limit < 1 || limit > MAX_LIMIT) {
    throw ValidationError.field(['first'], `first must be from 1 to ${MAX_LIMIT}`, limit, 'limit_invalid');
  }
  if (args.after) decodePathCursor(args.after, ['after']);
  return { limit, ...(args.after ? { cursor: args.after } : {}) };
}

const Directory = builder
  .objectRef<{ path: string; directories: string[]; entries: unknown[]; hasMore: boolean; nextCursor: string | null }>('Directory')
  .implement({
    description: 'Sub-directories and entries directly under a path.',
    fields: (t) => ({
      path: t.exposeString('path'),
      directories: t.exposeStringList('directories', { description: 'Full paths ending in /, ready to list next' }),
      entries: t.field({ type: [Entry], resolve: (d) => d.entries as never }),
      hasMore: t.exposeBoolean('hasMore'),
      nextCursor: t.exposeString('nextCursor', { nullable: true }),
    }),
  });

builder.objectFields(Volume, (t) => ({
  entry: t.field({
    type: Entry,
    nullable: true,
    description: 'The live entry at a path, or null (absent, expired, or not readable by the caller).',
    args: { path: t.arg.string({ required: true }) },
    resolve: async (v, args, ctx) => {
      if (!ctx.principal) return null;
      try {
        return await getEntry(ctx.runtime, ctx.principal, routeOfVolume(v), args.path, ['path']);
      } catch (err) {
        if (err instanceof NotFoundError) return null;
        throw err;
      }
    },
  }),
  entries: t.connection(
    {
      type: Entry,
      description: 'Entries under a prefix (the whole tree), by path; filter by tags (all of them) and kind.',
      args: {
        prefix: t.arg.string(),
        tags: t.arg.stringList(),
        contentType: t.arg({ type: EntryKind }),
      },
      // Batched across every volume of the request: one statement for all the pages (and one for
      // their totals, only when totalCount is selected), whatever the number of volumes.
      resolve: async (v, args, ctx, info) => {
        if (!ctx.principal)
          return { edges: [], pageInfo: { hasNextPage: false, hasPreviousPage: false, startCursor: null, endCursor: null } };
        const p = ctx.principal;
        const filters = {
          ...(args.prefix ? { prefix: args.prefix } : {}),
          ...(args.tags ? { tags: args.tags } : {}),
          ...(args.contentType ? { content_type: args.contentType } : {}),
          ...pageOf(args),
        };
        const total = selectsField(info, 'totalCount');
        const fields = selectedColumns(info);
        const batch = (volumes: readonly ListedVolume[]) => listEntriesOfVolumes(ctx.runtime, p, volumes, filters, [], { total, fields });
        const page = await loaderOf<ListedVolume, EntriesPage, string>(
          ctx,
          `entries:${JSON.stringify([filters, total, fields])}`,
          batch,
          (vol) => vol.id,
        ).load(v);
        return {
          totalCount: page.total,
          // Cursors are encoded only when asked for.
          edges: page.entries.map((e) => ({
            node: e,
            get cursor() {
              return encodePathCursor(e.path);
            },
          })),
          pageInfo: {
            hasNextPage: page.hasMore,
            hasPreviousPage: Boolean(args.after),
            startCursor: null,
            endCursor: page.nextCursor,
          },
        };
      },
    },
    { fields: (c) => ({ totalCount: c.int({ resolve: (conn) => (conn as { totalCount?: number }).totalCount ?? 0 }) }) },
  ),
  directory: t.field({
    type: Directory,
    description: 'A directory view: sub-directories and the entries directly under `path` (default /).',
    args: { path: t.arg.string(), first: t.arg.int(), after: t.arg.string() },
    resolve: async (v, args, ctx) =>
      listDirectory(ctx.runtime, ctx.principal!, routeOfVolume(v), { path: args.path ?? undefined, ...pageOf(args) }, [], {
        bodies: false,
      }),
  }),
}));
