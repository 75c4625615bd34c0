/** Progress of a bulk upload: one status per row, and counts that stay right when a batch
 * is answered again after a resume (a row is counted once, in its latest status). */

export type RowStatus = "pending" | "accepted" | "duplicate" | "error";

/** The outcome of one row of the file. */
export interface RowResult {
  line: number;
  status: RowStatus;
  idempotencyKey?: string;
  eventId?: string;
  /** Errors only: the field named (of the event, or of the file) and the message. */
  field?: string;
  message?: string;
  /** True once the API has answered for this row (false for rows refused before sending). */
  sent: boolean;
}

export interface Counts {
  total: number;
  /** Rows the API has answered for. */
  sent: number;
  accepted: number;
  duplicate: number;
  /** Rows refused, by the console before sending or by the API. */
  error: number;
  pending: number;
}

export class Progress {
  readonly rows: RowResult[];
  private counts: Counts;

  constructor(lines: readonly number[]) {
    this.rows = lines.map((line) => ({ line, status: "pending" as RowStatus, sent: false }));
    this.counts = { total: lines.length, sent: 0, accepted: 0, duplicate: 0, error: 0, pending: lines.length };
  }

  /** Set row `index`'s outcome, replacing any earlier one in the counts. */
  record(index: number, update: Omit<RowResult, "line">): void {
    const row = this.rows[index];
    this.counts[row.status] -= 1;
    if (row.sent) this.counts.sent -= 1;
    this.rows[index] = { line: row.line, idempotencyKey: row.idempotencyKey, ...update };
    this.counts[update.status] += 1;
    if (update.sent) this.counts.sent += 1;
  }

  /** Remember the key a row is sent with (shown in the results). */
  keyOf(index: number, key: string | undefined): void {
    this.rows[index] = { ...this.rows[index], idempotencyKey: key };
  }

  get summary(): Counts {
    return { ...this.counts };
  }

  /** Rows answered or refused, as a fraction of all rows (1 for an empty file). */
  get fraction(): number {
    return this.counts.total === 0 ? 1 : (this.counts.total - this.counts.pending) / this.counts.total;
  }

  /** Indexes of the rows still to send. */
  pendingIndexes(): number[] {
    const out: number[] = [];
    this.rows.forEach((row, i) => {
      if (row.status === "pending") out.push(i);
    });
    return out;
  }

  /** The per-row results as table rows for a CSV download, header first. */
  table(): (string | number)[][] {
    return [
      ["line", "status", "idempotency_key", "event_id", "field", "message"],
      ...this.rows.map((r) => [r.line, r.status, r.idempotencyKey ?? "", r.eventId ?? "", r.field ?? "", r.message ?? ""]),
    ];
  }
}
