import { describe, expect, it } from "vitest";
import { canonicalJson, DERIVED_PREFIX, sha256, sha256Hex, withIdempotencyKeys } from "./keys";

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

describe("sha256", () => {
  it("matches the FIPS test vectors, and Web Crypto", async () => {
    const enc = new TextEncoder();
    expect(hex(sha256(enc.encode("")))).toBe("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    expect(hex(sha256(enc.encode("abc")))).toBe("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const long = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    expect(hex(sha256(enc.encode(long)))).toBe("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    const text = "é".repeat(100);
    expect(await sha256Hex(text)).toBe(hex(sha256(enc.encode(text))));
  });
});

describe("canonicalJson", () => {
  it("sorts keys at every level and drops undefined", () => {
    expect(canonicalJson({ b: 1, a: { d: [1, { z: 1, y: 2 }], c: undefined } })).toBe('{"a":{"d":[1,{"y":2,"z":1}]},"b":1}');
  });
});

describe("withIdempotencyKeys", () => {
  it("keeps a file's key, derives the same key for the same row, and tells equal rows apart", async () => {
    const rows = [
      { event_type: "p", external_id: "c1", idempotency_key: "k1" },
      { event_type: "p", external_id: "c2" },
      { external_id: "c2", event_type: "p" },
      { event_type: "p", external_id: "c3" },
    ];
    const first = await withIdempotencyKeys(rows);
    expect(first[0].idempotency_key).toBe("k1");
    const derived = first.slice(1).map((e) => e.idempotency_key ?? "");
    for (const key of derived) expect(key).toMatch(new RegExp(`^${DERIVED_PREFIX}[0-9a-f]{64}$`));
    expect(new Set(derived).size).toBe(3);
    const again = await withIdempotencyKeys(rows);
    expect(again).toEqual(first);
    const appended = await withIdempotencyKeys([...rows, { event_type: "p", external_id: "c4" }]);
    expect(appended.slice(0, 4)).toEqual(first);
  });
});
