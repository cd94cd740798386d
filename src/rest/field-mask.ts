import { z } from 'zod';
import { ValidationError } from '../domain/shared/errors.js';

/**
 * Field masks (`?fields=name,created_at`): a response, or each item of a list, keeps only the
 * fields named; list envelopes (total, has_more, next_cursor) stay whole. A REST concern only:
 * GraphQL clients select fields themselves.
 */
const FieldsText = z.string().max(2000);

/** The `fields` query parameter of a route answering `schema` objects (documented with its names). */
export function fieldsParam(schema: z.ZodObject) {
  return z
    .union([FieldsText, z.array(FieldsText)])
    .optional()
    .describe(`Comma-separated field mask: only these fields are returned. Any of: ${Object.keys(schema.shape).join(', ')}`);
}

export type FieldMask = ReadonlySet<string> | null;

/**
 * Parses a field mask against the fields `schema` has.
 * @throws ValidationError (loc query.fields) naming each unknown field, or when no field is named
 */
export function parseFieldMask(value: string | string[] | undefined, schema: z.ZodObject): FieldMask {
  if (value === undefined) return null;
  const loc = ['query', 'fields'];
  const text = Array.isArray(value) ? value.join(',') : value;
  const allowed = Object.keys(schema.shape);
  const requested = text
    .split(',')
    .map((f) => f.trim())
    .filter(Boolean);
  if (requested.length === 0) throw ValidationError.field(loc, 'fields must name at least one field', text, 'missing');
  const unknown = [...new Set(requested.filter((f) => !allowed.includes(f)))];
  if (unknown.length > 0) {
    throw new ValidationError(
      unknown.map((field) => ({
        loc,
        msg: `Unknown field '${field}'; fields may name: ${allowed.join(', ')}`,
        type: 'field_unknown',
        input: text,
        ctx: { field, allowed },
      })),
    );
  }
  return new Set(requested);
}

/** `obj` with only the masked fields, in their usual order (all of them without a mask). */
export function masked<T extends object>(obj: T, mask: FieldMask): T {
  if (!mask) return obj;
  return Object.fromEntries(Object.entries(obj).filter(([k]) => mask.has(k))) as T;
}
