import { compactList, firstItem, itemCount, listItems } from './compact.list';

describe('CompactList', () => {
  it('keeps a single item as itself and gives it back as a one-item list', () => {
    const one = compactList(['order:1']);
    expect(one).toBe('order:1');
    expect(listItems(one)).toEqual(['order:1']);
    expect(firstItem(one)).toBe('order:1');
    expect(itemCount(one)).toBe(1);
    expect(listItems(compactList([7]))).toEqual([7]);
  });

  it('keeps several items as the same array, in order', () => {
    const keys = ['a', 'b', 'c'];
    const many = compactList(keys);
    expect(many).toBe(keys);
    expect(listItems(many)).toBe(keys);
    expect(firstItem(many)).toBe('a');
    expect(itemCount(many)).toBe(3);
    expect(itemCount(compactList([]))).toBe(0);
  });
});
