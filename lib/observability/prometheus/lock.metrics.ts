import { Counter, Gauge, Histogram, register as globalRegistry } from 'prom-client';
import type { Registry } from 'prom-client';
import type { LockService } from '../../service/lock.service';
import { LockLabels } from './lock-metric.labels';

/** Options of {@link registerLockMetrics} and `DistributedLockPrometheusModule`. */
export interface LockMetricsOptions {
  /** The registry the metrics are registered on. Default: prom-client's global `register`. */
  registry?: Registry;
  /** Prepended to every metric name. Default `'distributed_lock_'`. */
  prefix?: string;
  /**
   * Most distinct `lock` label values (lock names) kept; further names are counted under
   * `'other'`, so a name built from raw keys cannot blow up the series count. Default 100.
   */
  maxNames?: number;
  /** Buckets of the wait and hold histograms, in seconds. Default from 1 ms to 60 s. */
  buckets?: readonly number[];
}

/** Default histogram buckets, in seconds: sub-millisecond handoffs up to minute-long jobs. */
const DEFAULT_BUCKETS = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
];

type Labels = 'backend' | 'lock';

/**
 * Registers lock metrics on a prom-client registry and keeps them from `locks`' events:
 * histograms `<prefix>wait_seconds` (label `outcome`: acquired, busy, skipped) and
 * `<prefix>hold_seconds` (`outcome`: released, lost); counters `<prefix>acquired_total`,
 * `<prefix>busy_total`, `<prefix>skipped_total`, `<prefix>lost_total`,
 * `<prefix>backend_errors_total` (label `operation`); gauge `<prefix>held` (locks held by this
 * process). Every series is labelled by `backend` and `lock`: the lock's name (a `@Locked`
 * template or the `name` option), `'unnamed'` without one, never a raw key. A second call for
 * the same registry and prefix (another application in the process) shares the metrics. Returns
 * the function that stops updating them.
 *
 * @throws TypeError for a bad option
 */
export function registerLockMetrics(
  locks: LockService,
  options: LockMetricsOptions = {},
): () => void {
  const registry = options.registry ?? globalRegistry;
  const prefix = options.prefix ?? 'distributed_lock_';
  if (!/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(prefix)) {
    throw new TypeError(`metrics prefix must match [a-zA-Z_:][a-zA-Z0-9_:]*, got "${prefix}"`);
  }
  const buckets = [...(options.buckets ?? DEFAULT_BUCKETS)];
  if (buckets.length === 0 || buckets.some((b) => !(b > 0) || !Number.isFinite(b))) {
    throw new TypeError('metrics buckets must be a non-empty list of positive numbers of seconds');
  }
  const labels = new LockLabels(options.maxNames ?? 100);
  const make = metricMaker(registry, prefix);

  const wait = make(
    'wait_seconds',
    () =>
      new Histogram({
        name: `${prefix}wait_seconds`,
        help: 'Time from a lock call to its grant or refusal, in seconds.',
        labelNames: ['backend', 'lock', 'outcome'] as const,
        buckets,
        registers: [registry],
      }),
  );
  const hold = make(
    'hold_seconds',
    () =>
      new Histogram({
        name: `${prefix}hold_seconds`,
        help: 'Time from a grant to its release or loss, in seconds.',
        labelNames: ['backend', 'lock', 'outcome'] as const,
        buckets,
        registers: [registry],
      }),
  );
  const counter = (name: string, help: string): Counter<Labels> =>
    make(
      name,
      () =>
        new Counter({
          name: `${prefix}${name}`,
          help,
          labelNames: ['backend', 'lock'] as const,
          registers: [registry],
        }),
    );
  const acquired = counter('acquired_total', 'Locks granted.');
  const busy = counter(
    'busy_total',
    'Lock calls refused because the lock stayed busy for their wait.',
  );
  const skipped = counter('skipped_total', "@Locked({ onBusy: 'skip' }) calls skipped.");
  const lost = counter(
    'lost_total',
    'Held locks lost (expired, taken over, or ended at shutdown).',
  );
  const errors = make(
    'backend_errors_total',
    () =>
      new Counter({
        name: `${prefix}backend_errors_total`,
        help: 'Failed backend calls, by operation (acquire, release, extend).',
        labelNames: ['backend', 'lock', 'operation'] as const,
        registers: [registry],
      }),
  );
  const held = make(
    'held',
    () =>
      new Gauge({
        name: `${prefix}held`,
        help: 'Locks held by this process.',
        labelNames: ['backend', 'lock'] as const,
        registers: [registry],
      }),
  );

  const offs = [
    locks.on('acquired', (e) => {
      const l = labels.of(e.backend, e.name);
      acquired.inc(l);
      held.inc(l);
      wait.observe({ ...l, outcome: 'acquired' }, e.waited / 1000);
    }),
    locks.on('busy', (e) => {
      const l = labels.of(e.backend, e.name);
      busy.inc(l);
      wait.observe({ ...l, outcome: 'busy' }, e.waited / 1000);
    }),
    locks.on('skipped', (e) => {
      const l = labels.of(e.backend, e.name);
      skipped.inc(l);
      wait.observe({ ...l, outcome: 'skipped' }, e.waited / 1000);
    }),
    locks.on('released', (e) => {
      const l = labels.of(e.backend, e.name);
      held.dec(l);
      hold.observe({ ...l, outcome: 'released' }, e.held / 1000);
    }),
    locks.on('lost', (e) => {
      const l = labels.of(e.backend, e.name);
      lost.inc(l);
      held.dec(l);
      hold.observe({ ...l, outcome: 'lost' }, e.held / 1000);
    }),
    locks.on('error', (e) => {
      errors.inc({ ...labels.of(e.backend, e.name), operation: e.operation });
    }),
  ];
  return () => {
    for (const off of offs) off();
  };
}

/**
 * Returns a function that gives the registry's metric of that name if one exists (registered by
 * an earlier call, for instance a second application in the process), else creates it.
 */
function metricMaker(registry: Registry, prefix: string) {
  return <M>(name: string, create: () => M): M => {
    const existing = registry.getSingleMetric(`${prefix}${name}`);
    return existing ? (existing as unknown as M) : create();
  };
}
