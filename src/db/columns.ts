import { Prisma } from '../generated/prisma/client.js';

/**
 * A raw-SQL select list that yields rows shaped like Prisma's model (`size_bytes AS "sizeBytes"`),
 * so a hand-written statement can return what a Prisma query would. Field names come from the
 * generated `…ScalarFieldEnum`, never from input. Assumes the schema's one mapping convention:
 * camelCase fields over snake_case columns.
 */
export function modelColumns(fields: readonly string[], table: string): Prisma.Sql {
  return Prisma.raw(fields.map((f) => `${table}.${f.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)} AS "${f}"`).join(', '));
}
