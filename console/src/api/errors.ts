// One place that turns an API answer into something a page can show: field errors next to
// fields, a banner with the request id for server and network failures.

export interface FieldViolation {
  field: string;
  description: string;
}

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly requestId: string;
  readonly violations: FieldViolation[];
  readonly retryAfter: number | null;
  /** Metadata of the error's ErrorInfo details (for example an expression's `position`). */
  readonly metadata: Record<string, string>;

  constructor(status: number, code: string, message: string, requestId: string,
              violations: FieldViolation[] = [], retryAfter: number | null = null,
              metadata: Record<string, string> = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.requestId = requestId;
    this.violations = violations;
    this.retryAfter = retryAfter;
    this.metadata = metadata;
  }

  /** A 5xx or a lost connection: not the operator's input, so shown as a banner. */
  get isServerSide(): boolean {
    return this.status === 0 || this.status >= 500;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null;
}

/** The violations among an error body's details (google.rpc BadRequest-like items). */
export function violationsOf(details: unknown): FieldViolation[] {
  if (!Array.isArray(details)) return [];
  return details.filter(isRecord).flatMap((d) =>
    typeof d.field === "string" && typeof d.description === "string"
      ? [{ field: d.field, description: d.description }] : []);
}

/** The metadata of an error body's ErrorInfo details, merged. */
export function metadataOf(details: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (!Array.isArray(details)) return out;
  for (const d of details) {
    if (!isRecord(d) || !isRecord(d.metadata)) continue;
    for (const [k, v] of Object.entries(d.metadata)) if (typeof v === "string") out[k] = v;
  }
  return out;
}

/** Seconds from a Retry-After header (delta-seconds or an HTTP date); null when absent. */
export function parseRetryAfter(header: string | null, now: number = Date.now()): number | null {
  if (!header) return null;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds);
  const at = Date.parse(header);
  return Number.isNaN(at) ? null : Math.max(0, (at - now) / 1000);
}

/** The ApiError of a failed response whose JSON body (when any) is already parsed. */
export function apiErrorOf(response: Response, body: unknown): ApiError {
  const error = isRecord(body) && isRecord(body.error) ? body.error : {};
  const requestId = typeof error.request_id === "string" ? error.request_id
    : response.headers.get("x-request-id") ?? "";
  const message = typeof error.message === "string" ? error.message
    : `${response.status} ${response.statusText}`.trim();
  const code = typeof error.code === "string" ? error.code : `http_${response.status}`;
  return new ApiError(response.status, code, message, requestId, violationsOf(error.details),
                      parseRetryAfter(response.headers.get("retry-after")), metadataOf(error.details));
}

export function networkError(cause: unknown): ApiError {
  const text = cause instanceof Error ? cause.message : String(cause);
  return new ApiError(0, "network", `The API could not be reached: ${text}`, "");
}

/** Normalises a field path for matching: `tiers.0.name` and `tiers[0].name` are one field. */
export function normaliseField(field: string): string {
  return field.replace(/\[(\d+)\]/g, ".$1").replace(/^body\./, "");
}

/**
 * Field errors by form field. `fields` are the form's field paths; a violation of a nested
 * path (tiers[0].name) lands on the longest form field it starts with (tiers.0.name, else
 * tiers), and one that names no field of the form goes under "" (shown at the form's top).
 */
export function fieldErrors(error: unknown, fields: readonly string[]): Record<string, string> {
  if (!(error instanceof ApiError)) return {};
  const out: Record<string, string> = {};
  const known = fields.map((f) => [normaliseField(f), f] as const)
    .sort((a, b) => b[0].length - a[0].length);
  const add = (key: string, text: string) => {
    out[key] = out[key] ? `${out[key]}; ${text}` : text;
  };
  for (const v of error.violations) {
    const path = normaliseField(v.field);
    const hit = known.find(([n]) => path === n || path.startsWith(`${n}.`));
    if (hit) add(hit[1], hit[0] === path ? v.description : `${v.field}: ${v.description}`);
    else add("", `${v.field}: ${v.description}`);
  }
  if (error.violations.length === 0 && !error.isServerSide && error.status !== 401) {
    add("", error.message);
  }
  return out;
}

/** The error with only the violations under `prefix` (draft_rules[0]), named without it. */
export function underPrefix(error: ApiError, prefix: string): ApiError {
  const p = normaliseField(prefix);
  const violations = error.violations.flatMap((v) => {
    const f = normaliseField(v.field);
    return f.startsWith(`${p}.`) ? [{ field: f.slice(p.length + 1), description: v.description }] : [];
  });
  return new ApiError(error.status, error.code, error.message, error.requestId, violations,
                      error.retryAfter, error.metadata);
}

/**
 * The character span [start, end) of the token an expression error names: the engine's
 * "at (4, 5)" in the field's description, else the ErrorInfo metadata `position` ("4:5").
 */
export function expressionSpan(description: string, metadata: Record<string, string> = {}): { start: number; end: number } | null {
  const m = /at \((\d+), (\d+)\)/.exec(description) ?? /^(\d+):(\d+)$/.exec(metadata.position ?? "");
  return m ? { start: Number(m[1]), end: Number(m[2]) } : null;
}

/** 1-based line and column of a character offset in `source`. */
export function lineColumn(source: string, offset: number): { line: number; column: number } {
  const before = source.slice(0, Math.max(0, Math.min(offset, source.length))).split("\n");
  return { line: before.length, column: before[before.length - 1].length + 1 };
}
