import { type DocumentNode, GraphQLError, Kind, type Source, visit } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import { inputProblem, textProblem } from '../domain/shared/input-policy.js';

// The input policy (src/domain/input-policy.ts) at the GraphQL edge, for HTTP and WebSocket alike
// (both run through yoga's envelop): a document nested deeper than MAX_DOCUMENT_NESTING is refused
// before the parser sees it (graphql-js parses recursively: 2,000 nested selections overflowed its
// stack), string literals and variables are well-formed Unicode without NUL, and variables are at
// most MAX_JSON_DEPTH deep. Refusals are request errors: BAD_USER_INPUT, 400 for
// application/graphql-response+json.

/** Deepest nesting of `{`, `(` and `[` in a document. Far above any real query (the depth limit is 12 fields). */
export const MAX_DOCUMENT_NESTING = 128;

const requestError = (message: string, extra: { nodes?: GraphQLError['nodes']; code?: string } = {}) =>
  new GraphQLError(message, {
    ...(extra.nodes ? { nodes: extra.nodes } : {}),
    extensions: { code: extra.code ?? 'BAD_USER_INPUT', http: { status: 400, spec: true } },
  });

/** Nesting depth of a GraphQL source outside strings and comments (linear, no recursion). */
function nestingOf(text: string): number {
  let depth = 0;
  let max = 0;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (ch === '#') {
      while (i < text.length && text[i] !== '\n' && text[i] !== '\r') i++;
    } else if (ch === '"') {
      const block = text.startsWith('"""', i);
      i += block ? 3 : 1;
      while (i < text.length) {
        if (text[i] === '\\') i += 2;
        else if (block ? text.startsWith('"""', i) : text[i] === '"') break;
        else if (!block && (text[i] === '\n' || text[i] === '\r')) break;
        else i++;
      }
      if (block) i += 2;
    } else if (ch === '{' || ch === '(' || ch === '[') {
      depth++;
      if (depth > max) max = depth;
    } else if (ch === '}' || ch === ')' || ch === ']') {
      depth = Math.max(0, depth - 1);
    }
  }
  return max;
}

/** The first string literal the policy refuses. */
function literalProblem(doc: DocumentNode): GraphQLError | undefined {
  let found: GraphQLError | undefined;
  visit(doc, {
    [Kind.STRING]: (node) => {
      const problem = found ? undefined : textProblem(node.value);
      if (problem) found = requestError(`String literal ${problem.msg}`, { nodes: [node] });
    },
  });
  return found;
}

/** graphql-js' own wording for a bad variable, with the policy's reason. */
function variablesProblem(variables: Record<string, unknown> | null | undefined): GraphQLError | undefined {
  const problem = inputProblem(variables ?? {}, []);
  if (!problem) return undefined;
  const [name, ...rest] = problem.loc.map(String);
  const at = rest.length > 0 ? ` at "${[name, ...rest].join('.')}"` : '';
  return requestError(`Variable "$${name}" got invalid value${at}; ${problem.msg}`);
}

export function useInputPolicy(): Plugin {
  return {
    onParse({ params }) {
      const text = typeof params.source === 'string' ? params.source : (params.source as Source).body;
      if (nestingOf(text) > MAX_DOCUMENT_NESTING) {
        throw requestError(`Document is nested deeper than ${MAX_DOCUMENT_NESTING} levels`, { code: 'QUERY_TOO_COMPLEX' });
      }
      return ({ result }) => {
        if (result && !(result instanceof Error)) {
          const problem = literalProblem(result as DocumentNode);
          if (problem) throw problem;
        }
      };
    },
    onExecute({ args, setResultAndStopExecution }) {
      const problem = variablesProblem(args.variableValues as Record<string, unknown> | undefined);
      if (problem) setResultAndStopExecution({ errors: [problem] });
    },
    onSubscribe({ args, setResultAndStopExecution }) {
      const problem = variablesProblem(args.variableValues as Record<string, unknown> | undefined);
      if (problem) setResultAndStopExecution({ errors: [problem] });
    },
  };
}
