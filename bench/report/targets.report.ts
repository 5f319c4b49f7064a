import { medianRoundRatio, ratio } from '../stats';
import {
  BenchResults,
  ContendedResult,
  DeadWaiterResult,
  FrozenServerResult,
  HandoffResult,
  HeldScaleResult,
  isError,
  Outcome,
  ParallelResult,
  UncontendedResult,
} from './results.types';

/** One target of the issue, judged on the numbers of this run. */
export interface TargetCheck {
  readonly target: string;
  /** true met, false not met, null not measurable in this run (a contender failed). */
  readonly met: boolean | null;
  readonly numbers: string;
}

/** Renewal cost ceiling for "a few hundred backend requests per second", at any lock count. */
export const RENEW_OPS_CEILING = 300;
/** The library's default ttl: held-lock rows at it are judged on the stricter lag bounds. */
export const DEFAULT_TTL_MS = 30_000;
/** Event-loop lag bounds of the held-lock rows: at the default ttl, and at a shorter one. */
export const LAG_BOUNDS = {
  atDefaultTtl: { p99: 10, max: 50 },
  shortTtl: { p99: 20 },
} as const;
/** Heap per held lock, bytes, at most. */
export const HEAP_PER_LOCK_CEILING = 500;
/**
 * How far ahead of ours a peer's uncontended median-of-rounds may be and still count as noise:
 * round-to-round ratios of one pair of contenders spread about this much on the shared machine.
 */
export const PEER_NOISE = 0.1;
/** Fair tail: wait p99 at most this many times the ideal FIFO wait. */
export const FIFO_WAIT_FACTOR = 2;
/**
 * Timer and scheduling slack allowed over a fault bound: the library arms a timer for the bound
 * itself, so even a correct figure lands a few ms past it. Far below every slow path.
 */
export const FAULT_ALLOWANCE_MS = 100;
/**
 * etcd revokes expired leases in a loop that runs every 500 ms, so a dead waiter's member key
 * outlives its session ttl by up to that much: added to the etcd dead-waiter allowance.
 */
export const ETCD_LEASE_CHECK_MS = 500;
const TUNED_REDIS_PEERS = ['redlock/tuned', 'sesame-redlock/tuned', 'redis-semaphore/tuned'];

function ok<T extends object>(list: readonly Outcome<T>[]): T[] {
  return list.filter((o): o is T => !isError(o));
}

const f = (n: number | null | undefined, digits = 3): string =>
  n === null || n === undefined || !Number.isFinite(n)
    ? 'n/a'
    : String(Number(n.toPrecision(digits)));

function judge(
  values: readonly (number | null | undefined)[],
  test: () => boolean,
): boolean | null {
  return values.every((v) => v !== null && v !== undefined && Number.isFinite(v)) ? test() : null;
}

/** Computes every target of the issue from `results`. */
export function computeTargets(results: BenchResults): TargetCheck[] {
  const checks: TargetCheck[] = [];
  const handoff = ok<HandoffResult>(results.handoff);
  const h1 = (id: string): number | undefined =>
    handoff.find((h) => h.adapter === id && h.waiters === 1)?.latencyMs.p50;
  const h1p99 = (id: string): number | undefined =>
    handoff.find((h) => h.adapter === id && h.waiters === 1)?.latencyMs.p99;

  const ours = h1('ours/redis');
  const push = h1('floor/redis-push');
  checks.push({
    target: 'Redis handoff p50 ≤ 1.2x server-push floor',
    met: judge([ours, push], () => (ours as number) <= 1.2 * (push as number)),
    numbers: `ours ${f(ours)} ms vs floor ${f(push)} ms (${f(ratio(ours, push), 2)}x)`,
  });
  const tuned = TUNED_REDIS_PEERS.map((id) => ({ id, p50: h1(id) })).filter(
    (t): t is { id: string; p50: number } => t.p50 !== undefined && Number.isFinite(t.p50),
  );
  const best = tuned.sort((a, b) => a.p50 - b.p50)[0];
  checks.push({
    target: 'Redis handoff p50 ≥ 3x faster than the best-tuned peer',
    met: judge([ours, best?.p50], () => (best as { p50: number }).p50 >= 3 * (ours as number)),
    numbers: best
      ? `ours ${f(ours)} ms vs ${best.id} ${f(best.p50)} ms (${f(ratio(best.p50, ours), 2)}x faster)`
      : 'no tuned peer measured',
  });
  const oursP99 = h1p99('ours/redis');
  checks.push({
    target: 'Redis handoff p99 < 2 ms',
    met: judge([oursP99], () => (oursP99 as number) < 2),
    numbers: `ours p99 ${f(oursP99)} ms`,
  });
  const oursEtcd = h1('ours/etcd');
  const watch = h1('floor/etcd-watch');
  checks.push({
    target: 'etcd handoff p50 ≤ 1.2x raw watch floor',
    met: judge([oursEtcd, watch], () => (oursEtcd as number) <= 1.2 * (watch as number)),
    numbers: `ours ${f(oursEtcd)} ms vs floor ${f(watch)} ms (${f(ratio(oursEtcd, watch), 2)}x)`,
  });

  const unc = ok<UncontendedResult>(results.uncontended);
  const rounds = (id: string): readonly number[] | undefined =>
    unc.find((u) => u.adapter === id)?.roundRates;
  for (const [backend, floorId, min] of [
    ['redis', 'floor/redis-poll', 0.9],
    ['etcd', 'floor/etcd-watch', 0.95],
    ['memory', 'floor/async-mutex', 0.5],
  ] as const) {
    const mine = rounds(`ours/${backend}`);
    const floor = rounds(floorId);
    const rel = medianRoundRatio(mine, floor);
    const what =
      backend === 'memory' ? 'async-mutex (an in-process mutex), within 2x' : 'raw floor';
    checks.push({
      target: `Uncontended ${backend} ≥ ${min}x ${what}: median over the interleaved rounds of ours / floor`,
      met: judge([rel], () => rel >= min),
      numbers: mine
        ? `${f(rel, 2)}x; per round ${roundRatios(mine, floor)}; median rates ours ${f(unc.find((u) => u.adapter === `ours/${backend}`)?.cyclesPerSec)}/s vs floor ${f(unc.find((u) => u.adapter === floorId)?.cyclesPerSec)}/s`
        : 'not measured',
    });
  }
  const oursRedis = rounds('ours/redis');
  const peers = unc
    .filter((u) => u.adapter !== 'ours/redis' && adapterBackend(results, u.adapter) === 'redis')
    .filter((u) => !u.adapter.startsWith('floor/') && !u.adapter.startsWith('ours/'))
    .map((u) => ({ id: u.adapter, rel: medianRoundRatio(u.roundRates, oursRedis) }))
    .filter((p) => Number.isFinite(p.rel))
    .sort((a, b) => b.rel - a.rel);
  const lead = peers[0];
  checks.push({
    target: `Uncontended redis: no peer's median-of-rounds ahead of ours by more than noise (${PEER_NOISE * 100}%)`,
    met: lead ? lead.rel <= 1 + PEER_NOISE : null,
    numbers: lead
      ? `fastest peer ${lead.id} ${f(lead.rel, 2)}x ours (median of per-round ratios)`
      : 'no peer measured',
  });

  const par = ok<ParallelResult>(results.parallel ?? []);
  const parRounds = (id: string): readonly number[] | undefined =>
    par.find((p) => p.adapter === id)?.roundRates;
  for (const [backend, floorId, min] of [
    ['redis', 'floor/redis-poll', 0.9],
    ['memory', 'floor/async-mutex', 0.5],
  ] as const) {
    const mine = par.find((p) => p.adapter === `ours/${backend}`);
    const floor = par.find((p) => p.adapter === floorId);
    const rel = medianRoundRatio(parRounds(`ours/${backend}`), parRounds(floorId));
    checks.push({
      target: `Parallel ${backend} (${mine?.callers ?? 'n'} callers, distinct keys) ≥ ${min}x ${floorId} on one client`,
      met: judge([rel], () => rel >= min),
      numbers: mine
        ? `${f(rel, 2)}x (median of per-round ratios); per round ${roundRatios(mine.roundRates, floor?.roundRates)}; ours ${f(mine.cyclesPerSec)}/s vs floor ${f(floor?.cyclesPerSec)}/s`
        : 'not measured',
    });
  }

  const contended = ok<ContendedResult & { variant: string }>(results.contended);
  const variants = [...new Set(contended.map((c) => c.variant))];
  for (const [backend, floorId] of [
    ['redis', 'floor/redis-poll'],
    ['etcd', 'floor/etcd-watch'],
  ] as const) {
    for (const variant of variants) {
      const mine = contended.find((c) => c.adapter === `ours/${backend}` && c.variant === variant);
      const floor = contended.find((c) => c.adapter === floorId && c.variant === variant);
      const rel = ratio(mine?.grantsPerSec, floor?.grantsPerSec);
      const fifo = ratio(mine?.waitMs.p99, mine?.idealFifoWaitMs);
      const failures: string[] = [];
      let met: boolean | null = null;
      if (mine && floor) {
        if (!(mine.ownerSwitchPct >= 90)) failures.push('switches');
        if (!(rel >= 0.8)) failures.push('throughput');
        if (!(fifo <= FIFO_WAIT_FACTOR)) failures.push('wait p99');
        if (mine.lostUpdates !== 0) failures.push('lost updates');
        met = failures.length === 0;
      }
      checks.push({
        target: `Contended ${backend} ${variant}: ≥ 90% switches, ≥ 0.8x ${floorId} throughput, wait p99 ≤ ${FIFO_WAIT_FACTOR}x ideal FIFO wait, 0 lost`,
        met,
        numbers: mine
          ? `switches ${f(mine.ownerSwitchPct)}%, ${f(mine.grantsPerSec)}/s vs ${f(floor?.grantsPerSec)}/s (${f(rel, 2)}x), wait p99 ${f(mine.waitMs.p99)} ms vs ideal FIFO ${f(mine.idealFifoWaitMs)} ms (${f(fifo, 2)}x), out of turn ${f(mine.outOfTurnPct)}%, lost ${mine.lostUpdates}; ${grantCost(results, backend, mine)}` +
            (failures.length > 0 ? ` — fails: ${failures.join(', ')}` : '')
          : 'not measured',
      });
    }
  }

  for (const h of ok<HeldScaleResult>(results.heldScale)) checks.push(heldScaleCheck(h));
  checks.push(...computeFaultTargets(results));
  return checks;
}

function adapterBackend(results: BenchResults, id: string): string | undefined {
  return results.adapters.find((a) => a.id === id)?.backend;
}

/** `0.93, 1.02, 0.88` : ours / floor in each round both completed. */
function roundRatios(
  mine: readonly number[] | undefined,
  floor: readonly number[] | undefined,
): string {
  if (!mine || !floor) return 'n/a';
  return mine
    .slice(0, floor.length)
    .map((m, r) => f(ratio(m, floor[r]), 2))
    .join(', ');
}

/**
 * How a contended run's cost per grant compares with the physical cost of a fair grant: the
 * hold, one release round trip and one pub/sub delivery (Redis; etcd: the put round trip twice,
 * a transaction and a watch event).
 */
function grantCost(results: BenchResults, backend: string, c: ContendedResult): string {
  const perGrant = 1000 / c.grantsPerSec;
  const fl = results.floors;
  const hop =
    backend === 'redis'
      ? {
          ms: fl.redisSetP50Ms + fl.redisPubSubP50Ms,
          what: 'release round trip + pub/sub delivery',
        }
      : { ms: 2000 / fl.etcdPutPerSec, what: 'two put round trips' };
  return (
    `handoff p50 ${f(c.handoffP50Ms)} ms vs ${hop.what} ${f(hop.ms)} ms (${f(ratio(c.handoffP50Ms, hop.ms), 2)}x); ` +
    `per grant ${f(perGrant)} ms vs hold p50 + that ${f(c.holdP50Ms + hop.ms)} ms (${f(ratio(perGrant, c.holdP50Ms + hop.ms), 2)}x)`
  );
}

/** Lag, renewal cost and heap of one held-lock row, against the bounds for its ttl. */
function heldScaleCheck(h: HeldScaleResult): TargetCheck {
  const backend = h.adapter.replace(/^ours\//, '');
  const atDefault = h.ttlMs >= DEFAULT_TTL_MS;
  const bounds: string[] = [];
  const failures: string[] = [];
  const values: (number | null)[] = [h.lagP99Ms, h.lagMaxMs, h.heapPerLockBytes];
  if (atDefault) {
    bounds.push(
      `lag max < ${LAG_BOUNDS.atDefaultTtl.max} ms`,
      `p99 < ${LAG_BOUNDS.atDefaultTtl.p99} ms`,
    );
    if (!(h.lagMaxMs < LAG_BOUNDS.atDefaultTtl.max)) failures.push('lag max');
    if (!(h.lagP99Ms < LAG_BOUNDS.atDefaultTtl.p99)) failures.push('lag p99');
  } else {
    bounds.push(`lag p99 < ${LAG_BOUNDS.shortTtl.p99} ms`);
    if (!(h.lagP99Ms < LAG_BOUNDS.shortTtl.p99)) failures.push('lag p99');
  }
  // The memory backend sends no requests: nothing to bound.
  if (backend !== 'memory') {
    bounds.push(`renewal ≤ ${RENEW_OPS_CEILING} requests/s`);
    values.push(h.renewOpsPerSec);
    if (!((h.renewOpsPerSec ?? Number.NaN) <= RENEW_OPS_CEILING)) failures.push('renewal');
  }
  bounds.push(`heap ≤ ${HEAP_PER_LOCK_CEILING} B/lock`);
  if (!((h.heapPerLockBytes ?? Number.NaN) <= HEAP_PER_LOCK_CEILING)) failures.push('heap');
  return {
    target: `Held-lock scale ${backend}, ${h.locks} locks, ttl ${h.ttlMs / 1000} s: ${bounds.join(', ')}`,
    met: judge(values, () => failures.length === 0),
    numbers:
      `lag p99 ${f(h.lagP99Ms)} ms, max ${f(h.lagMaxMs)} ms; ${f(h.renewOpsPerSec)} requests/s (${f(h.backendOpsPerSec)} commands/s incl. inside scripts); ` +
      `heap ${f(h.heapPerLockBytes)} B/lock; lost ${h.lost}` +
      (failures.length > 0 ? ` — fails: ${failures.join(', ')}` : ''),
  };
}

/** The fault targets alone (dead waiter, frozen server), one per backend measured. */
export function computeFaultTargets(
  results: Pick<BenchResults, 'deadWaiter' | 'frozenServer'>,
): TargetCheck[] {
  const checks: TargetCheck[] = [];
  const adapters = [
    ...new Set([...results.deadWaiter, ...results.frozenServer].map((r) => r.adapter)),
  ];
  for (const adapter of adapters) {
    const backend = adapter.replace(/^ours\//, '');
    const dead = results.deadWaiter.filter((r) => r.adapter === adapter);
    const d = ok<DeadWaiterResult>(dead)[0];
    if (dead.length > 0) {
      const allowance =
        backend === 'etcd' ? FAULT_ALLOWANCE_MS + ETCD_LEASE_CHECK_MS : FAULT_ALLOWANCE_MS;
      const why = backend === 'etcd' ? "scheduling and etcd's lease-expiry loop" : 'scheduling';
      checks.push({
        target: `Dead waiter ${backend} ≤ bound (+${allowance} ms allowance: ${why})`,
        met: d ? d.timedOut === 0 && d.maxMs <= d.boundMs + allowance : null,
        numbers: d
          ? `median ${f(d.medianMs, 4)} ms, max ${f(d.maxMs, 4)} ms (n ${d.repetitions}${d.timedOut > 0 ? `, ${d.timedOut} gave up` : ''}) vs bound ${f(d.boundMs, 4)} ms (${d.bound})`
          : 'not measured',
      });
    }
    const frozen = results.frozenServer.filter((r) => r.adapter === adapter);
    const cases = ok<FrozenServerResult>(frozen);
    if (frozen.length > 0) {
      const late = cases.filter(
        (c) => !c.backendError || c.elapsedMs > c.boundMs + FAULT_ALLOWANCE_MS,
      );
      checks.push({
        target: `Outage ${backend} ≤ wait + commandTimeout (LockBackendError; +${FAULT_ALLOWANCE_MS} ms allowance)`,
        met: cases.length === frozen.length ? late.length === 0 : null,
        numbers:
          cases
            .map(
              (c) =>
                `${c.case} ${f(c.elapsedMs, 4)} ms vs ${c.boundMs} ms${c.backendError ? '' : ` (${c.thrown})`}`,
            )
            .join('; ') || 'not measured',
      });
    }
  }
  return checks;
}
