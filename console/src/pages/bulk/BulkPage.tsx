// Page 6: upload a CSV or JSON Lines file of events in batches of 1,000, with progress,
// cancel, resume and the per-row results to download.
import { useQueryClient } from "@tanstack/react-query";
import { useRef, useState } from "react";
import { useParams } from "react-router-dom";
import { api } from "../../api/client";
import { ApiError, apiErrorOf, networkError } from "../../api/errors";
import { reportFailure } from "../../api/notices";
import { signOut } from "../../api/session";
import { EVENT_FIELDS, guessMapping, mappingProblems, type ColumnTarget, type EventBody, type EventField, type Mapping } from "../../bulk/mapping";
import { parseCsv, type CsvFile } from "../../bulk/parse";
import { prepareCsv, prepareJsonLines, type Prepared } from "../../bulk/prepare";
import { upload, type BatchAnswer, type ItemResult } from "../../bulk/upload";
import { toCsv } from "../../lib/csv";
import { Field } from "../../shell/forms";
import { useRouteUnavailable } from "../../shell/scopes";

type Phase = "idle" | "preparing" | "sending" | "done" | "cancelled" | "failed";

/** POST one batch; a 400 naming fields is a refusal, any other failure is thrown (and a
 * 5xx or a lost connection shows the banner with its request id). */
async function sendBatch(events: EventBody[], signal: AbortSignal): Promise<BatchAnswer> {
  let answer;
  try {
    answer = await api.POST("/v1/events/batch", { body: { events } as never, signal });
  } catch (cause) {
    if (signal.aborted) throw cause;
    const error = cause instanceof ApiError ? cause : networkError(cause);
    reportFailure(error);
    throw error;
  }
  if (answer.response.ok && answer.data) return { kind: "results", results: answer.data.results as ItemResult[] };
  const error = apiErrorOf(answer.response, answer.error);
  if (error.status === 400 && error.violations.length > 0) return { kind: "refused", violations: error.violations };
  if (error.status === 401) signOut(`The API refused the key: ${error.message}`);
  else if (error.isServerSide) reportFailure(error);
  throw error;
}

function targetValue(t: ColumnTarget): string {
  return t.kind === "field" ? `field:${t.field}` : t.kind;
}

export function BulkPage() {
  const { programId = "" } = useParams();
  const queries = useQueryClient();
  const cannotWrite = useRouteUnavailable("POST /v1/events/batch");
  const [fileName, setFileName] = useState("");
  const [text, setText] = useState("");
  const [csv, setCsv] = useState<CsvFile | null>(null);
  const [mapping, setMapping] = useState<Mapping>([]);
  const [defaultType, setDefaultType] = useState("");
  const [prepared, setPrepared] = useState<Prepared | null>(null);
  const [phase, setPhase] = useState<Phase>("idle");
  const [failure, setFailure] = useState("");
  const [, setTick] = useState(0);
  const controller = useRef<AbortController | null>(null);
  const isJsonLines = /\.(jsonl|ndjson)$/i.test(fileName);

  const choose = async (file: File | undefined) => {
    setPrepared(null);
    setPhase("idle");
    setFailure("");
    if (!file) return;
    const content = await file.text();
    setFileName(file.name);
    setText(content);
    if (/\.(jsonl|ndjson)$/i.test(file.name)) {
      setCsv(null);
      return;
    }
    const parsed = parseCsv(content);
    setCsv(parsed);
    setMapping(guessMapping(parsed.header));
  };

  const run = async (ready: Prepared) => {
    const abort = new AbortController();
    controller.current = abort;
    setPhase("sending");
    setFailure("");
    try {
      const outcome = await upload(ready.progress, ready.events, sendBatch, abort.signal, () => setTick((t) => t + 1));
      setPhase(outcome);
    } catch (e) {
      setFailure(e instanceof Error ? e.message : String(e));
      setPhase("failed");
    } finally {
      setTick((t) => t + 1);
      controller.current = null;
      void queries.invalidateQueries({ queryKey: ["events"] });
    }
  };

  const start = async () => {
    setPhase("preparing");
    const ready = isJsonLines ? await prepareJsonLines(text, programId)
      : await prepareCsv(csv as CsvFile, mapping, programId, defaultType);
    setPrepared(ready);
    await run(ready);
  };

  const download = () => {
    if (!prepared) return;
    const url = URL.createObjectURL(new Blob([toCsv(prepared.progress.table())], { type: "text/csv" }));
    const a = document.createElement("a");
    a.href = url;
    a.download = `${fileName.replace(/\.[^.]*$/, "") || "upload"}-results.csv`;
    a.click();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  };

  const problems = csv && !isJsonLines ? mappingProblems(mapping, defaultType) : [];
  const busy = phase === "sending" || phase === "preparing";
  const counts = prepared?.progress.summary;
  const errorRows = prepared ? prepared.progress.rows.filter((r) => r.status === "error") : [];
  return (
    <>
      <h1>Bulk upload</h1>
      <section className="panel" aria-labelledby="file">
        <h2 id="file">File</h2>
        <p className="muted">
          A CSV file with a header row, or JSON Lines (one event object per line, .jsonl). Rows are sent in batches
          of 1,000. A row without an idempotency key gets one derived from its content, so uploading the same file
          again creates no duplicates.
        </p>
        {cannotWrite ? <p className="unavailable">{cannotWrite}</p> : null}
        <Field label="Events file">
          {(p) => <input {...p} type="file" accept=".csv,.jsonl,.ndjson,text/csv" disabled={busy}
                         onChange={(e) => void choose(e.target.files?.[0])} />}
        </Field>
        {csv ? <p className="muted">{csv.rows.length} rows read{csv.problems.length ? `, ${csv.problems.length} unreadable` : ""}.</p> : null}
      </section>
      {csv && !isJsonLines ? (
        <section className="panel" aria-labelledby="mapping">
          <h2 id="mapping">Columns</h2>
          <div className="table-wrap">
            <table>
              <thead><tr><th>Column</th><th>First value</th><th>Becomes</th></tr></thead>
              <tbody>
                {csv.header.map((name, i) => (
                  <tr key={`${i}:${name}`}>
                    <td>{name}</td>
                    <td><code>{csv.rows[0]?.cells[i] ?? ""}</code></td>
                    <td>
                      <select aria-label={`Column ${name} becomes`} value={targetValue(mapping[i])} disabled={busy}
                              onChange={(e) => {
                                const v = e.target.value;
                                const next: ColumnTarget = v === "ignore" ? { kind: "ignore" }
                                  : v === "property" ? { kind: "property", name }
                                    : { kind: "field", field: v.slice(6) as EventField };
                                setMapping(mapping.map((t, j) => (j === i ? next : t)));
                              }}>
                        {EVENT_FIELDS.map((f) => <option key={f} value={`field:${f}`}>{f}</option>)}
                        <option value="property">event_data.{name}</option>
                        <option value="ignore">(ignore)</option>
                      </select>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <Field label="Default event type" hint="Used for rows whose event_type is empty or not mapped">
            {(p) => <input {...p} value={defaultType} disabled={busy} onChange={(e) => setDefaultType(e.target.value)} />}
          </Field>
          {problems.length ? <ul className="form-error" role="alert">{problems.map((p) => <li key={p}>{p}</li>)}</ul> : null}
        </section>
      ) : null}
      {text ? (
        <section className="panel" aria-labelledby="send">
          <h2 id="send">Upload</h2>
          <div className="actions">
            <button type="button" disabled={busy || problems.length > 0 || Boolean(cannotWrite)} onClick={() => void start()}>
              {prepared ? "Upload again" : "Upload"}
            </button>
            {prepared && (phase === "failed" || phase === "cancelled") && prepared.progress.summary.pending > 0 ? (
              <button type="button" className="secondary" onClick={() => void run(prepared)}>Resume</button>
            ) : null}
            {busy ? <button type="button" className="danger" onClick={() => controller.current?.abort()}>Cancel</button> : null}
            {prepared && !busy ? <button type="button" className="secondary" onClick={download}>Download results</button> : null}
          </div>
          {counts ? (
            <div className="form">
              <progress max={counts.total} value={counts.total - counts.pending} aria-label="Upload progress" />
              <p role="status" data-testid="bulk-counts">
                {phase === "done" ? "Finished. " : phase === "cancelled" ? "Cancelled. " : phase === "failed" ? "Stopped. " : "Sending… "}
                <span data-testid="count-total">{counts.total}</span> rows: sent <span data-testid="count-sent">{counts.sent}</span>,
                accepted <span data-testid="count-accepted">{counts.accepted}</span>,
                duplicate <span data-testid="count-duplicate">{counts.duplicate}</span>,
                error <span data-testid="count-error">{counts.error}</span>,
                pending <span data-testid="count-pending">{counts.pending}</span>.
              </p>
              {failure ? <p className="form-error" role="alert">The upload stopped: {failure}. Resume sends the rows not yet answered; rows already sent come back as duplicates, never twice.</p> : null}
            </div>
          ) : null}
          {errorRows.length ? (
            <div className="table-wrap">
              <h3>Rows with errors ({errorRows.length}{errorRows.length > 200 ? ", first 200 shown; download the results for all" : ""})</h3>
              <table data-testid="bulk-errors">
                <thead><tr><th>Line</th><th>Field</th><th>Error</th></tr></thead>
                <tbody>
                  {errorRows.slice(0, 200).map((r) => (
                    <tr key={r.line}><td>{r.line}</td><td>{r.field || "—"}</td><td>{r.message}</td></tr>
                  ))}
                </tbody>
              </table>
            </div>
          ) : null}
        </section>
      ) : null}
    </>
  );
}
