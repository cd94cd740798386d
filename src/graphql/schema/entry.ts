import { db } from '../../db/client.js';
import { deleteEntry, getEntry, moveEntry, openVolume, writeEntry } from '../../domain/entries.js';
import { decodePathCursor, listDirectory, listEntries } from '../../domain/entry-listing.js';
import { ENTRY_KINDS } from '../../domain/entry-rules.js';
import { NotFoundError, ValidationError } from '../../domain/errors.js';
import { type EntryChangedEvent, events } from '../../domain/events.js';
import type { WriteGuard } from '../../domain/locks.js';
import { DEFAULT_LIMIT, MAX_LIMIT } from '../../domain/pagination.js';
import { normaliseDirectory } from '../../domain/paths.js';
import { DEFAULT_EXPIRES_IN, downloadUrl, uploadEntry } from '../../domain/uploads.js';
import { volumeRoute } from '../../domain/volumes.js';
import { builder, Deleted } from '../builder.js';
import { toDomainInput } from '../inputs.js';
import { openUpload, type UploadValue } from '../uploads.js';
import { Volume } from './volume.js';

const EntryKind = builder.enumType('EntryKind', { values: ENTRY_KINDS });
const EntryChange = builder.enumType('EntryChange', { values: ['created', 'updated', 'moved', 'deleted'] as const });

builder.scalarType('File', {
  description: 'A file of a multipart request (graphql-multipart-request-spec). Input only.',
  serialize: () => {
    throw new Error('File is an input-only scalar');
  },
  parseValue: (value) => value as UploadValue,
});

const routeOf = volumeRoute;

export const Entry = builder.prismaObject('Entry', {
  description: 'A path-addressed item of a volume: JSON content, text, or a file whose bytes live in the blob store.',
  fields: (t) => ({
    id: t.exposeID('id'),
    volumeId: t.exposeID('volumeId'),
    path: t.exposeString('path'),
    contentType: t.field({ type: EntryKind, resolve: (e) => e.contentType as (typeof ENTRY_KINDS)[number] }),
    content: t.expose('content', { type: 'JSON', nullable: true }),
    contentText: t.exposeString('contentText', { nullable: true }),
    mimeType: t.exposeString('mimeType', { nullable: true }),
    sizeBytes: t.field({ type: 'SafeInt', resolve: (e) => Number(e.sizeBytes) }),
    schemaId: t.exposeString('schemaId', { nullable: true }),
    sha256: t.exposeString('sha256', { nullable: true }),
    version: t.exposeInt('version', { description: 'Increments on every change; pass it as expectedVersion' }),
    isIndexed: t.exposeBoolean('isIndexed'),
    indexedAt: t.expose('indexedAt', { type: 'DateTime', nullable: true }),
    totalChunks: t.exposeInt('totalChunks'),
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
      resolve: async (e, args) =>
        e.contentType === 'file' ? downloadUrl(await routeOf(e.volumeId), e, args.expiresIn ?? DEFAULT_EXPIRES_IN, ['expiresIn']) : null,
    }),
  }),
});

/**
 * Forward paging arguments as the domain's limit and cursor, refused (and named as the client wrote
 * them) when out of range or not issued by this API. Backward paging is not offered.
 */
function pageOf(args: { first?: number | null; after?: string | null; last?: number | null; before?: string | null }) {
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
        return await getEntry(ctx.principal, { orgId: v.orgId, workspaceId: v.workspaceId, volumeId: v.id }, args.path, ['path']);
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
      resolve: async (v, args, ctx) => {
        if (!ctx.principal)
          return { edges: [], pageInfo: { hasNextPage: false, hasPreviousPage: false, startCursor: null, endCursor: null } };
        const page = await listEntries(
          ctx.principal,
          { orgId: v.orgId, workspaceId: v.workspaceId, volumeId: v.id },
          {
            ...(args.prefix ? { prefix: args.prefix } : {}),
            ...(args.tags ? { tags: args.tags } : {}),
            ...(args.contentType ? { content_type: args.contentType } : {}),
            ...pageOf(args),
          },
        );
        return {
          totalCount: page.total,
          edges: page.entries.map((e) => ({ node: e, cursor: Buffer.from(JSON.stringify({ v: 1, p: e.path })).toString('base64url') })),
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
      listDirectory(
        ctx.principal!,
        { orgId: v.orgId, workspaceId: v.workspaceId, volumeId: v.id },
        { path: args.path ?? undefined, ...pageOf(args) },
        [],
      ),
  }),
}));

const FencingInput = builder.inputType('FencingInput', {
  description: 'The fencing token a lock acquisition issued, for the partition it was issued on.',
  fields: (t) => ({ partition: t.string({ required: true }), token: t.int({ required: true }) }),
});

/** The lock guard a GraphQL writer states (lockId, fencing), as the domain takes it. */
function guardOf(args: { lockId?: string | number | null; fencing?: { partition: string; token: number } | null }): WriteGuard {
  return {
    ...(args.lockId ? { lockId: String(args.lockId) } : {}),
    ...(args.fencing ? { fencing: { partition: args.fencing.partition, token: args.fencing.token } } : {}),
  };
}

const WriteEntryInput = builder.inputType('WriteEntryInput', {
  fields: (t) => ({
    content: t.field({ type: 'JSON', description: 'JSON content' }),
    contentText: t.string(),
    contentType: t.field({ type: EntryKind, description: 'json (default with content) or text' }),
    mimeType: t.string(),
    schemaId: t.string(),
    tags: t.stringList(),
    metadata: t.field({ type: 'JSON' }),
    ttlSeconds: t.int(),
    executionId: t.string(),
  }),
});

const WriteEntryPayload = builder.objectRef<{ entryId: string; created: boolean }>('WriteEntryPayload').implement({
  fields: (t) => ({
    created: t.exposeBoolean('created', { description: 'false when an existing entry was replaced' }),
    entry: t.prismaField({ type: 'Entry', resolve: (query, p) => db.entry.findUniqueOrThrow({ ...query, where: { id: p.entryId } }) }),
  }),
});

builder.mutationFields((base) => {
  const t = base.withAuth({ authenticated: true });
  const guardArgs = {
    lockId: t.arg.id({ description: 'The exclusive path lock you hold over this path (writes under it by others are LOCKED)' }),
    fencing: t.arg({ type: FencingInput, description: 'Refused (CONFLICT) when a newer token was issued for the partition' }),
  };
  const preconditionArgs = {
    expectedVersion: t.arg.int({ description: 'Write only if the entry is at this version (409 otherwise)' }),
    createOnly: t.arg.boolean({ description: 'Write only if nothing exists at the path (409 otherwise)' }),
  };
  return {
    writeEntry: t.field({
      type: WriteEntryPayload,
      description: 'Creates or replaces a JSON/text entry.',
      args: {
        volumeId: t.arg.id({ required: true }),
        path: t.arg.string({ required: true }),
        input: t.arg({ type: WriteEntryInput, required: true }),
        ...preconditionArgs,
        ...guardArgs,
      },
      resolve: async (_root, args, ctx) => {
        const { entry, created } = await writeEntry(
          ctx.principal,
          await routeOf(String(args.volumeId)),
          args.path,
          toDomainInput(args.input),
          { ifMatch: args.expectedVersion ?? undefined, ifNoneMatch: args.createOnly ?? false, ...guardOf(args) },
          { path: ['path'], body: ['input'] },
        );
        return { entryId: entry.id, created };
      },
    }),
    uploadEntry: t.field({
      type: WriteEntryPayload,
      description: 'Uploads a file (multipart request); streamed to the blob store.',
      args: {
        volumeId: t.arg.id({ required: true }),
        path: t.arg.string({ required: true }),
        file: t.arg({ type: 'File', required: true }),
        mimeType: t.arg.string(),
        schemaId: t.arg.string(),
        tags: t.arg.stringList(),
        metadata: t.arg({ type: 'JSON' }),
        ttlSeconds: t.arg.int(),
        executionId: t.arg.string(),
        ...preconditionArgs,
        ...guardArgs,
      },
      resolve: async (_root, args, ctx) => {
        const file = await openUpload(args.file as UploadValue);
        const fields = toDomainInput({
          mimeType: args.mimeType,
          schemaId: args.schemaId,
          tags: args.tags,
          metadata: args.metadata,
          ttlSeconds: args.ttlSeconds,
          executionId: args.executionId,
        });
        const { entry, created } = await uploadEntry(
          ctx.principal,
          await routeOf(String(args.volumeId)),
          args.path,
          file,
          fields,
          {
            ifMatch: args.expectedVersion ?? undefined,
            ifNoneMatch: args.createOnly ?? false,
            ...guardOf(args),
          },
          { path: ['path'], body: [] },
        );
        return { entryId: entry.id, created };
      },
    }),
    deleteEntry: t.field({
      type: Deleted,
      args: {
        volumeId: t.arg.id({ required: true }),
        path: t.arg.string({ required: true }),
        expectedVersion: preconditionArgs.expectedVersion,
        ...guardArgs,
      },
      resolve: async (_root, args, ctx) => {
        const entry = await deleteEntry(
          ctx.principal,
          await routeOf(String(args.volumeId)),
          args.path,
          { ifMatch: args.expectedVersion ?? undefined, ...guardOf(args) },
          ['path'],
        );
        return { id: entry.id, message: 'Entry deleted successfully' };
      },
    }),
    moveEntry: t.prismaField({
      type: 'Entry',
      description: 'Renames an entry atomically; CONFLICT if the target exists unless overwrite.',
      args: {
        volumeId: t.arg.id({ required: true }),
        from: t.arg.string({ required: true }),
        to: t.arg.string({ required: true }),
        overwrite: t.arg.boolean({ defaultValue: false }),
        expectedVersion: preconditionArgs.expectedVersion,
        ...guardArgs,
      },
      resolve: async (query, _root, args, ctx) => {
        const moved = await moveEntry(ctx.principal, await routeOf(String(args.volumeId)), args.from, args.to, {
          overwrite: args.overwrite ?? false,
          ifMatch: args.expectedVersion ?? undefined,
          ...guardOf(args),
        });
        return db.entry.findUniqueOrThrow({ ...query, where: { id: moved.id } });
      },
    }),
  };
});

const EntryChangedEventRef = builder.objectRef<EntryChangedEvent>('EntryChangedEvent').implement({
  description: 'A change under a watched path. Ids and paths only: read the entry for its content.',
  fields: (t) => ({
    volumeId: t.exposeID('volumeId'),
    entryId: t.exposeID('entryId'),
    path: t.exposeString('path'),
    change: t.field({ type: EntryChange, resolve: (e) => e.change }),
    version: t.exposeInt('version', { nullable: true }),
    previousPath: t.exposeString('previousPath', { nullable: true }),
  }),
});

/**
 * An event as a subscriber whose view is `visible` (under its prefix and readable by it) sees it:
 * a move across the edge of the view is a creation or a deletion inside it, so no path outside the
 * view (another app's, or one the key may not read) ever reaches the subscriber.
 */
function eventInView(event: EntryChangedEvent, visible: (path: string | null) => boolean): EntryChangedEvent | null {
  const now = visible(event.path);
  if (event.change !== 'moved' || event.previousPath === null) return now ? event : null;
  const before = visible(event.previousPath);
  if (now && before) return event;
  if (now) return { ...event, change: 'created', previousPath: null };
  if (before) return { ...event, change: 'deleted', path: event.previousPath, version: null, previousPath: null };
  return null;
}

builder.subscriptionFields((base) => {
  const t = base.withAuth({ authenticated: true });
  return {
    entryChanged: t.field({
      type: EntryChangedEventRef,
      description:
        'Created, updated, moved and deleted entries under pathPrefix (default: the whole volume) that the caller can read, as they happen. ' +
        'A move into or out of that view arrives as created or deleted.',
      args: { volumeId: t.arg.id({ required: true }), pathPrefix: t.arg.string() },
      // Access is checked before the stream opens; each event is then filtered by the same rules.
      subscribe: async (_root, args, ctx) => {
        const route = await routeOf(String(args.volumeId));
        const { access } = await openVolume(ctx.principal, route, 'read');
        const prefix = normaliseDirectory(args.pathPrefix ?? undefined, ['pathPrefix']);
        const visible = (path: string | null) => typeof path === 'string' && path.startsWith(prefix) && access.canRead(path);
        const source = events.subscribe('entryChanged', route.volumeId);
        return (async function* () {
          try {
            for await (const event of source) {
              const view = eventInView(event, visible);
              if (view) yield view;
            }
          } finally {
            await source.return?.();
          }
        })();
      },
      resolve: (event) => event,
    }),
  };
});
