// Inline validation while the operator types: after a pause the draft goes to rules:validate,
// which answers every reason a save would refuse it, each with the place in the expression.
import { useEffect, useState } from "react";
import { api, unwrap } from "../../api/client";
import type { ExpressionPosition, FieldViolation } from "../../api/errors";
import { createBody, type RuleDraft } from "./draft";

export const VALIDATE_AFTER_MS = 400;

export interface Violations {
  violations: FieldViolation[];
  /** Where in the expression, by field (condition, formula), when the API locates it. */
  positions: Record<string, ExpressionPosition>;
}

export type Validation = { state: "idle" | "checking" | "valid" } | ({ state: "invalid" } & Violations);

export function useDraftValidation(programId: string, draft: RuleDraft): Validation {
  const [result, setResult] = useState<Validation>({ state: "idle" });
  const body = JSON.stringify({ ...createBody(draft), name: draft.name || "draft" });
  useEffect(() => {
    if (!draft.formula.trim()) {
      setResult({ state: "idle" });
      return;
    }
    let current = true;
    const timer = setTimeout(() => {
      setResult({ state: "checking" });
      // The name is checked on save; a blank one while typing would only add noise.
      unwrap(api.POST("/v1/programs/{program_id}/rules:validate", {
        params: { path: { program_id: programId } },
        body: { ...JSON.parse(body), program_id: programId },
      })).then(
        (answer) => {
          if (!current) return;
          if (answer.valid) {
            setResult({ state: "valid" });
            return;
          }
          const positions: Record<string, ExpressionPosition> = {};
          for (const v of answer.violations) {
            if (v.position && !positions[v.field]) positions[v.field] = v.position;
          }
          setResult({ state: "invalid", violations: answer.violations, positions });
        },
        () => current && setResult({ state: "idle" }));
    }, VALIDATE_AFTER_MS);
    return () => {
      current = false;
      clearTimeout(timer);
    };
    // The serialised body stands for the draft: a check runs when what would be saved changes.
  }, [programId, body]);
  return result;
}
