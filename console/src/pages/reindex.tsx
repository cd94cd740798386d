import { useEffect, useRef, useState } from 'preact/hooks';
import { request, subscribe } from '../api.ts';
import { graphql, type ResultOf } from '../graphql.ts';
import { ErrorMessage, formatDate, StatusBadge } from '../ui.tsx';

const ReindexQuery = graphql(`
  query Reindex($id: ID!) {
    volume(id: $id) { id reindex { volumeId status percent processed total failed startedAt completedAt error embeddingModelId } }
  }
`);

const ReindexProgressSub = graphql(`
  subscription ReindexProgress($volumeId: ID!) {
    reindexProgress(volumeId: $volumeId) { volumeId status percent processed total failed startedAt completedAt error embeddingModelId }
  }
`);

const StartReindex = graphql(`
  mutation StartReindex($volumeId: ID!) {
    startReindex(volumeId: $volumeId) { volumeId status percent processed total failed startedAt completedAt error embeddingModelId }
  }
`);

const CancelReindex = graphql(`
  mutation CancelReindex($volumeId: ID!) {
    cancelReindex(volumeId: $volumeId) { volumeId status percent processed total failed startedAt completedAt error embeddingModelId }
  }
`);

type Progress = ResultOf<typeof ReindexProgressSub>['reindexProgress'];

const ACTIVE = new Set(['queued', 'running', 'cancelling']);
const RANK: Record<string, number> = { queued: 0, running: 1, cancelling: 2 };
const rank = (status: string) => RANK[status] ?? 3;

/**
 * Whether a state read by a query or a mutation may replace the one shown: never backwards within
 * a run (the subscription may already be further on), but a new run replaces a finished one.
 */
function newer(shown: Progress | null, read: Progress): boolean {
  if (!shown) return true;
  if (!ACTIVE.has(shown.status)) return ACTIVE.has(read.status) || read.completedAt !== shown.completedAt;
  return rank(read.status) > rank(shown.status) || (rank(read.status) === rank(shown.status) && read.percent >= shown.percent);
}

/** The reindex of a volume, live over the reindexProgress subscription; start and cancel it here. */
export function ReindexTab({ volumeId, onChange }: { volumeId: string; onChange(): void }) {
  const [progress, setProgress] = useState<Progress | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  // Bumped when a subscription ends (a run finished): the next one waits for the next run.
  const [generation, setGeneration] = useState(0);

  const lastEvent = useRef(Date.now());

  useEffect(() => {
    request(ReindexQuery, { id: volumeId }).then((d) => d.volume && setProgress((p) => p ?? d.volume!.reindex), setError);
  }, [volumeId]);

  // A run sends progress at least every second. If a run under way goes quiet (the subscription
  // reached the gateway only after that run ended, say), read its state instead of waiting.
  const active = progress ? ACTIVE.has(progress.status) : false;
  useEffect(() => {
    if (!active) return;
    const t = setInterval(() => {
      if (Date.now() - lastEvent.current < 3000) return;
      lastEvent.current = Date.now();
      request(ReindexQuery, { id: volumeId }).then(
        (d) => d.volume && setProgress((p) => (newer(p, d.volume!.reindex) ? d.volume!.reindex : p)),
        () => undefined,
      );
    }, 1000);
    return () => clearInterval(t);
  }, [volumeId, active]);

  useEffect(() => {
    let ended = false;
    const stop = subscribe(
      ReindexProgressSub,
      { volumeId },
      {
        next: (d) => {
          lastEvent.current = Date.now();
          setProgress(d.reindexProgress);
          if (!ACTIVE.has(d.reindexProgress.status)) onChange();
        },
        error: setError,
        complete: () => {
          if (!ended) setGeneration((g) => g + 1);
        },
      },
    );
    return () => {
      ended = true;
      stop();
    };
  }, [volumeId, generation]);

  const act = async (mutation: 'start' | 'cancel') => {
    setBusy(true);
    setError(null);
    try {
      const d =
        mutation === 'start'
          ? (await request(StartReindex, { volumeId })).startReindex
          : (await request(CancelReindex, { volumeId })).cancelReindex;
      lastEvent.current = Date.now();
      setProgress((p) => (newer(p, d) ? d : p));
      onChange();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  const percent = progress ? Math.min(100, Math.max(0, progress.percent)) : 0;
  const shown = Math.floor(percent);
  return (
    <div class="reindex">
      <h2>Reindex</h2>
      <p class="muted">Rebuilds every chunk and vector of the volume as a background job; searches keep working meanwhile.</p>
      <ErrorMessage error={error} />
      {progress && (
        <div class="progress-block">
          <p>
            <StatusBadge status={progress.status} /> <span class="muted">into</span> <code>{progress.embeddingModelId}</code>
          </p>
          <label class="progress-label">
            <span>
              Progress: <strong data-testid="reindex-percent">{shown} %</strong> ({progress.processed} of {progress.total} entries
              {progress.failed ? `, ${progress.failed} failed` : ''})
            </span>
            <progress max={100} value={percent} aria-valuetext={`${shown} percent, ${progress.status}`}>
              {shown} %
            </progress>
          </label>
          <p class="muted small">
            Started {formatDate(progress.startedAt)}
            {progress.completedAt && ` · finished ${formatDate(progress.completedAt)}`}
          </p>
          {progress.error && <p class="error-text">{progress.error}</p>}
        </div>
      )}
      <div class="actions">
        <button type="button" onClick={() => act('start')} disabled={busy || active}>
          Start reindex
        </button>{' '}
        <button type="button" onClick={() => act('cancel')} disabled={busy || !active || progress?.status === 'cancelling'}>
          Cancel reindex
        </button>
      </div>
    </div>
  );
}
