import { describe, expect, it } from "vitest";
import { cellValue, guessMapping, mapJsonObject, mapRow, mappingProblems, type Mapping } from "./mapping";

const PROGRAM = "3f8e3c1e-4a57-4f7e-9a43-0c2b8a0f4d11";

describe("guessMapping", () => {
  it("maps known headers to fields, each once, and the rest to properties", () => {
    expect(guessMapping(["Reference", "Event Type", "customer_id", "Timestamp", "amount", "type", ""])).toEqual([
      { kind: "field", field: "idempotency_key" },
      { kind: "field", field: "event_type" },
      { kind: "field", field: "external_id" },
      { kind: "field", field: "event_timestamp" },
      { kind: "property", name: "amount" },
      { kind: "property", name: "type" },
      { kind: "ignore" },
    ]);
  });
});

describe("mappingProblems", () => {
  it("names a field mapped twice and a missing participant or event type", () => {
    const twice: Mapping = [
      { kind: "field", field: "external_id" },
      { kind: "field", field: "external_id" },
    ];
    expect(mappingProblems(twice, "purchase")).toEqual(["external_id is mapped from 2 columns"]);
    expect(mappingProblems([{ kind: "property", name: "x" }], "")).toEqual([
      "map a column to event_type or give a default event type",
      "map a column to external_id or participant_id",
    ]);
  });
});

describe("cellValue", () => {
  it("reads booleans and exact numbers, and keeps ids and zip codes as text", () => {
    expect(cellValue("true")).toBe(true);
    expect(cellValue("12.50")).toBe(12.5);
    expect(cellValue("-3")).toBe(-3);
    expect(cellValue("1e3")).toBe(1000);
    expect(cellValue("00123")).toBe("00123");
    expect(cellValue("12345678901234567890")).toBe("12345678901234567890");
    expect(cellValue("0.1234567890123456")).toBe("0.1234567890123456");
    expect(cellValue("12 EUR")).toBe("12 EUR");
  });
});

describe("mapRow", () => {
  const mapping = guessMapping(["customer", "type", "timestamp", "amount", "data", "note"]);

  it("builds the event with properties in event_data and empty cells absent", () => {
    const row = mapRow(["c1", "purchase", "2024-01-15T10:30:00Z", "25.5", '{"sku":"A1"}', ""], mapping, PROGRAM, "");
    expect(row).toEqual({
      ok: true,
      event: {
        program_id: PROGRAM,
        external_id: "c1",
        event_type: "purchase",
        event_timestamp: "2024-01-15T10:30:00Z",
        event_data: { sku: "A1", amount: 25.5 },
      },
    });
  });

  it("uses the default event type when the column is empty", () => {
    const row = mapRow(["c1", "", "", "", "", ""], mapping, PROGRAM, "visit");
    expect(row).toEqual({ ok: true, event: { program_id: PROGRAM, external_id: "c1", event_type: "visit" } });
  });

  it("refuses a malformed timestamp or event_data, naming the field", () => {
    const ts = mapRow(["c1", "p", "15/01/2024", "", "", ""], mapping, PROGRAM, "");
    expect(ts).toMatchObject({ ok: false, error: { field: "event_timestamp" } });
    const data = mapRow(["c1", "p", "", "", "[1]", ""], mapping, PROGRAM, "");
    expect(data).toEqual({ ok: false, error: { field: "event_data", message: "must be a JSON object" } });
    const notJson = mapRow(["c1", "p", "", "", "{", ""], mapping, PROGRAM, "");
    expect(notJson).toMatchObject({ ok: false, error: { field: "event_data" } });
  });

  it("accepts a space for the T of a timestamp and sends the T", () => {
    const row = mapRow(["c1", "p", "2024-01-15 10:30:00+02:00", "", "", ""], mapping, PROGRAM, "");
    expect(row).toMatchObject({ ok: true, event: { event_timestamp: "2024-01-15T10:30:00+02:00" } });
  });
});

describe("mapJsonObject", () => {
  it("passes known fields, adds the program, and refuses unknown fields and wrong types", () => {
    expect(mapJsonObject({ event_type: "a", external_id: "c", data: { n: 1 } }, PROGRAM)).toEqual({
      ok: true,
      event: { event_type: "a", external_id: "c", data: { n: 1 }, program_id: PROGRAM },
    });
    expect(mapJsonObject({ colour: "red" }, PROGRAM)).toEqual({ ok: false, error: { field: "colour", message: "unknown field" } });
    expect(mapJsonObject({ external_id: 7 }, PROGRAM)).toEqual({ ok: false, error: { field: "external_id", message: "must be a string" } });
  });
});
