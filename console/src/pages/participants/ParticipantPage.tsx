// Page 5: one participant in one program: identities, enrollments, balance, lots,
// transactions, redemptions, a points adjustment and a merge.
import { useQuery } from "@tanstack/react-query";
import { useParams } from "react-router-dom";
import { api, unwrap } from "../../api/client";
import type { components } from "../../api/schema";
import { when } from "../../lib/ids";
import { ListState, LoadMore, useCursorList } from "../../shell/paging";
import { AdjustmentForm } from "./AdjustmentForm";
import { LotsPanel } from "./LotsPanel";
import { MergeForm } from "./MergeForm";
import { ExaminePanel, RedeemForm, RedemptionHistory } from "./Redemptions";

export type Participant = components["schemas"]["Participant"];
type Enrollment = components["schemas"]["Enrollment"];
type Transaction = components["schemas"]["Transaction"];

/** A participant named for people: its first identity and its id. */
export function participantLabel(p: Participant): string {
  const first = p.identities[0];
  return first ? `${(first.type ?? "").toLowerCase()} ${first.value} (${p.participant_id})` : p.participant_id;
}

export function balanceKey(programId: string, participantId: string) {
  return ["balance", programId, participantId];
}

export function ParticipantPage() {
  const { programId = "", participantId = "" } = useParams();
  const participant = useQuery({
    queryKey: ["participant", participantId],
    queryFn: () => unwrap(api.GET("/v1/participants/{participant_id}", { params: { path: { participant_id: participantId } } })),
  });
  const balance = useQuery({
    queryKey: balanceKey(programId, participantId),
    queryFn: () => unwrap(api.GET("/v1/programs/{program_id}/participants/{participant_id}/balance",
                                  { params: { path: { program_id: programId, participant_id: participantId } } })),
  });
  const enrollments = useCursorList<Enrollment>(["enrollments", participantId], async (token) => {
    const page = await unwrap(api.GET("/v1/participants/{participant_id}/enrollments", {
      params: { path: { participant_id: participantId }, query: { page_size: 50, ...(token ? { page_token: token } : {}) } },
    }));
    return { items: page.enrollments, next: page.next_page_token };
  });
  const transactions = useCursorList<Transaction>(["transactions", programId, participantId], async (token) => {
    const page = await unwrap(api.GET("/v1/programs/{program_id}/participants/{participant_id}/transactions", {
      params: { path: { program_id: programId, participant_id: participantId },
                query: { page_size: 50, ...(token ? { page_token: token } : {}) } },
    }));
    return { items: page.transactions, next: page.next_page_token };
  });
  const p = participant.data;
  return (
    <>
      <h1>Participant</h1>
      <section className="panel" aria-labelledby="profile">
        <h2 id="profile">Profile</h2>
        {participant.isPending ? <p className="muted" role="status">Loading…</p> : null}
        {participant.error ? <p className="form-error" role="alert">{(participant.error as Error).message}</p> : null}
        {p ? (
          <dl className="facts">
            <dt>Participant id</dt><dd><code>{p.participant_id}</code></dd>
            <dt>Identities</dt>
            <dd>{p.identities.map((i) => <div key={`${i.type}:${i.value}`}>{i.type}: <code>{i.value}</code></div>)}</dd>
            <dt>Attributes</dt><dd><pre className="json">{JSON.stringify(p.attributes ?? {}, null, 2)}</pre></dd>
            <dt>Created</dt><dd>{when(p.created_at)}</dd>
          </dl>
        ) : null}
      </section>
      <section className="panel" aria-labelledby="balance">
        <h2 id="balance">Balance in this program</h2>
        {balance.error ? <p className="form-error" role="alert">{(balance.error as Error).message}</p> : null}
        {balance.data ? (
          <dl className="facts" data-testid="balance">
            <dt>Available</dt><dd data-testid="balance-available">{balance.data.available}</dd>
            <dt>Pending</dt><dd data-testid="balance-pending">{balance.data.pending}</dd>
            <dt>Held</dt><dd data-testid="balance-held">{balance.data.held}</dd>
            <dt>Debt</dt><dd data-testid="balance-debt">{balance.data.debt}</dd>
            <dt>Lifetime earned</dt><dd>{balance.data.lifetime_earned}</dd>
            <dt>Tier</dt><dd>{balance.data.tier || "—"}</dd>
            <dt>Expiring</dt>
            <dd data-testid="balance-expiring">{balance.data.expiring.length === 0 ? "Nothing expires." : (
              <ul className="plain">
                {balance.data.expiring.map((x) => <li key={x.expires_on}>{x.points} points on {x.expires_on}</li>)}
              </ul>
            )}</dd>
          </dl>
        ) : balance.isPending ? <p className="muted" role="status">Loading…</p> : null}
      </section>
      <section className="panel" aria-labelledby="adjust">
        <h2 id="adjust">Adjust points</h2>
        <AdjustmentForm programId={programId} participantId={participantId} />
      </section>
      <section className="panel" aria-labelledby="redeem">
        <h2 id="redeem">Redeem points</h2>
        <RedeemForm programId={programId} participantId={participantId} />
      </section>
      <section className="panel" aria-labelledby="examine">
        <h2 id="examine">What this participant can redeem</h2>
        <ExaminePanel programId={programId} participantId={participantId} />
      </section>
      <section className="panel" aria-labelledby="redemptions">
        <h2 id="redemptions">Redemptions</h2>
        <RedemptionHistory programId={programId} participantId={participantId} />
      </section>
      <section className="panel" aria-labelledby="lots">
        <h2 id="lots">Lots</h2>
        <LotsPanel programId={programId} participantId={participantId} />
      </section>
      <section className="panel" aria-labelledby="transactions">
        <h2 id="transactions">Transactions</h2>
        <ListState list={transactions} empty="No transaction yet." />
        {transactions.items.length ? (
          <div className="table-wrap">
            <table>
              <thead><tr><th>When</th><th>Kind</th><th>Amount</th><th>Reason / source</th><th>Rule</th></tr></thead>
              <tbody>
                {transactions.items.map((t) => (
                  <tr key={t.transaction_id}>
                    <td>{when(t.created_at)}</td>
                    <td>{t.kind}</td>
                    <td>{t.amount}</td>
                    <td>{t.reason || <code>{t.source}</code>}</td>
                    <td>{t.rule_id ? `${t.rule_id} v${t.rule_version}` : "—"}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        ) : null}
        <LoadMore list={transactions} />
      </section>
      <section className="panel" aria-labelledby="enrollments">
        <h2 id="enrollments">Enrollments</h2>
        <ListState list={enrollments} empty="Not enrolled in any program." />
        {enrollments.items.length ? (
          <div className="table-wrap">
            <table>
              <thead><tr><th>Program</th><th>Status</th><th>Enrolled</th></tr></thead>
              <tbody>
                {enrollments.items.map((e) => (
                  <tr key={e.program_id}><td><code>{e.program_id}</code></td><td>{e.status}</td><td>{when(e.enrolled_at)}</td></tr>
                ))}
              </tbody>
            </table>
          </div>
        ) : null}
        <LoadMore list={enrollments} />
      </section>
      {p ? (
        <section className="panel" aria-labelledby="merge">
          <h2 id="merge">Merge another participant into this one</h2>
          <MergeForm survivor={p} />
        </section>
      ) : null}
    </>
  );
}
