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
  const tallies = new Map<MetricLabels, Tally>();
  const tally = (backend: string, name: string | undefined): Tally => {
    const l = labels.of(backend, name);
    let t = tallies.get(l);
    if (!t) tallies.set(l, (t = newTally(l)));
    return t;
  };
  const make = metricMaker(registry, prefix);
  // Refuse a name taken by a foreign metric before registering anything.
  for (const name of METRIC_NAMES) make.check(name);
  /** Grants whose start this registration counted: only their ends move the gauge and hold times. */
  const open = new Set<number>();
  const histogram = (name: string, help: string): Histogram<Labels | 'outcome'> =>
    make(name, (hooked) => {
      const metric = new Histogram({
        name: `${prefix}${name}`,
        help,
        labelNames: ['backend', 'lock', 'outcome'] as const,
        buckets,
        registers: [registry],
      });
      hooked(metric);
      return metric;
    });
  // Counts and the gauge are tallied in plain numbers on the lock path and handed to prom-client
  // when it collects (a scrape): prom-client validates and hashes labels on every update.
  const counter = (name: string, help: string, field: CountField): Counter<string> =>
    make(name, (hooked) => {
      const metric: Counter<string> = new Counter({
        name: `${prefix}${name}`,
        help,
        labelNames: field === 'errors' ? ['backend', 'lock', 'operation'] : ['backend', 'lock'],
        registers: [registry],
        collect: () => flush(metric),
      });
      hooked(metric, field);
      return metric;
    });
  const wait = histogram(
    'wait_seconds',
    'Time from a lock call to its grant or refusal, in seconds.',
  );
  const hold = histogram('hold_seconds', 'Time from a grant to its release or loss, in seconds.');
  const metrics = [
    counter('acquired_total', 'Locks granted.', 'acquired'),
    counter(
      'busy_total',
      'Lock calls refused because the lock stayed busy for their wait.',
      'busy',
    ),
    counter('skipped_total', "@Locked({ onBusy: 'skip' }) calls skipped.", 'skipped'),
    counter('lost_total', 'Held locks lost (expired, taken over, or ended at shutdown).', 'lost'),
    counter(
      'backend_errors_total',
      'Failed backend calls, by operation (acquire, release, extend).',
      'errors',
    ),
    make('held', (hooked) => {
      const metric: Gauge<string> = new Gauge({
        name: `${prefix}held`,
        help: 'Locks held by this process.',
        labelNames: ['backend', 'lock'] as const,
        registers: [registry],
        collect: () => flush(metric),
      });
      hooked(metric, 'held');
      return metric;
    }),
  ];
  for (const metric of metrics) sourcesOf(metric).add(tallies);

  const offs = [
    locks.on('acquired', (e) => {
      open.add(e.grant);
      const t = tally(e.backend, e.name);
      t.counts.acquired++;
      t.counts.held++;
      wait.observe(t.outcome.acquired, e.waited / 1000);
    }),
    locks.on('busy', (e) => {
      const t = tally(e.backend, e.name);
      t.counts.busy++;
      wait.observe(t.outcome.busy, e.waited / 1000);
    }),
    locks.on('skipped', (e) => {
      const t = tally(e.backend, e.name);
      t.counts.skipped++;
      wait.observe(t.outcome.skipped, e.waited / 1000);
    }),
    locks.on('released', (e) => {
      if (!open.delete(e.grant)) return;
      const t = tally(e.backend, e.name);
      t.counts.held--;
      hold.observe(t.outcome.released, e.held / 1000);
    }),
    locks.on('lost', (e) => {
      const counted = open.delete(e.grant);
      const t = tally(e.backend, e.name);
      t.counts.lost++;
      if (!counted) return;
      t.counts.held--;
      hold.observe(t.outcome.lost, e.held / 1000);
    }),
    locks.on('error', (e) => {
      tally(e.backend, e.name).errors[e.operation]++;
    }),
  ];
  let stopped = false;
  return () => {
    if (stopped) return;
    stopped = true;
    for (const off of offs) off();
    // What was counted stays counted: hand it over now, then stop reporting this source. The
    // locks it saw still held are no longer its to report: the gauge drops them.
    open.clear();
    for (const t of tallies.values()) t.counts.held = 0;
    for (const metric of metrics) {
      flush(metric);
      sourcesOf(metric).delete(tallies);
    }
  };
}

type CountField = 'acquired' | 'busy' | 'skipped' | 'lost' | 'held' | 'errors';
type Operation = 'acquire' | 'release' | 'extend';
type MetricLabels = { readonly backend: string; readonly lock: string };

/** One label pair's counts (as tallied, and as already handed to prom-client). */
interface Tally {
  readonly labels: MetricLabels;
  /** The histogram labels of each outcome, made once. */
  readonly outcome: Readonly<
    Record<'acquired' | 'busy' | 'skipped' | 'released' | 'lost', Record<string, string>>
  >;
  readonly counts: Record<Exclude<CountField, 'errors'>, number>;
  readonly reported: Record<Exclude<CountField, 'errors'>, number>;
  readonly errors: Record<Operation, number>;
  readonly reportedErrors: Record<Operation, number>;
}

function newTally(labels: MetricLabels): Tally {
  const zero = () => ({ acquired: 0, busy: 0, skipped: 0, lost: 0, held: 0 });
  const outcome = (name: string) => ({ backend: labels.backend, lock: labels.lock, outcome: name });
  return {
    labels,
    outcome: {
      acquired: outcome('acquired'),
      busy: outcome('busy'),
      skipped: outcome('skipped'),
      released: outcome('released'),
      lost: outcome('lost'),
    },
    counts: zero(),
    reported: zero(),
    errors: { acquire: 0, release: 0, extend: 0 },
    reportedErrors: { acquire: 0, release: 0, extend: 0 },
  };
}

/** Which field each tallied metric reports, and the tallies (one per registration) it sums. */
const fieldOf = new WeakMap<object, CountField>();
const sources = new WeakMap<object, Set<Map<MetricLabels, Tally>>>();

function sourcesOf(metric: object): Set<Map<MetricLabels, Tally>> {
  let set = sources.get(metric);
  if (!set) sources.set(metric, (set = new Set()));
  return set;
}

/** Hands what the tallies counted since the last flush to `metric` (deltas: registrations add up). */
function flush(metric: Counter<string> | Gauge<string>): void {
  const field = fieldOf.get(metric);
  if (!field) return;
  for (const tallies of sources.get(metric) ?? []) {
    for (const t of tallies.values()) {
      if (field === 'errors') {
        for (const operation of ['acquire', 'release', 'extend'] as const) {
          const delta = t.errors[operation] - t.reportedErrors[operation];
          if (delta === 0) continue;
          t.reportedErrors[operation] = t.errors[operation];
          (metric as Counter<string>).inc({ ...t.labels, operation }, delta);
        }
        continue;
      }
      const delta = t.counts[field] - t.reported[field];
      // A counter is exported from its first series on, at 0; the gauge too.
      if (delta === 0 && t.reported[field] !== 0) continue;
      t.reported[field] = t.counts[field];
      if (field === 'held') (metric as Gauge<string>).inc({ ...t.labels }, delta);
      else (metric as Counter<string>).inc({ ...t.labels }, delta);
    }
  }
}

/** Every metric a registration makes, without the prefix. */
const METRIC_NAMES = [
  'wait_seconds',
  'hold_seconds',
  'acquired_total',
  'busy_total',
  'skipped_total',
  'lost_total',
  'backend_errors_total',
  'held',
] as const;

/** Metrics this module created, so a name taken by someone else's metric is refused. */
const ours = new WeakSet<object>();

/**
 * Returns a function that gives the registry's metric of that name when this module made it
 * (an earlier registration, for instance a second application in the process), else creates it.
 *
 * @throws Error when the name is taken on the registry by a metric this module did not make
 */
function metricMaker(registry: Registry, prefix: string) {
  const check = (name: string): object | undefined => {
    const existing = registry.getSingleMetric(`${prefix}${name}`);
    if (existing && !ours.has(existing)) {
      throw new Error(
        `metric ${prefix}${name} is already registered by someone else; pass another prefix`,
      );
    }
    return existing;
  };
  const make = <M extends object>(
    name: string,
    create: (hooked: (metric: object, field?: CountField) => void) => M,
  ): M => {
    const existing = check(name);
    if (existing) return existing as unknown as M;
    return create((metric, field) => {
      ours.add(metric);
      if (field) fieldOf.set(metric, field);
    });
  };
  return Object.assign(make, { check });
}
