import { useQuery } from "@tanstack/react-query";
import { api, unwrap } from "../../api/client";
import type { components } from "../../api/schema";

export type Rule = components["schemas"]["Rule"];
export type RuleCaps = components["schemas"]["RuleCaps"];
export type RuleEvaluation = components["schemas"]["RuleEvaluation"];

export function useRules(programId: string) {
  return useQuery({
    queryKey: ["rules", programId],
    queryFn: async () => {
      const answer = await unwrap(api.GET("/v1/programs/{program_id}/rules", { params: { path: { program_id: programId } } }));
      return [...answer.rules].sort((a, b) => a.order - b.order);
    },
  });
}

export function useRuleVersions(programId: string, ruleId: string) {
  return useQuery({
    queryKey: ["rule-versions", programId, ruleId],
    queryFn: async () => {
      const answer = await unwrap(api.GET("/v1/programs/{program_id}/rules/{rule_id}/versions", {
        params: { path: { program_id: programId, rule_id: ruleId } },
      }));
      return [...answer.versions].sort((a, b) => a.version - b.version);
    },
  });
}
