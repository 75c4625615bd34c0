/** Mapping CSV columns to the fields of an event (POST /v1/events/batch items). */

/** One event as the batch route takes it (SubmitEventRequest's JSON form). */
export interface EventBody {
  program_id?: string;
  idempotency_key?: string;
  event_type?: string;
  event_timestamp?: string;
  external_id?: string;
  participant_id?: string;
  recipient_external_id?: string;
  recipient_id?: string;
  event_data?: Record<string, unknown>;
  /** Seed 001's and seed 002's spellings of idempotency_key, event_timestamp and event_data. */
  reference?: string;
  occurred_at?: string;
  data?: Record<string, unknown>;
}

/** The event fields a column can fill; any other column becomes a property of event_data. */
export const EVENT_FIELDS = [
  "idempotency_key",
  "event_type",
  "external_id",
  "participant_id",
  "event_timestamp",
  "recipient_external_id",
  "recipient_id",
  "event_data",
] as const;
export type EventField = (typeof EVENT_FIELDS)[number];

/** What one column becomes: an event field, a property of event_data, or nothing. */
export type ColumnTarget =
  | { kind: "field"; field: EventField }
  | { kind: "property"; name: string }
  | { kind: "ignore" };

/** One target per column, in column order. */
export type Mapping = ColumnTarget[];

// Header spellings (lower case, letters and digits only) recognised for each field.
const ALIASES: Record<EventField, string[]> = {
  idempotency_key: ["idempotencykey", "reference", "idempotency", "key"],
  event_type: ["eventtype", "type", "event"],
  external_id: ["externalid", "customerid", "memberid", "userid", "customer"],
  participant_id: ["participantid"],
  event_timestamp: ["eventtimestamp", "timestamp", "occurredat", "time"],
  recipient_external_id: ["recipientexternalid", "recipient"],
  recipient_id: ["recipientid"],
  event_data: ["eventdata", "data"],
};

/** A first mapping from the header: known names become fields (each field once), the
 * other columns properties named as in the header. */
export function guessMapping(header: readonly string[]): Mapping {
  const taken = new Set<EventField>();
  return header.map((name): ColumnTarget => {
    const plain = name.toLowerCase().replace(/[^a-z0-9]/g, "");
    const field = EVENT_FIELDS.find((f) => !taken.has(f) && ALIASES[f].includes(plain));
    if (field) {
      taken.add(field);
      return { kind: "field", field };
    }
    return name.trim() === "" ? { kind: "ignore" } : { kind: "property", name: name.trim() };
  });
}

/** Problems of a mapping as a whole (a field mapped twice, a property named twice). */
export function mappingProblems(mapping: Mapping, defaultEventType: string): string[] {
  const problems: string[] = [];
  const seen = new Map<string, number>();
  for (const target of mapping) {
    if (target.kind === "ignore") continue;
    const name = target.kind === "field" ? target.field : `event_data.${target.name}`;
    seen.set(name, (seen.get(name) ?? 0) + 1);
  }
  for (const [name, count] of seen) {
    if (count > 1) problems.push(`${name} is mapped from ${count} columns`);
  }
  if (!seen.has("event_type") && defaultEventType.trim() === "") {
    problems.push("map a column to event_type or give a default event type");
  }
  if (!seen.has("external_id") && !seen.has("participant_id")) {
    problems.push("map a column to external_id or participant_id");
  }
  return problems;
}

/** A row that cannot become an event, naming the field. */
export interface RowError {
  field: string;
  message: string;
}

export type MappedRow = { ok: true; event: EventBody } | { ok: false; error: RowError };

const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;
const JSON_NUMBER = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$/;

/** A CSV cell as a JSON value: true/false, a number a double holds exactly (at most 15
 * significant digits, no leading zero, so zip codes and long ids stay text), else text. */
export function cellValue(cell: string): string | number | boolean {
  if (cell === "true" || cell === "false") return cell === "true";
  if (JSON_NUMBER.test(cell)) {
    const digits = cell.replace(/[eE].*$/, "").replace(/[-.]/g, "").replace(/^0+/, "").replace(/0+$/, "");
    if (digits.length <= 15 && Number.isFinite(Number(cell))) return Number(cell);
  }
  return cell;
}

/** Turn one CSV row into an event of `programId`. Empty cells are absent. Only what the API
 * would refuse for the whole batch (a malformed timestamp or event_data) is checked here;
 * every other rule is the API's, reported per row from the batch answer. */
export function mapRow(
  cells: readonly string[],
  mapping: Mapping,
  programId: string,
  defaultEventType: string,
): MappedRow {
  const event: EventBody = {};
  if (programId) event.program_id = programId;
  const properties: Record<string, unknown> = {};
  let data: Record<string, unknown> | undefined;
  for (let i = 0; i < mapping.length; i++) {
    const target = mapping[i];
    const cell = (cells[i] ?? "").trim();
    if (target.kind === "ignore" || cell === "") continue;
    if (target.kind === "property") {
      properties[target.name] = cellValue(cell);
      continue;
    }
    switch (target.field) {
      case "event_data": {
        let parsed: unknown;
        try {
          parsed = JSON.parse(cell);
        } catch {
          return { ok: false, error: { field: "event_data", message: "must be a JSON object (not valid JSON)" } };
        }
        if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
          return { ok: false, error: { field: "event_data", message: "must be a JSON object" } };
        }
        data = parsed as Record<string, unknown>;
        break;
      }
      case "event_timestamp":
        if (!RFC3339.test(cell) || Number.isNaN(Date.parse(cell.replace(" ", "T")))) {
          return {
            ok: false,
            error: {
              field: "event_timestamp",
              message: `must be an RFC 3339 time such as 2024-01-15T10:30:00Z (got "${cell.slice(0, 40)}")`,
            },
          };
        }
        event.event_timestamp = cell.replace(" ", "T");
        break;
      default:
        event[target.field] = cell;
    }
  }
  if (event.event_type === undefined && defaultEventType.trim() !== "") {
    event.event_type = defaultEventType.trim();
  }
  if (data !== undefined || Object.keys(properties).length > 0) {
    event.event_data = { ...(data ?? {}), ...properties };
  }
  return { ok: true, event };
}

const STRING_FIELDS = new Set<string>([
  "program_id", "idempotency_key", "reference", "event_type", "event_timestamp", "occurred_at",
  "external_id", "participant_id", "recipient_external_id", "recipient_id",
]);
const OBJECT_FIELDS = new Set<string>(["event_data", "data"]);

/** One JSON Lines object as an event of `programId` (unless it names its own program).
 * Field names and JSON types are checked here: the API refuses a whole batch over them. */
export function mapJsonObject(value: Record<string, unknown>, programId: string): MappedRow {
  const event: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value)) {
    if (v === null) continue;
    if (STRING_FIELDS.has(key)) {
      if (typeof v !== "string") return { ok: false, error: { field: key, message: "must be a string" } };
    } else if (OBJECT_FIELDS.has(key)) {
      if (typeof v !== "object" || Array.isArray(v)) {
        return { ok: false, error: { field: key, message: "must be a JSON object" } };
      }
    } else {
      return { ok: false, error: { field: key, message: "unknown field" } };
    }
    event[key] = v;
  }
  if (event.program_id === undefined && programId) event.program_id = programId;
  return { ok: true, event: event as EventBody };
}
