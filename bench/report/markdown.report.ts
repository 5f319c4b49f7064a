import { adapterInfo, ADAPTER_IDS } from '../peers/adapter.registry';
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
import {
  ETCD_LEASE_CHECK_MS,
  FAULT_ALLOWANCE_MS,
  FIFO_WAIT_FACTOR,
  RENEW_OPS_CEILING,
  TargetCheck,
} from './targets.report';

const FLOOR_FOR_THROUGHPUT: Readonly<Record<string, string>> = {
  redis: 'floor/redis-poll',
  etcd: 'floor/etcd-watch',
  memory: 'floor/async-mutex',
};
const FLOOR_FOR_HANDOFF: Readonly<Record<string, string>> = {
  redis: 'floor/redis-push',
  etcd: 'floor/etcd-watch',
  memory: 'floor/async-mutex',
};

/** A number for a table cell: 3 significant digits, `–` when missing. */
function n(value: number | null | undefined, digits = 3): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return '–';
  if (Math.abs(value) >= 10 ** digits) return String(Math.round(value));
  return String(Number(value.toPrecision(digits)));
}

function x(value: number): string {
  return Number.isFinite(value) ? `${n(value, 2)}x` : '–';
}

function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const line = (cells: readonly string[]): string => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

function backendOf(results: BenchResults, id: string): string {
  return results.adapters.find((a) => a.id === id)?.backend ?? '';
}

function errorCell<T extends object>(o: Outcome<T>): string | undefined {
  return isError(o) ? `error: ${o.error.slice(0, 120)}` : undefined;
}

/** A table row for a contender that failed: its id, the error, then `blanks` empty cells. */
function errorRow(adapter: string, error: string, blanks: number): string[] {
  return [adapter, `error: ${error.slice(0, 120)}`, ...new Array<string>(blanks).fill('')];
}

function targetsTable(targets: readonly TargetCheck[]): string {
  return table(
    ['target', 'met', 'numbers'],
    targets.map((t) => [t.target, t.met === null ? 'n/a' : t.met ? 'met' : 'NOT met', t.numbers]),
  );
}

/** The "Faults" section: dead waiter and frozen server, our library only. */
function faultsSection(results: Pick<BenchResults, 'deadWaiter' | 'frozenServer'>): string[] {
  const out: string[] = ['## Faults: our library, a dead waiter and a frozen server', ''];
  out.push(
    'Dead waiter: a holder (ttl 30 s) holds the key; a waiter in a child process queues, then a live waiter (another connection) queues behind it; ' +
      "the child is SIGKILLed, then the holder releases. Figure: holder's `release()` returned → live waiter's `acquire()` resolved, one fresh key and child per repetition. " +
      'Bound: Redis claimWindow + one round trip (PING median), etcd the session ttl. ' +
      `Frozen server: a redis-server / etcd started for this scenario alone is frozen with SIGSTOP (SIGCONT after); figure: call → rejection; bound: wait + commandTimeout. ` +
      `Targets allow ${FAULT_ALLOWANCE_MS} ms over a bound for timers and scheduling, and on the etcd dead waiter another ${ETCD_LEASE_CHECK_MS} ms: etcd revokes expired leases every ${ETCD_LEASE_CHECK_MS} ms.`,
    '',
  );
  out.push(
    table(
      ['contender', 'dead waiter median / max', 'samples', 'bound', 'live waiter wait', 'gave up'],
      results.deadWaiter.map((o) => {
        if (isError(o)) return errorRow(o.adapter, o.error, 4);
        const d: DeadWaiterResult = o;
        return [
          d.adapter,
          `${n(d.medianMs, 4)} / ${n(d.maxMs, 4)}`,
          d.samplesMs.map((v) => n(v, 4)).join(', '),
          `${n(d.boundMs, 4)} (${d.bound})`,
          String(d.liveWaitMs),
          String(d.timedOut),
        ];
      }),
    ),
    '',
  );
  out.push(
    table(
      [
        'contender',
        'frozen server: call',
        'bound (wait + commandTimeout)',
        'call → settled',
        'outcome',
      ],
      results.frozenServer.map((o) => {
        if (isError(o)) return errorRow(o.adapter, o.error, 3);
        const r: FrozenServerResult = o;
        return [
          r.adapter,
          r.case,
          `${r.boundMs} (${r.waitMs} + ${r.commandTimeoutMs})`,
          n(r.elapsedMs, 4),
          r.thrown,
        ];
      }),
    ),
    '',
  );
  return out;
}

/**
 * Why the topology rows cost what they cost, with their figures next to single-node `ours/redis`
 * of the same run; nothing when no topology contender ran.
 */
function topologyNote(results: BenchResults): string[] {
  const ids = results.adapters
    .map((a) => a.id)
    .filter((id) => ADAPTER_IDS.includes(id) && adapterInfo(id).topology !== undefined);
  if (ids.length === 0) return [];
  const rate = (id: string): number | undefined =>
    results.uncontended.find((u): u is UncontendedResult => !isError(u) && u.adapter === id)
      ?.cyclesPerSec;
  const p50 = (id: string): number | undefined =>
    results.handoff.find(
      (h): h is HandoffResult => !isError(h) && h.adapter === id && h.waiters === 1,
    )?.latencyMs.p50;
  const figures = ids.map(
    (id) =>
      `${id} ${x(ratio(rate(id), rate('ours/redis')))} the cycles/s and ${x(ratio(p50(id), p50('ours/redis')))} the 1-waiter handoff p50 of ours/redis`,
  );
  return [
    '### Beyond one Redis: Sentinel, Cluster and Redlock over 5 masters',
    '',
    `${ids.join(' and ')} run on topologies the bench starts on 127.0.0.1 (one primary, one replica and three sentinels; a Redis Cluster of three primaries; five independent masters) and are measured uncontended and in handoff only; ` +
      'their "x floor" is against the single-node Redis floors of this run (floor/redis-poll, floor/redis-push), so it reads as the price of the topology. ' +
      'Sentinel costs what one node costs: the sentinels are asked for the primary at connect and after a failover, every lock command then goes to the primary alone, and replication is asynchronous (off the path unless `replicaAcks` is set). ' +
      "Cluster runs one node's script on the slot's primary, through ioredis's `Cluster` client (more client CPU per command than a standalone client), with three servers on the same cores. " +
      'Redlock asks all five masters in parallel and decides once a quorum (3) agreed, so each step costs the slowest master of the fastest quorum (the third reply of five), plus the client CPU of sending five requests and reading five replies; ' +
      "a handoff is a release on a quorum, a wake-up (the first of the masters' copies counts) and a fresh attempt on all five, with no FIFO queue across masters; " +
      "its 1-waiter figure can undercut one node's because the first master to release already wakes the waiter while the holder's `release()` still waits for the third. " +
      `This run: ${figures.join('; ')}.`,
    '',
  ];
}

/** The "Parallel" section: many callers in one process on distinct keys, per contender. */
function parallelSection(results: BenchResults, rounds: number): string[] {
  const par = results.parallel ?? [];
  if (par.length === 0) return [];
  const roundsOf = (id: string): readonly number[] | undefined =>
    par.find((p): p is ParallelResult => !isError(p) && p.adapter === id)?.roundRates;
  const callers = par.find((p): p is ParallelResult => !isError(p))?.callers ?? 0;
  return [
    `## Parallel: ${callers} concurrent callers in one process, each on distinct keys of its own`,
    '',
    `Each caller loops acquire + release on fresh keys; all share the contender's one client (one connection, which pipelines what is in flight). ` +
      `cycles/s: median of ${rounds} interleaved rounds; x floor: median over the rounds of the ratio to the floor in the same round ` +
      '(floor/redis-poll: `SET NX PX` + compare-and-delete `EVALSHA`; memory: async-mutex).',
    '',
    table(
      ['contender', 'cycles/s', 'x floor', 'cycle p50 / p99', 'cycles'],
      par.map((p) => {
        if (isError(p)) return errorRow(p.adapter, p.error, 3);
        const floor = FLOOR_FOR_THROUGHPUT[backendOf(results, p.adapter)];
        return [
          p.adapter,
          n(p.cyclesPerSec),
          floor ? x(medianRoundRatio(p.roundRates, roundsOf(floor))) : '–',
          `${n(p.cycleMs.p50)} / ${n(p.cycleMs.p99)}`,
          String(p.cycles),
        ];
      }),
    ),
    '',
  ];
}

/** Renders faults.md, the report of a `BENCH_ONLY=faults` run: fault targets and the Faults section. */
export function renderFaultsMarkdown(
  results: Pick<
    BenchResults,
    'startedAt' | 'durationSeconds' | 'quick' | 'machine' | 'deadWaiter' | 'frozenServer'
  >,
  targets: readonly TargetCheck[],
): string {
  const m = results.machine;
  const out: string[] = ['# Fault results', ''];
  out.push(
    `Run ${results.startedAt}, ${n(results.durationSeconds)} s${results.quick ? ' (BENCH_QUICK)' : ''}; ` +
      `node ${m.node}, ${m.cpus} cpus, redis ${m.redis}, etcd ${m.etcd}; servers on 127.0.0.1, started by the bench. ` +
      'Times in ms. Only the fault scenarios; regenerate with `BENCH_ONLY=faults npm run bench`.',
    '',
  );
  out.push('## Targets', '', targetsTable(targets), '');
  out.push(...faultsSection(results));
  return `${out.join('\n').trimEnd()}\n`;
}

/** Renders latest.md: targets first, then one table per scenario (medians, ratios to floors). */
export function renderMarkdown(results: BenchResults, targets: readonly TargetCheck[]): string {
  const out: string[] = [];
  const m = results.machine;
  out.push('# Benchmark results', '');
  out.push(
    `Run ${results.startedAt}, ${n(results.durationSeconds)} s${results.quick ? ' (BENCH_QUICK)' : ''}; ` +
      `node ${m.node}, ${m.cpus} cpus, redis ${m.redis}, etcd ${m.etcd}; servers on 127.0.0.1, started by the bench. ` +
      'Times in ms; medians (p50) unless stated; "x floor" is the ratio to the raw floor of the same backend measured in this run. ' +
      'Regenerate with `npm run bench`.',
    '',
  );
  out.push(
    `Settings: ${Object.entries(results.settings)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}.`,
    '',
  );

  out.push('## Targets', '');
  out.push(
    `Computed from this run. "A few hundred" renewal requests/s is judged as ≤ ${RENEW_OPS_CEILING}/s at the ttl used.`,
    '',
  );
  out.push(targetsTable(targets), '');

  out.push('## Floors (single connection, sequential round trips)', '');
  out.push(
    `Redis \`SET\`: ${n(results.floors.redisSetPerSec)}/s (p50 ${n(results.floors.redisSetP50Ms)} ms); ` +
      `Redis pub/sub delivery (\`PUBLISH\` sent → message received on another connection): p50 ${n(results.floors.redisPubSubP50Ms)} ms; ` +
      `etcd \`put\`: ${n(results.floors.etcdPutPerSec)}/s.`,
    '',
  );

  const unc = results.uncontended;
  const uncRounds = (id: string): readonly number[] | undefined =>
    unc.find((u): u is UncontendedResult => !isError(u) && u.adapter === id)?.roundRates;
  const rounds = unc.find((u): u is UncontendedResult => !isError(u))?.rounds ?? 1;
  out.push('## Uncontended: one client, sequential acquire + release of distinct keys', '');
  out.push(
    `cycles/s: median of ${rounds} rounds interleaved across contenders; x floor: median over the rounds of the ratio to the floor's rate in the same round; latencies: all rounds pooled. ` +
      'The memory backend is compared with async-mutex (an in-process mutex per key).',
    '',
  );
  out.push(
    table(
      ['contender', 'cycles/s', 'x floor', 'acquire p50 / p99', 'release p50 / p99'],
      unc.map((u) => {
        const err = errorCell(u);
        if (err || isError(u)) return [u.adapter, err ?? '', '', '', ''];
        const floor = FLOOR_FOR_THROUGHPUT[backendOf(results, u.adapter)];
        return [
          u.adapter,
          n(u.cyclesPerSec),
          floor ? x(medianRoundRatio(u.roundRates, uncRounds(floor))) : '–',
          `${n(u.acquireMs.p50)} / ${n(u.acquireMs.p99)}`,
          `${n(u.releaseMs.p50)} / ${n(u.releaseMs.p99)}`,
        ];
      }),
    ),
    '',
  );

  out.push(...parallelSection(results, rounds));

  const handoff = results.handoff;
  const hand = (id: string, waiters: number): HandoffResult | undefined =>
    handoff.find(
      (h): h is HandoffResult => !isError(h) && h.adapter === id && h.waiters === waiters,
    );
  const ids = [...new Set(handoff.map((h) => h.adapter))];
  const queued = Math.max(
    1,
    ...handoff.filter((h) => !isError(h)).map((h) => (h as HandoffResult).waiters),
  );
  out.push(
    "## Handoff: holder's `release()` returned → waiter's `acquire()` resolved (one process)",
    '',
  );
  out.push(
    `1 waiter: the waiter starts while the holder holds, the holder releases 5-8 ms later; ${rounds} rounds interleaved across contenders, pooled. ` +
      `${queued} queued: ${queued + 1} workers loop acquire / hold 2 ms / release, and a releaser re-queues only after the next grant, so every release has ${queued} waiters. ` +
      '"early": samples where the acquire resolved before `release()` returned (negative, kept in the percentiles).',
    '',
  );
  out.push(
    table(
      [
        'contender',
        '1 waiter p50 / p99 (n)',
        'x floor',
        `${queued} queued p50 / p99 (n)`,
        'x floor',
      ],
      ids.map((id) => {
        const floor = FLOOR_FOR_HANDOFF[backendOf(results, id)];
        const cells = [id];
        for (const waiters of [1, queued]) {
          const h = hand(id, waiters);
          const failed = handoff.find(
            (o) => isError(o) && o.adapter === id && o.error.includes(`[${waiters}w]`),
          );
          if (!h) {
            cells.push(
              failed && isError(failed) ? `error: ${failed.error.slice(0, 80)}` : '–',
              '–',
            );
            continue;
          }
          const early = h.early > 0 ? `, ${h.early} early` : '';
          cells.push(
            `${n(h.latencyMs.p50)} / ${n(h.latencyMs.p99)} (${h.latencyMs.n}${early})`,
            floor ? x(ratio(h.latencyMs.p50, hand(floor, waiters)?.latencyMs.p50)) : '–',
          );
        }
        return cells;
      }),
    ),
    '',
  );

  out.push(...topologyNote(results));

  const contended = results.contended;
  const variants = [...new Set(contended.map((c) => c.variant))];
  out.push(
    '## Contended: all workers on one key; critical section GET + SET of a Redis counter',
    '',
  );
  out.push(
    'Workers re-acquire at once after release (or after the think time). wait: acquire called → resolved; hold: acquire resolved → release called (the GET + SET); ' +
      'switches: share of consecutive grants, in counter order across all processes, that went to another worker; lost: grants − final counter; ' +
      "gave up: acquires that exhausted the contender's own retry budget (retried). Multi-process runs use child_process.fork. " +
      'handoff: release called → the next grant (in counter order, across processes) resolved. ' +
      `Ideal FIFO wait: (workers − 1) x (hold p50 + handoff p50), the wait of a worker served after all the others; the target is wait p99 ≤ ${FIFO_WAIT_FACTOR}x it. ` +
      "out of turn: share of waits during which more than workers − 1 other grants were made, so someone who asked later was served first, and in brackets the most grants made during one wait. A one-sided check of FIFO order: more than workers − 1 is an overtaking (or a worker that took long to reach the queue after its acquire call), while an overtaking within that count is not seen. Times of the worker processes are moved onto the orchestrator's clock, each by its offset measured over IPC before the run.",
    '',
  );
  for (const variant of variants) {
    const rows = contended.filter((c) => c.variant === variant);
    const grants = (id: string): number | undefined =>
      rows.find((c): c is ContendedResult & { variant: string } => !isError(c) && c.adapter === id)
        ?.grantsPerSec;
    out.push(`### ${variant}`, '');
    out.push(
      table(
        [
          'contender',
          'grants/s',
          'x floor',
          'wait p50 / p99 / max',
          'hold p50',
          'handoff p50',
          'wait p99 / ideal FIFO',
          'out of turn',
          'switches',
          'lost',
          'gave up',
          'grants',
        ],
        rows.map((c) => {
          if (isError(c)) return errorRow(c.adapter, c.error, 10);
          const floor = FLOOR_FOR_THROUGHPUT[backendOf(results, c.adapter)];
          return [
            c.adapter,
            n(c.grantsPerSec),
            floor ? x(ratio(c.grantsPerSec, grants(floor))) : '–',
            `${n(c.waitMs.p50)} / ${n(c.waitMs.p99)} / ${n(c.waitMs.max)}`,
            n(c.holdP50Ms),
            n(c.handoffP50Ms),
            `${x(ratio(c.waitMs.p99, c.idealFifoWaitMs))} (${n(c.idealFifoWaitMs)})`,
            c.outOfTurnPct === undefined ? '–' : `${n(c.outOfTurnPct)}% (${c.servedBeforeMax})`,
            `${n(c.ownerSwitchPct)}%`,
            String(c.lostUpdates),
            String(c.failedAcquires),
            String(c.grants),
          ];
        }),
      ),
      '',
    );
  }

  out.push(
    '## Held-lock scale: our library, many locks held at once, renewal on (fresh process)',
    '',
  );
  out.push(
    'Each window lasts longer than one renewal period (ttl/3), so every lock is renewed in it. Redis: requests = EVALSHA + EVAL calls; INFO commandstats also counts the commands a script runs ' +
      '(hmget, pexpire...) under their own names, shown as commands/s. etcd: gRPC messages received, from /metrics (etcd is measured at 10,000 locks only: 100,000 acquires would take minutes each way). ' +
      'Lag: monitorEventLoopDelay (1 ms resolution) minus the resolution. Heap per lock: heap used after full collections with every lock held, less before the first acquire (after a warm-up that acquires, renews and releases 2,000 locks, so code compiled on first use is not counted), over the lock count.',
    '',
  );
  out.push(
    table(
      [
        'contender',
        'locks',
        'ttl',
        'acquire all',
        'renewal requests/s',
        'commands/s (incl. in scripts)',
        'by command (/s)',
        'lag p50 / p99 / max',
        'RSS (Δ)',
        'heap',
        'heap / lock',
        'lost',
      ],
      results.heldScale.map((h) => {
        if (isError(h)) return errorRow(h.adapter, h.error, 10);
        const r: HeldScaleResult = h;
        return [
          r.adapter,
          String(r.locks),
          `${r.ttlMs} ms`,
          `${n(r.acquireSeconds)} s`,
          n(r.renewOpsPerSec),
          n(r.backendOpsPerSec),
          Object.entries(r.byCommand)
            .map(([k, v]) => `${k} ${n(v)}`)
            .join(', ') || '–',
          `${n(r.lagP50Ms)} / ${n(r.lagP99Ms)} / ${n(r.lagMaxMs)}`,
          `${n(r.rssMb)} MB (+${n(r.rssDeltaMb)})`,
          `${n(r.heapUsedMb)} MB`,
          r.heapPerLockBytes === null ? '–' : `${n(r.heapPerLockBytes)} B`,
          String(r.lost),
        ];
      }),
    ),
    '',
  );

  out.push(...faultsSection(results));

  out.push('## Contenders', '');
  out.push(
    table(
      ['contender', 'backend', 'kind', 'settings', 'note'],
      results.adapters.map((a) => [
        a.id,
        a.backend,
        a.kind,
        a.settings,
        [a.note, a.error].filter(Boolean).join('; ') || '',
      ]),
    ),
    '',
  );
  return `${out.join('\n').trimEnd()}\n`;
}
