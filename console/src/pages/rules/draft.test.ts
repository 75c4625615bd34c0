import { describe, expect, it } from "vitest";
import { ApiError, expressionSpan, lineColumn, underPrefix } from "../../api/errors";
import { createBody, ruleDraft, updateBody } from "./draft";

describe("expression error positions", () => {
  it("reads the engine's character span from the description, else the ErrorInfo metadata", () => {
    expect(expressionSpan("Unexpected token: Operator at (4, 5); Expected UnaryOperator.")).toEqual({ start: 4, end: 5 });
    expect(expressionSpan("bad", { position: "7:9" })).toEqual({ start: 7, end: 9 });
    expect(expressionSpan("must give a number")).toBeNull();
  });

  it("turns an offset into a 1-based line and column", () => {
    expect(lineColumn("1 + * 2", 4)).toEqual({ line: 1, column: 5 });
    expect(lineColumn("a == 1\nand * b", 11)).toEqual({ line: 2, column: 5 });
    expect(lineColumn("ab", 99)).toEqual({ line: 1, column: 3 });
  });

  it("keeps the violations of one draft rule, named as the form names them", () => {
    const error = new ApiError(400, "invalid_expression", "x", "req", [
      { field: "draft_rules[0].condition", description: "bad at (1, 2)" },
      { field: "event_type", description: "other" },
    ]);
    expect(underPrefix(error, "draft_rules[0]").violations).toEqual([{ field: "condition", description: "bad at (1, 2)" }]);
  });
});

describe("rule drafts", () => {
  it("sends caps only when set, as decimal strings, and times as UTC", () => {
    const d = { ...ruleDraft(undefined, 30), name: "r", formula: "1", active_from: "2026-01-31T10:00" };
    d.caps.per_participant_daily = " 100 ";
    const body = createBody(d);
    expect(body.order).toBe(30);
    expect(body.caps).toEqual({ per_participant_daily: "100" });
    expect(body.active_from).toBe(new Date("2026-01-31T10:00").toISOString());
    expect(body.active_to).toBeNull();
    expect(createBody({ ...ruleDraft(), formula: "1" }).caps).toBeNull();
  });

  it("clears on update what the form emptied", () => {
    const body = updateBody({ ...ruleDraft(), name: "r", formula: "1" });
    expect([body.caps, body.clear_active_from, body.clear_active_to]).toEqual([{}, true, true]);
  });
});
