import { newOwnerToken } from './owner.token';

describe('newOwnerToken', () => {
  it('draws distinct 128-bit URL-safe tokens, across refills of its pool', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 2_000; i++) seen.add(newOwnerToken()); // about 8 refills
    expect(seen.size).toBe(2_000);
    for (const token of seen) expect(token).toMatch(/^[A-Za-z0-9_-]{22}$/);
    // Random, not a counter: bits vary at every position.
    const tokens = [...seen];
    const first = new Set(tokens.map((t) => t[0]));
    const last = new Set(tokens.map((t) => t[20]));
    expect(first.size).toBeGreaterThan(40);
    expect(last.size).toBeGreaterThan(40);
  });
});
