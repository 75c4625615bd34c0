// Spending points: the redeem form, the rewards the participant can redeem (and why not), and
// the redemption history with capture, cancel and refund.
import { useMutation, useQuery } from "@tanstack/react-query";
import { useState } from "react";
import { api, unwrap } from "../../api/client";
import { ApiError, fieldErrors } from "../../api/errors";
import type { components } from "../../api/schema";
import { newIdempotencyKey, when } from "../../lib/ids";
import { Field, FormErrors } from "../../shell/forms";
import { ListState, LoadMore, useCursorList } from "../../shell/paging";
import { useRouteUnavailable } from "../../shell/scopes";
import { useRewards } from "../rewards/RewardsPage";
import { refusedByApi, useRefreshBank } from "./bank";

type Redemption = components["schemas"]["Redemption"];
type RedemptionState = components["schemas"]["RedemptionState"];
const STATES: RedemptionState[] = ["HELD", "CAPTURED", "CANCELLED", "EXPIRED", "PARTIALLY_REFUNDED", "REFUNDED"];
const REDEEM_FIELDS = ["reward_id", "points", "capture", "hold_ttl", "external_ref", "dry_run", "idempotency_key"];

interface Who {
  programId: string;
  participantId: string;
}

/** "Short by N points" of a 409 insufficient_points (its available, required and shortfall). */
export function shortfallText(error: unknown): string {
  if (!(error instanceof ApiError) || error.status !== 409 || !error.metadata.shortfall) return "";
  const { shortfall, available, required } = error.metadata;
  return `Not enough points: short by ${shortfall} (available ${available ?? "?"}, required ${required ?? "?"}).`;
}

function outcome(r: Redemption): string {
  const what = r.dry_run ? "Dry run, nothing stored" : r.deduplicated ? "Already recorded" : "Recorded";
  return `${what}: ${r.points} points, ${r.state}${r.hold_expires_at && r.state === "HELD" ? ` until ${when(r.hold_expires_at)}` : ""}.`;
}

/** A redemption. Its idempotency key is made once per form and kept until the API has
 * redeemed or refused, so a double click or a retry after a lost answer redeems once. */
export function RedeemForm({ programId, participantId }: Who) {
  const refresh = useRefreshBank(programId, participantId);
  const rewards = useRewards(programId, "ACTIVE");
  const [mode, setMode] = useState<"reward" | "points">("reward");
  const [rewardId, setRewardId] = useState("");
  const [points, setPoints] = useState("");
  const [capture, setCapture] = useState(false);
  const [ttl, setTtl] = useState("");
  const [externalRef, setExternalRef] = useState("");
  const [dryRun, setDryRun] = useState(false);
  const [key, setKey] = useState(() => newIdempotencyKey("redeem"));
  const [done, setDone] = useState("");
  const cannotRedeem = useRouteUnavailable("POST /v1/programs/{program_id}/participants/{participant_id}/redemptions");
  // The first active reward is chosen until the operator picks another.
  const chosen = rewardId || rewards.items[0]?.reward_id || "";
  const redeem = useMutation({
    mutationFn: () => unwrap(api.POST("/v1/programs/{program_id}/participants/{participant_id}/redemptions", {
      params: { path: { program_id: programId, participant_id: participantId } },
      body: {
        idempotency_key: key, capture, dry_run: dryRun, external_ref: externalRef,
        ...(mode === "reward" ? { reward_id: chosen } : { points: points.trim() }),
        ...(ttl.trim() && !capture ? { hold_ttl: `${ttl.trim()}s` } : {}),
      },
    })),
    onSuccess: (r) => {
      setDone(outcome(r));
      if (!r.dry_run) {
        setKey(newIdempotencyKey("redeem"));
        refresh();
      }
    },
    onError: (error) => { if (refusedByApi(error)) setKey(newIdempotencyKey("redeem")); },
  });
  const errors = fieldErrors(redeem.error, REDEEM_FIELDS);
  const shortfall = shortfallText(redeem.error);
  return (
    <form className="form" aria-label="Redeem" onSubmit={(e) => { e.preventDefault(); if (!redeem.isPending) { setDone(""); redeem.mutate(); } }}>
      {cannotRedeem ? <p className="unavailable">{cannotRedeem}</p> : null}
      {shortfall ? <p className="form-error" role="alert" data-testid="redeem-shortfall">{shortfall}</p> : <FormErrors errors={errors} />}
      <fieldset className="row">
        <legend>Redeem</legend>
        <label className="check"><input type="radio" name="redeem-mode" checked={mode === "reward"} onChange={() => setMode("reward")} /> A reward</label>
        <label className="check"><input type="radio" name="redeem-mode" checked={mode === "points"} onChange={() => setMode("points")} /> Points</label>
      </fieldset>
      <div className="row">
        {mode === "reward" ? (
          <Field label="Reward" error={errors.reward_id} hint={rewards.items.length ? undefined : "No active reward in this program"}>
            {(p) => (
              <select {...p} value={chosen} onChange={(e) => setRewardId(e.target.value)}>
                {rewards.items.map((r) => <option key={r.reward_id} value={r.reward_id}>{r.name} ({r.cost_points} points)</option>)}
              </select>
            )}
          </Field>
        ) : (
          <Field label="Points to redeem" error={errors.points} hint="An exact decimal above 0">
            {(p) => <input {...p} inputMode="decimal" value={points} onChange={(e) => setPoints(e.target.value)} />}
          </Field>
        )}
        <Field label="Hold for (seconds)" error={errors.hold_ttl} hint="Empty: 15 minutes">
          {(p) => <input {...p} inputMode="numeric" value={ttl} disabled={capture} onChange={(e) => setTtl(e.target.value)} />}
        </Field>
        <Field label="External reference" error={errors.external_ref} hint="An order id, optional">
          {(p) => <input {...p} value={externalRef} onChange={(e) => setExternalRef(e.target.value)} />}
        </Field>
      </div>
      <div className="row">
        <label className="check"><input type="checkbox" checked={capture} onChange={(e) => setCapture(e.target.checked)} /> Capture at once (no hold)</label>
        <label className="check"><input type="checkbox" checked={dryRun} onChange={(e) => setDryRun(e.target.checked)} /> Dry run (store nothing)</label>
      </div>
      <div className="actions">
        <button type="submit" disabled={redeem.isPending || Boolean(cannotRedeem)}>
          {redeem.isPending ? "Redeeming…" : dryRun ? "Check redemption" : capture ? "Redeem now" : "Hold points"}
        </button>
      </div>
      {done ? <p className="ok" role="status" data-testid="redeem-outcome">{done}</p> : null}
    </form>
  );
}

/** Each active reward as available, or unavailable with its reasons. */
export function ExaminePanel({ programId, participantId }: Who) {
  const examine = useQuery({
    queryKey: ["examine", programId, participantId],
    queryFn: () => unwrap(api.GET("/v1/programs/{program_id}/participants/{participant_id}/rewards:examine", {
      params: { path: { program_id: programId, participant_id: participantId } },
    })),
  });
  if (examine.isPending) return <p className="muted" role="status">Loading…</p>;
  if (examine.error) return <p className="form-error" role="alert">{examine.error.message}</p>;
  const list = examine.data.rewards;
  if (list.length === 0) return <p className="muted">No active reward in this program.</p>;
  return (
    <div className="table-wrap">
      <table aria-label="Rewards for this participant">
        <thead><tr><th>Reward</th><th>Cost</th><th>Availability</th><th>Why not</th></tr></thead>
        <tbody>
          {list.map((x, i) => (
            <tr key={x.reward?.reward_id ?? i}>
              <td>{x.reward?.name ?? "—"}</td>
              <td>{x.reward?.cost_points ?? "—"}</td>
              <td><span className={`status status-${x.availability}`}>{x.availability}</span></td>
              <td>{x.reasons.map((r) => (
                <div key={r.code}><code>{r.code}</code>{r.code === "insufficient_points" ? ` (short by ${r.shortfall})` : ""}{r.message ? `: ${r.message}` : ""}</div>
              ))}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** Capture (optionally fewer points) and cancel of a hold; refund (optionally part) of a capture. */
function RedemptionActions({ r, refresh }: { r: Redemption; refresh: () => void }) {
  const [points, setPoints] = useState("");
  // One refund key per form, kept until answered, so a double click refunds once.
  const [refundKey, setRefundKey] = useState(() => newIdempotencyKey("refund"));
  const cannotCapture = useRouteUnavailable("POST /v1/redemptions/{redemption_id}:capture");
  const cannotCancel = useRouteUnavailable("POST /v1/redemptions/{redemption_id}:cancel");
  const cannotRefund = useRouteUnavailable("POST /v1/redemptions/{redemption_id}:refund");
  const path = { params: { path: { redemption_id: r.redemption_id } } };
  const amount = points.trim() ? { points: points.trim() } : {};
  const done = () => { setPoints(""); refresh(); };
  const capture = useMutation({
    mutationFn: () => unwrap(api.POST("/v1/redemptions/{redemption_id}:capture", { ...path, body: amount })),
    onSuccess: done,
  });
  const cancel = useMutation({
    mutationFn: () => unwrap(api.POST("/v1/redemptions/{redemption_id}:cancel", { ...path, body: {} })),
    onSuccess: done,
  });
  const refund = useMutation({
    mutationFn: () => unwrap(api.POST("/v1/redemptions/{redemption_id}:refund", { ...path, body: { idempotency_key: refundKey, ...amount } })),
    onSuccess: () => { setRefundKey(newIdempotencyKey("refund")); done(); },
    onError: (error) => { if (refusedByApi(error)) setRefundKey(newIdempotencyKey("refund")); },
  });
  const held = r.state === "HELD";
  const refundable = r.state === "CAPTURED" || r.state === "PARTIALLY_REFUNDED";
  if (!held && !refundable) return <span className="muted">—</span>;
  const busy = capture.isPending || cancel.isPending || refund.isPending;
  const error = capture.error ?? cancel.error ?? refund.error;
  const why = held ? cannotCapture || cannotCancel : cannotRefund;
  return (
    <div className="row">
      <div className="field">
        <label htmlFor={`points-${r.redemption_id}`}>{held ? "Capture points (empty: all)" : "Refund points (empty: all)"}</label>
        <input id={`points-${r.redemption_id}`} inputMode="decimal" value={points} onChange={(e) => setPoints(e.target.value)} />
      </div>
      {held ? (
        <>
          <button type="button" disabled={busy || Boolean(cannotCapture)} title={cannotCapture || undefined} onClick={() => capture.mutate()}>Capture</button>
          <button type="button" className="secondary" disabled={busy || Boolean(cannotCancel)} title={cannotCancel || undefined} onClick={() => cancel.mutate()}>Cancel hold</button>
        </>
      ) : (
        <button type="button" disabled={busy || Boolean(cannotRefund)} title={cannotRefund || undefined} onClick={() => refund.mutate()}>Refund</button>
      )}
      {why ? <small className="unavailable">{why}</small> : null}
      {error ? <p className="form-error" role="alert">{error.message}</p> : null}
    </div>
  );
}

/** The participant's redemptions, by state, one cursor page at a time, with their actions. */
export function RedemptionHistory({ programId, participantId }: Who) {
  const refresh = useRefreshBank(programId, participantId);
  const [state, setState] = useState("");
  const list = useCursorList<Redemption>(["redemptions", programId, participantId, state], async (token) => {
    const page = await unwrap(api.GET("/v1/programs/{program_id}/participants/{participant_id}/redemptions", {
      params: { path: { program_id: programId, participant_id: participantId },
                query: { page_size: 50, ...(state ? { state: state as RedemptionState } : {}),
                         ...(token ? { page_token: token } : {}) } },
    }));
    return { items: page.redemptions, next: page.next_page_token };
  });
  return (
    <>
      <div className="row">
        <div className="field">
          <label htmlFor="redemption-state-filter">Redemption state</label>
          <select id="redemption-state-filter" value={state} onChange={(e) => setState(e.target.value)}>
            <option value="">Any</option>
            {STATES.map((s) => <option key={s} value={s}>{s}</option>)}
          </select>
        </div>
      </div>
      <ListState list={list} empty={state ? `No ${state} redemption.` : "No redemption yet."} />
      {list.items.length ? (
        <div className="table-wrap">
          <table aria-label="Redemptions">
            <thead><tr><th>When</th><th>State</th><th>Points</th><th>Captured</th><th>Refunded</th><th>Reward / ref</th><th>Actions</th></tr></thead>
            <tbody>
              {list.items.map((r) => (
                <tr key={r.redemption_id} data-testid="redemption-row">
                  <td>{when(r.created_at)}</td>
                  <td><span className={`status status-${r.state}`} data-testid="redemption-state">{r.state}</span>
                    {r.state === "HELD" ? <><br /><small className="muted">until {when(r.hold_expires_at)}</small></> : null}</td>
                  <td>{r.points}</td>
                  <td>{r.captured_points}</td>
                  <td data-testid="redemption-refunded">{r.refunded_points}</td>
                  <td>{r.reward_id ? <code>{r.reward_id}</code> : "points"}{r.external_ref ? <> · {r.external_ref}</> : null}</td>
                  <td><RedemptionActions r={r} refresh={refresh} /></td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
      <LoadMore list={list} />
    </>
  );
}
