import { useState, type FormEvent } from "react";
import { useQuery } from "@tanstack/react-query";
import { Link, useSearchParams } from "react-router-dom";
import { api, unwrap } from "../../api/client";
import type { components, operations } from "../../api/schema";
import { fieldErrors } from "../../api/errors";
import { Field, FormErrors } from "../../shell/forms";
import { ListState, LoadMore, useCursorList } from "../../shell/paging";
import { useRouteUnavailable } from "../../shell/scopes";

type Event = components["schemas"]["Event"];
type Query = NonNullable<operations["listEvents"]["parameters"]["query"]>;

/** How often the log asks for new events while its first pages are shown. */
const POLL_MS = 3000;
const POLL_PAGES = 3;
const PAGE_SIZE = 50;
const TEXT_FILTERS = ["program_id", "event_type", "participant_id", "external_id"] as const;
const TIME_FILTERS = [["received_after", "Received after"], ["received_before", "Received before"]] as const;
const FILTER_FIELDS = [...TEXT_FILTERS, "status", "origin", ...TIME_FILTERS.map(([n]) => n)];

function localInput(iso: string | null): string {
  if (!iso) return "";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? "" : new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
}

/** The API query of the URL's filters (the URL keeps them, so a filtered log can be linked). */
function queryOf(params: URLSearchParams): Query {
  const q: Record<string, string> = {};
  for (const name of FILTER_FIELDS) {
    const v = params.get(name);
    if (v) q[name] = v;
  }
  return q as Query;
}

export function ActivityPage() {
  const [params, setParams] = useSearchParams();
  const query = queryOf(params);
  const [live, setLive] = useState(true);
  const cannotListPrograms = useRouteUnavailable("GET /v1/programs");
  const programs = useQuery({
    enabled: !cannotListPrograms,
    queryKey: ["programs-for-filter"],
    queryFn: async () => (await unwrap(api.GET("/v1/programs", { params: { query: { page_size: 200 } } }))).programs,
  });
  const events = useCursorList<Event>(["events", query], async (token) => {
    const page = await unwrap(api.GET("/v1/events", { params: { query: { ...query, page_size: PAGE_SIZE, ...(token ? { page_token: token } : {}) } } }));
    return { items: page.events, next: page.next_page_token };
  }, { refetchInterval: live ? POLL_MS : false });
  // Polling re-reads every loaded page; past a few pages the operator is reading history.
  const polling = live && (events.data?.pages.length ?? 0) <= POLL_PAGES;

  function apply(e: FormEvent<HTMLFormElement>) {
    e.preventDefault();
    const form = new FormData(e.currentTarget);
    const next = new URLSearchParams();
    for (const name of FILTER_FIELDS) {
      const v = String(form.get(name) ?? "").trim();
      if (!v) continue;
      next.set(name, name.startsWith("received_") ? new Date(v).toISOString() : v);
    }
    setParams(next);
  }
  const errors = fieldErrors(events.error, FILTER_FIELDS);

  return (
    <>
      <h1>Activity log</h1>
      <section className="panel" aria-labelledby="filters-heading">
        <h2 id="filters-heading">Filters</h2>
        <form onSubmit={apply} className="form" aria-label="Filters" key={params.toString()}>
          <FormErrors errors={errors} />
          <div className="row">
            <Field label="Program" error={errors.program_id}>
              {(p) => (
                <select {...p} name="program_id" defaultValue={query.program_id ?? ""}>
                  <option value="">All programs</option>
                  {(programs.data ?? []).map((prog) => <option key={prog.program_id} value={prog.program_id}>{prog.name}</option>)}
                </select>
              )}
            </Field>
            <Field label="Status" error={errors.status}>
              {(p) => (
                <select {...p} name="status" defaultValue={query.status ?? ""}>
                  <option value="">Any status</option>
                  {["PENDING", "PROCESSING", "COMPLETED", "FAILED"].map((s) => <option key={s}>{s}</option>)}
                </select>
              )}
            </Field>
            <Field label="Origin" error={errors.origin}>
              {(p) => (
                <select {...p} name="origin" defaultValue={query.origin ?? ""}>
                  <option value="">Any origin</option>
                  <option value="EXTERNAL">EXTERNAL (sent to the API)</option>
                  <option value="SYSTEM">SYSTEM (scheduled)</option>
                </select>
              )}
            </Field>
          </div>
          <div className="row">
            <Field label="Event type" error={errors.event_type}>
              {(p) => <input {...p} name="event_type" defaultValue={query.event_type ?? ""} />}
            </Field>
            <Field label="Participant id" error={errors.participant_id}>
              {(p) => <input {...p} name="participant_id" defaultValue={query.participant_id ?? ""} />}
            </Field>
            <Field label="External id" error={errors.external_id}>
              {(p) => <input {...p} name="external_id" defaultValue={query.external_id ?? ""} />}
            </Field>
            {TIME_FILTERS.map(([name, label]) => (
              <Field key={name} label={label} error={errors[name]}>
                {(p) => <input {...p} type="datetime-local" name={name} defaultValue={localInput(params.get(name))} />}
              </Field>
            ))}
          </div>
          <div className="actions">
            <button type="submit">Apply filters</button>
            <button type="button" className="secondary" onClick={() => setParams(new URLSearchParams())}>Clear</button>
            <label className="check"><input type="checkbox" checked={live} onChange={(e) => setLive(e.target.checked)} /> Live</label>
            <small className="muted" role="status">{polling ? `New events appear every ${POLL_MS / 1000} s.` : live ? "Live refresh pauses while older pages are loaded." : ""}</small>
          </div>
        </form>
      </section>
      <section className="panel" aria-labelledby="events-heading">
        <h2 id="events-heading">Events, newest first</h2>
        <ListState list={events} empty="No event matches these filters." />
        {events.items.length ? (
          <div className="table-wrap">
            <table aria-label="Events">
              <thead><tr><th>Received</th><th>Type</th><th>Status</th><th className="hide-narrow">External id</th><th>Points</th><th className="hide-narrow">Origin</th></tr></thead>
              <tbody>
                {events.items.map((e) => (
                  <tr key={e.event_id}>
                    <td><Link to={`/activity/${e.event_id}`}>{e.received_at ? new Date(e.received_at).toLocaleString() : e.event_id}</Link></td>
                    <td>{e.event_type}</td>
                    <td><span className={`status status-${e.status}`}>{e.status}</span></td>
                    <td className="hide-narrow">{e.external_id ?? ""}</td>
                    <td>{e.points_awarded ?? ""}</td>
                    <td className="hide-narrow">{e.origin}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        ) : null}
        <LoadMore list={events} />
      </section>
    </>
  );
}
