/** Reading an uploaded file into rows that keep their line numbers (CSV or JSON Lines). */
import Papa from "papaparse";

/** A data row of a CSV file; `line` is its first line in the file (the header is line 1). */
export interface CsvRow {
  line: number;
  cells: string[];
}

/** A row that cannot be read, with the line the operator can find it at. */
export interface LineProblem {
  line: number;
  message: string;
}

export interface CsvFile {
  header: string[];
  rows: CsvRow[];
  problems: LineProblem[];
}

/** Parse CSV text with a header row. Rows with the wrong number of fields or broken quotes
 * are reported by line and left out; blank lines are skipped. */
export function parseCsv(text: string): CsvFile {
  const source = text.replace(/^\uFEFF/, "").replace(/\r\n?/g, "\n");
  const out: CsvFile = { header: [], rows: [], problems: [] };
  let start = 0;
  let line = 1;
  let first = true;
  Papa.parse<string[]>(source, {
    newline: "\n",
    step: (result) => {
      const end = result.meta.cursor;
      const rowLine = line;
      for (let i = start; i < end; i++) if (source.charCodeAt(i) === 10) line++;
      start = end;
      const cells = result.data;
      // A file of one column has no delimiter to detect: that is not a problem of a row.
      const errors = result.errors.filter((e) => e.type !== "Delimiter");
      if (errors.length > 0) {
        out.problems.push({ line: rowLine, message: errors.map((e) => e.message).join("; ") });
        return;
      }
      if (cells.length === 1 && cells[0].trim() === "") return;
      if (first) {
        first = false;
        out.header = cells.map((c) => c.trim());
        return;
      }
      if (cells.length !== out.header.length) {
        out.problems.push({
          line: rowLine,
          message: `has ${cells.length} fields; the header has ${out.header.length}`,
        });
        return;
      }
      out.rows.push({ line: rowLine, cells });
    },
  });
  return out;
}

/** A line of a JSON Lines file holding one JSON object. */
export interface JsonRow {
  line: number;
  value: Record<string, unknown>;
}

/** Parse JSON Lines: one JSON object per line; blank lines are skipped, others reported. */
export function parseJsonLines(text: string): { rows: JsonRow[]; problems: LineProblem[] } {
  const rows: JsonRow[] = [];
  const problems: LineProblem[] = [];
  text.replace(/^\uFEFF/, "").split(/\r\n?|\n/).forEach((raw, i) => {
    const line = i + 1;
    if (raw.trim() === "") return;
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch (e) {
      problems.push({ line, message: `is not JSON: ${(e as Error).message}` });
      return;
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      problems.push({ line, message: "must be a JSON object" });
      return;
    }
    rows.push({ line, value: value as Record<string, unknown> });
  });
  return { rows, problems };
}
