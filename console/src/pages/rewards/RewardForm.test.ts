import { describe, expect, it } from "vitest";
import { ApiError } from "../../api/errors";
import { shortfallText } from "../participants/Redemptions";
import { createBody, EMPTY_REWARD, updateBody } from "./RewardForm";

describe("reward bodies", () => {
  const draft = { ...EMPTY_REWARD, name: "Mug", cost: " 40 ", stock: "3", limitCount: "2", limitPeriod: "P1M",
                  tiers: "gold, silver,", status: "ACTIVE" as const };

  it("creates with the optional fields only when given", () => {
    expect(createBody(draft)).toEqual({
      name: "Mug", description: "", cost_points: "40", stock: 3, per_participant_limit: { count: 2, period: "P1M" },
      eligible_tiers: ["gold", "silver"], active_from: null, active_to: null, status: "ACTIVE",
    });
    expect(createBody({ ...draft, stock: "", limitCount: "" })).toMatchObject({ stock: null, per_participant_limit: null });
  });

  it("clears in an edit what was emptied", () => {
    const body = updateBody({ ...draft, stock: "", limitCount: "", tiers: "" });
    expect(body).toMatchObject({ clear_stock: true, clear_per_participant_limit: true, clear_eligible_tiers: true,
                                 clear_active_from: true, clear_active_to: true });
    expect(body).not.toHaveProperty("stock");
    expect(updateBody({ ...draft, activeTo: "2027-01-31T12:00" })).toMatchObject({
      stock: 3, eligible_tiers: ["gold", "silver"], active_to: new Date("2027-01-31T12:00").toISOString() });
  });
});

describe("shortfallText", () => {
  it("names the shortfall of a 409 insufficient_points, nothing else", () => {
    const refused = new ApiError(409, "aborted", "insufficient points", "r1", [], null,
                                 { available: "20", required: "50", shortfall: "30" });
    expect(shortfallText(refused)).toBe("Not enough points: short by 30 (available 20, required 50).");
    expect(shortfallText(new ApiError(409, "aborted", "invalid_state", "r2"))).toBe("");
    expect(shortfallText(new Error("x"))).toBe("");
  });
});
