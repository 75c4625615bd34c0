import { describe, expect, it } from "vitest";
import { parseCsv, parseJsonLines } from "./parse";

describe("parseCsv", () => {
  it("keeps each row's line number across blank lines and quoted line breaks", () => {
    const file = parseCsv('type,customer\r\npurchase,c1\r\n\r\n"multi\r\nline",c2\r\nvisit,c3\r\n');
    expect(file.header).toEqual(["type", "customer"]);
    expect(file.rows).toEqual([
      { line: 2, cells: ["purchase", "c1"] },
      { line: 4, cells: ["multi\nline", "c2"] },
      { line: 6, cells: ["visit", "c3"] },
    ]);
    expect(file.problems).toEqual([]);
  });

  it("reports rows with the wrong number of fields by line and keeps the others", () => {
    const file = parseCsv("a,b\n1,2\n3\n4,5,6\n7,8");
    expect(file.rows.map((r) => r.line)).toEqual([2, 5]);
    expect(file.problems).toEqual([
      { line: 3, message: "has 1 fields; the header has 2" },
      { line: 4, message: "has 3 fields; the header has 2" },
    ]);
  });

  it("reports an unterminated quote at the line it starts", () => {
    const file = parseCsv('a,b\n1,2\n3,"open\n4,5\n');
    expect(file.rows.map((r) => r.line)).toEqual([2]);
    expect(file.problems).toHaveLength(1);
    expect(file.problems[0].line).toBe(3);
    expect(file.problems[0].message).toMatch(/quote/i);
  });

  it("drops a byte-order mark from the header", () => {
    expect(parseCsv("\uFEFFtype\nx").header).toEqual(["type"]);
  });
});

describe("parseJsonLines", () => {
  it("reads objects and reports bad lines by number", () => {
    const { rows, problems } = parseJsonLines('{"event_type":"a"}\n\nnot json\n[1]\n{"event_type":"b"}\n');
    expect(rows).toEqual([
      { line: 1, value: { event_type: "a" } },
      { line: 5, value: { event_type: "b" } },
    ]);
    expect(problems.map((p) => p.line)).toEqual([3, 4]);
    expect(problems[1].message).toBe("must be a JSON object");
  });
});
