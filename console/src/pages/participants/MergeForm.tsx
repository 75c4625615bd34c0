// Merging another participant into this one, after a confirmation that names both.
import { useMutation, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { fieldErrors } from "../../api/errors";
import { api, unwrap } from "../../api/client";
import { Field, FormErrors } from "../../shell/forms";
import { useRouteUnavailable } from "../../shell/scopes";
import { findParticipant, LOOKUP_KINDS } from "./ParticipantsPage";
import { participantLabel, type Participant } from "./ParticipantPage";

type Kind = (typeof LOOKUP_KINDS)[number]["value"];

export function MergeForm({ survivor }: { survivor: Participant }) {
  const queries = useQueryClient();
  const [kind, setKind] = useState<Kind>("external_id");
  const [value, setValue] = useState("");
  const [other, setOther] = useState<Participant | null>(null);
  const [findError, setFindError] = useState<unknown>(null);
  const [merged, setMerged] = useState("");
  const cannotWrite = useRouteUnavailable("POST /v1/participants:merge");
  const merge = useMutation({
    mutationFn: (target: Participant) => unwrap(api.POST("/v1/participants:merge", {
      body: { survivor_participant_id: survivor.participant_id, merged_participant_id: target.participant_id },
    })),
    onSuccess: (answer) => {
      setMerged(`Merged ${answer.merged_participant_id} into ${survivor.participant_id}.`);
      setOther(null);
      setValue("");
      void queries.invalidateQueries();
    },
  });
  const findErrors = fieldErrors(findError, [kind]);
  const mergeErrors = fieldErrors(merge.error, ["survivor_participant_id", "merged_participant_id"]);
  const find = async () => {
    setFindError(null);
    setMerged("");
    try {
      setOther(await findParticipant(kind, value.trim()));
    } catch (e) {
      setFindError(e);
    }
  };
  return (
    <div className="form">
      {cannotWrite ? <p className="unavailable">{cannotWrite}</p> : null}
      <form className="form" onSubmit={(e) => { e.preventDefault(); void find(); }}>
        <FormErrors errors={findErrors} />
        <div className="row">
          <Field label="Find the participant to merge by">
            {(p) => (
              <select {...p} value={kind} onChange={(e) => setKind(e.target.value as Kind)}>
                {LOOKUP_KINDS.map((k) => <option key={k.value} value={k.value}>{k.label}</option>)}
              </select>
            )}
          </Field>
          <Field label="Its value" error={findErrors[kind]}>
            {(p) => <input {...p} value={value} onChange={(e) => setValue(e.target.value)} />}
          </Field>
        </div>
        <div className="actions">
          <button type="submit" className="secondary" disabled={!value.trim() || Boolean(cannotWrite)}>Find</button>
        </div>
      </form>
      {other ? (
        <div className="panel warn" role="alertdialog" aria-labelledby="merge-confirm">
          <p id="merge-confirm">
            Merge <strong>{participantLabel(other)}</strong> into <strong>{participantLabel(survivor)}</strong>?
            Its identities, enrollments and points move to the second; this cannot be undone.
          </p>
          <FormErrors errors={{ "": Object.values(mergeErrors).join("; ") }} />
          <div className="actions">
            <button type="button" className="danger" disabled={merge.isPending || other.participant_id === survivor.participant_id}
                    onClick={() => merge.mutate(other)}>
              Yes, merge
            </button>
            <button type="button" className="secondary" onClick={() => setOther(null)}>Cancel</button>
          </div>
          {other.participant_id === survivor.participant_id ? <p className="form-error">That is this participant.</p> : null}
        </div>
      ) : null}
      {merged ? <p className="ok" role="status">{merged}</p> : null}
    </div>
  );
}
