// A points adjustment. Its idempotency key is made once per form and kept until the API
// has answered, so a double click or a retry after a lost answer credits once.
import { useMutation } from "@tanstack/react-query";
import { useState } from "react";
import { api, unwrap } from "../../api/client";
import { fieldErrors } from "../../api/errors";
import { newIdempotencyKey } from "../../lib/ids";
import { Field, FormErrors } from "../../shell/forms";
import { useRouteUnavailable } from "../../shell/scopes";
import { useRefreshBank } from "./bank";

const FIELDS = ["amount", "reason", "allow_negative", "idempotency_key"];

export function AdjustmentForm({ programId, participantId }: { programId: string; participantId: string }) {
  const refresh = useRefreshBank(programId, participantId);
  const [amount, setAmount] = useState("");
  const [reason, setReason] = useState("");
  const [allowNegative, setAllowNegative] = useState(false);
  const [key, setKey] = useState(() => newIdempotencyKey("adjust"));
  const [done, setDone] = useState("");
  const cannotWrite = useRouteUnavailable("POST /v1/programs/{program_id}/participants/{participant_id}/adjustments");
  const adjust = useMutation({
    mutationFn: () => unwrap(api.POST("/v1/programs/{program_id}/participants/{participant_id}/adjustments", {
      params: { path: { program_id: programId, participant_id: participantId } },
      body: { amount: amount.trim(), reason, idempotency_key: key, allow_negative: allowNegative },
    })),
    onSuccess: (answer) => {
      setDone(`${answer.deduplicated ? "Already recorded" : "Recorded"}: ${answer.transaction?.amount ?? amount} points; available now ${answer.balance?.available ?? "?"}.`);
      setAmount("");
      setReason("");
      setKey(newIdempotencyKey("adjust"));
      refresh();
    },
  });
  const errors = fieldErrors(adjust.error, FIELDS);
  return (
    <form className="form" onSubmit={(e) => { e.preventDefault(); if (!adjust.isPending) { setDone(""); adjust.mutate(); } }}>
      {cannotWrite ? <p className="unavailable">{cannotWrite}</p> : null}
      <FormErrors errors={errors} />
      <div className="row">
        <Field label="Points (negative to debit)" error={errors.amount} hint="An exact decimal, e.g. 50 or -20.5">
          {(p) => <input {...p} inputMode="decimal" value={amount} onChange={(e) => setAmount(e.target.value)} />}
        </Field>
        <Field label="Reason" error={errors.reason}>
          {(p) => <input {...p} value={reason} onChange={(e) => setReason(e.target.value)} />}
        </Field>
      </div>
      <label className="check">
        <input type="checkbox" checked={allowNegative} onChange={(e) => setAllowNegative(e.target.checked)} />
        Allow the balance to go below zero
      </label>
      {errors.allow_negative ? <p className="field-error" role="alert">{errors.allow_negative}</p> : null}
      <div className="actions">
        <button type="submit" disabled={adjust.isPending || Boolean(cannotWrite)}>
          {adjust.isPending ? "Recording…" : "Record adjustment"}
        </button>
      </div>
      {done ? <p className="ok" role="status">{done}</p> : null}
    </form>
  );
}
