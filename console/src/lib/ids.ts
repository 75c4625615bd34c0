/** A random idempotency key: crypto.getRandomValues works on plain http too (randomUUID
 * needs a secure context). */
export function newIdempotencyKey(prefix = "console"): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return `${prefix}-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

/** A decimal of the API as a number for a chart (never for storage or sums of money). */
export function toNumber(decimal: string | number | null | undefined): number {
  const n = Number(decimal ?? 0);
  return Number.isFinite(n) ? n : 0;
}

/** A time as the operator's local date and time, or "—". */
export function when(value: string | null | undefined): string {
  return value ? new Date(value).toLocaleString() : "—";
}
