import { type FieldIssue, ValidationError } from './errors.js';
import type { Loc } from './routes.js';

// One input policy for every transport, applied where input enters (REST bodies, query strings and
// path parameters, multipart fields, GraphQL variables and literals, and parseInput as the last
// line): structured input is at most MAX_JSON_DEPTH levels deep, and every string, keys included, is
// well-formed Unicode without NUL. Postgres cannot store NUL in text and refuses unpaired UTF-16
// surrogates in jsonb (they became 500s), or silently turns them into U+FFFD in text columns; deep
// nesting overflowed the stack of whatever walked it next. Refused as 422 / VALIDATION_FAILED naming
// the field, before anything is written.

/** Deepest nesting of arrays and objects accepted anywhere (entry content included). */
export const MAX_JSON_DEPTH = 64;

/** Why a string cannot be stored, or undefined when it can. */
export function textProblem(s: string): Pick<FieldIssue, 'msg' | 'type'> | undefined {
  if (s.includes('\u0000')) return { msg: 'must not contain NUL characters', type: 'string_nul' };
  if (!s.isWellFormed()) return { msg: 'must be well-formed Unicode (no unpaired surrogates)', type: 'string_unicode' };
  return undefined;
}

/**
 * The first thing in `value` this policy refuses, located under `prefix` (iterative, so however deep
 * the input, checking it never overflows the stack), or undefined when all is well.
 */
export function inputProblem(value: unknown, prefix: Loc): FieldIssue | undefined {
  const stack: { v: unknown; loc: Loc; depth: number }[] = [{ v: value, loc: prefix, depth: 0 }];
  while (stack.length > 0) {
    const { v, loc, depth } = stack.pop() as { v: unknown; loc: Loc; depth: number };
    if (typeof v === 'string') {
      const problem = textProblem(v);
      if (problem) return { loc, ...problem, input: v };
      continue;
    }
    if (v === null || typeof v !== 'object') continue;
    if (depth >= MAX_JSON_DEPTH) {
      return { loc, msg: `must not be nested deeper than ${MAX_JSON_DEPTH} levels`, type: 'json_too_deep', input: null };
    }
    if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push({ v: v[i], loc: [...loc, i], depth: depth + 1 });
      continue;
    }
    const entries = Object.entries(v as Record<string, unknown>);
    for (let i = entries.length - 1; i >= 0; i--) {
      const [key, child] = entries[i] as [string, unknown];
      const problem = textProblem(key);
      if (problem) return { loc: [...loc, key], ...problem, input: null, ctx: { in: 'key' } };
      stack.push({ v: child, loc: [...loc, key], depth: depth + 1 });
    }
  }
  return undefined;
}

/** @throws ValidationError naming the first field this policy refuses */
export function assertAcceptableInput(value: unknown, prefix: Loc): void {
  const problem = inputProblem(value, prefix);
  if (problem) throw new ValidationError([problem]);
}

/** The policy as a zod refinement, for values that reach a schema without passing the edge checks (REST path parameters). */
export function refuseBadText(value: string, ctx: { addIssue(issue: { code: 'custom'; message: string; input: unknown }): void }): void {
  const problem = textProblem(value);
  if (problem) ctx.addIssue({ code: 'custom', message: problem.msg, input: value });
}
