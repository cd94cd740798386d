import DataLoader from 'dataloader';
import type { FragmentDefinitionNode, GraphQLResolveInfo, SelectionSetNode } from 'graphql';
import type { GraphQLContext } from './context.js';

/**
 * The request's batch loader called `name` (made on first use): every `load` in one tick of the
 * resolvers becomes one call of `batch`, so a field resolved on N parents costs one query, not N.
 * No caching across ticks: a subscription's context lives long, and its later events must not see
 * rows loaded for its first one.
 */
export function loaderOf<K, V, C = K>(
  ctx: GraphQLContext,
  name: string,
  batch: (keys: readonly K[]) => Promise<(V | Error)[]>,
  cacheKeyFn?: (key: K) => C,
): DataLoader<K, V, C> {
  let loader = ctx.loaders.get(name) as DataLoader<K, V, C> | undefined;
  if (!loader) {
    loader = new DataLoader<K, V, C>(batch, { cache: false, ...(cacheKeyFn ? { cacheKeyFn } : {}) });
    ctx.loaders.set(name, loader);
  }
  return loader;
}

/** Whether the field being resolved selects `name` directly (through fragments too), e.g. `totalCount`. */
export function selectsField(info: GraphQLResolveInfo, name: string): boolean {
  return selectedFields(info).has(name);
}

/**
 * The names of the fields selected `path` below the field being resolved (through inline fragments
 * and fragment spreads): `selectedFields(info, ['edges', 'node'])` is what a connection's nodes select.
 * graphql-js hands every parent of a list the same field nodes, so it is worked out once per request.
 */
export function selectedFields(info: GraphQLResolveInfo, path: readonly string[] = []): ReadonlySet<string> {
  const key = path.join('.');
  let byPath = selections.get(info.fieldNodes);
  if (!byPath) {
    byPath = new Map();
    selections.set(info.fieldNodes, byPath);
  }
  const known = byPath.get(key);
  if (known) return known;
  const names = new Set<string>();
  const walk = (set: SelectionSetNode | undefined, rest: readonly string[]): void => {
    for (const s of set?.selections ?? []) {
      if (s.kind === 'InlineFragment') walk(s.selectionSet, rest);
      // Validation has refused fragment cycles.
      else if (s.kind === 'FragmentSpread') walk((info.fragments[s.name.value] as FragmentDefinitionNode | undefined)?.selectionSet, rest);
      else if (rest.length === 0) names.add(s.name.value);
      else if (s.name.value === rest[0]) walk(s.selectionSet, rest.slice(1));
    }
  };
  for (const node of info.fieldNodes) walk(node.selectionSet, path);
  byPath.set(key, names);
  return names;
}
const selections = new WeakMap<GraphQLResolveInfo['fieldNodes'], Map<string, ReadonlySet<string>>>();
