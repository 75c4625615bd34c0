import { useQuery } from "@tanstack/react-query";
import { api, unwrap } from "../../api/client";
import type { components } from "../../api/schema";

export type Program = components["schemas"]["Program"];

export function programQuery(programId: string) {
  return {
    queryKey: ["program", programId],
    queryFn: () => unwrap(api.GET("/v1/programs/{program_id}", { params: { path: { program_id: programId } } })),
  };
}

export function useProgram(programId: string) {
  return useQuery(programQuery(programId));
}

/** The program's name for the nav; undefined while unknown. */
export function useProgramName(programId: string | undefined): string | undefined {
  const query = useQuery({ ...programQuery(programId ?? ""), enabled: Boolean(programId) });
  return query.data?.name;
}
