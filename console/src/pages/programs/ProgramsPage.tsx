import { useMutation, useQueryClient } from "@tanstack/react-query";
import { Link, useNavigate } from "react-router-dom";
import { api, unwrap } from "../../api/client";
import { ListState, LoadMore, useCursorList } from "../../shell/paging";
import { useRouteUnavailable } from "../../shell/scopes";
import { bodyOf, draftOf, ProgramForm, type ProgramDraft } from "./ProgramForm";
import type { Program } from "./queries";

export function ProgramsPage() {
  const navigate = useNavigate();
  const queries = useQueryClient();
  const programs = useCursorList<Program>(["programs"], async (token) => {
    const page = await unwrap(api.GET("/v1/programs", { params: { query: { page_size: 50, ...(token ? { page_token: token } : {}) } } }));
    return { items: page.programs, next: page.next_page_token };
  });
  const create = useMutation({
    mutationFn: (d: ProgramDraft) => unwrap(api.POST("/v1/programs", { body: bodyOf(d) })),
    onSuccess: (program) => {
      void queries.invalidateQueries({ queryKey: ["programs"] });
      navigate(`/programs/${program.program_id}`);
    },
  });
  const cannotWrite = useRouteUnavailable("POST /v1/programs");
  return (
    <>
      <h1>Programs</h1>
      <section className="panel" aria-labelledby="programs-list">
        <h2 id="programs-list">Your programs</h2>
        <ListState list={programs} empty="No program yet: create the first one below." />
        {programs.items.length ? (
          <div className="table-wrap">
            <table>
              <thead><tr><th>Name</th><th>Tiers</th><th>Unknown participant</th><th>Event types</th><th>Created</th></tr></thead>
              <tbody>
                {programs.items.map((p) => (
                  <tr key={p.program_id}>
                    <td><Link to={`/programs/${p.program_id}`}>{p.name}</Link></td>
                    <td>{p.tiers.map((t) => t.name).join(", ") || "—"}</td>
                    <td>{p.on_unknown_participant}</td>
                    <td>{p.event_type_policy}</td>
                    <td>{p.created_at ? new Date(p.created_at).toLocaleString() : ""}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        ) : null}
        <LoadMore list={programs} />
      </section>
      <section className="panel" aria-labelledby="new-program">
        <h2 id="new-program">New program</h2>
        <ProgramForm initial={draftOf()} submitLabel="Create program" busy={create.isPending}
                     error={create.error} disabled={cannotWrite} onSubmit={(d) => create.mutate(d)} />
      </section>
    </>
  );
}
