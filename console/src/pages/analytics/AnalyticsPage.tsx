// Page 7: a program's analytics as charts over a chosen date range, and its segments.
import { useQuery } from "@tanstack/react-query";
import { useState } from "react";
import { Link, useParams } from "react-router-dom";
import { Bar, BarChart, CartesianGrid, Legend, Line, LineChart, ResponsiveContainer, Tooltip, XAxis, YAxis } from "recharts";
import { api, unwrap } from "../../api/client";
import { fieldErrors } from "../../api/errors";
import { toNumber } from "../../lib/ids";
import { Field, FormErrors } from "../../shell/forms";
import { useRouteUnavailable } from "../../shell/scopes";
import { SegmentsPanel } from "./SegmentsPanel";

const HEIGHT = 260;

function Chart({ title, empty, children }: { title: string; empty: boolean; children: React.ReactElement }) {
  return (
    <figure className="panel chart" aria-label={title}>
      <figcaption><h2>{title}</h2></figcaption>
      {empty ? <p className="muted">No data in this range.</p> : (
        <ResponsiveContainer width="100%" height={HEIGHT}>{children}</ResponsiveContainer>
      )}
    </figure>
  );
}

export function AnalyticsPage() {
  const { programId = "" } = useParams();
  const [from, setFrom] = useState("");
  const [to, setTo] = useState("");
  const [range, setRange] = useState({ from: "", to: "" });
  const cannotRead = useRouteUnavailable("GET /v1/programs/{program_id}/analytics");
  const analytics = useQuery({
    queryKey: ["analytics", programId, range.from, range.to],
    queryFn: () => unwrap(api.GET("/v1/programs/{program_id}/analytics", {
      params: { path: { program_id: programId },
                query: { ...(range.from ? { from_date: range.from } : {}), ...(range.to ? { to_date: range.to } : {}) } },
    })),
  });
  const errors = fieldErrors(analytics.error, ["from_date", "to_date"]);
  const a = analytics.data;
  const daily = (a?.daily ?? []).map((d) => ({ date: d.date, events: Number(d.events), points: toNumber(d.points) }));
  const byType = (a?.events_by_type ?? []).map((t) => ({ name: t.event_type, events: Number(t.events), points: toNumber(t.points) }));
  const byRule = (a?.points_by_rule ?? []).map((r) => ({ name: r.rule_name || r.rule_id, matches: Number(r.matches), points: toNumber(r.points) }));
  const buckets = (a?.events_per_participant ?? []).map((b) => ({ name: b.label, participants: Number(b.participants) }));
  return (
    <>
      <h1>Analytics</h1>
      {cannotRead ? <p className="unavailable">{cannotRead}</p> : null}
      <section className="panel" aria-labelledby="range">
        <h2 id="range">Date range (UTC days of the events)</h2>
        <form className="form" onSubmit={(e) => {
          e.preventDefault();
          setRange({ from: from || a?.from_date || "", to: to || a?.to_date || "" });
        }}>
          <FormErrors errors={errors} />
          <div className="row">
            <Field label="From" error={errors.from_date} hint="Default: 29 days before the last day">
              {(p) => <input {...p} type="date" value={from || a?.from_date || ""} onChange={(e) => setFrom(e.target.value)} />}
            </Field>
            <Field label="To" error={errors.to_date} hint="Default: the day of the latest event">
              {(p) => <input {...p} type="date" value={to || a?.to_date || ""} onChange={(e) => setTo(e.target.value)} />}
            </Field>
            <div className="actions"><button type="submit">Show</button></div>
          </div>
        </form>
        {analytics.isPending ? <p className="muted" role="status">Loading…</p> : null}
        {a ? (
          <dl className="facts" data-testid="analytics-totals">
            <dt>Range</dt><dd>{a.from_date} to {a.to_date}</dd>
            <dt>Events</dt><dd data-testid="total-events">{a.total_events}</dd>
            <dt>Points</dt><dd>{a.total_points}</dd>
            <dt>Active participants</dt><dd>{a.active_participants}</dd>
            <dt>Events per participant</dt><dd>{a.average_events_per_participant}</dd>
          </dl>
        ) : null}
      </section>
      {a ? (
        <div className="charts">
          <Chart title="Daily events and points" empty={daily.length === 0}>
            <LineChart data={daily}>
              <CartesianGrid strokeDasharray="3 3" />
              <XAxis dataKey="date" />
              <YAxis yAxisId="events" allowDecimals={false} />
              <YAxis yAxisId="points" orientation="right" />
              <Tooltip />
              <Legend />
              <Line yAxisId="events" type="monotone" dataKey="events" name="Events" stroke="#2451c9" isAnimationActive={false} />
              <Line yAxisId="points" type="monotone" dataKey="points" name="Points" stroke="#067647" isAnimationActive={false} />
            </LineChart>
          </Chart>
          <Chart title="Events and points by type" empty={byType.length === 0}>
            <BarChart data={byType}>
              <CartesianGrid strokeDasharray="3 3" />
              <XAxis dataKey="name" />
              <YAxis />
              <Tooltip />
              <Legend />
              <Bar dataKey="events" name="Events" fill="#2451c9" isAnimationActive={false} />
              <Bar dataKey="points" name="Points" fill="#067647" isAnimationActive={false} />
            </BarChart>
          </Chart>
          <Chart title="Points by rule" empty={byRule.length === 0}>
            <BarChart data={byRule}>
              <CartesianGrid strokeDasharray="3 3" />
              <XAxis dataKey="name" />
              <YAxis />
              <Tooltip />
              <Legend />
              <Bar dataKey="points" name="Points" fill="#067647" isAnimationActive={false} />
              <Bar dataKey="matches" name="Matches" fill="#8a5300" isAnimationActive={false} />
            </BarChart>
          </Chart>
          <Chart title="Events per participant" empty={buckets.every((b) => b.participants === 0)}>
            <BarChart data={buckets}>
              <CartesianGrid strokeDasharray="3 3" />
              <XAxis dataKey="name" />
              <YAxis allowDecimals={false} />
              <Tooltip />
              <Bar dataKey="participants" name="Participants" fill="#2451c9" isAnimationActive={false} />
            </BarChart>
          </Chart>
        </div>
      ) : null}
      {a && a.top_participants.length ? (
        <section className="panel" aria-labelledby="top">
          <h2 id="top">Top participants</h2>
          <div className="table-wrap">
            <table>
              <thead><tr><th>Participant</th><th>Events</th><th>Points</th></tr></thead>
              <tbody>
                {a.top_participants.map((p) => (
                  <tr key={p.participant_id}>
                    <td><Link to={`/programs/${programId}/participants/${p.participant_id}`}>{p.participant_id}</Link></td>
                    <td>{p.events}</td>
                    <td>{p.points}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </section>
      ) : null}
      <SegmentsPanel programId={programId} />
    </>
  );
}
