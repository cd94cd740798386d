import type PrismaTypes from '../generated/pothos-types.js';
import type { GraphQLContext } from './context.js';

// Mutations that answer with a row (createVolume, acquireLock, moveEntry…) resolve through here: the
// domain call does the write and every check, then the row is read once more with the selection
// Pothos planned from the client's query, so the nested fields it asked for (a volume's mounts, a
// lock's volume…) come in that one statement rather than one query each.

const DELEGATES = {
  ApiKey: 'apiKey',
  Backup: 'backup',
  Entry: 'entry',
  Lock: 'lock',
  Mount: 'mount',
  Volume: 'volume',
  Workspace: 'workspace',
} as const;

type Model = keyof typeof DELEGATES;

/** The row `written` names (by id), selected as the GraphQL `query` needs it. */
export async function selectedRow<M extends Model>(
  ctx: GraphQLContext,
  model: M,
  query: object,
  written: Promise<{ id: string }>,
): Promise<PrismaTypes[M]['Shape']> {
  const { id } = await written;
  const delegate = ctx.runtime.db[DELEGATES[model]] as unknown as { findUniqueOrThrow(args: object): Promise<PrismaTypes[M]['Shape']> };
  return delegate.findUniqueOrThrow({ ...query, where: { id } });
}
