import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { Link, useParams } from "react-router-dom";
import { api, unwrap } from "../../api/client";
import { useRouteUnavailable } from "../../shell/scopes";
import { EventPointsPanel } from "./EventPointsPanel";

const UNFINISHED_POLL_MS = 1500;

/** One event: payload, participant, each rule's evaluation and, when FAILED, the error and a retry. */
export function EventPage() {
  const eventId = useParams().eventId ?? "";
  const queries = useQueryClient();
  const event = useQuery({
    queryKey: ["event", eventId],
    queryFn: () => unwrap(api.GET("/v1/events/{event_id}", { params: { path: { event_id: eventId } } })),
    // An event still being processed is read again until it has its outcome.
    refetchInterval: (q) => (q.state.data && ["PENDING", "PROCESSING"].includes(q.state.data.status) ? UNFINISHED_POLL_MS : false),
  });
  const retry = useMutation({
    mutationFn: () => unwrap(api.POST("/v1/events/{event_id}/retry", { params: { path: { event_id: eventId } }, body: {} })),
    onSuccess: (e) => {
      queries.setQueryData(["event", eventId], e);
      void queries.invalidateQueries({ queryKey: ["events"] });
    },
  });
  const cannotRetry = useRouteUnavailable("POST /v1/events/{event_id}/retry");
  if (event.isPending) return <p className="muted" role="status">Loading…</p>;
  if (event.error) return <><h1>Event</h1><p className="form-error" role="alert">{event.error.message}</p></>;
  const e = event.data;
  const time = (iso: string | null) => (iso ? new Date(iso).toLocaleString() : "—");
  return (
    <>
      <p><Link to={`/activity?program_id=${e.program_id}`}>← Activity log</Link></p>
      <h1>Event {e.event_type} <span className={`status status-${e.status}`} data-testid="event-status">{e.status}</span></h1>
      {e.status === "FAILED" ? (
        <section className="panel error-panel" aria-labelledby="failure-heading">
          <h2 id="failure-heading">Why it failed</h2>
          <p data-testid="event-error"><code>{e.error_code}</code> {e.error_message}</p>
          <div className="actions">
            <button type="button" disabled={retry.isPending || Boolean(cannotRetry)} title={cannotRetry || undefined}
                    onClick={() => retry.mutate()}>{retry.isPending ? "Retrying…" : "Retry the event"}</button>
            {cannotRetry ? <small className="unavailable">{cannotRetry}</small> : null}
          </div>
          {retry.error ? <p className="form-error" role="alert">{retry.error.message}</p> : null}
        </section>
      ) : null}
      <div className="split">
        <section className="panel" aria-labelledby="facts-heading">
          <h2 id="facts-heading">Event</h2>
          <dl className="facts">
            <dt>Event id</dt><dd><code>{e.event_id}</code></dd>
            <dt>Program</dt><dd><Link to={`/programs/${e.program_id}`}>{e.program_id}</Link></dd>
            <dt>Participant</dt><dd>{e.participant_id ? <Link to={`/activity?participant_id=${e.participant_id}`}><code>{e.participant_id}</code></Link> : "—"}
              {e.external_id ? <> (external id <code>{e.external_id}</code>)</> : null}</dd>
            {e.recipient_id && e.recipient_id !== e.participant_id ? <><dt>Recipient</dt><dd><code>{e.recipient_id}</code></dd></> : null}
            <dt>Points awarded</dt><dd data-testid="event-points">{e.points_awarded ?? "—"}</dd>
            <dt>Origin</dt><dd>{e.origin}{e.cdp_source ? ` (CDP: ${e.cdp_source})` : ""}</dd>
            <dt>Idempotency key</dt><dd><code>{e.idempotency_key}</code></dd>
            <dt>Occurred</dt><dd>{time(e.event_timestamp)}</dd>
            <dt>Received</dt><dd>{time(e.received_at)}</dd>
            <dt>Processed</dt><dd>{time(e.processed_at)}</dd>
          </dl>
        </section>
        <section className="panel" aria-labelledby="payload-heading">
          <h2 id="payload-heading">Payload</h2>
          <pre className="json" data-testid="event-payload">{JSON.stringify(e.event_data ?? {}, null, 2)}</pre>
        </section>
      </div>
      <EventPointsPanel e={e} />
      <section className="panel" aria-labelledby="evaluations-heading">
        <h2 id="evaluations-heading">Rule evaluations</h2>
        {e.rule_evaluations.length === 0 ? <p className="muted">{e.status === "COMPLETED" ? "No rule was evaluated." : "Not evaluated yet."}</p> : (
          <div className="table-wrap">
            <table aria-label="Rule evaluations">
              <thead><tr><th>Rule</th><th>Version</th><th>Matched</th><th>Why not</th><th>Points</th></tr></thead>
              <tbody>
                {e.rule_evaluations.map((r, i) => (
                  <tr key={`${r.rule_id}-${i}`}>
                    <td><Link to={`/programs/${r.program_id || e.program_id}/rules/${r.rule_id}?b=${r.rule_version}`}>{r.rule_name}</Link></td>
                    <td>v{r.rule_version}</td>
                    <td>{r.matched ? "yes" : "no"}</td>
                    <td>{r.skip_reason}{r.message ? `: ${r.message}` : ""}</td>
                    <td>{String(r.points)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </section>
    </>
  );
}
