// A program's segments with their counts, and the members of the one chosen (cursor pages).
import { useQuery } from "@tanstack/react-query";
import { useState } from "react";
import { Link } from "react-router-dom";
import { api, unwrap } from "../../api/client";
import type { components } from "../../api/schema";
import { ListState, LoadMore, useCursorList } from "../../shell/paging";

type Member = components["schemas"]["ParticipantStats"];

export function SegmentsPanel({ programId }: { programId: string }) {
  const [chosen, setChosen] = useState("");
  const segments = useQuery({
    queryKey: ["segments", programId],
    queryFn: () => unwrap(api.GET("/v1/programs/{program_id}/segments", { params: { path: { program_id: programId } } })),
  });
  const members = useCursorList<Member>(["segment-members", programId, chosen], async (token) => {
    const page = await unwrap(api.GET("/v1/programs/{program_id}/segments/{segment}/members", {
      params: { path: { program_id: programId, segment: chosen }, query: { page_size: 50, ...(token ? { page_token: token } : {}) } },
    }));
    return { items: page.members, next: page.next_page_token };
  }, { enabled: Boolean(chosen) });
  return (
    <section className="panel" aria-labelledby="segments">
      <h2 id="segments">Segments</h2>
      {segments.isPending ? <p className="muted" role="status">Loading…</p> : null}
      {segments.error ? <p className="form-error" role="alert">{(segments.error as Error).message}</p> : null}
      {segments.data ? (
        <div className="table-wrap">
          <table>
            <thead><tr><th>Segment</th><th>Description</th><th>Participants</th><th /></tr></thead>
            <tbody>
              {segments.data.segments.map((s) => (
                <tr key={s.name} className={s.name === chosen ? "selected" : undefined}>
                  <td>{s.name}</td>
                  <td>{s.description}</td>
                  <td>{s.count}</td>
                  <td><button type="button" className="link" onClick={() => setChosen(s.name)}>Members of {s.name}</button></td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
      {chosen ? (
        <>
          <h3>Members of {chosen}</h3>
          <ListState list={members} empty="Nobody is in this segment." />
          {members.items.length ? (
            <div className="table-wrap">
              <table>
                <thead><tr><th>Participant</th><th>Events</th><th>Points</th></tr></thead>
                <tbody>
                  {members.items.map((m) => (
                    <tr key={m.participant_id}>
                      <td><Link to={`/programs/${programId}/participants/${m.participant_id}`}>{m.participant_id}</Link></td>
                      <td>{m.events}</td>
                      <td>{m.points}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          ) : null}
          <LoadMore list={members} />
        </>
      ) : null}
    </section>
  );
}
