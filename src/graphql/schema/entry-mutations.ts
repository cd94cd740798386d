import { selectedRow } from '../selected-row.js';
// Entry writes: JSON/text, uploads (multipart, streamed), deletes and moves, with versions and lock guards.

import { locateVolume } from '../../domain/access/authorize.js';
import { MAX_BATCH_ENTRIES, writeEntries } from '../../domain/entries/batch.js';
import { deleteEntry, moveEntry, writeEntry } from '../../domain/entries/entries.js';
import { uploadEntry } from '../../domain/entries/uploads.js';
import type { WriteGuard } from '../../domain/locks/locks.js';
import { builder, Deleted } from '../builder.js';
import { toDomainInput } from '../inputs.js';
import { openUpload, type UploadValue } from '../uploads.js';
import { EntryKind } from './entry.js';

export const FencingInput = builder.inputType('FencingInput', {
  description: 'The fencing token a lock acquisition issued, for the partition it was issued on.',
  fields: (t) => ({ partition: t.string({ required: true }), token: t.int({ required: true }) }),
});

/** The lock guard a GraphQL writer states (lockId, fencing), as the domain takes it. */
export function guardOf(args: { lockId?: string | number | null; fencing?: { partition: string; token: number } | null }): WriteGuard {
  return {
    ...(args.lockId ? { lockId: String(args.lockId) } : {}),
    ...(args.fencing ? { fencing: { partition: args.fencing.partition, token: args.fencing.token } } : {}),
  };
}

type InputFields = Parameters<NonNullable<Parameters<typeof builder.inputType>[1]['fields']>>[0];

/** What a JSON/text write stores (the domain's WriteEntryInput): writeEntry's input, and each entry of a batch. */
const entryBodyFields = (t: InputFields) => ({
  content: t.field({ type: 'JSON', description: 'JSON content' }),
  contentText: t.string(),
  contentType: t.field({ type: EntryKind, description: 'json (default with content) or text' }),
  mimeType: t.string(),
  schemaId: t.string(),
  tags: t.stringList(),
  metadata: t.field({ type: 'JSON' }),
  ttlSeconds: t.int(),
  executionId: t.string(),
});

const WriteEntryInput = builder.inputType('WriteEntryInput', { fields: (t) => entryBodyFields(t) });

const WriteEntriesItem = builder.inputType('WriteEntriesItem', {
  description: 'One entry of a batch write: its path, a writeEntry input, and its own preconditions.',
  fields: (t) => ({
    path: t.string({ required: true }),
    ...entryBodyFields(t),
    expectedVersion: t.int({ description: 'Write only if the entry is at this version (CONFLICT otherwise)' }),
    createOnly: t.boolean({ description: 'Write only if nothing exists at the path (CONFLICT otherwise)' }),
  }),
});

const WriteEntriesPayload = builder.objectRef<{ ids: string[]; created: number; updated: number }>('WriteEntriesPayload').implement({
  fields: (t) => ({
    created: t.exposeInt('created', { description: 'Entries the batch created' }),
    updated: t.exposeInt('updated', { description: 'Entries the batch replaced' }),
    entries: t.prismaField({
      type: ['Entry'],
      description: 'The written entries, in the order they were given (one statement)',
      resolve: async (query, r, _args, ctx) => {
        const rows = await ctx.runtime.db.entry.findMany({ ...query, where: { id: { in: r.ids } } });
        const byId = new Map(rows.map((e) => [e.id, e]));
        return r.ids.flatMap((id) => byId.get(id) ?? []);
      },
    }),
  }),
});

const WriteEntryPayload = builder.objectRef<{ entryId: string; created: boolean }>('WriteEntryPayload').implement({
  fields: (t) => ({
    created: t.exposeBoolean('created', { description: 'false when an existing entry was replaced' }),
    entry: t.prismaField({
      type: 'Entry',
      resolve: (query, p, _args, ctx) => ctx.runtime.db.entry.findUniqueOrThrow({ ...query, where: { id: p.entryId } }),
    }),
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
          ctx.runtime,
          ctx.principal,
          await locateVolume(ctx.runtime, String(args.volumeId)),
          args.path,
          toDomainInput(args.input),
          { ifMatch: args.expectedVersion ?? undefined, ifNoneMatch: args.createOnly ?? false, ...guardOf(args) },
          { path: ['path'], body: ['input'] },
        );
        return { entryId: entry.id, created };
      },
    }),
    writeEntries: t.field({
      type: WriteEntriesPayload,
      description: `Creates or replaces up to ${MAX_BATCH_ENTRIES} JSON/text entries of one volume in one transaction: all of them, or none (the first refusal names its entries[i]). Each is checked as writeEntry checks one; lockId and fencing apply to every entry.`,
      args: {
        volumeId: t.arg.id({ required: true }),
        entries: t.arg({ type: [WriteEntriesItem], required: true }),
        ...guardArgs,
      },
      resolve: async (_root, args, ctx) => {
        const written = await writeEntries(
          ctx.runtime,
          ctx.principal,
          await locateVolume(ctx.runtime, String(args.volumeId)),
          { entries: args.entries.map((e) => toDomainInput(e)) },
          guardOf(args),
          [],
        );
        return { ids: written.entries.map((e) => e.id), created: written.created, updated: written.updated };
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
          ctx.runtime,
          ctx.principal,
          await locateVolume(ctx.runtime, String(args.volumeId)),
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
          ctx.runtime,
          ctx.principal,
          await locateVolume(ctx.runtime, String(args.volumeId)),
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
        const route = await locateVolume(ctx.runtime, String(args.volumeId));
        const options = { overwrite: args.overwrite ?? false, ifMatch: args.expectedVersion ?? undefined, ...guardOf(args) };
        return selectedRow(ctx, 'Entry', query, moveEntry(ctx.runtime, ctx.principal, route, args.from, args.to, options));
      },
    }),
  };
});
