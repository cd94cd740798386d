/**
 * The signed-in key lives in sessionStorage only: gone when the tab closes, never in the URL, never
 * sent anywhere but this gateway's /graphql (as a header or the graphql-ws connection_init payload).
 */
const KEY = 'vg-console.key';
const ORG = 'vg-console.org';

export interface Viewer {
  kind: string;
  orgId: string | null;
  appId: string | null;
  keyId: string | null;
  scopes: readonly string[];
}

export function storedKey(): string | null {
  return sessionStorage.getItem(KEY);
}

export function storeKey(key: string): void {
  sessionStorage.setItem(KEY, key);
}

/** The organisation a platform key works in (org keys have their own). */
export function storedOrg(): string | null {
  return sessionStorage.getItem(ORG);
}

export function storeOrg(org: string): void {
  sessionStorage.setItem(ORG, org);
}

export function clearSession(): void {
  sessionStorage.removeItem(KEY);
  sessionStorage.removeItem(ORG);
}
