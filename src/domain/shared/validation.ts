import type { z } from 'zod';
import { type FieldIssue, ValidationError } from './errors.js';
import { assertAcceptableInput } from './input-policy.js';
import type { Loc } from './routes.js';

const typeNames: Record<string, [type: string, msg: string]> = {
  string: ['string_type', 'Input should be a valid string'],
  number: ['int_parsing', 'Input should be a valid integer'],
  int: ['int_type', 'Input should be a valid integer'],
  boolean: ['bool_type', 'Input should be a valid boolean'],
  array: ['list_type', 'Input should be a valid list'],
  object: ['dict_type', 'Input should be a valid dictionary'],
};

function quoteList(values: readonly unknown[]): string {
  const q = values.map((v) => `'${String(v)}'`);
  return q.length <= 1 ? (q[0] ?? '') : `${q.slice(0, -1).join(', ')} or ${q.at(-1)}`;
}

function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let cur = input;
  for (const key of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[key];
  }
  return cur;
}

/**
 * Turns zod issues into the legacy API's pydantic-style 422 items: `type` and `msg` follow the
 * pydantic wording legacy clients already parse (missing, string_too_long, less_than_equal, enum…).
 */
export function toFieldIssues(error: z.ZodError, input: unknown, prefix: Loc): FieldIssue[] {
  return error.issues.map((issue): FieldIssue => {
    const path = issue.path as PropertyKey[];
    const loc = [...prefix, ...path.map((p) => (typeof p === 'number' ? p : String(p)))];
    const value = valueAt(input, path);
    switch (issue.code) {
      case 'invalid_type': {
        if (value === undefined) return { loc, msg: 'Field required', type: 'missing', input: null };
        const [type, msg] = typeNames[issue.expected] ?? ['type_error', issue.message];
        return { loc, msg, type, input: value };
      }
      case 'too_big': {
        const max = Number(issue.maximum);
        if (issue.origin === 'string')
          return {
            loc,
            msg: `String should have at most ${max} characters`,
            type: 'string_too_long',
            input: value,
            ctx: { max_length: max },
          };
        if (issue.origin === 'array' || issue.origin === 'set')
          return {
            loc,
            msg: `List should have at most ${max} items after validation`,
            type: 'too_long',
            input: value,
            ctx: { max_length: max },
          };
        return issue.inclusive
          ? { loc, msg: `Input should be less than or equal to ${max}`, type: 'less_than_equal', input: value, ctx: { le: max } }
          : { loc, msg: `Input should be less than ${max}`, type: 'less_than', input: value, ctx: { lt: max } };
      }
      case 'too_small': {
        const min = Number(issue.minimum);
        if (issue.origin === 'string')
          return min <= 1
            ? { loc, msg: 'String should have at least 1 character', type: 'string_too_short', input: value, ctx: { min_length: min } }
            : {
                loc,
                msg: `String should have at least ${min} characters`,
                type: 'string_too_short',
                input: value,
                ctx: { min_length: min },
              };
        if (issue.origin === 'array' || issue.origin === 'set')
          return {
            loc,
            msg: `List should have at least ${min} items after validation`,
            type: 'too_short',
            input: value,
            ctx: { min_length: min },
          };
        return issue.inclusive
          ? { loc, msg: `Input should be greater than or equal to ${min}`, type: 'greater_than_equal', input: value, ctx: { ge: min } }
          : { loc, msg: `Input should be greater than ${min}`, type: 'greater_than', input: value, ctx: { gt: min } };
      }
      case 'invalid_value': {
        const expected = quoteList(issue.values);
        return { loc, msg: `Input should be ${expected}`, type: 'enum', input: value, ctx: { expected } };
      }
      case 'invalid_format':
        return {
          loc,
          msg: issue.message,
          type: 'string_pattern_mismatch',
          input: value,
          ...(issue.pattern ? { ctx: { pattern: issue.pattern } } : {}),
        };
      case 'unrecognized_keys':
        return { loc, msg: `Extra inputs are not permitted: ${issue.keys.join(', ')}`, type: 'extra_forbidden', input: value };
      default:
        return { loc, msg: issue.message, type: 'value_error', input: value ?? null };
    }
  });
}

/**
 * Validates `input` with a domain schema. The one entry point REST and GraphQL both use, so a rule
 * written in a schema holds for both.
 * @throws ValidationError naming each bad field, located under `prefix` (e.g. ['body'] or ['input'])
 */
export function parseInput<S extends z.ZodType>(schema: S, input: unknown, prefix: Loc = []): z.output<S> {
  // The input policy holds for everything the domain parses, whichever transport it came through.
  assertAcceptableInput(input, prefix);
  const result = schema.safeParse(input);
  if (!result.success) throw new ValidationError(toFieldIssues(result.error, input, prefix));
  return result.data;
}
