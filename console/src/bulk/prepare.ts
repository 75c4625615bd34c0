/** A file made ready to upload: every row (line) with its event or the reason it has none. */
import { withIdempotencyKeys } from "./keys";
import { mapJsonObject, mapRow, type EventBody, type MappedRow, type Mapping } from "./mapping";
import { parseJsonLines, type CsvFile, type LineProblem } from "./parse";
import { Progress } from "./progress";

export interface Prepared {
  progress: Progress;
  /** By row index: the event to send, or undefined for a row refused before sending. */
  events: (EventBody | undefined)[];
}

async function prepare(mapped: { line: number; result: MappedRow }[], problems: LineProblem[]): Promise<Prepared> {
  const all = [
    ...mapped,
    ...problems.map((p) => ({ line: p.line, result: { ok: false, error: { field: "", message: p.message } } as MappedRow })),
  ].sort((a, b) => a.line - b.line);
  const progress = new Progress(all.map((r) => r.line));
  const good = all.flatMap((r) => (r.result.ok ? [r.result.event] : []));
  const keyed = await withIdempotencyKeys(good);
  const events: (EventBody | undefined)[] = [];
  let next = 0;
  all.forEach((r, i) => {
    if (r.result.ok) {
      const event = keyed[next++];
      events.push(event);
      progress.keyOf(i, event.idempotency_key ?? event.reference);
    } else {
      events.push(undefined);
      progress.record(i, { status: "error", field: r.result.error.field, message: r.result.error.message, sent: false });
    }
  });
  return { progress, events };
}

/** A parsed CSV file mapped to events of `programId`. */
export function prepareCsv(file: CsvFile, mapping: Mapping, programId: string, defaultEventType: string): Promise<Prepared> {
  const mapped = file.rows.map((row) => ({ line: row.line, result: mapRow(row.cells, mapping, programId, defaultEventType) }));
  return prepare(mapped, file.problems);
}

/** A JSON Lines file's objects as events of `programId` (unless a line names its own). */
export function prepareJsonLines(text: string, programId: string): Promise<Prepared> {
  const { rows, problems } = parseJsonLines(text);
  return prepare(rows.map((row) => ({ line: row.line, result: mapJsonObject(row.value, programId) })), problems);
}
