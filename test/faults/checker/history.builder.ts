import type { FaultFamily, HistoryEvent, ResourceMode } from '../history/history.event';

/** One acquire as the checker's self-test plants it; times in ms of a made-up lab clock. */
export interface PlantedGrant {
  /** `<process>/c<n>`. */
  readonly client: string;
  readonly op: number;
  readonly keys: readonly string[];
  readonly invoke: number;
  readonly wait?: number;
  /** Grant time; without it the acquire failed at `fail`, or never settled. */
  readonly ok?: number;
  readonly fail?: number;
  readonly tokens?: readonly number[];
  /** Deadline known at grant time (default: far away). */
  readonly validUntil?: number;
  readonly renewals?: readonly (readonly [t: number, validUntil: number])[];
  readonly lost?: number;
  readonly release?: number;
  /** When `release()` settled, and whether it succeeded. */
  readonly released?: readonly [t: number, ok: boolean];
}

/** Builds histories with known content for the checker's self-test. */
export class HistoryBuilder {
  readonly events: HistoryEvent[] = [];
  private faultId = 0;

  constructor(backend = 'planted', settleBoundMs = 1000, pausedHolderMinMs = 0) {
    this.events.push({
      t: 0,
      process: 'nemesis',
      event: 'run',
      backend,
      settleBoundMs,
      epochAtT: 0,
      pausedHolderMinMs,
    });
  }

  /** `client`'s event loop blocked for `ms` from `t`, right after its grant `op`. */
  blocked(client: string, op: number, keys: readonly string[], t: number, ms: number): this {
    const base = { process: client.split('/')[0], client, op, keys };
    this.events.push({ ...base, t, event: 'blocked', ms });
    return this;
  }

  phase(
    phase: string,
    start: number,
    end: number,
    families: readonly FaultFamily[] = [],
    mode: ResourceMode = 'fenced',
  ): this {
    this.events.push({ t: start, process: 'nemesis', event: 'phase-start', phase, families, mode });
    this.events.push({ t: end, process: 'nemesis', event: 'phase-end', phase, families, mode });
    return this;
  }

  fault(action: string, family: FaultFamily, target: string, start: number, end: number): this {
    const fault = ++this.faultId;
    const base = { process: 'nemesis', fault, action, family, target } as const;
    this.events.push({ ...base, t: start, event: 'fault-start' });
    this.events.push({ ...base, t: end, event: 'fault-end' });
    return this;
  }

  grant(g: PlantedGrant): this {
    const base = { process: g.client.split('/')[0], client: g.client, op: g.op, keys: g.keys };
    const wait = g.wait ?? 1000;
    this.events.push({ ...base, t: g.invoke, event: 'invoke', ttl: 1000, wait });
    if (g.ok !== undefined) {
      this.events.push({
        ...base,
        t: g.ok,
        event: 'ok',
        fencingTokens: g.tokens ?? g.keys.map(() => 1),
        validUntil: g.validUntil ?? g.ok + 1e6,
      });
    } else if (g.fail !== undefined) {
      this.events.push({
        ...base,
        t: g.fail,
        event: 'fail',
        error: 'LockNotAcquiredError',
        message: 'busy',
      });
    }
    for (const [t, validUntil] of g.renewals ?? []) {
      this.events.push({ ...base, t, event: 'renew', validUntil });
    }
    if (g.lost !== undefined) {
      this.events.push({ ...base, t: g.lost, event: 'lost', reason: 'expired' });
    }
    if (g.release !== undefined) this.events.push({ ...base, t: g.release, event: 'release' });
    if (g.released) {
      const [t, ok] = g.released;
      this.events.push({
        ...base,
        t,
        event: 'released',
        ok,
        ...(ok ? {} : { error: 'LockLostError' }),
      });
    }
    return this;
  }

  /** A write of `client`'s op as the resource server logs it. */
  write(
    client: string,
    op: number,
    key: string,
    t: number,
    fencingToken: number,
    accepted = true,
    mode: ResourceMode = 'fenced',
  ): this {
    this.events.push({
      t,
      process: 'resource',
      client,
      op,
      keys: [key],
      event: 'write',
      key,
      fencingToken,
      accepted,
      highest: 0,
      mode,
    });
    return this;
  }

  /** Something far later, so the history does not end with the last planted grant. */
  end(t: number): this {
    this.events.push({
      t,
      process: 'nemesis',
      event: 'phase-end',
      phase: 'end',
      families: [],
      mode: 'fenced',
    });
    return this;
  }
}
