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
 * Violations by form field. `fields` are the form's field paths; a violation of a nested
 * path (tiers[0].name) lands on the longest form field it starts with (tiers.0.name, else
 * tiers), and one that names no field of the form goes under "" (shown at the form's top).
 */
export function violationsByField(violations: readonly FieldViolation[], fields: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  const known = fields.map((f) => [normaliseField(f), f] as const)
    .sort((a, b) => b[0].length - a[0].length);
  const add = (key: string, text: string) => {
    out[key] = out[key] ? `${out[key]}; ${text}` : text;
  };
  for (const v of violations) {
    const path = normaliseField(v.field);
    const hit = known.find(([n]) => path === n || path.startsWith(`${n}.`));
    if (hit) add(hit[1], hit[0] === path ? v.description : `${v.field}: ${v.description}`);
    else add("", `${v.field}: ${v.description}`);
  }
  return out;
}

/** Field errors of a failed call by form field (see violationsByField); an error that names
 * no field (and is about the input) goes under "" with its message. */
export function fieldErrors(error: unknown, fields: readonly string[]): Record<string, string> {
  if (!(error instanceof ApiError)) return {};
  const out = violationsByField(error.violations, fields);
  if (error.violations.length === 0 && !error.isServerSide && error.status !== 401) {
    out[""] = error.message;
  }
  return out;
}

/** A place in a rule expression: characters from 0 [start, end); line and column from 1. */
export interface ExpressionPosition {
  start: number;
  end: number;
  line: number;
  column: number;
}

/**
 * The expression field and position an error locates, from its ErrorInfo metadata
 * (`field`, `position` "start:end", `line`, `column`); null when it locates none.
 */
export function locatedExpression(error: ApiError): { field: string; position: ExpressionPosition } | null {
  const { field, position, line, column } = error.metadata;
  const span = /^(\d+):(\d+)$/.exec(position ?? "");
  if (!field || !span || !line || !column) return null;
  return { field: normaliseField(field), position: { start: Number(span[1]), end: Number(span[2]), line: Number(line), column: Number(column) } };
}
