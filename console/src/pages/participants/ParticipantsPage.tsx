// Page 5: find a participant by any identity (or id) in the current program's tenant.
import { useState } from "react";
import { useNavigate, useParams } from "react-router-dom";
import { api, unwrap } from "../../api/client";
import { fieldErrors } from "../../api/errors";
import { Field, FormErrors } from "../../shell/forms";
import { useRouteUnavailable } from "../../shell/scopes";

export const LOOKUP_KINDS = [
  { value: "external_id", label: "External id" },
  { value: "email", label: "Email" },
  { value: "phone", label: "Phone" },
  { value: "device_key", label: "Device key" },
  { value: "participant_id", label: "Participant id" },
] as const;
type LookupKind = (typeof LOOKUP_KINDS)[number]["value"];

/** The participant owning an identity (or with that id). */
export async function findParticipant(kind: LookupKind, value: string) {
  if (kind === "participant_id") {
    return unwrap(api.GET("/v1/participants/{participant_id}", { params: { path: { participant_id: value } } }));
  }
  return unwrap(api.GET("/v1/participants", { params: { query: { [kind]: value } } }));
}

export function ParticipantsPage() {
  const { programId = "" } = useParams();
  const navigate = useNavigate();
  const [kind, setKind] = useState<LookupKind>("external_id");
  const [value, setValue] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const cannotRead = useRouteUnavailable("GET /v1/participants");
  const errors = fieldErrors(error, [kind]);
  const submit = async () => {
    setBusy(true);
    setError(null);
    try {
      const participant = await findParticipant(kind, value.trim());
      navigate(`/programs/${programId}/participants/${participant.participant_id}`);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  return (
    <>
      <h1>Participants</h1>
      <section className="panel" aria-labelledby="lookup">
        <h2 id="lookup">Look up a participant</h2>
        {cannotRead ? <p className="unavailable">{cannotRead}</p> : null}
        <form className="form" onSubmit={(e) => { e.preventDefault(); void submit(); }}>
          <FormErrors errors={errors} />
          <div className="row">
            <Field label="Identity">
              {(p) => (
                <select {...p} value={kind} onChange={(e) => setKind(e.target.value as LookupKind)}>
                  {LOOKUP_KINDS.map((k) => <option key={k.value} value={k.value}>{k.label}</option>)}
                </select>
              )}
            </Field>
            <Field label="Value" error={errors[kind]}>
              {(p) => <input {...p} value={value} required onChange={(e) => setValue(e.target.value)} />}
            </Field>
          </div>
          <div className="actions">
            <button type="submit" disabled={busy || Boolean(cannotRead) || !value.trim()}>Look up</button>
          </div>
        </form>
      </section>
    </>
  );
}
