import type { AnchorHTMLAttributes, ComponentChildren } from 'preact';
import { h } from 'preact';
import { useEffect, useState } from 'preact/hooks';

/** Client routes live under /console (the gateway answers index.html for every one of them). */
export const BASE = '/console';
const EVENT = 'vg-console:navigate';

export interface Route {
  /** The path below /console, e.g. `/v/123` (always starts with /). */
  path: string;
  params: URLSearchParams;
}

function current(): Route {
  const rest = location.pathname.startsWith(BASE) ? location.pathname.slice(BASE.length) : location.pathname;
  return { path: rest === '' ? '/' : rest, params: new URLSearchParams(location.search) };
}

export function navigate(to: string, replace = false): void {
  if (replace) history.replaceState(null, '', BASE + to);
  else history.pushState(null, '', BASE + to);
  dispatchEvent(new Event(EVENT));
}

/** The current route, re-rendering on navigation (links, back and forward). */
export function useRoute(): Route {
  const [route, setRoute] = useState(current);
  useEffect(() => {
    const update = () => {
      setRoute(current());
      window.scrollTo(0, 0);
    };
    addEventListener('popstate', update);
    addEventListener(EVENT, update);
    return () => {
      removeEventListener('popstate', update);
      removeEventListener(EVENT, update);
    };
  }, []);
  return route;
}

/** `/v/x/entry?path=/a b` from parts, the query values encoded. */
export function href(path: string, params: Record<string, string | undefined> = {}): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

type AnchorProps = Omit<AnchorHTMLAttributes<HTMLAnchorElement>, 'href'> & { to: string; children?: ComponentChildren };

/** An ordinary link (open in a new tab works) that navigates in place on a plain click. */
export function Link({ to, children, ...rest }: AnchorProps) {
  return h(
    'a',
    {
      ...rest,
      href: BASE + to,
      onClick: (e: MouseEvent) => {
        if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
        e.preventDefault();
        navigate(to);
      },
    },
    children,
  );
}
