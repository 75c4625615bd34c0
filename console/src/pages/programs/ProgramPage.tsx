import { useMutation, useQueryClient } from "@tanstack/react-query";
import { Link, useParams } from "react-router-dom";
import { api, unwrap } from "../../api/client";
import { useRouteUnavailable } from "../../shell/scopes";
import { bodyOf, draftOf, ProgramForm, type ProgramDraft } from "./ProgramForm";
import { useProgram } from "./queries";

export function ProgramPage() {
  const programId = useParams().programId!;
  const program = useProgram(programId);
  const queries = useQueryClient();
  const save = useMutation({
    mutationFn: (d: ProgramDraft) => {
      const body = bodyOf(d);
      return unwrap(api.PATCH("/v1/programs/{program_id}", {
        params: { path: { program_id: programId } },
        body: { ...body, clear_tiers: body.tiers.length === 0 },
      }));
    },
    onSuccess: (p) => {
      queries.setQueryData(["program", programId], p);
      void queries.invalidateQueries({ queryKey: ["programs"] });
    },
  });
  const cannotWrite = useRouteUnavailable("PATCH /v1/programs/{program_id}");
  if (program.isPending) return <p className="muted" role="status">Loading…</p>;
  if (program.error) return <p className="form-error" role="alert">{program.error.message}</p>;
  const p = program.data;
  return (
    <>
      <h1>{p.name}</h1>
      <p className="muted">Program <code>{p.program_id}</code> · <Link to="rules">Rules</Link> ·{" "}
        <Link to="event-types">Event types</Link> · <Link to={`/activity?program_id=${p.program_id}`}>Activity</Link></p>
      <section className="panel" aria-labelledby="program-settings">
        <h2 id="program-settings">Settings</h2>
        {save.isSuccess ? <p className="ok" role="status">Saved.</p> : null}
        <ProgramForm key={p.updated_at ?? ""} initial={draftOf(p)} submitLabel="Save program" busy={save.isPending}
                     error={save.error} disabled={cannotWrite} onSubmit={(d) => save.mutate(d)} />
      </section>
    </>
  );
}
