import { describe, expect, it } from "vitest";
import { ApiError, locatedExpression, violationsByField } from "../../api/errors";
import { createBody, DRAFT_FIELDS, ruleDraft, updateBody } from "./draft";

describe("expression error positions", () => {
  it("reads the field and place a save's 400 locates from its ErrorInfo metadata", () => {
    const error = new ApiError(400, "invalid_expression", "x", "req", [], null,
                               { field: "formula", position: "20:21", line: "1", column: "21" });
    expect(locatedExpression(error)).toEqual({ field: "formula", position: { start: 20, end: 21, line: 1, column: 21 } });
    expect(locatedExpression(new ApiError(400, "invalid_expression", "x", "req", [], null, { position: "1:2" }))).toBeNull();
  });

  it("puts rules:validate's violations on the rule form's fields", () => {
    const errors = violationsByField([
      { field: "condition", description: "Unexpected end (line 1, column 20)" },
      { field: "caps.total_budget", description: "must be positive" },
      { field: "elsewhere", description: "odd" },
    ], DRAFT_FIELDS);
    expect(errors.condition).toBe("Unexpected end (line 1, column 20)");
    expect(errors["caps.total_budget"]).toBe("must be positive");
    expect(errors[""]).toBe("elsewhere: odd");
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
