import { ratio } from '../stats';
import {
  BenchResults,
  ContendedResult,
  DeadWaiterResult,
  FrozenServerResult,
  HandoffResult,
  HeldScaleResult,
  isError,
  Outcome,
  UncontendedResult,
} from './results.types';

/** One target of the issue, judged on the numbers of this run. */
export interface TargetCheck {
  readonly target: string;
  /** true met, false not met, null not measurable in this run (a contender failed). */
  readonly met: boolean | null;
  readonly numbers: string;
}

/** Renewal cost ceiling for "a few hundred backend commands per second", per 10,000 locks. */
export const RENEW_OPS_CEILING = 300;
const LAG_P99_CEILING_MS = 20;
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
  const rate = (id: string): number | undefined => unc.find((u) => u.adapter === id)?.cyclesPerSec;
  for (const [backend, floorId] of [
    ['redis', 'floor/redis-poll'],
    ['etcd', 'floor/etcd-watch'],
  ] as const) {
    const mine = rate(`ours/${backend}`);
    const floor = rate(floorId);
    checks.push({
      target: `Uncontended ${backend} ≥ 0.9x raw floor`,
      met: judge([mine, floor], () => (mine as number) >= 0.9 * (floor as number)),
      numbers: `ours ${f(mine)}/s vs floor ${f(floor)}/s (${f(ratio(mine, floor), 2)}x)`,
    });
  }
  const etcdLock = Math.max(
    rate('etcd3-lock/default') ?? Number.NaN,
    rate('etcd3-lock/tuned') ?? Number.NaN,
  );
  const oursEtcdRate = rate('ours/etcd');
  checks.push({
    target: 'Uncontended etcd ≥ 2x the etcd3 lock',
    met: judge([oursEtcdRate, etcdLock], () => (oursEtcdRate as number) >= 2 * etcdLock),
    numbers: `ours ${f(oursEtcdRate)}/s vs etcd3 lock ${f(etcdLock)}/s (${f(ratio(oursEtcdRate, etcdLock), 2)}x)`,
  });

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
      const failures: string[] = [];
      let met: boolean | null = null;
      if (mine && floor) {
        if (!(mine.ownerSwitchPct >= 90)) failures.push('switches');
        if (!(rel >= 0.8)) failures.push('throughput');
        if (!(mine.waitMs.p99 <= 10 * mine.holdP50Ms)) failures.push('wait p99');
        if (mine.lostUpdates !== 0) failures.push('lost updates');
        met = failures.length === 0;
      }
      checks.push({
        target: `Contended ${backend} ${variant}: ≥ 90% switches, ≥ 0.8x ${floorId} throughput, wait p99 ≤ 10x hold p50, 0 lost`,
        met,
        numbers: mine
          ? `switches ${f(mine.ownerSwitchPct)}%, ${f(mine.grantsPerSec)}/s vs ${f(floor?.grantsPerSec)}/s (${f(rel, 2)}x), wait p99 ${f(mine.waitMs.p99)} ms vs 10x hold ${f(10 * mine.holdP50Ms)} ms, lost ${mine.lostUpdates}` +
            (failures.length > 0 ? ` — fails: ${failures.join(', ')}` : '')
          : 'not measured',
      });
    }
  }

  const held = ok<HeldScaleResult>(results.heldScale);
  for (const backend of ['redis', 'etcd'] as const) {
    const h = held.find((r) => r.adapter === `ours/${backend}`);
    const ops = h?.renewOpsPerSec;
    checks.push({
      target: `Held-lock scale ${backend}: renewal ≤ ${RENEW_OPS_CEILING} backend requests/s, event-loop lag p99 < ${LAG_P99_CEILING_MS} ms`,
      met: judge(
        [ops, h?.lagP99Ms],
        () =>
          (ops as number) <= RENEW_OPS_CEILING &&
          (h as HeldScaleResult).lagP99Ms < LAG_P99_CEILING_MS,
      ),
      numbers: h
        ? `${h.locks} locks, ttl ${h.ttlMs} ms: ${f(ops)} requests/s (≈ ${f(((ops ?? Number.NaN) * h.ttlMs) / 30_000)}/s at the default ttl 30 s; ${f(h.backendOpsPerSec)} commands/s incl. inside scripts), lag p99 ${f(h.lagP99Ms)} ms`
        : 'not measured',
    });
  }
  checks.push(...computeFaultTargets(results));
  return checks;
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
