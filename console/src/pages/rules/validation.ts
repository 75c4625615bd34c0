// Inline validation while the operator types: the draft goes to rules:simulate (which
// validates draft rules as a save would) after a pause, and its 400 is shown where it points.
import { useEffect, useState } from "react";
import { api, unwrap } from "../../api/client";
import { ApiError, underPrefix } from "../../api/errors";
import { createBody, type RuleDraft } from "./draft";

export const VALIDATE_AFTER_MS = 400;

export type Validation =
  | { state: "idle" | "checking" | "valid" }
  | { state: "invalid"; error: ApiError };

export function useDraftValidation(programId: string, draft: RuleDraft): Validation {
  const [result, setResult] = useState<Validation>({ state: "idle" });
  const { condition, formula, event_type } = draft;
  useEffect(() => {
    if (!formula.trim()) {
      setResult({ state: "idle" });
      return;
    }
    let current = true;
    const timer = setTimeout(() => {
      setResult({ state: "checking" });
      // The name is not what is being checked here; a blank one would only add noise.
      const rule = { ...createBody(draft), name: draft.name || "draft", program_id: programId };
      unwrap(api.POST("/v1/programs/{program_id}/rules:simulate", {
        params: { path: { program_id: programId } },
        body: { event_type: event_type || "sample", event_data: {}, draft_rules: [rule] },
      })).then(
        () => current && setResult({ state: "valid" }),
        (error: unknown) => {
          if (!current) return;
          if (error instanceof ApiError && error.status === 400) {
            setResult({ state: "invalid", error: underPrefix(error, "draft_rules[0]") });
          } else {
            setResult({ state: "idle" });
          }
        });
    }, VALIDATE_AFTER_MS);
    return () => {
      current = false;
      clearTimeout(timer);
    };
    // Only the expressions, their event type and the caps trigger a check; the rest is checked on save.
  }, [programId, condition, formula, event_type, JSON.stringify(draft.caps)]);
  return result;
}
