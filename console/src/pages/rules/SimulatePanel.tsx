import { useState, type FormEvent } from "react";
import { useMutation } from "@tanstack/react-query";
import { api, unwrap } from "../../api/client";
import { fieldErrors } from "../../api/errors";
import { Field, FormErrors } from "../../shell/forms";
import { createBody, type RuleDraft } from "./draft";

const SIM_FIELDS = ["event_type", "event_data", "event_timestamp", "participant_id", "draft_rules"];

/** "Try it": runs rules:simulate on a sample event and shows each rule's result and the total. */
export function SimulatePanel({ programId, draft }: { programId: string; draft: RuleDraft | null }) {
  const [eventType, setEventType] = useState(draft?.event_type || "purchase");
  const [data, setData] = useState('{\n  "amount": 25\n}');
  const [participant, setParticipant] = useState("");
  const [useDraft, setUseDraft] = useState(false);
  const [jsonError, setJsonError] = useState("");
  const run = useMutation({
    mutationFn: (eventData: Record<string, unknown>) => unwrap(api.POST("/v1/programs/{program_id}/rules:simulate", {
      params: { path: { program_id: programId } },
      body: {
        event_type: eventType, event_data: eventData, participant_id: participant.trim(),
        ...(useDraft && draft ? { draft_rules: [{ ...createBody(draft), program_id: programId }] } : {}),
      },
    })),
  });
  const errors: Record<string, string> = { ...fieldErrors(run.error, SIM_FIELDS) };
  if (jsonError) errors.event_data = jsonError;

  function submit(e: FormEvent) {
    e.preventDefault();
    let parsed: unknown;
    try {
      parsed = JSON.parse(data || "{}");
    } catch (err) {
      setJsonError(`Not JSON: ${err instanceof Error ? err.message : String(err)}`);
      return;
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
      setJsonError("The event data must be a JSON object.");
      return;
    }
    setJsonError("");
    run.mutate(parsed as Record<string, unknown>);
  }

  return (
    <section className="panel" aria-labelledby="simulate-heading">
      <h2 id="simulate-heading">Try it</h2>
      <form onSubmit={submit} className="form" aria-label="Simulate">
        <FormErrors errors={errors} />
        <div className="row">
          <Field label="Sample event type" error={errors.event_type}>
            {(p) => <input {...p} value={eventType} onChange={(e) => setEventType(e.target.value)} />}
          </Field>
          <Field label="Participant id (optional)" error={errors.participant_id} hint="Their tier and caps apply">
            {(p) => <input {...p} value={participant} onChange={(e) => setParticipant(e.target.value)} />}
          </Field>
        </div>
        <Field label="Sample event data (JSON)" error={errors.event_data}>
          {(p) => <textarea {...p} className="code" rows={4} spellCheck={false} value={data}
                            onChange={(e) => setData(e.target.value)} />}
        </Field>
        {draft ? (
          <label className="check"><input type="checkbox" checked={useDraft} onChange={(e) => setUseDraft(e.target.checked)} />
            {" "}Try the rule being edited instead of the saved rules</label>
        ) : null}
        <div className="actions"><button type="submit" disabled={run.isPending}>{run.isPending ? "Running…" : "Simulate"}</button></div>
      </form>
      {run.data ? (
        <div data-testid="simulation-result">
          <p><strong>Total: <span data-testid="simulated-total">{String(run.data.points_awarded)}</span> points</strong>
            {run.data.tier ? <> · tier {run.data.tier}</> : null}</p>
          {run.data.rule_evaluations.length === 0 ? <p className="muted">No rule to evaluate.</p> : (
            <div className="table-wrap">
              <table>
                <thead><tr><th>Rule</th><th>Version</th><th>Matched</th><th>Why not</th><th>Points</th></tr></thead>
                <tbody>
                  {run.data.rule_evaluations.map((r) => (
                    <tr key={r.rule_id}>
                      <td>{r.rule_name}</td><td>{r.rule_version || "draft"}</td><td>{r.matched ? "yes" : "no"}</td>
                      <td>{r.skip_reason}{r.message ? `: ${r.message}` : ""}</td><td>{String(r.points)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
        </div>
      ) : null}
    </section>
  );
}
