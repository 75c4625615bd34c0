import { describe, expect, it } from "vitest";
import { ApiError, apiErrorOf, fieldErrors, metadataOf, normaliseField, parseRetryAfter, violationsOf } from "./errors";

function answer(status: number, body: unknown, headers: Record<string, string> = {}) {
  return apiErrorOf(new Response(null, { status, headers }), body);
}

describe("apiErrorOf", () => {
  it("reads code, message, request id and violations of the gateway's error body", () => {
    const error = answer(400, {
      error: {
        code: "invalid_argument",
        message: "bad input",
        request_id: "req_1",
        details: [{ field: "tiers[0].name", description: "is required" }, { reason: "x", domain: "d", metadata: {} }],
      },
    });
    expect(error).toBeInstanceOf(ApiError);
    expect([error.status, error.code, error.message, error.requestId]).toEqual([400, "invalid_argument", "bad input", "req_1"]);
    expect(error.violations).toEqual([{ field: "tiers[0].name", description: "is required" }]);
    expect(error.isServerSide).toBe(false);
  });

  it("falls back to the header request id and the HTTP status without a JSON body", () => {
    const error = answer(503, "<html>", { "x-request-id": "req_2", "retry-after": "3" });
    expect([error.code, error.requestId, error.retryAfter, error.isServerSide]).toEqual(["http_503", "req_2", 3, true]);
  });
});

describe("fieldErrors", () => {
  const error = new ApiError(400, "invalid_argument", "bad", "req", [
    { field: "name", description: "is required" },
    { field: "tiers[1].multiplier", description: "must be positive" },
    { field: "body.rounding_precision", description: "must be 0 to 6" },
    { field: "colour", description: "unknown field" },
    { field: "name", description: "is too long" },
  ]);

  it("puts each violation on its field, nested paths on the closest field, the rest at the top", () => {
    expect(fieldErrors(error, ["name", "tiers", "rounding_precision"])).toEqual({
      name: "is required; is too long",
      tiers: "tiers[1].multiplier: must be positive",
      rounding_precision: "must be 0 to 6",
      "": "colour: unknown field",
    });
    expect(fieldErrors(error, ["tiers.1.multiplier"])["tiers.1.multiplier"]).toBe("must be positive");
  });

  it("shows a refusal without violations at the top, but not a 5xx or a 401", () => {
    expect(fieldErrors(new ApiError(409, "insufficient_points", "not enough points", "r"), ["amount"])).toEqual({ "": "not enough points" });
    expect(fieldErrors(new ApiError(503, "unavailable", "down", "r"), ["amount"])).toEqual({});
    expect(fieldErrors(new ApiError(401, "unauthenticated", "no", "r"), ["amount"])).toEqual({});
    expect(fieldErrors(new Error("plain"), ["amount"])).toEqual({});
  });
});

describe("helpers", () => {
  it("normalise paths, read violations, Retry-After and ErrorInfo metadata", () => {
    expect(normaliseField("body.events[3].event_type")).toBe("events.3.event_type");
    expect(violationsOf([{ field: "a", description: "b" }, { field: 1 }, null])).toEqual([{ field: "a", description: "b" }]);
    expect(parseRetryAfter("2")).toBe(2);
    expect(parseRetryAfter(new Date(10_000).toUTCString(), 4_000)).toBe(6);
    expect(parseRetryAfter(null)).toBeNull();
    expect(metadataOf([{ reason: "x", metadata: { position: "7", n: 1 } }, { field: "f" }])).toEqual({ position: "7" });
  });
});
