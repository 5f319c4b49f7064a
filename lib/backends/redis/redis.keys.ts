/**
 * Redis key layout for lock key K (final, already prefixed): `{K}` (the grant), `{K}:q` (the wait
 * queue) and `{K}:w` (waiter details); see docs/architecture.md. Wrapping K in braces is
 * injective (`{K}` always ends in `}`, the others in `:q` / `:w`) and makes K the Cluster hash
 * tag, so the keys of one lock share a slot. Queue keys exist only while someone waits: nothing
 * is kept per lock key once it is free.
 *
 * Fencing tokens come from one counter per Cluster hash slot, `distributed-lock:fence:{<tag>}`,
 * where `<tag>` is a short string of that slot: a script then touches the slot of its lock keys
 * only, and at most 16384 counters ever exist, however many lock keys are used. Lock keys all
 * start with `{`, counters never do, so the two cannot collide.
 */

/** Keys a script gets per lock key: lock, queue, waiters, fencing counter. */
export const KEYS_PER_LOCK = 4;

/** Start of every fencing counter's name. */
export const FENCE_KEY_PREFIX = 'distributed-lock:fence:';

/** Redis Cluster's slot count. */
const SLOTS = 16384;

/** CRC16/XMODEM (polynomial 0x1021, no reflection), the checksum of the Redis Cluster spec. */
const CRC_TABLE = ((): Uint16Array => {
  const table = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let crc = i << 8;
    for (let bit = 0; bit < 8; bit++)
      crc = (crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1) & 0xffff;
    table[i] = crc;
  }
  return table;
})();

function crcByte(crc: number, byte: number): number {
  return ((crc << 8) & 0xffff) ^ CRC_TABLE[((crc >> 8) ^ byte) & 0xff];
}

/**
 * CRC16 of the UTF-8 bytes of `text` from `start` to `end` (code units), encoded here rather than
 * by Buffer to spare an allocation per lock key. A lone surrogate counts as U+FFFD, as Node
 * (hence ioredis) sends it.
 */
function crc16(text: string, start: number, end: number): number {
  let crc = 0;
  for (let i = start; i < end; i++) {
    let code = text.charCodeAt(i);
    if (code < 0x80) {
      crc = crcByte(crc, code);
      continue;
    }
    if (code < 0x800) {
      crc = crcByte(crcByte(crc, 0xc0 | (code >> 6)), 0x80 | (code & 0x3f));
      continue;
    }
    if (code >= 0xd800 && code < 0xe000) {
      const low = i + 1 < end ? text.charCodeAt(i + 1) : 0;
      if (code < 0xdc00 && low >= 0xdc00 && low < 0xe000) {
        const point = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
        i++;
        crc = crcByte(crc, 0xf0 | (point >> 18));
        crc = crcByte(crc, 0x80 | ((point >> 12) & 0x3f));
        crc = crcByte(crc, 0x80 | ((point >> 6) & 0x3f));
        crc = crcByte(crc, 0x80 | (point & 0x3f));
        continue;
      }
      code = 0xfffd;
    }
    crc = crcByte(crc, 0xe0 | (code >> 12));
    crc = crcByte(crc, 0x80 | ((code >> 6) & 0x3f));
    crc = crcByte(crc, 0x80 | (code & 0x3f));
  }
  return crc;
}

/**
 * The Redis Cluster hash slot of `key`: CRC16 of its hash tag (what lies between its first `{`
 * and the first `}` after it, when not empty), else of the whole key, mod 16384.
 */
export function keySlot(key: string): number {
  const open = key.indexOf('{');
  if (open !== -1) {
    const close = key.indexOf('}', open + 1);
    if (close > open + 1) return crc16(key, open + 1, close) % SLOTS;
  }
  return crc16(key, 0, key.length) % SLOTS;
}

const TAG_CHARS = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';

/**
 * The first tag (shortest, then in TAG_CHARS order) of every slot, each packed as base-64 digits
 * 1..62 (0: none); every slot has one of at most 3 characters. Built once, on first use (about
 * 240 000 CRC steps), in 64 KiB.
 */
let slotTags: Uint32Array | undefined;

function buildSlotTags(): Uint32Array {
  const tags = new Uint32Array(SLOTS);
  let left = SLOTS;
  const walk = (crc: number, packed: number, depth: number): void => {
    for (let i = 0; i < TAG_CHARS.length && left > 0; i++) {
      const next = crcByte(crc, TAG_CHARS.charCodeAt(i));
      const code = packed * 64 + i + 1;
      if (depth > 1) {
        walk(next, code, depth - 1);
      } else if (tags[next % SLOTS] === 0) {
        tags[next % SLOTS] = code;
        left--;
      }
    }
  };
  for (let length = 1; length <= 3 && left > 0; length++) walk(0, 0, length);
  if (left > 0) throw new Error(`no fencing counter tag for ${left} hash slots`);
  return tags;
}

/** Hash tags (with their braces) by slot, filled as slots are used: at most 16384 strings. */
const tagsOfSlots: (string | undefined)[] = [];
/** Fencing counter names by slot, likewise. */
const fenceKeys: (string | undefined)[] = [];

/** A short hash tag, braces included (such as `{2Jo}`), of slot `slot` (0..16383). */
export function slotTag(slot: number): string {
  const cached = tagsOfSlots[slot];
  if (cached !== undefined) return cached;
  slotTags ??= buildSlotTags();
  let tag = '';
  for (let code = slotTags[slot]; code > 0; code = Math.floor(code / 64)) {
    tag = TAG_CHARS[(code % 64) - 1] + tag;
  }
  const braced = `{${tag}}`;
  tagsOfSlots[slot] = braced;
  return braced;
}

/** The fencing counter of slot `slot` (0..16383). */
export function fenceKeyOfSlot(slot: number): string {
  const cached = fenceKeys[slot];
  if (cached !== undefined) return cached;
  const key = `${FENCE_KEY_PREFIX}${slotTag(slot)}`;
  fenceKeys[slot] = key;
  return key;
}

/**
 * The one hash slot of a lock's keys on Redis Cluster, where a script may only touch keys of one
 * slot. `{K}` hashes by what lies before K's first `}`, so keys share a slot when they agree up
 * to their first `}` (such as `order:{42}:items` and `order:{42}:payment`).
 *
 * @throws TypeError, before anything is sent, when the keys fall in several slots or a key starts
 *   with `}` (its `{K}` would have an empty hash tag, and its queue keys another slot)
 */
export function clusterSlotOf(keys: readonly string[]): number {
  let slot = -1;
  for (const key of keys) {
    if (key.startsWith('}')) {
      throw new TypeError(
        `RedisLockBackend (Redis Cluster): key ${JSON.stringify(key)} starts with "}", which leaves its Redis keys without a common hash slot; rename it`,
      );
    }
    const own = keySlot(lockHashKey(key));
    if (slot === -1) slot = own;
    else if (own !== slot) {
      const listed = keys.map((k) => `${JSON.stringify(k)} (slot ${keySlot(lockHashKey(k))})`);
      throw new TypeError(
        `RedisLockBackend (Redis Cluster): the keys of one lock must share a hash slot, and ${listed.join(', ')} do not. A key's slot comes from its text up to the first "}", so give them a common start ending in "}", such as "order:{42}:items" and "order:{42}:payment"`,
      );
    }
  }
  return slot;
}

/** The lock HASH of lock key `key` (see the layout above). */
export function lockHashKey(key: string): string {
  return `{${key}}`;
}

/**
 * The argument list of a script that works on whole locks: KEYS (lock, queue, waiters and the
 * fencing counter of the lock's slot for each key, in order; `keys.length * KEYS_PER_LOCK` of
 * them) followed by `args` as ARGV, in one array.
 */
export function scriptArgv(
  keys: readonly string[],
  ...args: readonly (string | number)[]
): (string | number)[] {
  // Sized up front: this runs for every lock operation.
  const out = new Array<string | number>(keys.length * KEYS_PER_LOCK + args.length);
  let i = 0;
  for (const key of keys) {
    const lock = `{${key}}`;
    out[i++] = lock;
    out[i++] = `${lock}:q`;
    out[i++] = `${lock}:w`;
    out[i++] = fenceKeyOfSlot(keySlot(lock));
  }
  for (const arg of args) out[i++] = arg;
  return out;
}
