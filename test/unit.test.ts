import { GraphQLError } from 'graphql';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ConflictError, ValidationError } from '../src/domain/shared/errors.js';
import { decodeCursor, encodeCursor } from '../src/domain/shared/pagination.js';
import { matchesPattern, normalisePattern } from '../src/domain/shared/path-patterns.js';
import { parseInput } from '../src/domain/shared/validation.js';
import { maskError } from '../src/graphql/errors.js';
import { createLogger } from '../src/logger.js';

const quiet = createLogger('silent');

describe('path patterns', () => {
  it.each([
    ['', '/**'],
    ['**', '/**'],
    ['/', '/**'],
    ['notes/', '/notes/**'],
    ['/notes/*.md', '/notes/*.md'],
    ['/a/{b,c}/**', '/a/{b,c}/**'],
    ['/日本語/**', '/日本語/**'],
  ])('normalises %j to %j', (raw, pattern) => {
    expect(normalisePattern(raw)).toEqual({ ok: true, pattern });
  });

  it.each(['/../x', '/a/./b', '/a//b', '/a/\u0001', '!x', '/a/[b', `/${'x'.repeat(1024)}`])('refuses %j', (raw) => {
    expect(normalisePattern(raw).ok).toBe(false);
  });

  it('matches entry paths, dotfiles included, and never across segments with *', () => {
    expect(matchesPattern('/**', '/a/b/.hidden')).toBe(true);
    expect(matchesPattern('/notes/**', '/notes/2024/plan.md')).toBe(true);
    expect(matchesPattern('/notes/**', '/notesx/plan.md')).toBe(false);
    expect(matchesPattern('/notes/*.md', '/notes/a.md')).toBe(true);
    expect(matchesPattern('/notes/*.md', '/notes/sub/a.md')).toBe(false);
  });
});

describe('validation errors in the legacy shape', () => {
  const schema = z.object({
    name: z.string().min(1).max(3),
    n: z.number().int().min(1).max(200),
    mode: z.enum(['auto', 'manual']),
    tags: z.array(z.string()).max(1),
  });

  it('maps zod issues to pydantic-style type, msg and ctx', () => {
    let error: ValidationError | undefined;
    try {
      parseInput(schema, { name: 'long', n: 500, mode: 'x', tags: ['a', 'b'] }, ['body']);
    } catch (err) {
      error = err as ValidationError;
    }
    expect(error?.issues).toEqual([
      {
        loc: ['body', 'name'],
        msg: 'String should have at most 3 characters',
        type: 'string_too_long',
        input: 'long',
        ctx: { max_length: 3 },
      },
      { loc: ['body', 'n'], msg: 'Input should be less than or equal to 200', type: 'less_than_equal', input: 500, ctx: { le: 200 } },
      {
        loc: ['body', 'mode'],
        msg: "Input should be 'auto' or 'manual'",
        type: 'enum',
        input: 'x',
        ctx: { expected: "'auto' or 'manual'" },
      },
      {
        loc: ['body', 'tags'],
        msg: 'List should have at most 1 items after validation',
        type: 'too_long',
        input: ['a', 'b'],
        ctx: { max_length: 1 },
      },
    ]);
  });

  it('reports missing fields as missing with a null input', () => {
    expect(() => parseInput(schema, {}, ['body'])).toThrow(ValidationError);
    try {
      parseInput(schema, {}, ['body']);
    } catch (err) {
      expect((err as ValidationError).issues[0]).toEqual({ loc: ['body', 'name'], msg: 'Field required', type: 'missing', input: null });
    }
  });
});

describe('cursors', () => {
  it('round-trips and refuses anything it did not issue', () => {
    const id = '01a201e3-6af6-70ed-9d33-c110d357c6ad';
    expect(decodeCursor(encodeCursor(id))).toBe(id);
    for (const bad of ['', 'abc', Buffer.from('{"v":2,"id":"x"}').toString('base64url'), Buffer.from('[]').toString('base64url')]) {
      expect(() => decodeCursor(bad)).toThrow(ValidationError);
    }
  });
});

describe('GraphQL error masking', () => {
  it('keeps domain errors with a stable code and masks everything else', () => {
    const domain = maskError(
      quiet,
      new GraphQLError('x', { originalError: new ConflictError('taken', { field: 'name' }) }),
      'Unexpected error.',
    );
    expect(domain.message).toBe('taken');
    expect((domain as GraphQLError).extensions).toEqual({ code: 'CONFLICT', field: 'name' });

    const leaked = maskError(
      quiet,
      new GraphQLError('boom', { originalError: new Error('Invalid `prisma.volume.create()` invocation: secret internals') }),
      'Unexpected error.',
    );
    expect(leaked.message).toBe('Unexpected error.');
    expect((leaked as GraphQLError).extensions).toEqual({ code: 'INTERNAL_SERVER_ERROR' });
  });
});
