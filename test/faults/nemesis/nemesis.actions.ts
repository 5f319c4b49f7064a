import { sleep } from '../../support/async.helpers';
import type { WorkerProcess } from '../workload/worker.process';
import type { NemesisAction, NemesisContext } from './nemesis.action';

function between(ctx: NemesisContext, [min, max]: readonly [number, number]): number {
  return Math.round(min + (max - min) * ctx.random());
}

function anyWorker(ctx: NemesisContext): number {
  return Math.floor(ctx.random() * ctx.workers.length);
}

/** A worker that holds a lock now and is free of other faults; any worker after ~0.5 s without. */
async function holdingWorker(ctx: NemesisContext): Promise<WorkerProcess> {
  for (let i = 0; i < 50; i++) {
    const candidates = ctx.workers.filter((w) => w.holding && !ctx.isBusy(w.name));
    if (candidates.length > 0) return candidates[Math.floor(ctx.random() * candidates.length)];
    await sleep(10);
  }
  return ctx.workers[anyWorker(ctx)];
}

/**
 * The classic GC pause: SIGSTOP a worker process (its clients hold locks most of the time under
 * this workload) for longer than what keeps its locks alive, then SIGCONT. Its late writes must
 * be refused by fencing, and it must see its locks lost when it reads them.
 */
export function pauseHolder(pauseMs?: readonly [number, number]): NemesisAction {
  const action: NemesisAction = {
    name: 'pause-holder',
    family: 'client-pause',
    run: async (ctx) => {
      const worker = await holdingWorker(ctx);
      return ctx.inject(action, worker.name, async () => {
        worker.freeze();
        try {
          // Its status lines are written synchronously (a pipe), so those sent before the stop
          // are here within a few ms: a worker that released meanwhile is let go at once, and
          // the fault does not count towards the phase's target (the checker judges it too).
          await sleep(5);
          if (!worker.holding) return false;
          await sleep(between(ctx, pauseMs ?? ctx.backend.pauseMs));
          return true;
        } finally {
          worker.thaw();
        }
      });
    },
  };
  return action;
}

/**
 * A client whose timers are delayed: the next client of a worker to be granted a lock blocks the
 * worker's whole event loop (a busy loop, not a signal) for longer than the ttl before its first
 * write. Its renewals cannot run, so its lock expires and goes to another client; when the loop
 * runs again it must see the lock lost before anyone else was granted it, and its late write
 * must be refused by fencing.
 */
export function blockLoop(ms?: readonly [number, number]): NemesisAction {
  const action: NemesisAction = {
    name: 'block-loop',
    family: 'client-pause',
    run: (ctx) => {
      const worker = ctx.workers[anyWorker(ctx)];
      return ctx.inject(action, worker.name, () =>
        worker.block(between(ctx, ms ?? ctx.backend.pauseMs), 3000),
      );
    },
  };
  return action;
}

/** One worker's connections stop forwarding without closing: a partition of that client. */
export function proxyStall(ms: readonly [number, number]): NemesisAction {
  const action: NemesisAction = {
    name: 'proxy-stall',
    family: 'network',
    run: (ctx) => {
      const i = anyWorker(ctx);
      return ctx.inject(action, ctx.workers[i].name, async () => {
        ctx.proxies[i].setMode({ kind: 'stall' });
        try {
          await sleep(between(ctx, ms));
        } finally {
          ctx.proxies[i].setMode({ kind: 'pass' });
        }
      });
    },
  };
  return action;
}

/** One worker's connections deliver every chunk `delayMs` late, for a while. */
export function proxySlow(
  delayMs: readonly [number, number],
  ms: readonly [number, number],
): NemesisAction {
  const action: NemesisAction = {
    name: 'proxy-slow',
    family: 'network',
    run: (ctx) => {
      const i = anyWorker(ctx);
      return ctx.inject(action, ctx.workers[i].name, async () => {
        ctx.proxies[i].setMode({ kind: 'slow', delayMs: between(ctx, delayMs) });
        try {
          await sleep(between(ctx, ms));
        } finally {
          ctx.proxies[i].setMode({ kind: 'pass' });
        }
      });
    },
  };
  return action;
}

/** Every connection of one worker reset (RST), whatever it was doing. */
export function proxyReset(): NemesisAction {
  const action: NemesisAction = {
    name: 'proxy-reset',
    family: 'network',
    run: (ctx) => {
      const i = anyWorker(ctx);
      return ctx.inject(action, ctx.workers[i].name, async () => {
        ctx.proxies[i].reset();
      });
    },
  };
  return action;
}

/** The server frozen (SIGSTOP) for a while, then SIGCONT. */
export function serverPause(ms: readonly [number, number]): NemesisAction {
  const action: NemesisAction = {
    name: 'server-pause',
    family: 'server',
    run: (ctx) =>
      ctx.inject(action, 'server', async () => {
        ctx.server.freeze();
        try {
          await sleep(between(ctx, ms));
        } finally {
          ctx.server.thaw();
        }
      }),
  };
  return action;
}

/** kill -9 of the server, down for a while, restarted on the same port and data dir. */
export function serverKill(downMs: readonly [number, number]): NemesisAction {
  const action: NemesisAction = {
    name: 'server-kill',
    family: 'server',
    run: (ctx) =>
      ctx.inject(action, 'server', async () => {
        await ctx.server.kill();
        try {
          await sleep(between(ctx, downMs));
        } finally {
          await ctx.server.restart();
        }
      }),
  };
  return action;
}

function serverClock(ctx: NemesisContext): NonNullable<NemesisContext['server']['clock']> {
  const clock = ctx.server.clock;
  if (!clock) throw new Error(`${ctx.backend.name}: its server has no clock to shift`);
  return clock;
}

/**
 * The server's wall clock runs at `rate` × real time for a while (2: fast, 0.5: slow), moved in
 * 10 ms steps through the clock shim; it keeps the offset it reached. A fast clock expires keys
 * early, which no lock on that server can detect; fencing tokens must still only go up.
 */
export function clockRate(rate: number, ms: readonly [number, number]): NemesisAction {
  const action: NemesisAction = {
    name: rate > 1 ? 'clock-fast' : 'clock-slow',
    family: 'clock',
    run: (ctx) =>
      ctx.inject(action, 'server', async () => {
        const clock = serverClock(ctx);
        const from = clock.offsetMs;
        const startedAt = performance.now();
        const endAt = startedAt + between(ctx, ms);
        for (let i = 0; i < 10_000 && performance.now() < endAt && !ctx.signal?.aborted; i++) {
          clock.set(from + (rate - 1) * (performance.now() - startedAt));
          await sleep(10);
        }
      }),
  };
  return action;
}

/** The server's wall clock stepped back at once (an NTP correction, a VM restored). */
export function clockStepBack(ms: readonly [number, number]): NemesisAction {
  const action: NemesisAction = {
    name: 'clock-step-back',
    family: 'clock',
    run: (ctx) =>
      ctx.inject(action, 'server', async () => {
        const clock = serverClock(ctx);
        clock.set(clock.offsetMs - between(ctx, ms));
        // Long enough for grants and writes under the stepped-back clock before the next fault.
        await sleep(500);
      }),
  };
  return action;
}

/** One of the topology's own faults (a Sentinel failover, Redlock masters lost), by name. */
export function topologyFault(name: string): NemesisAction {
  const action: NemesisAction = {
    name,
    family: 'server',
    run: (ctx) =>
      ctx.inject(action, 'server', async () => {
        const fault = ctx.server.topology?.[name];
        if (!fault) throw new Error(`${ctx.backend.name} has no topology fault ${name}`);
        await fault(ctx.random);
      }),
  };
  return action;
}
