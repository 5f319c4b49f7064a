import type {
  ClientEvent,
  FaultEvent,
  FaultFamily,
  HistoryEvent,
  PhaseEvent,
  ResourceMode,
  RunEvent,
  WriteEvent,
} from '../history/history.event';
import { sortHistory } from '../history/history.reader';

/** Judgement options; the defaults are what the lab's runs use. */
export interface CheckOptions {
  /**
   * Two holds overlap only by more than this (ms). Lab times are one machine's monotonic clock,
   * so the slack only absorbs the few µs between reading the clock and the event it stamps; a
   * double grant overlaps by a whole critical section (several ms) or more.
   */
  readonly overlapToleranceMs?: number;
  /** A violation up to this long after a fault ended is attributed to it (ms). */
  readonly attributionWindowMs?: number;
}

/** One violation, with the events that show it (a history excerpt). */
export interface Violation {
  readonly kind:
    | 'overlap'
    | 'stale-write'
    /** A stale write the unfenced resource accepted: what the control measures, not a bug. */
    | 'stale-write-unfenced'
    | 'token-regression'
    | 'foreign-release'
    | 'hung'
    | 'loss-after-regrant';
  readonly key: string;
  readonly t: number;
  readonly phase: string;
  /** The fault (`action@target`) active at `t` or ended within the attribution window. */
  readonly fault?: string;
  readonly detail: string;
  readonly evidence: readonly HistoryEvent[];
}

/** Counts of one phase (or of the whole run). */
export interface CheckCounts {
  grants: number;
  overlaps: number;
  /** Overlaps by the signal alone (ignoring the deadline check a paused holder does on reading). */
  signalOverlaps: number;
  staleWritesAccepted: number;
  /** Stale writes an unfenced resource accepted (would have been refused with fencing). */
  staleWritesAcceptedUnfenced: number;
  /** Writes the fenced resource refused: what fencing stopped. */
  staleWritesRejected: number;
  /** Writes accepted after a newer grant of the key, before its holder wrote: fencing cannot see them. */
  supersededWritesAccepted: number;
  tokenRegressions: number;
  foreignReleases: number;
  hung: number;
  lossAfterRegrant: number;
  /** Lost signals that fired after a regrant although the holder's deadline had passed before it. */
  signalAfterRegrant: number;
  faults: number;
  /** Grants whose validity deadline had passed when `acquire` resolved them (held false at once). */
  deadOnArrival: number;
  /**
   * Client-pause faults that froze a process while one of its clients held a lock (by its signal),
   * for longer than the run's `pausedHolderMinMs` (shorter ones cannot lose a lock).
   */
  pausedHolderEvents: number;
  /** Event loops blocked right after a grant, for longer than `pausedHolderMinMs`. */
  blockedHolderEvents: number;
  /** Of those, blocks during which another client was granted one of the holder's keys. */
  blockedHoldersRegranted: number;
}

/** Recovery after the faults of one action: first grant to the affected clients after the fault. */
export interface RecoveryFigure {
  readonly action: string;
  readonly family: FaultFamily;
  readonly faults: number;
  readonly recovered: number;
  readonly p50Ms: number;
  readonly maxMs: number;
}

export interface CheckReport {
  readonly backend: string;
  readonly total: CheckCounts;
  readonly phases: readonly {
    phase: string;
    families: readonly FaultFamily[];
    mode: ResourceMode;
    durationMs: number;
    counts: CheckCounts;
  }[];
  readonly recovery: readonly RecoveryFigure[];
  readonly violations: readonly Violation[];
}

/** One acquire and what followed it, rebuilt from a client's events. */
interface Grant {
  readonly id: string;
  readonly client: string;
  readonly process: string;
  readonly keys: readonly string[];
  readonly invoke?: ClientEvent;
  ok?: ClientEvent & { event: 'ok' };
  settled?: ClientEvent;
  release?: ClientEvent;
  released?: ClientEvent & { event: 'released' };
  lost?: ClientEvent;
  renewals: (ClientEvent & { event: 'renew' })[];
  blocked?: ClientEvent & { event: 'blocked' };
  /** End of the hold as the holder saw it: release start, loss signal or validity deadline. */
  beliefEnd: number;
  /** End of the hold by its signal alone: release start or loss signal. */
  signalEnd: number;
  /** When the holder knew of a loss: its loss signal or its deadline, whichever first. */
  learnedLossAt: number;
}

interface Fault {
  readonly start: FaultEvent;
  end?: FaultEvent;
}

const ZERO_COUNTS = (): CheckCounts => ({
  grants: 0,
  overlaps: 0,
  signalOverlaps: 0,
  staleWritesAccepted: 0,
  staleWritesAcceptedUnfenced: 0,
  staleWritesRejected: 0,
  supersededWritesAccepted: 0,
  tokenRegressions: 0,
  foreignReleases: 0,
  hung: 0,
  lossAfterRegrant: 0,
  signalAfterRegrant: 0,
  faults: 0,
  deadOnArrival: 0,
  pausedHolderEvents: 0,
  blockedHolderEvents: 0,
  blockedHoldersRegranted: 0,
});

/** Judges a whole run's history; see CheckCounts for what each figure means. */
export function checkHistory(
  input: readonly HistoryEvent[],
  options: CheckOptions = {},
): CheckReport {
  const tolerance = options.overlapToleranceMs ?? 0.05;
  const window = options.attributionWindowMs ?? 5000;
  const events = sortHistory(input);
  const run = events.find((e): e is RunEvent => e.event === 'run');
  const settleBound = run?.settleBoundMs ?? 0;
  const pausedHolderMinMs = run?.pausedHolderMinMs ?? 0;
  const historyEnd = events.length > 0 ? events[events.length - 1].t : 0;

  const phases: { event: PhaseEvent; end: number }[] = [];
  const faults: Fault[] = [];
  const grants = new Map<string, Grant>();
  const writes: WriteEvent[] = [];
  for (const e of events) {
    if (e.event === 'phase-start') phases.push({ event: e, end: historyEnd });
    else if (e.event === 'phase-end') {
      const open = phases.find((p) => p.event.phase === e.phase && p.end === historyEnd);
      if (open) open.end = e.t;
    } else if (e.event === 'fault-start') faults.push({ start: e });
    else if (e.event === 'fault-end') {
      const open = faults.find((f) => f.start.fault === e.fault);
      if (open) open.end = e;
    } else if (e.event === 'write') writes.push(e);
    else if (isClientEvent(e)) collect(grants, e);
  }
  for (const g of grants.values()) finish(g, historyEnd);

  const phaseAt = (t: number): string =>
    phases.find((p) => p.event.t <= t && t <= p.end)?.event.phase ?? 'none';
  // The latest fault around `t`, preferring one on a process the violation involves.
  const faultAt = (t: number, involved: ReadonlySet<string>): string | undefined => {
    let found: Fault | undefined;
    let own: Fault | undefined;
    for (const f of faults) {
      const end = f.end?.t ?? historyEnd;
      if (f.start.t > t || t > end + window) continue;
      found = f;
      if (involved.has(f.start.target)) own = f;
    }
    const chosen = own ?? found;
    return chosen ? `${chosen.start.action}@${chosen.start.target}` : undefined;
  };

  const violations: Violation[] = [];
  const counts = new Map<string, CheckCounts>();
  const total = ZERO_COUNTS();
  const bump = (t: number, field: keyof CheckCounts): void => {
    total[field] += 1;
    const phase = phaseAt(t);
    const c = counts.get(phase) ?? ZERO_COUNTS();
    c[field] += 1;
    counts.set(phase, c);
  };
  const report = (v: Omit<Violation, 'phase' | 'fault'>, field: keyof CheckCounts): void => {
    const involved = new Set(
      v.evidence.map((e) => ('client' in e ? e.client.split('/')[0] : e.process)),
    );
    violations.push({ ...v, phase: phaseAt(v.t), fault: faultAt(v.t, involved) });
    bump(v.t, field);
  };

  const granted = [...grants.values()].filter((g) => g.ok);
  for (const g of granted) {
    bump(g.ok!.t, 'grants');
    if (g.ok!.validUntil <= g.ok!.t) bump(g.ok!.t, 'deadOnArrival');
  }
  const byKey = new Map<string, Grant[]>();
  for (const g of granted) {
    for (const key of g.keys) {
      const list = byKey.get(key) ?? [];
      list.push(g);
      byKey.set(key, list);
    }
  }

  for (const [key, list] of byKey) {
    list.sort((a, b) => a.ok!.t - b.ok!.t);
    checkHolds(key, list, tolerance, report, bump);
    checkTokens(key, list, report);
  }
  checkWrites(writes, byKey, report, bump);
  checkHangs(grants, faults, settleBound, historyEnd, report);

  const recovery = recoveryFigures(faults, granted, historyEnd);
  for (const f of faults) {
    bump(f.start.t, 'faults');
    const pausedMs = (f.end?.t ?? historyEnd) - f.start.t;
    if (
      f.start.action === 'pause-holder' &&
      pausedMs > pausedHolderMinMs &&
      heldBy(f.start.target, f.start.t, granted)
    ) {
      bump(f.start.t, 'pausedHolderEvents');
    }
  }
  for (const g of granted) {
    const blocked = g.blocked;
    if (!blocked || blocked.ms <= pausedHolderMinMs) continue;
    bump(blocked.t, 'blockedHolderEvents');
    const until = blocked.t + blocked.ms;
    const regranted = g.keys.some((key) =>
      (byKey.get(key) ?? []).some(
        (h) => h.client !== g.client && h.ok!.t > blocked.t && h.ok!.t < until,
      ),
    );
    if (regranted) bump(blocked.t, 'blockedHoldersRegranted');
  }
  return {
    backend: run?.backend ?? 'unknown',
    total,
    phases: phases.map((p) => ({
      phase: p.event.phase,
      families: p.event.families,
      mode: p.event.mode,
      durationMs: p.end - p.event.t,
      counts: counts.get(p.event.phase) ?? ZERO_COUNTS(),
    })),
    recovery,
    violations,
  };
}

const CLIENT_EVENTS: ReadonlySet<string> = new Set<ClientEvent['event']>([
  'invoke',
  'ok',
  'fail',
  'renew',
  'lost',
  'release',
  'released',
  'blocked',
]);

function isClientEvent(e: HistoryEvent): e is Exclude<ClientEvent, WriteEvent> {
  return CLIENT_EVENTS.has(e.event);
}

function collect(grants: Map<string, Grant>, e: ClientEvent): void {
  const id = `${e.client}#${e.op}`;
  let g = grants.get(id);
  if (!g) {
    g = {
      id,
      client: e.client,
      process: e.process,
      keys: e.keys,
      renewals: [],
      beliefEnd: Infinity,
      signalEnd: Infinity,
      learnedLossAt: Infinity,
    };
    grants.set(id, g);
  }
  switch (e.event) {
    case 'invoke':
      (g as { invoke?: ClientEvent }).invoke = e;
      break;
    case 'ok':
      g.ok = e;
      g.settled = e;
      break;
    case 'fail':
      g.settled = e;
      break;
    case 'renew':
      g.renewals.push(e);
      break;
    case 'lost':
      g.lost ??= e;
      break;
    case 'release':
      g.release ??= e;
      break;
    case 'released':
      g.released = e;
      break;
    case 'blocked':
      g.blocked = e;
      break;
    default:
      break;
  }
}

/** Works out when the holder stopped counting on the lock (see Grant). */
function finish(g: Grant, historyEnd: number): void {
  if (!g.ok) return;
  // Each renew event was logged while `lock.held` read true, so the lock stayed valid from the
  // grant to the latest deadline seen (the engine never revives a lost lock).
  let deadline = g.ok.validUntil;
  for (const r of g.renewals) deadline = Math.max(deadline, r.validUntil);
  const releaseAt = g.release?.t ?? Infinity;
  const lostAt = g.lost?.t ?? Infinity;
  g.signalEnd = Math.min(releaseAt, lostAt, historyEnd);
  g.beliefEnd = Math.min(releaseAt, lostAt, deadline);
  g.learnedLossAt = Math.min(lostAt, deadline < releaseAt ? deadline : Infinity);
}

type Report = (v: Omit<Violation, 'phase' | 'fault'>, field: keyof CheckCounts) => void;
type Bump = (t: number, field: keyof CheckCounts) => void;

function evidenceOf(...grants: Grant[]): HistoryEvent[] {
  const out: HistoryEvent[] = [];
  for (const g of grants) {
    for (const e of [g.invoke, g.ok, ...g.renewals.slice(-2), g.lost, g.release, g.released]) {
      if (e) out.push(e);
    }
  }
  return sortHistory(out);
}

/** Overlaps, losses learned after a regrant and foreign releases on one key. */
function checkHolds(
  key: string,
  list: readonly Grant[],
  tolerance: number,
  report: Report,
  bump: Bump,
): void {
  for (let i = 0; i < list.length; i++) {
    const a = list[i];
    // No grant after this can relate to `a`: it no longer believed it held, and its release is past.
    const horizon = Math.max(a.signalEnd, a.beliefEnd, a.released?.ok ? (a.release?.t ?? 0) : 0);
    for (let j = i + 1; j < list.length; j++) {
      const b = list[j];
      const at = b.ok!.t;
      if (at >= horizon) break;
      // A grant that was never valid when it arrived (its answer came after its deadline) was
      // granted before `a` by the server, whatever its arrival time: it never held anything.
      if (b.client === a.client || b.beliefEnd - at <= tolerance) continue;
      const believed = Math.min(a.beliefEnd, b.beliefEnd) - at;
      if (believed > tolerance) {
        report(
          {
            kind: 'overlap',
            key,
            t: at,
            detail:
              `${b.id} was granted while ${a.id} still held it: both held for ` +
              `${believed.toFixed(2)} ms`,
            evidence: evidenceOf(a, b),
          },
          'overlaps',
        );
      }
      if (Math.min(a.signalEnd, b.signalEnd) - at > tolerance) bump(at, 'signalOverlaps');
      const releasedBefore = (a.release?.t ?? Infinity) <= at;
      if (!releasedBefore && a.learnedLossAt !== Infinity && a.learnedLossAt - at > tolerance) {
        report(
          {
            kind: 'loss-after-regrant',
            key,
            t: at,
            detail:
              `${a.id} learned of its loss ${(a.learnedLossAt - at).toFixed(2)} ms after ` +
              `${b.id} was granted the lock`,
            evidence: evidenceOf(a, b),
          },
          'lossAfterRegrant',
        );
      } else if (!releasedBefore && a.lost && a.lost.t - at > tolerance) {
        bump(at, 'signalAfterRegrant');
      }
      const released = a.released;
      if (released?.ok && a.release && at < a.release.t && b.beliefEnd > a.release.t + tolerance) {
        report(
          {
            kind: 'foreign-release',
            key,
            t: a.release.t,
            detail: `${a.id} released the lock successfully while ${b.id} held it`,
            evidence: evidenceOf(a, b),
          },
          'foreignReleases',
        );
      }
    }
  }
}

/**
 * A grant's token must exceed the token of every grant of the key that its holder knew of
 * before this grant was even requested: that order is real time, whatever the network did
 * (comparing grant times instead would flag a grant whose answer was merely delayed).
 */
function checkTokens(key: string, list: readonly Grant[], report: Report): void {
  const byInvoke = [...list].sort((a, b) => (a.invoke?.t ?? a.ok!.t) - (b.invoke?.t ?? b.ok!.t));
  let next = 0;
  let best: { token: number; grant: Grant } | undefined;
  for (const g of byInvoke) {
    const requested = g.invoke?.t ?? g.ok!.t;
    for (; next < list.length && list[next].ok!.t < requested; next++) {
      const h = list[next];
      const token = h.ok!.fencingTokens[h.keys.indexOf(key)];
      if (!best || token > best.token) best = { token, grant: h };
    }
    const token = g.ok!.fencingTokens[g.keys.indexOf(key)];
    if (best && token <= best.token) {
      report(
        {
          kind: 'token-regression',
          key,
          t: g.ok!.t,
          detail: `${g.id} got token ${token}, not above ${best.token} of ${best.grant.id}, granted before it asked`,
          evidence: evidenceOf(best.grant, g),
        },
        'tokenRegressions',
      );
    }
  }
}

/**
 * Stale writes, judged from the resource's own order of writes and independently of its rule:
 * an accepted write is stale when a higher token was accepted for the key before it, or when its
 * token was already written by another grant (a token handed out twice).
 */
function checkWrites(
  writes: readonly WriteEvent[],
  byKey: ReadonlyMap<string, readonly Grant[]>,
  report: Report,
  bump: Bump,
): void {
  const highest = new Map<string, { token: number; writer: string; event: WriteEvent }>();
  // Writes come in time order, so one cursor per key walks its grants (sorted by grant time).
  const cursors = new Map<string, { next: number; best?: { token: number; id: string } }>();
  const newestGrant = (key: string, t: number): { token: number; id: string } | undefined => {
    const list = byKey.get(key) ?? [];
    const cursor = cursors.get(key) ?? { next: 0 };
    for (; cursor.next < list.length && list[cursor.next].ok!.t < t; cursor.next++) {
      const g = list[cursor.next];
      const token = g.ok!.fencingTokens[g.keys.indexOf(key)];
      if (!cursor.best || token > cursor.best.token) cursor.best = { token, id: g.id };
    }
    cursors.set(key, cursor);
    return cursor.best;
  };
  for (const w of writes) {
    const writer = `${w.client}#${w.op}`;
    if (!w.accepted) {
      bump(w.t, 'staleWritesRejected');
      continue;
    }
    const top = highest.get(w.key);
    const stale =
      top &&
      (w.fencingToken < top.token || (w.fencingToken === top.token && writer !== top.writer));
    if (stale) {
      const field: keyof CheckCounts =
        w.mode === 'fenced' ? 'staleWritesAccepted' : 'staleWritesAcceptedUnfenced';
      report(
        {
          kind: w.mode === 'fenced' ? 'stale-write' : 'stale-write-unfenced',
          key: w.key,
          t: w.t,
          detail:
            `${writer} wrote token ${w.fencingToken} (${w.mode}) after ${top.writer} ` +
            `had written ${top.token}`,
          evidence: [top.event, w],
        },
        field,
      );
    } else {
      highest.set(w.key, { token: w.fencingToken, writer, event: w });
    }
    const newest = newestGrant(w.key, w.t);
    const newer = newest !== undefined && newest.token > w.fencingToken && newest.id !== writer;
    if (newer && !stale) bump(w.t, 'supersededWritesAccepted');
  }
}

/** Time a process spent frozen by the nemesis between `from` and `to`. */
function frozenMs(process: string, from: number, to: number, faults: readonly Fault[]): number {
  let ms = 0;
  for (const f of faults) {
    if (f.start.family !== 'client-pause' || f.start.target !== process) continue;
    const start = Math.max(from, f.start.t);
    const end = Math.min(to, f.end?.t ?? to);
    if (end > start) ms += end - start;
  }
  return ms;
}

/** Acquires that never settled, or settled later than their wait plus the backend's bound. */
function checkHangs(
  grants: ReadonlyMap<string, Grant>,
  faults: readonly Fault[],
  settleBound: number,
  historyEnd: number,
  report: Report,
): void {
  for (const g of grants.values()) {
    const invoke = g.invoke;
    if (!invoke || invoke.event !== 'invoke') continue;
    const settledAt = g.settled?.t ?? historyEnd;
    const took = settledAt - invoke.t - frozenMs(g.process, invoke.t, settledAt, faults);
    const bound = invoke.wait + settleBound;
    if (!g.settled || took > bound) {
      report(
        {
          kind: 'hung',
          key: g.keys.join(','),
          t: invoke.t,
          detail: g.settled
            ? `${g.id} settled after ${took.toFixed(0)} ms (not frozen), over wait + bound = ${bound} ms`
            : `${g.id} never settled (history ends ${(historyEnd - invoke.t).toFixed(0)} ms later)`,
          evidence: evidenceOf(g),
        },
        'hung',
      );
    }
  }
}

function heldBy(process: string, t: number, granted: readonly Grant[]): boolean {
  return granted.some((g) => g.process === process && g.ok!.t <= t && t < g.signalEnd);
}

function recoveryFigures(
  faults: readonly Fault[],
  granted: readonly Grant[],
  historyEnd: number,
): RecoveryFigure[] {
  const oks = granted.map((g) => ({ t: g.ok!.t, process: g.process })).sort((a, b) => a.t - b.t);
  const byAction = new Map<string, { family: FaultFamily; times: number[]; faults: number }>();
  for (const f of faults) {
    const entry = byAction.get(f.start.action) ?? { family: f.start.family, times: [], faults: 0 };
    entry.faults += 1;
    const from = f.end?.t ?? historyEnd;
    // A fault on one worker (its pause, its connection) is over when that worker is served again.
    const worker = oks.some((o) => o.process === f.start.target);
    const first = oks.find((o) => o.t >= from && (!worker || o.process === f.start.target));
    if (first) entry.times.push(first.t - from);
    byAction.set(f.start.action, entry);
  }
  return [...byAction].map(([action, e]) => {
    const sorted = [...e.times].sort((a, b) => a - b);
    return {
      action,
      family: e.family,
      faults: e.faults,
      recovered: sorted.length,
      p50Ms: sorted.length ? sorted[Math.floor((sorted.length - 1) / 2)] : NaN,
      maxMs: sorted.length ? sorted[sorted.length - 1] : NaN,
    };
  });
}
