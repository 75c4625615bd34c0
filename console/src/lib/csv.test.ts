import { describe, expect, it } from "vitest";
import { csvCell, toCsv } from "./csv";

describe("toCsv", () => {
  it("quotes what needs quoting and defuses spreadsheet formulas", () => {
    expect(toCsv([["a", 'say "hi"', "x,y", "two\nlines", 3, null]])).toBe('a,"say ""hi""","x,y","two\nlines",3,\r\n');
    expect(csvCell("=SUM(A1)")).toBe("'=SUM(A1)");
    expect(csvCell("-12")).toBe("-12");
  });
});
