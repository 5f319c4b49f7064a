import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkHistory } from '../checker/history.checker';
import type { WriteEvent } from '../history/history.event';
import { readHistory } from '../history/history.reader';
import { ResourceProcess } from './resource.process';

describe('fault lab resource server (its own process)', () => {
  let dir: string;
  let resource: ResourceProcess | undefined;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'ndl-faults-resource-'));
  });

  afterEach(async () => {
    await resource?.stop();
    resource = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  it('fenced, refuses a token lower than the highest accepted for the key; unfenced, accepts it; logs every write', async () => {
    const historyPath = join(dir, 'resource.jsonl');
    resource = await ResourceProcess.start('fenced', historyPath);
    const write = (client: string, op: number, key: string, fencingToken: number) =>
      resource!.client.write({
        process: 'w',
        client,
        op,
        keys: [key],
        writes: [{ key, fencingToken }],
      });

    expect(await write('w/c0', 1, 'a', 5)).toEqual([true]);
    expect(await write('w/c0', 1, 'a', 5)).toEqual([true]); // the same holder writes again
    expect(await write('w/c1', 1, 'a', 7)).toEqual([true]);
    expect(await write('w/c0', 1, 'a', 5)).toEqual([false]); // the paused holder, too late
    expect(await write('w/c2', 1, 'b', 1)).toEqual([true]); // keys are independent
    expect(
      await resource.client.write({
        process: 'w',
        client: 'w/c3',
        op: 1,
        keys: ['a', 'b'],
        writes: [
          { key: 'a', fencingToken: 6 },
          { key: 'b', fencingToken: 2 },
        ],
      }),
    ).toEqual([false, true]);
    await resource.setMode('unfenced');
    expect(await write('w/c0', 1, 'a', 5)).toEqual([true]);
    await resource.stop();
    resource = undefined;

    const events = readHistory([historyPath]) as WriteEvent[];
    expect(events.map((e) => [e.key, e.fencingToken, e.accepted, e.mode])).toEqual([
      ['a', 5, true, 'fenced'],
      ['a', 5, true, 'fenced'],
      ['a', 7, true, 'fenced'],
      ['a', 5, false, 'fenced'],
      ['b', 1, true, 'fenced'],
      ['a', 6, false, 'fenced'],
      ['b', 2, true, 'fenced'],
      ['a', 5, true, 'unfenced'],
    ]);
    expect(events[3]).toMatchObject({ client: 'w/c0', op: 1, highest: 7, process: 'resource' });
    const report = checkHistory(events);
    expect(report.total).toMatchObject({
      staleWritesAccepted: 0,
      staleWritesRejected: 2,
      staleWritesAcceptedUnfenced: 1,
    });
  });
});
