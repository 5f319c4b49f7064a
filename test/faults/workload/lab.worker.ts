/**
 * One worker process of the lab: a real Nest application context with DistributedLockModule
 * (the BUILT package: 'nestjs-distributed-lock' resolves to dist/), running `clients` clients
 * that contend for the run's keys and, inside each critical section, write to the resource
 * server with the grant's fencing tokens, logging every step to the history. The writes do not
 * check `lock.held` first, like most handlers: a pause between grant and write is exactly what
 * fencing must catch.
 *
 * argv[2]: WorkerConfig as JSON. stdin: `{"op":"go"}` starts the clients; `{"op":"block",
 * "ms":N}` makes the next client granted a lock block the whole event loop for N ms (a busy loop:
 * timers, sockets and the engine's renewals all wait) before its first write; `{"op":"tune",
 * "holdMs","writes","keys"}` changes the workload from the next operation on; end of stdin stops
 * them (each finishes its operation), closes the app and exits. stdout: `ready`, `done`, `status`
 * with `holding` whenever the process starts or stops holding any lock, `blocked` after a block,
 * and `progress` with the grants so far, every half second.
 */
import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { DistributedLockModule, Lock, LockService } from 'nestjs-distributed-lock';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { ClientEvent, labNow, labTimeOfEpoch } from '../history/history.event';
import { HistoryWriter } from '../history/history.writer';
import { ResourceClient } from '../resource/resource.client';
import type { WorkerConfig } from './workload.config';
import { seededRandom } from '../runtime/seeded.random';

/** The grant's fencing tokens, or none where the backend issues none (Redlock: the getter throws). */
function tokensOf(lock: Lock): readonly number[] {
  try {
    return lock.fencingTokens;
  } catch {
    return [];
  }
}

function emit(line: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

type Fields<E> = E extends ClientEvent
  ? Omit<E, 't' | 'process' | 'client' | 'op' | 'keys'>
  : never;

async function main(): Promise<void> {
  const config = JSON.parse(process.argv[2] ?? '{}') as WorkerConfig;
  const tuned = { holdMs: config.holdMs, writes: config.writes, keys: config.keys.length };
  let blockNextMs = 0;
  let grants = 0;
  const history = new HistoryWriter(config.historyPath);
  const resource = new ResourceClient(config.resourcePort);
  const app = await NestFactory.createApplicationContext(
    DistributedLockModule.forRoot(config.moduleOptions),
    { logger: ['error'] },
  );
  const locks = app.get(LockService);
  let stopping = false;
  let held = 0;
  // Tells the nemesis whether this process holds a lock now, so it can pause a real holder.
  const holding = (delta: number): void => {
    const before = held > 0;
    held += delta;
    if (before !== held > 0) emit({ event: 'status', holding: held > 0 });
  };
  const deadline = labNow() + config.maxMs;

  async function client(index: number): Promise<number> {
    const name = `${config.process}/c${index}`;
    const next = seededRandom(config.seed * 1000 + index);
    let op = 0;
    for (; op < config.maxOps && !stopping && labNow() < deadline;) {
      op += 1;
      const keyCount = Math.max(1, Math.min(tuned.keys, config.keys.length));
      const first = config.keys[Math.floor(next() * keyCount)];
      const multi = config.multiKeyEvery > 0 && op % config.multiKeyEvery === 0;
      const second = config.keys[(config.keys.indexOf(first) + 1) % keyCount];
      const keys = (multi && second !== first ? [first, second] : [first]).sort();
      const base = { process: config.process, client: name, op, keys };
      const log = (fields: Fields<ClientEvent>): void =>
        history.log({ ...base, t: labNow(), ...fields } as ClientEvent);
      log({ event: 'invoke', ttl: config.ttl, wait: config.wait });
      let lock: Lock;
      try {
        lock = await locks.acquire(keys, { ttl: config.ttl, wait: config.wait });
      } catch (err) {
        const error = err instanceof Error ? err : new Error(String(err));
        log({ event: 'fail', error: error.name, message: error.message.slice(0, 300) });
        // Busy is normal; an outage must not become a tight loop of failing calls.
        await sleep(error.name === 'LockNotAcquiredError' ? next() * 5 : 50 + next() * 50);
        continue;
      }
      const validUntil = (): number => labTimeOfEpoch(lock.expiresAt);
      let known = validUntil();
      grants += 1;
      const fenced = tokensOf(lock).length > 0;
      log({ event: 'ok', fencingTokens: tokensOf(lock), validUntil: known });
      const signal = lock.signal;
      let counted = false;
      const stopCounting = (): void => {
        if (counted) holding(-1);
        counted = false;
      };
      const onAbort = (): void => {
        const reason: unknown = signal.reason;
        if (reason instanceof Error && reason.name === 'LockLostError') {
          stopCounting();
          log({ event: 'lost', reason: reason.message.slice(0, 300) });
        }
      };
      // A grant whose answer came after its deadline is lost from the start.
      if (signal.aborted) onAbort();
      else {
        counted = true;
        holding(+1);
        signal.addEventListener('abort', onAbort, { once: true });
      }
      // Renewals move the deadline without an event: sampled on a timer and before every step,
      // and only while `held` reads true (reading it also makes the engine check the deadline).
      const sample = (): void => {
        if (!counted || !lock.held) return;
        const now = validUntil();
        if (now > known + 1) {
          known = now;
          log({ event: 'renew', validUntil: now });
        }
      };
      const watch = setInterval(sample, Math.max(5, config.ttl / 10));
      if (blockNextMs > 0) {
        const ms = blockNextMs;
        blockNextMs = 0;
        log({ event: 'blocked', ms });
        // The classic stop-the-world pause in-process: nothing else of this process runs meanwhile.
        const until = labNow() + ms;
        while (labNow() < until) {
          /* busy */
        }
        emit({ event: 'blocked', ms });
      }
      try {
        // Without tokens there is nothing the resource could fence on: no writes to judge.
        for (let w = 0; w < (fenced ? tuned.writes : 0); w++) {
          if (w > 0) await sleep(tuned.holdMs);
          sample();
          const tokens = tokensOf(lock);
          await resource.write({
            process: config.process,
            client: name,
            op,
            keys: lock.keys,
            writes: lock.keys.map((key, i) => ({ key, fencingToken: tokens[i] })),
          });
        }
        if (tuned.holdMs > 0) await sleep(tuned.holdMs);
      } catch {
        // A write the resource did not answer is the resource's business, not the lock's.
      }
      clearInterval(watch);
      sample();
      stopCounting();
      log({ event: 'release' });
      try {
        await lock.release();
        log({ event: 'released', ok: true });
      } catch (err) {
        log({ event: 'released', ok: false, error: err instanceof Error ? err.name : String(err) });
      }
    }
    return op;
  }

  const started = new Promise<void>((resolve) => {
    const lines = createInterface({ input: process.stdin });
    lines.on('line', (line) => {
      const command = JSON.parse(line) as {
        op?: string;
        ms?: number;
        holdMs?: number;
        writes?: number;
        keys?: number;
      };
      if (command.op === 'go') resolve();
      else if (command.op === 'block') blockNextMs = command.ms ?? 0;
      else if (command.op === 'tune') {
        tuned.holdMs = command.holdMs ?? tuned.holdMs;
        tuned.writes = command.writes ?? tuned.writes;
        tuned.keys = command.keys ?? tuned.keys;
      }
    });
    lines.on('close', () => {
      stopping = true;
      resolve();
    });
  });
  emit({ event: 'ready', pid: process.pid });
  await started;
  const progress = setInterval(() => emit({ event: 'progress', grants }), 500);
  const ops = await Promise.all(Array.from({ length: config.clients }, (_, i) => client(i)));
  clearInterval(progress);
  await app.close();
  resource.close();
  history.close();
  emit({ event: 'done', ops: ops.reduce((a, b) => a + b, 0) });
  process.exit(0);
}

main().catch((err: unknown) => {
  emit({
    event: 'crashed',
    message: err instanceof Error ? (err.stack ?? err.message) : String(err),
  });
  process.exit(1);
});
