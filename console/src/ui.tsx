import type { ComponentChildren } from 'preact';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { ApiError } from './api.ts';

export function formatBytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return '—';
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

export function formatDate(iso: string | null | undefined): string {
  if (!iso) return '—';
  const d = new Date(iso);
  return d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

/** "in 4 min 10 s" / "expired" for a moment from now. */
export function timeUntil(iso: string, now: number): string {
  const s = Math.round((new Date(iso).getTime() - now) / 1000);
  if (s <= 0) return 'expired';
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86_400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86_400)} d ${Math.floor((s % 86_400) / 3600)} h`;
}

/** Re-renders every `ms` and returns the current time (countdowns). */
export function useNow(ms = 1000): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(t);
  }, [ms]);
  return now;
}

export interface Loaded<T> {
  data: T | undefined;
  error: unknown;
  loading: boolean;
  reload(): void;
}

/**
 * Loads `fn()` when a dependency changes (and on reload()); answers that arrive after a newer load
 * started are dropped, so a slow first page never overwrites a newer one.
 */
export function useLoad<T>(fn: () => Promise<T>, deps: unknown[]): Loaded<T> {
  const [state, setState] = useState<{ data: T | undefined; error: unknown; loading: boolean }>({
    data: undefined,
    error: undefined,
    loading: true,
  });
  const [tick, setTick] = useState(0);
  const seq = useRef(0);
  useEffect(() => {
    const mine = ++seq.current;
    setState((s) => ({ ...s, loading: true }));
    fn().then(
      (data) => mine === seq.current && setState({ data, error: undefined, loading: false }),
      (error) => mine === seq.current && setState((s) => ({ data: s.data, error, loading: false })),
    );
  }, [...deps, tick]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { ...state, reload };
}

/** An API error as a message, with each field it names (input.name: …). */
export function ErrorMessage({ error, title }: { error: unknown; title?: string }) {
  if (!error) return null;
  const err = error instanceof ApiError ? error : new ApiError(error instanceof Error ? error.message : String(error), undefined);
  return (
    <div class="error" role="alert">
      {title && <strong>{title}: </strong>}
      <span>{err.message}</span>
      {err.code && <span class="code"> ({err.code})</span>}
      {err.fields.length > 0 && (
        <ul>
          {err.fields.map((f) => (
            <li key={f.path.join('.')}>
              <code>{f.path.join('.')}</code>: {f.message}
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

/** The note under an input the API refused (its id goes in the input's aria-describedby). */
export function FieldNote({ id, message }: { id: string; message: string | undefined }) {
  if (!message) return null;
  return (
    <span class="field-error" id={id}>
      {message}
    </span>
  );
}

export function Empty({ children }: { children: ComponentChildren }) {
  return <p class="empty">{children}</p>;
}

/** Used against a quota: a meter when there is a quota, the number alone when unlimited. */
export function Usage({
  label,
  used,
  max,
  format,
  compact = false,
}: {
  label: string;
  used: number;
  max: number | null;
  format: (n: number) => string;
  /** In a table column already named by its header: no visible label. */
  compact?: boolean;
}) {
  const text = max === null ? `${format(used)} (no limit)` : `${format(used)} of ${format(max)}`;
  return (
    <div class="usage">
      {!compact && <span class="usage-label">{label}</span>}
      {max !== null && (
        <meter min={0} max={Math.max(max, 1)} value={used} high={max * 0.8} optimum={0} aria-label={`${label}: ${text}`}>
          {text}
        </meter>
      )}
      <span class="usage-text">{text}</span>
    </div>
  );
}

export function StatusBadge({ status }: { status: string | null | undefined }) {
  if (!status) return <span class="badge">—</span>;
  return <span class={`badge badge-${status}`}>{status}</span>;
}

export const count = (n: number) => n.toLocaleString('en');

/**
 * A number typed into a text field, for an Int argument: empty is "not given"; anything that is not
 * a whole number is sent as typed, so the API's refusal names the field rather than the console
 * guessing.
 */
export function intInput(value: string): number | undefined {
  const v = value.trim();
  if (v === '') return undefined;
  return /^-?\d+$/.test(v) ? Number(v) : (v as unknown as number);
}
