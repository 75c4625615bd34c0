import { describe, expect, it } from "vitest";
import { toCsv } from "../lib/csv";
import { guessMapping } from "./mapping";
import { parseCsv } from "./parse";
import { prepareCsv } from "./prepare";
import { Progress } from "./progress";
import { chunks, refusedItems, upload, type BatchAnswer, type SendBatch } from "./upload";
import type { EventBody } from "./mapping";

const PROGRAM = "3f8e3c1e-4a57-4f7e-9a43-0c2b8a0f4d11";

/** A fake batch route: accepts a key once, answers duplicate after, refuses items without
 * an external_id, and can be told to fail a given call (a lost connection). */
function fakeApi(failOnCall?: number) {
  const seen = new Set<string>();
  const batches: number[] = [];
  let calls = 0;
  const send: SendBatch = async (events) => {
    calls += 1;
    if (calls === failOnCall) throw new Error("Failed to fetch");
    batches.push(events.length);
    const answer: BatchAnswer = {
      kind: "results",
      results: events.map((e, index) => {
        if (!e.external_id) {
          return { index, status: "error", error: { code: "invalid_argument", field: "external_id", message: "one of external_id or participant_id is required" } };
        }
        const key = e.idempotency_key ?? "";
        const status = seen.has(key) ? "duplicate" : "accepted";
        seen.add(key);
        return { index, status, event_id: `ev-${key.slice(-8)}` };
      }),
    };
    return answer;
  };
  return { send, seen, batches };
}

function csvOf(n: number, broken: number[] = []): string {
  const lines = ["customer,type,amount"];
  for (let i = 0; i < n; i++) lines.push(broken.includes(i) ? `c${i}` : `c${i},purchase,${i}`);
  return lines.join("\n");
}

describe("chunks", () => {
  it("splits into batches of 1,000 by default", () => {
    expect(chunks(Array.from({ length: 2500 }, (_, i) => i)).map((c) => c.length)).toEqual([1000, 1000, 500]);
    expect(chunks([], 3)).toEqual([]);
  });
});

describe("Progress", () => {
  it("counts a row once in its latest status", () => {
    const p = new Progress([2, 3, 4]);
    expect(p.summary).toEqual({ total: 3, sent: 0, accepted: 0, duplicate: 0, error: 0, pending: 3 });
    p.record(0, { status: "accepted", sent: true });
    p.record(0, { status: "duplicate", sent: true });
    p.record(1, { status: "error", field: "event_data", message: "bad", sent: false });
    expect(p.summary).toEqual({ total: 3, sent: 1, accepted: 0, duplicate: 1, error: 1, pending: 1 });
    expect(p.fraction).toBeCloseTo(2 / 3);
    expect(p.pendingIndexes()).toEqual([2]);
    expect(new Progress([]).fraction).toBe(1);
  });
});

describe("upload", () => {
  it("sends 2,500 rows in batches of 1,000 and accounts every row", async () => {
    const api = fakeApi();
    const { progress, events } = await prepareCsv(parseCsv(csvOf(2500)), guessMapping(["customer", "type", "amount"]), PROGRAM, "");
    let ticks = 0;
    const outcome = await upload(progress, events, api.send, new AbortController().signal, () => ticks++);
    expect(outcome).toBe("done");
    expect(api.batches).toEqual([1000, 1000, 500]);
    expect(ticks).toBe(3);
    expect(progress.summary).toEqual({ total: 2500, sent: 2500, accepted: 2500, duplicate: 0, error: 0, pending: 0 });
  });

  it("reports broken rows by line and lands the good ones", async () => {
    const api = fakeApi();
    const text = csvOf(10, [3]) + "\nc10,purchase,1,extra\nc11,,4";
    const { progress, events } = await prepareCsv(parseCsv(text), guessMapping(["customer", "type", "amount"]), PROGRAM, "");
    await upload(progress, events, api.send, new AbortController().signal);
    const s = progress.summary;
    expect([s.accepted, s.error, s.pending]).toEqual([10, 2, 0]);
    const errors = progress.rows.filter((r) => r.status === "error").map((r) => r.line);
    expect(errors).toEqual([5, 12]);
    expect(toCsv(progress.table()).split("\r\n")[4]).toBe("5,error,,,,has 1 fields; the header has 3");
  });

  it("records API item errors with the field and marks rows a whole-batch 400 names", async () => {
    let call = 0;
    const sent: EventBody[][] = [];
    const send: SendBatch = async (batch) => {
      sent.push(batch);
      call += 1;
      if (call === 1) return { kind: "refused", violations: [{ field: "events[1].event_type", description: "must be a string" }] };
      return { kind: "results", results: batch.map((_, index) => ({ index, status: index === 0 ? "error" : "accepted", error: index === 0 ? { field: "events[0].external_id", message: "events[0].external_id: unknown participant" } : null })) };
    };
    const p = new Progress([2, 3, 4]);
    const events = [{ external_id: "a" }, { external_id: "b" }, { external_id: "c" }];
    await upload(p, events, send, new AbortController().signal);
    expect(sent.map((b) => b.length)).toEqual([3, 2]);
    expect(p.rows.map((r) => [r.status, r.field ?? ""])).toEqual([["error", "external_id"], ["error", "event_type"], ["accepted", ""]]);
    expect(p.rows[0].message).toBe("unknown participant");
  });

  it("throws when a refusal names no item, leaving the rows pending", async () => {
    const send: SendBatch = async () => ({ kind: "refused", violations: [{ field: "body", description: "too large" }] });
    const p = new Progress([2]);
    await expect(upload(p, [{ external_id: "a" }], send, new AbortController().signal)).rejects.toThrow(/body: too large/);
    expect(p.summary.pending).toBe(1);
  });

  it("resumes after a lost connection with no duplicate events", async () => {
    const api = fakeApi(2);
    const { progress, events } = await prepareCsv(parseCsv(csvOf(2500)), guessMapping(["customer", "type", "amount"]), PROGRAM, "");
    await expect(upload(progress, events, api.send, new AbortController().signal)).rejects.toThrow("Failed to fetch");
    expect(progress.summary).toMatchObject({ accepted: 1000, pending: 1500 });
    expect(await upload(progress, events, api.send, new AbortController().signal)).toBe("done");
    expect(progress.summary).toMatchObject({ accepted: 2500, duplicate: 0, pending: 0 });
    expect(api.seen.size).toBe(2500);
  });

  it("uploading the same file again answers every row duplicate", async () => {
    const api = fakeApi();
    const make = () => prepareCsv(parseCsv(csvOf(30)), guessMapping(["customer", "type", "amount"]), PROGRAM, "");
    const first = await make();
    await upload(first.progress, first.events, api.send, new AbortController().signal);
    const second = await make();
    await upload(second.progress, second.events, api.send, new AbortController().signal);
    expect(second.progress.summary).toMatchObject({ accepted: 0, duplicate: 30 });
    expect(api.seen.size).toBe(30);
  });

  it("stops between batches when cancelled and leaves the rest pending", async () => {
    const api = fakeApi();
    const controller = new AbortController();
    const { progress, events } = await prepareCsv(parseCsv(csvOf(2500)), guessMapping(["customer", "type", "amount"]), PROGRAM, "");
    const outcome = await upload(progress, events, api.send, controller.signal, () => controller.abort());
    expect(outcome).toBe("cancelled");
    expect(progress.summary).toMatchObject({ accepted: 1000, pending: 1500 });
  });
});

describe("refusedItems", () => {
  it("reads item positions from events[i] fields and ignores others", () => {
    const m = refusedItems([{ field: "events[2].x", description: "d" }, { field: "events[9]", description: "e" }, { field: "body", description: "f" }], 5);
    expect([...m.entries()]).toEqual([[2, { field: "x", description: "d" }]]);
  });
});
