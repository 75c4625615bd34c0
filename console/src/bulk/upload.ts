/** Sending a file's events in batches of 1,000 to POST /v1/events/batch, recording each
 * row's outcome in a Progress, stoppable by an AbortSignal and resumable after a failure. */
import type { EventBody } from "./mapping";
import type { Progress } from "./progress";

/** The batch route's most events per request. */
export const BATCH_SIZE = 1000;

/** One item's outcome in the batch answer (BatchItemResult). */
export interface ItemResult {
  index: number;
  status: string;
  event_id?: string | null;
  error?: { code?: string; message?: string; field?: string } | null;
}

/** A field violation of a whole-batch 400. */
export interface Violation {
  field: string;
  description: string;
}

/** What sending one batch gave: per-item results, or a 400 refusing the whole batch with
 * the violations it names. Anything else (5xx, lost connection) is thrown. */
export type BatchAnswer = { kind: "results"; results: ItemResult[] } | { kind: "refused"; violations: Violation[] };

export type SendBatch = (events: EventBody[], signal: AbortSignal) => Promise<BatchAnswer>;

/** Split `items` into consecutive chunks of at most `size`. */
export function chunks<T>(items: readonly T[], size: number = BATCH_SIZE): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

const ITEM_FIELD = /^events\[(\d+)\](?:\.(.+))?$/;
// The API's item messages may start with the item's path ("events[12].external_id: ...").
const ITEM_PREFIX = /^events\[\d+\][^:\s]*:\s*/;

/** Send every pending row of `progress` (whose events are `events`, by row index).
 * Returns "done", or "cancelled" when `signal` aborts; rows of a batch in flight then stay
 * pending, and sending them again later is harmless (their keys make them duplicates).
 * A whole-batch 400 naming items marks those rows as errors and sends the rest again.
 * Any other failure is thrown, with the rows not yet answered still pending. */
export async function upload(
  progress: Progress,
  events: readonly (EventBody | undefined)[],
  send: SendBatch,
  signal: AbortSignal,
  onBatch: () => void = () => {},
  batchSize: number = BATCH_SIZE,
): Promise<"done" | "cancelled"> {
  for (const batch of chunks(progress.pendingIndexes(), batchSize)) {
    let rows = batch.filter((i) => events[i] !== undefined);
    while (rows.length > 0) {
      if (signal.aborted) return "cancelled";
      let answer: BatchAnswer;
      try {
        answer = await send(rows.map((i) => events[i] as EventBody), signal);
      } catch (e) {
        if (signal.aborted) return "cancelled";
        throw e;
      }
      if (answer.kind === "results") {
        recordResults(progress, rows, answer.results);
        break;
      }
      const refused = refusedItems(answer.violations, rows.length);
      if (refused.size === 0) {
        throw new Error(`the batch was refused: ${answer.violations.map((v) => `${v.field}: ${v.description}`).join("; ")}`);
      }
      for (const [position, v] of refused) {
        progress.record(rows[position], { status: "error", field: v.field, message: v.description, sent: true });
      }
      rows = rows.filter((_, position) => !refused.has(position));
    }
    onBatch();
  }
  return "done";
}

function recordResults(progress: Progress, rows: number[], results: ItemResult[]): void {
  for (const r of results) {
    const row = rows[r.index];
    if (row === undefined) continue;
    if (r.status === "accepted" || r.status === "duplicate") {
      progress.record(row, { status: r.status, eventId: r.event_id ?? undefined, sent: true });
    } else {
      progress.record(row, {
        status: "error",
        field: stripItemPrefix(r.error?.field ?? ""),
        message: (r.error?.message ?? r.error?.code ?? "refused").replace(ITEM_PREFIX, ""),
        sent: true,
      });
    }
  }
}

/** Positions in the batch named by `events[i].field` violations, with the field inside the item. */
export function refusedItems(violations: readonly Violation[], size: number): Map<number, Violation> {
  const out = new Map<number, Violation>();
  for (const v of violations) {
    const m = ITEM_FIELD.exec(v.field);
    if (!m) continue;
    const position = Number(m[1]);
    if (position < size && !out.has(position)) out.set(position, { field: m[2] ?? "", description: v.description });
  }
  return out;
}

function stripItemPrefix(field: string): string {
  const m = ITEM_FIELD.exec(field);
  return m ? (m[2] ?? "") : field;
}
