// The lots of a participant's points (what each credit has left, when it activates and
// expires), by status, one cursor page at a time.
import { useState } from "react";
import { api, unwrap } from "../../api/client";
import type { components } from "../../api/schema";
import { when } from "../../lib/ids";
import { ListState, LoadMore, useCursorList } from "../../shell/paging";

type Lot = components["schemas"]["Lot"];
type LotStatus = components["schemas"]["LotStatus"];
const LOT_STATUSES: LotStatus[] = ["PENDING", "ACTIVE", "EXHAUSTED", "EXPIRED", "CANCELLED"];

export function LotsPanel({ programId, participantId }: { programId: string; participantId: string }) {
  const [status, setStatus] = useState("");
  const lots = useCursorList<Lot>(["lots", programId, participantId, status], async (token) => {
    const page = await unwrap(api.GET("/v1/programs/{program_id}/participants/{participant_id}/lots", {
      params: { path: { program_id: programId, participant_id: participantId },
                query: { page_size: 50, ...(status ? { status: status as LotStatus } : {}),
                         ...(token ? { page_token: token } : {}) } },
    }));
    return { items: page.lots, next: page.next_page_token };
  });
  return (
    <>
      <div className="row">
        <div className="field">
          <label htmlFor="lot-status-filter">Lot status</label>
          <select id="lot-status-filter" value={status} onChange={(e) => setStatus(e.target.value)}>
            <option value="">Any</option>
            {LOT_STATUSES.map((s) => <option key={s} value={s}>{s}</option>)}
          </select>
        </div>
      </div>
      <ListState list={lots} empty="No lot with this status." />
      {lots.items.length ? (
        <div className="table-wrap">
          <table aria-label="Lots">
            <thead><tr><th>Earned</th><th>Status</th><th>Original</th><th>Remaining</th><th>Activates</th><th>Expires</th><th>Event</th></tr></thead>
            <tbody>
              {lots.items.map((l) => (
                <tr key={l.lot_id}>
                  <td>{when(l.earned_at)}</td>
                  <td><span className={`status status-${l.status}`}>{l.status}</span></td>
                  <td>{l.original}</td>
                  <td>{l.remaining}</td>
                  <td>{when(l.activates_at)}</td>
                  <td>{l.expires_at ? when(l.expires_at) : "never"}</td>
                  <td>{l.event_id ? <code>{l.event_id}</code> : "—"}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
      <LoadMore list={lots} />
    </>
  );
}
