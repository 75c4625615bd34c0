// A program's rewards catalogue: the list (by status, cursor pages), a new reward, and edits
// of one (price, stock, limits, tiers, active window, status).
import { useMutation, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { useParams } from "react-router-dom";
import { api, unwrap } from "../../api/client";
import { when } from "../../lib/ids";
import { ListState, LoadMore, useCursorList } from "../../shell/paging";
import { useRouteUnavailable } from "../../shell/scopes";
import { createBody, draftOf, EMPTY_REWARD, REWARD_STATUSES, RewardForm, updateBody, type Reward,
         type RewardDraft } from "./RewardForm";

/** The rewards of a program, one cursor page at a time (also used by the redeem form). */
export function useRewards(programId: string, status: string) {
  return useCursorList<Reward>(["rewards", programId, status], async (token) => {
    const page = await unwrap(api.GET("/v1/programs/{program_id}/rewards", {
      params: { path: { program_id: programId },
                query: { page_size: 50, ...(status ? { status: status as Reward["status"] } : {}),
                         ...(token ? { page_token: token } : {}) } },
    }));
    return { items: page.rewards, next: page.next_page_token };
  });
}

function limitText(r: Reward): string {
  const l = r.per_participant_limit;
  return l ? `${l.count}${l.period ? ` per ${l.period}` : " ever"}` : "—";
}

export function RewardsPage() {
  const programId = useParams().programId ?? "";
  const queries = useQueryClient();
  const [status, setStatus] = useState("");
  const [editing, setEditing] = useState<Reward | null>(null);
  const [createCount, setCreateCount] = useState(0);
  const rewards = useRewards(programId, status);
  const cannotCreate = useRouteUnavailable("POST /v1/programs/{program_id}/rewards");
  const cannotEdit = useRouteUnavailable("PATCH /v1/programs/{program_id}/rewards/{reward_id}");
  const refresh = () => void queries.invalidateQueries({ queryKey: ["rewards", programId] });
  const create = useMutation({
    mutationFn: (d: RewardDraft) => unwrap(api.POST("/v1/programs/{program_id}/rewards", {
      params: { path: { program_id: programId } }, body: createBody(d),
    })),
    onSuccess: () => { setCreateCount((n) => n + 1); refresh(); },
  });
  const update = useMutation({
    mutationFn: ({ id, draft }: { id: string; draft: RewardDraft }) => unwrap(api.PATCH("/v1/programs/{program_id}/rewards/{reward_id}", {
      params: { path: { program_id: programId, reward_id: id } }, body: updateBody(draft),
    })),
    onSuccess: (r) => { setEditing(r); refresh(); },
  });
  return (
    <>
      <h1>Rewards</h1>
      <section className="panel" aria-labelledby="catalogue">
        <h2 id="catalogue">Catalogue</h2>
        <div className="row">
          <div className="field">
            <label htmlFor="reward-status-filter">Status</label>
            <select id="reward-status-filter" value={status} onChange={(e) => setStatus(e.target.value)}>
              <option value="">Any</option>
              {REWARD_STATUSES.map((s) => <option key={s} value={s}>{s}</option>)}
            </select>
          </div>
        </div>
        <ListState list={rewards} empty="No reward yet: add one below." />
        {rewards.items.length ? (
          <div className="table-wrap">
            <table aria-label="Rewards">
              <thead><tr><th>Name</th><th>Cost</th><th>Status</th><th>Stock</th><th>Limit</th><th>Tiers</th><th>Active</th><th></th></tr></thead>
              <tbody>
                {rewards.items.map((r) => (
                  <tr key={r.reward_id}>
                    <td>{r.name}<br /><small className="muted"><code>{r.reward_id}</code></small></td>
                    <td>{r.cost_points}</td>
                    <td><span className={`status status-${r.status}`}>{r.status}</span></td>
                    <td>{r.stock ?? "unlimited"}</td>
                    <td>{limitText(r)}</td>
                    <td>{r.eligible_tiers.join(", ") || "all"}</td>
                    <td>{when(r.active_from)} – {when(r.active_to)}</td>
                    <td><button type="button" className="secondary" onClick={() => { update.reset(); setEditing(r); }}
                                aria-label={`Edit ${r.name}`}>Edit</button></td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        ) : null}
        <LoadMore list={rewards} />
      </section>
      {editing ? (
        <section className="panel" aria-labelledby="edit-reward">
          <h2 id="edit-reward">Edit {editing.name}</h2>
          {update.isSuccess ? <p className="ok" role="status">Saved.</p> : null}
          <RewardForm key={`${editing.reward_id}-${editing.updated_at ?? ""}`} initial={draftOf(editing)}
                      submitLabel="Save reward" busy={update.isPending} error={update.error} disabled={cannotEdit}
                      onSubmit={(draft) => update.mutate({ id: editing.reward_id, draft })} />
          <button type="button" className="link" onClick={() => setEditing(null)}>Close</button>
        </section>
      ) : null}
      <section className="panel" aria-labelledby="new-reward">
        <h2 id="new-reward">New reward</h2>
        {create.isSuccess ? <p className="ok" role="status">Created {create.data.name}.</p> : null}
        <RewardForm key={createCount} initial={EMPTY_REWARD} submitLabel="Create reward" busy={create.isPending}
                    error={create.error} disabled={cannotCreate} onSubmit={(d) => create.mutate(d)} />
      </section>
    </>
  );
}
