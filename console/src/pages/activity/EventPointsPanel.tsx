// Taking an event's points back: a reversal (a ratio or a refunded amount), and for points
// still pending, early activation or cancellation. Each is shown as unavailable, with the
// reason, when the event's state or the key's scopes do not allow it.
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { api, unwrap } from "../../api/client";
import { fieldErrors } from "../../api/errors";
import type { components } from "../../api/schema";
import { newIdempotencyKey } from "../../lib/ids";
import { Field, FormErrors } from "../../shell/forms";
import { useMissingScope, useRouteUnavailable } from "../../shell/scopes";
import { BANK_LISTS, refusedByApi } from "../participants/bank";

type Event = components["schemas"]["Event"];
const REVERSAL_FIELDS = ["ratio", "amount", "reason", "idempotency_key"];

/** Why the event cannot give points back ("" when it can): it must be completed with points. */
function stateReason(e: Event): string {
  if (e.status !== "COMPLETED") return `Unavailable: the event is ${e.status}, not COMPLETED.`;
  return "";
}

/** Refreshes the event and the balance, lots and transactions of whoever got its points. */
function useRefreshEvent(e: Event): () => void {
  const queries = useQueryClient();
  return () => {
    void queries.invalidateQueries({ queryKey: ["event", e.event_id] });
    for (const list of BANK_LISTS) {
      void queries.invalidateQueries({ queryKey: [list, e.program_id] });
    }
  };
}

/** A reversal of the event's points. Its idempotency key is made once per form and kept
 * until the API has answered, so a double click reverses once. */
function ReversalForm({ e, why }: { e: Event; why: string }) {
  const refresh = useRefreshEvent(e);
  const [mode, setMode] = useState<"ratio" | "amount">("ratio");
  const [value, setValue] = useState("");
  const [reason, setReason] = useState("");
  const [key, setKey] = useState(() => newIdempotencyKey("reversal"));
  const [done, setDone] = useState("");
  const reverse = useMutation({
    mutationFn: () => unwrap(api.POST("/v1/events/{event_id}/reversals", {
      params: { path: { event_id: e.event_id } },
      body: { idempotency_key: key, reason, ...(mode === "ratio" ? { ratio: value.trim() } : { amount: value.trim() }) },
    })),
    onSuccess: (r) => {
      setDone(`${r.deduplicated ? "Already reversed" : "Reversed"}: ${r.points} points (${r.reversed_ratio} of the event so far)` +
              `${Number(r.unrecovered) ? `; ${r.unrecovered} could not be recovered` : ""}.`);
      setValue("");
      setReason("");
      setKey(newIdempotencyKey("reversal"));
      refresh();
    },
    onError: (error) => { if (refusedByApi(error)) setKey(newIdempotencyKey("reversal")); },
  });
  const errors = fieldErrors(reverse.error, REVERSAL_FIELDS);
  return (
    <form className="form" aria-label="Reverse" onSubmit={(ev) => { ev.preventDefault(); if (!reverse.isPending) { setDone(""); reverse.mutate(); } }}>
      {why ? <p className="unavailable" data-testid="reverse-unavailable">{why}</p> : null}
      <FormErrors errors={errors} />
      <fieldset className="row">
        <legend>Take back</legend>
        <label className="check"><input type="radio" name="reverse-mode" checked={mode === "ratio"} onChange={() => setMode("ratio")} /> A share (ratio)</label>
        <label className="check"><input type="radio" name="reverse-mode" checked={mode === "amount"} onChange={() => setMode("amount")} /> A refunded amount</label>
      </fieldset>
      <div className="row">
        {mode === "ratio" ? (
          <Field label="Ratio" error={errors.ratio} hint="Above 0, at most 1 (0.5 = half)">
            {(p) => <input {...p} inputMode="decimal" value={value} onChange={(ev) => setValue(ev.target.value)} />}
          </Field>
        ) : (
          <Field label="Refunded amount" error={errors.amount} hint="Of the program's monetary field">
            {(p) => <input {...p} inputMode="decimal" value={value} onChange={(ev) => setValue(ev.target.value)} />}
          </Field>
        )}
        <Field label="Reversal reason" error={errors.reason}>
          {(p) => <input {...p} value={reason} onChange={(ev) => setReason(ev.target.value)} />}
        </Field>
      </div>
      <div className="actions">
        <button type="submit" disabled={reverse.isPending || Boolean(why)}>{reverse.isPending ? "Reversing…" : "Reverse"}</button>
      </div>
      {done ? <p className="ok" role="status" data-testid="reverse-outcome">{done}</p> : null}
    </form>
  );
}

/** The event's pending points (its PENDING lots); null while unknown. */
function usePendingPoints(e: Event): number | null {
  const participantId = e.recipient_id || e.participant_id;
  const mayRead = !useMissingScope("participants:read");
  const lots = useQuery({
    queryKey: ["lots", e.program_id, participantId, "PENDING", "event", e.event_id],
    enabled: Boolean(participantId && mayRead && e.status === "COMPLETED"),
    queryFn: async () => {
      // Pending lots are few (a return window's worth); every page is read to find the event's.
      let total = 0;
      let token = "";
      do {
        const page = await unwrap(api.GET("/v1/programs/{program_id}/participants/{participant_id}/lots", {
          params: { path: { program_id: e.program_id, participant_id: participantId ?? "" },
                    query: { status: "PENDING", page_size: 200, ...(token ? { page_token: token } : {}) } },
        }));
        for (const lot of page.lots) if (lot.event_id === e.event_id) total += Number(lot.remaining);
        token = page.next_page_token;
      } while (token);
      return total;
    },
  });
  return lots.data ?? null;
}

function PendingActions({ e, stateWhy }: { e: Event; stateWhy: string }) {
  const refresh = useRefreshEvent(e);
  const pending = usePendingPoints(e);
  const cannotActivate = useRouteUnavailable("POST /v1/events/{event_id}:activate-points");
  const cannotCancel = useRouteUnavailable("POST /v1/events/{event_id}:cancel-points");
  const [done, setDone] = useState("");
  const path = { params: { path: { event_id: e.event_id } } };
  const activate = useMutation({
    mutationFn: () => unwrap(api.POST("/v1/events/{event_id}:activate-points", { ...path, body: {} })),
    onSuccess: () => { setDone("Points activated."); refresh(); },
  });
  const cancel = useMutation({
    mutationFn: () => unwrap(api.POST("/v1/events/{event_id}:cancel-points", { ...path, body: { reason: "cancelled in the console" } })),
    onSuccess: () => { setDone("Pending points cancelled."); refresh(); },
  });
  const noPending = pending === 0 ? "Unavailable: the event has no pending points." : "";
  const activateWhy = stateWhy || cannotActivate || noPending;
  const cancelWhy = stateWhy || cannotCancel || noPending;
  const busy = activate.isPending || cancel.isPending;
  const error = activate.error ?? cancel.error;
  return (
    <>
      <p data-testid="event-pending">{pending === null ? "Pending points: unknown." : `Pending points: ${pending}.`}</p>
      <div className="actions">
        <button type="button" disabled={busy || Boolean(activateWhy)} title={activateWhy || undefined}
                onClick={() => activate.mutate()}>Activate points</button>
        <button type="button" className="secondary" disabled={busy || Boolean(cancelWhy)} title={cancelWhy || undefined}
                onClick={() => cancel.mutate()}>Cancel points</button>
      </div>
      {activateWhy ? <small className="unavailable" data-testid="activate-unavailable">Activate: {activateWhy}</small> : null}
      {cancelWhy && cancelWhy !== activateWhy ? <small className="unavailable">Cancel: {cancelWhy}</small> : null}
      {error ? <p className="form-error" role="alert">{error.message}</p> : null}
      {done ? <p className="ok" role="status">{done}</p> : null}
    </>
  );
}

export function EventPointsPanel({ e }: { e: Event }) {
  const stateWhy = stateReason(e);
  const cannotReverse = useRouteUnavailable("POST /v1/events/{event_id}/reversals");
  return (
    <section className="panel" aria-labelledby="event-points-heading">
      <h2 id="event-points-heading">Points of this event</h2>
      <h3>Pending points</h3>
      <PendingActions e={e} stateWhy={stateWhy} />
      <h3>Reverse</h3>
      <ReversalForm e={e} why={stateWhy || cannotReverse} />
    </section>
  );
}
