import { compileKeyResolver } from './key-template.compiler';
import { parseParameterNames } from './parameter-names.parser';

class Sample {
  async plain(
    orderId: string,
    amount = 5,
    { nested }: { nested: string } = { nested: 'x' },
    ...rest: string[]
  ) {
    return [orderId, amount, nested, rest];
  }
  /* a comment (with, parens) */ async commented(
    /* first */ a: string, // trailing
    b: string = 'a,b',
  ) {
    return a + b;
  }
}

describe('parseParameterNames', () => {
  it('reads names, defaults, destructuring and rest parameters', () => {
    expect(parseParameterNames(Sample.prototype.plain)).toEqual({
      names: ['orderId', 'amount', undefined, 'rest'],
      rest: true,
    });
    expect(parseParameterNames(Sample.prototype.commented).names).toEqual(['a', 'b']);
    expect(
      parseParameterNames(function named(x: number, y: number) {
        return x + y;
      }).names,
    ).toEqual(['x', 'y']);
    expect(parseParameterNames(((z: number) => z) as (z: number) => number).names).toEqual(['z']);
  });
});

describe('compileKeyResolver', () => {
  const method = Sample.prototype.plain;

  it('escapes every character that could act as a separator', () => {
    const resolve = compileKeyResolver('o:<orderId>:<amount>', method, 'test');
    expect(resolve(['a:b', 1])).toBe('o:a%3Ab:1');
    expect(resolve(['a', 'b:1'])).toBe('o:a:b%3A1');
    expect(resolve(['é 100%', 2])).toBe('o:%C3%A9%20100%25:2');
    expect(resolve(['uuid-like_1.2', 3])).toBe('o:uuid-like_1.2:3');
  });

  it('is injective: distinct values never produce the same key', () => {
    const resolve = compileKeyResolver('o:<orderId>/<amount>', method, 'test');
    const values = ['a', 'a/b', 'a%2Fb', 'a%252Fb', 'b', '/', '%', 'a:', ':a', 'a b', 'a+b'];
    const keys = new Set<string>();
    for (const x of values) for (const y of values) keys.add(String(resolve([x, y])));
    expect(keys.size).toBe(values.length * values.length);
  });

  it('treats a number and its decimal string as the same resource', () => {
    const resolve = compileKeyResolver('o:<0>', method, 'test');
    expect(resolve([42])).toBe(resolve(['42']));
    expect(resolve([10n])).toBe('o:10');
  });

  it('rejects values that cannot form a key', () => {
    const resolve = compileKeyResolver('o:<orderId>', method, 'test');
    expect(() => resolve([undefined])).toThrow(/undefined/);
    expect(() => resolve([null])).toThrow(/null/);
    expect(() => resolve([''])).toThrow(/empty/);
    expect(() => resolve([Infinity])).toThrow(/Infinity/);
    expect(() => resolve([{}])).toThrow(/property path/);
    expect(() => resolve([['a']])).toThrow(/array/);
    expect(() => resolve(['\ud800'])).toThrow(/surrogate/);
  });

  it('walks property paths and reports where they break', () => {
    const resolve = compileKeyResolver('c:<orderId.customer.id>', method, 'test');
    expect(resolve([{ customer: { id: 9 } }])).toBe('c:9');
    expect(() => resolve([{ customer: null }])).toThrow(/cannot read "id"/);
    expect(() => resolve([{}])).toThrow(/no property "customer"/);
  });

  it('fails at definition on unknown names, stray brackets and ambiguous templates', () => {
    expect(() => compileKeyResolver('o:<order>', method, 'test')).toThrow(/names no parameter/);
    expect(() => compileKeyResolver('o:<orderId', method, 'test')).toThrow(/unbalanced/);
    expect(() => compileKeyResolver('o:<orderId>-<amount>', method, 'test')).toThrow(/separated/);
    expect(() => compileKeyResolver('o:<1 + 1>', method, 'test')).toThrow(/invalid placeholder/);
    expect(() => compileKeyResolver([], method, 'test')).toThrow(/non-empty array/);
    expect(() => compileKeyResolver('', method, 'test')).toThrow(/empty/);
  });

  it('allows any index into a rest parameter', () => {
    expect(compileKeyResolver('r:<7>', method, 'test')(['a', 1, {}, 'b', 'c', 'd', 'e', 'f'])).toBe(
      'r:f',
    );
  });
});
