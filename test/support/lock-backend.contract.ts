import type {
  BackendAcquireRequest,
  BackendAcquireResult,
  BackendHandoff,
  BackendLockRef,
  BackendLossEvent,
  LockBackend,
} from 'nestjs-distributed-lock/backend';
import { LockBackendError } from 'nestjs-distributed-lock';
import { deferred, eventually, sleep, timed, within } from './async.helpers';
import { waitForGrant } from './backend.waiter';
import type { ContractBackend } from './test-backends';
import { newToken, uniqueId } from './test-ids';

/**
 * Slack, in ms, on top of every bound a backend declares: the machine is shared and has 2 cores.
 * Far below what the bugs these tests catch cost (a holder's whole ttl, a hang).
 */
const MARGIN = 3000;
/** A ttl no test outlives: a grant ending before its release would hide a missing handoff. */
const LONG = 20_000;

/** The fencing tokens of a grant; throws (failing the test) when the attempt was busy. */
function granted(result: BackendAcquireResult): readonly number[] {
  if (!result.acquired)
    throw new Error(`expected a grant, got busy (retryAfter ${result.retryAfter})`);
  return result.fencingTokens;
}

/** The retryAfter of a busy answer; throws (failing the test) when the attempt was granted. */
function busy(result: BackendAcquireResult): number {
  if (result.acquired) throw new Error('expected busy, got a grant');
  return result.retryAfter;
}

/** Every wake-up of one token, in order, with a way to wait for the next. */
class WakeLog {
  readonly wakes: { handoff?: BackendHandoff; recheckAfter?: number }[] = [];
  readonly stop: () => void;

  constructor(backend: LockBackend, token: string) {
    this.stop = backend.onWake(token, (handoff?: BackendHandoff, recheckAfter?: number) => {
      this.wakes.push({ handoff, recheckAfter });
    });
  }

  get handoffs(): BackendHandoff[] {
    return this.wakes.flatMap((w) => (w.handoff ? [w.handoff] : []));
  }

  /** Resolves the first handoff, failing after `ms`. */
  async handoff(ms: number, label: string): Promise<BackendHandoff> {
    await eventually(() => this.handoffs.length > 0, ms, label);
    return this.handoffs[0];
  }
}

/**
 * The {@link LockBackend} contract (lib/backends/lock-backend.interface.ts), written once and run
 * against real stores: every client comes from `backend.connect()`, and tests that need two
 * processes use two clients. Tests that need a capability run only where the entry declares it.
 */
export function describeLockBackend(name: string, backend: ContractBackend): void {
  const hasFencing = backend.fencing !== false;
  const hasHandoff = backend.fifoHandoff !== false;
  describe(`LockBackend contract: ${name}`, () => {
    const open: LockBackend[] = [];
    let stopServers: (() => Promise<void>) | undefined;
    beforeAll(async () => {
      stopServers = await backend.start?.();
    });
    afterAll(async () => {
      await stopServers?.();
    });
    /** A new client of the shared store, closed after the test. */
    const client = (): LockBackend => {
      const connected = backend.connect();
      open.push(connected);
      return connected;
    };
    let run: string;
    // One hash tag per test, so the keys of a multi-key lock share a Redis Cluster slot.
    const key = (label: string): string => `lock:contract:{${run}}:${label}`;
    const ref = (keys: string | readonly string[], label: string): BackendLockRef => ({
      keys: typeof keys === 'string' ? [keys] : keys,
      token: newToken(label),
    });
    const acquire = (
      on: LockBackend,
      lock: BackendLockRef,
      ttl: number,
      extra: Partial<BackendAcquireRequest> = {},
    ): Promise<BackendAcquireResult> => on.acquire({ ...lock, ttl, ...extra });

    beforeEach(() => {
      run = uniqueId();
    });
    afterEach(async () => {
      await Promise.all(open.splice(0).map((c) => c.close?.()));
    });
    afterAll(async () => {
      if (backend.closeGrace) await sleep(backend.closeGrace);
    });

    it('names where it connects, and ping resolves while the store answers', async () => {
      const a = client();
      expect(a.endpoint).toEqual(expect.stringMatching(/\S/));
      if (!a.ping) throw new Error(`${name} has no ping`);
      await expect(a.ping()).resolves.toBeUndefined();
    });

    it(`grants a free key with ${hasFencing ? 'one safe-integer fencing token' : 'no fencing token'}, and answers busy with a positive retryAfter bounded by the holder ttl`, async () => {
      const [a, b] = [client(), client()];
      const k = key('grant');
      const first = granted(await acquire(a, ref(k, 'owner'), 5000));
      expect(first).toHaveLength(hasFencing ? 1 : 0);
      for (const token of first) expect(Number.isSafeInteger(token)).toBe(true);
      for (const other of [a, b]) {
        const retryAfter = busy(await acquire(other, ref(k, 'other'), 60_000));
        expect(retryAfter).toBeGreaterThan(0);
        expect(retryAfter).toBeLessThanOrEqual(5000);
      }
    });

    if (!hasFencing)
      it('declares fencing: false, and inspect reports no fencing token', async () => {
        const a = client();
        expect(a.fencing).toBe(false);
        const k = key('no-fencing');
        const owner = ref(k, 'owner');
        expect(granted(await acquire(a, owner, 5000))).toEqual([]);
        const info = await a.inspect(k);
        expect(info.held).toBe(true);
        expect('fencingToken' in info).toBe(false);
        expect(await a.release(owner)).toBe(true);
      });

    it('a busy attempt without queueFor leaves no trace: a later newcomer is granted as soon as the holder releases', async () => {
      const [a, b] = [client(), client()];
      const k = key('no-trace');
      const holder = ref(k, 'holder');
      granted(await acquire(a, holder, LONG));
      busy(await acquire(b, ref(k, 'try-once'), LONG));
      busy(await acquire(b, ref(k, 'queue-zero'), LONG, { queueFor: 0 }));
      expect(await a.release(holder)).toBe(true);
      granted(await acquire(a, ref(k, 'newcomer'), LONG));
    });

    it('release and extend are owner-checked: a wrong token changes nothing and gets false', async () => {
      const [a, b] = [client(), client()];
      const k = key('owner');
      const owner = ref(k, 'owner');
      const short = 800;
      const [fencing] = granted(await acquire(a, owner, short));
      const stranger = { keys: [k], token: newToken('stranger') };
      for (const other of [a, b]) {
        expect(await other.release(stranger)).toBe(false);
        expect(await other.extend([{ ...stranger, ttl: 60_000 }])).toEqual([false]);
      }
      const info = await b.inspect(k);
      expect(info.held).toBe(true);
      expect(info.fencingToken).toBe(fencing);
      expect(info.ttl).toBeLessThanOrEqual(short); // the stranger's extend did not apply
      busy(await acquire(b, ref(k, 'third'), 1000));

      // The owner's extend applies, and a batch answers one boolean per entry, in order.
      expect(
        await a.extend([
          { ...stranger, ttl: 60_000 },
          { ...owner, ttl: LONG },
        ]),
      ).toEqual([false, true]);
      // Asked of the owner's client: etcd's other clients only know the ttl of the grant.
      expect((await a.inspect(k)).ttl).toBeGreaterThan(short + 500);
      expect(await a.extend([])).toEqual([]);
      expect(await a.release(owner)).toBe(true);
    });

    it('release and extend answer false once the grant is gone: released, or cancelled and taken by another owner', async () => {
      const [a, b] = [client(), client()];
      const k = key('gone');
      const owner = ref(k, 'owner');
      granted(await acquire(a, owner, 5000));
      expect(await a.release(owner)).toBe(true);
      expect(await a.release(owner)).toBe(false);
      expect(await a.extend([{ ...owner, ttl: 5000 }])).toEqual([false]);
      expect(await b.inspect(k)).toEqual({ held: false });

      const first = ref(k, 'first');
      granted(await acquire(a, first, LONG));
      await a.cancel(first);
      const next = ref(k, 'next');
      granted(await acquire(b, next, LONG));
      expect(await a.release(first)).toBe(false);
      expect(await a.extend([{ ...first, ttl: 5000 }])).toEqual([false]);
      expect((await b.inspect(k)).held).toBe(true); // the late release did not free the new owner
      expect(await b.release(next)).toBe(true);
    });

    if (!backend.ttlEndsGrant) {
      it('a grant outlives its ttl until it is released (the engine ends it at its validity deadline)', async () => {
        const [a, b] = [client(), client()];
        const k = key('no-expiry');
        const owner = ref(k, 'owner');
        granted(await acquire(a, owner, 300));
        await sleep(300 + 300);
        expect((await b.inspect(k)).held).toBe(true);
        expect(await a.release(owner)).toBe(true);
        expect((await b.inspect(k)).held).toBe(false);
      });
    }

    if (backend.ttlEndsGrant)
      it(`ttl expiry frees the key without any call; the expired grant then releases and extends to false${hasFencing ? '; the next fencing token is greater' : ''}`, async () => {
        const [a, b] = [client(), client()];
        const k = key('expiry');
        const seen: number[] = [];
        for (let round = 0; round < 2; round++) {
          const owner = ref(k, `owner${round}`);
          seen.push(granted(await acquire(a, owner, 300))[0]);
          expect((await b.inspect(k)).held).toBe(true);
          await eventually(async () => !(await b.inspect(k)).held, 300 + MARGIN, 'grant expired');
          const next = ref(k, `next${round}`);
          seen.push(granted(await acquire(b, next, LONG))[0]);
          expect(await a.extend([{ ...owner, ttl: LONG }])).toEqual([false]);
          expect(await a.release(owner)).toBe(false);
          expect((await a.inspect(k)).fencingToken).toBe(seen[seen.length - 1]);
          expect(await b.release(next)).toBe(true);
        }
        expect(seen.every((f) => Number.isSafeInteger(f))).toBe(hasFencing);
        if (hasFencing)
          for (let i = 1; i < seen.length; i++) expect(seen[i]).toBeGreaterThan(seen[i - 1]);
      });

    if (hasFencing && hasHandoff)
      it('fencing tokens strictly increase per key across releases, clients and handoff', async () => {
        const [a, b] = [client(), client()];
        const k = key('fencing');
        const seen: number[] = [];
        for (let i = 0; i < 4; i++) {
          const on = i % 2 ? a : b;
          const lock = ref(k, `released${i}`);
          seen.push(granted(await acquire(on, lock, 5000))[0]);
          expect(await on.release(lock)).toBe(true);
        }
        const holder = ref(k, 'holder');
        seen.push(granted(await acquire(a, holder, LONG))[0]);
        const waiter = ref(k, 'waiter');
        const log = new WakeLog(b, waiter.token);
        busy(await acquire(b, waiter, LONG, { queueFor: LONG, attempt: 1 }));
        expect(await a.release(holder)).toBe(true);
        const handoff = await log.handoff(MARGIN, 'handoff');
        // The handoff and the claim that follows are one grant: one token.
        const [claimed] = granted(await acquire(b, waiter, LONG, { attempt: 2 }));
        expect(claimed).toBe(handoff.fencingTokens[0]);
        seen.push(claimed);
        log.stop();
        expect(await b.release(waiter)).toBe(true);
        seen.push(granted(await acquire(a, ref(k, 'last'), 5000))[0]);

        for (const f of seen) expect(Number.isSafeInteger(f)).toBe(true);
        for (let i = 1; i < seen.length; i++) expect(seen[i]).toBeGreaterThan(seen[i - 1]);
      });

    it(`takes several keys all or none, with ${hasFencing ? 'one fencing token per key' : 'no fencing tokens'}`, async () => {
      const [a, b] = [client(), client()];
      const keys = [key('m1'), key('m2'), key('m3')];
      const blocker = ref(keys[1], 'blocker');
      granted(await acquire(a, blocker, LONG));
      const multi = ref(keys, 'multi');
      busy(await acquire(b, multi, LONG));
      for (const k of [keys[0], keys[2]]) expect((await a.inspect(k)).held).toBe(false);
      // Nothing of the failed attempt is left: a single-key lock on an untouched key is free.
      const side = ref(keys[0], 'side');
      granted(await acquire(a, side, LONG));
      expect(await a.release(side)).toBe(true);

      expect(await a.release(blocker)).toBe(true);
      const tokens = granted(await acquire(b, multi, LONG));
      expect(tokens).toHaveLength(hasFencing ? 3 : 0);
      for (let i = 0; i < 3; i++) {
        expect((await a.inspect(keys[i])).fencingToken).toBe(tokens[i]);
      }
      busy(await acquire(a, ref(keys[2], 'late'), 1000));
      expect(await b.extend([{ ...multi, ttl: LONG }])).toEqual([true]);
      expect(await b.release(multi)).toBe(true);
      for (const k of keys) expect((await a.inspect(k)).held).toBe(false);
    });

    if (hasHandoff)
      it('multi-key fairness: a multi-key waiter is queued on every key from its arrival; younger waiters on those keys wait for it, and it gets all its keys at once', async () => {
        const [a, b, c] = [client(), client(), client()];
        const [k1, k2] = [key('f1'), key('f2')];
        const h1 = ref(k1, 'h1');
        const h2 = ref(k2, 'h2');
        granted(await acquire(a, h1, LONG));
        granted(await acquire(a, h2, LONG));
        const multi = ref([k1, k2], 'multi');
        const single = ref(k2, 'single');
        const order: string[] = [];
        let multiQueued: () => void = () => undefined;
        const queued = new Promise<void>((r) => (multiQueued = r));
        const multiDone = waitForGrant(b, multi, {
          ttl: LONG,
          wait: LONG,
          onQueued: multiQueued,
        }).then(({ fencingTokens: tokens }) => {
          order.push('multi');
          return tokens;
        });
        await queued;
        let singleQueued: () => void = () => undefined;
        const queuedToo = new Promise<void>((r) => (singleQueued = r));
        const singleDone = waitForGrant(c, single, {
          ttl: LONG,
          wait: LONG,
          onQueued: singleQueued,
        }).then(({ fencingTokens: tokens }) => {
          order.push('single');
          return tokens;
        });
        await queuedToo;
        // k2 frees first: the younger single-key waiter must not get it ahead of the multi-key one.
        expect(await a.release(h2)).toBe(true);
        await sleep(300);
        expect(order).toEqual([]);
        busy(await acquire(a, ref(k2, 'newcomer'), 1000));
        // k1 frees: the multi-key waiter gets both keys; only its release lets the single one in.
        expect(await a.release(h1)).toBe(true);
        const multiTokens = await within(MARGIN, multiDone, 'multi-key waiter served');
        expect(multiTokens).toHaveLength(2);
        expect(order).toEqual(['multi']);
        expect(await b.release(multi)).toBe(true);
        const [singleToken] = await within(MARGIN, singleDone, 'single-key waiter served');
        expect(order).toEqual(['multi', 'single']);
        expect(singleToken).toBeGreaterThan(multiTokens[1]);
        expect(await c.release(single)).toBe(true);
      });

    it('inspect reports held, remaining ttl and fencing token to every client, and only that', async () => {
      const [a, b] = [client(), client()];
      const k = key('inspect');
      expect(await a.inspect(k)).toEqual({ held: false });
      const owner = ref(k, 'owner');
      const [fencing] = granted(await acquire(a, owner, 4000));
      for (const on of [a, b]) {
        const info = await on.inspect(k);
        expect(info.held).toBe(true);
        expect(info.fencingToken).toBe(fencing);
        expect(info.ttl).toBeGreaterThan(0);
        expect(info.ttl).toBeLessThanOrEqual(4000);
      }
      // Inspecting changed nothing.
      busy(await acquire(b, ref(k, 'other'), 1000));
      expect(await a.release(owner)).toBe(true);
      expect(await b.inspect(k)).toEqual({ held: false });
    });

    if (hasHandoff)
      it('serves several queued waiters through onWake in arrival order; a newcomer never jumps the queue', async () => {
        const clients = [client(), client()];
        const k = key('fifo');
        const holder = ref(k, 'holder');
        granted(await acquire(clients[0], holder, LONG));
        const waiters = Array.from({ length: 4 }, (_, i) => {
          const on = clients[i % 2];
          const lock = ref(k, `w${i}`);
          return { on, lock, log: new WakeLog(on, lock.token) };
        });
        for (const w of waiters)
          busy(await acquire(w.on, w.lock, LONG, { queueFor: LONG, attempt: 1 }));
        // A second attempt refreshes the entry; it neither moves the waiter nor adds an entry.
        busy(await acquire(waiters[0].on, waiters[0].lock, LONG, { queueFor: LONG, attempt: 2 }));
        busy(await acquire(clients[1], ref(k, 'newcomer'), 1000));

        let previous = { on: clients[0], lock: holder };
        for (const [i, w] of waiters.entries()) {
          expect(await previous.on.release(previous.lock)).toBe(true);
          const handoff = await w.log.handoff(MARGIN, `handoff to waiter ${i}`);
          expect(handoff.attempt).toBe(i === 0 ? 2 : 1);
          // Nobody who queued later was handed anything before it.
          for (const later of waiters.slice(i + 1)) expect(later.log.handoffs).toEqual([]);
          // Reserved for the woken waiter: a newcomer does not get in.
          busy(await acquire(clients[1], ref(k, 'newcomer'), 1000));
          expect(await w.on.extend([{ ...w.lock, ttl: LONG }])).toEqual([true]);
          w.log.stop();
          previous = w;
        }
        expect(await previous.on.release(previous.lock)).toBe(true);
        for (const w of waiters) expect(w.log.handoffs).toHaveLength(1);
        expect(await clients[0].inspect(k)).toEqual({ held: false });
      });

    if (hasHandoff)
      it('hands the lock over in the wake-up: for the attempt that queued last, with a greater fencing token, claimable by acquire or extend with the full ttl', async () => {
        const [a, b] = [client(), client()];
        // Longer than any claim window of the contract's clients, so an unclaimed reservation
        // lapses well before a claimed lock does.
        const ttl = 3000;
        const scenario = async (claimBy: 'acquire' | 'extend'): Promise<void> => {
          const k = key(`handoff-${claimBy}`);
          const holder = ref(k, 'holder');
          const [held] = granted(await acquire(a, holder, LONG));
          const waiter = ref(k, 'waiter');
          const log = new WakeLog(b, waiter.token);
          busy(await acquire(b, waiter, ttl, { queueFor: LONG, attempt: 1 }));
          busy(await acquire(b, waiter, ttl, { queueFor: LONG, attempt: 2 }));
          expect(await a.release(holder)).toBe(true);

          const handoff = await log.handoff(MARGIN, `handoff (${claimBy})`);
          const handedAt = Date.now();
          expect(handoff.attempt).toBe(2);
          expect(handoff.fencingTokens).toHaveLength(1);
          expect(handoff.fencingTokens[0]).toBeGreaterThan(held);
          expect(handoff.ttl).toBeGreaterThan(0);
          expect(handoff.ttl).toBeLessThanOrEqual(ttl);
          // Handed over means held, for everyone, under the handed fencing token.
          const info = await a.inspect(k);
          expect(info.held).toBe(true);
          expect(info.fencingToken).toBe(handoff.fencingTokens[0]);
          busy(await acquire(a, ref(k, 'newcomer'), 1000));

          if (claimBy === 'acquire') {
            // A woken waiter that tries again is granted the very grant it was handed.
            expect(granted(await acquire(b, waiter, ttl, { attempt: 3 }))).toEqual(
              handoff.fencingTokens,
            );
          } else {
            // What the engine does: take the handoff, claim it with extend alone.
            expect(await b.extend([{ ...waiter, ttl }])).toEqual([true]);
          }
          log.stop();
          // Claimed with the full ttl: the lock outlives any reservation shorter than that.
          await sleep(Math.max(0, handedAt + ttl - 1000 - Date.now()));
          const later = await a.inspect(k);
          expect(later.held).toBe(true);
          expect(later.fencingToken).toBe(handoff.fencingTokens[0]);
          expect(await b.release(waiter)).toBe(true);
        };
        await Promise.all([scenario('acquire'), scenario('extend')]);
      });

    if (hasHandoff)
      it('cancel removes a queue entry: the waiter behind it is served, the cancelled one never', async () => {
        const [a, b] = [client(), client()];
        const k = key('cancel-queued');
        const holder = ref(k, 'holder');
        granted(await acquire(a, holder, LONG));
        const quitter = ref(k, 'quitter');
        const quitterLog = new WakeLog(b, quitter.token);
        busy(await acquire(b, quitter, LONG, { queueFor: LONG, attempt: 1 }));
        const next = ref(k, 'next');
        const nextLog = new WakeLog(a, next.token);
        busy(await acquire(a, next, LONG, { queueFor: LONG, attempt: 1 }));

        await b.cancel(quitter);
        expect(await a.release(holder)).toBe(true);
        const handoff = await nextLog.handoff(MARGIN, 'handoff to the waiter behind');
        expect(handoff.attempt).toBe(1);
        expect(quitterLog.handoffs).toEqual([]);
        expect(await a.extend([{ ...next, ttl: LONG }])).toEqual([true]);
        quitterLog.stop();
        nextLog.stop();
        expect(await a.release(next)).toBe(true);
        expect(await b.inspect(k)).toEqual({ held: false });
      });

    if (hasHandoff)
      it('cancel releases a handoff nobody claimed, passing it to the next waiter', async () => {
        const [a, b] = [client(), client()];
        const k = key('cancel-handed');
        const holder = ref(k, 'holder');
        granted(await acquire(a, holder, LONG));
        const first = ref(k, 'first');
        const firstLog = new WakeLog(b, first.token);
        busy(await acquire(b, first, LONG, { queueFor: LONG, attempt: 1 }));
        const second = ref(k, 'second');
        const secondLog = new WakeLog(a, second.token);
        busy(await acquire(a, second, LONG, { queueFor: LONG, attempt: 1 }));

        expect(await a.release(holder)).toBe(true);
        await firstLog.handoff(MARGIN, 'handoff to the first waiter');
        await b.cancel(first);
        await secondLog.handoff(MARGIN, 'handoff to the second waiter');
        expect(await b.extend([{ ...first, ttl: LONG }])).toEqual([false]);
        expect(granted(await acquire(a, second, LONG, { attempt: 2 }))).toEqual(
          secondLog.handoffs[0].fencingTokens,
        );
        firstLog.stop();
        secondLog.stop();
        expect(await a.release(second)).toBe(true);
      });

    it('cancel releases a grant whose answer was lost (acquired, then cancelled without release): the key is free at once', async () => {
      const [a, b] = [client(), client()];
      const single = key('ghost');
      const ghost = ref(single, 'ghost');
      granted(await acquire(a, ghost, LONG));
      await a.cancel(ghost);
      expect(await b.inspect(single)).toEqual({ held: false });
      granted(await acquire(b, ref(single, 'after'), 1000));
    });

    if (hasHandoff)
      it('cancel of a multi-key grant whose answer was lost hands a key with a waiter to it and frees the other', async () => {
        const [a, b] = [client(), client()];
        // Multi-key, with a waiter on one key: that key goes to the waiter, the other is free.
        const keys = [key('ghost-a'), key('ghost-b')];
        const multiGhost = ref(keys, 'multi-ghost');
        granted(await acquire(a, multiGhost, LONG));
        const waiter = ref(keys[0], 'waiter');
        const log = new WakeLog(b, waiter.token);
        busy(await acquire(b, waiter, LONG, { queueFor: LONG, attempt: 1 }));
        await a.cancel(multiGhost);
        expect((await log.handoff(MARGIN, 'handoff after cancel')).attempt).toBe(1);
        expect(await b.inspect(keys[1])).toEqual({ held: false });
        expect(await b.extend([{ ...waiter, ttl: LONG }])).toEqual([true]);
        log.stop();
        expect(await b.release(waiter)).toBe(true);
      });

    it('cancel is idempotent and leaves other owners alone', async () => {
      const [a, b] = [client(), client()];
      const k = key('cancel-idempotent');
      const never = ref(k, 'never');
      await a.cancel(never); // a token that never did anything
      const owner = ref(k, 'owner');
      const [fencing] = granted(await acquire(a, owner, LONG));
      const waiter = ref(k, 'waiter');
      busy(await acquire(b, waiter, LONG, { queueFor: LONG, attempt: 1 }));
      for (let i = 0; i < 2; i++) {
        await b.cancel(waiter);
        await b.cancel(never);
        await b.cancel({ keys: [k], token: newToken('stranger') });
      }
      expect((await b.inspect(k)).fencingToken).toBe(fencing);
      expect(await a.release(owner)).toBe(true);
      // The cancelled waiter is not queued any more: a newcomer gets the free key.
      granted(await acquire(b, ref(k, 'newcomer'), 1000));
      await a.cancel(owner);
      await a.cancel(owner);
    });

    it(`a queued waiter whose client is closed for good holds up the next live waiter for at most ${backend.deadWaiterBound} ms (+${MARGIN}) after the release`, async () => {
      const [a, b] = [client(), client()];
      const dead = backend.connect(); // closed by the test itself
      const k = key('dead-waiter');
      const holder = ref(k, 'holder');
      // A holder ttl far above the bound: a live waiter that only re-checks at retryAfter fails.
      granted(await acquire(a, holder, 60_000));
      const ghost = ref(k, 'dead');
      const stopGhost = dead.onWake(ghost.token, () => undefined);
      busy(await acquire(dead, ghost, LONG, { queueFor: 60_000, attempt: 1 }));
      const live = ref(k, 'live');
      const isQueued = deferred();
      const waiting = waitForGrant(b, live, {
        ttl: LONG,
        wait: 30_000,
        onQueued: () => isQueued.resolve(),
      });
      await within(MARGIN, isQueued.promise, 'live waiter queued');
      stopGhost();
      await dead.close?.();

      const releasedAt = Date.now();
      expect(await a.release(holder)).toBe(true);
      const { fencingTokens: tokens } = await within(
        backend.deadWaiterBound + MARGIN,
        waiting,
        'live waiter behind a dead one',
      );
      expect(Date.now() - releasedAt).toBeLessThan(backend.deadWaiterBound + MARGIN);
      expect(tokens).toHaveLength(hasFencing ? 1 : 0);
      expect(await b.release(live)).toBe(true);
    }, 40_000);

    const unreachable = backend.unreachable;
    if (unreachable)
      it('an unreachable server: every call rejects with LockBackendError naming the cause (or answers from local state) within commandTimeout plus margin, never busy, never a hang', async () => {
        if (!unreachable) throw new Error('capability missing');
        const { backend: down, commandTimeout, address, cause } = await unreachable();
        open.push(down);
        expect(down.endpoint).toContain(address);
        const bound = commandTimeout + MARGIN;
        const k = key('unreachable');
        const lock = ref(k, 'outage');
        const ping = down.ping?.bind(down);
        if (!ping) throw new Error(`${name} has no ping`);
        // Repeated calls too: a client library's state after the first failures (etcd3's open
        // circuit breaker) must not replace the cause.
        const calls: (() => Promise<unknown>)[] = [
          ping,
          () => acquire(down, lock, 1000),
          () => acquire(down, lock, 1000, { queueFor: 5000, attempt: 1 }),
          () => down.inspect(k),
          ping,
        ];
        for (const call of calls) {
          const { ms, error } = await timed(within(bound + 5000, call(), 'call during outage'));
          expect(error).toBeInstanceOf(LockBackendError);
          expect((error as Error).message).toMatch(cause);
          expect(ms).toBeLessThan(bound);
        }
        // These may answer from what the client knows (it holds nothing), else they must fail.
        const local: (() => Promise<unknown>)[] = [
          () => down.extend([{ ...lock, ttl: 1000 }]),
          () => down.release(lock),
          () => down.cancel(lock),
        ];
        for (const call of local) {
          const { ms, error } = await timed(within(bound + 5000, call(), 'call during outage'));
          const named = error instanceof LockBackendError && cause.test(error.message);
          expect(error === undefined || named).toBe(true);
          expect(ms).toBeLessThan(bound);
        }
      }, 30_000);

    const maxKeys = backend.maxKeys;
    if (maxKeys !== undefined)
      it(`takes a lock of exactly maxKeys (${maxKeys ?? 'none'}) keys and rejects one more`, async () => {
        if (maxKeys === undefined) throw new Error('capability missing');
        const a = client();
        // The backend announces its limit, so the engine can reject a larger lock up front.
        expect(a.maxKeys).toBe(maxKeys);
        const keys = Array.from({ length: maxKeys + 1 }, (_, i) =>
          key(`many-${String(i).padStart(3, '0')}`),
        );
        const tooMany = ref(keys, 'too-many');
        await expect(acquire(a, tooMany, 1000)).rejects.toBeInstanceOf(LockBackendError);
        expect(await a.inspect(keys[0])).toEqual({ held: false });
        const enough = ref(keys.slice(0, maxKeys), 'enough');
        expect(granted(await acquire(a, enough, 5000))).toHaveLength(maxKeys);
        expect(await a.release(enough)).toBe(true);
      });

    const revokeLease = backend.revokeLease;
    if (revokeLease)
      it('reports grants ended by a lost lease through onLost, naming each grant, and extend then says false', async () => {
        if (!revokeLease) throw new Error('capability missing');
        const [a, b] = [client(), client()];
        if (!a.onLost) throw new Error(`${name} declares lease revocation but has no onLost`);
        const events: BackendLossEvent[] = [];
        const stop = a.onLost((event) => events.push(event));
        const one = ref(key('lost-1'), 'one');
        const two = ref([key('lost-2'), key('lost-3')], 'two');
        granted(await acquire(a, one, 60_000));
        granted(await acquire(a, two, 60_000));
        await revokeLease(one.keys[0]);
        await eventually(() => events.length > 0, LONG / 2, 'loss event');
        const lost = events.flatMap((e) => e.locks);
        expect(lost.map((l) => l.token).sort()).toEqual([one.token, two.token].sort());
        expect(lost.find((l) => l.token === two.token)?.keys).toEqual(two.keys);
        expect(typeof events[0].reason).toBe('string');
        expect(
          await a.extend([
            { ...one, ttl: 60_000 },
            { ...two, ttl: 60_000 },
          ]),
        ).toEqual([false, false]);
        // Nobody holds them any more.
        granted(await acquire(b, ref(one.keys, 'next'), 1000));
        stop();
      });
  });
}
